import assert from "node:assert/strict";
import { BandSampler } from "./_bands.ts";
import { resolveFeatureAnalyzerOptions, type SamplingSpec } from "./options.ts";
import type { BatchPairs } from "./_batch.ts";
import type { SampleStore } from "./_store.ts";
import {
  Harness,
  type HarnessOptions,
  type HarnessSampler,
  keyOf,
  reference,
  referenceSample,
  synthetic,
  toBatches,
  type Window,
} from "./_test_util.ts";

const BANDS: SamplingSpec[] = resolveFeatureAnalyzerOptions({
  subsamples: {
    high: { proportion: 0.8, n_samples: 3 },
    mid: { proportion: 0.6, n_samples: 4 },
    low: { proportion: 0.2, n_samples: 5 },
  },
}).samplings.filter((s) => s.kind === "band");
const O: HarnessOptions = { windowBefore: 2, windowAfter: 2, seed: 21 };
const S = synthetic({ seed: 13, nCtx: 400, T: 12, dSae: 30 });
const REF = Array.from({ length: S.dSae }, (_, f) => reference(S, f));

/** A BandSampler as the harness drives it. */
class Bands implements HarnessSampler {
  readonly bands: BandSampler;
  constructor(store: SampleStore) {
    this.bands = new BandSampler(store, BANDS);
  }
  resize(dSae: number): void {
    this.bands.resize(dSae);
  }
  wake(f: number): void {
    this.bands.wake(f);
  }
  onMax(f: number, max: number): void {
    this.bands.onMax(f, max);
  }
  offer(f: number, i: number, peak: number, key: number, max: number, pairs: BatchPairs): number {
    return this.bands.offer(f, i, peak, key, max, -1, pairs);
  }
}

const harness = () => new Harness((store) => new Bands(store), O);

function picks(h: Harness<Bands>, f: number, band: SamplingSpec): Window[] {
  if (!h.alive[f]) return [];
  return h.sampler.bands.pick(f, band, h.moments.max[f]!).map((id) => h.window(id));
}

/** The n smallest keys among the contexts whose peak is in the band, highest peak first. */
function expected(f: number, band: SamplingSpec): Window[] {
  const { peaks, peakPos, max } = REF[f]!;
  return peaks.map((p, c) => ({ p, c, key: keyOf(S, O.seed, f, c) }))
    .filter(({ p }) => p > band.lo * max && p <= band.hi * max)
    .sort((x, y) => x.key - y.key || x.c - y.c).slice(0, band.n)
    .sort((x, y) => y.p - x.p || x.c - y.c)
    .map(({ c }) => {
      const s = referenceSample(S, f, c, peakPos[c]!, O.windowBefore, O.windowAfter);
      const [row, shard, peak] = [s.row, s.shard, s.peak];
      return { row, shard, peak, peakT: peakPos[c]!, tokens: [...s.tokens], acts: [...s.acts] };
    });
}

Deno.test("BandSampler keeps the n smallest keys of each band of the final max, in bounded pools", () => {
  const h = harness().add(toBatches(S, 6));
  let full = 0;
  let dense = 0;
  for (let f = 0; f < S.dSae; f++) {
    for (const band of BANDS) {
      const want = expected(f, band);
      assert.deepEqual(picks(h, f, band), want, `feature ${f}, band ${band.name}`);
      if (want.length === band.n) full++;
    }
    // Pruned whenever it doubles past 4·Σn = 48: never above twice that, however many contexts.
    const firing = REF[f]!.peaks.filter((p) => p > 0).length;
    const pool = h.alive[f] ? h.sampler.bands.entries(f) : 0;
    if (firing > 300) dense++;
    assert(pool <= 96, `feature ${f}: pool of ${pool} for ${firing} contexts`);
  }
  assert(full > 20 && dense > 0, `bands filled (${full}), dense features (${dense})`);
});

Deno.test("BandSampler.merge of two parts equals one run over both", () => {
  const batches = toBatches(S, 8);
  const one = harness().add(batches);
  for (const cut of [1, 20, batches.length - 2]) {
    const a = harness().add(batches.slice(0, cut));
    const b = harness().add(batches.slice(cut));
    a.merge(b, (f, copy, alive) => {
      if (alive) a.sampler.bands.merge(f, b.sampler.bands, a.moments.max[f]!, copy.candidate);
    });
    for (let f = 0; f < S.dSae; f++) {
      for (const band of BANDS) {
        assert.deepEqual(picks(a, f, band), picks(one, f, band), `cut ${cut}, f ${f}`);
        assert.deepEqual(picks(a, f, band), expected(f, band), `cut ${cut}, f ${f}`);
      }
    }
  }
});

Deno.test("BandSampler round-trips through its saved form, then keeps adding as before", () => {
  const batches = toBatches(S, 8);
  const h = harness().add(batches.slice(0, 15));
  const back = h.roundTrip(
    (w) =>
      Array.from(
        { length: S.dSae },
        (_, f) => h.alive[f] ? h.sampler.bands.toJSON(f, h.moments.max[f]!, w.candidate) : null,
      ),
    (r, saved, windows) => {
      for (let f = 0; f < S.dSae; f++) {
        const json = saved[f];
        if (json) r.sampler.bands.restore(f, json, r.moments.max[f]!, windows.candidate);
      }
    },
  );
  for (let f = 0; f < S.dSae; f++) {
    for (const band of BANDS) assert.deepEqual(picks(back, f, band), picks(h, f, band));
  }
  back.add(batches.slice(15));
  for (let f = 0; f < S.dSae; f++) {
    for (const band of BANDS) assert.deepEqual(picks(back, f, band), expected(f, band), `f ${f}`);
  }
});
