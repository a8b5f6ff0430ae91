/**
 * Stores under faults: a disk that fills up (a real 4 MiB tmpfs when this process may mount one,
 * and SQLite's page limit), a MongoDB server killed in the middle of a write, and two processes
 * that begin a run on one SQLite file at the same moment.
 */

import assert from "node:assert/strict";
import { StoreUnavailableError } from "../lib/errors.ts";
import {
  type AnalysisRunInfo,
  type FeatureStore,
  MongoFeatureStore,
  SqliteFeatureStore,
} from "../lib/store/mod.ts";
import { mongoClientOptions } from "../lib/store/mongo.ts";
import type { FeatureAnalysis, FeatureRecord } from "../lib/types.ts";
import { mongoRequired, serverBinary, startOwnServer, withTempDir } from "./_utils.ts";

const DOC = {
  sae_series: "f",
  sae_name: "sae",
  name: "default",
  settings: {},
  n_analyzed_tokens: 0,
  started_at: "2030-01-01T00:00:00.000Z",
  timings: {},
};
const KEY = { sae_series: "f", sae_name: "sae", name: "default" };

/** A feature whose analysis holds `samples` windows of 64 random tokens (about 0.5 KiB each). */
function feature(index: number, samples: number, seed = 0): FeatureRecord {
  const window = () => {
    const tokens = new Int32Array(64);
    const acts = new Float32Array(64);
    for (let i = 0; i < 64; i++) {
      tokens[i] = Math.floor(Math.random() * 50_000);
      acts[i] = Math.random();
    }
    return { tokens, acts, peak: 1, peak_pos: 0, source: "s", shard: 0, row: index, offset: 0 };
  };
  const analysis: FeatureAnalysis = {
    act_times: 1 + index + seed,
    n_analyzed_tokens: 1000,
    max_activation: 1 + seed,
    mean: 0.5,
    std: 0.25,
    histogram: { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array([seed]) },
    quantiles: [],
    samplings: [{
      name: "top_activations",
      band: null,
      samples: Array.from({ length: samples }, window),
    }],
  };
  return { sae_series: "f", sae_name: "sae", index, analyses: { default: analysis } };
}

async function readAll(store: FeatureStore): Promise<FeatureRecord[]> {
  const out: FeatureRecord[] = [];
  for await (const r of store.readFeatures("f", "sae", { analysis: "default" })) out.push(r);
  return out;
}

/**
 * Publishes a small result, then writes a rerun until the store is full; checks the error, ends
 * the run as failed and checks that readers still see the published result exactly. The rows of
 * the failed run, which no reader sees, may stay while the disk is full: once `makeRoom()` has
 * made room, the next begin removes them.
 */
async function fillUp(
  store: SqliteFeatureStore,
  message: RegExp,
  makeRoom: () => Promise<void>,
): Promise<void> {
  const first = await store.beginAnalysisRun(DOC, { owner: "host t pid 1", leaseMs: 60_000 });
  const published = [0, 1, 2].map((i) => feature(i, 2));
  await store.writeFeatures(published, { generation: first.generation });
  await store.publishAnalysisRun({ ...DOC, finished_at: null }, first.generation);

  const rerun = await store.beginAnalysisRun(DOC, { owner: "host t pid 2", leaseMs: 60_000 });
  let error: unknown;
  for (let batch = 0; batch < 1000 && error === undefined; batch++) {
    try {
      await store.writeFeatures(
        Array.from({ length: 20 }, (_, i) => feature(batch * 20 + i, 20, 1)),
        { generation: rerun.generation },
      );
    } catch (e) {
      error = e;
    }
  }
  assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
  assert.match(error.message, message);
  assert.ok(!error.message.includes("rollback"), error.message);
  assert.ok(!String(error.message).includes("\n"), "one line");

  await store.endAnalysisRun(KEY, rerun.generation, {
    status: "failed",
    error: error.message,
  });
  const doc = await store.getAnalysis("f", "sae", "default");
  assert.equal(doc?.status, "complete");
  assert.equal(doc?.generation, first.generation);
  assert.equal(doc?.run?.status, "failed");
  assert.deepEqual(await readAll(store), published);
  const left = await store.storedGenerations("f", "sae", "default");
  assert.equal(left[first.generation], 3);
  assert.deepEqual(
    Object.keys(left).filter((g) => g !== first.generation && g !== rerun.generation),
    [],
  );

  await makeRoom();
  const next = await store.beginAnalysisRun(DOC, { owner: "host t pid 3", leaseMs: 60_000 });
  assert.deepEqual(await store.storedGenerations("f", "sae", "default"), {
    [first.generation]: 3,
  });
  await store.endAnalysisRun(KEY, next.generation, { status: "interrupted" });
  assert.deepEqual(await readAll(store), published);
}

/** Mounts a tmpfs of `size` on `dir`; false when this process may not mount. */
async function mountTmpfs(dir: string, size: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

const TMPFS = "a full disk (tmpfs) says No space left on device with the store path";
Deno.test(TMPFS, async () => {
  await withTempDir(async (dir) => {
    if (!(await mountTmpfs(dir, "4m"))) {
      console.log(
        `SKIPPED: ${TMPFS}: this process may not mount a tmpfs (not root); the maxPageCount ` +
          "test below fills a store anyway",
      );
      return;
    }
    try {
      const store = SqliteFeatureStore.open({ outputDir: dir });
      try {
        await fillUp(
          store,
          new RegExp(
            `^Cannot write to the SQLite store ${dir}/saeflow\\.sqlite: No space left on device `,
          ),
          async () => {
            const grown = await new Deno.Command("mount", {
              args: ["-o", "remount,size=16m", dir],
            }).output();
            assert.ok(grown.success, "remount the tmpfs larger");
          },
        );
      } finally {
        await store.close();
      }
    } finally {
      await new Deno.Command("umount", { args: [dir] }).output();
    }
  });
});

Deno.test("a store at its page limit says so with its path; the rollback does not mask it", async () => {
  await withTempDir(async (dir) => {
    const store = SqliteFeatureStore.open({ outputDir: dir, maxPageCount: 64 });
    try {
      await fillUp(
        store,
        new RegExp(
          `^Cannot write to the SQLite store ${dir}/saeflow\\.sqlite: No space left on device ` +
            "\\(SQLite: database or disk is full\\), or the file reached its limit of 64 pages " +
            "\\(maxPageCount\\)$",
        ),
        () => Promise.resolve(),
      );
    } finally {
      await store.close();
    }
  });
});

Deno.test("two processes begin a run on one SQLite file at the same moment: one wins", async () => {
  await withTempDir(async (dir) => {
    SqliteFeatureStore.open({ outputDir: dir }).close();
    const module = new URL("../lib/store/sqlite.ts", import.meta.url).href;
    const startAt = Date.now() + 1500;
    const script = `
      import { SqliteFeatureStore } from ${JSON.stringify(module)};
      const store = SqliteFeatureStore.open({ outputDir: ${JSON.stringify(dir)} });
      while (Date.now() < ${startAt}) await new Promise((r) => setTimeout(r, 1));
      try {
        const run = await store.beginAnalysisRun(${JSON.stringify(DOC)}, {
          owner: "pid " + Deno.pid, leaseMs: 60000 });
        console.log(JSON.stringify({ won: run }));
      } catch (e) {
        console.log(JSON.stringify({ lost: e.name, message: e.message }));
      }
      await store.close();`;
    const children = [0, 1].map(() =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--ext=ts", script],
        stdout: "piped",
        stderr: "piped",
      }).output()
    );
    const results = (await Promise.all(children)).map((o) => {
      assert.ok(o.success, new TextDecoder().decode(o.stderr));
      return JSON.parse(new TextDecoder().decode(o.stdout).trim()) as {
        won?: AnalysisRunInfo;
        lost?: string;
        message?: string;
      };
    });
    const won = results.filter((r) => r.won);
    const lost = results.filter((r) => r.lost);
    assert.equal(won.length, 1, JSON.stringify(results));
    assert.equal(lost[0]?.lost, "AnalysisBusyError");
    assert.ok(lost[0]?.message?.includes(`is being written by ${won[0]!.won!.owner} since `));
    await using store = SqliteFeatureStore.open({ outputDir: dir });
    assert.deepEqual((await store.getAnalysis("f", "sae", "default"))?.run, won[0]!.won);
  });
});

Deno.test("every MongoDB driver timeout is derived from the store's timeoutMs", () => {
  const o = mongoClientOptions(1500);
  assert.equal(o.serverSelectionTimeoutMS, 1500);
  assert.equal(o.connectTimeoutMS, 1500);
  assert.equal(o.waitQueueTimeoutMS, 1500);
  assert.equal(o.socketTimeoutMS, 12 * 1500);
  assert.equal(o.timeoutMS, undefined, "no whole-operation limit that would cut long listings");
});

const KILLED = "a MongoDB server killed mid-write fails the write within the timeout, naming it";
Deno.test({
  name: KILLED,
  ignore: (() => {
    if (serverBinary() || mongoRequired()) return false;
    console.log(`SKIPPED: ${KILLED}: no FerretDB or mongod binary to start a server of its own`);
    return true;
  })(),
  fn: async () => {
    const server = await startOwnServer();
    try {
      const timeoutMs = 1500;
      const store = await MongoFeatureStore.open({ uri: server.uri, db: "faults", timeoutMs });
      try {
        const run = await store.beginAnalysisRun(DOC, { owner: "host t pid 1", leaseMs: 60_000 });
        await store.writeFeatures([0, 1].map((i) => feature(i, 2)), {
          generation: run.generation,
        });
        // A write of 500 features takes long enough for the kill to land in the middle of it.
        const batch = Array.from({ length: 500 }, (_, i) => feature(10 + i, 10));
        let error: unknown;
        let killedAt = 0;
        const writing = store.writeFeatures(batch, { generation: run.generation }).catch((e) => {
          error = e;
        });
        await new Promise((r) => setTimeout(r, 30));
        killedAt = performance.now();
        await server.kill();
        await writing;
        // Had the write finished before the kill, the next one must fail.
        for (let i = 0; i < 3 && error === undefined; i++) {
          await store.writeFeatures(batch, { generation: run.generation }).catch((e) => {
            error = e;
          });
        }
        const elapsed = performance.now() - killedAt;
        assert.ok(
          error instanceof StoreUnavailableError,
          `expected StoreUnavailableError: ${error}`,
        );
        assert.match(
          error.message,
          new RegExp(
            `^Lost MongoDB at 127\\.0\\.0\\.1:${server.port} while writing features ` +
              `\\(timeout 1500 ms\\): `,
          ),
        );
        assert.ok(!error.message.includes("\n"), "one line");
        // Loose: the configured timeout, a retry's server selection and slack for a busy machine.
        assert.ok(elapsed < 4 * timeoutMs, `the error came after ${Math.round(elapsed)} ms`);

        const ending = performance.now();
        await assert.rejects(
          () => store.endAnalysisRun(KEY, run.generation, { status: "failed" }),
          (e) =>
            e instanceof StoreUnavailableError &&
            e.message.startsWith(
              `Lost MongoDB at 127.0.0.1:${server.port} while ending a run of analysis ` +
                '"default" of f/sae (timeout 1500 ms): ',
            ),
        );
        assert.ok(performance.now() - ending < 4 * timeoutMs);
        await assert.rejects(() => store.getFeature("f", "sae", 0), unavailableRead);
      } finally {
        await store.close();
      }
    } finally {
      await server.stop();
    }
  },
});

/** A read of a dead server is a StoreUnavailableError naming what it read. */
function unavailableRead(e: unknown): boolean {
  return e instanceof StoreUnavailableError &&
    e.message.includes("while reading feature 0 of f/sae");
}
