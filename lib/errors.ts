/**
 * Error classes a caller is expected to catch, and how the CLI maps errors to exit codes.
 *
 * @module
 */

/**
 * A usage or configuration error: bad TOML, an unknown key, a bad value, a missing file the user
 * named, an unknown hook point. The CLI prints its message on one line and exits with code 2.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError } from "./errors.ts";
 * const e = new ConfigError("analyzer.total_analyzing_tokens: expected a positive integer, got -1");
 * assert.equal(e.name, "ConfigError");
 * ```
 */
export class ConfigError extends Error {
  /** Creates a configuration error with a one-line message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/**
 * A store (MongoDB or SQLite) that cannot be reached or opened. Exit code 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StoreUnavailableError } from "./errors.ts";
 * const e = new StoreUnavailableError("Cannot reach MongoDB at localhost:27017 within 3000 ms");
 * assert.equal(e.name, "StoreUnavailableError");
 * ```
 */
export class StoreUnavailableError extends Error {
  /** Creates a store error with a one-line message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/**
 * The exit code for an error: 2 for usage and configuration errors, 1 for everything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, exitCodeFor } from "./errors.ts";
 * assert.equal(exitCodeFor(new ConfigError("x")), 2);
 * assert.equal(exitCodeFor(new Error("x")), 1);
 * ```
 */
export function exitCodeFor(error: unknown): 1 | 2 {
  return error instanceof ConfigError ? 2 : 1;
}
