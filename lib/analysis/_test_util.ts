/**
 * Test helpers: synthetic feature streams with their dense activations, and a slow, obviously
 * correct reference computation of what the analyzer should output.
 *
 * @module
 */

import type { ContextOrigin, FeatureBatch, Sample } from "../types.ts";
import { hashContext, priorityKey } from "./_hash.ts";
import { mulberry32 as rng } from "../_random.ts";

/** A small seeded PRNG (mulberry32). */
export { rng };

/** A synthetic stream: every context's tokens, mask, attention, and dense activations. */
export interface Synthetic {
  nCtx: number;
  T: number;
  dSae: number;
  tokens: Int32Array;
  mask: Uint8Array;
  attention: Uint8Array;
  origins: ContextOrigin[];
  /** `[nCtx, T, dSae]`, including activations at masked positions (which must be ignored). */
  dense: Float32Array;
}

/** Options of {@linkcode synthetic}. */
export interface SyntheticOptions {
  seed: number;
  nCtx: number;
  T: number;
  dSae: number;
  /** Round values up to multiples of 1/4, making ties. */
  quantize?: boolean;
  /**
   * `"falling"` (default): exponential values, most of them small; `"rising"`: density ∝ v³ up
   * to the feature's scale, most of them near the top.
   */
  shape?: "falling" | "rising";
  /** Name of the dataset in the origins. */
  source?: string;
}

/**
 * Random sparse activations: some dead features, some dense ones, short (padded) contexts, a
 * masked BOS, randomly masked tokens, whole masked contexts, and activations at masked positions.
 */
export function synthetic(o: SyntheticOptions): Synthetic {
  const { nCtx, T, dSae } = o;
  const r = rng(o.seed);
  const rate = new Float64Array(dSae);
  const scale = new Float64Array(dSae);
  for (let f = 0; f < dSae; f++) {
    rate[f] = f % 17 === 3 ? 0 : f % 50 === 7 ? 0.5 : 0.001 + 0.06 * r();
    scale[f] = 0.2 + 3 * r();
  }
  const tokens = new Int32Array(nCtx * T);
  const mask = new Uint8Array(nCtx * T);
  const attention = new Uint8Array(nCtx * T);
  const dense = new Float32Array(nCtx * T * dSae);
  const origins: ContextOrigin[] = [];
  for (let c = 0; c < nCtx; c++) {
    const length = r() < 0.3 ? Math.max(2, Math.floor(T / 2 + r() * T / 2)) : T;
    const allMasked = c % 97 === 5;
    origins.push({ source: o.source ?? "synthetic", shard: c % 3, row: c, offset: (c % 5) * T });
    for (let t = 0; t < T; t++) {
      const i = c * T + t;
      const real = t < length;
      tokens[i] = real ? 1 + Math.floor(r() * 1000) : 0;
      attention[i] = real ? 1 : 0;
      mask[i] = real && t > 0 && !allMasked && r() < 0.92 ? 1 : 0;
      for (let f = 0; f < dSae; f++) {
        if (r() < rate[f]!) {
          let v = o.shape === "rising"
            ? Math.pow(r(), 0.25) * scale[f]!
            : -Math.log(1 - r()) * scale[f]!;
          if (o.quantize) v = Math.ceil(v * 4) / 4;
          dense[i * dSae + f] = v;
        }
      }
    }
  }
  return { nCtx, T, dSae, tokens, mask, attention, origins, dense };
}

/** Cuts a synthetic stream into sparse batches of `B` contexts (the last may be smaller). */
export function toBatches(s: Synthetic, B: number): FeatureBatch[] {
  const out: FeatureBatch[] = [];
  for (let c0 = 0; c0 < s.nCtx; c0 += B) {
    const b = Math.min(B, s.nCtx - c0);
    const position: number[] = [];
    const feature: number[] = [];
    const value: number[] = [];
    for (let p = 0; p < b * s.T; p++) {
      for (let f = 0; f < s.dSae; f++) {
        const v = s.dense[(c0 * s.T + p) * s.dSae + f]!;
        if (v > 0) {
          position.push(p);
          feature.push(f);
          value.push(v);
        }
      }
    }
    out.push({
      batchSize: b,
      contextSize: s.T,
      dSae: s.dSae,
      tokens: s.tokens.slice(c0 * s.T, (c0 + b) * s.T),
      mask: s.mask.slice(c0 * s.T, (c0 + b) * s.T),
      attention: s.attention.slice(c0 * s.T, (c0 + b) * s.T),
      origins: s.origins.slice(c0, c0 + b),
      position: Int32Array.from(position),
      feature: Int32Array.from(feature),
      value: Float32Array.from(value),
    });
  }
  return out;
}

/** Per-feature facts computed the slow way from the dense activations. */
export interface Reference {
  actTimes: number;
  max: number;
  mean: number;
  std: number;
  /** Peak per context (0 when the feature does not fire there). */
  peaks: number[];
  /** Peak position per context. */
  peakPos: number[];
  values: number[];
}

/** The reference statistics of feature `f`. */
export function reference(s: Synthetic, f: number): Reference {
  const values: number[] = [];
  const peaks: number[] = [];
  const peakPos: number[] = [];
  for (let c = 0; c < s.nCtx; c++) {
    let peak = 0;
    let pos = 0;
    for (let t = 0; t < s.T; t++) {
      const i = c * s.T + t;
      if (!s.mask[i]) continue;
      const v = s.dense[i * s.dSae + f]!;
      if (v > 0) values.push(v);
      if (v > peak) {
        peak = v;
        pos = t;
      }
    }
    peaks.push(peak);
    peakPos.push(pos);
  }
  const n = values.length;
  const mean = n ? values.reduce((a, b) => a + b, 0) / n : 0;
  const variance = n ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / n : 0;
  return {
    actTimes: n,
    max: Math.max(0, ...values),
    mean,
    std: Math.sqrt(variance),
    peaks,
    peakPos,
    values,
  };
}

/** The sample the analyzer should make of context `c` for feature `f`. */
export function referenceSample(
  s: Synthetic,
  f: number,
  c: number,
  peakT: number,
  before: number,
  after: number,
): Sample {
  let length = 0;
  for (let t = 0; t < s.T; t++) if (s.attention[c * s.T + t]) length = t + 1;
  const start = Math.max(0, peakT - before);
  const stop = Math.min(length, peakT + after + 1);
  const acts = new Float32Array(stop - start);
  for (let t = start; t < stop; t++) {
    const i = c * s.T + t;
    acts[t - start] = s.mask[i] ? s.dense[i * s.dSae + f]! : 0;
  }
  const o = s.origins[c]!;
  return {
    tokens: s.tokens.slice(c * s.T + start, c * s.T + stop),
    acts,
    peak: acts[peakT - start]!,
    peak_pos: peakT - start,
    source: o.source,
    shard: o.shard,
    row: o.row,
    offset: (o.offset ?? 0) + start,
  };
}

/** The priority key of `(feature, context)` (`feature = -1`: the context's own key). */
export function keyOf(s: Synthetic, seed: number, f: number, c: number): number {
  const o = s.origins[c]!;
  return priorityKey(hashContext(seed, o.source, o.shard, o.row, o.offset ?? 0), f);
}
