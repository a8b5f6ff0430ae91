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
 * Another run holds the analysis a run wants to write: its lease (renewed by the run's
 * heartbeat) has not expired. Exit code 1. The message names the holder, since when, and until
 * when the lease runs if it stops renewing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AnalysisBusyError } from "./errors.ts";
 * const e = new AnalysisBusyError('analysis "default" of x/s is being written by host a pid 7');
 * assert.equal(e.name, "AnalysisBusyError");
 * ```
 */
export class AnalysisBusyError extends Error {
  /** Creates the error with a one-line message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AnalysisBusyError";
  }
}

/**
 * A run stopped by a signal (SIGINT, SIGTERM): nothing it was writing was published. The CLI
 * prints its message and exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exitCodeFor, InterruptedError } from "./errors.ts";
 * const e = new InterruptedError("SIGTERM", "analyze stopped by SIGTERM");
 * assert.equal(e.name, "InterruptedError");
 * assert.equal(exitCodeFor(e), 143);
 * ```
 */
export class InterruptedError extends Error {
  /** The signal that stopped the run. */
  readonly signal: "SIGINT" | "SIGTERM";

  /**
   * @param signal The signal.
   * @param message One line: what was stopped and what became of its results.
   */
  constructor(signal: "SIGINT" | "SIGTERM", message?: string, options?: ErrorOptions) {
    super(message ?? `stopped by ${signal}`, options);
    this.name = "InterruptedError";
    this.signal = signal;
  }

  /** 130 for SIGINT, 143 for SIGTERM. */
  get exitCode(): 130 | 143 {
    return this.signal === "SIGINT" ? 130 : 143;
  }
}

/**
 * The exit code for an error: 2 for usage and configuration errors, 130/143 for a run stopped by
 * SIGINT/SIGTERM, 1 for everything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, exitCodeFor } from "./errors.ts";
 * assert.equal(exitCodeFor(new ConfigError("x")), 2);
 * assert.equal(exitCodeFor(new Error("x")), 1);
 * ```
 */
export function exitCodeFor(error: unknown): 1 | 2 | 130 | 143 {
  if (error instanceof InterruptedError) return error.exitCode;
  return error instanceof ConfigError ? 2 : 1;
}
