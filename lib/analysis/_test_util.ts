/**
 * Test helpers: synthetic feature streams with their dense activations, and a slow, obviously
 * correct reference computation of what the analyzer should output.
 *
 * @module
 */

import type { ContextOrigin, FeatureBatch, Sample } from "../types.ts";
import { hashContext, priorityKey } from "./_hash.ts";
import { SampleStore } from "./_store.ts";
import { StoreCopy } from "./_store_copy.ts";
import { BatchPairs } from "./_batch.ts";
import { Moments } from "./_moments.ts";
import { type CandidateJSON, WindowReader, WindowWriter } from "./_state_json.ts";
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

/** One component under test, as {@linkcode Harness} drives it (every hook optional). */
export interface HarnessSampler {
  /** Whether the sampler needs each context's own key (non-activating). */
  contextKeys?: boolean;
  wake?(f: number): void;
  onMax?(f: number, max: number): void;
  /** Offers pair `i`; returns its candidate, or -1. */
  offer?(f: number, i: number, peak: number, key: number, max: number, pairs: BatchPairs): number;
  afterPairs?(pairs: BatchPairs, batchSize: number, dSae: number): void;
  resize(dSae: number): void;
}

/** Window and seed options of a {@linkcode Harness}. */
export interface HarnessOptions {
  windowBefore: number;
  windowAfter: number;
  seed: number;
}

/** A kept window, described by value (comparable across stores). */
export interface Window {
  row: number;
  shard: number;
  peak: number;
  peakT: number;
  tokens: number[];
  acts: number[];
}

/**
 * Drives one component over batches the way `AnalyzerState.add` does: pairs grouped by feature,
 * moments first (for the max), then the component sees each pair; merges and saves likewise.
 */
export class Harness<S extends HarnessSampler = HarnessSampler> {
  readonly store = new SampleStore();
  readonly pairs: BatchPairs;
  readonly moments = new Moments(0.01);
  alive = new Uint8Array(0);
  nContexts = 0;
  readonly seed: number;
  readonly sampler: S;
  readonly #o: HarnessOptions;
  readonly #make: (store: SampleStore) => S;

  constructor(sampler: (store: SampleStore) => S, o: HarnessOptions) {
    this.pairs = new BatchPairs(this.store, o.windowBefore, o.windowAfter);
    this.seed = o.seed;
    this.sampler = sampler(this.store);
    this.#make = sampler;
    this.#o = o;
  }

  #ensure(dSae: number): void {
    if (this.alive.length === dSae) return;
    this.alive = new Uint8Array(dSae);
    this.pairs.resize(dSae);
    this.moments.resize(dSae);
    this.sampler.resize(dSae);
  }

  #wake(f: number): void {
    if (this.alive[f]) return;
    this.alive[f] = 1;
    this.sampler.wake?.(f);
  }

  /** Adds batches. */
  add(batches: FeatureBatch[]): this {
    for (const batch of batches) {
      const { batchSize: B, dSae } = batch;
      this.#ensure(dSae);
      const pairs = this.pairs;
      pairs.read(batch, this.nContexts, this.seed, this.sampler.contextKeys ?? false);
      let from = 0;
      for (let f = 0; f < dSae; f++) {
        const to = pairs.ends[f]!;
        pairs.ends[f] = 0;
        if (to === from) continue;
        this.#wake(f);
        if (this.moments.add(f, pairs, from, to)) this.sampler.onMax?.(f, this.moments.max[f]!);
        const max = this.moments.max[f]!;
        for (let r = from; r < to; r++) {
          const i = pairs.order[r]!;
          const key = priorityKey(pairs.ctxHash[pairs.ctx[i]!]!, f);
          const cand = this.sampler.offer?.(f, i, pairs.peak[i]!, key, max, pairs) ?? -1;
          if (cand >= 0) this.store.unrefCandidate(cand);
        }
        from = to;
      }
      this.sampler.afterPairs?.(pairs, B, dSae);
      pairs.storeTokens();
      this.nContexts += B;
    }
    return this;
  }

  /** Merges `other` (moments, then `merge` for each feature with the copies' functions). */
  merge(other: Harness<S>, merge: (f: number, copy: StoreCopy, otherAlive: boolean) => void): this {
    this.#ensure(other.alive.length);
    const copy = new StoreCopy(this.store, other.store, this.nContexts);
    for (let f = 0; f < this.alive.length; f++) {
      this.moments.merge(f, other.moments);
      if (other.alive[f]) this.#wake(f);
      merge(f, copy, other.alive[f] === 1);
      copy.endFeature();
    }
    copy.finish();
    this.nContexts += other.nContexts;
    return this;
  }

  /** A window of the store, by value (`contexts`: `id` is a non-activating context row). */
  window(id: number, contexts = false): Window {
    const s = this.store;
    const x = contexts ? id : s.ctx(id);
    const start = contexts ? 0 : s.start(id);
    const stop = contexts ? s.xNonActStop[x]! : s.stop(id);
    return {
      row: s.xRow[x]!,
      shard: s.xShard[x]!,
      peak: contexts ? 0 : s.peak(id),
      peakT: contexts ? 0 : s.peakT(id),
      tokens: Array.from(s.tokens(x, start, stop)),
      acts: contexts ? [] : Array.from(s.acts(id)),
    };
  }

  /**
   * Saves the harness with `save` (given the window writer), restores it through a JSON string
   * into a new harness (a new component) with `restore` (given the reader), and returns it.
   */
  roundTrip<T>(
    save: (w: WindowWriter) => T,
    restore: (h: Harness<S>, saved: T, r: WindowReader) => void,
  ): Harness<S> {
    const w = new WindowWriter(this.store);
    const saved = save(w);
    const text = JSON.stringify({ saved, candidates: w.candidates });
    const back = JSON.parse(text) as { saved: T; candidates: CandidateJSON[] };
    const h = new Harness(this.#make, this.#o);
    h.#ensure(this.alive.length);
    const r = new WindowReader(h.store, back.candidates);
    for (let f = 0; f < this.alive.length; f++) {
      if (this.alive[f]) h.#wake(f);
      h.moments.restore(f, this.moments.toJSON(f));
    }
    restore(h, back.saved, r);
    r.finish();
    h.nContexts = this.nContexts;
    return h;
  }
}
