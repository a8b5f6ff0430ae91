/**
 * The runners, composed from stages: `analyzeSae` (the seed's `analyze_sae`), `mergeAnalysis`
 * (the last step of a sharded analysis),
 * `directLogitAttribute` (`direct_logit_attribute`) and `autoInterp` (`auto_interp`).
 *
 * @module
 */

export * from "./analyze.ts";
export * from "./dla.ts";
export * from "./autointerp.ts";
export * from "./merge.ts";
export * from "./analysis_run.ts";
export * from "./shard.ts";
export * from "./summary.ts";
