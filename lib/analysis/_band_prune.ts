/**
 * The exact pruning of a band sampler's candidate pool (`_bands.ts`): keeps exactly the
 * candidates that are among the `n` smallest keys of some band for some final max `M ≥ max`.
 *
 * @module
 */

import type { SamplingSpec } from "./options.ts";
import { CF, F_KEY, F_PEAK, type SampleStore } from "./_store.ts";

const EPS = 1e-9;
const TWO_21 = 2 ** 21;

/**
 * Sorts candidate ids by key, then stream order. Keys are integers below 2^53: a native sort of
 * `floor(key / 2^21)·2^21 + index` orders them by their high 32 bits, then runs with equal high
 * bits (rare) are sorted exactly.
 */
function sortByKey(ids: number[], store: SampleStore, scratch: Float64Array): void {
  const c = ids.length;
  const byKey = (a: number, b: number) =>
    store.key(a) - store.key(b) || store.seq(a) - store.seq(b);
  if (c >= TWO_21) {
    ids.sort(byKey);
    return;
  }
  const cf = store.cf;
  const tmp = scratch.subarray(0, c);
  for (let i = 0; i < c; i++) tmp[i] = Math.floor(cf[CF * ids[i]! + F_KEY]! / TWO_21) * TWO_21 + i;
  tmp.sort();
  const sorted = new Array<number>(c);
  for (let i = 0; i < c; i++) sorted[i] = ids[tmp[i]! % TWO_21]!;
  for (let i = 0; i < c; i++) ids[i] = sorted[i]!;
  for (let i = 0; i < c;) {
    const hiBits = Math.floor(tmp[i]! / TWO_21);
    let j = i + 1;
    while (j < c && Math.floor(tmp[j]! / TWO_21) === hiBits) j++;
    for (let a = i + 1; a < j; a++) {
      const id = ids[a]!;
      let b = a;
      while (b > i && byKey(ids[b - 1]!, id) > 0) {
        ids[b] = ids[b - 1]!;
        b--;
      }
      ids[b] = id;
    }
    i = j;
  }
}

/**
 * The number of `j < n` with `v[base + q[j]] ≤ x`, where `v[base + q[j]]` is ascending in `j`.
 */
function upperBoundOf(v: Float64Array, q: Int32Array, base: number, n: number, x: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v[base + q[mid]!]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Prunes pools of one band configuration (scratch arrays are kept between calls). */
export class PoolPruner {
  readonly #store: SampleStore;
  readonly #twoSided: readonly SamplingSpec[];
  readonly #lowest: SamplingSpec | undefined;
  readonly #floorP: number;
  #scratchP = new Float64Array(0);
  #scratchQ = new Int32Array(0);
  #scratchS = new Float64Array(0);
  #scratchT = new Float64Array(0);
  #scratchKeep = new Uint8Array(0);

  /**
   * @param store Where the candidates live.
   * @param twoSided The bands `(lo, hi]` with `lo > 0`.
   * @param lowest The band `(0, p]`, if any.
   * @param floorP `p` of the lowest band, or the smallest `lo` when there is none.
   */
  constructor(
    store: SampleStore,
    twoSided: readonly SamplingSpec[],
    lowest: SamplingSpec | undefined,
    floorP: number,
  ) {
    this.#store = store;
    this.#twoSided = twoSided;
    this.#lowest = lowest;
    this.#floorP = floorP;
  }

  /**
   * Keeps exactly the `pool` candidates that are among the n smallest keys of some band for
   * some final max `M ≥ max` (up to a relative margin of 1e-9 that only ever keeps more),
   * releasing the others; the pool ends sorted by key, then stream order.
   *
   * In key order, candidate `i` is needed by the lowest band `(0, p]` when fewer than n earlier
   * keys have a peak at or below `max(P_i, p·max)`; by a band `(lo, hi]` when, for some `M` in
   * `[max(max, P_i/hi), P_i/lo)`, fewer than n earlier keys have a peak in `(lo·M, hi·M]`. As a
   * function of `M` that count only drops where an earlier peak leaves the window (`M = q/lo`),
   * so it is enough to look at `M = max(max, P_i/hi)` and at those points. The earlier peaks are
   * kept sorted, which makes each candidate `O(log c)` plus the points it looks at.
   */
  prune(pool: number[], max: number): void {
    const store = this.#store;
    const c = pool.length;
    const bands = this.#twoSided;
    const nb = bands.length;
    if (this.#scratchQ.length < c + 1) {
      const n = 2 * c + 16;
      this.#scratchP = new Float64Array(n);
      this.#scratchQ = new Int32Array(n);
      this.#scratchS = new Float64Array(n * nb);
      this.#scratchT = new Float64Array(n * nb);
      this.#scratchKeep = new Uint8Array(n);
    }
    sortByKey(pool, store, this.#scratchP);
    const peaks = this.#scratchP;
    const Q = this.#scratchQ;
    const keep = this.#scratchKeep;
    const cf = store.cf;
    for (let i = 0; i < c; i++) peaks[i] = cf[CF * pool[i]! + F_PEAK]!;
    // Each peak's window bounds for every band, S = q/hi·(1+ε) and T = q/lo·(1−ε) (both
    // non-decreasing in q, so they are ordered as the peaks are).
    const S = this.#scratchS;
    const Tv = this.#scratchT;
    for (let bi = 0; bi < nb; bi++) {
      const { lo, hi } = bands[bi]!;
      const base = bi * c;
      for (let i = 0; i < c; i++) {
        S[base + i] = (peaks[i]! / hi) * (1 + EPS);
        Tv[base + i] = (peaks[i]! / lo) * (1 - EPS);
      }
    }
    const lowest = this.#lowest;
    const floorT = this.#floorP * max;
    // One pass in key order; Q holds the earlier candidates, by ascending peak.
    for (let i = 0; i < c; i++) {
      const peak = peaks[i]!;
      const m = i;
      let kept = lowest !== undefined &&
        upperBoundOf(peaks, Q, 0, m, Math.max(peak, floorT)) < lowest.n;
      for (let bi = 0; bi < nb && !kept; bi++) {
        const { lo, hi, n: k } = bands[bi]!;
        const a = Math.max(max, (peak / hi) * (1 - EPS));
        const z = (peak / lo) * (1 + EPS);
        if (!(a < z)) continue;
        if (!(lo * (1 + 4 * EPS) < hi * (1 - 4 * EPS))) {
          kept = true; // windows too narrow to hold an earlier point
          break;
        }
        // An earlier peak q holds the window for M in [S, T) = [q/hi·(1+ε), q/lo·(1−ε)), both
        // ascending in q; Count(M) = #{S ≤ M} − #{T ≤ M}.
        const base = bi * c;
        let si = upperBoundOf(S, Q, base, m, a);
        let ti = upperBoundOf(Tv, Q, base, m, a);
        if (si - ti < k) {
          kept = true;
          break;
        }
        while (ti < m) {
          const M = Tv[base + Q[ti]!]!;
          if (!(M < z)) break;
          while (ti < m && Tv[base + Q[ti]!]! === M) ti++;
          while (si < m && S[base + Q[si]!]! <= M) si++;
          if (si - ti < k) {
            kept = true;
            break;
          }
        }
      }
      keep[i] = kept ? 1 : 0;
      let at = m;
      while (at > 0 && peaks[Q[at - 1]!]! > peak) {
        Q[at] = Q[at - 1]!;
        at--;
      }
      Q[at] = i;
    }
    let n = 0;
    for (let i = 0; i < c; i++) {
      const id = pool[i]!;
      if (keep[i]) pool[n++] = id;
      else store.unrefCandidate(id);
    }
    pool.length = n;
  }
}
