import assert from "node:assert/strict";
import { eventually, test } from "../lib/_testing.ts";
import { openStore } from "../lib/store/mod.ts";
import type { FeatureStore } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { storeWriter } from "./store_writer.ts";

const record = (index: number): FeatureRecord => ({
  sae_series: "x",
  sae_name: "s",
  index,
  analyses: {},
  logits: {
    top_positive: [{ token: "a", id: 1, logit: index }],
    top_negative: [],
    histogram: { edges: new Float64Array([0, 1]), counts: new Float64Array([1]) },
  },
});

async function withStore(fn: (store: FeatureStore) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await using store = await openStore({ outputDir: dir });
    await fn(store);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

test("storeWriter() writes full batches as they fill and the rest on close", async () => {
  await withStore(async (store) => {
    const batches: number[][] = [];
    const writer = storeWriter(store, {
      batchSize: 2,
      onWritten: (b) => batches.push(b.map((r) => r.index)),
    }).getWriter();
    for (const i of [0, 1, 2]) await writer.write(record(i));
    assert.deepEqual(batches, [[0, 1]]);
    await writer.close();
    assert.deepEqual(batches, [[0, 1], [2]]);
    assert.equal((await store.getFeature("x", "s", 2))?.logits?.top_positive[0]?.logit, 2);
  });
});

test("storeWriter() with maxDelayMs writes a partial batch when no more records come", async () => {
  await withStore(async (store) => {
    const batches: number[][] = [];
    const writer = storeWriter(store, {
      batchSize: 100,
      maxDelayMs: 5,
      onWritten: (b) => batches.push(b.map((r) => r.index)),
    }).getWriter();
    await writer.write(record(7));
    await eventually(() => batches.length === 1, "the timed write");
    assert.deepEqual(batches, [[7]]);
    assert.notEqual(await store.getFeature("x", "s", 7), null);
    await writer.write(record(8));
    await writer.close();
    assert.deepEqual(batches, [[7], [8]]);
  });
});

test("storeWriter(): a failed timed write fails the next write; abort drops what is buffered", async () => {
  await withStore(async (store) => {
    let fail = true;
    const writer = storeWriter(store, {
      batchSize: 100,
      maxDelayMs: 1,
      beforeWrite: () => {
        if (fail) throw new Error("lease lost");
      },
    }).getWriter();
    await writer.write(record(1));
    let caught: unknown;
    await eventually(() => {
      writer.write(record(2)).catch((e) => caught ??= e);
      return caught !== undefined;
    }, "the failure to surface");
    assert.equal((caught as Error).message, "lease lost");
    assert.equal(await store.getFeature("x", "s", 1), null);

    fail = false;
    const second = storeWriter(store, { batchSize: 100 }).getWriter();
    await second.write(record(3));
    await second.abort(new Error("stop"));
    assert.equal(await store.getFeature("x", "s", 3), null, "aborted: nothing written");
  });
});
