/**
 * Interpreting one feature: choose its examples, ask for an explanation, score it, and build the
 * {@linkcode Interpretation} stored on the feature document.
 *
 * @module
 */

import type { FeatureAnalysis, FeatureRecord, Interpretation, Sample } from "../types.ts";
import { AnswerFormatError, type AskContext, newTranscript } from "./_ask.ts";
import { type Random, seededRandom, shuffled } from "./_random.ts";
import { type ChatClient, ChatRequestError, LLMUnavailableError } from "./client.ts";
import { type Example, exampleFromSample } from "./examples.ts";
import { explainFeature } from "./explainers.ts";
import type { ResolvedAutoInterpOptions } from "./options.ts";
import {
  scoreDetection,
  scoreFuzzing,
  type ScoreInput,
  type ScoreResult,
  scoreSimulation,
} from "./scorers.ts";

/** What {@linkcode interpretFeature} needs besides the record. */
export interface InterpretContext {
  /** The chat client (its limits apply across every feature that shares it). */
  client: ChatClient;
  /** Resolved options. */
  options: ResolvedAutoInterpOptions;
  /** Token id → display string, for the feature's model. */
  vocab: readonly string[];
  /** Aborts the feature's requests; {@linkcode interpretFeature} then rejects with the reason. */
  signal?: AbortSignal | undefined;
  /** The clock for `at`. Default `() => new Date()`. */
  now?: () => Date;
}

/** The examples chosen for one feature. */
export interface FeatureExamples {
  /** Shown to the explainer: the strongest of `top_activations`, strongest first. */
  explain: Example[];
  /** For the scorers: held-out activating examples first (shuffled), then the shown ones. */
  activating: Example[];
  /** From the `non_activating` sampling (shuffled). */
  nonActivating: Example[];
}

/**
 * Whether a feature is dead under the analysis: it never fired (or the analysis is missing).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isDeadFeature } from "./interpret.ts";
 * assert(isDeadFeature({ sae_name: "s", sae_series: "x", index: 0, analyses: {} }, "default"));
 * ```
 */
export function isDeadFeature(record: FeatureRecord, analysisName: string): boolean {
  const a = record.analyses[analysisName];
  return !a || !(a.max_activation > 0) || a.act_times === 0;
}

/**
 * Whether a feature already has a successful interpretation (one without `error`). Failed
 * interpretations are retried by the next run.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isInterpreted } from "./interpret.ts";
 * assert(!isInterpreted({ sae_name: "s", sae_series: "x", index: 0, analyses: {} }));
 * ```
 */
export function isInterpreted(record: FeatureRecord): boolean {
  const i = record.interpretation;
  return i !== undefined && i.error === undefined && typeof i.text === "string" && i.text !== "";
}

function activatingSamples(analysis: FeatureAnalysis): { top: Sample[]; rest: Sample[] } {
  const top: Sample[] = [];
  const rest: Sample[] = [];
  for (const s of analysis.samplings) {
    if (s.name === "non_activating") continue;
    const live = s.samples.filter((x) => x.peak > 0);
    (s.name === "top_activations" ? top : rest).push(...live);
  }
  if (top.length === 0) {
    // No top_activations sampling: take the strongest band samples instead.
    rest.sort((a, b) => b.peak - a.peak);
    return { top: rest.splice(0, rest.length), rest: [] };
  }
  top.sort((a, b) => b.peak - a.peak);
  return { top, rest };
}

/**
 * Chooses a feature's examples: the `n_activating_examples` strongest of `top_activations` for
 * the explainer; for the scorers the other top and band samples (shuffled) before the shown ones;
 * up to `n_non_activating_examples` from `non_activating`. Every example is windowed to
 * `max_length` tokens around its peak.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { selectExamples } from "./interpret.ts";
 * import { resolveAutoInterpOptions } from "./options.ts";
 * import { seededRandom } from "./_random.ts";
 * const s = (peak: number) => ({ tokens: Int32Array.from([0, 1]), acts: Float32Array.from([0, peak]), peak, peak_pos: 1, source: "d", shard: 0, row: 0, offset: 0 });
 * const analysis = { act_times: 3, n_analyzed_tokens: 10, max_activation: 3, mean: 2, std: 1,
 *   histogram: { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array() }, quantiles: [],
 *   samplings: [{ name: "top_activations", band: null, samples: [s(1), s(3), s(2)] }] };
 * const ex = selectExamples(analysis, resolveAutoInterpOptions({ n_activating_examples: 2 }), ["a", "b"], seededRandom(1));
 * assert.equal(ex.explain.map((e) => e.peak).join(), "3,2");
 * assert.equal(ex.activating[0]!.peak, 1);
 * ```
 */
export function selectExamples(
  analysis: FeatureAnalysis,
  options: ResolvedAutoInterpOptions,
  vocab: readonly string[],
  random: Random,
): FeatureExamples {
  const toExample = (s: Sample) => exampleFromSample(s, vocab, options.max_length);
  const { top, rest } = activatingSamples(analysis);
  const shown = top.slice(0, options.n_activating_examples);
  const heldOut = [...top.slice(options.n_activating_examples), ...rest];
  const non = analysis.samplings.filter((s) => s.name === "non_activating").flatMap((s) =>
    s.samples
  );
  return {
    explain: shown.map(toExample),
    activating: [...shuffled(heldOut, random), ...shuffled(shown, random)].map(toExample),
    nonActivating: shuffled(non, random).slice(0, options.n_non_activating_examples).map(toExample),
  };
}

function errorMessage(e: unknown): string {
  if (e instanceof ChatRequestError || e instanceof AnswerFormatError) return e.message;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * Interprets one feature: explanation, then the configured scorers (concurrently), then
 * `passed` = every scorer that ran reached `pass_threshold` balanced accuracy (and at least one
 * ran).
 *
 * It does not throw for this feature's LLM trouble: a request that finally fails or an answer
 * that cannot be parsed twice gives an interpretation with `error` set and `passed: false`
 * (keeping the explanation and the scores obtained so far). It rejects when `signal` aborts,
 * with the client's {@linkcode LLMUnavailableError} when the endpoint itself is unusable
 * (unreachable, key refused, no such model: every other feature would fail the same way), and
 * with a `RangeError` for a dead feature or a missing analysis (callers skip those first).
 *
 * @param record The feature, with the analysis named by `options.analysis_name`.
 * @param ctx Client, options, vocabulary.
 * @returns The interpretation to store on the feature.
 */
export async function interpretFeature(
  record: FeatureRecord,
  ctx: InterpretContext,
): Promise<Interpretation> {
  const { options } = ctx;
  const analysis = record.analyses[options.analysis_name];
  if (!analysis) {
    throw new RangeError(
      `Cannot interpret feature ${record.index}: it has no analysis named "${options.analysis_name}"`,
    );
  }
  if (isDeadFeature(record, options.analysis_name)) {
    throw new RangeError(`Cannot interpret feature ${record.index}: it is dead (never fired)`);
  }
  const random = seededRandom(options.seed, record.index);
  const examples = selectExamples(analysis, options, ctx.vocab, random);
  const transcript = newTranscript();
  const ask: AskContext = { client: ctx.client, options, transcript, signal: ctx.signal };
  const result: Interpretation = {
    text: "",
    method: options.explainer_type,
    model: ctx.client.model,
    scores: {},
    passed: false,
    at: "",
  };
  try {
    if (examples.explain.length === 0) {
      throw new RangeError(`feature ${record.index} has no activating samples to explain`);
    }
    const explanation = await explainFeature({
      examples: examples.explain,
      featureMax: analysis.max_activation,
      logits: record.logits,
    }, ask);
    result.text = explanation.text;
    if (explanation.consistency !== undefined) result.consistency = explanation.consistency;
    if (explanation.complexity !== undefined) result.complexity = explanation.complexity;
    const input: ScoreInput = {
      explanation: explanation.text,
      activating: examples.activating,
      nonActivating: examples.nonActivating,
      featureMax: analysis.max_activation,
      random,
    };
    const scorers = [...new Set(options.scorer_type)];
    const outcomes = await Promise.allSettled(scorers.map((name): Promise<ScoreResult> => {
      switch (name) {
        case "detection":
          return scoreDetection(input, ask);
        case "fuzzing":
          return scoreFuzzing(input, ask);
        case "simulation":
          return scoreSimulation(input, ask);
        default:
          return Promise.resolve({ skipped: `${name} scoring is not implemented` });
      }
    }));
    const unavailable = outcomes.find((o) =>
      o.status === "rejected" && o.reason instanceof LLMUnavailableError
    );
    if (unavailable) throw (unavailable as PromiseRejectedResult).reason;
    const failures: string[] = [];
    outcomes.forEach((o, i) => {
      if (o.status === "fulfilled") result.scores[scorers[i]!] = o.value;
      else failures.push(errorMessage(o.reason));
    });
    ctx.signal?.throwIfAborted();
    if (failures.length) throw new Error(failures.join("; "), { cause: "scorer" });
    const ran = Object.values(result.scores).filter((s) => !("skipped" in s));
    result.passed = ran.length > 0 &&
      ran.every((s) => "balanced_accuracy" in s && s.balanced_accuracy >= options.pass_threshold);
  } catch (e) {
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    if (e instanceof LLMUnavailableError) throw e; // not this feature's failure: nothing is recorded
    result.error = e instanceof Error && e.cause === "scorer" ? e.message : errorMessage(e);
    result.passed = false;
  }
  if (options.save_prompts) result.prompts = transcript.messages;
  result.usage = { ...transcript.usage };
  result.at = (ctx.now ?? (() => new Date()))().toISOString();
  return result;
}
