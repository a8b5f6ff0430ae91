/**
 * The Python-rule sampler (`subsampleRule: "python"`): the Python tool's rule, reproduced as it
 * runs. After each batch the feature's running max `M` includes the batch; a context of the
 * batch whose peak is `≤ p·M` competes for the `n` highest peaks kept so far, one above it is
 * dropped for good (even if a later, larger max would have admitted it). Unlike the Python tool,
 * contexts where the feature does not fire are never included.
 *
 * The result depends on batch boundaries, and a merge (union, then the `n` highest) equals a
 * single run only when no context was dropped for being above `p·M` in one part but not in the
 * single run.
 *
 * @module
 */

import type { BatchPairs } from "./_batch.ts";
import type { SamplingSpec } from "./options.ts";
import { appendByPeak, insertByPeak, type PeakList, peakList } from "./_peak_list.ts";
import type { SampleStore } from "./_store.ts";

/** One list per Python-rule sampling of every feature. */
export class PythonRuleSampler {
  /** The Python-rule samplings, in output order. */
  readonly specs: readonly SamplingSpec[];
  readonly #store: SampleStore;
  #lists: PeakList[][] = [];

  /**
   * @param store Where the candidates live.
   * @param specs The samplings of kind `python` (none disables the sampler).
   */
  constructor(store: SampleStore, specs: readonly SamplingSpec[]) {
    this.#store = store;
    this.specs = specs;
  }

  /** Makes room for `dSae` features, none of them alive. */
  resize(dSae: number): void {
    this.#lists = new Array<PeakList[]>(dSae);
  }

  /** Allocates feature `f`'s lists when it first fires. */
  wake(f: number): void {
    this.#lists[f] = this.specs.map(peakList);
  }

  /** Entries held by feature `f`'s lists (ids and peaks). */
  entries(f: number): number {
    let n = 0;
    for (const l of this.#lists[f]!) n += 2 * l.ids.length;
    return n;
  }

  /**
   * Offers pair `i` of feature `f` (peak `peak`, key `key`) against the max `max` including
   * this batch; `cand` is the pair's candidate when another sampler already captured it, else -1.
   *
   * @returns The pair's candidate, or -1 when none was needed so far.
   */
  offer(
    f: number,
    i: number,
    peak: number,
    key: number,
    max: number,
    cand: number,
    pairs: BatchPairs,
  ): number {
    const specs = this.specs;
    for (let j = 0; j < specs.length; j++) {
      const spec = specs[j]!;
      if (!(peak <= spec.hi * max)) continue;
      const list = this.#lists[f]![j]!;
      if (list.ids.length < spec.n || peak > list.peaks[spec.n - 1]!) {
        if (cand < 0) cand = pairs.capture(i, key);
        insertByPeak(this.#store, list, cand, spec.n);
      }
    }
    return cand;
  }

  /** Adds feature `f` of `other`, whose candidates `move` copies into this state's store. */
  merge(f: number, other: PythonRuleSampler, move: (id: number) => number): void {
    for (let j = 0; j < this.specs.length; j++) {
      const n = this.specs[j]!.n;
      for (const c of other.#lists[f]![j]!.ids) {
        insertByPeak(this.#store, this.#lists[f]![j]!, move(c), n);
      }
    }
  }

  /** Feature `f`'s lists as saved: the saved candidate number of each id. */
  toJSON(f: number, save: (id: number) => number): number[][] {
    return this.#lists[f]!.map((list) => list.ids.map(save));
  }

  /** Restores feature `f`'s saved lists, `candidate` making each saved candidate. */
  restore(f: number, saved: readonly number[][], candidate: (i: number) => number): void {
    this.specs.forEach((_, k) => {
      for (const i of saved[k] ?? []) appendByPeak(this.#store, this.#lists[f]![k]!, candidate(i));
    });
  }

  /** Feature `f`'s samples of Python-rule sampling `j`, highest peak first. */
  pick(f: number, j: number): number[] {
    return this.#lists[f]![j]!.ids;
  }
}
