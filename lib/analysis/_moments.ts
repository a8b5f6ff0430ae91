/**
 * The moments-and-histogram component of the analyzer: per feature, `act_times`, the maximum,
 * exact sums of the active values and of their squares, and the log-bucket histogram (from which
 * the quantiles are read).
 *
 * Every value and its square are added exactly (as integers scaled by 2^149 and 2^298: every
 * float32 is a multiple of 2^-149, and its square is exact in float64), so mean and standard
 * deviation depend neither on the batch size nor on how the stream was split into parts and
 * merged. A sum is kept as two float64 words per feature (error-free additions), spilling into a
 * `bigint` only in the rare case two words cannot hold it exactly. Histogram buckets come from a
 * lazily filled table indexed by the float32's top bits (`bucketCells`), falling back to
 * `Math.log` for the few cells that straddle a bucket boundary.
 *
 * @module
 */

import type { FeatureAnalysis, LogHistogram, Quantile } from "../types.ts";
import { logHistogramQuantile } from "./histogram.ts";
import {
  bucketCells,
  CELL_BIAS,
  CELL_SHIFT,
  fillBucketCell,
  HistogramArena,
} from "./_histograms.ts";
import type { BatchPairs } from "./_batch.ts";

const SCALE1 = 2 ** 149;
const SCALE2 = 2 ** 298;

/** One feature's moments in the saved state (`FeatureJSON`). */
export interface MomentsJSON {
  actTimes: number;
  max: number;
  /** Exact sum of active values × 2^149, decimal. */
  sum1: string;
  /** Exact sum of squared active values × 2^298, decimal. */
  sum2: string;
  histogram: { offset: number; counts: number[] };
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

/** Count, max, exact sums and histogram of every feature. */
export class Moments {
  /** Active tokens per feature. */
  actTimes = new Float64Array(0);
  /** Largest activation per feature (0 while it has not fired). */
  max = new Float64Array(0);
  #s1hi = new Float64Array(0);
  #s1lo = new Float64Array(0);
  #s2hi = new Float64Array(0);
  #s2lo = new Float64Array(0);
  #s1rest = new Map<number, bigint>();
  #s2rest = new Map<number, bigint>();
  #hists: HistogramArena;
  readonly #accuracy: number;
  /** The histograms' bucket table (`bucketCells`). */
  readonly #cells: Int32Array;

  /** @param histogramAccuracy Relative accuracy α of the histograms. */
  constructor(histogramAccuracy: number) {
    this.#accuracy = histogramAccuracy;
    this.#hists = new HistogramArena(0, histogramAccuracy);
    this.#cells = bucketCells(this.#hists.logGamma);
  }

  /** Allocates `dSae` empty features. */
  resize(dSae: number): void {
    this.actTimes = new Float64Array(dSae);
    this.max = new Float64Array(dSae);
    this.#s1hi = new Float64Array(dSae);
    this.#s1lo = new Float64Array(dSae);
    this.#s2hi = new Float64Array(dSae);
    this.#s2lo = new Float64Array(dSae);
    this.#hists = new HistogramArena(dSae, this.#accuracy);
  }

  /** Bytes held by the histograms. */
  get histogramBytes(): number {
    return this.#hists.byteLength;
  }

  /**
   * Adds every entry of feature `f`'s pairs `pairs.order[from, to)`.
   *
   * @returns Whether the feature's max grew.
   */
  add(f: number, pairs: BatchPairs, from: number, to: number): boolean {
    const { order, count: pairCnt, peak: pairPeak, head: pairHead, next, value, valueBits } = pairs;
    const hists = this.#hists;
    const logGamma = hists.logGamma;
    const cells = this.#cells;
    const s1hi = this.#s1hi;
    const s1lo = this.#s1lo;
    const s1rest = this.#s1rest;
    const s2hi = this.#s2hi;
    const s2lo = this.#s2lo;
    const s2rest = this.#s2rest;
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
    this.actTimes[f]! += count;
    if (peakMax > this.max[f]!) {
      this.max[f] = peakMax;
      return true;
    }
    return false;
  }

  /** Adds feature `f` of `other` (same options, disjoint data) to this one. */
  merge(f: number, other: Moments): void {
    this.actTimes[f]! += other.actTimes[f]!;
    this.max[f] = Math.max(this.max[f]!, other.max[f]!);
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
    if (other.#hists.len[f]! > 0) this.#hists.merge(f, other.#hists.histogram(f));
  }

  /** Feature `f`'s moments as saved. */
  toJSON(f: number): MomentsJSON {
    const h = this.#hists.histogram(f);
    return {
      actTimes: this.actTimes[f]!,
      max: this.max[f]!,
      sum1: exactSum(this.#s1hi, this.#s1lo, this.#s1rest, f, SCALE1).toString(),
      sum2: exactSum(this.#s2hi, this.#s2lo, this.#s2rest, f, SCALE2).toString(),
      histogram: { offset: h.index_offset, counts: Array.from(h.counts) },
    };
  }

  /** Restores feature `f` (empty until now) from its saved moments. */
  restore(f: number, json: MomentsJSON): void {
    this.actTimes[f] = json.actTimes;
    this.max[f] = json.max;
    this.#s1rest.set(f, BigInt(json.sum1));
    this.#s2rest.set(f, BigInt(json.sum2));
    this.#hists.merge(f, {
      relative_accuracy: this.#accuracy,
      index_offset: json.histogram.offset,
      counts: Float64Array.from(json.histogram.counts),
    });
  }

  /**
   * Feature `f`'s statistics (`act_times`, max, mean, std, histogram, quantiles); a feature that
   * never fired has zeros, an empty histogram and no quantiles.
   */
  analysis(
    f: number,
    alive: boolean,
    quantiles: readonly number[],
  ): Omit<FeatureAnalysis, "samplings" | "n_analyzed_tokens"> {
    const n = this.actTimes[f]!;
    if (n === 0 || !alive) {
      return {
        act_times: 0,
        max_activation: 0,
        mean: 0,
        std: 0,
        histogram: {
          relative_accuracy: this.#accuracy,
          index_offset: 0,
          counts: new Float64Array(0),
        },
        quantiles: [],
      };
    }
    const s1 = exactSum(this.#s1hi, this.#s1lo, this.#s1rest, f, SCALE1);
    const s2 = exactSum(this.#s2hi, this.#s2lo, this.#s2rest, f, SCALE2);
    const mean = Number(s1) / SCALE1 / n;
    const numerator = BigInt(n) * s2 - s1 * s1;
    const variance = Math.max(0, Number(numerator) / SCALE2 / n / n);
    const max = this.max[f]!;
    const histogram: LogHistogram = this.#hists.histogram(f);
    const q: Quantile[] = quantiles.map((q) => ({
      q,
      value: Math.min(max, logHistogramQuantile(histogram, q)),
    }));
    return {
      act_times: n,
      max_activation: max,
      mean,
      std: Math.sqrt(variance),
      histogram,
      quantiles: q,
    };
  }
}
