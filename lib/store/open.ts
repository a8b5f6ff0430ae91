/**
 * Opens the store a run or a command should use: MongoDB when a `[mongo]` configuration is
 * given, else the SQLite file under `output_dir`.
 *
 * @module
 */

import { MongoFeatureStore, type MongoStoreOptions } from "./mongo.ts";
import { SqliteFeatureStore } from "./sqlite.ts";
import type { FeatureStore } from "./types.ts";

/** Where the store is: a MongoDB configuration, or the folder of the SQLite file. */
export interface OpenStoreOptions {
  /** MongoDB URI (a bare host is accepted), database name and timeout (default 5000 ms). */
  mongo?: MongoStoreOptions;
  /** The folder that holds `saeflow.sqlite` when `mongo` is absent; default `.`. */
  outputDir?: string;
}

/**
 * Opens a {@linkcode FeatureStore}: MongoDB when `mongo` is given, else SQLite in `outputDir`.
 *
 * @param options Where the store is.
 * @returns The open store; close it (or `await using`).
 * @throws {StoreUnavailableError} When the server cannot be reached or the file opened.
 * @throws {ConfigError} For a malformed MongoDB URI or database name.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "./open.ts";
 * const dir = await Deno.makeTempDir();
 * await using store = await openStore({ outputDir: dir });
 * assert(store.location.endsWith("saeflow.sqlite"));
 * ```
 */
export async function openStore(options: OpenStoreOptions): Promise<FeatureStore> {
  if (options.mongo) return await MongoFeatureStore.open(options.mongo);
  return SqliteFeatureStore.open({ outputDir: options.outputDir ?? "." });
}
