/**
 * The feature viewer: a read-only HTTP server over a {@linkcode FeatureStore} with a JSON API and
 * a page (plain HTML, CSS and an ES module, embedded in the program) that browses SAEs, their
 * feature lists and single features.
 *
 * @module
 */

import type { FeatureStore } from "../store/types.ts";
import { type ApiOptions, ViewerApi } from "./_api.ts";
import { ASSETS, PAGE } from "./_assets.ts";
import { HttpError, parseIndex, pathSegments } from "./_query.ts";

/** Options of {@linkcode createViewerHandler}. */
export interface ViewerHandlerOptions extends ApiOptions {
  /**
   * Host names the `Host` header may carry (a guard against DNS rebinding); absent: any. The
   * port is ignored. `serveViewer()` sets it to the loopback names when bound to loopback.
   */
  allowedHosts?: readonly string[];
}

/** Options of {@linkcode serveViewer}. */
export interface ServeViewerOptions extends ApiOptions {
  /** TCP port; default 8080; 0 picks a free one. */
  port?: number;
  /** Interface to bind; default `127.0.0.1` (loopback only). */
  host?: string;
  /** Aborting it shuts the server down. */
  signal?: AbortSignal;
  /** Called once listening; default: nothing is printed. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** A running viewer. */
export interface ViewerServer extends AsyncDisposable {
  /** The address it listens on (with the port actually bound). */
  readonly addr: Deno.NetAddr;
  /** Its base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Resolves when the server has shut down. */
  readonly finished: Promise<void>;
  /** Stops accepting connections and resolves when in-flight requests are done. */
  shutdown(): Promise<void>;
}

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

const PAGE_HEADERS = {
  ...SECURITY_HEADERS,
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "cache-control": "no-cache",
};

const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]", "::1"];

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      ...SECURITY_HEADERS,
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    },
  });
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The viewer's request handler: the JSON API and the page, reading the store only.
 *
 * Every API answer is JSON; errors are `{ "error": "<one line>" }` with status 400 (a bad path or
 * query value, naming it), 404 (unknown SAE, analysis, feature or route), 405 (a method other
 * than GET/HEAD: nothing writes) or 500. Path segments are percent-encoded.
 *
 * | Route | Query | Answer |
 * |---|---|---|
 * | `GET /api/saes` | | `{ saes: [{ series, name, d_sae, d_model, hook_point, model }] }` |
 * | `GET /api/saes/:series/:name` | `analysis` | `{ sae, analyses, analysis, counts: { total, alive, dead } }` |
 * | `GET /api/saes/:series/:name/analyses` | | `{ analyses }`: the analysis documents |
 * | `GET /api/saes/:series/:name/features` | `analysis`, `sort` (`index` \| `act_times` \| `max`), `order` (`asc` \| `desc`), `skip`, `limit` (1–500, default 50), `alive` (`true` \| `false` \| `all`), `q` (text in explanations, case-insensitive) | `{ series, name, analysis, sort, order, skip, limit, alive, q, total, features: [{ index, act_times, n_analyzed_tokens, frequency, max_activation, interpretation_text? }] }` |
 * | `GET /api/saes/:series/:name/features/:index` | | the feature document of DESIGN.md, as `saeflow show feature --json` prints it (samples with `token_strings`) |
 * | `GET /api/saes/:series/:name/frequencies` | `analysis`, `bins` (1–1000, default 50) | `{ series, name, analysis, n_analyzed_tokens, total, alive, dead, edges, counts }`: histogram of log10 frequency of the alive features |
 * | `GET /api/saes/:series/:name/random` | `analysis`, `alive` (default `true`) | `{ index }`: a random feature |
 *
 * Page routes (all serve the same page, which routes in the browser): `/`,
 * `/sae/:series/:name`, `/sae/:series/:name/feature/:index`; assets `/assets/app.js`,
 * `/assets/app.css`.
 *
 * @param store An open store; the handler only reads it and never closes it.
 * @param options Cache time and allowed hosts.
 * @returns A `(Request) => Promise<Response>` function, for `Deno.serve` or direct calls.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "../store/open.ts";
 * import { createViewerHandler } from "./server.ts";
 * await using store = await openStore({ outputDir: await Deno.makeTempDir() });
 * const handler = createViewerHandler(store);
 * const res = await handler(new Request("http://localhost/api/saes"));
 * assert.equal(JSON.stringify(await res.json()), '{"saes":[]}');
 * const missing = await handler(new Request("http://localhost/api/saes/s/n/features/0"));
 * assert.equal(missing.status, 404);
 * ```
 */
export function createViewerHandler(
  store: FeatureStore,
  options: ViewerHandlerOptions = {},
): (request: Request) => Promise<Response> {
  const api = new ViewerApi(store, options);
  const allowed = options.allowedHosts?.map((h) => h.toLowerCase());

  const route = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    if (allowed) {
      const host = (request.headers.get("host") ?? url.host).toLowerCase();
      const name = host.startsWith("[")
        ? host.slice(0, host.indexOf("]") + 1)
        : host.split(":")[0]!;
      if (!allowed.includes(name)) {
        throw new HttpError(403, `Host ${JSON.stringify(host)} is not allowed`);
      }
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      throw new HttpError(405, `Method ${request.method} not allowed: the viewer is read-only`);
    }
    const parts = pathSegments(url.pathname);
    const params = url.searchParams;
    if (parts[0] === "api") {
      const [, collection, series, name, sub, index, ...rest] = parts;
      if (collection === "saes" && series === undefined) return json(await api.listSaes());
      if (
        collection === "saes" && series !== undefined && name !== undefined && rest.length === 0
      ) {
        if (sub === undefined) return json(await api.sae(series, name, params));
        if (sub === "features" && index === undefined) {
          return json(await api.listFeatures(series, name, params));
        }
        if (sub === "features" && index !== undefined) {
          return json(await api.feature(series, name, parseIndex(index)));
        }
        if (index === undefined) {
          if (sub === "frequencies") return json(await api.frequencies(series, name, params));
          if (sub === "random") return json(await api.random(series, name, params));
          if (sub === "analyses") {
            await api.sae(series, name, new URLSearchParams());
            return json({ analyses: await store.listAnalyses(series, name) });
          }
        }
      }
      throw new HttpError(404, `No API route ${url.pathname}`);
    }
    if (parts[0] === "assets" && parts.length === 2) {
      const asset = Object.hasOwn(ASSETS, parts[1]!) ? ASSETS[parts[1]!] : undefined;
      if (asset) {
        return new Response(asset.body, {
          headers: { ...SECURITY_HEADERS, "content-type": asset.type, "cache-control": "no-cache" },
        });
      }
    }
    const isPage = parts.length === 0 ||
      (parts[0] === "sae" &&
        (parts.length === 3 || (parts.length === 5 && parts[3] === "feature")));
    if (isPage) {
      return new Response(PAGE.body, { headers: { ...PAGE_HEADERS, "content-type": PAGE.type } });
    }
    throw new HttpError(404, `Not found: ${url.pathname}`);
  };

  return async (request) => {
    try {
      return await route(request);
    } catch (error) {
      if (error instanceof HttpError) return json({ error: error.message }, error.status);
      const message = error instanceof Error ? error.message : String(error);
      console.error(`viewer: ${request.method} ${request.url}: ${message}`);
      return json({ error: `Internal error: ${message}` }, 500);
    }
  };
}

/**
 * Serves the viewer on Deno's HTTP server, bound to loopback unless `host` says otherwise. When
 * bound to loopback, requests whose `Host` is not a loopback name are refused (403).
 *
 * @param store An open store; the server only reads it and never closes it.
 * @param options Port (default 8080), host (default `127.0.0.1`), abort signal, listen callback.
 * @returns The running server; `await server.shutdown()` (or `await using`) stops it.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "../store/open.ts";
 * import { serveViewer } from "./server.ts";
 * await using store = await openStore({ outputDir: await Deno.makeTempDir() });
 * await using server = serveViewer(store, { port: 0 });
 * const res = await fetch(`${server.url}/api/saes`);
 * assert.equal(res.status, 200);
 * assert.equal((await res.json()).saes.length, 0);
 * ```
 */
export function serveViewer(store: FeatureStore, options: ServeViewerOptions = {}): ViewerServer {
  const hostname = options.host ?? "127.0.0.1";
  const handlerOptions: ViewerHandlerOptions = {};
  if (options.cacheMs !== undefined) handlerOptions.cacheMs = options.cacheMs;
  if (isLoopback(hostname)) handlerOptions.allowedHosts = [...LOOPBACK_NAMES, hostname];
  const handler = createViewerHandler(store, handlerOptions);
  const server = Deno.serve({
    port: options.port ?? 8080,
    hostname,
    ...(options.signal ? { signal: options.signal } : {}),
    onListen: (addr) => options.onListen?.(addr as Deno.NetAddr),
  }, handler);
  const addr = server.addr as Deno.NetAddr;
  const urlHost = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return {
    addr,
    url: `http://${urlHost}:${addr.port}`,
    finished: server.finished,
    shutdown: () => server.shutdown(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
