/**
 * An in-memory index of one analysis' feature summaries, for what the store cannot answer
 * quickly: deep list pages (a store pages with OFFSET, reading every skipped row), text search
 * in explanations (no store method) and the SAE-wide frequency histogram (every feature).
 *
 * Sorting matches the store's: by the key, ties by ascending index; a NaN maximum (kept as NULL
 * by SQLite) counts as the smallest value.
 *
 * @module
 */

import type { FeatureSummary } from "../store/types.ts";

/** One page of a listing. */
export interface SummaryPage {
  /** Features matching the filters, before paging. */
  total: number;
  features: FeatureSummary[];
}

/** What to list: the store's sort keys and filters plus a lower-cased search text. */
export interface SummaryQuery {
  sort: "index" | "act_times" | "max_activation";
  order: "asc" | "desc";
  skip: number;
  limit: number;
  alive?: boolean;
  q?: string;
}

/** The summaries of one analysis, with sorted views built on first use. */
export class SummaryIndex {
  /** Every summary, by ascending index. */
  readonly byIndex: readonly FeatureSummary[];
  readonly #views = new Map<string, readonly FeatureSummary[]>();

  /** @param summaries The summaries in any order. */
  constructor(summaries: readonly FeatureSummary[]) {
    this.byIndex = [...summaries].sort((a, b) => a.index - b.index);
  }

  /** The features matching `query`, sorted and paged. */
  page(query: SummaryQuery): SummaryPage {
    let rows = this.#view(query.sort, query.order, query.alive);
    if (query.q !== undefined && query.q.length > 0) {
      const q = query.q;
      const lower = this.#lowerTexts();
      const hit = new Uint8Array((this.byIndex.at(-1)?.index ?? 0) + 1);
      for (let i = 0; i < lower.length; i++) {
        if (lower[i]!.includes(q)) hit[this.byIndex[i]!.index] = 1;
      }
      rows = rows.filter((f) => hit[f.index] === 1);
    }
    return { total: rows.length, features: rows.slice(query.skip, query.skip + query.limit) };
  }

  #lower?: string[];

  /** Lower-cased explanation texts aligned with `byIndex` ("" for none), built on first use. */
  #lowerTexts(): string[] {
    this.#lower ??= this.byIndex.map((f) => f.interpretation_text?.toLowerCase() ?? "");
    return this.#lower;
  }

  #view(sort: SummaryQuery["sort"], order: "asc" | "desc", alive?: boolean) {
    const key = `${sort} ${order} ${alive}`;
    let view = this.#views.get(key);
    if (!view) {
      let rows = alive === undefined
        ? [...this.byIndex]
        : this.byIndex.filter((f) => (f.act_times > 0) === alive);
      const sign = order === "asc" ? 1 : -1;
      if (sort === "index") {
        if (order === "desc") rows.reverse();
      } else {
        const value = (f: FeatureSummary) => {
          const v = f[sort];
          return Number.isNaN(v) ? -Infinity : v;
        };
        rows = rows.sort((a, b) => sign * (value(a) - value(b)) || a.index - b.index);
      }
      view = rows;
      this.#views.set(key, view);
    }
    return view;
  }
}
