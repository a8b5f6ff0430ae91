/**
 * Copies candidates and contexts from another state's {@linkcode SampleStore} into this one, as
 * `AnalyzerState.merge` needs them: each is copied once, however many samplers refer to it, and
 * held until the samplers have taken their own references.
 *
 * @module
 */

import { CI, I_ACT_LEN, I_ACT_OFF, type SampleStore } from "./_store.ts";

/** One merge's copies from `theirs` into `store`. */
export class StoreCopy {
  readonly #store: SampleStore;
  readonly #theirs: SampleStore;
  readonly #shift: number;
  readonly #contexts = new Map<number, number>();
  readonly #candidates = new Map<number, number>();
  /** Candidates copied for the current feature (held until {@linkcode StoreCopy.endFeature}). */
  readonly #moved: number[] = [];

  /**
   * @param store The store copied into.
   * @param theirs The store copied from.
   * @param shift Added to the stream numbers of their contexts (this state's context count).
   */
  constructor(store: SampleStore, theirs: SampleStore, shift: number) {
    this.#store = store;
    this.#theirs = theirs;
    this.#shift = shift;
  }

  /** This store's row of their context `ox` (held until {@linkcode StoreCopy.finish}). */
  context = (ox: number): number => {
    let x = this.#contexts.get(ox);
    if (x === undefined) {
      const store = this.#store;
      const s = this.#theirs;
      store.reserve(0, 1, 0, s.xSpanStop[ox]! - s.xSpanStart[ox]!);
      x = store.newContext(
        store.sourceId(s.sources[s.xSource[ox]!]!),
        s.xShard[ox]!,
        s.xRow[ox]!,
        s.xOffset[ox]!,
        s.xSeq[ox]! + this.#shift,
      );
      store.xKey[x] = s.xKey[ox]!;
      store.xNonActStop[x] = s.xNonActStop[ox]!;
      store.cover(x, s.xSpanStart[ox]!, s.xSpanStop[ox]!);
      store.fillTokens(x, s.tok, s.xTokOff[ox]! - s.xSpanStart[ox]!);
      store.xRef[x] = 1; // held until the merge ends
      this.#contexts.set(ox, x);
    }
    return x;
  };

  /** This store's id of their candidate `oc` (held until the feature is merged). */
  candidate = (oc: number): number => {
    let id = this.#candidates.get(oc);
    if (id === undefined) {
      const store = this.#store;
      const s = this.#theirs;
      const x = this.context(s.ctx(oc));
      store.reserve(1, 0, 0, 0);
      id = store.newCandidate();
      store.refCandidate(id); // held until feature f is merged
      store.setCandidate(id, s.peak(oc), s.key(oc), x, s.peakT(oc), s.start(oc), s.stop(oc));
      const off = s.ci[CI * oc + I_ACT_OFF]!;
      const len = s.ci[CI * oc + I_ACT_LEN]!;
      store.setActs(id, s.actPos.subarray(off, off + len), s.actVal.subarray(off, off + len), len);
      this.#candidates.set(oc, id);
      this.#moved.push(id);
    }
    return id;
  };

  /** Drops the holds on the candidates copied for the feature just merged. */
  endFeature(): void {
    for (const id of this.#moved) this.#store.unrefCandidate(id);
    this.#moved.length = 0;
  }

  /** Drops the holds on the contexts copied. */
  finish(): void {
    for (const x of this.#contexts.values()) this.#store.unrefContext(x);
  }
}
