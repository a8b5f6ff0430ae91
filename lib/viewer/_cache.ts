/**
 * A small time-to-live cache for store reads the viewer repeats on every request (SAE and
 * analysis documents, the vocabulary, the feature summaries a text search or the frequency
 * histogram scans). Concurrent misses for the same key share one load; a failed load is not kept.
 *
 * @module
 */

/** Values kept for `ttlMs` milliseconds after they were loaded. */
export class TtlCache<V> {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, { at: number; value: Promise<V> }>();

  /**
   * @param ttlMs How long a value stays; 0 disables caching.
   * @param maxEntries Entries kept at most (the oldest go first).
   */
  constructor(ttlMs: number, maxEntries = 64) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
  }

  /** The cached value for `key`, or the result of `load()` (then cached). */
  get(key: string, load: () => Promise<V>): Promise<V> {
    if (this.#ttlMs <= 0) return load();
    const now = performance.now();
    const hit = this.#entries.get(key);
    if (hit && now - hit.at < this.#ttlMs) return hit.value;
    const value = load();
    this.#entries.delete(key);
    this.#entries.set(key, { at: now, value });
    value.catch(() => {
      if (this.#entries.get(key)?.value === value) this.#entries.delete(key);
    });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    return value;
  }
}
