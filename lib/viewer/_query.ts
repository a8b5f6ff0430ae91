/**
 * Request parsing for the viewer's JSON API: path segments and query values, each checked, with
 * an {@linkcode HttpError} (status 400) that names the offending parameter and value.
 *
 * @module
 */

/** An error with an HTTP status; the handler answers `{ "error": message }` with that status. */
export class HttpError extends Error {
  /** The HTTP status to answer with. */
  readonly status: number;

  /** Creates an HTTP error with a status and a one-line message. */
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
  }
}

/** The sort keys the API accepts, mapped to the store's. */
const SORTS = {
  index: "index",
  act_times: "act_times",
  max: "max_activation",
  max_activation: "max_activation",
} as const;

/** A feature-list query after validation. */
export interface ListQuery {
  /** The analysis name, when the request names one. */
  analysis?: string;
  sort: "index" | "act_times" | "max_activation";
  order: "asc" | "desc";
  skip: number;
  limit: number;
  /** `true` alive only, `false` dead only, absent all. */
  alive?: boolean;
  /** Lower-cased text to find in explanations; absent or empty: no search. */
  q?: string;
}

/** Largest page a list request may ask for. */
export const MAX_LIMIT = 500;
/** Page size when the request gives none. */
export const DEFAULT_LIMIT = 50;
/** Longest accepted search text. */
export const MAX_QUERY_LENGTH = 200;

/**
 * Splits a URL path into decoded segments (empty segments dropped).
 *
 * @throws {HttpError} 400 when a segment is not valid percent-encoding.
 */
export function pathSegments(pathname: string): string[] {
  return pathname.split("/").filter((s) => s.length > 0).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new HttpError(400, `Invalid percent-encoding in path segment ${JSON.stringify(s)}`);
    }
  });
}

/**
 * Parses a feature index from a path segment: a non-negative decimal integer below 2^31.
 *
 * @throws {HttpError} 400 otherwise.
 */
export function parseIndex(text: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0x7fffffff) {
    throw new HttpError(
      400,
      `Invalid feature index ${JSON.stringify(text)}: expected an integer >= 0`,
    );
  }
  return Number(text);
}

/**
 * Reads an integer query parameter in `[min, max]`, or `fallback` when absent.
 *
 * @throws {HttpError} 400 when present but not such an integer.
 */
export function intParam(
  params: URLSearchParams,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = params.get(key);
  if (raw === null) return fallback;
  const n = /^-?\d{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new HttpError(
      400,
      `Invalid ${key} ${JSON.stringify(raw)}: expected an integer from ${min} to ${max}`,
    );
  }
  return n;
}

/**
 * Reads the optional `analysis` parameter: a non-empty name when present.
 *
 * @throws {HttpError} 400 when present and empty.
 */
export function analysisParam(params: URLSearchParams): string | undefined {
  const raw = params.get("analysis");
  if (raw === null) return undefined;
  if (raw.length === 0) throw new HttpError(400, 'Invalid analysis "": expected a name');
  return raw;
}

/**
 * Reads the optional `alive` parameter: `true` / `alive`, `false` / `dead`, or `all` / absent.
 *
 * @throws {HttpError} 400 for any other value.
 */
export function aliveParam(params: URLSearchParams): boolean | undefined {
  const raw = params.get("alive");
  if (raw === null || raw === "all") return undefined;
  if (raw === "true" || raw === "alive") return true;
  if (raw === "false" || raw === "dead") return false;
  throw new HttpError(400, `Invalid alive ${JSON.stringify(raw)}: expected true, false or all`);
}

/**
 * Parses the query of a feature-list request (`analysis`, `sort`, `order`, `skip`, `limit`,
 * `alive`, `q`).
 *
 * @throws {HttpError} 400 naming the first bad value.
 */
export function parseListQuery(params: URLSearchParams): ListQuery {
  const rawSort = params.get("sort") ?? "index";
  if (!Object.hasOwn(SORTS, rawSort)) {
    throw new HttpError(
      400,
      `Invalid sort ${JSON.stringify(rawSort)}: expected index, act_times or max`,
    );
  }
  const sort = SORTS[rawSort as keyof typeof SORTS];
  const rawOrder = params.get("order") ?? (sort === "index" ? "asc" : "desc");
  if (rawOrder !== "asc" && rawOrder !== "desc") {
    throw new HttpError(400, `Invalid order ${JSON.stringify(rawOrder)}: expected asc or desc`);
  }
  const query: ListQuery = {
    sort,
    order: rawOrder,
    skip: intParam(params, "skip", 0, 0, Number.MAX_SAFE_INTEGER),
    limit: intParam(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
  };
  const analysis = analysisParam(params);
  if (analysis !== undefined) query.analysis = analysis;
  const alive = aliveParam(params);
  if (alive !== undefined) query.alive = alive;
  const q = params.get("q")?.trim() ?? "";
  if (q.length > MAX_QUERY_LENGTH) {
    throw new HttpError(400, `Invalid q: longer than ${MAX_QUERY_LENGTH} characters`);
  }
  if (q.length > 0) query.q = q.toLowerCase();
  return query;
}
