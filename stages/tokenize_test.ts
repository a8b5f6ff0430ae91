import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { assertRejects, GatedSink, pullCountingSource, settle, test } from "../lib/_testing.ts";
import { ConfigError } from "../lib/errors.ts";
import type { ContextBatch, TextRecord } from "../lib/types.ts";
import { loadTokenizer, openDataset } from "../lib/data/mod.ts";
import { tokenize } from "./tokenize.ts";

const TINY = new URL("../fixtures/tiny-neox/", import.meta.url).pathname;
const TEXT = new URL("../fixtures/text/", import.meta.url).pathname;
const tok = await loadTokenizer(TINY);
const encode = (text: string) => tok.tokenizer.encode(text, { add_special_tokens: false }).ids;
const EOT = 0; // <|endoftext|>: BOS, EOS and (no pad_token) padding of the Pythia-style fixture

const rec = (row: number, text: string): TextRecord => ({ source: "s", shard: 0, row, text });

function run(
  records: TextRecord[],
  options: Partial<Parameters<typeof tokenize>[0]> = {},
): Promise<ContextBatch[]> {
  return Array.fromAsync(
    ReadableStream.from(records).pipeThrough(
      tokenize({ tokenizer: tok, contextSize: 8, batchSize: 4, ...options }),
    ),
  );
}

/** A pull-counting source of `n` records. */
function countingSource(n: number, text = "the quick brown fox") {
  return pullCountingSource((i) => (i < n ? rec(i, text) : undefined));
}

test("tokenize() masks BOS and padding, attends to real tokens, pads with EOS", async () => {
  const ids = encode("Hello world");
  assert(ids.length > 0 && ids.length < 15);
  const [batch] = await run([rec(5, "Hello world")], { contextSize: 16 });
  const pad = 16 - 1 - ids.length;
  assertEquals(batch!.batchSize, 1);
  assertEquals(batch!.contextSize, 16);
  assertEquals([...batch!.tokens], [EOT, ...ids, ...Array(pad).fill(EOT)]);
  assertEquals([...batch!.attention], [1, ...ids.map(() => 1), ...Array(pad).fill(0)]);
  assertEquals([...batch!.mask], [0, ...ids.map(() => 1), ...Array(pad).fill(0)]);
  assertEquals(batch!.origins, [{ source: "s", shard: 0, row: 5 }]);
});

test("tokenize() truncates a long row to one context, as the Python tool does", async () => {
  const text = "The licenses for most software are designed to take away your freedom";
  const ids = encode(text);
  assert(ids.length > 7);
  const [batch] = await run([rec(0, text)]);
  assertEquals([...batch!.tokens], [EOT, ...ids.slice(0, 7)]);
  assertEquals([...batch!.mask], [0, 1, 1, 1, 1, 1, 1, 1]);
});

test("tokenize() batches contexts, the last batch smaller, origins in order", async () => {
  const batches = await run([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => rec(i, `row ${i}`)), {
    batchSize: 4,
  });
  assertEquals(batches.map((b) => b.batchSize), [4, 4, 2]);
  assertEquals(batches.map((b) => b.tokens.length), [32, 32, 16]);
  assertEquals(batches.flatMap((b) => b.origins.map((o) => o.row)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assertEquals([...batches[2]!.tokens.subarray(8, 16)].slice(0, 1 + encode("row 9").length), [
    EOT,
    ...encode("row 9"),
  ]);
});

test("tokenize() splits long rows into BOS-led contexts with token offsets", async () => {
  const text = (await Deno.readTextFile(join(TEXT, "corpus.jsonl"))).split("\n").map((l) =>
    l && JSON.parse(l).text
  ).find((t: string) => encode(t).length > 20)!;
  const ids = encode(text);
  const batches = await run([rec(3, text)], { splitLongRows: true, batchSize: 2 });
  const contexts = batches.flatMap((b) =>
    b.origins.map((o, i) => ({
      o,
      t: [...b.tokens.subarray(i * 8, i * 8 + 8)],
      a: [...b.attention.subarray(i * 8, i * 8 + 8)],
    }))
  );
  assertEquals(contexts.length, Math.ceil(ids.length / 7));
  assertEquals(contexts.map((c) => c.o.offset), contexts.map((_, i) => i * 7));
  assert(contexts.every((c) => c.o.row === 3 && c.t[0] === EOT && c.a[0] === 1));
  // The real tokens after each BOS, in order, are the whole row.
  const real = contexts.flatMap((c) => c.t.slice(1).filter((_, i) => c.a[i + 1] === 1));
  assertEquals(real, ids);
});

test("tokenize() masks ignored ids and EOS inside the text", async () => {
  const ids = encode("a<|endoftext|>b c");
  assert(ids.includes(EOT), "the special token in the text is one id");
  const ignored = encode(" c")[0]!;
  const [batch] = await run([rec(0, "a<|endoftext|>b c")], { ignoreTokenIds: [ignored] });
  const mask = [...batch!.mask].slice(1, 1 + ids.length);
  assertEquals(mask, ids.map((id) => (id === EOT || id === ignored ? 0 : 1)));
});

test("tokenize() turns an empty row into a BOS-only context, or nothing without BOS", async () => {
  const [withBos] = await run([rec(0, ""), rec(1, "x")]);
  assertEquals(withBos!.batchSize, 2);
  assertEquals([...withBos!.attention.subarray(0, 8)], [1, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals([...withBos!.mask.subarray(0, 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
  const [noBos] = await run([rec(0, ""), rec(1, "x")], { prependBos: false });
  assertEquals(noBos!.origins.map((o) => o.row), [1]);
  assertEquals(noBos!.tokens[0], encode("x")[0]);
  assertEquals(noBos!.mask[0], 1);
});

test("tokenize() honours explicit BOS and PAD ids and loads a tokenizer from a path", async () => {
  const [batch] = await Array.fromAsync(
    ReadableStream.from([rec(0, "hi")]).pipeThrough(
      tokenize({ tokenizer: TINY, contextSize: 6, batchSize: 2, bosTokenId: 7, padTokenId: 9 }),
    ),
  );
  const ids = encode("hi");
  assertEquals([...batch!.tokens], [7, ...ids, ...Array(5 - ids.length).fill(9)]);
});

test("tokenize() errors the stream with a ConfigError when tokenizer.json does not parse", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "tokenizer.json");
    await Deno.writeTextFile(file, "{ not json");
    const src = countingSource(3);
    const err = await assertRejects(
      () =>
        Array.fromAsync(
          src.stream.pipeThrough(tokenize({ tokenizer: dir, contextSize: 8, batchSize: 2 })),
        ),
      ConfigError,
    );
    assert(
      err.message.startsWith(`Cannot load tokenizer: ${file} is not valid JSON (`),
      err.message,
    );
    assert(src.cancelReason === err, "the source was not cancelled with the error");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("tokenize() rejects bad sizes with a RangeError", () => {
  for (
    const [contextSize, batchSize, message] of [
      [1, 4, "tokenize(): contextSize must be an integer >= 2, got 1"],
      [8, 0, "tokenize(): batchSize must be an integer >= 1, got 0"],
      [8.5, 4, "tokenize(): contextSize must be an integer >= 2, got 8.5"],
    ] as const
  ) {
    try {
      tokenize({ tokenizer: tok, contextSize, batchSize });
      throw new Error("no error");
    } catch (e) {
      assert(e instanceof RangeError);
      assertEquals(e.message, message);
    }
  }
});

test("tokenize() holds a source that counts pulls to a batch or two while the sink is blocked", async () => {
  const src = countingSource(1000);
  const sink = new GatedSink<ContextBatch>();
  const piped = src.stream.pipeThrough(tokenize({ tokenizer: tok, contextSize: 8, batchSize: 4 }))
    .pipeTo(sink.stream);
  await sink.waitForWrites(1); // the sink holds batch 0 (4 rows) and does not let it go
  await settle(() => src.pulls);
  // Batch 0 in the sink, batch 1 in the stage's output queue, a record in its input queue: 9
  // records, never the whole dataset.
  const held = src.pulls;
  assert(held <= 9, `the source was pulled ${held} times with the sink blocked`);
  sink.release();
  await sink.waitForWrites(2);
  await settle(() => src.pulls);
  assert(src.pulls - held <= 4, `one batch taken let ${src.pulls - held} more records in`);
  assertEquals(sink.received.map((b) => b.origins[0]!.row), [0, 4]);
  sink.fail("enough");
  assertEquals(await piped.catch((e) => e), "enough");
  assertEquals(src.cancelReason, "enough");
});

test("tokenize() with a blocked sink stalls the dataset reader, and cancel closes the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "rows.jsonl");
    await Deno.writeTextFile(
      path,
      Array.from({ length: 5000 }, (_, i) => JSON.stringify({ text: `row number ${i}` })).join(
        "\n",
      ),
    );
    const source = await openDataset({ name: "rows", pathOrId: path });
    const sink = new GatedSink<ContextBatch>();
    const done = source.pipeThrough(tokenize({ tokenizer: tok, contextSize: 8, batchSize: 4 }))
      .pipeTo(sink.stream);
    await sink.waitForWrites(1);
    await settle(() => source.stats.rowsRead);
    assert(source.stats.rowsRead <= 12, `read ${source.stats.rowsRead} rows with a blocked sink`);
    const before = source.stats.rowsRead;
    sink.release();
    await sink.waitForWrites(2);
    await settle(() => source.stats.rowsRead);
    assert(source.stats.rowsRead - before <= 8, `one batch let ${source.stats.rowsRead - before}`);
    const stop = new Error("stop");
    sink.fail(stop);
    assertEquals(await done.catch((e) => e), stop);
    // The file was closed: the test's resource sanitizer fails otherwise; and no row is read after.
    const after = source.stats.rowsRead;
    await settle(() => source.stats.rowsRead);
    assertEquals(source.stats.rowsRead, after);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("tokenize() passes a source error down and a sink error up", async (t) => {
  await t.step("an error in the source reaches the reader", async () => {
    const boom = new Error("disk gone");
    let n = 0;
    const source = new ReadableStream<TextRecord>({
      pull(controller) {
        if (n === 5) throw boom;
        controller.enqueue(rec(n++, "x"));
      },
    });
    const reader = source.pipeThrough(tokenize({ tokenizer: tok, contextSize: 8, batchSize: 4 }))
      .getReader();
    assertEquals((await reader.read()).value?.batchSize, 4);
    const err = await assertRejects(() => reader.read(), Error);
    assert(err === boom);
  });
  await t.step("an error in the sink cancels the source with it", async () => {
    const src = countingSource(100);
    const boom = new Error("store down");
    await assertRejects(
      () =>
        src.stream.pipeThrough(tokenize({ tokenizer: tok, contextSize: 8, batchSize: 4 })).pipeTo(
          new WritableStream({
            write() {
              throw boom;
            },
          }),
        ),
      Error,
    );
    assert(src.cancelReason === boom);
    assert(src.pulls < 100, `pulled ${src.pulls} records: the error did not stop the source`);
  });
});
