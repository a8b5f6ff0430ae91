/**
 * The band sampler: for each band `(lo, hi]`, a uniform random sample (without replacement) of
 * size `min(n, #eligible)` of the contexts whose peak `P` satisfies `P > lo·max` and `P ≤ hi·max`
 * (float64 products), `max` being the feature's *final* maximum.
 *
 * Every `(feature, context)` gets a priority key from a seeded hash of `(seed, feature, source,
 * shard, row, offset)`; the sample is the n eligible contexts with the smallest keys (bottom-k
 * sampling), which is uniform, reproducible, and the same whichever way the stream was split.
 * To answer for a final max not yet known, the sampler keeps per feature a *candidate pool*:
 * every context that is among the n smallest keys of the band for *some* possible final max
 * `M ≥` the current max. A new context is rejected cheaply when it is provably useless: (a) its
 * peak is at or below `lo·max` for every band it could join; (b) for the lowest band `(0, p]`,
 * every possible window contains the *floor* (contexts with peak ≤ `p·max` now), so a key above
 * the floor's n-th smallest key is useless; (c) for a band with `hi/lo ≥ g²`, every window
 * `(lo·M, hi·M]` that holds the peak fully contains one of the three geometric peak buckets
 * (ratio g) around it, so a key above the n-th smallest key of each of them is useless. The key
 * statistics (the floor's n smallest keys, and per live bucket its n smallest) are kept per
 * feature in one small typed ring of buckets. The pool is pruned exactly (`_band_prune.ts`)
 * whenever it doubles.
 *
 * Memory: expected `O(n·(1 + Σ_bands L_b))` candidates per feature, where
 * `L_b = ln(1/lo)/ln(hi/lo)` is how many band widths fit between `lo·max` and `max` (about 2–3
 * for the default bands), plus `n·ln(N_range/N_floor)` for the lowest band, plus
 * `O(n·#buckets)` keys; it does not grow with the number of tokens for a stationary stream.
 * Merge = union of pools and key statistics, then prune: exact.
 *
 * @module
 */

import type { BatchPairs } from "./_batch.ts";
import { PoolPruner } from "./_band_prune.ts";
import { bucketCells, CELL_BIAS, CELL_SHIFT, fillBucketCell } from "./_histograms.ts";
import type { SamplingSpec } from "./options.ts";
import type { SampleStore } from "./_store.ts";

/** One feature's band sampler in the saved state (`FeatureJSON`). */
export interface BandsJSON {
  /** Saved candidate numbers of the pool. */
  pool: number[];
  /** The floor's smallest keys, ascending. */
  floorKeys: number[];
  /** `[bucket, smallest keys ascending]` of every non-empty live bucket, by bucket. */
  buckets: [number, number[]][];
  /** Buckets below this were folded into the floor; `null` before the first fold. */
  foldBelow: number | null;
}

/**
 * Inserts `key` into the ascending list `a[base, base+len)` holding at most `cap` keys (an equal
 * key goes after); returns the new length. A key at or above a full list's last is not inserted.
 */
function insertKeyAt(a: Float64Array, base: number, len: number, cap: number, key: number): number {
  if (len >= cap && key >= a[base + cap - 1]!) return len;
  let lo = 0;
  let hi = len;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[base + mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  for (let j = Math.min(len, cap - 1); j > lo; j--) a[base + j] = a[base + j - 1]!;
  a[base + lo] = key;
  return Math.min(len + 1, cap);
}

const PEAK_F32 = new Float32Array(1);
const PEAK_I32 = new Int32Array(PEAK_F32.buffer);

/** Candidate pools and key statistics of every feature for the band samplings. */
export class BandSampler {
  /** Whether there is any band. */
  readonly enabled: boolean;
  readonly #store: SampleStore;
  readonly #lowest: SamplingSpec | undefined;
  readonly #kLow: number;
  readonly #twoSided: SamplingSpec[];
  readonly #floorP: number;
  readonly #kStat: number;
  readonly #logG: number;
  readonly #peakCells: Int32Array;
  readonly #ring: number;
  readonly #minPrune: number;
  readonly #pruner: PoolPruner;
  #pool: number[][] = [];
  #pruneAt = new Int32Array(0);
  /**
   * Key statistics per feature, one `Float64Array` each: `[floorLen, floorKeys(kLow),
   * ringIds(R), ringLens(R), ringKeys(R×kStat)]`; bucket `b` lives in ring slot `b mod R`.
   */
  #stats: (Float64Array | undefined)[] = [];
  #foldBelow = new Float64Array(0);

  /**
   * @param store Where the candidates live.
   * @param bands The samplings of kind `band` (none disables the sampler).
   */
  constructor(store: SampleStore, bands: readonly SamplingSpec[]) {
    this.#store = store;
    this.enabled = bands.length > 0;
    this.#lowest = bands.find((x) => x.lo === 0);
    this.#kLow = this.#lowest?.n ?? 0;
    this.#twoSided = bands.filter((x) => x.lo > 0);
    this.#floorP = this.#lowest?.hi ?? Math.min(...this.#twoSided.map((x) => x.lo), 1);
    this.#kStat = Math.max(0, ...bands.map((x) => x.n));
    const minRatio = Math.min(...this.#twoSided.map((x) => x.hi / x.lo), 4);
    this.#logG = Math.log(Math.sqrt(minRatio / (1 + 1e-6)));
    this.#peakCells = bucketCells(this.#logG, true);
    // Live buckets lie in [bucket(floorP·max), bucket(max)].
    this.#ring = Math.ceil(Math.log(1 / this.#floorP) / this.#logG) + 3;
    this.#minPrune = Math.max(32, 4 * bands.reduce((a, x) => a + x.n, 0));
    this.#pruner = new PoolPruner(store, this.#twoSided, this.#lowest, this.#floorP);
  }

  /** Makes room for `dSae` features, none of them alive. */
  resize(dSae: number): void {
    this.#pool = new Array<number[]>(dSae);
    this.#pruneAt = new Int32Array(dSae);
    this.#stats = new Array<Float64Array | undefined>(dSae).fill(undefined);
    this.#foldBelow = new Float64Array(dSae).fill(-Infinity);
  }

  /** Allocates feature `f`'s pool and key statistics when it first fires. */
  wake(f: number): void {
    this.#pool[f] = [];
    this.#pruneAt[f] = this.#minPrune;
    if (this.enabled) {
      const R = this.#ring;
      const st = new Float64Array(1 + this.#kLow + 2 * R + R * this.#kStat);
      st.fill(NaN, 1 + this.#kLow, 1 + this.#kLow + R);
      this.#stats[f] = st;
    }
  }

  /** Pool entries of feature `f`. */
  entries(f: number): number {
    return this.#pool[f]!.length;
  }

  /** Bytes of feature `f`'s key statistics. */
  statBytes(f: number): number {
    return this.#stats[f]?.byteLength ?? 0;
  }

  /** Takes note of feature `f`'s new, larger max. */
  onMax(f: number, max: number): void {
    if (this.enabled) this.#fold(f, max);
  }

  /**
   * Offers pair `i` of feature `f` (peak `peak`, key `key`) against the max `max` including this
   * batch; `cand` is the pair's candidate when another sampler already captured it, else -1.
   *
   * @returns The pair's candidate, or -1 when none was needed so far.
   */
  offer(
    f: number,
    i: number,
    peak: number,
    key: number,
    max: number,
    cand: number,
    pairs: BatchPairs,
  ): number {
    if (!this.enabled) return cand;
    const st = this.#stats[f]!;
    const kLow = this.#kLow;
    // Most pairs: a floor peak whose key is above the floor's n-th (no change, useless).
    if (peak <= this.#floorP * max && (kLow === 0 || (st[0]! >= kLow && key > st[kLow]!))) {
      return cand;
    }
    if (!this.#considerBand(f, peak, key, max)) return cand;
    if (cand < 0) cand = pairs.capture(i, key);
    const pool = this.#pool[f]!;
    pool.push(cand);
    this.#store.refCandidate(cand);
    if (pool.length > this.#pruneAt[f]!) this.#prune(f, max);
    return cand;
  }

  #prune(f: number, max: number): void {
    const pool = this.#pool[f]!;
    this.#pruner.prune(pool, max);
    this.#pruneAt[f] = Math.max(this.#minPrune, 2 * pool.length);
  }

  #bucket(peak: number): number {
    return Math.floor(Math.log(peak) / this.#logG);
  }

  /** `#bucket` of a float32 value, looked up by its top bits (exact, see `bucketCells`). */
  #peakBucket(peak: number): number {
    PEAK_F32[0] = peak;
    const cell = PEAK_I32[0]! >>> CELL_SHIFT;
    const cells = this.#peakCells;
    let t = cells[cell]!;
    if (t === 0) t = fillBucketCell(cells, cell, this.#logG, true);
    return t > 1 ? t - CELL_BIAS : Math.floor(Math.log(peak) / this.#logG);
  }

  #insertBucket(st: Float64Array, b: number, key: number): void {
    const R = this.#ring;
    const r = b - R * Math.floor(b / R);
    const i0 = 1 + this.#kLow;
    if (st[i0 + r] !== b) {
      if (st[i0 + R + r]! > 0) throw new Error(`AnalyzerState: bucket ring collision at ${b}`);
      st[i0 + r] = b;
    }
    const base = i0 + 2 * R + r * this.#kStat;
    st[i0 + R + r] = insertKeyAt(st, base, st[i0 + R + r]!, this.#kStat, key);
  }

  #insertFloor(st: Float64Array, key: number): void {
    if (this.#kLow > 0) st[0] = insertKeyAt(st, 1, st[0]!, this.#kLow, key);
  }

  /** Moves the key statistics of buckets now wholly at or below the floor into the floor. */
  #fold(f: number, max: number): void {
    const below = this.#bucket(this.#floorP * max);
    if (below <= this.#foldBelow[f]!) return;
    const st = this.#stats[f]!;
    const R = this.#ring;
    const i0 = 1 + this.#kLow;
    for (let r = 0; r < R; r++) {
      const len = st[i0 + R + r]!;
      if (len === 0 || !(st[i0 + r]! < below)) continue;
      const base = i0 + 2 * R + r * this.#kStat;
      for (let j = 0; j < len; j++) this.#insertFloor(st, st[base + j]!);
      st[i0 + R + r] = 0;
      st[i0 + r] = NaN;
    }
    this.#foldBelow[f] = below;
  }

  /** Updates the key statistics with a new context; whether it may be needed by some band. */
  #considerBand(f: number, peak: number, key: number, max: number): boolean {
    const st = this.#stats[f]!;
    const kLow = this.#kLow;
    if (peak <= this.#floorP * max) {
      if (kLow === 0) return false;
      const len = st[0]!;
      if (len >= kLow && key > st[kLow]!) return false; // the common case: no change, useless
      const useful = len < kLow || key <= st[kLow]!;
      this.#insertFloor(st, key);
      return useful;
    }
    const b = this.#peakBucket(peak);
    let useful = kLow > 0 && (st[0]! < kLow || key <= st[kLow]!);
    if (!useful) {
      // The k-th smallest key of buckets b-1, b, b+1 (Infinity when unknown or too few): a key
      // above all three is useless to a band wider than two buckets.
      const R = this.#ring;
      const kStat = this.#kStat;
      const i0 = 1 + kLow;
      const k0 = i0 + 2 * R;
      const fold = this.#foldBelow[f]!;
      const r = b - R * Math.floor(b / R);
      const rm = r === 0 ? R - 1 : r - 1;
      const rp = r === R - 1 ? 0 : r + 1;
      const lenM = b - 1 >= fold && st[i0 + rm] === b - 1 ? st[i0 + R + rm]! : -1;
      const len0 = b >= fold && st[i0 + r] === b ? st[i0 + R + r]! : -1;
      const lenP = b + 1 >= fold && st[i0 + rp] === b + 1 ? st[i0 + R + rp]! : -1;
      for (const band of this.#twoSided) {
        if (!(peak > band.lo * max)) continue;
        const k = band.n;
        if (
          lenM < k || key <= st[k0 + rm * kStat + k - 1]! ||
          len0 < k || key <= st[k0 + r * kStat + k - 1]! ||
          lenP < k || key <= st[k0 + rp * kStat + k - 1]!
        ) {
          useful = true;
          break;
        }
      }
    }
    this.#insertBucket(st, b, key);
    return useful;
  }

  /**
   * Adds feature `f` of `other`, whose candidates `move` copies into this state's store;
   * `max` is the merged max.
   */
  merge(f: number, other: BandSampler, max: number, move: (id: number) => number): void {
    if (!this.enabled) return;
    // Fold ours to the merged max, then add their key statistics (their buckets below the
    // merged floor go to the floor).
    this.#fold(f, max);
    const st = this.#stats[f]!;
    const their = other.#stats[f]!;
    for (let j = 0; j < their[0]!; j++) this.#insertFloor(st, their[1 + j]!);
    const R = this.#ring;
    const i0 = 1 + this.#kLow;
    const below = this.#foldBelow[f]!;
    for (let r = 0; r < R; r++) {
      const len = their[i0 + R + r]!;
      const b = their[i0 + r]!;
      const base = i0 + 2 * R + r * this.#kStat;
      for (let j = 0; j < len; j++) {
        if (b < below) this.#insertFloor(st, their[base + j]!);
        else this.#insertBucket(st, b, their[base + j]!);
      }
    }
    const pool = this.#pool[f]!;
    for (const c of other.#pool[f]!) {
      const id = move(c);
      pool.push(id);
      this.#store.refCandidate(id);
    }
    this.#prune(f, max);
  }

  /**
   * Feature `f`'s pool (pruned first when it is larger than the smallest pruning size) and key
   * statistics as saved; `save` gives the saved number of a candidate.
   */
  toJSON(f: number, max: number, save: (id: number) => number): BandsJSON {
    if (this.#pool[f]!.length > this.#minPrune) this.#prune(f, max);
    const st = this.#stats[f];
    const floorKeys: number[] = [];
    const buckets: [number, number[]][] = [];
    if (st !== undefined) {
      const R = this.#ring;
      const i0 = 1 + this.#kLow;
      for (let j = 0; j < st[0]!; j++) floorKeys.push(st[1 + j]!);
      for (let r = 0; r < R; r++) {
        const len = st[i0 + R + r]!;
        if (len === 0) continue;
        const base = i0 + 2 * R + r * this.#kStat;
        buckets.push([st[i0 + r]!, Array.from(st.subarray(base, base + len))]);
      }
      buckets.sort((a, b) => a[0] - b[0]);
    }
    const foldBelow = this.#foldBelow[f]!;
    return {
      pool: this.#pool[f]!.map(save),
      floorKeys,
      buckets,
      foldBelow: Number.isFinite(foldBelow) ? foldBelow : null,
    };
  }

  /**
   * Restores feature `f` (just woken) from its saved pool and key statistics, folded up to its
   * max `max`; `candidate` makes each saved candidate.
   */
  restore(f: number, saved: BandsJSON, max: number, candidate: (i: number) => number): void {
    const pool = this.#pool[f]!;
    for (const i of saved.pool) {
      const id = candidate(i);
      pool.push(id);
      this.#store.refCandidate(id);
    }
    this.#pruneAt[f] = Math.max(this.#minPrune, 2 * saved.pool.length);
    const st = this.#stats[f];
    if (st === undefined) return;
    const below = max > 0 ? this.#bucket(this.#floorP * max) : -Infinity;
    for (const k of saved.floorKeys) this.#insertFloor(st, k);
    for (const [b, keys] of saved.buckets) {
      for (const k of keys) {
        if (b < below) this.#insertFloor(st, k);
        else this.#insertBucket(st, b, k);
      }
    }
    this.#foldBelow[f] = Math.max(saved.foldBelow ?? -Infinity, below);
  }

  /** Feature `f`'s sample of band `spec` for the final max `max`: highest peak first. */
  pick(f: number, spec: SamplingSpec, max: number): number[] {
    const store = this.#store;
    const lo = spec.lo * max;
    const hi = spec.hi * max;
    return this.#pool[f]!.filter((id) => store.peak(id) > lo && store.peak(id) <= hi)
      .sort((a, b) => store.key(a) - store.key(b) || store.seq(a) - store.seq(b))
      .slice(0, spec.n)
      .sort((a, b) => store.peak(b) - store.peak(a) || store.seq(a) - store.seq(b));
  }
}
