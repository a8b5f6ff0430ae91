import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseLenientJson } from "./json.ts";

Deno.test("parseLenientJson() accepts what models commonly write around JSON", async (t) => {
  const cases: [string, string, unknown][] = [
    ["plain", '{"a": 1}', { a: 1 }],
    ["code fence", '```json\n{"a": [true, false]}\n```', { a: [true, false] }],
    ["text before and after", 'Here it is: {"a": "x}y"} — hope it helps', { a: "x}y" }],
    ["single quotes", "{'a': 'it''s', 'b': 2}".replace("''", "\\'"), { a: "it's", b: 2 }],
    ["python literals", "{'ok': True, 'no': False, 'none': None}", {
      ok: true,
      no: false,
      none: null,
    }],
    ["trailing commas", '{"a": [1, 2, ], }', { a: [1, 2] }],
    ["bare keys", "{final_explanation: 'cats', complexity: 2}", {
      final_explanation: "cats",
      complexity: 2,
    }],
    ["bare array", "[1, 0, 1]", [1, 0, 1]],
    ["apostrophe in text", 'I\'d say: {"a": 1}', { a: 1 }],
  ];
  for (const [name, text, want] of cases) {
    await t.step(name, () => {
      const r = parseLenientJson(text);
      assertEquals(r, { ok: true, value: want });
    });
  }
});

Deno.test("parseLenientJson() reports why an answer is unusable", () => {
  assertEquals(parseLenientJson("   "), { ok: false, reason: "the answer is empty" });
  assertEquals(parseLenientJson("examples 1 and 3"), {
    ok: false,
    reason: 'the answer is not valid JSON: "examples 1 and 3"',
  });
  assertEquals(parseLenientJson('{"a": 1').ok, false);
  assertEquals(parseLenientJson("42").ok, false);
});
