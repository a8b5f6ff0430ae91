import { assert, assertEquals, assertRejects } from "../lib/onnx/_testing.ts";
import { assertStageBackpressure, eventually, pullCountingSource } from "../lib/_testing.ts";
import { ConfigError } from "../lib/errors.ts";
import { prng, randomWeights, uniform, writeLmSaes } from "../lib/sae/_testing.ts";
import { encodeReference, loadSae, SaeEncoder } from "../lib/sae/mod.ts";
import type { ActivationBatch, FeatureBatch } from "../lib/types.ts";
import { saeEncode } from "./sae_encode.ts";

const HOOK = "blocks.0.hook_resid_post";
const D = 16;
const B = 2;
const T = 6;
const dir = await Deno.makeTempDir({ prefix: "sae_encode_test_" });
await writeLmSaes(dir, randomWeights(5, D, 40), { act_fn: "jumprelu", hook_point_in: HOOK });
const sae = await loadSae(dir);
// One encoder shared by the tests of this file (the stage does not own it), released with the
// SAE folder when the file's tests are done, whichever ran.
const shared = await SaeEncoder.create(sae, { intraOpThreads: 1 });
globalThis.addEventListener("unload", () => {
  void shared.release();
  Deno.removeSync(dir, { recursive: true });
});

function makeBatch(i: number, d = D): ActivationBatch {
  const attention = new Uint8Array(B * T).fill(1).fill(0, B * T - 2);
  const mask = attention.map((a, k) => (k % T === 0 ? 0 : a));
  return {
    batchSize: B,
    contextSize: T,
    tokens: new Int32Array(B * T).map((_, k) => k + i),
    mask,
    attention,
    origins: Array.from({ length: B }, (_, b) => ({ source: "t", shard: 0, row: i * B + b })),
    activations: { [HOOK]: uniform(prng(100 + i), B * T * d, -2, 2) },
    dModel: { [HOOK]: d },
  };
}

/** A source of `n` batches that counts pulls; it can fail at a batch or send one of another width. */
function source(n: number, opts: { failAt?: number; wideAt?: number } = {}) {
  return pullCountingSource((i) => {
    if (i === opts.failAt) throw new Error("source broke");
    return i < n ? makeBatch(i, i === opts.wideAt ? 2 * D : D) : undefined;
  });
}

Deno.test("saeEncode() emits the reference's active entries of the analyzed tokens", async () => {
  const out: FeatureBatch[] = await Array.fromAsync(
    source(3).stream.pipeThrough(saeEncode({ encoder: shared })),
  );
  assertEquals(out.length, 3);
  for (const [i, batch] of out.entries()) {
    const input = makeBatch(i);
    assertEquals(batch.origins, input.origins);
    assertEquals(batch.dSae, 40);
    assert(!("activations" in batch), "the activations are not passed on");
    const ref = encodeReference(sae, input.activations[HOOK]!, B * T);
    const keep = [...ref.position].map((p) => input.mask[p] === 1);
    assertEquals([...batch.position], [...ref.position.filter((_, j) => keep[j])]);
    assertEquals([...batch.feature], [...ref.feature.filter((_, j) => keep[j])]);
    const want = ref.value.filter((_, j) => keep[j]);
    assert(want.length > 0);
    for (let j = 0; j < want.length; j++) {
      assert(Math.abs(batch.value[j]! - want[j]!) <= 1e-5 * Math.max(1, want[j]!));
    }
  }
  assert(!shared.released, "an encoder the stage was given stays open");
});

Deno.test("saeEncode() pulls only as the sink takes batches (backpressure)", async () => {
  await assertStageBackpressure(
    source(100),
    saeEncode({ encoder: shared }),
    (b) => b.origins[0]!.row,
    [0, 2],
  );
});

Deno.test("cancelling the output reaches the source and releases an owned encoder", async () => {
  const owned = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  const src = source(100);
  const reader = src.stream.pipeThrough(saeEncode({ encoder: owned, ownEncoder: true }))
    .getReader();
  await reader.read();
  await reader.cancel("consumer stopped");
  await eventually(() => src.cancelReason === "consumer stopped", "the source was cancelled");
  assert(owned.released, "the owned encoder was released");
});

Deno.test("an error in the source reaches the caller and releases an owned encoder", async () => {
  const owned = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  await assertRejects(
    () =>
      Array.fromAsync(
        source(100, { failAt: 2 }).stream.pipeThrough(
          saeEncode({ encoder: owned, ownEncoder: true }),
        ),
      ),
    Error,
    "source broke",
  );
  assert(owned.released);
});

Deno.test("a batch whose width differs from d_model errors the stream and cancels the source", async () => {
  const owned = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  const src = source(100, { wideAt: 1 });
  await assertRejects(
    () => Array.fromAsync(src.stream.pipeThrough(saeEncode({ encoder: owned, ownEncoder: true }))),
    ConfigError,
    `SAE ${dir} expects d_model 16, but hook ${HOOK} has width 32`,
  );
  assert(owned.released);
  await eventually(() => src.cancelReason instanceof ConfigError, "the source got the error");
});

Deno.test("saeEncode() opens its own encoder from a folder; a missing hook is a ConfigError", async () => {
  const out = await Array.fromAsync(
    source(1).stream.pipeThrough(saeEncode({ sae: dir, intraOpThreads: 1 })),
  );
  assertEquals(out.length, 1);
  await assertRejects(
    () =>
      Array.fromAsync(
        source(1).stream.pipeThrough(
          saeEncode({ sae, hookPoint: "blocks.1.hook_mlp_out", intraOpThreads: 1 }),
        ),
      ),
    ConfigError,
    `saeEncode(): the batch has no activations for hook point "blocks.1.hook_mlp_out" (it has ${HOOK})`,
  );
});
