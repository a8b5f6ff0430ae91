/**
 * The log-bucket histograms of every feature in one flat arena (same buckets and output as
 * `LogHistogramBuilder`, see `histogram.ts`): feature `f` owns the counts of buckets
 * `[base[f], base[f] + len[f])` at `counts[off[f]...]`. A block that must grow moves to the end of
 * the arena; when the arena is full, live blocks are copied into a new one in feature order, so
 * that a batch, which visits features in index order, reads the arena front to back.
 *
 * @module
 */

import type { LogHistogram } from "../types.ts";
import { forEachCount } from "./histogram.ts";

/** Buckets given to a feature's first block. */
const FIRST_BLOCK = 32;

/** The histograms of `n` features over one flat `Float64Array`. */
export class HistogramArena {
  /** The relative accuracy α. */
  readonly relativeAccuracy: number;
  /** `ln γ`: value `v` falls in bucket `ceil(ln v / ln γ)`. */
  readonly logGamma: number;
  counts = new Float64Array(0);
  readonly off: Int32Array;
  readonly len: Int32Array;
  readonly base: Float64Array;
  #top = 0;
  #live = 0;

  /**
   * An arena of `n` empty histograms.
   *
   * @param n Number of features.
   * @param relativeAccuracy α in (0, 1).
   */
  constructor(n: number, relativeAccuracy: number) {
    this.relativeAccuracy = relativeAccuracy;
    this.logGamma = Math.log((1 + relativeAccuracy) / (1 - relativeAccuracy));
    this.off = new Int32Array(n);
    this.len = new Int32Array(n);
    this.base = new Float64Array(n);
  }

  /** Adds a positive finite value to feature `f`. */
  add(f: number, value: number): void {
    const i = Math.ceil(Math.log(value) / this.logGamma);
    const j = i - this.base[f]!;
    if (j >= 0 && j < this.len[f]!) this.counts[this.off[f]! + j]!++;
    else this.addIndex(f, i, 1);
  }

  /** Adds `count` to bucket `i` of feature `f`. */
  addIndex(f: number, i: number, count: number): void {
    const len = this.len[f]!;
    const base = this.base[f]!;
    if (len === 0) {
      const off = this.#alloc(FIRST_BLOCK);
      this.off[f] = off;
      this.len[f] = FIRST_BLOCK;
      this.base[f] = i - (FIRST_BLOCK >> 1);
    } else if (i < base || i >= base + len) {
      const lo = Math.min(i, base);
      const hi = Math.max(i + 1, base + len);
      const slack = Math.max(16, hi - lo);
      const newLo = i < base ? lo - slack : lo;
      const newHi = i >= base + len ? hi + slack : hi;
      const n = newHi - newLo;
      const off = this.#alloc(n);
      const from = this.off[f]!; // read after #alloc, which may compact
      const counts = this.counts;
      for (let j = 0; j < len; j++) counts[off + base - newLo + j] = counts[from + j]!;
      this.#live -= len;
      this.off[f] = off;
      this.len[f] = n;
      this.base[f] = newLo;
    }
    this.counts[this.off[f]! + i - this.base[f]!]! += count;
  }

  /** A zeroed block of `n` counts at the end of the arena (compacting it when full). */
  #alloc(n: number): number {
    if (this.#top + n > this.counts.length) {
      // Twice the live counts: room for the blocks that move as features widen, so that
      // compactions (each a copy of every live block) stay few as the arena fills.
      const size = Math.max(2 * (this.#live + n), 1 << 16);
      const next = new Float64Array(size);
      let top = 0;
      const { off, len, counts } = this;
      for (let f = 0; f < len.length; f++) {
        const l = len[f]!;
        if (l === 0) continue;
        const o = off[f]!;
        next.set(counts.subarray(o, o + l), top);
        off[f] = top;
        top += l;
      }
      this.counts = next;
      this.#top = top;
    }
    const at = this.#top;
    this.#top += n;
    this.#live += n;
    return at;
  }

  /** Adds every count of a {@linkcode LogHistogram} with the same α to feature `f`. */
  merge(f: number, h: LogHistogram): void {
    forEachCount(h, this.relativeAccuracy, (i, c) => this.addIndex(f, i, c));
  }

  /** Feature `f`'s histogram, trimmed to its non-empty buckets (a copy). */
  histogram(f: number): LogHistogram {
    const o = this.off[f]!;
    let a = 0;
    let b = this.len[f]!;
    while (a < b && this.counts[o + a] === 0) a++;
    while (b > a && this.counts[o + b - 1] === 0) b--;
    return {
      relative_accuracy: this.relativeAccuracy,
      index_offset: a < b ? this.base[f]! + a : 0,
      counts: this.counts.slice(o + a, o + b),
    };
  }

  /** Bytes held. */
  get byteLength(): number {
    return this.counts.byteLength + this.off.byteLength + this.len.byteLength +
      this.base.byteLength;
  }
}

/** Mantissa bits of a float32 that select a cell of {@linkcode bucketCells}. */
const CELL_BITS = 11;
/** `bits >>> CELL_SHIFT` is the cell of a positive float32 with bit pattern `bits`. */
export const CELL_SHIFT = 23 - CELL_BITS;
/** Added to a bucket index in the cell table; entries below 2 are "not filled" and "mixed". */
export const CELL_BIAS = 2 ** 30;
const cellTables = new Map<string, Int32Array>();

/**
 * The bucket table of `ln γ`, shared by every arena with that γ, filled lazily by
 * {@linkcode fillBucketCell}: cell `bits >>> CELL_SHIFT` of the positive float32s holds
 * `CELL_BIAS + ceil(ln v / ln γ)` (`floor` with `floor`) when that is the same for every `v` of
 * the cell (with a margin far above the rounding error of `Math.log`), 1 when it is not, 0 until
 * filled.
 */
export function bucketCells(logGamma: number, floor = false): Int32Array {
  const name = `${logGamma}${floor ? "f" : "c"}`;
  let t = cellTables.get(name);
  if (t === undefined) {
    t = new Int32Array(1 << (31 - CELL_SHIFT));
    cellTables.set(name, t);
  }
  return t;
}

const cellF32 = new Float32Array(1);
const cellI32 = new Int32Array(cellF32.buffer);

/** Fills cell `cell` of a {@linkcode bucketCells} table; returns its entry. */
export function fillBucketCell(
  table: Int32Array,
  cell: number,
  logGamma: number,
  floor = false,
): number {
  cellI32[0] = cell << CELL_SHIFT;
  const lo = cellF32[0]!;
  cellI32[0] = ((cell + 1) << CELL_SHIFT) - 1;
  const hi = cellF32[0]!;
  let entry = 1;
  if (lo > 0 && hi < Infinity) {
    const yl = Math.log(lo) / logGamma;
    const yh = Math.log(hi) / logGamma;
    const m = 1e-9 * (1 + Math.abs(yl) + Math.abs(yh));
    const round = floor ? Math.floor : Math.ceil;
    const b = round(yl - m);
    if (b === round(yh + m) && b > 2 - CELL_BIAS && b < CELL_BIAS - 1) entry = b + CELL_BIAS;
  }
  table[cell] = entry;
  return entry;
}
