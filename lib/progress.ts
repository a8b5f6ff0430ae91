/**
 * Progress reporting for long runs: on a terminal, one line updated in place (tokens done /
 * total, tokens/s, ETA); otherwise a plain line every few seconds.
 *
 * @module
 */

/** Options of {@linkcode Progress}. */
export interface ProgressOptions {
  /** What is counted, e.g. `tokens` or `features`. */
  unit: string;
  /** The expected total, when known. */
  total?: number | null;
  /** Where lines go (default: stderr). */
  write?: (text: string) => void;
  /** Update in place with `\r` (default: whether stderr is a terminal). */
  inPlace?: boolean;
  /** Seconds between plain lines (default 5; in place: 0.2). */
  interval?: number;
  /** A clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

const encoder = new TextEncoder();

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function count(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

/**
 * A progress reporter: call {@linkcode Progress.update} as work is done and
 * {@linkcode Progress.done} at the end.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Progress } from "./progress.ts";
 * const lines: string[] = [];
 * let t = 0;
 * const p = new Progress({ unit: "tokens", total: 100, write: (s) => lines.push(s), inPlace: false, interval: 1, now: () => t });
 * t = 2000;
 * p.update(50);
 * assert(lines[0]!.includes("50/100 tokens"));
 * assert(lines[0]!.includes("25 tokens/s"));
 * ```
 */
export class Progress {
  #o: Required<Omit<ProgressOptions, "total">> & { total: number | null };
  #start: number;
  #last = -Infinity;
  #done = 0;
  #shown = false;

  /** Starts the clock. */
  constructor(options: ProgressOptions) {
    const inPlace = options.inPlace ?? Deno.stderr.isTerminal();
    this.#o = {
      unit: options.unit,
      total: options.total ?? null,
      write: options.write ?? ((text) => Deno.stderr.writeSync(encoder.encode(text))),
      inPlace,
      interval: options.interval ?? (inPlace ? 0.2 : 5),
      now: options.now ?? (() => performance.now()),
    };
    this.#start = this.#o.now();
  }

  /** Seconds since the start. */
  get elapsed(): number {
    return (this.#o.now() - this.#start) / 1000;
  }

  /** Work done so far. */
  get count(): number {
    return this.#done;
  }

  /** The current status line. */
  line(): string {
    const { unit, total } = this.#o;
    const rate = this.#done / Math.max(this.elapsed, 1e-9);
    const parts = [
      total ? `${count(this.#done)}/${count(total)} ${unit}` : `${count(this.#done)} ${unit}`,
      `${count(rate)} ${unit}/s`,
      `elapsed ${duration(this.elapsed)}`,
    ];
    if (total && rate > 0) parts.push(`ETA ${duration(Math.max(0, total - this.#done) / rate)}`);
    return parts.join("  ");
  }

  /** Records that `done` units are complete in all, printing when the interval has passed. */
  update(done: number): void {
    this.#done = done;
    const now = this.#o.now();
    if ((now - this.#last) / 1000 < this.#o.interval) return;
    this.#last = now;
    this.#shown = true;
    if (this.#o.inPlace) this.#o.write(`\r\x1b[2K${this.line()}`);
    else this.#o.write(`${this.line()}\n`);
  }

  /** Ends the in-place line (if one was shown). */
  done(): void {
    if (this.#o.inPlace && this.#shown) this.#o.write(`\r\x1b[2K`);
  }
}
