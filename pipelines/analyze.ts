/**
 * The analyze pipeline and its runner `analyzeSae(settings)` — the seed's `analyze_sae`:
 *
 * ```
 * datasets ─▶ tokenize ─▶ model + SAE encode (fused) ─▶ feature analyzer ─▶ [DLA] ─▶ [auto-interp] ─▶ store
 * ```
 *
 * Every arrow is a WHATWG stream with a queue of one batch (or record), so a slow store or a slow
 * model stalls the dataset reader. The runner records the SAE, the model (with its vocabulary as
 * display strings), the datasets and the analysis documents; it marks the analysis `running`,
 * then `complete` only after every feature is written, or `failed` with the reason. Re-running
 * with the same analysis name replaces the stored results.
 *
 * **Sharded runs** (`options.shard`, `saeflow analyze --shard i/N`): the worker reads only its
 * slice of every dataset (with at least N files, the files whose index `% N === i`; else the rows
 * whose `row % N === i`), applies `total_analyzing_tokens` per shard as `ceil(total / N)`, and at
 * the end writes no feature: it stores its analyzer state (`putAnalyzerState`, visible only once
 * complete; a re-run of the shard replaces it) and marks the analysis `partial` with the shards
 * done. `mergeAnalysis` (`saeflow merge`) then writes the features.
 *
 * @module
 */

import { ConfigError } from "../lib/errors.ts";
import { stateToChunks } from "../lib/analysis/state_chunks.ts";
import type { AnalyzeSAESettings } from "../lib/settings/mod.ts";
import { redactSettings, redactUrl } from "../lib/settings/mod.ts";
import type { AnalysisDoc, FeatureStore } from "../lib/store/mod.ts";
import type { SaeDescription } from "../lib/sae/mod.ts";
import { checkContextSize, OnnxModel } from "../lib/onnx/mod.ts";
import { type LoadedTokenizer, loadTokenizer, vocabDisplayStrings } from "../lib/data/mod.ts";
import type { ContextBatch, FeatureBatch, FeatureRecord, TextRecord } from "../lib/types.ts";
import { Progress } from "../lib/progress.ts";
import { datasetSource } from "../stages/dataset_source.ts";
import { tokenize } from "../stages/tokenize.ts";
import { featureAnalyzer } from "../stages/feature_analyzer.ts";
import { storeWriter } from "../stages/store_writer.ts";
import { dla } from "../stages/dla.ts";
import { encodeStage } from "./_encode.ts";
import { analyzerOptionsOf, Tally } from "./_analysis.ts";
import {
  loadSettingsSae,
  openSettingsStore,
  type ResolvedModel,
  resolveModel,
  saeDocOf,
} from "./_shared.ts";

/** Options of {@linkcode analyzeSae} beyond the settings. */
export interface AnalyzeOptions {
  /** Where progress and summary lines go (default: stderr for progress, stdout for the summary). */
  log?: (line: string) => void;
  /** Progress reporting; `false` turns it off (default: on). */
  progress?: boolean;
  /** Use the fused model+SAE graph when possible (default true). */
  fused?: boolean;
  /** ONNX Runtime intra-op threads (default: ONNX Runtime's choice). */
  threads?: number;
  /**
   * Analyze only this worker's slice, `index` in `[0, count)`, and store the analyzer state
   * instead of the features (see the module doc). Default: everything, features written.
   */
  shard?: { index: number; count: number };
}

/** A worker's slice of a sharded run. */
export interface Shard {
  /** In `[0, count)`. */
  index: number;
  /** The number of workers. */
  count: number;
}

/**
 * Parses `i/N` (e.g. `--shard 1/4`).
 *
 * @param text The value.
 * @param where What to name in the error, e.g. `--shard`.
 * @returns The shard.
 * @throws {ConfigError} Unless `text` is two integers with `0 <= i < N`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseShard } from "./analyze.ts";
 * assert.equal(parseShard("1/4").index, 1);
 * ```
 */
export function parseShard(text: string, where = "--shard"): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const shard = m ? { index: Number(m[1]), count: Number(m[2]) } : undefined;
  if (
    !shard || !Number.isSafeInteger(shard.index) || !Number.isSafeInteger(shard.count) ||
    shard.count < 1 || shard.index >= shard.count
  ) {
    throw new ConfigError(
      `${where}: expected i/N with 0 <= i < N (e.g. 0/4), got ${JSON.stringify(text)}`,
    );
  }
  return shard;
}

/** Options of {@linkcode resolveShard}. */
export interface ResolveShardOptions {
  /** The `--shard i/N` value. */
  shard?: string;
  /** The `--shards N` value (the count for `JOB_COMPLETION_INDEX`). */
  shards?: string;
  /** Reads an environment variable (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
}

function count(text: string, where: string): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError(`${where}: expected a positive integer, got ${JSON.stringify(text)}`);
  }
  return n;
}

function index(text: string, where: string): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new ConfigError(
      `${where}: expected a non-negative integer, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/**
 * The shard of this worker: `--shard i/N`; else a Kubernetes Indexed Job
 * (`JOB_COMPLETION_INDEX`, with the count from `--shards N` or `SAEFLOW_SHARDS`); else a Slurm
 * array job (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` (0 when unset) of
 * `SLURM_ARRAY_TASK_COUNT`; the array must be contiguous, e.g. `--array=0-7` or `1-8`); else
 * none (undefined).
 *
 * @param options The flags and the environment.
 * @returns The shard, or undefined for an unsharded run.
 * @throws {ConfigError} For a malformed or out-of-range value, naming where it came from.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveShard } from "./analyze.ts";
 * const env = { JOB_COMPLETION_INDEX: "2", SAEFLOW_SHARDS: "4" } as Record<string, string>;
 * const shard = resolveShard({ env: (n) => env[n] });
 * assert(shard?.index === 2 && shard.count === 4);
 * assert.equal(resolveShard({ env: () => undefined }), undefined);
 * ```
 */
export function resolveShard(options: ResolveShardOptions = {}): Shard | undefined {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const get = (name: string) => {
    const v = env(name);
    return v === undefined || v.trim() === "" ? undefined : v;
  };
  if (options.shard !== undefined) {
    if (options.shards !== undefined) {
      throw new ConfigError("--shards: give either --shard i/N or --shards N, not both");
    }
    return parseShard(options.shard, "--shard");
  }
  const k8s = get("JOB_COMPLETION_INDEX");
  if (k8s !== undefined) {
    const n = options.shards !== undefined
      ? count(options.shards, "--shards")
      : get("SAEFLOW_SHARDS") !== undefined
      ? count(get("SAEFLOW_SHARDS")!, "SAEFLOW_SHARDS")
      : undefined;
    if (n === undefined) {
      throw new ConfigError(
        "JOB_COMPLETION_INDEX is set but the shard count is not: pass --shards N or set SAEFLOW_SHARDS (the Job's completions)",
      );
    }
    const i = index(k8s, "JOB_COMPLETION_INDEX");
    if (i >= n) {
      throw new ConfigError(`JOB_COMPLETION_INDEX: ${i} is not below the shard count ${n}`);
    }
    return { index: i, count: n };
  }
  if (options.shards !== undefined) {
    throw new ConfigError(
      "--shards: needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); else use --shard i/N",
    );
  }
  const slurm = get("SLURM_ARRAY_TASK_ID");
  if (slurm !== undefined) {
    const id = index(slurm, "SLURM_ARRAY_TASK_ID");
    const rawCount = get("SLURM_ARRAY_TASK_COUNT");
    if (rawCount === undefined) {
      throw new ConfigError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
    }
    const n = count(rawCount, "SLURM_ARRAY_TASK_COUNT");
    const min = get("SLURM_ARRAY_TASK_MIN");
    const lo = min === undefined ? 0 : index(min, "SLURM_ARRAY_TASK_MIN");
    const max = get("SLURM_ARRAY_TASK_MAX");
    if (max !== undefined && index(max, "SLURM_ARRAY_TASK_MAX") - lo + 1 !== n) {
      throw new ConfigError(
        `SLURM_ARRAY_TASK_COUNT: ${n} tasks do not fill ${lo}-${max}: the array must be contiguous (e.g. --array=0-${
          n - 1
        })`,
      );
    }
    const i = id - lo;
    if (i < 0 || i >= n) {
      throw new ConfigError(
        `SLURM_ARRAY_TASK_ID: ${id} is outside ${lo}..${
          lo + n - 1
        } (SLURM_ARRAY_TASK_MIN ${lo}, COUNT ${n})`,
      );
    }
    return { index: i, count: n };
  }
  return undefined;
}

/** What {@linkcode analyzeSae} did. */
export interface AnalyzeSummary {
  /** Context tokens run through the model (B×T per batch, padding included). */
  tokens: number;
  /** Tokens analyzed (mask = 1). */
  analyzedTokens: number;
  /** Seconds from start to the last feature written. */
  seconds: number;
  /** Features that fired at least once. */
  alive: number;
  /** Features that never fired. */
  dead: number;
  /** The densest features: index, act_times and the token at the peak of their top sample. */
  densest: { index: number; act_times: number; top_token: string | null }[];
  /** Where the results are (store location). */
  location: string;
  /** Whether the fused model+SAE graph was used. */
  fused: boolean;
  /**
   * For a sharded run: this shard, the shards whose state is stored (this one included) and the
   * bytes of this shard's stored state. No feature was written.
   */
  shard?: { index: number; count: number; done: number[]; bytes: number };
}

/** The parts of a run that are loaded before any data flows. */
interface Loaded {
  sae: SaeDescription;
  model: ResolvedModel;
  onnx: OnnxModel;
  tokenizer: LoadedTokenizer;
  vocab: string[];
}

/** Resolves and loads the model, tokenizer and SAE named by the settings; fails before any work. */
async function load(settings: AnalyzeSAESettings): Promise<Loaded> {
  const model = await resolveModel(settings);
  checkContextSize(model.dir, settings.activation_factory.context_size);
  const tokenizer = await loadTokenizer(model.dir.tokenizerPath ?? model.dir.dir);
  const sae = await loadSettingsSae(settings.sae);
  const onnx = await OnnxModel.load(model.dir.onnxPath);
  return { sae, model, onnx, tokenizer, vocab: vocabDisplayStrings(tokenizer) };
}

/** A pass-through stage that calls `onBatch` for every batch. */
function tap<T>(onBatch: (chunk: T) => void): TransformStream<T, T> {
  return new TransformStream<T, T>(
    {
      transform(chunk, controller) {
        onBatch(chunk);
        controller.enqueue(chunk);
      },
    },
    new CountQueuingStrategy({ highWaterMark: 1 }),
    new CountQueuingStrategy({ highWaterMark: 1 }),
  );
}

/** The dataset sources of the settings, in `[[activation_factory.sources]]` order. */
function datasetsOf(settings: AnalyzeSAESettings, shard?: Shard) {
  return settings.activation_factory.sources.map((source) => {
    const ds = settings.datasets?.[source.name];
    if (!ds) {
      throw new ConfigError(`activation_factory.sources: no [datasets."${source.name}"] table`);
    }
    return {
      name: source.name,
      pathOrId: ds.dataset_name_or_path,
      textField: ds.text_field,
      ...(shard ? { shard } : {}),
    };
  });
}

/**
 * Reads the first record of `stream` now (so that its errors surface here) and returns a stream
 * of all its records, the first included; pull-based, cancel reaches `stream`.
 */
async function withFirstRecordRead<T>(stream: ReadableStream<T>): Promise<ReadableStream<T>> {
  const reader = stream.getReader();
  let pending: ReadableStreamReadResult<T> | null = await reader.read();
  return new ReadableStream<T>({
    async pull(controller) {
      const next = pending ?? await reader.read();
      pending = null;
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, new CountQueuingStrategy({ highWaterMark: 0 }));
}

/**
 * Analyzes an SAE on the configured datasets and stores one document per feature.
 *
 * @param settings resolved `analyze` settings (see `loadSettings`).
 * @param options logging, progress and engine choices.
 * @returns a summary of the run.
 * @throws {ConfigError} for bad settings or inputs, before any data is read.
 */
export async function analyzeSae(
  settings: AnalyzeSAESettings,
  options: AnalyzeOptions = {},
): Promise<AnalyzeSummary> {
  const started = performance.now();
  const say = options.log ?? ((line: string) => console.log(line));
  const shard = options.shard;
  if (shard !== undefined) parseShard(`${shard.index}/${shard.count}`, "shard");
  // Sharded: the token budget is split evenly between the shards.
  const total = settings.analyzer.total_analyzing_tokens;
  const limitTokens = shard && total != null ? Math.ceil(total / shard.count) : total;
  const loaded = await load(settings);
  const { sae, vocab } = loaded;
  const af = settings.activation_factory;
  const hookPoint = af.hook_points[0]!;
  if (af.hook_points.length > 1) {
    throw new ConfigError(
      `activation_factory.hook_points: analyze reads one hook point (the SAE's), got ${af.hook_points.length}`,
    );
  }
  const analysis = settings.analysis_name;

  // Opened before anything is stored, so that a bad hook point or a width mismatch fails first.
  const encode = await encodeStage({
    model: loaded.onnx,
    sae,
    hookPoint,
    device: settings.model?.device ?? "cpu",
    dtype: settings.model?.dtype ?? "float32",
    fused: options.fused ?? true,
    ...(options.threads ? { threads: options.threads } : {}),
  });
  const fused = encode.fused;
  let store: FeatureStore | undefined;
  let source: ReadableStream<TextRecord> | undefined;
  const analysisDoc = {
    sae_series: settings.sae_series,
    sae_name: settings.sae_name,
    name: analysis,
    settings: JSON.parse(JSON.stringify(redactSettings(settings))) as Record<string, unknown>,
    n_analyzed_tokens: 0,
    started_at: new Date().toISOString(),
    timings: {} as Record<string, number>,
  };
  try {
    // The first record is read before anything is stored, so that a missing or empty dataset
    // fails the run with nothing written.
    source = await withFirstRecordRead(datasetSource(datasetsOf(settings, shard), {
      ...(af.sources.some((s) => s.sample_weights !== 1)
        ? { sampleWeights: af.sources.map((s) => s.sample_weights) }
        : {}),
    }));
    store = await openSettingsStore(settings);
    await store.putModel({ name: loaded.model.name, config: loaded.model.config, vocab });
    await store.putSae({
      ...saeDocOf(sae, {
        series: settings.sae_series,
        name: settings.sae_name,
        model: loaded.model.name,
      }),
      hook_point: hookPoint,
    });
    for (const [name, ds] of Object.entries(settings.datasets ?? {})) {
      await store.putDataset({ name, config: JSON.parse(JSON.stringify(ds)) });
    }
    if (shard) {
      // States of another shard count belong to an earlier job: a new count starts over.
      const stale =
        (await store.listAnalyzerStates(settings.sae_series, settings.sae_name, analysis))
          .filter((st) => st.count !== shard.count);
      for (const n of new Set(stale.map((st) => st.count))) {
        await store.removeAnalyzerStates(settings.sae_series, settings.sae_name, analysis, {
          count: n,
        });
        say(`removed the stored states of an earlier run with ${n} shards`);
      }
      await store.putAnalysis({
        ...analysisDoc,
        status: "partial",
        finished_at: null,
        shards: { count: shard.count, done: await shardsDone(store, settings, shard.count) },
      });
    } else {
      await store.putAnalysis({ ...analysisDoc, status: "running", finished_at: null });
    }
  } catch (error) {
    // Nothing flows yet: release the sessions, the dataset files and the store.
    await encode.stream.writable.abort(error);
    await source?.cancel(error);
    await store?.close();
    throw error;
  }
  await using _closeStore = store;

  const tally = new Tally(analysis);
  const progress = options.progress === false ? null : new Progress({
    unit: "tokens",
    total: limitTokens,
  });
  let tokens = 0;
  let inputEnded: number | undefined;
  try {
    const ignore = [
      ...(af.ignore_token_ids ?? []),
      ...(settings.analyzer.ignore_token_ids ?? []),
    ];
    const analyzer = featureAnalyzer({ ...analyzerOptionsOf(settings), limitTokens });
    const batches = source
      .pipeThrough(tokenize({
        tokenizer: loaded.tokenizer,
        contextSize: af.context_size,
        batchSize: af.batch_size,
        prependBos: settings.model?.prepend_bos ?? af.sources[0]?.prepend_bos ?? true,
        splitLongRows: af.split_long_rows,
        ...(ignore.length ? { ignoreTokenIds: ignore } : {}),
        ...(settings.model?.bos_token_id != null
          ? { bosTokenId: settings.model.bos_token_id }
          : {}),
        ...(settings.model?.eos_token_id != null
          ? { eosTokenId: settings.model.eos_token_id }
          : {}),
        ...(settings.model?.pad_token_id != null
          ? { padTokenId: settings.model.pad_token_id }
          : {}),
      }))
      .pipeThrough(encode.stream as TransformStream<ContextBatch, FeatureBatch>)
      .pipeThrough(tap<FeatureBatch>((batch) => {
        tokens += batch.batchSize * batch.contextSize;
        progress?.update(tokens);
      }));
    if (shard) {
      return await saveShard({
        settings,
        shard,
        store,
        analyzer,
        batches,
        analysisDoc,
        started,
        progress,
        tokens: () => tokens,
        fused,
        say,
      });
    }
    let records: ReadableStream<FeatureRecord> = batches
      .pipeThrough(analyzer)
      // The first record comes out when the analyzer's input has ended: the end of the data flow.
      .pipeThrough(tap<FeatureRecord>(() => {
        inputEnded ??= performance.now();
      }));
    if (settings.direct_logit_attributor) {
      records = records.pipeThrough(dla({
        sae,
        model: loaded.onnx,
        topK: settings.direct_logit_attributor.top_k,
        vocab,
        ownComputer: true,
      }));
    }
    const analyzeDone = performance.now();
    await records.pipeTo(storeWriter(store, { onWritten: (batch) => tally.add(batch) }));
    progress?.done();
    const seconds = (performance.now() - started) / 1000;
    await store.putAnalysis({
      ...analysisDoc,
      status: "complete",
      n_analyzed_tokens: analyzer.nAnalyzedTokens,
      finished_at: new Date().toISOString(),
      // setup: loading and opening before data flows; stream: data flow (read, tokenize, encode,
      // analyze) until the analyzer's input ended; write: building and storing the records;
      // encode: the part of stream spent in the fused model+SAE graph (when fused).
      timings: {
        total: seconds,
        setup: (analyzeDone - started) / 1000,
        stream: ((inputEnded ?? performance.now()) - analyzeDone) / 1000,
        write: inputEnded === undefined ? 0 : (performance.now() - inputEnded) / 1000,
        ...(encode.encodeSeconds() === null ? {} : { encode: encode.encodeSeconds()! }),
      },
    });
    const summary: AnalyzeSummary = {
      tokens,
      analyzedTokens: analyzer.nAnalyzedTokens,
      seconds,
      alive: tally.alive,
      dead: tally.dead,
      densest: tally.densestWithTokens(vocab),
      location: store.location,
      fused,
    };
    for (const line of summaryLines(summary, settings)) say(line);
    return summary;
  } catch (error) {
    progress?.done();
    const reason = error instanceof Error ? error.message : String(error);
    await store.putAnalysis({
      ...analysisDoc,
      status: "failed",
      error: (shard ? `shard ${shard.index}/${shard.count}: ` : "") + reason.split("\n")[0]!,
      n_analyzed_tokens: 0,
      finished_at: new Date().toISOString(),
    }).catch(() => {});
    throw error;
  }
}

/** The shards of `count` whose state is stored for the analysis of the settings. */
async function shardsDone(
  store: FeatureStore,
  settings: AnalyzeSAESettings,
  count: number,
): Promise<number[]> {
  return (await store.listAnalyzerStates(
    settings.sae_series,
    settings.sae_name,
    settings.analysis_name,
  )).filter((st) => st.count === count).map((st) => st.shard);
}

/** The end of a sharded run: feed the analyzer, store its state, mark the analysis partial. */
async function saveShard(run: {
  settings: AnalyzeSAESettings;
  shard: Shard;
  store: FeatureStore;
  analyzer: ReturnType<typeof featureAnalyzer>;
  batches: ReadableStream<FeatureBatch>;
  analysisDoc: Omit<AnalysisDoc, "status" | "finished_at">;
  started: number;
  progress: Progress | null;
  tokens: () => number;
  fused: boolean;
  say: (line: string) => void;
}): Promise<AnalyzeSummary> {
  const { settings, shard, store, analyzer } = run;
  const streamStart = performance.now();
  try {
    await run.batches.pipeTo(analyzer.writable);
  } catch (error) {
    // The analyzer closes its input once `limitTokens` is reached: that is the normal end.
    if (!analyzer.limitReached) throw error;
  }
  run.progress?.done();
  const inputEnded = performance.now();
  const state = analyzer.state;
  const info = await store.putAnalyzerState({
    sae_series: settings.sae_series,
    sae_name: settings.sae_name,
    analysis: settings.analysis_name,
    shard: shard.index,
    count: shard.count,
  }, stateToChunks(state));
  const done = await shardsDone(store, settings, shard.count);
  const seconds = (performance.now() - run.started) / 1000;
  await store.putAnalysis({
    ...run.analysisDoc,
    status: "partial",
    n_analyzed_tokens: 0,
    finished_at: null,
    shards: { count: shard.count, done },
    timings: {
      total: seconds,
      setup: (streamStart - run.started) / 1000,
      stream: (inputEnded - streamStart) / 1000,
      save: (performance.now() - inputEnded) / 1000,
    },
  });
  const alive = state.stats().aliveFeatures;
  const summary: AnalyzeSummary = {
    tokens: run.tokens(),
    analyzedTokens: state.nAnalyzedTokens,
    seconds,
    alive,
    dead: state.dSae - alive,
    densest: [],
    location: store.location,
    fused: run.fused,
    shard: { index: shard.index, count: shard.count, done, bytes: info.bytes },
  };
  for (const line of summaryLines(summary, settings)) run.say(line);
  return summary;
}

/** The summary printed at the end of a run. */
export function summaryLines(
  s: AnalyzeSummary,
  settings: Pick<
    AnalyzeSAESettings,
    "sae_name" | "sae_series" | "analysis_name" | "mongo" | "output_dir"
  >,
): string[] {
  const rate = s.tokens / Math.max(s.seconds, 1e-9);
  const lines = [
    `analyzed ${s.tokens} tokens (${s.analyzedTokens} analyzed) in ${s.seconds.toFixed(1)} s: ${
      rate.toFixed(0)
    } tokens/s${s.fused ? " (fused model+SAE graph)" : ""}`,
    `features: ${s.alive} alive, ${s.dead} dead (of ${s.alive + s.dead})`,
  ];
  if (s.shard) {
    const { index, count, done, bytes } = s.shard;
    const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !done.includes(i));
    lines.push(
      `shard ${index}/${count}: analyzer state stored (${
        (bytes / 1e6).toFixed(1)
      } MB) in ${s.location} (analysis "${settings.analysis_name}")`,
      missing.length
        ? `shards done: ${done.join(", ") || "none"}; waiting for ${missing.join(", ")}`
        : `all ${count} shards are done: run saeflow merge with the same settings file`,
    );
    return lines;
  }
  if (s.densest.length) {
    lines.push("densest features:");
    for (const d of s.densest) {
      lines.push(
        `  #${d.index}  active on ${d.act_times} tokens  top token ${JSON.stringify(d.top_token)}`,
      );
    }
  }
  lines.push(`results: ${s.location} (analysis "${settings.analysis_name}")`);
  const first = s.densest[0]?.index ?? 0;
  // Where the store is, as show's flags say it (the password of a MongoDB URI is not repeated).
  const where = settings.mongo
    ? ` --mongo-uri ${redactUrl(settings.mongo.mongo_uri)} --mongo-db ${settings.mongo.mongo_db}`
    : ` --output-dir ${settings.output_dir}`;
  lines.push(
    `look at one: saeflow show feature ${settings.sae_name} ${first} --series ${settings.sae_series}${where}`,
  );
  return lines;
}
