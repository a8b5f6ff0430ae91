/**
 * End-to-end `analyzeSae` throughput at GPT-2-small width, against two limits measured in the
 * same run.
 *
 * Inputs, generated at run time (seeded, nothing committed), in a temporary folder:
 * - a 6-layer pre-LN GPT-2-style causal LM as ONNX (d_model 768, 12 heads, MLP 768→3072→768 with
 *   erf-GELU, learned positions, causal + padding mask through Softmax, LM head), node names
 *   module-scoped as `torch.onnx.export` writes them (`/transformer/h.5/Add_1`), so the hook
 *   `blocks.5.hook_resid_post` resolves from the graph structure; the tiny-neox tokenizer;
 * - a ReLU lm-saes SAE with 24,576 features, random encoder, bias calibrated on the model's own
 *   hook activations so that about 50 features fire per token;
 * - text rows of random vocabulary words (each longer than a context); contexts of 128 tokens,
 *   batches of 8, embedded SQLite store.
 *
 * Figures:
 * - `analyzeSae` tokens/s end to end (wall clock of the call, loading and session creation
 *   included) and streaming (the same run without the setup before data flows: the analysis
 *   document's `timings.total − timings.setup`);
 * - limit (a): the same fused model+SAE graph (`FusedSaeEncoder`) on the same pre-tokenized
 *   batches in a tight loop, measured before, between and after the pipeline runs (each run is
 *   compared with the mean of the passes on either side of it);
 * - (a′): the same graph's own time inside each pipeline run (the seconds its `encode()` took,
 *   `timings.encode` of the analysis document): measured at the same moments as the run, so it
 *   is not moved by the machine's speed drifting between a run and the passes of (a), which on
 *   this shared 2-core machine is several percent over minutes;
 * - limit (b): the FLOP bound: MatMul FLOPs per token of the LM up to the hook plus the encoder
 *   (counted from the shapes) divided by the MatMul FLOP rate ONNX Runtime reaches here (best of
 *   several `[4096, 768] × [768, 3072]` runs);
 * - the feature analyzer alone on the batches limit (a) produced (its share of the pipeline);
 * - RSS at the two token counts (655k and 1.3M by default): the growth while data flows (peak
 *   while streaming minus the peak during setup) and the whole run's peak (the kernel's
 *   high-water mark, reset per run), and the ratio of the two peaks. With 24,576 features and ~50
 *   active per token a feature fires ~1,300 times in the first run: its samplings are full, and
 *   the analyzer's state (bounded by the samplings' sizes, not by tokens) grows little more.
 *
 * The fixed costs of a run (setup ~1 s; building and storing the 24,576 records after the input
 * ends, ~2.7 s) are counted in the end-to-end figure; at 164k tokens they are ~7% of the run, at
 * 655k under 2%. The feature analyzer also costs more per token while samplings fill (the first
 * ~160k tokens) than later. Both are why the runs are 655k and 1.3M tokens: analyses of real SAEs
 * run millions of tokens.
 *
 * ONNX Runtime's `run` executes synchronously on the JavaScript thread (onnxruntime-node wraps the
 * native call in `setImmediate`), so the analyzer's work cannot overlap a session run: the
 * pipeline's streaming time is tokenize + encode + analyze in series, which the figures show.
 *
 * ONNX Runtime uses its default threads (one per core) everywhere.
 *
 * @module
 */
import type { Bench, Figure } from "./_report.ts";
import { join } from "node:path";
import { writeSafetensors } from "../lib/safetensors/mod.ts";
import { buildModel, type NodeSpec, OnnxModel } from "../lib/onnx/mod.ts";
import { createSession, openHookSession, tensor } from "../lib/ort/mod.ts";
import { FusedSaeEncoder, loadSae } from "../lib/sae/mod.ts";
import { loadTokenizer } from "../lib/data/mod.ts";
import { parseSettings } from "../lib/settings/mod.ts";
import { openStore } from "../lib/store/mod.ts";
import type { ContextBatch, FeatureBatch } from "../lib/types.ts";
import { analyzeSae } from "../pipelines/analyze.ts";
import { datasetSource } from "../stages/dataset_source.ts";
import { tokenize } from "../stages/tokenize.ts";
import { featureAnalyzer } from "../stages/feature_analyzer.ts";

const D = 768;
const HEADS = 12;
const LAYERS = 6;
const FF = 3072;
const VOCAB = 1024;
const MAX_POS = 256;
const N_SAE = 24_576;
const T = 128;
const B = 8;
const ACTIVE_PER_TOKEN = 50;
const HOOK = `blocks.${LAYERS - 1}.hook_resid_post`;
/**
 * Token counts of the two pipeline runs (about 4 and 7 minutes here); set
 * `ANALYZE_BENCH_TOKENS=16384,32768` for a quick look.
 */
const RUNS = (Deno.env.get("ANALYZE_BENCH_TOKENS") ?? "655360,1310720").split(",").map(Number);
/** Tokens of each pass of limit (a), the fused graph alone on pre-tokenized batches. */
const LIMIT_TOKENS = 65_536;
const FIXTURES = new URL("../fixtures/", import.meta.url).pathname;

/** MatMul FLOPs per token: LM blocks up to the hook (attention over the full context) + encoder. */
export const FLOPS_PER_TOKEN = LAYERS * (2 * (4 * D * D + 2 * D * FF) + 4 * T * D) + 2 * D * N_SAE;

/** Seeded uniform values in [-a, a). */
function uniform(seed: number, n: number, a: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = a * (2 * ((s >>> 0) / 4294967296) - 1);
  }
  return out;
}

/** Uniform values with standard deviation `std`. */
const init = (seed: number, n: number, std: number) => uniform(seed, n, std * Math.sqrt(3));

/** The generated LM, as ONNX bytes. */
export function generatedGpt(): Uint8Array {
  const nodes: NodeSpec[] = [];
  const inits: { name: string; dims: number[]; data: Float32Array | BigInt64Array }[] = [];
  const node = (
    opType: string,
    name: string,
    inputs: string[],
    outputs: string[],
    attributes?: NodeSpec["attributes"],
  ) => nodes.push({ opType, name, inputs, outputs, ...(attributes ? { attributes } : {}) });
  const f32 = (name: string, dims: number[], data: Float32Array) =>
    inits.push({ name, dims, data });
  const i64 = (name: string, values: number[]) =>
    inits.push({ name, dims: [values.length], data: BigInt64Array.from(values, BigInt) });
  const scalar = (name: string, v: number) =>
    inits.push({ name, dims: [], data: new Float32Array([v]) });
  let seed = 1;

  scalar("one", 1);
  scalar("half", 0.5);
  scalar("sqrt2", Math.SQRT2);
  scalar("neg_big", -1e4);
  scalar("attn_scale", 1 / Math.sqrt(D / HEADS));
  i64("heads_shape", [0, 0, HEADS, D / HEADS]);
  i64("model_shape", [0, 0, D]);
  i64("qkv_split", [D, D, D]);
  i64("axes_12", [1, 2]);
  i64("one_i", [1]);
  i64("two_i", [2]);
  i64("zeros_2", [0, 0]);
  const causal = new Float32Array(MAX_POS * MAX_POS);
  for (let i = 0; i < MAX_POS; i++) causal.fill(-1e4, i * MAX_POS + i + 1, (i + 1) * MAX_POS);
  f32("causal", [MAX_POS, MAX_POS], causal);
  const wte = init(seed++, VOCAB * D, 0.02);
  f32("wte", [VOCAB, D], wte);
  f32("wpe", [MAX_POS, D], init(seed++, MAX_POS * D, 0.01));

  node("Gather", "/transformer/wte/Gather", ["wte", "input_ids"], ["tok"]);
  node("Gather", "/transformer/wpe/Gather", ["wpe", "position_ids"], ["pos"]);
  node("Add", "/transformer/Add", ["tok", "pos"], ["h0"]);
  // Additive mask [B, 1, T, T]: causal, and -1e4 on padded keys.
  node("Cast", "/transformer/mask/Cast", ["attention_mask"], ["am"], { to: { i: 1 } });
  node("Sub", "/transformer/mask/Sub", ["one", "am"], ["inv"]);
  node("Mul", "/transformer/mask/Mul", ["inv", "neg_big"], ["pad"]);
  node("Unsqueeze", "/transformer/mask/Unsqueeze", ["pad", "axes_12"], ["pad4"]);
  node("Shape", "/transformer/mask/Shape", ["input_ids"], ["ids_shape"]);
  node("Slice", "/transformer/mask/Slice", ["ids_shape", "one_i", "two_i"], ["t1"]);
  node("Concat", "/transformer/mask/Concat", ["t1", "t1"], ["tt"], { axis: { i: 0 } });
  node("Slice", "/transformer/mask/Slice_1", ["causal", "zeros_2", "tt"], ["causal_t"]);
  node("Add", "/transformer/mask/Add", ["causal_t", "pad4"], ["mask"]);

  for (let l = 0; l < LAYERS; l++) {
    const p = `/transformer/h.${l}`;
    const w = (name: string) => `h.${l}.${name}`;
    const h = `h${l}`;
    for (const ln of ["ln_1", "ln_2"]) {
      f32(w(`${ln}.weight`), [D], new Float32Array(D).fill(1));
      f32(w(`${ln}.bias`), [D], new Float32Array(D));
    }
    f32(w("c_attn.weight"), [D, 3 * D], init(seed++, D * 3 * D, 0.02));
    f32(w("c_attn.bias"), [3 * D], new Float32Array(3 * D));
    f32(w("attn.c_proj.weight"), [D, D], init(seed++, D * D, 0.02 / Math.sqrt(2 * LAYERS)));
    f32(w("attn.c_proj.bias"), [D], new Float32Array(D));
    f32(w("c_fc.weight"), [D, FF], init(seed++, D * FF, 0.02));
    f32(w("c_fc.bias"), [FF], new Float32Array(FF));
    f32(w("mlp.c_proj.weight"), [FF, D], init(seed++, FF * D, 0.02 / Math.sqrt(2 * LAYERS)));
    f32(w("mlp.c_proj.bias"), [D], new Float32Array(D));
    const t = (name: string) => `${p}/${name}`;

    node(
      "LayerNormalization",
      `${p}/ln_1/LayerNormalization`,
      [h, w("ln_1.weight"), w("ln_1.bias")],
      [t("x1")],
      {
        axis: { i: -1 },
        epsilon: { f: 1e-5 },
      },
    );
    node("MatMul", `${p}/attn/c_attn/MatMul`, [t("x1"), w("c_attn.weight")], [t("qkv0")]);
    node("Add", `${p}/attn/c_attn/Add`, [t("qkv0"), w("c_attn.bias")], [t("qkv")]);
    node("Split", `${p}/attn/Split`, [t("qkv"), "qkv_split"], [t("q"), t("k"), t("v")], {
      axis: { i: 2 },
    });
    for (const x of ["q", "k", "v"]) {
      node("Reshape", `${p}/attn/Reshape_${x}`, [t(x), "heads_shape"], [t(`${x}4`)]);
    }
    node("Transpose", `${p}/attn/Transpose_q`, [t("q4")], [t("qT")], {
      perm: { ints: [0, 2, 1, 3] },
    });
    node("Transpose", `${p}/attn/Transpose_k`, [t("k4")], [t("kT")], {
      perm: { ints: [0, 2, 3, 1] },
    });
    node("Transpose", `${p}/attn/Transpose_v`, [t("v4")], [t("vT")], {
      perm: { ints: [0, 2, 1, 3] },
    });
    node("MatMul", `${p}/attn/MatMul`, [t("qT"), t("kT")], [t("scores")]);
    node("Mul", `${p}/attn/Mul`, [t("scores"), "attn_scale"], [t("scaled")]);
    node("Add", `${p}/attn/Add`, [t("scaled"), "mask"], [t("masked")]);
    node("Softmax", `${p}/attn/Softmax`, [t("masked")], [t("probs")], { axis: { i: -1 } });
    node("MatMul", `${p}/attn/MatMul_1`, [t("probs"), t("vT")], [t("ctx")]);
    node("Transpose", `${p}/attn/Transpose_o`, [t("ctx")], [t("ctxT")], {
      perm: { ints: [0, 2, 1, 3] },
    });
    node("Reshape", `${p}/attn/Reshape_o`, [t("ctxT"), "model_shape"], [t("merged")]);
    node("MatMul", `${p}/attn/c_proj/MatMul`, [t("merged"), w("attn.c_proj.weight")], [t("ao0")]);
    node("Add", `${p}/attn/c_proj/Add`, [t("ao0"), w("attn.c_proj.bias")], [t("attn_out")]);
    node("Add", `${p}/Add`, [h, t("attn_out")], [t("mid")]);

    node(
      "LayerNormalization",
      `${p}/ln_2/LayerNormalization`,
      [t("mid"), w("ln_2.weight"), w("ln_2.bias")],
      [t("x2")],
      {
        axis: { i: -1 },
        epsilon: { f: 1e-5 },
      },
    );
    node("MatMul", `${p}/mlp/c_fc/MatMul`, [t("x2"), w("c_fc.weight")], [t("f0")]);
    node("Add", `${p}/mlp/c_fc/Add`, [t("f0"), w("c_fc.bias")], [t("f1")]);
    node("Div", `${p}/mlp/act/Div`, [t("f1"), "sqrt2"], [t("g0")]);
    node("Erf", `${p}/mlp/act/Erf`, [t("g0")], [t("g1")]);
    node("Add", `${p}/mlp/act/Add`, [t("g1"), "one"], [t("g2")]);
    node("Mul", `${p}/mlp/act/Mul`, [t("f1"), t("g2")], [t("g3")]);
    node("Mul", `${p}/mlp/act/Mul_1`, [t("g3"), "half"], [t("gelu")]);
    node("MatMul", `${p}/mlp/c_proj/MatMul`, [t("gelu"), w("mlp.c_proj.weight")], [t("m0")]);
    node("Add", `${p}/mlp/c_proj/Add`, [t("m0"), w("mlp.c_proj.bias")], [t("mlp_out")]);
    node("Add", `${p}/Add_1`, [t("mid"), t("mlp_out")], [`h${l + 1}`]);
  }
  f32("ln_f.weight", [D], new Float32Array(D).fill(1));
  f32("ln_f.bias", [D], new Float32Array(D));
  const unembed = new Float32Array(D * VOCAB);
  for (let v = 0; v < VOCAB; v++) {
    for (let i = 0; i < D; i++) unembed[i * VOCAB + v] = wte[v * D + i]!;
  }
  f32("lm_head.weight", [D, VOCAB], unembed);
  node(
    "LayerNormalization",
    "/transformer/ln_f/LayerNormalization",
    [`h${LAYERS}`, "ln_f.weight", "ln_f.bias"],
    ["hf"],
    {
      axis: { i: -1 },
      epsilon: { f: 1e-5 },
    },
  );
  node("MatMul", "/lm_head/MatMul", ["hf", "lm_head.weight"], ["logits"]);
  return buildModel({
    nodes,
    initializers: inits,
    inputs: [
      { name: "input_ids", elemType: "int64", dims: ["batch", "sequence"] },
      { name: "attention_mask", elemType: "int64", dims: ["batch", "sequence"] },
      { name: "position_ids", elemType: "int64", dims: ["batch", "sequence"] },
    ],
    outputs: [{ name: "logits", elemType: "float32", dims: ["batch", "sequence", VOCAB] }],
    name: "bench_gpt",
  });
}

/** Text rows of random vocabulary words, each longer than a context. */
async function writeRows(path: string, rows: number): Promise<void> {
  const vocab = JSON.parse(await Deno.readTextFile(`${FIXTURES}tiny-neox/tokenizer.json`)).model
    .vocab as Record<string, number>;
  const words = Object.keys(vocab).filter((w) => /^Ġ[a-z]{3,}$/.test(w)).map((w) => w.slice(1));
  let s = 12345;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s;
  };
  const lines: string[] = [];
  for (let r = 0; r < rows; r++) {
    const out: string[] = [];
    for (let i = 0; i < 2 * T; i++) out.push(words[next() % words.length]!);
    lines.push(JSON.stringify({ text: out.join(" ") + "." }));
  }
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
}

/** Contexts as the pipeline tokenizes them. */
async function contextBatches(
  modelDir: string,
  rows: string,
  tokens: number,
): Promise<ContextBatch[]> {
  const out: ContextBatch[] = [];
  let n = 0;
  const batches = datasetSource([{ name: "bench", pathOrId: rows }]).pipeThrough(
    tokenize({ tokenizer: await loadTokenizer(modelDir), contextSize: T, batchSize: B }),
  );
  for await (const batch of batches) {
    out.push(batch);
    n += batch.batchSize * batch.contextSize;
    if (n >= tokens) break;
  }
  return out;
}

/** The SAE's bias: minus the pre-activation quantile that leaves ACTIVE_PER_TOKEN features firing. */
async function calibrate(model: string, batch: ContextBatch, W: Float32Array): Promise<number> {
  await using hs = await openHookSession(model, [HOOK]);
  const out = await hs.session.run(hs.feeds(batch));
  const x = out[hs.tensors[HOOK]!]!.data as Float32Array;
  const sample = 512; // features in the sample (the columns are identically distributed)
  const pre: number[] = [];
  const tokens = batch.batchSize * batch.contextSize;
  const acc = new Float64Array(sample);
  for (let t = 0; t < tokens; t++) {
    if (!batch.mask[t]) continue;
    acc.fill(0);
    for (let i = 0; i < D; i++) {
      const xi = x[t * D + i]!;
      const row = i * N_SAE;
      for (let f = 0; f < sample; f++) acc[f] = acc[f]! + xi * W[row + f]!;
    }
    for (let f = 0; f < sample; f++) pre.push(acc[f]!);
  }
  pre.sort((a, b) => b - a);
  return pre[Math.floor((pre.length * ACTIVE_PER_TOKEN) / N_SAE)]!;
}

/** Best MatMul FLOP rate of ONNX Runtime here, `[M, K] × [K, N]` with a one-element output. */
async function matmulRate(): Promise<number> {
  const [M, K, N] = [4096, D, FF];
  const bytes = buildModel({
    nodes: [
      { opType: "MatMul", inputs: ["x", "W"], outputs: ["p"] },
      { opType: "Slice", inputs: ["p", "starts", "ends"], outputs: ["y"] },
    ],
    initializers: [
      { name: "W", dims: [K, N], data: init(99, K * N, 0.02) },
      { name: "starts", dims: [2], data: new BigInt64Array([0n, 0n]) },
      { name: "ends", dims: [2], data: new BigInt64Array([1n, 1n]) },
    ],
    inputs: [{ name: "x", elemType: "float32", dims: ["m", K] }],
    outputs: [{ name: "y", elemType: "float32", dims: [1, 1] }],
  });
  await using s = await createSession(bytes);
  const feed = { x: tensor("float32", init(98, M * K, 1), [M, K]) };
  await s.run(feed);
  let best = Infinity;
  for (let r = 0; r < 6; r++) {
    const t0 = performance.now();
    await s.run(feed);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * M * K * N) / (best / 1000);
}

/** Samples RSS every 10 ms until stopped; returns samples with their times. */
function rssSampler() {
  const samples: { at: number; rss: number }[] = [];
  const id = setInterval(
    () => samples.push({ at: performance.now(), rss: Deno.memoryUsage().rss }),
    10,
  );
  return {
    stop() {
      clearInterval(id);
      return samples;
    },
  };
}

/** Resets the kernel's peak-RSS mark of this process (Linux ≥ 4.0); false when not possible. */
function resetPeakRss(): boolean {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

/** The kernel's peak RSS of this process since the last reset, in bytes (null when unknown). */
function peakRss(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function settingsToml(
  dirs: { model: string; sae: string; rows: string; out: string },
  tokens: number,
) {
  return `
sae_name = "bench-sae"
sae_series = "bench"
model_name = "bench-gpt"
output_dir = ${JSON.stringify(dirs.out)}
[sae]
pretrained_name_or_path = ${JSON.stringify(dirs.sae)}
[model]
model_name = "bench-gpt"
model_from_pretrained_path = ${JSON.stringify(dirs.model)}
[datasets.bench]
dataset_name_or_path = ${JSON.stringify(dirs.rows)}
[activation_factory]
target = "activations-2d"
hook_points = ["${HOOK}"]
batch_size = ${B}
context_size = ${T}
[[activation_factory.sources]]
type = "dataset"
name = "bench"
[analyzer]
total_analyzing_tokens = ${tokens}
`;
}

/** The analyze benchmark. */
export const analyzeBench: Bench = async (report) => {
  const fig = (metric: string, value: number, unit: string, limit?: number): Figure =>
    limit === undefined
      ? { bench: "analyze", metric, value, unit }
      : { bench: "analyze", metric, value, unit, limit };
  const dir = await Deno.makeTempDir({ prefix: "saeflow_bench_analyze_" });
  try {
    // Inputs.
    const model = join(dir, "model");
    const sae = join(dir, "sae");
    const rows = join(dir, "rows.jsonl");
    await Deno.mkdir(model);
    await Deno.mkdir(sae);
    await Deno.writeFile(join(model, "model.onnx"), generatedGpt());
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${FIXTURES}tiny-neox/${f}`, join(model, f));
    }
    await Deno.writeTextFile(
      join(model, "config.json"),
      JSON.stringify({
        model_type: "gpt2",
        vocab_size: VOCAB,
        n_positions: MAX_POS,
        n_embd: D,
        n_layer: LAYERS,
        n_head: HEADS,
      }),
    );
    await writeRows(rows, Math.max(...RUNS) / T + 16);
    const tTok = performance.now();
    const batches = await contextBatches(model, rows, LIMIT_TOKENS);
    const tokenizeRate = LIMIT_TOKENS / ((performance.now() - tTok) / 1000);
    const W_E = init(7, D * N_SAE, 1 / Math.sqrt(D));
    const threshold = await calibrate(join(model, "model.onnx"), batches[0]!, W_E);
    await Deno.writeFile(
      join(sae, "sae_weights.safetensors"),
      writeSafetensors({
        W_E: { dtype: "F32", shape: [D, N_SAE], data: W_E },
        b_E: { dtype: "F32", shape: [N_SAE], data: new Float32Array(N_SAE).fill(-threshold) },
        W_D: { dtype: "F32", shape: [N_SAE, D], data: init(8, N_SAE * D, 0.02) },
        b_D: { dtype: "F32", shape: [D], data: new Float32Array(D) },
      }),
    );
    await Deno.writeTextFile(
      join(sae, "config.json"),
      JSON.stringify({
        sae_type: "sae",
        hook_point_in: HOOK,
        hook_point_out: HOOK,
        d_model: D,
        d_sae: N_SAE,
        act_fn: "relu",
        norm_activation: "inference",
        sparsity_include_decoder_norm: false,
        apply_decoder_bias_to_pre_encoder: false,
        center_writing_weights: false,
      }),
    );

    // Limit (b): the FLOP bound (the MatMul rate is measured three times across the run, the
    // best taken: other work on a shared machine lowers it).
    let rate = await matmulRate();

    // The pipeline at two token counts.
    interface Run {
      tokens: number;
      wall: number;
      setup: number;
      stream: number;
      write: number;
      /** Seconds inside the fused graph's `encode()` during the run. */
      encode: number;
      rssSetup: number;
      rssStream: number;
      /** Peak RSS of the whole run (the kernel's high-water mark when readable). */
      rssPeak: number;
      alive: number;
      dead: number;
    }
    const runs: Run[] = [];
    const pipelineRun = async (tokens: number) => {
      const out = join(dir, `out-${tokens}`);
      const settings = parseSettings(
        settingsToml({ model, sae, rows, out }, tokens),
        join(dir, "a.toml"),
        "analyze",
        { env: {}, cwd: dir },
      );
      resetPeakRss();
      const sampler = rssSampler();
      const t0 = performance.now();
      const summary = await analyzeSae(settings, { log: () => {}, progress: false });
      const wall = (performance.now() - t0) / 1000;
      const samples = sampler.stop();
      const hwm = peakRss();
      await using store = await openStore({ outputDir: out });
      const timings = (await store.getAnalysis("bench", "bench-sae", "default"))!.timings;
      const [setup, stream, write, encode] = [
        timings.setup!,
        timings.stream!,
        timings.write!,
        timings.encode!,
      ];
      const peak = (from: number, to: number) =>
        Math.max(
          0,
          ...samples.filter((s) => s.at >= t0 + from * 1000 && s.at <= t0 + to * 1000).map((s) =>
            s.rss
          ),
        );
      runs.push({
        tokens: summary.tokens,
        wall,
        setup,
        stream,
        write,
        encode,
        rssSetup: peak(0, setup),
        rssStream: peak(setup, setup + stream),
        rssPeak: hwm ?? Math.max(...samples.map((s) => s.rss)),
        alive: summary.alive,
        dead: summary.dead,
      });
    };
    // Limit (a): the same fused graph on the same batches, in a tight loop. Measured before,
    // between and after the pipeline runs (each run is compared with the mean of the passes on
    // either side of it), so that a change in machine load hits a run and its limit alike.
    const limitPass = async (keep?: FeatureBatch[]) => {
      const lm = await OnnxModel.load(join(model, "model.onnx"));
      await using encoder = await FusedSaeEncoder.create(lm, await loadSae(sae), HOOK);
      await encoder.encode(batches[0]!); // warm-up
      const t0 = performance.now();
      for (const batch of batches) {
        const acts = await encoder.encode(batch);
        keep?.push({ ...batch, dSae: N_SAE, ...acts });
      }
      const tokens = batches.reduce((n, b) => n + b.batchSize * b.contextSize, 0);
      return tokens / ((performance.now() - t0) / 1000);
    };
    const features: FeatureBatch[] = [];
    const passes = [await limitPass(features)];
    rate = Math.max(rate, await matmulRate());

    // The feature analyzer alone on the batches of the first pass (input phase, then records).
    let addRate: number;
    let recordsSeconds: number;
    {
      const tokens = batches.reduce((n, b) => n + b.batchSize * b.contextSize, 0);
      const entries = features.reduce((n, f) => n + f.value.length, 0);
      const analyzed = batches.reduce((n, b) => n + b.mask.reduce((x, y) => x + y, 0), 0);
      report(fig("active features per analyzed token", entries / analyzed, "features"));
      const stage = featureAnalyzer({ nTop: 20, seed: 0 });
      const t1 = performance.now();
      await ReadableStream.from(features).pipeTo(stage.writable);
      const t2 = performance.now();
      let n = 0;
      for await (const _ of stage.readable) n++;
      recordsSeconds = (performance.now() - t2) / 1000;
      addRate = tokens / ((t2 - t1) / 1000);
      if (n !== N_SAE) throw new Error(`analyzer emitted ${n} records`);
      features.length = 0;
    }

    await pipelineRun(RUNS[0]!);
    passes.push(await limitPass());
    await pipelineRun(RUNS[1]!);
    passes.push(await limitPass());
    rate = Math.max(rate, await matmulRate());
    const limits = [(passes[0]! + passes[1]!) / 2, (passes[1]! + passes[2]!) / 2];
    const limitA = Math.max(...passes);
    const flopBound = rate / FLOPS_PER_TOKEN;
    const [a, b] = runs as [Run, Run];
    const mib = (x: number) => x / 2 ** 20;
    report(
      fig(
        `MatMul FLOPs per token (${LAYERS}×${D} LM + ${D}×${N_SAE} encoder)`,
        FLOPS_PER_TOKEN / 1e6,
        "MFLOP",
      ),
    );
    report(fig("ORT MatMul rate (4096×768×3072, best of 6)", rate / 1e9, "GFLOP/s"));
    report(
      fig(
        `(a) fused graph, tight loop (passes: ${passes.map((p) => p.toFixed(0)).join(", ")})`,
        limitA,
        "tokens/s",
        flopBound,
      ),
    );
    for (const [k, r] of [a, b].entries()) {
      report(
        fig(
          `analyzeSae streaming (${r.tokens} tok) vs (a) around it`,
          r.tokens / r.stream,
          "tokens/s",
          limits[k]!,
        ),
      );
      report(
        fig(
          `analyzeSae streaming (${r.tokens} tok) vs (b) FLOP bound`,
          r.tokens / r.stream,
          "tokens/s",
          flopBound,
        ),
      );
      report(
        fig(
          `analyzeSae end-to-end (${r.tokens} tok) vs (a) around it`,
          r.tokens / r.wall,
          "tokens/s",
          limits[k]!,
        ),
      );
      report(
        fig(
          `analyzeSae end-to-end (${r.tokens} tok) vs (a′) its own encode() time`,
          r.tokens / r.wall,
          "tokens/s",
          r.tokens / r.encode,
        ),
      );
      report(
        fig(
          `  setup / stream / write (${r.tokens} tok)`,
          r.setup,
          `s / ${r.stream.toFixed(1)} s / ${r.write.toFixed(1)} s`,
        ),
      );
    }
    report(fig("feature analyzer add() alone, same batches", addRate, "tokens/s"));
    report(fig("dataset reader + tokenize alone", tokenizeRate, "tokens/s"));
    report(
      fig(
        "tokenize, (a), add() in series (ORT runs on the JS thread)",
        1 / (1 / tokenizeRate + 1 / passes[0]! + 1 / addRate),
        "tokens/s",
        passes[0]!,
      ),
    );
    report(fig("feature analyzer records (24,576) alone", recordsSeconds, "s"));
    for (const r of [a, b]) {
      report(
        fig(
          `RSS growth while data flows (${r.tokens} tok; peak ${mib(r.rssStream).toFixed(0)} MiB)`,
          mib(r.rssStream - r.rssSetup),
          "MiB",
        ),
      );
      report(
        fig(
          `peak RSS whole run (${r.tokens} tok; ${mib(r.rssSetup).toFixed(0)} MiB after setup)`,
          mib(r.rssPeak),
          "MiB",
        ),
      );
    }
    // Memory does not scale with tokens: twice the tokens against the first run's peak (1.0 is
    // perfectly flat; 2.0 would be memory proportional to tokens).
    report(
      fig(
        `peak RSS at ${b.tokens} tok / at ${a.tokens} tok (tokens ×${
          (b.tokens / a.tokens).toFixed(1)
        })`,
        b.rssPeak / a.rssPeak,
        "×",
      ),
    );
    report(fig(`features alive (${b.tokens} tok)`, b.alive, `of ${b.alive + b.dead}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

if (import.meta.main) {
  const { report } = await import("./_report.ts");
  await analyzeBench(report);
}
