/**
 * The store writer: the end of a pipeline. Feature records are written to a
 * {@linkcode FeatureStore} in batches (one bulk upsert per batch), so a slow store stalls the
 * pipeline instead of growing a buffer: the stream's queue holds at most one record, and a write
 * resolves only when its batch is stored.
 *
 * The store stays open: whoever opened it closes it.
 *
 * @module
 */

import type { FeatureStore } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";

/** Options of {@linkcode storeWriter}. */
export interface StoreWriterOptions {
  /** Records per bulk write (default 256). */
  batchSize?: number;
  /** Called after each batch is stored, with the records of that batch. */
  onWritten?: (records: readonly FeatureRecord[]) => void;
  /**
   * The generation analyses are written under (`FeatureStore.writeFeatures`); default `""`.
   * Runs that publish use `AnalysisRun.writer()`, which sets it.
   */
  generation?: string;
  /** Called before each batch is written; throwing fails the write (e.g. a lost lease). */
  beforeWrite?: () => void;
  /**
   * Longest time a record may wait for its batch to fill, in ms: a timer then writes a partial
   * batch, so that slow producers (LLM calls) still get their results stored as they come. A
   * failed timed write fails the next write or close. Default: no timer.
   */
  maxDelayMs?: number;
}

/**
 * A `WritableStream` that upserts feature records into a store in batches.
 *
 * @param store the store to write to (not closed by the stream).
 * @param options batch size and a callback per stored batch.
 * @returns the writable end of a pipeline.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "../lib/store/mod.ts";
 * import { storeWriter } from "./store_writer.ts";
 * const dir = await Deno.makeTempDir();
 * await using store = await openStore({ outputDir: dir });
 * const records = [0, 1, 2].map((index) => ({ sae_name: "s", sae_series: "x", index, analyses: {} }));
 * await ReadableStream.from(records).pipeTo(storeWriter(store, { batchSize: 2 }));
 * assert((await store.getFeature("x", "s", 2))?.index === 2);
 * ```
 */
export function storeWriter(
  store: FeatureStore,
  options: StoreWriterOptions = {},
): WritableStream<FeatureRecord> {
  const batchSize = options.batchSize ?? 256;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`storeWriter: batchSize must be a positive integer, got ${batchSize}`);
  }
  let pending: FeatureRecord[] = [];
  // Writes run one at a time, in order; a timed write's failure surfaces at the next write.
  let chain: Promise<void> = Promise.resolve();
  let failure: { reason: unknown } | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const clearTimer = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  const flush = (): Promise<void> => {
    clearTimer();
    if (pending.length === 0) return chain;
    const batch = pending;
    pending = [];
    chain = chain.then(async () => {
      options.beforeWrite?.();
      await store.writeFeatures(
        batch,
        options.generation !== undefined ? { generation: options.generation } : undefined,
      );
      options.onWritten?.(batch);
    });
    chain.catch((reason) => {
      failure ??= { reason };
    });
    return chain;
  };
  const check = () => {
    if (failure) throw failure.reason;
  };
  return new WritableStream<FeatureRecord>({
    async write(record) {
      check();
      pending.push(record);
      if (pending.length >= batchSize) await flush();
      else if (options.maxDelayMs !== undefined && timer === undefined) {
        timer = setTimeout(() => {
          timer = undefined;
          flush().catch(() => {}); // surfaces at the next write or close
        }, options.maxDelayMs);
      }
    },
    async close() {
      await flush();
      check();
    },
    abort() {
      // Records not yet written are dropped: the analysis is then marked failed by the runner,
      // and what was written stays consistent (each record is written whole or not at all).
      clearTimer();
      pending = [];
    },
  }, new CountQueuingStrategy({ highWaterMark: 1 }));
}
