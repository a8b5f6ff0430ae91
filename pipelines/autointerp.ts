/**
 * The `saeflow autointerp` runner: automated interpretation of stored features through an
 * OpenAI-compatible API, written back to the store as each feature completes.
 *
 * @module
 */

import { type ChatClient, LLMUnavailableError, scrubSecret } from "../lib/autointerp/client.ts";
import { type AutoInterpOptions, resolveAutoInterpOptions } from "../lib/autointerp/options.ts";
import { ConfigError, InterruptedError } from "../lib/errors.ts";
import { signalName } from "./analysis_run.ts";
import { runPipeline } from "./_pipeline.ts";
import type { AutoInterpSettings } from "../lib/settings/mod.ts";
import type { FeatureStore } from "../lib/store/mod.ts";
import {
  type AutoInterpEvent,
  autointerpStage,
  type AutoInterpSummary,
  AutoInterpTally,
} from "../stages/autointerp.ts";
import { ensureModelDoc, modelNameOf, resolveModel } from "./_model.ts";
import { formatDuration, type LogFn, runnerProgress, stderrLog } from "./_progress.ts";
import { selectFeatures } from "./_select.ts";
import { openSettingsStore } from "./_store.ts";
import { storeWriter } from "../stages/store_writer.ts";

/** Options of {@linkcode autoInterp}; every field optional. */
export interface AutoInterpRunOptions {
  /**
   * Only these features (e.g. `--features`). Default: the settings' `features`,
   * `feature_range` or `top_k_features`, else every feature of the analysis.
   */
  features?: readonly number[];
  /**
   * Where progress, retry and summary lines go (never containing the API key). Default: one
   * plain line each on standard error.
   */
  log?: LogFn;
  /** The chat client. Default: an OpenAI-compatible client built from `[auto_interp]`. */
  client?: ChatClient;
  /**
   * Stops the run: requests in flight are cancelled, the interpretations finished so far are
   * written, and the run rejects with the signal's reason. A later run does the rest.
   */
  signal?: AbortSignal;
  /** Called once per feature, in completion order, after it is counted. */
  onFeature?: (event: AutoInterpEvent) => void;
  /** Interpretations per store write. Default 16. */
  writeBatch?: number;
  /** Longest time a finished interpretation waits before it is written, ms. Default 1000. */
  writeDelayMs?: number;
  /** Least time between two progress lines, ms. Default 2000. */
  progressIntervalMs?: number;
}

/** What an auto-interpretation run did: the stage's totals plus where and how long. */
export interface AutoInterpRunSummary extends AutoInterpSummary {
  /** `series/name` of the SAE. */
  sae: string;
  /** The analysis whose samples were used. */
  analysis: string;
  /** Features read from the store (selected and analyzed). */
  features: number;
  /** Selected features that the store does not have under this analysis. */
  missing: number;
  /** Interpretations written (done and failed). */
  stored: number;
  /** Wall time, seconds. */
  seconds: number;
  /** Where the results are. */
  location: string;
}

/**
 * An auto-interpretation run that achieved nothing it could go on with; the CLI prints the
 * message on one line and exits with code 1. Either the endpoint is unusable — `cause` is the
 * client's `LLMUnavailableError` (unreachable after the first feature's retries, API key refused,
 * no such model): the run stopped at once, cancelling the requests in flight, and kept the
 * interpretations finished before — or every feature sent to the LLM failed (their errors are
 * stored, and the next run tries them again). The message names the base URL, never the key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AutoInterpFailedError } from "./autointerp.ts";
 * const summary = {
 *   done: 0, passed: 0, failed: 2, skipped_dead: 0, skipped_existing: 0,
 *   usage: { prompt_tokens: 0, completion_tokens: 0 }, sae: "x/s", analysis: "default",
 *   features: 2, missing: 0, stored: 2, seconds: 1, location: "/tmp/saeflow.sqlite",
 * };
 * const e = new AutoInterpFailedError("autointerp: all 2 features sent to the LLM failed", { summary });
 * assert.equal(e.name, "AutoInterpFailedError");
 * assert.equal(e.summary.failed, 2);
 * ```
 */
export class AutoInterpFailedError extends Error {
  /** What the run did before it stopped. */
  readonly summary: AutoInterpRunSummary;

  /** Creates the error; `message` must already be free of secrets. */
  constructor(message: string, options: ErrorOptions & { summary: AutoInterpRunSummary }) {
    super(message, "cause" in options ? { cause: options.cause } : undefined);
    this.name = "AutoInterpFailedError";
    this.summary = options.summary;
  }
}

/**
 * The stage options that `[auto_interp]` and the top-level `max_workers` and `analysis_name`
 * give (unset values left out, so the stage's defaults apply).
 *
 * @param settings Resolved `autointerp` settings.
 * @returns The options for `autointerpStage` / `resolveAutoInterpOptions`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { autoInterpOptionsOf } from "./autointerp.ts";
 * import { AutoInterpSettingsSchema } from "../lib/settings/mod.ts";
 * const s = AutoInterpSettingsSchema.parse({
 *   sae_name: "s", sae_series: "x", model: {}, model_name: "gpt2", max_workers: 3,
 *   auto_interp: { openai_model: "gpt-4o-mini" },
 * });
 * const o = autoInterpOptionsOf(s);
 * assert.equal(o.max_workers, 3);
 * assert.equal(o.openai_model, "gpt-4o-mini");
 * assert(!("temperature" in o));
 * ```
 */
export function autoInterpOptionsOf(settings: AutoInterpSettings): AutoInterpOptions {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(settings.auto_interp)) {
    if (value !== null && value !== undefined) out[key] = value;
  }
  out.max_workers = settings.max_workers;
  out.analysis_name = settings.analysis_name;
  return out as AutoInterpOptions;
}

/**
 * Interprets the analyzed features of an SAE and stores each `interpretation`.
 *
 * Reads the features of `analysis_name` from the store (all, or `features`, or the settings'
 * selection), skips dead ones and those already interpreted without error (unless
 * `auto_interp.overwrite_existing`), and runs the others through `autointerpStage` with
 * `max_workers` features at once, using the vocabulary of the SAE's model from the store (loaded
 * from `[model]`'s tokenizer and stored when missing). Each finished interpretation is written
 * within `writeDelayMs` (in batches of `writeBatch`), so an interrupted run keeps what finished
 * and the next run goes on from there; a feature whose interpretation failed is recorded with
 * its error and tried again by the next run.
 *
 * Progress goes to `log` every ~2 s, then a summary line (done, passed, failed, skipped, tokens
 * used). The API key (`auto_interp.openai_api_key`, filled from `OPENAI_API_KEY`) is never
 * printed, stored or put in an error message.
 *
 * The run fails loudly rather than record a run of failures: as soon as one feature meets an
 * endpoint that no feature can use (unreachable once its retries are used up, API key refused
 * with 401 or 403, 404 for a wrong base URL path or an unknown model), it stops — requests in
 * flight are cancelled, nothing more is sent, the interpretations finished before are stored,
 * that feature is not recorded — and rejects with an {@linkcode AutoInterpFailedError} naming
 * the base URL. A run in which every feature sent to the LLM failed (for reasons of its own,
 * such as answers that cannot be parsed) stores those failures and rejects with one too; a run
 * in which only some failed resolves, counting them in `failed`.
 *
 * @param settings Resolved `autointerp` settings (`loadSettings(file, "autointerp")`).
 * @param options Feature selection, log, client, signal and batching.
 * @returns The totals.
 * @throws {ConfigError} For bad options, a missing API key, no analyzed features in the store,
 *   or a vocabulary that cannot be loaded.
 * @throws {AutoInterpFailedError} When the endpoint cannot be used, or every feature sent failed.
 * @throws {StoreUnavailableError} When the store cannot be opened.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { autoInterp } from "./autointerp.ts";
 * import { AutoInterpSettingsSchema } from "../lib/settings/mod.ts";
 * import { openSettingsStore } from "./_store.ts";
 * const settings = AutoInterpSettingsSchema.parse({
 *   sae_name: "s", sae_series: "x", model: {}, model_name: "m", auto_interp: {},
 *   output_dir: await Deno.makeTempDir(),
 * });
 * {
 *   await using store = await openSettingsStore(settings);
 *   await store.putModel({ name: "m", config: {}, vocab: ["a", "b"] });
 *   const histogram = { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array() };
 *   const dead = { act_times: 0, n_analyzed_tokens: 10, max_activation: 0, mean: 0, std: 0, histogram, quantiles: [], samplings: [] };
 *   await store.writeFeatures([{ sae_series: "x", sae_name: "s", index: 0, analyses: { default: dead } }]);
 * }
 * const client = { model: "none", complete: () => Promise.reject(new Error("not called")) };
 * const summary = await autoInterp(settings, { client, log: () => {} });
 * assert.equal(summary.skipped_dead, 1);
 * assert.equal(summary.done, 0);
 * ```
 */
export async function autoInterp(
  settings: AutoInterpSettings,
  options: AutoInterpRunOptions = {},
): Promise<AutoInterpRunSummary> {
  const secret = settings.auto_interp.openai_api_key ?? undefined;
  const rawLog = options.log ?? stderrLog;
  const log: LogFn = (line) => rawLog(scrubSecret(line, secret));
  try {
    return await run(settings, options, log);
  } catch (error) {
    throw scrubError(error, secret);
  }
}

async function run(
  settings: AutoInterpSettings,
  options: AutoInterpRunOptions,
  log: LogFn,
): Promise<AutoInterpRunSummary> {
  const started = performance.now();
  const stageOptions = autoInterpOptionsOf(settings);
  const resolved = resolveAutoInterpOptions(stageOptions); // bad options fail before any work
  const series = settings.sae_series;
  const name = settings.sae_name;
  const analysis = settings.analysis_name;
  await using store = await openSettingsStore(settings);

  const indices = await selectFeatures(settings, {
    ...(options.features ? { explicit: options.features } : {}),
    store,
  });
  const total = indices?.length ??
    await store.countFeatures({ series, name, analysis });
  if (indices === null && total === 0) {
    throw new ConfigError(
      `No features of ${series}/${name} with analysis "${analysis}" in ${store.location}: ` +
        `run saeflow analyze first`,
    );
  }
  const vocab = await vocabFor(store, settings, log);

  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const tally = new AutoInterpTally();
  const progress = runnerProgress({
    label: "auto-interp",
    unit: "features",
    total,
    ...(options.log ? { log } : {}),
    ...(options.progressIntervalMs !== undefined ? { intervalMs: options.progressIntervalMs } : {}),
  });
  let written = 0;
  const writer = storeWriter(store, {
    batchSize: options.writeBatch ?? 16,
    maxDelayMs: options.writeDelayMs ?? 1000,
    onWritten: (batch) => written += batch.length,
  }).getWriter();
  // Interpretations are written from the events, not from the stage's output: records the stage
  // has emitted but nobody has read yet are dropped when the run is interrupted.
  let seen = 0;
  let firstFailure: { index: number; error: string } | undefined;
  const onFeature = (event: AutoInterpEvent) => {
    seen++;
    tally.add(event);
    if (event.status === "failed" && !firstFailure) {
      firstFailure = { index: event.index, error: event.interpretation?.error ?? "" };
    }
    progress.update(seen);
    if (event.interpretation && (event.status === "done" || event.status === "failed")) {
      writer.write({
        sae_series: series,
        sae_name: name,
        index: event.index,
        analyses: {},
        interpretation: event.interpretation,
      }).catch((error) => stop.abort(error)); // a store that fails stops the run
    }
    options.onFeature?.(event);
  };
  const stage = autointerpStage({
    ...stageOptions,
    vocab,
    signal,
    log,
    onFeature,
    ...(options.client ? { client: options.client } : {}),
  });
  const source = store.readFeatures(series, name, {
    analysis,
    ...(indices ? { indices } : {}),
    pageSize: Math.max(16, 2 * resolved.max_workers),
  });
  const summarize = (missing: number): AutoInterpRunSummary => ({
    ...structuredClone(tally.summary),
    sae: `${series}/${name}`,
    analysis,
    features: seen,
    missing,
    stored: written,
    seconds: (performance.now() - started) / 1000,
    location: store.location,
  });
  try {
    // Records are written from the events (onFeature), so the stage's output is discarded.
    await runPipeline(source, [stage], new WritableStream(), { signal });
  } catch (error) {
    progress.done();
    await writer.close().catch(() => {});
    log(
      `${tally.line()}; stopped after ${formatDuration(progress.elapsed)}, ` +
        `${written} interpretations stored in ${store.location}`,
    );
    const reason = stop.signal.aborted ? stop.signal.reason : error;
    const byUser = signalName(options.signal);
    if (byUser) {
      throw new InterruptedError(
        byUser,
        `autointerp: stopped by ${byUser}; ${written} interpretations are stored, a later run does the rest`,
        { cause: reason },
      );
    }
    if (reason instanceof LLMUnavailableError) {
      throw new AutoInterpFailedError(`autointerp: ${reason.message}; nothing more was sent`, {
        cause: reason,
        summary: summarize(0),
      });
    }
    throw reason;
  }
  progress.done();
  await writer.close();

  const missing = indices ? indices.length - seen : 0;
  if (missing > 0) {
    log(
      `auto-interp: ${missing} of the ${indices!.length} selected features have no analysis ` +
        `"${analysis}" in the store; skipped`,
    );
  }
  const summary = summarize(missing);
  log(`${tally.line()}; in ${formatDuration(summary.seconds)}, stored in ${store.location}`);
  if (summary.done === 0 && firstFailure) {
    const n = summary.failed;
    const first = firstFailure.error.split("\n")[0]!;
    throw new AutoInterpFailedError(
      `autointerp: ${n === 1 ? "the 1 feature" : `all ${n} features`} sent to the LLM ` +
        `failed, none was interpreted; feature ${firstFailure.index}: ` +
        (first.length > 300 ? `${first.slice(0, 299)}…` : first),
      { summary },
    );
  }
  return summary;
}

/** The vocabulary of the SAE's model: from the store, else from `[model]`'s tokenizer. */
async function vocabFor(
  store: FeatureStore,
  settings: AutoInterpSettings,
  log: LogFn,
): Promise<string[]> {
  const saeDoc = await store.getSae(settings.sae_series, settings.sae_name);
  const modelName = saeDoc?.model ?? modelNameOf(settings);
  const stored = await store.getModel(modelName);
  if (stored && stored.vocab.length > 0) return stored.vocab;
  const model = await resolveModel(settings, { log });
  return (await ensureModelDoc(store, { ...model, name: modelName })).vocab;
}

/** The error with every occurrence of the secret removed from its message and stack. */
function scrubError(error: unknown, secret: string | undefined): unknown {
  if (!secret || !(error instanceof Error)) return error;
  if (error.message.includes(secret)) error.message = scrubSecret(error.message, secret);
  if (error.stack?.includes(secret)) error.stack = scrubSecret(error.stack, secret);
  return error;
}
