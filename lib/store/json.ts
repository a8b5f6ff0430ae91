/**
 * The plain JSON form of a feature, as `saeflow show feature --json` prints it (DESIGN.md,
 * "Store"): typed arrays become plain number arrays (each Float32 value as the exact JS number
 * it widens to), and, when a vocabulary is given, each sample gets `token_strings` right after
 * `tokens`: the display string of each token id, or `null` for an id outside the vocabulary.
 *
 * Key order is fixed (the order of DESIGN.md's feature document; analyses and score names
 * sorted; unknown keys last, sorted), so two stores holding the same feature print
 * byte-identical JSON whatever order they kept fields in.
 *
 * @module
 */

import type { FeatureAnalysis, FeatureRecord, Sample, Sampling } from "../types.ts";

/** `T` with typed arrays as `number[]`. */
export type Plain<T> = T extends Int32Array | Float32Array | Float64Array | Uint8Array ? number[]
  : T extends readonly (infer U)[] ? Plain<U>[]
  : T extends object ? { [K in keyof T]: Plain<T[K]> }
  : T;

/** A sample in JSON, with the token strings when a vocabulary was given. */
export type SampleJson = Plain<Sample> & { token_strings?: (string | null)[] };
/** A sampling in JSON. */
export type SamplingJson = Omit<Plain<Sampling>, "samples"> & { samples: SampleJson[] };
/** One analysis of a feature in JSON. */
export type FeatureAnalysisJson = Omit<Plain<FeatureAnalysis>, "samplings"> & {
  samplings: SamplingJson[];
};
/** A feature in JSON: {@linkcode FeatureRecord} with plain arrays and token strings. */
export type FeatureJson = Omit<Plain<FeatureRecord>, "analyses"> & {
  analyses: Record<string, FeatureAnalysisJson>;
};

type Shape = (value: unknown) => unknown;

/** Any value: typed arrays to arrays, object keys sorted. */
const plain: Shape = (v) => {
  if (v === null || typeof v !== "object") return v;
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) return v.map(plain);
  return ordered([], {})(v);
};

/** An object with `keys` first in this order, then the other keys sorted. */
function ordered(keys: string[], shapes: Record<string, Shape>): Shape {
  return (v) => {
    if (v === null || typeof v !== "object" || Array.isArray(v) || ArrayBuffer.isView(v)) {
      return plain(v);
    }
    const obj = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    const rest = Object.keys(obj).filter((k) => !keys.includes(k)).sort();
    for (const k of [...keys, ...rest]) {
      if (obj[k] !== undefined) out[k] = (shapes[k] ?? plain)(obj[k]);
    }
    return out;
  };
}

const list = (shape: Shape): Shape => (v) => Array.isArray(v) ? v.map(shape) : plain(v);
const map = (shape: Shape): Shape => (v) => {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return plain(v);
  const obj = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj).sort()) if (obj[k] !== undefined) out[k] = shape(obj[k]);
  return out;
};

const histogram = ordered(["relative_accuracy", "index_offset", "counts"], {});
const quantile = ordered(["q", "value"], {});
const tokenLogit = ordered(["token", "id", "logit"], {});
const binHistogram = ordered(["edges", "counts"], {});
const logits = ordered(["top_positive", "top_negative", "histogram"], {
  top_positive: list(tokenLogit),
  top_negative: list(tokenLogit),
  histogram: binHistogram,
});
const score = ordered([
  "accuracy",
  "precision",
  "recall",
  "f1",
  "balanced_accuracy",
  "tp",
  "fp",
  "tn",
  "fn",
  "skipped",
], {});
const interpretation = ordered([
  "text",
  "method",
  "model",
  "consistency",
  "complexity",
  "scores",
  "passed",
  "prompts",
  "usage",
  "error",
  "at",
], {
  scores: map(score),
  prompts: list(ordered(["role", "content"], {})),
  usage: ordered(["prompt_tokens", "completion_tokens"], {}),
});

function sampleShape(vocab: readonly string[] | undefined): Shape {
  const base = ordered(
    ["tokens", "token_strings", "acts", "peak", "peak_pos", "source", "shard", "row", "offset"],
    {},
  );
  if (!vocab) return base;
  return (v) => {
    const s = v as Record<string, unknown>;
    if (
      s === null || typeof s !== "object" ||
      !ArrayBuffer.isView(s.tokens) && !Array.isArray(s.tokens)
    ) {
      return base(v);
    }
    const ids = Array.from(s.tokens as ArrayLike<number>);
    return base({ ...s, token_strings: ids.map((id) => vocab[id] ?? null) });
  };
}

/**
 * The JSON form of a feature record.
 *
 * @param record A feature as read from a store.
 * @param vocab Token id → display string (the model document's `vocab`); when given, every
 * sample gets `token_strings`.
 * @returns A plain object; `JSON.stringify` it to print.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { featureToJson } from "./json.ts";
 * const json = featureToJson({
 *   sae_name: "n", sae_series: "s", index: 1, analyses: {},
 *   logits: { top_positive: [], top_negative: [], histogram: {
 *     edges: new Float64Array([0, 1]), counts: new Float64Array([2]) } },
 * });
 * assert.equal(JSON.stringify(json.logits?.histogram), '{"edges":[0,1],"counts":[2]}');
 * ```
 */
export function featureToJson(record: FeatureRecord, vocab?: readonly string[]): FeatureJson {
  const sampling = ordered(["name", "band", "samples"], { samples: list(sampleShape(vocab)) });
  const analysis = ordered([
    "act_times",
    "n_analyzed_tokens",
    "max_activation",
    "mean",
    "std",
    "histogram",
    "quantiles",
    "samplings",
  ], { histogram, quantiles: list(quantile), samplings: list(sampling) });
  const feature = ordered(
    ["sae_name", "sae_series", "index", "analyses", "logits", "interpretation"],
    { analyses: map(analysis), logits, interpretation },
  );
  return feature(record) as FeatureJson;
}
