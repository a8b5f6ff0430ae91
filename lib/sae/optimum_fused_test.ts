/**
 * The analyze pipeline's default path, the SAE encoder fused into the model's graph, on a real
 * Hugging Face Optimum export (`fixtures/optimum-gpt2`: `onnx/model.onnx` with past key/value
 * inputs and `present.*` outputs), checked against the float64 reference encoder applied to the
 * torch model's own activations at the hook.
 */
import { join } from "node:path";
import { OnnxModel } from "../onnx/mod.ts";
import { assert, assertEquals, dense, randomWeights, writeLmSaes } from "./_testing.ts";
import { encodeReference, loadSae } from "./mod.ts";
import { FusedSaeEncoder } from "./onnx_encoder.ts";

const DIR = new URL("../../fixtures/optimum-gpt2", import.meta.url).pathname;
const HOOK = "blocks.1.hook_resid_post";
const D_SAE = 64;

Deno.test("the fused model+SAE on a real Optimum export agrees with the reference on the torch activations", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(join(DIR, "expected", "manifest.json"))) as {
    input_ids: number[][];
    attention_mask: number[][];
    tensors: Record<string, { file: string; shape: number[] }>;
  };
  const entry = manifest.tensors[HOOK]!;
  const bytes = await Deno.readFile(join(DIR, "expected", entry.file));
  const torch = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const [B, T, D] = entry.shape as [number, number, number];
  const attention = Uint8Array.from(manifest.attention_mask.flat());
  const batch = {
    batchSize: B,
    contextSize: T,
    tokens: Int32Array.from(manifest.input_ids.flat()),
    attention,
    mask: attention,
  };

  const dir = await Deno.makeTempDir({ prefix: "optimum_fused_test_" });
  try {
    await writeLmSaes(dir, randomWeights(11, D, D_SAE), { act_fn: "relu", hook_point_in: HOOK });
    const sae = await loadSae(dir);
    await using fused = await FusedSaeEncoder.create(
      await OnnxModel.load(join(DIR, "onnx", "model.onnx")),
      sae,
      HOOK,
      { intraOpThreads: 1 },
    );
    const got = await fused.encode(batch);
    assert(got.position.every((p) => attention[p] === 1), "no entry on a padded token");

    // The reference on the torch activations, padded positions left out.
    const want = encodeReference(sae, torch, B * T);
    const keep = want.position.map((p) => attention[p]!);
    const wanted = {
      position: want.position.filter((_, i) => keep[i]),
      feature: want.feature.filter((_, i) => keep[i]),
      value: want.value.filter((_, i) => keep[i]),
    };
    assert(wanted.value.length > 100, `only ${wanted.value.length} active entries to compare`);
    // ReLU is continuous, so comparing dense values also covers entries that flip right at 0.
    const a = dense(got, B * T, D_SAE);
    const b = dense(wanted, B * T, D_SAE);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert(worst < 1e-3, `max |fused − reference| = ${worst}`);
    // And the active sets agree away from 0.
    const strong = (x: Float32Array) => [...x.keys()].filter((i) => x[i]! > 1e-2);
    assertEquals(strong(a), strong(b));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
