/**
 * Shared reporting for `deno task bench`: a readable table on stderr-free stdout plus one JSON
 * object per line for each figure (DESIGN.md, "Benchmarks").
 *
 * @module
 */

/** One measured figure. `limit` is a reference measured in the same run, when there is one. */
export interface Figure {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  limit?: number;
}

/** The JSON line for a figure, with `ratio = value / limit` when a limit is given. */
export function figureLine(figure: Figure): string {
  const out: Record<string, unknown> = { ...figure };
  if (figure.limit !== undefined && figure.limit !== 0) out.ratio = figure.value / figure.limit;
  return JSON.stringify(out);
}

/** Prints a figure as a readable row and as its JSON line. */
export function report(figure: Figure): void {
  const ratio = figure.limit
    ? `  (limit ${fmt(figure.limit)}, ratio ${(figure.value / figure.limit).toFixed(3)})`
    : "";
  console.log(
    `# ${figure.bench.padEnd(22)} ${figure.metric.padEnd(34)} ${
      fmt(figure.value)
    } ${figure.unit}${ratio}`,
  );
  console.log(figureLine(figure));
}

function fmt(n: number): string {
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(4);
}

/** A benchmark module's entry: it measures and calls `report` for each figure. */
export type Bench = (report: (figure: Figure) => void) => Promise<void>;
