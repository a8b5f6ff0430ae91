/**
 * MongoDB connection strings as users write them: the settings (`mongo_uri = "localhost"`, the
 * Python tool's spelling), `MONGO_URI` and the `--mongo-uri` flag all go through
 * {@linkcode normalizeMongoUri}.
 *
 * @module
 */

import { ConfigError } from "./errors.ts";

/**
 * Normalizes a MongoDB connection string. `mongodb://` and `mongodb+srv://` URIs are kept as
 * they are (trimmed); a bare host (`"localhost"`), `host:port` or `user:pass@host[:port]` gets
 * the scheme, the default port 27017 when none is given, and a trailing `/`.
 *
 * @param value a URI or host as written in a settings file, `MONGO_URI` or `--mongo-uri`.
 * @returns the normalized URI.
 * @throws {ConfigError} for another scheme, an empty value, spaces or a malformed host list
 *   (the message never holds the password).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeMongoUri } from "./mongo_uri.ts";
 * import { ConfigError } from "./errors.ts";
 * assert.equal(normalizeMongoUri("localhost"), "mongodb://localhost:27017/");
 * assert.equal(normalizeMongoUri("db.example:27018"), "mongodb://db.example:27018/");
 * assert.equal(normalizeMongoUri("mongodb://h:1/x"), "mongodb://h:1/x");
 * assert.throws(() => normalizeMongoUri("http://x"), ConfigError);
 * ```
 */
export function normalizeMongoUri(value: string): string {
  const v = value.trim();
  if (v === "") throw new ConfigError("Invalid MongoDB URI: it is empty");
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(v);
  if (scheme && !/^mongodb(\+srv)?$/i.test(scheme[1]!)) {
    throw new ConfigError(
      `Invalid MongoDB URI scheme "${scheme[1]}://": expected mongodb:// or mongodb+srv://`,
    );
  }
  const complete = completeMongoUri(v);
  if (complete === undefined) {
    throw new ConfigError(
      `Invalid MongoDB URI "${
        hidePassword(v)
      }": expected mongodb://host[:port]/ or a bare host[:port]`,
    );
  }
  return complete;
}

/** The URI with scheme, port and `/` completed, or undefined when it is not one. */
function completeMongoUri(v: string): string | undefined {
  if (/\s/.test(v)) return undefined;
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

/** `uri` without `//user:pw@` and with its password (raw and decoded) replaced by `****`. */
function hidePassword(uri: string): string {
  return redactCredentials(uri, uri);
}

/**
 * `message` without any `//user:pw@` and with the password of `uri` (raw and URL-decoded)
 * replaced by `****`: for errors of a driver that may quote the connection string or its parts.
 *
 * @param message The text to clean.
 * @param uri The connection string whose password must not appear.
 * @returns The cleaned text.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactCredentials } from "./mongo_uri.ts";
 * const uri = "mongodb://ann:p%40ss@db:27017/";
 * assert.equal(redactCredentials("auth failed for p@ss at " + uri, uri), "auth failed for **** at mongodb://db:27017/");
 * ```
 */
export function redactCredentials(message: string, uri: string): string {
  let out = message.replace(/\/\/[^/@\s]*@/g, "//");
  const rest = uri.replace(/^[a-z+]+:\/\//i, "");
  const end = rest.search(/[/?]/);
  const auth = end === -1 ? rest : rest.slice(0, end);
  const userinfo = auth.slice(0, Math.max(auth.lastIndexOf("@"), 0));
  const colon = userinfo.indexOf(":");
  if (colon !== -1) {
    const raw = userinfo.slice(colon + 1);
    let decoded = raw;
    try {
      decoded = decodeURIComponent(raw);
    } catch { /* keep raw */ }
    for (const secret of new Set([raw, decoded])) {
      if (secret.length > 0) out = out.replaceAll(secret, "****");
    }
  }
  return out;
}
