/**
 * Shared test helpers (not part of the public API; JSR's std/assert cannot be reached from these
 * machines): assertions that a call throws or rejects with a given error class and message, a
 * `Deno.test` with the resource and op sanitizers on (as `deno.json` sets them for every test), a
 * clock the test moves by hand, the pull-counting source and gated sink of the backpressure
 * tests, and the path of a committed fixture.
 *
 * @module
 */
import { deepStrictEqual, fail, ok } from "node:assert/strict";
import { fileURLToPath } from "node:url";

/** A constructor of errors, as `instanceof` checks it. */
export type ErrorClass<E extends Error> = new (...args: never[]) => E;

/**
 * What an error's message must be: exactly this string, or (`{ includes }`) contain this
 * substring.
 */
export type MessageCheck = string | { includes: string };

/**
 * Fails unless `error` is an instance of `cls` and, when `message` is given, its message is
 * exactly `message` (a string) or contains `message.includes`; returns the error, typed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertError } from "./_testing.ts";
 * const e = assertError(new RangeError("index 3 is out of range"), RangeError, {
 *   includes: "out of range",
 * });
 * assert.equal(e.message, "index 3 is out of range");
 * ```
 */
export function assertError<E extends Error>(
  error: unknown,
  cls: ErrorClass<E>,
  message?: MessageCheck,
): E {
  ok(
    error instanceof cls,
    `expected ${cls.name}, got ${(error as Error)?.name}: ${(error as Error)?.message}`,
  );
  if (typeof message === "string") {
    deepStrictEqual(error.message, message);
  } else if (message !== undefined) {
    ok(
      error.message.includes(message.includes),
      `expected message to include ${JSON.stringify(message.includes)}, got ${
        JSON.stringify(error.message)
      }`,
    );
  }
  return error;
}

/**
 * Fails unless `fn` throws an instance of `cls` whose message passes `message` (see
 * {@linkcode assertError}; without it only the class is checked, and the caller checks the
 * returned error's message); returns the error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertThrows } from "./_testing.ts";
 * const e = assertThrows(() => JSON.parse("{"), SyntaxError);
 * assertThrows(() => {
 *   throw new TypeError("bad dtype F7");
 * }, TypeError, "bad dtype F7");
 * assert(e instanceof SyntaxError);
 * ```
 */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: ErrorClass<E>,
  message?: MessageCheck,
): E {
  try {
    fn();
  } catch (e) {
    return assertError(e, cls, message);
  }
  fail(`expected ${cls.name} to be thrown`);
}

/**
 * Fails unless `fn` rejects (or throws) with an instance of `cls` whose message passes `message`
 * (see {@linkcode assertError}; without it only the class is checked, and the caller checks the
 * returned error's message); returns the error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertRejects } from "./_testing.ts";
 * const e = await assertRejects(() => Deno.readFile("/no/such/file"), Deno.errors.NotFound);
 * await assertRejects(() => Promise.reject(new RangeError("row 7 is too long")), RangeError, {
 *   includes: "row 7",
 * });
 * assert(e instanceof Deno.errors.NotFound);
 * ```
 */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: ErrorClass<E>,
  message?: MessageCheck,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return assertError(e, cls, message);
  }
  fail(`expected ${cls.name} to be rejected`);
}

/**
 * Registers a `Deno.test` with the resource and op sanitizers on, so that a leaked file handle or
 * pending timer fails the test. Deno 2.8 and later turn them off by default; the project's
 * `deno.json` turns them on for every test (`test.sanitizeOps`, `test.sanitizeResources`), and
 * this sets them on the test itself too, so it keeps them under another configuration.
 *
 * @example
 * ```ts ignore
 * import { test } from "./_testing.ts";
 * test("reading a file closes it", async () => {
 *   await Deno.readTextFile("deno.json");
 * });
 * ```
 */
export function test(name: string, fn: (t: Deno.TestContext) => Promise<void> | void): void {
  Deno.test({ name, sanitizeResources: true, sanitizeOps: true, fn });
}

/**
 * Waits until `check()` holds, polling every 5 ms for at most about half a second (pipes pass
 * cancel and errors on asynchronously), then fails with `what` if it still does not.
 *
 * @param check the condition.
 * @param what what the condition means, for the failure message.
 * @example
 * ```ts
 * import { eventually } from "./_testing.ts";
 * let done = false;
 * setTimeout(() => done = true, 10);
 * await eventually(() => done, "the timer fired");
 * ```
 */
export async function eventually(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  ok(check(), what);
}

/**
 * A clock and timer that the test drives by hand, in place of `performance.now()` and
 * `setTimeout` (it fits the `Timers` of `lib/autointerp/_concurrency.ts`): time moves only on
 * {@linkcode ManualClock.advance}, so a test asserts on the waits a component asks for and on
 * what happens before and after each, never on elapsed milliseconds.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ManualClock } from "./_testing.ts";
 * const clock = new ManualClock();
 * let woke = false;
 * const nap = clock.sleep(100).then(() => woke = true);
 * await clock.waitForSleeps(1);
 * clock.advance(99);
 * await Promise.resolve();
 * assert.equal(woke, false);
 * clock.advance(1);
 * await nap;
 * assert.deepEqual([clock.now(), clock.sleeps, clock.pending], [100, [100], []]);
 * ```
 */
export class ManualClock {
  /** Every wait asked for (ms), in the order asked, including those cancelled since. */
  readonly sleeps: number[] = [];
  #now = 0;
  #timers: { at: number; resolve: () => void }[] = [];
  #watchers: { n: number; resolve: () => void }[] = [];

  /** The current time in milliseconds: 0 at the start, moved only by `advance`. */
  now = (): number => this.#now;

  /** Waits until the clock has been advanced by `ms`, or rejects when `signal` aborts. */
  sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    this.sleeps.push(ms);
    for (const w of this.#watchers.filter((w) => this.sleeps.length >= w.n)) {
      this.#watchers.splice(this.#watchers.indexOf(w), 1);
      w.resolve();
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const timer = {
        at: this.#now + Math.max(0, ms),
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#timers.splice(this.#timers.indexOf(timer), 1);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#timers.push(timer);
    });
  };

  /** The milliseconds left of each wait still running, soonest first. */
  get pending(): number[] {
    return this.#timers.map((t) => t.at - this.#now).sort((a, b) => a - b);
  }

  /** Moves time on by `ms` and ends every wait that is then over. */
  advance(ms: number): void {
    this.#now += ms;
    const due = this.#timers.filter((t) => t.at <= this.#now);
    this.#timers = this.#timers.filter((t) => t.at > this.#now);
    for (const t of due) t.resolve();
  }

  /** Resolves once `n` waits in all have been asked for (see {@linkcode ManualClock.sleeps}). */
  waitForSleeps(n: number): Promise<void> {
    if (this.sleeps.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#watchers.push({ n, resolve }));
  }
}

/** What {@linkcode pullCountingSource} hands a test. */
export interface PullCountingSource<T> {
  /** The stream: `highWaterMark` 0, so it is pulled only when a reader or pipe asks. */
  readonly stream: ReadableStream<T>;
  /** How many times the stream has been pulled. */
  readonly pulls: number;
  /** The reason the stream was cancelled with (`true` for none); `undefined` until then. */
  readonly cancelReason: unknown;
  /** Resolves with {@linkcode PullCountingSource.cancelReason} when the stream is cancelled. */
  readonly cancelled: Promise<unknown>;
}

/**
 * A source that counts pulls, for backpressure tests: pull number `i` (from 0) enqueues
 * `next(i)`, closes the stream when that is `undefined`, and errors it when `next` throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pullCountingSource } from "./_testing.ts";
 * const src = pullCountingSource((i) => (i < 3 ? i : undefined));
 * assert.deepEqual(await Array.fromAsync(src.stream), [0, 1, 2]);
 * assert.equal(src.pulls, 4);
 * ```
 */
export function pullCountingSource<T>(next: (i: number) => T | undefined): PullCountingSource<T> {
  let pulls = 0;
  let cancelReason: unknown;
  let onCancel!: (reason: unknown) => void;
  const cancelled = new Promise<unknown>((resolve) => onCancel = resolve);
  const stream = new ReadableStream<T>({
    pull(controller) {
      const i = pulls++;
      let chunk: T | undefined;
      try {
        chunk = next(i);
      } catch (e) {
        controller.error(e);
        return;
      }
      if (chunk === undefined) controller.close();
      else controller.enqueue(chunk);
    },
    cancel(reason) {
      cancelReason = reason ?? true;
      onCancel(cancelReason);
    },
  }, { highWaterMark: 0 });
  return {
    stream,
    cancelled,
    get pulls() {
      return pulls;
    },
    get cancelReason() {
      return cancelReason;
    },
  };
}

/**
 * A sink whose writes finish only when the test releases them, as in the WPT streams tests: with
 * the sink blocked, everything upstream must stop once its queues are full, however long the
 * test waits. Its `highWaterMark` is 1, so it holds exactly the chunk being written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GatedSink, pullCountingSource, settle } from "./_testing.ts";
 * const src = pullCountingSource((i) => i);
 * const sink = new GatedSink<number>();
 * const piped = src.stream.pipeTo(sink.stream);
 * await sink.waitForWrites(1);
 * await settle(() => src.pulls);
 * assert.equal(src.pulls, 1); // the pipe reads only when the sink has room
 * sink.release();
 * await sink.waitForWrites(2);
 * await settle(() => src.pulls);
 * assert.equal(src.pulls, 2);
 * sink.fail("enough");
 * await assert.rejects(piped);
 * assert.equal(src.cancelReason, "enough");
 * ```
 */
export class GatedSink<T> {
  /** Chunks whose write has begun, in order (the last one may still be held). */
  readonly received: T[] = [];
  /** The stream to pipe into. */
  readonly stream: WritableStream<T>;
  #allowed = 0;
  #gates: { i: number; open: () => void; fail: (reason: unknown) => void }[] = [];
  #watchers: { n: number; resolve: () => void }[] = [];
  #controller!: WritableStreamDefaultController;

  /** Creates a sink that holds every write until {@linkcode GatedSink.release}. */
  constructor() {
    this.stream = new WritableStream<T>({
      start: (controller) => {
        this.#controller = controller;
      },
      write: (chunk) => {
        const i = this.received.length;
        this.received.push(chunk);
        for (const w of this.#watchers.filter((w) => this.received.length >= w.n)) {
          this.#watchers.splice(this.#watchers.indexOf(w), 1);
          w.resolve();
        }
        if (i < this.#allowed) return;
        return new Promise<void>((open, fail) => this.#gates.push({ i, open, fail }));
      },
    }, { highWaterMark: 1 });
  }

  /** Lets `n` more writes (held now or still to come) finish. */
  release(n = 1): void {
    this.#allowed += n;
    for (const g of this.#gates.filter((g) => g.i < this.#allowed)) {
      this.#gates.splice(this.#gates.indexOf(g), 1);
      g.open();
    }
  }

  /**
   * Errors the sink with `reason`, as a failing consumer would: a held write fails, and a pipe
   * into the sink stops and cancels its source with `reason`. (Aborting the pipe instead would
   * wait for the held write, which only {@linkcode GatedSink.release} ends.)
   */
  fail(reason: unknown): void {
    this.#controller.error(reason);
    for (const g of this.#gates.splice(0)) g.fail(reason);
  }

  /** Resolves once `n` writes in all have begun. */
  waitForWrites(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#watchers.push({ n, resolve }));
  }
}

/**
 * Lets pending work run: yields to the event loop until `watch()` (e.g. a pull count) has not
 * changed for `turns` turns in a row, or 500 turns have passed (then an eager stage has shown
 * itself). Not a sleep of a set length: it returns as soon as the pipeline is still.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { settle } from "./_testing.ts";
 * let n = 0;
 * const timer = setInterval(() => n < 3 && n++, 0);
 * await settle(() => n);
 * clearInterval(timer);
 * assert.equal(n, 3);
 * ```
 */
export async function settle(watch: () => unknown, turns = 5): Promise<void> {
  let last = JSON.stringify(watch());
  for (let i = 0, still = 0; i < 500 && still < turns; i++) {
    await new Promise((r) => setTimeout(r, 0));
    const now = JSON.stringify(watch());
    still = now === last ? still + 1 : 0;
    last = now;
  }
}

/**
 * The backpressure check of a stage that emits one output per input: with the sink holding the
 * first output, the source is pulled at most twice (that output and one in the stage's input
 * queue), however long one waits; each output the sink takes lets at most one more input in;
 * an error of the sink cancels the source with its reason.
 *
 * @param src A pull-counting source of at least three items.
 * @param stage The stage under test.
 * @param key What identifies an output (e.g. the row of its first context).
 * @param firstTwo The keys of the first two outputs.
 * @example
 * ```ts
 * import { assertStageBackpressure, pullCountingSource } from "./_testing.ts";
 * const src = pullCountingSource((i) => (i < 10 ? i : undefined));
 * const double = new TransformStream<number, number>({ transform: (x, c) => c.enqueue(2 * x) });
 * await assertStageBackpressure(src, double, (x) => x, [0, 2]);
 * ```
 */
export async function assertStageBackpressure<I, O>(
  src: PullCountingSource<I>,
  stage: { readable: ReadableStream<O>; writable: WritableStream<I> },
  key: (output: O) => unknown,
  firstTwo: readonly unknown[],
): Promise<void> {
  const sink = new GatedSink<O>();
  const piped = src.stream.pipeThrough(stage).pipeTo(sink.stream);
  await sink.waitForWrites(1); // the sink holds output 0 and does not let it go
  await settle(() => src.pulls);
  // Output 0 in the sink and input 1 in the stage's input queue: nothing more, however long.
  const held = src.pulls;
  ok(held <= 2, `the source was pulled ${held} times with the sink blocked`);
  sink.release();
  await sink.waitForWrites(2);
  await settle(() => src.pulls);
  ok(src.pulls <= held + 1, `one output taken let ${src.pulls - held} more in`);
  deepStrictEqual(sink.received.map(key), [...firstTwo]);
  sink.fail("consumer stopped");
  deepStrictEqual(await piped.catch((e) => e), "consumer stopped");
  deepStrictEqual(src.cancelReason, "consumer stopped");
}

/**
 * The absolute path of `relative` under the committed `fixtures/` folder; fails, naming it, when
 * it is missing (a test never skips itself for a missing fixture: they are in the repository).
 *
 * @param relative a path inside `fixtures/`, e.g. `"tiny-neox/model.onnx"`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fixturePath } from "./_testing.ts";
 * assert(fixturePath("tiny-neox/model.onnx").endsWith("/fixtures/tiny-neox/model.onnx"));
 * assert.throws(() => fixturePath("no-such-model"), /fixtures\/no-such-model is missing/);
 * ```
 */
export function fixturePath(relative: string): string {
  const path = fileURLToPath(new URL(`../fixtures/${relative}`, import.meta.url));
  try {
    Deno.statSync(path);
  } catch {
    throw new Error(
      `fixtures/${relative} is missing: fixtures are committed (fixtures/README.md says how each ` +
        "is made); restore it with git",
    );
  }
  return path;
}
