/**
 * A capped list of candidates ordered by peak, shared by the top sampler (`_top.ts`) and the
 * Python-rule sampler (`_python_rule.ts`).
 *
 * @module
 */

import type { SampleStore } from "./_store.ts";

/** Candidate ids sorted by peak descending then stream order, with their peaks alongside. */
export interface PeakList {
  ids: number[];
  peaks: number[];
}

/** An empty list. */
export function peakList(): PeakList {
  return { ids: [], peaks: [] };
}

/**
 * Inserts candidate `id` into `list` (peak descending, then stream order: an equal peak goes
 * after the kept ones), keeping at most `cap`; the list holds a reference to each of its ids,
 * and the one pushed out is released.
 */
export function insertByPeak(store: SampleStore, list: PeakList, id: number, cap: number): void {
  const peak = store.peak(id);
  const { ids, peaks } = list;
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const pm = peaks[mid]!;
    if (pm > peak || (pm === peak && store.seq(ids[mid]!) <= store.seq(id))) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= cap) return;
  let n = ids.length;
  let evicted = -1;
  if (n < cap) {
    ids.push(id);
    peaks.push(peak);
  } else evicted = ids[--n]!;
  for (let j = n; j > lo; j--) {
    ids[j] = ids[j - 1]!;
    peaks[j] = peaks[j - 1]!;
  }
  ids[lo] = id;
  peaks[lo] = peak;
  store.refCandidate(id);
  if (evicted >= 0) store.unrefCandidate(evicted);
}

/** Appends a restored candidate, already in order, to `list` (and references it). */
export function appendByPeak(store: SampleStore, list: PeakList, id: number): void {
  list.ids.push(id);
  list.peaks.push(store.peak(id));
  store.refCandidate(id);
}
