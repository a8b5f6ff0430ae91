/**
 * One contract suite for {@linkcode FeatureStore}, run unchanged against SQLite (a temporary
 * directory) and MongoDB (`MONGO_URI`, e.g. FerretDB; see tests/_utils.ts for skipping).
 */

import assert from "node:assert/strict";
import { AnalysisBusyError, ConfigError, StoreUnavailableError } from "../lib/errors.ts";
import { mulberry32 as rng } from "../lib/_random.ts";
import {
  type AnalysisDoc,
  type AnalysisRunInfo,
  type FeatureStore,
  featureToJson,
  MongoFeatureStore,
  openStore,
  type SaeDoc,
  SqliteFeatureStore,
  STATE_CHUNK_BYTES,
} from "../lib/store/mod.ts";
import type { FeatureAnalysis, FeatureRecord, Interpretation, Sample } from "../lib/types.ts";
import type { BeginDoc } from "../lib/store/_runs.ts";
import { mongoIgnored, withMongo, withTempDir } from "./_utils.ts";

// --- Deterministic, realistic records -------------------------------------------------------

function sample(rand: () => number, peakScale: number, window = 64): Sample {
  const tokens = new Int32Array(window);
  const acts = new Float32Array(window);
  for (let i = 0; i < window; i++) {
    tokens[i] = Math.floor(rand() * 50_000);
    acts[i] = rand() < 0.3 ? Math.fround(rand() * peakScale) : 0;
  }
  const peakPos = Math.floor(rand() * window);
  acts[peakPos] = Math.fround(peakScale);
  return {
    tokens,
    acts,
    peak: acts[peakPos]!,
    peak_pos: peakPos,
    source: "pile",
    shard: Math.floor(rand() * 4),
    row: Math.floor(rand() * 100_000),
    offset: 0,
  };
}

/** A feature's analysis; `actTimes` 0 gives a dead feature. */
function analysis(seed: number, actTimes: number, maxActivation: number): FeatureAnalysis {
  const rand = rng(seed);
  const dead = actTimes === 0;
  const counts = new Float64Array(24);
  for (let i = 0; i < counts.length; i++) counts[i] = dead ? 0 : Math.floor(rand() * 100);
  return {
    act_times: actTimes,
    n_analyzed_tokens: 1_000_000,
    max_activation: maxActivation,
    mean: dead ? 0 : maxActivation / 3,
    std: dead ? 0 : maxActivation / 7,
    histogram: { relative_accuracy: 0.01, index_offset: -40 + (seed % 7), counts },
    quantiles: [0.5, 0.9, 0.99].map((q) => ({ q, value: dead ? 0 : maxActivation * q })),
    samplings: dead ? [] : [
      {
        name: "top_activations",
        band: null,
        samples: [sample(rand, maxActivation), sample(rand, maxActivation * 0.9)],
      },
      { name: "subsample-0.5", band: [0.25, 0.5], samples: [sample(rand, maxActivation * 0.4)] },
      { name: "non_activating", band: null, samples: [sample(rand, 0)] },
    ],
  };
}

function record(
  series: string,
  name: string,
  index: number,
  analyses: Record<string, FeatureAnalysis>,
): FeatureRecord {
  return { sae_series: series, sae_name: name, index, analyses };
}

function interpretation(text: string): Interpretation {
  return {
    text,
    method: "openai",
    model: "gpt-4o-mini",
    scores: {
      detection: {
        accuracy: 0.8,
        precision: 0.75,
        recall: 0.9,
        f1: 0.818,
        balanced_accuracy: 0.8,
        tp: 9,
        fp: 3,
        tn: 7,
        fn: 1,
      },
      fuzzing: { skipped: "no samples" },
    },
    passed: true,
    at: "2025-01-01T00:00:00.000Z",
  };
}

function logitsOf(seed: number): NonNullable<FeatureRecord["logits"]> {
  const rand = rng(seed);
  return {
    top_positive: [{ token: " cat", id: 3797, logit: Math.fround(rand() * 3) }],
    top_negative: [{ token: " the", id: 262, logit: -Math.fround(rand() * 3) }],
    histogram: { edges: new Float64Array([-1, 0, 1]), counts: new Float64Array([12, 40]) },
  };
}

async function readAll(stream: ReadableStream<FeatureRecord>): Promise<FeatureRecord[]> {
  const out: FeatureRecord[] = [];
  for await (const r of stream) out.push(r);
  return out;
}

async function stateBytes(
  store: FeatureStore,
  key: Parameters<FeatureStore["getAnalyzerState"]>[0],
): Promise<number[] | null> {
  const chunks = await store.getAnalyzerState(key);
  if (chunks === null) return null;
  const out: number[] = [];
  for await (const c of chunks) out.push(...c);
  return out;
}

function bytesOf(a: ArrayBufferView): number[] {
  return Array.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

// --- The contract ---------------------------------------------------------------------------

/** How many features of an analysis each generation holds in storage (`storedGenerations`). */
type Stored = (series: string, sae: string, analysis: string) => Promise<Record<string, number>>;

type StoreFactory = () => Promise<
  { store: FeatureStore; stored: Stored; cleanup: () => Promise<void> }
>;

async function contract(t: Deno.TestContext, factory: StoreFactory) {
  const { store, stored, cleanup } = await factory();
  try {
    await t.step("re-writing an analysis replaces its values and never duplicates", async () => {
      const first = [0, 1, 2, 3, 4].map((i) =>
        record("s", "dup", i, { default: analysis(i, 10 + i, 1 + i) })
      );
      const second = [0, 1, 2, 3, 4].map((i) =>
        record("s", "dup", i, { default: analysis(100 + i, 50 + i, 9 + i) })
      );
      await store.writeFeatures(first);
      await store.writeFeatures(second);
      assert.equal(await store.countFeatures({ series: "s", name: "dup" }), 5);
      assert.equal((await readAll(store.readFeatures("s", "dup"))).length, 5);
      assert.deepEqual(await store.getFeature("s", "dup", 3), second[3]);
    });

    await t.step("a second analysis name coexists with the first", async () => {
      await store.writeFeatures(
        [0, 1, 2].map((i) => record("s", "dup", i, { other: analysis(200 + i, 7, 0.5) })),
      );
      const f = await store.getFeature("s", "dup", 1);
      assert.deepEqual(Object.keys(f!.analyses), ["default", "other"]);
      assert.deepEqual(f!.analyses.default, analysis(101, 51, 10));
      assert.deepEqual(f!.analyses.other, analysis(201, 7, 0.5));
      assert.equal(await store.countFeatures({ series: "s", name: "dup", analysis: "other" }), 3);
      assert.equal(await store.countFeatures({ series: "s", name: "dup" }), 5);
    });

    await t.step("logits and interpretation are set without clobbering analyses", async () => {
      await store.writeFeatures([{ ...record("s", "dup", 2, {}), logits: logitsOf(2) }]);
      await store.writeFeatures([{
        ...record("s", "dup", 2, {}),
        interpretation: interpretation("cats"),
      }]);
      // Re-writing an analysis keeps logits and interpretation.
      await store.writeFeatures([record("s", "dup", 2, { default: analysis(102, 52, 11) })]);
      const f = await store.getFeature("s", "dup", 2);
      assert.deepEqual(f, {
        sae_name: "dup",
        sae_series: "s",
        index: 2,
        analyses: { default: analysis(102, 52, 11), other: analysis(202, 7, 0.5) },
        logits: logitsOf(2),
        interpretation: interpretation("cats"),
      });
      const listed = await store.listFeatures({ series: "s", name: "dup", limit: 3 });
      assert.deepEqual(listed.map((s) => s.interpretation_text), [undefined, undefined, "cats"]);
      // A feature known only through its logits exists, with no analyses.
      await store.writeFeatures([{ ...record("s", "dup", 9, {}), logits: logitsOf(9) }]);
      assert.deepEqual((await store.getFeature("s", "dup", 9))?.analyses, {});
      assert.equal(await store.countFeatures({ series: "s", name: "dup" }), 5);
    });

    await t.step("getFeature() round-trips typed arrays and odd numbers bitwise", async () => {
      const nanWithPayload = new Float32Array(new Uint32Array([0x7fc00123]).buffer)[0]!;
      const f32 = new Float32Array([
        0.1,
        -0,
        1e-45,
        1.1754942e-38,
        3.4028234663852886e38,
        -3.4028234663852886e38,
        Infinity,
        -Infinity,
        nanWithPayload,
        Math.fround(Math.PI),
      ]);
      const a = analysis(7, 3, 2.5);
      a.samplings[0]!.samples[0]!.acts = f32;
      a.samplings[0]!.samples[0]!.tokens = new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -1]);
      a.histogram.counts = new Float64Array([5e-324, Number.MAX_VALUE, NaN, -0, 1 / 3]);
      a.std = NaN;
      a.mean = -0;
      a.quantiles = [{ q: 0.5, value: Infinity }];
      const rec: FeatureRecord = {
        ...record("s", "odd", 0, { default: a }),
        interpretation: { ...interpretation("odd"), consistency: -Infinity },
      };
      await store.writeFeatures([rec]);
      const back = await store.getFeature("s", "odd", 0);
      const b = back!.analyses.default!;
      const acts = b.samplings[0]!.samples[0]!.acts;
      assert.ok(acts instanceof Float32Array, "acts come back as a Float32Array");
      assert.deepEqual(bytesOf(acts), bytesOf(f32));
      const tokens = b.samplings[0]!.samples[0]!.tokens;
      assert.ok(tokens instanceof Int32Array, "tokens come back as an Int32Array");
      assert.deepEqual(Array.from(tokens), [-(2 ** 31), 2 ** 31 - 1, 0, -1]);
      assert.ok(b.histogram.counts instanceof Float64Array);
      assert.deepEqual(bytesOf(b.histogram.counts), bytesOf(a.histogram.counts));
      assert.ok(Number.isNaN(b.std) && Object.is(b.mean, -0));
      assert.equal(b.quantiles[0]!.value, Infinity);
      assert.equal(back!.interpretation?.consistency, -Infinity);
      assert.deepEqual(back, rec);
      assert.equal(await store.getFeature("s", "odd", 1), null);
    });

    await t.step(
      "listFeatures() sorts by act_times and max_activation, pages and filters",
      async (t) => {
        const actTimes = [5, 0, 9, 5, 0, 12, 1, 9, 3, 0, 7, 5];
        const maxAct = [2.5, 0, 1.5, 4, 0, 0.25, 8, 1.5, 3, 0, 6, 2.5];
        await store.writeFeatures(
          actTimes.map((n, i) => record("s", "list", i, { default: analysis(i, n, maxAct[i]!) })),
        );
        const byKey = (key: number[], dir: 1 | -1) =>
          actTimes.map((_, i) => i).sort((x, y) => dir * (key[x]! - key[y]!) || x - y);
        const cases = [
          { opts: { sort: "act_times" as const }, want: byKey(actTimes, -1) },
          { opts: { sort: "act_times" as const, order: "asc" as const }, want: byKey(actTimes, 1) },
          {
            opts: { sort: "act_times" as const, skip: 2, limit: 4 },
            want: byKey(actTimes, -1).slice(2, 6),
          },
          {
            opts: { sort: "max_activation" as const, alive: true },
            want: byKey(maxAct, -1).filter((i) => actTimes[i]! > 0),
          },
          {
            opts: { sort: "index" as const, alive: false },
            want: [1, 4, 9],
          },
          { opts: { order: "desc" as const, limit: 3 }, want: [11, 10, 9] },
          { opts: { limit: 0 }, want: [] },
        ];
        for (const { opts, want } of cases) {
          await t.step(JSON.stringify(opts), async () => {
            const got = await store.listFeatures({ series: "s", name: "list", ...opts });
            assert.deepEqual(got.map((s) => s.index), want);
          });
        }
        const [top] = await store.listFeatures({
          series: "s",
          name: "list",
          sort: "act_times",
          limit: 1,
        });
        assert.deepEqual(top, {
          index: 5,
          act_times: 12,
          max_activation: 0.25,
          n_analyzed_tokens: 1_000_000,
        });
        assert.equal(await store.countFeatures({ series: "s", name: "list", alive: true }), 9);
        assert.equal(await store.countFeatures({ series: "s", name: "list", alive: false }), 3);
        assert.equal(await store.countFeatures({ series: "s", name: "list", analysis: "nope" }), 0);
      },
    );

    await t.step("readFeatures() pages lazily, by indices and by analysis", async () => {
      // Nothing is read before the consumer pulls: a feature written after the stream was
      // created but before the first read shows up.
      const stream = store.readFeatures("s", "list", { pageSize: 2 });
      await store.writeFeatures([record("s", "list", 500, { default: analysis(500, 1, 1) })]);
      assert.deepEqual(
        (await readAll(stream)).map((r) => r.index),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 500],
      );

      const picked = await readAll(
        store.readFeatures("s", "list", { indices: [7, 2, 2, 999, 500], pageSize: 2 }),
      );
      assert.deepEqual(picked.map((r) => r.index), [2, 7, 500]);
      assert.deepEqual(picked[1], record("s", "list", 7, { default: analysis(7, 9, 1.5) }));

      const only = await readAll(store.readFeatures("s", "dup", { analysis: "other" }));
      assert.deepEqual(only.map((r) => r.index), [0, 1, 2]);
      assert.deepEqual(only.map((r) => Object.keys(r.analyses)), [["other"], ["other"], ["other"]]);
      assert.deepEqual(only[2]!.logits, logitsOf(2));

      // Cancelling stops the stream without error.
      const cancelled = store.readFeatures("s", "list", { pageSize: 1 }).getReader();
      await cancelled.read();
      await cancelled.cancel();
    });

    await t.step(
      "removeAnalysis() removes analyses.<name> from every feature and its doc",
      async () => {
        const doc: AnalysisDoc = {
          sae_series: "s",
          sae_name: "dup",
          name: "other",
          settings: { n: 1 },
          status: "complete",
          n_analyzed_tokens: 1000,
          started_at: "2025-01-01T00:00:00.000Z",
          finished_at: "2025-01-01T00:01:00.000Z",
          timings: { analyze: 60 },
        };
        await store.putAnalysis(doc);
        assert.deepEqual(await store.getAnalysis("s", "dup", "other"), doc);
        assert.deepEqual(await store.removeAnalysis("s", "dup", "other"), {
          analysis: true,
          features: 3,
        });
        assert.equal(await store.getAnalysis("s", "dup", "other"), null);
        assert.equal(await store.countFeatures({ series: "s", name: "dup", analysis: "other" }), 0);
        const f = await store.getFeature("s", "dup", 2);
        assert.deepEqual(Object.keys(f!.analyses), ["default"]);
        assert.deepEqual(f!.logits, logitsOf(2));
      },
    );

    await t.step("SAE, model, dataset and analysis documents round-trip", async () => {
      const sae = (name: string): SaeDoc => ({
        name,
        series: "s",
        path: `/ckpt/${name}`,
        config: { "hook.point": "blocks.0.hook_resid_post", $odd: [1, 2.5, "x"], "100%": null },
        d_sae: 3072,
        d_model: 768,
        hook_point: "blocks.0.hook_resid_post",
        model: "gpt2",
      });
      await store.putSae(sae("b"));
      await store.putSae(sae("a"));
      await store.putSae({ ...sae("c"), series: "t" });
      assert.deepEqual(await store.getSae("s", "b"), sae("b"));
      assert.deepEqual((await store.listSaes()).map((d) => `${d.series}/${d.name}`), [
        "s/a",
        "s/b",
        "t/c",
      ]);
      assert.deepEqual((await store.listSaes("s")).map((d) => d.name), ["a", "b"]);
      await store.putModel({ name: "gpt2", config: { n_layer: 12 }, vocab: ["!", '"', " the"] });
      await store.putModel({ name: "gpt2", config: { n_layer: 12 }, vocab: ["!", '"', " cat"] });
      assert.deepEqual((await store.getModel("gpt2"))?.vocab, ["!", '"', " cat"]);
      await store.putDataset({ name: "pile", config: { "data.files": ["a.jsonl"] } });
      assert.deepEqual(await store.getDataset("pile"), {
        name: "pile",
        config: { "data.files": ["a.jsonl"] },
      });
      assert.equal(await store.getModel("nope"), null);
      const running: AnalysisDoc = {
        sae_series: "s",
        sae_name: "a",
        name: "default",
        settings: {},
        status: "running",
        n_analyzed_tokens: 0,
        started_at: "2025-01-01T00:00:00.000Z",
        finished_at: null,
        timings: {},
      };
      await store.putAnalysis(running);
      await store.putAnalysis({ ...running, name: "b", status: "failed", error: "boom" });
      await store.putAnalysis({ ...running, status: "complete", n_analyzed_tokens: 5 });
      assert.deepEqual(
        (await store.listAnalyses("s", "a")).map((d) => [d.name, d.status, d.error]),
        [["b", "failed", "boom"], ["default", "complete", undefined]],
      );
    });

    await t.step("removeSae() removes the SAE, its features and its analyses only", async () => {
      await store.writeFeatures(
        [0, 1, 2].map((i) => record("s", "a", i, { default: analysis(i, 1, 1) })),
      );
      await store.writeFeatures([record("s", "b", 0, { default: analysis(0, 1, 1) })]);
      assert.deepEqual(await store.removeSae("s", "a"), { sae: true, analyses: 2, features: 3 });
      assert.equal(await store.getSae("s", "a"), null);
      assert.equal(await store.getFeature("s", "a", 0), null);
      assert.deepEqual(await store.listAnalyses("s", "a"), []);
      assert.ok(await store.getSae("s", "b"));
      assert.ok(await store.getFeature("s", "b", 0));
      assert.deepEqual(await store.removeSae("s", "zzz"), { sae: false, analyses: 0, features: 0 });
    });

    await t.step("bad input is refused with a clear error", async () => {
      await assert.rejects(
        () => store.writeFeatures([record("s", "x", -1, {})]),
        (e) =>
          e instanceof RangeError &&
          e.message === "Invalid feature index -1: expected a non-negative integer",
      );
      await assert.rejects(
        () => store.listFeatures({ series: "s", name: "x", analysis: "" }),
        (e) =>
          e instanceof ConfigError &&
          /^Invalid analysis name "": expected a non-empty string$/.test(e.message),
      );
      await assert.rejects(
        async () => await store.listFeatures({ series: "s", name: "x", skip: -2 }),
        (e) =>
          e instanceof RangeError &&
          e.message === "Invalid skip -2: expected a non-negative integer",
      );
    });

    await t.step("analyzer states: put, get, list, replace on re-put, remove", async () => {
      const key = { sae_series: "s", sae_name: "st", analysis: "default", shard: 1, count: 2 };
      assert.equal(await store.getAnalyzerState(key), null);
      const first = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([4, 5])];
      const info = await store.putAnalyzerState(key, first);
      assert.deepEqual({ ...info, created_at: "" }, {
        ...key,
        bytes: 5,
        chunks: 1,
        created_at: "",
      });
      assert.deepEqual(await stateBytes(store, key), [1, 2, 3, 4, 5]);
      await store.putAnalyzerState(
        { ...key, shard: 0 },
        (async function* () {
          yield new Uint8Array([9]);
        })(),
      );
      await store.putAnalyzerState({ ...key, analysis: "other" }, [new Uint8Array([7])]);
      const listed = await store.listAnalyzerStates("s", "st", "default");
      assert.deepEqual(listed.map((l) => [l.shard, l.count, l.bytes]), [[0, 2, 1], [1, 2, 5]]);
      // A re-run of shard 1 replaces its state.
      await store.putAnalyzerState(key, [new Uint8Array([6, 6])]);
      assert.deepEqual(await stateBytes(store, key), [6, 6]);
      assert.equal((await store.listAnalyzerStates("s", "st", "default")).length, 2);
      // An empty state is a state.
      await store.putAnalyzerState({ ...key, count: 3 }, []);
      assert.deepEqual(await stateBytes(store, { ...key, count: 3 }), []);
      assert.equal(await store.removeAnalyzerStates("s", "st", "default", { count: 3 }), 1);
      assert.equal(await store.removeAnalyzerStates("s", "st", "default"), 2);
      assert.deepEqual(await store.listAnalyzerStates("s", "st", "default"), []);
      assert.equal(await store.getAnalyzerState(key), null);
      assert.deepEqual(await stateBytes(store, { ...key, analysis: "other" }), [7]);
      // removeAnalysis() takes the analysis' states with it.
      await store.removeAnalysis("s", "st", "other");
      assert.deepEqual(await store.listAnalyzerStates("s", "st", "other"), []);
      await assert.rejects(
        () => store.putAnalyzerState({ ...key, shard: 2 }, []),
        (e) =>
          e instanceof RangeError &&
          e.message === "Invalid analyzer state shard 2/2: expected 0 <= shard < count",
      );
    });

    await t.step(
      "an analyzer state larger than 8 MiB is stored in pieces and read back whole",
      async () => {
        const key = { sae_series: "s", sae_name: "big", analysis: "default", shard: 0, count: 1 };
        const big = new Uint8Array(STATE_CHUNK_BYTES * 2 + 12345);
        const rand = rng(99);
        for (let i = 0; i < big.length; i += 4096) big[i] = Math.floor(rand() * 256);
        big[big.length - 1] = 77;
        // One synthetic chunk of 16 MiB + a bit, larger than a MongoDB document may be.
        const info = await store.putAnalyzerState(key, [big.subarray(0, 100), big.subarray(100)]);
        assert.equal(info.bytes, big.length);
        assert.equal(info.chunks, 3);
        const got = await store.getAnalyzerState(key);
        assert.ok(got);
        const parts: Uint8Array[] = [];
        for await (const p of got) parts.push(p);
        assert.deepEqual(parts.map((p) => p.length), [
          STATE_CHUNK_BYTES,
          STATE_CHUNK_BYTES,
          12345,
        ]);
        let at = 0;
        for (const p of parts) {
          assert.ok(p.every((v, i) => v === big[at + i]), `piece at ${at} differs`);
          at += p.length;
        }
        await store.removeAnalyzerStates("s", "big", "default");
      },
    );

    await t.step("a put that fails half-way leaves the previous state as it was", async () => {
      const key = { sae_series: "s", sae_name: "fail", analysis: "default", shard: 0, count: 2 };
      await store.putAnalyzerState(key, [new Uint8Array([1, 1, 1])]);
      await assert.rejects(
        () =>
          store.putAnalyzerState(
            key,
            (async function* () {
              yield new Uint8Array(STATE_CHUNK_BYTES + 10); // one whole piece is stored ...
              throw new Error("worker killed");
            })(),
          ),
        (e) => e instanceof Error && e.message === "worker killed",
      );
      assert.deepEqual(await stateBytes(store, key), [1, 1, 1]);
      const [only] = await store.listAnalyzerStates("s", "fail", "default");
      assert.deepEqual([only?.bytes, only?.chunks], [3, 1]);
      await store.removeAnalyzerStates("s", "fail", "default");
    });

    await runsContract(t, store, stored);

    await t.step("a bulk write of 10000 realistic features is fully readable", async () => {
      const n = 10_000;
      const records = Array.from(
        { length: n },
        (_, i) => record("s", "bulk", i, { default: analysis(i, i % 17, 1 + (i % 101) / 10) }),
      );
      await store.writeFeatures(records);
      let count = 0;
      for await (
        const r of store.readFeatures("s", "bulk", { analysis: "default", pageSize: 1000 })
      ) {
        if (r.index !== count) assert.fail(`expected feature ${count}, read ${r.index}`);
        if (r.index % 997 === 0) assert.deepEqual(r, records[r.index]);
        count++;
      }
      assert.equal(count, n);
    });
  } finally {
    await cleanup();
  }
}

// --- Runs and generations -------------------------------------------------------------------

const T0 = new Date("2030-01-01T00:00:00.000Z");
const at = (ms: number) => new Date(T0.getTime() + ms);

function runDoc(sae: string, name = "default"): BeginDoc {
  return {
    sae_series: "r",
    sae_name: sae,
    name,
    settings: { total_analyzing_tokens: 1000 },
    n_analyzed_tokens: 0,
    started_at: T0.toISOString(),
    timings: {},
  };
}

function doneDoc(
  sae: string,
  name = "default",
): Omit<AnalysisDoc, "status" | "generation" | "run"> {
  return {
    ...runDoc(sae, name),
    n_analyzed_tokens: 1000,
    finished_at: at(60_000).toISOString(),
    timings: { total: 60 },
  };
}

/** Records of SAE `r/<sae>` for `indices`, values seeded by `seed`, with logits when asked. */
function runRecords(
  sae: string,
  indices: number[],
  seed: number,
  options: { name?: string; logits?: boolean } = {},
): FeatureRecord[] {
  return indices.map((i) => {
    const r = record("r", sae, i, {
      [options.name ?? "default"]: analysis(seed * 1000 + i, 1 + i, 1 + seed + i / 10),
    });
    return options.logits ? { ...r, logits: logitsOf(seed * 1000 + i) } : r;
  });
}

/** Everything the four readers show of one analysis of SAE `r/<sae>`. */
async function visible(store: FeatureStore, sae: string, name = "default") {
  const filter = { series: "r", name: sae, analysis: name };
  return {
    count: await store.countFeatures(filter),
    listed: (await store.listFeatures({ ...filter, sort: "act_times" })).map((f) => f.index),
    read: await readAll(store.readFeatures("r", sae, { analysis: name })),
    all: await readAll(store.readFeatures("r", sae)),
    picked: await readAll(store.readFeatures("r", sae, { indices: [0, 1, 2, 3, 7] })),
    first: await store.getFeature("r", sae, 0),
  };
}

const NOTHING = { count: 0, listed: [], read: [], all: [], picked: [], first: null };

async function busy(promise: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof AnalysisBusyError, `expected AnalysisBusyError, got ${e}`);
    for (const part of parts) assert.ok(e.message.includes(part), `"${part}" in: ${e.message}`);
    return true;
  });
}

async function runsContract(t: Deno.TestContext, store: FeatureStore, stored: Stored) {
  const key = { sae_series: "r", sae_name: "gen", name: "default" };
  const lease = (owner: string, ms = 0) => ({ owner, leaseMs: 60_000, now: at(ms) });
  let first: AnalysisRunInfo;

  await t.step(
    "a run's generation is invisible to every reader until it is published",
    async () => {
      first = await store.beginAnalysisRun(runDoc("gen"), lease("host a pid 1"));
      assert.equal(first.status, "running");
      assert.equal(first.owner, "host a pid 1");
      assert.equal(first.started_at, T0.toISOString());
      assert.equal(first.expires_at, at(60_000).toISOString());
      const written = runRecords("gen", [0, 1, 2, 3], 1, { logits: true });
      await store.writeFeatures(written, { generation: first.generation });
      assert.deepEqual(await visible(store, "gen"), NOTHING);
      const running = await store.getAnalysis("r", "gen", "default");
      assert.equal(running?.status, "running");
      assert.equal(running?.generation, undefined);
      assert.deepEqual(running?.run, first);
      assert.deepEqual(await stored("r", "gen", "default"), { [first.generation]: 4 });

      await store.publishAnalysisRun(doneDoc("gen"), first.generation);
      const published = await store.getAnalysis("r", "gen", "default");
      assert.deepEqual(published, {
        ...doneDoc("gen"),
        status: "complete",
        generation: first.generation,
      });
      const seen = await visible(store, "gen");
      assert.equal(seen.count, 4);
      assert.deepEqual(seen.listed, [3, 2, 1, 0]);
      assert.deepEqual(seen.read, written);
      assert.deepEqual(seen.all, written);
      assert.deepEqual(seen.picked, written);
      assert.deepEqual(seen.first, written[0]);
    },
  );

  await t.step(
    "a rerun keeps the previous result visible until it publishes, then replaces it",
    async () => {
      const before = await visible(store, "gen");
      const second = await store.beginAnalysisRun(runDoc("gen"), lease("host a pid 2", 1000));
      assert.notEqual(second.generation, first.generation);
      // A published analysis stays complete while the rerun holds it.
      const held = await store.getAnalysis("r", "gen", "default");
      assert.equal(held?.status, "complete");
      assert.equal(held?.generation, first.generation);
      assert.deepEqual(held?.run, second);
      const rewritten = runRecords("gen", [0, 1, 7], 2, { logits: true });
      await store.writeFeatures(rewritten, { generation: second.generation });
      assert.deepEqual(await visible(store, "gen"), before);

      await store.publishAnalysisRun(doneDoc("gen"), second.generation);
      const seen = await visible(store, "gen");
      assert.equal(seen.count, 3);
      assert.deepEqual(seen.read, rewritten);
      assert.deepEqual(seen.all, rewritten);
      assert.deepEqual(seen.picked, rewritten);
      assert.deepEqual(seen.first, rewritten[0]);
      assert.equal(
        await store.getFeature("r", "gen", 3),
        null,
        "feature 3 was only in the old run",
      );
      // The old generation is gone from storage, and cannot be written again.
      assert.deepEqual(await stored("r", "gen", "default"), { [second.generation]: 3 });
      await busy(
        store.writeFeatures(runRecords("gen", [5], 9), { generation: first.generation }),
        first.generation,
      );
      first = second;
    },
  );

  await t.step(
    "a failed or interrupted run removes what it wrote, the published result stays",
    async () => {
      const before = await visible(store, "gen");
      const failing = await store.beginAnalysisRun(runDoc("gen"), lease("host a pid 3", 2000));
      await store.writeFeatures(runRecords("gen", [0, 1, 2, 3, 4], 3, { logits: true }), {
        generation: failing.generation,
      });
      await store.endAnalysisRun(key, failing.generation, {
        status: "failed",
        error: "No space left on device",
      });
      assert.deepEqual(await visible(store, "gen"), before);
      const doc = await store.getAnalysis("r", "gen", "default");
      assert.equal(doc?.status, "complete");
      assert.equal(doc?.generation, first.generation);
      assert.deepEqual(doc?.run, {
        ...failing,
        status: "failed",
        error: "No space left on device",
      });
      assert.deepEqual(await stored("r", "gen", "default"), { [first.generation]: 3 });
      // Ending it again, or a renew or publish after the end, changes nothing.
      await store.endAnalysisRun(key, failing.generation, { status: "interrupted" });
      await busy(
        store.renewAnalysisRun(key, failing.generation, { leaseMs: 1000 }),
        "already ended",
      );
      await busy(store.publishAnalysisRun(doneDoc("gen"), failing.generation));
      assert.deepEqual(await store.getAnalysis("r", "gen", "default"), doc);

      // With nothing published, the analysis takes the outcome as its status.
      const fresh = await store.beginAnalysisRun(runDoc("fresh"), lease("host a pid 4"));
      await store.writeFeatures(runRecords("fresh", [0, 1], 4), { generation: fresh.generation });
      await store.endAnalysisRun(
        { ...key, sae_name: "fresh" },
        fresh.generation,
        { status: "interrupted", error: "stopped by SIGINT" },
      );
      const ended = await store.getAnalysis("r", "fresh", "default");
      assert.equal(ended?.status, "interrupted");
      assert.equal(ended?.error, "stopped by SIGINT");
      assert.equal(ended?.generation, undefined);
      assert.equal(ended?.run?.status, "interrupted");
      assert.equal(typeof ended?.finished_at, "string");
      assert.deepEqual(await visible(store, "fresh"), NOTHING);
      assert.deepEqual(await stored("r", "fresh", "default"), {});
    },
  );

  await t.step("a begin removes what an earlier run left when it was killed", async () => {
    const killed = await store.beginAnalysisRun(runDoc("gen"), lease("host a pid 5", 3000));
    await store.writeFeatures(runRecords("gen", [0, 1], 5), { generation: killed.generation });
    // No end: the process died. Its lease lapses; the next run begins and cleans up.
    const next = await store.beginAnalysisRun(runDoc("gen"), lease("host b pid 6", 3000 + 61_000));
    assert.deepEqual(await stored("r", "gen", "default"), { [first.generation]: 3 });
    await store.endAnalysisRun(key, next.generation, { status: "interrupted" });
  });

  await t.step(
    "a live lease refuses a second run, naming its owner, start and expiry",
    async () => {
      const holder = await store.beginAnalysisRun(runDoc("lease"), lease("host a pid 7", 0));
      await busy(
        store.beginAnalysisRun(runDoc("lease"), lease("host b pid 8", 59_000)),
        'analysis "default" of r/lease',
        "host a pid 7",
        `since ${T0.toISOString()}`,
        at(60_000).toISOString(),
      );
      // A heartbeat moves the expiry: at 59 s, for another minute.
      await store.renewAnalysisRun(
        { ...key, sae_name: "lease" },
        holder.generation,
        { leaseMs: 60_000, now: at(59_000) },
      );
      await busy(
        store.beginAnalysisRun(runDoc("lease"), lease("host b pid 8", 100_000)),
        at(119_000).toISOString(),
      );
      const doc = await store.getAnalysis("r", "lease", "default");
      assert.equal(doc?.run?.heartbeat_at, at(59_000).toISOString());
      assert.equal(doc?.run?.expires_at, at(119_000).toISOString());
    },
  );

  await t.step(
    "an expired lease lets a new run begin; the old run can neither renew nor publish",
    async () => {
      const k = { ...key, sae_name: "lease" };
      const old = (await store.getAnalysis("r", "lease", "default"))!.run!;
      const taker = await store.beginAnalysisRun(runDoc("lease"), lease("host b pid 9", 120_000));
      assert.deepEqual((await store.getAnalysis("r", "lease", "default"))?.run, taker);
      await busy(
        store.renewAnalysisRun(k, old.generation, { leaseMs: 60_000, now: at(120_500) }),
        `renew the lease of generation ${old.generation}`,
        "host b pid 9",
      );
      await busy(store.publishAnalysisRun(doneDoc("lease"), old.generation), "host b pid 9");
      await busy(
        store.writeFeatures(runRecords("lease", [0], 6), { generation: old.generation }),
        old.generation,
      );
      await store.writeFeatures(runRecords("lease", [0], 7), { generation: taker.generation });
      await store.publishAnalysisRun(doneDoc("lease"), taker.generation);
      // A renew that arrives after the publish does nothing.
      await store.renewAnalysisRun(k, taker.generation, { leaseMs: 60_000 });
      const doc = await store.getAnalysis("r", "lease", "default");
      assert.equal(doc?.generation, taker.generation);
      assert.equal(doc?.run, undefined);
      assert.deepEqual((await visible(store, "lease")).read, runRecords("lease", [0], 7));
    },
  );

  await t.step("of two concurrent begins exactly one wins", async () => {
    for (let round = 0; round < 5; round++) {
      const sae = `race${round}`;
      const results = await Promise.allSettled([
        store.beginAnalysisRun(runDoc(sae), { owner: "host a pid 10", leaseMs: 60_000 }),
        store.beginAnalysisRun(runDoc(sae), { owner: "host b pid 11", leaseMs: 60_000 }),
      ]);
      const won = results.filter((r) => r.status === "fulfilled");
      const lost = results.filter((r) => r.status === "rejected");
      assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results)}`);
      assert.ok((lost[0] as PromiseRejectedResult).reason instanceof AnalysisBusyError);
      const winner = (won[0] as PromiseFulfilledResult<AnalysisRunInfo>).value;
      assert.deepEqual((await store.getAnalysis("r", sae, "default"))?.run, winner);
    }
  });

  await t.step(
    "a stream that outlives a publish errors instead of mixing generations",
    async () => {
      const k = { ...key, sae_name: "mix" };
      const a = await store.beginAnalysisRun(runDoc("mix"), lease("host a pid 12"));
      await store.writeFeatures(runRecords("mix", [0, 1, 2, 3], 1), { generation: a.generation });
      await store.publishAnalysisRun(doneDoc("mix"), a.generation);
      const reader = store.readFeatures("r", "mix", { analysis: "default", pageSize: 1 })
        .getReader();
      assert.equal((await reader.read()).value?.index, 0);
      const b = await store.beginAnalysisRun(runDoc("mix"), lease("host a pid 12", 1000));
      await store.writeFeatures(runRecords("mix", [0, 1, 2, 3], 2), { generation: b.generation });
      await store.publishAnalysisRun(doneDoc("mix"), b.generation);
      await assert.rejects(
        async () => {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            // Whatever is delivered before the error comes from the first generation.
            assert.deepEqual(value, runRecords("mix", [value.index], 1)[0]);
          }
        },
        (e) =>
          e instanceof Error &&
          e.message.includes('analysis "default" of r/mix was published anew while they were read'),
      );
      await store.endAnalysisRun(k, b.generation, { status: "failed" }); // a no-op: b published
      assert.equal((await store.getAnalysis("r", "mix", "default"))?.generation, b.generation);
    },
  );

  await t.step(
    "logits written by a run become the feature's when it publishes; interpretations at once",
    async () => {
      const k = { ...key, sae_name: "logits" };
      await store.writeFeatures([{ ...record("r", "logits", 0, {}), logits: logitsOf(1) }]);
      const run = await store.beginAnalysisRun(runDoc("logits"), lease("host a pid 13"));
      await store.writeFeatures([
        {
          ...runRecords("logits", [0], 1)[0]!,
          logits: logitsOf(2),
          interpretation: interpretation("x"),
        },
      ], { generation: run.generation });
      const during = await store.getFeature("r", "logits", 0);
      assert.deepEqual(during?.logits, logitsOf(1));
      assert.deepEqual(during?.interpretation, interpretation("x"));
      assert.deepEqual(during?.analyses, {});
      await store.publishAnalysisRun(doneDoc("logits"), run.generation);
      const after = await store.getFeature("r", "logits", 0);
      assert.deepEqual(after?.logits, logitsOf(2));
      assert.deepEqual(after?.interpretation, interpretation("x"));
      assert.deepEqual(
        (await store.listFeatures({ series: "r", name: "logits" }))[0]?.interpretation_text,
        "x",
      );
      assert.deepEqual(
        (await readAll(store.readFeatures("r", "logits", { analysis: "default" })))[0],
        after,
      );
      // Logits written later without a generation (a DLA run) are the latest: they win.
      await new Promise((r) => setTimeout(r, 2));
      await store.writeFeatures([{ ...record("r", "logits", 0, {}), logits: logitsOf(3) }]);
      assert.deepEqual((await store.getFeature("r", "logits", 0))?.logits, logitsOf(3));
      await store.removeAnalysis("r", "logits", "default");
      assert.deepEqual((await store.getFeature("r", "logits", 0))?.logits, logitsOf(3));
      assert.ok(k);
    },
  );

  await t.step(
    "features written without a generation stay visible until a run publishes",
    async () => {
      const old = runRecords("legacy", [0, 1, 2], 1);
      await store.writeFeatures(old);
      assert.deepEqual((await visible(store, "legacy")).read, old);
      const run = await store.beginAnalysisRun(runDoc("legacy"), lease("host a pid 14"));
      await store.writeFeatures(runRecords("legacy", [0, 1], 2), { generation: run.generation });
      assert.deepEqual((await visible(store, "legacy")).read, old);
      await store.publishAnalysisRun(doneDoc("legacy"), run.generation);
      assert.deepEqual(
        (await visible(store, "legacy")).all,
        runRecords("legacy", [0, 1], 2).concat(
          [record("r", "legacy", 2, {})],
        ),
      );
      assert.deepEqual(await stored("r", "legacy", "default"), { [run.generation]: 2 });
    },
  );

  await t.step("removeAnalysis() and removeSae() remove every generation", async () => {
    const k = { ...key, sae_name: "rm" };
    const a = await store.beginAnalysisRun(runDoc("rm"), lease("host a pid 15"));
    await store.writeFeatures(runRecords("rm", [0, 1, 2], 1, { logits: true }), {
      generation: a.generation,
    });
    await store.publishAnalysisRun(doneDoc("rm"), a.generation);
    const b = await store.beginAnalysisRun(runDoc("rm"), lease("host a pid 15", 1000));
    await store.writeFeatures(runRecords("rm", [0, 1], 2), { generation: b.generation });
    await store.writeFeatures(runRecords("rm", [5], 3, { name: "other" }));
    assert.deepEqual(await store.removeAnalysis("r", "rm", "default"), {
      analysis: true,
      features: 3,
    });
    assert.deepEqual(await stored("r", "rm", "default"), {});
    assert.equal(await store.getAnalysis("r", "rm", "default"), null);
    await busy(store.writeFeatures(runRecords("rm", [0], 4), { generation: b.generation }));
    await busy(store.renewAnalysisRun(k, b.generation, { leaseMs: 1000 }), "it was removed");
    assert.deepEqual(await store.getFeature("r", "rm", 0), null);
    assert.equal((await store.getFeature("r", "rm", 5))?.index, 5);

    const c = await store.beginAnalysisRun(runDoc("rm"), lease("host a pid 16"));
    await store.writeFeatures(runRecords("rm", [0, 1, 2, 3], 5), { generation: c.generation });
    await store.publishAnalysisRun(doneDoc("rm"), c.generation);
    const d = await store.beginAnalysisRun(runDoc("rm", "third"), lease("host a pid 16"));
    await store.writeFeatures(runRecords("rm", [9], 6, { name: "third" }), {
      generation: d.generation,
    });
    assert.deepEqual(await store.removeSae("r", "rm"), { sae: false, analyses: 2, features: 6 });
    assert.deepEqual(await stored("r", "rm", "default"), {});
    assert.deepEqual(await stored("r", "rm", "third"), {});
    assert.deepEqual(await visible(store, "rm"), NOTHING);
  });

  await t.step("bad run arguments are refused with a clear error", async () => {
    await assert.rejects(
      () => store.writeFeatures([], { generation: "a/b" }),
      (e) => e instanceof RangeError && e.message.startsWith('Invalid generation "a/b": '),
    );
    await assert.rejects(
      () => store.beginAnalysisRun(runDoc("bad"), { owner: "", leaseMs: 1000 }),
      (e) => e instanceof TypeError && e.message.includes("lease.owner"),
    );
    await assert.rejects(
      () => store.beginAnalysisRun(runDoc("bad"), { owner: "x", leaseMs: 0 }),
      (e) =>
        e instanceof RangeError && e.message === "Invalid lease 0 ms: expected a positive number",
    );
    await busy(store.publishAnalysisRun(doneDoc("bad"), "nope"), "it was removed");
  });
}

Deno.test("the SQLite store keeps the FeatureStore contract", async (t) => {
  await withTempDir(async (dir) => {
    await contract(t, async () => {
      const store = await openStore({ outputDir: `${dir}/out` });
      assert.ok(store instanceof SqliteFeatureStore);
      assert.equal(store.location, `${dir}/out/saeflow.sqlite`);
      return {
        store,
        stored: (series, sae, analysis) => store.storedGenerations(series, sae, analysis),
        cleanup: () => store.close(),
      };
    });
  });
});

const MONGO_CONTRACT = "the MongoDB store keeps the FeatureStore contract";
Deno.test({
  name: MONGO_CONTRACT,
  ignore: mongoIgnored(MONGO_CONTRACT),
  fn: async (t) => {
    await withMongo(t, async ({ store }) => {
      await contract(
        t,
        () =>
          Promise.resolve({
            store,
            stored: (series, sae, analysis) => store.storedGenerations(series, sae, analysis),
            cleanup: () => Promise.resolve(),
          }),
      );
    });
  },
});

const JSON_SAME = "featureToJson() prints byte-identical JSON from SQLite and MongoDB";
Deno.test({
  name: JSON_SAME,
  ignore: mongoIgnored(JSON_SAME),
  fn: async (t) => {
    await withTempDir((dir) =>
      withMongo(t, async ({ store: mongo }) => {
        await using sqlite = SqliteFeatureStore.open({ outputDir: dir });
        const vocab = Array.from({ length: 40_000 }, (_, i) => `tok${i}`);
        vocab[3797] = " cat";
        for (const store of [sqlite, mongo]) {
          // Logits first, then two analyses, then the interpretation: field order differs by store.
          await store.writeFeatures([{ ...record("s", "j", 4, {}), logits: logitsOf(4) }]);
          await store.writeFeatures([
            record("s", "j", 4, { zeta: analysis(1, 3, 2), alpha: analysis(2, 4, 1) }),
          ]);
          await store.writeFeatures([{
            ...record("s", "j", 4, {}),
            interpretation: interpretation("x"),
          }]);
        }
        const a = JSON.stringify(featureToJson((await sqlite.getFeature("s", "j", 4))!, vocab));
        const b = JSON.stringify(featureToJson((await mongo.getFeature("s", "j", 4))!, vocab));
        assert.equal(a, b);
        const parsed = JSON.parse(a);
        assert.deepEqual(Object.keys(parsed), [
          "sae_name",
          "sae_series",
          "index",
          "analyses",
          "logits",
          "interpretation",
        ]);
        assert.deepEqual(Object.keys(parsed.analyses), ["alpha", "zeta"]);
        const s = parsed.analyses.alpha.samplings[0].samples[0];
        assert.deepEqual(Object.keys(s).slice(0, 3), ["tokens", "token_strings", "acts"]);
        assert.deepEqual(s.token_strings, s.tokens.map((id: number) => vocab[id] ?? null));

        // The same feature published by runs: one analysis under each run's generation, the
        // logits with the second, the interpretation written without one.
        for (const store of [sqlite, mongo]) {
          for (const [name, seed] of [["zeta", 1], ["alpha", 2]] as const) {
            const doc = { ...runDoc("j", name), sae_series: "s" };
            const run = await store.beginAnalysisRun(doc, {
              owner: "host t pid 1",
              leaseMs: 60_000,
            });
            const rec = record("s", "j", 5, { [name]: analysis(seed, 3 + seed, 2) });
            await store.writeFeatures([seed === 2 ? { ...rec, logits: logitsOf(5) } : rec], {
              generation: run.generation,
            });
            await store.publishAnalysisRun({ ...doc, finished_at: null }, run.generation);
          }
          await store.writeFeatures([{
            ...record("s", "j", 5, {}),
            interpretation: interpretation("y"),
          }]);
        }
        const c = JSON.stringify(featureToJson((await sqlite.getFeature("s", "j", 5))!, vocab));
        const d = JSON.stringify(featureToJson((await mongo.getFeature("s", "j", 5))!, vocab));
        assert.equal(c, d);
        assert.deepEqual(Object.keys(JSON.parse(c)), Object.keys(parsed));
        assert.deepEqual(Object.keys(JSON.parse(c).analyses), ["alpha", "zeta"]);
      })
    );
  },
});

const TWO_CLIENTS = "two MongoDB connections racing to begin: exactly one wins, every round";
Deno.test({
  name: TWO_CLIENTS,
  ignore: mongoIgnored(TWO_CLIENTS),
  fn: async (t) => {
    await withMongo(t, async ({ uri, db, store: a }) => {
      await using b = await MongoFeatureStore.open({ uri, db, timeoutMs: 10_000 });
      for (let round = 0; round < 8; round++) {
        const doc = runDoc(`race${round}`);
        const results = await Promise.allSettled([
          a.beginAnalysisRun(doc, { owner: "host a pid 1", leaseMs: 60_000 }),
          b.beginAnalysisRun(doc, { owner: "host b pid 2", leaseMs: 60_000 }),
        ]);
        const won = results.filter((r) => r.status === "fulfilled");
        assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results)}`);
        const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
        assert.ok(lost.reason instanceof AnalysisBusyError, String(lost.reason));
      }
      // Many heartbeats later (older log entries are removed as new ones come) both connections
      // still read the latest lease, and it still refuses a second run.
      const k = { sae_series: "r", sae_name: "race0", name: "default" };
      const holder = (await a.getAnalysis("r", "race0", "default"))!.run!;
      const store = holder.owner === "host a pid 1" ? a : b;
      for (let i = 1; i <= 40; i++) {
        await store.renewAnalysisRun(k, holder.generation, { leaseMs: 1000 * i });
      }
      for (const s of [a, b]) {
        const run = (await s.getAnalysis("r", "race0", "default"))!.run!;
        assert.equal(Date.parse(run.expires_at) - Date.parse(run.heartbeat_at), 40_000);
      }
      await assert.rejects(
        () => b.beginAnalysisRun(runDoc("race0"), { owner: "host c pid 3", leaseMs: 60_000 }),
        AnalysisBusyError,
      );
    });
  },
});

const BARE_HOST = "openStore() accepts a bare host:port for MongoDB";
Deno.test({
  name: BARE_HOST,
  ignore: mongoIgnored(BARE_HOST),
  fn: async (t) => {
    await withMongo(t, async ({ uri, db }) => {
      const bare = new URL(uri.replace(/^mongodb:/, "http:")).host; // e.g. 127.0.0.1:27117
      await using store = await openStore({ mongo: { uri: bare, db } });
      assert.ok(store instanceof MongoFeatureStore);
      assert.equal(store.location, `mongodb://${bare}/${db}`);
      await store.putDataset({ name: "d", config: {} });
      assert.deepEqual(await store.getDataset("d"), { name: "d", config: {} });
    });
  },
});

Deno.test("an unreachable MongoDB rejects with StoreUnavailableError naming the timeout", async () => {
  // That the timeout bounds the wait is the driver's business, given the options it gets:
  // lib/store/mongo_test.ts checks those (mongoClientOptions), not the elapsed time.
  await assert.rejects(
    () =>
      openStore({
        mongo: { uri: "mongodb://saeflow:secretpw@127.0.0.1:1/", db: "x", timeoutMs: 1500 },
      }),
    (e) => {
      assert.ok(e instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${e}`);
      assert.match(e.message, /^Cannot reach MongoDB at 127\.0\.0\.1:1 within 1500 ms: /);
      assert.ok(!e.message.includes("secretpw"), e.message);
      assert.ok(!String((e.cause as Error).message).includes("secretpw"));
      return true;
    },
  );
});
