/**
 * Feature-analyzer throughput and memory at the pipeline's scale: d_sae 24,576, context 128,
 * batch 32, about 60 active features per token (power-law feature frequencies, features that
 * persist over neighbouring tokens, log-normal values), default samplings.
 *
 * Only `AnalyzerState.add` is timed (the synthetic batches are generated outside the clock).
 * Figures: tokens/s over the first 10 batches and from 100k to 400k tokens (wall clock, and per
 * CPU-second of the process, which stays meaningful when other work shares the cores), the
 * state's own byte count (`AnalyzerState.stats().bytes`), candidates per alive feature, RSS and
 * heap at 200k and 400k tokens, and the time to build every feature's record. The token count is
 * `ANALYZER_BENCH_TOKENS` (default 400,000; the run takes about half a minute).
 *
 * At this scale most features have fired in fewer than a few hundred contexts, so their samplings
 * are still filling up: the state grows towards its bound (about 100–130 windows per feature
 * with the default samplings), then stays flat.
 *
 * @module
 */
import process from "node:process";
import { mulberry32 } from "../lib/_random.ts";
import type { Bench } from "./_report.ts";
import { AnalyzerState } from "../lib/analysis/state.ts";
import type { FeatureBatch } from "../lib/types.ts";

/** Shape of the synthetic stream. */
export interface SyntheticFeatureOptions {
  /** Number of features. Default 24,576. */
  dSae?: number;
  /** Tokens per context. Default 128. */
  contextSize?: number;
  /** Contexts per batch. Default 32. */
  batchSize?: number;
  /** Mean active features per token. Default 60. */
  activePerToken?: number;
  /** Seed. Default 1. */
  seed?: number;
}

/**
 * A deterministic generator of synthetic {@linkcode FeatureBatch}es resembling an SAE's output:
 * feature `f` has a per-token firing rate following a power law over a seeded ranking (a few
 * features fire on a good share of tokens, most on 1 in 10⁴), about half of a token's active
 * features carry over to the next token, values are log-normal around a log-normal per-feature
 * scale, the first token of each context (BOS) is masked (with a large activation, as real BOS
 * tokens have), and one context in 20 is shorter and padded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SyntheticFeatureStream } from "./analyzer.ts";
 * const stream = new SyntheticFeatureStream({ dSae: 512, batchSize: 2, contextSize: 16 });
 * const batch = stream.next();
 * assert.equal(batch.batchSize, 2);
 * assert.equal(batch.position.length, batch.value.length);
 * ```
 */
export class SyntheticFeatureStream {
  readonly dSae: number;
  readonly contextSize: number;
  readonly batchSize: number;
  readonly activePerToken: number;
  /** Batches generated so far. */
  batches = 0;
  readonly #random: () => number;
  readonly #cdf: Float64Array;
  readonly #scale: Float32Array;
  readonly #seen: Int32Array;
  #stamp = 0;
  #position: Int32Array;
  #feature: Int32Array;
  #value: Float32Array;

  /**
   * Creates the generator.
   *
   * @param options The stream's shape (all optional).
   */
  constructor(options: SyntheticFeatureOptions = {}) {
    this.dSae = options.dSae ?? 24_576;
    this.contextSize = options.contextSize ?? 128;
    this.batchSize = options.batchSize ?? 32;
    this.activePerToken = options.activePerToken ?? 60;
    const r = this.#random = mulberry32(options.seed ?? 1);
    const d = this.dSae;
    // Power-law rates over a random permutation of the features.
    const order = Array.from({ length: d }, (_, i) => i);
    for (let i = d - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const weight = new Float64Array(d);
    for (let rank = 0; rank < d; rank++) weight[order[rank]!] = 1 / (rank + 8);
    this.#cdf = new Float64Array(d);
    let total = 0;
    for (let f = 0; f < d; f++) this.#cdf[f] = total += weight[f]!;
    for (let f = 0; f < d; f++) this.#cdf[f]! /= total;
    this.#scale = new Float32Array(d);
    for (let f = 0; f < d; f++) this.#scale[f] = Math.exp(0.6 * this.#normal());
    this.#seen = new Int32Array(d).fill(-1);
    const cap = this.batchSize * this.contextSize * (2 * this.activePerToken + 8);
    this.#position = new Int32Array(cap);
    this.#feature = new Int32Array(cap);
    this.#value = new Float32Array(cap);
  }

  #normal(): number {
    const u = 1 - this.#random();
    const v = this.#random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  #draw(): number {
    const x = this.#random();
    const cdf = this.#cdf;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The next batch (fresh arrays; rows count on from the previous batch).
   *
   * @returns A sorted, valid {@linkcode FeatureBatch}.
   */
  next(): FeatureBatch {
    const B = this.batchSize;
    const T = this.contextSize;
    const r = this.#random;
    const tokens = new Int32Array(B * T);
    const mask = new Uint8Array(B * T);
    const attention = new Uint8Array(B * T);
    let n = 0;
    let prev: number[] = [];
    const current: number[] = [];
    for (let b = 0; b < B; b++) {
      const length = r() < 0.05 ? 16 + Math.floor(r() * (T - 16)) : T;
      prev = [];
      for (let t = 0; t < length; t++) {
        const p = b * T + t;
        tokens[p] = Math.floor(Math.pow(r(), 2) * 50_257);
        attention[p] = 1;
        mask[p] = t === 0 ? 0 : 1;
        const stamp = ++this.#stamp;
        current.length = 0;
        const k = Math.max(1, Math.round(this.activePerToken * (0.7 + 0.6 * r())));
        for (const f of prev) {
          if (current.length < k && r() < 0.5) {
            this.#seen[f] = stamp;
            current.push(f);
          }
        }
        while (current.length < k) {
          const f = this.#draw();
          if (this.#seen[f] === stamp) continue;
          this.#seen[f] = stamp;
          current.push(f);
        }
        current.sort((x, y) => x - y);
        for (const f of current) {
          this.#position[n] = p;
          this.#feature[n] = f;
          const boost = t === 0 ? 8 : 1;
          this.#value[n] = boost * this.#scale[f]! * Math.exp(0.5 * this.#normal());
          n++;
        }
        prev = current.slice();
      }
    }
    const row0 = this.batches * B;
    this.batches++;
    return {
      batchSize: B,
      contextSize: T,
      dSae: this.dSae,
      tokens,
      mask,
      attention,
      origins: Array.from({ length: B }, (_, b) => ({ source: "bench", shard: 0, row: row0 + b })),
      position: this.#position.slice(0, n),
      feature: this.#feature.slice(0, n),
      value: this.#value.slice(0, n),
    };
  }
}

const TOKENS = Number(Deno.env.get("ANALYZER_BENCH_TOKENS") ?? 400_000);
const STEADY_FROM = 100_000;

/** The feature-analyzer benchmark. */
export const analyzerBench: Bench = async (report) => {
  await Promise.resolve();
  const stream = new SyntheticFeatureStream();
  const state = new AnalyzerState();
  const perBatch = stream.batchSize * stream.contextSize;
  const shape = `d_sae ${stream.dSae}, ${stream.batchSize}×${stream.contextSize}, ` +
    `~${stream.activePerToken} active/token`;
  let first = { wall: 0, cpu: 0, tokens: 0 };
  const steady = { wall: 0, cpu: 0, tokens: 0 };
  const memoryAt = [Math.min(200_000, TOKENS / 2), TOKENS];
  const cpuNow = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  while (state.nTokens < TOKENS) {
    const batch = stream.next();
    const c0 = cpuNow();
    const t0 = performance.now();
    state.add(batch);
    const wall = performance.now() - t0;
    const cpu = cpuNow() - c0;
    if (stream.batches <= 10) {
      first = { wall: first.wall + wall, cpu: first.cpu + cpu, tokens: first.tokens + perBatch };
    }
    if (state.nTokens > STEADY_FROM) {
      steady.wall += wall;
      steady.cpu += cpu;
      steady.tokens += perBatch;
    }
    const at = memoryAt.find((m) => state.nTokens >= m && state.nTokens - perBatch < m);
    if (at !== undefined) {
      const stats = state.stats();
      const mem = Deno.memoryUsage();
      const k = `${Math.round(state.nTokens / 1000)}k tokens`;
      report({
        bench: "analyzer",
        metric: `state bytes at ${k}`,
        value: stats.bytes / 2 ** 20,
        unit: "MiB",
      });
      report({
        bench: "analyzer",
        metric: `state bytes per feature at ${k}`,
        value: stats.bytes / stream.dSae,
        unit: "B",
      });
      report({
        bench: "analyzer",
        metric: `candidates per alive feature at ${k}`,
        value: stats.candidates / Math.max(1, stats.aliveFeatures),
        unit: "windows",
      });
      report({ bench: "analyzer", metric: `RSS at ${k}`, value: mem.rss / 2 ** 20, unit: "MiB" });
      report({
        bench: "analyzer",
        metric: `heap used at ${k}`,
        value: mem.heapUsed / 2 ** 20,
        unit: "MiB",
      });
    }
  }
  report({
    bench: "analyzer",
    metric: `tokens/s, first 10 batches (${shape})`,
    value: first.tokens / (first.wall / 1000),
    unit: "tokens/s",
  });
  report({
    bench: "analyzer",
    metric: `tokens/s, ${STEADY_FROM / 1000}k–${Math.round(TOKENS / 1000)}k tokens`,
    value: steady.tokens / (steady.wall / 1000),
    unit: "tokens/s",
  });
  report({
    bench: "analyzer",
    metric: `tokens per CPU-second, first 10 batches`,
    value: first.tokens / (first.cpu / 1000),
    unit: "tokens/s",
  });
  report({
    bench: "analyzer",
    metric: `tokens per CPU-second, ${STEADY_FROM / 1000}k–${Math.round(TOKENS / 1000)}k`,
    value: steady.tokens / (steady.cpu / 1000),
    unit: "tokens/s",
  });
  const t0 = performance.now();
  let n = 0;
  for (const _ of state.records()) n++;
  report({
    bench: "analyzer",
    metric: `records() for all ${n} features`,
    value: (performance.now() - t0) / 1000,
    unit: "s",
  });
};

if (import.meta.main) {
  const { report } = await import("./_report.ts");
  await analyzerBench(report);
}
