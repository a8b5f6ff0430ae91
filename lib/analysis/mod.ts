/**
 * Feature analysis: the mergeable analyzer state, its options, and the log-bucket histogram.
 *
 * @module
 */

export * from "./options.ts";
export * from "./histogram.ts";
export * from "./state.ts";
export * from "./state_chunks.ts";
