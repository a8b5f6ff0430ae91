/**
 * Validation and option defaults shared by both stores, so that they behave the same.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { FeatureRecord } from "../types.ts";
import {
  DEFAULT_ANALYSIS,
  type FeatureFilter,
  type FeatureListOptions,
  type ReadFeaturesOptions,
} from "./types.ts";

/** Records per bulk write / transaction. */
export const WRITE_BATCH = 1000;

/** Records per page of `readFeatures()`. */
export const READ_PAGE = 256;

/**
 * Checks an analysis name: any non-empty string.
 *
 * @throws {ConfigError} When it is empty.
 */
export function checkAnalysisName(name: string): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new ConfigError(
      `Invalid analysis name ${JSON.stringify(name)}: expected a non-empty string`,
    );
  }
  return name;
}

/**
 * Checks that a record can be keyed.
 *
 * @throws {TypeError} When `sae_series`/`sae_name` are not strings.
 * @throws {RangeError} When `index` is not a non-negative integer.
 */
export function checkRecord(record: FeatureRecord): void {
  if (typeof record.sae_series !== "string" || typeof record.sae_name !== "string") {
    throw new TypeError(
      `Cannot write feature ${record.index}: sae_series and sae_name must be strings`,
    );
  }
  checkIndex(record.index);
  for (const name of Object.keys(record.analyses ?? {})) checkAnalysisName(name);
}

/**
 * Checks a feature index.
 *
 * @throws {RangeError} When it is not a non-negative safe integer.
 */
export function checkIndex(index: number): number {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new RangeError(`Invalid feature index ${index}: expected a non-negative integer`);
  }
  return index;
}

/** A {@linkcode FeatureListOptions} with every default applied. */
export interface ResolvedListOptions {
  series: string;
  name: string;
  analysis: string;
  alive: boolean | undefined;
  sort: "index" | "act_times" | "max_activation";
  order: "asc" | "desc";
  skip: number;
  limit: number | undefined;
}

/**
 * Applies the defaults of a feature listing and validates paging.
 *
 * @throws {RangeError} For a negative or fractional skip/limit, an unknown sort or order.
 */
export function resolveListOptions(
  options: FeatureListOptions | FeatureFilter,
): ResolvedListOptions {
  const o = options as FeatureListOptions;
  const sort = o.sort ?? "index";
  if (sort !== "index" && sort !== "act_times" && sort !== "max_activation") {
    throw new RangeError(
      `Invalid sort ${JSON.stringify(sort)}: expected index, act_times or max_activation`,
    );
  }
  const order = o.order ?? (sort === "index" ? "asc" : "desc");
  if (order !== "asc" && order !== "desc") {
    throw new RangeError(`Invalid order ${JSON.stringify(order)}: expected asc or desc`);
  }
  const skip = o.skip ?? 0;
  if (!Number.isSafeInteger(skip) || skip < 0) {
    throw new RangeError(`Invalid skip ${skip}: expected a non-negative integer`);
  }
  if (o.limit !== undefined && (!Number.isSafeInteger(o.limit) || o.limit < 0)) {
    throw new RangeError(`Invalid limit ${o.limit}: expected a non-negative integer`);
  }
  return {
    series: o.series,
    name: o.name,
    analysis: checkAnalysisName(o.analysis ?? DEFAULT_ANALYSIS),
    alive: o.alive,
    sort,
    order,
    skip,
    limit: o.limit,
  };
}

/** The pages of indices to read for `readFeatures({ indices })`: sorted, unique, chunked. */
export function indexPages(indices: readonly number[], pageSize: number): number[][] {
  const sorted = [...new Set(indices.map(checkIndex))].sort((a, b) => a - b);
  const pages: number[][] = [];
  for (let i = 0; i < sorted.length; i += pageSize) pages.push(sorted.slice(i, i + pageSize));
  return pages;
}

/** Validates `readFeatures()` options and returns the page size. */
export function resolvePageSize(options: ReadFeaturesOptions): number {
  const size = options.pageSize ?? READ_PAGE;
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(`Invalid pageSize ${size}: expected a positive integer`);
  }
  if (options.analysis !== undefined) checkAnalysisName(options.analysis);
  return size;
}

/**
 * A pull-based stream over pages: `next(cursor)` returns one page of records and the cursor of
 * the next page, or `null` at the end. Nothing is read before the consumer pulls.
 */
export function pagedStream<C>(
  first: C,
  next: (cursor: C) => Promise<{ records: FeatureRecord[]; cursor: C } | null>,
): ReadableStream<FeatureRecord> {
  let cursor = first;
  let done = false;
  return new ReadableStream<FeatureRecord>({
    async pull(controller) {
      // Loop past empty pages (e.g. an `indices` page where none exist) so one pull yields data.
      while (!done) {
        const page = await next(cursor);
        if (page === null) {
          done = true;
          controller.close();
          return;
        }
        cursor = page.cursor;
        if (page.records.length > 0) {
          for (const r of page.records) controller.enqueue(r);
          return;
        }
      }
    },
    cancel() {
      done = true;
    },
  }, { highWaterMark: 0 });
}

/** Assembles a FeatureRecord with the canonical top-level key order. */
export function makeRecord(
  series: string,
  name: string,
  index: number,
  analyses: Record<string, unknown>,
  logits: unknown,
  interpretation: unknown,
): FeatureRecord {
  // Analyses by name (code unit order), whatever order the store kept them in.
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(analyses).sort()) sorted[key] = analyses[key];
  const record: Record<string, unknown> = {
    sae_name: name,
    sae_series: series,
    index,
    analyses: sorted,
  };
  if (logits !== undefined && logits !== null) record.logits = logits;
  if (interpretation !== undefined && interpretation !== null) {
    record.interpretation = interpretation;
  }
  return record as unknown as FeatureRecord;
}

/**
 * The value written last among `candidates` (each with the time it was written, in ms; 0 when
 * unknown), ignoring absent values; on a tie the later candidate wins. Null when none has one.
 */
export function newest<T>(
  candidates: readonly { value: T | null | undefined; at: number }[],
): T | null {
  let best: T | null = null;
  let bestAt = -Infinity;
  for (const c of candidates) {
    if (c.value !== null && c.value !== undefined && c.at >= bestAt) {
      best = c.value;
      bestAt = c.at;
    }
  }
  return best;
}
