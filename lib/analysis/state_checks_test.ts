import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import type { FeatureBatch } from "../types.ts";
import { AnalyzerState } from "./state.ts";
import type { FeatureAnalyzerOptions } from "./options.ts";
import { reference, rng, synthetic, toBatches } from "./_test_util.ts";
import { analysis, byPeakThenContext, planted, rows, run } from "./_state_test_util.ts";

function denseBatches(seed: number, nCtx: number, dSae: number): FeatureBatch[] {
  const r = rng(seed);
  const T = 8;
  const B = 20;
  const out: FeatureBatch[] = [];
  for (let c0 = 0; c0 < nCtx; c0 += B) {
    const position: number[] = [];
    const feature: number[] = [];
    const value: number[] = [];
    for (let p = 0; p < B * T; p++) {
      for (let f = 0; f < dSae; f++) {
        if (r() < 0.3) {
          position.push(p);
          feature.push(f);
          value.push(-Math.log(1 - r()));
        }
      }
    }
    out.push({
      batchSize: B,
      contextSize: T,
      dSae,
      tokens: new Int32Array(B * T),
      mask: new Uint8Array(B * T).fill(1),
      attention: new Uint8Array(B * T).fill(1),
      origins: Array.from({ length: B }, (_, b) => ({ source: "m", shard: 0, row: c0 + b })),
      position: Int32Array.from(position),
      feature: Int32Array.from(feature),
      value: Float32Array.from(value),
    });
  }
  return out;
}

Deno.test("AnalyzerState memory does not grow with the number of tokens", () => {
  const perFeature = (nCtx: number) => {
    const state = run(denseBatches(6, nCtx, 4), {});
    const { candidates, aliveFeatures, nonActivatingContexts } = state.stats();
    assert(nonActivatingContexts <= 4 * 20);
    return candidates / aliveFeatures;
  };
  const small = perFeature(1000);
  const large = perFeature(10000);
  // Default samplings keep 20 + 4·10 samples per feature; the pools hold a small multiple.
  assert(large < 400, `${large} candidates per feature`);
  assert(large < 1.6 * small, `${small} → ${large} candidates per feature`);
});

Deno.test('AnalyzerState with subsampleRule "python" reproduces the Python tool\'s rule', () => {
  const s = synthetic({ seed: 8, nCtx: 200, T: 12, dSae: 90 });
  const batches = toBatches(s, 7);
  const options: FeatureAnalyzerOptions = {
    subsampleRule: "python",
    subsamples: {
      top_activations: { proportion: 1, n_samples: 4 },
      "subsampling_60%": { proportion: 0.6, n_samples: 3 },
      "subsampling_30%": { proportion: 0.3, n_samples: 3 },
    },
    nNonActivating: 0,
    windowBefore: 2,
    windowAfter: 2,
  };
  const records = run(batches, options).finish();
  for (let f = 0; f < s.dSae; f++) {
    const ref = reference(s, f);
    const a = analysis(records[f]!);
    if (ref.actTimes === 0) continue;
    assertEquals(a.samplings.map((x) => [x.name, x.band]), [
      ["top_activations", null],
      ["subsampling_60%", [0, 0.6]],
      ["subsampling_30%", [0, 0.3]],
    ]);
    for (const [i, p] of [[1, 0.6], [2, 0.3]] as const) {
      // The Python tool: after each batch, contexts with peak ≤ p·(running max) compete.
      let max = 0;
      let kept: number[] = [];
      for (let c0 = 0; c0 < s.nCtx; c0 += 7) {
        const cs = Array.from({ length: Math.min(7, s.nCtx - c0) }, (_, k) => c0 + k);
        for (const c of cs) max = Math.max(max, ref.peaks[c]!);
        const fresh = cs.filter((c) => ref.peaks[c]! > 0 && ref.peaks[c]! <= p * max);
        kept = [...kept, ...fresh].sort(byPeakThenContext(ref.peaks)).slice(0, 3);
      }
      assertEquals(rows(a.samplings[i]!.samples), kept, `feature ${f} ${p}`);
    }
  }
});

Deno.test("AnalyzerState.add rejects malformed batches, saying what is wrong", async (t) => {
  const good = toBatches(planted(), 10)[0]!;
  const cases: [string, Partial<FeatureBatch>, string][] = [
    [
      "unsorted entries",
      {
        position: Int32Array.from([5, 3]),
        feature: Int32Array.from([0, 0]),
        value: Float32Array.from([1, 1]),
      },
      "Cannot analyze FeatureBatch: entry 1 (position 3, feature 0) comes after (position 5, " +
      "feature 0): entries must be sorted by position then feature, without duplicates",
    ],
    [
      "a feature out of range",
      {
        position: Int32Array.from([1]),
        feature: Int32Array.from([6]),
        value: Float32Array.from([1]),
      },
      "Cannot analyze FeatureBatch: entry 0 has feature 6 outside [0, 6)",
    ],
    [
      "a zero value",
      {
        position: Int32Array.from([1]),
        feature: Int32Array.from([0]),
        value: Float32Array.from([0]),
      },
      "Cannot analyze FeatureBatch: entry 0 has value 0, expected a finite value > 0",
    ],
    [
      "a short mask",
      { mask: new Uint8Array(3) },
      "Cannot analyze FeatureBatch: mask has length 3, expected B*T = 80",
    ],
  ];
  for (const [name, patch, message] of cases) {
    await t.step(name, () => {
      const state = new AnalyzerState();
      throws(
        () => state.add({ ...good, ...patch }),
        (e: unknown) => e instanceof RangeError && e.message === message,
      );
    });
  }
  await t.step("a different d_sae", () => {
    const state = new AnalyzerState();
    state.add(good);
    throws(
      () => state.add({ ...good, dSae: 7, feature: Int32Array.from(good.feature) }),
      (e: unknown) =>
        e instanceof RangeError &&
        e.message === "Cannot analyze FeatureBatch: d_sae 7 differs from 6",
    );
  });
});
