import assert from "node:assert/strict";
import { PythonRuleSampler } from "./_python_rule.ts";
import type { SamplingSpec } from "./options.ts";
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

const SPECS: SamplingSpec[] = [
  { name: "p80", kind: "python", lo: 0, hi: 0.8, n: 4 },
  { name: "p30", kind: "python", lo: 0, hi: 0.3, n: 3 },
];
const O: HarnessOptions = { windowBefore: 2, windowAfter: 4, seed: 5 };
const S = synthetic({ seed: 8, nCtx: 300, T: 10, dSae: 30, shape: "rising" });
const B = 10;
const PEAKS = Array.from({ length: S.dSae }, (_, f) => reference(S, f));

/** A PythonRuleSampler as the harness drives it. */
class Python implements HarnessSampler {
  readonly python: PythonRuleSampler;
  constructor(store: SampleStore) {
    this.python = new PythonRuleSampler(store, SPECS);
  }
  resize(dSae: number): void {
    this.python.resize(dSae);
  }
  wake(f: number): void {
    this.python.wake(f);
  }
  offer(f: number, i: number, peak: number, key: number, max: number, pairs: BatchPairs): number {
    return this.python.offer(f, i, peak, key, max, -1, pairs);
  }
}

const harness = () => new Harness((store) => new Python(store), O);

function picks(h: Harness<Python>, f: number, j: number): Window[] {
  return h.alive[f] ? h.sampler.python.pick(f, j).map((id) => h.window(id)) : [];
}

/**
 * The Python tool's rule run the slow way over contexts `[c0, c1)` in batches of `B`: after each
 * batch the running max includes it, and the batch's peaks at or below `hi·max` compete for the
 * n highest (ties to the earlier context). Returns context numbers.
 */
function rule(f: number, spec: SamplingSpec, c0: number, c1: number): number[] {
  const { peaks } = PEAKS[f]!;
  let max = 0;
  let kept: number[] = [];
  for (let b0 = c0; b0 < c1; b0 += B) {
    const batch = Array.from({ length: Math.min(B, c1 - b0) }, (_, k) => b0 + k);
    for (const c of batch) max = Math.max(max, peaks[c]!);
    for (const c of batch) if (peaks[c]! > 0 && peaks[c]! <= spec.hi * max) kept.push(c);
    kept = kept.sort((x, y) => peaks[y]! - peaks[x]! || x - y).slice(0, spec.n);
  }
  return kept;
}

function windows(f: number, contexts: number[]): Window[] {
  const r = PEAKS[f]!;
  return contexts.map((c) => {
    const s = referenceSample(S, f, c, r.peakPos[c]!, O.windowBefore, O.windowAfter);
    const [row, shard, peak] = [s.row, s.shard, s.peak];
    return { row, shard, peak, peakT: r.peakPos[c]!, tokens: [...s.tokens], acts: [...s.acts] };
  });
}

Deno.test("PythonRuleSampler keeps the highest peaks at or below p times the running max", () => {
  const h = harness().add(toBatches(S, B));
  let differs = 0;
  for (let f = 0; f < S.dSae; f++) {
    for (const [j, spec] of SPECS.entries()) {
      const want = rule(f, spec, 0, S.nCtx);
      assert.deepEqual(picks(h, f, j), windows(f, want), `feature ${f}, ${spec.name}`);
      // The running max matters: with the final max alone some lists would differ.
      const { peaks } = PEAKS[f]!;
      const final = peaks.map((p, c) => ({ p, c })).filter(({ p }) =>
        p > 0 && p <= spec.hi * PEAKS[f]!.max
      )
        .sort((x, y) => y.p - x.p || x.c - y.c).slice(0, spec.n).map(({ c }) => c);
      if (final.join() !== want.join()) differs++;
    }
  }
  assert(differs > 0, "the stream exercises the running max");
});

Deno.test("PythonRuleSampler.merge keeps the n highest of both parts' lists", () => {
  const batches = toBatches(S, B);
  for (const cut of [3, 17]) {
    const a = harness().add(batches.slice(0, cut));
    const b = harness().add(batches.slice(cut));
    a.merge(b, (f, copy, alive) => {
      if (alive) a.sampler.python.merge(f, b.sampler.python, copy.candidate);
    });
    for (let f = 0; f < S.dSae; f++) {
      const { peaks } = PEAKS[f]!;
      for (const [j, spec] of SPECS.entries()) {
        const union = [...rule(f, spec, 0, cut * B), ...rule(f, spec, cut * B, S.nCtx)];
        const want = union.sort((x, y) => peaks[y]! - peaks[x]! || x - y).slice(0, spec.n);
        assert.deepEqual(picks(a, f, j), windows(f, want), `cut ${cut}, f ${f}, ${spec.name}`);
      }
    }
  }
});

Deno.test("PythonRuleSampler round-trips through its saved form, then keeps adding as before", () => {
  const batches = toBatches(S, B);
  const h = harness().add(batches.slice(0, 12));
  const back = h.roundTrip(
    (w) =>
      Array.from(
        { length: S.dSae },
        (_, f) => h.alive[f] ? h.sampler.python.toJSON(f, w.candidate) : [],
      ),
    (r, saved, windows) => {
      for (let f = 0; f < S.dSae; f++) {
        if (r.alive[f]) r.sampler.python.restore(f, saved[f]!, windows.candidate);
      }
    },
  );
  for (let f = 0; f < S.dSae; f++) {
    for (const j of SPECS.keys()) assert.deepEqual(picks(back, f, j), picks(h, f, j), `f ${f}`);
  }
  back.add(batches.slice(12));
  for (let f = 0; f < S.dSae; f++) {
    for (const [j, spec] of SPECS.entries()) {
      assert.deepEqual(
        picks(back, f, j),
        windows(f, rule(f, spec, 0, S.nCtx)),
        `f ${f} ${spec.name}`,
      );
    }
  }
});
