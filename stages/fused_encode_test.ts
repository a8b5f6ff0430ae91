import { assert, assertEquals, assertRejects } from "../lib/onnx/_testing.ts";
import { assertStageBackpressure, eventually, pullCountingSource } from "../lib/_testing.ts";
import { ConfigError } from "../lib/errors.ts";
import { OnnxModel } from "../lib/onnx/mod.ts";
import { randomWeights, writeLmSaes, writeSaeLens } from "../lib/sae/_testing.ts";
import { FusedSaeEncoder, loadSae, SaeEncoder } from "../lib/sae/mod.ts";
import type { ContextBatch, FeatureBatch } from "../lib/types.ts";
import { canFuse, fusedEncode } from "./fused_encode.ts";
import { modelHook } from "./model_hook.ts";
import { saeEncode } from "./sae_encode.ts";

const MODEL_DIR = new URL("../fixtures/tiny-neox", import.meta.url).pathname;
const HOOK = "blocks.3.hook_resid_post";
const model = await OnnxModel.load(`${MODEL_DIR}/model.onnx`);
const dir = await Deno.makeTempDir({ prefix: "fused_encode_test_" });
await writeLmSaes(`${dir}/lm`, randomWeights(8, 64, 120), {
  act_fn: "jumprelu",
  sparsity_include_decoder_norm: true,
  hook_point_in: HOOK,
});
await writeSaeLens(`${dir}/narrow`, randomWeights(9, 32, 50), { hook_name: HOOK });
const sae = await loadSae(`${dir}/lm`);
// One encoder shared by the tests of this file (the stage does not own it), released with the
// SAE folders when the file's tests are done, whichever ran.
const shared = await FusedSaeEncoder.create(model, sae, HOOK, { intraOpThreads: 1 });
globalThis.addEventListener("unload", () => {
  void shared.release();
  Deno.removeSync(dir, { recursive: true });
});

function makeBatch(i: number, B = 2, T = 6): ContextBatch {
  const tokens = new Int32Array(B * T).map((_, k) => (k * 31 + i * 7) % 1000 + 1);
  const attention = new Uint8Array(B * T).fill(1).fill(0, B * T - 2); // right padding
  return {
    batchSize: B,
    contextSize: T,
    tokens,
    mask: attention.map((a, k) => (k % T === 0 ? 0 : a)), // BOS and padding are not analyzed
    attention,
    origins: Array.from({ length: B }, (_, b) => ({ source: "t", shard: 0, row: i * B + b })),
  };
}

/** A source of `n` batches that counts pulls and can fail at a given batch. */
function source(n: number, opts: { failAt?: number } = {}) {
  return pullCountingSource((i) => {
    if (i === opts.failAt) throw new Error("source broke");
    return i < n ? makeBatch(i) : undefined;
  });
}

Deno.test("fusedEncode() emits what model hook → SAE encode emits", async () => {
  const fused: FeatureBatch[] = await Array.fromAsync(
    source(3).stream.pipeThrough(fusedEncode({ encoder: shared })),
  );
  await using standalone = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  const separate: FeatureBatch[] = await Array.fromAsync(
    source(3).stream
      .pipeThrough(modelHook({ model, hookPoints: [HOOK], sessionOptions: { intraOpThreads: 1 } }))
      .pipeThrough(saeEncode({ encoder: standalone })),
  );
  assertEquals(fused.length, 3);
  for (const [i, a] of fused.entries()) {
    const b = separate[i]!;
    assertEquals(a.origins, b.origins);
    assertEquals(a.dSae, 120);
    assert(a.value.length > 0, "some features fire");
    assertEquals([...a.position], [...b.position]);
    assertEquals([...a.feature], [...b.feature]);
    for (let j = 0; j < a.value.length; j++) {
      assert(Math.abs(a.value[j]! - b.value[j]!) <= 1e-5 * Math.max(1, b.value[j]!));
    }
    assert(a.position.every((p) => a.mask[p] === 1), "no entry on BOS or padding");
  }
  assert(!shared.released, "an encoder the stage was given stays open");
});

Deno.test("fusedEncode() pulls only as the sink takes batches (backpressure)", async () => {
  await assertStageBackpressure(
    source(100),
    fusedEncode({ encoder: shared }),
    (b) => b.origins[0]!.row,
    [0, 2],
  );
});

Deno.test("cancelling the output reaches the source and releases an owned fused encoder", async () => {
  const owned = await FusedSaeEncoder.create(model, sae, HOOK, { intraOpThreads: 1 });
  const src = source(100);
  const reader = src.stream.pipeThrough(fusedEncode({ encoder: owned, ownEncoder: true }))
    .getReader();
  await reader.read();
  await reader.cancel("consumer stopped");
  await eventually(() => src.cancelReason === "consumer stopped", "the source was cancelled");
  assert(owned.released, "the owned encoder was released");
});

Deno.test("an error in the source reaches the caller and releases an owned fused encoder", async () => {
  const owned = await FusedSaeEncoder.create(model, sae, HOOK, { intraOpThreads: 1 });
  await assertRejects(
    () =>
      Array.fromAsync(
        source(100, { failAt: 2 }).stream.pipeThrough(
          fusedEncode({ encoder: owned, ownEncoder: true }),
        ),
      ),
    Error,
    "source broke",
  );
  assert(owned.released);
});

Deno.test("an error in the stage reaches the caller and cancels the source", async () => {
  const owned = await FusedSaeEncoder.create(model, sae, HOOK, { intraOpThreads: 1 });
  const src = source(100);
  const batches = src.stream.pipeThrough(
    new TransformStream<ContextBatch, ContextBatch>({
      transform: (b, c) =>
        c.enqueue(b.origins[0]!.row === 2 ? { ...b, tokens: new Int32Array(3) } : b),
    }),
  );
  await assertRejects(
    () => Array.fromAsync(batches.pipeThrough(fusedEncode({ encoder: owned, ownEncoder: true }))),
    RangeError,
    "FusedSaeEncoder.encode(): batch of 2×6 has 3 tokens, 12 attention and 12 mask values",
  );
  assert(owned.released);
  await eventually(() => src.cancelReason instanceof RangeError, "the source got the error");
});

Deno.test("fusedEncode() opens its own encoder from folders; a d_model mismatch is a ConfigError", async () => {
  const out = await Array.fromAsync(
    source(1).stream.pipeThrough(
      fusedEncode({ model: MODEL_DIR, sae: `${dir}/lm`, intraOpThreads: 1 }),
    ),
  );
  assertEquals(out.length, 1);
  await assertRejects(
    () =>
      Array.fromAsync(
        source(1).stream.pipeThrough(
          fusedEncode({ model: MODEL_DIR, sae: `${dir}/narrow`, intraOpThreads: 1 }),
        ),
      ),
    ConfigError,
    `SAE ${dir}/narrow expects d_model 32, but hook ${HOOK} has width 64`,
  );
});

Deno.test("canFuse() accepts a resolvable hook and says why it refuses", () => {
  assertEquals(canFuse(model, sae).fusable, true);
  assertEquals(canFuse(model, sae).tensor, shared.hookTensor);
  const old = OnnxModel.fromBytes(
    (() => {
      const m = OnnxModel.fromBytes(model.toBytes());
      m.proto.opsetImport = [{ domain: "", version: 10 }];
      return m.toBytes();
    })(),
    { source: "old.onnx" },
  );
  const check = canFuse(old, sae);
  assertEquals(check.fusable, false);
  assertEquals(check.reason, "ONNX model old.onnx has opset 10; the fused SAE encoder needs ≥ 11");
});
