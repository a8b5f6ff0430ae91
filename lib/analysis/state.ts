/**
 * The feature analyzer's state: a single-pass, bounded-memory, mergeable summary of a stream of
 * {@linkcode FeatureBatch}es, from which one {@linkcode FeatureRecord} per feature is built at the
 * end (DESIGN.md, "Feature analysis semantics").
 *
 * ## What is computed, per feature, over analyzed tokens (mask = 1)
 *
 * Entries at masked positions are ignored entirely. `act_times`, `max_activation`, a log-bucket
 * histogram and quantiles of the active values, their mean and population standard deviation
 * (ddof 0). Sums are taken in float64 within a batch and added exactly across batches (as
 * integers scaled by 2^149 and 2^298: every float32 is a multiple of 2^-149), so the result does
 * not depend on how the stream was split into parts and merged.
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
import { LogHistogramBuilder, logHistogramQuantile } from "./histogram.ts";
import {
  type FeatureAnalyzerOptions,
  type ResolvedFeatureAnalyzerOptions,
  resolveFeatureAnalyzerOptions,
  type SamplingSpec,
} from "./options.ts";
import { type ContextHash, hashContext, priorityKey } from "./_hash.ts";
import { float32FromBase64, int32FromBase64, toBase64 } from "./_codec.ts";

/** Dataset coordinates of a context (offset resolved to a number). */
interface Origin {
  source: string;
  shard: number;
  row: number;
  offset: number;
}

/** A context kept as a possible sample of one feature, with its window copied. */
interface Candidate {
  /** Peak activation (a float32 value). */
  peak: number;
  /** Priority key (bands), the context's key (non-activating), or 0. */
  key: number;
  /** Context number in stream order. */
  seq: number;
  /** Peak index within the window. */
  peakPos: number;
  /** Window start within the context. */
  start: number;
  tokens: Int32Array;
  acts: Float32Array;
  origin: Origin;
}

/** Per-feature state, allocated when the feature first fires. */
interface Slot {
  hist: LogHistogramBuilder;
  /** Top candidates, by peak descending then seq ascending. */
  top: Candidate[];
  /** Band candidates (unordered). */
  pool: Candidate[];
  /** Prune the pool when it grows beyond this. */
  pruneAt: number;
  /** The n smallest keys of the floor (lowest band), ascending. */
  floorKeys: number[];
  /** Peak bucket → its smallest keys, ascending. */
  buckets: Map<number, number[]>;
  /** Buckets below this index were folded into the floor. */
  foldBelow: number;
  /** Python-rule lists, one per python sampling, by peak descending then seq ascending. */
  python: Candidate[][];
}

const SCALE1 = 2 ** 149;
const SCALE2 = 2 ** 298;
const EPS = 1e-9;
const STATE_FORMAT = "saeflow-analyzer-state";
const STATE_VERSION = 1;

function byPeak(a: Candidate, b: Candidate): number {
  return b.peak - a.peak || a.seq - b.seq;
}

function byKey(a: Candidate, b: Candidate): number {
  return a.key - b.key || a.seq - b.seq;
}

/** Inserts into an array sorted by `cmp`, keeping at most `cap` elements. */
function insertCapped<T>(list: T[], item: T, cap: number, cmp: (a: T, b: T) => number): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cmp(list[mid]!, item) <= 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= cap) return;
  list.splice(lo, 0, item);
  if (list.length > cap) list.length = cap;
}

/** Inserts a key into an ascending list of at most `cap` keys. */
function insertKey(list: number[], key: number, cap: number): void {
  const n = list.length;
  if (n >= cap && key >= list[cap - 1]!) return;
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, key);
  if (list.length > cap) list.length = cap;
}

/** Whether a key could be among the `k` smallest of a set whose smallest keys are `list`. */
function under(list: number[] | undefined, k: number, key: number): boolean {
  return list === undefined || list.length < k || key <= list[k - 1]!;
}

function toNumberScaled(value: bigint, scale: number): number {
  return Number(value) / scale;
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

  #actTimes = new Float64Array(0);
  #maxAct = new Float64Array(0);
  #sum1: bigint[] = [];
  #sum2: bigint[] = [];
  #slots: (Slot | undefined)[] = [];
  #nonAct: (Candidate[] | undefined)[] = [];
  #nonActTau = new Float64Array(0);

  // Derived sampling configuration.
  readonly #topSpecs: SamplingSpec[];
  readonly #nTop: number;
  readonly #bands: SamplingSpec[];
  readonly #lowest: SamplingSpec | undefined;
  readonly #twoSided: SamplingSpec[];
  readonly #floorP: number;
  readonly #kStat: number;
  readonly #logG: number;
  readonly #minPrune: number;
  readonly #pythonSpecs: SamplingSpec[];
  readonly #nNonAct: number;
  readonly #signature: string;

  // Per-batch scratch, sized to d_sae.
  #cnt = new Int32Array(0);
  #off = new Int32Array(0);
  #bs1 = new Float64Array(0);
  #bs2 = new Float64Array(0);
  #batchSeen = new Uint8Array(0);
  #firing = new Uint8Array(0);

  /**
   * Creates an empty state.
   *
   * @param options User options; defaults applied by `resolveFeatureAnalyzerOptions`.
   * @throws {ConfigError} An option is out of range.
   */
  constructor(options: FeatureAnalyzerOptions = {}) {
    this.options = resolveFeatureAnalyzerOptions(options);
    const s = this.options.samplings;
    this.#topSpecs = s.filter((x) => x.kind === "top");
    this.#nTop = Math.max(0, ...this.#topSpecs.map((x) => x.n));
    this.#bands = s.filter((x) => x.kind === "band");
    this.#lowest = this.#bands.find((x) => x.lo === 0);
    this.#twoSided = this.#bands.filter((x) => x.lo > 0);
    this.#floorP = this.#lowest?.hi ?? Math.min(...this.#twoSided.map((x) => x.lo), 1);
    this.#kStat = Math.max(0, ...this.#bands.map((x) => x.n));
    const minRatio = Math.min(...this.#twoSided.map((x) => x.hi / x.lo), 4);
    this.#logG = Math.log(Math.sqrt(minRatio / (1 + 1e-6)));
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
   * samplings of one feature counts once), and distinct non-activating contexts.
   *
   * @returns Counts for monitoring the memory bound.
   */
  stats(): { candidates: number; nonActivatingContexts: number; aliveFeatures: number } {
    let candidates = 0;
    let alive = 0;
    for (const slot of this.#slots) {
      if (slot === undefined) continue;
      alive++;
      const seen = new Set<Candidate>([...slot.top, ...slot.pool, ...slot.python.flat()]);
      candidates += seen.size;
    }
    const contexts = new Set<Candidate>();
    for (const list of this.#nonAct) if (list) { for (const c of list) contexts.add(c); }
    return { candidates, nonActivatingContexts: contexts.size, aliveFeatures: alive };
  }

  #ensureDSae(dSae: number, where: string): void {
    if (this.#dSae === dSae) return;
    if (this.#dSae !== 0) {
      throw new RangeError(`Cannot ${where}: d_sae ${dSae} differs from ${this.#dSae}`);
    }
    this.#dSae = dSae;
    this.#actTimes = new Float64Array(dSae);
    this.#maxAct = new Float64Array(dSae);
    this.#sum1 = new Array<bigint>(dSae).fill(0n);
    this.#sum2 = new Array<bigint>(dSae).fill(0n);
    this.#slots = new Array<Slot | undefined>(dSae).fill(undefined);
    this.#nonAct = new Array<Candidate[] | undefined>(dSae).fill(undefined);
    this.#nonActTau = new Float64Array(dSae).fill(Infinity);
    this.#cnt = new Int32Array(dSae);
    this.#off = new Int32Array(dSae);
    this.#bs1 = new Float64Array(dSae);
    this.#bs2 = new Float64Array(dSae);
    this.#batchSeen = new Uint8Array(dSae);
  }

  #slot(f: number): Slot {
    let slot = this.#slots[f];
    if (slot === undefined) {
      slot = {
        hist: new LogHistogramBuilder(this.options.histogramAccuracy),
        top: [],
        pool: [],
        pruneAt: this.#minPrune,
        floorKeys: [],
        buckets: new Map(),
        foldBelow: -Infinity,
        python: this.#pythonSpecs.map(() => []),
      };
      this.#slots[f] = slot;
    }
    return slot;
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

    // Per-context facts: analyzed tokens, real length, coordinates, hash.
    const analyzed = new Int32Array(B);
    const realLength = new Int32Array(B);
    let nAnalyzed = 0;
    for (let b = 0; b < B; b++) {
      let a = 0;
      let last = -1;
      for (let t = 0; t < T; t++) {
        a += mask[b * T + t]!;
        if (attention[b * T + t]) last = t;
      }
      analyzed[b] = a;
      realLength[b] = last + 1;
      nAnalyzed += a;
    }
    const ctxOrigin: Origin[] = origins.map((o) => ({
      source: o.source,
      shard: o.shard,
      row: o.row,
      offset: o.offset ?? 0,
    }));
    const ctxHash: ContextHash[] = ctxOrigin.map((o) =>
      hashContext(this.options.seed, o.source, o.shard, o.row, o.offset)
    );

    // Pass 1: group each context's unmasked entries by feature; statistics and peaks.
    const gPos = new Int32Array(nnz);
    const gVal = new Float32Array(nnz);
    const pairF = new Int32Array(nnz);
    const pairCtx = new Int32Array(nnz);
    const pairStart = new Int32Array(nnz);
    const pairEnd = new Int32Array(nnz);
    const pairPeak = new Float32Array(nnz);
    const pairPeakT = new Int32Array(nnz);
    let nPairs = 0;
    const batchTouched: number[] = [];
    const touched = new Int32Array(dSae);
    const cnt = this.#cnt;
    const off = this.#off;
    const firingWanted = this.#nNonAct > 0;
    if (firingWanted && this.#firing.length < B * dSae) this.#firing = new Uint8Array(B * dSae);
    let e = 0;
    let g = 0;
    for (let b = 0; b < B; b++) {
      const end = (b + 1) * T;
      const e0 = e;
      while (e < nnz && position[e]! < end) e++;
      let nTouched = 0;
      for (let i = e0; i < e; i++) {
        if (!mask[position[i]!]) continue;
        const f = feature[i]!;
        if (cnt[f] === 0) touched[nTouched++] = f;
        cnt[f]!++;
      }
      let start = g;
      for (let k = 0; k < nTouched; k++) {
        const f = touched[k]!;
        off[f] = start;
        start += cnt[f]!;
      }
      for (let i = e0; i < e; i++) {
        const p = position[i]!;
        if (!mask[p]) continue;
        const f = feature[i]!;
        const at = off[f]!++;
        gPos[at] = p - b * T;
        gVal[at] = value[i]!;
      }
      for (let k = 0; k < nTouched; k++) {
        const f = touched[k]!;
        const hi = off[f]!;
        const lo = hi - cnt[f]!;
        cnt[f] = 0;
        const slot = this.#slot(f);
        let peak = 0;
        let peakT = 0;
        let s1 = 0;
        let s2 = 0;
        for (let j = lo; j < hi; j++) {
          const v = gVal[j]!;
          if (v > peak) {
            peak = v;
            peakT = gPos[j]!;
          }
          s1 += v;
          s2 += v * v;
          slot.hist.add(v);
        }
        if (!this.#batchSeen[f]) {
          this.#batchSeen[f] = 1;
          batchTouched.push(f);
        }
        this.#bs1[f]! += s1;
        this.#bs2[f]! += s2;
        this.#actTimes[f]! += hi - lo;
        if (peak > this.#maxAct[f]!) this.#maxAct[f] = peak;
        pairF[nPairs] = f;
        pairCtx[nPairs] = b;
        pairStart[nPairs] = lo;
        pairEnd[nPairs] = hi;
        pairPeak[nPairs] = peak;
        pairPeakT[nPairs] = peakT;
        nPairs++;
        if (firingWanted) this.#firing[b * dSae + f] = 1;
      }
      g = start;
    }
    // Exact accumulation of the batch sums.
    for (const f of batchTouched) {
      this.#sum1[f]! += BigInt(Math.round(this.#bs1[f]! * SCALE1));
      this.#sum2[f]! += BigInt(Math.round(this.#bs2[f]! * SCALE2));
      this.#bs1[f] = 0;
      this.#bs2[f] = 0;
      this.#batchSeen[f] = 0;
    }

    // Pass 2: candidates, against the max including this batch.
    const before = this.options.windowBefore;
    const after = this.options.windowAfter;
    const makeCandidate = (i: number, key: number): Candidate => {
      const b = pairCtx[i]!;
      const peakT = pairPeakT[i]!;
      const length = Math.max(realLength[b]!, peakT + 1);
      const start = Math.max(0, peakT - before);
      const stop = Math.min(length, peakT + after + 1);
      const w = stop - start;
      const buffer = new ArrayBuffer(8 * w);
      const acts = new Float32Array(buffer, 0, w);
      const windowTokens = new Int32Array(buffer, 4 * w, w);
      windowTokens.set(tokens.subarray(b * T + start, b * T + stop));
      for (let j = pairStart[i]!; j < pairEnd[i]!; j++) {
        const t = gPos[j]!;
        if (t >= start && t < stop) acts[t - start] = gVal[j]!;
      }
      return {
        peak: pairPeak[i]!,
        key,
        seq: seq0 + b,
        peakPos: peakT - start,
        start,
        tokens: windowTokens,
        acts,
        origin: ctxOrigin[b]!,
      };
    };
    const hasBands = this.#bands.length > 0;
    for (let i = 0; i < nPairs; i++) {
      const f = pairF[i]!;
      const slot = this.#slots[f]!;
      const peak = pairPeak[i]!;
      const max = this.#maxAct[f]!;
      const key = hasBands ? priorityKey(ctxHash[pairCtx[i]!]!, f) : 0;
      let cand: Candidate | undefined;
      // A new context comes after every kept one, so an equal peak never displaces one.
      if (this.#nTop > 0) {
        const last = slot.top[this.#nTop - 1];
        if (last === undefined || peak > last.peak) {
          cand = makeCandidate(i, key);
          insertCapped(slot.top, cand, this.#nTop, byPeak);
        }
      }
      if (hasBands) {
        if (this.#considerBand(slot, peak, key, max)) {
          cand ??= makeCandidate(i, key);
          slot.pool.push(cand);
          if (slot.pool.length > slot.pruneAt) this.#prune(slot, max);
        }
      }
      for (let j = 0; j < this.#pythonSpecs.length; j++) {
        const spec = this.#pythonSpecs[j]!;
        if (!(peak <= spec.hi * max)) continue;
        const list = slot.python[j]!;
        const last = list[spec.n - 1];
        if (last === undefined || peak > last.peak) {
          cand ??= makeCandidate(i, key);
          insertCapped(list, cand, spec.n, byPeak);
        }
      }
    }

    // Non-activating contexts.
    if (firingWanted) {
      const order: number[] = [];
      const ctxKey = new Float64Array(B);
      for (let b = 0; b < B; b++) {
        if (analyzed[b]! === 0) continue;
        ctxKey[b] = priorityKey(ctxHash[b]!, -1);
        order.push(b);
      }
      order.sort((x, y) => ctxKey[x]! - ctxKey[y]! || x - y);
      if (order.length > 0) {
        const minKey = ctxKey[order[0]!]!;
        const shared: (Candidate | undefined)[] = new Array(B);
        const width = before + after + 1;
        const tau = this.#nonActTau;
        const n = this.#nNonAct;
        for (let f = 0; f < dSae; f++) {
          if (!(minKey <= tau[f]!)) continue;
          let list = this.#nonAct[f];
          for (const b of order) {
            const key = ctxKey[b]!;
            if (!(key <= tau[f]!)) break;
            if (this.#firing[b * dSae + f]) continue;
            let c = shared[b];
            if (c === undefined) {
              const stop = Math.min(width, Math.max(realLength[b]!, 1));
              c = {
                peak: 0,
                key,
                seq: seq0 + b,
                peakPos: 0,
                start: 0,
                tokens: tokens.slice(b * T, b * T + stop),
                acts: new Float32Array(stop),
                origin: ctxOrigin[b]!,
              };
              shared[b] = c;
            }
            if (list === undefined) this.#nonAct[f] = list = [];
            insertCapped(list, c, n, byKey);
            if (list.length === n) tau[f] = list[n - 1]!.key;
          }
        }
        for (let i = 0; i < nPairs; i++) this.#firing[pairCtx[i]! * dSae + pairF[i]!] = 0;
      }
    }

    this.#nTokens += B * T;
    this.#nAnalyzedTokens += nAnalyzed;
    this.#nContexts += B;
    this.#nBatches++;
  }

  #bucket(peak: number): number {
    return Math.floor(Math.log(peak) / this.#logG);
  }

  #kth(slot: Slot, bucket: number, k: number): number {
    if (bucket < slot.foldBelow) return Infinity;
    const keys = slot.buckets.get(bucket);
    return keys !== undefined && keys.length >= k ? keys[k - 1]! : Infinity;
  }

  /** Moves the key statistics of buckets now wholly at or below the floor into the floor. */
  #fold(slot: Slot, max: number): void {
    const below = this.#bucket(this.#floorP * max);
    if (below <= slot.foldBelow) return;
    const kLow = this.#lowest?.n ?? 0;
    for (const [b, keys] of slot.buckets) {
      if (b >= below) continue;
      if (kLow > 0) { for (const k of keys) insertKey(slot.floorKeys, k, kLow); }
      slot.buckets.delete(b);
    }
    slot.foldBelow = below;
  }

  /** Updates the key statistics with a new context; whether it may be needed by some band. */
  #considerBand(slot: Slot, peak: number, key: number, max: number): boolean {
    const lowest = this.#lowest;
    if (peak <= this.#floorP * max) {
      if (lowest === undefined) return false;
      const useful = under(slot.floorKeys, lowest.n, key);
      insertKey(slot.floorKeys, key, lowest.n);
      return useful;
    }
    this.#fold(slot, max);
    const b = this.#bucket(peak);
    let useful = lowest !== undefined && under(slot.floorKeys, lowest.n, key);
    for (const band of this.#twoSided) {
      if (useful) break;
      if (!(peak > band.lo * max)) continue;
      const k = band.n;
      if (
        key <= this.#kth(slot, b - 1, k) || key <= this.#kth(slot, b, k) ||
        key <= this.#kth(slot, b + 1, k)
      ) useful = true;
    }
    let keys = slot.buckets.get(b);
    if (keys === undefined) slot.buckets.set(b, keys = []);
    insertKey(keys, key, this.#kStat);
    return useful;
  }

  /**
   * Keeps exactly the pool candidates that are among the n smallest keys of some band for some
   * final max `M ≥ max` (up to a relative margin of 1e-9 that only ever keeps more).
   */
  #prune(slot: Slot, max: number): void {
    const pool = slot.pool.sort(byKey);
    const c = pool.length;
    const keep = new Uint8Array(c);
    const lowest = this.#lowest;
    if (lowest !== undefined) {
      const floorT = this.#floorP * max;
      for (let i = 0; i < c; i++) {
        const t = Math.max(pool[i]!.peak, floorT);
        let count = 0;
        for (let j = 0; j < i && count < lowest.n; j++) if (pool[j]!.peak <= t) count++;
        if (count < lowest.n) keep[i] = 1;
      }
    }
    const starts = new Float64Array(c);
    const ends = new Float64Array(c);
    for (const band of this.#twoSided) {
      const { lo, hi, n: k } = band;
      for (let i = 0; i < c; i++) {
        if (keep[i]) continue;
        const peak = pool[i]!.peak;
        const a = Math.max(max, (peak / hi) * (1 - EPS));
        const z = (peak / lo) * (1 + EPS);
        if (!(a < z)) continue;
        let base = 0;
        let ns = 0;
        let ne = 0;
        for (let j = 0; j < i; j++) {
          const p = pool[j]!.peak;
          const s = (p / hi) * (1 + EPS);
          const t = (p / lo) * (1 - EPS);
          if (!(s < t) || t <= a || s >= z) continue;
          if (s <= a) base++;
          else starts[ns++] = s;
          if (t < z) ends[ne++] = t;
        }
        if (base < k) {
          keep[i] = 1;
          continue;
        }
        const S = starts.subarray(0, ns).sort();
        const E = ends.subarray(0, ne).sort();
        let count = base;
        let si = 0;
        let ei = 0;
        while (ei < ne) {
          const pos = si < ns ? Math.min(S[si]!, E[ei]!) : E[ei]!;
          while (si < ns && S[si] === pos) (count++, si++);
          while (ei < ne && E[ei] === pos) (count--, ei++);
          if (count < k) {
            keep[i] = 1;
            break;
          }
        }
      }
    }
    slot.pool = pool.filter((_, i) => keep[i] === 1);
    slot.pruneAt = Math.max(this.#minPrune, 2 * slot.pool.length);
  }

  /**
   * Adds another state over disjoint data into this one; the result is exactly the state of one
   * run over this state's data followed by `other`'s (`other` is left unchanged; its candidates
   * are shared, not copied).
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
    const moved = new Map<Candidate, Candidate>();
    const move = (c: Candidate): Candidate => {
      let m = moved.get(c);
      if (m === undefined) moved.set(c, m = { ...c, seq: c.seq + shift });
      return m;
    };
    for (let f = 0; f < this.#dSae; f++) {
      this.#actTimes[f]! += other.#actTimes[f]!;
      this.#maxAct[f] = Math.max(this.#maxAct[f]!, other.#maxAct[f]!);
      this.#sum1[f]! += other.#sum1[f]!;
      this.#sum2[f]! += other.#sum2[f]!;
      const theirs = other.#slots[f];
      if (theirs !== undefined) {
        const slot = this.#slot(f);
        const max = this.#maxAct[f]!;
        slot.hist.merge(theirs.hist);
        for (const c of theirs.top) insertCapped(slot.top, move(c), this.#nTop, byPeak);
        for (let j = 0; j < this.#pythonSpecs.length; j++) {
          const n = this.#pythonSpecs[j]!.n;
          for (const c of theirs.python[j]!) insertCapped(slot.python[j]!, move(c), n, byPeak);
        }
        if (this.#bands.length > 0) {
          const kLow = this.#lowest?.n ?? 0;
          for (const k of theirs.floorKeys) insertKey(slot.floorKeys, k, kLow);
          for (const [b, keys] of theirs.buckets) {
            if (b < slot.foldBelow) {
              if (kLow > 0) { for (const k of keys) insertKey(slot.floorKeys, k, kLow); }
              continue;
            }
            let mine = slot.buckets.get(b);
            if (mine === undefined) slot.buckets.set(b, mine = []);
            for (const k of keys) insertKey(mine, k, this.#kStat);
          }
          // Their folded buckets are already in their floor; fold ours up to the merged max.
          slot.foldBelow = Math.max(slot.foldBelow, theirs.foldBelow);
          for (const [b, keys] of slot.buckets) {
            if (b >= slot.foldBelow) continue;
            if (kLow > 0) { for (const k of keys) insertKey(slot.floorKeys, k, kLow); }
            slot.buckets.delete(b);
          }
          this.#fold(slot, max);
          for (const c of theirs.pool) slot.pool.push(move(c));
          this.#prune(slot, max);
        }
      }
      const theirList = other.#nonAct[f];
      if (theirList !== undefined && this.#nNonAct > 0) {
        let list = this.#nonAct[f];
        if (list === undefined) this.#nonAct[f] = list = [];
        for (const c of theirList) insertCapped(list, move(c), this.#nNonAct, byKey);
        this.#nonActTau[f] = list.length === this.#nNonAct ? list[list.length - 1]!.key : Infinity;
      }
    }
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

  #analysis(f: number): FeatureAnalysis {
    const n = this.#actTimes[f]!;
    const slot = this.#slots[f];
    if (n === 0 || slot === undefined) {
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
    const s1 = this.#sum1[f]!;
    const s2 = this.#sum2[f]!;
    const mean = toNumberScaled(s1, SCALE1) / n;
    const numerator = BigInt(n) * s2 - s1 * s1;
    const variance = Math.max(0, toNumberScaled(numerator, SCALE2) / n / n);
    const max = this.#maxAct[f]!;
    const histogram = slot.hist.toLogHistogram();
    const quantiles: Quantile[] = this.options.quantiles.map((q) => ({
      q,
      value: Math.min(max, logHistogramQuantile(histogram, q)),
    }));
    const samplings: Sampling[] = [];
    let python = 0;
    for (const spec of this.options.samplings) {
      let chosen: Candidate[];
      let band: [number, number] | null = null;
      switch (spec.kind) {
        case "top":
          chosen = slot.top.slice(0, spec.n);
          break;
        case "band": {
          const lo = spec.lo * max;
          const hi = spec.hi * max;
          chosen = slot.pool.filter((c) => c.peak > lo && c.peak <= hi).sort(byKey)
            .slice(0, spec.n).sort(byPeak);
          band = [spec.lo, spec.hi];
          break;
        }
        case "python":
          chosen = slot.python[python++]!;
          band = [0, spec.hi];
          break;
        case "non_activating":
          chosen = this.#nonAct[f] ?? [];
          break;
      }
      samplings.push({ name: spec.name, band, samples: chosen.map(toSample) });
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
    const ids = new Map<Candidate, number>();
    const candidates: CandidateJSON[] = [];
    const id = (c: Candidate): number => {
      let i = ids.get(c);
      if (i === undefined) {
        i = candidates.length;
        ids.set(c, i);
        candidates.push({
          peak: c.peak,
          key: c.key,
          seq: c.seq,
          peakPos: c.peakPos,
          start: c.start,
          source: c.origin.source,
          shard: c.origin.shard,
          row: c.origin.row,
          offset: c.origin.offset,
          tokens: toBase64(c.tokens),
          acts: toBase64(c.acts),
        });
      }
      return i;
    };
    const features: FeatureJSON[] = [];
    for (let f = 0; f < this.#dSae; f++) {
      const slot = this.#slots[f];
      if (slot === undefined) continue;
      if (slot.pool.length > this.#minPrune) this.#prune(slot, this.#maxAct[f]!);
      const h = slot.hist.toLogHistogram();
      features.push({
        index: f,
        actTimes: this.#actTimes[f]!,
        max: this.#maxAct[f]!,
        sum1: this.#sum1[f]!.toString(),
        sum2: this.#sum2[f]!.toString(),
        histogram: { offset: h.index_offset, counts: Array.from(h.counts) },
        top: slot.top.map(id),
        pool: slot.pool.map(id),
        python: slot.python.map((list) => list.map(id)),
        floorKeys: [...slot.floorKeys],
        buckets: [...slot.buckets].map(([b, keys]) => [b, [...keys]] as [number, number[]]),
        foldBelow: Number.isFinite(slot.foldBelow) ? slot.foldBelow : null,
      });
    }
    const nonActivating: [number, number[]][] = [];
    for (let f = 0; f < this.#dSae; f++) {
      const list = this.#nonAct[f];
      if (list !== undefined && list.length > 0) nonActivating.push([f, list.map(id)]);
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
    const cands = j.candidates.map((c, i): Candidate => ({
      peak: c.peak,
      key: c.key,
      seq: c.seq,
      peakPos: c.peakPos,
      start: c.start,
      tokens: int32FromBase64(c.tokens, `candidates[${i}].tokens`),
      acts: float32FromBase64(c.acts, `candidates[${i}].acts`),
      origin: { source: c.source, shard: c.shard, row: c.row, offset: c.offset },
    }));
    const get = (i: number): Candidate => {
      const c = cands[i];
      if (c === undefined) {
        throw new TypeError(`Cannot read analyzer state: candidate ${i} does not exist`);
      }
      return c;
    };
    for (const fj of j.features) {
      const f = fj.index;
      if (!Number.isInteger(f) || f < 0 || f >= state.#dSae) {
        throw new TypeError(`Cannot read analyzer state: feature index ${f} out of range`);
      }
      const slot = state.#slot(f);
      state.#actTimes[f] = fj.actTimes;
      state.#maxAct[f] = fj.max;
      state.#sum1[f] = BigInt(fj.sum1);
      state.#sum2[f] = BigInt(fj.sum2);
      slot.hist.merge({
        relative_accuracy: state.options.histogramAccuracy,
        index_offset: fj.histogram.offset,
        counts: Float64Array.from(fj.histogram.counts),
      });
      slot.top = fj.top.map(get);
      slot.pool = fj.pool.map(get);
      slot.pruneAt = Math.max(state.#minPrune, 2 * slot.pool.length);
      slot.python = state.#pythonSpecs.map((_, k) => (fj.python[k] ?? []).map(get));
      slot.floorKeys = [...fj.floorKeys];
      slot.buckets = new Map(fj.buckets.map(([b, keys]) => [b, [...keys]]));
      slot.foldBelow = fj.foldBelow ?? -Infinity;
    }
    for (const [f, list] of j.nonActivating) {
      if (!Number.isInteger(f) || f < 0 || f >= state.#dSae) {
        throw new TypeError(`Cannot read analyzer state: feature index ${f} out of range`);
      }
      const l = list.map(get);
      state.#nonAct[f] = l;
      state.#nonActTau[f] = l.length === state.#nNonAct ? l[l.length - 1]!.key : Infinity;
    }
    return state;
  }
}

function toSample(c: Candidate): Sample {
  return {
    tokens: c.tokens.slice(),
    acts: c.acts.slice(),
    peak: c.peak,
    peak_pos: c.peakPos,
    source: c.origin.source,
    shard: c.origin.shard,
    row: c.origin.row,
    offset: c.origin.offset + c.start,
  };
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
