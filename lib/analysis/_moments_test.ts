import assert from "node:assert/strict";
import { Moments } from "./_moments.ts";
import { Harness, reference, synthetic, toBatches } from "./_test_util.ts";

const S = synthetic({ seed: 17, nCtx: 200, T: 12, dSae: 40 });
const Q = [0.1, 0.5, 0.9];

/** Moments alone (the harness always runs them). */
const harness = () =>
  new Harness(() => ({ resize() {} }), { windowBefore: 0, windowAfter: 0, seed: 1 });

const saved = (m: Moments, dSae: number) => Array.from({ length: dSae }, (_, f) => m.toJSON(f));

Deno.test("Moments gives count, max, mean and std of the analyzed values, exactly per batch size", () => {
  const runs = [1, 7, 64].map((B) => harness().add(toBatches(S, B)));
  const first = saved(runs[0]!.moments, S.dSae);
  for (const h of runs.slice(1)) assert.deepEqual(saved(h.moments, S.dSae), first);
  const m = runs[0]!.moments;
  let dead = 0;
  for (let f = 0; f < S.dSae; f++) {
    const r = reference(S, f);
    const a = m.analysis(f, r.actTimes > 0, Q);
    assert.equal(a.act_times, r.actTimes, `f ${f}`);
    assert.equal(a.max_activation, r.max, `f ${f}`);
    assert(Math.abs(a.mean - r.mean) <= 1e-12 * r.max, `f ${f} mean ${a.mean} vs ${r.mean}`);
    assert(Math.abs(a.std - r.std) <= 1e-9 * r.max, `f ${f} std ${a.std} vs ${r.std}`);
    assert.equal(a.histogram.counts.reduce((x, y) => x + y, 0), r.actTimes, `f ${f}`);
    if (r.actTimes === 0) {
      dead++;
      assert.deepEqual(a.quantiles, []);
      continue;
    }
    const sorted = [...r.values].sort((x, y) => x - y);
    for (const { q, value } of a.quantiles) {
      const exact = sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
      assert(value <= r.max, `f ${f} q ${q}`);
      // Within the histogram's accuracy of a value near the rank (1% plus one value's step).
      const lo = sorted[Math.max(0, Math.floor(q * sorted.length) - 1)]!;
      assert(value >= lo * 0.98 && value <= exact * 1.02, `f ${f} q ${q}: ${value} vs ${exact}`);
    }
  }
  assert(dead > 0 && dead < S.dSae, `dead features ${dead}`);
});

Deno.test("Moments.merge of parts equals one run, exactly", () => {
  const batches = toBatches(S, 6);
  const one = saved(harness().add(batches).moments, S.dSae);
  for (const cut of [1, 11, batches.length - 1]) {
    const a = harness().add(batches.slice(0, cut));
    const b = harness().add(batches.slice(cut));
    a.merge(b, () => {});
    assert.deepEqual(saved(a.moments, S.dSae), one, `cut ${cut}`);
  }
});

Deno.test("Moments round-trips through its saved form, then merges as before", () => {
  const batches = toBatches(S, 6);
  const a = harness().add(batches.slice(0, 15));
  const b = harness().add(batches.slice(15));
  const back = new Moments(0.01);
  back.resize(S.dSae);
  const json = JSON.parse(JSON.stringify(saved(a.moments, S.dSae)));
  for (let f = 0; f < S.dSae; f++) back.restore(f, json[f]);
  for (let f = 0; f < S.dSae; f++) {
    const alive = a.moments.actTimes[f]! > 0;
    assert.deepEqual(back.analysis(f, alive, Q), a.moments.analysis(f, alive, Q), `f ${f}`);
  }
  for (let f = 0; f < S.dSae; f++) back.merge(f, b.moments);
  assert.deepEqual(saved(back, S.dSae), saved(harness().add(batches).moments, S.dSae));
});
