/**
 * ONNX models: the graph codec and editor, hook-point resolution, ONNX Runtime sessions, model
 * folders and model inspection.
 *
 * @module
 */
export * from "./graph.ts";
export * from "./hooks.ts";
export * from "./session.ts";
export * from "./feeds.ts";
export * from "./hook_session.ts";
export * from "./model_dir.ts";
export * from "./inspect.ts";
