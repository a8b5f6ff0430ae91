/**
 * The merge runner `mergeAnalysis(settings)` (`saeflow merge CONFIG`): the last step of a sharded
 * analysis.
 *
 * ```
 * shard states 0..N-1 (store) ─▶ merged state ─▶ feature analyzer (records) ─▶ [DLA] ─▶ store
 * ```
 *
 * It reads the analyzer states the `analyzeSae(settings, { shard })` workers stored, merges them
 * in shard order (exact: the result is the state of one run over shard 0's data, then shard 1's,
 * …; with a dataset of at least N files, where shard i reads the files `i, i+N, …`, and N = the
 * number of files, that is the very run an unsharded analysis makes), writes every feature
 * record (with DLA logits when `[direct_logit_attributor]` is configured), marks the analysis
 * `complete`, and only then removes the shard states.
 *
 * @module
 */

import { ConfigError, InterruptedError } from "../lib/errors.ts";
import type { AnalyzeSAESettings } from "../lib/settings/mod.ts";
import { redactSettings } from "../lib/settings/mod.ts";
import type { AnalyzerStateInfo, FeatureStore } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import type { AnalyzerState } from "../lib/analysis/state.ts";
import { stateFromChunks } from "../lib/analysis/state_chunks.ts";
import { OnnxModel } from "../lib/onnx/mod.ts";
import { featureAnalyzer } from "../stages/feature_analyzer.ts";
import { dla } from "../stages/dla.ts";
import { resolveModel } from "./_model.ts";
import { loadSettingsSae } from "./_sae.ts";
import { openSettingsStore } from "./_store.ts";
import { type AnalyzeSummary, summaryLines } from "./summary.ts";
import { analyzerOptionsOf, Tally } from "./_analysis.ts";
import { AnalysisRun, signalName } from "./analysis_run.ts";
import { runPipeline } from "./_pipeline.ts";

/** Options of {@linkcode mergeAnalysis}. */
export interface MergeOptions {
  /** Where the summary lines go (default: stdout). */
  log?: (line: string) => void;
  /**
   * Stops the merge: aborted with `"SIGINT"`/`"SIGTERM"` it ends as `interrupted` and rejects
   * with an `InterruptedError`; nothing is published and the shard states are kept.
   */
  signal?: AbortSignal;
}

/** What {@linkcode mergeAnalysis} did: an analyze summary, plus the number of shards merged. */
export interface MergeSummary extends AnalyzeSummary {
  /** Shards merged. */
  shards: number;
}

/**
 * Checks that the stored states are the shards `0..N-1` of one run.
 *
 * @returns N.
 * @throws {ConfigError} When there are none, several counts, or missing shards.
 */
function checkShards(states: AnalyzerStateInfo[], what: string, location: string): number {
  if (states.length === 0) {
    throw new ConfigError(
      `Cannot merge ${what}: no shard state is stored in ${location}; run saeflow analyze CONFIG --shard i/N for every i first`,
    );
  }
  const counts = [...new Set(states.map((s) => s.count))];
  if (counts.length > 1) {
    throw new ConfigError(
      `Cannot merge ${what}: the stored shard states are of runs with ${
        counts.join(" and ")
      } shards; re-run the shards of one count`,
    );
  }
  const n = counts[0]!;
  const have = new Set(states.map((s) => s.shard));
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !have.has(i));
  if (missing.length > 0) {
    throw new ConfigError(
      `Cannot merge ${what}: shard${missing.length > 1 ? "s" : ""} ${
        missing.map((i) => `${i}/${n}`).join(", ")
      } missing (stored: ${[...have].sort((a, b) => a - b).join(", ")})`,
    );
  }
  return n;
}

/**
 * Merges the shard states of a sharded analysis and writes its features.
 *
 * @param settings The same resolved `analyze` settings the shards ran with (store, SAE, analysis
 *   name, analyzer options; the model and SAE are loaded only for DLA).
 * @param options Logging.
 * @returns A summary of the merged analysis.
 * @throws {ConfigError} No state stored, states of different shard counts, a shard missing (the
 *   message names which), or analyzer options that differ from the shards'.
 *
 * @example
 * ```ts ignore
 * import { loadSettings, mergeAnalysis } from "../mod.ts";
 * const settings = await loadSettings("analyze.toml", "analyze");
 * const summary = await mergeAnalysis(settings);
 * console.log(summary.shards, summary.alive);
 * ```
 */
export async function mergeAnalysis(
  settings: AnalyzeSAESettings,
  options: MergeOptions = {},
): Promise<MergeSummary> {
  const started = performance.now();
  const say = options.log ?? ((line: string) => console.log(line));
  const series = settings.sae_series;
  const sae = settings.sae_name;
  const analysis = settings.analysis_name;
  const what = `analysis "${analysis}" of ${series}/${sae}`;
  await using store = await openSettingsStore(settings);
  const states = await store.listAnalyzerStates(series, sae, analysis);
  const n = checkShards(states, what, store.location);
  const existing = await store.getAnalysis(series, sae, analysis);

  // Everything that can fail before a feature is written: the states, the SAE and the model.
  const merged = await loadMerged(store, settings, n);
  const loadDone = performance.now();
  let dlaStage: TransformStream<FeatureRecord, FeatureRecord> | undefined;
  if (settings.direct_logit_attributor) {
    const model = await resolveModel(settings);
    const saeLoaded = await loadSettingsSae(settings.sae);
    const onnx = await OnnxModel.load(model.dir.onnxPath);
    const vocab = (await store.getModel(model.name))?.vocab ?? [];
    dlaStage = dla({
      sae: saeLoaded,
      model: onnx,
      topK: settings.direct_logit_attributor.top_k,
      vocab,
      ownComputer: true,
    });
  }
  const analysisDoc = {
    sae_series: series,
    sae_name: sae,
    name: analysis,
    settings: JSON.parse(JSON.stringify(redactSettings(settings))) as Record<string, unknown>,
    started_at: existing?.started_at ?? new Date(started).toISOString(),
    shards: { count: n, done: Array.from({ length: n }, (_, i) => i) },
  };
  // The analysis' lease: no other run writes it meanwhile; readers see the previous result.
  await using run = await AnalysisRun.begin(store, {
    ...analysisDoc,
    n_analyzed_tokens: 0,
    timings: {},
  });
  const tally = new Tally(analysis);
  try {
    // The analyzer stage over the merged state, with no further input: its records.
    const analyzer = featureAnalyzer({ initialState: merged });
    await analyzer.writable.close();
    await runPipeline(
      analyzer.readable,
      dlaStage ? [dlaStage] : [],
      run.writer({ onWritten: (batch) => tally.add(batch) }),
      options.signal ? { signal: options.signal } : {},
    );
    const seconds = (performance.now() - started) / 1000;
    await run.publish({
      ...analysisDoc,
      n_analyzed_tokens: merged.nAnalyzedTokens,
      finished_at: new Date().toISOString(),
      timings: {
        total: seconds,
        load: (loadDone - started) / 1000,
        write: (performance.now() - loadDone) / 1000,
      },
    });
  } catch (error) {
    const signal = signalName(options.signal);
    if (signal) {
      await run.end({ status: "interrupted", error: `stopped by ${signal}` });
      throw new InterruptedError(
        signal,
        `merge: stopped by ${signal}; ${what} was not published (the shard states are kept)`,
        { cause: error },
      );
    }
    const reason = error instanceof Error ? error.message : String(error);
    await run.end(
      { status: "failed", error: `merge: ${reason.split("\n")[0]!}` },
      (e) => say(`could not record the end of the merge in the store: ${String(e)}`),
    );
    throw error;
  }
  // Only now that the analysis is complete: the shard states are no longer needed.
  await store.removeAnalyzerStates(series, sae, analysis, { count: n });
  const summary: MergeSummary = {
    tokens: merged.nTokens,
    analyzedTokens: merged.nAnalyzedTokens,
    seconds: (performance.now() - started) / 1000,
    alive: tally.alive,
    dead: tally.dead,
    densest: tally.densestWithTokens(await vocabOf(store, series, sae)),
    location: store.location,
    fused: false,
    shards: n,
  };
  say(`merged ${n} shard states of ${what}`);
  const lines = summaryLines(summary, settings);
  // The first line of an analyze summary is about the data flow; a merge reports its own.
  say(
    `${summary.tokens} tokens (${summary.analyzedTokens} analyzed) in ${
      summary.seconds.toFixed(1)
    } s`,
  );
  for (const line of lines.slice(1)) say(line);
  return summary;
}

/** The vocabulary of the SAE's model as the shards stored it (empty when unknown). */
async function vocabOf(store: FeatureStore, series: string, sae: string): Promise<string[]> {
  const doc = await store.getSae(series, sae);
  return (doc ? (await store.getModel(doc.model))?.vocab : undefined) ?? [];
}

/** Reads and merges the states of shards `0..n-1`, in order. */
async function loadMerged(
  store: FeatureStore,
  settings: AnalyzeSAESettings,
  n: number,
): Promise<AnalyzerState> {
  const analyzer = analyzerOptionsOf(settings);
  let merged: AnalyzerState | undefined;
  for (let shard = 0; shard < n; shard++) {
    const key = {
      sae_series: settings.sae_series,
      sae_name: settings.sae_name,
      analysis: settings.analysis_name,
      shard,
      count: n,
    };
    const chunks = await store.getAnalyzerState(key);
    if (chunks === null) {
      throw new ConfigError(
        `Cannot merge analysis "${key.analysis}" of ${key.sae_series}/${key.sae_name}: shard ${shard}/${n} was removed while merging`,
      );
    }
    let state: AnalyzerState;
    try {
      state = await stateFromChunks(chunks, { analyzer });
    } catch (error) {
      if (error instanceof ConfigError) {
        throw new ConfigError(
          `Cannot merge shard ${shard}/${n}: the settings' [analyzer] differ from the ones it ran with (${error.message})`,
          { cause: error },
        );
      }
      throw error;
    }
    merged = merged === undefined ? state : merged.merge(state);
  }
  return merged!;
}
