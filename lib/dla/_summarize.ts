/**
 * Per-feature reduction of one row of logits: the top-k most positive and most negative tokens
 * (partial selection, one pass), the mean over the vocabulary for centering, and an equal-width
 * histogram (a second pass). The row is never sorted or copied.
 *
 * Centering subtracts the same number from every logit, so it changes neither the order nor the
 * histogram counts: it is applied to the selected values and to the histogram edges only.
 *
 * @module
 */
import type { FeatureLogits, TokenLogit } from "../types.ts";

/** What a row is reduced with. */
export interface SummarizeSettings {
  /** Tokens kept on each side. */
  topK: number;
  /** Histogram bins. */
  bins: number;
  /** Subtract the mean over the vocabulary. */
  center: boolean;
  /** Display strings by token id (missing ones become `""`). */
  vocab: readonly string[] | undefined;
}

/**
 * Reduces `logits[offset, offset + vocab)`.
 *
 * @throws {RangeError} when the row holds a NaN or an infinity.
 */
export function summarizeRow(
  logits: Float32Array,
  offset: number,
  vocabSize: number,
  settings: SummarizeSettings,
): FeatureLogits {
  const k = settings.topK;
  const pos = new Selection(k, 1);
  const neg = new Selection(k, -1);
  let sum = 0;
  const end = offset + vocabSize;
  // Until 2k values are seen, a value may enter both selections; after that the k-th largest is
  // ≥ the k-th smallest, so a value enters at most one and the hot loop tests one side at a time.
  const warm = Math.min(end, offset + 2 * k);
  let i = offset;
  for (; i < warm; i++) {
    const v = logits[i]!;
    sum += v;
    if (v > pos.threshold || pos.size < k) pos.insert(v, i - offset);
    if (v < neg.threshold || neg.size < k) neg.insert(v, i - offset);
  }
  let posThr = pos.threshold;
  let negThr = neg.threshold;
  // The inner loop only adds and compares (no call in it, which keeps it several times faster);
  // it stops at a value that enters a selection.
  while (i < end) {
    let v = 0;
    for (; i < end; i++) {
      v = logits[i]!;
      sum += v;
      if (v > posThr || v < negThr) break;
    }
    if (i >= end) break;
    if (v > posThr) posThr = pos.insert(v, i - offset);
    else negThr = neg.insert(v, i - offset);
    i++;
  }
  if (!Number.isFinite(sum)) {
    throw new RangeError(`the logits hold ${Number.isNaN(sum) ? "NaN" : "an infinity"}`);
  }
  const shift = settings.center ? sum / vocabSize : 0;
  // The extremes are the first entries of the two selections (k ≥ 1).
  const histogram = histogramOf(
    logits,
    offset,
    end,
    neg.values[0]!,
    pos.values[0]!,
    settings.bins,
    shift,
  );
  const vocab = settings.vocab;
  const entries = (sel: Selection): TokenLogit[] =>
    Array.from({ length: sel.size }, (_, j) => {
      const id = sel.ids[j]!;
      return { token: vocab?.[id] ?? "", id, logit: sel.values[j]! - shift };
    });
  return { top_positive: entries(pos), top_negative: entries(neg), histogram };
}

/**
 * The k best values seen, best first (largest for `sign` 1, smallest for −1). Ties keep the
 * earlier (lower) id first: values are offered in id order and only strictly better ones move up.
 */
class Selection {
  readonly values: Float64Array;
  readonly ids: Int32Array;
  size = 0;
  /** The value a newcomer must beat once full (the k-th best); ±Infinity until then. */
  threshold: number;
  readonly #k: number;
  readonly #sign: number;

  constructor(k: number, sign: 1 | -1) {
    this.values = new Float64Array(k);
    this.ids = new Int32Array(k);
    this.#k = k;
    this.#sign = sign;
    this.threshold = sign > 0 ? -Infinity : Infinity;
  }

  /** Inserts a value that beats the threshold (or while not full); returns the new threshold. */
  insert(v: number, id: number): number {
    const { values, ids } = this;
    const s = this.#sign;
    let j = this.size < this.#k ? this.size++ : this.#k - 1;
    while (j > 0 && (values[j - 1]! - v) * s < 0) {
      values[j] = values[j - 1]!;
      ids[j] = ids[j - 1]!;
      j--;
    }
    values[j] = v;
    ids[j] = id;
    if (this.size === this.#k) this.threshold = values[this.#k - 1]!;
    return this.threshold;
  }
}

/**
 * Equal-width bins over [min, max] (the last bin closed, as numpy does; a constant row gets the
 * range [v − 0.5, v + 0.5]), with edges shifted by `-shift`.
 */
function histogramOf(
  logits: Float32Array,
  start: number,
  end: number,
  min: number,
  max: number,
  bins: number,
  shift: number,
): { edges: Float64Array; counts: Float64Array } {
  let lo = min;
  let hi = max;
  if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  const width = (hi - lo) / bins;
  const scale = bins / (hi - lo);
  const counts = new Int32Array(bins);
  const last = bins - 1;
  for (let i = start; i < end; i++) {
    let b = ((logits[i]! - lo) * scale) | 0;
    if (b > last) b = last;
    counts[b]!++;
  }
  const edges = new Float64Array(bins + 1);
  for (let b = 0; b <= bins; b++) edges[b] = (b === bins ? hi : lo + b * width) - shift;
  return { edges, counts: Float64Array.from(counts) };
}
