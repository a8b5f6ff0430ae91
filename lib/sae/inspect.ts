/**
 * The lines `saeflow inspect sae PATH` prints.
 *
 * @module
 */

import type { SaeDescription } from "./sae.ts";

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(4);
}

function describeActivation(sae: SaeDescription): string {
  const a = sae.activation;
  if (a.kind === "topk") return `topk (k = ${a.k}, per token)`;
  if (a.threshold === undefined) return a.kind;
  let lo = Infinity, hi = -Infinity, sum = 0;
  for (const t of a.threshold) {
    lo = Math.min(lo, t);
    hi = Math.max(hi, t);
    sum += t;
  }
  const mean = a.threshold.length > 0 ? sum / a.threshold.length : NaN;
  const what = a.kind === "batchtopk" ? "batchtopk, evaluated as jumprelu" : "jumprelu";
  return `${what} (threshold mean ${fmt(mean)}, min ${fmt(lo)}, max ${fmt(hi)})`;
}

function describeNormalization(sae: SaeDescription): string {
  const n = sae.normalization;
  if (n.datasetAverageNorm !== null) {
    const base = `dataset-wise, average input norm ${
      fmt(n.datasetAverageNorm.in)
    } (f = √d_model/norm = ${fmt(n.inputFactor)})`;
    return n.scale === "input"
      ? `${base}, folded: activations in input scale${
        n.thresholdsRescaled ? ", thresholds rescaled" : ""
      }`
      : `${base}: activations in normalized (training) scale`;
  }
  if (n.perToken === "rescale") return `${n.method}: each token scaled to norm √d_model`;
  if (n.perToken === "layer-norm") return `${n.method}: each token layer-normalized`;
  return n.method === "none" ? "none" : `${n.method} (nothing to apply)`;
}

/**
 * Describes an SAE in aligned `label  value` lines: format, widths, activation, normalization,
 * centering, hook points, encoder details and dtype.
 *
 * @param sae the loaded SAE
 * @returns the lines, without trailing newlines
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeSae, type SaeDescription } from "./mod.ts";
 * const lines = describeSae({
 *   format: "saelens", path: "saes/l6", dModel: 64, dSae: 512, activation: { kind: "topk", k: 32 },
 *   normalization: { method: "none", perToken: "none", datasetAverageNorm: null, inputFactor: 1, scale: "input", thresholdsRescaled: false },
 *   center: false, centerSource: "off", hookPointIn: "blocks.6.hook_resid_post", hookPointOut: "blocks.6.hook_resid_post",
 *   applyBDecToInput: true, sparsityIncludeDecoderNorm: false, dtype: "F32",
 * } as unknown as SaeDescription);
 * assert(lines.some((l) => l.startsWith("activation ") && l.endsWith("topk (k = 32, per token)")));
 * ```
 */
export function describeSae(sae: SaeDescription): string[] {
  const layout = sae.format === "lm-saes"
    ? "Language-Model-SAEs (config.json + sae_weights.safetensors)"
    : "SAELens (cfg.json + sae_weights.safetensors)";
  const rows: [string, string][] = [
    ["path", sae.path],
    ["format", layout],
    ["d_model", String(sae.dModel)],
    ["d_sae", String(sae.dSae)],
    ["activation", describeActivation(sae)],
    ["normalization", describeNormalization(sae)],
    ["center", `${sae.center ? "on" : "off"} (${sae.centerSource})`],
    ["hook point", sae.hookPointIn],
  ];
  if (sae.hookPointOut !== sae.hookPointIn) rows.push(["hook point out", sae.hookPointOut]);
  rows.push(
    ["b_dec on input", sae.applyBDecToInput ? "yes" : "no"],
    [
      "decoder-norm gating",
      sae.sparsityIncludeDecoderNorm ? "yes (sparsity_include_decoder_norm)" : "no",
    ],
    ["dtype", sae.dtype],
  );
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${k.padEnd(width)}${v}`);
}
