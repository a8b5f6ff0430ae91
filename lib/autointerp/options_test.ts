import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import { AUTO_INTERP_DEFAULTS, resolveAutoInterpOptions } from "./options.ts";

Deno.test("resolveAutoInterpOptions() applies the Python tool's defaults", () => {
  const o = resolveAutoInterpOptions();
  assertEquals(o.n_activating_examples, 7);
  assertEquals(o.max_length, 50);
  assertEquals(o.activation_threshold, 0.7);
  assertEquals(o.scorer_type, ["detection", "fuzzing"]);
  assertEquals(o.max_workers, 10);
  assertEquals(o.openai_api_key, undefined);
  o.scorer_type.push("simulation");
  assertEquals(AUTO_INTERP_DEFAULTS.scorer_type, ["detection", "fuzzing"]); // not shared
});

Deno.test("resolveAutoInterpOptions() rejects bad values with the key path", async (t) => {
  const cases: [Record<string, unknown>, string][] = [
    [{ max_workers: 0 }, "auto_interp.max_workers: expected an integer ≥ 1, got 0"],
    [
      { explainer_type: "gpt" },
      'auto_interp.explainer_type: expected "openai" or "neuronpedia", got "gpt"',
    ],
    [
      { scorer_type: ["detection", "vibes"] },
      'auto_interp.scorer_type: expected one of detection, fuzzing, simulation, generation, got "vibes"',
    ],
    [
      { activation_threshold: 1.5 },
      "auto_interp.activation_threshold: expected a number in [0, 1], got 1.5",
    ],
    [{ request_timeout: 0 }, "auto_interp.request_timeout: expected a number > 0, got 0"],
  ];
  for (const [input, message] of cases) {
    await t.step(message, () => {
      assertThrows(() => resolveAutoInterpOptions(input), (e: unknown) => {
        assertEquals(e instanceof ConfigError, true);
        assertEquals((e as Error).message, message);
        return true;
      });
    });
  }
});
