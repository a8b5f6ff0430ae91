/**
 * Scorers: how well an explanation predicts where the feature fires.
 *
 * - **detection**: activating and non-activating excerpts, shuffled, shown without marks; the
 *   model says which ones the feature fires on. Positive class = activating.
 * - **fuzzing**: activating excerpts with marks, some correct (the real peak tokens) and some
 *   wrong (the same number of marks moved to tokens where the feature does not fire); the model
 *   says which are marked correctly. Positive class = correctly marked.
 * - **simulation**: per excerpt, the model predicts a 0–9 activation for every token; the
 *   expected digit under the returned log-probabilities is compared per token with the real
 *   activation (positive = marked token, predicted positive = expected value ≥ 4.5) and the
 *   Pearson correlation is stored too. Runs only when the endpoint returns log-probabilities;
 *   otherwise the scorer is recorded as skipped with the reason.
 *
 * A scorer that cannot run for lack of examples is recorded as `{ skipped: reason }`.
 *
 * @module
 */

import type { ScoreMetrics } from "../types.ts";
import { ask, type AskContext, type Parsed } from "./_ask.ts";
import { type Random, shuffled } from "./_random.ts";
import {
  type ChatMessage,
  ChatRequestError,
  type ChatResponse,
  LLMUnavailableError,
  type TokenLogprob,
} from "./client.ts";
import { activationMarks, type Example, renderExample } from "./examples.ts";
import { parseLenientJson } from "./json.ts";
import { confusion, pearson, scoreMetrics } from "./metrics.ts";
import type { ResolvedAutoInterpOptions } from "./options.ts";
import { fillTemplate } from "./prompts/_fill.ts";
import {
  DETECTION_FORMAT,
  DETECTION_FORMAT_COT,
  DETECTION_SYSTEM,
  DETECTION_USER,
  FUZZING_FORMAT,
  FUZZING_FORMAT_COT,
  FUZZING_SYSTEM,
  FUZZING_USER,
  SIMULATION_SYSTEM,
  SIMULATION_USER,
} from "./prompts/mod.ts";

/** A scorer's outcome: metrics, or why it did not run. */
export type ScoreResult = ScoreMetrics | { skipped: string };

/** Simulation metrics: the token-level confusion metrics plus the correlation. */
export interface SimulationMetrics extends ScoreMetrics {
  /** Pearson correlation of expected and real (max-normalized) activations over all tokens. */
  correlation: number;
}

/** What a scorer is given. */
export interface ScoreInput {
  /** The explanation under test. */
  explanation: string;
  /** Activating examples, in order of preference (held-out ones first). */
  activating: Example[];
  /** Non-activating examples. */
  nonActivating: Example[];
  /** The feature's maximum activation. */
  featureMax: number;
  /** Random source for shuffles and wrong marks. */
  random: Random;
}

/** A scoring task: the messages and the true label of each numbered example. */
export interface ScoringTask {
  /** The request's messages. */
  messages: ChatMessage[];
  /** The true label of each example, in the order shown. */
  truth: boolean[];
}

function exampleLines(texts: string[]): string {
  return texts.map((t, i) => `Example ${i + 1}: ${t}`).join("\n");
}

/**
 * Builds the detection task, or says why it cannot run.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildDetectionTask } from "./scorers.ts";
 * import { resolveAutoInterpOptions } from "./options.ts";
 * import { seededRandom } from "./_random.ts";
 * const ex = (t: string, a: number) => ({ tokens: [t], ids: [0], acts: [a], peakPos: 0, peak: a });
 * const task = buildDetectionTask(
 *   { explanation: "cats", activating: [ex(" cat", 1)], nonActivating: [ex(" dog", 0)], featureMax: 1, random: seededRandom(1) },
 *   resolveAutoInterpOptions(),
 * );
 * assert("truth" in task);
 * assert.equal(task.truth.length, 2);
 * ```
 */
export function buildDetectionTask(
  input: ScoreInput,
  options: ResolvedAutoInterpOptions,
): ScoringTask | { skipped: string } {
  const n = options.detection_n_examples;
  const pos = input.activating.slice(0, n);
  const neg = input.nonActivating.slice(0, n);
  if (pos.length === 0) return { skipped: "no activating examples" };
  if (neg.length === 0) {
    return { skipped: "no non-activating examples (the analysis has no non_activating sampling)" };
  }
  const items = shuffled(
    [...pos.map((e) => ({ e, label: true })), ...neg.map((e) => ({ e, label: false }))],
    input.random,
  );
  const answer = fillTemplate(options.include_cot ? DETECTION_FORMAT_COT : DETECTION_FORMAT, {
    n: items.length,
  });
  return {
    messages: [
      { role: "system", content: DETECTION_SYSTEM },
      {
        role: "user",
        content: fillTemplate(DETECTION_USER, {
          explanation: input.explanation,
          examples: exampleLines(items.map(({ e }) => renderExample(e.tokens))),
          n: items.length,
          answer_format: answer,
        }),
      },
    ],
    truth: items.map(({ label }) => label),
  };
}

/**
 * Wrong marks for fuzzing: as many marks as the correct ones (at least one), on tokens that are
 * neither marked nor active, chosen at random; `undefined` when the excerpt has no such token.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wrongMarks } from "./scorers.ts";
 * import { seededRandom } from "./_random.ts";
 * const ex = { tokens: ["a", "b", "c"], ids: [0, 1, 2], acts: [0, 5, 0], peakPos: 1, peak: 5 };
 * const m = wrongMarks(ex, [false, true, false], seededRandom(3))!;
 * assert.equal(m.filter(Boolean).length, 1);
 * assert(!m[1]);
 * ```
 */
export function wrongMarks(
  example: Example,
  correct: readonly boolean[],
  random: Random,
): boolean[] | undefined {
  const count = Math.max(1, correct.filter(Boolean).length);
  const candidates = example.acts.map((_a, i) => i).filter((i) =>
    !correct[i] && example.acts[i]! <= 0
  );
  if (candidates.length === 0) return undefined;
  const chosen = new Set(shuffled(candidates, random).slice(0, count));
  return example.acts.map((_, i) => chosen.has(i));
}

/**
 * Builds the fuzzing task, or says why it cannot run. Uses up to `fuzzing_decile_correct`
 * correctly and `fuzzing_decile_incorrect` wrongly marked examples (at least one of each).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildFuzzingTask } from "./scorers.ts";
 * import { resolveAutoInterpOptions } from "./options.ts";
 * import { seededRandom } from "./_random.ts";
 * const ex = { tokens: ["a", " cat", "b"], ids: [0, 1, 2], acts: [0, 5, 0], peakPos: 1, peak: 5 };
 * const o = resolveAutoInterpOptions({ fuzzing_n_examples: 2 });
 * const task = buildFuzzingTask({ explanation: "cats", activating: [ex, ex, ex], nonActivating: [], featureMax: 5, random: seededRandom(1) }, o);
 * assert("truth" in task);
 * assert(task.truth.includes(false));
 * assert(task.truth.includes(true));
 * ```
 */
export function buildFuzzingTask(
  input: ScoreInput,
  options: ResolvedAutoInterpOptions,
): ScoringTask | { skipped: string } {
  const pool = input.activating;
  if (pool.length < Math.max(2, options.fuzzing_n_examples)) {
    return {
      skipped: `only ${pool.length} activating examples; fuzzing needs ${
        Math.max(2, options.fuzzing_n_examples)
      }`,
    };
  }
  const want = options.fuzzing_decile_correct + options.fuzzing_decile_incorrect;
  const total = Math.min(want, pool.length);
  let nWrong = Math.max(1, Math.round((total * options.fuzzing_decile_incorrect) / want));
  if (nWrong >= total) nWrong = total - 1;
  const nRight = total - nWrong;
  const items: { text: string; label: boolean }[] = [];
  let wrongMade = 0, rightMade = 0;
  // Walk the pool in order; an excerpt active on every token cannot carry wrong marks, so it is
  // used as a correct one and the next excerpt is tried for the wrong ones.
  for (const ex of pool) {
    if (wrongMade >= nWrong && rightMade >= nRight) break;
    const marks = activationMarks(ex, input.featureMax, options.activation_threshold);
    if (wrongMade < nWrong) {
      const wrong = wrongMarks(ex, marks, input.random);
      if (wrong) {
        items.push({ text: renderExample(ex.tokens, wrong), label: false });
        wrongMade++;
        continue;
      }
    }
    if (rightMade < nRight) {
      items.push({ text: renderExample(ex.tokens, marks), label: true });
      rightMade++;
    }
  }
  if (wrongMade === 0) return { skipped: "no excerpt has inactive tokens to mark wrongly" };
  const order = shuffled(items, input.random);
  const answer = fillTemplate(options.include_cot ? FUZZING_FORMAT_COT : FUZZING_FORMAT, {
    n: order.length,
  });
  return {
    messages: [
      { role: "system", content: FUZZING_SYSTEM },
      {
        role: "user",
        content: fillTemplate(FUZZING_USER, {
          explanation: input.explanation,
          examples: exampleLines(order.map((i) => i.text)),
          n: order.length,
          answer_format: answer,
        }),
      },
    ],
    truth: order.map((i) => i.label),
  };
}

function toBool(v: unknown): boolean | undefined {
  if (typeof v === "boolean") return v;
  if (v === 1 || v === 0) return v === 1;
  if (typeof v === "string") {
    const s = v.trim().toLowerCase();
    if (["true", "yes", "y", "1", "correct"].includes(s)) return true;
    if (["false", "no", "n", "0", "incorrect"].includes(s)) return false;
  }
  return undefined;
}

/**
 * Parses a detection/fuzzing answer: `{"evaluation_results": [...]}` (or a bare array) of exactly
 * `n` booleans; `1`/`0`, `"yes"`/`"no"` and `"true"`/`"false"` are accepted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseEvaluation } from "./scorers.ts";
 * const r = parseEvaluation('Answer: {"evaluation_results": [true, "no", 1]}', 3);
 * assert(r.ok);
 * assert.equal(r.value.join(), "true,false,true");
 * assert(!parseEvaluation('{"evaluation_results": [true]}', 3).ok);
 * ```
 */
export function parseEvaluation(content: string, n: number): Parsed<boolean[]> {
  const json = parseLenientJson(content);
  if (!json.ok) return json;
  const list = Array.isArray(json.value)
    ? json.value
    : (json.value as Record<string, unknown>).evaluation_results;
  if (!Array.isArray(list)) return { ok: false, reason: "evaluation_results is missing" };
  if (list.length !== n) {
    return { ok: false, reason: `evaluation_results has ${list.length} entries, expected ${n}` };
  }
  const out: boolean[] = [];
  for (const v of list) {
    const b = toBool(v);
    if (b === undefined) return { ok: false, reason: `not a boolean: ${JSON.stringify(v)}` };
    out.push(b);
  }
  return { ok: true, value: out };
}

async function runClassifier(
  task: ScoringTask | { skipped: string },
  name: string,
  ctx: AskContext,
): Promise<ScoreResult> {
  if ("skipped" in task) return task;
  const n = task.truth.length;
  const predicted = await ask(name, task.messages, (r) => parseEvaluation(r.content, n), ctx);
  return scoreMetrics(confusion(task.truth, predicted));
}

/** Runs the detection scorer. */
export function scoreDetection(input: ScoreInput, ctx: AskContext): Promise<ScoreResult> {
  return runClassifier(buildDetectionTask(input, ctx.options), "detection", ctx);
}

/** Runs the fuzzing scorer. */
export function scoreFuzzing(input: ScoreInput, ctx: AskContext): Promise<ScoreResult> {
  return runClassifier(buildFuzzingTask(input, ctx.options), "fuzzing", ctx);
}

/**
 * Expected 0–9 digit per token from a simulation answer (`"i: d"` lines) and its
 * log-probabilities: at each answer digit, the alternatives that are digits are renormalized and
 * averaged. A digit whose position is not found in the log-probabilities counts with certainty.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { expectedActivations } from "./scorers.ts";
 * const content = "1: 9\n2: 0";
 * const lp = [
 *   { token: "1: ", logprob: 0, top: [] },
 *   { token: "9", logprob: Math.log(0.5), top: [{ token: "9", logprob: Math.log(0.5) }, { token: "0", logprob: Math.log(0.5) }] },
 *   { token: "\n2: ", logprob: 0, top: [] },
 *   { token: "0", logprob: 0, top: [{ token: "0", logprob: 0 }] },
 * ];
 * const r = expectedActivations(content, lp, 2);
 * assert(r.ok);
 * assert.equal(r.value[0], 4.5);
 * assert.equal(r.value[1], 0);
 * ```
 */
export function expectedActivations(
  content: string,
  logprobs: readonly TokenLogprob[],
  n: number,
): Parsed<number[]> {
  const starts: number[] = [];
  let pos = 0;
  for (const t of logprobs) {
    starts.push(pos);
    pos += t.token.length;
  }
  const aligned = logprobs.map((t) => t.token).join("") === content;
  const values: (number | undefined)[] = new Array(n).fill(undefined);
  for (const m of content.matchAll(/^\s*(\d+)\s*:\s*(\d)\b/gm)) {
    const index = Number(m[1]) - 1;
    if (!(index >= 0 && index < n)) continue;
    const digitAt = m.index! + m[0].length - 1;
    let value = Number(m[2]);
    if (aligned) {
      const k = starts.findLastIndex((s) => s <= digitAt);
      const tok = logprobs[k];
      if (tok && tok.token.trim() === m[2]) {
        const alts = (tok.top.length ? tok.top : [{ token: tok.token, logprob: tok.logprob }])
          .filter((a) => /^\s*\d\s*$/.test(a.token));
        const total = alts.reduce((s, a) => s + Math.exp(a.logprob), 0);
        if (total > 0) {
          value = alts.reduce((s, a) => s + Number(a.token.trim()) * Math.exp(a.logprob), 0) /
            total;
        }
      }
    }
    values[index] = value;
  }
  const missing = values.findIndex((v) => v === undefined);
  if (missing >= 0) return { ok: false, reason: `no prediction for token ${missing + 1} of ${n}` };
  return { ok: true, value: values as number[] };
}

function simulationMessages(ex: Example, explanation: string): ChatMessage[] {
  return [
    { role: "system", content: SIMULATION_SYSTEM },
    {
      role: "user",
      content: fillTemplate(SIMULATION_USER, {
        explanation,
        tokens: ex.tokens.map((t, i) => `${i + 1}: ${JSON.stringify(t)}`).join("\n"),
        n: ex.tokens.length,
      }),
    },
  ];
}

class NoLogprobs extends Error {}

/**
 * Runs the simulation scorer; skipped (with the reason) when the endpoint returns no
 * log-probabilities or rejects the request for them (a 4xx other than 429; a 401, 403 or 404
 * is the endpoint's {@linkcode LLMUnavailableError} and passes through).
 */
export async function scoreSimulation(input: ScoreInput, ctx: AskContext): Promise<ScoreResult> {
  const n = ctx.options.simulation_n_examples;
  const examples = [...input.activating.slice(0, n), ...input.nonActivating.slice(0, n)];
  if (input.activating.length === 0) return { skipped: "no activating examples" };
  const simulate = (ex: Example) =>
    ask(
      "simulation",
      simulationMessages(ex, input.explanation),
      (r: ChatResponse) => {
        if (!r.logprobs || r.logprobs.length === 0) throw new NoLogprobs();
        return expectedActivations(r.content, r.logprobs, ex.tokens.length);
      },
      ctx,
      { json: false, logprobs: 5 },
    );
  let predictions: number[][];
  try {
    const first = await simulate(examples[0]!);
    predictions = [first, ...(await Promise.all(examples.slice(1).map(simulate)))];
  } catch (e) {
    if (e instanceof NoLogprobs) return { skipped: "the endpoint returned no log-probabilities" };
    if (
      e instanceof ChatRequestError && !(e instanceof LLMUnavailableError) &&
      e.status !== undefined && e.status >= 400 && e.status < 500 && e.status !== 429
    ) {
      return { skipped: `the endpoint rejected the log-probability request (${e.message})` };
    }
    throw e;
  }
  const truth: boolean[] = [],
    predicted: boolean[] = [],
    real: number[] = [],
    expected: number[] = [];
  examples.forEach((ex, i) => {
    const marks = activationMarks(ex, input.featureMax, ctx.options.activation_threshold);
    ex.acts.forEach((a, t) => {
      const e = predictions[i]![t]!;
      truth.push(marks[t]!);
      predicted.push(e >= 4.5);
      real.push(input.featureMax > 0 ? a / input.featureMax : 0);
      expected.push(e);
    });
  });
  const metrics: SimulationMetrics = {
    ...scoreMetrics(confusion(truth, predicted)),
    correlation: pearson(expected, real),
  };
  return metrics;
}
