import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { seededRandom } from "./_random.ts";
import {
  buildDetectionTask,
  buildFuzzingTask,
  expectedActivations,
  parseEvaluation,
} from "./scorers.ts";
import { resolveAutoInterpOptions } from "./options.ts";
import type { Example } from "./examples.ts";

const ex = (word: string, active: boolean): Example => ({
  tokens: [" the", word, "."],
  ids: [0, 1, 2],
  acts: [0, active ? 5 : 0, 0],
  peakPos: 1,
  peak: active ? 5 : 0,
});

Deno.test("buildDetectionTask() shuffles n activating and n non-activating examples with their labels", () => {
  const o = resolveAutoInterpOptions({ detection_n_examples: 3 });
  const task = buildDetectionTask({
    explanation: "cats",
    activating: [ex(" cat", true), ex(" cat", true), ex(" cat", true), ex(" cat", true)],
    nonActivating: [ex(" dog", false), ex(" dog", false)],
    featureMax: 5,
    random: seededRandom(9),
  }, o);
  assert("truth" in task);
  assertEquals(task.truth.length, 5);
  const lines = task.messages[1]!.content.match(/^Example \d+: .*$/gm)!;
  lines.forEach((l, i) => assertEquals(l.includes(" cat"), task.truth[i]));
  assert(!task.messages[1]!.content.includes("<<"));
});

Deno.test("buildFuzzingTask() marks the correct examples at the peak and the wrong ones elsewhere", () => {
  const o = resolveAutoInterpOptions({
    fuzzing_decile_correct: 3,
    fuzzing_decile_incorrect: 2,
    fuzzing_n_examples: 5,
  });
  const task = buildFuzzingTask({
    explanation: "cats",
    activating: Array.from({ length: 6 }, () => ex(" cat", true)),
    nonActivating: [],
    featureMax: 5,
    random: seededRandom(4),
  }, o);
  assert("truth" in task);
  assertEquals(task.truth.filter((x) => x).length, 3);
  assertEquals(task.truth.filter((x) => !x).length, 2);
  const lines = task.messages[1]!.content.match(/^Example \d+: .*$/gm)!;
  lines.forEach((l, i) => assertEquals(l.includes("<< cat>>"), task.truth[i], l));
  assertEquals(
    buildFuzzingTask({
      explanation: "x",
      activating: [ex(" cat", true)],
      nonActivating: [],
      featureMax: 5,
      random: seededRandom(1),
    }, o),
    {
      skipped: "only 1 activating examples; fuzzing needs 5",
    },
  );
});

Deno.test("parseEvaluation() requires exactly n answers that read as booleans", () => {
  assertEquals(parseEvaluation("[1, 0, true]", 3), { ok: true, value: [true, false, true] });
  assertEquals(parseEvaluation('{"evaluation_results": ["yes", "maybe"]}', 2), {
    ok: false,
    reason: 'not a boolean: "maybe"',
  });
  assertEquals(parseEvaluation('{"steps": []}', 2), {
    ok: false,
    reason: "evaluation_results is missing",
  });
});

Deno.test("expectedActivations() averages the digit alternatives and falls back to the digit", () => {
  const content = "1: 6\n2: 0";
  const lp = [
    { token: "1", logprob: 0, top: [] },
    { token: ": ", logprob: 0, top: [] },
    {
      token: "6",
      logprob: Math.log(0.5),
      top: [
        { token: "6", logprob: Math.log(0.5) },
        { token: "4", logprob: Math.log(0.25) },
        { token: " x", logprob: Math.log(0.25) }, // not a digit: dropped, the rest renormalized
      ],
    },
    { token: "\n2: 0", logprob: 0, top: [] },
  ];
  const r = expectedActivations(content, lp, 2);
  assert(r.ok);
  assert(Math.abs(r.value[0]! - (6 * 0.5 + 4 * 0.25) / 0.75) < 1e-12);
  assertEquals(r.value[1], 0);
  assertEquals(expectedActivations("1: 3", [], 2), {
    ok: false,
    reason: "no prediction for token 2 of 2",
  });
});
