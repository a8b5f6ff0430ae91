/**
 * The `FeatureStore` interface and the documents it keeps (DESIGN.md, "Store").
 *
 * Two implementations, one contract: {@linkcode MongoFeatureStore} (`mongo.ts`) and
 * {@linkcode SqliteFeatureStore} (`sqlite.ts`); `openStore()` (`open.ts`) picks one.
 *
 * **Runs and generations.** A run of an analysis begins with `beginAnalysisRun` (a lease that
 * its heartbeat renews; a second run fails at its start while the lease is live), writes its
 * features under the generation it got, and ends with `publishAnalysisRun` (one write of the
 * analysis document switches readers to that generation; the others are then removed) or
 * `endAnalysisRun` (what it wrote is removed). Readers resolve each analysis name to the
 * `generation` of its analysis document, `""` when it has none (the features written without a
 * generation, as every analysis was before generations existed), and never see another one: a
 * run killed at any moment leaves the previous result exactly as it was.
 *
 * **Where `act_times` lives.** Feature listing sorts and filters on one analysis' `act_times` or
 * `max_activation`, so both stores keep them reachable without decoding the samples:
 * - MongoDB keeps feature documents in the shape of DESIGN.md, `analyses.<name>.act_times` /
 *   `.max_activation` / `.n_analyzed_tokens` as plain numbers beside the binary arrays, and sorts
 *   on those paths: in `features` for what was written without a generation, and in one
 *   collection `features_gen.<generation>` per run (see `mongo.ts`: this departs from DESIGN.md's
 *   "analyses inside the feature document", for FerretDB's sake).
 * - SQLite keeps one `features` row per feature (logits, interpretation and the interpretation
 *   text) and one `feature_analyses` row per (feature, analysis, generation) with indexed numeric
 *   columns `act_times`, `max_activation`, `n_analyzed_tokens` and the whole analysis as a blob.
 *
 * @module
 */

import type { FeatureRecord } from "../types.ts";

/**
 * The analysis name used when none is given (the seed's `feature_analysis_name`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_ANALYSIS } from "./types.ts";
 * assert.equal(DEFAULT_ANALYSIS, "default");
 * ```
 */
export const DEFAULT_ANALYSIS = "default";

/** An SAE known to the store, keyed by `(series, name)`. */
export interface SaeDoc {
  /** The SAE name (`sae_name`). */
  name: string;
  /** The SAE series (`sae_series`). */
  series: string;
  /** Where the checkpoint was loaded from. */
  path: string;
  /** The SAE's configuration as loaded (plain JSON data). */
  config: Record<string, unknown>;
  /** Number of features. */
  d_sae: number;
  /** Input width. */
  d_model: number;
  /** The hook point it reads, e.g. `blocks.6.hook_resid_post`. */
  hook_point: string;
  /** The model name (a {@linkcode ModelDoc} name). */
  model: string;
}

/** A language model known to the store, keyed by `name`. */
export interface ModelDoc {
  /** The model name (`model_name`). */
  name: string;
  /** Its configuration (plain JSON data). */
  config: Record<string, unknown>;
  /** Token id → display string, so that no viewer needs the tokenizer. */
  vocab: string[];
}

/** A dataset known to the store, keyed by `name`. */
export interface DatasetDoc {
  /** The dataset name (`[datasets."NAME"]`). */
  name: string;
  /** Its configuration (plain JSON data). */
  config: Record<string, unknown>;
}

/**
 * Status of an analysis: complete only when every feature has been written. `partial`: a
 * sharded analysis (`saeflow analyze --shard i/N`) with some shard states stored and no feature
 * written yet; `saeflow merge` makes it `complete`. `failed` / `interrupted`: the last run ended
 * without publishing and no earlier run had published (an analysis with a published generation
 * stays `complete`; its `run` says how the latest run ended).
 */
export type AnalysisStatus = "running" | "partial" | "complete" | "failed" | "interrupted";

/**
 * A run's claim on one analysis name (`AnalysisDoc.run`): the generation its features are
 * written under, who holds it, and the lease its heartbeat renews. While `status` is `running`
 * and `expires_at` is in the future, no other run may begin on the same analysis.
 */
export interface AnalysisRunInfo {
  /** The generation the run writes its features under (unique per run). */
  generation: string;
  /** Who runs it, for messages: `host <hostname> pid <pid>`. */
  owner: string;
  /** ISO 8601. */
  started_at: string;
  /** ISO 8601: the last heartbeat. */
  heartbeat_at: string;
  /** ISO 8601: when the lease lapses unless renewed (a crashed run stops renewing). */
  expires_at: string;
  /** `running` while it holds the lease; else how it ended without publishing. */
  status: "running" | "failed" | "interrupted";
  /** Why it failed, for `failed`. */
  error?: string;
}

/** Which analysis: `(sae_series, sae_name, name)`. */
export interface AnalysisKey {
  sae_series: string;
  sae_name: string;
  /** The analysis name. */
  name: string;
}

/** The lease a run asks for in {@linkcode FeatureStore.beginAnalysisRun}. */
export interface LeaseOptions {
  /** Who runs it, e.g. `host a1 pid 4242` (see `runOwner()`). */
  owner: string;
  /** How long the lease lasts without a heartbeat, in ms. */
  leaseMs: number;
  /** The current time (tests); default `new Date()`. */
  now?: Date;
}

/** How a run ended without publishing (see {@linkcode FeatureStore.endAnalysisRun}). */
export interface RunOutcome {
  status: "failed" | "interrupted";
  /** One line: why. */
  error?: string;
}

/** One analysis run of an SAE, keyed by `(sae_series, sae_name, name)`. */
export interface AnalysisDoc {
  sae_series: string;
  sae_name: string;
  /** The analysis name (`feature_analysis_name`, default `default`). */
  name: string;
  /** The resolved settings it ran with (plain JSON data). */
  settings: Record<string, unknown>;
  status: AnalysisStatus;
  /** Why it failed, when `status` is `failed`. */
  error?: string;
  /** Analyzed tokens. */
  n_analyzed_tokens: number;
  /** ISO 8601. */
  started_at: string;
  /** ISO 8601; `null` while running. */
  finished_at: string | null;
  /** Seconds per stage or phase, by name. */
  timings: Record<string, number>;
  /**
   * The published generation: readers see the features written under it and nothing else.
   * Absent on a document without one (never published, or written before generations existed:
   * then features written without a generation are the published ones).
   */
  generation?: string;
  /** The latest run that has not published (running, or how it ended). */
  run?: AnalysisRunInfo;
  /**
   * For a sharded analysis: the shard count and the shards whose state was stored (as seen by
   * the last shard that finished; the stored states themselves are what `merge` reads).
   */
  shards?: { count: number; done: number[] };
}

/** What `removeSae()` removed. */
export interface RemoveSaeResult {
  /** Whether the SAE document existed. */
  sae: boolean;
  /** Analysis documents removed. */
  analyses: number;
  /** Features removed (distinct indices, whatever generation held them). */
  features: number;
}

/** What `removeAnalysis()` removed. */
export interface RemoveAnalysisResult {
  /** Whether the analysis document existed. */
  analysis: boolean;
  /** Features that had the analysis in its published generation (those readers saw). */
  features: number;
}

/** Which features of one SAE a count or listing covers. */
export interface FeatureFilter {
  series: string;
  /** The SAE name. */
  name: string;
  /** Only features that have this analysis; default `default`. */
  analysis?: string;
  /** `true`: only features with `act_times > 0`; `false`: only dead ones; absent: all. */
  alive?: boolean;
}

/** A feature listing: a {@linkcode FeatureFilter} with order and paging. */
export interface FeatureListOptions extends FeatureFilter {
  /** Sort key; default `index`. Ties are broken by ascending index. */
  sort?: "index" | "act_times" | "max_activation";
  /** Default `asc` for `index`, `desc` otherwise. */
  order?: "asc" | "desc";
  /** Features to skip; default 0. */
  skip?: number;
  /** At most this many; default: no limit. */
  limit?: number;
}

/** A lightweight summary of one feature under one analysis. */
export interface FeatureSummary {
  index: number;
  act_times: number;
  max_activation: number;
  n_analyzed_tokens: number;
  /** The interpretation's text, when the feature has one. */
  interpretation_text?: string;
}

/** Options of `readFeatures()`. */
export interface ReadFeaturesOptions {
  /**
   * Only features that have this analysis, each with only this analysis in `analyses`; absent:
   * every feature document of the SAE with all its analyses.
   */
  analysis?: string;
  /** Only these feature indices (missing ones are skipped); absent: all. */
  indices?: readonly number[];
  /** Records fetched per page; default 256. */
  pageSize?: number;
}

/** Which stored analyzer state: one shard `shard`/`count` of one analysis of one SAE. */
export interface AnalyzerStateKey {
  sae_series: string;
  sae_name: string;
  /** The analysis name. */
  analysis: string;
  /** The shard index, in `[0, count)`. */
  shard: number;
  /** The number of shards of the run. */
  count: number;
}

/** A stored analyzer state (what `listAnalyzerStates()` returns). */
export interface AnalyzerStateInfo extends AnalyzerStateKey {
  /** Total bytes of the state. */
  bytes: number;
  /** Stored pieces (each at most {@linkcode STATE_CHUNK_BYTES}). */
  chunks: number;
  /** ISO 8601, when the state became visible. */
  created_at: string;
}

/**
 * The largest piece an analyzer state is stored in: 8 MiB, half of MongoDB's 16 MiB document
 * limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STATE_CHUNK_BYTES } from "./types.ts";
 * assert.equal(STATE_CHUNK_BYTES, 8 * 1024 * 1024);
 * ```
 */
export const STATE_CHUNK_BYTES = 8 * 1024 * 1024;

/**
 * Where features and their metadata are kept. Feature writes are idempotent upserts keyed on
 * `(sae_series, sae_name, index)` (and generation); every method is async; `close()` (or
 * `await using`) releases the connection or file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "./open.ts";
 * const dir = await Deno.makeTempDir();
 * await using store = await openStore({ outputDir: dir });
 * const doc = {
 *   sae_series: "s", sae_name: "n", name: "default", settings: {}, n_analyzed_tokens: 0,
 *   started_at: new Date().toISOString(), timings: {},
 * };
 * const run = await store.beginAnalysisRun(doc, { owner: "host h pid 1", leaseMs: 60_000 });
 * await store.writeFeatures([{ sae_series: "s", sae_name: "n", index: 0, analyses: {} }], {
 *   generation: run.generation,
 * });
 * assert.equal(await store.getFeature("s", "n", 0), null); // not published yet
 * await store.publishAnalysisRun({ ...doc, finished_at: new Date().toISOString() }, run.generation);
 * assert.equal((await store.getFeature("s", "n", 0))?.index, 0);
 * ```
 */
export interface FeatureStore extends AsyncDisposable {
  /** Where the data goes, for summaries: `mongodb://host:port/db` (no credentials) or a path. */
  readonly location: string;

  /** Inserts or replaces an SAE document. */
  putSae(doc: SaeDoc): Promise<void>;
  /** The SAE document, or null. */
  getSae(series: string, name: string): Promise<SaeDoc | null>;
  /** All SAE documents (of one series when given), ordered by series then name. */
  listSaes(series?: string): Promise<SaeDoc[]>;
  /** Removes an SAE with its feature and analysis documents, of every generation. */
  removeSae(series: string, name: string): Promise<RemoveSaeResult>;

  /** Inserts or replaces a model document. */
  putModel(doc: ModelDoc): Promise<void>;
  /** The model document, or null. */
  getModel(name: string): Promise<ModelDoc | null>;

  /** Inserts or replaces a dataset document. */
  putDataset(doc: DatasetDoc): Promise<void>;
  /** The dataset document, or null. */
  getDataset(name: string): Promise<DatasetDoc | null>;

  /** Inserts or replaces an analysis document. */
  putAnalysis(doc: AnalysisDoc): Promise<void>;
  /** The analysis document, or null. */
  getAnalysis(series: string, saeName: string, name: string): Promise<AnalysisDoc | null>;
  /** The analysis documents of an SAE, ordered by name. */
  listAnalyses(series: string, saeName: string): Promise<AnalysisDoc[]>;
  /**
   * Removes the analysis from every feature of the SAE (every generation of it; the features keep
   * their logits and interpretation), its document and its analyzer states.
   */
  removeAnalysis(series: string, saeName: string, name: string): Promise<RemoveAnalysisResult>;

  /**
   * Upserts features in batches: each analysis present in `record.analyses` replaces
   * `analyses.<name>` of generation `options.generation` (default `""`, the generation of
   * features written without one); `logits` and `interpretation` replace theirs when present;
   * nothing else of the stored feature changes. Records for the same feature are applied in
   * order. Readers see an analysis only under its published generation
   * (`AnalysisDoc.generation`), and a feature only once it has something they see.
   *
   * Under a generation, `logits` are kept with it too: they become the feature's when it is
   * published (the latest written of the feature's own and those of the published generations of
   * the analyses read wins), and go with it. An `interpretation` belongs to the feature, not to a
   * run: it is written at once, whatever the generation.
   *
   * @throws {AnalysisBusyError} Under a generation that no run holds: never begun in this store,
   *   ended, or removed by a later run after its lease lapsed.
   * @throws {RangeError} For a generation that `beginAnalysisRun` cannot have returned.
   */
  writeFeatures(
    records: readonly FeatureRecord[],
    options?: { generation?: string },
  ): Promise<void>;

  /**
   * Begins a run on an analysis, atomically: fails with `AnalysisBusyError` (naming the owner,
   * since when and the lease's expiry) while another run's lease is live; else records a fresh
   * `run` (status `running`, a new generation) and removes what earlier unpublished runs wrote.
   * An analysis with a published generation keeps it (readers go on seeing it); one without is
   * stored as `doc` with status `running`.
   *
   * @returns The run, with the generation to pass to `writeFeatures`.
   */
  beginAnalysisRun(
    doc: Omit<AnalysisDoc, "status" | "finished_at" | "generation" | "run">,
    lease: LeaseOptions,
  ): Promise<AnalysisRunInfo>;
  /**
   * Renews the lease of the run writing `generation` until `now + leaseMs` (also after it
   * lapsed, as long as no other run began). Does nothing once that generation is published.
   *
   * @throws {AnalysisBusyError} When the analysis is no longer held by that run (its lease
   *   lapsed and another run began, or the run ended, or the analysis was removed).
   */
  renewAnalysisRun(
    key: AnalysisKey,
    generation: string,
    options: { leaseMs: number; now?: Date },
  ): Promise<void>;
  /**
   * Publishes the run writing `generation`, by one write of the analysis document: `doc` with
   * status `complete`, `generation` and no `run`; then removes the features of every other
   * generation of the analysis (when that fails, e.g. on a full disk, the next begin or publish
   * removes them; no reader sees them). Does nothing when that generation is already published.
   *
   * @throws {AnalysisBusyError} When the analysis is no longer held by that run.
   */
  publishAnalysisRun(
    doc: Omit<AnalysisDoc, "status" | "generation" | "run">,
    generation: string,
  ): Promise<void>;
  /**
   * Ends the run writing `generation` without publishing: `run.status`/`run.error` say how (the
   * lease is released), and an analysis with nothing published takes `outcome.status` (and
   * `outcome.error`) as its status, finished now; then what the run wrote is removed (when that
   * fails, e.g. on a full disk, the next begin removes it). Leaves the analysis document as it is
   * when the run does not hold it (another run does, or it already ended or published).
   */
  endAnalysisRun(key: AnalysisKey, generation: string, outcome: RunOutcome): Promise<void>;
  /**
   * One feature with all its analyses (each of its published generation) and typed arrays
   * restored, or null.
   */
  getFeature(series: string, name: string, index: number): Promise<FeatureRecord | null>;
  /** Summaries of the features of one analysis, sorted and paged. */
  listFeatures(options: FeatureListOptions): Promise<FeatureSummary[]>;
  /** How many features {@linkcode FeatureStore.listFeatures} would list without paging. */
  countFeatures(filter: FeatureFilter): Promise<number>;
  /**
   * Streams feature records by ascending index, one page per pull (nothing is read before the
   * consumer asks; cancelling stops reading). The published generations are resolved at the
   * first pull; if one of those read is replaced before the stream ends, the stream errors
   * rather than mix two generations.
   */
  readFeatures(
    series: string,
    name: string,
    options?: ReadFeaturesOptions,
  ): ReadableStream<FeatureRecord>;

  /**
   * Stores the bytes of an analyzer state (e.g. from `stateToChunks`) under `key`, in pieces of
   * at most {@linkcode STATE_CHUNK_BYTES}, replacing the state stored under the same key. The new
   * state becomes visible only once all of it is stored; if `chunks` throws or the write fails,
   * the previous state stays as it was.
   */
  putAnalyzerState(
    key: AnalyzerStateKey,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<AnalyzerStateInfo>;
  /**
   * The bytes of a stored analyzer state, read piece by piece as they are iterated, or null
   * when none is stored under `key`.
   */
  getAnalyzerState(key: AnalyzerStateKey): Promise<AsyncIterable<Uint8Array> | null>;
  /** The analyzer states stored for one analysis, by count then shard. */
  listAnalyzerStates(
    series: string,
    saeName: string,
    analysis: string,
  ): Promise<AnalyzerStateInfo[]>;
  /**
   * Removes the analyzer states of one analysis (only those of `count` shards when given);
   * returns how many were removed.
   */
  removeAnalyzerStates(
    series: string,
    saeName: string,
    analysis: string,
    options?: { count?: number },
  ): Promise<number>;

  /** Releases the connection or file; further calls fail. Idempotent. */
  close(): Promise<void>;
}
