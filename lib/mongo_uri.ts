/**
 * MongoDB connection strings as users write them: the settings (`mongo_uri = "localhost"`, the
 * Python tool's spelling), `MONGO_URI` and the `--mongo-uri` flag all go through
 * {@linkcode normalizeMongoUri}.
 *
 * @module
 */

/**
 * Normalizes a MongoDB connection string. `mongodb://` and `mongodb+srv://` URIs are kept as
 * they are; a bare host (`"localhost"`), `host:port` or `user:pass@host[:port]` gets the scheme,
 * the default port 27017 when none is given, and a trailing `/`. Returns undefined for anything
 * else (another scheme, an empty string, spaces).
 *
 * @param value a URI or host as written in a settings file or `MONGO_URI`.
 * @returns the normalized URI, or undefined.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeMongoUri } from "./mongo_uri.ts";
 * assert(normalizeMongoUri("localhost") === "mongodb://localhost:27017/");
 * assert(normalizeMongoUri("db.example:27018") === "mongodb://db.example:27018/");
 * assert(normalizeMongoUri("http://x") === undefined);
 * ```
 */
export function normalizeMongoUri(value: string): string | undefined {
  const v = value.trim();
  if (v === "" || /\s/.test(v)) return undefined;
  if (/^mongodb(\+srv)?:\/\/[^/?#]+/i.test(v)) return v;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return undefined;
  const slash = v.indexOf("/");
  const authority = slash < 0 ? v : v.slice(0, slash);
  const rest = slash < 0 ? "/" : v.slice(slash);
  const at = authority.lastIndexOf("@");
  const hosts = authority.slice(at + 1);
  if (
    !/^(\[[0-9a-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?(,(\[[0-9a-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?)*$/i
      .test(hosts)
  ) {
    return undefined;
  }
  const withPorts = hosts.split(",").map((h) => /:\d+$/.test(h) ? h : `${h}:27017`).join(",");
  return `mongodb://${authority.slice(0, at + 1)}${withPorts}${rest}`;
}
