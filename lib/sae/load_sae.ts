/**
 * Loading an SAE checkpoint folder (Language-Model-SAEs or SAELens layout) into a
 * {@linkcode SaeDescription} with every linear scale factor folded into the weights.
 *
 * @module
 */

import { fail, isFile, type RawSae } from "./_checkpoint.ts";
import { readLmSaes } from "./_lm_saes.ts";
import { readSaeLens } from "./_saelens.ts";
import type { SaeDescription } from "./sae.ts";

/** Options of {@linkcode loadSae}. */
export interface LoadSaeOptions {
  /**
   * Subtract each token's mean over d_model before encoding (TransformerLens
   * `center_writing_weights` parity). Default: what the checkpoint's config says
   * (`center_writing_weights` in it or in `model_from_pretrained_kwargs`), else `false`.
   */
  center?: boolean;
  /**
   * Scale of the reported activations for a dataset-wise normalized LM-SAEs checkpoint.
   * `input` (default): fold the factor f = √d_model / average norm the way
   * `standardize_parameters_of_dataset_norm` does, so raw activations give training-scale
   * activations ÷ f — what `lm-saes analyze` reports when it loads with
   * `fold_activation_scale=True`. `normalized`: training-scale activations, as reported when it
   * loads without folding and normalizes each batch instead.
   */
  scale?: "input" | "normalized";
  /**
   * JumpReLU thresholds when folding to the `input` scale. `rescale` (default): divide them by
   * f too, so exactly the same tokens fire as in training. `as-saved`: keep them, which is what
   * `standardize_parameters_of_dataset_norm` does (it never touches the threshold); use it only
   * to reproduce the Python tool's output on such checkpoints.
   */
  jumpReluThresholds?: "rescale" | "as-saved";
}

/**
 * Loads an SAE from a local folder: `config.json` + `sae_weights.safetensors` (Language-Model-SAEs:
 * `W_E`, `b_E`, `W_D`, `b_D`, `activation_function.log_jumprelu_threshold`,
 * `dataset_average_activation_norm.<hook>`), or `cfg.json` + `sae_weights.safetensors` (SAELens:
 * `W_enc`, `b_enc`, `W_dec`, `b_dec`, `threshold`). Hub ids must be resolved to a folder first.
 *
 * Folding (see `lib/sae/README.md`): a dataset-wise norm factor f goes into `b_enc`, `W_dec`,
 * `b_dec` (and the JumpReLU thresholds) per `options.scale`; SAELens
 * `rescale_acts_by_decoder_norm` goes into `W_enc`, `b_enc`, `W_dec` exactly.
 *
 * @param path the checkpoint folder
 * @param options see {@linkcode LoadSaeOptions}
 * @returns the folded SAE
 * @throws {ConfigError} for a missing folder or file, a bad config value, a missing tensor or a
 * tensor of the wrong shape, naming it
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSae } from "./mod.ts";
 * import { writeSafetensors } from "../safetensors/mod.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/cfg.json`, JSON.stringify({ d_in: 2, d_sae: 3, hook_name: "blocks.0.hook_resid_post" }));
 * await Deno.writeFile(`${dir}/sae_weights.safetensors`, writeSafetensors({
 *   W_enc: { dtype: "F32", shape: [2, 3], data: [1, 0, 1, 0, 1, 1] },
 *   b_enc: { dtype: "F32", shape: [3], data: [0, 0, -1] },
 *   W_dec: { dtype: "F32", shape: [3, 2], data: [1, 0, 0, 1, 0.5, 0.5] },
 *   b_dec: { dtype: "F32", shape: [2], data: [0, 0] },
 * }));
 * const sae = await loadSae(dir);
 * assert.equal(sae.format, "saelens");
 * assert.equal(sae.dSae, 3);
 * assert.equal(sae.activation.kind, "relu");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadSae(path: string, options: LoadSaeOptions = {}): Promise<SaeDescription> {
  const dir = path.length > 1 ? path.replace(/\/+$/, "") : path;
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(dir);
  } catch {
    throw fail(dir, "no such folder");
  }
  if (!stat.isDirectory) {
    throw fail(dir, "not a folder (give the folder that holds config.json or cfg.json)");
  }
  let raw: RawSae;
  if (await isFile(`${dir}/config.json`)) {
    const hasCfg = await isFile(`${dir}/cfg.json`);
    const text = await Deno.readTextFile(`${dir}/config.json`).catch(() => "");
    raw = hasCfg && !/"d_model"\s*:/.test(text) ? await readSaeLens(dir) : await readLmSaes(dir);
  } else if (await isFile(`${dir}/cfg.json`)) {
    raw = await readSaeLens(dir);
  } else {
    throw fail(dir, "no config.json (Language-Model-SAEs) or cfg.json (SAELens) in the folder");
  }
  return fold(raw, options);
}

function rowNorms(W: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += W[r * cols + c]! ** 2;
    out[r] = Math.sqrt(s);
  }
  return out;
}

/** Applies the folds described in the module doc and the README. */
function fold(raw: RawSae, options: LoadSaeOptions): SaeDescription {
  const { dModel: d, dSae: n, path } = raw;
  const scale = options.scale ?? "input";
  const thresholds = options.jumpReluThresholds ?? "rescale";
  const W_enc = raw.W_enc.slice();
  const b_enc = raw.b_enc.slice();
  const W_dec = raw.W_dec.slice();
  const b_dec = raw.b_dec.slice();
  let threshold = raw.threshold?.slice();

  if (raw.decoderNormGating === "saelens") {
    // SAELens TopK: acts = act(h·‖W_dec_f‖), decode divides by ‖W_dec_f‖ again. Fold it:
    // W_enc[:,f], b_enc[f] ×= ‖W_dec_f‖ and W_dec[f,:] ÷= ‖W_dec_f‖. Exact, thresholds untouched.
    const norms = rowNorms(W_dec, n, d);
    for (let f = 0; f < n; f++) {
      const s = norms[f]!;
      for (let i = 0; i < d; i++) W_enc[i * n + f] = W_enc[i * n + f]! * s;
      b_enc[f] = b_enc[f]! * s;
      for (let i = 0; i < d; i++) W_dec[f * d + i] = s === 0 ? 0 : W_dec[f * d + i]! / s;
    }
  }

  const trainingNorms = rowNorms(W_dec, n, d);
  let inputFactor = 1;
  let thresholdsRescaled = false;
  const dn = raw.datasetAverageNorm;
  if (dn !== null) {
    const fIn = Math.sqrt(d) / dn.in;
    const fOut = Math.sqrt(d) / dn.out;
    inputFactor = fIn;
    if (raw.applyBDecToInput && fIn !== fOut) {
      throw fail(
        path,
        "apply_decoder_bias_to_pre_encoder with different input and output dataset norms (a transcoder) is not supported",
      );
    }
    if (scale === "input") {
      // standardize_parameters_of_dataset_norm: b_E ÷= f_in, b_D ÷= f_out, W_D ×= f_in / f_out.
      for (let f = 0; f < n; f++) b_enc[f] = b_enc[f]! / fIn;
      for (let j = 0; j < W_dec.length; j++) W_dec[j] = W_dec[j]! * (fIn / fOut);
      for (let i = 0; i < d; i++) b_dec[i] = b_dec[i]! / fOut;
      if (threshold !== undefined && thresholds === "rescale") {
        threshold = threshold.map((t) => t / fIn);
        thresholdsRescaled = true;
      }
    } else {
      // Training scale from raw inputs: (f_in·x − b_D)·W_E + b_E = (x − b_D/f_in)·(f_in·W_E) + b_E.
      for (let j = 0; j < W_enc.length; j++) W_enc[j] = W_enc[j]! * fIn;
      for (let j = 0; j < W_dec.length; j++) W_dec[j] = W_dec[j]! / fOut;
      for (let i = 0; i < d; i++) b_dec[i] = b_dec[i]! / fOut;
    }
  }

  const gating = raw.decoderNormGating === "lm-saes";
  const asSaved = dn !== null && scale === "input" && thresholds === "as-saved";
  const decoderNorm = gating ? (asSaved ? rowNorms(W_dec, n, d) : trainingNorms) : null;
  const center = options.center ?? raw.center ?? false;
  const centerSource = options.center !== undefined ? "set by the caller" : raw.centerSource;
  return {
    format: raw.format,
    path,
    dModel: d,
    dSae: n,
    activation: {
      kind: raw.activation,
      ...(raw.k === undefined ? {} : { k: raw.k }),
      ...(threshold === undefined ? {} : { threshold }),
    },
    W_enc,
    b_enc,
    W_dec,
    b_dec,
    applyBDecToInput: raw.applyBDecToInput,
    sparsityIncludeDecoderNorm: gating,
    decoderNorm,
    normalization: {
      method: raw.normMethod,
      perToken: raw.perToken,
      datasetAverageNorm: dn,
      inputFactor,
      scale: dn === null ? "input" : scale,
      thresholdsRescaled,
    },
    center,
    centerSource,
    hookPointIn: raw.hookPointIn,
    hookPointOut: raw.hookPointOut,
    dtype: raw.dtype,
    config: raw.config,
  };
}
