/**
 * Assertions for the ONNX tests (JSR's std/assert cannot be reached from these machines).
 *
 * @module
 */
import { deepStrictEqual, ok } from "node:assert/strict";

/** Fails unless `value` is truthy. */
export function assert(value: unknown, message?: string): asserts value {
  if (message === undefined) ok(value);
  else ok(value, message);
}

/** Fails unless `actual` deep-equals `expected`. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (message === undefined) deepStrictEqual(actual, expected);
  else deepStrictEqual(actual, expected, message);
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

function check<E extends Error>(e: unknown, cls: ErrorClass<E>, includes?: string): E {
  if (!(e instanceof cls)) {
    throw new Error(`expected ${cls.name}, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
  }
  if (includes !== undefined && !e.message.includes(includes)) {
    throw new Error(`expected message to include "${includes}", got "${e.message}"`);
  }
  return e;
}

/** Fails unless `fn` throws an instance of `cls` whose message includes `includes`. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: ErrorClass<E>,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}

/** Fails unless `fn` rejects with an instance of `cls` whose message includes `includes`. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return check(e, cls, includes);
  }
  throw new Error(`expected ${cls.name} to be rejected`);
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length, "lengths differ");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
