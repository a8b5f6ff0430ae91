import { assert, assertEquals, assertRejects } from "../onnx/_testing.ts";
import { ConfigError } from "../errors.ts";
import { createSession, deviceAvailable, tensor } from "./session.ts";

const NEOX = new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname;

Deno.test("createSession() runs a model from a path and releases it once", async () => {
  const s = await createSession(NEOX, { intraOpThreads: 1, graphOptimizationLevel: "basic" });
  assertEquals(s.inputNames, ["input_ids", "attention_mask"]);
  assertEquals(s.outputMetadata[0]?.type, "float32");
  const ids = tensor("int64", new BigInt64Array([1n, 2n, 3n]), [1, 3]);
  const mask = tensor("int64", new BigInt64Array([1n, 1n, 1n]), [1, 3]);
  const out = await s.run({ input_ids: ids, attention_mask: mask });
  assertEquals(out.logits!.dims, [1, 3, 1024]);
  await s.release();
  await s.release();
  assert(s.released);
  await assertRejects(() => s.run({ input_ids: ids, attention_mask: mask }), Error, "released");
});

Deno.test({
  name: "asking for CUDA without its provider libraries says how to install them",
  ignore: deviceAvailable("cuda"),
  async fn() {
    const e = await assertRejects(
      () => createSession(NEOX, { device: "cuda" }),
      ConfigError,
      `Cannot use device = "cuda": ONNX Runtime's CUDA provider cannot be loaded`,
    );
    assert(e.message.includes("ONNXRUNTIME_NODE_INSTALL=cuda12"));
    assert(!e.message.includes("\n"));
  },
});

Deno.test("bytes ONNX Runtime rejects are a ConfigError naming the model", async () => {
  await assertRejects(
    () => createSession(new Uint8Array([1, 2, 3, 4])),
    ConfigError,
    "ONNX Runtime cannot load model <bytes>:",
  );
});
