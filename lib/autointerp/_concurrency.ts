/**
 * Private helpers for the chat client: an abortable sleep, a counting semaphore and a token
 * bucket for requests-per-minute / tokens-per-minute limits.
 *
 * @module
 */

/** Reads the current time in milliseconds; injectable for tests. */
export type Clock = () => number;

/**
 * The clock and the timer that the chat client and its rate limits wait with. The default,
 * {@linkcode REAL_TIMERS}, is `performance.now()` and a `setTimeout`; tests pass one they drive
 * by hand, so that no test measures elapsed time.
 */
export interface Timers {
  /** The current time in milliseconds (only differences are used). */
  now: Clock;
  /** Waits `ms` milliseconds, or rejects with the signal's reason as soon as `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Waits `ms` milliseconds, or rejects with the signal's reason as soon as `signal` aborts.
 *
 * @example
 * ```ts
 * import { sleep } from "./_concurrency.ts";
 * await sleep(1);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The real clock and timer: `performance.now()` and {@linkcode sleep}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { REAL_TIMERS } from "./_concurrency.ts";
 * const t0 = REAL_TIMERS.now();
 * await REAL_TIMERS.sleep(1);
 * assert(REAL_TIMERS.now() >= t0);
 * ```
 */
export const REAL_TIMERS: Timers = { now: () => performance.now(), sleep };

/**
 * A counting semaphore: at most `permits` holders at once, waiters served first come first served.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Semaphore } from "./_concurrency.ts";
 * const s = new Semaphore(1);
 * const release = await s.acquire();
 * assert.equal(s.inUse, 1);
 * release();
 * assert.equal(s.inUse, 0);
 * ```
 */
export class Semaphore {
  #permits: number;
  #inUse = 0;
  #waiters: { resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal }[] = [];

  /** Creates a semaphore with `permits` (≥ 1) permits. */
  constructor(permits: number) {
    if (!Number.isInteger(permits) || permits < 1) {
      throw new RangeError(
        `Cannot create a semaphore with ${permits} permits: expected an integer ≥ 1`,
      );
    }
    this.#permits = permits;
  }

  /** Number of permits currently held. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Waits for a permit; resolves to the function that releases it (call it exactly once). */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw signal.reason;
    if (this.#inUse < this.#permits) {
      this.#inUse++;
    } else {
      await new Promise<void>((resolve, reject) => {
        const waiter: { resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal } =
          {
            resolve,
            reject,
          };
        if (signal) {
          waiter.signal = signal;
          signal.addEventListener("abort", () => {
            const i = this.#waiters.indexOf(waiter);
            if (i >= 0) {
              this.#waiters.splice(i, 1);
              reject(signal.reason);
            }
          }, { once: true });
        }
        this.#waiters.push(waiter);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next) next.resolve(); // the permit passes straight to the next waiter
      else this.#inUse--;
    };
  }
}

/**
 * A token bucket refilled continuously at `perMinute` units a minute, holding at most `perMinute`.
 * {@linkcode TokenBucket.take} waits until enough units are there; {@linkcode TokenBucket.adjust}
 * corrects an estimate afterwards (the level may go negative: later takers then wait longer).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TokenBucket } from "./_concurrency.ts";
 * const b = new TokenBucket(60);
 * await b.take(1);
 * assert(b.level <= 59.1);
 * ```
 */
export class TokenBucket {
  #capacity: number;
  #level: number;
  #last: number;
  #timers: Timers;
  #chain: Promise<void> = Promise.resolve();

  /** Creates a full bucket of `perMinute` units, timed by `timers` (default the real ones). */
  constructor(perMinute: number, timers: Timers = REAL_TIMERS) {
    if (!(perMinute > 0)) {
      throw new RangeError(`Cannot create a rate limit of ${perMinute} per minute: expected > 0`);
    }
    this.#capacity = perMinute;
    this.#level = perMinute;
    this.#timers = timers;
    this.#last = timers.now();
  }

  /** The current level (after refilling). */
  get level(): number {
    this.#refill();
    return this.#level;
  }

  #refill(): void {
    const t = this.#timers.now();
    this.#level = Math.min(
      this.#capacity,
      this.#level + ((t - this.#last) * this.#capacity) / 60_000,
    );
    this.#last = t;
  }

  /** Milliseconds until `n` units are available (0 when they are now). */
  waitTime(n: number): number {
    this.#refill();
    const need = Math.min(n, this.#capacity) - this.#level;
    return need <= 0 ? 0 : (need * 60_000) / this.#capacity;
  }

  /**
   * Waits until `n` units (clamped to the capacity) are available, then removes them.
   * Resolves to the number of units removed.
   */
  take(n: number, signal?: AbortSignal): Promise<number> {
    const run = async () => {
      for (;;) {
        const wait = this.waitTime(n);
        if (wait <= 0) break;
        await this.#timers.sleep(Math.ceil(wait), signal);
      }
      const taken = Math.min(n, this.#capacity);
      this.#level -= taken;
      return taken;
    };
    // Serve takers in order, so a large request is not starved by small ones.
    const p = this.#chain.then(run);
    this.#chain = p.then(() => {}, () => {});
    return p;
  }

  /** Adds `delta` units to the level (negative to charge more than was taken). */
  adjust(delta: number): void {
    this.#refill();
    this.#level = Math.min(this.#capacity, this.#level + delta);
  }
}
