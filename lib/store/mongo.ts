/**
 * The server store: MongoDB through `npm:mongodb` (the only module of saeflow that imports it).
 *
 * Collections `saes`, `models`, `datasets`, `analyses` and `features`, the last with one document
 * per `(sae_series, sae_name, index)` (unique index) in the shape of DESIGN.md. Typed arrays are
 * BSON Binary (little-endian bytes, subtype = dtype tag, see `_codec.ts`), never arrays of
 * numbers. Numbers FerretDB refuses (NaN, ±Infinity) and `-0` are kept as 8-byte binary
 * scalars; object keys are escaped (`.` → `%2E`, a leading `$` → `%24`, `%` → `%25`).
 *
 * Feature writes, in batches of {@linkcode WRITE_BATCH} records: an unordered `insertMany` of
 * whole documents with `_id` = `["<series>","<name>",<index>]` (the fast path of a first run),
 * then, for the features that already existed (duplicate key), ordered bulk `updateOne`s with
 * upsert that `$set` `analyses.<name>`, `logits` and `interpretation` — so re-running replaces
 * and never duplicates. Feature lookups go by `(sae_series, sae_name, index)`, except on FerretDB
 * (detected through `buildInfo`), which only looks up `_id` without scanning the collection and
 * stalls on update commands of 100 operations or more: there lookups go by `_id` and updates
 * are sent 50 at a time.
 *
 * Analyzer states (sharded runs) are kept as pieces of at most 8 MiB (half the 16 MiB document
 * limit) in `analyzer_state_chunks`, `_id` = `<generation>:<seq>`, and one manifest per
 * `(sae_series, sae_name, analysis, shard, count)` in `analyzer_states` naming the generation and
 * its piece count. A put inserts the pieces of a fresh generation, then replaces the manifest (one
 * single-document write: the moment the new state becomes visible), then deletes the old
 * generation's pieces. Only ordinary CRUD, so FerretDB runs it; pieces are read by `_id`.
 *
 * @module
 */

import {
  Binary,
  type Collection,
  type Db,
  type Document,
  type Filter,
  type FindCursor,
  MongoBulkWriteError,
  MongoClient,
  type MongoClientOptions,
  MongoServerError,
} from "mongodb";
import { ConfigError, StoreUnavailableError } from "../errors.ts";
import { normalizeMongoUri } from "../mongo_uri.ts";
import type { FeatureRecord } from "../types.ts";
import { decodeValue, encodeValue, escapeKey } from "./_codec.ts";
import {
  checkAnalysisName,
  checkIndex,
  checkRecord,
  indexPages,
  makeRecord,
  pagedStream,
  resolveListOptions,
  resolvePageSize,
  WRITE_BATCH,
} from "./_common.ts";
import { checkStateKey, pieces } from "./_state.ts";
import {
  type AnalysisDoc,
  type AnalyzerStateInfo,
  type AnalyzerStateKey,
  type DatasetDoc,
  type FeatureFilter,
  type FeatureListOptions,
  type FeatureStore,
  type FeatureSummary,
  type ModelDoc,
  type ReadFeaturesOptions,
  type RemoveAnalysisResult,
  type RemoveSaeResult,
  type SaeDoc,
  STATE_CHUNK_BYTES,
} from "./types.ts";

/** Default time to reach the server, in milliseconds. */
export const DEFAULT_MONGO_TIMEOUT_MS = 5000;

/** Options of {@linkcode MongoFeatureStore.open}. */
export interface MongoStoreOptions {
  /** A MongoDB connection string; a bare host (`localhost`, `db.example:27018`) is accepted. */
  uri: string;
  /** The database name. */
  db: string;
  /** How long to try to reach the server before giving up; default 5000 ms. */
  timeoutMs?: number;
}

export { normalizeMongoUri };

/** The authority part (`user:pw@h1:p1,h2`) of a connection string. */
function authority(uri: string): { userinfo: string; hosts: string; srv: boolean } {
  const srv = /^mongodb\+srv:\/\//i.test(uri);
  const rest = uri.replace(/^[a-z+]+:\/\//i, "");
  const end = rest.search(/[/?]/);
  const auth = end === -1 ? rest : rest.slice(0, end);
  const at = auth.lastIndexOf("@");
  return { userinfo: at === -1 ? "" : auth.slice(0, at), hosts: auth.slice(at + 1), srv };
}

/**
 * The hosts of a connection string as `host:port` (default port 27017), without credentials.
 *
 * @param uri A connection string (normalized or bare).
 * @returns E.g. `localhost:27017` or `a:1,b:2`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mongoHosts } from "./mongo.ts";
 * assert.equal(mongoHosts("mongodb://u:secret@db1,db2:27018/x"), "db1:27017,db2:27018");
 * ```
 */
export function mongoHosts(uri: string): string {
  const { hosts, srv } = authority(normalizeMongoUri(uri));
  if (srv) return hosts;
  return hosts.split(",").map((h) => (/:\d+$/.test(h) ? h : `${h}:27017`)).join(",");
}

/** Removes the credentials of `uri` (and any `//user:pw@`) from a message. */
function redact(message: string, uri: string): string {
  let out = message.replace(/\/\/[^/@\s]*@/g, "//");
  const { userinfo } = authority(uri);
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

/**
 * The driver options of a store's `MongoClient`: `timeoutMs` bounds both server selection (how
 * long an operation waits for a reachable server) and each connection attempt, so that
 * {@linkcode MongoFeatureStore.open} gives up on an unreachable server after about `timeoutMs`.
 *
 * @param timeoutMs How long to try to reach the server, in milliseconds.
 * @returns The options `MongoFeatureStore.open` creates its client with.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mongoClientOptions } from "./mongo.ts";
 * const o = mongoClientOptions(1500);
 * assert.equal(o.serverSelectionTimeoutMS, 1500);
 * assert.equal(o.connectTimeoutMS, 1500);
 * ```
 */
export function mongoClientOptions(timeoutMs: number): MongoClientOptions {
  return {
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
    ignoreUndefined: true,
    appName: "saeflow",
  };
}

function checkDbName(db: string): string {
  if (typeof db !== "string" || db.length === 0 || db.length > 63 || /[/\\. "$*<>:|?\0]/.test(db)) {
    throw new ConfigError(
      `Invalid MongoDB database name ${
        JSON.stringify(db)
      }: use 1–63 characters without /\\. "$*<>:|?`,
    );
  }
  return db;
}

/** The server error code of a cursor it no longer knows (e.g. timed out). */
const CURSOR_NOT_FOUND = 43;

/** A stored feature document (keyed by {@linkcode featureId}). */
type FeatureDocument = Document & { _id: string };

/** Update operations per bulk write on FerretDB (it stalls on 100 or more). */
const FERRETDB_UPDATE_BATCH = 50;

/**
 * The `_id` of a feature document: `["<series>","<name>",<index>]` as JSON. Lookups by `_id` are
 * the only ones FerretDB 1.x answers without scanning the collection.
 */
function featureId(series: string, name: string, index: number): string {
  return JSON.stringify([series, name, index]);
}

/**
 * The update of an existing feature: `$set` of the given paths; on an upsert (a document that
 * vanished since the insert attempt) the document gets `_id` (when not already in the filter)
 * and an empty `analyses` when nothing else is set. Empty operators are left out.
 */
function updateOf(set: Document, id: string | undefined): Document {
  const onInsert: Document = {};
  if (id !== undefined) onInsert._id = id;
  if (Object.keys(set).length === 0) onInsert.analyses = {};
  const update: Document = {};
  if (Object.keys(set).length > 0) update.$set = set;
  if (Object.keys(onInsert).length > 0) update.$setOnInsert = onInsert;
  return update;
}

function encode(value: unknown): Document {
  return encodeValue(value, (tag, bytes) => new Binary(bytes, tag)) as Document;
}

function decode<T>(doc: Document | null): T | null {
  if (doc === null) return null;
  const { _id: _, ...rest } = doc;
  return decodeValue(
    rest,
    (v) =>
      v instanceof Binary ? { tag: v.sub_type, bytes: v.buffer.subarray(0, v.position) } : null,
  ) as T;
}

/**
 * The MongoDB implementation of {@linkcode FeatureStore}.
 *
 * @example
 * ```ts ignore
 * import { MongoFeatureStore } from "./mongo.ts";
 * await using store = await MongoFeatureStore.open({ uri: "localhost", db: "saeflow" });
 * console.log(await store.listSaes());
 * ```
 */
export class MongoFeatureStore implements FeatureStore {
  /** `mongodb://host:port/db`, without credentials. */
  readonly location: string;
  #client: MongoClient;
  #db: Db;
  #indexed = new Set<string>();
  #closed = false;
  #ferret: boolean;
  #updateBatch: number;

  private constructor(client: MongoClient, db: Db, location: string, ferret: boolean) {
    this.#client = client;
    this.#db = db;
    this.location = location;
    this.#ferret = ferret;
    // FerretDB 1.x stalls on update commands of 100 operations or more.
    this.#updateBatch = ferret ? FERRETDB_UPDATE_BATCH : WRITE_BATCH;
  }

  /**
   * Connects, checks the server answers, and creates the indexes.
   *
   * @param options The URI, the database name and the timeout.
   * @returns The open store.
   * @throws {StoreUnavailableError} When the server cannot be reached within `timeoutMs`; the
   * message names the host:port and the timeout, never the password.
   * @throws {ConfigError} For a malformed URI or database name.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MongoFeatureStore } from "./mongo.ts";
   * import { StoreUnavailableError } from "../errors.ts";
   * try {
   *   await MongoFeatureStore.open({ uri: "mongodb://127.0.0.1:1/", db: "x", timeoutMs: 200 });
   * } catch (e) {
   *   assert(e instanceof StoreUnavailableError);
   * }
   * ```
   */
  static async open(options: MongoStoreOptions): Promise<MongoFeatureStore> {
    const uri = normalizeMongoUri(options.uri);
    const dbName = checkDbName(options.db);
    const timeoutMs = options.timeoutMs ?? DEFAULT_MONGO_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new ConfigError(`Invalid MongoDB timeout ${timeoutMs} ms: expected a positive number`);
    }
    const hosts = mongoHosts(uri);
    let client: MongoClient;
    try {
      client = new MongoClient(uri, mongoClientOptions(timeoutMs));
    } catch (error) {
      const why = redact(error instanceof Error ? error.message : String(error), uri);
      throw new ConfigError(`Invalid MongoDB URI for ${hosts}: ${why}`);
    }
    let step = "reach";
    try {
      await client.connect();
      const db = client.db(dbName);
      await db.command({ ping: 1 });
      const info = await db.admin().command({ buildInfo: 1 });
      const ferret = typeof info.ferretdbVersion === "string";
      step = "prepare";
      await Promise.all([
        db.collection("features").createIndex(
          { sae_series: 1, sae_name: 1, index: 1 },
          { unique: true, name: "feature_key" },
        ),
        db.collection("saes").createIndex({ series: 1, name: 1 }, {
          unique: true,
          name: "sae_key",
        }),
        db.collection("models").createIndex({ name: 1 }, { unique: true, name: "model_key" }),
        db.collection("datasets").createIndex({ name: 1 }, { unique: true, name: "dataset_key" }),
        db.collection("analyses").createIndex(
          { sae_series: 1, sae_name: 1, name: 1 },
          { unique: true, name: "analysis_key" },
        ),
      ]);
      return new MongoFeatureStore(client, db, `mongodb://${hosts}/${dbName}`, ferret);
    } catch (error) {
      await client.close().catch(() => {});
      const why = redact(error instanceof Error ? error.message : String(error), uri);
      const message = step === "reach"
        ? `Cannot reach MongoDB at ${hosts} within ${timeoutMs} ms: ${why}`
        : `Cannot prepare MongoDB database ${dbName} at ${hosts}: ${why}`;
      throw new StoreUnavailableError(message, { cause: new Error(why) });
    }
  }

  get #features(): Collection<FeatureDocument> {
    return this.#db.collection<FeatureDocument>("features");
  }

  /** Creates the listing indexes of an analysis name once per store (best effort). */
  async #indexAnalysis(name: string): Promise<void> {
    if (this.#indexed.has(name)) return;
    this.#indexed.add(name);
    const path = `analyses.${escapeKey(name)}`;
    for (const field of ["act_times", "max_activation"]) {
      try {
        await this.#features.createIndex({
          sae_series: 1,
          sae_name: 1,
          [`${path}.${field}`]: -1,
          index: 1,
        });
      } catch {
        // Only a speed-up: a server that refuses (e.g. too many indexes) still sorts correctly.
      }
    }
  }

  // --- SAEs, models, datasets, analyses -------------------------------------------------------

  /** Inserts or replaces an SAE document. */
  async putSae(doc: SaeDoc): Promise<void> {
    await this.#db.collection("saes").replaceOne(
      { series: doc.series, name: doc.name },
      encode(doc),
      {
        upsert: true,
      },
    );
  }

  /** The SAE document, or null. */
  async getSae(series: string, name: string): Promise<SaeDoc | null> {
    return decode<SaeDoc>(await this.#db.collection("saes").findOne({ series, name }));
  }

  /** All SAE documents (of one series when given), ordered by series then name. */
  async listSaes(series?: string): Promise<SaeDoc[]> {
    const docs = await this.#db.collection("saes").find(series === undefined ? {} : { series })
      .sort({ series: 1, name: 1 }).toArray();
    return docs.map((d) => decode<SaeDoc>(d)!);
  }

  /** Removes an SAE with its feature and analysis documents. */
  async removeSae(series: string, name: string): Promise<RemoveSaeResult> {
    const features = await this.#features.deleteMany({ sae_series: series, sae_name: name });
    const analyses = await this.#db.collection("analyses").deleteMany({
      sae_series: series,
      sae_name: name,
    });
    await this.#db.collection("analyzer_states").deleteMany({ sae_series: series, sae_name: name });
    await this.#db.collection("analyzer_state_chunks").deleteMany({
      sae_series: series,
      sae_name: name,
    });
    const sae = await this.#db.collection("saes").deleteOne({ series, name });
    return {
      sae: sae.deletedCount > 0,
      analyses: analyses.deletedCount,
      features: features.deletedCount,
    };
  }

  /** Inserts or replaces a model document. */
  async putModel(doc: ModelDoc): Promise<void> {
    await this.#db.collection("models").replaceOne({ name: doc.name }, encode(doc), {
      upsert: true,
    });
  }

  /** The model document, or null. */
  async getModel(name: string): Promise<ModelDoc | null> {
    return decode<ModelDoc>(await this.#db.collection("models").findOne({ name }));
  }

  /** Inserts or replaces a dataset document. */
  async putDataset(doc: DatasetDoc): Promise<void> {
    await this.#db.collection("datasets").replaceOne({ name: doc.name }, encode(doc), {
      upsert: true,
    });
  }

  /** The dataset document, or null. */
  async getDataset(name: string): Promise<DatasetDoc | null> {
    return decode<DatasetDoc>(await this.#db.collection("datasets").findOne({ name }));
  }

  /** Inserts or replaces an analysis document. */
  async putAnalysis(doc: AnalysisDoc): Promise<void> {
    checkAnalysisName(doc.name);
    await this.#db.collection("analyses").replaceOne(
      { sae_series: doc.sae_series, sae_name: doc.sae_name, name: doc.name },
      encode(doc),
      { upsert: true },
    );
    await this.#indexAnalysis(doc.name);
  }

  /** The analysis document, or null. */
  async getAnalysis(series: string, saeName: string, name: string): Promise<AnalysisDoc | null> {
    return decode<AnalysisDoc>(
      await this.#db.collection("analyses").findOne({
        sae_series: series,
        sae_name: saeName,
        name,
      }),
    );
  }

  /** The analysis documents of an SAE, ordered by name. */
  async listAnalyses(series: string, saeName: string): Promise<AnalysisDoc[]> {
    const docs = await this.#db.collection("analyses").find({
      sae_series: series,
      sae_name: saeName,
    }).sort({ name: 1 }).toArray();
    return docs.map((d) => decode<AnalysisDoc>(d)!);
  }

  /** Removes `analyses.<name>` from every feature of the SAE, and the analysis document. */
  async removeAnalysis(
    series: string,
    saeName: string,
    name: string,
  ): Promise<RemoveAnalysisResult> {
    const path = `analyses.${escapeKey(checkAnalysisName(name))}`;
    const features = await this.#features.updateMany(
      { sae_series: series, sae_name: saeName, [path]: { $exists: true } },
      { $unset: { [path]: "" } },
    );
    const analysis = await this.#db.collection("analyses").deleteOne({
      sae_series: series,
      sae_name: saeName,
      name,
    });
    await this.removeAnalyzerStates(series, saeName, name);
    return { analysis: analysis.deletedCount > 0, features: features.modifiedCount };
  }

  // --- Features -------------------------------------------------------------------------------

  /**
   * Upserts features. Each batch of {@linkcode WRITE_BATCH} records is first inserted as whole
   * documents (unordered; the fast path of a first run); the records whose feature already
   * exists (duplicate key) are then applied, in order, as `$set` updates in bulk writes of
   * `updateBatch` operations.
   */
  async writeFeatures(records: readonly FeatureRecord[]): Promise<void> {
    for (const r of records) checkRecord(r);
    for (const r of records) {
      for (const name of Object.keys(r.analyses ?? {})) await this.#indexAnalysis(name);
    }
    for (let start = 0; start < records.length; start += WRITE_BATCH) {
      const batch = records.slice(start, start + WRITE_BATCH);
      const encoded = batch.map((r) => {
        const analyses: Document = {};
        for (const [name, analysis] of Object.entries(r.analyses ?? {})) {
          analyses[escapeKey(name)] = encode(analysis);
        }
        return {
          r,
          analyses,
          logits: r.logits === undefined ? undefined : encode(r.logits),
          interpretation: r.interpretation === undefined ? undefined : encode(r.interpretation),
        };
      });
      const existing = await this.#insertNew(encoded.map((e) => {
        const doc: FeatureDocument = {
          _id: featureId(e.r.sae_series, e.r.sae_name, e.r.index),
          sae_name: e.r.sae_name,
          sae_series: e.r.sae_series,
          index: e.r.index,
          analyses: e.analyses,
        };
        if (e.logits !== undefined) doc.logits = e.logits;
        if (e.interpretation !== undefined) doc.interpretation = e.interpretation;
        return doc;
      }));
      const updates = encoded.filter((_, i) => existing.has(i)).map(
        ({ r, analyses, logits, interpretation }) => {
          const set: Document = {};
          for (const [key, value] of Object.entries(analyses)) set[`analyses.${key}`] = value;
          if (logits !== undefined) set.logits = logits;
          if (interpretation !== undefined) set.interpretation = interpretation;
          return {
            updateOne: {
              filter: this.#key(r.sae_series, r.sae_name, r.index),
              update: updateOf(
                set,
                this.#ferret ? undefined : featureId(r.sae_series, r.sae_name, r.index),
              ),
              upsert: true,
            },
          };
        },
      );
      for (let u = 0; u < updates.length; u += this.#updateBatch) {
        await this.#features.bulkWrite(updates.slice(u, u + this.#updateBatch), { ordered: true });
      }
    }
  }

  /**
   * The filter that finds one feature: its `_id` on FerretDB (the only field it looks up
   * without a scan), else `(sae_series, sae_name, index)` (uniquely indexed, so documents written
   * by other programs with other `_id`s are found too).
   */
  #key(series: string, name: string, index: number): Filter<FeatureDocument> {
    return this.#ferret
      ? { _id: featureId(series, name, index) }
      : { sae_series: series, sae_name: name, index };
  }

  /** Inserts documents unordered; returns the positions that failed with a duplicate key. */
  async #insertNew(docs: FeatureDocument[]): Promise<Set<number>> {
    const existing = new Set<number>();
    if (docs.length === 0) return existing;
    try {
      await this.#features.insertMany(docs, { ordered: false });
    } catch (error) {
      if (!(error instanceof MongoBulkWriteError)) throw error;
      const writeErrors = Array.isArray(error.writeErrors)
        ? error.writeErrors
        : [error.writeErrors];
      for (const w of writeErrors) {
        if (w.code !== 11000) throw error;
        existing.add(w.index);
      }
    }
    return existing;
  }

  #record(raw: Document): FeatureRecord {
    const d = decode<Record<string, unknown>>(raw)!;
    return makeRecord(
      d.sae_series as string,
      d.sae_name as string,
      d.index as number,
      (d.analyses ?? {}) as Record<string, unknown>,
      d.logits,
      d.interpretation,
    );
  }

  /** One feature with all its analyses, or null. */
  async getFeature(series: string, name: string, index: number): Promise<FeatureRecord | null> {
    const raw = await this.#features.findOne(this.#key(series, name, checkIndex(index)));
    return raw ? this.#record(raw) : null;
  }

  #filter(filter: FeatureFilter): { query: Document; path: string } {
    const o = resolveListOptions(filter);
    const path = `analyses.${escapeKey(o.analysis)}`;
    const query: Document = { sae_series: o.series, sae_name: o.name, [path]: { $exists: true } };
    if (o.alive === true) query[`${path}.act_times`] = { $gt: 0 };
    if (o.alive === false) query[`${path}.act_times`] = 0;
    return { query, path };
  }

  /** Summaries of the features of one analysis, sorted and paged. */
  async listFeatures(options: FeatureListOptions): Promise<FeatureSummary[]> {
    const o = resolveListOptions(options);
    if (o.limit === 0) return [];
    const { query, path } = this.#filter(options);
    const dir = o.order === "asc" ? 1 : -1;
    const sort: Document = o.sort === "index"
      ? { index: dir }
      : { [`${path}.${o.sort}`]: dir, index: 1 };
    let cursor = this.#features.find(query, {
      projection: {
        _id: 0,
        index: 1,
        [`${path}.act_times`]: 1,
        [`${path}.max_activation`]: 1,
        [`${path}.n_analyzed_tokens`]: 1,
        "interpretation.text": 1,
      },
    }).sort(sort).skip(o.skip);
    if (o.limit !== undefined) cursor = cursor.limit(o.limit);
    const docs = await cursor.toArray();
    return docs.map((raw) => {
      const d = decode<{
        index: number;
        analyses: Record<
          string,
          { act_times: number; max_activation: number; n_analyzed_tokens: number }
        >;
        interpretation?: { text?: string };
      }>(raw)!;
      const a = d.analyses[o.analysis]!;
      const s: FeatureSummary = {
        index: d.index,
        act_times: a.act_times,
        max_activation: a.max_activation,
        n_analyzed_tokens: a.n_analyzed_tokens,
      };
      if (typeof d.interpretation?.text === "string") s.interpretation_text = d.interpretation.text;
      return s;
    });
  }

  /** How many features `listFeatures()` would list without paging. */
  async countFeatures(filter: FeatureFilter): Promise<number> {
    return await this.#features.countDocuments(this.#filter(filter).query);
  }

  /** Streams feature records by ascending index, one page per pull. */
  readFeatures(
    series: string,
    name: string,
    options: ReadFeaturesOptions = {},
  ): ReadableStream<FeatureRecord> {
    const pageSize = resolvePageSize(options);
    const base: Document = { sae_series: series, sae_name: name };
    let projection: Document = { _id: 0 };
    if (options.analysis !== undefined) {
      const path = `analyses.${escapeKey(options.analysis)}`;
      base[path] = { $exists: true };
      projection = {
        _id: 0,
        sae_series: 1,
        sae_name: 1,
        index: 1,
        [path]: 1,
        logits: 1,
        interpretation: 1,
      };
    }
    const find = async (query: Document, limit: number) =>
      (await this.#features.find({ ...base, ...query }, { projection }).sort({ index: 1 })
        .limit(limit).toArray()).map((raw) => this.#record(raw));

    if (options.indices) {
      const pages = indexPages(options.indices, pageSize);
      return pagedStream(0, async (i) => {
        const page = pages[i];
        return page
          ? { records: await find({ index: { $in: page } }, page.length), cursor: i + 1 }
          : null;
      });
    }
    // One cursor for the whole stream (a collection scan on servers without indexes, such as
    // FerretDB, happens once, not once per page); the driver fetches `pageSize` documents per
    // round trip, only when the consumer pulls. If the server drops the cursor (a consumer idle
    // past the server's cursor timeout), reading resumes after the last index delivered.
    let cursor: FindCursor<Document> | undefined;
    let after = -1;
    const open = () =>
      this.#features.find({ ...base, index: { $gt: after } }, { projection })
        .sort({ index: 1 }).batchSize(pageSize);
    return new ReadableStream<FeatureRecord>({
      pull: async (controller) => {
        cursor ??= open();
        try {
          let raw: Document | null;
          try {
            raw = await cursor.next();
          } catch (error) {
            if (!(error instanceof MongoServerError && error.code === CURSOR_NOT_FOUND)) {
              throw error;
            }
            cursor = open();
            raw = await cursor.next();
          }
          if (raw === null) {
            await cursor.close();
            controller.close();
            return;
          }
          const record = this.#record(raw);
          after = record.index;
          controller.enqueue(record);
        } catch (error) {
          await cursor.close().catch(() => {});
          throw error;
        }
      },
      cancel: async () => {
        await cursor?.close();
      },
    }, { highWaterMark: 0 });
  }

  // --- Analyzer states ------------------------------------------------------------------------

  get #states(): Collection<Document & { _id: string }> {
    return this.#db.collection<Document & { _id: string }>("analyzer_states");
  }

  get #stateChunks(): Collection<Document & { _id: string }> {
    return this.#db.collection<Document & { _id: string }>("analyzer_state_chunks");
  }

  /** Deletes the pieces of a generation by `_id` (the lookup FerretDB does without a scan). */
  async #dropGeneration(generation: string, n: number): Promise<void> {
    for (let seq = 0; seq < n; seq += 100) {
      const ids = Array.from(
        { length: Math.min(100, n - seq) },
        (_, i) => `${generation}:${seq + i}`,
      );
      await this.#stateChunks.deleteMany({ _id: { $in: ids } });
    }
  }

  /**
   * Stores an analyzer state's bytes: pieces under a fresh generation, then the manifest (the
   * state becomes visible), then the old generation's pieces are removed.
   */
  async putAnalyzerState(
    key: AnalyzerStateKey,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<AnalyzerStateInfo> {
    const k = checkStateKey(key);
    const generation = crypto.randomUUID();
    const owner = { sae_series: k.sae_series, sae_name: k.sae_name, analysis: k.analysis };
    let seq = 0;
    let bytes = 0;
    try {
      for await (const piece of pieces(chunks, STATE_CHUNK_BYTES)) {
        await this.#stateChunks.insertOne({
          _id: `${generation}:${seq}`,
          generation,
          seq,
          ...owner,
          data: new Binary(piece),
        });
        seq++;
        bytes += piece.length;
      }
    } catch (error) {
      await this.#dropGeneration(generation, seq + 1).catch(() => {});
      throw error;
    }
    const id = JSON.stringify([k.sae_series, k.sae_name, k.analysis, k.count, k.shard]);
    const info: AnalyzerStateInfo = {
      ...owner,
      shard: k.shard,
      count: k.count,
      bytes,
      chunks: seq,
      created_at: new Date().toISOString(),
    };
    let old: Document | null;
    try {
      old = await this.#states.findOneAndReplace(
        { _id: id },
        { _id: id, ...info, generation },
        { upsert: true, returnDocument: "before" },
      );
    } catch (error) {
      await this.#dropGeneration(generation, seq).catch(() => {});
      throw error;
    }
    if (old && typeof old.generation === "string" && old.generation !== generation) {
      await this.#dropGeneration(old.generation, Number(old.chunks));
    }
    return info;
  }

  /** The bytes of a stored analyzer state, one piece per iteration step, or null. */
  async getAnalyzerState(key: AnalyzerStateKey): Promise<AsyncIterable<Uint8Array> | null> {
    const k = checkStateKey(key);
    const id = JSON.stringify([k.sae_series, k.sae_name, k.analysis, k.count, k.shard]);
    const manifest = await this.#states.findOne({ _id: id });
    if (!manifest) return null;
    const generation = manifest.generation as string;
    const n = Number(manifest.chunks);
    const chunks = this.#stateChunks;
    const where =
      `${k.sae_series}/${k.sae_name} analysis ${k.analysis} shard ${k.shard}/${k.count}`;
    return (async function* () {
      for (let seq = 0; seq < n; seq++) {
        const piece = await chunks.findOne({ _id: `${generation}:${seq}` });
        if (!piece || !(piece.data instanceof Binary)) {
          throw new Error(
            `Cannot read the analyzer state of ${where}: piece ${seq} of ${n} is gone (replaced while reading?)`,
          );
        }
        const data = piece.data;
        yield data.buffer.subarray(0, data.position);
      }
    })();
  }

  /** The analyzer states stored for one analysis, by count then shard. */
  async listAnalyzerStates(
    series: string,
    saeName: string,
    analysis: string,
  ): Promise<AnalyzerStateInfo[]> {
    checkAnalysisName(analysis);
    const docs = await this.#states.find({ sae_series: series, sae_name: saeName, analysis })
      .toArray();
    return docs.map((d) => ({
      sae_series: d.sae_series as string,
      sae_name: d.sae_name as string,
      analysis: d.analysis as string,
      shard: Number(d.shard),
      count: Number(d.count),
      bytes: Number(d.bytes),
      chunks: Number(d.chunks),
      created_at: d.created_at as string,
    })).sort((a, b) => a.count - b.count || a.shard - b.shard);
  }

  /** Removes the analyzer states of one analysis (of `count` shards when given). */
  async removeAnalyzerStates(
    series: string,
    saeName: string,
    analysis: string,
    options: { count?: number } = {},
  ): Promise<number> {
    checkAnalysisName(analysis);
    const owner = { sae_series: series, sae_name: saeName, analysis };
    if (options.count === undefined) {
      const removed = await this.#states.deleteMany(owner);
      // Every piece of the analysis, those of interrupted puts included.
      await this.#stateChunks.deleteMany(owner);
      return removed.deletedCount;
    }
    let removed = 0;
    for (const d of await this.#states.find({ ...owner, count: options.count }).toArray()) {
      const gone = await this.#states.deleteOne({ _id: d._id });
      removed += gone.deletedCount;
      await this.#dropGeneration(d.generation as string, Number(d.chunks));
    }
    return removed;
  }

  /**
   * Drops the whole database (every SAE, model and feature in it). For tests and clean-ups.
   *
   * @example
   * ```ts ignore
   * await store.dropDatabase();
   * ```
   */
  async dropDatabase(): Promise<void> {
    await this.#db.dropDatabase();
  }

  /** Closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client.close();
  }

  /** Same as {@linkcode MongoFeatureStore.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
