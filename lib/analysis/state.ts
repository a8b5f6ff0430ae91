/**
 * The feature analyzer's state: a single-pass, bounded-memory, mergeable summary of a stream of
 * {@linkcode FeatureBatch}es, from which one {@linkcode FeatureRecord} per feature is built at the
 * end (DESIGN.md, "Feature analysis semantics").
 *
 * ## What is computed, per feature, over analyzed tokens (mask = 1)
 *
 * Entries at masked positions are ignored entirely. `act_times`, `max_activation`, a log-bucket
 * histogram and quantiles of the active values, their mean and population standard deviation
 * (ddof 0). Every value and its square are added exactly (as integers scaled by 2^149 and
 * 2^298: every float32 is a multiple of 2^-149, and its square is exact in float64), so the
 * result depends neither on the batch size nor on how the stream was split into parts and
 * merged.
 *
 * A context's *peak* for a feature is the feature's largest activation over the context's
 * analyzed tokens (the first position holding it). Contexts are ordered by stream order: the
 * order of `add` calls, and `merge(other)` puts `other`'s contexts after this state's.
 *
 * ## Samplings (see `options.ts` for how the `subsamples` table maps to them)
 *
 * - **top**: exact — the n highest peaks, ties to the earlier context.
 * - **band `(lo, hi]`**: a uniform random sample (without replacement) of size `min(n, #eligible)`
 *   of the contexts whose peak `P` satisfies `P > lo·max` and `P ≤ hi·max` (float64 products),
 *   `max` being the feature's *final* maximum. Every `(feature, context)` gets a priority key from
 *   a seeded hash of `(seed, feature, source, shard, row, offset)`; the sample is the n eligible
 *   contexts with the smallest keys (bottom-k sampling), which is uniform, reproducible, and the
 *   same whichever way the stream was split. To answer for a final max not yet known, the state
 *   keeps per feature a *candidate pool*: every context that is among the n smallest keys of the
 *   band for *some* possible final max `M ≥` the current max. A new context is rejected cheaply
 *   when it is provably useless: (a) its peak is at or below `lo·max` for every band it could
 *   join; (b) for the lowest band `(0, p]`, every possible window contains the *floor*
 *   (contexts with peak ≤ `p·max` now), so a key above the floor's n-th smallest key is useless;
 *   (c) for a band with `hi/lo ≥ g²`, every window `(lo·M, hi·M]` that holds the peak fully
 *   contains one of the three geometric peak buckets (ratio g) around it, so a key above the n-th
 *   smallest key of each of them is useless. The pool is pruned exactly (a sweep over the
 *   possible final maxima) whenever it doubles. Memory: expected `O(n·(1 + Σ_bands L_b))`
 *   candidates per feature, where `L_b = ln(1/lo)/ln(hi/lo)` is how many band widths fit between
 *   `lo·max` and `max` (about 2–3 for the default bands), plus `n·ln(N_range/N_floor)` for the
 *   lowest band, plus `O(n·#buckets)` keys; it does not grow with the number of tokens for a
 *   stationary stream. Merge = union of pools and key statistics, then prune: exact.
 * - **python** (`subsampleRule: "python"`): the Python tool's rule, reproduced as it runs: after
 *   each batch, the feature's running max `M` includes the batch; a context of the batch whose
 *   peak is `≤ p·M` competes for the n highest peaks kept so far, one above it is dropped for good
 *   (even if a later, larger max would have admitted it). Unlike the Python tool, contexts where
 *   the feature does not fire are never included. The result depends on batch boundaries, and a
 *   merge (union, then the n highest) equals a single run only when no context was dropped for
 *   being above `p·M` in one part but not in the single run.
 * - **non_activating**: a uniform random sample of the analyzed contexts (at least one token with
 *   mask 1) where the feature never fires. Every context has one key for all features (seeded
 *   hash of its coordinates); a feature keeps the n non-firing contexts with the smallest keys.
 *   Per batch, a feature whose n-th key is below every key of the batch is skipped after one
 *   comparison: cost `O(d_sae + active entries + insertions)`. The window (first
 *   `windowBefore + windowAfter + 1` tokens of the context) is shared by all features.
 *
 * A sample's window holds `windowBefore` tokens before the peak and `windowAfter` after it,
 * clipped to the context's real tokens (attention = 1), with this feature's activations over it
 * (0 where inactive or masked); `offset` = the context's `origin.offset` (0 when absent) + window
 * start. Windows are copied when a context becomes a candidate, so batches are not retained.
 *
 * ## Cost
 *
 * `add` is `O(entries + B×T + d_sae)` plus the work on admitted candidates, with no per-entry or
 * per-candidate objects: a single pass over the entries groups them into `(context, feature)`
 * pairs (typed scratch arrays, a generation stamp per feature, each entry tagged with its pair);
 * a stable counting sort then orders the pairs by feature, and the entries are laid out by pair in
 * that order, so that each feature's state (histogram block in a shared arena, sums, lists) is
 * visited once per batch, in index order, reading its entries sequentially. Histogram buckets
 * (and band buckets of peaks) come from a lazily filled table indexed by the float32's top bits,
 * falling back to `Math.log` for the few cells that straddle a bucket boundary. Most pairs are rejected by one or two comparisons (top: the n-th peak; bands: the n-th
 * key of the floor or of the peak's bucket, kept per feature in a small typed ring of buckets).
 * Pools are pruned in `O(c log c)` (a sweep over the earlier peaks, kept sorted). Kept samples live in flat typed storage (`_store.ts`): a context's tokens are
 * stored once, as the span covering every window taken from it, shared by all features and
 * reference-counted; a sample keeps only the feature's non-zero activations inside its window.
 * Exact sums are kept as two float64 words per feature (error-free additions), spilling into a
 * `bigint` only in the rare case two words cannot hold the sum exactly.
 *
 * Dead features (never fire): `act_times` 0, max/mean/std 0, empty histogram, no quantiles,
 * `samplings: []`.
 *
 * @module
 */

import type {
  FeatureAnalysis,
  FeatureBatch,
  FeatureRecord,
  Quantile,
  Sample,
  Sampling,
} from "../types.ts";
import { ConfigError } from "../errors.ts";
import { logHistogramQuantile } from "./histogram.ts";
import {
  bucketCells,
  CELL_BIAS,
  CELL_SHIFT,
  fillBucketCell,
  HistogramArena,
} from "./_histograms.ts";
import {
  type FeatureAnalyzerOptions,
  type ResolvedFeatureAnalyzerOptions,
  resolveFeatureAnalyzerOptions,
  type SamplingSpec,
} from "./options.ts";
import { type ContextHash, hashContext, priorityKey } from "./_hash.ts";
import { float32FromBase64, int32FromBase64, toBase64 } from "./_codec.ts";
import {
  CF,
  CI,
  F_KEY,
  F_PEAK,
  I_ACT_LEN,
  I_ACT_OFF,
  I_CTX,
  I_PEAK_T,
  I_REF,
  I_START,
  I_STOP,
  SampleStore,
} from "./_store.ts";

const SCALE1 = 2 ** 149;
const SCALE2 = 2 ** 298;
const EPS = 1e-9;
const STATE_FORMAT = "saeflow-analyzer-state";
const STATE_VERSION = 1;

function toNumberScaled(value: bigint, scale: number): number {
  return Number(value) / scale;
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

const TWO_21 = 2 ** 21;
const PEAK_F32 = new Float32Array(1);
const PEAK_I32 = new Int32Array(PEAK_F32.buffer);

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

/** Candidate ids sorted by peak descending then stream order, with their peaks alongside. */
interface PeakList {
  ids: number[];
  peaks: number[];
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

/**
 * Adds `x` to the exact sum `hi + lo + rest` (error-free transformations; the rare residue that
 * two words cannot hold goes to `rest`, scaled to an integer by `scale`).
 */
function addExact(
  hi: Float64Array,
  lo: Float64Array,
  rest: Map<number, bigint>,
  f: number,
  x: number,
  scale: number,
): void {
  const a = hi[f]!;
  const s = a + x;
  const bb = s - a;
  const err = (a - (s - bb)) + (x - bb);
  hi[f] = s;
  if (err === 0) return;
  const l = lo[f]!;
  const t = l + err;
  const cc = t - l;
  const err2 = (l - (t - cc)) + (err - cc);
  lo[f] = t;
  if (err2 !== 0) rest.set(f, (rest.get(f) ?? 0n) + BigInt(err2 * scale));
}

/** The exact sum `hi + lo + rest`, as an integer scaled by `scale`. */
function exactSum(
  hi: Float64Array,
  lo: Float64Array,
  rest: Map<number, bigint>,
  f: number,
  scale: number,
): bigint {
  return BigInt(hi[f]! * scale) + BigInt(lo[f]! * scale) + (rest.get(f) ?? 0n);
}

/**
 * The analyzer's mergeable state. Feed batches with {@linkcode AnalyzerState.add}, combine states
 * over disjoint data with {@linkcode AnalyzerState.merge}, save with
 * {@linkcode AnalyzerState.toJSON} / {@linkcode AnalyzerState.fromJSON}, and read the per-feature
 * results with {@linkcode AnalyzerState.records}.
 *
 * @example
 * ```ts
 * import { AnalyzerState } from "./state.ts";
 * const state = new AnalyzerState({ nTop: 2, seed: 1 });
 * state.add({
 *   batchSize: 1, contextSize: 4, dSae: 2,
 *   tokens: new Int32Array([1, 5, 6, 7]), mask: new Uint8Array([0, 1, 1, 1]),
 *   attention: new Uint8Array([1, 1, 1, 1]), origins: [{ source: "d", shard: 0, row: 0 }],
 *   position: new Int32Array([2, 3]), feature: new Int32Array([1, 1]),
 *   value: new Float32Array([0.5, 2]),
 * });
 * const [dead, alive] = state.finish();
 * console.assert(dead!.analyses.default!.act_times === 0);
 * console.assert(alive!.analyses.default!.max_activation === 2);
 * console.assert(alive!.analyses.default!.samplings[0]!.samples[0]!.peak_pos === 3);
 * ```
 */
export class AnalyzerState {
  /** The resolved options. */
  readonly options: ResolvedFeatureAnalyzerOptions;

  #dSae = 0;
  #nTokens = 0;
  #nAnalyzedTokens = 0;
  #nContexts = 0;
  #nBatches = 0;

  // Per-feature statistics.
  #actTimes = new Float64Array(0);
  #maxAct = new Float64Array(0);
  #s1hi = new Float64Array(0);
  #s1lo = new Float64Array(0);
  #s2hi = new Float64Array(0);
  #s2lo = new Float64Array(0);
  #s1rest = new Map<number, bigint>();
  #s2rest = new Map<number, bigint>();
  /** 1 once the feature has fired (its per-feature state is allocated). */
  #alive = new Uint8Array(0);
  #hists = new HistogramArena(0, 0.5);

  // Per-feature samplings: candidate ids (top and Python lists sorted by peak), context ids.
  #top: PeakList[] = [];
  /** A peak must be above this to enter the top list (0 while it is not full). */
  #topThr = new Float64Array(0);
  #pool: number[][] = [];
  #pruneAt = new Int32Array(0);
  #python: PeakList[][] = [];
  #nonAct: number[][] = [];
  #nonActTau = new Float64Array(0);
  /**
   * Band key statistics per feature, one `Float64Array` each: `[floorLen, floorKeys(kLow),
   * ringIds(R), ringLens(R), ringKeys(R×kStat)]`; bucket `b` lives in ring slot `b mod R`.
   */
  #bandStats: (Float64Array | undefined)[] = [];
  #foldBelow = new Float64Array(0);

  readonly #store = new SampleStore();

  // Derived sampling configuration.
  readonly #nTop: number;
  readonly #bands: SamplingSpec[];
  readonly #lowest: SamplingSpec | undefined;
  readonly #kLow: number;
  readonly #twoSided: SamplingSpec[];
  readonly #floorP: number;
  readonly #kStat: number;
  readonly #logG: number;
  readonly #peakCells: Int32Array;
  readonly #ring: number;
  readonly #minPrune: number;
  readonly #pythonSpecs: SamplingSpec[];
  readonly #nNonAct: number;
  readonly #signature: string;

  // Per-batch scratch (grown as needed).
  #group = new Int32Array(0);
  #scratchP = new Float64Array(0);
  #scratchQ = new Int32Array(0);
  #scratchS = new Float64Array(0);
  #scratchT = new Float64Array(0);
  #scratchKeep = new Uint8Array(0);
  #order = new Int32Array(0);
  #pairStamp = new Int32Array(0);
  #pairOf = new Int32Array(0);
  #stamp = 0;
  #firing = new Uint8Array(0);
  #pairF = new Int32Array(0);
  #pairCtx = new Int32Array(0);
  #pairPeakT = new Int32Array(0);
  /** Per pair: its latest entry (the head of its list through `#next`). */
  #pairHead = new Int32Array(0);
  #pairCnt = new Int32Array(0);
  #pairPeak = new Float64Array(0);
  /** Per kept entry: the pair's entry before it (-1 for its first). */
  #next = new Int32Array(0);

  /**
   * Creates an empty state.
   *
   * @param options User options; defaults applied by `resolveFeatureAnalyzerOptions`.
   * @throws {ConfigError} An option is out of range.
   */
  constructor(options: FeatureAnalyzerOptions = {}) {
    this.options = resolveFeatureAnalyzerOptions(options);
    const s = this.options.samplings;
    const topSpecs = s.filter((x) => x.kind === "top");
    this.#nTop = Math.max(0, ...topSpecs.map((x) => x.n));
    this.#bands = s.filter((x) => x.kind === "band");
    this.#lowest = this.#bands.find((x) => x.lo === 0);
    this.#kLow = this.#lowest?.n ?? 0;
    this.#twoSided = this.#bands.filter((x) => x.lo > 0);
    this.#floorP = this.#lowest?.hi ?? Math.min(...this.#twoSided.map((x) => x.lo), 1);
    this.#kStat = Math.max(0, ...this.#bands.map((x) => x.n));
    const minRatio = Math.min(...this.#twoSided.map((x) => x.hi / x.lo), 4);
    this.#logG = Math.log(Math.sqrt(minRatio / (1 + 1e-6)));
    this.#peakCells = bucketCells(this.#logG, true);
    // Live buckets lie in [bucket(floorP·max), bucket(max)].
    this.#ring = Math.ceil(Math.log(1 / this.#floorP) / this.#logG) + 3;
    this.#minPrune = Math.max(32, 4 * this.#bands.reduce((a, x) => a + x.n, 0));
    this.#pythonSpecs = s.filter((x) => x.kind === "python");
    this.#nNonAct = s.find((x) => x.kind === "non_activating")?.n ?? 0;
    const o = this.options;
    this.#signature = JSON.stringify({
      samplings: o.samplings.map((x) => [x.kind, x.lo, x.hi, x.n]),
      windowBefore: o.windowBefore,
      windowAfter: o.windowAfter,
      seed: o.seed,
      histogramAccuracy: o.histogramAccuracy,
      subsampleRule: o.subsampleRule,
    });
  }

  /** Number of features `d_sae` (0 before the first batch). */
  get dSae(): number {
    return this.#dSae;
  }

  /** Context tokens seen, `B×T` per batch (padding and masked tokens included). */
  get nTokens(): number {
    return this.#nTokens;
  }

  /** Analyzed tokens (mask = 1) seen. */
  get nAnalyzedTokens(): number {
    return this.#nAnalyzedTokens;
  }

  /** Contexts seen. */
  get nContexts(): number {
    return this.#nContexts;
  }

  /** Batches added (merged states add up). */
  get nBatches(): number {
    return this.#nBatches;
  }

  /**
   * How much is held: candidate windows (top, bands, Python rule; a context shared by several
   * samplings of one feature counts once), distinct non-activating contexts, alive features,
   * distinct contexts whose tokens are kept, and the bytes of the whole state (typed storage at
   * its allocated capacity, plus an estimate of the per-feature lists and histograms).
   *
   * @returns Counts for monitoring the memory bound.
   *
   * @example
   * ```ts
   * import { AnalyzerState } from "./state.ts";
   * const stats = new AnalyzerState().stats();
   * console.assert(stats.candidates === 0 && stats.aliveFeatures === 0);
   * ```
   */
  stats(): {
    candidates: number;
    nonActivatingContexts: number;
    aliveFeatures: number;
    contexts: number;
    bytes: number;
  } {
    let alive = 0;
    let listEntries = 0;
    const histBytes = this.#hists.byteLength;
    let bandBytes = 0;
    const contexts = new Set<number>();
    for (let f = 0; f < this.#dSae; f++) {
      const list = this.#nonAct[f]!;
      for (const x of list) contexts.add(x);
      listEntries += list.length;
      if (!this.#alive[f]) continue;
      alive++;
      listEntries += 2 * this.#top[f]!.ids.length + this.#pool[f]!.length;
      for (const l of this.#python[f]!) listEntries += 2 * l.ids.length;
      bandBytes += this.#bandStats[f]?.byteLength ?? 0;
    }
    const perFeature = 11 * 8 + 4 + 1 + 5 * 32; // typed columns and list headers
    const bytes = this.#store.bytes() + histBytes + bandBytes + 8 * listEntries +
      perFeature * this.#dSae + this.#firing.byteLength;
    return {
      candidates: this.#store.cLive,
      nonActivatingContexts: contexts.size,
      aliveFeatures: alive,
      contexts: this.#store.xLive,
      bytes,
    };
  }

  #ensureDSae(dSae: number, where: string): void {
    if (this.#dSae === dSae) return;
    if (this.#dSae !== 0) {
      throw new RangeError(`Cannot ${where}: d_sae ${dSae} differs from ${this.#dSae}`);
    }
    this.#dSae = dSae;
    this.#actTimes = new Float64Array(dSae);
    this.#maxAct = new Float64Array(dSae);
    this.#s1hi = new Float64Array(dSae);
    this.#s1lo = new Float64Array(dSae);
    this.#s2hi = new Float64Array(dSae);
    this.#s2lo = new Float64Array(dSae);
    this.#alive = new Uint8Array(dSae);
    this.#hists = new HistogramArena(dSae, this.options.histogramAccuracy);
    this.#top = new Array<PeakList>(dSae);
    this.#pool = new Array<number[]>(dSae);
    this.#python = new Array<PeakList[]>(dSae);
    const empty: number[] = [];
    this.#nonAct = new Array<number[]>(dSae).fill(empty); // each replaced on first insertion
    this.#topThr = new Float64Array(dSae);
    this.#pruneAt = new Int32Array(dSae);
    this.#nonActTau = new Float64Array(dSae).fill(Infinity);
    this.#bandStats = new Array<Float64Array | undefined>(dSae).fill(undefined);
    this.#foldBelow = new Float64Array(dSae).fill(-Infinity);
    this.#group = new Int32Array(dSae);
    this.#pairStamp = new Int32Array(dSae);
    this.#pairOf = new Int32Array(dSae);
  }

  /** Allocates the per-feature state of a feature that fires for the first time. */
  #wake(f: number): void {
    this.#alive[f] = 1;
    this.#top[f] = { ids: [], peaks: [] };
    this.#pool[f] = [];
    this.#python[f] = this.#pythonSpecs.map(() => ({ ids: [], peaks: [] }));
    this.#pruneAt[f] = this.#minPrune;
    if (this.#bands.length > 0) {
      const R = this.#ring;
      const st = new Float64Array(1 + this.#kLow + 2 * R + R * this.#kStat);
      st.fill(NaN, 1 + this.#kLow, 1 + this.#kLow + R);
      this.#bandStats[f] = st;
    }
  }

  #growScratch(nnz: number, B: number): void {
    if (this.#next.length < nnz) {
      const n = Math.max(nnz, Math.ceil(this.#next.length * 1.25));
      this.#next = new Int32Array(n);
      this.#order = new Int32Array(n);
      this.#pairF = new Int32Array(n);
      this.#pairCtx = new Int32Array(n);
      this.#pairPeakT = new Int32Array(n);
      this.#pairHead = new Int32Array(n);
      this.#pairCnt = new Int32Array(n);
      this.#pairPeak = new Float64Array(n);
    }
    if (this.#nNonAct > 0 && this.#firing.length < B * this.#dSae) {
      this.#firing = new Uint8Array(B * this.#dSae);
    }
    if (this.#stamp > 0x3fffffff - B) {
      this.#pairStamp.fill(0);
      this.#stamp = 0;
    }
  }

  /**
   * Adds one batch. Work is `O(active entries + B×T + d_sae)`; per-feature state is allocated
   * when a feature first fires.
   *
   * @param batch Sparse activations sorted by position then feature, values > 0.
   * @throws {RangeError} The batch is malformed (shapes, order, indices or values), saying where.
   */
  add(batch: FeatureBatch): void {
    const { batchSize: B, contextSize: T, dSae } = validateBatch(batch);
    this.#ensureDSae(dSae, "analyze FeatureBatch");
    const { tokens, mask, attention, origins, position, feature, value } = batch;
    const seq0 = this.#nContexts;
    const nnz = position.length;
    const store = this.#store;

    // Per-context facts: analyzed tokens, real length, hash, context key.
    const analyzed = new Int32Array(B);
    const realLength = new Int32Array(B);
    let nAnalyzed = 0;
    let wide = false;
    for (let b = 0; b < B; b++) {
      let a = 0;
      let last = -1;
      for (let t = 0; t < T; t++) {
        const p = b * T + t;
        a += mask[p]!;
        if (attention[p]) last = t;
        const id = tokens[p]!;
        if (id < 0 || id > 65535) wide = true;
      }
      analyzed[b] = a;
      realLength[b] = last + 1;
      nAnalyzed += a;
    }
    if (wide) store.widenTokens();
    const seed = this.options.seed;
    const ctxHash: ContextHash[] = origins.map((o) =>
      hashContext(seed, o.source, o.shard, o.row, o.offset ?? 0)
    );
    const nNonAct = this.#nNonAct;
    const ctxKey = new Float64Array(B);
    if (nNonAct > 0) { for (let b = 0; b < B; b++) ctxKey[b] = priorityKey(ctxHash[b]!, -1); }

    // Pass 1: one pass over the entries groups each context's unmasked entries into
    // (context, feature) pairs: peak, sums, count, and a linked list of the pair's entries
    // (latest first), which the passes below walk in the batch's own arrays.
    this.#growScratch(nnz, B);
    const next = this.#next;
    const pairF = this.#pairF;
    const pairCtx = this.#pairCtx;
    const pairPeakT = this.#pairPeakT;
    const pairHead = this.#pairHead;
    const pairCnt = this.#pairCnt;
    const pairPeak = this.#pairPeak;
    const pairStamp = this.#pairStamp;
    const pairOf = this.#pairOf;
    const alive = this.#alive;
    const hists = this.#hists;
    const logGamma = hists.logGamma;
    let nPairs = 0;
    let nKept = 0;
    let e = 0;
    for (let b = 0; b < B; b++) {
      const stamp = ++this.#stamp;
      const base = b * T;
      const end = base + T;
      for (; e < nnz; e++) {
        const p = position[e]!;
        if (p >= end) break;
        if (!mask[p]) continue;
        nKept++;
        const f = feature[e]!;
        const v = value[e]!;
        let k: number;
        if (pairStamp[f] !== stamp) {
          pairStamp[f] = stamp;
          k = nPairs++;
          pairOf[f] = k;
          pairF[k] = f;
          pairCtx[k] = b;
          pairPeak[k] = v;
          pairPeakT[k] = p - base;
          pairCnt[k] = 1;
          next[e] = -1;
        } else {
          k = pairOf[f]!;
          if (v > pairPeak[k]!) {
            pairPeak[k] = v;
            pairPeakT[k] = p - base;
          }
          pairCnt[k]!++;
          next[e] = pairHead[k]!;
        }
        pairHead[k] = e;
      }
    }

    // Group the pairs by feature (a stable counting sort: contexts stay in stream order within a
    // feature), so that each feature's state is visited once per batch, in index order.
    const group = this.#group;
    const order = this.#order;
    for (let k = 0; k < nPairs; k++) group[pairF[k]!]!++;
    let at = 0;
    for (let f = 0; f < dSae; f++) {
      const c = group[f]!;
      group[f] = at;
      at += c;
    }
    for (let k = 0; k < nPairs; k++) order[group[pairF[k]!]!++] = k;
    // Now group[f] is the end of f's run in `order`.
    const valueBits = new Int32Array(value.buffer, value.byteOffset, nnz);
    const cells = bucketCells(logGamma);

    store.reserve(nPairs, B, nKept, 0);
    const cf = store.cf;
    const ci = store.ci;
    const actPos = store.actPos;
    const actVal = store.actVal;
    const xRef = store.xRef;
    const xKey = store.xKey;
    const ctxOf = new Int32Array(B).fill(-1);
    const contextOf = (b: number): number => {
      let x = ctxOf[b]!;
      if (x < 0) {
        const o = origins[b]!;
        x = store.newContext(store.sourceId(o.source), o.shard, o.row, o.offset ?? 0, seq0 + b);
        xKey[x] = ctxKey[b]!;
        ctxOf[b] = x;
      }
      return x;
    };
    const before = this.options.windowBefore;
    const after = this.options.windowAfter;
    const capture = (i: number, key: number): number => {
      const b = pairCtx[i]!;
      const peakT = pairPeakT[i]!;
      const length = Math.max(realLength[b]!, peakT + 1);
      const start = Math.max(0, peakT - before);
      const stop = Math.min(length, peakT + after + 1);
      const id = store.newCandidate();
      const rec = CI * id;
      ci[rec + I_REF] = 1; // held while the pair is considered
      const x = contextOf(b);
      xRef[x]!++;
      store.cover(x, start, stop);
      cf[CF * id + F_PEAK] = pairPeak[i]!;
      cf[CF * id + F_KEY] = key;
      ci[rec + I_CTX] = x;
      ci[rec + I_PEAK_T] = peakT;
      ci[rec + I_START] = start;
      ci[rec + I_STOP] = stop;
      const off = store.actTop;
      let n = 0;
      const lo = b * T + start;
      const hi = b * T + stop;
      // Latest entry first (the order the entries were always stored in).
      for (let j = pairHead[i]!; j >= 0; j = next[j]!) {
        const p = position[j]!;
        if (p >= lo && p < hi) {
          actPos[off + n] = p - b * T;
          actVal[off + n] = value[j]!;
          n++;
        }
      }
      ci[rec + I_ACT_OFF] = off;
      ci[rec + I_ACT_LEN] = n;
      store.actTop += n;
      store.actLive += n;
      return id;
    };
    const actTimes = this.#actTimes;
    const maxAct = this.#maxAct;
    const [s1hi, s1lo, s1rest] = [this.#s1hi, this.#s1lo, this.#s1rest];
    const [s2hi, s2lo, s2rest] = [this.#s2hi, this.#s2lo, this.#s2rest];
    const hasBands = this.#bands.length > 0;
    const nTop = this.#nTop;
    const topThr = this.#topThr;
    const pythonSpecs = this.#pythonSpecs;
    const kLow = this.#kLow;
    let from = 0;
    for (let f = 0; f < dSae; f++) {
      const to = group[f]!;
      group[f] = 0;
      if (to === from) continue;
      // Statistics: count, max, exact sums and the histogram.
      if (!alive[f]) this.#wake(f);
      let count = 0;
      let peakMax = 0;
      let hCounts = hists.counts;
      let hOff = hists.off[f]!;
      let hBase = hists.base[f]!;
      let hLen = hists.len[f]!;
      for (let r = from; r < to; r++) {
        const k = order[r]!;
        count += pairCnt[k]!;
        if (pairPeak[k]! > peakMax) peakMax = pairPeak[k]!;
        for (let j = pairHead[k]!; j >= 0; j = next[j]!) {
          // Every value goes into the exact sums by itself (a float32's square is exact in
          // float64), so the sums do not depend on how the data was cut into batches or shards.
          const v = value[j]!;
          addExact(s1hi, s1lo, s1rest, f, v, SCALE1);
          addExact(s2hi, s2lo, s2rest, f, v * v, SCALE2);
          // ceil(ln v / ln γ), looked up by the float32's top bits (exact, see bucketCells).
          const cell = valueBits[j]! >>> CELL_SHIFT;
          let t = cells[cell]!;
          if (t === 0) t = fillBucketCell(cells, cell, logGamma);
          const bucket = (t > 1 ? t - CELL_BIAS : Math.ceil(Math.log(v) / logGamma)) - hBase;
          if (bucket >= 0 && bucket < hLen) hCounts[hOff + bucket]!++;
          else {
            hists.addIndex(f, bucket + hBase, 1);
            hCounts = hists.counts;
            hOff = hists.off[f]!;
            hBase = hists.base[f]!;
            hLen = hists.len[f]!;
          }
        }
      }
      actTimes[f]! += count;
      if (peakMax > maxAct[f]!) {
        maxAct[f] = peakMax;
        if (hasBands) this.#fold(f, peakMax);
      }
      // Candidates, against the max including this batch.
      const max = maxAct[f]!;
      const floorT = this.#floorP * max;
      const st = this.#bandStats[f]!;
      for (let r = from; r < to; r++) {
        const i = order[r]!;
        const peak = pairPeak[i]!;
        const key = hasBands ? priorityKey(ctxHash[pairCtx[i]!]!, f) : 0;
        let cand = -1;
        // A new context comes after every kept one, so an equal peak never displaces one.
        if (nTop > 0 && peak > topThr[f]!) {
          cand = capture(i, key);
          const list = this.#top[f]!;
          this.#insertByPeak(list, cand, nTop);
          if (list.ids.length === nTop) topThr[f] = list.peaks[nTop - 1]!;
        }
        if (
          hasBands &&
          // Most pairs: a floor peak whose key is above the floor's n-th (no change, useless).
          !(peak <= floorT && (kLow === 0 || (st[0]! >= kLow && key > st[kLow]!))) &&
          this.#considerBand(f, peak, key, max)
        ) {
          if (cand < 0) cand = capture(i, key);
          const pool = this.#pool[f]!;
          pool.push(cand);
          ci[CI * cand + I_REF]!++;
          if (pool.length > this.#pruneAt[f]!) this.#prune(f, max);
        }
        for (let j = 0; j < pythonSpecs.length; j++) {
          const spec = pythonSpecs[j]!;
          if (!(peak <= spec.hi * max)) continue;
          const list = this.#python[f]![j]!;
          if (list.ids.length < spec.n || peak > list.peaks[spec.n - 1]!) {
            if (cand < 0) cand = capture(i, key);
            this.#insertByPeak(list, cand, spec.n);
          }
        }
        if (cand >= 0) store.unrefCandidate(cand); // drops the hold taken by capture
      }
      from = to;
    }

    // Non-activating contexts.
    if (nNonAct > 0) {
      const firing = this.#firing;
      for (let i = 0; i < nPairs; i++) firing[pairCtx[i]! * dSae + pairF[i]!] = 1;
      const order: number[] = [];
      for (let b = 0; b < B; b++) if (analyzed[b]! !== 0) order.push(b);
      order.sort((x, y) => ctxKey[x]! - ctxKey[y]! || x - y);
      if (order.length > 0) {
        const minKey = ctxKey[order[0]!]!;
        const width = before + after + 1;
        const tau = this.#nonActTau;
        for (let f = 0; f < dSae; f++) {
          if (!(minKey <= tau[f]!)) continue;
          for (const b of order) {
            const key = ctxKey[b]!;
            if (!(key <= tau[f]!)) break;
            if (firing[b * dSae + f]) continue;
            const x = contextOf(b);
            if (this.#insertNonAct(f, x)) {
              const stop = Math.min(width, Math.max(realLength[b]!, 1));
              store.xNonActStop[x] = stop;
              store.cover(x, 0, stop);
            }
          }
        }
        for (let i = 0; i < nPairs; i++) firing[pairCtx[i]! * dSae + pairF[i]!] = 0;
      }
    }

    // Store the tokens of the contexts still referenced.
    let nTok = 0;
    for (let b = 0; b < B; b++) {
      const x = ctxOf[b]!;
      if (x >= 0 && xRef[x]! > 0) nTok += store.xSpanStop[x]! - store.xSpanStart[x]!;
    }
    store.reserve(0, 0, 0, nTok);
    for (let b = 0; b < B; b++) {
      const x = ctxOf[b]!;
      if (x < 0) continue;
      if (xRef[x]! > 0) store.fillTokens(x, tokens, b * T);
      else store.releaseContext(x);
    }

    this.#nTokens += B * T;
    this.#nAnalyzedTokens += nAnalyzed;
    this.#nContexts += B;
    this.#nBatches++;
  }

  /** Inserts a candidate into a list sorted by peak descending then stream order, capped. */
  #insertByPeak(list: PeakList, id: number, cap: number): void {
    const store = this.#store;
    const peak = store.peak(id);
    const { ids, peaks } = list;
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const pm = peaks[mid]!;
      if (pm > peak || (pm === peak && store.seq(ids[mid]!) <= store.seq(id))) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= cap) return;
    let n = ids.length;
    let evicted = -1;
    if (n < cap) {
      ids.push(id);
      peaks.push(peak);
    } else evicted = ids[--n]!;
    for (let j = n; j > lo; j--) {
      ids[j] = ids[j - 1]!;
      peaks[j] = peaks[j - 1]!;
    }
    ids[lo] = id;
    peaks[lo] = peak;
    store.refCandidate(id);
    if (evicted >= 0) store.unrefCandidate(evicted);
  }

  /** Inserts a context into feature `f`'s non-activating list (by key, then stream order). */
  #insertNonAct(f: number, x: number): boolean {
    const store = this.#store;
    const n = this.#nNonAct;
    let list = this.#nonAct[f]!;
    const key = store.xKey[x]!;
    const seq = store.xSeq[x]!;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = list[mid]!;
      const km = store.xKey[m]!;
      if (km < key || (km === key && store.xSeq[m]! <= seq)) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= n) return false;
    if (list.length === 0) this.#nonAct[f] = list = [];
    list.splice(lo, 0, x);
    store.xRef[x]!++;
    if (list.length > n) store.unrefContext(list.pop()!);
    if (list.length === n) this.#nonActTau[f] = store.xKey[list[n - 1]!]!;
    return true;
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

  /** Ring slot of bucket `b`. */
  #slotOf(b: number): number {
    const R = this.#ring;
    return b - R * Math.floor(b / R);
  }

  #insertBucket(st: Float64Array, b: number, key: number): void {
    const r = this.#slotOf(b);
    const R = this.#ring;
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
    const st = this.#bandStats[f]!;
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
    const st = this.#bandStats[f]!;
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
   * Keeps exactly the pool candidates that are among the n smallest keys of some band for some
   * final max `M ≥ max` (up to a relative margin of 1e-9 that only ever keeps more).
   *
   * In key order, candidate `i` is needed by the lowest band `(0, p]` when fewer than n earlier
   * keys have a peak at or below `max(P_i, p·max)`; by a band `(lo, hi]` when, for some `M` in
   * `[max(max, P_i/hi), P_i/lo)`, fewer than n earlier keys have a peak in `(lo·M, hi·M]`. As a
   * function of `M` that count only drops where an earlier peak leaves the window (`M = q/lo`),
   * so it is enough to look at `M = max(max, P_i/hi)` and at those points. The earlier peaks are
   * kept sorted, which makes each candidate `O(log c)` plus the points it looks at.
   */
  #prune(f: number, max: number): void {
    const store = this.#store;
    const pool = this.#pool[f]!;
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
    this.#pruneAt[f] = Math.max(this.#minPrune, 2 * n);
  }

  /**
   * Adds another state over disjoint data into this one; the result is exactly the state of one
   * run over this state's data followed by `other`'s (`other` is left unchanged; its samples are
   * copied).
   *
   * @param other A state with the same sampling, window, seed and histogram options.
   * @returns This state.
   * @throws {ConfigError} The states were made with different options.
   * @throws {RangeError} The states have different `d_sae`.
   */
  merge(other: AnalyzerState): this {
    if (other.#signature !== this.#signature) {
      throw new ConfigError(
        `Cannot merge analyzer states made with different options: ${other.#signature} vs ` +
          `${this.#signature}`,
      );
    }
    if (other.#dSae === 0) return this;
    this.#ensureDSae(other.#dSae, "merge analyzer states");
    const shift = this.#nContexts;
    const store = this.#store;
    const theirStore = other.#store;
    const ctxMap = new Map<number, number>();
    const moveContext = (ox: number): number => {
      let x = ctxMap.get(ox);
      if (x === undefined) {
        const s = theirStore;
        store.reserve(0, 1, 0, s.xSpanStop[ox]! - s.xSpanStart[ox]!);
        x = store.newContext(
          store.sourceId(s.sources[s.xSource[ox]!]!),
          s.xShard[ox]!,
          s.xRow[ox]!,
          s.xOffset[ox]!,
          s.xSeq[ox]! + shift,
        );
        store.xKey[x] = s.xKey[ox]!;
        store.xNonActStop[x] = s.xNonActStop[ox]!;
        store.cover(x, s.xSpanStart[ox]!, s.xSpanStop[ox]!);
        store.fillTokens(x, s.tok, s.xTokOff[ox]! - s.xSpanStart[ox]!);
        store.xRef[x] = 1; // held until the merge ends
        ctxMap.set(ox, x);
      }
      return x;
    };
    const candMap = new Map<number, number>();
    const moved: number[] = [];
    const move = (oc: number): number => {
      let id = candMap.get(oc);
      if (id === undefined) {
        const s = theirStore;
        const x = moveContext(s.ctx(oc));
        store.reserve(1, 0, 0, 0);
        id = store.newCandidate();
        store.refCandidate(id); // held until feature f is merged
        store.setCandidate(id, s.peak(oc), s.key(oc), x, s.peakT(oc), s.start(oc), s.stop(oc));
        const off = s.ci[CI * oc + I_ACT_OFF]!;
        const len = s.ci[CI * oc + I_ACT_LEN]!;
        store.setActs(
          id,
          s.actPos.subarray(off, off + len),
          s.actVal.subarray(off, off + len),
          len,
        );
        candMap.set(oc, id);
        moved.push(id);
      }
      return id;
    };
    const hasBands = this.#bands.length > 0;
    for (let f = 0; f < this.#dSae; f++) {
      this.#actTimes[f]! += other.#actTimes[f]!;
      this.#maxAct[f] = Math.max(this.#maxAct[f]!, other.#maxAct[f]!);
      for (
        const [hi, lo, rest, oh, ol, or, scale] of [
          [this.#s1hi, this.#s1lo, this.#s1rest, other.#s1hi, other.#s1lo, other.#s1rest, SCALE1],
          [this.#s2hi, this.#s2lo, this.#s2rest, other.#s2hi, other.#s2lo, other.#s2rest, SCALE2],
        ] as const
      ) {
        addExact(hi, lo, rest, f, oh[f]!, scale);
        addExact(hi, lo, rest, f, ol[f]!, scale);
        const r = or.get(f);
        if (r !== undefined) rest.set(f, (rest.get(f) ?? 0n) + r);
      }
      if (other.#alive[f]) {
        if (!this.#alive[f]) this.#wake(f);
        const max = this.#maxAct[f]!;
        this.#hists.merge(f, other.#hists.histogram(f));
        moved.length = 0;
        for (const c of other.#top[f]!.ids) this.#insertByPeak(this.#top[f]!, move(c), this.#nTop);
        const top = this.#top[f]!.ids;
        this.#topThr[f] = top.length === this.#nTop ? store.peak(top[this.#nTop - 1]!) : 0;
        for (let j = 0; j < this.#pythonSpecs.length; j++) {
          const n = this.#pythonSpecs[j]!.n;
          for (const c of other.#python[f]![j]!.ids) {
            this.#insertByPeak(this.#python[f]![j]!, move(c), n);
          }
        }
        if (hasBands) {
          // Fold ours to the merged max, then add their key statistics (their buckets below
          // the merged floor go to the floor).
          this.#fold(f, max);
          const st = this.#bandStats[f]!;
          const their = other.#bandStats[f]!;
          const kLow = this.#kLow;
          for (let j = 0; j < their[0]!; j++) this.#insertFloor(st, their[1 + j]!);
          const R = this.#ring;
          const i0 = 1 + kLow;
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
            store.refCandidate(id);
          }
          this.#prune(f, max);
        }
        for (const id of moved) store.unrefCandidate(id);
      }
      const theirList = other.#nonAct[f]!;
      if (theirList.length > 0 && this.#nNonAct > 0) {
        for (const ox of theirList) this.#insertNonAct(f, moveContext(ox));
      }
    }
    for (const x of ctxMap.values()) store.unrefContext(x);
    this.#nTokens += other.#nTokens;
    this.#nAnalyzedTokens += other.#nAnalyzedTokens;
    this.#nContexts += other.#nContexts;
    this.#nBatches += other.#nBatches;
    return this;
  }

  /**
   * The result of one feature.
   *
   * @param index Feature index in `[0, d_sae)`.
   * @returns Its record, with `analyses[analysisName]` filled.
   */
  record(index: number): FeatureRecord {
    if (!Number.isInteger(index) || index < 0 || index >= this.#dSae) {
      throw new RangeError(`Cannot build feature ${index}: d_sae is ${this.#dSae}`);
    }
    const o = this.options;
    return {
      sae_name: o.saeName,
      sae_series: o.saeSeries,
      index,
      analyses: { [o.analysisName]: this.#analysis(index) },
    };
  }

  #sample(id: number): Sample {
    const s = this.#store;
    const x = s.ctx(id);
    const start = s.start(id);
    return {
      tokens: s.tokens(x, start, s.stop(id)),
      acts: s.acts(id),
      peak: s.peak(id),
      peak_pos: s.peakT(id) - start,
      source: s.sources[s.xSource[x]!]!,
      shard: s.xShard[x]!,
      row: s.xRow[x]!,
      offset: s.xOffset[x]! + start,
    };
  }

  #nonActSample(x: number): Sample {
    const s = this.#store;
    const stop = s.xNonActStop[x]!;
    return {
      tokens: s.tokens(x, 0, stop),
      acts: new Float32Array(stop),
      peak: 0,
      peak_pos: 0,
      source: s.sources[s.xSource[x]!]!,
      shard: s.xShard[x]!,
      row: s.xRow[x]!,
      offset: s.xOffset[x]!,
    };
  }

  #analysis(f: number): FeatureAnalysis {
    const n = this.#actTimes[f]!;
    if (n === 0 || !this.#alive[f]) {
      return {
        act_times: 0,
        n_analyzed_tokens: this.#nAnalyzedTokens,
        max_activation: 0,
        mean: 0,
        std: 0,
        histogram: {
          relative_accuracy: this.options.histogramAccuracy,
          index_offset: 0,
          counts: new Float64Array(0),
        },
        quantiles: [],
        samplings: [],
      };
    }
    const s1 = exactSum(this.#s1hi, this.#s1lo, this.#s1rest, f, SCALE1);
    const s2 = exactSum(this.#s2hi, this.#s2lo, this.#s2rest, f, SCALE2);
    const mean = toNumberScaled(s1, SCALE1) / n;
    const numerator = BigInt(n) * s2 - s1 * s1;
    const variance = Math.max(0, toNumberScaled(numerator, SCALE2) / n / n);
    const max = this.#maxAct[f]!;
    const histogram = this.#hists.histogram(f);
    const quantiles: Quantile[] = this.options.quantiles.map((q) => ({
      q,
      value: Math.min(max, logHistogramQuantile(histogram, q)),
    }));
    const store = this.#store;
    const byKey = (a: number, b: number) =>
      store.key(a) - store.key(b) || store.seq(a) - store.seq(b);
    const byPeak = (a: number, b: number) =>
      store.peak(b) - store.peak(a) || store.seq(a) - store.seq(b);
    // Which candidates (or, for non_activating, contexts) each sampling shows.
    const picks: { ids: number[]; contexts: boolean; band: [number, number] | null }[] = [];
    let python = 0;
    let total = 0;
    for (const spec of this.options.samplings) {
      switch (spec.kind) {
        case "top":
          picks.push({ ids: this.#top[f]!.ids.slice(0, spec.n), contexts: false, band: null });
          break;
        case "band": {
          const lo = spec.lo * max;
          const hi = spec.hi * max;
          const ids = this.#pool[f]!.filter((id) => store.peak(id) > lo && store.peak(id) <= hi)
            .sort(byKey).slice(0, spec.n).sort(byPeak);
          picks.push({ ids, contexts: false, band: [spec.lo, spec.hi] });
          break;
        }
        case "python":
          picks.push({ ids: this.#python[f]![python++]!.ids, contexts: false, band: [0, spec.hi] });
          break;
        case "non_activating":
          picks.push({ ids: this.#nonAct[f]!, contexts: true, band: null });
          break;
      }
      const last = picks[picks.length - 1]!;
      for (const id of last.ids) {
        total += last.contexts ? store.xNonActStop[id]! : store.stop(id) - store.start(id);
      }
    }
    // Every window of the feature in one token and one activation array (the samples are views
    // of them, in order): two allocations per feature instead of two per sample.
    const tokens = new Int32Array(total);
    const acts = new Float32Array(total);
    const samplings: Sampling[] = [];
    let at = 0;
    for (const [i, spec] of this.options.samplings.entries()) {
      const { ids, contexts, band } = picks[i]!;
      const samples: Sample[] = [];
      for (const id of ids) {
        const x = contexts ? id : store.ctx(id);
        const start = contexts ? 0 : store.start(id);
        const stop = contexts ? store.xNonActStop[x]! : store.stop(id);
        const end = at + stop - start;
        store.tokensInto(x, start, stop, tokens, at);
        if (!contexts) store.actsInto(id, acts, at);
        samples.push({
          tokens: tokens.subarray(at, end),
          acts: acts.subarray(at, end),
          peak: contexts ? 0 : store.peak(id),
          peak_pos: contexts ? 0 : store.peakT(id) - start,
          source: store.sources[store.xSource[x]!]!,
          shard: store.xShard[x]!,
          row: store.xRow[x]!,
          offset: store.xOffset[x]! + start,
        });
        at = end;
      }
      samplings.push({ name: spec.name, band, samples });
    }
    return {
      act_times: n,
      n_analyzed_tokens: this.#nAnalyzedTokens,
      max_activation: max,
      mean,
      std: Math.sqrt(variance),
      histogram,
      quantiles,
      samplings,
    };
  }

  /**
   * The records of every feature, `0..d_sae-1` in order, built lazily one at a time. The state
   * is not changed and can still be added to or merged afterwards.
   *
   * @returns A generator of records.
   */
  *records(): Generator<FeatureRecord> {
    for (let f = 0; f < this.#dSae; f++) yield this.record(f);
  }

  /**
   * Every feature's record at once (see {@linkcode AnalyzerState.records}).
   *
   * @returns `d_sae` records in index order.
   */
  finish(): FeatureRecord[] {
    return Array.from(this.records());
  }

  /**
   * A JSON-serializable snapshot (typed arrays as base64, exact sums as decimal strings), to be
   * saved and later restored with {@linkcode AnalyzerState.fromJSON} and merged.
   *
   * @returns A plain object; `JSON.stringify` it.
   */
  toJSON(): AnalyzerStateJSON {
    const store = this.#store;
    const candidates: CandidateJSON[] = [];
    // A window is saved once, however many lists refer to it (`map`: its number by `k`); `x` is
    // its context.
    const save = (map: Map<number, number>, k: number, s: Sample, at: {
      key: number;
      x: number;
      start: number;
    }): number => {
      const i = candidates.length;
      map.set(k, i);
      candidates.push({
        peak: s.peak,
        key: at.key,
        seq: store.xSeq[at.x]!,
        peakPos: s.peak_pos,
        start: at.start,
        source: s.source,
        shard: s.shard,
        row: s.row,
        offset: store.xOffset[at.x]!,
        tokens: toBase64(s.tokens),
        acts: toBase64(s.acts),
      });
      return i;
    };
    const ids = new Map<number, number>();
    const id = (c: number): number =>
      ids.get(c) ?? save(ids, c, this.#sample(c), {
        key: store.key(c),
        x: store.ctx(c),
        start: store.start(c),
      });
    const features: FeatureJSON[] = [];
    const kLow = this.#kLow;
    const R = this.#ring;
    const i0 = 1 + kLow;
    for (let f = 0; f < this.#dSae; f++) {
      if (!this.#alive[f]) continue;
      if (this.#pool[f]!.length > this.#minPrune) this.#prune(f, this.#maxAct[f]!);
      const h = this.#hists.histogram(f);
      const st = this.#bandStats[f];
      const floorKeys: number[] = [];
      const buckets: [number, number[]][] = [];
      if (st !== undefined) {
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
      features.push({
        index: f,
        actTimes: this.#actTimes[f]!,
        max: this.#maxAct[f]!,
        sum1: exactSum(this.#s1hi, this.#s1lo, this.#s1rest, f, SCALE1).toString(),
        sum2: exactSum(this.#s2hi, this.#s2lo, this.#s2rest, f, SCALE2).toString(),
        histogram: { offset: h.index_offset, counts: Array.from(h.counts) },
        top: this.#top[f]!.ids.map(id),
        pool: this.#pool[f]!.map(id),
        python: this.#python[f]!.map((list) => list.ids.map(id)),
        floorKeys,
        buckets,
        foldBelow: Number.isFinite(foldBelow) ? foldBelow : null,
      });
    }
    const nonActivating: [number, number[]][] = [];
    const contextIds = new Map<number, number>();
    const contextId = (x: number): number =>
      contextIds.get(x) ??
        save(contextIds, x, this.#nonActSample(x), { key: store.xKey[x]!, x, start: 0 });
    for (let f = 0; f < this.#dSae; f++) {
      const list = this.#nonAct[f]!;
      if (list.length > 0) nonActivating.push([f, list.map(contextId)]);
    }
    return {
      format: STATE_FORMAT,
      version: STATE_VERSION,
      options: this.options,
      dSae: this.#dSae,
      nTokens: this.#nTokens,
      nAnalyzedTokens: this.#nAnalyzedTokens,
      nContexts: this.#nContexts,
      nBatches: this.#nBatches,
      candidates,
      features,
      nonActivating,
    };
  }

  /**
   * Restores a state saved with {@linkcode AnalyzerState.toJSON}.
   *
   * @param json The parsed JSON.
   * @param options Options to use instead of the saved ones (e.g. another analysis name); their
   *   sampling, window, seed and histogram settings must equal the saved ones.
   * @returns The state.
   * @throws {TypeError} The object is not a saved analyzer state.
   * @throws {ConfigError} `options` are incompatible with the saved state.
   *
   * @example
   * ```ts
   * import { AnalyzerState } from "./state.ts";
   * const a = new AnalyzerState({ seed: 7 });
   * const b = AnalyzerState.fromJSON(JSON.parse(JSON.stringify(a)));
   * console.assert(b.options.seed === 7 && b.nTokens === 0);
   * ```
   */
  static fromJSON(json: unknown, options?: FeatureAnalyzerOptions): AnalyzerState {
    const j = json as AnalyzerStateJSON;
    if (
      typeof j !== "object" || j === null || j.format !== STATE_FORMAT ||
      j.version !== STATE_VERSION
    ) {
      throw new TypeError(
        `Cannot read analyzer state: expected format "${STATE_FORMAT}" version ${STATE_VERSION}`,
      );
    }
    const saved = j.options;
    const state = new AnalyzerState({
      analysisName: saved.analysisName,
      saeName: saved.saeName,
      saeSeries: saved.saeSeries,
      subsamples: saved.subsamples,
      nTop: saved.nTop,
      nNonActivating: saved.nNonActivating,
      windowBefore: saved.windowBefore,
      windowAfter: saved.windowAfter,
      seed: saved.seed,
      histogramAccuracy: saved.histogramAccuracy,
      quantiles: saved.quantiles,
      subsampleRule: saved.subsampleRule,
      ...(saved.limitTokens === null ? {} : { limitTokens: saved.limitTokens }),
      ...options,
    });
    const check = new AnalyzerState({
      subsamples: saved.subsamples,
      nTop: saved.nTop,
      nNonActivating: saved.nNonActivating,
      windowBefore: saved.windowBefore,
      windowAfter: saved.windowAfter,
      seed: saved.seed,
      histogramAccuracy: saved.histogramAccuracy,
      subsampleRule: saved.subsampleRule,
    });
    if (
      check.#signature !== state.#signature ||
      JSON.stringify(saved.samplings) !== JSON.stringify(check.options.samplings)
    ) {
      throw new ConfigError(
        `Cannot restore analyzer state with different options: saved ${check.#signature}, ` +
          `given ${state.#signature}`,
      );
    }
    if (!Number.isSafeInteger(j.dSae) || j.dSae < 0) {
      throw new TypeError(`Cannot read analyzer state: dSae ${j.dSae} is not an integer`);
    }
    if (j.dSae > 0) state.#ensureDSae(j.dSae, "restore analyzer state");
    state.#nTokens = j.nTokens;
    state.#nAnalyzedTokens = j.nAnalyzedTokens;
    state.#nContexts = j.nContexts;
    state.#nBatches = j.nBatches;

    // Decode the windows; contexts are shared by stream number, their span covering every
    // window taken from them.
    const store = state.#store;
    const windows = j.candidates.map((c, i) => ({
      tokens: int32FromBase64(c.tokens, `candidates[${i}].tokens`),
      acts: float32FromBase64(c.acts, `candidates[${i}].acts`),
    }));
    const get = (i: number): CandidateJSON => {
      const c = j.candidates[i];
      if (c === undefined) {
        throw new TypeError(`Cannot read analyzer state: candidate ${i} does not exist`);
      }
      return c;
    };
    for (const w of windows) {
      for (const t of w.tokens) if (t < 0 || t > 65535) store.widenTokens();
    }
    const spans = new Map<number, { start: number; stop: number; members: number[] }>();
    for (const [i, c] of j.candidates.entries()) {
      const stop = c.start + windows[i]!.tokens.length;
      const span = spans.get(c.seq);
      if (span === undefined) spans.set(c.seq, { start: c.start, stop, members: [i] });
      else {
        span.start = Math.min(span.start, c.start);
        span.stop = Math.max(span.stop, stop);
        span.members.push(i);
      }
    }
    const ctxOfSeq = new Map<number, number>();
    for (const [seq, span] of spans) {
      const first = get(span.members[0]!);
      const len = span.stop - span.start;
      store.reserve(0, 1, 0, len);
      const x = store.newContext(
        store.sourceId(first.source),
        first.shard,
        first.row,
        first.offset,
        seq,
      );
      const buffer = new Int32Array(len);
      for (const i of span.members) {
        buffer.set(windows[i]!.tokens, get(i).start - span.start);
      }
      store.cover(x, span.start, span.stop);
      store.fillTokens(x, buffer, -span.start);
      store.xRef[x] = 1; // held until every list is restored
      ctxOfSeq.set(seq, x);
    }
    const candOf = new Map<number, number>();
    const candidate = (i: number): number => {
      let id = candOf.get(i);
      if (id === undefined) {
        const c = get(i);
        const w = windows[i]!;
        const x = ctxOfSeq.get(c.seq)!;
        store.reserve(1, 0, 0, 0);
        id = store.newCandidate();
        store.setCandidate(
          id,
          c.peak,
          c.key,
          x,
          c.start + c.peakPos,
          c.start,
          c.start + w.tokens.length,
        );
        const pos: number[] = [];
        const val: number[] = [];
        for (let t = 0; t < w.acts.length; t++) {
          if (w.acts[t] !== 0) (pos.push(c.start + t), val.push(w.acts[t]!));
        }
        store.setActs(id, pos, val, pos.length);
        candOf.set(i, id);
      }
      return id;
    };
    const place = (list: number[], i: number): void => {
      const id = candidate(i);
      list.push(id);
      store.refCandidate(id);
    };
    const placeByPeak = (list: PeakList, i: number): void => {
      const id = candidate(i);
      list.ids.push(id);
      list.peaks.push(store.peak(id));
      store.refCandidate(id);
    };
    for (const fj of j.features) {
      const f = fj.index;
      if (!Number.isInteger(f) || f < 0 || f >= state.#dSae) {
        throw new TypeError(`Cannot read analyzer state: feature index ${f} out of range`);
      }
      if (!state.#alive[f]) state.#wake(f);
      state.#actTimes[f] = fj.actTimes;
      state.#maxAct[f] = fj.max;
      state.#s1rest.set(f, BigInt(fj.sum1));
      state.#s2rest.set(f, BigInt(fj.sum2));
      state.#hists.merge(f, {
        relative_accuracy: state.options.histogramAccuracy,
        index_offset: fj.histogram.offset,
        counts: Float64Array.from(fj.histogram.counts),
      });
      for (const i of fj.top) placeByPeak(state.#top[f]!, i);
      const top = state.#top[f]!.ids;
      state.#topThr[f] = top.length === state.#nTop && top.length > 0
        ? store.peak(top[top.length - 1]!)
        : 0;
      for (const i of fj.pool) place(state.#pool[f]!, i);
      state.#pruneAt[f] = Math.max(state.#minPrune, 2 * fj.pool.length);
      state.#pythonSpecs.forEach((_, k) => {
        for (const i of fj.python[k] ?? []) placeByPeak(state.#python[f]![k]!, i);
      });
      const st = state.#bandStats[f];
      if (st !== undefined) {
        // Restore the key statistics folded up to the current max.
        const max = fj.max;
        const below = max > 0 ? state.#bucket(state.#floorP * max) : -Infinity;
        for (const k of fj.floorKeys) state.#insertFloor(st, k);
        for (const [b, keys] of fj.buckets) {
          for (const k of keys) {
            if (b < below) state.#insertFloor(st, k);
            else state.#insertBucket(st, b, k);
          }
        }
        state.#foldBelow[f] = Math.max(fj.foldBelow ?? -Infinity, below);
      }
    }
    for (const [f, list] of j.nonActivating) {
      if (!Number.isInteger(f) || f < 0 || f >= state.#dSae) {
        throw new TypeError(`Cannot read analyzer state: feature index ${f} out of range`);
      }
      for (const i of list) {
        const c = get(i);
        const x = ctxOfSeq.get(c.seq)!;
        store.xKey[x] = c.key;
        store.xNonActStop[x] = windows[i]!.tokens.length;
        state.#insertNonAct(f, x);
      }
    }
    for (const x of ctxOfSeq.values()) store.unrefContext(x);
    return state;
  }
}

/** A candidate window in the saved state. */
export interface CandidateJSON {
  peak: number;
  key: number;
  seq: number;
  peakPos: number;
  start: number;
  source: string;
  shard: number;
  row: number;
  offset: number;
  /** Base64 of the window's `Int32Array` token ids. */
  tokens: string;
  /** Base64 of the window's `Float32Array` activations. */
  acts: string;
}

/** One alive feature in the saved state. */
export interface FeatureJSON {
  index: number;
  actTimes: number;
  max: number;
  /** Exact sum of active values × 2^149, decimal. */
  sum1: string;
  /** Exact sum of squared active values × 2^298, decimal. */
  sum2: string;
  histogram: { offset: number; counts: number[] };
  top: number[];
  pool: number[];
  python: number[][];
  floorKeys: number[];
  buckets: [number, number[]][];
  foldBelow: number | null;
}

/** The JSON form of an {@linkcode AnalyzerState}. */
export interface AnalyzerStateJSON {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  options: ResolvedFeatureAnalyzerOptions;
  dSae: number;
  nTokens: number;
  nAnalyzedTokens: number;
  nContexts: number;
  nBatches: number;
  /** Candidate windows, referenced by index below (a shared window is stored once). */
  candidates: CandidateJSON[];
  features: FeatureJSON[];
  /** `[feature, candidate indices]` for every feature with non-activating samples. */
  nonActivating: [number, number[]][];
}

/**
 * Checks the shape of a {@linkcode FeatureBatch}.
 *
 * @param batch The batch.
 * @returns `B`, `T` and `d_sae`.
 * @throws {RangeError} Saying what is wrong and where.
 */
function validateBatch(
  batch: FeatureBatch,
): { batchSize: number; contextSize: number; dSae: number } {
  const fail = (msg: string): never => {
    throw new RangeError(`Cannot analyze FeatureBatch: ${msg}`);
  };
  const { batchSize: B, contextSize: T, dSae } = batch;
  if (!Number.isSafeInteger(B) || B < 0) fail(`batchSize ${B} is not a non-negative integer`);
  if (!Number.isSafeInteger(T) || T <= 0) fail(`contextSize ${T} is not a positive integer`);
  if (!Number.isSafeInteger(dSae) || dSae <= 0) fail(`dSae ${dSae} is not a positive integer`);
  for (const name of ["tokens", "mask", "attention"] as const) {
    if (batch[name]?.length !== B * T) {
      fail(`${name} has length ${batch[name]?.length}, expected B*T = ${B * T}`);
    }
  }
  if (batch.origins?.length !== B) {
    fail(`origins has length ${batch.origins?.length}, expected B = ${B}`);
  }
  const { position, feature, value } = batch;
  const nnz = position.length;
  if (feature.length !== nnz || value.length !== nnz) {
    fail(
      `position, feature and value have lengths ${nnz}, ${feature.length}, ${value.length}`,
    );
  }
  let prevP = -1;
  let prevF = -1;
  for (let i = 0; i < nnz; i++) {
    const p = position[i]!;
    const f = feature[i]!;
    const v = value[i]!;
    if (p < 0 || p >= B * T) fail(`entry ${i} has position ${p} outside [0, ${B * T})`);
    if (f < 0 || f >= dSae) fail(`entry ${i} has feature ${f} outside [0, ${dSae})`);
    if (!(v > 0 && v < Infinity)) fail(`entry ${i} has value ${v}, expected a finite value > 0`);
    if (p < prevP || (p === prevP && f <= prevF)) {
      fail(
        `entry ${i} (position ${p}, feature ${f}) comes after (position ${prevP}, feature ` +
          `${prevF}): entries must be sorted by position then feature, without duplicates`,
      );
    }
    prevP = p;
    prevF = f;
  }
  for (const [b, o] of batch.origins.entries()) {
    if (typeof o?.source !== "string" || !Number.isInteger(o.shard) || !Number.isInteger(o.row)) {
      fail(`origins[${b}] is not { source, shard, row }`);
    }
  }
  return { batchSize: B, contextSize: T, dSae };
}
