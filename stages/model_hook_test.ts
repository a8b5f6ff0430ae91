import { assert, assertEquals, assertRejects, maxAbsDiff } from "../lib/onnx/_testing.ts";
import { assertStageBackpressure, eventually, pullCountingSource } from "../lib/_testing.ts";
import { ConfigError } from "../lib/errors.ts";
import { OnnxModel } from "../lib/onnx/mod.ts";
import { openHookSession } from "../lib/ort/mod.ts";
import type { ActivationBatch, ContextBatch } from "../lib/types.ts";
import { modelHook } from "./model_hook.ts";

const MODEL_PATH = new URL("../fixtures/tiny-neox/model.onnx", import.meta.url).pathname;
const HOOKS = ["blocks.1.hook_resid_post", "blocks.3.hook_mlp_out"];
const model = await OnnxModel.load(MODEL_PATH);
// One session shared by the tests of this file (the stage does not own it).
const shared = await openHookSession(model, HOOKS, { intraOpThreads: 1 });
// The same tensors from the full, unpruned model: the reference values.
const full = await openHookSession(model.addOutputs(Object.values(shared.tensors)), [
  ...Object.values(shared.tensors),
], { intraOpThreads: 1 });
// Released when the file's tests are done, whichever ran (ONNX Runtime frees them synchronously).
globalThis.addEventListener("unload", () => {
  void shared.release();
  void full.release();
});

function makeBatch(i: number, B = 2, T = 6): ContextBatch {
  const tokens = new Int32Array(B * T).map((_, k) => (k * 31 + i * 7) % 1000 + 1);
  const attention = new Uint8Array(B * T).fill(1);
  attention.fill(0, B * T - 2); // right padding in the last context
  return {
    batchSize: B,
    contextSize: T,
    tokens,
    mask: attention.slice(),
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

Deno.test("modelHook() emits every hook of the batch, equal to the unpruned model's tensors", async () => {
  const src = source(3);
  const out: ActivationBatch[] = await Array.fromAsync(
    src.stream.pipeThrough(modelHook({ session: shared })),
  );
  assertEquals(out.length, 3);
  for (const [i, batch] of out.entries()) {
    assertEquals(batch.origins[0]!.row, i * 2);
    assertEquals(Object.keys(batch.activations), HOOKS);
    const ref = await full.session.run(full.feeds(makeBatch(i)));
    for (const hook of HOOKS) {
      assertEquals(batch.dModel[hook], 64);
      assertEquals(batch.activations[hook]!.length, 2 * 6 * 64);
      const diff = maxAbsDiff(
        batch.activations[hook]!,
        ref[shared.tensors[hook]!]!.data as Float32Array,
      );
      assert(diff <= 1e-5, `${hook}: ${diff}`);
    }
  }
  assert(!shared.session.released, "a session the stage was given stays open");
});

Deno.test("modelHook() pulls only as the sink takes batches (backpressure)", async () => {
  await assertStageBackpressure(
    source(100),
    modelHook({ session: shared }),
    (b) => b.origins[0]!.row,
    [0, 2],
  );
});

Deno.test("cancelling the output reaches the source and releases an owned session", async () => {
  const owned = await openHookSession(model, HOOKS, { intraOpThreads: 1 });
  const src = source(100);
  const reader = src.stream.pipeThrough(modelHook({ session: owned, ownSession: true }))
    .getReader();
  await reader.read();
  await reader.cancel("consumer stopped");
  await eventually(() => src.cancelReason === "consumer stopped", "the source was cancelled");
  assert(owned.session.released, "the owned session was released");
});

Deno.test("an error in the source reaches the caller and releases an owned session", async () => {
  const owned = await openHookSession(model, HOOKS, { intraOpThreads: 1 });
  const src = source(100, { failAt: 2 });
  await assertRejects(
    () => Array.fromAsync(src.stream.pipeThrough(modelHook({ session: owned, ownSession: true }))),
    Error,
    "source broke",
  );
  assert(owned.session.released);
});

Deno.test("an error in the stage reaches the caller and cancels the source", async () => {
  const owned = await openHookSession(model, HOOKS, { intraOpThreads: 1 });
  const bad = { ...makeBatch(0), tokens: new Int32Array(3) };
  const src = source(100);
  const batches = src.stream.pipeThrough(
    new TransformStream<ContextBatch, ContextBatch>({
      transform: (b, c) => c.enqueue(b.origins[0]!.row === 2 ? bad : b),
    }),
  );
  await assertRejects(
    () => Array.fromAsync(batches.pipeThrough(modelHook({ session: owned, ownSession: true }))),
    RangeError,
    "modelHook(): batch of 2×6 has 3 tokens and 12 attention values",
  );
  assert(owned.session.released);
  await eventually(() => src.cancelReason instanceof RangeError, "the source got the error");
});

Deno.test("modelHook() opens and owns a session from a model path; unknown hooks error", async () => {
  const out = await Array.fromAsync(
    source(1).stream.pipeThrough(modelHook({
      model: MODEL_PATH,
      hookPoints: ["blocks.0.hook_resid_pre"],
      sessionOptions: { intraOpThreads: 1 },
    })),
  );
  assertEquals(out[0]!.activations["blocks.0.hook_resid_pre"]!.length, 2 * 6 * 64);
  await assertRejects(
    () =>
      Array.fromAsync(
        source(1).stream.pipeThrough(modelHook({
          model: MODEL_PATH,
          hookPoints: ["blocks.7.hook_resid_post"],
        })),
      ),
    ConfigError,
    `Unknown hook point "blocks.7.hook_resid_post" for ONNX model ${MODEL_PATH}`,
  );
});
