import assert from "node:assert/strict";
import { AUTO_INTERP_DEFAULTS } from "../autointerp/options.ts";
import {
  AnalyzeSAESettingsSchema,
  AutoInterpConfigSchema,
  DirectLogitAttributorConfigSchema,
  FeatureAnalyzerConfigSchema,
  MongoDBConfigSchema,
  normalizeDtype,
  resolveSamplings,
  type SubsampleConfig,
} from "./schemas.ts";

Deno.test("normalizeDtype() accepts the Python and short spellings", async (t) => {
  const cases: [string, string | undefined][] = [
    ["float32", "float32"],
    ["torch.float32", "float32"],
    ["torch.float", "float32"],
    ["fp32", "float32"],
    ["float16", "float16"],
    ["torch.float16", "float16"],
    ["torch.half", "float16"],
    ["bfloat16", "bfloat16"],
    ["torch.bfloat16", "bfloat16"],
    ["BF16", "bfloat16"],
    ["torch.int8", undefined],
    ["", undefined],
  ];
  for (const [input, expected] of cases) {
    await t.step(JSON.stringify(input), () => assert.equal(normalizeDtype(input), expected));
  }
});

Deno.test("MongoDBConfigSchema applies the Python defaults and the timeout", () => {
  assert.deepEqual(MongoDBConfigSchema.parse({}), {
    mongo_uri: "mongodb://localhost:27017/",
    mongo_db: "mechinterp",
    timeout_ms: 5000,
  });
});

const entry = (proportion: number, n_samples: number): SubsampleConfig => ({
  proportion,
  n_samples,
  max_length: null,
});

Deno.test("resolveSamplings() turns uniform subsamples into top, bands and non-activating", () => {
  const s = resolveSamplings({
    subsamples: {
      "low": entry(0.2, 3),
      top_activations: entry(1, 10),
      "high": entry(0.8, 4),
      non_activating: entry(0.3, 7),
    },
    subsample_rule: "uniform",
    n_top: 20,
    n_non_activating: 20,
  });
  assert.deepEqual(
    s.map((x) => [x.name, x.kind, x.lower, x.proportion, x.n_samples]),
    [
      ["top_activations", "top", 0, 1, 10],
      ["high", "band", 0.2, 0.8, 4],
      ["low", "band", 0, 0.2, 3],
      ["non_activating", "non_activating", 0, 1, 7],
    ],
  );
});

Deno.test("resolveSamplings() adds top and non-activating samplings when not named", () => {
  const s = resolveSamplings({
    subsamples: { "half": entry(0.5, 5) },
    subsample_rule: "uniform",
    n_top: 12,
    n_non_activating: 0,
  });
  assert.deepEqual(s.map((x) => [x.name, x.kind, x.n_samples]), [
    ["top_activations", "top", 12],
    ["half", "band", 5],
  ]);
});

Deno.test("resolveSamplings() follows the Python rule when asked; non_activating keeps its meaning", () => {
  const s = resolveSamplings({
    subsamples: { top_activations: entry(1, 10), non_activating: entry(0.3, 20) },
    subsample_rule: "python",
    n_top: 20,
    n_non_activating: 20,
  });
  assert.deepEqual(s.map((x) => [x.name, x.kind, x.proportion, x.lower]), [
    ["top_activations", "top", 1, 0],
    ["non_activating", "non_activating", 1, 0],
  ]);
});

Deno.test("FeatureAnalyzerConfigSchema rejects a proportion above 1", () => {
  const r = FeatureAnalyzerConfigSchema.safeParse({
    total_analyzing_tokens: 10,
    subsamples: { a: { proportion: 1.5, n_samples: 2 } },
  });
  assert.equal(r.success, false);
  assert.equal(r.error?.issues[0]?.message, "expected a number in (0, 1]");
  assert.deepEqual(r.error?.issues[0]?.path, ["subsamples", "a", "proportion"]);
});

Deno.test("AnalyzeSAESettingsSchema accepts and ignores Python-only fields", () => {
  const s = AnalyzeSAESettingsSchema.parse({
    sae: { pretrained_name_or_path: "results" },
    sae_name: "s",
    sae_series: "x",
    model: { model_name: "gpt2", use_flash_attn: true, backend: "huggingface" },
    activation_factory: {
      sources: [{ name: "d" }],
      target: "activations-2d",
      hook_points: ["blocks.0.hook_resid_post"],
      batch_size: 4,
      num_workers: 8,
      model_batch_size: 2,
      buffer_shuffle: { perm_seed: 1 },
    },
    analyzer: { total_analyzing_tokens: 100, enable_sampling: false, clt_layer: 0 },
    model_parallel_size: 1,
    device_type: "cuda",
    amp_dtype: "torch.bfloat16",
  });
  assert.equal(s.activation_factory.context_size, 2048, "model.max_length by default");
  assert.equal(s.model?.model_name, "gpt2");
});

Deno.test("AnalyzeSAESettingsSchema refuses targets other than activations-2d", () => {
  const r = AnalyzeSAESettingsSchema.safeParse({
    sae: { pretrained_name_or_path: "results" },
    sae_name: "s",
    sae_series: "x",
    model_name: "gpt2",
    activation_factory: {
      sources: [{ name: "d" }],
      target: "activations-1d",
      hook_points: ["h"],
      batch_size: 4,
    },
    analyzer: { total_analyzing_tokens: 100 },
  });
  assert.equal(r.success, false);
  assert.deepEqual(r.error?.issues[0]?.path, ["activation_factory", "target"]);
});

Deno.test("DirectLogitAttributorConfigSchema centers by default and takes an optional chunk size", async (t) => {
  await t.step("defaults", () => {
    assert.deepEqual(DirectLogitAttributorConfigSchema.parse({}), { top_k: 10, center: true });
  });
  await t.step("given values", () => {
    const d = DirectLogitAttributorConfigSchema.parse({ center: false, chunk_size: 64 });
    assert.equal(d.center, false);
    assert.equal(d.chunk_size, 64);
  });
  for (const chunk_size of [0, -3, 2.5, "8"]) {
    await t.step(`chunk_size ${JSON.stringify(chunk_size)} is refused`, () => {
      const r = DirectLogitAttributorConfigSchema.safeParse({ chunk_size });
      assert.equal(r.success, false);
      assert.deepEqual(r.error?.issues[0]?.path, ["chunk_size"]);
      assert.equal(r.error?.issues[0]?.message, "expected a positive integer");
    });
  }
});

Deno.test("AutoInterpConfigSchema carries every auto-interp option with the stage's defaults", () => {
  const parsed = AutoInterpConfigSchema.parse({}) as Record<string, unknown>;
  // max_workers and analysis_name are top-level settings, as in the Python tool.
  const topLevel = new Set(["max_workers", "analysis_name"]);
  for (const [key, value] of Object.entries(AUTO_INTERP_DEFAULTS)) {
    if (topLevel.has(key)) {
      assert.equal(key in parsed, false, `${key} is not an [auto_interp] key`);
      continue;
    }
    assert.deepEqual(parsed[key], value, `auto_interp.${key}`);
  }
  // The options without a default are present and unset.
  for (const key of ["openai_api_key", "openai_base_url", "openai_proxy", "temperature"]) {
    assert.equal(parsed[key], null, `auto_interp.${key}`);
  }
});

Deno.test("AutoInterpConfigSchema refuses out-of-range saeflow options", async (t) => {
  const cases: [Record<string, unknown>, string, string][] = [
    [{ temperature: 3 }, "temperature", "expected a number between 0 and 2"],
    [{ request_timeout: 0 }, "request_timeout", "expected a positive number"],
    [{ max_retries: -1 }, "max_retries", "expected a non-negative integer"],
    [{ pass_threshold: 1.5 }, "pass_threshold", "expected a number between 0 and 1"],
    [{ fuzzing_decile_incorrect: 0 }, "fuzzing_decile_incorrect", "expected a positive integer"],
    [{ seed: 0.5 }, "seed", "expected an integer"],
  ];
  for (const [input, key, message] of cases) {
    await t.step(key, () => {
      const r = AutoInterpConfigSchema.safeParse(input);
      assert.equal(r.success, false);
      assert.deepEqual(r.error?.issues[0]?.path, [key]);
      assert.equal(r.error?.issues[0]?.message, message);
    });
  }
  assert.equal(AutoInterpConfigSchema.parse({ temperature: 0 }).temperature, 0);
});
