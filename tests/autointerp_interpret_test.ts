/**
 * interpretFeature() against a local OpenAI-compatible server through the real `openai` client:
 * scripted answers for explanation, detection, fuzzing and simulation give the expected stored
 * interpretation and metrics; malformed answers are parsed leniently or asked again once.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LLMUnavailableError, OpenAIChatClient } from "../lib/autointerp/client.ts";
import { interpretFeature } from "../lib/autointerp/interpret.ts";
import { type AutoInterpOptions, resolveAutoInterpOptions } from "../lib/autointerp/options.ts";
import type { ScoreMetrics } from "../lib/types.ts";
import {
  CAT_EXPLANATION,
  catFeature,
  type FakeHandler,
  rejection,
  scriptedLlm,
  startOpenAIServer,
  taskOf,
  TEST_VOCAB,
} from "./_openai_server.ts";

async function interpretWith(
  handler: FakeHandler,
  options: AutoInterpOptions,
  record = catFeature(1),
) {
  const server = startOpenAIServer(handler);
  try {
    const client = new OpenAIChatClient({
      model: "scripted",
      apiKey: "sk-test",
      baseURL: server.baseURL,
      timeoutMs: 2000,
      retryBaseDelayMs: 5,
    });
    const interpretation = await interpretFeature(record, {
      client,
      options: resolveAutoInterpOptions(options),
      vocab: TEST_VOCAB,
      now: () => new Date("2025-01-02T03:04:05Z"),
    });
    return { interpretation, server };
  } finally {
    await server.close();
  }
}

function metrics(v: unknown): ScoreMetrics {
  assert(
    v && typeof v === "object" && !("skipped" in v),
    `expected metrics, got ${JSON.stringify(v)}`,
  );
  return v as ScoreMetrics;
}

Deno.test("interpretFeature() stores the scripted explanation and hand-checked detection and fuzzing metrics", async () => {
  const { interpretation: it, server } = await interpretWith(
    scriptedLlm({ detectionFalsePositive: true }),
    { save_prompts: true, openai_model: "scripted" },
  );
  assertEquals(it.error, undefined);
  assertEquals(it.text, CAT_EXPLANATION);
  assertEquals(it.method, "openai");
  assertEquals(it.model, "scripted");
  assertEquals(it.consistency, 5);
  assertEquals(it.complexity, 1);
  assertEquals(it.at, "2025-01-02T03:04:05.000Z");
  // detection: 5 activating + 5 non-activating, one false positive scripted.
  const d = metrics(it.scores.detection);
  assertEquals([d.tp, d.fp, d.tn, d.fn], [5, 1, 4, 0]);
  assertEquals(d.accuracy, 0.9);
  assertEquals(d.precision, 5 / 6);
  assertEquals(d.recall, 1);
  assert(Math.abs(d.f1 - 10 / 11) < 1e-12);
  assert(Math.abs(d.balanced_accuracy - 0.9) < 1e-12);
  // fuzzing: 5 correctly and 2 wrongly marked examples, all judged right.
  const f = metrics(it.scores.fuzzing);
  assertEquals([f.tp, f.fp, f.tn, f.fn], [5, 0, 2, 0]);
  assertEquals(f.balanced_accuracy, 1);
  assertEquals(it.passed, true);
  // One request per task, and usage is the sum the server reported.
  assertEquals(server.bodies.map(taskOf).sort(), ["detection", "explain", "fuzzing"]);
  assert(it.usage!.prompt_tokens > 0 && it.usage!.completion_tokens > 0);
  // The prompts and answers are kept: 3 requests × (system, user, assistant).
  assertEquals(it.prompts!.length, 9);
  const explainUser = it.prompts![1]!.content;
  assert(explainUser.includes("<< cat>>"), explainUser);
  assertEquals(explainUser.match(/^Example \d+:/gm)!.length, 7); // n_activating_examples
});

Deno.test("interpretFeature() explains from the strongest top activations and scores on held-out examples", async () => {
  const { server } = await interpretWith(scriptedLlm(), { max_length: 6 });
  const explain = server.bodies.find((b) => taskOf(b) === "explain")!;
  const lines = explain.messages[1]!.content.match(/^Example \d+: (.*)$/gm)!;
  assertEquals(lines.length, 7);
  for (const l of lines) {
    // windowed to 6 tokens around the peak, the peak marked, the weak next token not marked
    assert(/<< cat>> \S+/.test(l) || /<< cat>>\./.test(l), l);
  }
  const detection = server.bodies.find((b) => taskOf(b) === "detection")!;
  assert(!detection.messages[1]!.content.includes("<<"), "detection examples carry no marks");
});

Deno.test("interpretFeature() accepts fenced, single-quoted JSON without asking again", async () => {
  const { interpretation: it, server } = await interpretWith(
    scriptedLlm({
      override: (b) =>
        taskOf(b) === "explain"
          ? {
            content:
              "Here is my analysis:\n```json\n{'final_explanation': 'cats', 'activation_consistency': '4', 'complexity': 2,}\n```\nDone.",
          }
          : undefined,
    }),
    {},
  );
  assertEquals(it.text, "cats");
  assertEquals(it.consistency, 4);
  assertEquals(server.bodies.filter((b) => taskOf(b) === "explain").length, 1);
});

Deno.test("interpretFeature() asks once more after an answer that is not JSON, and succeeds", async () => {
  const { interpretation: it, server } = await interpretWith(
    scriptedLlm({
      override: (b) =>
        taskOf(b) === "detection" && b.messages.length === 2
          ? { content: "I think examples 1 and 3 fire." }
          : undefined,
    }),
    { save_prompts: true },
  );
  const detections = server.bodies.filter((b) => taskOf(b) === "detection");
  assertEquals(detections.length, 2);
  const retry = detections[1]!.messages;
  assertEquals(retry.length, 4);
  assertEquals(retry[2]!.content, "I think examples 1 and 3 fire.");
  assert(
    retry[3]!.content.startsWith("Your answer could not be used: the answer is not valid JSON"),
  );
  assertEquals(metrics(it.scores.detection).balanced_accuracy, 1);
  assertEquals(it.error, undefined);
  assertEquals(it.passed, true);
});

Deno.test("interpretFeature() records a failure after two unusable answers and keeps the explanation", async () => {
  const { interpretation: it, server } = await interpretWith(
    scriptedLlm({
      override: (b) =>
        taskOf(b) === "fuzzing" ? { content: '{"evaluation_results": [true]}' } : undefined,
    }),
    {},
  );
  assertEquals(server.bodies.filter((b) => taskOf(b) === "fuzzing").length, 2);
  assertEquals(it.error, "fuzzing: evaluation_results has 1 entries, expected 7 (2 attempts)");
  assertEquals(it.passed, false);
  assertEquals(it.text, CAT_EXPLANATION);
  assertEquals(metrics(it.scores.detection).balanced_accuracy, 1);
});

Deno.test("interpretFeature() scores simulation from the returned log-probabilities", async () => {
  const { interpretation: it, server } = await interpretWith(
    scriptedLlm(),
    { scorer_type: ["simulation"], simulation_n_examples: 2 },
  );
  const sims = server.bodies.filter((b) => taskOf(b) === "simulation");
  assertEquals(sims.length, 4); // 2 activating + 2 non-activating excerpts
  assertEquals(sims[0]!.logprobs, true);
  const s = metrics(it.scores.simulation) as ScoreMetrics & { correlation: number };
  // 2 activating excerpts with one " cat" each (expected 0.8·9 + 0.2·8 = 8.8 ≥ 4.5): tp 2.
  assertEquals([s.tp, s.fp, s.fn], [2, 0, 0]);
  assertEquals(s.tn, 4 * 12 - 2);
  // Not 1: the weak activation after each peak is real but simulated as 0.
  assert(s.correlation > 0.9 && s.correlation < 1, `correlation ${s.correlation}`);
  assertEquals(it.passed, true);
});

Deno.test("interpretFeature() skips simulation with the reason when the endpoint returns no log-probabilities", async () => {
  const { interpretation: it } = await interpretWith(
    scriptedLlm({ logprobs: false }),
    { scorer_type: ["detection", "simulation"] },
  );
  assertEquals(it.scores.simulation, { skipped: "the endpoint returned no log-probabilities" });
  assertEquals(metrics(it.scores.detection).balanced_accuracy, 1);
  assertEquals(it.passed, true); // judged on the scorers that ran
});

Deno.test("interpretFeature() skips detection when the analysis has no non-activating samples", async () => {
  const { interpretation: it } = await interpretWith(scriptedLlm(), {}, catFeature(2, { nNon: 0 }));
  assertEquals(it.scores.detection, {
    skipped: "no non-activating examples (the analysis has no non_activating sampling)",
  });
  assertEquals(metrics(it.scores.fuzzing).balanced_accuracy, 1);
});

Deno.test("interpretFeature() with the neuronpedia explainer builds the label prompt from peaks, next tokens and logits", async () => {
  const record = catFeature(3);
  record.logits = {
    top_positive: [{ token: " meow", id: 5, logit: 2 }, { token: " kitten", id: 6, logit: 1.5 }],
    top_negative: [{ token: " bark", id: 7, logit: -2 }],
    histogram: { edges: new Float64Array([0, 1]), counts: new Float64Array([1]) },
  };
  const { interpretation: it, server } = await interpretWith(
    scriptedLlm(),
    { explainer_type: "neuronpedia", scorer_type: ["detection"] },
    record,
  );
  assertEquals(it.text, "cat");
  assertEquals(it.method, "neuronpedia");
  assertEquals(it.consistency, undefined);
  const user = server.bodies.find((b) => taskOf(b) === "label")!.messages[1]!.content;
  const peaks = user.split("NEXT TOKENS:")[0]!.match(/^\[.*\] {2}cat$/gm)!;
  assertEquals(peaks.length, 7);
  assert(user.includes('PROMOTED:\n" meow"\n" kitten"'), user);
  assert(user.includes('SUPPRESSED:\n" bark"'), user);
});

Deno.test("interpretFeature() rejects with LLMUnavailableError when a scorer or simulation request meets a 401 or 404", async (t) => {
  const cases = [
    { task: "fuzzing", status: 401, scorers: ["detection", "fuzzing"] },
    { task: "simulation", status: 404, scorers: ["simulation"] },
  ] as const;
  for (const c of cases) {
    await t.step(`${c.status} on ${c.task}, after the explanation`, async () => {
      const script = scriptedLlm();
      const e = await rejection(() =>
        interpretWith(
          (body, n) => taskOf(body) === c.task ? { status: c.status } : script(body, n),
          { openai_model: "scripted", scorer_type: [...c.scorers] },
        )
      );
      assert(e instanceof LLMUnavailableError, String(e));
      assertEquals(e.status, c.status);
    });
  }
  await t.step("a 400 on simulation still only skips it", async () => {
    const script = scriptedLlm();
    const { interpretation: it } = await interpretWith(
      (body, n) => taskOf(body) === "simulation" ? { status: 400 } : script(body, n),
      { openai_model: "scripted", scorer_type: ["simulation"] },
    );
    const sim = it.scores.simulation as { skipped?: string };
    assert(
      sim.skipped?.startsWith("the endpoint rejected the log-probability request"),
      String(sim.skipped),
    );
    assertEquals(it.error, undefined);
  });
});
