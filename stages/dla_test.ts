import { ConfigError } from "../lib/errors.ts";
import { eventually, GatedSink, pullCountingSource, settle } from "../lib/_testing.ts";
import { attributeSae, DlaComputer } from "../lib/dla/mod.ts";
import { assert, assertEquals, assertRejects, fixtureDir, uniform } from "../lib/dla/_testing.ts";
import { OnnxModel } from "../lib/onnx/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { dla } from "./dla.ts";

const neox = await OnnxModel.load(`${fixtureDir("tiny-neox")}/model.onnx`);
const ONE_THREAD = { intraOpThreads: 1 };
const D = 64;
const sae = { W_dec: uniform(17, 12 * D), dModel: D, dSae: 12, path: "test-sae" };
// One computer shared by the tests that do not test ownership, released when the file's tests
// are done, whichever ran.
const shared = await DlaComputer.create(neox, { topK: 5, chunkSize: 3, session: ONE_THREAD });
globalThis.addEventListener("unload", () => void shared.release());
// The reference: the same SAE through attributeSae.
const expected = await Array.fromAsync(attributeSae({ sae, model: shared }));

function record(index: number): FeatureRecord {
  return { sae_name: "s", sae_series: "t", index, analyses: {} };
}

/** A source of records for the given indices that counts pulls and can fail at a given pull. */
function source(indices: number[], opts: { failAt?: number; endless?: boolean } = {}) {
  return pullCountingSource((i) => {
    if (i === opts.failAt) throw new Error("source broke");
    if (opts.endless) return record(i % sae.dSae);
    return i < indices.length ? record(indices[i]!) : undefined;
  });
}

Deno.test("dla() adds each feature's logits, in input order, across chunk boundaries", async () => {
  const indices = [5, 0, 11, 3, 3, 7, 1]; // 7 records: chunks of 3, 3 and 1
  const src = source(indices);
  const out = await Array.fromAsync(src.stream.pipeThrough(dla({ sae, computer: shared })));
  assertEquals(out.map((r) => r.index), indices);
  for (const r of out) {
    assertEquals(r.sae_name, "s");
    assertEquals(r.logits, expected[r.index]!.logits);
  }
  assert(!shared.released, "a given computer stays open");
});

Deno.test("dla() replaces logits a record already has", async () => {
  const stale = { ...record(2), logits: expected[9]!.logits };
  const out = await Array.fromAsync(
    ReadableStream.from([stale]).pipeThrough(dla({ sae, computer: shared })),
  );
  assertEquals(out[0]!.logits, expected[2]!.logits);
});

Deno.test("dla() opens its own computer from a model with the DLA settings and releases it", async () => {
  const out = await Array.fromAsync(
    ReadableStream.from([record(4)]).pipeThrough(
      dla({ sae, model: neox, topK: 2, center: false, vocab: ["a", "b"], session: ONE_THREAD }),
    ),
  );
  const logits = out[0]!.logits!;
  assertEquals(logits.top_positive.length, 2);
  assertEquals(
    logits.top_positive.map((t) => t.id),
    expected[4]!.logits.top_positive.slice(0, 2).map((t) => t.id),
  );
  // Not centered: the values are the raw logits.
  const raw = await shared.logits(sae.W_dec.subarray(4 * D, 5 * D));
  assertEquals(logits.top_positive[0]!.logit, raw[logits.top_positive[0]!.id]);
});

Deno.test("dla() pulls records only as the sink takes them (backpressure)", async () => {
  const src = source([], { endless: true });
  const sink = new GatedSink<FeatureRecord>();
  const piped = src.stream.pipeThrough(dla({ sae, computer: shared })).pipeTo(sink.stream);
  await sink.waitForWrites(1); // the sink holds record 0 and does not let it go
  await settle(() => src.pulls);
  // The first chunk (3 records; record 0 in the sink) and one record in the stage's input queue.
  const held = src.pulls;
  assert(held <= 3 + 1, `pulled ${held} records with the sink blocked`);
  sink.release(3); // the first chunk
  await sink.waitForWrites(4);
  await settle(() => src.pulls);
  assert(src.pulls <= held + 3, `pulled ${src.pulls - held} more after three were taken`);
  assertEquals(sink.received.map((r) => r.index), [0, 1, 2, 3]);
  sink.fail("done");
  assertEquals(await piped.catch((e) => e), "done");
  assertEquals(src.cancelReason, "done");
});

Deno.test("dla() releases a computer it owns on cancel, and the cancel reaches the source", async () => {
  const own = await DlaComputer.create(neox, { chunkSize: 2, session: ONE_THREAD });
  const src = source([], { endless: true });
  const reader = src.stream.pipeThrough(dla({ sae, computer: own, ownComputer: true })).getReader();
  await reader.read();
  await reader.cancel("enough");
  await eventually(() => own.released, "the computer was released");
  await eventually(() => src.cancelReason === "enough", "the cancel reached the source");
});

Deno.test("dla() releases a computer it owns when the input ends", async () => {
  const own = await DlaComputer.create(neox, { session: ONE_THREAD });
  await Array.fromAsync(
    ReadableStream.from([record(1)]).pipeThrough(dla({ sae, computer: own, ownComputer: true })),
  );
  assert(own.released);
});

Deno.test("dla() errors travel both ways and release the computer", async (t) => {
  await t.step("a source error reaches the reader", async () => {
    const own = await DlaComputer.create(neox, { chunkSize: 2, session: ONE_THREAD });
    const src = source([0, 1, 2, 3], { failAt: 3 });
    await assertRejects(
      () => Array.fromAsync(src.stream.pipeThrough(dla({ sae, computer: own, ownComputer: true }))),
      Error,
      "source broke",
    );
    await eventually(() => own.released, "the computer was released");
  });
  await t.step("a bad record errors the reader and cancels the source", async () => {
    const own = await DlaComputer.create(neox, { chunkSize: 2, session: ONE_THREAD });
    const src = source([0, 40, 1, 2, 3, 4]);
    await assertRejects(
      () => Array.fromAsync(src.stream.pipeThrough(dla({ sae, computer: own, ownComputer: true }))),
      RangeError,
      "dla(): feature index 40 of t/s is out of range for SAE test-sae (d_sae 12)",
    );
    await eventually(() => src.cancelReason !== undefined, "the source was cancelled");
    assert(own.released);
  });
  await t.step(
    "a model that does not fit the SAE errors the stream with a ConfigError",
    async () => {
      const narrow = { W_dec: uniform(3, 2 * 48), dModel: 48, dSae: 2 };
      await assertRejects(
        () =>
          Array.fromAsync(
            ReadableStream.from([record(0)]).pipeThrough(dla({ sae: narrow, model: neox })),
          ),
        ConfigError,
        "SAE d_model 48 does not match ONNX model",
      );
    },
  );
  await t.step("a given computer of another width is refused", async () => {
    const narrow = { W_dec: uniform(3, 2 * 48), dModel: 48, dSae: 2 };
    await assertRejects(
      () =>
        Array.fromAsync(
          ReadableStream.from([record(0)]).pipeThrough(dla({ sae: narrow, computer: shared })),
        ),
      ConfigError,
      `SAE d_model 48 does not match ONNX model ${neox.source}: its residual stream ` +
        `"/gpt_neox/layers.3/Add_1_output_0" has width 64`,
    );
    assert(!shared.released);
  });
});

Deno.test("dla() checks its options at once", async () => {
  await assertRejects(
    () => Promise.resolve().then(() => dla({ sae, model: neox, chunkSize: 0 })),
    ConfigError,
    "DLA chunk_size must be a positive integer, got 0",
  );
  await assertRejects(
    () => Promise.resolve().then(() => dla({ sae })),
    TypeError,
    "dla(): give a computer or a model",
  );
});
