/**
 * The embedded store: one SQLite file (`<output_dir>/saeflow.sqlite`) through `node:sqlite`.
 *
 * Tables: `saes`, `models`, `datasets`, `analyses` (one JSON document per row), `features` (one
 * row per `(sae_series, sae_name, idx)` with `logits` and `interpretation` documents and the
 * interpretation text) and `feature_analyses` (one row per feature and analysis: indexed
 * `act_times`, `max_activation`, `n_analyzed_tokens` columns and the analysis document).
 * Documents are packed by `_codec.ts`: JSON text, or a blob when they hold typed arrays.
 * Analyzer states (sharded runs): `analyzer_states` holds one manifest row per
 * `(sae_series, sae_name, analysis, shard, count)` naming a generation; `analyzer_state_chunks`
 * holds the pieces (a blob of at most 8 MiB each) of every generation. A put writes the pieces of
 * a fresh generation, then in one transaction points the manifest at it and deletes the old
 * generation's pieces: a reader sees the old state or the new one, never a mix.
 * The database runs in WAL mode, so a viewer can read while an analysis writes; writes go in
 * transactions through prepared statements.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { StoreUnavailableError } from "../errors.ts";
import type { FeatureRecord } from "../types.ts";
import { packDoc, packFeatureAnalysis, unpackDoc } from "./_codec.ts";
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

/** The file name of the store under `output_dir`. */
export const SQLITE_FILE_NAME = "saeflow.sqlite";

/** Options of {@linkcode SqliteFeatureStore.open}; give `path` or `outputDir`. */
export interface SqliteStoreOptions {
  /** The database file (or `:memory:`). Wins over `outputDir`. */
  path?: string;
  /** The folder that holds `saeflow.sqlite`; created when missing. */
  outputDir?: string;
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
  logits BLOB, interpretation BLOB, interpretation_text TEXT,
  PRIMARY KEY (sae_series, sae_name, idx));
CREATE TABLE IF NOT EXISTS feature_analyses (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL, idx INTEGER NOT NULL,
  act_times INTEGER NOT NULL, max_activation REAL, n_analyzed_tokens INTEGER NOT NULL,
  doc BLOB NOT NULL,
  PRIMARY KEY (sae_series, sae_name, analysis, idx));
CREATE INDEX IF NOT EXISTS feature_analyses_act_times
  ON feature_analyses (sae_series, sae_name, analysis, act_times, idx);
CREATE INDEX IF NOT EXISTS feature_analyses_max_activation
  ON feature_analyses (sae_series, sae_name, analysis, max_activation, idx);
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

type Row = Record<string, unknown>;

/** Runs synchronous work as a promise: a throw becomes a rejection, as in the async stores. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Decodes a stored document column (JSON text or packed blob). */
function unpack<T>(stored: unknown): T {
  return unpackDoc(stored as string | Uint8Array) as T;
}

/**
 * The SQLite implementation of {@linkcode FeatureStore}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteFeatureStore } from "./sqlite.ts";
 * await using store = SqliteFeatureStore.open({ path: ":memory:" });
 * await store.writeFeatures([{ sae_series: "s", sae_name: "n", index: 3, analyses: {} }]);
 * assert((await store.getFeature("s", "n", 3))?.index === 3);
 * ```
 */
export class SqliteFeatureStore implements FeatureStore {
  /** The database file path. */
  readonly location: string;
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();
  #closed = false;

  private constructor(db: DatabaseSync, location: string) {
    this.#db = db;
    this.location = location;
  }

  /**
   * Opens (and creates when missing) the store file.
   *
   * @param options `path`, or `outputDir` for `<outputDir>/saeflow.sqlite`.
   * @returns The open store.
   * @throws {StoreUnavailableError} When the file cannot be created or opened.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SqliteFeatureStore } from "./sqlite.ts";
   * const dir = await Deno.makeTempDir();
   * const store = SqliteFeatureStore.open({ outputDir: dir });
   * assert(store.location.endsWith("saeflow.sqlite"));
   * await store.close();
   * ```
   */
  static open(options: SqliteStoreOptions): SqliteFeatureStore {
    const path = options.path ??
      (options.outputDir !== undefined ? join(options.outputDir, SQLITE_FILE_NAME) : undefined);
    if (path === undefined) {
      throw new TypeError("SqliteFeatureStore.open() needs a path or an outputDir");
    }
    let db: DatabaseSync | undefined;
    try {
      if (options.path === undefined && options.outputDir !== undefined) {
        Deno.mkdirSync(options.outputDir, { recursive: true });
      }
      db = new DatabaseSync(path);
      db.exec(
        "PRAGMA page_size = 32768; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; " +
          "PRAGMA busy_timeout = 5000;",
      );
      db.exec(SCHEMA);
    } catch (error) {
      try {
        db?.close();
      } catch { /* already failed */ }
      const why = error instanceof Error ? error.message : String(error);
      throw new StoreUnavailableError(`Cannot open the SQLite store ${path}: ${why}`, {
        cause: error,
      });
    }
    return new SqliteFeatureStore(db, path);
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

  #transaction<T>(fn: () => T): T {
    this.#stmt("BEGIN IMMEDIATE").run();
    try {
      const out = fn();
      this.#stmt("COMMIT").run();
      return out;
    } catch (error) {
      this.#stmt("ROLLBACK").run();
      throw error;
    }
  }

  // --- SAEs, models, datasets, analyses -------------------------------------------------------

  /** Inserts or replaces an SAE document. */
  putSae(doc: SaeDoc): Promise<void> {
    return settle(() => {
      this.#stmt("INSERT OR REPLACE INTO saes (series, name, doc) VALUES (?, ?, ?)")
        .run(doc.series, doc.name, packDoc(doc));
    });
  }

  /** The SAE document, or null. */
  getSae(series: string, name: string): Promise<SaeDoc | null> {
    return settle(() => {
      const row = this.#stmt("SELECT doc FROM saes WHERE series = ? AND name = ?")
        .get(series, name);
      return row ? unpack<SaeDoc>(row.doc) : null;
    });
  }

  /** All SAE documents (of one series when given), ordered by series then name. */
  listSaes(series?: string): Promise<SaeDoc[]> {
    return settle(() => {
      const rows = series === undefined
        ? this.#stmt("SELECT doc FROM saes ORDER BY series, name").all()
        : this.#stmt("SELECT doc FROM saes WHERE series = ? ORDER BY name").all(series);
      return rows.map((r) => unpack<SaeDoc>(r.doc));
    });
  }

  /** Removes an SAE with its feature and analysis documents. */
  removeSae(series: string, name: string): Promise<RemoveSaeResult> {
    return settle(() =>
      this.#transaction(() => {
        this.#stmt("DELETE FROM feature_analyses WHERE sae_series = ? AND sae_name = ?")
          .run(series, name);
        this.#stmt("DELETE FROM analyzer_states WHERE sae_series = ? AND sae_name = ?")
          .run(series, name);
        this.#stmt("DELETE FROM analyzer_state_chunks WHERE sae_series = ? AND sae_name = ?")
          .run(series, name);
        const features = this.#stmt("DELETE FROM features WHERE sae_series = ? AND sae_name = ?")
          .run(series, name).changes;
        const analyses = this.#stmt("DELETE FROM analyses WHERE sae_series = ? AND sae_name = ?")
          .run(series, name).changes;
        const sae = this.#stmt("DELETE FROM saes WHERE series = ? AND name = ?")
          .run(series, name).changes;
        return { sae: Number(sae) > 0, analyses: Number(analyses), features: Number(features) };
      })
    );
  }

  /** Inserts or replaces a model document. */
  putModel(doc: ModelDoc): Promise<void> {
    return settle(() => {
      this.#stmt("INSERT OR REPLACE INTO models (name, doc) VALUES (?, ?)")
        .run(doc.name, packDoc(doc));
    });
  }

  /** The model document, or null. */
  getModel(name: string): Promise<ModelDoc | null> {
    return settle(() => {
      const row = this.#stmt("SELECT doc FROM models WHERE name = ?").get(name);
      return row ? unpack<ModelDoc>(row.doc) : null;
    });
  }

  /** Inserts or replaces a dataset document. */
  putDataset(doc: DatasetDoc): Promise<void> {
    return settle(() => {
      this.#stmt("INSERT OR REPLACE INTO datasets (name, doc) VALUES (?, ?)")
        .run(doc.name, packDoc(doc));
    });
  }

  /** The dataset document, or null. */
  getDataset(name: string): Promise<DatasetDoc | null> {
    return settle(() => {
      const row = this.#stmt("SELECT doc FROM datasets WHERE name = ?").get(name);
      return row ? unpack<DatasetDoc>(row.doc) : null;
    });
  }

  /** Inserts or replaces an analysis document. */
  putAnalysis(doc: AnalysisDoc): Promise<void> {
    return settle(() => {
      checkAnalysisName(doc.name);
      this.#stmt(
        "INSERT OR REPLACE INTO analyses (sae_series, sae_name, name, doc) VALUES (?, ?, ?, ?)",
      ).run(doc.sae_series, doc.sae_name, doc.name, packDoc(doc));
    });
  }

  /** The analysis document, or null. */
  getAnalysis(series: string, saeName: string, name: string): Promise<AnalysisDoc | null> {
    return settle(() => {
      const row = this.#stmt(
        "SELECT doc FROM analyses WHERE sae_series = ? AND sae_name = ? AND name = ?",
      ).get(series, saeName, name);
      return row ? unpack<AnalysisDoc>(row.doc) : null;
    });
  }

  /** The analysis documents of an SAE, ordered by name. */
  listAnalyses(series: string, saeName: string): Promise<AnalysisDoc[]> {
    return settle(() => {
      const rows = this.#stmt(
        "SELECT doc FROM analyses WHERE sae_series = ? AND sae_name = ? ORDER BY name",
      ).all(series, saeName);
      return rows.map((r) => unpack<AnalysisDoc>(r.doc));
    });
  }

  /** Removes `analyses.<name>` from every feature of the SAE, and the analysis document. */
  removeAnalysis(series: string, saeName: string, name: string): Promise<RemoveAnalysisResult> {
    return settle(() => {
      checkAnalysisName(name);
      return this.#transaction(() => {
        const features = this.#stmt(
          "DELETE FROM feature_analyses WHERE sae_series = ? AND sae_name = ? AND analysis = ?",
        ).run(series, saeName, name).changes;
        const analysis = this.#stmt(
          "DELETE FROM analyses WHERE sae_series = ? AND sae_name = ? AND name = ?",
        ).run(series, saeName, name).changes;
        this.#removeStates(series, saeName, name, undefined);
        return { analysis: Number(analysis) > 0, features: Number(features) };
      });
    });
  }

  // --- Features -------------------------------------------------------------------------------

  /** Upserts features in transactions of {@linkcode WRITE_BATCH} records. */
  async writeFeatures(records: readonly FeatureRecord[]): Promise<void> {
    for (const r of records) checkRecord(r);
    const upsertFeature = this.#stmt(
      `INSERT INTO features (sae_series, sae_name, idx, logits, interpretation, interpretation_text)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (sae_series, sae_name, idx) DO UPDATE SET
         logits = COALESCE(excluded.logits, logits),
         interpretation = COALESCE(excluded.interpretation, interpretation),
         interpretation_text = CASE WHEN excluded.interpretation IS NULL THEN interpretation_text
                                    ELSE excluded.interpretation_text END`,
    );
    const upsertAnalysis = this.#stmt(
      `INSERT INTO feature_analyses
         (sae_series, sae_name, analysis, idx, act_times, max_activation, n_analyzed_tokens, doc)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (sae_series, sae_name, analysis, idx) DO UPDATE SET
         act_times = excluded.act_times, max_activation = excluded.max_activation,
         n_analyzed_tokens = excluded.n_analyzed_tokens, doc = excluded.doc`,
    );
    for (let start = 0; start < records.length; start += WRITE_BATCH) {
      const batch = records.slice(start, start + WRITE_BATCH);
      // Encode outside the transaction so that the write lock is held only for the inserts.
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
        for (const { r, logits, interpretation, analyses } of rows) {
          upsertFeature.run(
            r.sae_series,
            r.sae_name,
            r.index,
            logits,
            interpretation,
            r.interpretation?.text ?? null,
          );
          for (const { name, a, doc } of analyses) {
            upsertAnalysis.run(
              r.sae_series,
              r.sae_name,
              name,
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

  #assemble(series: string, name: string, feature: Row, analysisRows: Row[]): FeatureRecord {
    const analyses: Record<string, unknown> = {};
    for (const a of analysisRows) analyses[a.analysis as string] = unpack(a.doc);
    return makeRecord(
      series,
      name,
      Number(feature.idx),
      analyses,
      feature.logits == null ? undefined : unpack(feature.logits),
      feature.interpretation == null ? undefined : unpack(feature.interpretation),
    );
  }

  /** One feature with all its analyses, or null. */
  getFeature(series: string, name: string, index: number): Promise<FeatureRecord | null> {
    return settle(() => {
      checkIndex(index);
      const feature = this.#stmt(
        "SELECT idx, logits, interpretation FROM features WHERE sae_series = ? AND sae_name = ? AND idx = ?",
      ).get(series, name, index);
      if (!feature) return null;
      const analyses = this.#stmt(
        `SELECT analysis, doc FROM feature_analyses
         WHERE sae_series = ? AND sae_name = ? AND idx = ? ORDER BY analysis`,
      ).all(series, name, index);
      return this.#assemble(series, name, feature, analyses);
    });
  }

  #where(filter: FeatureFilter): { sql: string; params: (string | number)[] } {
    const o = resolveListOptions(filter);
    let sql = "fa.sae_series = ? AND fa.sae_name = ? AND fa.analysis = ?";
    if (o.alive === true) sql += " AND fa.act_times > 0";
    if (o.alive === false) sql += " AND fa.act_times = 0";
    return { sql, params: [o.series, o.name, o.analysis] };
  }

  /** Summaries of the features of one analysis, sorted and paged. */
  listFeatures(options: FeatureListOptions): Promise<FeatureSummary[]> {
    return settle(() => {
      const o = resolveListOptions(options);
      const where = this.#where(options);
      const column = o.sort === "index" ? "idx" : o.sort;
      const order = o.sort === "index"
        ? `fa.idx ${o.order.toUpperCase()}`
        : `fa.${column} ${o.order.toUpperCase()}, fa.idx ASC`;
      const rows = this.#stmt(
        `SELECT fa.idx, fa.act_times, fa.max_activation, fa.n_analyzed_tokens, f.interpretation_text
         FROM feature_analyses fa JOIN features f
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
    return settle(() => {
      const where = this.#where(filter);
      const row = this.#stmt(`SELECT COUNT(*) AS n FROM feature_analyses fa WHERE ${where.sql}`)
        .get(...where.params);
      return Number(row?.n ?? 0);
    });
  }

  /** Streams feature records by ascending index, one page per pull. */
  readFeatures(
    series: string,
    name: string,
    options: ReadFeaturesOptions = {},
  ): ReadableStream<FeatureRecord> {
    const pageSize = resolvePageSize(options);
    const analysis = options.analysis;
    const pages = options.indices ? indexPages(options.indices, pageSize) : undefined;
    let names: string[] | undefined; // analysis names of the SAE, read at the first page

    const readPage = (after: number, page: number[] | undefined) => {
      let features: Row[];
      if (analysis !== undefined) {
        const base = `SELECT f.idx, f.logits, f.interpretation, fa.doc AS analysis_doc
          FROM feature_analyses fa JOIN features f
            ON f.sae_series = fa.sae_series AND f.sae_name = fa.sae_name AND f.idx = fa.idx
          WHERE fa.sae_series = ? AND fa.sae_name = ? AND fa.analysis = ?`;
        features = page
          ? this.#stmt(`${base} AND fa.idx IN (SELECT value FROM json_each(?)) ORDER BY fa.idx`)
            .all(series, name, analysis, JSON.stringify(page))
          : this.#stmt(`${base} AND fa.idx > ? ORDER BY fa.idx LIMIT ?`)
            .all(series, name, analysis, after, pageSize);
        return features.map((f) =>
          this.#assemble(series, name, f, [{ analysis, doc: f.analysis_doc }])
        );
      }
      const base = `SELECT idx, logits, interpretation FROM features
        WHERE sae_series = ? AND sae_name = ?`;
      features = page
        ? this.#stmt(`${base} AND idx IN (SELECT value FROM json_each(?)) ORDER BY idx`)
          .all(series, name, JSON.stringify(page))
        : this.#stmt(`${base} AND idx > ? ORDER BY idx LIMIT ?`).all(series, name, after, pageSize);
      if (features.length === 0) return [];
      names ??= this.#stmt(
        `SELECT DISTINCT analysis FROM feature_analyses
         WHERE sae_series = ? AND sae_name = ? ORDER BY analysis`,
      ).all(series, name).map((r) => r.analysis as string);
      const ids = JSON.stringify(features.map((f) => Number(f.idx)));
      const byIndex = new Map<number, Row[]>();
      for (const analysisName of names) {
        for (
          const a of this.#stmt(
            `SELECT idx, analysis, doc FROM feature_analyses
             WHERE sae_series = ? AND sae_name = ? AND analysis = ?
               AND idx IN (SELECT value FROM json_each(?))`,
          ).all(series, name, analysisName, ids)
        ) {
          const i = Number(a.idx);
          const list = byIndex.get(i) ?? [];
          list.push(a);
          byIndex.set(i, list);
        }
      }
      return features.map((f) => this.#assemble(series, name, f, byIndex.get(Number(f.idx)) ?? []));
    };

    if (pages) {
      return pagedStream(0, (i) => {
        const page = pages[i];
        return Promise.resolve(page ? { records: readPage(-1, page), cursor: i + 1 } : null);
      });
    }
    return pagedStream(-1, (after) => {
      const records = readPage(after, undefined);
      if (records.length === 0) return Promise.resolve(null);
      return Promise.resolve({ records, cursor: records[records.length - 1]!.index });
    });
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
    return settle(() => {
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
    return settle(() => {
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
    return settle(() => {
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
