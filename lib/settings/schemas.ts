/**
 * Settings schemas (zod) for the three runners, in the shape of the Python tool's pydantic
 * settings (`AnalyzeSAESettings`, `DirectLogitAttributeSettings`, `AutoInterpSettings` and the
 * config classes they hold), so that a TOML written for `lm-saes analyze` loads unchanged.
 *
 * Each schema has two types: the user-facing input (`…Input`, what a TOML file or a library
 * caller may write: most fields optional) and the resolved output (named like the Python class,
 * every default applied, every key present; absent optional tables are `null`).
 *
 * Field names and defaults are those of the Python tool where it has the field. Fields that the
 * Python tool has but saeflow does not implement are accepted (so a Python TOML loads) and
 * ignored; each table's JSDoc lists them. Fields saeflow adds are marked "saeflow:".
 *
 * One file can drive all three commands: every settings kind accepts every top-level table; the
 * kinds differ only in which tables are required (`analyze`: `sae`, `activation_factory`,
 * `analyzer`; `dla`: `sae`, `model_name`, `direct_logit_attributor`; `autointerp`: `model`,
 * `model_name`, `auto_interp`). Tables a command does not use are validated and ignored.
 *
 * Unknown keys are errors everywhere (strict objects).
 *
 * @module
 */

import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// Leaf schemas with one "expected …" message per field kind

const POSITIVE_INTEGER = "expected a positive integer";
const NON_NEGATIVE_INTEGER = "expected a non-negative integer";
const STRING = "expected a string";
const NON_EMPTY_STRING = "expected a non-empty string";
const BOOLEAN = "expected true or false";
const TABLE = "expected a table";

const positiveInt = () =>
  z.number({ error: POSITIVE_INTEGER }).int({ error: POSITIVE_INTEGER }).positive({
    error: POSITIVE_INTEGER,
  });
const nonNegativeInt = () =>
  z.number({ error: NON_NEGATIVE_INTEGER }).int({ error: NON_NEGATIVE_INTEGER }).nonnegative({
    error: NON_NEGATIVE_INTEGER,
  });
const integer = () =>
  z.number({ error: "expected an integer" }).int({ error: "expected an integer" });
const text = () => z.string({ error: STRING });
const nonEmptyText = () =>
  z.string({ error: NON_EMPTY_STRING }).min(1, { error: NON_EMPTY_STRING });
const bool = () => z.boolean({ error: BOOLEAN });
const tokenIds = () =>
  z.array(nonNegativeInt(), { error: "expected an array of token ids (non-negative integers)" });
const unitInterval = () => {
  const message = "expected a number between 0 and 1";
  return z.number({ error: message }).min(0, { error: message }).max(1, { error: message });
};
const proportion = () => {
  const message = "expected a number in (0, 1]";
  return z.number({ error: message }).positive({ error: message }).max(1, { error: message });
};
const positiveNumber = () => {
  const message = "expected a positive number";
  return z.number({ error: message }).positive({ error: message });
};
const nullableText = () => text().nullable().default(null);
const temperature = () => {
  const message = "expected a number between 0 and 2";
  return z.number({ error: message }).min(0, { error: message }).max(2, { error: message });
};

// ---------------------------------------------------------------------------------------------
// dtype, device, MongoDB URI

/** The numeric types a model or SAE can be run in. */
export type Dtype = "float32" | "float16" | "bfloat16";

const DTYPE_ALIASES: Readonly<Record<string, Dtype>> = {
  float32: "float32",
  float: "float32",
  fp32: "float32",
  f32: "float32",
  float16: "float16",
  half: "float16",
  fp16: "float16",
  f16: "float16",
  bfloat16: "bfloat16",
  bf16: "bfloat16",
};

/**
 * Normalizes a dtype spelling: `"float32"`, `"float16"`, `"bfloat16"`, their PyTorch spellings
 * (`"torch.float16"`, `"torch.half"`, `"torch.float"`, `"torch.bfloat16"`) and the short forms
 * `fp32`/`fp16`/`bf16`. Returns undefined for anything else.
 *
 * @param value a dtype as written in a settings file.
 * @returns the canonical dtype, or undefined.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeDtype } from "./schemas.ts";
 * assert(normalizeDtype("torch.float16") === "float16");
 * assert(normalizeDtype("int8") === undefined);
 * ```
 */
export function normalizeDtype(value: string): Dtype | undefined {
  const name = value.trim().toLowerCase().replace(/^torch\./, "");
  return DTYPE_ALIASES[name];
}

const DTYPE_MESSAGE = 'expected "float32", "float16" or "bfloat16" (or "torch.float16" etc.)';
const dtype = () =>
  z.string({ error: DTYPE_MESSAGE }).transform((value, ctx): Dtype => {
    const normalized = normalizeDtype(value);
    if (normalized !== undefined) return normalized;
    ctx.issues.push({ code: "custom", message: DTYPE_MESSAGE, input: value });
    return z.NEVER;
  });

/** Where a model or SAE runs. */
export type Device = "cpu" | "cuda";

const DEVICE_MESSAGE = 'expected "cpu" or "cuda"';
const device = () =>
  z.string({ error: DEVICE_MESSAGE }).transform((value, ctx): Device => {
    const v = value.trim().toLowerCase();
    if (v === "cpu") return "cpu";
    if (/^cuda(:\d+)?$/.test(v)) return "cuda";
    ctx.issues.push({ code: "custom", message: DEVICE_MESSAGE, input: value });
    return z.NEVER;
  });

export { normalizeMongoUri } from "../mongo_uri.ts";
import {
  DEFAULT_SUBSAMPLES as ANALYZER_DEFAULT_SUBSAMPLES,
  resolveFeatureAnalyzerOptions,
  type SamplingSpec,
} from "../analysis/options.ts";
import { ConfigError } from "../errors.ts";
import { normalizeMongoUri } from "../mongo_uri.ts";

const MONGO_URI_MESSAGE =
  'expected a MongoDB URI ("mongodb://host:port/", "mongodb+srv://…", or a bare "host[:port]")';
const mongoUri = () =>
  z.string({ error: MONGO_URI_MESSAGE }).transform((value, ctx) => {
    try {
      return normalizeMongoUri(value);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      ctx.issues.push({ code: "custom", message: MONGO_URI_MESSAGE, input: value });
      return z.NEVER;
    }
  });

// ---------------------------------------------------------------------------------------------
// Tables

/**
 * `[sae]`: a trained SAE to load (Python `PretrainedSAE`).
 *
 * - `pretrained_name_or_path` (required): a local folder in the Language-Model-SAEs or SAELens
 *   layout (relative paths resolve against the TOML file's folder when they exist there, see
 *   `loadSettings`), or a name looked up later (Hub id).
 * - `device` (`"cpu"`): `"cpu"` or `"cuda"` (`"cuda:N"` is accepted and read as `"cuda"`).
 * - `dtype` (`"float32"`): `"float32"`, `"float16"`, `"bfloat16"`; `"torch.float16"` etc. accepted.
 * - `fold_activation_scale` (`true`): fold the dataset-wise activation-norm scale into the weights.
 * - `strict_loading` (`true`): unknown or missing tensors in the checkpoint are errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PretrainedSAESchema } from "./schemas.ts";
 * const sae = PretrainedSAESchema.parse({ pretrained_name_or_path: "results" });
 * assert(sae.dtype === "float32" && sae.fold_activation_scale === true);
 * ```
 */
export const PretrainedSAESchema = z.strictObject({
  pretrained_name_or_path: nonEmptyText(),
  device: device().default("cpu"),
  dtype: dtype().default("float32"),
  fold_activation_scale: bool().default(true),
  strict_loading: bool().default(true),
}, { error: TABLE });
/** User-facing `[sae]` table. */
export type PretrainedSAEInput = z.input<typeof PretrainedSAESchema>;
/** Resolved `[sae]` table. */
export type PretrainedSAE = z.output<typeof PretrainedSAESchema>;

/**
 * `[model]`: the language model (Python `LanguageModelConfig`).
 *
 * - `model_name` (`"gpt2"`): the model's name (a Hugging Face id); with no
 *   `model_from_pretrained_path`, it is resolved through the local Hugging Face cache.
 * - `model_from_pretrained_path` (`null`): saeflow: the local folder of the ONNX export
 *   (`model.onnx` or `onnx/model.onnx` with `tokenizer.json`, `config.json`). Relative paths
 *   resolve against the TOML file's folder.
 * - `cache_dir` (`null`): Hugging Face cache folder (like `HF_HOME`).
 * - `local_files_only` (`false`): never download.
 * - `max_length` (`2048`): longest input; also the context size when
 *   `activation_factory.context_size` is not given.
 * - `prepend_bos` (`true`), `bos_token_id`, `eos_token_id`, `pad_token_id` (`null`: from the
 *   tokenizer).
 * - `device` (`"cpu"`): `"cpu"` or `"cuda"`. `dtype` (`"float32"`): as for `[sae]`.
 *
 * Accepted and ignored (Python-only): `use_flash_attn`, `backend`, `load_ckpt`,
 * `tokenizer_only`, `d_model`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LanguageModelConfigSchema } from "./schemas.ts";
 * const m = LanguageModelConfigSchema.parse({ model_name: "EleutherAI/pythia-160m", dtype: "torch.float16" });
 * assert(m.dtype === "float16" && m.device === "cpu" && m.max_length === 2048);
 * ```
 */
export const LanguageModelConfigSchema = z.strictObject({
  model_name: nonEmptyText().default("gpt2"),
  model_from_pretrained_path: nonEmptyText().nullable().default(null),
  cache_dir: nullableText(),
  local_files_only: bool().default(false),
  max_length: positiveInt().default(2048),
  prepend_bos: bool().default(true),
  bos_token_id: nonNegativeInt().nullable().default(null),
  eos_token_id: nonNegativeInt().nullable().default(null),
  pad_token_id: nonNegativeInt().nullable().default(null),
  device: device().default("cpu"),
  dtype: dtype().default("float32"),
  // Accepted and ignored.
  use_flash_attn: bool().optional(),
  backend: z.enum(["huggingface", "transformer_lens", "auto"], {
    error: 'expected "huggingface", "transformer_lens" or "auto"',
  }).optional(),
  load_ckpt: bool().optional(),
  tokenizer_only: bool().optional(),
  d_model: positiveInt().optional(),
}, { error: TABLE });
/** User-facing `[model]` table. */
export type LanguageModelConfigInput = z.input<typeof LanguageModelConfigSchema>;
/** Resolved `[model]` table. */
export type LanguageModelConfig = z.output<typeof LanguageModelConfigSchema>;

/**
 * `[datasets."NAME"]`: one dataset (Python `DatasetConfig`).
 *
 * - `dataset_name_or_path` (`"openwebtext"`): a local `.jsonl`, `.jsonl.gz`, `.txt`,
 *   `.parquet` file or a folder of them (relative paths resolve against the TOML file's folder
 *   when they exist there), or a Hugging Face dataset id.
 * - `cache_dir` (`null`): Hugging Face datasets cache folder.
 * - `text_field` (`"text"`): saeflow: the record field holding the text.
 *
 * Accepted and ignored: `is_dataset_on_disk` (the format is detected).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DatasetConfigSchema } from "./schemas.ts";
 * assert(DatasetConfigSchema.parse({}).dataset_name_or_path === "openwebtext");
 * ```
 */
export const DatasetConfigSchema = z.strictObject({
  dataset_name_or_path: nonEmptyText().default("openwebtext"),
  cache_dir: nullableText(),
  text_field: nonEmptyText().default("text"),
  // Accepted and ignored.
  is_dataset_on_disk: bool().optional(),
}, { error: TABLE });
/** User-facing `[datasets."NAME"]` table. */
export type DatasetConfigInput = z.input<typeof DatasetConfigSchema>;
/** Resolved `[datasets."NAME"]` table. */
export type DatasetConfig = z.output<typeof DatasetConfigSchema>;

/**
 * `[[activation_factory.sources]]`: a dataset source (Python `ActivationFactoryDatasetSource`).
 *
 * - `type` (`"dataset"`): only `"dataset"`; cached-activation sources (`"activations"`) are not
 *   supported.
 * - `name` (required): a key of `[datasets]` (or a dataset stored earlier under that name).
 * - `sample_weights` (`1.0`): relative weight when several sources are mixed.
 * - `is_dataset_tokenized` (`false`): records carry `tokens` instead of text.
 * - `prepend_bos` (`true`): put the BOS token in front of each record.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ActivationFactoryDatasetSourceSchema } from "./schemas.ts";
 * const s = ActivationFactoryDatasetSourceSchema.parse({ name: "SlimPajama-3B" });
 * assert(s.type === "dataset" && s.sample_weights === 1 && s.prepend_bos);
 * ```
 */
export const ActivationFactoryDatasetSourceSchema = z.strictObject({
  type: z.literal("dataset", {
    error: 'expected "dataset" (cached "activations" sources are not supported)',
  }).default("dataset"),
  name: nonEmptyText(),
  sample_weights: positiveNumber().default(1),
  is_dataset_tokenized: bool().default(false),
  prepend_bos: bool().default(true),
}, { error: TABLE });
/** User-facing source table. */
export type ActivationFactoryDatasetSourceInput = z.input<
  typeof ActivationFactoryDatasetSourceSchema
>;
/** Resolved source table. */
export type ActivationFactoryDatasetSource = z.output<typeof ActivationFactoryDatasetSourceSchema>;

/**
 * The activation factory targets of the Python tool (`ActivationFactoryTarget`). Analysis needs
 * `"activations-2d"` (whole contexts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ActivationFactoryTargetSchema } from "./schemas.ts";
 * assert(ActivationFactoryTargetSchema.parse("activations-2d") === "activations-2d");
 * ```
 */
export const ActivationFactoryTargetSchema = z.enum(
  ["tokens", "activations-2d", "activations-1d", "batched-activations-1d"],
  {
    error: 'expected "activations-2d" (or "tokens", "activations-1d", "batched-activations-1d")',
  },
);
/** An activation factory target. */
export type ActivationFactoryTarget = z.output<typeof ActivationFactoryTargetSchema>;

/**
 * `[activation_factory]`: how contexts are made (Python `ActivationFactoryConfig`).
 *
 * - `sources` (required, at least one): `[[activation_factory.sources]]`.
 * - `target` (`"activations-2d"`; required in the Python tool).
 * - `hook_points` (required, at least one): TransformerLens names or raw tensor names.
 * - `batch_size` (required): contexts per batch.
 * - `context_size` (`null`): tokens per context; `null` means `model.max_length` (the resolved
 *   settings hold the number). The Python tool's "no padding or truncation" does not exist here:
 *   batches have one fixed context length.
 * - `ignore_token_ids` (`null`): token ids never analyzed. `null`: BOS, EOS and padding are not
 *   analyzed (mask 0); a list: exactly those ids (padding is never analyzed). Merged with
 *   `analyzer.ignore_token_ids`.
 * - `split_long_rows` (`false`): saeflow: a row longer than a context continues in further
 *   contexts instead of being truncated (the Python tool truncates).
 *
 * Accepted and ignored: `num_workers`, `model_batch_size`, `override_dtype`, `buffer_size`,
 * `buffer_shuffle`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ActivationFactoryConfigSchema } from "./schemas.ts";
 * const af = ActivationFactoryConfigSchema.parse({
 *   sources: [{ name: "d" }], hook_points: ["blocks.6.hook_resid_post"], batch_size: 32,
 * });
 * assert(af.target === "activations-2d" && af.context_size === null);
 * ```
 */
export const ActivationFactoryConfigSchema = z.strictObject({
  sources: z.array(ActivationFactoryDatasetSourceSchema, {
    error: "expected an array of tables ([[activation_factory.sources]])",
  }).min(1, { error: "expected at least one source" }),
  target: ActivationFactoryTargetSchema.default("activations-2d"),
  hook_points: z.array(nonEmptyText(), { error: "expected an array of hook point names" }).min(1, {
    error: "expected at least one hook point",
  }),
  batch_size: positiveInt(),
  context_size: positiveInt().nullable().default(null),
  ignore_token_ids: tokenIds().nullable().default(null),
  split_long_rows: bool().default(false),
  // Accepted and ignored.
  num_workers: nonNegativeInt().optional(),
  model_batch_size: positiveInt().optional(),
  override_dtype: dtype().optional(),
  buffer_size: nonNegativeInt().optional(),
  buffer_shuffle: z.strictObject({
    perm_seed: integer().optional(),
    generator_device: text().optional(),
  }, { error: TABLE }).optional(),
}, { error: TABLE });
/** User-facing `[activation_factory]` table. */
export type ActivationFactoryConfigInput = z.input<typeof ActivationFactoryConfigSchema>;
/** Resolved `[activation_factory]` table (`context_size` may be null here; see the settings). */
export type ActivationFactoryConfig = z.output<typeof ActivationFactoryConfigSchema>;

/**
 * One entry of `analyzer.subsamples`: `{ proportion, n_samples }` as in the Python tool, plus
 * its optional `max_length` (longest sample, in tokens).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SubsampleConfigSchema } from "./schemas.ts";
 * assert(SubsampleConfigSchema.parse({ proportion: 0.5, n_samples: 5 }).max_length === null);
 * ```
 */
export const SubsampleConfigSchema = z.strictObject({
  proportion: proportion(),
  n_samples: positiveInt(),
  max_length: positiveInt().nullable().default(null),
}, { error: TABLE });
/** User-facing subsample entry. */
export type SubsampleConfigInput = z.input<typeof SubsampleConfigSchema>;
/** Resolved subsample entry. */
export type SubsampleConfig = z.output<typeof SubsampleConfigSchema>;

/**
 * saeflow's default `subsamples` when the table is absent: four magnitude bands `(0.6, 0.8]`,
 * `(0.4, 0.6]`, `(0.2, 0.4]`, `(0, 0.2]` of the max with 10 uniformly sampled contexts each; with
 * `n_top` and `n_non_activating` (20 each) this is: the exact top 20, the bands, and 20 contexts
 * where the feature never fires. (The Python tool's default is `top_activations = { proportion =
 * 1.0, n_samples = 10 }` plus `non_activating`; write that table to get it.)
 */
const DEFAULT_SUBSAMPLES: Record<string, SubsampleConfig> = Object.fromEntries(
  Object.entries(ANALYZER_DEFAULT_SUBSAMPLES).map(([name, spec]) => [
    name,
    { proportion: spec.proportion, n_samples: spec.n_samples, max_length: null },
  ]),
);

/**
 * How one sampling of a feature's contexts is kept, as the analyzer builds it
 * (`resolveFeatureAnalyzerOptions` in lib/analysis/options.ts, the one place that reads a
 * `subsamples` table):
 *
 * - `"top"`: the `n_samples` contexts with the highest peaks (exact).
 * - `"band"`: a uniform random sample of the contexts whose peak is in
 *   `(lower × max, proportion × max]` (never a context where the feature does not fire).
 * - `"python"`: the Python tool's rule: the `n_samples` highest peaks at or below
 *   `proportion × max`.
 * - `"non_activating"`: a uniform random sample of contexts where the feature never fires.
 *
 * The analyzer's own {@linkcode SamplingSpec} is the one definition: `name` (the `subsamples` key)
 * and `kind` are its fields; `proportion`, `lower` and `n_samples` are its `hi`, `lo` and `n` in
 * the `[analyzer]` table's spelling.
 */
export interface Sampling extends Pick<SamplingSpec, "name" | "kind"> {
  /** Upper bound as a fraction of the feature's maximum (1 for `top` and `non_activating`). */
  proportion: number;
  /** Lower bound for `band` (exclusive), else 0. */
  lower: number;
  /** How many contexts to keep. */
  n_samples: number;
  /** Longest sample in tokens, or null for the analyzer's window. */
  max_length: number | null;
}

/**
 * The explicit list of samplings the analyzer keeps for an `[analyzer]` table, in store order
 * (top, bands by decreasing proportion, non-activating), as the analyzer itself resolves it:
 *
 * - an entry with `proportion = 1` is an exact top-n sampling; without one, `top_activations`
 *   with `n_top` samples is added;
 * - an entry named `non_activating` sets the size of the sampling of contexts where the feature
 *   never fires (its `proportion` is ignored); without one, `n_non_activating` is used;
 * - every other entry is a magnitude band: with `"uniform"`, consecutive proportions define
 *   `(lower, upper]`, the lowest band reaching down to 0 (exclusive); with `"python"`, the
 *   Python tool's rule;
 * - samplings of size 0 are left out.
 *
 * @param analyzer the fields of `[analyzer]` that define samplings.
 * @returns the samplings.
 * @throws {ConfigError} for a table the analyzer cannot use (two bands with one proportion).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveSamplings } from "./schemas.ts";
 * const s = resolveSamplings({
 *   subsamples: {
 *     top_activations: { proportion: 1, n_samples: 10, max_length: null },
 *     "half": { proportion: 0.5, n_samples: 5, max_length: null },
 *     "quarter": { proportion: 0.25, n_samples: 5, max_length: null },
 *   },
 *   subsample_rule: "uniform", n_top: 20, n_non_activating: 20,
 * });
 * assert(s.map((x) => x.kind).join() === "top,band,band,non_activating");
 * assert(s[0]!.n_samples === 10 && s[1]!.lower === 0.25 && s[2]!.lower === 0);
 * ```
 */
export function resolveSamplings(analyzer: {
  subsamples: Record<string, SubsampleConfig>;
  subsample_rule: "uniform" | "python";
  n_top: number;
  n_non_activating: number;
}): Sampling[] {
  const resolved = resolveFeatureAnalyzerOptions({
    subsamples: Object.fromEntries(
      Object.entries(analyzer.subsamples).map((
        [name, { proportion, n_samples }],
      ) => [name, { proportion, n_samples }]),
    ),
    subsampleRule: analyzer.subsample_rule === "python" ? "python" : "band",
    nTop: analyzer.n_top,
    nNonActivating: analyzer.n_non_activating,
  });
  return resolved.samplings.map((s) => ({
    name: s.name,
    kind: s.kind,
    proportion: s.hi,
    lower: s.lo,
    n_samples: s.n,
    max_length: analyzer.subsamples[s.name]?.max_length ?? null,
  }));
}

/**
 * `[analyzer]`: feature analysis (Python `FeatureAnalyzerConfig`).
 *
 * - `total_analyzing_tokens` (required): stop after this many tokens (all context positions,
 *   as in the Python tool) or at the end of the data.
 * - `ignore_token_ids` (`null`): as `activation_factory.ignore_token_ids`; the two are merged.
 * - `subsamples` (default: top 20; bands `(0.6, 0.8]`, `(0.4, 0.6]`, `(0.2, 0.4]`, `(0, 0.2]` of
 *   the max with 10 each; 20 never-firing contexts): see {@link resolveSamplings} for how each
 *   entry is read.
 * - `subsample_rule` (`"uniform"`): saeflow: `"uniform"` (magnitude bands, uniformly sampled,
 *   reproducible and mergeable) or `"python"` (the Python tool's "highest peaks at or below
 *   proportion × max").
 * - `n_top` (`20`): saeflow: size of the exact top sampling when `subsamples` has no
 *   `top_activations` entry.
 * - `n_non_activating` (`20`): saeflow: size of the never-firing sample when `subsamples` has no
 *   `non_activating` entry (0: none).
 * - `window_before` (`32`), `window_after` (`32`): saeflow: tokens kept before and after the
 *   peak in each sample (the whole context when it is shorter).
 * - `seed` (`0`): saeflow: seed of the random sampling.
 *
 * The resolved table adds `samplings`, the explicit list from {@link resolveSamplings}.
 *
 * Accepted and ignored: `clt_layer`, `enable_sampling`, `sample_weight_exponent`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FeatureAnalyzerConfigSchema } from "./schemas.ts";
 * const a = FeatureAnalyzerConfigSchema.parse({ total_analyzing_tokens: 1_000_000 });
 * assert(a.samplings[0]?.n_samples === 20 && a.window_before === 32);
 * assert(a.samplings.map((s) => s.kind).join() === "top,band,band,band,band,non_activating");
 * ```
 */
export const FeatureAnalyzerConfigSchema = z.strictObject({
  total_analyzing_tokens: positiveInt(),
  ignore_token_ids: tokenIds().nullable().default(null),
  subsamples: z.record(nonEmptyText(), SubsampleConfigSchema, { error: TABLE }).default(() =>
    structuredClone(DEFAULT_SUBSAMPLES)
  ),
  subsample_rule: z.enum(["uniform", "python"], { error: 'expected "uniform" or "python"' })
    .default("uniform"),
  n_top: positiveInt().default(20),
  n_non_activating: nonNegativeInt().default(20),
  window_before: nonNegativeInt().default(32),
  window_after: nonNegativeInt().default(32),
  seed: nonNegativeInt().default(0),
  // Accepted and ignored.
  clt_layer: nonNegativeInt().optional(),
  enable_sampling: bool().optional(),
  sample_weight_exponent: z.number({ error: "expected a number" }).optional(),
}, { error: TABLE }).transform((analyzer) => ({
  ...analyzer,
  samplings: resolveSamplings(analyzer),
}));
/** User-facing `[analyzer]` table. */
export type FeatureAnalyzerConfigInput = z.input<typeof FeatureAnalyzerConfigSchema>;
/** Resolved `[analyzer]` table, with `samplings`. */
export type FeatureAnalyzerConfig = z.output<typeof FeatureAnalyzerConfigSchema>;

/**
 * `[direct_logit_attributor]` (Python `DirectLogitAttributorConfig`).
 *
 * - `top_k` (`10`): tokens kept at each end (most promoted, most suppressed).
 * - `center` (`true`): saeflow: subtract each feature's mean logit over the vocabulary (what the
 *   Python tool gets from TransformerLens' `center_unembed`); `false` gives the raw logits.
 * - `chunk_size` (unset): saeflow: decoder rows per ONNX Runtime run; unset: as many as fit in
 *   64 MiB of logits.
 *
 * Accepted and ignored: `clt_layer`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DirectLogitAttributorConfigSchema } from "./schemas.ts";
 * const d = DirectLogitAttributorConfigSchema.parse({});
 * assert(d.top_k === 10 && d.center === true && d.chunk_size === undefined);
 * ```
 */
export const DirectLogitAttributorConfigSchema = z.strictObject({
  top_k: positiveInt().default(10),
  center: bool().default(true),
  chunk_size: positiveInt().optional(),
  // Accepted and ignored.
  clt_layer: nonNegativeInt().optional(),
}, { error: TABLE });
/** User-facing `[direct_logit_attributor]` table. */
export type DirectLogitAttributorConfigInput = z.input<typeof DirectLogitAttributorConfigSchema>;
/** Resolved `[direct_logit_attributor]` table. */
export type DirectLogitAttributorConfig = z.output<typeof DirectLogitAttributorConfigSchema>;

/** Scoring methods of automated interpretation (Python `ScorerType`). */
export const ScorerTypeSchema = z.enum(["detection", "fuzzing", "generation", "simulation"], {
  error: 'expected "detection", "fuzzing", "generation" or "simulation"',
});
/** A scoring method. */
export type ScorerType = z.output<typeof ScorerTypeSchema>;

/**
 * `[auto_interp]`: automated interpretation (Python `AutoInterpConfig`).
 *
 * - `explainer_type` (`"openai"`): `"openai"` (any OpenAI-compatible endpoint) or
 *   `"neuronpedia"`.
 * - `openai_api_key` (`null`): filled from `OPENAI_API_KEY` when absent. A secret: never printed
 *   (see `redactSettings`).
 * - `openai_model` (`"gpt-3.5-turbo"`), `openai_base_url` (`null`), `openai_proxy` (`null`).
 * - `n_activating_examples` (`7`), `n_non_activating_examples` (`20`),
 *   `activation_threshold` (`0.7`, fraction of the max that highlights a token), `max_length`
 *   (`50`, tokens per example).
 * - `scorer_type` (`["detection", "fuzzing"]`), `detection_n_examples` (`5`),
 *   `fuzzing_n_examples` (`5`), `fuzzing_decile_correct` (`5`), `fuzzing_decile_incorrect`
 *   (`2`).
 * - `include_cot` (`true`), `overwrite_existing` (`false`).
 *
 * saeflow (the options of `lib/autointerp/options.ts`, same names and defaults):
 * - `simulation_n_examples` (`5`): activating and non-activating examples simulated, each.
 * - `requests_per_minute` (`0`), `tokens_per_minute` (`0`): rate limits; 0 for none.
 * - `request_timeout` (`60`, seconds), `max_retries` (`5`), `retry_base_delay` (`1`, seconds),
 *   `retry_max_delay` (`60`, seconds): timeouts and backoff of failed requests.
 * - `max_tokens` (`1000`): most tokens generated per request; `temperature` (unset: the
 *   endpoint's default; 0–2).
 * - `json_mode` (`true`): ask for `response_format: json_object`.
 * - `show_activation_values` (`false`): also show per-token activations (0–10) to the explainer.
 * - `save_prompts` (`false`): keep the prompts and answers on the interpretation.
 * - `pass_threshold` (`0.7`): a scorer passes at balanced accuracy ≥ this.
 * - `seed` (`42`): seed of the example shuffles.
 *
 * (`max_workers` and `analysis_name` are top-level settings, as in the Python tool.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AutoInterpConfigSchema } from "./schemas.ts";
 * const a = AutoInterpConfigSchema.parse({ openai_model: "gpt-4o" });
 * assert(a.n_activating_examples === 7 && a.openai_api_key === null);
 * ```
 */
export const AutoInterpConfigSchema = z.strictObject({
  explainer_type: z.enum(["openai", "neuronpedia"], { error: 'expected "openai" or "neuronpedia"' })
    .default("openai"),
  openai_api_key: text().nullable().default(null),
  openai_model: nonEmptyText().default("gpt-3.5-turbo"),
  openai_base_url: nonEmptyText().nullable().default(null),
  openai_proxy: nonEmptyText().nullable().default(null),
  n_activating_examples: positiveInt().default(7),
  n_non_activating_examples: nonNegativeInt().default(20),
  activation_threshold: unitInterval().default(0.7),
  max_length: positiveInt().default(50),
  scorer_type: z.array(ScorerTypeSchema, { error: "expected an array of scorer names" }).default(
    (): ScorerType[] => ["detection", "fuzzing"],
  ),
  detection_n_examples: positiveInt().default(5),
  fuzzing_n_examples: positiveInt().default(5),
  fuzzing_decile_correct: positiveInt().default(5),
  fuzzing_decile_incorrect: positiveInt().default(2),
  include_cot: bool().default(true),
  overwrite_existing: bool().default(false),
  // saeflow:
  simulation_n_examples: positiveInt().default(5),
  requests_per_minute: nonNegativeInt().default(0),
  tokens_per_minute: nonNegativeInt().default(0),
  request_timeout: positiveNumber().default(60),
  max_retries: nonNegativeInt().default(5),
  retry_base_delay: positiveNumber().default(1),
  retry_max_delay: positiveNumber().default(60),
  max_tokens: positiveInt().default(1000),
  temperature: temperature().nullable().default(null),
  json_mode: bool().default(true),
  show_activation_values: bool().default(false),
  save_prompts: bool().default(false),
  pass_threshold: unitInterval().default(0.7),
  seed: integer().default(42),
}, { error: TABLE });
/** User-facing `[auto_interp]` table. */
export type AutoInterpConfigInput = z.input<typeof AutoInterpConfigSchema>;
/** Resolved `[auto_interp]` table. */
export type AutoInterpConfig = z.output<typeof AutoInterpConfigSchema>;

/**
 * `[mongo]` (Python `MongoDBConfig`). When the table is absent the store is an embedded SQLite
 * file under `output_dir`, unless `MONGO_URI` is set (see `loadSettings`).
 *
 * - `mongo_uri` (`"mongodb://localhost:27017/"`, or `MONGO_URI`): normalized by
 *   {@link normalizeMongoUri} (`"localhost"` → `"mongodb://localhost:27017/"`).
 * - `mongo_db` (`"mechinterp"`, or `MONGO_DB`).
 * - `timeout_ms` (`5000`): saeflow: server selection timeout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MongoDBConfigSchema } from "./schemas.ts";
 * const m = MongoDBConfigSchema.parse({ mongo_uri: "localhost" });
 * assert(m.mongo_uri === "mongodb://localhost:27017/" && m.mongo_db === "mechinterp");
 * ```
 */
export const MongoDBConfigSchema = z.strictObject({
  mongo_uri: mongoUri().default("mongodb://localhost:27017/"),
  mongo_db: nonEmptyText().default("mechinterp"),
  timeout_ms: positiveInt().default(5000),
}, { error: TABLE });
/** User-facing `[mongo]` table. */
export type MongoDBConfigInput = z.input<typeof MongoDBConfigSchema>;
/** Resolved `[mongo]` table. */
export type MongoDBConfig = z.output<typeof MongoDBConfigSchema>;

// ---------------------------------------------------------------------------------------------
// Settings (one per runner)

const FEATURE_RANGE_MESSAGE = "expected [start, end] (feature indices, start <= end)";

/** Keys every settings kind accepts, all optional. */
const sharedShape = {
  sae_name: nonEmptyText(),
  sae_series: nonEmptyText(),
  model_name: nonEmptyText().nullable().default(null),
  sae: PretrainedSAESchema.nullable().default(null),
  model: LanguageModelConfigSchema.nullable().default(null),
  datasets: z.record(nonEmptyText(), DatasetConfigSchema, { error: TABLE }).nullable().default(
    null,
  ),
  activation_factory: ActivationFactoryConfigSchema.nullable().default(null),
  analyzer: FeatureAnalyzerConfigSchema.nullable().default(null),
  direct_logit_attributor: DirectLogitAttributorConfigSchema.nullable().default(null),
  auto_interp: AutoInterpConfigSchema.nullable().default(null),
  feature_analysis_name: nonEmptyText().default("default"),
  analysis_name: nonEmptyText().nullable().default(null),
  mongo: MongoDBConfigSchema.nullable().default(null),
  output_dir: nonEmptyText().default("analysis_results"),
  features: z.array(nonNegativeInt(), { error: "expected an array of feature indices" })
    .nullable().default(null),
  feature_range: z.tuple([nonNegativeInt(), nonNegativeInt()], { error: FEATURE_RANGE_MESSAGE })
    .refine(([a, b]) => a <= b, { error: FEATURE_RANGE_MESSAGE }).nullable().default(null),
  top_k_features: positiveInt().nullable().default(null),
  max_workers: positiveInt().default(10),
  // Accepted and ignored (Python-only).
  amp_dtype: dtype().optional(),
  model_parallel_size: positiveInt().optional(),
  device_type: text().optional(),
  layer_idx: nonNegativeInt().optional(),
  analysis_file: text().optional(),
};

type SharedOutput = {
  model: LanguageModelConfig | null;
  activation_factory: ActivationFactoryConfig | null;
  feature_analysis_name: string;
  analysis_name: string | null;
};

/** Fills the cross-field defaults: the context size and the analysis name. */
function completeShared<T extends SharedOutput>(settings: T) {
  const af = settings.activation_factory;
  return {
    ...settings,
    analysis_name: settings.analysis_name ?? settings.feature_analysis_name,
    activation_factory: af === null ? null : {
      ...af,
      context_size: af.context_size ?? settings.model?.max_length ?? 2048,
    },
  };
}

/**
 * Settings of `saeflow analyze` (Python `AnalyzeSAESettings`).
 *
 * Required: `sae`, `sae_name`, `sae_series`, `activation_factory`, `analyzer`.
 *
 * - `model` (`null`): needed for dataset sources; when absent it is looked up in the store by
 *   `model_name`, as the Python tool does.
 * - `model_name` (`null`): the model's name in the store (and for the tokenizer).
 * - `datasets` (`null`): name → `[datasets."NAME"]`; every source name must be one of them
 *   (when absent, names are looked up in the store).
 * - `feature_analysis_name` (`"default"`): the analysis's name in the store.
 * - `mongo` (`null`): MongoDB; `null` → embedded SQLite under `output_dir`.
 * - `output_dir` (`"analysis_results"`; `null` in the Python tool, which then needs `[mongo]`):
 *   relative to the working directory, like the Python tool; resolved to an absolute path.
 * - `direct_logit_attributor`, `auto_interp` (`null`): saeflow: when present, DLA and
 *   automated interpretation run inline after the analyzer.
 *
 * Also accepted (used by the other commands): `analysis_name`, `features`, `feature_range`,
 * `top_k_features`, `max_workers`. Accepted and ignored: `amp_dtype`, `model_parallel_size`,
 * `device_type`, `layer_idx`, `analysis_file`.
 *
 * The resolved `activation_factory.context_size` is always a number and `analysis_name` defaults
 * to `feature_analysis_name`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AnalyzeSAESettingsSchema } from "./schemas.ts";
 * const s = AnalyzeSAESettingsSchema.parse({
 *   sae: { pretrained_name_or_path: "results" }, sae_name: "s", sae_series: "x",
 *   model_name: "gpt2", datasets: { d: { dataset_name_or_path: "corpus.jsonl" } },
 *   activation_factory: { sources: [{ name: "d" }], hook_points: ["blocks.0.hook_resid_post"], batch_size: 8 },
 *   analyzer: { total_analyzing_tokens: 1000 },
 * });
 * assert(s.activation_factory.context_size === 2048 && s.mongo === null);
 * ```
 */
export const AnalyzeSAESettingsSchema = z.strictObject({
  ...sharedShape,
  sae: PretrainedSAESchema,
  activation_factory: ActivationFactoryConfigSchema,
  analyzer: FeatureAnalyzerConfigSchema,
}).superRefine((settings, ctx) => {
  const af = settings.activation_factory;
  if (af.target !== "activations-2d") {
    ctx.addIssue({
      code: "custom",
      path: ["activation_factory", "target"],
      message: 'expected "activations-2d" (feature analysis needs whole contexts)',
      input: af.target,
    });
  }
  const datasets = settings.datasets;
  if (datasets !== null) {
    const names = Object.keys(datasets);
    af.sources.forEach((source, i) => {
      if (!Object.hasOwn(datasets, source.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["activation_factory", "sources", i, "name"],
          message: `expected the name of a [datasets] table (${
            names.map((n) => JSON.stringify(n)).join(", ") || "none defined"
          })`,
          input: source.name,
        });
      }
    });
  }
  if (settings.model === null && settings.model_name === null) {
    ctx.addIssue({
      code: "custom",
      path: ["model"],
      message: "dataset sources need a language model ([model], or model_name of a stored model)",
      params: { missing: true },
    });
  }
}).transform((settings) => completeShared(settings));
/** User-facing settings of `saeflow analyze`. */
export type AnalyzeSAESettingsInput = z.input<typeof AnalyzeSAESettingsSchema>;
/** Resolved settings of `saeflow analyze`. */
export type AnalyzeSAESettings = z.output<typeof AnalyzeSAESettingsSchema>;

/**
 * Settings of `saeflow dla` (Python `DirectLogitAttributeSettings`).
 *
 * Required: `sae`, `sae_name`, `sae_series`, `model_name`, `direct_logit_attributor`.
 * `model` (`null`): when absent it is looked up in the store by `model_name`. `mongo` and
 * `output_dir` find the store as for `analyze`. Every other top-level table is accepted (so the
 * `analyze` file can be reused) and ignored. Accepted and ignored (Python-only): `layer_idx`,
 * `analysis_file`, `device_type`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DirectLogitAttributeSettingsSchema } from "./schemas.ts";
 * const s = DirectLogitAttributeSettingsSchema.parse({
 *   sae: { pretrained_name_or_path: "results" }, sae_name: "s", sae_series: "x",
 *   model_name: "EleutherAI/pythia-160m", direct_logit_attributor: { top_k: 10 },
 * });
 * assert(s.direct_logit_attributor.top_k === 10 && s.model === null);
 * ```
 */
export const DirectLogitAttributeSettingsSchema = z.strictObject({
  ...sharedShape,
  sae: PretrainedSAESchema,
  model_name: nonEmptyText(),
  direct_logit_attributor: DirectLogitAttributorConfigSchema,
}).transform((settings) => completeShared(settings));
/** User-facing settings of `saeflow dla`. */
export type DirectLogitAttributeSettingsInput = z.input<typeof DirectLogitAttributeSettingsSchema>;
/** Resolved settings of `saeflow dla`. */
export type DirectLogitAttributeSettings = z.output<typeof DirectLogitAttributeSettingsSchema>;

/**
 * Settings of `saeflow autointerp` (Python `AutoInterpSettings`).
 *
 * Required: `sae_name`, `sae_series`, `model`, `model_name`, `auto_interp`.
 *
 * - `features` (`null`), `feature_range` (`null`, `[start, end]` inclusive), `top_k_features`
 *   (`null`): which features; with none of them, all features of the analysis.
 * - `analysis_name` (`feature_analysis_name`, i.e. `"default"`): the analysis whose samples are
 *   used.
 * - `max_workers` (`10`): concurrent LLM requests.
 * - `mongo` (`null`; required in the Python tool) and `output_dir` find the store as for
 *   `analyze`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AutoInterpSettingsSchema } from "./schemas.ts";
 * const s = AutoInterpSettingsSchema.parse({
 *   sae_name: "s", sae_series: "x", model: {}, model_name: "gpt2", auto_interp: {},
 * });
 * assert(s.analysis_name === "default" && s.max_workers === 10);
 * ```
 */
export const AutoInterpSettingsSchema = z.strictObject({
  ...sharedShape,
  model: LanguageModelConfigSchema,
  model_name: nonEmptyText(),
  auto_interp: AutoInterpConfigSchema,
}).transform((settings) => completeShared(settings));
/** User-facing settings of `saeflow autointerp`. */
export type AutoInterpSettingsInput = z.input<typeof AutoInterpSettingsSchema>;
/** Resolved settings of `saeflow autointerp`. */
export type AutoInterpSettings = z.output<typeof AutoInterpSettingsSchema>;

/** The three settings kinds, one per runner. */
export type SettingsKind = "analyze" | "dla" | "autointerp";

/** Resolved settings type for each kind. */
export interface SettingsByKind {
  /** `saeflow analyze`. */
  analyze: AnalyzeSAESettings;
  /** `saeflow dla`. */
  dla: DirectLogitAttributeSettings;
  /** `saeflow autointerp`. */
  autointerp: AutoInterpSettings;
}

/**
 * The settings schema of each kind.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { settingsSchemas } from "./schemas.ts";
 * assert(Object.keys(settingsSchemas).join() === "analyze,dla,autointerp");
 * ```
 */
export const settingsSchemas = {
  analyze: AnalyzeSAESettingsSchema,
  dla: DirectLogitAttributeSettingsSchema,
  autointerp: AutoInterpSettingsSchema,
} as const;
