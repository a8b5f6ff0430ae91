import assert from "node:assert/strict";
import { TopSampler } from "./_top.ts";
import type { BatchPairs } from "./_batch.ts";
import type { SampleStore } from "./_store.ts";
import {
  Harness,
  type HarnessOptions,
  type HarnessSampler,
  reference,
  referenceSample,
  synthetic,
  toBatches,
  type Window,
} from "./_test_util.ts";

const N = 5;
const O: HarnessOptions = { windowBefore: 3, windowAfter: 2, seed: 11 };
// Quantized values: many equal peaks, so ties to the earlier context are exercised.
const S = synthetic({ seed: 3, nCtx: 240, T: 12, dSae: 30, quantize: true });

/** A TopSampler as the harness drives it. */
class Top implements HarnessSampler {
  readonly top: TopSampler;
  constructor(store: SampleStore) {
    this.top = new TopSampler(store, N);
  }
  resize(dSae: number): void {
    this.top.resize(dSae);
  }
  wake(f: number): void {
    this.top.wake(f);
  }
  offer(f: number, i: number, peak: number, key: number, _max: number, pairs: BatchPairs): number {
    return this.top.offer(f, i, peak, key, -1, pairs);
  }
}

const harness = () => new Harness((store) => new Top(store), O);

function picks(h: Harness<Top>, f: number): Window[] {
  return h.alive[f] ? h.sampler.top.pick(f, N).map((id) => h.window(id)) : [];
}

/** The n highest peaks of the dense reference, ties to the earlier context. */
function expected(f: number): Window[] {
  const r = reference(S, f);
  return r.peaks.map((peak, c) => ({ peak, c })).filter((x) => x.peak > 0)
    .sort((a, b) => b.peak - a.peak || a.c - b.c).slice(0, N).map(({ c }) => {
      const s = referenceSample(S, f, c, r.peakPos[c]!, O.windowBefore, O.windowAfter);
      return {
        row: s.row,
        shard: s.shard,
        peak: s.peak,
        peakT: r.peakPos[c]!,
        tokens: Array.from(s.tokens),
        acts: Array.from(s.acts),
      };
    });
}

Deno.test("TopSampler keeps exactly the n highest peaks, ties going to the earlier context", () => {
  const h = harness().add(toBatches(S, 7));
  let ties = 0;
  for (let f = 0; f < S.dSae; f++) {
    const want = expected(f);
    assert.deepEqual(picks(h, f), want, `feature ${f}`);
    for (let i = 1; i < want.length; i++) if (want[i]!.peak === want[i - 1]!.peak) ties++;
  }
  assert(ties > 10, `the stream has ties (${ties})`);
});

Deno.test("TopSampler.merge of two parts equals one run over both", () => {
  const batches = toBatches(S, 9);
  const one = harness().add(batches);
  for (const cut of [1, 13, batches.length - 1]) {
    const a = harness().add(batches.slice(0, cut));
    const b = harness().add(batches.slice(cut));
    a.merge(b, (f, copy, alive) => {
      if (alive) a.sampler.top.merge(f, b.sampler.top, copy.candidate);
    });
    for (let f = 0; f < S.dSae; f++) {
      assert.deepEqual(picks(a, f), picks(one, f), `cut ${cut}, feature ${f}`);
    }
  }
});

Deno.test("TopSampler round-trips through its saved form, then keeps adding as before", () => {
  const batches = toBatches(S, 8);
  const h = harness().add(batches.slice(0, 20));
  const back = h.roundTrip(
    (w) =>
      Array.from(
        { length: S.dSae },
        (_, f) => h.alive[f] ? h.sampler.top.toJSON(f, w.candidate) : [],
      ),
    (b, saved, r) => {
      for (let f = 0; f < S.dSae; f++) {
        if (b.alive[f]) b.sampler.top.restore(f, saved[f]!, r.candidate);
      }
    },
  );
  for (let f = 0; f < S.dSae; f++) assert.deepEqual(picks(back, f), picks(h, f), `restored f ${f}`);
  back.add(batches.slice(20));
  for (let f = 0; f < S.dSae; f++) {
    assert.deepEqual(picks(back, f), expected(f), `continued f ${f}`);
  }
});
