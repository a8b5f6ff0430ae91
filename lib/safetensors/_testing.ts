/**
 * Test helpers (not part of the public API).
 *
 * @module
 */

import { deepStrictEqual, ok } from "node:assert/strict";

/** Asserts that `fn` throws an instance of `cls` with exactly `message`; returns the error. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => E,
  message: string,
): E {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  ok(error instanceof cls, `expected ${cls.name}, got ${error}`);
  deepStrictEqual(error.message, message);
  return error;
}

/** Async form of {@linkcode assertThrows}. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => E,
  message: string,
): Promise<E> {
  let error: unknown;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  ok(error instanceof cls, `expected ${cls.name}, got ${error}`);
  deepStrictEqual(error.message, message);
  return error;
}

export { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
