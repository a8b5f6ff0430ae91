import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { OnnxModel } from "../onnx/mod.ts";
import { openHookSession } from "../ort/mod.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  prng,
  randomWeights,
  uniform,
  type Weights,
  writeLmSaes,
  writeSaeLens,
} from "./_testing.ts";
import { encodeReference, loadSae, type SaeDescription, type SparseActivations } from "./mod.ts";
import {
  buildFusedModel,
  canFuse,
  fusedModelNames,
  FusedSaeEncoder,
  SaeEncoder,
} from "./onnx_encoder.ts";

const MODEL_PATH = new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname;
const HOOK = "blocks.3.hook_resid_post";
const lm = await OnnxModel.load(MODEL_PATH);

/** Tolerance: float32 accumulation errors are absolute (~1e-6 here), so relative to max(1, |v|). */
const REL = 1e-5;

/** Every activation function, gating and normalization mode, in both layouts. */
type Case = [name: string, write: (path: string, w: Weights) => Promise<void>, center?: boolean];
const CASES: Case[] = [
  ["LM-SAEs relu", (p, w) => writeLmSaes(p, w, { act_fn: "relu", hook_point_in: HOOK })],
  [
    "LM-SAEs relu with decoder-norm gating",
    (p, w) => writeLmSaes(p, w, { sparsity_include_decoder_norm: true, hook_point_in: HOOK }),
  ],
  ["LM-SAEs jumprelu", (p, w) => writeLmSaes(p, w, { act_fn: "jumprelu", hook_point_in: HOOK })],
  ["LM-SAEs jumprelu, gated, dataset-wise norm", (p, w) =>
    writeLmSaes(p, w, {
      act_fn: "jumprelu",
      sparsity_include_decoder_norm: true,
      norm_activation: "dataset-wise",
      hook_point_in: HOOK,
    }, { extra: { [`dataset_average_activation_norm.${HOOK}`]: 3.7 } })],
  ["LM-SAEs topk", (p, w) => writeLmSaes(p, w, { act_fn: "topk", top_k: 12, hook_point_in: HOOK })],
  ["LM-SAEs topk, gated", (p, w) =>
    writeLmSaes(p, w, {
      act_fn: "topk",
      top_k: 12,
      sparsity_include_decoder_norm: true,
      hook_point_in: HOOK,
    })],
  [
    "LM-SAEs batchtopk (as jumprelu)",
    (p, w) => writeLmSaes(p, w, { act_fn: "batchtopk", hook_point_in: HOOK }),
  ],
  ["LM-SAEs token-wise norm, b_D subtracted from the input", (p, w) =>
    writeLmSaes(p, w, {
      norm_activation: "token-wise",
      apply_decoder_bias_to_pre_encoder: true,
      hook_point_in: HOOK,
    })],
  [
    "LM-SAEs relu, centered",
    (p, w) => writeLmSaes(p, w, { hook_point_in: HOOK, center_writing_weights: true }),
    true,
  ],
  [
    "SAELens standard, apply_b_dec_to_input",
    (p, w) => writeSaeLens(p, w, { hook_name: HOOK, apply_b_dec_to_input: true }),
  ],
  ["SAELens jumprelu", (p, w) => writeSaeLens(p, w, { architecture: "jumprelu", hook_name: HOOK })],
  ["SAELens topk, rescale_acts_by_decoder_norm", (p, w) =>
    writeSaeLens(p, w, {
      architecture: "topk",
      k: 9,
      rescale_acts_by_decoder_norm: true,
      hook_name: HOOK,
    })],
  ["SAELens layer_norm, centered", (p, w) =>
    writeSaeLens(p, w, {
      normalize_activations: "layer_norm",
      center_writing_weights: true,
      hook_name: HOOK,
    }), true],
  [
    "SAELens constant_norm_rescale",
    (p, w) =>
      writeSaeLens(p, w, { normalize_activations: "constant_norm_rescale", hook_name: HOOK }),
  ],
];

const written = new Map<string, [string, SaeDescription][]>();

/**
 * Writes and loads every case for a d_model, d_sae (not a multiple of 16: padding is tested).
 * The files live in a temporary folder only while they are loaded; the loaded SAEs (weights in
 * memory, no open resource) are kept for the next test that asks for the same sizes.
 */
async function saes(dModel: number, dSae: number): Promise<[string, SaeDescription][]> {
  const key = `${dModel}_${dSae}`;
  if (written.has(key)) return written.get(key)!;
  const w = randomWeights(dModel, dModel, dSae);
  const out: [string, SaeDescription][] = [];
  const dir = await Deno.makeTempDir({ prefix: "onnx_encoder_test_" });
  try {
    for (const [i, [name, write, center]] of CASES.entries()) {
      const path = join(dir, `${dModel}_${i}`);
      await write(path, w);
      const sae = await loadSae(path);
      assertEquals(sae.center, center ?? false, `${name}: center`);
      out.push([name, sae]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  written.set(key, out);
  return out;
}

/** The reference on all tokens, with the masked tokens' entries removed. */
function reference(
  sae: SaeDescription,
  x: Float32Array,
  n: number,
  mask: Uint8Array,
): SparseActivations {
  const ref = encodeReference(sae, x, n);
  const keep = [...ref.position].map((p) => mask[p] === 1);
  return {
    position: ref.position.filter((_, j) => keep[j]),
    feature: ref.feature.filter((_, j) => keep[j]),
    value: ref.value.filter((_, j) => keep[j]),
  };
}

/** Identical active sets (same order), values within REL · max(1, |v|). */
function assertSame(got: SparseActivations, want: SparseActivations, what: string): void {
  assert(want.value.length > 0, `${what}: the reference has no active entries`);
  assertEquals([...got.position], [...want.position], `${what}: positions`);
  assertEquals([...got.feature], [...want.feature], `${what}: features`);
  for (let j = 0; j < want.value.length; j++) {
    const a = got.value[j]!;
    const b = want.value[j]!;
    assert(a > 0, `${what}: value ${a} is not > 0`);
    assert(
      Math.abs(a - b) <= REL * Math.max(1, Math.abs(b)),
      `${what}: entry ${j} (token ${want.position[j]}, feature ${want.feature[j]}): ${a} vs ${b}`,
    );
  }
}

const T = 48;
const D = 32;
const x = uniform(prng(9), T * D, -2, 2);
const mask = new Uint8Array(T).map((_, i) => (i % 5 === 0 ? 0 : 1));

Deno.test("SaeEncoder agrees with the reference for every activation and normalization", async (t) => {
  for (const [name, sae] of await saes(D, 200)) {
    await t.step(name, async () => {
      await using enc = await SaeEncoder.create(sae, { intraOpThreads: 1 });
      const got = await enc.encode(x, T, mask);
      assertSame(got, reference(sae, x, T, mask), name);
      assertEquals(enc.stats.tokens, mask.reduce((a, b) => a + b, 0));
      assertEquals(enc.stats.bytesOut, got.value.length * 12);
    });
  }
});

Deno.test("SaeEncoder gives the same entries when the input is split into several runs", async () => {
  const [, sae] = (await saes(D, 200))[3]!;
  await using whole = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  await using split = await SaeEncoder.create(sae, { intraOpThreads: 1, maxElementsPerRun: 2000 });
  const a = await whole.encode(x, T, mask);
  const b = await split.encode(x, T, mask);
  assertEquals(split.stats.runs, 6); // 2000 / 208 → 9 tokens per run, 48 tokens
  assertEquals(b, a);
});

Deno.test("SaeEncoder gives masked tokens no entries, and nothing at all when all are masked", async () => {
  const [, sae] = (await saes(D, 200))[0]!;
  await using enc = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  const only = new Uint8Array(T);
  only[7] = 1;
  only[30] = 255; // any non-zero byte counts as analyzed
  const got = await enc.encode(x, T, only);
  assert(got.position.length > 0);
  assert(got.position.every((p) => p === 7 || p === 30), "only tokens 7 and 30");
  const none = await enc.encode(x, T, new Uint8Array(T));
  assertEquals([none.position.length, none.feature.length, none.value.length], [0, 0, 0]);
  assertEquals(enc.stats.runs, 1);
});

Deno.test("SaeEncoder keeps exactly k per token with ties to the lower feature index", async () => {
  // Features 1, 2 and 3 have the same encoder column: a three-way tie for the second place.
  const sae = {
    path: "ties",
    dModel: 2,
    dSae: 5,
    activation: { kind: "topk", k: 2 },
    W_enc: new Float32Array([2, 1, 1, 1, -1, 0, 0, 0, 0, 0]),
    b_enc: new Float32Array(5),
    b_dec: new Float32Array(2),
    applyBDecToInput: false,
    sparsityIncludeDecoderNorm: false,
    decoderNorm: null,
    center: false,
    normalization: { perToken: "none" },
  } as unknown as SaeDescription;
  await using enc = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  const got = await enc.encode(new Float32Array([1, 0, -1, 0]), 2);
  assertEquals([...got.position], [0, 0, 1]);
  assertEquals([...got.feature], [0, 1, 4]); // token 1: only feature 4 is positive
  assertEquals(got, encodeReference(sae, new Float32Array([1, 0, -1, 0]), 2));
});

Deno.test("SaeEncoder checks its input length and refuses to run once released", async () => {
  const [, sae] = (await saes(D, 200))[0]!;
  const enc = await SaeEncoder.create(sae, { intraOpThreads: 1 });
  await assertRejects(
    () => enc.encode(new Float32Array(10), 1),
    RangeError,
    "SaeEncoder.encode(): got 10 values, expected 1 tokens × d_model 32",
  );
  await enc.release();
  assert(enc.released);
  await assertRejects(() => enc.encode(x, T), Error, "Cannot encode with a released SaeEncoder");
});

Deno.test("the fused model+SAE agrees with the reference on the hook activations", async (t) => {
  const B = 3;
  const L = 10;
  const rand = prng(4);
  const tokens = Int32Array.from({ length: B * L }, () => Math.floor(rand() * 1000));
  const attention = new Uint8Array(B * L).fill(1).fill(0, B * L - 3); // padding at the end
  const analyzed = attention.map((a, i) => (i % L === 0 ? 0 : a)); // BOS and padding masked
  const batch = { batchSize: B, contextSize: L, tokens, attention, mask: analyzed };
  await using hs = await openHookSession(lm, [HOOK], { intraOpThreads: 1 });
  const acts = (await hs.session.run(hs.feeds(batch)))[hs.tensors[HOOK]!]!.data as Float32Array;
  assertEquals(acts.length, B * L * 64);
  for (const [name, sae] of await saes(64, 100)) {
    await t.step(name, async () => {
      await using fused = await FusedSaeEncoder.create(lm, sae, undefined, { intraOpThreads: 1 });
      assertEquals(fused.hookTensor, hs.tensors[HOOK]);
      const got = await fused.encode(batch);
      assertSame(got, reference(sae, acts, B * L, analyzed), name);
      assert(got.position.every((p) => analyzed[p] === 1), "no entry on a masked token");
    });
  }
});

Deno.test("the fused model keeps only the LM up to the hook and has only sparse outputs", async () => {
  const [, sae] = (await saes(64, 100))[0]!;
  const fused = buildFusedModel(lm, HOOK, sae);
  const names = fusedModelNames();
  assertEquals(fused.outputs.map((o) => o.name), [names.position, names.feature, names.value]);
  assertEquals(fused.inputs.map((i) => i.name).sort(), ["attention_mask", "input_ids", names.mask]);
  assert(!fused.nodes.some((n) => (n.name ?? "").includes("embed_out")), "the LM head is pruned");
  assert(fused.nodes.length < lm.nodes.length + 60);
});

Deno.test("a d_model that differs from the hook's width is a ConfigError", async () => {
  const [, small] = (await saes(D, 200))[0]!;
  await assertRejects(
    () => FusedSaeEncoder.create(lm, small, HOOK, { intraOpThreads: 1 }),
    ConfigError,
    `SAE ${small.path} expects d_model 32, but hook ${HOOK} has width 64`,
  );
  const check = canFuse(lm, small, "blocks.9.hook_resid_post");
  assert(!check.fusable);
  assert(check.reason.startsWith(`Unknown hook point "blocks.9.hook_resid_post"`), check.reason);
});
