/**
 * Batched feature writes for runners that produce records one by one (DLA, auto-interp).
 *
 * @module
 */

import type { FeatureStore } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";

/** Options of {@linkcode FeatureWriter}. */
export interface FeatureWriterOptions {
  /** Records per `writeFeatures` call. Default 256. */
  batchSize?: number;
  /**
   * Longest time a record may wait in the buffer, in ms: a timer writes a partial batch then,
   * so that slow producers (LLM calls) still get their results stored. Default: no timer.
   */
  maxDelayMs?: number;
}

/**
 * Collects feature records and writes them to the store in batches, one `writeFeatures` call at
 * a time, in order. `add()` resolves once the record is buffered and at most one write is in
 * flight, so awaiting it gives backpressure; a failed write makes the next `add()`/`flush()`
 * reject with its error. Always `close()` it (also on errors: it writes what is buffered).
 *
 * @example
 * ```ts
 * import { FeatureWriter } from "./_writer.ts";
 * import { openSettingsStore } from "./_store.ts";
 * await using store = await openSettingsStore({ mongo: null, output_dir: await Deno.makeTempDir() });
 * const writer = new FeatureWriter(store, { batchSize: 2 });
 * for (const index of [0, 1, 2]) {
 *   await writer.add({ sae_series: "x", sae_name: "s", index, analyses: {} });
 * }
 * await writer.close();
 * console.assert(writer.written === 3 && (await store.getFeature("x", "s", 2)) !== null);
 * ```
 */
export class FeatureWriter {
  readonly #store: FeatureStore;
  readonly #batchSize: number;
  readonly #maxDelayMs: number | undefined;
  #buffer: FeatureRecord[] = [];
  #chain: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failure: { reason: unknown } | undefined;
  #written = 0;

  /**
   * @param store Where the records go.
   * @param options Batch size and the longest wait.
   */
  constructor(store: FeatureStore, options: FeatureWriterOptions = {}) {
    const batchSize = options.batchSize ?? 256;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`FeatureWriter: batchSize must be a positive integer, got ${batchSize}`);
    }
    this.#store = store;
    this.#batchSize = batchSize;
    this.#maxDelayMs = options.maxDelayMs;
  }

  /** Records written so far. */
  get written(): number {
    return this.#written;
  }

  /** Records waiting in the buffer. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /**
   * Buffers a record; starts a write when the batch is full.
   *
   * @param record The record (written as given: leave out what must not be replaced).
   * @returns Resolves when the caller may add more (at most one write in flight).
   */
  add(record: FeatureRecord): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure.reason);
    this.#buffer.push(record);
    if (this.#buffer.length >= this.#batchSize) return this.#startWrite();
    if (this.#maxDelayMs !== undefined && this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#startWrite().catch(() => {}); // surfaces at the next add()/flush()
      }, this.#maxDelayMs);
    }
    return Promise.resolve();
  }

  /** Writes everything buffered and waits for all writes. */
  async flush(): Promise<void> {
    if (this.#buffer.length > 0) void this.#startWrite().catch(() => {});
    await this.#chain;
  }

  /** Flushes and stops the timer. Rejects with the first write error, if any. */
  async close(): Promise<void> {
    this.#clearTimer();
    await this.flush();
  }

  #clearTimer() {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Starts writing the buffer after the writes before it; resolves when those are done. */
  #startWrite(): Promise<void> {
    this.#clearTimer();
    const batch = this.#buffer;
    this.#buffer = [];
    const previous = this.#chain;
    const next = previous.then(async () => {
      await this.#store.writeFeatures(batch);
      this.#written += batch.length;
    });
    next.catch((reason) => {
      this.#failure ??= { reason };
    });
    this.#chain = next;
    return previous;
  }
}
