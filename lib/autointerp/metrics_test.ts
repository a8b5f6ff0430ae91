import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { confusion, pearson, scoreMetrics } from "./metrics.ts";

const close = (a: number, b: number) => Math.abs(a - b) < 1e-12;

Deno.test("scoreMetrics() matches hand-computed values for confusion matrices", async (t) => {
  // Each row computed by hand: accuracy = (tp+tn)/n, precision = tp/(tp+fp), recall = tp/(tp+fn),
  // f1 = 2pr/(p+r), balanced = (tp/(tp+fn) + tn/(tn+fp)) / 2.
  const cases = [
    { c: { tp: 5, fp: 1, tn: 4, fn: 0 }, acc: 0.9, p: 5 / 6, r: 1, f1: 10 / 11, bal: 0.9 },
    { c: { tp: 3, fp: 1, tn: 4, fn: 2 }, acc: 0.7, p: 0.75, r: 0.6, f1: 2 / 3, bal: 0.7 },
    { c: { tp: 2, fp: 3, tn: 1, fn: 4 }, acc: 0.3, p: 0.4, r: 1 / 3, f1: 4 / 11, bal: 7 / 24 },
    { c: { tp: 5, fp: 0, tn: 2, fn: 0 }, acc: 1, p: 1, r: 1, f1: 1, bal: 1 },
    { c: { tp: 0, fp: 5, tn: 0, fn: 5 }, acc: 0, p: 0, r: 0, f1: 0, bal: 0 },
    { c: { tp: 4, fp: 0, tn: 0, fn: 1 }, acc: 0.8, p: 1, r: 0.8, f1: 8 / 9, bal: 0.8 }, // no negatives
    { c: { tp: 0, fp: 1, tn: 3, fn: 0 }, acc: 0.75, p: 0, r: 0, f1: 0, bal: 0.75 }, // no positives
    { c: { tp: 0, fp: 0, tn: 0, fn: 0 }, acc: 0, p: 0, r: 0, f1: 0, bal: 0 }, // nothing
  ];
  for (const k of cases) {
    await t.step(`tp=${k.c.tp} fp=${k.c.fp} tn=${k.c.tn} fn=${k.c.fn}`, () => {
      const m = scoreMetrics(k.c);
      for (
        const [name, got, want] of [
          ["accuracy", m.accuracy, k.acc],
          ["precision", m.precision, k.p],
          ["recall", m.recall, k.r],
          ["f1", m.f1, k.f1],
          ["balanced_accuracy", m.balanced_accuracy, k.bal],
        ] as const
      ) {
        if (!close(got, want)) throw new Error(`${name}: got ${got}, want ${want}`);
      }
      assertEquals([m.tp, m.fp, m.tn, m.fn], [k.c.tp, k.c.fp, k.c.tn, k.c.fn]);
    });
  }
});

Deno.test("confusion() counts each cell and rejects mismatched lengths", () => {
  const truth = [true, true, true, false, false, false, false];
  const pred = [true, false, true, true, false, false, true];
  assertEquals(confusion(truth, pred), { tp: 2, fp: 2, tn: 2, fn: 1 });
  assertThrows(() => confusion([true], []), {
    name: "RangeError",
    message: "Cannot compare 0 predictions with 1 labels: lengths differ",
  });
});

Deno.test("pearson() is 1 for a linear relation, -1 inverted, 0 for a constant series", () => {
  assertEquals(close(pearson([0, 1, 2, 3], [1, 3, 5, 7]), 1), true);
  assertEquals(close(pearson([0, 1, 2], [2, 1, 0]), -1), true);
  assertEquals(pearson([2, 2, 2], [1, 5, 9]), 0);
  assertEquals(pearson([], []), 0);
});
