import { ConfigError } from "../errors.ts";
import { OnnxModel } from "../onnx/mod.ts";
import type { FeatureLogits } from "../types.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  buildTail,
  fixtureDir,
  fixtureHead,
  type HeadWeights,
  rankIds,
  referenceLogits,
  uniform,
} from "./_testing.ts";
import { DlaComputer, findUnembeddingTail } from "./mod.ts";

const NEOX = fixtureDir("tiny-neox");
const neox = await OnnxModel.load(`${NEOX}/model.onnx`);
const neoxHead = await fixtureHead(NEOX);
const ONE_THREAD = { intraOpThreads: 1 };

/** Same top tokens in the same order as the reference, and every logit within `tol`. */
function assertMatchesReference(
  got: FeatureLogits,
  ref: Float64Array,
  topK: number,
  tol = 1e-4,
): void {
  const pos = rankIds(ref, topK, false);
  const neg = rankIds(ref, topK, true);
  assertEquals(got.top_positive.map((t) => t.id), pos);
  assertEquals(got.top_negative.map((t) => t.id), neg);
  for (const t of [...got.top_positive, ...got.top_negative]) {
    const diff = Math.abs(t.logit - ref[t.id]!);
    assert(diff <= tol, `token ${t.id}: logit ${t.logit} vs reference ${ref[t.id]} (diff ${diff})`);
  }
}

/** Runs random rows through a model's tail and checks them against the reference. */
async function checkAgainstReference(
  model: OnnxModel,
  head: HeadWeights,
  opts: { center: boolean; rows?: number; seed?: number },
): Promise<void> {
  const topK = 10;
  const n = opts.rows ?? 12;
  await using dla = await DlaComputer.create(model, {
    topK,
    center: opts.center,
    chunkSize: 5,
    session: ONE_THREAD,
  });
  assertEquals(dla.dModel, head.dModel);
  assertEquals(dla.vocabSize, head.vocab);
  const rows = uniform(opts.seed ?? 7, n * head.dModel, -1, 1);
  const got = await dla.computeChunk(rows);
  assertEquals(got.length, n);
  for (let r = 0; r < n; r++) {
    const row = rows.subarray(r * head.dModel, (r + 1) * head.dModel);
    const ref = referenceLogits(head, row, opts.center);
    assertMatchesReference(got[r]!, ref, topK);
    // The histogram covers the whole vocabulary, from the lowest to the highest logit.
    const h = got[r]!.histogram;
    assertEquals(h.counts.length, 50);
    assertEquals(h.edges.length, 51);
    assertEquals(h.counts.reduce((a, b) => a + b, 0), head.vocab);
    const min = Math.min(...ref);
    const max = Math.max(...ref);
    assert(Math.abs(h.edges[0]! - min) < 1e-4 && Math.abs(h.edges[50]! - max) < 1e-4);
    const inFirst = ref.filter((v) => v < h.edges[1]!).length;
    assert(Math.abs(inFirst - h.counts[0]!) <= 1, `first bin ${h.counts[0]} vs ${inFirst}`);
  }
}

Deno.test("DLA on tiny-neox (LayerNorm, untied) matches norm + unembedding written out in TypeScript", async (t) => {
  await t.step("centered over the vocabulary (the default)", async () => {
    await checkAgainstReference(neox, neoxHead, { center: true });
  });
  await t.step("not centered", async () => {
    await checkAgainstReference(neox, neoxHead, { center: false, seed: 8 });
  });
});

Deno.test("DLA on a generated RMSNorm tail with tied embeddings and a soft-cap matches the reference", async () => {
  const { model, weights } = buildTail({
    dModel: 24,
    vocab: 300,
    norm: "RMSNorm",
    tied: true,
    softcap: 4,
  });
  await checkAgainstReference(model, weights, { center: true });
});

Deno.test("DLA on a generated tail that reshapes to input_ids' shape matches the reference", async () => {
  const { model, weights } = buildTail({
    dModel: 16,
    vocab: 120,
    norm: "LayerNorm",
    reshapeByInput: "shape",
  });
  await checkAgainstReference(model, weights, { center: false });
});

Deno.test("DLA refuses a shape-read input that fits one row but not two", async () => {
  // input_ids declared [1, sequence]: fed [1, 1] next to [N, 1, d] rows, the reshape folds the
  // rows into one; the check at creation runs two rows and catches it.
  const { model } = buildTail({
    dModel: 8,
    vocab: 20,
    norm: "RMSNorm",
    reshapeByInput: "shape",
    inputDims: [1, "sequence"],
  });
  await assertRejects(
    () => DlaComputer.create(model, { session: ONE_THREAD }),
    ConfigError,
    `Cannot run the unembedding tail of ONNX model <generated RMSNorm tail> from ` +
      `"/model/embed_tokens/Gather_output_0" on rows of width 8:`,
  );
});

Deno.test({
  name: "DLA on tiny-llama (RMSNorm, tied embeddings) matches the reference",
  async fn() {
    const llama = fixtureDir("tiny-llama");
    const model = await OnnxModel.load(`${llama}/model.onnx`);
    const head = await fixtureHead(llama);
    assertEquals(head.norm, "RMSNorm");
    await checkAgainstReference(model, head, { center: true });
    await checkAgainstReference(model, head, { center: false, seed: 9 });
  },
});

Deno.test({
  name: "DLA on tiny-gpt2 (LayerNorm, tied embeddings) matches the reference",
  async fn() {
    const gpt2 = fixtureDir("tiny-gpt2");
    const model = await OnnxModel.load(`${gpt2}/model.onnx`);
    const head = await fixtureHead(gpt2);
    assertEquals(head.norm, "LayerNorm");
    await checkAgainstReference(model, head, { center: true });
    await checkAgainstReference(model, head, { center: false, seed: 9 });
  },
});

Deno.test("a feature whose decoder row is a scaled unembedding direction has that token on top", async () => {
  // Trained unembeddings are not all "vertices": a row of small norm can be outvoted by a larger
  // row pointing the same way (or by the final norm's bias). The tokens of the 16 longest rows of
  // W_U (chosen from the weights alone) are.
  const d = neoxHead.dModel;
  const norm = (t: number) => Math.hypot(...neoxHead.unembed.subarray(t * d, (t + 1) * d));
  const tokens = Array.from({ length: neoxHead.vocab }, (_, t) => t)
    .sort((a, b) => norm(b) - norm(a)).slice(0, 16);
  const rows = new Float32Array(tokens.length * d);
  tokens.forEach((t, r) => {
    for (let i = 0; i < d; i++) rows[r * d + i] = 7.5 * neoxHead.unembed[t * d + i]!;
  });
  await using dla = await DlaComputer.create(neox, { session: ONE_THREAD });
  const got = await dla.computeChunk(rows);
  assertEquals(got.map((g) => g.top_positive[0]!.id), tokens);
  // …and its negation has it at the bottom.
  const negated = await dla.computeChunk(rows.map((v) => -v));
  assertEquals(negated.map((g) => g.top_negative[0]!.id), tokens);
});

Deno.test("DLA attaches display strings by token id and keeps ids beyond the vocabulary list", async () => {
  const vocab = Array.from({ length: 1000 }, (_, i) => `tok${i}`);
  await using dla = await DlaComputer.create(neox, { topK: 1024, vocab, session: ONE_THREAD });
  const [got] = await dla.computeChunk(uniform(3, 64));
  assertEquals(got!.top_positive.length, 1024);
  for (const t of got!.top_positive) assertEquals(t.token, t.id < 1000 ? `tok${t.id}` : "");
  // top_k = vocabulary: both sides are the whole vocabulary, in opposite orders.
  assertEquals(got!.top_negative.map((t) => t.id), got!.top_positive.map((t) => t.id).reverse());
});

Deno.test("centering changes the values by the vocabulary mean, not the order nor the counts", async () => {
  await using a = await DlaComputer.create(neox, { session: ONE_THREAD });
  await using b = await DlaComputer.create(neox, { center: false, session: ONE_THREAD });
  const rows = uniform(11, 64);
  const [c] = await a.computeChunk(rows);
  const [u] = await b.computeChunk(rows);
  assertEquals(c!.top_positive.map((t) => t.id), u!.top_positive.map((t) => t.id));
  assertEquals([...c!.histogram.counts], [...u!.histogram.counts]);
  const shift = u!.top_positive[0]!.logit - c!.top_positive[0]!.logit;
  const raw = await b.logits(rows);
  const mean = raw.reduce((s, v) => s + v, 0) / raw.length;
  assert(Math.abs(shift - mean) < 1e-5, `shift ${shift} vs mean ${mean}`);
  assert(Math.abs(c!.histogram.edges[0]! - (u!.histogram.edges[0]! - mean)) < 1e-5);
});

Deno.test("constant logits fill one bin of [v − 0.5, v + 0.5] and ties keep the lower ids first", async () => {
  await using dla = await DlaComputer.create(neox, { topK: 2, session: ONE_THREAD });
  const [flat] = dla.summarize(new Float32Array(dla.vocabSize).fill(2.5));
  assertEquals([...flat!.histogram.counts.filter((c) => c > 0)], [dla.vocabSize]);
  assertEquals(flat!.histogram.edges[0], -0.5); // centered: 2.5 − 0.5 − mean 2.5
  assertEquals(flat!.histogram.edges[50], 0.5);
  assertEquals(flat!.top_positive.map((t) => [t.id, t.logit]), [[0, 0], [1, 0]]);
  assertEquals(flat!.top_negative.map((t) => [t.id, t.logit]), [[0, 0], [1, 0]]);
});

Deno.test("DLA refuses bad input with a ConfigError that says what is wrong", async (t) => {
  await t.step("an SAE d_model that differs from the model's", async () => {
    await assertRejects(
      () => DlaComputer.create(neox, { dModel: 48 }),
      ConfigError,
      `SAE d_model 48 does not match ONNX model ${NEOX}/model.onnx: its residual stream ` +
        `"/gpt_neox/layers.3/Add_1_output_0" has width 64`,
    );
  });
  await t.step("top_k larger than the vocabulary", async () => {
    await assertRejects(
      () => DlaComputer.create(neox, { topK: 1025 }),
      ConfigError,
      `DLA top_k 1025 is larger than the vocabulary of ONNX model ${NEOX}/model.onnx (1024 tokens)`,
    );
  });
  await t.step("top_k that is not a positive integer", async () => {
    await assertRejects(
      () => DlaComputer.create(neox, { topK: 0 }),
      ConfigError,
      "DLA top_k must be a positive integer, got 0",
    );
  });
  await t.step("a decoder row of NaN", async () => {
    await using dla = await DlaComputer.create(neox, { session: ONE_THREAD });
    const rows = new Float32Array(128);
    rows[70] = NaN;
    await assertRejects(() => dla.computeChunk(rows, 40), RangeError, "DLA of feature 41:");
  });
  await t.step("a d_model the graph does not record, checked by running the tail", async () => {
    const { model } = buildTail({ dModel: 16, vocab: 40, norm: "RMSNorm", tied: false });
    // Without recorded shapes the width comes from the unembedding weight: 16.
    const tail = { ...findUnembeddingTail(model), dModel: null };
    await assertRejects(
      () => DlaComputer.create(tail, { dModel: 12 }),
      ConfigError,
      "SAE d_model 12 does not match ONNX model <generated RMSNorm tail>",
    );
  });
});

Deno.test("a released computer refuses to run", async () => {
  const dla = await DlaComputer.create(neox, { session: ONE_THREAD });
  assertEquals(dla.runs, 1); // the check at creation
  await dla.release();
  assert(dla.released);
  await assertRejects(() => dla.computeChunk(new Float32Array(64)), Error, "was released");
});

Deno.test("the default chunk holds 64 MiB of logits", async () => {
  await using dla = await DlaComputer.create(neox, { session: ONE_THREAD });
  assertEquals(dla.options.chunkSize, Math.floor(64 * 1024 * 1024 / (4 * 1024)));
});
