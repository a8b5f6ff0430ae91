/**
 * Which features a run covers: `--features`, `features`, `feature_range`, `top_k_features`, or
 * all.
 *
 * @module
 */

import { ConfigError } from "../lib/errors.ts";
import type { FeatureStore } from "../lib/store/mod.ts";

/** The settings that choose features. */
export interface FeatureSelectionSettings {
  /** Explicit indices. */
  features: number[] | null;
  /** `[start, end]`, both included. */
  feature_range: [number, number] | null;
  /** The `k` features that fire most often (by `act_times` of `analysis_name`). */
  top_k_features: number | null;
  /** The analysis `top_k_features` ranks by. */
  analysis_name: string;
  sae_series: string;
  sae_name: string;
}

/**
 * The feature indices a run covers, in ascending order without duplicates, or `null` for all:
 * `explicit` (e.g. `--features`) when given, else `features`, else `feature_range` (both ends
 * included), else the `top_k_features` most frequently firing features of `analysis_name` in the
 * store, else all.
 *
 * @param settings The selection settings.
 * @param options `explicit` indices; `store` (needed for `top_k_features`); `dSae` to check the
 *   indices against.
 * @returns The sorted indices, or null.
 * @throws {ConfigError} For an index ≥ `dSae`, or `top_k_features` with no store or no analysis.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { selectFeatures } from "./_select.ts";
 * const base = { features: null, top_k_features: null, analysis_name: "default", sae_series: "x", sae_name: "s" };
 * assert.equal((await selectFeatures({ ...base, feature_range: [2, 4] }))?.join(), "2,3,4");
 * assert.equal((await selectFeatures({ ...base, feature_range: null })), null);
 * ```
 */
export async function selectFeatures(
  settings: FeatureSelectionSettings,
  options: { explicit?: readonly number[]; store?: FeatureStore; dSae?: number } = {},
): Promise<number[] | null> {
  let chosen: readonly number[] | null = null;
  let source = "features";
  if (options.explicit) {
    chosen = options.explicit;
    source = "--features";
  } else if (settings.features) {
    chosen = settings.features;
  } else if (settings.feature_range) {
    const [start, end] = settings.feature_range;
    chosen = Array.from({ length: end - start + 1 }, (_, i) => start + i);
    source = "feature_range";
  } else if (settings.top_k_features !== null) {
    if (!options.store) throw new ConfigError("top_k_features needs the store's analysis");
    const where = `${settings.sae_series}/${settings.sae_name}`;
    const top = await options.store.listFeatures({
      series: settings.sae_series,
      name: settings.sae_name,
      analysis: settings.analysis_name,
      sort: "act_times",
      order: "desc",
      limit: settings.top_k_features,
    });
    if (top.length === 0) {
      throw new ConfigError(
        `top_k_features: no feature of ${where} has analysis "${settings.analysis_name}" in ` +
          `${options.store.location}; run saeflow analyze first`,
      );
    }
    chosen = top.map((f) => f.index);
    source = "top_k_features";
  }
  if (chosen === null) return null;
  for (const i of chosen) {
    if (!Number.isInteger(i) || i < 0) {
      throw new ConfigError(`${source}: expected non-negative feature indices, got ${i}`);
    }
    if (options.dSae !== undefined && i >= options.dSae) {
      throw new ConfigError(
        `${source}: feature ${i} is out of range for SAE ${settings.sae_series}/` +
          `${settings.sae_name} (d_sae ${options.dSae})`,
      );
    }
  }
  return [...new Set(chosen)].sort((a, b) => a - b);
}
