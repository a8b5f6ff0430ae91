/**
 * Utilities for the viewer tests: a small synthetic store ({@linkcode fillStore}) and a running
 * viewer over it ({@linkcode withViewer}).
 *
 * `fillStore` writes one SAE the way an analysis would: the SAE, model (with its vocabulary),
 * dataset and analysis documents, and feature records with samples, histograms, logits and
 * interpretations, including a dead feature, a feature that is not in the store, and a feature
 * whose top context holds tokens that are HTML/JS.
 *
 * @module
 */

import { LogHistogramBuilder } from "../lib/analysis/histogram.ts";
import { openStore } from "../lib/store/open.ts";
import type { FeatureStore } from "../lib/store/types.ts";
import type { FeatureAnalysis, FeatureRecord, Sample, Sampling } from "../lib/types.ts";
import { serveViewer, type ViewerServer } from "../lib/viewer/server.ts";
import { DEMO_CONFIG_PATH, loadSettings } from "../lib/settings/mod.ts";
import { analyzeSae } from "../pipelines/analyze.ts";

/** A token whose display string is a script element. */
export const XSS_SCRIPT = "<script>window.__xss=1</script>";
/** A token whose display string is an image with an `onerror` handler. */
export const XSS_IMG = '<img src=x onerror="window.__xss=1">';

/** What {@linkcode fillStore} wrote, for assertions. */
export interface Fixture {
  series: string;
  name: string;
  /** `d_sae` of the SAE. */
  dSae: number;
  /** Analysed tokens of the `default` analysis. */
  nTokens: number;
  vocab: string[];
  /** The features written, by index. */
  records: Map<number, FeatureRecord>;
  /** A feature with `act_times = 0`. */
  deadIndex: number;
  /** An index below `d_sae` that has no feature document. */
  missingIndex: number;
  /** The feature whose top context holds {@linkcode XSS_SCRIPT} and {@linkcode XSS_IMG}. */
  xssIndex: number;
  /** A second analysis, covering fewer features. */
  otherAnalysis: string;
}

const WORDS = [
  "<bos>",
  " the",
  " cat",
  " sat",
  " on",
  " mat",
  ".",
  "\n",
  " dog",
  " ran",
  " to",
  " a",
  " park",
  ",",
  " and",
  " then",
  " it",
  " slept",
  " quietly",
  " in",
  " sun",
  " while",
  " birds",
  " sang",
  " above",
  " tree",
  " house",
  " river",
  " old",
  " man",
  " said",
  " hello",
];

/** Explanations of some features (index → text). */
const EXPLANATIONS: Record<number, string> = {
  0: "The word cat and other small animals",
  1: "Punctuation at the end of a sentence",
  2: "Verbs of motion such as ran or sat",
  5: "HTML markup in web text",
  8: "Animals resting, e.g. a cat or dog sleeping",
};

function sentence(seed: number, length: number): number[] {
  const out: number[] = [];
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(1 + (x >>> 8) % (WORDS.length - 1));
  }
  return out;
}

function sample(tokens: number[], peakPos: number, peak: number, row: number): Sample {
  const acts = new Float32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const d = Math.abs(i - peakPos);
    if (d <= 2) acts[i] = peak * (1 - d * 0.35);
  }
  return {
    tokens: Int32Array.from(tokens),
    acts,
    peak: acts[peakPos]!,
    peak_pos: peakPos,
    source: "synthetic",
    shard: 0,
    row,
    offset: 0,
  };
}

function analysisOf(
  index: number,
  actTimes: number,
  maxAct: number,
  nTokens: number,
  top: number[][],
): FeatureAnalysis {
  const hist = new LogHistogramBuilder(0.02);
  for (let k = 0; k < actTimes; k++) hist.add(maxAct * (0.05 + 0.95 * ((k * 7919) % 101) / 100));
  const samplings: Sampling[] = [];
  if (actTimes > 0) {
    samplings.push({
      name: "top_activations",
      band: null,
      samples: top.map((tokens, j) =>
        sample(tokens, 3 + (j % 4), maxAct * (1 - j * 0.12), index * 10 + j)
      ),
    });
    samplings.push({
      name: "subsample-0.5",
      band: [0.25, 0.5],
      samples: [sample(sentence(index * 31 + 7, 20), 6, maxAct * 0.4, index * 10 + 8)],
    });
  }
  return {
    act_times: actTimes,
    n_analyzed_tokens: nTokens,
    max_activation: maxAct,
    mean: actTimes > 0 ? maxAct * 0.5 : 0,
    std: actTimes > 0 ? maxAct * 0.2 : 0,
    histogram: hist.toLogHistogram(),
    quantiles: actTimes > 0 ? [0.5, 0.9, 0.99].map((q) => ({ q, value: hist.quantile(q) })) : [],
    samplings,
  };
}

/**
 * Fills a store with one synthetic SAE (`test/tiny-sae`, 16 features) and returns what it wrote.
 * Replace this function to run the viewer tests over another store: the browser test reads its
 * expectations through the API, not from here (except the XSS test, which needs its feature).
 */
export async function fillStore(store: FeatureStore): Promise<Fixture> {
  const series = "test";
  const name = "tiny-sae";
  const dSae = 16;
  const nTokens = 10_000;
  const vocab = [...WORDS, XSS_SCRIPT, XSS_IMG];
  const scriptId = vocab.indexOf(XSS_SCRIPT);
  const imgId = vocab.indexOf(XSS_IMG);
  const fixture: Fixture = {
    series,
    name,
    dSae,
    nTokens,
    vocab,
    records: new Map(),
    deadIndex: 3,
    missingIndex: 14,
    xssIndex: 5,
    otherAnalysis: "second",
  };
  await store.putModel({ name: "tiny-model", config: { vocab_size: vocab.length }, vocab });
  await store.putDataset({ name: "synthetic", config: { path: "synthetic.jsonl" } });
  await store.putSae({
    name,
    series,
    path: "/models/tiny-sae",
    config: { d_sae: dSae, act_fn: "relu" },
    d_sae: dSae,
    d_model: 8,
    hook_point: "blocks.1.hook_resid_post",
    model: "tiny-model",
  });
  for (const [analysis, tokens] of [["default", nTokens], ["second", 5_000]] as const) {
    await store.putAnalysis({
      sae_series: series,
      sae_name: name,
      name: analysis,
      settings: { total_analyzing_tokens: tokens, n_samples: 4, context_size: 24 },
      status: "complete",
      n_analyzed_tokens: tokens,
      started_at: "2026-01-01T00:00:00.000Z",
      finished_at: "2026-01-01T00:01:00.000Z",
      timings: { analyze: 60 },
    });
  }
  const records: FeatureRecord[] = [];
  for (let index = 0; index < dSae; index++) {
    if (index === fixture.missingIndex) continue;
    const dead = index === fixture.deadIndex;
    // Distinct, non-monotonic counts and maxima, so that every sort order differs.
    const actTimes = dead ? 0 : 5 + ((index * 37) % 61) * 3;
    const maxAct = dead ? 0 : Number((1 + ((index * 53) % 17) * 0.5).toFixed(2));
    const top = [0, 1, 2, 3].map((j) => sentence(index * 100 + j, 24));
    if (index === 0) {
      top[0] = [0, 1, 2, 3, 4, 1, 5, 6, 7, 1, 8, 9, 10, 11, 12, 6, ...sentence(1, 8)];
    }
    if (index === fixture.xssIndex) {
      top[0] = [1, scriptId, 2, imgId, 3, 4, 1, 5, 6, ...sentence(2, 12)];
    }
    const record: FeatureRecord = {
      sae_series: series,
      sae_name: name,
      index,
      analyses: { default: analysisOf(index, actTimes, maxAct, nTokens, top) },
      logits: {
        top_positive: [2, 8, 5, 12, 20].map((id, k) => ({
          token: vocab[id]!,
          id,
          logit: 3 - k * 0.4 + index / 100,
        })),
        top_negative: [6, 13, scriptId, 19, 24].map((id, k) => ({
          token: vocab[id]!,
          id,
          logit: -2.5 + k * 0.3,
        })),
        histogram: {
          edges: Float64Array.from({ length: 21 }, (_, k) => -3 + k * 0.3),
          counts: Float64Array.from(
            { length: 20 },
            (_, k) => Math.round(100 * Math.exp(-((k - 9.5) ** 2) / 12)),
          ),
        },
      },
    };
    if (index < 4) {
      record.analyses.second = analysisOf(index, dead ? 0 : actTimes + 7, maxAct + 1, 5_000, top);
    }
    const text = EXPLANATIONS[index];
    if (text !== undefined) {
      record.interpretation = {
        text,
        method: "openai",
        model: "gpt-test",
        consistency: 4,
        scores: {
          detection: {
            accuracy: 0.8,
            precision: 0.75,
            recall: 0.9,
            f1: 0.82,
            balanced_accuracy: 0.8,
            tp: 9,
            fp: 3,
            tn: 7,
            fn: 1,
          },
          fuzzing: { skipped: "no activating examples" },
        },
        passed: true,
        at: "2026-01-01T00:02:00.000Z",
      };
    }
    records.push(record);
    fixture.records.set(index, record);
  }
  await store.writeFeatures(records);
  return fixture;
}

/** What {@linkcode withViewer} hands a test. */
export interface ViewerEnv {
  store: FeatureStore;
  fixture: Fixture;
  server: ViewerServer;
  /** A temporary folder the test may write to (screenshots); removed afterwards. */
  dir: string;
}

/**
 * Runs `fn` with a SQLite store in a temporary folder filled by {@linkcode fillStore} and a
 * viewer serving it on a free loopback port; shuts both down and removes the folder afterwards.
 */
export async function withViewer<T>(fn: (env: ViewerEnv) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "saeflow_viewer_" });
  try {
    await using store = await openStore({ outputDir: dir });
    const fixture = await fillStore(store);
    await using server = serveViewer(store, { port: 0 });
    return await fn({ store, fixture, server, dir });
  } finally {
    if (!Deno.env.get("KEEP_VIEWER_TMP")) await Deno.remove(dir, { recursive: true });
    else console.log(`kept ${dir}`);
  }
}

/** Runs `fn` with a store filled by {@linkcode fillStore} in a temporary folder. */
export async function withFilledStore<T>(
  fn: (store: FeatureStore, fixture: Fixture) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "saeflow_viewer_" });
  try {
    await using store = await openStore({ outputDir: dir });
    return await fn(store, await fillStore(store));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Where the demo analysis put its SAE, for tests that browse it. */
export interface DemoFixture {
  series: string;
  name: string;
  /** A feature that never fired. */
  deadIndex: number;
}

/**
 * Runs `fn` with a viewer over a SQLite store filled by the real demo analysis (the bundled demo
 * configuration, `deno task analyze`), in a temporary folder removed afterwards.
 */
export async function withDemoViewer<T>(
  fn: (
    env: { store: FeatureStore; fixture: DemoFixture; server: ViewerServer; dir: string },
  ) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "saeflow_viewer_demo_" });
  try {
    const settings = await loadSettings(DEMO_CONFIG_PATH, "analyze", {
      overrides: [`output_dir=${JSON.stringify(dir)}`],
      env: {},
    });
    await analyzeSae(settings, { progress: false, log: () => {} });
    await using store = await openStore({ outputDir: dir });
    const [dead] = await store.listFeatures({
      series: settings.sae_series,
      name: settings.sae_name,
      alive: false,
      limit: 1,
    });
    if (!dead) throw new Error("the demo analysis has no dead feature to browse");
    const fixture = { series: settings.sae_series, name: settings.sae_name, deadIndex: dead.index };
    await using server = serveViewer(store, { port: 0 });
    return await fn({ store, fixture, server, dir });
  } finally {
    if (!Deno.env.get("KEEP_VIEWER_TMP")) await Deno.remove(dir, { recursive: true });
    else console.log(`kept ${dir}`);
  }
}
