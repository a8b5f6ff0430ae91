/**
 * The feature analyzer's state: a single-pass, bounded-memory, mergeable summary of a stream of
 * {@linkcode FeatureBatch}es, from which one {@linkcode FeatureRecord} per feature is built at the
 * end (DESIGN.md, "Feature analysis semantics").
 *
 * {@linkcode AnalyzerState} is a thin composition of one component per sampler, each owning its
 * per-feature state (typed arrays), its add, its merge and its saved form; `README.md` here
 * says which file owns which, and each one's module documentation what it keeps and at what cost.
 *
 * Per feature, over analyzed tokens (mask = 1; entries at masked positions are ignored entirely):
 * a context's *peak* is the feature's largest activation over the context's analyzed tokens (the
 * first position holding it). Contexts are ordered by stream order: the order of `add` calls, and
 * `merge(other)` puts `other`'s contexts after this state's. A sample's window holds
 * `windowBefore` tokens before the peak and `windowAfter` after it, clipped to the context's real
 * tokens (attention = 1), with this feature's activations over it (0 where inactive or masked);
 * `offset` = the context's `origin.offset` (0 when absent) + window start. Windows are copied when
 * a context becomes a candidate, so batches are not retained. Dead features (never fire):
 * `act_times` 0, max/mean/std 0, empty histogram, no quantiles, `samplings: []`.
 *
 * `add` is `O(entries + B×T + d_sae)` plus the work on admitted candidates, with no per-entry or
 * per-candidate objects: the batch's `(context, feature)` pairs are grouped by feature
 * (`_batch.ts`), each feature is visited once per batch in index order, and every sampler looks
 * at its pairs in turn; most pairs are rejected by one or two comparisons.
 *
 * @module
 */

import type { FeatureAnalysis, FeatureBatch, FeatureRecord } from "../types.ts";
import { ConfigError } from "../errors.ts";
import {
  type FeatureAnalyzerOptions,
  type ResolvedFeatureAnalyzerOptions,
  resolveFeatureAnalyzerOptions,
} from "./options.ts";
import { priorityKey } from "./_hash.ts";
import { SampleStore } from "./_store.ts";
import { StoreCopy } from "./_store_copy.ts";
import { BatchPairs, validateBatch } from "./_batch.ts";
import { createSamplers, featureSamplings, type Samplers } from "./_samplers.ts";
import {
  type AnalyzerStateJSON,
  restoreFeature,
  saveFeature,
  STATE_FORMAT,
  STATE_VERSION,
  WindowReader,
  WindowWriter,
} from "./_state_json.ts";

export type { AnalyzerStateJSON, CandidateJSON, FeatureJSON } from "./_state_json.ts";

/**
 * The analyzer's mergeable state. Feed batches with {@linkcode AnalyzerState.add}, combine states
 * over disjoint data with {@linkcode AnalyzerState.merge}, save with
 * {@linkcode AnalyzerState.toJSON} / {@linkcode AnalyzerState.fromJSON}, and read the per-feature
 * results with {@linkcode AnalyzerState.records}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AnalyzerState } from "./state.ts";
 * const state = new AnalyzerState({ nTop: 2, seed: 1 });
 * state.add({
 *   batchSize: 1, contextSize: 4, dSae: 2,
 *   tokens: new Int32Array([1, 5, 6, 7]), mask: new Uint8Array([0, 1, 1, 1]),
 *   attention: new Uint8Array([1, 1, 1, 1]), origins: [{ source: "d", shard: 0, row: 0 }],
 *   position: new Int32Array([2, 3]), feature: new Int32Array([1, 1]),
 *   value: new Float32Array([0.5, 2]),
 * });
 * const [dead, alive] = state.finish();
 * assert(dead!.analyses.default!.act_times === 0);
 * assert(alive!.analyses.default!.max_activation === 2);
 * assert(alive!.analyses.default!.samplings[0]!.samples[0]!.peak_pos === 3);
 * ```
 */
export class AnalyzerState {
  /** The resolved options. */
  readonly options: ResolvedFeatureAnalyzerOptions;

  #dSae = 0;
  #nTokens = 0;
  #nAnalyzedTokens = 0;
  #nContexts = 0;
  #nBatches = 0;
  /** 1 once the feature has fired (the samplers' per-feature state is allocated). */
  #alive = new Uint8Array(0);

  readonly #store = new SampleStore();
  readonly #pairs: BatchPairs;
  /** Statistics and one sampler per kind of sampling (`_samplers.ts`). */
  readonly #s: Samplers;
  /** The options two states must share to be merged. */
  readonly #signature: string;

  /**
   * Creates an empty state.
   *
   * @param options User options; defaults applied by `resolveFeatureAnalyzerOptions`.
   * @throws {ConfigError} An option is out of range.
   */
  constructor(options: FeatureAnalyzerOptions = {}) {
    const o = this.options = resolveFeatureAnalyzerOptions(options);
    this.#pairs = new BatchPairs(this.#store, o.windowBefore, o.windowAfter);
    this.#s = createSamplers(this.#store, o);
    this.#signature = JSON.stringify({
      samplings: o.samplings.map((x) => [x.kind, x.lo, x.hi, x.n]),
      windowBefore: o.windowBefore,
      windowAfter: o.windowAfter,
      seed: o.seed,
      histogramAccuracy: o.histogramAccuracy,
      subsampleRule: o.subsampleRule,
    });
  }

  /** Number of features `d_sae` (0 before the first batch). */
  get dSae(): number {
    return this.#dSae;
  }

  /** Context tokens seen, `B×T` per batch (padding and masked tokens included). */
  get nTokens(): number {
    return this.#nTokens;
  }

  /** Analyzed tokens (mask = 1) seen. */
  get nAnalyzedTokens(): number {
    return this.#nAnalyzedTokens;
  }

  /** Contexts seen. */
  get nContexts(): number {
    return this.#nContexts;
  }

  /** Batches added (merged states add up). */
  get nBatches(): number {
    return this.#nBatches;
  }

  /**
   * How much is held: candidate windows (top, bands, Python rule; a context shared by several
   * samplings of one feature counts once), distinct non-activating contexts, alive features,
   * distinct contexts whose tokens are kept, and the bytes of the whole state (typed storage at
   * its allocated capacity, plus an estimate of the per-feature lists and histograms).
   *
   * @returns Counts for monitoring the memory bound.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { AnalyzerState } from "./state.ts";
   * const stats = new AnalyzerState().stats();
   * assert(stats.candidates === 0 && stats.aliveFeatures === 0);
   * ```
   */
  stats(): {
    candidates: number;
    nonActivatingContexts: number;
    aliveFeatures: number;
    contexts: number;
    bytes: number;
  } {
    let alive = 0;
    let listEntries = 0;
    let bandBytes = 0;
    const { moments, top, bands, python, nonActivating } = this.#s;
    for (let f = 0; f < this.#dSae; f++) {
      listEntries += nonActivating.entries(f);
      if (!this.#alive[f]) continue;
      alive++;
      listEntries += top.entries(f) + bands.entries(f) + python.entries(f);
      bandBytes += bands.statBytes(f);
    }
    const perFeature = 11 * 8 + 4 + 1 + 5 * 32; // typed columns and list headers
    const bytes = this.#store.bytes() + moments.histogramBytes + bandBytes + 8 * listEntries +
      perFeature * this.#dSae + nonActivating.scratchBytes;
    return {
      candidates: this.#store.cLive,
      nonActivatingContexts: new Set(nonActivating.contexts()).size,
      aliveFeatures: alive,
      contexts: this.#store.xLive,
      bytes,
    };
  }

  #ensureDSae(dSae: number, where: string): void {
    if (this.#dSae === dSae) return;
    if (this.#dSae !== 0) {
      throw new RangeError(`Cannot ${where}: d_sae ${dSae} differs from ${this.#dSae}`);
    }
    this.#dSae = dSae;
    this.#alive = new Uint8Array(dSae);
    this.#pairs.resize(dSae);
    for (const part of Object.values(this.#s)) part.resize(dSae);
  }

  /** Allocates the samplers' state of a feature that fires for the first time. */
  #wake(f: number): void {
    this.#alive[f] = 1;
    this.#s.top.wake(f);
    this.#s.bands.wake(f);
    this.#s.python.wake(f);
  }

  /**
   * Adds one batch. Work is `O(active entries + B×T + d_sae)`; per-feature state is allocated
   * when a feature first fires.
   *
   * @param batch Sparse activations sorted by position then feature, values > 0.
   * @throws {RangeError} The batch is malformed (shapes, order, indices or values), saying where.
   */
  add(batch: FeatureBatch): void {
    const { batchSize: B, contextSize: T, dSae } = validateBatch(batch);
    this.#ensureDSae(dSae, "analyze FeatureBatch");
    const pairs = this.#pairs;
    const { moments, top, bands, python, nonActivating } = this.#s;
    pairs.read(batch, this.#nContexts, this.options.seed, nonActivating.n > 0);
    const { order, ends, peak: pairPeak, ctx: pairCtx, ctxHash } = pairs;
    const store = this.#store;
    const alive = this.#alive;
    const hasBands = bands.enabled;
    // Each feature with pairs in the batch, in index order: statistics first, then every
    // sampler sees each pair against the max including this batch. A pair's window is captured
    // by the first sampler that keeps it and shared by the others.
    let from = 0;
    for (let f = 0; f < dSae; f++) {
      const to = ends[f]!;
      ends[f] = 0;
      if (to === from) continue;
      if (!alive[f]) this.#wake(f);
      if (moments.add(f, pairs, from, to)) bands.onMax(f, moments.max[f]!);
      const max = moments.max[f]!;
      for (let r = from; r < to; r++) {
        const i = order[r]!;
        const peak = pairPeak[i]!;
        const key = hasBands ? priorityKey(ctxHash[pairCtx[i]!]!, f) : 0;
        let cand = top.offer(f, i, peak, key, -1, pairs);
        cand = bands.offer(f, i, peak, key, max, cand, pairs);
        cand = python.offer(f, i, peak, key, max, cand, pairs);
        if (cand >= 0) store.unrefCandidate(cand); // drops the hold taken by capture
      }
      from = to;
    }
    nonActivating.addBatch(pairs, B, dSae);
    pairs.storeTokens();
    this.#nTokens += B * T;
    this.#nAnalyzedTokens += pairs.nAnalyzed;
    this.#nContexts += B;
    this.#nBatches++;
  }

  /**
   * Adds another state over disjoint data into this one; the result is exactly the state of one
   * run over this state's data followed by `other`'s (`other` is left unchanged; its samples are
   * copied).
   *
   * @param other A state with the same sampling, window, seed and histogram options.
   * @returns This state.
   * @throws {ConfigError} The states were made with different options.
   * @throws {RangeError} The states have different `d_sae`.
   */
  merge(other: AnalyzerState): this {
    if (other.#signature !== this.#signature) {
      throw new ConfigError(
        `Cannot merge analyzer states made with different options: ${other.#signature} vs ` +
          `${this.#signature}`,
      );
    }
    if (other.#dSae === 0) return this;
    this.#ensureDSae(other.#dSae, "merge analyzer states");
    const copy = new StoreCopy(this.#store, other.#store, this.#nContexts);
    const s = this.#s;
    const theirs = other.#s;
    for (let f = 0; f < this.#dSae; f++) {
      s.moments.merge(f, theirs.moments);
      if (other.#alive[f]) {
        if (!this.#alive[f]) this.#wake(f);
        s.top.merge(f, theirs.top, copy.candidate);
        s.python.merge(f, theirs.python, copy.candidate);
        s.bands.merge(f, theirs.bands, s.moments.max[f]!, copy.candidate);
        copy.endFeature();
      }
      s.nonActivating.merge(f, theirs.nonActivating, copy.context);
    }
    copy.finish();
    this.#nTokens += other.#nTokens;
    this.#nAnalyzedTokens += other.#nAnalyzedTokens;
    this.#nContexts += other.#nContexts;
    this.#nBatches += other.#nBatches;
    return this;
  }

  /**
   * The result of one feature.
   *
   * @param index Feature index in `[0, d_sae)`.
   * @returns Its record, with `analyses[analysisName]` filled.
   */
  record(index: number): FeatureRecord {
    if (!Number.isInteger(index) || index < 0 || index >= this.#dSae) {
      throw new RangeError(`Cannot build feature ${index}: d_sae is ${this.#dSae}`);
    }
    const o = this.options;
    return {
      sae_name: o.saeName,
      sae_series: o.saeSeries,
      index,
      analyses: { [o.analysisName]: this.#analysis(index) },
    };
  }

  #analysis(f: number): FeatureAnalysis {
    const alive = this.#alive[f] === 1;
    const m = this.#s.moments.analysis(f, alive, this.options.quantiles);
    const samplings = m.act_times === 0
      ? []
      : featureSamplings(this.#s, this.#store, this.options, f, m.max_activation);
    return {
      act_times: m.act_times,
      n_analyzed_tokens: this.#nAnalyzedTokens,
      max_activation: m.max_activation,
      mean: m.mean,
      std: m.std,
      histogram: m.histogram,
      quantiles: m.quantiles,
      samplings,
    };
  }

  /**
   * The records of every feature, `0..d_sae-1` in order, built lazily one at a time. The state
   * is not changed and can still be added to or merged afterwards.
   *
   * @returns A generator of records.
   */
  *records(): Generator<FeatureRecord> {
    for (let f = 0; f < this.#dSae; f++) yield this.record(f);
  }

  /**
   * Every feature's record at once (see {@linkcode AnalyzerState.records}).
   *
   * @returns `d_sae` records in index order.
   */
  finish(): FeatureRecord[] {
    return Array.from(this.records());
  }

  /**
   * A JSON-serializable snapshot (typed arrays as base64, exact sums as decimal strings), to be
   * saved and later restored with {@linkcode AnalyzerState.fromJSON} and merged.
   *
   * @returns A plain object; `JSON.stringify` it.
   */
  toJSON(): AnalyzerStateJSON {
    const windows = new WindowWriter(this.#store);
    const features = [];
    for (let f = 0; f < this.#dSae; f++) {
      if (this.#alive[f]) features.push(saveFeature(this.#s, f, windows.candidate));
    }
    const nonActivating = this.#s.nonActivating.toJSON(windows.context);
    return {
      format: STATE_FORMAT,
      version: STATE_VERSION,
      options: this.options,
      dSae: this.#dSae,
      nTokens: this.#nTokens,
      nAnalyzedTokens: this.#nAnalyzedTokens,
      nContexts: this.#nContexts,
      nBatches: this.#nBatches,
      candidates: windows.candidates,
      features,
      nonActivating,
    };
  }

  /**
   * Restores a state saved with {@linkcode AnalyzerState.toJSON}.
   *
   * @param json The parsed JSON.
   * @param options Options to use instead of the saved ones (e.g. another analysis name); their
   *   sampling, window, seed and histogram settings must equal the saved ones.
   * @returns The state.
   * @throws {TypeError} The object is not a saved analyzer state.
   * @throws {ConfigError} `options` are incompatible with the saved state.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { AnalyzerState } from "./state.ts";
   * const a = new AnalyzerState({ seed: 7 });
   * const b = AnalyzerState.fromJSON(JSON.parse(JSON.stringify(a)));
   * assert(b.options.seed === 7 && b.nTokens === 0);
   * ```
   */
  static fromJSON(json: unknown, options?: FeatureAnalyzerOptions): AnalyzerState {
    const j = json as AnalyzerStateJSON;
    if (
      typeof j !== "object" || j === null || j.format !== STATE_FORMAT ||
      j.version !== STATE_VERSION
    ) {
      throw new TypeError(
        `Cannot read analyzer state: expected format "${STATE_FORMAT}" version ${STATE_VERSION}`,
      );
    }
    const saved = j.options;
    // The options that shape the state; the names and quantiles may differ.
    const shaping: FeatureAnalyzerOptions = {
      subsamples: saved.subsamples,
      nTop: saved.nTop,
      nNonActivating: saved.nNonActivating,
      windowBefore: saved.windowBefore,
      windowAfter: saved.windowAfter,
      seed: saved.seed,
      histogramAccuracy: saved.histogramAccuracy,
      subsampleRule: saved.subsampleRule,
    };
    const state = new AnalyzerState({
      analysisName: saved.analysisName,
      saeName: saved.saeName,
      saeSeries: saved.saeSeries,
      ...shaping,
      quantiles: saved.quantiles,
      ...(saved.limitTokens === null ? {} : { limitTokens: saved.limitTokens }),
      ...options,
    });
    const check = new AnalyzerState(shaping);
    if (
      check.#signature !== state.#signature ||
      JSON.stringify(saved.samplings) !== JSON.stringify(check.options.samplings)
    ) {
      throw new ConfigError(
        `Cannot restore analyzer state with different options: saved ${check.#signature}, ` +
          `given ${state.#signature}`,
      );
    }
    if (!Number.isSafeInteger(j.dSae) || j.dSae < 0) {
      throw new TypeError(`Cannot read analyzer state: dSae ${j.dSae} is not an integer`);
    }
    if (j.dSae > 0) state.#ensureDSae(j.dSae, "restore analyzer state");
    state.#nTokens = j.nTokens;
    state.#nAnalyzedTokens = j.nAnalyzedTokens;
    state.#nContexts = j.nContexts;
    state.#nBatches = j.nBatches;
    const windows = new WindowReader(state.#store, j.candidates);
    const feature = (f: number): number => {
      if (!Number.isInteger(f) || f < 0 || f >= state.#dSae) {
        throw new TypeError(`Cannot read analyzer state: feature index ${f} out of range`);
      }
      return f;
    };
    for (const fj of j.features) {
      const f = feature(fj.index);
      if (!state.#alive[f]) state.#wake(f);
      restoreFeature(state.#s, f, fj, windows);
    }
    for (const [f, list] of j.nonActivating) {
      state.#s.nonActivating.restore(feature(f), list, windows.context);
    }
    windows.finish();
    return state;
  }
}
