/**
 * The server store: MongoDB through `npm:mongodb` (the only module of saeflow that imports it).
 *
 * Collections `saes`, `models`, `datasets` (one document each), and for features:
 * - `features`: one document per `(sae_series, sae_name, index)` (unique index) in the shape of
 *   DESIGN.md, holding what was written **without a generation**: `logits` (with `logits_at`,
 *   when they were written), `interpretation`, and `analyses.<name>` written the way saeflow
 *   wrote every analysis before generations existed (so stores made by older versions read as
 *   they did).
 * - `features_gen.<generation>`: one collection per generation begun by `beginAnalysisRun`,
 *   with documents of the same shape (same `_id`), holding what was written under it (the
 *   analysis and any logits). **This departs from DESIGN.md's "analyses inside the feature
 *   document"**: `show feature --json` prints the same document, assembled from the feature
 *   document and the published generations.
 * - `generations`: which analysis each begun generation belongs to (`_id` = the generation).
 * - `analyses` and `analysis_log`: the analysis documents, see below.
 *
 * Why a collection per generation: on FerretDB 1.x (SQLite backend) only inserts, lookups by
 * `_id` and dropping a collection are fast; an update or a delete of an existing document costs
 * time in proportion to the whole collection (measured on FerretDB 1.24: 100–200 ms per
 * `updateOne` by `_id` in collections of 4,096 documents of 15 KB or 8,192 of 2.5 KB;
 * re-running 1,024 realistic features by `$set` took 370 s against 4 s for their first write;
 * an `updateMany` removing one analysis from 8,192 feature documents had not finished after 15
 * minutes). A rerun under a fresh generation is pure inserts into an empty collection, as fast
 * as the first run, and removing an old generation is one `drop`. The first publish over an
 * analysis written by an older saeflow removes it from the feature documents with one
 * `updateMany` (fast on MongoDB; on FerretDB it can outlast the socket timeout, and then the
 * hidden data simply stays).
 *
 * **Readers** resolve each analysis name to the `generation` of its analysis document (`""`,
 * the `features` collection, when it has none) and read only there. A feature exists when it has
 * a `features` document or one in a published generation; its logits are the latest written
 * (`logits_at`) of the feature document's and those of the published generations of the
 * analyses read.
 *
 * **Analysis documents and runs.** FerretDB 1.x applies a conditional update by reading the
 * matching documents and then writing them back, so two of them can both succeed; an insert with
 * an `_id` that exists always fails. So every change of an analysis document is an insert into
 * `analysis_log` with `_id` = `["<series>","<sae>","<name>",<seq>]`, seq one more than the
 * latest: of two concurrent changes made from the same state exactly one is stored, and the
 * other is re-decided from the new state (a second `beginAnalysisRun` then sees the first one's
 * live lease). The log entry is the switch readers see; `analyses` keeps a copy of the latest
 * document (with `lease_seq`, replaced only by a later seq) from which readers follow the log.
 * The oldest entries are removed as new ones are written.
 *
 * Feature writes, in batches of {@linkcode WRITE_BATCH} records: an unordered `insertMany` of
 * whole documents with `_id` = `["<series>","<name>",<index>]` (the fast path of a first run and
 * of every run under a generation), then, for the features that already existed (duplicate key),
 * ordered bulk `updateOne`s with upsert that `$set` `analyses.<name>`, `logits` and
 * `interpretation`. Feature lookups go by `(sae_series, sae_name, index)`, except on FerretDB
 * (detected through `buildInfo`), which only looks up `_id` without scanning the collection and
 * stalls on update commands of 100 operations or more: there lookups go by `_id` and updates
 * are sent 50 at a time. Any other failure of an insert than a duplicate key (a server that went
 * away) fails the write.
 *
 * **Timeouts.** Every driver timeout is derived from `timeoutMs` (see
 * {@linkcode mongoClientOptions}). A server that dies resets its connections: the operation
 * fails at once or, when the driver retries it, after at most `timeoutMs` of server selection;
 * the error is a `StoreUnavailableError` naming MongoDB, the host and what the store was doing.
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
  MongoNetworkError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from "mongodb";
import { AnalysisBusyError, ConfigError, StoreUnavailableError } from "../errors.ts";
import { normalizeMongoUri, redactCredentials } from "../mongo_uri.ts";
import type { FeatureRecord } from "../types.ts";
import { decodeValue, encodeValue, escapeKey, unescapeKey } from "./_codec.ts";
import {
  checkAnalysisName,
  checkIndex,
  checkRecord,
  indexPages,
  makeRecord,
  newest,
  resolveListOptions,
  resolvePageSize,
  WRITE_BATCH,
} from "./_common.ts";
import {
  type BeginDoc,
  beginDoc,
  checkGeneration,
  checkKey,
  describeKey,
  endDoc,
  keyOf,
  newRun,
  type PublishDoc,
  publishDoc,
  publishedGeneration,
  renewDoc,
} from "./_runs.ts";
import { checkStateKey, pieces } from "./_state.ts";
import {
  type AnalysisDoc,
  type AnalysisKey,
  type AnalysisRunInfo,
  type AnalyzerStateInfo,
  type AnalyzerStateKey,
  type DatasetDoc,
  type FeatureFilter,
  type FeatureListOptions,
  type FeatureStore,
  type FeatureSummary,
  type LeaseOptions,
  type ModelDoc,
  type ReadFeaturesOptions,
  type RemoveAnalysisResult,
  type RemoveSaeResult,
  type RunOutcome,
  type SaeDoc,
  STATE_CHUNK_BYTES,
} from "./types.ts";

/** Default time to reach the server, in milliseconds. */
export const DEFAULT_MONGO_TIMEOUT_MS = 5000;

/**
 * How many times `timeoutMs` an operation may wait for the server's answer on an open connection
 * (`socketTimeoutMS`): a server that stops answering without closing the connection (frozen,
 * or the network gone) is given up after this; scans that FerretDB needs for listings of large
 * SAEs take a few seconds, so it is well above `timeoutMs`.
 */
const SOCKET_TIMEOUT_FACTOR = 12;

/** Options of {@linkcode MongoFeatureStore.open}. */
export interface MongoStoreOptions {
  /** A MongoDB connection string; a bare host (`localhost`, `db.example:27018`) is accepted. */
  uri: string;
  /** The database name. */
  db: string;
  /**
   * How long to try to reach the server (to connect, to select it, to get a pooled
   * connection) before giving up; default 5000 ms. An open connection waits 12 times as long for
   * an answer. See {@linkcode mongoClientOptions}.
   */
  timeoutMs?: number;
}

/**
 * The driver options of a store opened with `timeoutMs`: every driver timeout is derived from it
 * (`serverSelectionTimeoutMS`, `connectTimeoutMS` and `waitQueueTimeoutMS` equal it;
 * `socketTimeoutMS` is 12 times it), none is left at the driver's default (no limit, or 30 s).
 *
 * @param timeoutMs The store's `timeoutMs`.
 * @returns Options for `new MongoClient(uri, options)`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mongoClientOptions } from "./mongo.ts";
 * const o = mongoClientOptions(1500);
 * assert.equal(o.serverSelectionTimeoutMS, 1500);
 * assert.equal(o.socketTimeoutMS, 18000);
 * ```
 */
export function mongoClientOptions(timeoutMs: number): MongoClientOptions {
  return {
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
    waitQueueTimeoutMS: timeoutMs,
    socketTimeoutMS: timeoutMs * SOCKET_TIMEOUT_FACTOR,
    ignoreUndefined: true,
    appName: "saeflow",
  };
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
const redact = redactCredentials;

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

/** The server error code of a duplicate key. */
const DUPLICATE_KEY = 11000;

/** A stored feature document (keyed by {@linkcode featureId}). */
type FeatureDocument = Document & { _id: string };

/** Update operations per bulk write on FerretDB (it stalls on 100 or more). */
const FERRETDB_UPDATE_BATCH = 50;

/** Entries kept in `analysis_log` per analysis (older ones are removed). */
const LOG_KEEP = 32;

/** The analysis names of an SAE with a published generation → that generation. */
type Published = Map<string, string>;

/**
 * The `_id` of a feature document: `["<series>","<name>",<index>]` as JSON. Lookups by `_id` are
 * the only ones FerretDB 1.x answers without scanning the collection.
 */
function featureId(series: string, name: string, index: number): string {
  return JSON.stringify([series, name, index]);
}

/** The `_id` of entry `seq` of an analysis' log. */
function logId(key: AnalysisKey, seq: number): string {
  return JSON.stringify([key.sae_series, key.sae_name, key.name, seq]);
}

/** The collection of the features written under `generation`. */
function generationCollection(generation: string): string {
  return `features_gen.${generation}`;
}

/** The filter of an analysis document. */
function analysisFilter(key: AnalysisKey): Document {
  return { sae_series: key.sae_series, sae_name: key.sae_name, name: key.name };
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

/** An analysis document as stored (in `analyses` or a log entry), without store fields. */
function decodeAnalysis(raw: Document | null | undefined): AnalysisDoc | null {
  if (!raw) return null;
  const { lease_seq: _, ...rest } = raw;
  return decode<AnalysisDoc>(rest);
}

function isDuplicateKey(error: unknown): boolean {
  return error instanceof MongoServerError && error.code === DUPLICATE_KEY;
}

/**
 * Whether an error says the server cannot be reached: a network error, no server selectable
 * within the timeout, a closed client, or a bulk write that failed on one of those (the driver
 * wraps them in a `MongoBulkWriteError` without write errors or code).
 */
function isUnreachable(error: unknown): boolean {
  if (
    error instanceof MongoNetworkError || error instanceof MongoServerSelectionError ||
    error instanceof MongoTopologyClosedError
  ) {
    return true;
  }
  if (!(error instanceof MongoBulkWriteError)) return false;
  const writeErrors = [error.writeErrors].flat();
  return writeErrors.length === 0 && error.code === undefined &&
    error.writeConcernError === undefined;
}

/**
 * A source of feature documents in ascending index order for `readFeatures()`: one cursor,
 * fetching `batchSize` documents per round trip only when pulled; when the server drops the
 * cursor (a consumer idle past the server's cursor timeout) reading resumes after the last index
 * delivered.
 */
class SortedSource {
  readonly generation: string;
  #open: (after: number) => FindCursor<Document>;
  #cursor: FindCursor<Document> | undefined;
  #after = -1;
  head: Document | null = null;

  constructor(generation: string, open: (after: number) => FindCursor<Document>) {
    this.generation = generation;
    this.#open = open;
  }

  /** Reads the next document into `head` (null at the end). */
  async advance(): Promise<void> {
    this.#cursor ??= this.#open(this.#after);
    let raw: Document | null;
    try {
      raw = await this.#cursor.next();
    } catch (error) {
      if (!(error instanceof MongoServerError && error.code === CURSOR_NOT_FOUND)) throw error;
      this.#cursor = this.#open(this.#after);
      raw = await this.#cursor.next();
    }
    this.head = raw;
    if (raw !== null) this.#after = raw.index as number;
  }

  async close(): Promise<void> {
    await this.#cursor?.close();
  }
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
  #hosts: string;
  #uri: string;
  #timeoutMs: number;

  private constructor(
    client: MongoClient,
    db: Db,
    where: { uri: string; hosts: string; dbName: string; timeoutMs: number },
    ferret: boolean,
  ) {
    this.#client = client;
    this.#db = db;
    this.location = `mongodb://${where.hosts}/${where.dbName}`;
    this.#hosts = where.hosts;
    this.#uri = where.uri;
    this.#timeoutMs = where.timeoutMs;
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
   * await assert.rejects(
   *   () => MongoFeatureStore.open({ uri: "mongodb://127.0.0.1:1/", db: "x", timeoutMs: 200 }),
   *   StoreUnavailableError,
   * );
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
      return new MongoFeatureStore(client, db, { uri, hosts, dbName, timeoutMs }, ferret);
    } catch (error) {
      await client.close().catch(() => {});
      const why = redact(error instanceof Error ? error.message : String(error), uri);
      const message = step === "reach"
        ? `Cannot reach MongoDB at ${hosts} within ${timeoutMs} ms: ${why}`
        : `Cannot prepare MongoDB database ${dbName} at ${hosts}: ${why}`;
      throw new StoreUnavailableError(message, { cause: new Error(why) });
    }
  }

  /**
   * The error to report for `error` raised while doing `what`: when the server cannot be
   * reached, a `StoreUnavailableError` naming MongoDB, the host, `what` and the timeout (never
   * the password); else `error` itself.
   */
  #explain(error: unknown, what: string): unknown {
    if (!isUnreachable(error)) return error;
    const why = redact(error instanceof Error ? error.message : String(error), this.#uri);
    return new StoreUnavailableError(
      `Lost MongoDB at ${this.#hosts} while ${what} (timeout ${this.#timeoutMs} ms): ${why}`,
      { cause: new Error(why) },
    );
  }

  /** Runs `fn`, reporting a server that cannot be reached as {@linkcode #explain} says. */
  async #guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.#explain(error, what);
    }
  }

  get #features(): Collection<FeatureDocument> {
    return this.#db.collection<FeatureDocument>("features");
  }

  #generation(generation: string): Collection<FeatureDocument> {
    return this.#db.collection<FeatureDocument>(generationCollection(generation));
  }

  /** The collection holding what was written under `generation` (`""`: `features`). */
  #source(generation: string): Collection<FeatureDocument> {
    return generation === "" ? this.#features : this.#generation(generation);
  }

  get #analyses(): Collection<Document> {
    return this.#db.collection("analyses");
  }

  get #log(): Collection<Document & { _id: string }> {
    return this.#db.collection<Document & { _id: string }>("analysis_log");
  }

  get #generations(): Collection<Document & { _id: string }> {
    return this.#db.collection<Document & { _id: string }>("generations");
  }

  /** Creates the listing indexes of an analysis name once per store (best effort). */
  async #indexAnalysis(name: string): Promise<void> {
    if (this.#indexed.has(name)) return;
    this.#indexed.add(name);
    await this.#createListingIndexes(this.#features, name);
  }

  /** Indexes for sorting one analysis' features by act_times and max_activation. */
  async #createListingIndexes(collection: Collection<FeatureDocument>, name: string) {
    const path = `analyses.${escapeKey(name)}`;
    for (const field of ["act_times", "max_activation"]) {
      try {
        await collection.createIndex({
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

  // --- SAEs, models, datasets -----------------------------------------------------------------

  /** Inserts or replaces an SAE document. */
  putSae(doc: SaeDoc): Promise<void> {
    return this.#guard(`writing SAE ${doc.series}/${doc.name}`, async () => {
      await this.#db.collection("saes").replaceOne(
        { series: doc.series, name: doc.name },
        encode(doc),
        { upsert: true },
      );
    });
  }

  /** The SAE document, or null. */
  getSae(series: string, name: string): Promise<SaeDoc | null> {
    return this.#guard(
      `reading SAE ${series}/${name}`,
      async () => decode<SaeDoc>(await this.#db.collection("saes").findOne({ series, name })),
    );
  }

  /** All SAE documents (of one series when given), ordered by series then name. */
  listSaes(series?: string): Promise<SaeDoc[]> {
    return this.#guard("listing SAEs", async () => {
      const docs = await this.#db.collection("saes").find(series === undefined ? {} : { series })
        .sort({ series: 1, name: 1 }).toArray();
      return docs.map((d) => decode<SaeDoc>(d)!);
    });
  }

  /** Removes an SAE with its feature and analysis documents, of every generation. */
  removeSae(series: string, name: string): Promise<RemoveSaeResult> {
    return this.#guard(`removing SAE ${series}/${name}`, async () => {
      const owner = { sae_series: series, sae_name: name };
      const generations = await this.#generations.find(owner).toArray();
      const indices = new Set<number>(await this.#features.distinct("index", owner));
      for (const g of generations) {
        for (const i of await this.#generation(g._id).distinct("index", owner)) indices.add(i);
      }
      for (const g of generations) {
        await this.#generation(g._id).drop();
        await this.#generations.deleteOne({ _id: g._id });
      }
      await this.#features.deleteMany(owner);
      const analyses = await this.#analyses.deleteMany(owner);
      await this.#log.deleteMany(owner);
      await this.#db.collection("analyzer_states").deleteMany(owner);
      await this.#db.collection("analyzer_state_chunks").deleteMany(owner);
      const sae = await this.#db.collection("saes").deleteOne({ series, name });
      return {
        sae: sae.deletedCount > 0,
        analyses: analyses.deletedCount,
        features: indices.size,
      };
    });
  }

  /** Inserts or replaces a model document. */
  putModel(doc: ModelDoc): Promise<void> {
    return this.#guard(`writing model ${doc.name}`, async () => {
      await this.#db.collection("models").replaceOne({ name: doc.name }, encode(doc), {
        upsert: true,
      });
    });
  }

  /** The model document, or null. */
  getModel(name: string): Promise<ModelDoc | null> {
    return this.#guard(
      `reading model ${name}`,
      async () => decode<ModelDoc>(await this.#db.collection("models").findOne({ name })),
    );
  }

  /** Inserts or replaces a dataset document. */
  putDataset(doc: DatasetDoc): Promise<void> {
    return this.#guard(`writing dataset ${doc.name}`, async () => {
      await this.#db.collection("datasets").replaceOne({ name: doc.name }, encode(doc), {
        upsert: true,
      });
    });
  }

  /** The dataset document, or null. */
  getDataset(name: string): Promise<DatasetDoc | null> {
    return this.#guard(
      `reading dataset ${name}`,
      async () => decode<DatasetDoc>(await this.#db.collection("datasets").findOne({ name })),
    );
  }

  // --- Analysis documents: the log ------------------------------------------------------------

  /**
   * The latest document of an analysis and its log position: the copy in `analyses`, then the
   * log entries after it.
   */
  async #state(key: AnalysisKey): Promise<{ seq: number; doc: AnalysisDoc | null }> {
    return await this.#follow(key, await this.#analyses.findOne(analysisFilter(key)));
  }

  async #follow(
    key: AnalysisKey,
    cached: Document | null,
  ): Promise<{ seq: number; doc: AnalysisDoc | null }> {
    let seq = typeof cached?.lease_seq === "number" ? cached.lease_seq : 0;
    let doc = decodeAnalysis(cached);
    for (;;) {
      const entry = await this.#log.findOne({ _id: logId(key, seq + 1) });
      if (!entry) return { seq, doc };
      seq++;
      doc = decodeAnalysis(entry.doc as Document);
    }
  }

  /**
   * Changes an analysis document: `next` decides from the latest one (null: no change; a throw
   * aborts), and the result is stored as the next log entry. When another change took that entry
   * first, `next` decides again from the new state.
   *
   * @returns The document before and after (after is null when nothing changed).
   */
  async #change(
    key: AnalysisKey,
    next: (current: AnalysisDoc | null) => AnalysisDoc | null,
  ): Promise<{ before: AnalysisDoc | null; after: AnalysisDoc | null }> {
    for (let attempt = 0;; attempt++) {
      const { seq, doc } = await this.#state(key);
      const after = next(doc);
      if (after === null) return { before: doc, after };
      try {
        await this.#log.insertOne({
          _id: logId(key, seq + 1),
          sae_series: key.sae_series,
          sae_name: key.sae_name,
          analysis: key.name,
          seq: seq + 1,
          doc: encode(after),
          at: new Date().toISOString(),
        });
      } catch (error) {
        if (isDuplicateKey(error) && attempt < 100) continue;
        throw error;
      }
      await this.#cache(key, after, seq + 1);
      if (seq + 1 > LOG_KEEP) {
        await this.#log.deleteOne({ _id: logId(key, seq + 1 - LOG_KEEP) }).catch(() => {});
      }
      return { before: doc, after };
    }
  }

  /** Stores the copy of log entry `seq` in `analyses`, unless a later one is there already. */
  async #cache(key: AnalysisKey, doc: AnalysisDoc, seq: number): Promise<void> {
    const body = { ...encode(doc), lease_seq: seq };
    for (let attempt = 0; attempt < 5; attempt++) {
      const replaced = await this.#analyses.replaceOne({
        ...analysisFilter(key),
        $or: [{ lease_seq: { $exists: false } }, { lease_seq: { $lt: seq } }],
      }, body);
      if (replaced.matchedCount > 0) return;
      try {
        await this.#analyses.insertOne({ ...body });
        return;
      } catch (error) {
        if (!isDuplicateKey(error)) throw error;
      }
      const cached = await this.#analyses.findOne(analysisFilter(key), {
        projection: { lease_seq: 1 },
      });
      if (typeof cached?.lease_seq === "number" && cached.lease_seq >= seq) return;
    }
  }

  /** Inserts or replaces an analysis document. */
  putAnalysis(doc: AnalysisDoc): Promise<void> {
    return this.#guard(`writing ${describeKey(keyOf(doc))}`, async () => {
      checkAnalysisName(doc.name);
      await this.#change(keyOf(doc), () => doc);
      await this.#indexAnalysis(doc.name);
    });
  }

  /** The analysis document, or null. */
  getAnalysis(series: string, saeName: string, name: string): Promise<AnalysisDoc | null> {
    const key = { sae_series: series, sae_name: saeName, name };
    return this.#guard(`reading ${describeKey(key)}`, async () => (await this.#state(key)).doc);
  }

  /** The analysis documents of an SAE, ordered by name. */
  listAnalyses(series: string, saeName: string): Promise<AnalysisDoc[]> {
    return this.#guard(
      `listing the analyses of ${series}/${saeName}`,
      () => this.#analysisDocs(series, saeName),
    );
  }

  async #analysisDocs(series: string, saeName: string): Promise<AnalysisDoc[]> {
    const cached = await this.#analyses.find({ sae_series: series, sae_name: saeName })
      .sort({ name: 1 }).toArray();
    const out: AnalysisDoc[] = [];
    for (const raw of cached) {
      const key = { sae_series: series, sae_name: saeName, name: raw.name as string };
      const { doc } = await this.#follow(key, raw);
      if (doc) out.push(doc);
    }
    return out;
  }

  async #published(series: string, saeName: string): Promise<Published> {
    const out: Published = new Map();
    for (const doc of await this.#analysisDocs(series, saeName)) {
      if (doc.generation !== undefined) out.set(doc.name, doc.generation);
    }
    return out;
  }

  /**
   * Removes the analysis of every generation (its features keep their logits and
   * interpretation), its document and its analyzer states.
   */
  removeAnalysis(
    series: string,
    saeName: string,
    name: string,
  ): Promise<RemoveAnalysisResult> {
    const key = { sae_series: series, sae_name: saeName, name };
    return this.#guard(`removing ${describeKey(key)}`, async () => {
      checkAnalysisName(name);
      const { doc } = await this.#state(key);
      const path = `analyses.${escapeKey(name)}`;
      const owner = { sae_series: series, sae_name: saeName };
      const seen = publishedGeneration(doc);
      const features = await this.#source(seen).countDocuments({
        ...owner,
        [path]: { $exists: true },
      });
      await this.#removeGenerations(key, []);
      await this.#removeUnversioned(key);
      await this.#analyses.deleteMany(analysisFilter(key));
      await this.#log.deleteMany({ ...owner, analysis: name });
      await this.removeAnalyzerStates(series, saeName, name);
      return { analysis: doc !== null, features };
    });
  }

  /** Drops the collections of the generations registered for an analysis, except `keep`. */
  async #removeGenerations(key: AnalysisKey, keep: readonly string[]): Promise<void> {
    const registered = await this.#generations.find({
      sae_series: key.sae_series,
      sae_name: key.sae_name,
      analysis: key.name,
    }).toArray();
    for (const g of registered) {
      if (!keep.includes(g._id)) await this.#dropFeatureGeneration(g._id);
    }
  }

  async #dropFeatureGeneration(generation: string): Promise<void> {
    await this.#generation(generation).drop();
    await this.#generations.deleteOne({ _id: generation });
  }

  /** Removes `analyses.<name>` written without a generation from the feature documents. */
  async #removeUnversioned(key: AnalysisKey): Promise<void> {
    const path = `analyses.${escapeKey(key.name)}`;
    await this.#features.updateMany(
      { sae_series: key.sae_series, sae_name: key.sae_name, [path]: { $exists: true } },
      { $unset: { [path]: "" } },
    );
  }

  /**
   * How many features of an analysis each generation holds in the database, published or not
   * (`""`: written without a generation; the others are found by looking into every
   * `features_gen.*` collection). For checks and tests: readers see only the published one.
   *
   * @example
   * ```ts ignore
   * console.log(await store.storedGenerations("s", "n", "default")); // e.g. { "": 0, ... }
   * ```
   */
  storedGenerations(
    series: string,
    saeName: string,
    analysis: string,
  ): Promise<Record<string, number>> {
    return this.#guard(`counting stored generations of ${series}/${saeName}`, async () => {
      const query = {
        sae_series: series,
        sae_name: saeName,
        [`analyses.${escapeKey(analysis)}`]: { $exists: true },
      };
      const out: Record<string, number> = {};
      const legacy = await this.#features.countDocuments(query);
      if (legacy > 0) out[""] = legacy;
      const prefix = generationCollection("");
      const names = (await this.#db.listCollections({}, { nameOnly: true }).toArray())
        .map((c) => c.name).filter((n) => n.startsWith(prefix)).sort();
      for (const n of names) {
        const count = await this.#db.collection(n).countDocuments(query);
        if (count > 0) out[n.slice(prefix.length)] = count;
      }
      return out;
    });
  }

  // --- Runs -----------------------------------------------------------------------------------

  /**
   * Begins a run: registers its generation, then stores the document with the run as the next
   * log entry (of two concurrent begins exactly one stores it; the other then sees its lease),
   * then drops the collections of earlier unpublished runs.
   */
  beginAnalysisRun(doc: BeginDoc, lease: LeaseOptions): Promise<AnalysisRunInfo> {
    const key = keyOf(doc);
    return this.#guard(`beginning a run of ${describeKey(key)}`, async () => {
      checkKey(key);
      const run = newRun(lease);
      const now = lease.now ?? new Date();
      await this.#generations.insertOne({
        _id: run.generation,
        sae_series: key.sae_series,
        sae_name: key.sae_name,
        analysis: key.name,
        created_at: now.toISOString(),
      });
      let after: AnalysisDoc;
      try {
        after = (await this.#change(key, (current) => beginDoc(current, doc, run, now))).after!;
      } catch (error) {
        await this.#generations.deleteOne({ _id: run.generation }).catch(() => {});
        throw error;
      }
      if (!this.#ferret) {
        // FerretDB uses no index but `_id`; elsewhere these keep listings from sorting in memory.
        const collection = this.#generation(run.generation);
        await collection.createIndex(
          { sae_series: 1, sae_name: 1, index: 1 },
          { unique: true, name: "feature_key" },
        ).catch(() => {});
        await this.#createListingIndexes(collection, key.name);
      }
      // Leftovers of earlier runs that ended without removing them (a kill): best effort, the
      // next begin tries again.
      await this.#removeGenerations(key, [publishedGeneration(after), run.generation])
        .catch(() => {});
      return run;
    });
  }

  /** Renews the lease of the run writing `generation`. */
  renewAnalysisRun(
    key: AnalysisKey,
    generation: string,
    options: { leaseMs: number; now?: Date },
  ): Promise<void> {
    return this.#guard(`renewing the lease of ${describeKey(key)}`, async () => {
      checkKey(key);
      checkGeneration(generation);
      await this.#change(
        key,
        (current) => renewDoc(current, key, generation, options.leaseMs, options.now ?? new Date()),
      );
    });
  }

  /**
   * Publishes the run writing `generation` by one log entry, then drops the collections of the
   * other generations (and, the first time, the analysis written without a generation).
   */
  publishAnalysisRun(doc: PublishDoc, generation: string): Promise<void> {
    const key = keyOf(doc);
    return this.#guard(`publishing ${describeKey(key)}`, async () => {
      checkKey(key);
      checkGeneration(generation);
      const { before, after } = await this.#change(
        key,
        (current) => publishDoc(current, doc, generation),
      );
      if (after === null) return;
      // Published: what follows only frees space (best effort; the next begin tries again).
      await this.#removeGenerations(key, [generation]).catch(() => {});
      if (publishedGeneration(before) === "") await this.#removeUnversioned(key).catch(() => {});
    });
  }

  /** Ends the run writing `generation` without publishing and drops what it wrote. */
  endAnalysisRun(key: AnalysisKey, generation: string, outcome: RunOutcome): Promise<void> {
    return this.#guard(`ending a run of ${describeKey(key)}`, async () => {
      checkKey(key);
      checkGeneration(generation);
      const { before } = await this.#change(
        key,
        (current) => endDoc(current, generation, outcome, new Date()),
      );
      // Only frees space (best effort; the next begin or publish tries again).
      if (publishedGeneration(before) !== generation) {
        await this.#dropFeatureGeneration(generation).catch(() => {});
      }
    });
  }

  // --- Features -------------------------------------------------------------------------------

  /**
   * Upserts features: without a generation into `features`, under one into its collection (its
   * interpretations, which belong to the feature, into `features`). Each batch of
   * {@linkcode WRITE_BATCH} records is first inserted as whole documents (unordered; the fast
   * path); the records whose feature already exists there (duplicate key) are then applied, in
   * order, as `$set` updates in bulk writes of `updateBatch` operations.
   */
  writeFeatures(
    records: readonly FeatureRecord[],
    options: { generation?: string } = {},
  ): Promise<void> {
    return this.#guard("writing features", async () => {
      const generation = checkGeneration(options.generation ?? "", true);
      for (const r of records) checkRecord(r);
      if (generation === "") {
        for (const r of records) {
          for (const name of Object.keys(r.analyses ?? {})) await this.#indexAnalysis(name);
        }
        await this.#write(this.#features, records, true);
        return;
      }
      if (!(await this.#generations.findOne({ _id: generation }))) {
        throw new AnalysisBusyError(
          `Cannot write features under generation ${generation} in ${this.location}: no run ` +
            `holds it (it was never begun here, or it ended, or a later run removed it after ` +
            `its lease lapsed)`,
        );
      }
      await this.#write(
        this.#generation(generation),
        records.map(({ interpretation: _, ...r }) => r),
        false,
      );
      const interpretations = records.filter((r) => r.interpretation !== undefined).map((r) => ({
        sae_series: r.sae_series,
        sae_name: r.sae_name,
        index: r.index,
        analyses: {},
        interpretation: r.interpretation!,
      }));
      if (interpretations.length > 0) await this.#write(this.#features, interpretations, true);
    });
  }

  /** Upserts records into one collection; `byKey`: find existing features by their key. */
  async #write(
    collection: Collection<FeatureDocument>,
    records: readonly FeatureRecord[],
    byKey: boolean,
  ): Promise<void> {
    for (let start = 0; start < records.length; start += WRITE_BATCH) {
      const batch = records.slice(start, start + WRITE_BATCH);
      const at = Date.now();
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
      const existing = await this.#insertNew(
        collection,
        encoded.map((e) => {
          const doc: FeatureDocument = {
            _id: featureId(e.r.sae_series, e.r.sae_name, e.r.index),
            sae_name: e.r.sae_name,
            sae_series: e.r.sae_series,
            index: e.r.index,
            analyses: e.analyses,
          };
          if (e.logits !== undefined) Object.assign(doc, { logits: e.logits, logits_at: at });
          if (e.interpretation !== undefined) doc.interpretation = e.interpretation;
          return doc;
        }),
      );
      const useKey = byKey && !this.#ferret;
      const updates = encoded.filter((_, i) => existing.has(i)).map(
        ({ r, analyses, logits, interpretation }) => {
          const set: Document = {};
          for (const [key, value] of Object.entries(analyses)) set[`analyses.${key}`] = value;
          if (logits !== undefined) Object.assign(set, { logits, logits_at: at });
          if (interpretation !== undefined) set.interpretation = interpretation;
          const id = featureId(r.sae_series, r.sae_name, r.index);
          return {
            updateOne: {
              filter: (useKey
                ? { sae_series: r.sae_series, sae_name: r.sae_name, index: r.index }
                : { _id: id }) as Filter<FeatureDocument>,
              update: updateOf(set, useKey ? id : undefined),
              upsert: true,
            },
          };
        },
      );
      for (let u = 0; u < updates.length; u += this.#updateBatch) {
        await collection.bulkWrite(updates.slice(u, u + this.#updateBatch), { ordered: true });
      }
    }
  }

  /**
   * Inserts documents unordered; returns the positions that failed with a duplicate key. Any
   * other failure (a write error of another kind, or the server going away mid-way, which the
   * driver reports as a bulk error without write errors) is thrown: nothing is skipped silently.
   */
  async #insertNew(
    collection: Collection<FeatureDocument>,
    docs: FeatureDocument[],
  ): Promise<Set<number>> {
    const existing = new Set<number>();
    if (docs.length === 0) return existing;
    try {
      await collection.insertMany(docs, { ordered: false });
    } catch (error) {
      if (!(error instanceof MongoBulkWriteError)) throw error;
      const writeErrors = Array.isArray(error.writeErrors)
        ? error.writeErrors
        : [error.writeErrors];
      for (const w of writeErrors) {
        if (w.code !== DUPLICATE_KEY) throw error;
        existing.add(w.index);
      }
      if (writeErrors.length === 0 || error.insertedCount + existing.size !== docs.length) {
        throw error;
      }
    }
    return existing;
  }

  /**
   * A feature record from its document written without a generation (`base`) and its documents
   * in published generations, as readers see it; null when it has none of these, or, with
   * `analysis`, not that one. Analyses: each name from its published generation; logits: the
   * latest written.
   */
  #assemble(
    series: string,
    name: string,
    index: number,
    published: Published,
    base: Document | null,
    generated: readonly { generation: string; doc: Document }[],
    analysis: string | undefined,
  ): FeatureRecord | null {
    const analyses: Document = {};
    const take = (doc: Document | null, generation: string) => {
      for (const [key, value] of Object.entries((doc?.analyses ?? {}) as Document)) {
        const n = unescapeKey(key);
        if ((analysis === undefined || n === analysis) && (published.get(n) ?? "") === generation) {
          analyses[key] = value;
        }
      }
    };
    take(base, "");
    for (const g of generated) take(g.doc, g.generation);
    if (analysis !== undefined ? Object.keys(analyses).length === 0 : !base && !generated.length) {
      return null;
    }
    const logits = newest([
      { value: base?.logits, at: Number(base?.logits_at ?? 0) },
      ...generated.map((g) => ({ value: g.doc.logits, at: Number(g.doc.logits_at ?? 0) })),
    ]);
    const d = decode<Record<string, unknown>>({
      analyses,
      logits: logits ?? undefined,
      interpretation: base?.interpretation ?? undefined,
    })!;
    return makeRecord(
      series,
      name,
      index,
      (d.analyses ?? {}) as Record<string, unknown>,
      d.logits,
      d.interpretation,
    );
  }

  /**
   * The filter that finds one feature document written without a generation: its `_id` on
   * FerretDB (the only field it looks up without a scan), else `(sae_series, sae_name, index)`
   * (uniquely indexed, so documents written by other programs with other `_id`s are found too).
   */
  #key(series: string, name: string, index: number): Filter<FeatureDocument> {
    return this.#ferret
      ? { _id: featureId(series, name, index) }
      : { sae_series: series, sae_name: name, index };
  }

  /** One feature with all its published analyses, or null. */
  getFeature(series: string, name: string, index: number): Promise<FeatureRecord | null> {
    return this.#guard(`reading feature ${index} of ${series}/${name}`, async () => {
      checkIndex(index);
      const published = await this.#published(series, name);
      const generations = [...new Set(published.values())].filter((g) => g !== "");
      const id = featureId(series, name, index);
      const [base, ...docs] = await Promise.all([
        this.#features.findOne(this.#key(series, name, index)),
        ...generations.map((g) => this.#generation(g).findOne({ _id: id })),
      ]);
      const generated = generations.flatMap((generation, i) =>
        docs[i] ? [{ generation, doc: docs[i]! }] : []
      );
      return this.#assemble(series, name, index, published, base ?? null, generated, undefined);
    });
  }

  /** The collection and query of a listing: the analysis' published generation. */
  async #filter(filter: FeatureFilter): Promise<{
    collection: Collection<FeatureDocument>;
    generation: string;
    query: Document;
    path: string;
  }> {
    const o = resolveListOptions(filter);
    const key = { sae_series: o.series, sae_name: o.name, name: o.analysis };
    const generation = publishedGeneration((await this.#state(key)).doc);
    const path = `analyses.${escapeKey(o.analysis)}`;
    const query: Document = { sae_series: o.series, sae_name: o.name, [path]: { $exists: true } };
    if (o.alive === true) query[`${path}.act_times`] = { $gt: 0 };
    if (o.alive === false) query[`${path}.act_times`] = 0;
    return { collection: this.#source(generation), generation, query, path };
  }

  /** Summaries of the features of one analysis (its published generation), sorted and paged. */
  listFeatures(options: FeatureListOptions): Promise<FeatureSummary[]> {
    return this.#guard(`listing features of ${options.series}/${options.name}`, async () => {
      const o = resolveListOptions(options);
      if (o.limit === 0) return [];
      const { collection, generation, query, path } = await this.#filter(options);
      const dir = o.order === "asc" ? 1 : -1;
      const sort: Document = o.sort === "index"
        ? { index: dir }
        : { [`${path}.${o.sort}`]: dir, index: 1 };
      let cursor = collection.find(query, {
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
      // Interpretations are kept in the feature documents written without a generation.
      const texts = new Map<number, string>();
      if (generation !== "" && docs.length > 0) {
        const found = await this.#features.find({
          sae_series: o.series,
          sae_name: o.name,
          index: { $in: docs.map((d) => d.index as number) },
          "interpretation.text": { $exists: true },
        }, { projection: { _id: 0, index: 1, "interpretation.text": 1 } }).toArray();
        for (const f of found) {
          const text = decode<{ interpretation?: { text?: unknown } }>(f)?.interpretation?.text;
          if (typeof text === "string") texts.set(f.index as number, text);
        }
      }
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
        const text = generation === "" ? d.interpretation?.text : texts.get(d.index);
        if (typeof text === "string") s.interpretation_text = text;
        return s;
      });
    });
  }

  /** How many features `listFeatures()` would list without paging. */
  countFeatures(filter: FeatureFilter): Promise<number> {
    return this.#guard(`counting features of ${filter.series}/${filter.name}`, async () => {
      const { collection, query } = await this.#filter(filter);
      return await collection.countDocuments(query);
    });
  }

  /**
   * Streams feature records by ascending index, one page per pull. The published generations
   * are read at the first pull; each source (the feature documents, the published generations'
   * collections) is read through one cursor, merged by index. If a published generation read
   * changes before the end, the stream errors instead of ending with a mix.
   */
  readFeatures(
    series: string,
    name: string,
    options: ReadFeaturesOptions = {},
  ): ReadableStream<FeatureRecord> {
    const pageSize = resolvePageSize(options);
    const analysis = options.analysis;
    const owner = { sae_series: series, sae_name: name };
    const what = `reading features of ${series}/${name}`;
    let published: Published | undefined;
    /** The generations read: every published one, or the analysis' own. */
    const generationsRead = (p: Published) =>
      analysis === undefined
        ? [...new Set(p.values())].filter((g) => g !== "")
        : [p.get(analysis) ?? ""].filter((g) => g !== "");
    const seen = (p: Published) =>
      JSON.stringify(analysis === undefined ? [...p].sort() : [p.get(analysis) ?? ""]);
    const start = async () => (published ??= await this.#published(series, name));
    const finish = async () => {
      if (
        published !== undefined && seen(published) !== seen(await this.#published(series, name))
      ) {
        const changed = analysis === undefined
          ? `an analysis of ${series}/${name}`
          : describeKey({ sae_series: series, sae_name: name, name: analysis });
        throw new Error(
          `Cannot finish reading features of ${series}/${name}: ${changed} was published anew ` +
            `while they were read; read again`,
        );
      }
    };
    /** A read that fails because its generation was dropped reports that, not the symptom. */
    const failed = async (error: unknown): Promise<never> => {
      if (!isUnreachable(error)) await finish();
      throw error;
    };
    /** The query of the feature documents, and of those that must have the analysis. */
    const queryOf = (generation: string) => {
      const query: Document = { ...owner };
      if (analysis !== undefined && generation === (published!.get(analysis) ?? "")) {
        query[`analyses.${escapeKey(analysis)}`] = { $exists: true };
      }
      return query;
    };

    if (options.indices) {
      const pages = indexPages(options.indices, pageSize);
      let i = 0;
      return new ReadableStream<FeatureRecord>({
        pull: (controller) =>
          this.#guard(what, async () => {
            const p = await start();
            for (; i < pages.length; i++) {
              const page = pages[i]!;
              const filter = { index: { $in: page } };
              const [base, ...docs] = await Promise.all(
                ["", ...generationsRead(p)].map((g) =>
                  this.#source(g).find({ ...queryOf(g), ...filter }).toArray()
                ),
              );
              const bySource = [base!, ...docs].map((list) =>
                new Map(list.map((d) => [d.index as number, d]))
              );
              const generations = generationsRead(p);
              let sent = 0;
              for (const index of page) {
                const record = this.#assemble(
                  series,
                  name,
                  index,
                  p,
                  bySource[0]!.get(index) ?? null,
                  generations.flatMap((generation, k) => {
                    const doc = bySource[k + 1]!.get(index);
                    return doc ? [{ generation, doc }] : [];
                  }),
                  analysis,
                );
                if (record) {
                  controller.enqueue(record);
                  sent++;
                }
              }
              if (sent > 0) {
                i++;
                return;
              }
            }
            await finish();
            controller.close();
          }),
      }, { highWaterMark: 0 });
    }

    // One cursor per source for the whole stream (a collection scan on servers without indexes,
    // such as FerretDB, happens once per source, not once per page).
    let sources: SortedSource[] | undefined;
    const open = async () => {
      const p = await start();
      const list = ["", ...generationsRead(p)].map((generation) =>
        new SortedSource(
          generation,
          (after) =>
            this.#source(generation).find({ ...queryOf(generation), index: { $gt: after } })
              .sort({ index: 1 }).batchSize(pageSize),
        )
      );
      for (const s of list) await s.advance();
      return list;
    };
    const closeAll = async () => {
      for (const s of sources ?? []) await s.close().catch(() => {});
    };
    return new ReadableStream<FeatureRecord>({
      pull: (controller) =>
        this.#guard(what, async () => {
          try {
            sources ??= await open();
            for (;;) {
              let index = Infinity;
              for (const s of sources) {
                if (s.head !== null) index = Math.min(index, s.head.index as number);
              }
              if (index === Infinity) {
                await closeAll();
                await finish();
                controller.close();
                return;
              }
              const at = sources.filter((s) => s.head?.index === index);
              const base = at.find((s) => s.generation === "")?.head ?? null;
              const generated = at.filter((s) => s.generation !== "").map((s) => ({
                generation: s.generation,
                doc: s.head!,
              }));
              const record = this.#assemble(
                series,
                name,
                index,
                published!,
                base,
                generated,
                analysis,
              );
              for (const s of at) await s.advance();
              if (record) {
                controller.enqueue(record);
                return;
              }
            }
          } catch (error) {
            await closeAll();
            await failed(error);
          }
        }),
      cancel: closeAll,
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
