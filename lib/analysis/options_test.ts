import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import { resolveFeatureAnalyzerOptions } from "./options.ts";

Deno.test("resolveFeatureAnalyzerOptions gives top 20, bands at 0.8/0.6/0.4/0.2 with 10 each, 20 non-activating", () => {
  const r = resolveFeatureAnalyzerOptions();
  assertEquals(r.samplings, [
    { name: "top_activations", kind: "top", lo: 0, hi: 1, n: 20 },
    { name: "subsampling_80%", kind: "band", lo: 0.6, hi: 0.8, n: 10 },
    { name: "subsampling_60%", kind: "band", lo: 0.4, hi: 0.6, n: 10 },
    { name: "subsampling_40%", kind: "band", lo: 0.2, hi: 0.4, n: 10 },
    { name: "subsampling_20%", kind: "band", lo: 0, hi: 0.2, n: 10 },
    { name: "non_activating", kind: "non_activating", lo: 0, hi: 1, n: 20 },
  ]);
  assertEquals(
    [r.analysisName, r.windowBefore, r.windowAfter, r.seed, r.histogramAccuracy, r.limitTokens],
    ["default", 32, 32, 42, 0.01, null],
  );
  assertEquals(r.quantiles.length, 9);
});

Deno.test("resolveFeatureAnalyzerOptions accepts the Python tool's subsamples table as is", async (t) => {
  const table = {
    top_activations: { proportion: 1.0, n_samples: 20 },
    "subsampling_80%": { proportion: 0.8, n_samples: 10 },
    "subsampling_40%": { proportion: 0.4, n_samples: 10 },
    non_activating: { proportion: 0.3, n_samples: 15, max_length: 50 },
  };
  await t.step("as bands", () => {
    const r = resolveFeatureAnalyzerOptions({ subsamples: table });
    assertEquals(r.samplings.map((s) => [s.name, s.kind, s.lo, s.hi, s.n]), [
      ["top_activations", "top", 0, 1, 20],
      ["subsampling_80%", "band", 0.4, 0.8, 10],
      ["subsampling_40%", "band", 0, 0.4, 10],
      ["non_activating", "non_activating", 0, 1, 15],
    ]);
  });
  await t.step("with the Python rule; the table's sizes win over nTop/nNonActivating", () => {
    const r = resolveFeatureAnalyzerOptions({
      subsamples: table,
      subsampleRule: "python",
      nTop: 5,
      nNonActivating: 7,
    });
    assertEquals(r.samplings.map((s) => [s.name, s.kind, s.lo, s.hi, s.n]), [
      ["top_activations", "top", 0, 1, 20],
      ["subsampling_80%", "python", 0, 0.8, 10],
      ["subsampling_40%", "python", 0, 0.4, 10],
      ["non_activating", "non_activating", 0, 1, 15],
    ]);
  });
  await t.step("without a top entry, top_activations is added; size 0 drops a sampling", () => {
    const r = resolveFeatureAnalyzerOptions({
      subsamples: { half: { proportion: 0.5, n_samples: 0 } },
      nNonActivating: 0,
    });
    assertEquals(r.samplings.map((s) => s.name), ["top_activations"]);
  });
});

Deno.test("resolveFeatureAnalyzerOptions reports a bad value with its key", async (t) => {
  const cases: [string, Parameters<typeof resolveFeatureAnalyzerOptions>[0], string][] = [
    [
      "a proportion above 1",
      { subsamples: { x: { proportion: 1.5, n_samples: 3 } } },
      'analyzer.subsamples."x".proportion: expected a number in (0, 1], got 1.5',
    ],
    [
      "a fractional n_samples",
      { subsamples: { x: { proportion: 0.5, n_samples: 2.5 } } },
      'analyzer.subsamples."x".n_samples: expected a non-negative integer, got 2.5',
    ],
    [
      "an unknown key",
      { subsamples: { x: { proportion: 0.5, n_samples: 2, size: 3 } as never } },
      'analyzer.subsamples."x".size: unknown key (expected proportion, n_samples, max_length)',
    ],
    [
      "two bands with one proportion",
      {
        subsamples: { a: { proportion: 0.5, n_samples: 2 }, b: { proportion: 0.5, n_samples: 2 } },
      },
      'analyzer.subsamples: "a" and "b" have the same proportion 0.5, which would make an empty band',
    ],
    [
      "a quantile of 1",
      { quantiles: [0.5, 1] },
      "analyzer.quantiles[1]: expected a number in (0, 1), got 1",
    ],
    [
      "a negative window",
      { windowBefore: -1 },
      "analyzer.window_before: expected a non-negative integer, got -1",
    ],
    [
      "an unknown rule",
      { subsampleRule: "random" as never },
      'analyzer.subsample_rule: expected "band" or "python", got "random"',
    ],
    [
      "a zero token limit",
      { limitTokens: 0 },
      "analyzer.limit_tokens: expected a positive integer, got 0",
    ],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, () => {
      throws(
        () => resolveFeatureAnalyzerOptions(options),
        (e: unknown) => e instanceof ConfigError && e.message === message,
      );
    });
  }
});
