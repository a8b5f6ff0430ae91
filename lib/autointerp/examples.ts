/**
 * Turning stored samples into the text examples shown to the LLM: a window of `max_length`
 * tokens around the peak, token ids resolved through the vocabulary, tokens above a threshold
 * marked `<<like this>>`, and activations on a 0–10 scale.
 *
 * @module
 */

import type { Sample } from "../types.ts";

/** A sample windowed and resolved to display strings. */
export interface Example {
  /** Display string of each token (newlines and tabs shown as `\n`, `\t`). */
  tokens: string[];
  /** Token ids. */
  ids: number[];
  /** This feature's activation on each token. */
  acts: number[];
  /** Index of the peak within the window. */
  peakPos: number;
  /** The peak activation. */
  peak: number;
}

/**
 * The display string of a token id: the vocabulary entry with newline, carriage return and tab
 * written as `\n`, `\r`, `\t` (so that one example stays on one line), or `<unk:ID>` when the id
 * is outside the vocabulary.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { displayToken } from "./examples.ts";
 * assert.equal(displayToken(1, ["a", "b\n"]), "b\\n");
 * assert.equal(displayToken(9, ["a"]), "<unk:9>");
 * ```
 */
export function displayToken(id: number, vocab: readonly string[]): string {
  const s = vocab[id];
  if (s === undefined) return `<unk:${id}>`;
  return s.replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t");
}

/**
 * Windows a sample to at most `maxLength` tokens around its peak (about half before, the rest
 * after; shifted to stay inside the sample) and resolves its tokens.
 *
 * @param sample The stored sample.
 * @param vocab Token id → display string.
 * @param maxLength Most tokens kept.
 * @returns The example.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exampleFromSample } from "./examples.ts";
 * const s = {
 *   tokens: Int32Array.from([0, 1, 2, 3, 4]), acts: Float32Array.from([0, 0, 0, 2, 0]),
 *   peak: 2, peak_pos: 3, source: "d", shard: 0, row: 0, offset: 0,
 * };
 * const ex = exampleFromSample(s, ["a", "b", "c", "d", "e"], 3);
 * assert.equal(ex.tokens.join(""), "cde");
 * assert.equal(ex.peakPos, 1);
 * ```
 */
export function exampleFromSample(
  sample: Sample,
  vocab: readonly string[],
  maxLength: number,
): Example {
  const n = sample.tokens.length;
  let peakPos = sample.peak_pos;
  if (!(peakPos >= 0 && peakPos < n)) peakPos = argmax(sample.acts);
  const len = Math.min(n, Math.max(1, maxLength));
  let start = Math.max(0, peakPos - Math.floor(len / 2));
  start = Math.min(start, n - len);
  const ids = Array.from(sample.tokens.subarray(start, start + len));
  const acts = Array.from(sample.acts.subarray(start, start + len));
  return {
    tokens: ids.map((id) => displayToken(id, vocab)),
    ids,
    acts,
    peakPos: peakPos - start,
    peak: acts[peakPos - start] ?? sample.peak,
  };
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return values.length === 0 ? -1 : best;
}

/**
 * Which tokens are marked: activation above `threshold × featureMax`, and the example's peak
 * whenever it is active (so a weak band example still shows where it fires).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { activationMarks } from "./examples.ts";
 * const marks = activationMarks({ tokens: ["a", "b", "c"], ids: [0, 1, 2], acts: [0, 8, 3], peakPos: 1, peak: 8 }, 10, 0.7);
 * assert.equal(marks.join(), "false,true,false");
 * ```
 */
export function activationMarks(
  example: Example,
  featureMax: number,
  threshold: number,
): boolean[] {
  const cut = threshold * featureMax;
  return example.acts.map((a, i) => (a > cut && a > 0) || (i === example.peakPos && a > 0));
}

/**
 * Joins tokens into one line, wrapping each run of marked tokens in `<<` `>>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderExample } from "./examples.ts";
 * assert.equal(renderExample([" the", " big", " cat", "."], [false, true, true, false]), " the<< big cat>>.");
 * ```
 */
export function renderExample(tokens: readonly string[], marks?: readonly boolean[]): string {
  let out = "";
  let open = false;
  for (let i = 0; i < tokens.length; i++) {
    const m = marks?.[i] ?? false;
    if (m && !open) {
      out += "<<";
      open = true;
    } else if (!m && open) {
      out += ">>";
      open = false;
    }
    out += tokens[i];
  }
  if (open) out += ">>";
  return out;
}

/**
 * Activations on a 0–10 integer scale relative to the feature's max (`round(10·a/max)`,
 * clamped); 0 for a dead feature.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { activationScale } from "./examples.ts";
 * assert.equal(activationScale([0, 2.5, 5, 7], 5).join(), "0,5,10,10");
 * ```
 */
export function activationScale(acts: readonly number[], featureMax: number): number[] {
  if (!(featureMax > 0)) return acts.map(() => 0);
  return acts.map((a) => Math.max(0, Math.min(10, Math.round((10 * a) / featureMax))));
}

/**
 * The tokens of an example with a non-zero 0–10 activation, as `"token" (n)` items joined by
 * `, ` — or `(none)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderActivationList } from "./examples.ts";
 * const ex = { tokens: ["a", " cat"], ids: [0, 1], acts: [0, 4], peakPos: 1, peak: 4 };
 * assert.equal(renderActivationList(ex, 4), '" cat" (10)');
 * ```
 */
export function renderActivationList(example: Example, featureMax: number): string {
  const scale = activationScale(example.acts, featureMax);
  const items: string[] = [];
  scale.forEach((v, i) => {
    if (v > 0) items.push(`${JSON.stringify(example.tokens[i])} (${v})`);
  });
  return items.length ? items.join(", ") : "(none)";
}
