/**
 * The SAELens layout: `cfg.json` + `sae_weights.safetensors`.
 *
 * Read from jbloomAus/SAELens: `sae_lens/saes/sae.py` (`SAEConfig`: d_in, d_sae,
 * apply_b_dec_to_input, normalize_activations; `process_sae_in`: normalization then `- b_dec`;
 * `_setup_activation_normalization`: `constant_norm_rescale` = x·√d_in/‖x‖, `layer_norm` =
 * (x−μ)/(std+1e-5) with torch's unbiased std; `expected_average_only_in` is a no-op at inference
 * unless a scaling factor is folded), `standard_sae.py` (ReLU), `jumprelu_sae.py`
 * (`relu(h) * (h > threshold)`), `topk_sae.py` (`torch.topk` then ReLU; with
 * `rescale_acts_by_decoder_norm` the activation runs on h·‖W_dec_f‖, the *scaled* values are
 * returned and `decode` divides them back), `batchtopk_sae.py` (saved as JumpReLU with
 * `threshold`), and `loading/pretrained_sae_loaders.py` (`handle_config_defaulting` /
 * `handle_pre_6_0_config`: old flat configs, `hook_point` → `hook_name`, `activation_fn_str`,
 * `activation_fn_kwargs.k`, boolean `normalize_activations`, the `scaling_factor` tensor).
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
  readTensor,
} from "./_checkpoint.ts";
import type { ActivationKind } from "./sae.ts";

const ARCHITECTURES = ["standard", "jumprelu", "topk", "batchtopk"] as const;
const NORMALIZE = [
  "none",
  "expected_average_only_in",
  "constant_norm_rescale",
  "layer_norm",
] as const;

function obj(v: unknown): Record<string, unknown> | null {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? v as Record<string, unknown>
    : null;
}

/** Loads a SAELens checkpoint folder without folding anything. */
export async function readSaeLens(dir: string): Promise<RawSae> {
  const F = "cfg.json";
  const config = await readJsonObject(dir, F);
  const meta = obj(config["metadata"]) ?? obj(config["meta"]) ?? {};
  const dModel = positiveInteger(dir, F, "d_in", config["d_in"]);
  const dSae = positiveInteger(dir, F, "d_sae", config["d_sae"]);
  const architecture = config["architecture"] ?? "standard";
  if (
    typeof architecture !== "string" || !(ARCHITECTURES as readonly string[]).includes(architecture)
  ) {
    throw fail(
      dir,
      `${F}: architecture ${JSON.stringify(architecture)} is not supported; valid: ${
        ARCHITECTURES.join(", ")
      }`,
    );
  }
  const actFn = config["activation_fn"] ?? config["activation_fn_str"] ?? "relu";
  const kwargs = obj(config["activation_fn_kwargs"]) ?? {};
  let activation: ActivationKind;
  if (architecture === "standard") {
    if (actFn !== "relu" && actFn !== "topk") {
      throw fail(
        dir,
        `${F}: activation_fn ${JSON.stringify(actFn)} is not supported; valid: relu, topk`,
      );
    }
    activation = actFn;
  } else activation = architecture as ActivationKind;
  let k: number | undefined;
  if (activation === "topk") k = positiveInteger(dir, F, "k", config["k"] ?? kwargs["k"]);

  const hookRaw = config["hook_name"] ?? config["hook_point"] ?? meta["hook_name"];
  if (typeof hookRaw !== "string" || hookRaw === "") {
    throw fail(dir, `${F}: no hook_name (nor metadata.hook_name)`);
  }
  const applyBDec = booleanField(dir, F, config, "apply_b_dec_to_input", true);
  let norm = config["normalize_activations"] ?? "none";
  if (typeof norm === "boolean") norm = norm ? "expected_average_only_in" : "none";
  if (typeof norm !== "string" || !(NORMALIZE as readonly string[]).includes(norm)) {
    throw fail(
      dir,
      `${F}: normalize_activations ${JSON.stringify(norm)} is not supported; valid: ${
        NORMALIZE.join(", ")
      }`,
    );
  }
  const rescale = booleanField(dir, F, config, "rescale_acts_by_decoder_norm", false);

  const weightFile = "sae_weights.safetensors";
  if (!(await isFile(`${dir}/${weightFile}`))) {
    throw fail(dir, `no weights: ${weightFile} does not exist`);
  }
  const file = await openWeights(dir, weightFile);
  try {
    const W_enc = await readTensor(dir, file, "W_enc", [dModel, dSae]);
    const b_enc = await readTensor(dir, file, "b_enc", [dSae]);
    const W_dec = await readTensor(dir, file, "W_dec", [dSae, dModel]);
    const b_dec = await readTensor(dir, file, "b_dec", [dModel]);
    let threshold: Float32Array | undefined;
    if (activation === "jumprelu" || activation === "batchtopk") {
      if (file.has("threshold")) threshold = await readTensor(dir, file, "threshold", [dSae]);
      else if (file.has("log_threshold")) {
        threshold = (await readTensor(dir, file, "log_threshold", [dSae])).map(Math.exp);
      } else {
        throw fail(
          dir,
          activation === "jumprelu"
            ? `tensor threshold is missing from ${weightFile}`
            : `architecture "batchtopk" needs a saved threshold to be evaluated per token; ${weightFile} has none`,
        );
      }
    }
    // A fine-tuning scaling factor multiplies the activations before decoding only.
    if (file.has("scaling_factor")) {
      const s = await readTensor(dir, file, "scaling_factor", [dSae]);
      for (let f = 0; f < dSae; f++) {
        for (let i = 0; i < dModel; i++) W_dec[f * dModel + i] = W_dec[f * dModel + i]! * s[f]!;
      }
    }
    const c = centerFromConfig(config);
    return {
      format: "saelens",
      path: dir,
      config,
      dModel,
      dSae,
      hookPointIn: hookRaw,
      hookPointOut: hookRaw,
      W_enc,
      b_enc,
      W_dec,
      b_dec,
      activation,
      ...(k === undefined ? {} : { k }),
      ...(threshold === undefined ? {} : { threshold }),
      applyBDecToInput: applyBDec,
      decoderNormGating: rescale ? "saelens" : "none",
      normMethod: norm,
      perToken: norm === "constant_norm_rescale"
        ? "rescale"
        : norm === "layer_norm"
        ? "layer-norm"
        : "none",
      datasetAverageNorm: null,
      center: c.center,
      centerSource: c.source,
      dtype: file.info("W_enc").dtype,
    };
  } finally {
    file.close();
  }
}
