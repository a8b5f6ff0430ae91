/**
 * The samplers of one analyzer state, made from its options, and a feature's samplings as records
 * show them: each sampling's samples picked by its sampler, then every window of the feature
 * copied into one token and one activation array, the samples being views of them, in order (two
 * allocations per feature instead of two per sample).
 *
 * @module
 */

import type { Sample, Sampling } from "../types.ts";
import type { ResolvedFeatureAnalyzerOptions } from "./options.ts";
import type { SampleStore } from "./_store.ts";
import { Moments } from "./_moments.ts";
import { TopSampler } from "./_top.ts";
import { BandSampler } from "./_bands.ts";
import { PythonRuleSampler } from "./_python_rule.ts";
import { NonActivatingSampler } from "./_non_activating.ts";

/** One state's components: statistics and one sampler per kind of sampling. */
export interface Samplers {
  moments: Moments;
  top: TopSampler;
  bands: BandSampler;
  python: PythonRuleSampler;
  nonActivating: NonActivatingSampler;
}

/** The components for resolved options `o`, over `store`. */
export function createSamplers(store: SampleStore, o: ResolvedFeatureAnalyzerOptions): Samplers {
  const s = o.samplings;
  return {
    moments: new Moments(o.histogramAccuracy),
    top: new TopSampler(store, Math.max(0, ...s.filter((x) => x.kind === "top").map((x) => x.n))),
    bands: new BandSampler(store, s.filter((x) => x.kind === "band")),
    python: new PythonRuleSampler(store, s.filter((x) => x.kind === "python")),
    nonActivating: new NonActivatingSampler(
      store,
      s.find((x) => x.kind === "non_activating")?.n ?? 0,
      o.windowBefore + o.windowAfter + 1,
    ),
  };
}

/**
 * Feature `f`'s samplings, in the order of `o.samplings`, for its final max `max`.
 *
 * @param s The state's samplers.
 * @param store Where the windows are.
 */
export function featureSamplings(
  s: Samplers,
  store: SampleStore,
  o: ResolvedFeatureAnalyzerOptions,
  f: number,
  max: number,
): Sampling[] {
  let python = 0;
  const picked = o.samplings.map((spec): Picked => {
    const { name, kind } = spec;
    switch (kind) {
      case "top":
        return { name, band: null, ids: s.top.pick(f, spec.n), contexts: false };
      case "band":
        return { name, band: [spec.lo, spec.hi], ids: s.bands.pick(f, spec, max), contexts: false };
      case "python":
        return { name, band: [0, spec.hi], ids: s.python.pick(f, python++), contexts: false };
      case "non_activating":
        return { name, band: null, ids: s.nonActivating.pick(f), contexts: true };
    }
  });
  return buildSamplings(store, picked);
}

/** What one sampling shows: candidate ids, or for `non_activating` context rows. */
export interface Picked {
  name: string;
  band: [number, number] | null;
  ids: readonly number[];
  /** Whether `ids` are context rows (non-activating windows: no activations, no peak). */
  contexts: boolean;
}

/**
 * The samplings of one feature.
 *
 * @param store Where the windows are.
 * @param picked Each sampling's picks, in output order.
 */
function buildSamplings(store: SampleStore, picked: readonly Picked[]): Sampling[] {
  let total = 0;
  for (const { ids, contexts } of picked) {
    for (const id of ids) {
      total += contexts ? store.xNonActStop[id]! : store.stop(id) - store.start(id);
    }
  }
  const tokens = new Int32Array(total);
  const acts = new Float32Array(total);
  const samplings: Sampling[] = [];
  let at = 0;
  for (const { name, band, ids, contexts } of picked) {
    const samples: Sample[] = [];
    for (const id of ids) {
      const x = contexts ? id : store.ctx(id);
      const start = contexts ? 0 : store.start(id);
      const stop = contexts ? store.xNonActStop[x]! : store.stop(id);
      const end = at + stop - start;
      store.tokensInto(x, start, stop, tokens, at);
      if (!contexts) store.actsInto(id, acts, at);
      samples.push({
        tokens: tokens.subarray(at, end),
        acts: acts.subarray(at, end),
        peak: contexts ? 0 : store.peak(id),
        peak_pos: contexts ? 0 : store.peakT(id) - start,
        source: store.sources[store.xSource[x]!]!,
        shard: store.xShard[x]!,
        row: store.xRow[x]!,
        offset: store.xOffset[x]! + start,
      });
      at = end;
    }
    samplings.push({ name, band, samples });
  }
  return samplings;
}
