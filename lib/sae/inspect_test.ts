import { join } from "node:path";
import { assertEquals, randomWeights, writeLmSaes } from "./_testing.ts";
import { describeSae, loadSae } from "./mod.ts";

Deno.test("describeSae() lists format, widths, activation, normalization, center and hook", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "l3");
    const hook = "blocks.3.hook_resid_post";
    const w = randomWeights(1, 8, 32);
    w.threshold = new Float32Array(32).fill(0.25);
    await writeLmSaes(path, w, {
      act_fn: "jumprelu",
      norm_activation: "dataset-wise",
      sparsity_include_decoder_norm: true,
      hook_point_in: hook,
      hook_point_out: hook,
    }, { extra: { [`dataset_average_activation_norm.${hook}`]: 4 }, dtype: "BF16" });
    const sae = await loadSae(path);
    assertEquals(describeSae(sae), [
      `path                 ${path}`,
      "format               Language-Model-SAEs (config.json + sae_weights.safetensors)",
      "d_model              8",
      "d_sae                32",
      "activation           jumprelu (threshold mean 0.3536, min 0.3536, max 0.3536)",
      "normalization        dataset-wise, average input norm 4 (f = √d_model/norm = 0.7071), folded: activations in input scale, thresholds rescaled",
      "center               off (the config does not say how the model was loaded)",
      `hook point           ${hook}`,
      "b_dec on input       no",
      "decoder-norm gating  yes (sparsity_include_decoder_norm)",
      "dtype                BF16",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
