/**
 * The pipeline stages: each is a WHATWG stream (or a readable/writable pair for `pipeThrough`)
 * consuming and emitting the record types of `lib/types.ts`.
 *
 * @module
 */

export * from "./dataset_source.ts";
export * from "./tokenize.ts";
export * from "./model_hook.ts";
export * from "./sae_encode.ts";
export * from "./fused_encode.ts";
export * from "./feature_analyzer.ts";
export * from "./dla.ts";
export * from "./autointerp.ts";
export * from "./store_writer.ts";
