/**
 * Options of the feature analyzer: the user-facing {@linkcode FeatureAnalyzerOptions} (every field
 * optional) and the {@linkcode ResolvedFeatureAnalyzerOptions} with all defaults applied.
 *
 * How the `subsamples` table (the Python tool's `FeatureAnalyzerConfig.subsamples`) becomes
 * samplings:
 *
 * - An entry with `proportion = 1` is an exact top-n sampling (the n contexts with the highest
 *   peak). When the table has none, `top_activations` with `nTop` samples is added.
 * - An entry named `non_activating` sets the size of the `non_activating` sampling (its
 *   `proportion` and `max_length` are ignored: that sampling holds contexts where the feature
 *   never fires).
 * - With `subsampleRule: "band"` (the default) the other entries, sorted by proportion
 *   descending, are magnitude bands: the entry with proportion `p` holds contexts whose peak lies
 *   in `(p'·max, p·max]`, `p'` being the next smaller proportion, or 0 for the smallest one (so a
 *   band never holds a context where the feature does not fire). The default table names bands
 *   by their upper bound, as the Python tool's examples do (`subsampling_80%` = `(0.6, 0.8]`).
 * - With `subsampleRule: "python"` every entry with proportion `p < 1` holds, as in the Python
 *   tool, the `n` highest peaks at or below `p·max` (see `AnalyzerState` for the streaming
 *   details).
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

/** One entry of the `subsamples` table, in the Python tool's spelling. */
export interface SubsampleSpec {
  /** Fraction of the feature's max activation, in `(0, 1]`. */
  proportion: number;
  /** Number of samples to keep (a non-negative integer). */
  n_samples: number;
  /** Accepted for compatibility with the Python tool's `non_activating` entry; ignored. */
  max_length?: number;
}

/** How magnitude subsamples are chosen. */
export type SubsampleRule = "band" | "python";

/** User-facing options of the feature analyzer. Every field is optional. */
export interface FeatureAnalyzerOptions {
  /** Key of the result under `analyses` in each record. Default `"default"`. */
  analysisName?: string;
  /** `sae_name` of the emitted records. Default `"sae"`; pipelines set it. */
  saeName?: string;
  /** `sae_series` of the emitted records. Default `"default"`; pipelines set it. */
  saeSeries?: string;
  /**
   * Size of `top_activations` when the `subsamples` table has no entry with proportion 1 (a
   * table entry always keeps its own `n_samples`). Default 20; 0 disables it.
   */
  nTop?: number;
  /** The Python tool's `subsamples` table. Default {@linkcode DEFAULT_SUBSAMPLES}. */
  subsamples?: Record<string, SubsampleSpec>;
  /**
   * Size of the `non_activating` sampling when the table has no `non_activating` entry (whose
   * `n_samples` wins). Default 20; 0 disables it.
   */
  nNonActivating?: number;
  /** Tokens kept before the peak in a sample window. Default 32. */
  windowBefore?: number;
  /** Tokens kept after the peak in a sample window. Default 32. */
  windowAfter?: number;
  /** Seed of the random priority keys (any safe integer). Default 42. */
  seed?: number;
  /** Relative accuracy α of the log-bucket histogram, in (0, 1). Default 0.01. */
  histogramAccuracy?: number;
  /** Quantiles reported, each in (0, 1). Default 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99. */
  quantiles?: number[];
  /** `"band"` (uniform random samples of magnitude bands, default) or `"python"`. */
  subsampleRule?: SubsampleRule;
  /**
   * Stop after the batch that brings the number of context tokens (`B×T` per batch, padding
   * included, as the Python tool's `total_analyzing_tokens` counts them) to at least this.
   * Used by the `featureAnalyzer` stage only. Default: no limit.
   */
  limitTokens?: number;
}

/**
 * One sampling as the analyzer computes it: the one definition of a sampling. The settings'
 * `Sampling` (`settings.analyzer.samplings`) is this in the `[analyzer]` table's spelling, and a
 * record's `Sampling` (lib/types.ts) is this sampling's output under its `name`.
 */
export interface SamplingSpec {
  /** The sampling's name in the output. */
  name: string;
  /**
   * `top`: exact top-n by peak; `band`: uniform random sample of `(lo·max, hi·max]`; `python`:
   * the n highest peaks at or below `hi·max`; `non_activating`: uniform random sample of contexts
   * where the feature never fires.
   */
  kind: "top" | "band" | "python" | "non_activating";
  /** Lower bound as a fraction of max (0 for all kinds but `band`). */
  lo: number;
  /** Upper bound as a fraction of max (1 for `top` and `non_activating`). */
  hi: number;
  /** Number of samples (> 0). */
  n: number;
}

/** {@linkcode FeatureAnalyzerOptions} with every default applied. */
export interface ResolvedFeatureAnalyzerOptions {
  analysisName: string;
  saeName: string;
  saeSeries: string;
  /** Size of the largest top sampling (0 when none). */
  nTop: number;
  /** The table as resolved (the default one when none was given). */
  subsamples: Record<string, SubsampleSpec>;
  nNonActivating: number;
  windowBefore: number;
  windowAfter: number;
  seed: number;
  histogramAccuracy: number;
  quantiles: number[];
  subsampleRule: SubsampleRule;
  /** `null` when there is no limit. */
  limitTokens: number | null;
  /**
   * The samplings in output order: top samplings (table order), then bands or Python-rule
   * subsamples by proportion descending, then `non_activating`. Samplings of size 0 are left out.
   */
  samplings: SamplingSpec[];
}

/**
 * The default `subsamples` table: magnitude bands at 0.8, 0.6, 0.4 and 0.2 of max with 10
 * samples each (named as in the Python tool's examples). With the defaults of `nTop` (20) and
 * `nNonActivating` (20) this gives: top 20; the four bands; 20 non-activating.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_SUBSAMPLES } from "./options.ts";
 * assert(DEFAULT_SUBSAMPLES["subsampling_80%"]?.proportion === 0.8);
 * ```
 */
export const DEFAULT_SUBSAMPLES: Readonly<Record<string, SubsampleSpec>> = Object.freeze({
  "subsampling_80%": { proportion: 0.8, n_samples: 10 },
  "subsampling_60%": { proportion: 0.6, n_samples: 10 },
  "subsampling_40%": { proportion: 0.4, n_samples: 10 },
  "subsampling_20%": { proportion: 0.2, n_samples: 10 },
});

/** The default quantiles. */
const DEFAULT_QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];

function nonNegativeInteger(key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ConfigError(`analyzer.${key}: expected a non-negative integer, got ${show(value)}`);
  }
  return value;
}

function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Applies the defaults to user options and checks them.
 *
 * @param options The user options (all optional).
 * @returns The resolved options, with the samplings in output order.
 * @throws {ConfigError} A value is out of range, saying which key and what value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveFeatureAnalyzerOptions } from "./options.ts";
 * const r = resolveFeatureAnalyzerOptions({});
 * assert(r.samplings.map((s) => s.name).join() ===
 *   "top_activations,subsampling_80%,subsampling_60%,subsampling_40%,subsampling_20%,non_activating");
 * assert(r.samplings[1]?.lo === 0.6 && r.samplings[1]?.hi === 0.8);
 * ```
 */
export function resolveFeatureAnalyzerOptions(
  options: FeatureAnalyzerOptions = {},
): ResolvedFeatureAnalyzerOptions {
  const rule = options.subsampleRule ?? "band";
  if (rule !== "band" && rule !== "python") {
    throw new ConfigError(
      `analyzer.subsample_rule: expected "band" or "python", got ${show(rule)}`,
    );
  }
  const table = options.subsamples ?? DEFAULT_SUBSAMPLES;
  if (typeof table !== "object" || table === null || Array.isArray(table)) {
    throw new ConfigError(`analyzer.subsamples: expected a table, got ${show(table)}`);
  }
  const subsamples: Record<string, SubsampleSpec> = {};
  const top: SamplingSpec[] = [];
  const rest: { name: string; p: number; n: number }[] = [];
  let nonActivatingFromTable: number | undefined;
  for (const [name, spec] of Object.entries(table)) {
    const where = `analyzer.subsamples.${JSON.stringify(name)}`;
    if (typeof spec !== "object" || spec === null) {
      throw new ConfigError(`${where}: expected a table, got ${show(spec)}`);
    }
    for (const key of Object.keys(spec)) {
      if (key !== "proportion" && key !== "n_samples" && key !== "max_length") {
        throw new ConfigError(
          `${where}.${key}: unknown key (expected proportion, n_samples, max_length)`,
        );
      }
    }
    const p = spec.proportion;
    if (typeof p !== "number" || !(p > 0 && p <= 1)) {
      throw new ConfigError(`${where}.proportion: expected a number in (0, 1], got ${show(p)}`);
    }
    const n = nonNegativeInteger(`subsamples.${JSON.stringify(name)}.n_samples`, spec.n_samples);
    subsamples[name] = { ...spec };
    if (name === "non_activating") nonActivatingFromTable = n;
    else if (p === 1) {
      top.push({ name, kind: "top", lo: 0, hi: 1, n });
    } else rest.push({ name, p, n });
  }
  if (top.length === 0) {
    const size = nonNegativeInteger("n_top", options.nTop ?? 20);
    top.push({ name: "top_activations", kind: "top", lo: 0, hi: 1, n: size });
  }
  rest.sort((a, b) => b.p - a.p);
  const magnitude: SamplingSpec[] = [];
  for (let i = 0; i < rest.length; i++) {
    const r = rest[i]!;
    const next = rest[i + 1];
    if (next !== undefined && next.p === r.p && rule === "band") {
      throw new ConfigError(
        `analyzer.subsamples: ${JSON.stringify(r.name)} and ${
          JSON.stringify(next.name)
        } have the same proportion ${r.p}, which would make an empty band`,
      );
    }
    magnitude.push(
      rule === "band"
        ? { name: r.name, kind: "band", lo: next?.p ?? 0, hi: r.p, n: r.n }
        : { name: r.name, kind: "python", lo: 0, hi: r.p, n: r.n },
    );
  }
  const nNonActivating = nonNegativeInteger(
    "n_non_activating",
    nonActivatingFromTable ?? options.nNonActivating ?? 20,
  );
  const samplings = [
    ...top,
    ...magnitude,
    { name: "non_activating", kind: "non_activating" as const, lo: 0, hi: 1, n: nNonActivating },
  ].filter((s) => s.n > 0);

  const histogramAccuracy = options.histogramAccuracy ?? 0.01;
  if (typeof histogramAccuracy !== "number" || !(histogramAccuracy > 0 && histogramAccuracy < 1)) {
    throw new ConfigError(
      `analyzer.histogram_accuracy: expected a number in (0, 1), got ${show(histogramAccuracy)}`,
    );
  }
  const quantiles = options.quantiles ?? DEFAULT_QUANTILES;
  if (!Array.isArray(quantiles)) {
    throw new ConfigError(`analyzer.quantiles: expected a list, got ${show(quantiles)}`);
  }
  for (const [i, q] of quantiles.entries()) {
    if (typeof q !== "number" || !(q > 0 && q < 1)) {
      throw new ConfigError(
        `analyzer.quantiles[${i}]: expected a number in (0, 1), got ${show(q)}`,
      );
    }
  }
  const seed = options.seed ?? 42;
  if (typeof seed !== "number" || !Number.isSafeInteger(seed)) {
    throw new ConfigError(`analyzer.seed: expected an integer, got ${show(seed)}`);
  }
  let limitTokens: number | null = null;
  if (options.limitTokens !== undefined) {
    limitTokens = nonNegativeInteger("limit_tokens", options.limitTokens);
    if (limitTokens === 0) {
      throw new ConfigError(`analyzer.limit_tokens: expected a positive integer, got 0`);
    }
  }
  for (const key of ["analysisName", "saeName", "saeSeries"] as const) {
    const v = options[key];
    if (v !== undefined && (typeof v !== "string" || v === "")) {
      throw new ConfigError(`analyzer.${key}: expected a non-empty string, got ${show(v)}`);
    }
  }
  return {
    analysisName: options.analysisName ?? "default",
    saeName: options.saeName ?? "sae",
    saeSeries: options.saeSeries ?? "default",
    nTop: Math.max(0, ...top.map((t) => t.n)),
    subsamples,
    nNonActivating,
    windowBefore: nonNegativeInteger("window_before", options.windowBefore ?? 32),
    windowAfter: nonNegativeInteger("window_after", options.windowAfter ?? 32),
    seed,
    histogramAccuracy,
    quantiles: [...quantiles],
    subsampleRule: rule,
    limitTokens,
    samplings,
  };
}
