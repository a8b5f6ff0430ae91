/**
 * Utilities for the analyze-pipeline tests (`tests/analyze_*_test.ts`):
 *
 * - running the real `cli.ts` as a subprocess with the permissions `deno task analyze` grants;
 * - writing a *planted* model folder and SAE: a generated ONNX "language model" whose hook tensor
 *   is a scaled one-hot embedding of the token, a word-level tokenizer, and an lm-saes SAE whose
 *   feature k fires exactly on token k, so that every statistic and sample is known in advance;
 * - the obviously-correct expectation of the feature analysis from dense activations
 *   ({@linkcode DenseRun} → {@linkcode featureFacts}), and {@linkcode checkFeature}, which compares
 *   a stored {@linkcode FeatureAnalysis} with it under stated tolerances.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { buildModel } from "../lib/onnx/mod.ts";
import { parseSafetensors, writeSafetensors } from "../lib/safetensors/mod.ts";
import { hashContext, priorityKey } from "../lib/analysis/_hash.ts";
import type { ContextOrigin, FeatureAnalysis, Sample } from "../lib/types.ts";
import type { Sampling } from "../lib/settings/mod.ts";

/** The repository root (with a trailing slash). */
export const ROOT: string = new URL("../", import.meta.url).pathname;
/** The fixtures folder (with a trailing slash). */
export const FIXTURES: string = `${ROOT}fixtures/`;

/** The permissions `deno task analyze` runs the CLI with (deno.json). */
export const CLI_PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
  "--allow-ffi",
  "--allow-sys",
];

/** What a CLI run printed. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deno run <permissions> cli.ts ...args` with a clean environment (only `PATH`, `HOME`,
 * `DENO_DIR` and the given variables pass through, so a `MONGO_URI` of the test process does not
 * leak into a run meant for SQLite).
 */
export async function runCli(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_PERMISSIONS, "--config", `${ROOT}deno.json`, `${ROOT}cli.ts`, ...args],
    cwd: options.cwd ?? ROOT,
    env: { ...env, ...options.env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

// ---------------------------------------------------------------------------------------------
// The planted model and SAE

/** The planted fixture's fixed shape. */
export const PLANTED = {
  /** Vocabulary size: `<|endoftext|>` = 0, `w1`…`w40` planted, `x41`…`x99` fillers. */
  vocab: 100,
  /** Planted tokens are `1..planted` (and 0, the BOS/EOS/pad token, on feature 0). */
  planted: 40,
  /** Hook width. */
  dModel: 64,
  /** SAE width: features `planted+1 .. dSae-1` have no input and never fire. */
  dSae: 80,
  /** The raw ONNX tensor name of the hook (a raw tensor name is a valid hook point). */
  hook: "planted_hook",
} as const;

/** The word of token id `t` in the planted vocabulary. */
export function plantedWord(t: number): string {
  if (t === 0) return "<|endoftext|>";
  return t <= PLANTED.planted ? `w${t}` : `x${t}`;
}

/** Feature k's strength: on token k at position p (BOS = 0) it fires with `strength(k)·(p+1)`. */
export function plantedStrength(k: number): number {
  return k === 0 ? 1 : 0.25 * k; // dyadic: every product with a small integer is exact in float32
}

/**
 * Writes the planted model folder (`model.onnx`, `config.json`, `tokenizer.json`,
 * `tokenizer_config.json`) and the planted lm-saes SAE under `dir`.
 *
 * The graph: `hook = embed[input_ids] · (position_ids + 1)`, `embed[t]` = one-hot(t) for
 * `t ≤ planted`, zero for fillers; `logits = hook · unembed`. The SAE: `W_E[k, k] = strength(k)`,
 * `b_E = 0`, ReLU, no normalization — so feature k's activation on token k at position p is
 * exactly `strength(k)·(p+1)` and 0 everywhere else.
 *
 * @returns the model folder and the SAE folder.
 */
export async function writePlanted(dir: string): Promise<{ modelDir: string; saeDir: string }> {
  const { vocab: V, dModel: D, dSae: N, planted, hook } = PLANTED;
  const modelDir = join(dir, "planted-model");
  const saeDir = join(dir, "planted-sae");
  await Deno.mkdir(modelDir, { recursive: true });
  await Deno.mkdir(saeDir, { recursive: true });

  const embed = new Float32Array(V * D);
  for (let t = 0; t <= planted; t++) embed[t * D + t] = 1;
  const unembed = new Float32Array(D * V);
  for (let i = 0; i < D; i++) unembed[i * V + ((i * 7) % V)] = 1;
  const bytes = buildModel({
    nodes: [
      {
        opType: "Gather",
        inputs: ["embed", "input_ids"],
        outputs: ["emb"],
        name: "/model/embed/Gather",
      },
      {
        opType: "Cast",
        inputs: ["position_ids"],
        outputs: ["pos_f"],
        attributes: { to: { i: 1 } },
        name: "/model/pos/Cast",
      },
      { opType: "Add", inputs: ["pos_f", "one"], outputs: ["pos1"], name: "/model/pos/Add" },
      {
        opType: "Unsqueeze",
        inputs: ["pos1", "last_axis"],
        outputs: ["pos1_u"],
        name: "/model/pos/Unsqueeze",
      },
      { opType: "Mul", inputs: ["emb", "pos1_u"], outputs: [hook], name: "/model/hook/Mul" },
      { opType: "MatMul", inputs: [hook, "unembed"], outputs: ["logits"], name: "/lm_head/MatMul" },
    ],
    initializers: [
      { name: "embed", dims: [V, D], data: embed },
      { name: "one", dims: [], data: new Float32Array([1]) },
      { name: "last_axis", dims: [1], data: new BigInt64Array([-1n]) },
      { name: "unembed", dims: [D, V], data: unembed },
    ],
    inputs: [
      { name: "input_ids", elemType: "int64", dims: ["batch", "sequence"] },
      { name: "attention_mask", elemType: "int64", dims: ["batch", "sequence"] },
      { name: "position_ids", elemType: "int64", dims: ["batch", "sequence"] },
    ],
    outputs: [{ name: "logits", elemType: "float32", dims: ["batch", "sequence", V] }],
    name: "planted_lm",
  });
  await Deno.writeFile(join(modelDir, "model.onnx"), bytes);
  await Deno.writeTextFile(
    join(modelDir, "config.json"),
    JSON.stringify({
      model_type: "planted",
      vocab_size: V,
      hidden_size: D,
      max_position_embeddings: 64,
      bos_token_id: 0,
      eos_token_id: 0,
    }),
  );
  const words: Record<string, number> = {};
  for (let t = 0; t < V; t++) words[plantedWord(t)] = t;
  await Deno.writeTextFile(
    join(modelDir, "tokenizer.json"),
    JSON.stringify({
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [{
        id: 0,
        content: "<|endoftext|>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      }],
      normalizer: null,
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: null,
      decoder: null,
      model: { type: "WordLevel", vocab: words, unk_token: "<|endoftext|>" },
    }),
  );
  await Deno.writeTextFile(
    join(modelDir, "tokenizer_config.json"),
    JSON.stringify({
      bos_token: "<|endoftext|>",
      eos_token: "<|endoftext|>",
      unk_token: "<|endoftext|>",
      pad_token: null,
      add_bos_token: false,
      model_max_length: 64,
    }),
  );

  const W_E = new Float32Array(D * N);
  for (let k = 0; k <= planted; k++) W_E[k * N + k] = plantedStrength(k);
  const W_D = new Float32Array(N * D);
  for (let k = 0; k < N; k++) W_D[k * D + (k % D)] = 1;
  await Deno.writeFile(
    join(saeDir, "sae_weights.safetensors"),
    writeSafetensors({
      W_E: { dtype: "F32", shape: [D, N], data: W_E },
      b_E: { dtype: "F32", shape: [N], data: new Float32Array(N) },
      W_D: { dtype: "F32", shape: [N, D], data: W_D },
      b_D: { dtype: "F32", shape: [D], data: new Float32Array(D) },
    }),
  );
  await Deno.writeTextFile(
    join(saeDir, "config.json"),
    JSON.stringify({
      sae_type: "sae",
      hook_point_in: hook,
      hook_point_out: hook,
      d_model: D,
      d_sae: N,
      use_decoder_bias: true,
      use_glu_encoder: false,
      act_fn: "relu",
      apply_decoder_bias_to_pre_encoder: false,
      norm_activation: "inference",
      sparsity_include_decoder_norm: false,
      center_writing_weights: false,
    }),
  );
  return { modelDir, saeDir };
}

/**
 * Writes the first `n` features of the lm-saes-relu fixture SAE as an SAE of its own (same
 * config, `d_sae = n`; the dataset norm scalar and `b_D` kept), for runs that must stay small —
 * a MongoDB-compatible test server writes a few hundred large documents slowly.
 *
 * @returns the SAE folder.
 */
export async function writeSlicedSae(dir: string, n: number): Promise<string> {
  const src = `${FIXTURES}sae/lm-saes-relu`;
  const config = JSON.parse(await Deno.readTextFile(`${src}/config.json`));
  const file = parseSafetensors(await Deno.readFile(`${src}/sae_weights.safetensors`));
  const D: number = config.d_model;
  const N: number = config.d_sae;
  const W_E = file.readF32("W_E");
  const sliced = new Float32Array(D * n);
  for (let i = 0; i < D; i++) sliced.set(W_E.subarray(i * N, i * N + n), i * n);
  const out = join(dir, `lm-saes-relu-${n}`);
  await Deno.mkdir(out, { recursive: true });
  const norm = `dataset_average_activation_norm.${config.hook_point_in}`;
  await Deno.writeFile(
    join(out, "sae_weights.safetensors"),
    writeSafetensors({
      W_E: { dtype: "F32", shape: [D, n], data: sliced },
      b_E: { dtype: "F32", shape: [n], data: file.readF32("b_E").subarray(0, n) },
      W_D: { dtype: "F32", shape: [n, D], data: file.readF32("W_D").subarray(0, n * D) },
      b_D: { dtype: "F32", shape: [D], data: file.readF32("b_D") },
      [norm]: { dtype: "F32", shape: [], data: file.readF32(norm) },
    }),
  );
  await Deno.writeTextFile(
    join(out, "config.json"),
    JSON.stringify({ ...config, d_sae: n, expansion_factor: n / D }),
  );
  return out;
}

// ---------------------------------------------------------------------------------------------
// The expectation from dense activations

/** One context as the expectation sees it. */
export interface DenseContext {
  /** Token ids, `T` of them (padding included). */
  tokens: Int32Array;
  /** 1 = analyzed. */
  mask: Uint8Array;
  /** Real tokens (attention = 1), a prefix of the context. */
  length: number;
  /** Where it came from. */
  origin: Required<ContextOrigin>;
}

/** Dense feature activations of a run: `acts[(c·T + t)·dSae + f]`, 0 where the mask is 0. */
export interface DenseRun {
  contexts: DenseContext[];
  contextSize: number;
  dSae: number;
  acts: Float32Array;
}

/** The expected result for one feature, computed with plain loops in float64. */
export interface FeatureFacts {
  feature: number;
  actTimes: number;
  max: number;
  mean: number;
  /** Population standard deviation (ddof 0). */
  std: number;
  /** The active values (float32 values as float64 numbers). */
  values: number[];
  /** Per context where the feature fires: the peak and its first position. */
  peaks: { ctx: number; peak: number; pos: number }[];
  /** Contexts with at least one analyzed token where the feature never fires. */
  nonFiring: number[];
}

/** Analyzed tokens of a run. */
export function analyzedTokens(run: DenseRun): number {
  let n = 0;
  for (const c of run.contexts) for (const m of c.mask) n += m;
  return n;
}

/** The facts of feature `f`. */
export function featureFacts(run: DenseRun, f: number): FeatureFacts {
  const { contextSize: T, dSae } = run;
  const values: number[] = [];
  const peaks: FeatureFacts["peaks"] = [];
  const nonFiring: number[] = [];
  run.contexts.forEach((c, ci) => {
    let peak = 0;
    let pos = -1;
    let analyzed = false;
    for (let t = 0; t < T; t++) {
      if (!c.mask[t]) continue;
      analyzed = true;
      const v = run.acts[(ci * T + t) * dSae + f]!;
      if (v > 0) {
        values.push(v);
        if (v > peak) {
          peak = v;
          pos = t;
        }
      }
    }
    if (pos >= 0) peaks.push({ ctx: ci, peak, pos });
    else if (analyzed) nonFiring.push(ci);
  });
  let sum = 0;
  let max = 0;
  for (const v of values) {
    sum += v;
    max = Math.max(max, v);
  }
  const mean = values.length ? sum / values.length : 0;
  let ss = 0;
  for (const v of values) ss += (v - mean) * (v - mean);
  const std = values.length ? Math.sqrt(ss / values.length) : 0;
  return { feature: f, actTimes: values.length, max, mean, std, values, peaks, nonFiring };
}

/** One sampling as the settings resolve it (`settings.analyzer.samplings`). */
export type SamplingSpec = Omit<Sampling, "max_length">;

/** Relative tolerances of {@linkcode checkFeature}; all 0 means exact. */
export interface Tolerances {
  /**
   * Tolerance of `max_activation`, peaks and sample activations, relative to the feature's
   * maximum (a float32 encoder's rounding error scales with the size of the terms, not with the
   * value, so a small activation is compared on the scale of the feature's large ones).
   */
  value: number;
  /** Relative tolerance of `max_activation` (default: `value`). */
  max?: number;
  /** Relative tolerance of `mean` and `std`. */
  stats: number;
}

/** How {@linkcode checkFeature} could compare the band samplings. */
export interface CheckReport {
  /** Bands compared exactly with the bottom-k of the eligible contexts. */
  exactBands: number;
  /** Bands with a context within the tolerance of an edge (compared by membership only). */
  toleratedBands: number;
}

/** What {@linkcode checkFeature} needs besides the analysis and the facts. */
export interface CheckOptions {
  samplings: readonly SamplingSpec[];
  windowBefore: number;
  windowAfter: number;
  seed: number;
  tol: Tolerances;
  /** @internal The feature's max, set by {@linkcode checkFeature}. */
  scale?: number;
}

const coord = (o: { source: string; shard: number; row: number }) =>
  `${o.source}/${o.shard}/${o.row}`;

function close(got: number, want: number, rel: number): boolean {
  if (rel === 0) return got === want;
  return Math.abs(got - want) <= rel * Math.max(Math.abs(want), 1e-30);
}

function assertClose(got: number, want: number, rel: number, what: string): void {
  assert.ok(close(got, want, rel), `${what}: got ${got}, want ${want} (rel tol ${rel})`);
}

/** The priority key of `(feature, context)` (feature −1: the context's own key). */
function keyOf(seed: number, o: Required<ContextOrigin>, feature: number): number {
  return priorityKey(hashContext(seed, o.source, o.shard, o.row, o.offset), feature);
}

/**
 * Checks a sample's window against the context: tokens, this feature's activations, peak and
 * offset. With a tolerance, a peak position holding a near-tie of the expected peak is accepted.
 */
function checkWindow(
  s: Sample,
  run: DenseRun,
  ci: number,
  f: number,
  want: { peak: number; pos: number },
  opts: CheckOptions,
  what: string,
): void {
  const T = run.contextSize;
  const c = run.contexts[ci]!;
  const act = (t: number) => run.acts[(ci * T + t) * run.dSae + f]!;
  const start = s.offset - c.origin.offset;
  const pos = start + s.peak_pos;
  const tol = opts.tol.value;
  const near = (got: number, want: number) =>
    tol === 0 ? got === want : Math.abs(got - want) <= tol * opts.scale!;
  if (pos !== want.pos) {
    assert.ok(
      tol > 0 && near(act(pos), want.peak),
      `${what}: peak at position ${pos}, expected ${want.pos}`,
    );
  }
  const wantStart = Math.max(0, pos - opts.windowBefore);
  const wantEnd = Math.min(c.length, pos + opts.windowAfter + 1);
  assert.equal(start, wantStart, `${what}: window start`);
  assert.deepEqual([...s.tokens], [...c.tokens.subarray(wantStart, wantEnd)], `${what}: tokens`);
  assert.equal(s.acts.length, s.tokens.length, `${what}: acts length`);
  s.acts.forEach((a, i) =>
    assert.ok(near(a, act(wantStart + i)), `${what}: acts[${i}] = ${a}, want ${act(wantStart + i)}`)
  );
  assert.ok(near(s.peak, want.peak), `${what}: peak ${s.peak}, want ${want.peak}`);
  assert.equal(s.peak, Math.max(...s.acts), `${what}: peak is the max of acts`);
}

/**
 * Compares one feature's stored analysis with the facts: statistics, histogram, quantiles, and
 * every sampling (top-n: same contexts in the same order; bands and non-activating: the n
 * eligible contexts with the smallest seeded priority keys, as DESIGN.md specifies them).
 *
 * With tolerances, contexts whose peaks are within the tolerance of each other may swap places
 * in the top-n, and a context within the tolerance of a band edge may be in either band.
 */
export function checkFeature(
  a: FeatureAnalysis,
  facts: FeatureFacts,
  run: DenseRun,
  opts: CheckOptions,
): CheckReport {
  const report: CheckReport = { exactBands: 0, toleratedBands: 0 };
  const f = facts.feature;
  const tag = `feature ${f}`;
  assert.equal(a.act_times, facts.actTimes, `${tag}: act_times`);
  if (facts.actTimes === 0) {
    assert.equal(a.max_activation, 0, `${tag}: dead, max`);
    assert.equal(a.mean, 0, `${tag}: dead, mean`);
    assert.equal(a.std, 0, `${tag}: dead, std`);
    assert.deepEqual(a.samplings, [], `${tag}: dead, samplings`);
    assert.equal(a.histogram.counts.reduce((x, y) => x + y, 0), 0, `${tag}: dead, histogram`);
    return report;
  }
  assertClose(a.max_activation, facts.max, opts.tol.max ?? opts.tol.value, `${tag}: max`);
  opts = { ...opts, scale: facts.max };
  assertClose(a.mean, facts.mean, opts.tol.stats, `${tag}: mean`);
  assertClose(a.std, facts.std, opts.tol.stats + (opts.tol.stats ? 0 : 1e-12), `${tag}: std`);
  checkHistogram(a, facts, opts.tol.value, tag);

  const ctxIndex = new Map(run.contexts.map((c, i) => [coord(c.origin), i]));
  const locate = (s: Sample, what: string) => {
    const ci = ctxIndex.get(coord(s));
    assert.ok(ci !== undefined, `${what}: unknown context ${coord(s)}`);
    return ci;
  };
  const peakOf = new Map(facts.peaks.map((p) => [p.ctx, p]));
  const names = a.samplings.map((s) => s.name);
  assert.deepEqual(names, opts.samplings.map((s) => s.name), `${tag}: sampling names`);

  for (const spec of opts.samplings) {
    const sampling = a.samplings.find((s) => s.name === spec.name)!;
    const what = `${tag} ${spec.name}`;
    const samples = sampling.samples;
    if (spec.kind === "top") {
      assert.equal(sampling.band, null, `${what}: band`);
      const ranked = [...facts.peaks].sort((x, y) => y.peak - x.peak || x.ctx - y.ctx);
      const n = Math.min(spec.n_samples, ranked.length);
      assert.equal(samples.length, n, `${what}: size`);
      const got = samples.map((s) => locate(s, what));
      assert.equal(new Set(got).size, n, `${what}: distinct contexts`);
      if (opts.tol.value === 0) {
        assert.deepEqual(got, ranked.slice(0, n).map((r) => r.ctx), `${what}: contexts in order`);
      } else {
        // Rank by rank, the context's reference peak must equal the reference peak of that rank
        // up to the tolerance (near-ties may swap places, nothing else may).
        got.forEach((ci, i) => {
          const p = peakOf.get(ci);
          assert.ok(p, `${what}[${i}]: the feature does not fire in ${coord(samples[i]!)}`);
          assert.ok(
            Math.abs(p.peak - ranked[i]!.peak) <= opts.tol.value * facts.max,
            `${what}[${i}]: context ${ci} has peak ${p.peak}, rank ${i} is ${ranked[i]!.peak}`,
          );
        });
      }
      samples.forEach((s, i) => {
        const ci = got[i]!;
        checkWindow(s, run, ci, f, peakOf.get(ci)!, opts, `${what}[${i}]`);
        if (i > 0) assert.ok(samples[i - 1]!.peak >= s.peak, `${what}: strongest first`);
      });
    } else if (spec.kind === "band") {
      assert.deepEqual(sampling.band, [spec.lower, spec.proportion], `${what}: band`);
      const lo = spec.lower * facts.max;
      const hi = spec.proportion * facts.max;
      const tol = opts.tol.value;
      const sure: number[] = [];
      const maybe: number[] = [];
      for (const p of facts.peaks) {
        const inside = p.peak > lo && p.peak <= hi;
        const nearEdge = tol > 0 &&
          (Math.abs(p.peak - lo) <= 2 * tol * facts.max ||
            Math.abs(p.peak - hi) <= 2 * tol * facts.max);
        if (nearEdge) maybe.push(p.ctx);
        else if (inside) sure.push(p.ctx);
      }
      const got = samples.map((s) => locate(s, what));
      assert.equal(new Set(got).size, got.length, `${what}: distinct contexts`);
      const byKey = (list: number[]) =>
        [...list].sort((x, y) =>
          keyOf(opts.seed, run.contexts[x]!.origin, f) -
          keyOf(opts.seed, run.contexts[y]!.origin, f)
        );
      if (maybe.length === 0) {
        report.exactBands++;
        const want = byKey(sure).slice(0, spec.n_samples);
        assert.deepEqual(
          [...got].sort((x, y) => x - y),
          want.sort((x, y) => x - y),
          `${what}: the ${spec.n_samples} eligible contexts with the smallest keys`,
        );
      } else {
        report.toleratedBands++;
        const allowed = new Set([...sure, ...maybe]);
        for (const ci of got) assert.ok(allowed.has(ci), `${what}: context ${ci} not in band`);
        assert.ok(
          got.length >= Math.min(spec.n_samples, sure.length) &&
            got.length <= Math.min(spec.n_samples, allowed.size),
          `${what}: size ${got.length}`,
        );
      }
      samples.forEach((s, i) => {
        const ci = got[i]!;
        checkWindow(s, run, ci, f, peakOf.get(ci)!, opts, `${what}[${i}]`);
        // The stored peak lies in the band of the stored max (the analyzer's own numbers).
        assert.ok(
          s.peak > spec.lower * a.max_activation * (1 - 1e-12) &&
            s.peak <= spec.proportion * a.max_activation * (1 + 1e-12),
          `${what}[${i}]: peak ${s.peak} outside (${spec.lower}, ${spec.proportion}] × ${a.max_activation}`,
        );
        if (i > 0) assert.ok(samples[i - 1]!.peak >= s.peak, `${what}: strongest first`);
      });
    } else if (spec.kind === "non_activating") {
      assert.equal(sampling.band, null, `${what}: band`);
      const got = samples.map((s) => locate(s, what));
      const want = [...facts.nonFiring].sort((x, y) =>
        keyOf(opts.seed, run.contexts[x]!.origin, -1) -
        keyOf(opts.seed, run.contexts[y]!.origin, -1)
      ).slice(0, spec.n_samples);
      assert.deepEqual(
        [...got].sort((x, y) => x - y),
        want.sort((x, y) => x - y),
        `${what}: the ${spec.n_samples} never-firing contexts with the smallest keys`,
      );
      samples.forEach((s, i) => {
        const c = run.contexts[got[i]!]!;
        const len = Math.min(c.length, opts.windowBefore + opts.windowAfter + 1);
        assert.equal(s.offset, c.origin.offset, `${what}[${i}]: offset`);
        assert.deepEqual([...s.tokens], [...c.tokens.subarray(0, len)], `${what}[${i}]: tokens`);
        assert.ok(s.acts.every((v) => v === 0), `${what}[${i}]: an active token`);
      });
    } else {
      throw new Error(`${what}: the checker does not handle kind ${spec.kind}`);
    }
  }
  return report;
}

/** Histogram: total = act_times; each value in its bucket `ceil(log_γ x)` (edges: either side). */
function checkHistogram(a: FeatureAnalysis, facts: FeatureFacts, tol: number, tag: string): void {
  const h = a.histogram;
  const alpha = h.relative_accuracy;
  const gamma = (1 + alpha) / (1 - alpha);
  const lg = Math.log(gamma);
  assert.equal(h.counts.reduce((x, y) => x + y, 0), facts.actTimes, `${tag}: histogram total`);
  const want = new Map<number, number>();
  let ambiguous = 0;
  for (const v of facts.values) {
    const l = Math.log(v) / lg;
    // Values are known within tol · max (see Tolerances.value): near an edge, either side.
    const slack = Math.log1p(tol * facts.max / v + 1e-12) / lg;
    if (Math.abs(l - Math.round(l)) <= slack) ambiguous++;
    const i = Math.ceil(l - 1e-9);
    want.set(i, (want.get(i) ?? 0) + 1);
  }
  let diff = 0;
  const indices = new Set([...want.keys()]);
  h.counts.forEach((_, j) => indices.add(h.index_offset + j));
  for (const i of indices) {
    const got = h.counts[i - h.index_offset] ?? 0;
    diff += Math.abs(got - (want.get(i) ?? 0));
  }
  assert.ok(diff <= 2 * ambiguous, `${tag}: histogram differs in ${diff} counts`);
  const sorted = [...facts.values].sort((x, y) => x - y);
  for (const { q, value } of a.quantiles) {
    const x = sorted[Math.floor(q * (sorted.length - 1))]!;
    assert.ok(
      Math.abs(value - x) <= alpha * x * (1 + 1e-9) + tol * facts.max * (1 + alpha),
      `${tag}: quantile ${q} = ${value}, order statistic ${x}`,
    );
  }
}
