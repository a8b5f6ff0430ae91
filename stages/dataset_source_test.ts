import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { assertRejects, test } from "../lib/_testing.ts";
import { ConfigError } from "../lib/errors.ts";
import { datasetSource } from "./dataset_source.ts";

const TEXT = new URL("../fixtures/text/", import.meta.url).pathname;

async function withFiles(
  files: Record<string, string>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(join(dir, name), text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const lines = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ text: `${prefix}${i}` })).join("\n");

test("datasetSource() reads datasets one after the other in config order", async () => {
  await withFiles({ "a.jsonl": lines("a", 3), "b.txt": "b0\nb1\n" }, async (dir) => {
    const records = await Array.fromAsync(datasetSource([
      { name: "A", pathOrId: join(dir, "a.jsonl") },
      { name: "B", pathOrId: join(dir, "b.txt") },
    ]));
    assertEquals(records.map((r) => [r.source, r.shard, r.row, r.text]), [
      ["A", 0, 0, "a0"],
      ["A", 0, 1, "a1"],
      ["A", 0, 2, "a2"],
      ["B", 0, 0, "b0"],
      ["B", 0, 1, "b1"],
    ]);
  });
});

test("datasetSource() interleaves datasets by sample weights, deterministically", async () => {
  await withFiles({ "a.jsonl": lines("a", 20), "b.jsonl": lines("b", 4) }, async (dir) => {
    const read = () =>
      Array.fromAsync(datasetSource([
        { name: "A", pathOrId: join(dir, "a.jsonl") },
        { name: "B", pathOrId: join(dir, "b.jsonl") },
      ], { sampleWeights: [3, 1] }));
    const records = await read();
    assertEquals(records.map((r) => r.text).slice(0, 8), [
      "a0",
      "a1",
      "b0",
      "a2",
      "a3",
      "a4",
      "b1",
      "a5",
    ]);
    // B runs out after 4 of its records; A goes on alone. Nothing is lost or repeated.
    assertEquals(records.filter((r) => r.source === "A").map((r) => r.row), [...Array(20).keys()]);
    assertEquals(records.filter((r) => r.source === "B").map((r) => r.row), [0, 1, 2, 3]);
    assertEquals((await read()).map((r) => r.text), records.map((r) => r.text));
  });
});

test("datasetSource() reports a bad dataset anywhere in the list before the first record", async (t) => {
  await t.step("a missing path in the second dataset", async () => {
    const missing = join(TEXT, "nope.jsonl");
    const reader = datasetSource([
      { name: "ok", pathOrId: join(TEXT, "corpus.jsonl") },
      { name: "gone", pathOrId: missing },
    ]).getReader();
    const err = await assertRejects(() => reader.read(), ConfigError);
    assertEquals(err.message, `Dataset "gone" at ${missing}: no such file or directory`);
  });
  await t.step("sample weights that do not match the datasets", async () => {
    const err = await assertRejects(
      () =>
        Array.fromAsync(datasetSource([{ name: "ok", pathOrId: join(TEXT, "corpus.jsonl") }], {
          sampleWeights: [1, 2],
        })),
      ConfigError,
    );
    assertEquals(
      err.message,
      "sample_weights: expected 1 positive numbers (one per dataset), got [1,2]",
    );
  });
  await t.step("an empty list", async () => {
    const err = await assertRejects(() => Array.fromAsync(datasetSource([])), ConfigError);
    assertEquals(err.message, "No dataset to read: the list is empty");
  });
});

test("datasetSource() cancel closes the files of every dataset", async (t) => {
  for (const sampleWeights of [undefined, [1, 1]]) {
    await t.step(sampleWeights ? "interleaved" : "concatenated", async () => {
      const stream = datasetSource([
        { name: "a", pathOrId: join(TEXT, "corpus.jsonl.gz") },
        { name: "b", pathOrId: join(TEXT, "corpus.parquet") },
      ], sampleWeights ? { sampleWeights } : {});
      const reader = stream.getReader();
      for (let i = 0; i < 5; i++) assert(!(await reader.read()).done);
      await reader.cancel();
      // The resource sanitizer fails this test if a file handle is still open.
    });
  }
});

test("datasetSource() passes a source error to the reader", async () => {
  await withFiles({}, async (dir) => {
    const path = join(dir, "broken.jsonl.gz");
    const good = await Deno.readFile(join(TEXT, "corpus.jsonl.gz"));
    await Deno.writeFile(path, good.slice(0, 2000));
    const err = await assertRejects(
      () => Array.fromAsync(datasetSource([{ name: "gz", pathOrId: path }])),
      Error,
    );
    assert(err.message.startsWith(`Dataset "gz" at ${path}: cannot read ${path}: `), err.message);
  });
});
