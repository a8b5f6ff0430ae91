/**
 * Feature analysis: the mergeable analyzer state, its options, and the log-bucket histogram.
 *
 * `AnalyzerState` (`state.ts`) is a composition of one component per sampler, each in its own
 * file with its add, merge and saved form: `_moments.ts` (`act_times`, max, mean, std, histogram),
 * `_top.ts` (top activations), `_bands.ts` (magnitude bands), `_python_rule.ts` (the Python
 * tool's subsample rule), `_non_activating.ts` (never-firing contexts). `README.md` in this folder
 * says which file owns what, and how a batch goes through them.
 *
 * @module
 */

export * from "./options.ts";
export * from "./histogram.ts";
export * from "./state.ts";
export * from "./state_chunks.ts";
