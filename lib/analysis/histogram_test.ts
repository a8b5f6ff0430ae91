import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { LogHistogramBuilder, logHistogramQuantile, mergeLogHistograms } from "./histogram.ts";
import { rng } from "./_test_util.ts";

const QS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];

Deno.test("LogHistogramBuilder quantiles are within the relative accuracy on known distributions", async (t) => {
  const r = rng(12);
  const draws: [string, () => number][] = [
    ["uniform (0, 10]", () => 10 * (1 - r())],
    ["exponential", () => -Math.log(1 - r())],
    [
      "log-normal spanning decades",
      () => Math.exp(4 * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())),
    ],
  ];
  for (const alpha of [0.01, 0.05]) {
    for (const [name, draw] of draws) {
      await t.step(`${name}, α = ${alpha}`, () => {
        const h = new LogHistogramBuilder(alpha);
        const values = Array.from({ length: 20000 }, () => Math.fround(draw()));
        for (const v of values) h.add(v);
        values.sort((a, b) => a - b);
        assertEquals(h.count, 20000);
        for (const q of QS) {
          const exact = values[Math.floor(q * (values.length - 1))]!;
          const got = h.quantile(q);
          assert(Math.abs(got - exact) <= alpha * exact * (1 + 1e-9), `q${q}: ${got} vs ${exact}`);
        }
      });
    }
  }
});

Deno.test("LogHistogramBuilder places a value in the bucket (γ^(i-1), γ^i]", () => {
  const h = new LogHistogramBuilder(0.01);
  const gamma = 1.01 / 0.99;
  for (const v of [1e-6, 0.3, 1, 2.5, 1e6]) {
    const i = h.index(v);
    assert(
      Math.pow(gamma, i - 1) < v * (1 + 1e-12) && v <= Math.pow(gamma, i) * (1 + 1e-12),
      `${v}`,
    );
  }
  h.add(1);
  const one = h.toLogHistogram();
  assertEquals([one.index_offset, Array.from(one.counts)], [0, [1]]);
});

Deno.test("mergeLogHistograms equals adding every value to one histogram", () => {
  const r = rng(3);
  const a = new LogHistogramBuilder(0.02);
  const b = new LogHistogramBuilder(0.02);
  const all = new LogHistogramBuilder(0.02);
  for (let i = 0; i < 3000; i++) {
    const v = Math.exp(6 * r() - 3);
    (i % 3 ? a : b).add(v);
    all.add(v);
  }
  assertEquals(mergeLogHistograms(a.toLogHistogram(), b.toLogHistogram()), all.toLogHistogram());
  a.merge(b);
  assertEquals(a.toLogHistogram(), all.toLogHistogram());
  assertEquals(
    LogHistogramBuilder.from(all.toLogHistogram()).toLogHistogram(),
    all.toLogHistogram(),
  );
});

Deno.test("LogHistogramBuilder is empty until a value is added, and refuses bad input", () => {
  const h = new LogHistogramBuilder(0.01);
  assertEquals(h.toLogHistogram(), {
    relative_accuracy: 0.01,
    index_offset: 0,
    counts: new Float64Array(0),
  });
  assertEquals(h.quantile(0.5), 0);
  throws(
    () => h.add(0),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message === "Cannot add 0 to a log histogram: values must be positive",
  );
  throws(() => new LogHistogramBuilder(1), (e: unknown) =>
    e instanceof RangeError &&
    e.message === "Cannot create a histogram: relative accuracy must be in (0, 1), got 1");
  throws(() => h.merge(new LogHistogramBuilder(0.02)), (e: unknown) =>
    e instanceof RangeError &&
    e.message === "Cannot merge histograms: relative accuracy 0.02 differs from 0.01");
  throws(
    () => logHistogramQuantile(h.toLogHistogram(), 2),
    (e: unknown) =>
      e instanceof RangeError && e.message === "Cannot take quantile 2: expected [0, 1]",
  );
});
