import assert from "node:assert/strict";
import type { FeatureRecord } from "../types.ts";
import { featureToJson } from "./json.ts";

function feature(): FeatureRecord {
  return {
    // Keys deliberately out of order, as a store may return them.
    index: 3,
    sae_series: "s",
    sae_name: "n",
    interpretation: {
      at: "2025-01-01T00:00:00.000Z",
      passed: false,
      scores: { fuzzing: { skipped: "no samples" } },
      text: "dogs",
      model: "m",
      method: "openai",
    },
    analyses: {
      b: {
        samplings: [{
          samples: [{
            offset: 0,
            row: 1,
            shard: 0,
            source: "d",
            peak_pos: 1,
            peak: Math.fround(0.1),
            acts: new Float32Array([0, 0.1]),
            tokens: new Int32Array([2, 99]),
          }],
          band: null,
          name: "top_activations",
        }],
        quantiles: [{ value: 0.05, q: 0.5 }],
        histogram: { counts: new Float64Array([1]), index_offset: 3, relative_accuracy: 0.01 },
        std: 0,
        mean: 0.1,
        max_activation: Math.fround(0.1),
        n_analyzed_tokens: 10,
        act_times: 1,
      },
      a: {
        act_times: 0,
        n_analyzed_tokens: 10,
        max_activation: 0,
        mean: 0,
        std: 0,
        histogram: { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array(0) },
        quantiles: [],
        samplings: [],
      },
    },
  };
}

Deno.test("featureToJson() prints a fixed key order whatever the record's order", () => {
  const json = featureToJson(feature());
  assert.deepEqual(Object.keys(json), [
    "sae_name",
    "sae_series",
    "index",
    "analyses",
    "interpretation",
  ]);
  assert.deepEqual(Object.keys(json.analyses), ["a", "b"]);
  assert.deepEqual(Object.keys(json.analyses.b!), [
    "act_times",
    "n_analyzed_tokens",
    "max_activation",
    "mean",
    "std",
    "histogram",
    "quantiles",
    "samplings",
  ]);
  assert.deepEqual(Object.keys(json.interpretation!), [
    "text",
    "method",
    "model",
    "scores",
    "passed",
    "at",
  ]);
  assert.deepEqual(Object.keys(json.analyses.b!.quantiles[0]!), ["q", "value"]);
});

Deno.test("featureToJson() turns typed arrays into exact plain numbers", () => {
  const s = featureToJson(feature()).analyses.b!.samplings[0]!.samples[0]!;
  assert.deepEqual(s.tokens, [2, 99]);
  assert.deepEqual(s.acts, [0, 0.10000000149011612]);
  assert.ok(Array.isArray(s.acts));
  assert.equal(s.token_strings, undefined);
  assert.equal(
    JSON.stringify(featureToJson(feature()).analyses.b!.histogram),
    '{"relative_accuracy":0.01,"index_offset":3,"counts":[1]}',
  );
});

Deno.test("featureToJson() resolves token strings beside tokens, null outside the vocabulary", () => {
  const s = featureToJson(feature(), ["a", "b", " the"]).analyses.b!.samplings[0]!.samples[0]!;
  assert.deepEqual(Object.keys(s).slice(0, 3), ["tokens", "token_strings", "acts"]);
  assert.deepEqual(s.token_strings, [" the", null]);
});

Deno.test("featureToJson() does not change the record", () => {
  const record = feature();
  featureToJson(record, ["x"]);
  assert.deepEqual(record, feature());
});
