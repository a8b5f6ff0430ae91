/**
 * The project's one seeded pseudo-random generator (mulberry32): small, fast, and the same
 * sequence on every platform, so that sampled examples, synthetic test data and benchmark inputs
 * can be replayed from their seed. Not for anything that needs unpredictability.
 *
 * @module
 */

/** A random source returning numbers in [0, 1). */
export type Random = () => number;

/**
 * A mulberry32 generator whose 32-bit state starts at `seed >>> 0` (so `-1` and `2 ** 32 - 1`
 * give the same sequence, and a fractional seed is truncated). Each call returns the next number
 * in [0, 1), a multiple of 2⁻³².
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mulberry32 } from "./_random.ts";
 * const a = mulberry32(42), b = mulberry32(42);
 * const x = a();
 * assert.equal(x, b());
 * assert(x >= 0);
 * assert(x < 1);
 * assert.equal(mulberry32(-1)(), mulberry32(0xffffffff)());
 * ```
 */
export function mulberry32(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
