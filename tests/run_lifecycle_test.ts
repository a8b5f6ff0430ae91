/**
 * Runs that fail, stop or overlap never leave a result that looks complete (issue #12), through
 * the real CLI on both stores:
 *
 * - `kill -9` of a rerun at several moments (during the data flow, and at the start, middle and
 *   end of its write phase) leaves the previous complete result exactly as it was — analysis
 *   document, every feature, the listing order — and the next run takes over the dead run's
 *   lease at once, publishes, and leaves one generation behind;
 * - SIGINT / SIGTERM: one line saying what was stopped and that nothing was published, exit
 *   130 / 143, the analysis `interrupted` (first run) or still `complete` with `run.status`
 *   `interrupted` (rerun), never `running`;
 * - a second run on the same analysis fails at start, naming the first;
 * - `show feature` says plainly when no complete result exists.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { type FeatureStore, featureToJson, openStore } from "../lib/store/mod.ts";
import { MongoFeatureStore } from "../lib/store/mongo.ts";
import {
  assertCliError,
  FIXTURES,
  runCli,
  scratchRoot,
  spawnCli,
  TINY_NEOX,
  writeSlicedSae,
  writeWideSae,
} from "./_cli_utils.ts";
import { mongoIgnored, mongoUri, randomDbName } from "./_utils.ts";

const SCRATCH = scratchRoot("lifecycle");
/**
 * Features of the SAE analyzed: enough that the write phase lasts a while (so that kills land
 * inside it); fewer on MongoDB, where FerretDB writes a few hundred features a second.
 */
const D_SAE = { sqlite: 4096, mongo: 1024 } as const;
const saes = new Map<number, Promise<string>>();
function wideSae(dSae: number): Promise<string> {
  let sae = saes.get(dSae);
  if (!sae) saes.set(dSae, sae = writeWideSae(join(SCRATCH, `wide-sae-${dSae}`), dSae));
  return sae;
}

type Where = { kind: "sqlite"; dir: string } | { kind: "mongo"; uri: string; db: string };

/** A settings file analyzing the wide SAE on the demo corpus, stored where `where` says. */
async function writeConfig(where: Where, name: string, tokens: number): Promise<string> {
  const saeDir = await wideSae(D_SAE[where.kind]);
  const dir = join(SCRATCH, name);
  await Deno.mkdir(dir, { recursive: true });
  const store = where.kind === "mongo"
    ? `[mongo]\nmongo_uri = ${JSON.stringify(where.uri)}\nmongo_db = ${JSON.stringify(where.db)}\n`
    : "";
  const path = join(dir, "analyze.toml");
  await Deno.writeTextFile(
    path,
    `sae_name = "wide"
sae_series = "life"
model_name = "tiny-neox"
output_dir = ${JSON.stringify(where.kind === "sqlite" ? where.dir : join(dir, "unused"))}

[sae]
pretrained_name_or_path = ${JSON.stringify(saeDir)}

[model]
model_name = "tiny-neox"
model_from_pretrained_path = ${JSON.stringify(TINY_NEOX)}

[datasets.demo-corpus]
dataset_name_or_path = ${JSON.stringify(join(FIXTURES, "text", "corpus.jsonl"))}

[activation_factory]
hook_points = ["blocks.3.hook_resid_post"]
batch_size = 8
context_size = 64

[[activation_factory.sources]]
type = "dataset"
name = "demo-corpus"

[analyzer]
total_analyzing_tokens = ${tokens}

${store}`,
  );
  return path;
}

async function openWhere(where: Where): Promise<FeatureStore> {
  return where.kind === "sqlite"
    ? await openStore({ outputDir: where.dir })
    : await MongoFeatureStore.open({ uri: where.uri, db: where.db, timeoutMs: 10_000 });
}

/** Everything a reader sees of the analysis: its document and every feature, as JSON text. */
async function snapshot(where: Where): Promise<{ doc: string; features: string; top: string }> {
  await using store = await openWhere(where);
  const doc = await store.getAnalysis("life", "wide", "default");
  const features: string[] = [];
  for await (const r of store.readFeatures("life", "wide", { analysis: "default" })) {
    features.push(JSON.stringify(featureToJson(r)));
  }
  const top = await store.listFeatures({
    series: "life",
    name: "wide",
    sort: "act_times",
    limit: 50,
  });
  const { run: _run, ...published } = doc ?? {};
  return {
    doc: JSON.stringify(published),
    features: features.join("\n"),
    top: JSON.stringify(top),
  };
}

/** A short lease, so that a killed run's lapses within the test. */
const ENV = { SAEFLOW_LEASE_SECONDS: "3" };

async function lifecycle(where: Where, t: Deno.TestContext) {
  const first = await writeConfig(where, `${where.kind}-first`, 12_000);
  const rerun = await writeConfig(where, `${where.kind}-rerun`, 8_000);
  // The whole corpus (~40k tokens): a run that lasts well beyond another process's start-up.
  const long = await writeConfig(where, `${where.kind}-long`, 1_000_000);

  await t.step("a first run interrupted by SIGINT publishes nothing and says so", async () => {
    const p = spawnCli(["analyze", first], { env: ENV });
    await waitForRun(where);
    p.child.kill("SIGINT");
    const r = await p.done;
    assert.equal(r.code, 130, r.stderr);
    const last = r.stderr.trim().split("\n").at(-1)!;
    assert.match(
      last,
      /^saeflow: analyze: stopped by SIGINT in the stream phase; analysis "default" of life\/wide was not published: the previous result, if any, is unchanged$/,
    );
    await using store = await openWhere(where);
    const doc = await store.getAnalysis("life", "wide", "default");
    assert.equal(doc?.status, "interrupted");
    assert.equal(doc?.generation, undefined);
    assert.equal(await store.countFeatures({ series: "life", name: "wide" }), 0);
    const shown = await runCli(["show", "feature", "wide", "0", ...storeArgs(where)]);
    assertCliError(
      shown,
      2,
      /^Feature 0 of life\/wide is not in the store: analysis "default" has no complete result: its last run was interrupted/,
    );
  });

  let before!: Awaited<ReturnType<typeof snapshot>>;
  await t.step("a complete first run", async () => {
    const r = await runCli(["analyze", first], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    before = await snapshot(where);
    assert.equal(JSON.parse(before.doc).status, "complete");
    assert.equal(before.features.split("\n").length, D_SAE[where.kind]);
  });

  // Where the rerun is killed: in the data flow, then at 0, 1/3 and 2/3 of its write phase
  // (the first run's timings.write says how long a write takes here).
  const write = JSON.parse(before.doc).timings.write as number;
  const points: [string, RegExp | null, number][] = [
    ["during the data flow", null, 0],
    ["as the write phase starts", /^analyze: input done/, 0],
    ["a quarter into the write phase", /^analyze: input done/, write / 4],
    ["half way through the write phase", /^analyze: input done/, write / 2],
  ];
  // On MongoDB (FerretDB writes slowly) two of the points: the write phase's start and middle.
  const here = where.kind === "mongo" ? [points[1]!, points[3]!] : points;
  for (const [when, line, delaySeconds] of here) {
    await t.step(`kill -9 of a rerun ${when} leaves the previous result as it was`, async () => {
      const p = spawnCli(["analyze", rerun], { env: ENV });
      if (line) await p.waitForLine(line);
      else await waitForRun(where);
      if (delaySeconds > 0) await new Promise((r) => setTimeout(r, delaySeconds * 1000));
      p.child.kill("SIGKILL");
      const r = await p.done;
      assert.equal(r.signal, "SIGKILL", `the run ended before it was killed: ${r.stderr}`);
      const after = await snapshot(where);
      assert.equal(after.doc, before.doc, "the analysis document changed");
      assert.equal(after.top, before.top, "the feature listing changed");
      assert.ok(after.features === before.features, "a feature changed");
      await waitForLeaseToLapse(where);
    });
  }

  await t.step("two runs at once: the second fails at start naming the first", async () => {
    const a = spawnCli(["analyze", long], { env: ENV });
    let r: Awaited<typeof a.done>;
    try {
      const owner = await waitForRun(where);
      const b = await runCli(["analyze", rerun], { env: ENV });
      assertCliError(
        b,
        1,
        new RegExp(
          `^Cannot begin a run of analysis "default" of life/wide: it is being written by ${
            escape(owner)
          } since `,
        ),
      );
    } finally {
      a.child.kill("SIGTERM");
      r = await a.done;
    }
    assert.equal(r.code, 143, r.stderr);
    assert.match(r.stderr.trim().split("\n").at(-1)!, /^saeflow: analyze: stopped by SIGTERM/);
    await using store = await openWhere(where);
    const doc = await store.getAnalysis("life", "wide", "default");
    assert.equal(doc?.status, "complete", "the previous result stays published");
    assert.equal(doc?.run?.status, "interrupted");
    const after = await snapshot(where);
    assert.equal(after.features, before.features);
  });

  await t.step(
    "after a kill -9, the next run begins once the lease lapses, and publishes",
    async () => {
      const p = spawnCli(["analyze", rerun], { env: ENV });
      await p.waitForLine(/^analyze: input done/);
      p.child.kill("SIGKILL");
      await p.done;
      const blocked = await runCli(["analyze", rerun], { env: ENV });
      assertCliError(
        blocked,
        1,
        /^Cannot begin a run of analysis "default" of life\/wide: it is being written by host \S+ pid \d+ since .*its lease runs until /,
      );
      await waitForLeaseToLapse(where);
      const r = await runCli(["analyze", rerun], { env: ENV });
      assert.equal(r.code, 0, r.stderr);
      const after = await snapshot(where);
      const doc = JSON.parse(after.doc);
      assert.equal(doc.status, "complete");
      assert.notEqual(doc.generation, JSON.parse(before.doc).generation);
      assert.equal(doc.settings.analyzer.total_analyzing_tokens, 8_000);
      assert.notEqual(after.features, before.features, "the rerun's result is visible");
      if (where.kind === "sqlite") {
        // Old generations are cleaned up after the switch.
        const db = new DatabaseSync(join(where.dir, "saeflow.sqlite"), { readOnly: true });
        try {
          const rows = db.prepare("SELECT DISTINCT generation FROM feature_analyses").all();
          assert.deepEqual(rows.map((r) => r["generation"]), [doc.generation]);
        } finally {
          db.close();
        }
      }
    },
  );
}

/** Waits until a live run holds the analysis; returns its owner. */
async function waitForRun(where: Where): Promise<string> {
  for (let i = 0; i < 600; i++) {
    {
      await using store = await openWhere(where);
      const doc = await store.getAnalysis("life", "wide", "default");
      const run = doc?.run;
      // A live lease: a killed run's stays "running" until it lapses, so check the expiry.
      if (run?.status === "running" && Date.parse(run.expires_at) > Date.now()) return run.owner;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no run began within 60 s");
}

/** Waits until no live lease holds the analysis (a killed run's lapses after ENV's 3 s). */
async function waitForLeaseToLapse(where: Where): Promise<void> {
  for (let i = 0; i < 200; i++) {
    {
      await using store = await openWhere(where);
      const run = (await store.getAnalysis("life", "wide", "default"))?.run;
      if (run?.status !== "running" || Date.parse(run.expires_at) < Date.now() - 100) return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the lease did not lapse within 20 s");
}

function storeArgs(where: Where): string[] {
  return where.kind === "sqlite"
    ? ["--output-dir", where.dir]
    : ["--mongo-uri", where.uri, "--mongo-db", where.db];
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("runs that fail, stop or overlap never leave a half result (SQLite)", async (t) => {
  await lifecycle({ kind: "sqlite", dir: join(SCRATCH, "sqlite-store") }, t);
});

const MONGO = "runs that fail, stop or overlap never leave a half result (MongoDB)";
Deno.test({
  name: MONGO,
  ignore: mongoIgnored(MONGO),
  async fn(t) {
    const where: Where = { kind: "mongo", uri: mongoUri()!, db: randomDbName("lifecycle") };
    try {
      await lifecycle(where, t);
    } finally {
      const store = await MongoFeatureStore.open({ uri: where.uri, db: where.db });
      try {
        await store.dropDatabase();
      } finally {
        await store.close();
      }
    }
  },
});

Deno.test("an SAE trained at another hook point: one warning line, or exit 2 with --strict-hook-point", async () => {
  const saeDir = await writeSlicedSae(join(SCRATCH, "blocks1-sae"), {
    hookPoint: "blocks.1.hook_resid_post",
  });
  const dir = join(SCRATCH, "hook-mismatch");
  const config = (await Deno.readTextFile(await writeConfig({ kind: "sqlite", dir }, "hook", 500)))
    .replace(JSON.stringify(await wideSae(D_SAE.sqlite)), JSON.stringify(saeDir));
  const path = join(SCRATCH, "hook", "mismatch.toml");
  await Deno.writeTextFile(path, config);

  const warned = await runCli(["analyze", path]);
  assert.equal(warned.code, 0, warned.stderr);
  const warnings = warned.stderr.split("\n").filter((l) => l.startsWith("warning: "));
  assert.deepEqual(warnings, [
    `warning: the SAE at ${saeDir} was trained at blocks.1.hook_resid_post (its config's hook point) but activation_factory.hook_points analyzes blocks.3.hook_resid_post; its features may mean nothing there (--strict-hook-point makes this an error)`,
  ]);

  const strict = await runCli(["analyze", path, "--strict-hook-point"]);
  assertCliError(
    strict,
    2,
    `the SAE at ${saeDir} was trained at blocks.1.hook_resid_post (its config's hook point) but activation_factory.hook_points analyzes blocks.3.hook_resid_post; set hook_points = ["blocks.1.hook_resid_post"]`,
  );

  // The demo SAE's own hook point is the one analyzed: no warning.
  const same = await runCli([
    "analyze",
    await writeConfig({ kind: "sqlite", dir }, "hook-same", 500),
  ]);
  assert.equal(same.code, 0, same.stderr);
  assert.ok(!same.stderr.includes("warning: "), same.stderr);
});
