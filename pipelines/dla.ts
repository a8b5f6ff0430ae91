/**
 * The `saeflow dla` runner: Direct Logit Attribution of every feature of an SAE, written to the
 * store (`logits` of each feature document).
 *
 * @module
 */

import { InterruptedError } from "../lib/errors.ts";
import { signalName } from "./analysis_run.ts";
import { attributeSae, type FeatureDla } from "../lib/dla/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { runPipeline } from "./_pipeline.ts";
import type { SessionOptions } from "../lib/ort/mod.ts";
import type { DirectLogitAttributeSettings } from "../lib/settings/mod.ts";
import { ensureModelDoc, resolveModel } from "./_model.ts";
import { formatDuration, formatRate, type LogFn, runnerProgress, stderrLog } from "./_progress.ts";
import { ensureSaeDoc, loadSettingsSae, saeDocOf } from "./_sae.ts";
import { selectFeatures } from "./_select.ts";
import { openSettingsStore } from "./_store.ts";
import { storeWriter } from "../stages/store_writer.ts";

/** Options of {@linkcode directLogitAttribute}; every field optional. */
export interface DirectLogitAttributeOptions {
  /**
   * Where progress and summary lines go. Default: standard error (the progress line updated in
   * place on a terminal).
   */
  log?: LogFn;
  /**
   * Only these features. Default: the settings' `features`, `feature_range` or
   * `top_k_features`, else every feature.
   */
  features?: readonly number[];
  /** ONNX Runtime settings. Default: the device of `[model]` (else of `[sae]`). */
  session?: SessionOptions;
  /** Feature documents per store write. Default 256. */
  writeBatch?: number;
  /** Least time between two progress lines, ms. Default 2000. */
  progressIntervalMs?: number;
  /** Stops the run between features; what was computed before is written. */
  signal?: AbortSignal;
}

/** What a DLA run did. */
export interface DlaSummary {
  /** `series/name` of the SAE. */
  sae: string;
  /** The model whose unembedding was used (its name in the store). */
  model: string;
  /** Features whose logits were written. */
  features: number;
  /** Features of the SAE (`d_sae`). */
  d_sae: number;
  /** Tokens kept on each side. */
  top_k: number;
  /** Whether the logits were centered over the vocabulary. */
  center: boolean;
  /** Wall time, seconds. */
  seconds: number;
  /** Where the results are (`mongodb://host/db` or the SQLite file). */
  location: string;
}

/**
 * Computes the Direct Logit Attribution of the SAE's features and stores it.
 *
 * 1. Loads the SAE (`[sae]`: a folder or a Hub id) and finds the language model (`[model]`, or
 *    the model stored under `model_name` by an earlier `saeflow analyze`, or `model_name` as a
 *    Hub id), and its unembedding tail in the ONNX graph.
 * 2. Stores the SAE and model documents (with the vocabulary) when the store has none yet.
 * 3. Runs every decoder row (or the selected ones) through the tail in chunks of
 *    `direct_logit_attributor.chunk_size` rows and writes each feature's `logits` (top
 *    `top_k` tokens on both sides and a histogram) with `writeFeatures`, in batches. Features
 *    with no document yet get one; analyses already stored are kept. Running it again replaces
 *    the logits with the same values.
 *
 * Progress goes to `log` every ~2 s (`dla: 128/256 features  900 features/s  elapsed 0s  ETA
 * 0s`; by default to standard error, in place on a terminal), then one summary line.
 *
 * @param settings Resolved `dla` settings (`loadSettings(file, "dla")`).
 * @param options Log, feature selection, session and batching.
 * @returns What was done.
 * @throws {ConfigError} For an SAE or model that cannot be found or does not fit (d_model, no
 *   unembedding tail, `top_k` over the vocabulary), or a feature index out of range.
 * @throws {StoreUnavailableError} When the store cannot be opened.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directLogitAttribute } from "./dla.ts";
 * import { DirectLogitAttributeSettingsSchema } from "../lib/settings/mod.ts";
 * const fixtures = new URL("../fixtures/", import.meta.url).pathname;
 * const settings = DirectLogitAttributeSettingsSchema.parse({
 *   sae_name: "relu", sae_series: "demo", model_name: "tiny-neox",
 *   sae: { pretrained_name_or_path: `${fixtures}sae/lm-saes-relu` },
 *   model: { model_from_pretrained_path: `${fixtures}tiny-neox` },
 *   direct_logit_attributor: { top_k: 5 },
 *   output_dir: await Deno.makeTempDir(),
 * });
 * const summary = await directLogitAttribute(settings, { log: () => {}, session: { intraOpThreads: 1 } });
 * assert.equal(summary.features, 256);
 * ```
 */
export async function directLogitAttribute(
  settings: DirectLogitAttributeSettings,
  options: DirectLogitAttributeOptions = {},
): Promise<DlaSummary> {
  const log = options.log ?? stderrLog;
  const started = performance.now();
  const config = settings.direct_logit_attributor;
  const sae = await loadSettingsSae(settings.sae, { log });
  await using store = await openSettingsStore(settings);
  const model = await resolveModel(settings, { store, log });
  const modelDoc = await ensureModelDoc(store, model);
  const series = settings.sae_series;
  const name = settings.sae_name;
  await ensureSaeDoc(store, saeDocOf(sae, { series, name, model: model.name }));

  const features = await selectFeatures(settings, {
    ...(options.features ? { explicit: options.features } : {}),
    store,
    dSae: sae.dSae,
  });
  const total = features ? features.length : sae.dSae;
  const progress = runnerProgress({
    label: "dla",
    unit: "features",
    total,
    ...(options.log ? { log: options.log } : {}),
    ...(options.progressIntervalMs !== undefined ? { intervalMs: options.progressIntervalMs } : {}),
  });
  const device = settings.model?.device ?? settings.sae.device;
  let written = 0;
  let done = 0;
  const results = attributeSae({
    sae,
    model: model.dir.onnxPath,
    topK: config.top_k,
    center: config.center,
    ...(config.chunk_size !== undefined ? { chunkSize: config.chunk_size } : {}),
    vocab: modelDoc.vocab,
    ...(features ? { features } : {}),
    session: options.session ?? { device },
  });
  const toRecords = new TransformStream<FeatureDla, FeatureRecord>(
    {
      transform({ index, logits }, controller) {
        controller.enqueue({ sae_series: series, sae_name: name, index, analyses: {}, logits });
        progress.update(++done);
      },
    },
    new CountQueuingStrategy({ highWaterMark: 1 }),
    new CountQueuingStrategy({ highWaterMark: 1 }),
  );
  try {
    // keepOnError: logits already computed are written even when the run stops (a later run
    // replaces them with the same values).
    await runPipeline(
      ReadableStream.from(results),
      [toRecords],
      storeWriter(store, {
        batchSize: options.writeBatch ?? 256,
        onWritten: (batch) => written += batch.length,
      }),
      { ...(options.signal ? { signal: options.signal } : {}), keepOnError: true },
    );
  } catch (error) {
    progress.done();
    const byUser = signalName(options.signal);
    if (byUser) {
      throw new InterruptedError(
        byUser,
        `dla: stopped by ${byUser} after ${written} of ${total} features; their logits are stored, a later run does the rest`,
        { cause: error },
      );
    }
    throw error;
  }
  progress.done();

  const seconds = (performance.now() - started) / 1000;
  const rate = done / Math.max(progress.elapsed, 1e-9);
  const summary: DlaSummary = {
    sae: `${series}/${name}`,
    model: model.name,
    features: written,
    d_sae: sae.dSae,
    top_k: config.top_k,
    center: config.center,
    seconds,
    location: store.location,
  };
  log(
    `dla: ${summary.features} features of ${summary.sae} through ${summary.model}'s unembedding ` +
      `in ${formatDuration(seconds)} (${formatRate(rate)} features/s), top ${config.top_k} tokens${
        config.center ? ", centered" : ""
      }; stored in ${store.location}`,
  );
  return summary;
}
