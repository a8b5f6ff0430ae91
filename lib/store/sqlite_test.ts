import assert from "node:assert/strict";
import { StoreUnavailableError } from "../errors.ts";
import { SqliteFeatureStore } from "./sqlite.ts";

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
