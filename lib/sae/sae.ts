/**
 * The loaded form of an SAE checkpoint, shared by both layouts, and small checks on it.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

/** The checkpoint layout an SAE was loaded from. */
export type SaeFormat = "lm-saes" | "saelens";

/** The activation functions. */
export type ActivationKind = "relu" | "jumprelu" | "topk" | "batchtopk";

/** The activation function with its parameters. */
export interface SaeActivation {
  /**
   * `relu`; `jumprelu` (keep h where h > θ_f and h > 0); `topk` (per token, the k largest h, then
   * ReLU); `batchtopk` (evaluated as JumpReLU with its saved threshold).
   */
  kind: ActivationKind;
  /** k of `topk`. */
  k?: number;
  /** Per-feature thresholds θ of `jumprelu` / `batchtopk`, `[dSae]`, in the reported scale. */
  threshold?: Float32Array;
}

/**
 * How inputs are normalized before encoding, and in which scale activations are reported.
 *
 * A dataset-wise norm (Language-Model-SAEs `norm_activation = "dataset-wise"`) is linear and is
 * folded into the weights at load time; per-token normalizations are not linear and are applied
 * by the encoder (`perToken`).
 */
export interface SaeNormalization {
  /** The checkpoint's own setting (`norm_activation` or `normalize_activations`), as read. */
  method: string;
  /**
   * Per-token input transform the encoder applies (after centering, before `b_dec`):
   * `rescale` multiplies each token by √d_model / ‖x‖ (LM-SAEs `token-wise`, SAELens
   * `constant_norm_rescale`); `layer-norm` is (x − mean) / (std + 1e-5) with the unbiased std
   * (SAELens `layer_norm`).
   */
  perToken: "none" | "rescale" | "layer-norm";
  /** The saved dataset average norms of the input and output hooks (dataset-wise only). */
  datasetAverageNorm: { in: number; out: number } | null;
  /** The input factor f = √d_model / average input norm (1 when there is none). */
  inputFactor: number;
  /**
   * Scale of the reported activations. `input`: the weights were folded so that raw hook
   * activations give the activations of the folded model (training-scale activations ÷ f), as
   * the Python tool reports them when it folds the activation scale. `normalized`: the
   * training-scale activations (inputs scaled by f first). Equal when f = 1.
   */
  scale: "input" | "normalized";
  /** Whether JumpReLU thresholds were rescaled together with the fold. */
  thresholdsRescaled: boolean;
}

/**
 * A loaded SAE, with every scale factor already folded in: `encodeReference()` (and the ONNX
 * encoders) apply exactly the steps below to raw hook activations, nothing else.
 *
 * 1. `center`: subtract each token's mean over d_model;
 * 2. `normalization.perToken` (usually `none`);
 * 3. subtract `b_dec` if `applyBDecToInput`;
 * 4. pre = x · W_enc + b_enc;
 * 5. if `sparsityIncludeDecoderNorm`: g = pre · decoderNorm_f, else g = pre;
 * 6. the activation on g; then divide by decoderNorm_f if `sparsityIncludeDecoderNorm`.
 *
 * `W_dec` and `b_dec` map reported activations back to the raw (unnormalized) output hook:
 * reconstruction = acts · W_dec + b_dec (except under a per-token normalization).
 */
export interface SaeDescription {
  /** The layout it was loaded from. */
  format: SaeFormat;
  /** The folder it was loaded from. */
  path: string;
  /** Input width (LM-SAEs `d_model`, SAELens `d_in`). */
  dModel: number;
  /** Number of features. */
  dSae: number;
  /** The activation function. */
  activation: SaeActivation;
  /** Encoder weights, `[dModel × dSae]` row-major. */
  W_enc: Float32Array;
  /** Encoder bias, `[dSae]`. */
  b_enc: Float32Array;
  /** Decoder weights, `[dSae × dModel]` row-major. */
  W_dec: Float32Array;
  /** Decoder bias, `[dModel]` (zeros when the SAE has none). */
  b_dec: Float32Array;
  /** Whether `b_dec` is subtracted from the input before encoding. */
  applyBDecToInput: boolean;
  /** Whether the pre-activations are gated in decoder-norm units (LM-SAEs semantics). */
  sparsityIncludeDecoderNorm: boolean;
  /** Per-feature decoder norms used by that gating, `[dSae]`; null when it is off. */
  decoderNorm: Float32Array | null;
  /** Input normalization and reported scale. */
  normalization: SaeNormalization;
  /** Whether each token's mean over d_model is removed first (TransformerLens parity). */
  center: boolean;
  /** Why `center` has its value. */
  centerSource: string;
  /** Hook point read (TransformerLens name). */
  hookPointIn: string;
  /** Hook point reconstructed (the same as `hookPointIn` for an SAE, not a transcoder). */
  hookPointOut: string;
  /** Stored dtype of the encoder weights (`F32`, `BF16`, ...). */
  dtype: string;
  /** The checkpoint's configuration, as read. */
  config: Record<string, unknown>;
}

/**
 * Checks that a hook's width matches the SAE's `d_model`.
 *
 * @param sae the loaded SAE
 * @param width the hook tensor's last dimension
 * @param hookName the hook point, for the message
 * @throws {ConfigError} when they differ
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkHookWidth } from "./mod.ts";
 * import type { SaeDescription } from "./mod.ts";
 * const sae = { dModel: 64, path: "saes/l0" } as SaeDescription;
 * checkHookWidth(sae, 64, "blocks.0.hook_resid_post");
 * try {
 *   checkHookWidth(sae, 128, "blocks.0.hook_resid_post");
 * } catch (e) {
 *   assert.equal((e as Error).name, "ConfigError");
 * }
 * ```
 */
export function checkHookWidth(sae: SaeDescription, width: number, hookName: string): void {
  if (width !== sae.dModel) {
    throw new ConfigError(
      `SAE ${sae.path} expects d_model ${sae.dModel}, but hook ${hookName} has width ${width}`,
    );
  }
}
