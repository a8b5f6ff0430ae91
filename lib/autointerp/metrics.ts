/**
 * Scoring metrics from a binary confusion matrix.
 *
 * Conventions for empty denominators (documented, and unit-tested):
 * - accuracy of zero examples is 0;
 * - precision with no predicted positives (tp + fp = 0) is 0, recall with no actual positives
 *   (tp + fn = 0) is 0, and F1 is 0 when precision + recall = 0 (scikit-learn's
 *   `zero_division=0`);
 * - balanced accuracy is the mean recall over the classes *present in the truth*: with both
 *   classes it is (TPR + TNR) / 2, with one class it is that class's recall, with none it is 0.
 *   So a scorer that saw only activating examples is judged on those alone, not halved.
 *
 * @module
 */

import type { ScoreMetrics } from "../types.ts";

/** Counts of a binary confusion matrix. */
export interface Confusion {
  /** Actual positive, predicted positive. */
  tp: number;
  /** Actual negative, predicted positive. */
  fp: number;
  /** Actual negative, predicted negative. */
  tn: number;
  /** Actual positive, predicted negative. */
  fn: number;
}

/**
 * Counts the confusion matrix of `predicted` against `truth`.
 *
 * @param truth Actual labels.
 * @param predicted Predicted labels, the same length.
 * @returns The counts.
 * @throws {RangeError} When the lengths differ.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { confusion } from "./metrics.ts";
 * const c = confusion([true, true, false, false], [true, false, true, false]);
 * assert.equal(c.tp, 1);
 * assert.equal(c.fn, 1);
 * assert.equal(c.fp, 1);
 * assert.equal(c.tn, 1);
 * ```
 */
export function confusion(truth: readonly boolean[], predicted: readonly boolean[]): Confusion {
  if (truth.length !== predicted.length) {
    throw new RangeError(
      `Cannot compare ${predicted.length} predictions with ${truth.length} labels: lengths differ`,
    );
  }
  const c: Confusion = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (let i = 0; i < truth.length; i++) {
    if (truth[i]) predicted[i] ? c.tp++ : c.fn++;
    else predicted[i] ? c.fp++ : c.tn++;
  }
  return c;
}

/**
 * Accuracy, precision, recall, F1 and balanced accuracy of a confusion matrix, with the counts.
 *
 * @param c The confusion matrix.
 * @returns The metrics (see the module doc for the 0/0 conventions).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { scoreMetrics } from "./metrics.ts";
 * const m = scoreMetrics({ tp: 3, fp: 1, tn: 4, fn: 2 });
 * assert.equal(m.accuracy, 0.7);
 * assert.equal(m.precision, 0.75);
 * assert.equal(m.recall, 0.6);
 * assert(Math.abs(m.balanced_accuracy - 0.7) < 1e-12);
 * ```
 */
export function scoreMetrics(c: Confusion): ScoreMetrics {
  const n = c.tp + c.fp + c.tn + c.fn;
  const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
  const precision = ratio(c.tp, c.tp + c.fp);
  const recall = ratio(c.tp, c.tp + c.fn);
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  const classRecalls: number[] = [];
  if (c.tp + c.fn > 0) classRecalls.push(c.tp / (c.tp + c.fn));
  if (c.tn + c.fp > 0) classRecalls.push(c.tn / (c.tn + c.fp));
  const balanced = classRecalls.length === 0
    ? 0
    : classRecalls.reduce((a, b) => a + b, 0) / classRecalls.length;
  return {
    accuracy: ratio(c.tp + c.tn, n),
    precision,
    recall,
    f1,
    balanced_accuracy: balanced,
    tp: c.tp,
    fp: c.fp,
    tn: c.tn,
    fn: c.fn,
  };
}

/**
 * Pearson correlation of two equally long series; 0 when either is constant or empty.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pearson } from "./metrics.ts";
 * assert(Math.abs(pearson([1, 2, 3], [2, 4, 6]) - 1) < 1e-12);
 * assert.equal(pearson([1, 1, 1], [1, 2, 3]), 0);
 * ```
 */
export function pearson(x: readonly number[], y: readonly number[]): number {
  if (x.length !== y.length) {
    throw new RangeError(`Cannot correlate series of lengths ${x.length} and ${y.length}`);
  }
  const n = x.length;
  if (n === 0) return 0;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx, dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? 0 : sxy / Math.sqrt(sxx * syy);
}
