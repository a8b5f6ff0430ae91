/**
 * The saved form of an `AnalyzerState` (its types), and the windows of its samples on the way
 * out of and back into a {@linkcode SampleStore}: a window is saved once, however many samplers
 * refer to it, and on reading the windows of one context share one token span again.
 *
 * Each sampler saves its own part of a feature (`MomentsJSON` in `_moments.ts`, `BandsJSON` in
 * `_bands.ts`, the top and Python-rule lists as candidate numbers) and of the non-activating
 * lists; `AnalyzerState.toJSON` puts them together in the order below, which is the saved format.
 *
 * @module
 */

import type { Sample } from "../types.ts";
import type { ResolvedFeatureAnalyzerOptions } from "./options.ts";
import type { MomentsJSON } from "./_moments.ts";
import type { BandsJSON } from "./_bands.ts";
import { float32FromBase64, int32FromBase64, toBase64 } from "./_codec.ts";
import type { SampleStore } from "./_store.ts";
import type { Samplers } from "./_samplers.ts";

/** `format` of a saved state. */
export const STATE_FORMAT = "saeflow-analyzer-state";
/** `version` of a saved state. */
export const STATE_VERSION = 1;

/** A candidate window in the saved state. */
export interface CandidateJSON {
  peak: number;
  key: number;
  seq: number;
  peakPos: number;
  start: number;
  source: string;
  shard: number;
  row: number;
  offset: number;
  /** Base64 of the window's `Int32Array` token ids. */
  tokens: string;
  /** Base64 of the window's `Float32Array` activations. */
  acts: string;
}

/**
 * One alive feature in the saved state: `index`, its moments (`actTimes`, `max`, `sum1`, `sum2`,
 * `histogram`), then `top`, `pool`, `python`, `floorKeys`, `buckets`, `foldBelow`.
 */
export interface FeatureJSON extends MomentsJSON, BandsJSON {
  index: number;
  /** Saved candidate numbers of the top list. */
  top: number[];
  /** Saved candidate numbers of each Python-rule list. */
  python: number[][];
}

/** The JSON form of an `AnalyzerState`. */
export interface AnalyzerStateJSON {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  options: ResolvedFeatureAnalyzerOptions;
  dSae: number;
  nTokens: number;
  nAnalyzedTokens: number;
  nContexts: number;
  nBatches: number;
  /** Candidate windows, referenced by index below (a shared window is stored once). */
  candidates: CandidateJSON[];
  features: FeatureJSON[];
  /** `[feature, candidate indices]` for every feature with non-activating samples. */
  nonActivating: [number, number[]][];
}

/** Saves windows of one store as numbered {@linkcode CandidateJSON}s. */
export class WindowWriter {
  /** The windows saved so far, in number order. */
  readonly candidates: CandidateJSON[] = [];
  readonly #store: SampleStore;
  readonly #ids = new Map<number, number>();
  readonly #contextIds = new Map<number, number>();

  /** @param store The store read. */
  constructor(store: SampleStore) {
    this.#store = store;
  }

  #save(
    map: Map<number, number>,
    k: number,
    s: Sample,
    key: number,
    x: number,
    start: number,
  ): number {
    const i = this.candidates.length;
    map.set(k, i);
    this.candidates.push({
      peak: s.peak,
      key,
      seq: this.#store.xSeq[x]!,
      peakPos: s.peak_pos,
      start,
      source: s.source,
      shard: s.shard,
      row: s.row,
      offset: this.#store.xOffset[x]!,
      tokens: toBase64(s.tokens),
      acts: toBase64(s.acts),
    });
    return i;
  }

  /** The saved number of candidate `c` (its window saved on first use). */
  candidate = (c: number): number => {
    const known = this.#ids.get(c);
    if (known !== undefined) return known;
    const s = this.#store;
    const x = s.ctx(c);
    const start = s.start(c);
    const sample: Sample = {
      tokens: s.tokens(x, start, s.stop(c)),
      acts: s.acts(c),
      peak: s.peak(c),
      peak_pos: s.peakT(c) - start,
      source: s.sources[s.xSource[x]!]!,
      shard: s.xShard[x]!,
      row: s.xRow[x]!,
      offset: s.xOffset[x]! + start,
    };
    return this.#save(this.#ids, c, sample, s.key(c), x, start);
  };

  /** The saved number of non-activating context `x` (its window saved on first use). */
  context = (x: number): number => {
    const known = this.#contextIds.get(x);
    if (known !== undefined) return known;
    const s = this.#store;
    const stop = s.xNonActStop[x]!;
    const sample: Sample = {
      tokens: s.tokens(x, 0, stop),
      acts: new Float32Array(stop),
      peak: 0,
      peak_pos: 0,
      source: s.sources[s.xSource[x]!]!,
      shard: s.xShard[x]!,
      row: s.xRow[x]!,
      offset: s.xOffset[x]!,
    };
    return this.#save(this.#contextIds, x, sample, s.xKey[x]!, x, 0);
  };
}

/** Restores saved windows into a store: contexts at once, candidates when first asked for. */
export class WindowReader {
  readonly #store: SampleStore;
  readonly #saved: readonly CandidateJSON[];
  readonly #windows: { tokens: Int32Array; acts: Float32Array }[];
  readonly #ctxOfSeq = new Map<number, number>();
  readonly #candOf = new Map<number, number>();

  /**
   * Decodes every window and makes one context per stream number, its span covering every
   * window taken from it (held until {@linkcode WindowReader.finish}).
   *
   * @throws {TypeError} A window is not valid base64 of the right size.
   */
  constructor(store: SampleStore, saved: readonly CandidateJSON[]) {
    this.#store = store;
    this.#saved = saved;
    this.#windows = saved.map((c, i) => ({
      tokens: int32FromBase64(c.tokens, `candidates[${i}].tokens`),
      acts: float32FromBase64(c.acts, `candidates[${i}].acts`),
    }));
    for (const w of this.#windows) {
      for (const t of w.tokens) if (t < 0 || t > 65535) store.widenTokens();
    }
    const spans = new Map<number, { start: number; stop: number; members: number[] }>();
    for (const [i, c] of saved.entries()) {
      const stop = c.start + this.#windows[i]!.tokens.length;
      const span = spans.get(c.seq);
      if (span === undefined) spans.set(c.seq, { start: c.start, stop, members: [i] });
      else {
        span.start = Math.min(span.start, c.start);
        span.stop = Math.max(span.stop, stop);
        span.members.push(i);
      }
    }
    for (const [seq, span] of spans) {
      const first = this.#get(span.members[0]!);
      const len = span.stop - span.start;
      store.reserve(0, 1, 0, len);
      const x = store.newContext(
        store.sourceId(first.source),
        first.shard,
        first.row,
        first.offset,
        seq,
      );
      const buffer = new Int32Array(len);
      for (const i of span.members) {
        buffer.set(this.#windows[i]!.tokens, this.#get(i).start - span.start);
      }
      store.cover(x, span.start, span.stop);
      store.fillTokens(x, buffer, -span.start);
      store.xRef[x] = 1; // held until every list is restored
      this.#ctxOfSeq.set(seq, x);
    }
  }

  #get(i: number): CandidateJSON {
    const c = this.#saved[i];
    if (c === undefined) {
      throw new TypeError(`Cannot read analyzer state: candidate ${i} does not exist`);
    }
    return c;
  }

  /** The candidate of saved window `i` (made on first use; the caller references it). */
  candidate = (i: number): number => {
    let id = this.#candOf.get(i);
    if (id === undefined) {
      const store = this.#store;
      const c = this.#get(i);
      const w = this.#windows[i]!;
      const x = this.#ctxOfSeq.get(c.seq)!;
      store.reserve(1, 0, 0, 0);
      id = store.newCandidate();
      store.setCandidate(
        id,
        c.peak,
        c.key,
        x,
        c.start + c.peakPos,
        c.start,
        c.start + w.tokens.length,
      );
      const pos: number[] = [];
      const val: number[] = [];
      for (let t = 0; t < w.acts.length; t++) {
        if (w.acts[t] !== 0) (pos.push(c.start + t), val.push(w.acts[t]!));
      }
      store.setActs(id, pos, val, pos.length);
      this.#candOf.set(i, id);
    }
    return id;
  };

  /** The context of saved non-activating window `i`, with its key and window width set. */
  context = (i: number): number => {
    const c = this.#get(i);
    const x = this.#ctxOfSeq.get(c.seq)!;
    this.#store.xKey[x] = c.key;
    this.#store.xNonActStop[x] = this.#windows[i]!.tokens.length;
    return x;
  };

  /** Drops the holds on the contexts. */
  finish(): void {
    for (const x of this.#ctxOfSeq.values()) this.#store.unrefContext(x);
  }
}

/**
 * Feature `f` (alive) as saved: each component saves its part, in the saved format's key order
 * (which also numbers the windows: top, then pool, then Python-rule lists).
 */
export function saveFeature(s: Samplers, f: number, save: (id: number) => number): FeatureJSON {
  const moments = s.moments.toJSON(f);
  const top = s.top.toJSON(f, save);
  const bands = s.bands.toJSON(f, s.moments.max[f]!, save);
  const python = s.python.toJSON(f, save);
  return {
    index: f,
    ...moments,
    top,
    pool: bands.pool,
    python,
    floorKeys: bands.floorKeys,
    buckets: bands.buckets,
    foldBelow: bands.foldBelow,
  };
}

/** Restores feature `f` (just woken) from its saved form, `windows` making its candidates. */
export function restoreFeature(
  s: Samplers,
  f: number,
  saved: FeatureJSON,
  windows: WindowReader,
): void {
  s.moments.restore(f, saved);
  s.top.restore(f, saved.top, windows.candidate);
  s.bands.restore(f, saved, saved.max, windows.candidate);
  s.python.restore(f, saved.python, windows.candidate);
}
