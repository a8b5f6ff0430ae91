/**
 * Options of automated interpretation: the user-facing {@linkcode AutoInterpOptions} (every field
 * optional, the Python tool's `AutoInterpConfig` names where it has one) and the resolved
 * {@linkcode ResolvedAutoInterpOptions} with every default applied.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

/** Explainer methods. */
export type ExplainerType = "openai" | "neuronpedia";

/**
 * Scorer methods. `generation` is accepted for compatibility with the Python tool's TOML (which
 * also does not run it) and recorded as skipped.
 */
export type ScorerType = "detection" | "fuzzing" | "simulation" | "generation";

/** User-facing options (the `[auto_interp]` table). Every field is optional. */
export interface AutoInterpOptions {
  /** `openai`: one-sentence explanation + consistency/complexity scores; `neuronpedia`: 1–6 word label. Default `openai`. */
  explainer_type?: ExplainerType;
  /** API key. Default: the `OPENAI_API_KEY` environment variable. Never logged. */
  openai_api_key?: string | undefined;
  /** Model name. Default `gpt-3.5-turbo` (the Python tool's). */
  openai_model?: string;
  /** OpenAI-compatible endpoint, e.g. `http://localhost:8000/v1` (vLLM), `http://localhost:11434/v1` (Ollama). */
  openai_base_url?: string | undefined;
  /** Proxy URL (`http://`, `https://`, `socks5://`). */
  openai_proxy?: string | undefined;
  /** Activating examples shown to the explainer: the strongest of `top_activations`. Default 7. */
  n_activating_examples?: number;
  /** Most non-activating examples used (from the `non_activating` sampling). Default 20. */
  n_non_activating_examples?: number;
  /** Tokens above this fraction of the feature's max activation are marked `<<like this>>`. Default 0.7. */
  activation_threshold?: number;
  /** Example window in tokens, centred on the peak. Default 50. */
  max_length?: number;
  /** Scorers to run. Default `["detection", "fuzzing"]`. */
  scorer_type?: ScorerType[];
  /** Detection: activating and non-activating examples shown, each. Default 5. */
  detection_n_examples?: number;
  /** Fuzzing: fewest activating examples needed to run it (else skipped). Default 5. */
  fuzzing_n_examples?: number;
  /** Fuzzing: correctly highlighted examples shown. Default 5. */
  fuzzing_decile_correct?: number;
  /** Fuzzing: wrongly highlighted examples shown. Default 2. */
  fuzzing_decile_incorrect?: number;
  /** Simulation: activating and non-activating examples simulated, each. Default 5. */
  simulation_n_examples?: number;
  /** Ask for reasoning steps before the answer. Default true. */
  include_cot?: boolean;
  /** Re-interpret features that already have an interpretation. Default false. */
  overwrite_existing?: boolean;
  /** The analysis whose samples are used. Default `default`. */
  analysis_name?: string;
  /** Most features (and requests) in flight at once. Default 10. */
  max_workers?: number;
  /** Requests-per-minute limit; 0 for none. Default 0. */
  requests_per_minute?: number;
  /** Tokens-per-minute limit (prompt estimate + `max_tokens`); 0 for none. Default 0. */
  tokens_per_minute?: number;
  /** Per-request timeout, seconds. Default 60. */
  request_timeout?: number;
  /** Retries of a failed request (429, 5xx, timeout, dropped connection). Default 5. */
  max_retries?: number;
  /** First backoff delay, seconds (doubled per retry, with jitter). Default 1. */
  retry_base_delay?: number;
  /** Largest backoff delay, seconds. Default 60. */
  retry_max_delay?: number;
  /** Most tokens the model may generate per request. Default 1000. */
  max_tokens?: number;
  /** Sampling temperature; unset leaves the endpoint's default. */
  temperature?: number | undefined;
  /** Ask for `response_format: json_object` (turn off for endpoints that reject it). Default true. */
  json_mode?: boolean;
  /** Also list each example's per-token activations on a 0–10 scale to the explainer. Default false. */
  show_activation_values?: boolean;
  /** Keep the prompts and answers on the interpretation. Default false. */
  save_prompts?: boolean;
  /** A scorer passes at balanced accuracy ≥ this. Default 0.7. */
  pass_threshold?: number;
  /** Seed of the example shuffles (combined with the feature index). Default 42. */
  seed?: number;
}

/** {@linkcode AutoInterpOptions} with every default applied. */
export interface ResolvedAutoInterpOptions extends
  Required<
    Omit<AutoInterpOptions, "openai_api_key" | "openai_base_url" | "openai_proxy" | "temperature">
  > {
  /** API key, when given in the options (else the environment is read by the client). */
  openai_api_key: string | undefined;
  /** Endpoint, when given. */
  openai_base_url: string | undefined;
  /** Proxy, when given. */
  openai_proxy: string | undefined;
  /** Temperature, when given. */
  temperature: number | undefined;
}

/** The defaults of every option that has one. */
export const AUTO_INTERP_DEFAULTS: Readonly<
  Omit<
    ResolvedAutoInterpOptions,
    "openai_api_key" | "openai_base_url" | "openai_proxy" | "temperature"
  >
> = Object.freeze<
  Omit<
    ResolvedAutoInterpOptions,
    "openai_api_key" | "openai_base_url" | "openai_proxy" | "temperature"
  >
>({
  explainer_type: "openai",
  openai_model: "gpt-3.5-turbo",
  n_activating_examples: 7,
  n_non_activating_examples: 20,
  activation_threshold: 0.7,
  max_length: 50,
  scorer_type: ["detection", "fuzzing"],
  detection_n_examples: 5,
  fuzzing_n_examples: 5,
  fuzzing_decile_correct: 5,
  fuzzing_decile_incorrect: 2,
  simulation_n_examples: 5,
  include_cot: true,
  overwrite_existing: false,
  analysis_name: "default",
  max_workers: 10,
  requests_per_minute: 0,
  tokens_per_minute: 0,
  request_timeout: 60,
  max_retries: 5,
  retry_base_delay: 1,
  retry_max_delay: 60,
  max_tokens: 1000,
  json_mode: true,
  show_activation_values: false,
  save_prompts: false,
  pass_threshold: 0.7,
  seed: 42,
});

const SCORERS: readonly ScorerType[] = ["detection", "fuzzing", "simulation", "generation"];

/**
 * Applies the defaults and checks every value; a bad one is a {@linkcode ConfigError} naming
 * `auto_interp.<key>` and the value.
 *
 * @param options The user's options.
 * @returns The resolved options.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveAutoInterpOptions } from "./options.ts";
 * const o = resolveAutoInterpOptions({ max_workers: 4 });
 * assert.equal(o.max_workers, 4);
 * assert.equal(o.n_activating_examples, 7);
 * ```
 */
export function resolveAutoInterpOptions(
  options: AutoInterpOptions = {},
): ResolvedAutoInterpOptions {
  const defined = Object.fromEntries(
    Object.entries(options).filter(([, v]) => v !== undefined),
  ) as AutoInterpOptions;
  const o: ResolvedAutoInterpOptions = {
    ...AUTO_INTERP_DEFAULTS,
    scorer_type: [...AUTO_INTERP_DEFAULTS.scorer_type],
    ...defined,
    openai_api_key: options.openai_api_key,
    openai_base_url: options.openai_base_url,
    openai_proxy: options.openai_proxy,
    temperature: options.temperature,
  };
  const bad = (key: string, expected: string, value: unknown): never => {
    throw new ConfigError(`auto_interp.${key}: expected ${expected}, got ${JSON.stringify(value)}`);
  };
  if (o.explainer_type !== "openai" && o.explainer_type !== "neuronpedia") {
    bad("explainer_type", '"openai" or "neuronpedia"', o.explainer_type);
  }
  if (!Array.isArray(o.scorer_type)) bad("scorer_type", "a list of scorer names", o.scorer_type);
  for (const s of o.scorer_type) {
    if (!SCORERS.includes(s)) bad("scorer_type", `one of ${SCORERS.join(", ")}`, s);
  }
  const ints: [keyof ResolvedAutoInterpOptions, number][] = [
    ["n_activating_examples", 1],
    ["n_non_activating_examples", 0],
    ["max_length", 1],
    ["detection_n_examples", 1],
    ["fuzzing_n_examples", 1],
    ["fuzzing_decile_correct", 1],
    ["fuzzing_decile_incorrect", 1],
    ["simulation_n_examples", 1],
    ["max_workers", 1],
    ["max_retries", 0],
    ["max_tokens", 1],
    ["requests_per_minute", 0],
    ["tokens_per_minute", 0],
  ];
  for (const [key, min] of ints) {
    const v = o[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      bad(key, `an integer ≥ ${min}`, v);
    }
  }
  const positives: (keyof ResolvedAutoInterpOptions)[] = [
    "request_timeout",
    "retry_base_delay",
    "retry_max_delay",
  ];
  for (const key of positives) {
    const v = o[key];
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) bad(key, "a number > 0", v);
  }
  for (const key of ["activation_threshold", "pass_threshold"] as const) {
    const v = o[key];
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) bad(key, "a number in [0, 1]", v);
  }
  if (o.temperature !== undefined && !(o.temperature >= 0 && o.temperature <= 2)) {
    bad("temperature", "a number in [0, 2]", o.temperature);
  }
  if (typeof o.openai_model !== "string" || o.openai_model === "") {
    bad("openai_model", "a model name", o.openai_model);
  }
  if (!Number.isInteger(o.seed)) bad("seed", "an integer", o.seed);
  return o;
}
