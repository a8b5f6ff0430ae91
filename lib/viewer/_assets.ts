/**
 * The page's static assets, embedded at build time through text imports (stable since Deno 2.8
 * and embedded by `deno compile`), so the viewer reads no local file at run time.
 *
 * @module
 */

import indexHtml from "./assets/index.html" with { type: "text" };
import appJs from "./assets/app.js" with { type: "text" };
import appCss from "./assets/app.css" with { type: "text" };

/** A static asset: its body and content type. */
export interface Asset {
  body: string;
  type: string;
}

/** The page shell, served for every page route. */
export const PAGE: Asset = { body: indexHtml, type: "text/html; charset=utf-8" };

/** Assets under `/assets/`, by file name. */
export const ASSETS: Record<string, Asset> = {
  "app.js": { body: appJs, type: "text/javascript; charset=utf-8" },
  "app.css": { body: appCss, type: "text/css; charset=utf-8" },
};
