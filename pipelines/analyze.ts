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
 * @module
 */

import { ConfigError } from "../lib/errors.ts";
import type { AnalyzeSAESettings } from "../lib/settings/mod.ts";
import { redactSettings, redactUrl } from "../lib/settings/mod.ts";
import type { FeatureStore } from "../lib/store/mod.ts";
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

/** Keeps counts and the densest features of the records written. */
class Tally {
  alive = 0;
  dead = 0;
  densest: { index: number; act_times: number; record: FeatureRecord }[] = [];

  constructor(readonly analysis: string, readonly keep = 5) {}

  add(records: readonly FeatureRecord[]) {
    for (const r of records) {
      const a = r.analyses[this.analysis];
      if (!a) continue;
      if (a.act_times > 0) this.alive++;
      else this.dead++;
      if (a.act_times === 0) continue;
      const d = this.densest;
      if (d.length < this.keep || a.act_times > d[d.length - 1]!.act_times) {
        d.push({ index: r.index, act_times: a.act_times, record: r });
        d.sort((x, y) => y.act_times - x.act_times || x.index - y.index);
        if (d.length > this.keep) d.pop();
      }
    }
  }
}

function topToken(record: FeatureRecord, analysis: string, vocab: string[]): string | null {
  const sample = record.analyses[analysis]?.samplings.find((s) => s.name === "top_activations")
    ?.samples[0];
  if (!sample) return null;
  const id = sample.tokens[sample.peak_pos];
  return id === undefined ? null : vocab[id] ?? `<${id}>`;
}

/** The dataset sources of the settings, in `[[activation_factory.sources]]` order. */
function datasetsOf(settings: AnalyzeSAESettings) {
  return settings.activation_factory.sources.map((source) => {
    const ds = settings.datasets?.[source.name];
    if (!ds) {
      throw new ConfigError(`activation_factory.sources: no [datasets."${source.name}"] table`);
    }
    return { name: source.name, pathOrId: ds.dataset_name_or_path, textField: ds.text_field };
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
    source = await withFirstRecordRead(datasetSource(datasetsOf(settings), {
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
    await store.putAnalysis({ ...analysisDoc, status: "running", finished_at: null });
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
    total: settings.analyzer.total_analyzing_tokens,
  });
  let tokens = 0;
  let inputEnded: number | undefined;
  try {
    const ignore = [
      ...(af.ignore_token_ids ?? []),
      ...(settings.analyzer.ignore_token_ids ?? []),
    ];
    const analyzer = featureAnalyzer({
      analysisName: analysis,
      saeName: settings.sae_name,
      saeSeries: settings.sae_series,
      subsamples: Object.fromEntries(
        Object.entries(settings.analyzer.subsamples).map((
          [name, { proportion, n_samples }],
        ) => [name, { proportion, n_samples }]),
      ),
      subsampleRule: settings.analyzer.subsample_rule === "python" ? "python" : "band",
      // As in the settings: the table's own sizes win; these apply when it has no such entry.
      nTop: settings.analyzer.n_top,
      nNonActivating: settings.analyzer.n_non_activating,
      windowBefore: settings.analyzer.window_before,
      windowAfter: settings.analyzer.window_after,
      seed: settings.analyzer.seed,
      limitTokens: settings.analyzer.total_analyzing_tokens,
    });
    let records: ReadableStream<FeatureRecord> = source
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
      }))
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
      // analyze) until the analyzer's input ended; write: building and storing the records.
      timings: {
        total: seconds,
        setup: (analyzeDone - started) / 1000,
        stream: ((inputEnded ?? performance.now()) - analyzeDone) / 1000,
        write: inputEnded === undefined ? 0 : (performance.now() - inputEnded) / 1000,
      },
    });
    const summary: AnalyzeSummary = {
      tokens,
      analyzedTokens: analyzer.nAnalyzedTokens,
      seconds,
      alive: tally.alive,
      dead: tally.dead,
      densest: tally.densest.map((d) => ({
        index: d.index,
        act_times: d.act_times,
        top_token: topToken(d.record, analysis, vocab),
      })),
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
      error: reason.split("\n")[0]!,
      n_analyzed_tokens: 0,
      finished_at: new Date().toISOString(),
    }).catch(() => {});
    throw error;
  }
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
