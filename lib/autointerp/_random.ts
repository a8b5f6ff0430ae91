/**
 * A small seeded pseudo-random generator (mulberry32) and helpers, so that the example shuffles
 * of a feature are reproducible from `seed` and the feature index.
 *
 * @module
 */

/** A random source returning numbers in [0, 1). */
export type Random = () => number;

/**
 * A mulberry32 generator seeded from the given integers.
 *
 * @example
 * ```ts
 * import { seededRandom } from "./_random.ts";
 * const a = seededRandom(42, 7), b = seededRandom(42, 7);
 * console.assert(a() === b());
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
  let state = h >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A shuffled copy of `items` (Fisher–Yates).
 *
 * @example
 * ```ts
 * import { seededRandom, shuffled } from "./_random.ts";
 * console.assert(shuffled([1, 2, 3], seededRandom(1)).length === 3);
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
