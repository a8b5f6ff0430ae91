/**
 * Sharded analysis: `analyzeSae(settings, { shard })` stores analyzer states, `mergeAnalysis`
 * combines them into exactly the analysis one unsharded run gives; the `--shard` flag, the
 * Kubernetes / Slurm environment defaults and `saeflow merge` through the real CLI.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../lib/errors.ts";
import { loadSettings } from "../lib/settings/mod.ts";
import { type FeatureStore, featureToJson, openStore } from "../lib/store/mod.ts";
import { analyzeSae, mergeAnalysis, resolveShard } from "../pipelines/mod.ts";
import { FIXTURES, runCli, writeSlicedSae } from "./_analyze_utils.ts";
import { mongoIgnored, withMongo, withTempDir } from "./_utils.ts";

const SERIES = "demo";
const SAE = "demo-sae";
const quiet = { progress: false, log: () => {} } as const;

/**
 * Writes the demo corpus as a dataset of TWO files (so that shard i/2 reads file i) and a
 * settings file for it; `extra` is appended to the top-level keys.
 */
async function writeSetup(
  dir: string,
  options: { extra?: string; sae?: string; dla?: boolean } = {},
): Promise<string> {
  const lines = (await Deno.readTextFile(`${FIXTURES}text/corpus.jsonl`)).trimEnd().split("\n");
  const data = join(dir, "data");
  await Deno.mkdir(data, { recursive: true });
  // 253 rows: not a whole number of batches of 8, so one batch of the unsharded run holds rows of
  // both files. The analyzer's statistics do not depend on batching, so the merge is still exact.
  const half = 253;
  await Deno.writeTextFile(join(data, "part-0.jsonl"), lines.slice(0, half).join("\n") + "\n");
  await Deno.writeTextFile(join(data, "part-1.jsonl"), lines.slice(half).join("\n") + "\n");
  const toml = `
sae_name = "${SAE}"
sae_series = "${SERIES}"
model_name = "tiny-neox"
output_dir = "${join(dir, "out")}"
${options.extra ?? ""}

[sae]
pretrained_name_or_path = "${options.sae ?? `${FIXTURES}sae/lm-saes-relu`}"

[model]
model_name = "tiny-neox"
model_from_pretrained_path = "${FIXTURES}tiny-neox"

[datasets.two-files]
dataset_name_or_path = "${data}"

[activation_factory]
hook_points = ["blocks.3.hook_resid_post"]
batch_size = 8
context_size = 64

[[activation_factory.sources]]
type = "dataset"
name = "two-files"

[analyzer]
total_analyzing_tokens = 1_000_000

[analyzer.subsamples]
top_activations = { proportion = 1.0, n_samples = 10 }
"subsample-0.75" = { proportion = 0.75, n_samples = 5 }
"subsample-0.5" = { proportion = 0.5, n_samples = 5 }
"subsample-0.25" = { proportion = 0.25, n_samples = 5 }
${options.dla === false ? "" : "\n[direct_logit_attributor]\ntop_k = 10\n"}`;
  const file = join(dir, "analyze.toml");
  await Deno.writeTextFile(file, toml);
  return file;
}

/** Every feature of one analysis as `show feature --json` prints it, that analysis only. */
async function shown(store: FeatureStore, analysis: string): Promise<unknown[]> {
  const vocab = (await store.getModel("tiny-neox"))?.vocab;
  const out: unknown[] = [];
  for await (const r of store.readFeatures(SERIES, SAE, { analysis })) {
    const doc = featureToJson(r, vocab) as unknown as Record<string, unknown>;
    const analyses = doc.analyses as Record<string, unknown>;
    out.push({ ...doc, analyses: analyses[analysis] });
  }
  return out;
}

Deno.test("two shards merged give exactly the analysis of one unsharded run", async () => {
  await withTempDir(async (dir) => {
    const file = await writeSetup(dir);
    const settingsOf = (name: string) =>
      loadSettings(file, "analyze", { overrides: [`feature_analysis_name="${name}"`], env: {} });
    const sharded = await settingsOf("merged");

    const s1 = await analyzeSae(sharded, { ...quiet, shard: { index: 1, count: 2 } });
    assert.deepEqual(s1.shard?.done, [1]);
    {
      await using store = await openStore({ outputDir: join(dir, "out") });
      const doc = await store.getAnalysis(SERIES, SAE, "merged");
      assert.equal(doc?.status, "partial");
      assert.deepEqual(doc?.shards, { count: 2, done: [1] });
      assert.equal(await store.countFeatures({ series: SERIES, name: SAE, analysis: "merged" }), 0);
    }
    // A missing shard is named.
    await assert.rejects(
      () => mergeAnalysis(sharded, { log: () => {} }),
      (e) =>
        e instanceof ConfigError &&
        e.message ===
          `Cannot merge analysis "merged" of ${SERIES}/${SAE}: shard 0/2 missing (stored: 1)`,
    );
    const s0 = await analyzeSae(sharded, { ...quiet, shard: { index: 0, count: 2 } });
    assert.deepEqual(s0.shard?.done, [0, 1]);
    // Each shard read its own file: together, all the tokens.
    const whole = await analyzeSae(await settingsOf("whole"), quiet);
    assert.equal(s0.tokens + s1.tokens, whole.tokens);
    assert.ok(s0.tokens > 0 && s1.tokens > 0);

    const lines: string[] = [];
    const merged = await mergeAnalysis(sharded, { log: (l) => lines.push(l) });
    assert.equal(merged.shards, 2);
    assert.equal(lines[0], `merged 2 shard states of analysis "merged" of ${SERIES}/${SAE}`);
    assert.equal(merged.analyzedTokens, whole.analyzedTokens);
    assert.deepEqual([merged.alive, merged.dead], [whole.alive, whole.dead]);

    await using store = await openStore({ outputDir: join(dir, "out") });
    const a = await shown(store, "merged");
    const b = await shown(store, "whole");
    assert.equal(a.length, 256);
    assert.equal(b.length, 256);
    // act_times, statistics, histograms, every sample of every sampling, and the DLA logits.
    for (let i = 0; i < 256; i++) assert.deepEqual(a[i], b[i], `feature ${i}`);
    const doc = await store.getAnalysis(SERIES, SAE, "merged");
    assert.equal(doc?.status, "complete");
    assert.equal(doc?.n_analyzed_tokens, whole.analyzedTokens);
    assert.deepEqual(doc?.shards, { count: 2, done: [0, 1] });
    // The shard states are gone once the analysis is complete.
    assert.deepEqual(await store.listAnalyzerStates(SERIES, SAE, "merged"), []);
  });
});

Deno.test("a shard splits total_analyzing_tokens evenly and a re-run replaces its state", async () => {
  await withTempDir(async (dir) => {
    const file = await writeSetup(dir, { dla: false });
    const settings = await loadSettings(file, "analyze", {
      overrides: ["analyzer.total_analyzing_tokens=2000"],
      env: {}, // the SQLite store under output_dir, whatever MONGO_URI the test process has
    });
    const first = await analyzeSae(settings, { ...quiet, shard: { index: 0, count: 2 } });
    // ceil(2000 / 2) = 1000 tokens: two batches of 8×64 reach it.
    assert.equal(first.tokens, 1024);
    await using store = await openStore({ outputDir: join(dir, "out") });
    const before = await store.listAnalyzerStates(SERIES, SAE, "default");
    assert.equal(before.length, 1);
    const again = await analyzeSae(settings, { ...quiet, shard: { index: 0, count: 2 } });
    assert.equal(again.tokens, 1024);
    const after = await store.listAnalyzerStates(SERIES, SAE, "default");
    assert.equal(after.length, 1);
    assert.equal(after[0]!.bytes, before[0]!.bytes);
    assert.ok(after[0]!.created_at >= before[0]!.created_at);
    // A shard of another count starts over: the states of the earlier job are removed.
    await analyzeSae(settings, { ...quiet, shard: { index: 2, count: 3 } });
    assert.deepEqual(
      (await store.listAnalyzerStates(SERIES, SAE, "default")).map((s) => [s.shard, s.count]),
      [[2, 3]],
    );
  });
});

const MONGO_MERGE = "shards stored in MongoDB merge into the same features as one run";
Deno.test({
  name: MONGO_MERGE,
  ignore: mongoIgnored(MONGO_MERGE),
  fn: async (t) => {
    await withTempDir((dir) =>
      withMongo(t, async ({ uri, db, store }) => {
        // A 16-feature slice of the SAE keeps the document count small for the test server.
        const sae = await writeSlicedSae(dir, 16);
        const mongo = `\n[mongo]\nmongo_uri = "${uri}"\nmongo_db = "${db}"\n`;
        const file = await writeSetup(dir, { sae, dla: false });
        await Deno.writeTextFile(file, (await Deno.readTextFile(file)) + mongo);
        const settingsOf = (name: string) =>
          loadSettings(file, "analyze", { overrides: [`feature_analysis_name="${name}"`] });
        const sharded = await settingsOf("merged");
        await analyzeSae(sharded, { ...quiet, shard: { index: 0, count: 2 } });
        await analyzeSae(sharded, { ...quiet, shard: { index: 1, count: 2 } });
        assert.equal((await store.listAnalyzerStates(SERIES, SAE, "merged")).length, 2);
        await mergeAnalysis(sharded, { log: () => {} });
        await analyzeSae(await settingsOf("whole"), quiet);
        const a = await shown(store, "merged");
        const b = await shown(store, "whole");
        assert.equal(a.length, 16);
        assert.deepEqual(a, b);
        assert.deepEqual(await store.listAnalyzerStates(SERIES, SAE, "merged"), []);
      })
    );
  },
});

Deno.test("resolveShard() reads --shard, then Kubernetes, then Slurm, and rejects bad values", async (t) => {
  const envOf = (vars: Record<string, string>) => (name: string) => vars[name];
  const good: [
    string,
    Parameters<typeof resolveShard>[0],
    { index: number; count: number } | undefined,
  ][] = [
    ["--shard wins", { shard: "1/2", env: envOf({ JOB_COMPLETION_INDEX: "0" }) }, {
      index: 1,
      count: 2,
    }],
    ["nothing: unsharded", { env: envOf({}) }, undefined],
    ["Kubernetes with --shards", { shards: "4", env: envOf({ JOB_COMPLETION_INDEX: "3" }) }, {
      index: 3,
      count: 4,
    }],
    [
      "Kubernetes with SAEFLOW_SHARDS",
      { env: envOf({ JOB_COMPLETION_INDEX: "0", SAEFLOW_SHARDS: "2" }) },
      { index: 0, count: 2 },
    ],
    [
      "Slurm from 0",
      { env: envOf({ SLURM_ARRAY_TASK_ID: "2", SLURM_ARRAY_TASK_COUNT: "3" }) },
      { index: 2, count: 3 },
    ],
    [
      "Slurm from 1",
      {
        env: envOf({
          SLURM_ARRAY_TASK_ID: "1",
          SLURM_ARRAY_TASK_MIN: "1",
          SLURM_ARRAY_TASK_MAX: "4",
          SLURM_ARRAY_TASK_COUNT: "4",
        }),
      },
      { index: 0, count: 4 },
    ],
  ];
  for (const [name, options, want] of good) {
    await t.step(name, () => assert.deepEqual(resolveShard(options), want));
  }
  const bad: [string, Parameters<typeof resolveShard>[0], string][] = [
    ["3/2", { shard: "3/2" }, '--shard: expected i/N with 0 <= i < N (e.g. 0/4), got "3/2"'],
    ["x/2", { shard: "x/2" }, '--shard: expected i/N with 0 <= i < N (e.g. 0/4), got "x/2"'],
    ["0/0", { shard: "0/0" }, '--shard: expected i/N with 0 <= i < N (e.g. 0/4), got "0/0"'],
    [
      "Kubernetes without a count",
      { env: envOf({ JOB_COMPLETION_INDEX: "1" }) },
      "JOB_COMPLETION_INDEX is set but the shard count is not: pass --shards N or set SAEFLOW_SHARDS (the Job's completions)",
    ],
    [
      "Kubernetes index too large",
      { shards: "2", env: envOf({ JOB_COMPLETION_INDEX: "2" }) },
      "JOB_COMPLETION_INDEX: 2 is not below the shard count 2",
    ],
    [
      "--shards 0",
      { shards: "0", env: envOf({ JOB_COMPLETION_INDEX: "0" }) },
      '--shards: expected a positive integer, got "0"',
    ],
    [
      "--shards without Kubernetes",
      { shards: "2", env: envOf({}) },
      "--shards: needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); else use --shard i/N",
    ],
    [
      "a Slurm array with a step",
      {
        env: envOf({
          SLURM_ARRAY_TASK_ID: "2",
          SLURM_ARRAY_TASK_MIN: "0",
          SLURM_ARRAY_TASK_MAX: "4",
          SLURM_ARRAY_TASK_COUNT: "3",
        }),
      },
      "SLURM_ARRAY_TASK_COUNT: 3 tasks do not fill 0-4: the array must be contiguous (e.g. --array=0-2)",
    ],
    [
      "Slurm without a count",
      { env: envOf({ SLURM_ARRAY_TASK_ID: "0" }) },
      "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
    ],
  ];
  for (const [name, options, message] of bad) {
    await t.step(name, () => {
      assert.throws(
        () => resolveShard(options),
        (e) => e instanceof ConfigError && e.message === message,
      );
    });
  }
});

Deno.test("`saeflow analyze --shard` and `saeflow merge` through the CLI", async (t) => {
  await withTempDir(async (dir) => {
    const file = await writeSetup(dir, { dla: false });
    await t.step("a bad --shard 2/2 exits 2 with one line, before anything is stored", async () => {
      const r = await runCli(["analyze", file, "--shard", "2/2"], { cwd: dir });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr,
        'saeflow: --shard: expected i/N with 0 <= i < N (e.g. 0/4), got "2/2"\n',
      );
      assert.equal(r.stdout, "");
      assert.equal(await Deno.stat(join(dir, "out")).catch(() => null), null);
    });
    await t.step("a bad JOB_COMPLETION_INDEX exits 2 with one line", async () => {
      const r = await runCli(["analyze", file, "--shards", "2"], {
        cwd: dir,
        env: { JOB_COMPLETION_INDEX: "x" },
      });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr,
        'saeflow: JOB_COMPLETION_INDEX: expected a non-negative integer, got "x"\n',
      );
    });
    await t.step("--shard 1/2 stores a state and says what is left", async () => {
      const r = await runCli(["analyze", file, "--shard", "1/2"], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split("\n");
      assert.match(
        lines.find((l) => l.startsWith("shard ")) ?? "",
        /^shard 1\/2: analyzer state stored \([\d.]+ MB\) in .*saeflow\.sqlite \(analysis "default"\)$/,
      );
      assert.equal(lines.at(-1), "shards done: 1; waiting for 0");
    });
    await t.step("merge with a shard missing exits 2 naming it", async () => {
      const r = await runCli(["merge", file], { cwd: dir });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr,
        `saeflow: Cannot merge analysis "default" of ${SERIES}/${SAE}: shard 0/2 missing (stored: 1)\n`,
      );
    });
    await t.step("show feature before the merge says the analysis is partial", async () => {
      const r = await runCli(
        ["show", "feature", SAE, "3", "--series", SERIES, "--output-dir", join(dir, "out")],
        { cwd: dir },
      );
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr,
        `saeflow: Feature 3 of ${SERIES}/${SAE} is not in the store: analysis "default" is partial (1 of 2 shards stored); run saeflow merge with its settings\n`,
      );
    });
    await t.step("the Slurm array index is the default shard; then merge completes", async () => {
      const r = await runCli(["analyze", file], {
        cwd: dir,
        env: { SLURM_ARRAY_TASK_ID: "1", SLURM_ARRAY_TASK_MIN: "1", SLURM_ARRAY_TASK_COUNT: "2" },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stdout.trimEnd().split("\n").at(-1),
        "all 2 shards are done: run saeflow merge with the same settings file",
      );
      const m = await runCli(["merge", file], { cwd: dir });
      assert.equal(m.code, 0, m.stderr);
      assert.equal(
        m.stdout.split("\n")[0],
        `merged 2 shard states of analysis "default" of ${SERIES}/${SAE}`,
      );
      await using store = await openStore({ outputDir: join(dir, "out") });
      assert.equal((await store.getAnalysis(SERIES, SAE, "default"))?.status, "complete");
      assert.equal(await store.countFeatures({ series: SERIES, name: SAE }), 256);
    });
  });
});
