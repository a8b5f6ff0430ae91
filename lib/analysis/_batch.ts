/**
 * One {@linkcode FeatureBatch} as the samplers see it: its unmasked entries grouped into
 * `(context, feature)` pairs, and the windows of the pairs some sampler keeps, copied into the
 * {@linkcode SampleStore}.
 *
 * A single pass over the entries groups them into pairs (typed scratch arrays, a generation stamp
 * per feature, each pair's entries linked latest first); a stable counting sort then orders the
 * pairs by feature (contexts in stream order within a feature), so that each feature's state is
 * visited once per batch, in index order. No per-entry or per-pair objects are made.
 *
 * @module
 */

import type { FeatureBatch } from "../types.ts";
import { type ContextHash, hashContext, priorityKey } from "./_hash.ts";
import {
  CF,
  CI,
  F_KEY,
  F_PEAK,
  I_ACT_LEN,
  I_ACT_OFF,
  I_CTX,
  I_PEAK_T,
  I_REF,
  I_START,
  I_STOP,
  type SampleStore,
} from "./_store.ts";

/** Scratch of one batch's pairs, grown as needed and reused from batch to batch. */
export class BatchPairs {
  /** Per kept entry: the pair's entry before it (-1 for its first). */
  next = new Int32Array(0);
  /** Pair indices grouped by feature: feature `f`'s run ends at `ends[f]`. */
  order = new Int32Array(0);
  /** End of each feature's run in `order` (the caller zeroes it while walking the runs). */
  ends = new Int32Array(0);
  /** Per pair: feature, context (batch row), peak position and value, entry count, latest entry. */
  feature = new Int32Array(0);
  ctx = new Int32Array(0);
  peakT = new Int32Array(0);
  peak = new Float64Array(0);
  count = new Int32Array(0);
  head = new Int32Array(0);
  nPairs = 0;
  /** Per context of the batch: analyzed tokens, real length (attention), hash, own key. */
  analyzed = new Int32Array(0);
  realLength = new Int32Array(0);
  ctxHash: ContextHash[] = [];
  ctxKey = new Float64Array(0);
  /** Analyzed tokens of the batch. */
  nAnalyzed = 0;
  /** The batch's values, and their float32 bit patterns. */
  value: Float32Array = new Float32Array(0);
  valueBits: Int32Array = new Int32Array(0);

  readonly #store: SampleStore;
  readonly #before: number;
  readonly #after: number;
  #pairStamp = new Int32Array(0);
  #pairOf = new Int32Array(0);
  #stamp = 0;
  #batch: FeatureBatch | undefined;
  #seq0 = 0;
  /** Store context row of each batch row, -1 until a sampler needs it. */
  #ctxOf = new Int32Array(0);

  /**
   * @param store Where windows are copied.
   * @param windowBefore Tokens kept before a peak.
   * @param windowAfter Tokens kept after a peak.
   */
  constructor(store: SampleStore, windowBefore: number, windowAfter: number) {
    this.#store = store;
    this.#before = windowBefore;
    this.#after = windowAfter;
  }

  /** Sizes the per-feature scratch for `dSae` features. */
  resize(dSae: number): void {
    this.ends = new Int32Array(dSae);
    this.#pairStamp = new Int32Array(dSae);
    this.#pairOf = new Int32Array(dSae);
  }

  /**
   * Reads a validated batch: per-context facts, the pairs grouped by feature, and room in the
   * store for every pair's window and every context.
   *
   * @param seq0 Stream number of the batch's first context.
   * @param seed Seed of the context hashes.
   * @param contextKeys Whether to compute each context's own key (non-activating sampling).
   */
  read(batch: FeatureBatch, seq0: number, seed: number, contextKeys: boolean): void {
    const { batchSize: B, contextSize: T, dSae, tokens, mask, attention, position, feature } =
      batch;
    const value = batch.value;
    const store = this.#store;
    this.#batch = batch;
    this.#seq0 = seq0;
    const nnz = position.length;
    this.analyzed = new Int32Array(B);
    this.realLength = new Int32Array(B);
    let nAnalyzed = 0;
    let wide = false;
    for (let b = 0; b < B; b++) {
      let a = 0;
      let last = -1;
      for (let t = 0; t < T; t++) {
        const p = b * T + t;
        a += mask[p]!;
        if (attention[p]) last = t;
        const id = tokens[p]!;
        if (id < 0 || id > 65535) wide = true;
      }
      this.analyzed[b] = a;
      this.realLength[b] = last + 1;
      nAnalyzed += a;
    }
    this.nAnalyzed = nAnalyzed;
    if (wide) store.widenTokens();
    this.ctxHash = batch.origins.map((o) =>
      hashContext(seed, o.source, o.shard, o.row, o.offset ?? 0)
    );
    this.ctxKey = new Float64Array(B);
    if (contextKeys) {
      for (let b = 0; b < B; b++) this.ctxKey[b] = priorityKey(this.ctxHash[b]!, -1);
    }

    this.#grow(nnz);
    if (this.#stamp > 0x3fffffff - B) {
      this.#pairStamp.fill(0);
      this.#stamp = 0;
    }
    const next = this.next;
    const pairF = this.feature;
    const pairCtx = this.ctx;
    const pairPeakT = this.peakT;
    const pairHead = this.head;
    const pairCnt = this.count;
    const pairPeak = this.peak;
    const pairStamp = this.#pairStamp;
    const pairOf = this.#pairOf;
    let nPairs = 0;
    let nKept = 0;
    let e = 0;
    for (let b = 0; b < B; b++) {
      const stamp = ++this.#stamp;
      const base = b * T;
      const end = base + T;
      for (; e < nnz; e++) {
        const p = position[e]!;
        if (p >= end) break;
        if (!mask[p]) continue;
        nKept++;
        const f = feature[e]!;
        const v = value[e]!;
        let k: number;
        if (pairStamp[f] !== stamp) {
          pairStamp[f] = stamp;
          k = nPairs++;
          pairOf[f] = k;
          pairF[k] = f;
          pairCtx[k] = b;
          pairPeak[k] = v;
          pairPeakT[k] = p - base;
          pairCnt[k] = 1;
          next[e] = -1;
        } else {
          k = pairOf[f]!;
          if (v > pairPeak[k]!) {
            pairPeak[k] = v;
            pairPeakT[k] = p - base;
          }
          pairCnt[k]!++;
          next[e] = pairHead[k]!;
        }
        pairHead[k] = e;
      }
    }
    this.nPairs = nPairs;

    // A stable counting sort of the pairs by feature; then ends[f] is the end of f's run.
    const ends = this.ends;
    const order = this.order;
    for (let k = 0; k < nPairs; k++) ends[pairF[k]!]!++;
    let at = 0;
    for (let f = 0; f < dSae; f++) {
      const c = ends[f]!;
      ends[f] = at;
      at += c;
    }
    for (let k = 0; k < nPairs; k++) order[ends[pairF[k]!]!++] = k;
    this.value = value;
    this.valueBits = new Int32Array(value.buffer, value.byteOffset, nnz);

    store.reserve(nPairs, B, nKept, 0);
    this.#ctxOf = new Int32Array(B).fill(-1);
  }

  #grow(nnz: number): void {
    if (this.next.length >= nnz) return;
    const n = Math.max(nnz, Math.ceil(this.next.length * 1.25));
    this.next = new Int32Array(n);
    this.order = new Int32Array(n);
    this.feature = new Int32Array(n);
    this.ctx = new Int32Array(n);
    this.peakT = new Int32Array(n);
    this.head = new Int32Array(n);
    this.count = new Int32Array(n);
    this.peak = new Float64Array(n);
  }

  /** The store context row of batch row `b`, made on first use (its key is `ctxKey[b]`). */
  contextOf(b: number): number {
    let x = this.#ctxOf[b]!;
    if (x < 0) {
      const store = this.#store;
      const o = this.#batch!.origins[b]!;
      x = store.newContext(store.sourceId(o.source), o.shard, o.row, o.offset ?? 0, this.#seq0 + b);
      store.xKey[x] = this.ctxKey[b]!;
      this.#ctxOf[b] = x;
    }
    return x;
  }

  /**
   * Copies pair `i`'s window into a new candidate with priority key `key`; the candidate holds
   * one reference, which the caller drops once every sampler has seen the pair.
   */
  capture(i: number, key: number): number {
    const store = this.#store;
    const batch = this.#batch!;
    const T = batch.contextSize;
    const b = this.ctx[i]!;
    const peakT = this.peakT[i]!;
    const length = Math.max(this.realLength[b]!, peakT + 1);
    const start = Math.max(0, peakT - this.#before);
    const stop = Math.min(length, peakT + this.#after + 1);
    const id = store.newCandidate();
    const ci = store.ci;
    const rec = CI * id;
    ci[rec + I_REF] = 1; // held while the pair is considered
    const x = this.contextOf(b);
    store.xRef[x]!++;
    store.cover(x, start, stop);
    store.cf[CF * id + F_PEAK] = this.peak[i]!;
    store.cf[CF * id + F_KEY] = key;
    ci[rec + I_CTX] = x;
    ci[rec + I_PEAK_T] = peakT;
    ci[rec + I_START] = start;
    ci[rec + I_STOP] = stop;
    const off = store.actTop;
    let n = 0;
    const lo = b * T + start;
    const hi = b * T + stop;
    const { position, value } = batch;
    const actPos = store.actPos;
    const actVal = store.actVal;
    const next = this.next;
    // Latest entry first (the order the entries were always stored in).
    for (let j = this.head[i]!; j >= 0; j = next[j]!) {
      const p = position[j]!;
      if (p >= lo && p < hi) {
        actPos[off + n] = p - b * T;
        actVal[off + n] = value[j]!;
        n++;
      }
    }
    ci[rec + I_ACT_OFF] = off;
    ci[rec + I_ACT_LEN] = n;
    store.actTop += n;
    store.actLive += n;
    return id;
  }

  /** Copies the tokens of the batch's contexts still referenced into the store; frees the rest. */
  storeTokens(): void {
    const store = this.#store;
    const { batchSize: B, contextSize: T, tokens } = this.#batch!;
    const ctxOf = this.#ctxOf;
    const xRef = store.xRef;
    let nTok = 0;
    for (let b = 0; b < B; b++) {
      const x = ctxOf[b]!;
      if (x >= 0 && xRef[x]! > 0) nTok += store.xSpanStop[x]! - store.xSpanStart[x]!;
    }
    store.reserve(0, 0, 0, nTok);
    for (let b = 0; b < B; b++) {
      const x = ctxOf[b]!;
      if (x < 0) continue;
      if (xRef[x]! > 0) store.fillTokens(x, tokens, b * T);
      else store.releaseContext(x);
    }
    this.#batch = undefined;
  }
}

/**
 * Checks the shape of a {@linkcode FeatureBatch}.
 *
 * @param batch The batch.
 * @returns `B`, `T` and `d_sae`.
 * @throws {RangeError} Saying what is wrong and where.
 */
export function validateBatch(
  batch: FeatureBatch,
): { batchSize: number; contextSize: number; dSae: number } {
  const fail = (msg: string): never => {
    throw new RangeError(`Cannot analyze FeatureBatch: ${msg}`);
  };
  const { batchSize: B, contextSize: T, dSae } = batch;
  if (!Number.isSafeInteger(B) || B < 0) fail(`batchSize ${B} is not a non-negative integer`);
  if (!Number.isSafeInteger(T) || T <= 0) fail(`contextSize ${T} is not a positive integer`);
  if (!Number.isSafeInteger(dSae) || dSae <= 0) fail(`dSae ${dSae} is not a positive integer`);
  for (const name of ["tokens", "mask", "attention"] as const) {
    if (batch[name]?.length !== B * T) {
      fail(`${name} has length ${batch[name]?.length}, expected B*T = ${B * T}`);
    }
  }
  if (batch.origins?.length !== B) {
    fail(`origins has length ${batch.origins?.length}, expected B = ${B}`);
  }
  const { position, feature, value } = batch;
  const nnz = position.length;
  if (feature.length !== nnz || value.length !== nnz) {
    fail(
      `position, feature and value have lengths ${nnz}, ${feature.length}, ${value.length}`,
    );
  }
  let prevP = -1;
  let prevF = -1;
  for (let i = 0; i < nnz; i++) {
    const p = position[i]!;
    const f = feature[i]!;
    const v = value[i]!;
    if (p < 0 || p >= B * T) fail(`entry ${i} has position ${p} outside [0, ${B * T})`);
    if (f < 0 || f >= dSae) fail(`entry ${i} has feature ${f} outside [0, ${dSae})`);
    if (!(v > 0 && v < Infinity)) fail(`entry ${i} has value ${v}, expected a finite value > 0`);
    if (p < prevP || (p === prevP && f <= prevF)) {
      fail(
        `entry ${i} (position ${p}, feature ${f}) comes after (position ${prevP}, feature ` +
          `${prevF}): entries must be sorted by position then feature, without duplicates`,
      );
    }
    prevP = p;
    prevF = f;
  }
  for (const [b, o] of batch.origins.entries()) {
    if (typeof o?.source !== "string" || !Number.isInteger(o.shard) || !Number.isInteger(o.row)) {
      fail(`origins[${b}] is not { source, shard, row }`);
    }
  }
  return { batchSize: B, contextSize: T, dSae };
}
