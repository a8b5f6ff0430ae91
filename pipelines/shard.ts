/**
 * Which slice of the data a worker of a sharded analysis reads: `--shard i/N`, a Kubernetes
 * Indexed Job or a Slurm array (see {@linkcode resolveShard}).
 *
 * @module
 */

import { ConfigError } from "../lib/errors.ts";

/** A worker's slice of a sharded run. */
export interface Shard {
  /** In `[0, count)`. */
  index: number;
  /** The number of workers. */
  count: number;
}

/**
 * Parses `i/N` (e.g. `--shard 1/4`).
 *
 * @param text The value.
 * @param where What to name in the error, e.g. `--shard`.
 * @returns The shard.
 * @throws {ConfigError} Unless `text` is two integers with `0 <= i < N`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseShard } from "./shard.ts";
 * assert.equal(parseShard("1/4").index, 1);
 * ```
 */
export function parseShard(text: string, where = "--shard"): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const shard = m ? { index: Number(m[1]), count: Number(m[2]) } : undefined;
  if (
    !shard || !Number.isSafeInteger(shard.index) || !Number.isSafeInteger(shard.count) ||
    shard.count < 1 || shard.index >= shard.count
  ) {
    throw new ConfigError(
      `${where}: expected i/N with 0 <= i < N (e.g. 0/4), got ${JSON.stringify(text)}`,
    );
  }
  return shard;
}

/** Options of {@linkcode resolveShard}. */
export interface ResolveShardOptions {
  /** The `--shard i/N` value. */
  shard?: string;
  /** The `--shards N` value (the count for `JOB_COMPLETION_INDEX`). */
  shards?: string;
  /** Reads an environment variable (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
}

function count(text: string, where: string): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError(`${where}: expected a positive integer, got ${JSON.stringify(text)}`);
  }
  return n;
}

function index(text: string, where: string): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new ConfigError(
      `${where}: expected a non-negative integer, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

/**
 * The shard of this worker: `--shard i/N`; else a Kubernetes Indexed Job
 * (`JOB_COMPLETION_INDEX`, with the count from `--shards N` or `SAEFLOW_SHARDS`); else a Slurm
 * array job (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` (0 when unset) of
 * `SLURM_ARRAY_TASK_COUNT`; the array must be contiguous, e.g. `--array=0-7` or `1-8`); else
 * none (undefined).
 *
 * @param options The flags and the environment.
 * @returns The shard, or undefined for an unsharded run.
 * @throws {ConfigError} For a malformed or out-of-range value, naming where it came from.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveShard } from "./shard.ts";
 * const env = { JOB_COMPLETION_INDEX: "2", SAEFLOW_SHARDS: "4" } as Record<string, string>;
 * const shard = resolveShard({ env: (n) => env[n] });
 * assert.equal(shard?.index, 2);
 * assert.equal(shard.count, 4);
 * assert.equal(resolveShard({ env: () => undefined }), undefined);
 * ```
 */
export function resolveShard(options: ResolveShardOptions = {}): Shard | undefined {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const get = (name: string) => {
    const v = env(name);
    return v === undefined || v.trim() === "" ? undefined : v;
  };
  if (options.shard !== undefined) {
    if (options.shards !== undefined) {
      throw new ConfigError("--shards: give either --shard i/N or --shards N, not both");
    }
    return parseShard(options.shard, "--shard");
  }
  const k8s = get("JOB_COMPLETION_INDEX");
  if (k8s !== undefined) {
    const n = options.shards !== undefined
      ? count(options.shards, "--shards")
      : get("SAEFLOW_SHARDS") !== undefined
      ? count(get("SAEFLOW_SHARDS")!, "SAEFLOW_SHARDS")
      : undefined;
    if (n === undefined) {
      throw new ConfigError(
        "JOB_COMPLETION_INDEX is set but the shard count is not: pass --shards N or set SAEFLOW_SHARDS (the Job's completions)",
      );
    }
    const i = index(k8s, "JOB_COMPLETION_INDEX");
    if (i >= n) {
      throw new ConfigError(`JOB_COMPLETION_INDEX: ${i} is not below the shard count ${n}`);
    }
    return { index: i, count: n };
  }
  if (options.shards !== undefined) {
    throw new ConfigError(
      "--shards: needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); else use --shard i/N",
    );
  }
  const slurm = get("SLURM_ARRAY_TASK_ID");
  if (slurm !== undefined) {
    const id = index(slurm, "SLURM_ARRAY_TASK_ID");
    const rawCount = get("SLURM_ARRAY_TASK_COUNT");
    if (rawCount === undefined) {
      throw new ConfigError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
    }
    const n = count(rawCount, "SLURM_ARRAY_TASK_COUNT");
    const min = get("SLURM_ARRAY_TASK_MIN");
    const lo = min === undefined ? 0 : index(min, "SLURM_ARRAY_TASK_MIN");
    const max = get("SLURM_ARRAY_TASK_MAX");
    if (max !== undefined && index(max, "SLURM_ARRAY_TASK_MAX") - lo + 1 !== n) {
      throw new ConfigError(
        `SLURM_ARRAY_TASK_COUNT: ${n} tasks do not fill ${lo}-${max}: the array must be contiguous (e.g. --array=0-${
          n - 1
        })`,
      );
    }
    const i = id - lo;
    if (i < 0 || i >= n) {
      throw new ConfigError(
        `SLURM_ARRAY_TASK_ID: ${id} is outside ${lo}..${
          lo + n - 1
        } (SLURM_ARRAY_TASK_MIN ${lo}, COUNT ${n})`,
      );
    }
    return { index: i, count: n };
  }
  return undefined;
}
