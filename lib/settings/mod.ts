/**
 * Settings of the three runners (`analyze`, `dla`, `autointerp`): zod schemas in the shape of
 * the Python tool's TOML, and the loader that turns a TOML file, `--set` overrides and the
 * environment into resolved settings or a one-line `ConfigError` (`lib/errors.ts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSettings } from "./mod.ts";
 * const s = parseSettings(`
 * sae_name = "s"
 * sae_series = "x"
 * model_name = "gpt2"
 * [model]
 * [auto_interp]
 * `, "inline.toml", "autointerp", { env: { OPENAI_API_KEY: "sk-test" } });
 * assert(s.auto_interp.openai_api_key === "sk-test" && s.mongo === null);
 * ```
 *
 * @module
 */

export * from "./schemas.ts";
export * from "./load.ts";
