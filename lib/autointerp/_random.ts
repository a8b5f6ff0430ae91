/**
 * A small seeded pseudo-random generator (mulberry32) and helpers, so that the example shuffles
 * of a feature are reproducible from `seed` and the feature index.
 *
 * @module
 */

import { mulberry32, type Random } from "../_random.ts";

export type { Random };

/**
 * A mulberry32 generator ({@linkcode mulberry32}) seeded from the given integers, mixed into
 * one 32-bit state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { seededRandom } from "./_random.ts";
 * const a = seededRandom(42, 7), b = seededRandom(42, 7);
 * assert.equal(a(), b());
 * ```
 */
export function seededRandom(...seeds: number[]): Random {
  let h = 0x9e3779b9;
  for (const s of seeds) {
    h = Math.imul(h ^ (s | 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return mulberry32(h);
}

/**
 * A shuffled copy of `items` (Fisher–Yates).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { seededRandom, shuffled } from "./_random.ts";
 * assert.equal(shuffled([1, 2, 3], seededRandom(1)).length, 3);
 * ```
 */
export function shuffled<T>(items: readonly T[], random: Random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
