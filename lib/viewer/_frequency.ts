/**
 * The SAE-wide distribution of feature frequencies: a histogram of `log10(act_times /
 * n_analyzed_tokens)` over the alive features, as the overview page draws it.
 *
 * @module
 */

/** The frequency histogram of one analysis. */
export interface FrequencyHistogram {
  /** Features the analysis covers. */
  total: number;
  /** Features with `act_times > 0`. */
  alive: number;
  /** Features with `act_times = 0`. */
  dead: number;
  /** Bin edges in log10 frequency, `counts.length + 1` of them (empty when nothing is alive). */
  edges: number[];
  /** Alive features per bin. */
  counts: number[];
}

/**
 * Bins the log10 frequencies of the alive features into `bins` equal-width bins spanning their
 * range (widened to one decade around a single value); the last bin includes its upper edge.
 *
 * @param features `act_times` and `n_analyzed_tokens` of every feature of the analysis.
 * @param bins Number of bins (≥ 1).
 */
export function frequencyHistogram(
  features: readonly { act_times: number; n_analyzed_tokens: number }[],
  bins: number,
): FrequencyHistogram {
  const logs: number[] = [];
  for (const f of features) {
    if (f.act_times > 0 && f.n_analyzed_tokens > 0) {
      logs.push(Math.log10(f.act_times / f.n_analyzed_tokens));
    }
  }
  const out: FrequencyHistogram = {
    total: features.length,
    alive: logs.length,
    dead: features.length - logs.length,
    edges: [],
    counts: [],
  };
  if (logs.length === 0) return out;
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of logs) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  if (hi - lo < 1e-9) {
    lo -= 0.5;
    hi += 0.5;
  }
  const width = (hi - lo) / bins;
  out.edges = Array.from({ length: bins + 1 }, (_, i) => i === bins ? hi : lo + i * width);
  out.counts = new Array<number>(bins).fill(0);
  for (const x of logs) {
    const b = Math.min(bins - 1, Math.max(0, Math.floor((x - lo) / width)));
    out.counts[b]!++;
  }
  return out;
}
