import { assert, assertEquals, assertRejects, assertThrows } from "./_testing.ts";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { onnx } from "./_proto.ts";
import { OnnxModel } from "./graph.ts";
import { createSession, feedBuilder, type Tensor, tensor } from "../ort/mod.ts";

const NEOX = new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname;
const POST1 = "/gpt_neox/layers.1/Add_1_output_0";
const POST3 = "/gpt_neox/layers.3/Add_1_output_0";
const model = await OnnxModel.load(NEOX);
const batch = {
  batchSize: 2,
  contextSize: 5,
  tokens: new Int32Array([0, 17, 250, 3, 99, 0, 5, 6, 7, 0]),
  attention: new Uint8Array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0]),
};

async function runModel(m: OnnxModel, feeds?: Record<string, Tensor>) {
  await using s = await createSession(m, { intraOpThreads: 1 });
  return await s.run(feeds ?? feedBuilder(s.inputMetadata, "test")(batch));
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// The reference: the full model with hook tensors added as outputs (nothing pruned).
const reference = await runModel(model.addOutputs([POST1, POST3]));

Deno.test("OnnxModel lists inputs, outputs, opset and tensor types of an export", () => {
  assertEquals(model.inputs.map((i) => [i.name, i.elemType]), [
    ["input_ids", "int64"],
    ["attention_mask", "int64"],
  ]);
  assertEquals(model.outputs.map((o) => o.name), ["logits"]);
  assertEquals(model.opset, 17);
  const t = model.tensor(POST1);
  assertEquals(t?.kind, "node");
  assertEquals(t?.elemType, "float32");
  assertEquals(model.tensor("gpt_neox.embed_in.weight")?.shape, [1024, 64]);
  assertEquals(model.tensor("nope"), undefined);
  assertEquals(model.producer(POST1)?.name, "/gpt_neox/layers.1/Add_1");
  assert(model.consumers(POST1).some((n) => n.name?.startsWith("/gpt_neox/layers.2/")));
});

Deno.test("toBytes() round-trips to a model ONNX Runtime runs with the same logits", async () => {
  const again = OnnxModel.fromBytes(model.toBytes());
  assertEquals(again.nodes.length, model.nodes.length);
  const out = await runModel(again);
  assertEquals(
    maxDiff(out.logits!.data as Float32Array, reference.logits!.data as Float32Array),
    0,
  );
});

Deno.test("prune() keeps only what feeds the requested tensor: no LM head, no later layers", async () => {
  const pruned = model.prune([POST1]);
  const names = pruned.nodes.map((n) => n.name ?? "");
  assert(names.length < model.nodes.length);
  assert(!names.some((n) => /layers\.[23]\//.test(n)), "layers 2 and 3 are gone");
  assert(!names.some((n) => n.startsWith("/embed_out/")), "the LM head MatMul is gone");
  assert(!names.some((n) => n.includes("final_layer_norm")));
  assert(!(pruned.graph.initializer ?? []).some((t) => t.name === "embed_out.weight"));
  assertEquals(pruned.outputs.map((o) => [o.name, o.elemType]), [[POST1, "float32"]]);
  const out = await runModel(pruned);
  assertEquals(out[POST1]!.dims, [2, 5, 64]);
  assertEquals(
    maxDiff(out[POST1]!.data as Float32Array, reference[POST1]!.data as Float32Array),
    0,
  );
});

Deno.test("prune() drops graph inputs that are no longer used", () => {
  const embed = model.prune(["/gpt_neox/embed_in/Gather_output_0"]);
  assertEquals(embed.inputs.map((i) => i.name), ["input_ids"]);
  assertEquals(embed.nodes.length, 1);
});

Deno.test("extractSubgraph() makes the final-norm + unembedding tail a model of its own", async () => {
  const tail = model.extractSubgraph([POST3], ["logits"]);
  assertEquals(tail.inputs.map((i) => [i.name, i.elemType]), [[POST3, "float32"]]);
  assert(!tail.nodes.some((n) => n.name?.includes("/layers.")));
  const resid = reference[POST3]!;
  const out = await runModel(tail, { [POST3]: tensor("float32", resid.data, resid.dims) });
  assert(maxDiff(out.logits!.data as Float32Array, reference.logits!.data as Float32Array) < 1e-5);
});

Deno.test("appendNodes() adds an encoder-like MatMul + Relu after a hook tensor", async () => {
  const w = new Float32Array(64 * 3).map((_, i) => ((i * 37) % 11) / 10 - 0.5);
  const appended = model.appendNodes(
    [
      { opType: "MatMul", inputs: [POST1, "enc_w"], outputs: ["enc_pre"] },
      { opType: "Relu", inputs: ["enc_pre"], outputs: ["enc_act"] },
    ],
    [{ name: "enc_w", dims: [64, 3], data: w }],
    ["enc_act"],
  ).prune(["enc_act"]);
  assert(!appended.nodes.some((n) => n.name?.startsWith("/embed_out/")));
  const out = await runModel(appended);
  const x = reference[POST1]!.data as Float32Array;
  const got = out.enc_act!.data as Float32Array;
  for (let p = 0; p < 10; p++) {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s += x[p * 64 + k]! * w[k * 3 + j]!;
      assert(Math.abs(got[p * 3 + j]! - Math.max(0, s)) < 1e-4);
    }
  }
  assertThrows(
    () => model.appendNodes([{ opType: "Relu", inputs: ["missing"], outputs: ["y"] }], [], []),
    ConfigError,
    `reads "missing", which is not defined`,
  );
  assertThrows(
    () => model.appendNodes([{ opType: "Relu", inputs: [POST1], outputs: [POST3] }], [], []),
    ConfigError,
    `tensor "${POST3}" already exists`,
  );
});

Deno.test("asking for a tensor the graph does not have is a ConfigError", () => {
  assertThrows(
    () => model.prune(["no_such_tensor"]),
    ConfigError,
    `has no tensor "no_such_tensor"`,
  );
});

/** Writes the fixture with every initializer moved to `weights.bin` (as onnx.save does). */
async function writeExternal(dir: string): Promise<void> {
  const proto = onnx.ModelProto.decode(model.toBytes());
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of proto.graph!.initializer!) {
    const raw = t.rawData!;
    if (raw.length < 64) continue;
    chunks.push(raw.slice());
    t.externalData = [
      { key: "location", value: "weights.bin" },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(raw.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.rawData = new Uint8Array(0);
    offset += raw.length;
  }
  const all = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) all.set(c, at), at += c.length;
  await Deno.writeFile(join(dir, "weights.bin"), all);
  await Deno.writeFile(join(dir, "model.onnx"), onnx.ModelProto.encode(proto).finish());
}

Deno.test("external data stays external and is resolved from the model folder", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await writeExternal(dir);
    const ext = await OnnxModel.load(join(dir, "model.onnx"));
    const bytes = ext.prune([POST1]).toBytes();
    const inline = model.prune([POST1]).toBytes();
    // The embedding alone is 1024 × 64 float32 = 262144 bytes.
    assert(bytes.length < inline.length - 262144, `${bytes.length} bytes: weights were inlined`);

    await t.step("a session over the edited graph reads the weights", async () => {
      const out = await runModel(ext.prune([POST1]));
      assertEquals(
        maxDiff(out[POST1]!.data as Float32Array, reference[POST1]!.data as Float32Array),
        0,
      );
    });
    await t.step("readInitializer() reads external and inline data alike", async () => {
      const a = await ext.readInitializer("gpt_neox.embed_in.weight");
      const b = await model.readInitializer("gpt_neox.embed_in.weight");
      assertEquals(a.dims, [1024, 64]);
      assertEquals(a.data, b.data);
    });
    await t.step("a truncated external file is a ConfigError", async () => {
      const f = join(dir, "weights.bin");
      await Deno.truncate(f, 1000);
      await assertRejects(
        () => OnnxModel.load(join(dir, "model.onnx")),
        ConfigError,
        `Cannot load ONNX model ${join(dir, "model.onnx")}: external data file ${f} is truncated`,
      );
    });
    await t.step("a missing external file is a ConfigError", async () => {
      await Deno.remove(join(dir, "weights.bin"));
      await assertRejects(
        () => OnnxModel.load(join(dir, "model.onnx")),
        ConfigError,
        `external data file ${join(dir, "weights.bin")} (for initializer`,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("OnnxModel.load() reports bad files in one line", async (t) => {
  const dir = await Deno.makeTempDir();
  const bytes = await Deno.readFile(NEOX);
  const cases: [string, Uint8Array | null, string][] = [
    ["a missing file", null, "file not found"],
    [
      "a truncated file",
      bytes.subarray(0, Math.floor(bytes.length / 2)),
      "not a valid ONNX protobuf",
    ],
    ["a text file", new TextEncoder().encode("hello, not a model\n"), ""],
    ["an empty file", new Uint8Array(0), "the file holds no graph"],
  ];
  try {
    for (const [what, content, message] of cases) {
      await t.step(`${what} is a ConfigError`, async () => {
        const path = join(dir, `${what.replaceAll(" ", "_")}.onnx`);
        if (content) await Deno.writeFile(path, content);
        const e = await assertRejects(() => OnnxModel.load(path), ConfigError);
        assert(e.message.startsWith(`Cannot load ONNX model ${path}: ${message}`), e.message);
        assert(!e.message.includes("\n"));
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
