/**
 * The record types that flow between pipeline stages (DESIGN.md, "Record types between stages").
 *
 * These are the contracts: a stage knows nothing about another stage beyond the record type it
 * consumes and emits.
 *
 * @module
 */

/** Where a context came from: the dataset name, the shard (file) index and the row within it. */
export interface ContextOrigin {
  /** The dataset name from the settings (`[datasets."NAME"]`). */
  source: string;
  /** Index of the shard (file) within the dataset, in sorted file order. */
  shard: number;
  /** 0-based index of the record within its shard, counting bad rows too. */
  row: number;
  /** Token offset of this context within the row (non-zero only when long rows are split). */
  offset?: number;
}

/** One dataset record: a line of a `.jsonl`/`.txt` file, a parquet row, and so on. */
export interface TextRecord extends ContextOrigin {
  /** The text to tokenize. */
  text: string;
}

/** `B` contexts of `T` tokens each, row-major. */
export interface ContextBatch {
  /** Number of contexts `B`. */
  batchSize: number;
  /** Tokens per context `T` (the `context_size`). */
  contextSize: number;
  /** Token ids, `B*T`. */
  tokens: Int32Array;
  /** 1 where the token is analyzed; 0 for BOS, EOS, padding and ignored ids. `B*T`. */
  mask: Uint8Array;
  /** 1 where the token is real (not padding): the model's `attention_mask`. `B*T`. */
  attention: Uint8Array;
  /** Where each of the `B` contexts came from. */
  origins: ContextOrigin[];
}

/** A {@linkcode ContextBatch} with the hooked activations, `Float32Array(B*T*d_model)` per hook. */
export interface ActivationBatch extends ContextBatch {
  /** Hook point name → activations, row-major `[B, T, d_model]`. */
  activations: Record<string, Float32Array>;
  /** Hook point name → `d_model` of that hook. */
  dModel: Record<string, number>;
}

/**
 * A {@linkcode ContextBatch} with sparse feature activations in COO form (only values > 0),
 * sorted by `position` then `feature`.
 */
export interface FeatureBatch extends ContextBatch {
  /** Number of SAE features `d_sae`. */
  dSae: number;
  /** Flat token position `b*T + t` of each active entry. */
  position: Int32Array;
  /** Feature index of each active entry. */
  feature: Int32Array;
  /** Activation value (> 0) of each active entry. */
  value: Float32Array;
}

/** A context window around one feature's peak, with the dataset coordinates to recover it. */
export interface Sample {
  /** Token ids of the window. */
  tokens: Int32Array;
  /** This feature's activation on every token of the window (0 where inactive or masked). */
  acts: Float32Array;
  /** The peak activation value (the maximum of `acts`). */
  peak: number;
  /** Index of the peak within the window. */
  peak_pos: number;
  /** Dataset name. */
  source: string;
  /** Shard (file) index. */
  shard: number;
  /** Row within the shard. */
  row: number;
  /** Token offset of the window's first token within the row's token sequence. */
  offset: number;
}

/** One named group of samples, e.g. `top_activations` or a magnitude band. */
export interface Sampling {
  /** `top_activations`, `non_activating`, or the band's name from `[analyzer.subsamples]`. */
  name: string;
  /** The band as fractions of the feature's max: `(lo, hi]`; `null` for non-band samplings. */
  band: [number, number] | null;
  /** The samples, strongest first for top/bands. */
  samples: Sample[];
}

/** A mergeable log-bucket histogram of positive values (DDSketch-style). */
export interface LogHistogram {
  /** Relative accuracy α: every value is within α·x of its bucket's representative. */
  relative_accuracy: number;
  /** Bucket index of `counts[0]`; bucket `i` covers `(γ^(i-1), γ^i]` with γ = (1+α)/(1-α). */
  index_offset: number;
  /** Counts per bucket. */
  counts: Float64Array;
}

/** One quantile of a feature's active values. */
export interface Quantile {
  /** The probability, in (0, 1). */
  q: number;
  /** The estimated value. */
  value: number;
}

/** A feature's result under one analysis (`analyses.<name>` in the store). */
export interface FeatureAnalysis {
  /** Analyzed tokens where the feature's activation was > 0. */
  act_times: number;
  /** Analyzed tokens in all (the same for every feature of an analysis). */
  n_analyzed_tokens: number;
  /** The largest activation seen (0 for a dead feature). */
  max_activation: number;
  /** Mean of the active values (0 for a dead feature). */
  mean: number;
  /** Standard deviation of the active values (0 for a dead feature). */
  std: number;
  /** Histogram of the active values. */
  histogram: LogHistogram;
  /** Quantiles of the active values. */
  quantiles: Quantile[];
  /** The samplings; empty for a dead feature. */
  samplings: Sampling[];
}

/** One token and its logit in a DLA result. */
export interface TokenLogit {
  /** Display string of the token. */
  token: string;
  /** Token id. */
  id: number;
  /** The (centered) logit. */
  logit: number;
}

/** A plain equal-width histogram. */
export interface BinHistogram {
  /** Bin edges, `counts.length + 1` of them. */
  edges: Float64Array;
  /** Counts per bin. */
  counts: Float64Array;
}

/** Direct Logit Attribution of one feature. */
export interface FeatureLogits {
  /** Most promoted tokens, highest first. */
  top_positive: TokenLogit[];
  /** Most suppressed tokens, most negative first. */
  top_negative: TokenLogit[];
  /** Histogram of the feature's logits over the whole vocabulary. */
  histogram: BinHistogram;
}

/** Scores of one scoring method. */
export interface ScoreMetrics {
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  balanced_accuracy: number;
  /** Confusion matrix counts. */
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

/** The automated interpretation of one feature. */
export interface Interpretation {
  /** The explanation. */
  text: string;
  /** Explainer method (`openai`, `neuronpedia`). */
  method: string;
  /** The LLM that wrote it. */
  model: string;
  /** Activation-consistency score 1–5, when the explainer gives one. */
  consistency?: number;
  /** Complexity score 1–5, when the explainer gives one. */
  complexity?: number;
  /** Scores per scorer; a scorer that was skipped holds the reason instead. */
  scores: Record<string, ScoreMetrics | { skipped: string }>;
  /** Whether the feature passed (balanced accuracy ≥ 0.7 on every scorer that ran). */
  passed: boolean;
  /** The prompts and responses, when kept. */
  prompts?: { role: string; content: string }[];
  /** Token usage. */
  usage?: { prompt_tokens: number; completion_tokens: number };
  /** Set when the feature could not be interpreted. */
  error?: string;
  /** When it was written (ISO 8601). */
  at: string;
}

/**
 * One feature's complete result: the same shape the store keeps per `(sae_series, sae_name,
 * index)` and `saeflow show feature --json` prints (with typed arrays as plain arrays).
 */
export interface FeatureRecord {
  sae_name: string;
  sae_series: string;
  /** Feature index in `[0, d_sae)`. */
  index: number;
  /** Analysis name → result. A stage usually emits only the analysis it computed. */
  analyses: Record<string, FeatureAnalysis>;
  /** Direct Logit Attribution, when computed. */
  logits?: FeatureLogits;
  /** Automated interpretation, when computed. */
  interpretation?: Interpretation;
}
