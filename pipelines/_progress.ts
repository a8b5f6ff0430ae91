/**
 * Runner output: where log lines go, the progress reporter of a runner, and how rates and
 * durations are written.
 *
 * @module
 */

import { Progress } from "../lib/progress.ts";

/** What `lib/progress.ts` writes before a line it updates in place. */
const CLEAR_LINE = "\r\x1b[2K";

/** Where a line of runner output goes. */
export type LogFn = (line: string) => void;

/**
 * The default log of the runners: one plain line on standard error (on a terminal, replacing
 * the progress line shown in place).
 *
 * @param line The line (no trailing newline).
 * @example
 * ```ts
 * import { stderrLog } from "./_progress.ts";
 * stderrLog("dla: 0/0 features");
 * ```
 */
export function stderrLog(line: string): void {
  // On a terminal, first clear a progress line being updated in place (it is redrawn later).
  console.error(stderrIsTerminal() ? `${CLEAR_LINE}${line}` : line);
}

// ---------------------------------------------------------------------------------------------
// Progress

/** Options of {@linkcode runnerProgress}. */
export interface RunnerProgressOptions {
  /** Line prefix, e.g. `dla`. */
  label: string;
  /** What is counted, plural, e.g. `features` or `tokens`. */
  unit: string;
  /** The total, when known (adds an ETA). */
  total?: number;
  /**
   * Where lines go. Default: standard error, one line updated in place on a terminal, else a
   * plain line per interval.
   */
  log?: LogFn;
  /** Least time between two lines, ms. Default 2000 for plain lines, 200 in place. */
  intervalMs?: number;
}

/**
 * A `lib/progress.ts` reporter for a runner, its lines prefixed with the label:
 * `dla: 128/256 features  900 features/s  elapsed 0s  ETA 0s`. Call `update(done)` as work is
 * done and `done()` before the summary line.
 *
 * @param options Label, unit, total, where lines go and how often.
 * @returns The reporter.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runnerProgress } from "./_progress.ts";
 * const lines: string[] = [];
 * const p = runnerProgress({ label: "dla", unit: "features", total: 4, log: (l) => lines.push(l), intervalMs: 0 });
 * p.update(2);
 * assert(lines[0]!.startsWith("dla: 2/4 features  "));
 * ```
 */
export function runnerProgress(options: RunnerProgressOptions): Progress {
  const { label, unit, total, log } = options;
  const common = { unit, ...(total !== undefined ? { total } : {}) };
  if (log) {
    return new Progress({
      ...common,
      inPlace: false,
      interval: (options.intervalMs ?? 2000) / 1000,
      write: (text) => log(`${label}: ${text.replace(/\n$/, "")}`),
    });
  }
  const inPlace = stderrIsTerminal();
  return new Progress({
    ...common,
    inPlace,
    interval: (options.intervalMs ?? (inPlace ? 200 : 2000)) / 1000,
    write: (text) => {
      const control = text.startsWith(CLEAR_LINE) ? CLEAR_LINE : "";
      const body = text.slice(control.length);
      const line = body === "" ? control : `${control}${label}: ${body}`;
      Deno.stderr.writeSync(new TextEncoder().encode(line));
    },
  });
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/**
 * A rate, with three significant digits below 100: `0.512`, `12.5`, `1,024`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRate } from "./_progress.ts";
 * assert.equal(formatRate(12.345), "12.3");
 * assert.equal(formatRate(2048.4), "2,048");
 * ```
 */
export function formatRate(rate: number): string {
  if (rate >= 100) return Math.round(rate).toLocaleString("en-US");
  if (rate === 0) return "0";
  return String(Number(rate.toPrecision(3)));
}

/**
 * A duration: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./_progress.ts";
 * assert.equal(formatDuration(245), "4 min 05 s");
 * assert.equal(formatDuration(0.5), "500 ms");
 * ```
 */
export function formatDuration(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Number(seconds.toPrecision(3))} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}
