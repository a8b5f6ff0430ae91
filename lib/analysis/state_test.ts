import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import type { FeatureRecord } from "../types.ts";
import { AnalyzerState } from "./state.ts";
import type { FeatureAnalyzerOptions } from "./options.ts";
import {
  keyOf,
  reference,
  referenceSample,
  type Synthetic,
  synthetic,
  toBatches,
} from "./_test_util.ts";

import { analysis, byPeakThenContext, planted, rows, run } from "./_state_test_util.ts";

Deno.test("AnalyzerState finds planted features: counts, max, top order, ties to the earlier context, bands", async (t) => {
  const s = planted();
  for (const B of [10, 3]) {
    await t.step(`in batches of ${B} contexts`, () => {
      const state = run(toBatches(s, B), { nTop: 3, windowBefore: 2, windowAfter: 2 });
      const records = state.finish();
      assertEquals(records.map((r) => r.index), [0, 1, 2, 3, 4, 5]);
      assertEquals(state.nAnalyzedTokens, 70);

      const f0 = analysis(records[0]!);
      assertEquals([f0.act_times, f0.n_analyzed_tokens, f0.max_activation], [10, 70, 10]);
      assertEquals(f0.mean, 5.5);
      assert(Math.abs(f0.std - Math.sqrt(8.25)) < 1e-12);
      const names = f0.samplings.map((x) => x.name);
      assertEquals(names, [
        "top_activations",
        "subsampling_80%",
        "subsampling_60%",
        "subsampling_40%",
        "subsampling_20%",
        "non_activating",
      ]);
      const [top, b80, b60, b40, b20, non] = f0.samplings;
      assertEquals(rows(top!.samples), [9, 8, 7]);
      assertEquals(top!.samples[0], {
        tokens: Int32Array.from([900, 901, 902, 903]),
        acts: Float32Array.from([0, 10, 0, 0]),
        peak: 10,
        peak_pos: 1,
        source: "p",
        shard: 1,
        row: 9,
        offset: 0,
      });
      assertEquals(top!.band, null);
      assertEquals([b80!.band, rows(b80!.samples)], [[0.6, 0.8], [7, 6]]); // peaks 8, 7
      assertEquals([b60!.band, rows(b60!.samples)], [[0.4, 0.6], [5, 4]]); // 6, 5
      assertEquals([b40!.band, rows(b40!.samples)], [[0.2, 0.4], [3, 2]]); // 4, 3
      assertEquals([b20!.band, rows(b20!.samples)], [[0, 0.2], [1, 0]]); // 2, 1
      assertEquals(non!.samples.length, 0); // fires everywhere

      const f1 = analysis(records[1]!);
      assertEquals(rows(f1.samplings[0]!.samples), [0, 1, 2]); // all tie at 5: earliest first
      for (const band of f1.samplings.slice(1, 5)) assertEquals(band.samples, []); // all at max

      const f2 = analysis(records[2]!);
      assertEquals([f2.act_times, f2.max_activation], [10, 1]); // the masked 100 is ignored

      const f3 = analysis(records[3]!);
      assertEquals([f3.act_times, f3.max_activation, f3.std], [1, 2.5, 0]);
      assertEquals(rows(f3.samplings[0]!.samples), [7]);
      const f3non = f3.samplings.find((x) => x.name === "non_activating")!;
      assertEquals(rows(f3non.samples).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 8, 9]);
      for (const sample of f3non.samples) {
        assertEquals([sample.peak, sample.peak_pos, sample.acts.length], [0, 0, 5]);
        assertEquals(Array.from(sample.tokens), [0, 1, 2, 3, 4].map((t) => 100 * sample.row + t));
      }

      const f4 = analysis(records[4]!); // the window is clipped at the context's end
      assertEquals(f4.samplings[0]!.samples[0]!.tokens, Int32Array.from([105, 106, 107]));
      assertEquals(f4.samplings[0]!.samples[0]!.peak_pos, 2);
      assertEquals(f4.samplings[0]!.samples[0]!.offset, 5);
      assertEquals(rows(f4.samplings.at(-1)!.samples).sort((a, b) => a - b), [0, 2, 4, 6, 8]);

      const f5 = analysis(records[5]!);
      assertEquals(f5, {
        act_times: 0,
        n_analyzed_tokens: 70,
        max_activation: 0,
        mean: 0,
        std: 0,
        histogram: { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array(0) },
        quantiles: [],
        samplings: [],
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Against a slow dense reference

const REF_OPTIONS: FeatureAnalyzerOptions = {
  nTop: 5,
  subsamples: {
    top_activations: { proportion: 1, n_samples: 5 },
    high: { proportion: 0.8, n_samples: 3 },
    mid: { proportion: 0.5, n_samples: 3 },
    low: { proportion: 0.25, n_samples: 4 },
  },
  nNonActivating: 4,
  windowBefore: 3,
  windowAfter: 4,
  seed: 9,
};

function checkAgainstReference(s: Synthetic, records: FeatureRecord[], o: FeatureAnalyzerOptions) {
  const before = o.windowBefore!;
  const after = o.windowAfter!;
  let analyzedTokens = 0;
  for (const m of s.mask) analyzedTokens += m;
  const analyzedCtx: number[] = [];
  for (let c = 0; c < s.nCtx; c++) {
    if (s.mask.subarray(c * s.T, (c + 1) * s.T).some((m) => m === 1)) analyzedCtx.push(c);
  }
  let dead = 0;
  let bandsChecked = 0;
  let bandsSampled = 0;
  for (let f = 0; f < s.dSae; f++) {
    const ref = reference(s, f);
    const a = analysis(records[f]!);
    const where = `feature ${f}`;
    assertEquals(a.n_analyzed_tokens, analyzedTokens, where);
    assertEquals(a.act_times, ref.actTimes, where);
    assertEquals(a.max_activation, ref.max, where);
    assert(
      Math.abs(a.mean - ref.mean) <= 1e-6 * ref.mean,
      `${where}: mean ${a.mean} vs ${ref.mean}`,
    );
    assert(Math.abs(a.std - ref.std) <= 1e-6 * ref.mean, `${where}: std ${a.std} vs ${ref.std}`);
    let histTotal = 0;
    for (const c of a.histogram.counts) histTotal += c;
    assertEquals(histTotal, ref.actTimes, where);
    if (ref.actTimes === 0) {
      dead++;
      assertEquals(a.samplings, [], where);
      continue;
    }
    const sorted = [...ref.values].sort((x, y) => x - y);
    for (const { q, value } of a.quantiles) {
      const exact = sorted[Math.floor(q * (sorted.length - 1))]!;
      assert(Math.abs(value - exact) <= 0.01 * exact * (1 + 1e-9), `${where} q${q}`);
    }
    const sample = (c: number) => referenceSample(s, f, c, ref.peakPos[c]!, before, after);
    const firing = ref.peaks.map((p, c) => p > 0 ? c : -1).filter((c) => c >= 0);
    for (const sampling of a.samplings) {
      const w = `${where} ${sampling.name}`;
      if (sampling.name === "top_activations") {
        const want = [...firing].sort(byPeakThenContext(ref.peaks)).slice(0, 5);
        assertEquals(sampling.samples, want.map(sample), w);
      } else if (sampling.name === "non_activating") {
        const eligible = analyzedCtx.filter((c) => ref.peaks[c] === 0);
        const key = (c: number) => keyOf(s, o.seed!, -1, c);
        const want = eligible.sort((x, y) => key(x) - key(y) || x - y).slice(0, 4);
        assertEquals(
          sampling.samples,
          want.map((c) => {
            let length = 0;
            for (let t = 0; t < s.T; t++) if (s.attention[c * s.T + t]) length = t + 1;
            const stop = Math.min(before + after + 1, length);
            const origin = s.origins[c]!;
            return {
              tokens: s.tokens.slice(c * s.T, c * s.T + stop),
              acts: new Float32Array(stop),
              peak: 0,
              peak_pos: 0,
              source: origin.source,
              shard: origin.shard,
              row: origin.row,
              offset: origin.offset ?? 0,
            };
          }),
          w,
        );
        for (const x of sampling.samples) {
          assert(ref.peaks[x.row] === 0, `${w}: context ${x.row} has an active token`);
        }
      } else {
        const [lo, hi] = sampling.band!;
        const n = sampling.name === "low" ? 4 : 3;
        const eligible = firing.filter((c) =>
          ref.peaks[c]! > lo * ref.max && ref.peaks[c]! <= hi * ref.max
        );
        const key = (c: number) => keyOf(s, o.seed!, f, c);
        const want = eligible.sort((x, y) => key(x) - key(y) || x - y).slice(0, n)
          .sort(byPeakThenContext(ref.peaks));
        assertEquals(sampling.samples.length, Math.min(n, eligible.length), w);
        for (const x of sampling.samples) {
          assert(x.peak > lo * ref.max && x.peak <= hi * ref.max, `${w}: peak ${x.peak} outside`);
        }
        assertEquals(sampling.samples, want.map(sample), w);
        bandsChecked++;
        if (eligible.length > n) bandsSampled++;
      }
    }
  }
  return { dead, bandsChecked, bandsSampled };
}

Deno.test("AnalyzerState agrees with a slow dense reference on every statistic and sample", () => {
  const s = synthetic({ seed: 1, nCtx: 250, T: 16, dSae: 300, quantize: true });
  const records = run(toBatches(s, 8), REF_OPTIONS).finish();
  assertEquals(records.length, 300);
  const { dead, bandsChecked, bandsSampled } = checkAgainstReference(s, records, REF_OPTIONS);
  assert(dead >= 10, `only ${dead} dead features`);
  assert(
    bandsChecked > 700 && bandsSampled > 300,
    `${bandsChecked} bands, ${bandsSampled} sampled`,
  );
});

Deno.test("AnalyzerState keeps exact band samples with default windows and long dense streams", () => {
  // Few features, many contexts: the candidate pools are pruned many times.
  const s = synthetic({ seed: 5, nCtx: 1200, T: 12, dSae: 60 });
  const options = { ...REF_OPTIONS, windowBefore: 32, windowAfter: 32, seed: 77 };
  const state = run(toBatches(s, 16), options);
  const { bandsSampled } = checkAgainstReference(s, state.finish(), options);
  assert(bandsSampled > 100, `${bandsSampled} sampled bands`);
});

Deno.test("AnalyzerState answers bands exactly for any final max (a late larger peak moves every band)", () => {
  // Narrow bands, most values near the top: candidates must cover every possible final max.
  const s = synthetic({ seed: 11, nCtx: 1200, T: 8, dSae: 12, shape: "rising" });
  const options: FeatureAnalyzerOptions = {
    nTop: 1,
    nNonActivating: 0,
    seed: 3,
    subsamples: {
      a: { proportion: 0.9, n_samples: 5 },
      b: { proportion: 0.8, n_samples: 5 },
      c: { proportion: 0.7, n_samples: 5 },
      d: { proportion: 0.55, n_samples: 5 },
      e: { proportion: 0.5, n_samples: 5 },
    },
  };
  const saved = JSON.stringify(run(toBatches(s, 25), options));
  const refs = Array.from({ length: s.dSae }, (_, f) => reference(s, f));
  const alive = refs.map((r, f) => r.actTimes ? f : -1).filter((f) => f >= 0);
  let checked = 0;
  for (let factor = 1; factor < 2.2; factor *= 1.07) {
    const state = AnalyzerState.fromJSON(JSON.parse(saved));
    state.add({
      batchSize: 1,
      contextSize: 2,
      dSae: s.dSae,
      tokens: new Int32Array(2),
      mask: Uint8Array.from([0, 1]),
      attention: Uint8Array.from([1, 1]),
      origins: [{ source: "late", shard: 0, row: 0 }],
      position: new Int32Array(alive.length).fill(1),
      feature: Int32Array.from(alive),
      value: Float32Array.from(alive.map((f) => refs[f]!.max * factor)),
    });
    const records = state.finish();
    for (const f of alive) {
      const a = analysis(records[f]!);
      const max = a.max_activation;
      for (const sampling of a.samplings) {
        if (sampling.band === null) continue;
        const [lo, hi] = sampling.band;
        const eligible = refs[f]!.peaks
          .map((p, c) => p > lo * max && p <= hi * max ? c : -1)
          .filter((c) => c >= 0);
        const key = (c: number) => keyOf(s, 3, f, c);
        const want = eligible.sort((x, y) => key(x) - key(y)).slice(0, 5).sort((x, y) => x - y);
        assertEquals(rows(sampling.samples).sort((x, y) => x - y), want, `${f} ${sampling.name}`);
        checked++;
      }
    }
  }
  assert(checked > 500);
});

// ---------------------------------------------------------------------------------------------
// Merge and serialization

Deno.test("AnalyzerState.merge of parts equals one run over all, whatever the split", async (t) => {
  const s = synthetic({ seed: 2, nCtx: 180, T: 12, dSae: 120 });
  const batches = toBatches(s, 6);
  const whole = run(batches, REF_OPTIONS).finish();
  const part = (a: number, b: number) => run(batches.slice(a, b), REF_OPTIONS);
  const n = batches.length;
  await t.step("two halves", () => {
    assertEquals(part(0, 15).merge(part(15, n)).finish(), whole);
  });
  await t.step("three parts, merged left to right and right to left", () => {
    assertEquals(part(0, 7).merge(part(7, 20)).merge(part(20, n)).finish(), whole);
    assertEquals(part(0, 7).merge(part(7, 20).merge(part(20, n))).finish(), whole);
  });
  await t.step("three parts merged out of stream order (no exact peak ties here)", () => {
    assertEquals(part(20, n).merge(part(0, 7)).merge(part(7, 20)).finish(), whole);
  });
  await t.step("into an empty state", () => {
    assertEquals(new AnalyzerState(REF_OPTIONS).merge(part(0, n)).finish(), whole);
  });
  await t.step("other batch sizes, and parts cut inside one of the first run's batches", () => {
    assertEquals(run(toBatches(s, 5), REF_OPTIONS).finish(), whole);
    const fours = toBatches(s, 4); // 17 × 4 = 68 contexts: not a multiple of 6
    assertEquals(
      run(fours.slice(0, 17), REF_OPTIONS).merge(run(fours.slice(17), REF_OPTIONS)).finish(),
      whole,
    );
  });
  await t.step("after a JSON round trip of each part", () => {
    const a = AnalyzerState.fromJSON(JSON.parse(JSON.stringify(part(0, 11))));
    const b = AnalyzerState.fromJSON(JSON.parse(JSON.stringify(part(11, n))));
    assertEquals(a.merge(b).finish(), whole);
    const c = AnalyzerState.fromJSON(JSON.parse(JSON.stringify(run(batches, REF_OPTIONS))));
    assertEquals(c.finish(), whole);
    assertEquals([c.nTokens, c.nContexts, c.nBatches], [180 * 12, 180, n]);
  });
  await t.step("then continue adding batches to the restored state", () => {
    const a = AnalyzerState.fromJSON(JSON.parse(JSON.stringify(part(0, 11))));
    for (const b of batches.slice(11)) a.add(b);
    assertEquals(a.finish(), whole);
  });
});

Deno.test("AnalyzerState.merge keeps ties going to the earlier context across parts", () => {
  const s = synthetic({ seed: 3, nCtx: 120, T: 10, dSae: 80, quantize: true });
  const batches = toBatches(s, 5);
  const whole = run(batches, REF_OPTIONS).finish();
  const a = run(batches.slice(0, 9), REF_OPTIONS);
  const b = run(batches.slice(9, 17), REF_OPTIONS);
  const c = run(batches.slice(17), REF_OPTIONS);
  assertEquals(a.merge(b.merge(c)).finish(), whole);
});

Deno.test("AnalyzerState.merge refuses states made with other sampling options", () => {
  const a = new AnalyzerState({ seed: 1 });
  throws(
    () => a.merge(new AnalyzerState({ seed: 2 })),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.startsWith("Cannot merge analyzer states made with different options"),
  );
  // Names of the output do not matter.
  a.merge(new AnalyzerState({ seed: 1, analysisName: "other" }));
});

Deno.test("AnalyzerState.fromJSON rejects what is not a saved state", () => {
  throws(
    () => AnalyzerState.fromJSON({ format: "something" }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        'Cannot read analyzer state: expected format "saeflow-analyzer-state" version 1',
  );
  const saved = JSON.parse(JSON.stringify(new AnalyzerState({ seed: 4 })));
  throws(
    () => AnalyzerState.fromJSON(saved, { seed: 5 }),
    (e: unknown) =>
      e instanceof ConfigError && e.message.startsWith("Cannot restore analyzer state"),
  );
  const renamed = AnalyzerState.fromJSON(saved, { analysisName: "second" });
  assertEquals(renamed.options.analysisName, "second");
  // A window that is not base64, or not whole int32s, names the candidate.
  const s = synthetic({ seed: 3, nCtx: 20, T: 8, dSae: 16 });
  const full = JSON.parse(JSON.stringify(run(toBatches(s, 4), REF_OPTIONS)));
  const candidate = (tokens: string) => ({
    ...full,
    candidates: full.candidates.map((c: object, i: number) => (i === 1 ? { ...c, tokens } : c)),
  });
  throws(
    () => AnalyzerState.fromJSON(candidate("%%%")),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "Cannot read analyzer state: candidates[1].tokens is not valid base64",
  );
  throws(
    () => AnalyzerState.fromJSON(candidate("AAAAAAA=")),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        "Cannot read analyzer state: candidates[1].tokens has 5 bytes, not a multiple of 4",
  );
});

// ---------------------------------------------------------------------------------------------
// Reproducibility, memory, the Python rule, bad input

Deno.test("AnalyzerState is reproducible under a seed and samples differently under another", () => {
  const s = synthetic({ seed: 4, nCtx: 150, T: 12, dSae: 100 });
  const batches = toBatches(s, 10);
  const a = run(batches, REF_OPTIONS).finish();
  const b = run(batches, REF_OPTIONS).finish();
  const c = run(batches, { ...REF_OPTIONS, seed: 10 }).finish();
  assertEquals(a, b);
  let differ = 0;
  for (let f = 0; f < a.length; f++) {
    const x = analysis(a[f]!).samplings;
    const y = analysis(c[f]!).samplings;
    assertEquals(x[0], y[0]); // top is exact
    if (
      JSON.stringify(x.slice(1).map((z) => rows(z.samples))) !==
        JSON.stringify(y.slice(1).map((z) => rows(z.samples)))
    ) differ++;
  }
  assert(differ > 20, `only ${differ} features sampled differently`);
});

/** Dense random batches: every token fires each feature with probability 0.3. */
