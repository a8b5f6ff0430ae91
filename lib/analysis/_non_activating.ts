/**
 * The non-activating sampler: per feature, a uniform random sample of the analyzed contexts (at
 * least one token with mask 1) where the feature never fires. Every context has one key for all
 * features (a seeded hash of its coordinates); a feature keeps the `n` non-firing contexts with
 * the smallest keys (ties to the earlier context). Per batch, a feature whose n-th key is below
 * every key of the batch is skipped after one comparison: cost `O(d_sae + active entries +
 * insertions)`. The window (the first `windowBefore + windowAfter + 1` tokens of the context) is
 * shared by all features. Merge is the union, then the `n` smallest keys: exact.
 *
 * @module
 */

import type { BatchPairs } from "./_batch.ts";
import type { SampleStore } from "./_store.ts";

const EMPTY: number[] = [];

/** The non-firing contexts kept for every feature (store context rows). */
export class NonActivatingSampler {
  /** Sample size per feature (0 disables the sampler). */
  readonly n: number;
  readonly #store: SampleStore;
  readonly #width: number;
  #lists: number[][] = [];
  /** The n-th key once a list is full (Infinity before). */
  #tau = new Float64Array(0);
  /** Per batch: 1 where `(context, feature)` fires. */
  #firing = new Uint8Array(0);

  /**
   * @param store Where the contexts live.
   * @param n Sample size per feature (0 disables the sampler).
   * @param width Tokens of a window: `windowBefore + windowAfter + 1`.
   */
  constructor(store: SampleStore, n: number, width: number) {
    this.#store = store;
    this.n = n;
    this.#width = width;
  }

  /** Makes room for `dSae` features with empty lists. */
  resize(dSae: number): void {
    this.#lists = new Array<number[]>(dSae).fill(EMPTY); // each replaced on first insertion
    this.#tau = new Float64Array(dSae).fill(Infinity);
  }

  /** Contexts listed for feature `f`. */
  entries(f: number): number {
    return this.#lists[f]!.length;
  }

  /** Bytes of the per-batch scratch. */
  get scratchBytes(): number {
    return this.#firing.byteLength;
  }

  /** Every context row listed, for counting distinct ones. */
  *contexts(): Generator<number> {
    for (const list of this.#lists) yield* list;
  }

  /** Adds the batch `pairs` was last given (its contexts' keys computed). */
  addBatch(pairs: BatchPairs, batchSize: number, dSae: number): void {
    if (this.n === 0) return;
    const B = batchSize;
    if (this.#firing.length < B * dSae) this.#firing = new Uint8Array(B * dSae);
    const { nPairs, ctx: pairCtx, feature: pairF, analyzed, ctxKey, realLength } = pairs;
    const firing = this.#firing;
    const store = this.#store;
    const order: number[] = [];
    for (let b = 0; b < B; b++) if (analyzed[b]! !== 0) order.push(b);
    if (order.length === 0) return; // then no pair either: a pair has an analyzed token
    order.sort((x, y) => ctxKey[x]! - ctxKey[y]! || x - y);
    for (let i = 0; i < nPairs; i++) firing[pairCtx[i]! * dSae + pairF[i]!] = 1;
    const minKey = ctxKey[order[0]!]!;
    const tau = this.#tau;
    for (let f = 0; f < dSae; f++) {
      if (!(minKey <= tau[f]!)) continue;
      for (const b of order) {
        const key = ctxKey[b]!;
        if (!(key <= tau[f]!)) break;
        if (firing[b * dSae + f]) continue;
        const x = pairs.contextOf(b);
        if (this.#insert(f, x)) {
          const stop = Math.min(this.#width, Math.max(realLength[b]!, 1));
          store.xNonActStop[x] = stop;
          store.cover(x, 0, stop);
        }
      }
    }
    for (let i = 0; i < nPairs; i++) firing[pairCtx[i]! * dSae + pairF[i]!] = 0;
  }

  /** Inserts context `x` into feature `f`'s list (by key, then stream order); whether it went in. */
  #insert(f: number, x: number): boolean {
    const store = this.#store;
    const n = this.n;
    let list = this.#lists[f]!;
    const key = store.xKey[x]!;
    const seq = store.xSeq[x]!;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = list[mid]!;
      const km = store.xKey[m]!;
      if (km < key || (km === key && store.xSeq[m]! <= seq)) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= n) return false;
    if (list.length === 0) this.#lists[f] = list = [];
    list.splice(lo, 0, x);
    store.xRef[x]!++;
    if (list.length > n) store.unrefContext(list.pop()!);
    if (list.length === n) this.#tau[f] = store.xKey[list[n - 1]!]!;
    return true;
  }

  /** Adds feature `f` of `other`, whose contexts `move` copies into this state's store. */
  merge(f: number, other: NonActivatingSampler, move: (x: number) => number): void {
    const theirs = other.#lists[f]!;
    if (theirs.length === 0 || this.n === 0) return;
    for (const ox of theirs) this.#insert(f, move(ox));
  }

  /** The lists as saved: `[feature, saved numbers]` for every feature with a sample. */
  toJSON(save: (x: number) => number): [number, number[]][] {
    const out: [number, number[]][] = [];
    for (let f = 0; f < this.#lists.length; f++) {
      const list = this.#lists[f]!;
      if (list.length > 0) out.push([f, list.map(save)]);
    }
    return out;
  }

  /** Restores feature `f`'s saved list, `context` making each saved context's row. */
  restore(f: number, saved: readonly number[], context: (i: number) => number): void {
    for (const i of saved) this.#insert(f, context(i));
  }

  /** Feature `f`'s sample: context rows by key. */
  pick(f: number): number[] {
    return this.#lists[f]!;
  }
}
