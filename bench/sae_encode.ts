/**
 * SAE-encode throughput at the shape: a random ReLU SAE with d_model 768 and d_sae 24,576
 * (bias −2.65, so about 0.2 % of the features fire: ~50 per token) on 4,096 tokens.
 *
 * - `standalone`: `SaeEncoder.encode` on `[4096, 768]` activations (sparse output).
 * - `fused`: `FusedSaeEncoder.encode` on 16 × 256 token ids through a generated LM (embedding
 *   1,024 × 768, then two residual blocks `h + h·W`, W 768 × 768, then an LM head that the fusion
 *   prunes away); the SAE sits at `blocks.1.hook_resid_post`.
 * - The FLOP-bound limits, timed in the same process, alternating with the encoders: the same
 *   `[4096, 768] × [768, 24576]` MatMul through ONNX Runtime with the same input (standalone), and
 *   the same LM prefix followed by that MatMul (fused); their outputs are one element, so the limit
 *   is the matrix product alone. Best of several runs each.
 * - The bytes that crossed from ONNX Runtime to JavaScript per token (12 per active entry) and
 *   the active features per token.
 *
 * Intra-op threads = the number of cores. Inputs are generated from a fixed seed.
 *
 * @module
 */
import type { Bench } from "./_report.ts";
import { buildModel, OnnxModel } from "../lib/onnx/mod.ts";
import { createSession, type OrtSession, tensor } from "../lib/ort/mod.ts";
import { FusedSaeEncoder, type SaeDescription, SaeEncoder } from "../lib/sae/mod.ts";

const TOKENS = 4096;
const D = 768;
const N = 24576;
const VOCAB = 1024;
const B = 16;
const T = 256;
const ROUNDS = 8;
const HOOK = "blocks.1.hook_resid_post";

/** Fast seeded uniform values in [lo, hi). */
function uniform(seed: number, n: number, lo: number, hi: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = lo + (hi - lo) * ((s >>> 0) / 4294967296);
  }
  return out;
}

function randomSae(): SaeDescription {
  return {
    format: "saelens",
    path: "bench:relu-768x24576",
    dModel: D,
    dSae: N,
    activation: { kind: "relu" },
    W_enc: uniform(1, D * N, -0.1, 0.1),
    b_enc: new Float32Array(N).fill(-2.65),
    W_dec: new Float32Array(0),
    b_dec: new Float32Array(D),
    applyBDecToInput: false,
    sparsityIncludeDecoderNorm: false,
    decoderNorm: null,
    normalization: {
      method: "none",
      perToken: "none",
      datasetAverageNorm: null,
      inputFactor: 1,
      scale: "input",
      thresholdsRescaled: false,
    },
    center: false,
    centerSource: "bench",
    hookPointIn: HOOK,
    hookPointOut: HOOK,
    dtype: "F32",
    config: {},
  };
}

/** A small causal-LM-shaped graph with module-scoped node names (so that hooks resolve). */
function generatedLm(): OnnxModel {
  const bytes = buildModel({
    nodes: [
      {
        opType: "Gather",
        inputs: ["embed", "input_ids"],
        outputs: ["h0"],
        name: "/model/embed_tokens/Gather",
      },
      ...[0, 1].flatMap((l) => [
        {
          opType: "MatMul",
          inputs: [`h${l}`, `W${l}`],
          outputs: [`m${l}`],
          name: `/model/layers.${l}/mlp/MatMul`,
        },
        {
          opType: "Add",
          inputs: [`h${l}`, `m${l}`],
          outputs: [`h${l + 1}`],
          name: `/model/layers.${l}/Add`,
        },
      ]),
      { opType: "MatMul", inputs: ["h2", "lm_head"], outputs: ["logits"], name: "/lm_head/MatMul" },
    ],
    initializers: [
      // Embedding scale chosen so that the hook has about the variance of the standalone input.
      { name: "embed", dims: [VOCAB, D], data: uniform(2, VOCAB * D, -0.81, 0.81) },
      { name: "W0", dims: [D, D], data: uniform(3, D * D, -0.03, 0.03) },
      { name: "W1", dims: [D, D], data: uniform(4, D * D, -0.03, 0.03) },
      { name: "lm_head", dims: [D, VOCAB], data: uniform(5, D * VOCAB, -0.03, 0.03) },
    ],
    inputs: [
      { name: "input_ids", elemType: "int64", dims: ["batch", "sequence"] },
      { name: "attention_mask", elemType: "int64", dims: ["batch", "sequence"] },
    ],
    outputs: [{ name: "logits", elemType: "float32", dims: ["batch", "sequence", VOCAB] }],
    name: "bench_lm",
  });
  return OnnxModel.fromBytes(bytes, { source: "bench:generated-lm" });
}

const sliceInits = (p: string) => [
  { name: `${p}starts`, dims: [2], data: new BigInt64Array([0n, 0n]) },
  { name: `${p}ends`, dims: [2], data: new BigInt64Array([1n, 1n]) },
];

/** The limit graph: `[tokens, 768] × W_enc`, one element out. */
function matmulLimit(sae: SaeDescription): Uint8Array {
  return buildModel({
    nodes: [
      { opType: "MatMul", inputs: ["x", "W"], outputs: ["p"] },
      { opType: "Slice", inputs: ["p", "starts", "ends"], outputs: ["y"] },
    ],
    initializers: [{ name: "W", dims: [D, N], data: sae.W_enc }, ...sliceInits("")],
    inputs: [{ name: "x", elemType: "float32", dims: ["tokens", D] }],
    outputs: [{ name: "y", elemType: "float32", dims: [1, 1] }],
  });
}

/** The fused limit: the LM up to the hook, then the same MatMul, one element out. */
function fusedLimit(lm: OnnxModel, sae: SaeDescription): OnnxModel {
  const p = "limit/";
  return lm.appendNodes(
    [
      { opType: "Flatten", inputs: ["h2"], outputs: [`${p}flat`], attributes: { axis: { i: -1 } } },
      { opType: "MatMul", inputs: [`${p}flat`, `${p}W`], outputs: [`${p}p`] },
      { opType: "Slice", inputs: [`${p}p`, `${p}starts`, `${p}ends`], outputs: [`${p}y`] },
    ],
    [{ name: `${p}W`, dims: [D, N], data: sae.W_enc }, ...sliceInits(p)],
    [{ name: `${p}y`, elemType: "float32" }],
  ).prune([`${p}y`]);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** The SAE-encode benchmark. */
export const saeEncodeBench: Bench = async (report) => {
  const threads = navigator.hardwareConcurrency;
  const sae = randomSae();
  const lm = generatedLm();
  const x = uniform(6, TOKENS * D, -1, 1);
  const tokens = uniform(7, B * T, 0, VOCAB).map(Math.floor);
  const ones = new Uint8Array(TOKENS).fill(1);
  const batch = {
    batchSize: B,
    contextSize: T,
    tokens: Int32Array.from(tokens),
    attention: ones,
    mask: ones,
  };

  await using standalone = await SaeEncoder.create(sae, { intraOpThreads: threads });
  await using fused = await FusedSaeEncoder.create(lm, sae, HOOK, { intraOpThreads: threads });
  await using limit: OrtSession = await createSession(matmulLimit(sae), {
    intraOpThreads: threads,
  });
  await using fusedLim: OrtSession = await createSession(fusedLimit(lm, sae), {
    intraOpThreads: threads,
  });
  const xFeed = { x: tensor("float32", x, [TOKENS, D]) };
  const lmFeed = {
    input_ids: tensor("int64", BigInt64Array.from(tokens, (t) => BigInt(t)), [B, T]),
  };

  // Warm-up, and the sparsity of each path (from a run outside the timed ones).
  const s0 = await standalone.encode(x, TOKENS);
  const f0 = await fused.encode(batch);
  await limit.run(xFeed);
  await fusedLim.run(lmFeed);
  const warm = { standalone: standalone.stats.bytesOut, fused: fused.stats.bytesOut };

  const best = { standalone: Infinity, limit: Infinity, fused: Infinity, fusedLimit: Infinity };
  for (let r = 0; r < ROUNDS; r++) {
    // Alternating, so that a change in machine load hits the encoders and their limits alike.
    best.limit = Math.min(best.limit, await timed(() => limit.run(xFeed)));
    best.standalone = Math.min(best.standalone, await timed(() => standalone.encode(x, TOKENS)));
    best.fusedLimit = Math.min(best.fusedLimit, await timed(() => fusedLim.run(lmFeed)));
    best.fused = Math.min(best.fused, await timed(() => fused.encode(batch)));
  }
  const bytesPerToken = (now: number, before: number) => (now - before) / ROUNDS / TOKENS;
  const rate = (ms: number) => TOKENS / (ms / 1000);
  const shape = `${D}×${N}, ${TOKENS} tok`;
  report({
    bench: "sae_encode",
    metric: `standalone tokens/s (${shape})`,
    value: rate(best.standalone),
    unit: "tokens/s",
    limit: rate(best.limit),
  });
  report({
    bench: "sae_encode",
    metric: `fused tokens/s (gen. LM 2×768², ${shape})`,
    value: rate(best.fused),
    unit: "tokens/s",
    limit: rate(best.fusedLimit),
  });
  report({
    bench: "sae_encode",
    metric: "ORT→JS bytes per token (standalone)",
    value: bytesPerToken(standalone.stats.bytesOut, warm.standalone),
    unit: "B/token",
  });
  report({
    bench: "sae_encode",
    metric: "active features per token (standalone)",
    value: s0.value.length / TOKENS,
    unit: "features",
  });
  report({
    bench: "sae_encode",
    metric: "ORT→JS bytes per token (fused)",
    value: bytesPerToken(fused.stats.bytesOut, warm.fused),
    unit: "B/token",
  });
  report({
    bench: "sae_encode",
    metric: "active features per token (fused)",
    value: f0.value.length / TOKENS,
    unit: "features",
  });
  report({
    bench: "sae_encode",
    metric: "dense [tokens, d_sae] bytes per token",
    value: N * 4,
    unit: "B/token",
  });
};

if (import.meta.main) {
  const { report } = await import("./_report.ts");
  await saeEncodeBench(report);
}
