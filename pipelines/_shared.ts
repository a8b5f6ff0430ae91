/**
 * Helpers shared by the runners (`analyze`, `dla`, `autointerp`): opening the store the settings
 * name, finding and loading the SAE and the language model, the model's vocabulary, which
 * features a run covers, batched feature writes, progress lines (through `lib/progress.ts`) and
 * log lines.
 *
 * Everything here takes the small slice of the resolved settings it needs (structural types), so
 * any of the three settings kinds can be passed.
 *
 * @module
 */

import { ConfigError } from "../lib/errors.ts";
import { resolveRepo } from "../lib/hub/mod.ts";
import { join } from "node:path";
import { loadModelDir, MODEL_FILE_PATTERNS, type ModelDir } from "../lib/onnx/mod.ts";
import { loadSae, type SaeDescription } from "../lib/sae/mod.ts";
import type { LanguageModelConfig, MongoDBConfig, PretrainedSAE } from "../lib/settings/mod.ts";
import { loadTokenizer, vocabDisplayStrings } from "../lib/data/mod.ts";
import type { FeatureStore, ModelDoc, SaeDoc } from "../lib/store/mod.ts";
import { openStore } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { Progress } from "../lib/progress.ts";

/** What `lib/progress.ts` writes before a line it updates in place. */
const CLEAR_LINE = "\r\x1b[2K";

/** Where a line of runner output goes. */
export type LogFn = (line: string) => void;

/**
 * The default log of the runners: one plain line on standard error (on a terminal, replacing
 * the progress line shown in place).
 *
 * @param line The line (no trailing newline).
 * @example
 * ```ts
 * import { stderrLog } from "./_shared.ts";
 * stderrLog("dla: 0/0 features");
 * ```
 */
export function stderrLog(line: string): void {
  // On a terminal, first clear a progress line being updated in place (it is redrawn later).
  console.error(stderrIsTerminal() ? `${CLEAR_LINE}${line}` : line);
}

// ---------------------------------------------------------------------------------------------
// Store

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
 * import { openSettingsStore } from "./_shared.ts";
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

// ---------------------------------------------------------------------------------------------
// SAE

/** Whether a local path exists. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

/**
 * Where an SAE that is not a local path lives on the Hub, as the Python tool reads
 * `pretrained_name_or_path`: `org/repo` is a whole repository; `org/repo/sub/folder` is the folder
 * `sub/folder` of `org/repo` (one SAE of a repository holding many); a Llama Scope name
 * `fnlp/<model>-L<layer><R|A|M|T|C>-<8|32>x` is the folder of that name in
 * `fnlp/<model>-LX<R|A|M|T|C>-<8|32>x`.
 *
 * @param path `pretrained_name_or_path`, known not to be a local path.
 * @returns The repository id and the folder within it (`""` for the whole repository).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { saeHubLocation } from "./_shared.ts";
 * const l = saeHubLocation("fnlp/Llama3_1-8B-Base-L15R-8x");
 * assert.equal(l.repo, "fnlp/Llama3_1-8B-Base-LXR-8x");
 * assert.equal(l.folder, "Llama3_1-8B-Base-L15R-8x");
 * assert.equal(saeHubLocation("org/saes/blocks.3.hook_resid_post").folder, "blocks.3.hook_resid_post");
 * ```
 */
export function saeHubLocation(path: string): { repo: string; folder: string } {
  const parts = path.split("/");
  if (parts[0] === "fnlp" && parts.length === 2) {
    const repo = path.replace(/L(\d{1,2})([RAMTC])-(8|32)x/g, "LX$2-$3x");
    if (repo !== path) return { repo, folder: parts[1]! };
  }
  return { repo: parts.slice(0, 2).join("/"), folder: parts.slice(2).join("/") };
}

/**
 * Finds an SAE (a local folder, or a Hub id through the Hugging Face cache: see
 * {@linkcode saeHubLocation}; only the SAE's own folder is downloaded) and loads it with the
 * `[sae]` settings: `fold_activation_scale` picks the scale activations are reported in
 * (`true`: the folded `input` scale of the Python tool; `false`: the training scale).
 *
 * @param sae The `[sae]` table.
 * @param options `log` for download progress lines.
 * @returns The loaded SAE.
 * @throws {ConfigError} When the SAE cannot be found or its checkpoint is bad.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSettingsSae } from "./_shared.ts";
 * const sae = await loadSettingsSae({
 *   pretrained_name_or_path: new URL("../fixtures/sae/lm-saes-relu", import.meta.url).pathname,
 *   device: "cpu", dtype: "float32", fold_activation_scale: true, strict_loading: true,
 * });
 * assert.equal(sae.dSae, 256);
 * assert.equal(sae.hookPointIn, "blocks.3.hook_resid_post");
 * ```
 */
export async function loadSettingsSae(
  sae: PretrainedSAE,
  options: { log?: LogFn } = {},
): Promise<SaeDescription> {
  const path = sae.pretrained_name_or_path;
  let dir: string;
  if (await exists(path)) dir = path;
  else {
    const { repo, folder } = saeHubLocation(path);
    const snapshot = await resolveRepo(repo, {
      repoType: "model",
      ...(folder ? { allowPatterns: [`${folder}/*`] } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
    dir = folder ? join(snapshot, folder) : snapshot;
  }
  return await loadSae(dir, { scale: sae.fold_activation_scale ? "input" : "normalized" });
}

/**
 * The store document of an SAE.
 *
 * @param sae The loaded SAE.
 * @param ids `series`, `name` (from `sae_series`, `sae_name`) and the `model` name.
 * @returns The document for `putSae`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { saeDocOf } from "./_shared.ts";
 * import type { SaeDescription } from "../lib/sae/mod.ts";
 * const sae = { path: "/saes/l3", dSae: 8, dModel: 4, hookPointIn: "blocks.3.hook_resid_post", config: {} } as SaeDescription;
 * assert.equal(saeDocOf(sae, { series: "x", name: "l3", model: "m" }).d_sae, 8);
 * ```
 */
export function saeDocOf(
  sae: SaeDescription,
  ids: { series: string; name: string; model: string },
): SaeDoc {
  return {
    name: ids.name,
    series: ids.series,
    path: sae.path,
    config: jsonData(sae.config),
    d_sae: sae.dSae,
    d_model: sae.dModel,
    hook_point: sae.hookPointIn,
    model: ids.model,
  };
}

/**
 * Writes the SAE document unless the store already has one for `(series, name)`.
 *
 * @param store The store.
 * @param doc The document.
 * @returns The stored document (the existing one when there was one).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureSaeDoc, openSettingsStore } from "./_shared.ts";
 * await using store = await openSettingsStore({ mongo: null, output_dir: await Deno.makeTempDir() });
 * const doc = { name: "l3", series: "x", path: "/p", config: {}, d_sae: 8, d_model: 4, hook_point: "h", model: "m" };
 * await ensureSaeDoc(store, doc);
 * const again = await ensureSaeDoc(store, { ...doc, path: "/elsewhere" });
 * assert.equal(again.path, "/p");
 * ```
 */
export async function ensureSaeDoc(store: FeatureStore, doc: SaeDoc): Promise<SaeDoc> {
  const existing = await store.getSae(doc.series, doc.name);
  if (existing) return existing;
  await store.putSae(doc);
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Language model

/** The settings that locate a language model. */
export interface ModelSettings {
  /** The top-level `model_name` (the model's name in the store). */
  model_name: string | null;
  /** `[model]`, when given. */
  model: LanguageModelConfig | null;
}

/**
 * The name a run stores its model under: the top-level `model_name`, else `model.model_name`.
 *
 * @param settings Resolved settings (any kind).
 * @returns The name.
 * @throws {ConfigError} When neither is set.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelNameOf } from "./_shared.ts";
 * assert.equal(modelNameOf({ model_name: "pythia", model: null }), "pythia");
 * ```
 */
export function modelNameOf(settings: ModelSettings): string {
  const name = settings.model_name ?? settings.model?.model_name;
  if (!name) throw new ConfigError("model_name: expected the language model's name");
  return name;
}

/** A language model found on disk, with the configuration to store for it. */
export interface ResolvedModel {
  /** Its name in the store. */
  name: string;
  /** The model folder's files. */
  dir: ModelDir;
  /** The `[model]` table to store as the model document's `config` (paths absolute). */
  config: Record<string, unknown>;
}

/**
 * Finds the language model's folder: `model.model_from_pretrained_path` when given, else
 * `model.model_name` resolved through the Hugging Face cache (and downloaded unless
 * `local_files_only`). Without a `[model]` table the model document stored under `model_name`
 * is used (its `config` is the `[model]` table of the run that stored it), as the Python tool
 * does; failing that, `model_name` itself is resolved.
 *
 * @param settings `model_name` and `[model]`.
 * @param options `store` to look a model up in when there is no `[model]` table; `log` for
 *   download progress.
 * @returns The model's name, files and configuration.
 * @throws {ConfigError} When the folder cannot be found or holds no ONNX model.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveModel } from "./_shared.ts";
 * import { LanguageModelConfigSchema } from "../lib/settings/mod.ts";
 * const m = await resolveModel({
 *   model_name: "tiny-neox",
 *   model: LanguageModelConfigSchema.parse({
 *     model_from_pretrained_path: new URL("../fixtures/tiny-neox", import.meta.url).pathname,
 *   }),
 * });
 * assert(m.dir.onnxPath.endsWith("model.onnx"));
 * ```
 */
export async function resolveModel(
  settings: ModelSettings,
  options: { store?: FeatureStore; log?: LogFn } = {},
): Promise<ResolvedModel> {
  const name = modelNameOf(settings);
  let config: Record<string, unknown> | null = settings.model ? jsonData(settings.model) : null;
  if (config === null && options.store) {
    config = (await options.store.getModel(name))?.config ?? null;
  }
  config ??= { model_name: name, model_from_pretrained_path: null };
  const local = stringOrNull(config["model_from_pretrained_path"]);
  let folder: string;
  if (local !== null) {
    folder = local;
  } else {
    const id = stringOrNull(config["model_name"]) ?? name;
    const cacheDir = stringOrNull(config["cache_dir"]);
    folder = await resolveRepo(id, {
      repoType: "model",
      allowPatterns: [...MODEL_FILE_PATTERNS],
      ...(cacheDir !== null ? { cacheDir } : {}),
      ...(config["local_files_only"] === true ? { offline: true } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
  }
  const dir = await loadModelDir(folder);
  return { name, dir, config: { ...config, model_from_pretrained_path: dir.dir } };
}

/**
 * The display string of every token id of a model, from the `tokenizer.json` of its folder.
 *
 * @param dir The model folder's files.
 * @returns `vocab[id]`.
 * @throws {ConfigError} When the folder has no `tokenizer.json` or it cannot be loaded.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadModelDir } from "../lib/onnx/mod.ts";
 * import { loadVocab } from "./_shared.ts";
 * const vocab = await loadVocab(await loadModelDir(new URL("../fixtures/tiny-neox", import.meta.url).pathname));
 * assert(vocab.length > 0);
 * assert.equal(vocab[0], "<|endoftext|>");
 * ```
 */
export async function loadVocab(dir: ModelDir): Promise<string[]> {
  if (!dir.tokenizerPath) {
    throw new ConfigError(
      `Model folder ${dir.dir} has no tokenizer.json: it is needed for the token strings`,
    );
  }
  return vocabDisplayStrings(await loadTokenizer(dir.tokenizerPath));
}

/**
 * The model document of a run: the stored one when it has a vocabulary, else one made from the
 * model's tokenizer and written to the store.
 *
 * @param store The store.
 * @param model The model as found by {@linkcode resolveModel}.
 * @returns The stored model document.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureModelDoc, openSettingsStore, resolveModel } from "./_shared.ts";
 * await using store = await openSettingsStore({ mongo: null, output_dir: await Deno.makeTempDir() });
 * import { LanguageModelConfigSchema } from "../lib/settings/mod.ts";
 * const model_from_pretrained_path = new URL("../fixtures/tiny-neox", import.meta.url).pathname;
 * const model = await resolveModel({
 *   model_name: "tiny-neox",
 *   model: LanguageModelConfigSchema.parse({ model_from_pretrained_path }),
 * });
 * const doc = await ensureModelDoc(store, model);
 * assert((await store.getModel("tiny-neox"))?.vocab.length === doc.vocab.length);
 * ```
 */
export async function ensureModelDoc(store: FeatureStore, model: ResolvedModel): Promise<ModelDoc> {
  const existing = await store.getModel(model.name);
  if (existing && existing.vocab.length > 0) return existing;
  const doc: ModelDoc = {
    name: model.name,
    config: existing?.config ?? model.config,
    vocab: await loadVocab(model.dir),
  };
  await store.putModel(doc);
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Feature selection

/** The settings that choose features. */
export interface FeatureSelectionSettings {
  /** Explicit indices. */
  features: number[] | null;
  /** `[start, end]`, both included. */
  feature_range: [number, number] | null;
  /** The `k` features that fire most often (by `act_times` of `analysis_name`). */
  top_k_features: number | null;
  /** The analysis `top_k_features` ranks by. */
  analysis_name: string;
  sae_series: string;
  sae_name: string;
}

/**
 * The feature indices a run covers, in ascending order without duplicates, or `null` for all:
 * `explicit` (e.g. `--features`) when given, else `features`, else `feature_range` (both ends
 * included), else the `top_k_features` most frequently firing features of `analysis_name` in the
 * store, else all.
 *
 * @param settings The selection settings.
 * @param options `explicit` indices; `store` (needed for `top_k_features`); `dSae` to check the
 *   indices against.
 * @returns The sorted indices, or null.
 * @throws {ConfigError} For an index ≥ `dSae`, or `top_k_features` with no store or no analysis.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { selectFeatures } from "./_shared.ts";
 * const base = { features: null, top_k_features: null, analysis_name: "default", sae_series: "x", sae_name: "s" };
 * assert((await selectFeatures({ ...base, feature_range: [2, 4] }))?.join() === "2,3,4");
 * assert.equal(await selectFeatures({ ...base, feature_range: null }), null);
 * ```
 */
export async function selectFeatures(
  settings: FeatureSelectionSettings,
  options: { explicit?: readonly number[]; store?: FeatureStore; dSae?: number } = {},
): Promise<number[] | null> {
  let chosen: readonly number[] | null = null;
  let source = "features";
  if (options.explicit) {
    chosen = options.explicit;
    source = "--features";
  } else if (settings.features) {
    chosen = settings.features;
  } else if (settings.feature_range) {
    const [start, end] = settings.feature_range;
    chosen = Array.from({ length: end - start + 1 }, (_, i) => start + i);
    source = "feature_range";
  } else if (settings.top_k_features !== null) {
    if (!options.store) throw new ConfigError("top_k_features needs the store's analysis");
    const where = `${settings.sae_series}/${settings.sae_name}`;
    const top = await options.store.listFeatures({
      series: settings.sae_series,
      name: settings.sae_name,
      analysis: settings.analysis_name,
      sort: "act_times",
      order: "desc",
      limit: settings.top_k_features,
    });
    if (top.length === 0) {
      throw new ConfigError(
        `top_k_features: no feature of ${where} has analysis "${settings.analysis_name}" in ` +
          `${options.store.location}; run saeflow analyze first`,
      );
    }
    chosen = top.map((f) => f.index);
    source = "top_k_features";
  }
  if (chosen === null) return null;
  for (const i of chosen) {
    if (!Number.isInteger(i) || i < 0) {
      throw new ConfigError(`${source}: expected non-negative feature indices, got ${i}`);
    }
    if (options.dSae !== undefined && i >= options.dSae) {
      throw new ConfigError(
        `${source}: feature ${i} is out of range for SAE ${settings.sae_series}/` +
          `${settings.sae_name} (d_sae ${options.dSae})`,
      );
    }
  }
  return [...new Set(chosen)].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// Batched writes

/** Options of {@linkcode FeatureWriter}. */
export interface FeatureWriterOptions {
  /** Records per `writeFeatures` call. Default 256. */
  batchSize?: number;
  /**
   * Longest time a record may wait in the buffer, in ms: a timer writes a partial batch then,
   * so that slow producers (LLM calls) still get their results stored. Default: no timer.
   */
  maxDelayMs?: number;
}

/**
 * Collects feature records and writes them to the store in batches, one `writeFeatures` call at
 * a time, in order. `add()` resolves once the record is buffered and at most one write is in
 * flight, so awaiting it gives backpressure; a failed write makes the next `add()`/`flush()`
 * reject with its error. Always `close()` it (also on errors: it writes what is buffered).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FeatureWriter, openSettingsStore } from "./_shared.ts";
 * await using store = await openSettingsStore({ mongo: null, output_dir: await Deno.makeTempDir() });
 * const writer = new FeatureWriter(store, { batchSize: 2 });
 * for (const index of [0, 1, 2]) {
 *   await writer.add({ sae_series: "x", sae_name: "s", index, analyses: {} });
 * }
 * await writer.close();
 * assert.equal(writer.written, 3);
 * assert((await store.getFeature("x", "s", 2)) !== null);
 * ```
 */
export class FeatureWriter {
  readonly #store: FeatureStore;
  readonly #batchSize: number;
  readonly #maxDelayMs: number | undefined;
  #buffer: FeatureRecord[] = [];
  #chain: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failure: { reason: unknown } | undefined;
  #written = 0;

  /**
   * @param store Where the records go.
   * @param options Batch size and the longest wait.
   */
  constructor(store: FeatureStore, options: FeatureWriterOptions = {}) {
    const batchSize = options.batchSize ?? 256;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`FeatureWriter: batchSize must be a positive integer, got ${batchSize}`);
    }
    this.#store = store;
    this.#batchSize = batchSize;
    this.#maxDelayMs = options.maxDelayMs;
  }

  /** Records written so far. */
  get written(): number {
    return this.#written;
  }

  /** Records waiting in the buffer. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /**
   * Buffers a record; starts a write when the batch is full.
   *
   * @param record The record (written as given: leave out what must not be replaced).
   * @returns Resolves when the caller may add more (at most one write in flight).
   */
  add(record: FeatureRecord): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure.reason);
    this.#buffer.push(record);
    if (this.#buffer.length >= this.#batchSize) return this.#startWrite();
    if (this.#maxDelayMs !== undefined && this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#startWrite().catch(() => {}); // surfaces at the next add()/flush()
      }, this.#maxDelayMs);
    }
    return Promise.resolve();
  }

  /** Writes everything buffered and waits for all writes. */
  async flush(): Promise<void> {
    if (this.#buffer.length > 0) void this.#startWrite().catch(() => {});
    await this.#chain;
  }

  /** Flushes and stops the timer. Rejects with the first write error, if any. */
  async close(): Promise<void> {
    this.#clearTimer();
    await this.flush();
  }

  #clearTimer() {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Starts writing the buffer after the writes before it; resolves when those are done. */
  #startWrite(): Promise<void> {
    this.#clearTimer();
    const batch = this.#buffer;
    this.#buffer = [];
    const previous = this.#chain;
    const next = previous.then(async () => {
      await this.#store.writeFeatures(batch);
      this.#written += batch.length;
    });
    next.catch((reason) => {
      this.#failure ??= { reason };
    });
    this.#chain = next;
    return previous;
  }
}

// ---------------------------------------------------------------------------------------------
// Progress

/** Options of {@linkcode runnerProgress}. */
export interface RunnerProgressOptions {
  /** Line prefix, e.g. `dla`. */
  label: string;
  /** What is counted, plural, e.g. `features` or `tokens`. */
  unit: string;
  /** The total, when known (adds an ETA). */
  total?: number;
  /**
   * Where lines go. Default: standard error, one line updated in place on a terminal, else a
   * plain line per interval.
   */
  log?: LogFn;
  /** Least time between two lines, ms. Default 2000 for plain lines, 200 in place. */
  intervalMs?: number;
}

/**
 * A `lib/progress.ts` reporter for a runner, its lines prefixed with the label:
 * `dla: 128/256 features  900 features/s  elapsed 0s  ETA 0s`. Call `update(done)` as work is
 * done and `done()` before the summary line.
 *
 * @param options Label, unit, total, where lines go and how often.
 * @returns The reporter.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runnerProgress } from "./_shared.ts";
 * const lines: string[] = [];
 * const p = runnerProgress({ label: "dla", unit: "features", total: 4, log: (l) => lines.push(l), intervalMs: 0 });
 * p.update(2);
 * assert(lines[0]!.startsWith("dla: 2/4 features  "));
 * ```
 */
export function runnerProgress(options: RunnerProgressOptions): Progress {
  const { label, unit, total, log } = options;
  const common = { unit, ...(total !== undefined ? { total } : {}) };
  if (log) {
    return new Progress({
      ...common,
      inPlace: false,
      interval: (options.intervalMs ?? 2000) / 1000,
      write: (text) => log(`${label}: ${text.replace(/\n$/, "")}`),
    });
  }
  const inPlace = stderrIsTerminal();
  return new Progress({
    ...common,
    inPlace,
    interval: (options.intervalMs ?? (inPlace ? 200 : 2000)) / 1000,
    write: (text) => {
      const control = text.startsWith(CLEAR_LINE) ? CLEAR_LINE : "";
      const body = text.slice(control.length);
      const line = body === "" ? control : `${control}${label}: ${body}`;
      Deno.stderr.writeSync(new TextEncoder().encode(line));
    },
  });
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/**
 * A rate, with three significant digits below 100: `0.512`, `12.5`, `1,024`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRate } from "./_shared.ts";
 * assert.equal(formatRate(12.345), "12.3");
 * assert.equal(formatRate(2048.4), "2,048");
 * ```
 */
export function formatRate(rate: number): string {
  if (rate >= 100) return Math.round(rate).toLocaleString("en-US");
  if (rate === 0) return "0";
  return String(Number(rate.toPrecision(3)));
}

/**
 * A duration: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./_shared.ts";
 * assert.equal(formatDuration(245), "4 min 05 s");
 * assert.equal(formatDuration(0.5), "500 ms");
 * ```
 */
export function formatDuration(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Number(seconds.toPrecision(3))} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function stringOrNull(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

/** A plain-JSON copy (typed arrays and class instances dropped to what JSON keeps). */
function jsonData(value: object): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}
