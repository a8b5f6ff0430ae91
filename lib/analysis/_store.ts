/**
 * Flat storage of the analyzer's kept samples, so that keeping millions of them creates no
 * per-sample objects (and no garbage-collector work):
 *
 * - **contexts**: one row per kept context (its coordinates, stream number, non-activating key)
 *   with one token span `[spanStart, spanStop)` of the context in a shared token heap, covering
 *   every window kept from it. A context is shared by all the samples taken from it (across
 *   features) and reference-counted.
 * - **candidates**: one 48-byte record per `(feature, context)` sample (so that touching a
 *   candidate touches one or two cache lines): peak, priority key, context row, peak position,
 *   window `[start, stop)` within the context, reference count, and where the feature's non-zero
 *   activations inside the window (positions within the context and values) sit in a shared
 *   activation heap. Reference-counted by the feature's lists (top, pool, Python rule); its
 *   stream number is its context's.
 *
 * Rows are recycled through free lists; heaps are bump-allocated and compacted when they fill up.
 * Columns are typed arrays exposed as fields for tight loops: after {@linkcode SampleStore.reserve}
 * no allocation up to the reserved amounts replaces an array, so references stay valid.
 *
 * @module
 */

type Column = Int32Array | Float64Array;

function grown<T extends Column>(a: T, n: number): T {
  const b = new (a.constructor as { new (n: number): T })(n);
  b.set(a);
  return b;
}

/** Bytes of one candidate record. */
export const CAND_BYTES = 48;
/** Float64 slots per record: `cf[CF * id + F_KEY]` etc. */
export const CF = CAND_BYTES / 8;
/** Int32 slots per record: `ci[CI * id + I_CTX]` etc. */
export const CI = CAND_BYTES / 4;
/** Priority key (float64). */
export const F_KEY = 0;
/** Peak activation (float64). */
export const F_PEAK = 1;
/** Context row. */
export const I_CTX = 4;
/** Reference count (lists holding the candidate, plus holds). */
export const I_REF = 5;
/** Offset of the activations in the activation heap. */
export const I_ACT_OFF = 6;
/** Number of non-zero activations kept. */
export const I_ACT_LEN = 7;
/** Peak position within the context. */
export const I_PEAK_T = 8;
/** Window start within the context. */
export const I_START = 9;
/** Window end (exclusive) within the context. */
export const I_STOP = 10;
/** Next free record (free list). */
const I_NEXT = 11;

/** Rows and heaps of kept samples (see the module documentation). */
export class SampleStore {
  // Candidates: records of CAND_BYTES, viewed as float64 (cf) and int32 (ci) slots.
  cCap = 0;
  cUsed = 0;
  cLive = 0;
  cf = new Float64Array(0);
  ci = new Int32Array(0);
  #cFreeHead = -1;

  // Contexts.
  xCap = 0;
  xUsed = 0;
  xLive = 0;
  xSource = new Int32Array(0);
  xShard = new Float64Array(0);
  xRow = new Float64Array(0);
  xOffset = new Float64Array(0);
  xSeq = new Float64Array(0);
  /** The context's own priority key (non-activating samples). */
  xKey = new Float64Array(0);
  /** Width of the non-activating window `[0, stop)`, 0 when unused. */
  xNonActStop = new Int32Array(0);
  xSpanStart = new Int32Array(0);
  xSpanStop = new Int32Array(0);
  /** Offset of the span in the token heap, -1 until the tokens are copied. */
  xTokOff = new Int32Array(0);
  xRef = new Int32Array(0);
  #xFree = new Int32Array(0);
  #xNFree = 0;
  /** Dataset names by id. */
  readonly sources: string[] = [];
  readonly #sourceIds = new Map<string, number>();

  // Activation heap: positions within the context, values.
  actPos = new Int32Array(0);
  actVal = new Float32Array(0);
  actTop = 0;
  actLive = 0;

  // Token heap: 16-bit while every token id fits, 32-bit after.
  tok: Uint16Array | Int32Array = new Uint16Array(0);
  tokTop = 0;
  tokLive = 0;

  /**
   * Makes room for `nCand` new candidates, `nCtx` contexts, `nAct` activation entries and `nTok`
   * tokens without replacing any array.
   */
  reserve(nCand: number, nCtx: number, nAct: number, nTok: number): void {
    if (this.cUsed + nCand > this.cCap) this.#growCandidates(this.cUsed + nCand);
    if (this.xUsed + nCtx > this.xCap) this.#growContexts(this.xUsed + nCtx);
    if (this.actTop + nAct > this.actVal.length) this.#compactActs(nAct);
    if (this.tokTop + nTok > this.tok.length) this.#compactTokens(nTok, false);
  }

  /** Switches the token heap to 32 bits (needed for ids outside `[0, 65535]`). */
  widenTokens(): void {
    if (this.tok instanceof Uint16Array) this.#compactTokens(0, true);
  }

  /** The id of a dataset name. */
  sourceId(source: string): number {
    let id = this.#sourceIds.get(source);
    if (id === undefined) {
      id = this.sources.length;
      this.sources.push(source);
      this.#sourceIds.set(source, id);
    }
    return id;
  }

  #growCandidates(need: number): void {
    const n = Math.max(need, Math.ceil(this.cCap * 1.5), 1024);
    const buffer = new ArrayBuffer(n * CAND_BYTES);
    new Uint8Array(buffer).set(new Uint8Array(this.cf.buffer, 0, this.cCap * CAND_BYTES));
    this.cf = new Float64Array(buffer);
    this.ci = new Int32Array(buffer);
    this.cCap = n;
  }

  #growContexts(need: number): void {
    const n = Math.max(need, Math.ceil(this.xCap * 1.5), 256);
    this.xSource = grown(this.xSource, n);
    this.xShard = grown(this.xShard, n);
    this.xRow = grown(this.xRow, n);
    this.xOffset = grown(this.xOffset, n);
    this.xSeq = grown(this.xSeq, n);
    this.xKey = grown(this.xKey, n);
    this.xNonActStop = grown(this.xNonActStop, n);
    this.xSpanStart = grown(this.xSpanStart, n);
    this.xSpanStop = grown(this.xSpanStop, n);
    this.xTokOff = grown(this.xTokOff, n);
    this.xRef = grown(this.xRef, n);
    this.#xFree = grown(this.#xFree, n);
    this.xCap = n;
  }

  /** Copies the live activation segments into fresh arrays with room for `extra` more. */
  #compactActs(extra: number): void {
    const n = Math.max(Math.ceil((this.actLive + extra) * 1.5), 1 << 16);
    const pos = new Int32Array(n);
    const val = new Float32Array(n);
    let top = 0;
    const { ci, actPos, actVal } = this;
    for (let id = 0; id < this.cUsed; id++) {
      const r = CI * id;
      const len = ci[r + I_ACT_LEN]!;
      if (ci[r + I_REF] === 0 || len === 0) continue;
      const off = ci[r + I_ACT_OFF]!;
      for (let j = 0; j < len; j++) {
        pos[top + j] = actPos[off + j]!;
        val[top + j] = actVal[off + j]!;
      }
      ci[r + I_ACT_OFF] = top;
      top += len;
    }
    this.actPos = pos;
    this.actVal = val;
    this.actTop = top;
    this.actLive = top;
  }

  /** Copies the live token spans into a fresh heap with room for `extra` more. */
  #compactTokens(extra: number, wide: boolean): void {
    const n = Math.max(Math.ceil((this.tokLive + extra) * 1.5), 1 << 16);
    const tok = wide || this.tok instanceof Int32Array ? new Int32Array(n) : new Uint16Array(n);
    let top = 0;
    const { xTokOff, xSpanStart, xSpanStop } = this;
    for (let x = 0; x < this.xUsed; x++) {
      const off = xTokOff[x]!;
      if (off < 0) continue;
      const len = xSpanStop[x]! - xSpanStart[x]!;
      const from = this.tok;
      for (let j = 0; j < len; j++) tok[top + j] = from[off + j]!;
      xTokOff[x] = top;
      top += len;
    }
    this.tok = tok;
    this.tokTop = top;
    this.tokLive = top;
  }

  /** A new candidate record (reference count 0, no activations); `reserve` first. */
  newCandidate(): number {
    let id = this.#cFreeHead;
    if (id >= 0) this.#cFreeHead = this.ci[CI * id + I_NEXT]!;
    else {
      id = this.cUsed++;
      if (id >= this.cCap) throw new Error("SampleStore: candidate capacity exceeded");
    }
    this.cLive++;
    this.ci[CI * id + I_ACT_LEN] = 0;
    this.ci[CI * id + I_REF] = 0;
    return id;
  }

  /** Frees a candidate record: its activations and its reference to its context. */
  releaseCandidate(id: number): void {
    const r = CI * id;
    const ci = this.ci;
    this.actLive -= ci[r + I_ACT_LEN]!;
    ci[r + I_ACT_LEN] = 0;
    ci[r + I_REF] = 0;
    ci[r + I_NEXT] = this.#cFreeHead;
    this.#cFreeHead = id;
    this.cLive--;
    this.unrefContext(ci[r + I_CTX]!);
  }

  /** Drops one reference to a candidate, freeing it at zero. */
  unrefCandidate(id: number): void {
    if (--this.ci[CI * id + I_REF]! === 0) this.releaseCandidate(id);
  }

  /** Adds one reference to a candidate. */
  refCandidate(id: number): void {
    this.ci[CI * id + I_REF]!++;
  }

  /** A candidate's peak. */
  peak(id: number): number {
    return this.cf[CF * id + F_PEAK]!;
  }

  /** A candidate's priority key. */
  key(id: number): number {
    return this.cf[CF * id + F_KEY]!;
  }

  /** A candidate's context row. */
  ctx(id: number): number {
    return this.ci[CI * id + I_CTX]!;
  }

  /** A candidate's stream number (its context's). */
  seq(id: number): number {
    return this.xSeq[this.ci[CI * id + I_CTX]!]!;
  }

  /** A candidate's window start within its context. */
  start(id: number): number {
    return this.ci[CI * id + I_START]!;
  }

  /** A candidate's window end (exclusive) within its context. */
  stop(id: number): number {
    return this.ci[CI * id + I_STOP]!;
  }

  /** A candidate's peak position within its context. */
  peakT(id: number): number {
    return this.ci[CI * id + I_PEAK_T]!;
  }

  /**
   * Fills a new candidate record (activations excepted) and references its context; `reserve`
   * first.
   */
  setCandidate(
    id: number,
    peak: number,
    key: number,
    x: number,
    peakT: number,
    start: number,
    stop: number,
  ): void {
    this.cf[CF * id + F_PEAK] = peak;
    this.cf[CF * id + F_KEY] = key;
    const r = CI * id;
    this.ci[r + I_CTX] = x;
    this.ci[r + I_PEAK_T] = peakT;
    this.ci[r + I_START] = start;
    this.ci[r + I_STOP] = stop;
    this.xRef[x]!++;
  }

  /** A new context row with an empty span and no tokens yet; `reserve` first. */
  newContext(source: number, shard: number, row: number, offset: number, seq: number): number {
    const x = this.#xNFree > 0 ? this.#xFree[--this.#xNFree]! : this.xUsed++;
    if (x >= this.xCap) throw new Error("SampleStore: context capacity exceeded");
    this.xLive++;
    this.xSource[x] = source;
    this.xShard[x] = shard;
    this.xRow[x] = row;
    this.xOffset[x] = offset;
    this.xSeq[x] = seq;
    this.xKey[x] = 0;
    this.xNonActStop[x] = 0;
    this.xSpanStart[x] = 0x7fffffff;
    this.xSpanStop[x] = 0;
    this.xTokOff[x] = -1;
    this.xRef[x] = 0;
    return x;
  }

  /** Widens a context's span (before its tokens are copied). */
  cover(x: number, start: number, stop: number): void {
    if (start < this.xSpanStart[x]!) this.xSpanStart[x] = start;
    if (stop > this.xSpanStop[x]!) this.xSpanStop[x] = stop;
  }

  /**
   * Copies a context's span from `tokens[base + spanStart, base + spanStop)` into the heap;
   * `reserve` first. An empty span is stored as an empty span at 0.
   */
  fillTokens(x: number, tokens: ArrayLike<number>, base: number): void {
    if (this.xSpanStop[x]! <= this.xSpanStart[x]!) {
      this.xSpanStart[x] = 0;
      this.xSpanStop[x] = 0;
    }
    const a = this.xSpanStart[x]!;
    const len = this.xSpanStop[x]! - a;
    if (this.tokTop + len > this.tok.length) throw new Error("SampleStore: token heap exceeded");
    const off = this.tokTop;
    const tok = this.tok;
    for (let i = 0; i < len; i++) tok[off + i] = tokens[base + a + i]!;
    this.xTokOff[x] = off;
    this.tokTop += len;
    this.tokLive += len;
  }

  /** Drops one reference to a context; a context whose tokens are stored is freed at zero. */
  unrefContext(x: number): void {
    if (--this.xRef[x]! === 0 && this.xTokOff[x]! >= 0) this.releaseContext(x);
  }

  /** Frees a context row and its tokens. */
  releaseContext(x: number): void {
    if (this.xTokOff[x]! >= 0) this.tokLive -= this.xSpanStop[x]! - this.xSpanStart[x]!;
    this.xTokOff[x] = -1;
    this.xRef[x] = 0;
    this.xLive--;
    this.#xFree[this.#xNFree++] = x;
  }

  /** The token ids of `[start, stop)` of a context (a fresh array). */
  tokens(x: number, start: number, stop: number): Int32Array {
    const out = new Int32Array(stop - start);
    const off = this.xTokOff[x]! + start - this.xSpanStart[x]!;
    for (let i = 0; i < out.length; i++) out[i] = this.tok[off + i]!;
    return out;
  }

  /** Copies a context's tokens `[start, stop)` into `out` at `at`. */
  tokensInto(x: number, start: number, stop: number, out: Int32Array, at: number): void {
    const off = this.xTokOff[x]! + start - this.xSpanStart[x]!;
    const tok = this.tok;
    for (let i = 0, n = stop - start; i < n; i++) out[at + i] = tok[off + i]!;
  }

  /** Writes a candidate's activations over its window into `out` (zeroed) from `at`. */
  actsInto(id: number, out: Float32Array, at: number): void {
    const r = CI * id;
    const base = at - this.ci[r + I_START]!;
    const off = this.ci[r + I_ACT_OFF]!;
    const len = this.ci[r + I_ACT_LEN]!;
    for (let j = 0; j < len; j++) out[base + this.actPos[off + j]!] = this.actVal[off + j]!;
  }

  /** A candidate's activations over its window, dense (a fresh array). */
  acts(id: number): Float32Array {
    const r = CI * id;
    const start = this.ci[r + I_START]!;
    const out = new Float32Array(this.ci[r + I_STOP]! - start);
    const off = this.ci[r + I_ACT_OFF]!;
    const len = this.ci[r + I_ACT_LEN]!;
    for (let j = 0; j < len; j++) out[this.actPos[off + j]! - start] = this.actVal[off + j]!;
    return out;
  }

  /** Stores a candidate's activations from parallel lists of positions and values. */
  setActs(id: number, pos: ArrayLike<number>, val: ArrayLike<number>, n: number): void {
    this.reserve(0, 0, n, 0);
    const off = this.actTop;
    for (let j = 0; j < n; j++) {
      this.actPos[off + j] = pos[j]!;
      this.actVal[off + j] = val[j]!;
    }
    this.ci[CI * id + I_ACT_OFF] = off;
    this.ci[CI * id + I_ACT_LEN] = n;
    this.actTop += n;
    this.actLive += n;
  }

  /** Bytes held by the columns and heaps (allocated capacity). */
  bytes(): number {
    const c = [
      this.cf,
      this.xSource,
      this.xShard,
      this.xRow,
      this.xOffset,
      this.xSeq,
      this.xKey,
      this.xNonActStop,
      this.xSpanStart,
      this.xSpanStop,
      this.xTokOff,
      this.xRef,
      this.#xFree,
      this.actPos,
      this.actVal,
      this.tok,
    ];
    return c.reduce((a, x) => a + x.byteLength, 0);
  }
}
