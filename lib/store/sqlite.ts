/**
 * The embedded store: one SQLite file (`<output_dir>/saeflow.sqlite`) through `node:sqlite`.
 *
 * Tables: `saes`, `models`, `datasets`, `analyses` (one JSON document per row), `features` (one
 * row per `(sae_series, sae_name, idx)` with what was written without a generation: `logits`,
 * `interpretation` and the interpretation text), `feature_analyses` (one row per feature,
 * analysis and generation: indexed `act_times`, `max_activation`, `n_analyzed_tokens` columns
 * and the analysis document), `feature_generations` (one row per feature written under a
 * generation: the logits written with it) and `generations` (which analysis each generation
 * begun by `beginAnalysisRun` belongs to). Documents are packed by `_codec.ts`: JSON text, or a
 * blob when they hold typed arrays.
 *
 * **Generations.** Readers resolve each analysis name to its document's `generation` (`""` when
 * it has none: the rows written without a generation) and read only those rows; a feature
 * exists when it has a `features` row or a `feature_generations` row of a published generation.
 * `beginAnalysisRun`, `renewAnalysisRun`, `publishAnalysisRun` and `endAnalysisRun` each decide
 * and write the analysis row in one `BEGIN IMMEDIATE` transaction (the write lock is taken
 * first, so two processes cannot both see the analysis free); the rows of the generations the
 * step makes obsolete are then removed in a transaction of their own, so that a disk too full
 * for that removal still lets a run be ended or published (the rows, which no reader sees, go
 * at the next begin or publish). `writeFeatures` under a generation checks, in the transaction of each batch, that
 * the generation is still registered: a run whose lease lapsed and whose rows a later run
 * removed cannot write again.
 *
 * **Older files.** A file made before generations existed (`PRAGMA user_version` 0 and a
 * `feature_analyses` table without a `generation` column) is migrated when opened, in one
 * transaction: its analysis rows become generation `""`. Files of a newer schema are refused.
 *
 * Analyzer states (sharded runs): `analyzer_states` holds one manifest row per
 * `(sae_series, sae_name, analysis, shard, count)` naming a generation; `analyzer_state_chunks`
 * holds the pieces (a blob of at most 8 MiB each) of every generation. A put writes the pieces of
 * a fresh generation, then in one transaction points the manifest at it and deletes the old
 * generation's pieces: a reader sees the old state or the new one, never a mix.
 *
 * The database runs in WAL mode, so a viewer can read while an analysis writes; writes go in
 * transactions through prepared statements. A failed transaction is rolled back when SQLite has
 * not already done so, and the error that made it fail is the one reported: a full disk says
 * `No space left on device` and names the file.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { AnalysisBusyError, StoreUnavailableError } from "../errors.ts";
import type { FeatureRecord } from "../types.ts";
import { packDoc, packFeatureAnalysis, unpackDoc } from "./_codec.ts";
import {
  checkAnalysisName,
  checkIndex,
  checkRecord,
  indexPages,
  makeRecord,
  newest,
  pagedStream,
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

/** The file name of the store under `output_dir`. */
export const SQLITE_FILE_NAME = "saeflow.sqlite";

/** The schema version this code writes (`PRAGMA user_version`). */
const SCHEMA_VERSION = 1;

/** How long a write waits for another process' write lock, in ms. */
const BUSY_TIMEOUT_MS = 5000;

/** Options of {@linkcode SqliteFeatureStore.open}; give `path` or `outputDir`. */
export interface SqliteStoreOptions {
  /** The database file (or `:memory:`). Wins over `outputDir`. */
  path?: string;
  /** The folder that holds `saeflow.sqlite`; created when missing. */
  outputDir?: string;
  /**
   * The most pages (32 KiB each) the file may grow to (`PRAGMA max_page_count`), for tests of a
   * full store; default: no limit beyond SQLite's own.
   */
  maxPageCount?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS saes (
  series TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (series, name));
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS analyses (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (sae_series, sae_name, name));
CREATE TABLE IF NOT EXISTS features (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, idx INTEGER NOT NULL,
  logits BLOB, interpretation BLOB, interpretation_text TEXT, logits_at REAL,
  PRIMARY KEY (sae_series, sae_name, idx));
CREATE TABLE IF NOT EXISTS feature_analyses (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL,
  generation TEXT NOT NULL, idx INTEGER NOT NULL,
  act_times INTEGER NOT NULL, max_activation REAL, n_analyzed_tokens INTEGER NOT NULL,
  doc BLOB NOT NULL,
  PRIMARY KEY (sae_series, sae_name, analysis, generation, idx));
CREATE INDEX IF NOT EXISTS feature_analyses_act_times_by_generation
  ON feature_analyses (sae_series, sae_name, analysis, generation, act_times, idx);
CREATE INDEX IF NOT EXISTS feature_analyses_max_activation_by_generation
  ON feature_analyses (sae_series, sae_name, analysis, generation, max_activation, idx);
CREATE TABLE IF NOT EXISTS feature_generations (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, generation TEXT NOT NULL,
  idx INTEGER NOT NULL, logits BLOB, logits_at REAL,
  PRIMARY KEY (sae_series, sae_name, generation, idx));
CREATE TABLE IF NOT EXISTS generations (
  generation TEXT PRIMARY KEY, sae_series TEXT NOT NULL, sae_name TEXT NOT NULL,
  analysis TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS generations_owner ON generations (sae_series, sae_name, analysis);
CREATE TABLE IF NOT EXISTS analyzer_states (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL,
  shard INTEGER NOT NULL, count INTEGER NOT NULL, generation TEXT NOT NULL,
  bytes INTEGER NOT NULL, chunks INTEGER NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (sae_series, sae_name, analysis, count, shard));
CREATE TABLE IF NOT EXISTS analyzer_state_chunks (
  generation TEXT NOT NULL, seq INTEGER NOT NULL,
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY (generation, seq));
CREATE INDEX IF NOT EXISTS analyzer_state_chunks_owner
  ON analyzer_state_chunks (sae_series, sae_name, analysis);
`;

/**
 * Schema 0 → 1: analysis rows get a generation (`""` for the existing ones, which readers see as
 * long as their analysis document names none), features a `logits_at` time.
 */
const MIGRATE_0_TO_1 = `
ALTER TABLE features ADD COLUMN logits_at REAL;
CREATE TABLE feature_analyses_v1 (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL,
  generation TEXT NOT NULL, idx INTEGER NOT NULL,
  act_times INTEGER NOT NULL, max_activation REAL, n_analyzed_tokens INTEGER NOT NULL,
  doc BLOB NOT NULL,
  PRIMARY KEY (sae_series, sae_name, analysis, generation, idx));
INSERT INTO feature_analyses_v1
  (sae_series, sae_name, analysis, generation, idx, act_times, max_activation,
   n_analyzed_tokens, doc)
  SELECT sae_series, sae_name, analysis, '', idx, act_times, max_activation, n_analyzed_tokens, doc
  FROM feature_analyses;
DROP TABLE feature_analyses;
ALTER TABLE feature_analyses_v1 RENAME TO feature_analyses;
`;

type Row = Record<string, unknown>;

/**
 * Brings the file to {@linkcode SCHEMA_VERSION}: nothing to do (and no lock taken) when it is
 * there; else, in one transaction, the migration of an older file and the tables and indexes.
 *
 * @throws {Error} For a file made by a newer saeflow.
 */
function prepareSchema(db: DatabaseSync): void {
  const version = () => Number(db.prepare("PRAGMA user_version").get()?.user_version ?? 0);
  if (version() === SCHEMA_VERSION) return;
  db.exec("BEGIN IMMEDIATE");
  const found = version();
  if (found > SCHEMA_VERSION) {
    throw new Error(
      `it was made by a newer saeflow (schema ${found}; this one knows up to ${SCHEMA_VERSION})`,
    );
  }
  if (found < SCHEMA_VERSION) {
    const columns = db.prepare("PRAGMA table_info(feature_analyses)").all().map((r) => r.name);
    if (columns.length > 0 && !columns.includes("generation")) db.exec(MIGRATE_0_TO_1);
    db.exec(SCHEMA);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
  }
  db.exec("COMMIT");
}

/** Decodes a stored document column (JSON text or packed blob). */
function unpack<T>(stored: unknown): T {
  return unpackDoc(stored as string | Uint8Array) as T;
}

/** SQLite's primary result codes that mean the file cannot be used as it is. */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_CORRUPT = 11;
const SQLITE_FULL = 13;
const SQLITE_NOTADB = 26;

/** The names of the analyses of an SAE → their published generation (absent: `""`). */
type Published = Map<string, string>;

/**
 * The SQLite implementation of {@linkcode FeatureStore}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteFeatureStore } from "./sqlite.ts";
 * await using store = SqliteFeatureStore.open({ path: ":memory:" });
 * await store.writeFeatures([{ sae_series: "s", sae_name: "n", index: 3, analyses: {} }]);
 * assert.equal((await store.getFeature("s", "n", 3))?.index, 3);
 * ```
 */
export class SqliteFeatureStore implements FeatureStore {
  /** The database file path. */
  readonly location: string;
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();
  #closed = false;
  #maxPageCount: number | undefined;

  private constructor(db: DatabaseSync, location: string, maxPageCount: number | undefined) {
    this.#db = db;
    this.location = location;
    this.#maxPageCount = maxPageCount;
  }

  /**
   * Opens (and creates when missing) the store file, migrating a file of an older schema.
   *
   * @param options `path`, or `outputDir` for `<outputDir>/saeflow.sqlite`.
   * @returns The open store.
   * @throws {StoreUnavailableError} When the file cannot be created, opened or migrated, or was
   * made by a newer saeflow.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SqliteFeatureStore } from "./sqlite.ts";
   * const dir = await Deno.makeTempDir();
   * const store = SqliteFeatureStore.open({ outputDir: dir });
   * assert.ok(store.location.endsWith("saeflow.sqlite"));
   * await store.close();
   * ```
   */
  static open(options: SqliteStoreOptions): SqliteFeatureStore {
    const path = options.path ??
      (options.outputDir !== undefined ? join(options.outputDir, SQLITE_FILE_NAME) : undefined);
    if (path === undefined) {
      throw new TypeError("SqliteFeatureStore.open() needs a path or an outputDir");
    }
    const max = options.maxPageCount;
    if (max !== undefined && (!Number.isSafeInteger(max) || max < 1)) {
      throw new RangeError(`Invalid maxPageCount ${max}: expected a positive integer`);
    }
    let db: DatabaseSync | undefined;
    try {
      if (options.path === undefined && options.outputDir !== undefined) {
        Deno.mkdirSync(options.outputDir, { recursive: true });
      }
      db = new DatabaseSync(path);
      // The busy timeout first: switching to WAL waits for a lock another process may hold
      // (e.g. the checkpoint when it closes the file).
      db.exec(
        `PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}; PRAGMA page_size = 32768; ` +
          "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;" +
          (max === undefined ? "" : ` PRAGMA max_page_count = ${max};`),
      );
      prepareSchema(db);
    } catch (error) {
      try {
        if (db?.isTransaction) db.exec("ROLLBACK");
      } catch { /* the original error matters */ }
      try {
        db?.close();
      } catch { /* already failed */ }
      const why = error instanceof Error ? error.message : String(error);
      throw new StoreUnavailableError(`Cannot open the SQLite store ${path}: ${why}`, {
        cause: error,
      });
    }
    return new SqliteFeatureStore(db, path, max);
  }

  #stmt(sql: string): StatementSync {
    if (this.#closed) throw new Error(`The SQLite store ${this.location} is closed`);
    let s = this.#statements.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction. On error the transaction is rolled back if
   * SQLite has not already done so (it does, e.g., on a full disk), and a failing rollback never
   * replaces the error that made the transaction fail.
   */
  #transaction<T>(fn: () => T): T {
    try {
      this.#stmt("BEGIN IMMEDIATE").run();
    } catch (error) {
      throw this.#explain(error);
    }
    try {
      const out = fn();
      this.#stmt("COMMIT").run();
      return out;
    } catch (error) {
      if (!this.#closed && this.#db.isTransaction) {
        try {
          this.#db.exec("ROLLBACK");
        } catch { /* the original error is the one to report */ }
      }
      throw this.#explain(error);
    }
  }

  /**
   * The error to report for a SQLite error: one that says the file cannot be used as it is
   * (full disk, I/O error, locked, read-only, damaged) becomes a `StoreUnavailableError` naming
   * the file; others are returned as they are.
   */
  #explain(error: unknown): unknown {
    if (!(error instanceof Error) || (error as { code?: string }).code !== "ERR_SQLITE_ERROR") {
      return error;
    }
    const code = Number((error as { errcode?: number }).errcode) & 0xff;
    const where = `the SQLite store ${this.location}`;
    let message: string | undefined;
    if (code === SQLITE_FULL) {
      message = `Cannot write to ${where}: No space left on device (SQLite: ${error.message})`;
      if (this.#maxPageCount !== undefined) {
        message += `, or the file reached its limit of ${this.#maxPageCount} pages (maxPageCount)`;
      }
    } else if (code === SQLITE_IOERR) {
      message = `Cannot read or write ${where}: ${error.message}`;
    } else if (code === SQLITE_BUSY || code === SQLITE_LOCKED) {
      message = `Cannot write to ${where}: another process held its lock for more than ` +
        `${BUSY_TIMEOUT_MS} ms (SQLite: ${error.message})`;
    } else if (code === SQLITE_READONLY) {
      message = `Cannot write to ${where}: ${error.message}`;
    } else if (code === SQLITE_CORRUPT || code === SQLITE_NOTADB) {
      message = `Cannot use ${where}: ${error.message}`;
    }
    return message === undefined ? error : new StoreUnavailableError(message, { cause: error });
  }

  /** Runs synchronous work as a promise: a throw becomes a rejection, as in the async stores. */
  #settle<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(this.#explain(error));
    }
  }

  // --- SAEs, models, datasets, analyses -------------------------------------------------------

  /** Inserts or replaces an SAE document. */
  putSae(doc: SaeDoc): Promise<void> {
    return this.#settle(() => {
      this.#stmt("INSERT OR REPLACE INTO saes (series, name, doc) VALUES (?, ?, ?)")
        .run(doc.series, doc.name, packDoc(doc));
    });
  }

  /** The SAE document, or null. */
  getSae(series: string, name: string): Promise<SaeDoc | null> {
    return this.#settle(() => {
      const row = this.#stmt("SELECT doc FROM saes WHERE series = ? AND name = ?")
        .get(series, name);
      return row ? unpack<SaeDoc>(row.doc) : null;
    });
  }

  /** All SAE documents (of one series when given), ordered by series then name. */
  listSaes(series?: string): Promise<SaeDoc[]> {
    return this.#settle(() => {
      const rows = series === undefined
        ? this.#stmt("SELECT doc FROM saes ORDER BY series, name").all()
        : this.#stmt("SELECT doc FROM saes WHERE series = ? ORDER BY name").all(series);
      return rows.map((r) => unpack<SaeDoc>(r.doc));
    });
  }

  /** Removes an SAE with its feature and analysis documents, of every generation. */
  removeSae(series: string, name: string): Promise<RemoveSaeResult> {
    return this.#settle(() =>
      this.#transaction(() => {
        const features = Number(
          this.#stmt(
            `SELECT COUNT(*) AS n FROM (
               SELECT idx FROM features WHERE sae_series = ? AND sae_name = ?
               UNION SELECT idx FROM feature_generations WHERE sae_series = ? AND sae_name = ?)`,
          ).get(series, name, series, name)?.n ?? 0,
        );
        for (
          const table of [
            "feature_analyses",
            "feature_generations",
            "generations",
            "analyzer_states",
            "analyzer_state_chunks",
            "features",
          ]
        ) {
          this.#stmt(`DELETE FROM ${table} WHERE sae_series = ? AND sae_name = ?`)
            .run(series, name);
        }
        const analyses = this.#stmt("DELETE FROM analyses WHERE sae_series = ? AND sae_name = ?")
          .run(series, name).changes;
        const sae = this.#stmt("DELETE FROM saes WHERE series = ? AND name = ?")
          .run(series, name).changes;
        return { sae: Number(sae) > 0, analyses: Number(analyses), features };
      })
    );
  }

  /** Inserts or replaces a model document. */
  putModel(doc: ModelDoc): Promise<void> {
    return this.#settle(() => {
      this.#stmt("INSERT OR REPLACE INTO models (name, doc) VALUES (?, ?)")
        .run(doc.name, packDoc(doc));
    });
  }

  /** The model document, or null. */
  getModel(name: string): Promise<ModelDoc | null> {
    return this.#settle(() => {
      const row = this.#stmt("SELECT doc FROM models WHERE name = ?").get(name);
      return row ? unpack<ModelDoc>(row.doc) : null;
    });
  }

  /** Inserts or replaces a dataset document. */
  putDataset(doc: DatasetDoc): Promise<void> {
    return this.#settle(() => {
      this.#stmt("INSERT OR REPLACE INTO datasets (name, doc) VALUES (?, ?)")
        .run(doc.name, packDoc(doc));
    });
  }

  /** The dataset document, or null. */
  getDataset(name: string): Promise<DatasetDoc | null> {
    return this.#settle(() => {
      const row = this.#stmt("SELECT doc FROM datasets WHERE name = ?").get(name);
      return row ? unpack<DatasetDoc>(row.doc) : null;
    });
  }

  /** Inserts or replaces an analysis document. */
  putAnalysis(doc: AnalysisDoc): Promise<void> {
    return this.#settle(() => {
      checkAnalysisName(doc.name);
      this.#putAnalysisRow(doc);
    });
  }

  #putAnalysisRow(doc: AnalysisDoc): void {
    this.#stmt(
      "INSERT OR REPLACE INTO analyses (sae_series, sae_name, name, doc) VALUES (?, ?, ?, ?)",
    ).run(doc.sae_series, doc.sae_name, doc.name, packDoc(doc));
  }

  #analysisRow(series: string, saeName: string, name: string): AnalysisDoc | null {
    const row = this.#stmt(
      "SELECT doc FROM analyses WHERE sae_series = ? AND sae_name = ? AND name = ?",
    ).get(series, saeName, name);
    return row ? unpack<AnalysisDoc>(row.doc) : null;
  }

  /** The analysis document, or null. */
  getAnalysis(series: string, saeName: string, name: string): Promise<AnalysisDoc | null> {
    return this.#settle(() => this.#analysisRow(series, saeName, name));
  }

  /** The analysis documents of an SAE, ordered by name. */
  listAnalyses(series: string, saeName: string): Promise<AnalysisDoc[]> {
    return this.#settle(() => this.#analysisRows(series, saeName));
  }

  #analysisRows(series: string, saeName: string): AnalysisDoc[] {
    return this.#stmt(
      "SELECT doc FROM analyses WHERE sae_series = ? AND sae_name = ? ORDER BY name",
    ).all(series, saeName).map((r) => unpack<AnalysisDoc>(r.doc));
  }

  /** Each analysis name of the SAE with a published generation → that generation. */
  #published(series: string, saeName: string): Published {
    const out: Published = new Map();
    for (const doc of this.#analysisRows(series, saeName)) {
      if (doc.generation !== undefined) out.set(doc.name, doc.generation);
    }
    return out;
  }

  /**
   * Removes the analysis of every generation (its features keep their logits and
   * interpretation), its document and its analyzer states.
   */
  removeAnalysis(series: string, saeName: string, name: string): Promise<RemoveAnalysisResult> {
    return this.#settle(() => {
      checkAnalysisName(name);
      return this.#transaction(() => {
        const key = { sae_series: series, sae_name: saeName, name };
        const seen = publishedGeneration(this.#analysisRow(series, saeName, name));
        const features = Number(
          this.#stmt(
            `SELECT COUNT(*) AS n FROM feature_analyses
             WHERE sae_series = ? AND sae_name = ? AND analysis = ? AND generation = ?`,
          ).get(series, saeName, name, seen)?.n ?? 0,
        );
        this.#removeGenerations(key, []);
        const analysis = this.#stmt(
          "DELETE FROM analyses WHERE sae_series = ? AND sae_name = ? AND name = ?",
        ).run(series, saeName, name).changes;
        this.#removeStates(series, saeName, name, undefined);
        return { analysis: Number(analysis) > 0, features };
      });
    });
  }

  /**
   * Deletes the rows of every generation of an analysis except `keep`: its analysis rows, and
   * the `feature_generations` and registry rows of the generations registered for it. Call
   * inside a transaction.
   */
  #removeGenerations(key: AnalysisKey, keep: readonly string[]): void {
    const kept = JSON.stringify(keep);
    this.#stmt(
      `DELETE FROM feature_analyses WHERE sae_series = ? AND sae_name = ? AND analysis = ?
         AND generation NOT IN (SELECT value FROM json_each(?))`,
    ).run(key.sae_series, key.sae_name, key.name, kept);
    const gone = JSON.stringify(
      this.#stmt(
        `SELECT generation FROM generations WHERE sae_series = ? AND sae_name = ? AND analysis = ?
           AND generation NOT IN (SELECT value FROM json_each(?))`,
      ).all(key.sae_series, key.sae_name, key.name, kept).map((r) => r.generation as string),
    );
    this.#stmt(
      `DELETE FROM feature_generations WHERE sae_series = ? AND sae_name = ?
         AND generation IN (SELECT value FROM json_each(?))`,
    ).run(key.sae_series, key.sae_name, gone);
    this.#stmt("DELETE FROM generations WHERE generation IN (SELECT value FROM json_each(?))")
      .run(gone);
  }

  /**
   * How many features of an analysis each generation holds in the file, published or not
   * (`""`: written without a generation). For checks and tests: readers see only the published
   * one.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SqliteFeatureStore } from "./sqlite.ts";
   * await using store = SqliteFeatureStore.open({ path: ":memory:" });
   * assert.deepEqual(await store.storedGenerations("s", "n", "default"), {});
   * ```
   */
  storedGenerations(
    series: string,
    saeName: string,
    analysis: string,
  ): Promise<Record<string, number>> {
    return this.#settle(() => {
      const out: Record<string, number> = {};
      for (
        const row of this.#stmt(
          `SELECT generation, COUNT(*) AS n FROM feature_analyses
           WHERE sae_series = ? AND sae_name = ? AND analysis = ?
           GROUP BY generation ORDER BY generation`,
        ).all(series, saeName, analysis)
      ) {
        out[row.generation as string] = Number(row.n);
      }
      return out;
    });
  }

  // --- Runs -----------------------------------------------------------------------------------

  /**
   * Runs `fn` in a transaction of its own that only frees space (removes rows no reader sees):
   * when it fails (a full disk, a lock held too long) the rows stay, invisible, and the next
   * begin or publish of the analysis removes them.
   */
  #tidy(fn: () => void): void {
    try {
      this.#transaction(fn);
    } catch { /* see above */ }
  }

  /**
   * Begins a run, in one `BEGIN IMMEDIATE` transaction: fails while another run's lease is
   * live, else records the run and registers its generation; then removes what earlier
   * unpublished runs wrote.
   */
  beginAnalysisRun(doc: BeginDoc, lease: LeaseOptions): Promise<AnalysisRunInfo> {
    return this.#settle(() => {
      const key = checkKey(keyOf(doc));
      const run = newRun(lease);
      const now = lease.now ?? new Date();
      let keep: string[] = [];
      this.#transaction(() => {
        const next = beginDoc(
          this.#analysisRow(key.sae_series, key.sae_name, key.name),
          doc,
          run,
          now,
        );
        this.#putAnalysisRow(next);
        this.#stmt(
          `INSERT INTO generations (generation, sae_series, sae_name, analysis, created_at)
           VALUES (?, ?, ?, ?, ?)`,
        ).run(run.generation, key.sae_series, key.sae_name, key.name, now.toISOString());
        keep = [publishedGeneration(next), run.generation];
      });
      this.#tidy(() => this.#removeGenerations(key, keep));
      return run;
    });
  }

  /** Renews the lease of the run writing `generation`. */
  renewAnalysisRun(
    key: AnalysisKey,
    generation: string,
    options: { leaseMs: number; now?: Date },
  ): Promise<void> {
    return this.#settle(() => {
      checkKey(key);
      checkGeneration(generation);
      this.#transaction(() => {
        const next = renewDoc(
          this.#analysisRow(key.sae_series, key.sae_name, key.name),
          key,
          generation,
          options.leaseMs,
          options.now ?? new Date(),
        );
        if (next) this.#putAnalysisRow(next);
      });
    });
  }

  /**
   * Publishes the run writing `generation` by one write of the analysis row, then removes every
   * other generation's rows.
   */
  publishAnalysisRun(doc: PublishDoc, generation: string): Promise<void> {
    return this.#settle(() => {
      const key = checkKey(keyOf(doc));
      checkGeneration(generation);
      const switched = this.#transaction(() => {
        const next = publishDoc(
          this.#analysisRow(key.sae_series, key.sae_name, key.name),
          doc,
          generation,
        );
        if (next) this.#putAnalysisRow(next);
        return next !== null;
      });
      if (switched) this.#tidy(() => this.#removeGenerations(key, [generation]));
    });
  }

  /**
   * Ends the run writing `generation` without publishing (one write of the analysis row), then
   * removes what it wrote.
   */
  endAnalysisRun(key: AnalysisKey, generation: string, outcome: RunOutcome): Promise<void> {
    return this.#settle(() => {
      checkKey(key);
      checkGeneration(generation);
      const current = this.#transaction(() => {
        const current = this.#analysisRow(key.sae_series, key.sae_name, key.name);
        const next = endDoc(current, generation, outcome, new Date());
        if (next) this.#putAnalysisRow(next);
        return current;
      });
      if (publishedGeneration(current) === generation) return;
      this.#tidy(() => {
        this.#stmt(
          `DELETE FROM feature_analyses WHERE sae_series = ? AND sae_name = ? AND analysis = ?
             AND generation = ?`,
        ).run(key.sae_series, key.sae_name, key.name, generation);
        this.#stmt(
          "DELETE FROM feature_generations WHERE sae_series = ? AND sae_name = ? AND generation = ?",
        ).run(key.sae_series, key.sae_name, generation);
        this.#stmt("DELETE FROM generations WHERE generation = ?").run(generation);
      });
    });
  }

  // --- Features -------------------------------------------------------------------------------

  /**
   * Upserts features in transactions of {@linkcode WRITE_BATCH} records; under a generation,
   * each transaction first checks that the generation is still registered.
   */
  async writeFeatures(
    records: readonly FeatureRecord[],
    options: { generation?: string } = {},
  ): Promise<void> {
    const generation = checkGeneration(options.generation ?? "", true);
    for (const r of records) checkRecord(r);
    const upsertFeature = this.#stmt(
      `INSERT INTO features
         (sae_series, sae_name, idx, logits, logits_at, interpretation, interpretation_text)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (sae_series, sae_name, idx) DO UPDATE SET
         logits = COALESCE(excluded.logits, logits),
         logits_at = CASE WHEN excluded.logits IS NULL THEN logits_at ELSE excluded.logits_at END,
         interpretation = COALESCE(excluded.interpretation, interpretation),
         interpretation_text = CASE WHEN excluded.interpretation IS NULL THEN interpretation_text
                                    ELSE excluded.interpretation_text END`,
    );
    const upsertGeneration = this.#stmt(
      `INSERT INTO feature_generations (sae_series, sae_name, generation, idx, logits, logits_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (sae_series, sae_name, generation, idx) DO UPDATE SET
         logits = COALESCE(excluded.logits, logits),
         logits_at = CASE WHEN excluded.logits IS NULL THEN logits_at ELSE excluded.logits_at END`,
    );
    const upsertAnalysis = this.#stmt(
      `INSERT INTO feature_analyses (sae_series, sae_name, analysis, generation, idx, act_times,
         max_activation, n_analyzed_tokens, doc)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (sae_series, sae_name, analysis, generation, idx) DO UPDATE SET
         act_times = excluded.act_times, max_activation = excluded.max_activation,
         n_analyzed_tokens = excluded.n_analyzed_tokens, doc = excluded.doc`,
    );
    for (let start = 0; start < records.length; start += WRITE_BATCH) {
      const batch = records.slice(start, start + WRITE_BATCH);
      // Encode outside the transaction so that the write lock is held only for the inserts.
      const at = Date.now();
      const rows = batch.map((r) => ({
        r,
        logits: r.logits === undefined ? null : packDoc(r.logits),
        interpretation: r.interpretation === undefined ? null : packDoc(r.interpretation),
        analyses: Object.entries(r.analyses ?? {}).map(([name, a]) => ({
          name,
          a,
          doc: packFeatureAnalysis(a),
        })),
      }));
      this.#transaction(() => {
        if (generation !== "") this.#checkRegistered(generation);
        for (const { r, logits, interpretation, analyses } of rows) {
          if (generation === "") {
            upsertFeature.run(
              r.sae_series,
              r.sae_name,
              r.index,
              logits,
              logits === null ? null : at,
              interpretation,
              r.interpretation?.text ?? null,
            );
          } else {
            upsertGeneration.run(
              r.sae_series,
              r.sae_name,
              generation,
              r.index,
              logits,
              logits === null ? null : at,
            );
            // An interpretation belongs to the feature, not to a run: written at once.
            if (interpretation !== null) {
              upsertFeature.run(
                r.sae_series,
                r.sae_name,
                r.index,
                null,
                null,
                interpretation,
                r.interpretation?.text ?? null,
              );
            }
          }
          for (const { name, a, doc } of analyses) {
            upsertAnalysis.run(
              r.sae_series,
              r.sae_name,
              name,
              generation,
              r.index,
              a.act_times,
              a.max_activation,
              a.n_analyzed_tokens,
              doc,
            );
          }
        }
      });
      // Let other tasks (stream stages, timers) run between batches.
      if (start + WRITE_BATCH < records.length) await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** Throws unless `generation` was begun and not yet removed. Call inside a transaction. */
  #checkRegistered(generation: string): void {
    const row = this.#stmt("SELECT analysis FROM generations WHERE generation = ?")
      .get(generation);
    if (!row) {
      throw new AnalysisBusyError(
        `Cannot write features under generation ${generation} in ${this.location}: no run ` +
          `holds it (it was never begun here, or it ended, or a later run removed it after ` +
          `its lease lapsed)`,
      );
    }
  }

  /**
   * The records of `indices` (ascending, unique) as readers see them. With `analysis`, only
   * features that have it, each with only it; else every feature of the SAE with all its
   * analyses. Logits: the latest written of those written without a generation and those of
   * the published generations of the analyses read.
   */
  #records(
    series: string,
    name: string,
    published: Published,
    indices: readonly number[],
    analysis: string | undefined,
  ): FeatureRecord[] {
    if (indices.length === 0) return [];
    const ids = JSON.stringify(indices);
    const byIndex = <T extends Row>(rows: T[]) => {
      const map = new Map<number, T[]>();
      for (const row of rows) {
        const i = Number(row.idx);
        const list = map.get(i);
        if (list) list.push(row);
        else map.set(i, [row]);
      }
      return map;
    };
    const generations = analysis === undefined
      ? [...new Set(published.values())]
      : [published.get(analysis) ?? ""].filter((g) => g !== "");
    const features = byIndex(
      this.#stmt(
        `SELECT idx, logits, logits_at, interpretation FROM features
         WHERE sae_series = ? AND sae_name = ? AND idx IN (SELECT value FROM json_each(?))`,
      ).all(series, name, ids),
    );
    const generationRows = byIndex(
      generations.length === 0 ? [] : this.#stmt(
        `SELECT idx, logits, logits_at FROM feature_generations
         WHERE sae_series = ? AND sae_name = ? AND generation IN (SELECT value FROM json_each(?))
           AND idx IN (SELECT value FROM json_each(?))`,
      ).all(series, name, JSON.stringify(generations), ids),
    );
    const analysisRows = byIndex(
      analysis === undefined
        ? this.#stmt(
          `SELECT idx, analysis, generation, doc FROM feature_analyses
           WHERE sae_series = ? AND sae_name = ? AND idx IN (SELECT value FROM json_each(?))`,
        ).all(series, name, ids).filter((r) =>
          r.generation === (published.get(r.analysis as string) ?? "")
        )
        : this.#stmt(
          `SELECT idx, analysis, generation, doc FROM feature_analyses
           WHERE sae_series = ? AND sae_name = ? AND analysis = ? AND generation = ?
             AND idx IN (SELECT value FROM json_each(?))`,
        ).all(series, name, analysis, published.get(analysis) ?? "", ids),
    );
    const out: FeatureRecord[] = [];
    for (const index of indices) {
      const feature = features.get(index)?.[0];
      const generated = generationRows.get(index) ?? [];
      const own = analysisRows.get(index) ?? [];
      if (analysis !== undefined ? own.length === 0 : !feature && generated.length === 0) {
        continue;
      }
      const analyses: Record<string, unknown> = {};
      for (const a of own) analyses[a.analysis as string] = unpack(a.doc);
      const logits = newest([feature, ...generated].map((row) => ({
        value: row?.logits ?? null,
        at: Number(row?.logits_at ?? 0),
      })));
      out.push(makeRecord(
        series,
        name,
        index,
        analyses,
        logits == null ? undefined : unpack(logits),
        feature?.interpretation == null ? undefined : unpack(feature.interpretation),
      ));
    }
    return out;
  }

  /** One feature with all its published analyses, or null. */
  getFeature(series: string, name: string, index: number): Promise<FeatureRecord | null> {
    return this.#settle(() => {
      checkIndex(index);
      const [record] = this.#records(
        series,
        name,
        this.#published(series, name),
        [index],
        undefined,
      );
      return record ?? null;
    });
  }

  #where(filter: FeatureFilter): { sql: string; params: (string | number)[] } {
    const o = resolveListOptions(filter);
    const generation = publishedGeneration(this.#analysisRow(o.series, o.name, o.analysis));
    let sql = "fa.sae_series = ? AND fa.sae_name = ? AND fa.analysis = ? AND fa.generation = ?";
    if (o.alive === true) sql += " AND fa.act_times > 0";
    if (o.alive === false) sql += " AND fa.act_times = 0";
    return { sql, params: [o.series, o.name, o.analysis, generation] };
  }

  /** Summaries of the features of one analysis (its published generation), sorted and paged. */
  listFeatures(options: FeatureListOptions): Promise<FeatureSummary[]> {
    return this.#settle(() => {
      const o = resolveListOptions(options);
      const where = this.#where(options);
      const column = o.sort === "index" ? "idx" : o.sort;
      const order = o.sort === "index"
        ? `fa.idx ${o.order.toUpperCase()}`
        : `fa.${column} ${o.order.toUpperCase()}, fa.idx ASC`;
      const rows = this.#stmt(
        `SELECT fa.idx, fa.act_times, fa.max_activation, fa.n_analyzed_tokens, f.interpretation_text
         FROM feature_analyses fa LEFT JOIN features f
           ON f.sae_series = fa.sae_series AND f.sae_name = fa.sae_name AND f.idx = fa.idx
         WHERE ${where.sql} ORDER BY ${order} LIMIT ? OFFSET ?`,
      ).all(...where.params, o.limit ?? -1, o.skip);
      return rows.map((r) => {
        const s: FeatureSummary = {
          index: Number(r.idx),
          act_times: Number(r.act_times),
          // SQLite keeps NaN as NULL; the exact value is in the document.
          max_activation: r.max_activation === null ? NaN : Number(r.max_activation),
          n_analyzed_tokens: Number(r.n_analyzed_tokens),
        };
        if (typeof r.interpretation_text === "string") {
          s.interpretation_text = r.interpretation_text;
        }
        return s;
      });
    });
  }

  /** How many features `listFeatures()` would list without paging. */
  countFeatures(filter: FeatureFilter): Promise<number> {
    return this.#settle(() => {
      const where = this.#where(filter);
      const row = this.#stmt(`SELECT COUNT(*) AS n FROM feature_analyses fa WHERE ${where.sql}`)
        .get(...where.params);
      return Number(row?.n ?? 0);
    });
  }

  /**
   * Streams feature records by ascending index, one page per pull. The published generations
   * are read at the first pull; if one of those read changes before the end, the stream errors
   * instead of ending with a mix.
   */
  readFeatures(
    series: string,
    name: string,
    options: ReadFeaturesOptions = {},
  ): ReadableStream<FeatureRecord> {
    const pageSize = resolvePageSize(options);
    const analysis = options.analysis;
    const pages = options.indices ? indexPages(options.indices, pageSize) : undefined;
    let published: Published | undefined;
    const seen = (p: Published) =>
      JSON.stringify(
        analysis === undefined ? [...p].sort() : [p.get(analysis) ?? ""],
      );
    const start = () => (published ??= this.#published(series, name));
    const finish = () => {
      if (published !== undefined && seen(published) !== seen(this.#published(series, name))) {
        const what = analysis === undefined
          ? `an analysis of ${series}/${name}`
          : describeKey({ sae_series: series, sae_name: name, name: analysis });
        throw new Error(
          `Cannot finish reading features of ${series}/${name}: ${what} was published anew ` +
            `while they were read; read again`,
        );
      }
      return null;
    };
    const nextIndices = (after: number, p: Published): number[] => {
      if (analysis !== undefined) {
        return this.#stmt(
          `SELECT idx FROM feature_analyses
           WHERE sae_series = ? AND sae_name = ? AND analysis = ? AND generation = ? AND idx > ?
           ORDER BY idx LIMIT ?`,
        ).all(series, name, analysis, p.get(analysis) ?? "", after, pageSize)
          .map((r) => Number(r.idx));
      }
      return this.#stmt(
        `SELECT idx FROM features WHERE sae_series = ? AND sae_name = ? AND idx > ?
         UNION SELECT idx FROM feature_generations WHERE sae_series = ? AND sae_name = ?
           AND generation IN (SELECT value FROM json_each(?)) AND idx > ?
         ORDER BY idx LIMIT ?`,
      ).all(
        series,
        name,
        after,
        series,
        name,
        JSON.stringify([...new Set(p.values())]),
        after,
        pageSize,
      )
        .map((r) => Number(r.idx));
    };

    if (pages) {
      return pagedStream(0, (i) =>
        this.#settle(() => {
          const page = pages[i];
          if (!page) return finish();
          return { records: this.#records(series, name, start(), page, analysis), cursor: i + 1 };
        }));
    }
    return pagedStream(-1, (after) =>
      this.#settle(() => {
        const p = start();
        const indices = nextIndices(after, p);
        if (indices.length === 0) return finish();
        return {
          records: this.#records(series, name, p, indices, analysis),
          cursor: indices[indices.length - 1]!,
        };
      }));
  }

  // --- Analyzer states ------------------------------------------------------------------------

  /** Stores an analyzer state's bytes under a fresh generation, then makes it visible. */
  async putAnalyzerState(
    key: AnalyzerStateKey,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<AnalyzerStateInfo> {
    const k = checkStateKey(key);
    const generation = crypto.randomUUID();
    const insert = this.#stmt(
      `INSERT INTO analyzer_state_chunks (generation, seq, sae_series, sae_name, analysis, data)
       VALUES (?, ?, ?, ?, ?, ?)`,
    );
    let seq = 0;
    let bytes = 0;
    try {
      for await (const piece of pieces(chunks, STATE_CHUNK_BYTES)) {
        insert.run(generation, seq++, k.sae_series, k.sae_name, k.analysis, piece);
        bytes += piece.length;
      }
      const info: AnalyzerStateInfo = {
        sae_series: k.sae_series,
        sae_name: k.sae_name,
        analysis: k.analysis,
        shard: k.shard,
        count: k.count,
        bytes,
        chunks: seq,
        created_at: new Date().toISOString(),
      };
      this.#transaction(() => {
        const old = this.#stmt(
          `SELECT generation FROM analyzer_states
           WHERE sae_series = ? AND sae_name = ? AND analysis = ? AND count = ? AND shard = ?`,
        ).get(k.sae_series, k.sae_name, k.analysis, k.count, k.shard);
        this.#stmt(
          `INSERT OR REPLACE INTO analyzer_states
             (sae_series, sae_name, analysis, shard, count, generation, bytes, chunks, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          k.sae_series,
          k.sae_name,
          k.analysis,
          k.shard,
          k.count,
          generation,
          bytes,
          seq,
          info.created_at,
        );
        if (old) {
          this.#stmt("DELETE FROM analyzer_state_chunks WHERE generation = ?")
            .run(old.generation as string);
        }
      });
      return info;
    } catch (error) {
      // The pieces written so far belong to no manifest: remove them (best effort).
      try {
        if (!this.#closed) {
          this.#stmt("DELETE FROM analyzer_state_chunks WHERE generation = ?").run(generation);
        }
      } catch { /* the original error matters */ }
      throw error;
    }
  }

  /** The bytes of a stored analyzer state, one piece per iteration step, or null. */
  getAnalyzerState(key: AnalyzerStateKey): Promise<AsyncIterable<Uint8Array> | null> {
    return this.#settle(() => {
      const k = checkStateKey(key);
      const row = this.#stmt(
        `SELECT generation, chunks FROM analyzer_states
         WHERE sae_series = ? AND sae_name = ? AND analysis = ? AND count = ? AND shard = ?`,
      ).get(k.sae_series, k.sae_name, k.analysis, k.count, k.shard);
      if (!row) return null;
      const generation = row.generation as string;
      const n = Number(row.chunks);
      const read = this.#stmt(
        "SELECT data FROM analyzer_state_chunks WHERE generation = ? AND seq = ?",
      );
      const where =
        `${k.sae_series}/${k.sae_name} analysis ${k.analysis} shard ${k.shard}/${k.count}`;
      return (async function* () {
        for (let seq = 0; seq < n; seq++) {
          const piece = read.get(generation, seq);
          if (!piece) {
            throw new Error(
              `Cannot read the analyzer state of ${where}: piece ${seq} of ${n} is gone (replaced while reading?)`,
            );
          }
          yield piece.data as Uint8Array;
        }
      })();
    });
  }

  /** The analyzer states stored for one analysis, by count then shard. */
  listAnalyzerStates(
    series: string,
    saeName: string,
    analysis: string,
  ): Promise<AnalyzerStateInfo[]> {
    return this.#settle(() => {
      checkAnalysisName(analysis);
      return this.#stmt(
        `SELECT sae_series, sae_name, analysis, shard, count, bytes, chunks, created_at
         FROM analyzer_states WHERE sae_series = ? AND sae_name = ? AND analysis = ?
         ORDER BY count, shard`,
      ).all(series, saeName, analysis).map((r) => ({
        sae_series: r.sae_series as string,
        sae_name: r.sae_name as string,
        analysis: r.analysis as string,
        shard: Number(r.shard),
        count: Number(r.count),
        bytes: Number(r.bytes),
        chunks: Number(r.chunks),
        created_at: r.created_at as string,
      }));
    });
  }

  /** Removes the analyzer states of one analysis (of `count` shards when given). */
  removeAnalyzerStates(
    series: string,
    saeName: string,
    analysis: string,
    options: { count?: number } = {},
  ): Promise<number> {
    return this.#settle(() => {
      checkAnalysisName(analysis);
      return this.#transaction(() => this.#removeStates(series, saeName, analysis, options.count));
    });
  }

  /** Deletes manifests and their pieces (all pieces of the analysis, orphans included, when no
   * count is given); call inside a transaction. */
  #removeStates(series: string, saeName: string, analysis: string, count: number | undefined) {
    if (count === undefined) {
      this.#stmt(
        "DELETE FROM analyzer_state_chunks WHERE sae_series = ? AND sae_name = ? AND analysis = ?",
      ).run(series, saeName, analysis);
      return Number(
        this.#stmt(
          "DELETE FROM analyzer_states WHERE sae_series = ? AND sae_name = ? AND analysis = ?",
        ).run(series, saeName, analysis).changes,
      );
    }
    this.#stmt(
      `DELETE FROM analyzer_state_chunks WHERE generation IN (
         SELECT generation FROM analyzer_states
         WHERE sae_series = ? AND sae_name = ? AND analysis = ? AND count = ?)`,
    ).run(series, saeName, analysis, count);
    return Number(
      this.#stmt(
        `DELETE FROM analyzer_states
         WHERE sae_series = ? AND sae_name = ? AND analysis = ? AND count = ?`,
      ).run(series, saeName, analysis, count).changes,
    );
  }

  /** Closes the database file. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#statements.clear();
      this.#db.close();
    }
    return Promise.resolve();
  }

  /** Same as {@linkcode SqliteFeatureStore.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
