import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { assertRejects, GatedSink, settle, test } from "../_testing.ts";
import { ConfigError } from "../errors.ts";
import type { TextRecord } from "../types.ts";
import { type BadRowInfo, openDataset } from "./dataset.ts";

const TEXT = new URL("../../fixtures/text/", import.meta.url).pathname;

async function corpusTexts(): Promise<string[]> {
  const lines = (await Deno.readTextFile(join(TEXT, "corpus.jsonl"))).split("\n");
  return lines.filter((l) => l !== "").map((l) => JSON.parse(l).text as string);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Captures console.error while `fn` runs. */
async function captureStderr(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    await fn();
  } finally {
    console.error = original;
  }
  return lines;
}

test("openDataset() reads every file format with the same records in the same order", async (t) => {
  const expected = await corpusTexts();
  assert(expected.length > 400);
  const cases: [string, (s: string) => string][] = [
    ["corpus.jsonl", (s) => s],
    ["corpus.jsonl.gz", (s) => s],
    ["corpus.parquet", (s) => s],
    // The .txt fixture is one row per line: the paragraphs' inner line breaks became spaces.
    ["corpus.txt", (s) => s.replaceAll("\n", " ")],
  ];
  for (const [file, expect] of cases) {
    await t.step(file, async () => {
      const source = await openDataset({ name: "corpus", pathOrId: join(TEXT, file) });
      const records = await Array.fromAsync(source);
      assertEquals(records.map((r) => r.text), expected.map(expect));
      assertEquals(records.map((r) => r.row), expected.map((_, i) => i));
      assert(records.every((r) => r.source === "corpus" && r.shard === 0));
      const { bytesRead, ...counts } = source.stats;
      assertEquals(counts, { rowsRead: expected.length, records: expected.length, badRows: 0 });
      // Line files are read exactly once (parquet: see the row-group test).
      if (!file.endsWith(".parquet")) {
        assertEquals(bytesRead, (await Deno.stat(join(TEXT, file))).size);
      }
    });
  }
});

test("openDataset() reads a folder as shards in sorted file order, rows counted per shard", async () => {
  const expected = await corpusTexts();
  const source = await openDataset({ name: "folder", pathOrId: join(TEXT, "folder") });
  assertEquals(source.files.map((f) => f.split("/").pop()), [
    "part-000.jsonl",
    "part-001.jsonl",
    "part-002.jsonl",
  ]);
  const records = await Array.fromAsync(source);
  assertEquals(records.map((r) => r.text), expected);
  const third = Math.floor(expected.length / 3);
  assertEquals(records[third]!.shard, 1);
  assertEquals(records[third]!.row, 0);
  assertEquals(records[third - 1]!.shard, 0);
  assertEquals(records[third - 1]!.row, third - 1);
});

test("openDataset() gives each worker a disjoint slice: whole files, or rows when files are few", async (t) => {
  const key = (r: TextRecord) => `${r.shard}:${r.row}`;
  const all = (await Array.fromAsync(
    await openDataset({ name: "f", pathOrId: join(TEXT, "folder") }),
  )).map(key);
  for (const count of [2, 3, 5]) {
    await t.step(`folder of 3 files, ${count} workers`, async () => {
      const slices: string[][] = [];
      for (let index = 0; index < count; index++) {
        const records = await Array.fromAsync(
          await openDataset({ name: "f", pathOrId: join(TEXT, "folder"), shard: { index, count } }),
        );
        if (count <= 3) assert(records.every((r) => r.shard % count === index));
        else assert(records.every((r) => r.row % count === index));
        slices.push(records.map(key));
      }
      assertEquals(slices.flat().sort(), [...all].sort());
    });
  }
  await t.step("one file, 3 workers: rows by row % 3", async () => {
    const records = await Array.fromAsync(
      await openDataset({
        name: "c",
        pathOrId: join(TEXT, "corpus.jsonl"),
        shard: { index: 1, count: 3 },
      }),
    );
    assertEquals(records.slice(0, 3).map((r) => r.row), [1, 4, 7]);
  });
  await t.step("a bad shard is a ConfigError", async () => {
    const err = await assertRejects(
      () =>
        openDataset({
          name: "c",
          pathOrId: join(TEXT, "corpus.jsonl"),
          shard: { index: 3, count: 3 },
        }),
      ConfigError,
    );
    assertEquals(err.message, 'Dataset "c": shard 3/3 is not valid (expected 0 <= index < count)');
  });
});

test("openDataset() skips bad rows and reports each with file and line", async () => {
  const path = join(TEXT, "bad.jsonl");
  const bad: BadRowInfo[] = [];
  const source = await openDataset({ name: "bad", pathOrId: path }, {
    onBadRow: (b) => bad.push(b),
  });
  const records = await Array.fromAsync(source);
  const good = (await corpusTexts()).slice(0, 7);
  assertEquals(records.map((r) => r.text), good);
  assertEquals(records.map((r) => r.row), [0, 1, 3, 4, 6, 8, 9]);
  assertEquals(bad.map((b) => [b.line, b.row, b.shard, b.file]), [
    [3, 2, 0, path],
    [6, 5, 0, path],
    [8, 7, 0, path],
  ]);
  assert(bad[0]!.message.startsWith(`${path}:3: invalid JSON (`), bad[0]!.message);
  assertEquals(bad[1]!.message, `${path}:6: missing field "text"`);
  assertEquals(bad[2]!.message, `${path}:8: invalid UTF-8`);
  assertEquals(source.stats, {
    rowsRead: 10,
    records: 7,
    badRows: 3,
    bytesRead: (await Deno.stat(path)).size,
  });
});

test("openDataset() logs bad rows to stderr one line each, capped, then a count", async () => {
  const path = join(TEXT, "bad.jsonl");
  const lines = await captureStderr(async () => {
    await Array.fromAsync(await openDataset({ name: "bad", pathOrId: path }, { maxBadRowLogs: 1 }));
  });
  assertEquals(lines.length, 2);
  assert(lines[0]!.startsWith(`Skipped bad row in dataset "bad": ${path}:3: invalid JSON (`));
  assertEquals(lines[1], 'Skipped 2 more bad rows in dataset "bad" (3 in all)');
});

test("openDataset() reports wrong field types, non-objects and a configurable text field", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "rows.jsonl");
    await Deno.writeTextFile(
      path,
      '{"body":"one"}\r\n{"body":5}\n[1,2]\n\n   \n{"body":null}\n{"body":"two"}',
    );
    const bad: string[] = [];
    const records = await Array.fromAsync(
      await openDataset({ name: "t", pathOrId: path, textField: "body" }, {
        onBadRow: (b) => bad.push(b.message),
      }),
    );
    // CRLF is stripped, blank lines are skipped silently but still counted as rows, the last
    // line needs no newline.
    assertEquals(records.map((r) => [r.row, r.text]), [[0, "one"], [6, "two"]]);
    assertEquals(bad, [
      `${path}:2: field "body" is number, not a string`,
      `${path}:3: not a JSON object`,
      `${path}:6: field "body" is null, not a string`,
    ]);
  });
});

test("openDataset() picks the train split of a Hugging Face datasets snapshot", async (t) => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "data"));
    await Deno.mkdir(join(dir, ".cache"));
    await Deno.writeTextFile(join(dir, "README.md"), "# card\n");
    await Deno.writeTextFile(join(dir, ".cache", "x.jsonl"), '{"text":"hidden"}\n');
    await Deno.writeTextFile(join(dir, "data", "train-00001-of-00002.jsonl"), '{"text":"t1"}\n');
    await Deno.writeTextFile(join(dir, "data", "train-00000-of-00002.jsonl"), '{"text":"t0"}\n');
    await Deno.writeTextFile(join(dir, "data", "test-00000-of-00001.jsonl"), '{"text":"e0"}\n');
    // Snapshot files are symlinks into blobs/.
    await Deno.copyFile(join(TEXT, "corpus.parquet"), join(dir, "blob"));
    await Deno.symlink(join(dir, "blob"), join(dir, "data", "validation-00000-of-00001.parquet"));
    await t.step("default split: train", async () => {
      const records = await Array.fromAsync(await openDataset({ name: "hf", pathOrId: dir }));
      assertEquals(records.map((r) => [r.text, r.shard]), [["t0", 0], ["t1", 1]]);
    });
    await t.step("split test", async () => {
      const records = await Array.fromAsync(
        await openDataset({ name: "hf", pathOrId: dir, split: "test" }),
      );
      assertEquals(records.map((r) => r.text), ["e0"]);
    });
    await t.step("split validation through a symlinked parquet file", async () => {
      const records = await Array.fromAsync(
        await openDataset({ name: "hf", pathOrId: dir, split: "validation" }),
      );
      assertEquals(records.length, (await corpusTexts()).length);
    });
    await t.step("an unknown split is a ConfigError listing the splits", async () => {
      const err = await assertRejects(
        () => openDataset({ name: "hf", pathOrId: dir, split: "dev" }),
        ConfigError,
      );
      assertEquals(
        err.message,
        `Dataset "hf" at ${dir} has no split "dev" (found: train, test, validation)`,
      );
    });
  });
});

test("openDataset() rejects empty datasets and missing paths with one line", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("an empty file", async () => {
      const path = join(dir, "empty.jsonl");
      await Deno.writeTextFile(path, "");
      const err = await assertRejects(
        () => openDataset({ name: "e", pathOrId: path }),
        ConfigError,
      );
      assertEquals(err.message, `Dataset "e" at ${path} has no records`);
    });
    await t.step("a file with only bad and blank rows errors the stream at its end", async () => {
      const path = join(dir, "allbad.jsonl");
      await Deno.writeTextFile(path, "\n{oops\n{}\n");
      const source = await openDataset({ name: "e", pathOrId: path }, { onBadRow: () => {} });
      const err = await assertRejects(() => Array.fromAsync(source), ConfigError);
      assertEquals(err.message, `Dataset "e" at ${path} has no records (2 bad rows skipped)`);
    });
    await t.step("a folder without data files", async () => {
      const sub = join(dir, "nothing");
      await Deno.mkdir(sub);
      await Deno.writeTextFile(join(sub, "notes.md"), "x");
      const err = await assertRejects(() => openDataset({ name: "e", pathOrId: sub }), ConfigError);
      assertEquals(
        err.message,
        `Dataset "e" at ${sub} has no data files (.jsonl, .jsonl.gz, .txt, .parquet)`,
      );
    });
    await t.step("a missing file", async () => {
      const path = join(dir, "missing.jsonl");
      const err = await assertRejects(
        () => openDataset({ name: "m", pathOrId: path }),
        ConfigError,
      );
      assertEquals(err.message, `Dataset "m" at ${path}: no such file or directory`);
    });
    await t.step("an unsupported file type", async () => {
      const path = join(dir, "data.csv");
      await Deno.writeTextFile(path, "text\nhello\n");
      const err = await assertRejects(
        () => openDataset({ name: "m", pathOrId: path }),
        ConfigError,
      );
      assertEquals(
        err.message,
        `Dataset "m" at ${path}: unsupported file type (expected .jsonl, .jsonl.gz, .txt, .parquet)`,
      );
    });
    await t.step("a parquet file without the text column", async () => {
      const path = join(TEXT, "corpus.parquet");
      const source = await openDataset({ name: "p", pathOrId: path, textField: "body" });
      const err = await assertRejects(() => Array.fromAsync(source), ConfigError);
      assertEquals(
        err.message,
        `Dataset "p" at ${path}: ${path} has no column "body" (columns: text)`,
      );
    });
  });
});

test("openDataset() reads lazily: a few records pulled means a few rows read", async (t) => {
  await withTempDir(async (dir) => {
    // Pseudo-random letters, so that the .gz is about as large as the .jsonl.
    let seed = 1;
    const letters = (n: number) =>
      Array.from({ length: n }, () => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return String.fromCharCode(97 + (seed >>> 0) % 26);
      }).join("");
    const rows = Array.from(
      { length: 20000 },
      (_, i) => JSON.stringify({ text: `row ${i} ${letters(60)}` }),
    );
    const jsonl = join(dir, "big.jsonl");
    await Deno.writeTextFile(jsonl, rows.join("\n") + "\n");
    const gz = join(dir, "big.jsonl.gz");
    await Deno.writeFile(
      gz,
      new Uint8Array(
        await new Response(
          ReadableStream.from([new TextEncoder().encode(rows.join("\n") + "\n")]).pipeThrough(
            new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
          ),
        ).arrayBuffer(),
      ),
    );
    for (const path of [jsonl, gz]) {
      await t.step(path.split("/").pop()!, async () => {
        const source = await openDataset({ name: "big", pathOrId: path });
        const sink = new GatedSink<TextRecord>();
        const piped = source.pipeTo(sink.stream);
        sink.release(2); // rows 0 and 1 are taken, row 2 is held
        await sink.waitForWrites(3);
        await settle(() => source.stats.rowsRead);
        assertEquals(sink.received.map((r) => r.row), [0, 1, 2]);
        // One chunk of the file holds a few thousand rows at most; far from all 20000.
        assert(source.stats.rowsRead < 5000, `read ${source.stats.rowsRead} rows for 3 records`);
        const size = (await Deno.stat(path)).size;
        assert(
          source.stats.bytesRead < size / 2,
          `read ${source.stats.bytesRead} of ${size} bytes`,
        );
        // Cancelling closes the file (the test's resource sanitizer checks it).
        sink.fail("enough");
        assertEquals(await piped.catch((e) => e), "enough");
        const after = source.stats.rowsRead;
        await settle(() => source.stats.rowsRead);
        assertEquals(source.stats.rowsRead, after);
      });
    }
  });
});

test("openDataset() reads parquet one row group at a time and closes it on cancel", async () => {
  // The fixture was written with row groups of 200 rows (fixtures/scripts/make_corpus.py).
  const path = join(TEXT, "corpus.parquet");
  const size = (await Deno.stat(path)).size;
  const source = await openDataset({ name: "pq", pathOrId: path });
  const reader = source.getReader();
  for (let i = 0; i < 3; i++) assertEquals((await reader.read()).value?.row, i);
  const firstGroup = source.stats.bytesRead;
  assert(firstGroup < size * 0.7, `read ${firstGroup} of ${size} bytes for 3 rows`);
  for (let i = 3; i < 200; i++) await reader.read();
  assertEquals(source.stats.bytesRead, firstGroup, "the first row group was read again");
  await reader.read(); // row 200: the second row group
  assert(source.stats.bytesRead > firstGroup);
  await reader.cancel();
});

test("openDataset() errors the stream, naming the file, when a .jsonl.gz is corrupt", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "broken.jsonl.gz");
    const good = await Deno.readFile(join(TEXT, "corpus.jsonl.gz"));
    await Deno.writeFile(path, good.slice(0, Math.floor(good.length / 2)));
    const source = await openDataset({ name: "gz", pathOrId: path });
    const err = await assertRejects(() => Array.fromAsync(source), Error);
    assert(err.message.startsWith(`Dataset "gz" at ${path}: cannot read ${path}: `), err.message);
  });
});
