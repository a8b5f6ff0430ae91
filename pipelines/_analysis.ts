/**
 * What `analyzeSae` and `mergeAnalysis` share: the feature analyzer's options from the settings,
 * and the tally of written records that their summaries print.
 *
 * @module
 */

import type { FeatureAnalyzerOptions } from "../lib/analysis/options.ts";
import type { AnalyzeSAESettings } from "../lib/settings/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";

/**
 * The feature analyzer's options from `analyze` settings (`[analyzer]`, names), without a token
 * limit.
 *
 * @param settings Resolved `analyze` settings.
 * @returns The options for `featureAnalyzer` / `AnalyzerState`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { analyzerOptionsOf } from "./_analysis.ts";
 * import { loadSettings } from "../lib/settings/mod.ts";
 * const demo = new URL("../fixtures/demo/analyze.toml", import.meta.url).pathname;
 * const o = analyzerOptionsOf(await loadSettings(demo, "analyze"));
 * assert.equal(o.analysisName, "default");
 * assert.equal(o.limitTokens, undefined);
 * ```
 */
export function analyzerOptionsOf(settings: AnalyzeSAESettings): FeatureAnalyzerOptions {
  const a = settings.analyzer;
  return {
    analysisName: settings.analysis_name,
    saeName: settings.sae_name,
    saeSeries: settings.sae_series,
    subsamples: Object.fromEntries(
      Object.entries(a.subsamples).map(([name, { proportion, n_samples }]) => [
        name,
        { proportion, n_samples },
      ]),
    ),
    subsampleRule: a.subsample_rule === "python" ? "python" : "band",
    // As in the settings: the table's own sizes win; these apply when it has no such entry.
    nTop: a.n_top,
    nNonActivating: a.n_non_activating,
    windowBefore: a.window_before,
    windowAfter: a.window_after,
    seed: a.seed,
  };
}

/** Keeps counts and the densest features of the records written. */
export class Tally {
  /** Features that fired. */
  alive = 0;
  /** Features that never fired. */
  dead = 0;
  /** The densest features so far, densest first. */
  densest: { index: number; act_times: number; record: FeatureRecord }[] = [];

  /**
   * @param analysis The analysis name whose records are counted.
   * @param keep How many of the densest to keep.
   */
  constructor(readonly analysis: string, readonly keep = 5) {}

  /** Counts a batch of written records. */
  add(records: readonly FeatureRecord[]): void {
    for (const r of records) {
      const a = r.analyses[this.analysis];
      if (!a) continue;
      if (a.act_times > 0) this.alive++;
      else this.dead++;
      if (a.act_times === 0) continue;
      const d = this.densest;
      if (d.length < this.keep || a.act_times > d[d.length - 1]!.act_times) {
        d.push({ index: r.index, act_times: a.act_times, record: r });
        d.sort((x, y) => y.act_times - x.act_times || x.index - y.index);
        if (d.length > this.keep) d.pop();
      }
    }
  }

  /** The densest features with the token at the peak of their strongest sample. */
  densestWithTokens(
    vocab: string[],
  ): { index: number; act_times: number; top_token: string | null }[] {
    return this.densest.map((d) => ({
      index: d.index,
      act_times: d.act_times,
      top_token: topToken(d.record, this.analysis, vocab),
    }));
  }
}

function topToken(record: FeatureRecord, analysis: string, vocab: string[]): string | null {
  const sample = record.analyses[analysis]?.samplings.find((s) => s.name === "top_activations")
    ?.samples[0];
  if (!sample) return null;
  const id = sample.tokens[sample.peak_pos];
  return id === undefined ? null : vocab[id] ?? `<${id}>`;
}
