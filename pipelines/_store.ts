/**
 * Opening the store the settings name, and the plain-JSON copies runners store as documents.
 *
 * @module
 */

import type { MongoDBConfig } from "../lib/settings/mod.ts";
import type { FeatureStore } from "../lib/store/mod.ts";
import { openStore } from "../lib/store/mod.ts";

/** The settings that say where the store is. */
export interface StoreSettings {
  /** `[mongo]`, or null for the embedded SQLite store. */
  mongo: MongoDBConfig | null;
  /** The folder that holds `saeflow.sqlite` when `mongo` is null (absolute once resolved). */
  output_dir: string;
}

/**
 * Opens the store the settings name: MongoDB when `[mongo]` is given (`MONGO_URI` fills it at
 * load time), else the SQLite file under `output_dir`.
 *
 * @param settings Resolved settings (any kind).
 * @returns The open store; close it (or `await using`).
 * @throws {StoreUnavailableError} When the server cannot be reached or the file opened.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSettingsStore } from "./_store.ts";
 * const dir = await Deno.makeTempDir();
 * await using store = await openSettingsStore({ mongo: null, output_dir: dir });
 * assert(store.location.startsWith(dir));
 * ```
 */
export async function openSettingsStore(settings: StoreSettings): Promise<FeatureStore> {
  const mongo = settings.mongo;
  if (mongo) {
    return await openStore({
      mongo: { uri: mongo.mongo_uri, db: mongo.mongo_db, timeoutMs: mongo.timeout_ms },
    });
  }
  return await openStore({ outputDir: settings.output_dir });
}

/**
 * A plain-JSON copy of a value (typed arrays and class instances dropped to what JSON keeps),
 * as stored in a document's `config` or `settings`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { jsonData } from "./_store.ts";
 * assert.equal(JSON.stringify(jsonData({ a: 1, b: undefined })), '{"a":1}');
 * ```
 */
export function jsonData(value: object): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}
