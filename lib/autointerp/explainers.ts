/**
 * Explainers: from a feature's examples (and DLA logits) to an explanation.
 *
 * - `openai`: a one-sentence explanation, an activation-consistency score 1–5 and a complexity
 *   score 1–5, as one JSON object (optional reasoning steps with `include_cot`).
 * - `neuronpedia`: a label of 1–6 words from the peak tokens with their three preceding tokens,
 *   the tokens that follow the peaks, the top promoted/suppressed logits, and the excerpts.
 *
 * @module
 */

import type { FeatureLogits } from "../types.ts";
import { ask, type AskContext, type Parsed } from "./_ask.ts";
import type { ChatMessage } from "./client.ts";
import { activationMarks, type Example, renderActivationList, renderExample } from "./examples.ts";
import { parseLenientJson } from "./json.ts";
import type { ResolvedAutoInterpOptions } from "./options.ts";
import { fillTemplate } from "./prompts/_fill.ts";
import {
  EXPLAIN_LABEL_FORMAT,
  EXPLAIN_LABEL_FORMAT_COT,
  EXPLAIN_LABEL_SYSTEM,
  EXPLAIN_LABEL_USER,
  EXPLAIN_OPENAI_FORMAT,
  EXPLAIN_OPENAI_FORMAT_COT,
  EXPLAIN_OPENAI_SYSTEM,
  EXPLAIN_OPENAI_USER,
} from "./prompts/mod.ts";

/** What an explainer returns. */
export interface Explanation {
  /** The explanation (a sentence, or a short label). */
  text: string;
  /** Activation consistency 1–5 (`openai` explainer only). */
  consistency?: number;
  /** Complexity 1–5 (`openai` explainer only). */
  complexity?: number;
}

/** What an explainer is given. */
export interface ExplainInput {
  /** The examples to show, strongest first. */
  examples: Example[];
  /** The feature's maximum activation (for marks and the 0–10 scale). */
  featureMax: number;
  /** The feature's DLA logits, when computed (used by `neuronpedia`). */
  logits?: FeatureLogits | undefined;
}

/**
 * The messages of the explanation request for the configured `explainer_type`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildExplanationMessages } from "./explainers.ts";
 * import { resolveAutoInterpOptions } from "./options.ts";
 * const ex = { tokens: [" a", " cat"], ids: [0, 1], acts: [0, 5], peakPos: 1, peak: 5 };
 * const msgs = buildExplanationMessages({ examples: [ex], featureMax: 5 }, resolveAutoInterpOptions());
 * assert(msgs[1]!.content.includes("Example 1:  a<< cat>>"));
 * ```
 */
export function buildExplanationMessages(
  input: ExplainInput,
  options: ResolvedAutoInterpOptions,
): ChatMessage[] {
  if (options.explainer_type === "neuronpedia") return labelMessages(input, options);
  const blocks = input.examples.map((ex, i) => {
    const marks = activationMarks(ex, input.featureMax, options.activation_threshold);
    let block = `Example ${i + 1}: ${renderExample(ex.tokens, marks)}`;
    if (options.show_activation_values) {
      block += `\nActivations (0-10): ${renderActivationList(ex, input.featureMax)}`;
    }
    return block;
  });
  return [
    { role: "system", content: EXPLAIN_OPENAI_SYSTEM },
    {
      role: "user",
      content: fillTemplate(EXPLAIN_OPENAI_USER, {
        n: input.examples.length,
        examples: blocks.join("\n\n"),
        answer_format: options.include_cot ? EXPLAIN_OPENAI_FORMAT_COT : EXPLAIN_OPENAI_FORMAT,
      }),
    },
  ];
}

function labelMessages(input: ExplainInput, options: ResolvedAutoInterpOptions): ChatMessage[] {
  const maxTokens = input.examples.map((ex) => {
    const before = ex.tokens.slice(Math.max(0, ex.peakPos - 3), ex.peakPos).join("");
    return `[${before}] ${ex.tokens[ex.peakPos] ?? ""}`;
  });
  const next = input.examples.map((ex) => ex.tokens[ex.peakPos + 1] ?? "(end of excerpt)");
  const list = (items: { token: string }[] | undefined) =>
    items && items.length
      ? items.slice(0, 10).map((t) => JSON.stringify(t.token)).join("\n")
      : "(not available)";
  const texts = input.examples.map((ex) => renderExample(ex.tokens));
  return [
    { role: "system", content: EXPLAIN_LABEL_SYSTEM },
    {
      role: "user",
      content: fillTemplate(EXPLAIN_LABEL_USER, {
        max_tokens: maxTokens.join("\n"),
        next_tokens: next.join("\n"),
        top_logits: list(input.logits?.top_positive),
        bottom_logits: list(input.logits?.top_negative),
        texts: texts.join("\n"),
        answer_format: options.include_cot ? EXPLAIN_LABEL_FORMAT_COT : EXPLAIN_LABEL_FORMAT,
      }),
    },
  ];
}

function score1to5(value: unknown): number | undefined {
  const n = typeof value === "string" ? Number(value.trim()) : value;
  if (typeof n !== "number" || !Number.isFinite(n)) return undefined;
  const r = Math.round(n);
  return r >= 1 && r <= 5 && Math.abs(n - r) < 1e-9 ? r : undefined;
}

function explanationText(obj: Record<string, unknown>): string | undefined {
  const v = obj.final_explanation ?? obj.explanation ?? obj.label;
  return typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;
}

/**
 * Parses an `openai` explainer answer: a JSON object with a non-empty `final_explanation` and
 * integer `activation_consistency` and `complexity` in 1–5 (numeric strings accepted).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseOpenAIExplanation } from "./explainers.ts";
 * const r = parseOpenAIExplanation('{"final_explanation": "cats", "activation_consistency": "4", "complexity": 2}');
 * assert(r.ok);
 * assert.equal(r.value.consistency, 4);
 * ```
 */
export function parseOpenAIExplanation(content: string): Parsed<Explanation> {
  const json = parseLenientJson(content);
  if (!json.ok) return json;
  if (Array.isArray(json.value)) {
    return { ok: false, reason: "expected a JSON object, got an array" };
  }
  const obj = json.value as Record<string, unknown>;
  const text = explanationText(obj);
  if (text === undefined) return { ok: false, reason: "final_explanation is missing or empty" };
  const consistency = score1to5(obj.activation_consistency ?? obj.consistency);
  if (consistency === undefined) {
    return { ok: false, reason: "activation_consistency must be an integer from 1 to 5" };
  }
  const complexity = score1to5(obj.complexity);
  if (complexity === undefined) {
    return { ok: false, reason: "complexity must be an integer from 1 to 5" };
  }
  return { ok: true, value: { text, consistency, complexity } };
}

/**
 * Parses a `neuronpedia` explainer answer: a JSON object with `final_explanation`, or — when the
 * answer holds no JSON — its last non-empty line without a `Label:`/`Explanation:` prefix or
 * quotes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLabel } from "./explainers.ts";
 * const r = parseLabel("Thinking...\nLabel: \"fruits\"");
 * assert(r.ok);
 * assert.equal(r.value.text, "fruits");
 * ```
 */
export function parseLabel(content: string): Parsed<Explanation> {
  const json = parseLenientJson(content);
  if (json.ok && !Array.isArray(json.value)) {
    const text = explanationText(json.value as Record<string, unknown>);
    return text === undefined
      ? { ok: false, reason: "final_explanation is missing or empty" }
      : { ok: true, value: { text } };
  }
  const lines = content.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const last = lines.at(-1);
  if (last === undefined) return { ok: false, reason: "the answer is empty" };
  if (/[{}[\]]/.test(last)) {
    return { ok: false, reason: json.ok ? "expected an object" : json.reason };
  }
  const text = last.replace(/^(label|explanation|answer)\s*:\s*/i, "").replace(
    /^["'`]+|["'`.]+$/g,
    "",
  )
    .trim();
  return text ? { ok: true, value: { text } } : { ok: false, reason: "the label is empty" };
}

/**
 * Asks the LLM for an explanation with the configured explainer; an answer that cannot be
 * parsed is asked for once more, then the call fails with an `AnswerFormatError`.
 */
export function explainFeature(input: ExplainInput, ctx: AskContext): Promise<Explanation> {
  const messages = buildExplanationMessages(input, ctx.options);
  const parse = ctx.options.explainer_type === "neuronpedia" ? parseLabel : parseOpenAIExplanation;
  return ask("explanation", messages, (r) => parse(r.content), ctx);
}
