/**
 * Helpers shared by the AnalyzerState tests (state_test.ts, state_checks_test.ts).
 *
 * @module
 */
import { ok as assert } from "node:assert/strict";
import type { FeatureAnalysis, FeatureBatch, FeatureRecord, Sample } from "../types.ts";
import { AnalyzerState } from "./state.ts";
import type { FeatureAnalyzerOptions } from "./options.ts";
import type { Synthetic } from "./_test_util.ts";

export function run(batches: FeatureBatch[], options: FeatureAnalyzerOptions): AnalyzerState {
  const state = new AnalyzerState(options);
  for (const b of batches) state.add(b);
  return state;
}

export function analysis(r: FeatureRecord, name = "default"): FeatureAnalysis {
  const a = r.analyses[name];
  assert(a !== undefined, `record ${r.index} has no analysis ${name}`);
  return a;
}

export function rows(samples: Sample[]): number[] {
  return samples.map((s) => s.row);
}

// ---------------------------------------------------------------------------------------------
// Planted features

/** 10 contexts of 8 tokens; token id = 100·c + t; BOS masked. */
export function planted(): Synthetic {
  const nCtx = 10;
  const T = 8;
  const dSae = 6;
  const tokens = new Int32Array(nCtx * T);
  const mask = new Uint8Array(nCtx * T);
  const attention = new Uint8Array(nCtx * T).fill(1);
  const dense = new Float32Array(nCtx * T * dSae);
  const set = (c: number, t: number, f: number, v: number) => dense[(c * T + t) * dSae + f] = v;
  for (let c = 0; c < nCtx; c++) {
    for (let t = 0; t < T; t++) {
      tokens[c * T + t] = 100 * c + t;
      mask[c * T + t] = t === 0 ? 0 : 1;
    }
    set(c, 1, 0, c + 1); // feature 0: strength c+1 on token 1
    set(c, 2, 1, 5); // feature 1: always 5 (ties)
    set(c, 3, 2, 1); // feature 2: always 1 ...
    set(c, 7, 4, c % 2 ? 0.5 : 0); // feature 4: odd contexts, last token
  }
  set(4, 0, 2, 100); // ... and 100 on a masked BOS, which must be ignored
  set(7, 4, 3, 2.5); // feature 3: only context 7
  // feature 5: dead
  const origins = Array.from({ length: nCtx }, (_, c) => ({ source: "p", shard: 1, row: c }));
  return { nCtx, T, dSae, tokens, mask, attention, origins, dense };
}

export function byPeakThenContext(peaks: number[]) {
  return (a: number, b: number) => peaks[b]! - peaks[a]! || a - b;
}
