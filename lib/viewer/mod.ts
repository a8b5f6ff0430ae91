/**
 * The feature viewer: `serveViewer()` runs a read-only HTTP server over a feature store (a JSON
 * API and a page); `createViewerHandler()` is its request handler for tests and embedding.
 *
 * @module
 */

export {
  createViewerHandler,
  serveViewer,
  type ServeViewerOptions,
  type ViewerHandlerOptions,
  type ViewerServer,
} from "./server.ts";
