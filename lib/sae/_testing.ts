/**
 * Test helpers (not part of the public API): seeded random weights and writers for both
 * checkpoint layouts, built with the project's own safetensors writer.
 *
 * @module
 */

import { writeSafetensors } from "../safetensors/mod.ts";
import type { Dtype } from "../safetensors/mod.ts";
import { mulberry32 as prng } from "../_random.ts";

/** Mulberry32 seeded PRNG (the project's one, from lib/_random.ts). */
export { prng };
export { assert, assertEquals } from "../safetensors/_testing.ts";
/** Error class and exact-message assertions (a message string is compared exactly). */
export { assertRejects, assertThrows } from "../_testing.ts";

/** `n` seeded values uniform in [lo, hi). */
export function uniform(rand: () => number, n: number, lo = -1, hi = 1): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
}

/** SAE weights in the LM-SAEs orientation (which SAELens shares). */
export interface Weights {
  dModel: number;
  dSae: number;
  /** [dModel × dSae] */
  W_enc: Float32Array;
  b_enc: Float32Array;
  /** [dSae × dModel] */
  W_dec: Float32Array;
  b_dec: Float32Array;
  threshold?: Float32Array;
}

/** Random weights with a seeded PRNG. */
export function randomWeights(seed: number, dModel: number, dSae: number): Weights {
  const rand = prng(seed);
  return {
    dModel,
    dSae,
    W_enc: uniform(rand, dModel * dSae, -0.5, 0.5),
    b_enc: uniform(rand, dSae, -0.3, 0.1),
    W_dec: uniform(rand, dSae * dModel, -0.5, 0.5),
    b_dec: uniform(rand, dModel, -0.2, 0.2),
    threshold: uniform(rand, dSae, 0.05, 0.4),
  };
}

/** Writes an LM-SAEs folder (`config.json` + `sae_weights.safetensors`). */
export async function writeLmSaes(
  dir: string,
  w: Weights,
  config: Record<string, unknown>,
  options: {
    dtype?: Dtype;
    extra?: Record<string, Float32Array | number>;
    omit?: string[];
    shapes?: Record<string, number[]>;
  } = {},
): Promise<void> {
  const dtype = options.dtype ?? "F32";
  const hook = (config["hook_point_in"] as string | undefined) ?? "blocks.0.hook_resid_post";
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      sae_type: "sae",
      d_model: w.dModel,
      expansion_factor: w.dSae / w.dModel,
      hook_point_in: hook,
      hook_point_out: hook,
      act_fn: "relu",
      norm_activation: "inference",
      sparsity_include_decoder_norm: false,
      use_decoder_bias: true,
      ...config,
    }),
  );
  const tensors: Record<string, { dtype: Dtype; shape: number[]; data: ArrayLike<number> }> = {
    W_E: { dtype, shape: [w.dModel, w.dSae], data: w.W_enc },
    b_E: { dtype, shape: [w.dSae], data: w.b_enc },
    W_D: { dtype, shape: [w.dSae, w.dModel], data: w.W_dec },
    b_D: { dtype, shape: [w.dModel], data: w.b_dec },
  };
  if (w.threshold) {
    tensors["activation_function.log_jumprelu_threshold"] = {
      dtype: "F32",
      shape: [w.dSae],
      data: w.threshold.map(Math.log),
    };
  }
  for (const [name, v] of Object.entries(options.extra ?? {})) {
    tensors[name] = typeof v === "number"
      ? { dtype: "F32", shape: [], data: [v] }
      : { dtype: "F32", shape: [v.length], data: v };
  }
  for (const name of options.omit ?? []) delete tensors[name];
  for (const [name, shape] of Object.entries(options.shapes ?? {})) tensors[name]!.shape = shape;
  await Deno.writeFile(
    `${dir}/sae_weights.safetensors`,
    writeSafetensors(tensors, { version: "test" }),
  );
}

/** Writes a SAELens folder (`cfg.json` + `sae_weights.safetensors`). */
export async function writeSaeLens(
  dir: string,
  w: Weights,
  config: Record<string, unknown>,
  options: { dtype?: Dtype; threshold?: Float32Array } = {},
): Promise<void> {
  const dtype = options.dtype ?? "F32";
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/cfg.json`,
    JSON.stringify({
      architecture: "standard",
      d_in: w.dModel,
      d_sae: w.dSae,
      dtype: "float32",
      apply_b_dec_to_input: true,
      normalize_activations: "none",
      metadata: { hook_name: "blocks.0.hook_resid_post", model_name: "tiny" },
      ...config,
    }),
  );
  const tensors: Record<string, { dtype: Dtype; shape: number[]; data: ArrayLike<number> }> = {
    W_enc: { dtype, shape: [w.dModel, w.dSae], data: w.W_enc },
    b_enc: { dtype, shape: [w.dSae], data: w.b_enc },
    W_dec: { dtype, shape: [w.dSae, w.dModel], data: w.W_dec },
    b_dec: { dtype, shape: [w.dModel], data: w.b_dec },
  };
  const threshold = options.threshold ?? w.threshold;
  if (threshold && config["architecture"] === "jumprelu") {
    tensors["threshold"] = { dtype: "F32", shape: [w.dSae], data: threshold };
  }
  await Deno.writeFile(`${dir}/sae_weights.safetensors`, writeSafetensors(tensors));
}

/** Dense `[nTokens × dSae]` matrix from COO activations. */
export function dense(
  acts: { position: Int32Array; feature: Int32Array; value: Float32Array },
  nTokens: number,
  dSae: number,
): Float32Array {
  const out = new Float32Array(nTokens * dSae);
  for (let j = 0; j < acts.value.length; j++) {
    out[acts.position[j]! * dSae + acts.feature[j]!] = acts.value[j]!;
  }
  return out;
}
