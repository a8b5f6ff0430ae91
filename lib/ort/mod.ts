/**
 * ONNX Runtime: sessions (`session.ts`, the only module that imports `onnxruntime-node`), the
 * feeds of a causal LM, hook sessions and model inspection. The graphs they run come from
 * `lib/onnx/mod.ts`.
 *
 * @module
 */
export * from "./session.ts";
export * from "./feeds.ts";
export * from "./hook_session.ts";
export * from "./inspect.ts";
