/**
 * The Language-Model-SAEs layout: `config.json` + `sae_weights.safetensors`.
 *
 * Read from OpenMOSS/Language-Model-SAEs: `src/lm_saes/models/sae.py` (`SparseAutoEncoder`:
 * `W_E [d_model, d_sae]`, `b_E`, `W_D [d_sae, d_model]`, `b_D`; `encode`; `decoder_norm` = row
 * norms of W_D; `standardize_parameters_of_dataset_norm`), `src/lm_saes/models/
 * sparse_dictionary.py` (`SparseDictionaryConfig` fields and defaults, `compute_norm_factor`,
 * `full_state_dict` writing `dataset_average_activation_norm.<hook>`, `from_local` checkpoint
 * paths, `activation_function_factory`), `src/lm_saes/activation_functions.py` (`JumpReLU`:
 * `input * input.gt(exp(log_jumprelu_threshold))`), and the older `src/lm_saes/config.py`
 * (`BaseSAEConfig`: `apply_decoder_bias_to_pre_encoder`, `sae_type`) and `sae.py` encode (which
 * subtracted `b_D` from the normalized input when that flag was set).
 *
 * @module
 */

import {
  booleanField,
  centerFromConfig,
  fail,
  isFile,
  openWeights,
  positiveInteger,
  type RawSae,
  readJsonObject,
  readScalar,
  readTensor,
  stringField,
} from "./_checkpoint.ts";
import type { ActivationKind } from "./sae.ts";

const ACT_FNS: readonly ActivationKind[] = ["relu", "jumprelu", "topk", "batchtopk"];
const NORMS = ["token-wise", "batch-wise", "dataset-wise", "inference"] as const;

/** Weight files in the order `SparseDictionary.from_local` tries them (safetensors only). */
const WEIGHT_FILES = [
  "sae_weights.safetensors",
  "checkpoints/pruned.safetensors",
  "checkpoints/final.safetensors",
];

/** Loads an LM-SAEs checkpoint folder without folding anything. */
export async function readLmSaes(dir: string): Promise<RawSae> {
  const F = "config.json";
  const config = await readJsonObject(dir, F);
  if (config["d_model"] === undefined) {
    throw fail(dir, `${F} has no d_model: not a Language-Model-SAEs SAE config`);
  }
  const sae_type = config["sae_type"] ?? "sae";
  if (sae_type !== "sae") {
    throw fail(
      dir,
      `${F}: sae_type ${JSON.stringify(sae_type)} is not supported; supported: "sae"`,
    );
  }
  if (config["use_glu_encoder"] === true) {
    throw fail(dir, `${F}: use_glu_encoder = true is not supported`);
  }
  const dModel = positiveInteger(dir, F, "d_model", config["d_model"]);
  let dSae: number;
  if (config["d_sae"] !== undefined && config["d_sae"] !== null) {
    dSae = positiveInteger(dir, F, "d_sae", config["d_sae"]);
  } else {
    const ef = config["expansion_factor"];
    if (typeof ef !== "number" || !(ef > 0)) {
      throw fail(
        dir,
        `${F}: expansion_factor must be a positive number, got ${JSON.stringify(ef)}`,
      );
    }
    // SparseDictionaryConfig.d_sae = int(d_model * expansion_factor)
    dSae = positiveInteger(dir, F, "d_model × expansion_factor", Math.trunc(dModel * ef));
  }
  const actRaw = config["act_fn"] ?? "relu";
  const act = typeof actRaw === "string" ? actRaw.toLowerCase() : actRaw;
  if (typeof act !== "string" || !ACT_FNS.includes(act as ActivationKind)) {
    throw fail(
      dir,
      `${F}: act_fn ${JSON.stringify(actRaw)} is not supported; valid: ${ACT_FNS.join(", ")}`,
    );
  }
  const activation = act as ActivationKind;
  const hookPointIn = stringField(dir, F, "hook_point_in", config["hook_point_in"]);
  const hookPointOut = config["hook_point_out"] === undefined || config["hook_point_out"] === null
    ? hookPointIn
    : stringField(dir, F, "hook_point_out", config["hook_point_out"]);
  const useDecoderBias = booleanField(dir, F, config, "use_decoder_bias", true);
  const applyBDec = booleanField(dir, F, config, "apply_decoder_bias_to_pre_encoder", false);
  const gating = booleanField(dir, F, config, "sparsity_include_decoder_norm", true);
  const norm = config["norm_activation"] ?? "dataset-wise";
  if (typeof norm !== "string" || !(NORMS as readonly string[]).includes(norm)) {
    throw fail(
      dir,
      `${F}: norm_activation ${JSON.stringify(norm)} is not supported; valid: ${NORMS.join(", ")}`,
    );
  }
  if (norm === "batch-wise") {
    throw fail(
      dir,
      `${F}: norm_activation "batch-wise" scales each batch by its own average norm, so activations depend on the batch; not supported (use "dataset-wise")`,
    );
  }
  let k: number | undefined;
  if (activation === "topk") k = positiveInteger(dir, F, "top_k", config["top_k"] ?? 50);

  let weightFile: string | undefined;
  for (const f of WEIGHT_FILES) {
    if (await isFile(`${dir}/${f}`)) {
      weightFile = f;
      break;
    }
  }
  if (weightFile === undefined) {
    throw fail(dir, `no weights: none of ${WEIGHT_FILES.join(", ")} exists`);
  }
  const file = await openWeights(dir, weightFile);
  try {
    const W_enc = await readTensor(dir, file, "W_E", [dModel, dSae]);
    const b_enc = await readTensor(dir, file, "b_E", [dSae]);
    const W_dec = await readTensor(dir, file, "W_D", [dSae, dModel]);
    const b_dec = useDecoderBias
      ? await readTensor(dir, file, "b_D", [dModel])
      : new Float32Array(dModel);
    let threshold: Float32Array | undefined;
    if (activation === "jumprelu" || activation === "batchtopk") {
      const name = ["activation_function.log_jumprelu_threshold", "log_jumprelu_threshold"].find((
        n,
      ) => file.has(n));
      if (name === undefined) {
        throw fail(
          dir,
          activation === "jumprelu"
            ? `tensor activation_function.log_jumprelu_threshold is missing from ${weightFile}`
            : `act_fn "batchtopk" needs a saved JumpReLU threshold (activation_function.log_jumprelu_threshold) to be evaluated per token; ${weightFile} has none`,
        );
      }
      const log = await readTensor(dir, file, name, [dSae]);
      threshold = log.map(Math.exp);
    }
    let datasetAverageNorm: RawSae["datasetAverageNorm"] = null;
    if (norm === "dataset-wise") {
      // Only meaningful in this mode: full_state_dict() writes torch.empty(()) placeholders otherwise.
      const read = async (hook: string) => {
        const name = `dataset_average_activation_norm.${hook}`;
        if (!file.has(name)) {
          throw fail(
            dir,
            `norm_activation is "dataset-wise" but tensor ${name} is missing from ${weightFile}`,
          );
        }
        const v = await readScalar(dir, file, name);
        if (!Number.isFinite(v) || v <= 0) {
          throw fail(dir, `tensor ${name} is ${v}, expected a positive norm`);
        }
        return v;
      };
      datasetAverageNorm = { in: await read(hookPointIn), out: await read(hookPointOut) };
    }
    const c = centerFromConfig(config);
    return {
      format: "lm-saes",
      path: dir,
      config,
      dModel,
      dSae,
      hookPointIn,
      hookPointOut,
      W_enc,
      b_enc,
      W_dec,
      b_dec,
      activation,
      ...(k === undefined ? {} : { k }),
      ...(threshold === undefined ? {} : { threshold }),
      applyBDecToInput: applyBDec && useDecoderBias,
      decoderNormGating: gating ? "lm-saes" : "none",
      normMethod: norm,
      perToken: norm === "token-wise" ? "rescale" : "none",
      datasetAverageNorm,
      center: c.center,
      centerSource: c.source,
      dtype: file.info("W_E").dtype,
    };
  } finally {
    file.close();
  }
}
