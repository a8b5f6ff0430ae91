/**
 * Direct Logit Attribution: SAE decoder rows through the model's own final norm and unembedding
 * (the unembedding tail of its ONNX graph), reduced per feature to the top tokens and a histogram.
 *
 * @module
 */
export * from "./tail.ts";
export * from "./computer.ts";
export * from "./attribute.ts";
