import assert from "node:assert/strict";
import { NonActivatingSampler } from "./_non_activating.ts";
import type { BatchPairs } from "./_batch.ts";
import type { SampleStore } from "./_store.ts";
import {
  Harness,
  type HarnessOptions,
  type HarnessSampler,
  keyOf,
  reference,
  synthetic,
  toBatches,
  type Window,
} from "./_test_util.ts";

const N = 6;
const O: HarnessOptions = { windowBefore: 1, windowAfter: 3, seed: 9 };
const WIDTH = O.windowBefore + O.windowAfter + 1;
const S = synthetic({ seed: 4, nCtx: 260, T: 10, dSae: 30 });
const REF = Array.from({ length: S.dSae }, (_, f) => reference(S, f));

/** A NonActivatingSampler as the harness drives it. */
class NonActivating implements HarnessSampler {
  readonly contextKeys = true;
  readonly sampler: NonActivatingSampler;
  constructor(store: SampleStore) {
    this.sampler = new NonActivatingSampler(store, N, WIDTH);
  }
  resize(dSae: number): void {
    this.sampler.resize(dSae);
  }
  afterPairs(pairs: BatchPairs, batchSize: number, dSae: number): void {
    this.sampler.addBatch(pairs, batchSize, dSae);
  }
}

const harness = () => new Harness((store) => new NonActivating(store), O);

function picks(h: Harness<NonActivating>, f: number): Window[] {
  return h.sampler.sampler.pick(f).map((x) => h.window(x, true));
}

/**
 * The n analyzed contexts (one token with mask 1) where `f` never fires at an analyzed token,
 * by their own key, with the first tokens of each (at most WIDTH, at least one).
 */
function expected(f: number): Window[] {
  const analyzed = (c: number) => S.mask.subarray(c * S.T, (c + 1) * S.T).some((m) => m === 1);
  const length = (c: number) => S.attention.subarray(c * S.T, (c + 1) * S.T).lastIndexOf(1) + 1;
  return REF[f]!.peaks.map((p, c) => ({ p, c, key: keyOf(S, O.seed, -1, c) }))
    .filter(({ p, c }) => p === 0 && analyzed(c))
    .sort((x, y) => x.key - y.key || x.c - y.c).slice(0, N)
    .map(({ c }) => ({
      row: S.origins[c]!.row,
      shard: S.origins[c]!.shard,
      peak: 0,
      peakT: 0,
      tokens: [...S.tokens.subarray(c * S.T, c * S.T + Math.min(WIDTH, Math.max(length(c), 1)))],
      acts: [],
    }));
}

Deno.test("NonActivatingSampler keeps the n smallest context keys among never-firing contexts", () => {
  const h = harness().add(toBatches(S, 7));
  let dense = 0;
  for (let f = 0; f < S.dSae; f++) {
    const want = expected(f);
    assert.deepEqual(picks(h, f), want, `feature ${f}`);
    if (want.length < N) dense++;
  }
  // Features firing almost everywhere have fewer than n never-firing contexts.
  assert(dense > 0 && dense < S.dSae, `features with a short list: ${dense}`);
});

Deno.test("NonActivatingSampler.merge of two parts equals one run over both", () => {
  const batches = toBatches(S, 5);
  for (const cut of [2, 30]) {
    const a = harness().add(batches.slice(0, cut));
    const b = harness().add(batches.slice(cut));
    a.merge(b, (f, copy) => a.sampler.sampler.merge(f, b.sampler.sampler, copy.context));
    for (let f = 0; f < S.dSae; f++) {
      assert.deepEqual(picks(a, f), expected(f), `cut ${cut}, f ${f}`);
    }
  }
});

Deno.test("NonActivatingSampler round-trips through its saved form, then keeps adding as before", () => {
  const batches = toBatches(S, 5);
  const h = harness().add(batches.slice(0, 25));
  const back = h.roundTrip(
    (w) => h.sampler.sampler.toJSON(w.context),
    (r, saved, windows) => {
      for (const [f, list] of saved) r.sampler.sampler.restore(f, list, windows.context);
    },
  );
  for (let f = 0; f < S.dSae; f++) assert.deepEqual(picks(back, f), picks(h, f), `restored f ${f}`);
  back.add(batches.slice(25));
  for (let f = 0; f < S.dSae; f++) {
    assert.deepEqual(picks(back, f), expected(f), `continued f ${f}`);
  }
});
