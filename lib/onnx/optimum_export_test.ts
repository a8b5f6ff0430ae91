/**
 * A real Hugging Face Optimum export (`fixtures/optimum-gpt2`, made by
 * `fixtures/scripts/make_optimum_gpt2.py`): `onnx/model.onnx` in the transformers.js layout, with
 * `past_key_values.*` and `position_ids` inputs and `present.*` outputs, read through the same
 * functions the analyze pipeline uses (loadModelDir → OnnxModel.load → openHookSession) and
 * checked against the torch model's activations.
 */
import { join } from "node:path";
import { assert, assertEquals, maxAbsDiff } from "./_testing.ts";
import { OnnxModel } from "./graph.ts";
import { listHookPoints, resolveHooks } from "./hooks.ts";
import { formatInspect, inspectModel, openHookSession } from "../ort/mod.ts";
import { loadModelDir, maxContextSize } from "./model_dir.ts";

const DIR = new URL("../../fixtures/optimum-gpt2", import.meta.url).pathname;

interface Manifest {
  input_ids: number[][];
  attention_mask: number[][];
  position_ids: number[][];
  onnx_inputs: string[];
  tensors: Record<string, { file: string; shape: number[]; onnx_tensor: string }>;
}

async function expected() {
  const dir = join(DIR, "expected");
  const manifest: Manifest = JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
  const values: Record<string, Float32Array> = {};
  for (const [hook, entry] of Object.entries(manifest.tensors)) {
    const bytes = await Deno.readFile(join(dir, entry.file));
    values[hook] = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  return { manifest, values };
}

/** The rows `[B*T, D]` of `data` at the positions where `mask` is 1. */
function unmasked(data: ArrayLike<number>, mask: number[][], width: number): Float32Array {
  const flat = mask.flat();
  const out = new Float32Array(flat.filter((m) => m === 1).length * width);
  let k = 0;
  flat.forEach((m, i) => {
    if (m !== 1) return;
    for (let d = 0; d < width; d++) out[k++] = data[i * width + d]!;
  });
  return out;
}

const HOOKS = [0, 1].flatMap((L) =>
  ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"].map((k) =>
    `blocks.${L}.hook_${k}`
  )
);

Deno.test("loadModelDir() finds the Optimum export in the transformers.js layout onnx/model.onnx", async () => {
  const dir = await loadModelDir(DIR);
  assertEquals(dir.onnxPath, join(DIR, "onnx", "model.onnx"));
  assertEquals(dir.configPath, join(DIR, "config.json"));
  assertEquals(dir.tokenizerPath, join(DIR, "tokenizer.json"));
  assertEquals(dir.tokenizerConfigPath, join(DIR, "tokenizer_config.json"));
  assertEquals(dir.config["model_type"], "gpt2");
  assertEquals(maxContextSize(dir), 256);
});

Deno.test("listHookPoints() reads every GPT-2 hook of the Optimum export, the ones found by value in Python", async () => {
  const { manifest } = await expected();
  const model = await OnnxModel.load((await loadModelDir(DIR)).onnxPath);
  assertEquals(model.inputs.map((i) => i.name), manifest.onnx_inputs);
  const points = listHookPoints(model);
  assertEquals(points.map((p) => p.hook), HOOKS);
  for (const p of points) assertEquals(p.tensor, manifest.tensors[p.hook]!.onnx_tensor, p.hook);
});

Deno.test("pruning the Optimum export for block-0 hooks drops block 1, its past key/values, present.* and the LM head", async () => {
  const model = await OnnxModel.load((await loadModelDir(DIR)).onnxPath);
  const tensors = resolveHooks(model, ["blocks.0.hook_resid_post"]);
  const pruned = model.prune(Object.values(tensors));
  assertEquals(pruned.inputs.map((i) => i.name), [
    "input_ids",
    "past_key_values.0.key",
    "past_key_values.0.value",
    "attention_mask",
    "position_ids",
  ]);
  assertEquals(pruned.outputs.map((o) => o.name), ["/transformer/h.0/Add_1_output_0"]);
  assert(!pruned.nodes.some((n) => n.name?.startsWith("/transformer/h.1/")), "no block-1 node");
  assert(!pruned.nodes.some((n) => n.name?.startsWith("/lm_head/")), "no LM head node");
  assert(pruned.nodes.length < model.nodes.length, `${pruned.nodes.length} nodes kept`);
});

Deno.test("inspectModel() lists the Optimum export's hook points and its cache inputs", async () => {
  const info = await inspectModel(DIR);
  assertEquals(info.vocabSize, 1024);
  assertEquals(info.opset, 17);
  assertEquals(info.hookPoints.map((h) => h.hook), HOOKS);
  assert(info.inputs.some((i) => i.name === "past_key_values.1.value"));
  const text = formatInspect(info);
  assert(text.includes("blocks.1.hook_resid_post"), text);
});

Deno.test("hook activations of the pruned Optimum export equal the torch model's within 1e-4 at unmasked positions", async (t) => {
  const { manifest, values } = await expected();
  const dir = await loadModelDir(DIR);
  const model = await OnnxModel.load(dir.onnxPath);
  await using hs = await openHookSession(model, HOOKS, { intraOpThreads: 1, dtype: "float32" });
  const B = manifest.input_ids.length;
  const T = manifest.input_ids[0]!.length;
  // the batch has a right-padded and a left-padded row
  assert(manifest.attention_mask[1]![T - 1] === 0 && manifest.attention_mask[2]![0] === 0);
  const feeds = hs.feeds({
    batchSize: B,
    contextSize: T,
    tokens: Int32Array.from(manifest.input_ids.flat()),
    attention: Uint8Array.from(manifest.attention_mask.flat()),
  });

  await t.step("the pruned graph outputs only the hook tensors: no logits, no present.*", () => {
    const outputs = hs.model.outputs.map((o) => o.name);
    assertEquals(outputs, [...new Set(Object.values(hs.tensors))]);
    assert(!outputs.some((o) => o === "logits" || o.startsWith("present.")), String(outputs));
    assert(
      !hs.model.nodes.some((n) => n.name?.startsWith("/lm_head/") || n.name?.includes("/ln_f/")),
      "the final norm and the LM head are gone",
    );
  });

  await t.step("the feeds are empty past key/values and Hugging Face position ids", () => {
    assertEquals(Object.keys(feeds).sort(), [...manifest.onnx_inputs].sort());
    for (const L of [0, 1]) {
      for (const kv of ["key", "value"]) {
        const past = feeds[`past_key_values.${L}.${kv}`]!;
        assertEquals([...past.dims], [B, 2, 0, 16]);
        assertEquals(past.type, "float32");
      }
    }
    const pos = [...feeds["position_ids"]!.data as BigInt64Array].map(Number);
    const mask = manifest.attention_mask.flat();
    const want = manifest.position_ids.flat();
    // masked positions are not compared: Hugging Face puts 1 there, saeflow 0 or the last position
    assertEquals(pos.filter((_, i) => mask[i] === 1), want.filter((_, i) => mask[i] === 1));
  });

  const out = await hs.session.run(feeds);
  for (const hook of HOOKS) {
    await t.step(`${hook} → ${hs.tensors[hook]}`, () => {
      const got = out[hs.tensors[hook]!]!;
      const shape = manifest.tensors[hook]!.shape;
      assertEquals([...got.dims], shape);
      const width = shape[2]!;
      const a = unmasked(got.data as Float32Array, manifest.attention_mask, width);
      const b = unmasked(values[hook]!, manifest.attention_mask, width);
      assertEquals(a.length, 47 * width);
      const diff = maxAbsDiff(a, b);
      assert(diff <= 1e-4, `max |diff| ${diff}`);
    });
  }

  await t.step("neighbouring hooks differ by far more than the tolerance", () => {
    for (let i = 1; i < HOOKS.length; i++) {
      const [a, b] = [HOOKS[i - 1]!, HOOKS[i]!];
      if (hs.tensors[a] === hs.tensors[b]) continue; // blocks.0.resid_post is blocks.1.resid_pre
      assert(maxAbsDiff(values[a]!, values[b]!) > 0.1, `${a} vs ${b}`);
    }
  });
});
