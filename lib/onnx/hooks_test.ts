import { dirname } from "node:path";
import { fixturePath } from "../_testing.ts";
import { assert, assertEquals, assertRejects, assertThrows, maxAbsDiff } from "./_testing.ts";
import { onnx } from "./_proto.ts";
import { ConfigError } from "../errors.ts";
import { makeNode, makeTensor, type NodeSpec, OnnxModel } from "./graph.ts";
import { listHookPoints, resolveHooks, summarizeHooks } from "./hooks.ts";
import { formatInspect, inspectModel, openHookSession } from "../ort/mod.ts";

const FIXTURES = new URL("../../fixtures/", import.meta.url).pathname;

interface Manifest {
  input_ids: number[][];
  attention_mask: number[][];
  tensors: Record<string, { file: string; shape: number[] }>;
}

async function expected(name: string) {
  const dir = `${dirname(fixturePath(`${name}/expected/manifest.json`))}/`;
  const manifest: Manifest = JSON.parse(await Deno.readTextFile(`${dir}manifest.json`));
  const values: Record<string, Float32Array> = {};
  for (const [hook, entry] of Object.entries(manifest.tensors)) {
    const bytes = await Deno.readFile(dir + entry.file);
    values[hook] = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  return { manifest, values };
}

const ARCHS = [
  { name: "tiny-neox", prefix: "/gpt_neox/layers" },
  { name: "tiny-gpt2", prefix: "/transformer/h" },
  { name: "tiny-llama", prefix: "/model/layers" },
];

for (const { name, prefix } of ARCHS) {
  Deno.test({
    name: `hook activations of the pruned ${name} graph equal the torch model's within 1e-5`,
    async fn(t) {
      const { manifest, values } = await expected(name);
      const model = await OnnxModel.load(`${FIXTURES}${name}/model.onnx`);
      const hooks = Object.keys(manifest.tensors).filter((h) => h !== "logits");
      assert(hooks.some((h) => h.endsWith("hook_resid_post")));
      await using hs = await openHookSession(model, hooks, { intraOpThreads: 1 });
      const highest = Math.max(...hooks.map((h) => Number(/^blocks\.(\d+)\./.exec(h)![1])));
      const nodeNames = hs.model.nodes.map((n) => n.name ?? "");
      assert(
        !nodeNames.some((n) => Number(new RegExp(`^${prefix}\\.(\\d+)/`).exec(n)?.[1]) > highest),
        "no node of a block above the highest hook",
      );
      assert(!hs.model.outputs.some((o) => o.name === "logits"));
      assert(
        !hs.model.nodes.some((n) => n.opType === "MatMul" && !n.name?.startsWith(`${prefix}.`)),
        "no MatMul outside the blocks (the LM head is gone)",
      );
      const B = manifest.input_ids.length;
      const T = manifest.input_ids[0]!.length;
      const out = await hs.session.run(hs.feeds({
        batchSize: B,
        contextSize: T,
        tokens: Int32Array.from(manifest.input_ids.flat()),
        attention: Uint8Array.from(manifest.attention_mask.flat()),
      }));
      for (const hook of hooks) {
        await t.step(`${hook} → ${hs.tensors[hook]}`, () => {
          const got = out[hs.tensors[hook]!]!;
          assertEquals([...got.dims], manifest.tensors[hook]!.shape);
          const diff = maxAbsDiff(got.data as Float32Array, values[hook]!);
          assert(diff <= 1e-5, `max |diff| ${diff}`);
        });
      }
    },
  });
}

Deno.test("listHookPoints() reads GPT-NeoX parallel blocks: no resid_mid, resid_pre chains", async () => {
  const model = await OnnxModel.load(`${FIXTURES}tiny-neox/model.onnx`);
  const points = listHookPoints(model);
  assertEquals(points.length, 16);
  const at = (hook: string) => points.find((p) => p.hook === hook)?.tensor;
  assertEquals(at("blocks.0.hook_resid_pre"), "/gpt_neox/embed_in/Gather_output_0");
  assertEquals(at("blocks.2.hook_resid_pre"), at("blocks.1.hook_resid_post"));
  assertEquals(at("blocks.1.hook_resid_post"), "/gpt_neox/layers.1/Add_1_output_0");
  assertEquals(at("blocks.1.hook_mlp_out"), "/gpt_neox/layers.1/mlp/dense_4h_to_h/Add_output_0");
  assertEquals(at("blocks.1.hook_attn_out"), "/gpt_neox/layers.1/attention/dense/Add_output_0");
  assertEquals(at("blocks.1.hook_resid_mid"), undefined);
});

Deno.test("resolveHooks() accepts raw tensor names and rejects unknown hooks with the choices", async (t) => {
  const model = await OnnxModel.load(`${FIXTURES}tiny-neox/model.onnx`);
  await t.step("a raw tensor name resolves to itself", () => {
    assertEquals(resolveHooks(model, ["/gpt_neox/layers.0/Add_output_0"]), {
      "/gpt_neox/layers.0/Add_output_0": "/gpt_neox/layers.0/Add_output_0",
    });
  });
  for (const hook of ["blocks.4.hook_resid_post", "blocks.1.hook_resid_mid", "blocks.1.resid"]) {
    await t.step(`"${hook}" is a ConfigError listing the hook points`, () => {
      const e = assertThrows(() => resolveHooks(model, [hook]), ConfigError);
      assertEquals(
        e.message,
        `Unknown hook point "${hook}" for ONNX model ${FIXTURES}tiny-neox/model.onnx; available ` +
          `hook points: blocks.{0..3}.{hook_resid_pre,hook_attn_out,hook_mlp_out,hook_resid_post}`,
      );
    });
  }
  await t.step("openHookSession() rejects the same way before creating a session", async () => {
    await assertRejects(
      () => openHookSession(model, ["blocks.9.hook_resid_post"]),
      ConfigError,
      `Unknown hook point "blocks.9.hook_resid_post"`,
    );
  });
  await t.step("a float16 dtype on a float32 model is a ConfigError", async () => {
    await assertRejects(
      () => openHookSession(model, ["blocks.0.hook_resid_post"], { dtype: "float16" }),
      ConfigError,
      `dtype = "float16" was asked, but ONNX model ${FIXTURES}tiny-neox/model.onnx computes in float32`,
    );
  });
});

Deno.test("summarizeHooks() writes layer ranges compactly", () => {
  assertEquals(
    summarizeHooks(["blocks.0.hook_a", "blocks.1.hook_a", "blocks.3.hook_b", "x"]),
    "blocks.{0..1}.hook_a, blocks.3.hook_b, x",
  );
  assertEquals(summarizeHooks(["blocks.0.h", "blocks.2.h"]), "blocks.{0,2}.h");
});

Deno.test("inspectModel() lists hook points with shapes, inputs, vocab and opset", async () => {
  const info = await inspectModel(`${FIXTURES}tiny-neox`);
  assertEquals(info.vocabSize, 1024);
  assertEquals(info.opset, 17);
  assertEquals(info.inputs.map((i) => i.name), ["input_ids", "attention_mask"]);
  assertEquals(info.hookPoints.length, 16);
  for (const h of info.hookPoints) assertEquals(h.shape, ["batch", "sequence", 64]);
  const text = formatInspect(info);
  assert(text.includes("blocks.3.hook_resid_post  [batch, sequence, 64]"), text);
  assert(text.includes("vocab       1024"));
});

Deno.test("GPT-NeoX hooks add up: resid_post = resid_pre + attn_out + mlp_out in every block", async () => {
  const model = await OnnxModel.load(`${FIXTURES}tiny-neox/model.onnx`);
  const hooks = listHookPoints(model).map((p) => p.hook);
  await using hs = await openHookSession(model, hooks, { intraOpThreads: 1 });
  const out = await hs.session.run(hs.feeds({
    batchSize: 1,
    contextSize: 7,
    tokens: new Int32Array([0, 45, 300, 12, 999, 4, 71]),
    attention: new Uint8Array(7).fill(1),
  }));
  const get = (hook: string) => out[hs.tensors[hook]!]!.data as Float32Array;
  for (let L = 0; L < 4; L++) {
    const pre = get(`blocks.${L}.hook_resid_pre`);
    const attn = get(`blocks.${L}.hook_attn_out`);
    const mlp = get(`blocks.${L}.hook_mlp_out`);
    const sum = pre.map((v, i) => v + attn[i]! + mlp[i]!);
    assert(maxAbsDiff(sum, get(`blocks.${L}.hook_resid_post`)) < 1e-4, `block ${L}`);
    assert(maxAbsDiff(attn, mlp) > 1e-3, `block ${L}: attn_out and mlp_out differ`);
  }
});

Deno.test("listHookPoints() reads Llama blocks through the RMSNorm's no-op float32 Casts", async () => {
  // HF's LlamaRMSNorm casts its input to float32; in a float32 export that Cast is a no-op, and
  // the residual branch reads its output (scoped in the norm) instead of the block input.
  const model = await OnnxModel.load(`${FIXTURES}tiny-llama/model.onnx`);
  const at = new Map(listHookPoints(model).map((p) => [p.hook, p.tensor]));
  assertEquals(Object.fromEntries([...at].filter(([h]) => h.startsWith("blocks.0."))), {
    "blocks.0.hook_resid_pre": "/model/embed_tokens/Gather_output_0",
    "blocks.0.hook_attn_out": "/model/layers.0/self_attn/o_proj/MatMul_output_0",
    "blocks.0.hook_resid_mid": "/model/layers.0/Add_output_0",
    "blocks.0.hook_mlp_out": "/model/layers.0/mlp/down_proj/MatMul_output_0",
    "blocks.0.hook_resid_post": "/model/layers.0/Add_1_output_0",
  });
  assertEquals(at.get("blocks.1.hook_resid_pre"), at.get("blocks.0.hook_resid_post"));
  assertEquals(at.size, 10);
});

for (const name of ["tiny-gpt2", "tiny-llama"]) {
  Deno.test(`${name} hooks add up: resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out`, async () => {
    const model = await OnnxModel.load(`${FIXTURES}${name}/model.onnx`);
    const hooks = listHookPoints(model).map((p) => p.hook);
    assertEquals(hooks.length, 10);
    await using hs = await openHookSession(model, hooks, { intraOpThreads: 1 });
    const out = await hs.session.run(hs.feeds({
      batchSize: 1,
      contextSize: 6,
      tokens: new Int32Array([0, 45, 300, 12, 999, 4]),
      attention: new Uint8Array(6).fill(1),
    }));
    const get = (hook: string) => out[hs.tensors[hook]!]!.data as Float32Array;
    for (let L = 0; L < 2; L++) {
      const [pre, attn, mid, mlp, post] = [
        "resid_pre",
        "attn_out",
        "resid_mid",
        "mlp_out",
        "resid_post",
      ].map((k) => get(`blocks.${L}.hook_${k}`));
      assert(maxAbsDiff(pre!.map((v, i) => v + attn![i]!), mid!) < 1e-5, `block ${L}: mid`);
      assert(maxAbsDiff(mid!.map((v, i) => v + mlp![i]!), post!) < 1e-5, `block ${L}: post`);
      assert(maxAbsDiff(attn!, mlp!) > 1e-3, `block ${L}: attn_out and mlp_out differ`);
    }
  });
}

/**
 * One sequential block whose residual branch reads the block input through a Cast in the first
 * norm's scope and the mid stream through an Identity in the second norm's scope.
 */
function castBlock(castTo: "float32" | "float16"): OnnxModel {
  const T = onnx.TensorProto.DataType;
  const nodes: NodeSpec[] = [
    { opType: "Mul", name: "/m/embed/Mul", inputs: ["x", "w"], outputs: ["e"] },
    {
      opType: "Cast",
      name: "/m/layers.0/ln_1/Cast",
      inputs: ["e"],
      outputs: ["c"],
      attributes: { to: { i: castTo === "float32" ? T.FLOAT : T.FLOAT16 } },
    },
  ];
  let resid = "c";
  if (castTo === "float16") {
    nodes.push({
      opType: "Cast",
      name: "/m/layers.0/ln_1/Cast_1",
      inputs: ["c"],
      outputs: ["c32"],
      attributes: { to: { i: T.FLOAT } },
    });
    resid = "c32";
  }
  nodes.push(
    { opType: "Mul", name: "/m/layers.0/attn/proj/Mul", inputs: [resid, "w"], outputs: ["a"] },
    { opType: "Add", name: "/m/layers.0/Add", inputs: [resid, "a"], outputs: ["mid"] },
    {
      opType: "Identity",
      name: "/m/layers.0/post_attention_layernorm/Identity",
      inputs: ["mid"],
      outputs: ["i"],
    },
    { opType: "Mul", name: "/m/layers.0/mlp/proj/Mul", inputs: ["i", "w"], outputs: ["f"] },
    { opType: "Add", name: "/m/layers.0/Add_1", inputs: ["i", "f"], outputs: ["post"] },
  );
  const info = (name: string) => ({
    name,
    type: { tensorType: { elemType: T.FLOAT, shape: { dim: [{ dimValue: 4 }] } } },
  });
  const proto = onnx.ModelProto.fromObject({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "block",
      node: nodes.map((n) => makeNode(n)),
      initializer: [makeTensor({ name: "w", dims: [4], data: new Float32Array([1, 2, 3, 4]) })],
      input: [info("x")],
      output: [info("post")],
    },
  });
  return OnnxModel.fromBytes(onnx.ModelProto.encode(proto).finish());
}

Deno.test("listHookPoints() looks through Identity and same-type Casts, not through rounding Casts", async (t) => {
  await t.step("a float32 → float32 Cast and an Identity pass the residual on unchanged", () => {
    const points = listHookPoints(castBlock("float32"));
    assertEquals(Object.fromEntries(points.map((p) => [p.hook, p.tensor])), {
      "blocks.0.hook_resid_pre": "e",
      "blocks.0.hook_attn_out": "a",
      "blocks.0.hook_resid_mid": "mid",
      "blocks.0.hook_mlp_out": "f",
      "blocks.0.hook_resid_post": "post",
    });
  });
  await t.step("a float16 round trip changes the values: no resid_pre (nor resid_mid)", () => {
    const points = listHookPoints(castBlock("float16"));
    assertEquals(points.map((p) => p.hook), [
      "blocks.0.hook_attn_out",
      "blocks.0.hook_mlp_out",
      "blocks.0.hook_resid_post",
    ]);
  });
});
