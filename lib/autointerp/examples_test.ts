import { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  activationMarks,
  activationScale,
  exampleFromSample,
  renderActivationList,
  renderExample,
} from "./examples.ts";
import type { Sample } from "../types.ts";

const vocab = ["a", "b", "c", "d", "e", "f", "g", "h", "\n"];

function sample(acts: number[], peakPos: number): Sample {
  return {
    tokens: Int32Array.from(acts.map((_, i) => i % vocab.length)),
    acts: Float32Array.from(acts),
    peak: acts[peakPos]!,
    peak_pos: peakPos,
    source: "d",
    shard: 0,
    row: 0,
    offset: 0,
  };
}

Deno.test("exampleFromSample() windows max_length tokens around the peak, staying inside the sample", async (t) => {
  const acts = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  const cases: [number, number, string, number][] = [
    // peak position, max_length, expected tokens, expected peak index in window
    [4, 4, "cdef", 2],
    [0, 4, "abcd", 0],
    [8, 4, "fgh\\n", 3],
    [4, 50, "abcdefgh\\n", 4],
    [4, 1, "e", 0],
  ];
  for (const [peak, len, tokens, pos] of cases) {
    await t.step(`peak ${peak}, max_length ${len}`, () => {
      const a = [...acts];
      a[peak] = 5;
      const ex = exampleFromSample(sample(a, peak), vocab, len);
      assertEquals(ex.tokens.join(""), tokens);
      assertEquals(ex.peakPos, pos);
      assertEquals(ex.peak, 5);
    });
  }
});

Deno.test("activationMarks() marks tokens above threshold × max, and always the active peak", () => {
  const ex = {
    tokens: ["a", "b", "c", "d"],
    ids: [0, 1, 2, 3],
    acts: [7.5, 7, 2, 0],
    peakPos: 0,
    peak: 7.5,
  };
  assertEquals(activationMarks(ex, 10, 0.7), [true, false, false, false]);
  const weak = { ...ex, acts: [0, 2, 1, 0], peakPos: 1, peak: 2 };
  assertEquals(activationMarks(weak, 10, 0.7), [false, true, false, false]);
});

Deno.test("renderExample() merges runs of marked tokens into one << >> span", () => {
  assertEquals(
    renderExample(["a", "b", "c", "d", "e"], [true, true, false, true, false]),
    "<<ab>>c<<d>>e",
  );
  assertEquals(renderExample(["a", "b"], [false, true]), "a<<b>>");
  assertEquals(renderExample(["a", "b"]), "ab");
});

Deno.test("activationScale() and renderActivationList() use a 0–10 scale of the feature's max", () => {
  assertEquals(activationScale([0, 0.4, 1, 5.5, 10, 12], 10), [0, 0, 1, 6, 10, 10]);
  assertEquals(activationScale([1, 2], 0), [0, 0]);
  const ex = {
    tokens: [" the", " cat", " sat"],
    ids: [0, 1, 2],
    acts: [0, 8, 2],
    peakPos: 1,
    peak: 8,
  };
  assertEquals(renderActivationList(ex, 8), '" cat" (10), " sat" (3)');
});
