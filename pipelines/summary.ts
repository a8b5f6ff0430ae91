/**
 * What an `analyze` or `merge` run reports at its end: the summary and its printed lines.
 *
 * @module
 */

import type { AnalyzeSAESettings } from "../lib/settings/mod.ts";
import { redactUrl } from "../lib/settings/mod.ts";

/** What {@linkcode analyzeSae} did. */
export interface AnalyzeSummary {
  /** Context tokens run through the model (B×T per batch, padding included). */
  tokens: number;
  /** Tokens analyzed (mask = 1). */
  analyzedTokens: number;
  /** Seconds from start to the last feature written. */
  seconds: number;
  /** Features that fired at least once. */
  alive: number;
  /** Features that never fired. */
  dead: number;
  /** The densest features: index, act_times and the token at the peak of their top sample. */
  densest: { index: number; act_times: number; top_token: string | null }[];
  /** Where the results are (store location). */
  location: string;
  /** Whether the fused model+SAE graph was used. */
  fused: boolean;
  /**
   * For a sharded run: this shard, the shards whose state is stored (this one included) and the
   * bytes of this shard's stored state. No feature was written.
   */
  shard?: { index: number; count: number; done: number[]; bytes: number };
}

/** The summary printed at the end of a run. */
export function summaryLines(
  s: AnalyzeSummary,
  settings: Pick<
    AnalyzeSAESettings,
    "sae_name" | "sae_series" | "analysis_name" | "mongo" | "output_dir"
  >,
): string[] {
  const rate = s.tokens / Math.max(s.seconds, 1e-9);
  const lines = [
    `analyzed ${s.tokens} tokens (${s.analyzedTokens} analyzed) in ${s.seconds.toFixed(1)} s: ${
      rate.toFixed(0)
    } tokens/s${s.fused ? " (fused model+SAE graph)" : ""}`,
    `features: ${s.alive} alive, ${s.dead} dead (of ${s.alive + s.dead})`,
  ];
  if (s.shard) {
    const { index, count, done, bytes } = s.shard;
    const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !done.includes(i));
    lines.push(
      `shard ${index}/${count}: analyzer state stored (${
        (bytes / 1e6).toFixed(1)
      } MB) in ${s.location} (analysis "${settings.analysis_name}")`,
      missing.length
        ? `shards done: ${done.join(", ") || "none"}; waiting for ${missing.join(", ")}`
        : `all ${count} shards are done: run saeflow merge with the same settings file`,
    );
    return lines;
  }
  if (s.densest.length) {
    lines.push("densest features:");
    for (const d of s.densest) {
      lines.push(
        `  #${d.index}  active on ${d.act_times} tokens  top token ${JSON.stringify(d.top_token)}`,
      );
    }
  }
  lines.push(`results: ${s.location} (analysis "${settings.analysis_name}")`);
  const first = s.densest[0]?.index ?? 0;
  // Where the store is, as show's flags say it (the password of a MongoDB URI is not repeated).
  const where = settings.mongo
    ? ` --mongo-uri ${redactUrl(settings.mongo.mongo_uri)} --mongo-db ${settings.mongo.mongo_db}`
    : ` --output-dir ${settings.output_dir}`;
  lines.push(
    `look at one: saeflow show feature ${settings.sae_name} ${first} --series ${settings.sae_series}${where}`,
  );
  return lines;
}
