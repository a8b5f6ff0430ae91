/**
 * Viewer serve time: the handler's server-side time (request in, body out) for one feature and
 * for one list page, median over 50 requests each, on a SQLite store holding 24,576 generated
 * features (`limit`: the fixed 50 ms). Also the store fill time and, as information, a
 * list page with a text search over the explanations. List pages are timed twice: through the
 * viewer's summary index (its normal path once the index is loaded: the overview page loads it
 * for the frequency histogram) and with caching off (the store's own OFFSET paging); the index's
 * one-off load time is printed too.
 *
 * Each generated feature is the size of a typical analysed one: 10 top
 * contexts and 2 magnitude bands of 5, windows of 64 tokens, a log histogram of about 120
 * buckets, 3 quantiles, DLA with 10 + 10 tokens and a 60-bin histogram, and an explanation with
 * two scores; one feature in 12 is dead. The vocabulary has 50,304 entries.
 *
 * @module
 */
import type { Bench } from "./_report.ts";
import { mulberry32 as rng } from "../lib/_random.ts";
import { openStore } from "../lib/store/open.ts";
import type { FeatureStore } from "../lib/store/types.ts";
import type { FeatureRecord, Sample } from "../lib/types.ts";
import { createViewerHandler } from "../lib/viewer/server.ts";

const D_SAE = 24_576;
const VOCAB = 50_304;
const N_TOKENS = 4_000_000;
const WINDOW = 64;
const REQUESTS = 50;
const SERIES = "bench";
const NAME = "bench-sae";

function sample(r: () => number, peak: number, row: number): Sample {
  const tokens = new Int32Array(WINDOW);
  const acts = new Float32Array(WINDOW);
  const peakPos = 32;
  for (let i = 0; i < WINDOW; i++) {
    tokens[i] = Math.floor(r() * VOCAB);
    if (r() < 0.15) acts[i] = peak * r() * 0.8;
  }
  acts[peakPos] = peak;
  return {
    tokens,
    acts,
    peak: acts[peakPos]!,
    peak_pos: peakPos,
    source: "bench",
    shard: 0,
    row,
    offset: 0,
  };
}

function feature(index: number): FeatureRecord {
  const r = rng(index + 1);
  const dead = index % 12 === 11;
  const actTimes = dead ? 0 : Math.max(1, Math.floor(N_TOKENS * 10 ** (-5 + 4 * r())));
  const max = dead ? 0 : 1 + 20 * r();
  const counts = new Float64Array(dead ? 0 : 120);
  for (let i = 0; i < counts.length; i++) counts[i] = Math.floor(r() * 100);
  const samplings = dead ? [] : [
    {
      name: "top_activations",
      band: null,
      samples: Array.from({ length: 10 }, (_, j) => sample(r, max * (1 - j * 0.03), j)),
    },
    ...[[0.5, 0.75], [0.25, 0.5]].map(([lo, hi], b) => ({
      name: `subsample-${hi}`,
      band: [lo!, hi!] as [number, number],
      samples: Array.from({ length: 5 }, (_, j) => sample(r, max * (lo! + 0.1), 100 + b * 10 + j)),
    })),
  ];
  const record: FeatureRecord = {
    sae_series: SERIES,
    sae_name: NAME,
    index,
    analyses: {
      default: {
        act_times: actTimes,
        n_analyzed_tokens: N_TOKENS,
        max_activation: max,
        mean: max / 3,
        std: max / 6,
        histogram: { relative_accuracy: 0.01, index_offset: -200, counts },
        quantiles: dead ? [] : [0.5, 0.9, 0.99].map((q) => ({ q, value: max * q })),
        samplings,
      },
    },
    logits: {
      top_positive: Array.from({ length: 10 }, (_, k) => {
        const id = Math.floor(r() * VOCAB);
        return { token: `tok${id}`, id, logit: 5 - k * 0.3 };
      }),
      top_negative: Array.from({ length: 10 }, (_, k) => {
        const id = Math.floor(r() * VOCAB);
        return { token: `tok${id}`, id, logit: -5 + k * 0.3 };
      }),
      histogram: {
        edges: Float64Array.from({ length: 61 }, (_, k) => -6 + k * 0.2),
        counts: Float64Array.from({ length: 60 }, () => Math.floor(r() * 3000)),
      },
    },
  };
  if (!dead) {
    const metrics = {
      accuracy: 0.8,
      precision: 0.8,
      recall: 0.8,
      f1: 0.8,
      balanced_accuracy: 0.8,
      tp: 8,
      fp: 2,
      tn: 8,
      fn: 2,
    };
    record.interpretation = {
      text: `Feature ${index}: tokens about topic ${index % 997} in ${
        index % 3 === 0 ? "code" : "prose"
      }`,
      method: "openai",
      model: "gpt-bench",
      scores: { detection: metrics, fuzzing: metrics },
      passed: true,
      at: "2026-01-01T00:00:00.000Z",
    };
  }
  return record;
}

async function fill(store: FeatureStore): Promise<void> {
  await store.putModel({
    name: "bench-model",
    config: {},
    vocab: Array.from({ length: VOCAB }, (_, i) => `tok${i}`),
  });
  await store.putSae({
    name: NAME,
    series: SERIES,
    path: "/bench",
    config: {},
    d_sae: D_SAE,
    d_model: 512,
    hook_point: "blocks.6.hook_resid_post",
    model: "bench-model",
  });
  await store.putAnalysis({
    sae_series: SERIES,
    sae_name: NAME,
    name: "default",
    settings: {},
    status: "complete",
    n_analyzed_tokens: N_TOKENS,
    started_at: "2026-01-01T00:00:00.000Z",
    finished_at: "2026-01-01T00:00:00.000Z",
    timings: {},
  });
  const batch = 512;
  for (let start = 0; start < D_SAE; start += batch) {
    const records = [];
    for (let i = start; i < Math.min(D_SAE, start + batch); i++) records.push(feature(i));
    await store.writeFeatures(records);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Times `handler` over `paths` (after 5 warm-up requests); the median in ms. */
async function timeRequests(
  handler: (r: Request) => Promise<Response>,
  paths: string[],
  warmUp = 5,
): Promise<number> {
  const run = async (path: string) => {
    const t0 = performance.now();
    const res = await handler(new Request(`http://127.0.0.1${path}`));
    const body = await res.text();
    const dt = performance.now() - t0;
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body.slice(0, 200)}`);
    return dt;
  };
  for (const p of paths.slice(0, warmUp)) await run(p);
  const times: number[] = [];
  for (const p of paths) times.push(await run(p));
  return median(times);
}

/** The viewer benchmark. */
export const viewerBench: Bench = async (report) => {
  const dir = await Deno.makeTempDir({ prefix: "saeflow_bench_viewer_" });
  try {
    await using store = await openStore({ outputDir: dir });
    const t0 = performance.now();
    await fill(store);
    const fillSeconds = (performance.now() - t0) / 1000;
    report({
      bench: "viewer",
      metric: `store fill (${D_SAE} features, SQLite)`,
      value: fillSeconds,
      unit: "s",
    });

    const handler = createViewerHandler(store);
    const base = `/api/saes/${SERIES}/${NAME}`;
    const r = rng(42);
    const featurePaths = Array.from({ length: REQUESTS }, () => {
      let i = Math.floor(r() * D_SAE);
      if (i % 12 === 11) i--; // an alive feature, with all its samples
      return `${base}/features/${i}`;
    });
    const listQueries = [
      "sort=act_times",
      "sort=act_times&order=asc&alive=true",
      "sort=max",
      "sort=index",
      "sort=index&alive=false",
    ];
    const listPaths = Array.from({ length: REQUESTS }, (_, k) => {
      const page = Math.floor(r() * (D_SAE / 50 - 1));
      return `${base}/features?${listQueries[k % listQueries.length]}&skip=${page * 50}&limit=50`;
    });
    report({
      bench: "viewer",
      metric: `one feature, median of ${REQUESTS}`,
      value: await timeRequests(handler, featurePaths),
      unit: "ms",
      limit: 50,
    });
    const cold = createViewerHandler(store, { cacheMs: 0 });
    const t1 = performance.now();
    await timeRequests(handler, [`${base}/features?q=warm`], 0);
    const indexMs = performance.now() - t1;
    report({
      bench: "viewer",
      metric: `one list page of 50, median of ${REQUESTS}`,
      value: await timeRequests(handler, listPaths),
      unit: "ms",
      limit: 50,
    });
    report({
      bench: "viewer",
      metric: "same, from the store (no cache)",
      value: await timeRequests(cold, listPaths),
      unit: "ms",
      limit: 50,
    });
    report({
      bench: "viewer",
      metric: "summary index load (once per analysis)",
      value: indexMs,
      unit: "ms",
    });
    const searchPaths = Array.from(
      { length: 10 },
      (_, k) => `${base}/features?q=topic%20${k * 37}&sort=act_times&limit=50`,
    );
    report({
      bench: "viewer",
      metric: "list page with text search, median of 10",
      value: await timeRequests(handler, searchPaths),
      unit: "ms",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

if (import.meta.main) {
  const { report } = await import("./_report.ts");
  await viewerBench(report);
}
