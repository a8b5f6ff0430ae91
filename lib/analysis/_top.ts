/**
 * The top sampler: per feature, exactly the `n` contexts with the highest peaks, ties going to
 * the earlier context (stream order). Most pairs are rejected by one comparison with the n-th
 * peak kept. Merge inserts the other state's list after this one's (its contexts come later in
 * the stream), which gives exactly the list of one run over both.
 *
 * @module
 */

import type { BatchPairs } from "./_batch.ts";
import { appendByPeak, insertByPeak, type PeakList, peakList } from "./_peak_list.ts";
import type { SampleStore } from "./_store.ts";

/** The `n` highest peaks of every feature. */
export class TopSampler {
  /** Size of the largest top sampling (0: none). */
  readonly n: number;
  readonly #store: SampleStore;
  #lists: PeakList[] = [];
  /** A peak must be above this to enter the list (0 while it is not full). */
  #thr = new Float64Array(0);

  /**
   * @param store Where the candidates live.
   * @param n List size (the largest top sampling's `n`; 0 disables the sampler).
   */
  constructor(store: SampleStore, n: number) {
    this.#store = store;
    this.n = n;
  }

  /** Makes room for `dSae` features, none of them alive. */
  resize(dSae: number): void {
    this.#lists = new Array<PeakList>(dSae);
    this.#thr = new Float64Array(dSae);
  }

  /** Allocates feature `f`'s list when it first fires. */
  wake(f: number): void {
    this.#lists[f] = peakList();
  }

  /** Entries held by feature `f`'s list (ids and peaks). */
  entries(f: number): number {
    return 2 * this.#lists[f]!.ids.length;
  }

  /**
   * Offers pair `i` of feature `f` (peak `peak`, priority key `key`); `cand` is the pair's
   * candidate when another sampler already captured it, else -1.
   *
   * @returns The pair's candidate, or -1 when none was needed so far.
   */
  offer(f: number, i: number, peak: number, key: number, cand: number, pairs: BatchPairs): number {
    // A new context comes after every kept one, so an equal peak never displaces one.
    if (this.n > 0 && peak > this.#thr[f]!) {
      if (cand < 0) cand = pairs.capture(i, key);
      const list = this.#lists[f]!;
      insertByPeak(this.#store, list, cand, this.n);
      if (list.ids.length === this.n) this.#thr[f] = list.peaks[this.n - 1]!;
    }
    return cand;
  }

  /** Adds feature `f` of `other`, whose candidates `move` copies into this state's store. */
  merge(f: number, other: TopSampler, move: (id: number) => number): void {
    const list = this.#lists[f]!;
    for (const c of other.#lists[f]!.ids) insertByPeak(this.#store, list, move(c), this.n);
    this.#setThreshold(f);
  }

  /** Feature `f`'s list as saved: the saved candidate number of each id. */
  toJSON(f: number, save: (id: number) => number): number[] {
    return this.#lists[f]!.ids.map(save);
  }

  /** Restores feature `f`'s saved list, `candidate` making each saved candidate. */
  restore(f: number, saved: readonly number[], candidate: (i: number) => number): void {
    const list = this.#lists[f]!;
    for (const i of saved) appendByPeak(this.#store, list, candidate(i));
    this.#setThreshold(f);
  }

  /** The n-th peak kept once the list is full, else 0. */
  #setThreshold(f: number): void {
    const ids = this.#lists[f]!.ids;
    this.#thr[f] = ids.length === this.n && this.n > 0 ? this.#store.peak(ids[this.n - 1]!) : 0;
  }

  /** The `n` (at most the sampler's size) highest peaks of feature `f`, highest first. */
  pick(f: number, n: number): number[] {
    return this.#lists[f]!.ids.slice(0, n);
  }
}
