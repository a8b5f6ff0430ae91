/**
 * `analyzeSae` end to end on a planted model, where every answer is known before the run: a
 * generated ONNX "language model" whose hook is `one-hot(token) · (position + 1)`, a word-level
 * tokenizer, and an lm-saes SAE whose feature k fires exactly on token `wk` with activation
 * `0.25·k·(position + 1)` (all exact in float32). The rows below place the planted tokens at chosen
 * positions; the test asserts act_times, max, mean, std, histogram, top contexts (with a tie),
 * band membership at the band edges, non-activating samples, windows, dead features (masked BOS,
 * ignored ids, truncated tokens, features with no input) exactly — through the real dataset
 * reader, tokenizer, fused ONNX session, analyzer and SQLite store, and again through the unfused
 * model-hook → SAE-encode path.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseSettings } from "../lib/settings/mod.ts";
import { openStore } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { analyzeSae } from "../pipelines/analyze.ts";
import type { AnalyzeSummary } from "../pipelines/summary.ts";
import {
  analyzedTokens,
  checkFeature,
  type DenseRun,
  featureFacts,
  PLANTED,
  plantedStrength,
  plantedWord,
  writePlanted,
} from "./_analyze_utils.ts";
import { withTempDir } from "./_utils.ts";

const T = 16;
const SOURCE = "planted-rows";
const IGNORED = 5;
const WINDOW = { before: 4, after: 2 };
const SEED = 7;

/** A row of `len` words: fillers, with planted token ids at the given context positions (BOS = 0). */
function row(len: number, planted: Record<number, number> = {}): string {
  const words: string[] = [];
  for (let p = 1; p <= len; p++) {
    words.push(plantedWord(planted[p] ?? PLANTED.planted + 1 + ((p * 13 + len) % 59)));
  }
  return words.join(" ");
}

/** The rows, with what each one is for. Feature 1's max is 0.25·16 = 4 (rows 0 and 1). */
const ROWS: string[] = [
  row(15, { 15: 1 }), //   0: f1 peak 4.0 (= max)
  row(15, { 15: 1 }), //   1: f1 peak 4.0: a tie, goes after row 0
  row(12, { 11: 1 }), //   2: f1 peak 3.0 = 0.75·max: in band_75 (upper edge inclusive)
  row(9, { 7: 1 }), //     3: f1 peak 2.0 = 0.5·max: in band_50, not band_75 (lower edge exclusive)
  row(10, { 9: 1 }), //    4: f1 peak 2.5: band_75
  row(15, { 10: 1 }), //   5: f1 peak 2.75: band_75
  row(8, { 2: 1, 5: 1 }), // 6: f1 twice, peak 1.5 at position 5: band_50
  row(22, { 1: 1, 20: 1 }), // 7: f1 at 1 (0.5) and at 20 — cut off by the context size
  "", //                   8: BOS alone: nothing analyzed, never a non-activating sample
  row(6), //               9: fillers only
  row(5, { 2: IGNORED, 3: 2 }), // 10: an ignored token; f2 peak 2.0
  row(10, { 1: 3, 2: 3, 3: 3, 8: 2 }), // 11: f3 three times (1.5, 2.25, 3.0); f2 peak 4.5
  row(14, { 13: 1 }), //  12: f1 peak 3.5: top 3, in no band
  row(2, { 2: 4 }), //    13: a short row (padding after); f4 peak 3.0
  `${plantedWord(50)} <|endoftext|> ${plantedWord(51)}`, // 14: a literal EOS (id 0): masked
];

const SAMPLINGS = [
  { name: "top_activations", kind: "top", proportion: 1, lower: 0, n_samples: 3 },
  { name: "band_75", kind: "band", proportion: 0.75, lower: 0.5, n_samples: 2 },
  { name: "band_50", kind: "band", proportion: 0.5, lower: 0, n_samples: 10 },
  { name: "non_activating", kind: "non_activating", proportion: 0, lower: 0, n_samples: 4 },
] as const;

function settingsToml(dirs: { modelDir: string; saeDir: string; rows: string; out: string }) {
  return `
sae_name = "planted"
sae_series = "tests"
model_name = "planted-lm"
output_dir = ${JSON.stringify(dirs.out)}

[sae]
pretrained_name_or_path = ${JSON.stringify(dirs.saeDir)}

[model]
model_name = "planted-lm"
model_from_pretrained_path = ${JSON.stringify(dirs.modelDir)}

[datasets.${SOURCE}]
dataset_name_or_path = ${JSON.stringify(dirs.rows)}

[activation_factory]
target = "activations-2d"
hook_points = ["${PLANTED.hook}"]
batch_size = 3
context_size = ${T}

[[activation_factory.sources]]
type = "dataset"
name = "${SOURCE}"

[analyzer]
total_analyzing_tokens = 1_000_000
ignore_token_ids = [${IGNORED}]
window_before = ${WINDOW.before}
window_after = ${WINDOW.after}
seed = ${SEED}

[analyzer.subsamples]
top_activations = { proportion = 1.0, n_samples = 3 }
band_75 = { proportion = 0.75, n_samples = 2 }
band_50 = { proportion = 0.5, n_samples = 10 }
non_activating = { proportion = 0.3, n_samples = 4 }
`;
}

/** The contexts and activations the planted construction implies, from the rows alone. */
function expectedRun(): DenseRun {
  const ids = new Map<string, number>();
  for (let t = 0; t < PLANTED.vocab; t++) ids.set(plantedWord(t), t);
  const N = PLANTED.dSae;
  const acts = new Float32Array(ROWS.length * T * N);
  const contexts = ROWS.map((text, r) => {
    const words = text.split(/\s+/).filter((w) => w !== "");
    const tokens = new Int32Array(T); // BOS = pad = 0
    const mask = new Uint8Array(T);
    const length = Math.min(T, words.length + 1);
    for (let p = 1; p < length; p++) {
      const id = ids.get(words[p - 1]!)!;
      tokens[p] = id;
      mask[p] = id === 0 || id === IGNORED ? 0 : 1;
      if (mask[p] && id <= PLANTED.planted) {
        acts[(r * T + p) * N + id] = plantedStrength(id) * (p + 1);
      }
    }
    return { tokens, mask, length, origin: { source: SOURCE, shard: 0, row: r, offset: 0 } };
  });
  return { contexts, contextSize: T, dSae: N, acts };
}

/** Runs the pipeline on the planted fixture and reads every feature back from the store. */
async function runPlanted(dir: string, fused: boolean) {
  const dirs = await writePlanted(dir);
  const rows = join(dir, "rows.jsonl");
  await Deno.writeTextFile(rows, ROWS.map((text) => JSON.stringify({ text })).join("\n") + "\n");
  const out = join(dir, `out-${fused}`);
  const file = join(dir, "analyze.toml");
  const settings = parseSettings(settingsToml({ ...dirs, rows, out }), file, "analyze", {
    env: {},
    cwd: dir,
  });
  const lines: string[] = [];
  const summary = await analyzeSae(settings, {
    log: (l) => lines.push(l),
    progress: false,
    fused,
    threads: 1,
  });
  await using store = await openStore({ outputDir: out });
  const records = await Array.fromAsync(store.readFeatures("tests", "planted"));
  const analysisDoc = await store.getAnalysis("tests", "planted", "default");
  const model = await store.getModel("planted-lm");
  return { summary, lines, records, analysisDoc, vocab: model?.vocab, settings };
}

function rowsOf(record: FeatureRecord, sampling: string): number[] {
  const s = record.analyses.default!.samplings.find((x) => x.name === sampling);
  assert.ok(s, `feature ${record.index}: no sampling ${sampling}`);
  return s.samples.map((x) => x.row);
}

function checkPlanted(
  result: Awaited<ReturnType<typeof runPlanted>>,
  wantFused: boolean,
): void {
  const { summary, records } = result;
  const run = expectedRun();

  // The summary and the analysis document.
  const expectSummary: Partial<AnalyzeSummary> = {
    tokens: ROWS.length * T,
    analyzedTokens: analyzedTokens(run),
    alive: 4,
    dead: PLANTED.dSae - 4,
    fused: wantFused,
  };
  for (const [k, v] of Object.entries(expectSummary)) {
    assert.equal(summary[k as keyof AnalyzeSummary], v, `summary.${k}`);
  }
  assert.deepEqual(
    summary.densest.map((d) => [d.index, d.act_times, d.top_token]),
    [[1, 10, "w1"], [3, 3, "w3"], [2, 2, "w2"], [4, 1, "w4"]],
  );
  assert.equal(result.analysisDoc?.status, "complete");
  assert.equal(result.analysisDoc?.n_analyzed_tokens, analyzedTokens(run));
  assert.equal(result.vocab?.[7], "w7");

  // Every feature, against the generic expectation (exact: all tolerances 0).
  assert.deepEqual(records.map((r) => r.index), [...Array(PLANTED.dSae).keys()]);
  for (const record of records) {
    const a = record.analyses.default!;
    assert.equal(a.n_analyzed_tokens, analyzedTokens(run), `feature ${record.index}`);
    checkFeature(a, featureFacts(run, record.index), run, {
      samplings: SAMPLINGS,
      windowBefore: WINDOW.before,
      windowAfter: WINDOW.after,
      seed: SEED,
      tol: { value: 0, stats: 0 },
    });
  }

  // And the facts the rows were designed for, spelled out.
  const f1 = records[1]!.analyses.default!;
  assert.equal(f1.act_times, 10); // rows 0-6 (row 6 twice), row 7 once (the second one is cut), 12
  assert.equal(f1.max_activation, 4);
  assert.equal(f1.mean, (4 + 4 + 3 + 2 + 2.5 + 2.75 + 0.75 + 1.5 + 0.5 + 3.5) / 10);
  assert.deepEqual(rowsOf(records[1]!, "top_activations"), [0, 1, 12]);
  assert.deepEqual(rowsOf(records[1]!, "band_50"), [3, 6, 7]);
  const band75 = rowsOf(records[1]!, "band_75");
  assert.equal(band75.length, 2);
  assert.ok(band75.every((r) => [2, 4, 5].includes(r)), `band_75 rows ${band75}`);
  const nonAct = rowsOf(records[1]!, "non_activating");
  assert.equal(nonAct.length, 4);
  assert.ok(nonAct.every((r) => [9, 10, 11, 13, 14].includes(r)), `non_activating ${nonAct}`);

  const top6 = f1.samplings.find((s) => s.name === "band_50")!.samples[1]!; // row 6: 2 occurrences
  assert.deepEqual([...top6.acts], [0, 0.75, 0, 0, 1.5, 0, 0]); // window 1..7 around position 5
  assert.equal(top6.peak_pos, 4);
  assert.equal(top6.offset, 1);

  const f3 = records[3]!.analyses.default!;
  assert.deepEqual([f3.act_times, f3.max_activation, f3.mean], [3, 3, 2.25]);
  assert.ok(Math.abs(f3.std - Math.sqrt(0.375)) < 1e-15);
  const s3 = f3.samplings[0]!.samples[0]!;
  assert.deepEqual([...s3.tokens], [
    0,
    3,
    3,
    3,
    run.contexts[11]!.tokens[4]!,
    run.contexts[11]!.tokens[5]!,
  ]);
  assert.deepEqual([...s3.acts], [0, 1.5, 2.25, 3, 0, 0]);

  const s4 = records[4]!.analyses.default!.samplings[0]!.samples[0]!; // the short row
  assert.deepEqual([...s4.tokens], [0, run.contexts[13]!.tokens[1]!, 4]);
  assert.deepEqual([...s4.acts], [0, 0, 3]);

  // Dead: feature 0 (only on BOS / EOS / padding), 5 (ignored id), 6 (no such token), 41+ (no input).
  for (const f of [0, 5, 6, 40, 41, 79]) {
    const a = records[f]!.analyses.default!;
    assert.equal(a.act_times, 0, `feature ${f}`);
    assert.deepEqual(a.samplings, [], `feature ${f}`);
  }
}

Deno.test("analyzeSae() finds exactly the planted features (fused model+SAE graph)", async () => {
  await withTempDir(async (dir) => {
    const result = await runPlanted(dir, true);
    checkPlanted(result, true);
    assert.ok(result.lines.some((l) => l.includes("(fused model+SAE graph)")));
    // The fused graph's own time is recorded, and is part of the data flow's time.
    const t = result.analysisDoc!.timings!;
    assert.ok(t.encode! > 0 && t.encode! <= t.stream!, JSON.stringify(t));
  });
});

Deno.test("analyzeSae() finds exactly the planted features (model hook, then SAE encoder)", async () => {
  await withTempDir(async (dir) => {
    const result = await runPlanted(dir, false);
    checkPlanted(result, false);
    assert.equal(result.analysisDoc!.timings!.encode, undefined); // not one fused graph
    assert.ok(result.analysisDoc!.timings!.stream! > 0);
  });
});
