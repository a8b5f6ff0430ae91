/**
 * How every command that reads the store finds it (DESIGN.md, "Store"): `--mongo-uri` /
 * `--mongo-db`, else `--output-dir`, else `--config FILE` (its `[mongo]` table, else its
 * `output_dir`), else the `MONGO_URI` environment variable, else `./analysis_results`. How long
 * to wait for MongoDB: `--mongo-timeout-ms`, else the config's `[mongo] timeout_ms`, else
 * `MONGO_TIMEOUT_MS`, else the store's default (5000 ms).
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { readSettingsFile } from "../settings/mod.ts";
import { type OpenStoreOptions, SQLITE_FILE_NAME } from "../store/mod.ts";

/** Store options as given on the command line. */
export interface StoreFlags {
  /** A settings file whose `[mongo]` table or `output_dir` names the store. */
  config?: string;
  /** MongoDB URI (a bare host is accepted). */
  mongoUri?: string;
  /** MongoDB database name (default `mechinterp`). */
  mongoDb?: string;
  /** The folder of the embedded SQLite store. */
  outputDir?: string;
  /** How long to wait for MongoDB, in milliseconds (a positive integer, as typed). */
  mongoTimeoutMs?: string;
}

/** The default output folder, as in the settings (`output_dir`). */
export const DEFAULT_OUTPUT_DIR = "analysis_results";

/**
 * Resolves store flags to {@linkcode OpenStoreOptions}.
 *
 * @param flags the command-line flags.
 * @param env the environment (`MONGO_URI`, `MONGO_DB`); default: the process environment.
 * @returns where the store is.
 * @throws {ConfigError} when the config file cannot be read or parsed (as `loadSettings` says it).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveStoreLocation } from "./store_location.ts";
 * const where = await resolveStoreLocation({ outputDir: "out" }, {});
 * assert(where.outputDir?.endsWith("out") && where.mongo === undefined);
 * ```
 */
export async function resolveStoreLocation(
  flags: StoreFlags,
  env: Readonly<Record<string, string | undefined>> = Deno.env.toObject(),
): Promise<OpenStoreOptions> {
  const mongoDb = flags.mongoDb ?? env.MONGO_DB;
  let timeoutMs = parseTimeout("--mongo-timeout-ms", flags.mongoTimeoutMs) ??
    parseTimeout("MONGO_TIMEOUT_MS", env.MONGO_TIMEOUT_MS);
  const mongo = (uri: string, db: string | undefined) => ({
    uri,
    db: db ?? "mechinterp",
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  if (flags.mongoUri) return { mongo: mongo(flags.mongoUri, mongoDb) };
  if (flags.outputDir) return { outputDir: resolve(flags.outputDir) };
  if (flags.config) {
    const doc = await readSettingsFile(flags.config);
    const table = doc.mongo as Record<string, unknown> | undefined;
    if (table && typeof table === "object") {
      const uri = typeof table.mongo_uri === "string"
        ? table.mongo_uri
        : env.MONGO_URI ?? "mongodb://localhost:27017/";
      const db = typeof table.mongo_db === "string" ? table.mongo_db : mongoDb;
      if (flags.mongoTimeoutMs === undefined && table.timeout_ms !== undefined) {
        timeoutMs = parseTimeout(`${flags.config}: mongo.timeout_ms`, table.timeout_ms);
      }
      return { mongo: mongo(uri, db) };
    }
    if (env.MONGO_URI) return { mongo: mongo(env.MONGO_URI, mongoDb) };
    const out = typeof doc.output_dir === "string" ? doc.output_dir : DEFAULT_OUTPUT_DIR;
    // output_dir is relative to the working directory, as for the runners.
    return { outputDir: isAbsolute(out) ? out : resolve(out) };
  }
  if (env.MONGO_URI) return { mongo: mongo(env.MONGO_URI, mongoDb) };
  return { outputDir: resolve(DEFAULT_OUTPUT_DIR) };
}

function parseTimeout(where: string, value: unknown): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = typeof value === "string" ? Number(value.trim()) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n <= 0) {
    throw new ConfigError(
      `${where}: expected a positive integer (milliseconds), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/**
 * Checks that a store to be read exists, so that a mistyped `--output-dir` is reported instead
 * of silently creating an empty store there. MongoDB locations are not checked here (an
 * unreachable server is reported when connecting).
 *
 * @param where the resolved location.
 * @throws {ConfigError} when `where.outputDir` holds no `saeflow.sqlite`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError } from "../errors.ts";
 * import { requireExistingStore } from "./store_location.ts";
 * const dir = await Deno.makeTempDir();
 * await assert.rejects(
 *   requireExistingStore({ outputDir: dir }),
 *   (e) => e instanceof ConfigError && e.message.includes("no saeflow store"),
 * );
 * await Deno.remove(dir);
 * ```
 */
export async function requireExistingStore(where: OpenStoreOptions): Promise<void> {
  if (where.mongo !== undefined) return;
  const dir = where.outputDir ?? ".";
  const file = join(dir, SQLITE_FILE_NAME);
  try {
    const info = await Deno.stat(file);
    if (info.isFile) return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      const why = error instanceof Error ? error.message : String(error);
      throw new ConfigError(`Cannot read the store ${file}: ${why}`, { cause: error });
    }
  }
  throw new ConfigError(
    `${dir}: no saeflow store here (${SQLITE_FILE_NAME} not found); ` +
      "pass the output_dir of an analysis with --output-dir, or --mongo-uri / --config",
  );
}
