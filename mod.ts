/**
 * saeflow as a library: the record types, the stage factories, the settings schemas and the
 * runners `analyzeSae`, `directLogitAttribute` and `autoInterp`, plus the building blocks they
 * are made of (ONNX graph tools, SAE loading, datasets, the feature store).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { analyzeSae, DEMO_CONFIG_PATH, loadSettings } from "./mod.ts";
 * const dir = await Deno.makeTempDir();
 * const settings = await loadSettings(DEMO_CONFIG_PATH, "analyze", {
 *   overrides: [`output_dir="${dir}"`, "analyzer.total_analyzing_tokens=2048"],
 * });
 * const summary = await analyzeSae(settings, { progress: false, log: () => {} });
 * assert.equal(summary.alive + summary.dead, 256);
 * ```
 *
 * @module
 */

export type * from "./lib/types.ts";
export * from "./lib/errors.ts";
export * from "./lib/settings/mod.ts";
export * from "./pipelines/mod.ts";
export * from "./stages/mod.ts";
export * from "./lib/store/mod.ts";
export * from "./lib/onnx/mod.ts";
export * from "./lib/ort/mod.ts";
export * from "./lib/sae/mod.ts";
export * from "./lib/safetensors/mod.ts";
export * from "./lib/data/mod.ts";
export * from "./lib/hub/mod.ts";
export * from "./lib/analysis/mod.ts";
export * from "./lib/dla/mod.ts";
export * from "./lib/autointerp/mod.ts";
export * from "./lib/viewer/mod.ts";
export * from "./lib/progress.ts";

// Names exported by two modules: the explicit exports below decide which one the root offers.
export type { Sampling } from "./lib/types.ts";
export type { Sampling as SamplingSettings } from "./lib/settings/mod.ts";
export type { Device } from "./lib/ort/mod.ts";
export type { TensorInfo } from "./lib/onnx/mod.ts";
export type { TensorInfo as SafetensorsTensorInfo } from "./lib/safetensors/mod.ts";
export type { Dtype } from "./lib/settings/mod.ts";
export type { Dtype as SafetensorsDtype } from "./lib/safetensors/mod.ts";
export type { DatasetConfig } from "./lib/settings/mod.ts";
export type { DatasetConfig as DatasetSourceConfig } from "./lib/data/mod.ts";
export type { ScorerType } from "./lib/settings/mod.ts";
