/**
 * Rerun write speed (issue #12): replacing a complete analysis must cost no more than twice its
 * first write. On each store (SQLite in a temporary folder; MongoDB too when `MONGO_URI` is set,
 * in a database of its own that is dropped afterwards), 8,192 features are written as a run
 * does: `beginAnalysisRun`, `writeFeatures` under its generation in batches of 256 (the store
 * writer's batch), `publishAnalysisRun`. Then the same again with other values: the rerun, whose
 * publish also removes the first run's generation. Timed from the begin to the end of the
 * publish; the records are built before the clock starts.
 *
 * Each feature is the size the analyze demo (`fixtures/demo/analyze.toml`) produces: samplings of
 * 10 top activations and 3 bands of 5 samples, windows of 64 tokens, a log histogram of 200
 * buckets, 9 quantiles, and DLA logits (10 + 10 tokens and a 50-bin histogram, the demo runs
 * DLA inline); one feature in 12 is dead (no samplings).
 *
 * Figures per store: the first write (s), the rerun (s, `limit`: twice the first write measured
 * in the same run) and the ratio rerun / first write (`limit`: 2.0).
 *
 * @module
 */
import { dirname } from "node:path";
import type { Bench } from "./_report.ts";
import { mulberry32 as rng } from "../lib/_random.ts";
import { MongoFeatureStore } from "../lib/store/mongo.ts";
import { SqliteFeatureStore } from "../lib/store/sqlite.ts";
import type { FeatureStore } from "../lib/store/types.ts";
import type { FeatureRecord, Sample } from "../lib/types.ts";

const D_SAE = 8192;
const BATCH = 256;
const WINDOW = 64;
const VOCAB = 50_304;
const N_TOKENS = 1_000_000;
const LIMIT = 2.0;
const SERIES = "bench";
const NAME = "rerun-sae";

function sample(r: () => number, peak: number, row: number): Sample {
  const tokens = new Int32Array(WINDOW);
  const acts = new Float32Array(WINDOW);
  for (let i = 0; i < WINDOW; i++) {
    tokens[i] = Math.floor(r() * VOCAB);
    if (r() < 0.15) acts[i] = peak * r() * 0.8;
  }
  acts[32] = peak;
  return {
    tokens,
    acts,
    peak: acts[32]!,
    peak_pos: 32,
    source: "corpus",
    shard: 0,
    row,
    offset: 0,
  };
}

/** Feature `index` of run `run` (the values differ between runs, the sizes do not). */
function feature(index: number, run: number): FeatureRecord {
  const r = rng(index * 7919 + run * 104_729 + 1);
  const dead = index % 12 === 11;
  const max = dead ? 0 : 1 + 20 * r();
  const counts = new Float64Array(dead ? 0 : 200);
  for (let i = 0; i < counts.length; i++) counts[i] = Math.floor(r() * 100);
  const band = (lo: number, hi: number, k: number) => ({
    name: `subsample-${hi}`,
    band: [lo, hi] as [number, number],
    samples: Array.from({ length: 5 }, (_, j) => sample(r, max * (lo + 0.1), 100 + k * 10 + j)),
  });
  return {
    sae_series: SERIES,
    sae_name: NAME,
    index,
    analyses: {
      default: {
        act_times: dead ? 0 : 1 + Math.floor(r() * 10_000),
        n_analyzed_tokens: N_TOKENS,
        max_activation: max,
        mean: max / 3,
        std: max / 6,
        histogram: { relative_accuracy: 0.01, index_offset: -200, counts },
        quantiles: [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99].map((q) => ({
          q,
          value: max * q,
        })),
        samplings: dead ? [] : [
          {
            name: "top_activations",
            band: null,
            samples: Array.from({ length: 10 }, (_, j) => sample(r, max * (1 - j * 0.03), j)),
          },
          band(0.5, 0.75, 0),
          band(0.25, 0.5, 1),
          band(0, 0.25, 2),
        ],
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
        edges: Float64Array.from({ length: 51 }, (_, k) => -6 + k * 0.24),
        counts: Float64Array.from({ length: 50 }, () => Math.floor(r() * 3000)),
      },
    },
  };
}

/** One run as the analyze runner does it; returns its seconds. */
async function timedRun(store: FeatureStore, run: number): Promise<number> {
  const records = Array.from({ length: D_SAE }, (_, i) => feature(i, run));
  const doc = {
    sae_series: SERIES,
    sae_name: NAME,
    name: "default",
    settings: { run },
    n_analyzed_tokens: N_TOKENS,
    started_at: new Date().toISOString(),
    timings: {},
  };
  const started = performance.now();
  const lease = await store.beginAnalysisRun(doc, { owner: "bench", leaseMs: 600_000 });
  for (let i = 0; i < records.length; i += BATCH) {
    await store.writeFeatures(records.slice(i, i + BATCH), { generation: lease.generation });
  }
  await store.publishAnalysisRun(
    { ...doc, finished_at: new Date().toISOString() },
    lease.generation,
  );
  const seconds = (performance.now() - started) / 1000;
  // Not timed: the published result is the whole run.
  const count = await store.countFeatures({ series: SERIES, name: NAME });
  const probe = await store.getFeature(SERIES, NAME, 4321);
  if (
    count !== D_SAE ||
    probe?.analyses.default?.act_times !== records[4321]!.analyses.default!.act_times
  ) {
    throw new Error(`store_rerun: run ${run} published ${count} features, or the wrong ones`);
  }
  return seconds;
}

/** The benchmark (see the module documentation). */
export const storeRerunBench: Bench = async (report) => {
  const stores: {
    label: string;
    open: () => Promise<FeatureStore & { close(): Promise<void> }>;
    cleanup: (store: FeatureStore) => Promise<void>;
  }[] = [];
  stores.push({
    label: "sqlite",
    open: async () =>
      SqliteFeatureStore.open({ outputDir: await Deno.makeTempDir({ prefix: "saeflow_bench_" }) }),
    cleanup: async (store) => {
      await store.close();
      await Deno.remove(dirname(store.location), { recursive: true });
    },
  });
  const uri = Deno.env.get("MONGO_URI")?.trim();
  if (uri) {
    const db = `saeflow_bench_rerun_${crypto.randomUUID().slice(0, 8)}`;
    stores.push({
      label: "mongodb",
      open: () => MongoFeatureStore.open({ uri, db, timeoutMs: 10_000 }),
      cleanup: async (store) => {
        try {
          await (store as MongoFeatureStore).dropDatabase();
        } finally {
          await store.close();
        }
      },
    });
  } else {
    console.log("# store_rerun: MONGO_URI unset, MongoDB not measured");
  }
  for (const { label, open, cleanup } of stores) {
    const store = await open();
    try {
      const first = await timedRun(store, 1);
      const rerun = await timedRun(store, 2);
      report({
        bench: "store_rerun",
        metric: `${label} first write (8192 features)`,
        value: first,
        unit: "s",
      });
      report({
        bench: "store_rerun",
        metric: `${label} rerun write (8192 features)`,
        value: rerun,
        unit: "s",
        limit: LIMIT * first,
      });
      report({
        bench: "store_rerun",
        metric: `${label} rerun / first write`,
        value: rerun / first,
        unit: "x",
        limit: LIMIT,
      });
    } finally {
      await cleanup(store);
    }
  }
};
