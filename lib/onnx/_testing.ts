/**
 * Assertions for the ONNX tests (JSR's std/assert cannot be reached from these machines).
 *
 * @module
 */
import { deepStrictEqual, ok } from "node:assert/strict";
import {
  assertRejects as rejects,
  assertThrows as throws,
  type ErrorClass,
  type MessageCheck,
} from "../_testing.ts";

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

/** `{ includes }` when a substring is given, else nothing: the message is not checked. */
function includesCheck(includes: string | undefined): MessageCheck | undefined {
  return includes === undefined ? undefined : { includes };
}

/** Fails unless `fn` throws an instance of `cls` whose message includes `includes`. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: ErrorClass<E>,
  includes?: string,
): E {
  return throws(fn, cls, includesCheck(includes));
}

/** Fails unless `fn` rejects with an instance of `cls` whose message includes `includes`. */
export function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  return rejects(fn, cls, includesCheck(includes));
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length, "lengths differ");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
