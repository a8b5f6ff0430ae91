/**
 * Automated interpretation of SAE features: the chat client, options, example formatting,
 * explainers, scorers, metrics and the per-feature interpreter. The stream stage is
 * `stages/autointerp.ts`.
 *
 * @module
 */

export * from "./client.ts";
export * from "./options.ts";
export * from "./examples.ts";
export * from "./explainers.ts";
export * from "./scorers.ts";
export * from "./metrics.ts";
export * from "./json.ts";
export * from "./interpret.ts";
export * from "./prompts/mod.ts";
export { AnswerFormatError, type AskContext, newTranscript, type Transcript } from "./_ask.ts";
