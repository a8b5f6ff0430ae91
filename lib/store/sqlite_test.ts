import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { AnalysisBusyError, StoreUnavailableError } from "../errors.ts";
import type { FeatureAnalysis, FeatureRecord } from "../types.ts";
import { packDoc, packFeatureAnalysis } from "./_codec.ts";
import { SqliteFeatureStore } from "./sqlite.ts";
import type { AnalysisDoc, AnalysisRunInfo } from "./types.ts";

Deno.test("SqliteFeatureStore.open() creates the output folder and the file in WAL mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = SqliteFeatureStore.open({ outputDir: `${dir}/a/b` });
    await store.putDataset({ name: "d", config: {} });
    await store.close();
    await store.close(); // idempotent
    assert.ok((await Deno.stat(`${dir}/a/b/saeflow.sqlite`)).isFile);
    const reopened = SqliteFeatureStore.open({ path: `${dir}/a/b/saeflow.sqlite` });
    assert.deepEqual(await reopened.getDataset("d"), { name: "d", config: {} });
    await reopened.close();
    await assert.rejects(
      () => reopened.getDataset("d"),
      (e) =>
        e instanceof Error && e.message === `The SQLite store ${dir}/a/b/saeflow.sqlite is closed`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteFeatureStore.open() reports a file it cannot open as StoreUnavailableError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/saeflow.sqlite`,
      "this is not a database, just text ".repeat(50),
    );
    assert.throws(
      () => SqliteFeatureStore.open({ outputDir: dir }),
      (e) =>
        e instanceof StoreUnavailableError &&
        e.message.startsWith(`Cannot open the SQLite store ${dir}/saeflow.sqlite: `),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a write that fails midway leaves no partial batch behind", async () => {
  await using store = SqliteFeatureStore.open({ path: ":memory:" });
  const good = { sae_series: "s", sae_name: "n", index: 0, analyses: {} };
  const bad = {
    sae_series: "s",
    sae_name: "n",
    index: 1,
    analyses: {},
    logits: {
      top_positive: [],
      top_negative: [],
      histogram: { edges: new Int16Array(1), counts: new Float64Array() },
    },
  };
  await assert.rejects(
    () => store.writeFeatures([good, bad as never]),
    (e) => e instanceof TypeError && /^Cannot store a Int16Array/.test(e.message),
  );
  assert.equal(await store.getFeature("s", "n", 0), null);
});

/** The schema of files made before generations existed (saeflow up to f3ee4c2). */
const OLD_SCHEMA = `
CREATE TABLE saes (
  series TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (series, name));
CREATE TABLE models (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE datasets (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE analyses (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (sae_series, sae_name, name));
CREATE TABLE features (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, idx INTEGER NOT NULL,
  logits BLOB, interpretation BLOB, interpretation_text TEXT,
  PRIMARY KEY (sae_series, sae_name, idx));
CREATE TABLE feature_analyses (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL, idx INTEGER NOT NULL,
  act_times INTEGER NOT NULL, max_activation REAL, n_analyzed_tokens INTEGER NOT NULL,
  doc BLOB NOT NULL,
  PRIMARY KEY (sae_series, sae_name, analysis, idx));
CREATE INDEX feature_analyses_act_times
  ON feature_analyses (sae_series, sae_name, analysis, act_times, idx);
CREATE INDEX feature_analyses_max_activation
  ON feature_analyses (sae_series, sae_name, analysis, max_activation, idx);
CREATE TABLE analyzer_states (
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL,
  shard INTEGER NOT NULL, count INTEGER NOT NULL, generation TEXT NOT NULL,
  bytes INTEGER NOT NULL, chunks INTEGER NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (sae_series, sae_name, analysis, count, shard));
CREATE TABLE analyzer_state_chunks (
  generation TEXT NOT NULL, seq INTEGER NOT NULL,
  sae_series TEXT NOT NULL, sae_name TEXT NOT NULL, analysis TEXT NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY (generation, seq));
`;

function oldAnalysis(i: number): FeatureAnalysis {
  return {
    act_times: 10 + i,
    n_analyzed_tokens: 5000,
    max_activation: 1.5 + i,
    mean: 0.5,
    std: 0.25,
    histogram: { relative_accuracy: 0.01, index_offset: -3, counts: new Float64Array([1, 2, i]) },
    quantiles: [{ q: 0.5, value: 0.75 }],
    samplings: [{
      name: "top_activations",
      band: null,
      samples: [{
        tokens: new Int32Array([5, 6, 7]),
        acts: new Float32Array([0, 1.5, 0.25]),
        peak: 1.5,
        peak_pos: 1,
        source: "corpus",
        shard: 0,
        row: i,
        offset: 0,
      }],
    }],
  };
}

Deno.test("a file made before generations existed is migrated and reads as before", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/saeflow.sqlite`;
  try {
    const old = new DatabaseSync(path);
    old.exec("PRAGMA page_size = 32768; PRAGMA journal_mode = WAL;");
    old.exec(OLD_SCHEMA);
    const logits = {
      top_positive: [{ token: " a", id: 1, logit: 2 }],
      top_negative: [],
      histogram: { edges: new Float64Array([0, 1]), counts: new Float64Array([3]) },
    };
    for (const i of [0, 1, 2]) {
      old.prepare(
        "INSERT INTO features (sae_series, sae_name, idx, logits, interpretation, interpretation_text) VALUES (?, ?, ?, ?, NULL, NULL)",
      ).run("s", "n", i, packDoc(logits));
      const a = oldAnalysis(i);
      old.prepare(
        "INSERT INTO feature_analyses VALUES (?, ?, 'default', ?, ?, ?, ?, ?)",
      ).run(
        "s",
        "n",
        i,
        a.act_times,
        a.max_activation,
        a.n_analyzed_tokens,
        packFeatureAnalysis(a),
      );
    }
    const doc: AnalysisDoc = {
      sae_series: "s",
      sae_name: "n",
      name: "default",
      settings: {},
      status: "complete",
      n_analyzed_tokens: 5000,
      started_at: "2025-01-01T00:00:00.000Z",
      finished_at: "2025-01-01T00:01:00.000Z",
      timings: {},
    };
    old.prepare("INSERT INTO analyses VALUES ('s', 'n', 'default', ?)").run(JSON.stringify(doc));
    old.close();

    const expected = (i: number): FeatureRecord => ({
      sae_name: "n",
      sae_series: "s",
      index: i,
      analyses: { default: oldAnalysis(i) },
      logits,
    });
    {
      await using store = SqliteFeatureStore.open({ path });
      assert.deepEqual(await store.getFeature("s", "n", 1), expected(1));
      assert.equal(await store.countFeatures({ series: "s", name: "n", alive: true }), 3);
      assert.deepEqual(
        (await store.listFeatures({ series: "s", name: "n", sort: "act_times" })).map((f) =>
          f.index
        ),
        [2, 1, 0],
      );
      const all: FeatureRecord[] = [];
      for await (const r of store.readFeatures("s", "n", { analysis: "default" })) all.push(r);
      assert.deepEqual(all, [0, 1, 2].map(expected));
      assert.deepEqual(await store.getAnalysis("s", "n", "default"), doc);
      assert.deepEqual(await store.storedGenerations("s", "n", "default"), { "": 3 });

      // A run over the migrated analysis publishes a generation and removes the old rows.
      const run = await store.beginAnalysisRun(doc, { owner: "host t pid 1", leaseMs: 60_000 });
      await store.writeFeatures([{ ...expected(0), analyses: { default: oldAnalysis(7) } }], {
        generation: run.generation,
      });
      assert.deepEqual(await store.getFeature("s", "n", 0), expected(0));
      await store.publishAnalysisRun(doc, run.generation);
      assert.deepEqual(await store.storedGenerations("s", "n", "default"), { [run.generation]: 1 });
      assert.deepEqual((await store.getFeature("s", "n", 0))?.analyses, {
        default: oldAnalysis(7),
      });
      assert.deepEqual((await store.getFeature("s", "n", 2))?.analyses, {});
    }
    const check = new DatabaseSync(path);
    assert.equal(check.prepare("PRAGMA user_version").get()?.user_version, 1);
    const columns = check.prepare("PRAGMA table_info(feature_analyses)").all().map((r) => r.name);
    assert.ok(columns.includes("generation"), columns.join(","));
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a file of a newer schema is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const db = new DatabaseSync(`${dir}/saeflow.sqlite`);
    db.exec("PRAGMA user_version = 99");
    db.close();
    assert.throws(
      () => SqliteFeatureStore.open({ outputDir: dir }),
      (e) =>
        e instanceof StoreUnavailableError &&
        e.message ===
          `Cannot open the SQLite store ${dir}/saeflow.sqlite: it was made by a newer saeflow ` +
            "(schema 99; this one knows up to 1)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("two connections to one file: of two concurrent begins exactly one wins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using a = SqliteFeatureStore.open({ outputDir: dir });
    await using b = SqliteFeatureStore.open({ outputDir: dir });
    const doc = {
      sae_series: "s",
      sae_name: "n",
      name: "default",
      settings: {},
      n_analyzed_tokens: 0,
      started_at: "2025-01-01T00:00:00.000Z",
      timings: {},
    };
    const results = await Promise.allSettled([
      a.beginAnalysisRun(doc, { owner: "host a pid 1", leaseMs: 60_000 }),
      b.beginAnalysisRun(doc, { owner: "host b pid 2", leaseMs: 60_000 }),
    ]);
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected"]);
    const lost = (results[1] as PromiseRejectedResult).reason;
    assert.ok(lost instanceof AnalysisBusyError);
    assert.match(lost.message, /is being written by host a pid 1 since /);
    const won = (results[0] as PromiseFulfilledResult<AnalysisRunInfo>).value;
    assert.deepEqual((await b.getAnalysis("s", "n", "default"))?.run, won);
    // The winner's writes reach the other connection only once published.
    await a.writeFeatures([{ sae_series: "s", sae_name: "n", index: 0, analyses: {} }], {
      generation: won.generation,
    });
    assert.equal(await b.getFeature("s", "n", 0), null);
    await a.publishAnalysisRun({ ...doc, finished_at: null }, won.generation);
    assert.equal((await b.getFeature("s", "n", 0))?.index, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
