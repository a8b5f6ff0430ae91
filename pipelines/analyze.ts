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

import { ConfigError, InterruptedError, StoreUnavailableError } from "../lib/errors.ts";
import { stateToChunks } from "../lib/analysis/state_chunks.ts";
import type { AnalyzeSAESettings } from "../lib/settings/mod.ts";
import { redactSettings } from "../lib/settings/mod.ts";
import type { AnalysisDoc, FeatureStore } from "../lib/store/mod.ts";
import type { SaeDescription } from "../lib/sae/mod.ts";
import { checkContextSize, OnnxModel } from "../lib/onnx/mod.ts";
import { type LoadedTokenizer, loadTokenizer, vocabDisplayStrings } from "../lib/data/mod.ts";
import type { ContextBatch, FeatureBatch, FeatureRecord, TextRecord } from "../lib/types.ts";
import { Progress } from "../lib/progress.ts";
import { datasetSource } from "../stages/dataset_source.ts";
import { tokenize } from "../stages/tokenize.ts";
import { featureAnalyzer } from "../stages/feature_analyzer.ts";
import { dla } from "../stages/dla.ts";
import { encodeStage } from "./_encode.ts";
import { AnalysisRun, signalName } from "./analysis_run.ts";
import { runPipeline } from "./_pipeline.ts";
import { parseShard, type Shard } from "./shard.ts";
import { type AnalyzeSummary, summaryLines } from "./summary.ts";
import { analyzerOptionsOf, Tally } from "./_analysis.ts";
import { type ResolvedModel, resolveModel } from "./_model.ts";
import { loadSettingsSae, saeDocOf } from "./_sae.ts";
import { openSettingsStore } from "./_store.ts";

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
  /**
   * Stops the run: aborted with `"SIGINT"` or `"SIGTERM"` (see `withSignals`), the run ends as
   * `interrupted` and rejects with an `InterruptedError`; with another reason, as `failed`.
   * Nothing of the run is published either way.
   */
  signal?: AbortSignal;
  /**
   * When the SAE's own configuration names a hook point other than the one analyzed
   * (`activation_factory.hook_points`): `"warn"` (default) logs one warning line, `"error"`
   * fails with a `ConfigError` before anything is stored.
   */
  hookMismatch?: "warn" | "error";
  /** Lease length of the run, ms (see `AnalysisRun`); default `SAEFLOW_LEASE_SECONDS` or 60 s. */
  leaseMs?: number;
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
  // After the hook point is known to exist (an unknown one is the error to report then).
  try {
    checkHookPoint(sae, hookPoint, options.hookMismatch ?? "warn", options.log ?? console.error);
  } catch (error) {
    await encode.stream.writable.abort(error);
    throw error;
  }
  let store: FeatureStore | undefined;
  let source: ReadableStream<TextRecord> | undefined;
  let run: AnalysisRun | undefined;
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
      await putShardStatus(store, {
        ...analysisDoc,
        status: "partial",
        finished_at: null,
        shards: { count: shard.count, done: await shardsDone(store, settings, shard.count) },
      });
    } else {
      // Takes the analysis' lease: a second run on the same name fails here, naming this one.
      run = await AnalysisRun.begin(
        store,
        analysisDoc,
        options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {},
      );
    }
  } catch (error) {
    // Nothing flows yet: release the sessions, the dataset files and the store.
    await encode.stream.writable.abort(error);
    await source?.cancel(error);
    await store?.close();
    throw error;
  }
  await using _closeStore = store;
  await using _endRun = run; // ends it as failed unless published or ended below

  const tally = new Tally(analysis);
  const progress = options.progress === false ? null : new Progress({
    unit: "tokens",
    total: limitTokens,
  });
  let tokens = 0;
  let inputEnded: number | undefined;
  let phase = "stream";
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
        signal: options.signal,
      });
    }
    // The first record comes out when the analyzer's input has ended: the end of the data flow.
    const inputDone = tap<FeatureRecord>(() => {
      if (inputEnded === undefined) {
        inputEnded = performance.now();
        phase = "write";
        progress?.done();
        (options.log ?? console.error)(
          `analyze: input done (${tokens} tokens); writing ${sae.dSae} features to ${
            store!.location
          }`,
        );
      }
    });
    const dlaStage = settings.direct_logit_attributor
      ? [dla({
        sae,
        model: loaded.onnx,
        topK: settings.direct_logit_attributor.top_k,
        vocab,
        ownComputer: true,
      })]
      : [];
    const analyzeDone = performance.now();
    await runPipeline(
      batches,
      [analyzer, inputDone, ...dlaStage],
      run!.writer({ onWritten: (batch) => tally.add(batch) }),
      options.signal ? { signal: options.signal } : {},
    );
    progress?.done();
    // A signal that came while the last records were written still stops the run unpublished.
    options.signal?.throwIfAborted();
    const seconds = (performance.now() - started) / 1000;
    phase = "publish";
    await run!.publish({
      ...analysisDoc,
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
    const what = `analysis "${analysis}" of ${settings.sae_series}/${settings.sae_name}`;
    const signal = signalName(options.signal);
    const cannotRecord = (e: unknown) =>
      say(`could not record the end of the run in the store: ${firstLine(e)}`);
    if (signal) {
      await run?.end({ status: "interrupted", error: `stopped by ${signal}` }, cannotRecord);
      if (shard) await putShardFailure(store, analysisDoc, shard, `stopped by ${signal}`);
      throw new InterruptedError(
        signal,
        `analyze: stopped by ${signal} in the ${phase} phase; ${what} was not ${
          shard ? `stored (shard ${shard.index}/${shard.count})` : "published"
        }: the previous result, if any, is unchanged`,
        { cause: error },
      );
    }
    const reason = firstLine(error);
    await run?.end({ status: "failed", error: reason }, cannotRecord);
    if (shard) await putShardFailure(store, analysisDoc, shard, reason);
    if (error instanceof StoreUnavailableError) {
      throw new StoreUnavailableError(`${error.message} (analyze, ${phase} phase)`, {
        cause: error,
      });
    }
    throw error;
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
}

/**
 * Warns (or fails) when the SAE's own configuration names a hook point other than the one
 * analyzed: its features then read activations they were not trained on.
 */
function checkHookPoint(
  sae: SaeDescription,
  hookPoint: string,
  mode: "warn" | "error",
  say: (line: string) => void,
): void {
  const own = sae.hookPointIn?.trim();
  if (!own || own === hookPoint.trim()) return;
  const message = `the SAE at ${sae.path} was trained at ${own} (its config's hook point) but ` +
    `activation_factory.hook_points analyzes ${hookPoint}`;
  if (mode === "error") throw new ConfigError(`${message}; set hook_points = ["${own}"]`);
  say(
    `warning: ${message}; its features may mean nothing there (--strict-hook-point makes this an error)`,
  );
}

/**
 * Records a shard's progress on the analysis document without hiding a published result: an
 * analysis that is complete stays complete (readers keep seeing it) and only gains `shards`.
 */
async function putShardStatus(store: FeatureStore, doc: AnalysisDoc): Promise<void> {
  const existing = await store.getAnalysis(doc.sae_series, doc.sae_name, doc.name);
  if (existing?.status === "complete") {
    await store.putAnalysis({ ...existing, ...(doc.shards ? { shards: doc.shards } : {}) });
  } else {
    await store.putAnalysis(doc);
  }
}

/** Marks a failed shard run (keeping a published result visible); never throws. */
async function putShardFailure(
  store: FeatureStore,
  doc: Omit<AnalysisDoc, "status" | "finished_at">,
  shard: Shard,
  reason: string,
): Promise<void> {
  await putShardStatus(store, {
    ...doc,
    status: "failed",
    error: `shard ${shard.index}/${shard.count}: ${reason}`,
    n_analyzed_tokens: 0,
    finished_at: new Date().toISOString(),
  }).catch(() => {});
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
  signal: AbortSignal | undefined;
}): Promise<AnalyzeSummary> {
  const { settings, shard, store, analyzer } = run;
  const streamStart = performance.now();
  try {
    await run.batches.pipeTo(analyzer.writable, run.signal ? { signal: run.signal } : {});
  } catch (error) {
    // The analyzer closes its input once `limitTokens` is reached: that is the normal end.
    if (!analyzer.limitReached || run.signal?.aborted) throw error;
  }
  run.signal?.throwIfAborted();
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
  await putShardStatus(store, {
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
