/**
 * A plain, slow SAE encoder in float64: the test oracle for the ONNX encoders.
 *
 * @module
 */

import type { SaeDescription } from "./sae.ts";

/** Sparse activations in COO form, sorted by position then feature; only values > 0. */
export interface SparseActivations {
  /** Token index of each entry. */
  position: Int32Array;
  /** Feature index of each entry. */
  feature: Int32Array;
  /** Activation value (> 0) of each entry. */
  value: Float32Array;
}

/** Epsilon of SAELens `layer_norm` input normalization. */
const LAYER_NORM_EPS = 1e-5;

/**
 * Encodes `nTokens` raw hook activations with obvious loops in float64, following exactly the
 * steps documented on {@linkcode SaeDescription}:
 *
 * 1. center (if `sae.center`): x −= mean(x);
 * 2. per-token normalization: `rescale` x ×= √d/‖x‖ (a zero vector stays zero); `layer-norm`
 *    x = (x − mean) / (std + 1e-5), std unbiased;
 * 3. x −= b_dec if `applyBDecToInput`;
 * 4. pre = x · W_enc + b_enc;
 * 5. g = pre · decoderNorm_f if `sparsityIncludeDecoderNorm` (LM-SAEs `encode` scales
 *    `hidden_pre` by `decoder_norm()` *before* the activation function and divides the feature
 *    activations by it *after*), else g = pre;
 * 6. `relu`: g if g > 0; `jumprelu` / `batchtopk`: g if g > θ_f and g > 0; `topk`: g for the k
 *    largest g of the token (ties: lower feature index first) if g > 0; everything else 0;
 * 7. ÷ decoderNorm_f if gated (a feature with a zero decoder row never fires: LM-SAEs would
 *    produce 0/0 = NaN, which no `> 0` test counts).
 *
 * @param sae the loaded SAE
 * @param x raw activations, `[nTokens × dModel]` row-major
 * @param nTokens number of tokens
 * @returns the positive activations, sorted by position then feature
 * @throws {RangeError} when `x` does not hold `nTokens × dModel` values
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeReference, type SaeDescription } from "./mod.ts";
 * const sae = {
 *   dModel: 2, dSae: 2, activation: { kind: "relu" },
 *   W_enc: new Float32Array([1, -1, 1, 1]), b_enc: new Float32Array([0, 0.5]),
 *   b_dec: new Float32Array(2), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * const acts = encodeReference(sae, new Float32Array([1, 2]), 1);
 * assert.equal(acts.feature.length, 2);
 * assert.equal(acts.value[0], 3);
 * assert.equal(acts.value[1], 1.5);
 * ```
 */
export function encodeReference(
  sae: SaeDescription,
  x: Float32Array,
  nTokens: number,
): SparseActivations {
  const d = sae.dModel;
  const n = sae.dSae;
  if (x.length !== nTokens * d) {
    throw new RangeError(`encodeReference: got ${x.length} values, expected ${nTokens} × ${d}`);
  }
  const positions: number[] = [];
  const features: number[] = [];
  const values: number[] = [];
  const xi = new Float64Array(d);
  const g = new Float64Array(n);
  const { kind, k, threshold } = sae.activation;
  const gate = sae.sparsityIncludeDecoderNorm ? sae.decoderNorm : null;
  if (sae.sparsityIncludeDecoderNorm && gate === null) {
    throw new RangeError(
      "encodeReference: sparsityIncludeDecoderNorm is set but decoderNorm is null",
    );
  }
  for (let t = 0; t < nTokens; t++) {
    for (let i = 0; i < d; i++) xi[i] = x[t * d + i]!;
    if (sae.center) {
      let mean = 0;
      for (let i = 0; i < d; i++) mean += xi[i]!;
      mean /= d;
      for (let i = 0; i < d; i++) xi[i] = xi[i]! - mean;
    }
    if (sae.normalization.perToken === "rescale") {
      let sq = 0;
      for (let i = 0; i < d; i++) sq += xi[i]! * xi[i]!;
      const norm = Math.sqrt(sq);
      if (norm > 0) { for (let i = 0; i < d; i++) xi[i] = xi[i]! * Math.sqrt(d) / norm; }
    } else if (sae.normalization.perToken === "layer-norm") {
      let mean = 0;
      for (let i = 0; i < d; i++) mean += xi[i]!;
      mean /= d;
      let ss = 0;
      for (let i = 0; i < d; i++) ss += (xi[i]! - mean) ** 2;
      const std = d > 1 ? Math.sqrt(ss / (d - 1)) : NaN;
      for (let i = 0; i < d; i++) xi[i] = (xi[i]! - mean) / (std + LAYER_NORM_EPS);
    }
    if (sae.applyBDecToInput) { for (let i = 0; i < d; i++) xi[i] = xi[i]! - sae.b_dec[i]!; }
    for (let f = 0; f < n; f++) {
      let s = sae.b_enc[f]!;
      for (let i = 0; i < d; i++) s += xi[i]! * sae.W_enc[i * n + f]!;
      g[f] = gate === null ? s : s * gate[f]!;
    }
    let keep: (f: number) => boolean;
    if (kind === "relu") keep = (f) => g[f]! > 0;
    else if (kind === "jumprelu" || kind === "batchtopk") {
      if (threshold === undefined) {
        throw new RangeError(`encodeReference: ${kind} SAE has no threshold`);
      }
      keep = (f) => g[f]! > 0 && g[f]! > threshold[f]!;
    } else {
      if (k === undefined) throw new RangeError("encodeReference: topk SAE has no k");
      const order = Array.from({ length: n }, (_, f) => f).sort((a, b) => g[b]! - g[a]! || a - b);
      const chosen = new Set(order.slice(0, k));
      keep = (f) => chosen.has(f) && g[f]! > 0;
    }
    for (let f = 0; f < n; f++) {
      if (!keep(f)) continue;
      if (gate !== null && !(gate[f]! > 0)) continue;
      const v = gate === null ? g[f]! : g[f]! / gate[f]!;
      const v32 = Math.fround(v);
      if (v32 > 0) {
        positions.push(t);
        features.push(f);
        values.push(v32);
      }
    }
  }
  return {
    position: Int32Array.from(positions),
    feature: Int32Array.from(features),
    value: Float32Array.from(values),
  };
}
