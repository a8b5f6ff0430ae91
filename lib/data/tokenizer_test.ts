import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { assertRejects, test } from "../_testing.ts";
import { ConfigError } from "../errors.ts";
import { displayBytes, loadTokenizer, vocabDisplayStrings } from "./tokenizer.ts";

const TINY = new URL("../../fixtures/tiny-neox/", import.meta.url).pathname;

test("loadTokenizer() reads a folder or a tokenizer.json path and finds Pythia's special ids", async () => {
  for (const path of [TINY, join(TINY, "tokenizer.json")]) {
    const tok = await loadTokenizer(path);
    assertEquals(tok.tokenizer.token_to_id("<|endoftext|>"), 0);
    assertEquals(tok.path, join(TINY, "tokenizer.json"));
    assertEquals([tok.bosTokenId, tok.eosTokenId, tok.padTokenId], [0, 0, undefined]);
    assert(tok.byteLevel);
  }
});

test("loadTokenizer() rejects a tokenizer.json that does not parse, naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "tokenizer.json");
    await Deno.writeTextFile(file, '{"version": "1.0", "model": {');
    const err = await assertRejects(() => loadTokenizer(dir), ConfigError);
    assert(
      err.message.startsWith(`Cannot load tokenizer: ${file} is not valid JSON (`),
      err.message,
    );
    assert(!err.message.includes("\n"));

    await Deno.writeTextFile(file, '{"version": "1.0"}');
    const built = await assertRejects(() => loadTokenizer(dir), ConfigError);
    assert(built.message.startsWith(`Cannot load tokenizer from ${file}: `), built.message);

    const missing = await assertRejects(() => loadTokenizer(join(dir, "nope")), ConfigError);
    assertEquals(missing.message, `Cannot load tokenizer: ${join(dir, "nope")} does not exist`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("tokenizer encodes exactly as the Rust tokenizers library (tokenizer_parity.json)", async () => {
  const { tokenizer } = await loadTokenizer(TINY);
  const cases: { text: string; ids: number[] }[] = JSON.parse(
    await Deno.readTextFile(join(TINY, "tokenizer_parity.json")),
  );
  assert(cases.length > 0);
  for (const { text, ids } of cases) {
    assertEquals(
      tokenizer.encode(text, { add_special_tokens: false }).ids,
      ids,
      JSON.stringify(text),
    );
  }
});

test("displayBytes() shows valid UTF-8 as text and every other byte as <0xNN>", () => {
  const cases: [number[], string][] = [
    [[0x20, 0x74, 0x68, 0x65], " the"],
    [[0xe2, 0x80, 0x94], "—"],
    [[0xe2, 0x80], "<0xE2><0x80>"],
    [[0x41, 0xff, 0x42], "A<0xFF>B"],
    [[0xc0, 0xaf], "<0xC0><0xAF>"], // overlong encoding
    [[0xf0, 0x9f, 0x99, 0x82], "🙂"],
  ];
  for (const [bytes, expected] of cases) {
    assertEquals(displayBytes(new Uint8Array(bytes)), expected);
  }
});

test("vocabDisplayStrings() maps byte-level tokens back to text, one string per id", async () => {
  const loaded = await loadTokenizer(TINY);
  const vocab = vocabDisplayStrings(loaded);
  const tok = loaded.tokenizer;
  assertEquals(vocab.length, tok.get_vocab(true).size);
  assertEquals(vocab[0], "<|endoftext|>");
  // "Ġ" is the byte-level stand-in for a space.
  const gThe = tok.token_to_id("Ġthe");
  assert(gThe !== undefined, "the fixture vocabulary has Ġthe");
  assertEquals(vocab[gThe], " the");
  // A lone UTF-8 lead byte (0xE2 is "â" in the byte-level alphabet) is not text on its own.
  assertEquals(vocab[tok.token_to_id("â")!], "<0xE2>");
  assertEquals(vocab[tok.token_to_id("Ċ")!], "\n");
  // Every display string of a multi-byte-free token is what decoding that id alone gives.
  for (let id = 1; id < vocab.length; id++) {
    if (!vocab[id]!.includes("<0x")) {
      assertEquals(vocab[id], tok.decode([id], { clean_up_tokenization_spaces: false }));
    }
  }
  // A bare Tokenizer works too (byte-level detected from its decoder).
  assertEquals(vocabDisplayStrings(tok), vocab);
});
