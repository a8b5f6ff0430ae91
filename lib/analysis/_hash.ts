/**
 * Seeded hashing for the analyzer's random priority keys. A context is identified by its dataset
 * coordinates `(source, shard, row, offset)`, not by its place in the stream, so that the key of
 * a `(feature, context)` is the same whichever worker or split of the stream sees the context.
 *
 * @module
 */

/** murmur3's 32-bit finalizer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Two independent 32-bit words identifying a context under a seed. */
export interface ContextHash {
  h1: number;
  h2: number;
}

/**
 * Hashes a context's coordinates under a seed into two 32-bit words.
 *
 * @param seed Any safe integer.
 * @param source Dataset name.
 * @param shard Shard index.
 * @param row Row index.
 * @param offset Token offset within the row.
 */
export function hashContext(
  seed: number,
  source: string,
  shard: number,
  row: number,
  offset: number,
): ContextHash {
  const seedLo = seed >>> 0;
  const seedHi = Math.floor(seed / 4294967296) >>> 0;
  let a = fmix32(seedLo ^ 0x9e3779b9) ^ seedHi;
  let b = fmix32(seedHi ^ 0x7f4a7c15) ^ seedLo ^ 0x165667b1;
  const text = `${source}\u0001${shard}\u0001${row}\u0001${offset}`;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = fmix32(a ^ text.length);
  b = fmix32(b ^ a);
  return { h1: a, h2: b };
}

const TWO_21 = 2097152;

/**
 * The priority key of a `(feature, context)`: an integer in `[0, 2^53)` from a hash of both.
 * `feature = -1` gives the context's own key (shared by all features).
 *
 * @param ctx The context's hash.
 * @param feature The feature index, or -1.
 */
export function priorityKey(ctx: ContextHash, feature: number): number {
  const f = feature + 1;
  const k1 = fmix32(ctx.h1 ^ Math.imul(f, 0x9e3779b1));
  const k2 = fmix32((ctx.h2 ^ Math.imul(f, 0x85ebca77)) + k1);
  return k1 * TWO_21 + (k2 >>> 11);
}
