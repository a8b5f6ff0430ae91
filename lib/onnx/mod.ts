/**
 * ONNX models as data: the graph codec and editor, hook-point resolution and model folders. Pure
 * code: importing it loads no native addon (ONNX Runtime is `lib/ort/mod.ts`).
 *
 * @module
 */
export * from "./graph.ts";
export * from "./hooks.ts";
export * from "./model_dir.ts";
