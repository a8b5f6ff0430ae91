/**
 * The prompt templates of automated interpretation, compiled into the program (never read from
 * disk at run time). Placeholders `{{name}}` are filled by `_fill.ts`.
 *
 * @module
 */

export * from "./explain_openai.ts";
export * from "./explain_neuronpedia.ts";
export * from "./detection.ts";
export * from "./fuzzing.ts";
export * from "./simulation.ts";
