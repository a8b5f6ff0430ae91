import { onnx } from "../onnx/_proto.ts";
import { ConfigError } from "../errors.ts";
import { listHookPoints, OnnxModel } from "../onnx/mod.ts";
import { assert, assertEquals, assertThrows, buildTail, fixtureDir } from "./_testing.ts";
import { DlaComputer, findUnembeddingTail } from "./mod.ts";

const NEOX = `${fixtureDir("tiny-neox")}/model.onnx`;
const neox = await OnnxModel.load(NEOX);

Deno.test("findUnembeddingTail() takes tiny-neox's final LayerNorm and unembedding, nothing more", () => {
  const tail = findUnembeddingTail(neox);
  assertEquals(tail.residTensor, "/gpt_neox/layers.3/Add_1_output_0");
  assertEquals(tail.foundBy, "input of the final norm /gpt_neox/final_layer_norm");
  // The input of the final norm is the last block's hook_resid_post.
  const post = listHookPoints(neox).find((h) => h.hook === "blocks.3.hook_resid_post");
  assertEquals(post?.tensor, tail.residTensor);
  assertEquals(tail.logitsTensor, "logits");
  assertEquals(tail.model.nodes.map((n) => n.opType), ["LayerNormalization", "MatMul"]);
  assertEquals(tail.model.inputs.map((i) => i.name), [tail.residTensor]);
  assertEquals([tail.dModel, tail.vocabSize, tail.layout], [64, 1024, "batch"]);
});

Deno.test("findUnembeddingTail() reads a decomposed RMSNorm with tied embeddings and a soft-cap", () => {
  const { model } = buildTail({ dModel: 8, vocab: 20, norm: "RMSNorm", tied: true, softcap: 30 });
  const tail = findUnembeddingTail(model);
  assertEquals(tail.residTensor, "/model/embed_tokens/Gather_output_0");
  assertEquals(tail.foundBy, "input of the final norm /model/norm");
  const ops = tail.model.nodes.map((n) => n.opType);
  assert(ops.includes("Transpose") && ops.includes("Tanh") && !ops.includes("Gather"), `${ops}`);
  // The width comes from the (transposed, tied) unembedding weight.
  assertEquals([tail.dModel, tail.vocabSize], [8, 20]);
});

Deno.test("findUnembeddingTail() falls back to the last block's hook_resid_post", () => {
  // tiny-neox with its final norm node renamed out of its scope.
  const proto = onnx.ModelProto.decode(neox.toBytes());
  const node = proto.graph!.node!.find((n) =>
    n.name === "/gpt_neox/final_layer_norm/LayerNormalization"
  )!;
  node.name = "/gpt_neox/LayerNormalization_9";
  const renamed = OnnxModel.fromBytes(onnx.ModelProto.encode(proto).finish());
  const tail = findUnembeddingTail(renamed);
  assertEquals(tail.residTensor, "/gpt_neox/layers.3/Add_1_output_0");
  assertEquals(tail.foundBy, "blocks.3.hook_resid_post");
});

Deno.test("findUnembeddingTail() takes given tensors", async () => {
  const tail = findUnembeddingTail(neox, {
    residTensor: "/gpt_neox/final_layer_norm/LayerNormalization_output_0",
  });
  assertEquals(tail.foundBy, "given");
  assertEquals(tail.model.nodes.map((n) => n.opType), ["MatMul"]);
  // Without the norm, the logits are linear in the row.
  await using dla = await DlaComputer.create(tail, {
    center: false,
    session: { intraOpThreads: 1 },
  });
  const row = new Float32Array(64).map((_, i) => i % 3);
  const a = await dla.logits(row);
  const b = await dla.logits(row.map((v) => 2 * v));
  assert(a.every((v, i) => Math.abs(2 * v - b[i]!) < 1e-4));
});

Deno.test({
  name:
    "findUnembeddingTail() keeps tiny-gpt2's input_ids, read for its shape only, as a zero-fed input",
  async fn() {
    const GPT2 = fixtureDir("tiny-gpt2");
    // GPT-2 reshapes the final hidden states to input_ids.shape + (hidden,): the tail reads
    // Shape(input_ids) (and the shape of the embeddings computed from it), never its values.
    const model = await OnnxModel.load(`${GPT2}/model.onnx`);
    const tail = findUnembeddingTail(model);
    assertEquals(tail.residTensor, "/transformer/h.1/Add_1_output_0");
    assertEquals(tail.foundBy, "input of the final norm /transformer/ln_f");
    assertEquals(tail.model.inputs.map((i) => i.name), [tail.residTensor, "input_ids"]);
    assertEquals(tail.shapeInputs, [
      { name: "input_ids", elemType: "int64", dims: [{ residAxis: 0 }, { residAxis: 1 }] },
    ]);
    assertEquals([tail.dModel, tail.vocabSize, tail.layout], [64, 1024, "batch"]);
    // Each row's logits are the same alone and among others: the zeros fed to input_ids only
    // give the reshape its [N, 1] shape.
    await using dla = await DlaComputer.create(tail, {
      center: false,
      session: { intraOpThreads: 1 },
    });
    const rows = new Float32Array(7 * 64).map((_, i) => Math.sin(i * 0.37));
    const all = await dla.logits(rows);
    const third = await dla.logits(rows.subarray(2 * 64, 3 * 64));
    assertEquals(all.length, 7 * 1024);
    assert(third.every((v, i) => Math.abs(v - all[2 * 1024 + i]!) < 1e-5));
  },
});

Deno.test("findUnembeddingTail() tells graph inputs read for their shape from those read for their values", async (t) => {
  const spec = { dModel: 8, vocab: 20, norm: "RMSNorm" } as const;
  await t.step("Shape(input_ids) feeding the Reshape target: kept, fed zeros", () => {
    const { model } = buildTail({ ...spec, reshapeByInput: "shape" });
    const tail = findUnembeddingTail(model);
    assert(tail.model.nodes.some((n) => n.opType === "Shape"));
    assertEquals(tail.shapeInputs.map((i) => [i.name, i.dims]), [
      ["input_ids", [{ residAxis: 0 }, { residAxis: 1 }]],
    ]);
  });
  await t.step("a shape computed from NonZero(input_ids) depends on its values", () => {
    const { model } = buildTail({ ...spec, reshapeByInput: "nonzero" });
    assertThrows(
      () => findUnembeddingTail(model),
      ConfigError,
      `Cannot use the unembedding tail of ONNX model <generated RMSNorm tail>: the path from ` +
        `"/model/embed_tokens/Gather_output_0" to "logits" also reads graph input(s) input_ids; ` +
        `DLA needs a tail that depends on the residual stream alone (other inputs may be read ` +
        `for their shape only)`,
    );
  });
  await t.step(
    "input_ids read for its shape, attention_mask for its values: names the mask",
    () => {
      const { model } = buildTail({ ...spec, reshapeByInput: "shape", readsMask: true });
      assertThrows(
        () => findUnembeddingTail(model),
        ConfigError,
        `"logits" also reads graph input(s) attention_mask; DLA needs`,
      );
    },
  );
  await t.step("an input dimension that is none of the residual stream's", () => {
    const { model } = buildTail({ ...spec, reshapeByInput: "shape", inputDims: ["b", "s"] });
    assertThrows(
      () => findUnembeddingTail(model),
      ConfigError,
      `Cannot feed graph input "input_ids" to the unembedding tail of ONNX model ` +
        `<generated RMSNorm tail>, which reads its shape: its dimension "b" is none of the ` +
        `residual stream's [batch, sequence]`,
    );
  });
});

Deno.test("findUnembeddingTail() refuses graphs without a usable tail, saying what it looked for", async (t) => {
  await t.step("no final norm scope and no blocks", () => {
    const { model } = buildTail({ dModel: 8, vocab: 20, norm: "LayerNorm", anonymous: true });
    assertThrows(
      () => findUnembeddingTail(model),
      ConfigError,
      `Cannot find the unembedding tail of ONNX model <generated LayerNorm tail>: looked for the ` +
        `input of a final norm feeding "logits" (node scopes …/final_layer_norm/, …/ln_f/, …/norm/, ` +
        `…/final_layernorm/, …/norm_f/, …/final_norm/, …/ln_final/ outside the blocks) and for ` +
        `the last block's blocks.N.hook_resid_post, found neither; name the residual-stream ` +
        `tensor with the residTensor option`,
    );
  });
  await t.step("a tail that also reads attention_mask", () => {
    const { model } = buildTail({ dModel: 8, vocab: 20, norm: "RMSNorm", readsMask: true });
    assertThrows(
      () => findUnembeddingTail(model),
      ConfigError,
      `the path from "/model/embed_tokens/Gather_output_0" to "logits" also reads graph ` +
        `input(s) attention_mask; DLA needs a tail that depends on the residual stream alone`,
    );
  });
  await t.step("a given tensor from which the rest of the model runs", () => {
    assertThrows(
      () => findUnembeddingTail(neox, { residTensor: "/gpt_neox/layers.1/Add_1_output_0" }),
      ConfigError,
      // input_ids is read there for its shape only (the position ids), attention_mask for its values.
      "also reads graph input(s) attention_mask;",
    );
  });
  await t.step("no logits output", () => {
    const pruned = neox.prune([
      "/gpt_neox/layers.2/Add_1_output_0",
      "/gpt_neox/layers.3/Add_1_output_0",
    ]);
    assertThrows(
      () => findUnembeddingTail(pruned),
      ConfigError,
      `Cannot find the logits of ONNX model ${NEOX}: looked for a graph output named "logits" ` +
        `or a single float output, found outputs /gpt_neox/layers.2/Add_1_output_0, ` +
        `/gpt_neox/layers.3/Add_1_output_0`,
    );
  });
  await t.step("a residual tensor the logits do not depend on", () => {
    const both = neox.addOutputs(["/gpt_neox/layers.3/attention/dense/Add_output_0"]);
    assertThrows(
      () =>
        findUnembeddingTail(both, {
          residTensor: "/gpt_neox/layers.3/attention/dense/Add_output_0",
          logitsTensor: "/gpt_neox/layers.1/Add_1_output_0",
        }),
      ConfigError,
      `"/gpt_neox/layers.1/Add_1_output_0" does not depend on it`,
    );
  });
  await t.step("an unknown tensor name", () => {
    assertThrows(
      () => findUnembeddingTail(neox, { residTensor: "nope" }),
      ConfigError,
      `ONNX model ${NEOX} has no tensor "nope" (residual stream)`,
    );
  });
});
