/**
 * "Did you mean" suggestions by edit distance.
 *
 * @module
 */

/**
 * Levenshtein distance between two strings (insertions, deletions, substitutions).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { editDistance } from "./_suggest.ts";
 * assert(editDistance("totl", "total") === 1);
 * ```
 */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The closest candidate to `word`, if it is close enough to be a likely typo: at most a third of
 * the word's length in edits (at least 1, at most 3). Ties go to the earlier candidate.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closest } from "./_suggest.ts";
 * assert(closest("totl_analyzing_tokens", ["subsamples", "total_analyzing_tokens"]) ===
 *   "total_analyzing_tokens");
 * assert(closest("zzz", ["subsamples"]) === undefined);
 * ```
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.min(3, Math.max(1, Math.floor(word.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : undefined;
}
