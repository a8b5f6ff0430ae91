/**
 * A mergeable log-bucket histogram of positive values (DDSketch-style): bucket `i` covers
 * `(γ^(i-1), γ^i]` with `γ = (1+α)/(1-α)`, so every value is within `α·x` of its bucket's
 * representative `2γ^i/(γ+1)`. Two histograms with the same α merge by adding counts, which
 * gives exactly the histogram of the union.
 *
 * @module
 */

import type { LogHistogram } from "../types.ts";

/** `γ` for a relative accuracy α. */
function gammaOf(alpha: number): number {
  return (1 + alpha) / (1 - alpha);
}

/**
 * A growable {@linkcode LogHistogram} builder.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LogHistogramBuilder } from "./histogram.ts";
 * const h = new LogHistogramBuilder(0.01);
 * for (let i = 1; i <= 1000; i++) h.add(i);
 * const median = h.quantile(0.5);
 * assert(Math.abs(median - 500) <= 0.01 * 500 + 1e-9);
 * ```
 */
export class LogHistogramBuilder {
  /** The relative accuracy α. */
  readonly relativeAccuracy: number;
  readonly #gamma: number;
  readonly #logGamma: number;
  #offset = 0;
  #counts = new Float64Array(0);
  #total = 0;

  /**
   * Creates an empty histogram.
   *
   * @param relativeAccuracy The relative accuracy α in (0, 1).
   */
  constructor(relativeAccuracy: number) {
    if (!(relativeAccuracy > 0 && relativeAccuracy < 1)) {
      throw new RangeError(
        `Cannot create a histogram: relative accuracy must be in (0, 1), got ${relativeAccuracy}`,
      );
    }
    this.relativeAccuracy = relativeAccuracy;
    this.#gamma = gammaOf(relativeAccuracy);
    this.#logGamma = Math.log(this.#gamma);
  }

  /** Number of values added. */
  get count(): number {
    return this.#total;
  }

  /**
   * The bucket index of a positive value: `ceil(log_γ(value))`.
   *
   * @param value A positive finite number.
   * @returns The index `i` such that `value` lies in `(γ^(i-1), γ^i]` (up to rounding).
   */
  index(value: number): number {
    return Math.ceil(Math.log(value) / this.#logGamma);
  }

  /**
   * Adds a positive value (`count` times).
   *
   * @param value A positive finite number.
   * @param count How many times; default 1.
   */
  add(value: number, count = 1): void {
    if (!(value > 0 && value < Infinity)) {
      throw new RangeError(`Cannot add ${value} to a log histogram: values must be positive`);
    }
    const i = Math.ceil(Math.log(value) / this.#logGamma);
    const counts = this.#counts;
    const j = i - this.#offset;
    if (j >= 0 && j < counts.length) {
      counts[j]! += count;
      this.#total += count;
    } else this.addIndex(i, count);
  }

  /**
   * Adds `count` to bucket `i`.
   *
   * @param i The bucket index.
   * @param count How much to add.
   */
  addIndex(i: number, count: number): void {
    if (this.#counts.length === 0) {
      this.#counts = new Float64Array(8);
      this.#offset = i - 4;
    }
    if (i < this.#offset || i >= this.#offset + this.#counts.length) this.#grow(i);
    this.#counts[i - this.#offset]! += count;
    this.#total += count;
  }

  #grow(i: number): void {
    const lo = Math.min(i, this.#offset);
    const hi = Math.max(i + 1, this.#offset + this.#counts.length);
    const slack = Math.max(8, (hi - lo) >> 1);
    const newLo = i < this.#offset ? lo - slack : lo;
    const newHi = i >= this.#offset + this.#counts.length ? hi + slack : hi;
    const next = new Float64Array(newHi - newLo);
    next.set(this.#counts, this.#offset - newLo);
    this.#counts = next;
    this.#offset = newLo;
  }

  /**
   * Adds every count of another histogram with the same relative accuracy.
   *
   * @param other A builder or a {@linkcode LogHistogram}.
   */
  merge(other: LogHistogramBuilder | LogHistogram): void {
    const h = other instanceof LogHistogramBuilder ? other.toLogHistogram() : other;
    forEachCount(h, this.relativeAccuracy, (i, c) => this.addIndex(i, c));
  }

  /**
   * The value at quantile `q` (DDSketch's rule: the bucket holding rank `q·(n-1)`), or 0 when
   * the histogram is empty.
   *
   * @param q The probability in [0, 1].
   * @returns The bucket's representative `2γ^i/(γ+1)`.
   */
  quantile(q: number): number {
    return logHistogramQuantile(this.toLogHistogram(), q);
  }

  /**
   * A copy trimmed to the non-empty buckets (`counts` empty and `index_offset` 0 when empty).
   *
   * @returns The histogram record.
   */
  toLogHistogram(): LogHistogram {
    let a = 0;
    let b = this.#counts.length;
    while (a < b && this.#counts[a] === 0) a++;
    while (b > a && this.#counts[b - 1] === 0) b--;
    return {
      relative_accuracy: this.relativeAccuracy,
      index_offset: a < b ? this.#offset + a : 0,
      counts: this.#counts.slice(a, b),
    };
  }

  /**
   * A builder holding the counts of a {@linkcode LogHistogram}.
   *
   * @param h The histogram.
   * @returns A new builder.
   */
  static from(h: LogHistogram): LogHistogramBuilder {
    const b = new LogHistogramBuilder(h.relative_accuracy);
    b.merge(h);
    return b;
  }
}

/**
 * The value at quantile `q` of a {@linkcode LogHistogram}: the representative `2γ^i/(γ+1)` of the
 * bucket holding rank `q·(n-1)` (0-based), which is within relative accuracy α of the exact
 * order statistic of that rank. Returns 0 for an empty histogram.
 *
 * @param h The histogram.
 * @param q The probability in [0, 1].
 * @returns The estimated value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { logHistogramQuantile } from "./histogram.ts";
 * const h = { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array([3]) };
 * assert(Math.abs(logHistogramQuantile(h, 0.5) - 1) <= 0.01);
 * ```
 */
export function logHistogramQuantile(h: LogHistogram, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`Cannot take quantile ${q}: expected [0, 1]`);
  let total = 0;
  for (let j = 0; j < h.counts.length; j++) total += h.counts[j]!;
  if (total === 0) return 0;
  const rank = q * (total - 1);
  let seen = 0;
  let j = 0;
  for (; j < h.counts.length; j++) {
    seen += h.counts[j]!;
    if (seen > rank) break;
  }
  if (j === h.counts.length) j = h.counts.length - 1;
  const gamma = gammaOf(h.relative_accuracy);
  return (2 * Math.pow(gamma, h.index_offset + j)) / (gamma + 1);
}

/**
 * Calls `add(bucket, count)` for every non-empty bucket of `h`, after checking that its relative
 * accuracy is `relativeAccuracy` (the check and walk of every histogram merge).
 *
 * @param h A histogram.
 * @param relativeAccuracy The α the counts are merged into.
 * @param add Receives each bucket index and its count.
 * @throws {RangeError} When the relative accuracies differ.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { forEachCount } from "./histogram.ts";
 * const h = { relative_accuracy: 0.01, index_offset: 3, counts: new Float64Array([2, 0, 1]) };
 * const seen: number[][] = [];
 * forEachCount(h, 0.01, (i, c) => seen.push([i, c]));
 * assert(seen.join(";") === "3,2;5,1");
 * ```
 */
export function forEachCount(
  h: LogHistogram,
  relativeAccuracy: number,
  add: (bucket: number, count: number) => void,
): void {
  if (h.relative_accuracy !== relativeAccuracy) {
    throw new RangeError(
      `Cannot merge histograms: relative accuracy ${h.relative_accuracy} differs from ` +
        `${relativeAccuracy}`,
    );
  }
  for (let j = 0; j < h.counts.length; j++) {
    const c = h.counts[j]!;
    if (c !== 0) add(h.index_offset + j, c);
  }
}

/**
 * The histogram of the union of two histograms' values (bucket-wise sum).
 *
 * @param a A histogram.
 * @param b A histogram with the same relative accuracy.
 * @returns A new trimmed histogram.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeLogHistograms } from "./histogram.ts";
 * const a = { relative_accuracy: 0.01, index_offset: 2, counts: new Float64Array([1, 2]) };
 * const b = { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array([5]) };
 * const m = mergeLogHistograms(a, b);
 * assert(m.index_offset === 0 && m.counts.join() === "5,0,1,2");
 * ```
 */
export function mergeLogHistograms(a: LogHistogram, b: LogHistogram): LogHistogram {
  const builder = LogHistogramBuilder.from(a);
  builder.merge(b);
  return builder.toLogHistogram();
}
