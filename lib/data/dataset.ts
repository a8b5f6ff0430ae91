/**
 * Dataset sources: `.jsonl`, `.jsonl.gz`, `.txt`, `.parquet`, folders of those, and Hugging Face
 * `datasets` hub snapshots, read lazily as a pull-based `ReadableStream<TextRecord>`.
 *
 * Reading is lazy everywhere: line files are read chunk by chunk as records are pulled (gzip
 * through `DecompressionStream`), parquet files row group by row group. Files are read one at a
 * time, in sorted order; each file is a shard whose index is its position in that order.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { TextRecord } from "../types.ts";
import { isRepoId, resolveRepo, type ResolveRepoOptions } from "../hub/mod.ts";
import { DATA_EXTENSIONS, type DataFile, formatOf, listDataFiles, selectSplit } from "./_files.ts";
import { readLines } from "./_lines.ts";
import { INVALID_UTF8, readParquetColumn } from "./_parquet.ts";

/** A dataset as the settings name it (`[datasets."NAME"]`). */
export interface DatasetConfig {
  /** The dataset name: becomes `TextRecord.source`. */
  name: string;
  /**
   * A local `.jsonl`/`.jsonl.gz`/`.txt`/`.parquet` file, a folder of those (searched
   * recursively), or a Hugging Face dataset id resolved through the hub cache (and downloaded when
   * online).
   */
  pathOrId: string;
  /** The field (jsonl) or column (parquet) holding the text. Default `text`; unused for `.txt`. */
  textField?: string;
  /**
   * Which split of a folder/snapshot to read (`train`, `test`, …). Default `train`. Applies only
   * when file paths name splits (`data/train-00000-of-00002.parquet`); otherwise every file is
   * read.
   */
  split?: string;
  /**
   * This worker's slice: `index` in `[0, count)`. With at least `count` files, the worker reads
   * the files whose shard index `% count === index`; with fewer files, it reads every file and
   * keeps the rows whose `row % count === index`. Default: everything.
   */
  shard?: { index: number; count: number };
}

/** A skipped row, as given to {@linkcode OpenDatasetOptions.onBadRow}. */
export interface BadRowInfo {
  /** Dataset name. */
  source: string;
  /** The file the row is in. */
  file: string;
  /** Shard (file) index. */
  shard: number;
  /** 0-based row within the shard. */
  row: number;
  /** 1-based line number, for line-oriented files (`.jsonl`, `.jsonl.gz`, `.txt`). */
  line?: number;
  /** What is wrong: `invalid JSON (…)`, `missing field "text"`, `invalid UTF-8`, … */
  reason: string;
  /** `FILE:LINE: REASON` (or `FILE row N: REASON` for parquet). */
  message: string;
}

/** Options of {@linkcode openDataset}; every field is optional. */
export interface OpenDatasetOptions {
  /**
   * Called once per skipped row. Default: the first `maxBadRowLogs` are logged to standard error,
   * one line each, then one line with the count of the rest when the dataset ends.
   */
  onBadRow?: (info: BadRowInfo) => void;
  /** How many bad rows the default reporter logs one by one. Default 10. */
  maxBadRowLogs?: number;
  /** Hub resolution options for dataset ids (endpoint, cache folder, offline, token). */
  hub?: Omit<ResolveRepoOptions, "repoType">;
  /** Records buffered ahead of the consumer. Default 1. */
  highWaterMark?: number;
}

/** Counters of a dataset source, updated as it is read. */
export interface DatasetStats {
  /** Rows read from files so far (bad and skipped rows included). */
  rowsRead: number;
  /** Records emitted. */
  records: number;
  /** Bad rows skipped. */
  badRows: number;
  /** Bytes read from files so far (compressed bytes for `.jsonl.gz`). */
  bytesRead: number;
}

/** Patterns of the files downloaded for a Hub dataset id. */
const HUB_DATA_PATTERNS = ["*.jsonl", "*.jsonl.gz", "*.txt", "*.parquet"];

/**
 * A dataset's records as a pull-based `ReadableStream<TextRecord>`, with its files and counters.
 * Cancelling it closes the file being read. Made by {@linkcode openDataset}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDataset } from "./dataset.ts";
 * const corpus = new URL("../../fixtures/text/corpus.parquet", import.meta.url).pathname;
 * const source = await openDataset({ name: "corpus", pathOrId: corpus });
 * const reader = source.getReader();
 * await reader.read();
 * assert.equal(source.stats.records, 1);
 * assert.equal(source.files.length, 1);
 * await reader.cancel(); // closes the file
 * ```
 */
export class DatasetSource extends ReadableStream<TextRecord> {
  /** The dataset name. */
  readonly name: string;
  /** The resolved local path (file, folder or snapshot). */
  readonly path: string;
  /** The data files in shard order (all shards, also those another worker reads). */
  readonly files: readonly string[];
  /** Live counters. */
  readonly stats: DatasetStats;

  /** Use {@linkcode openDataset}. */
  constructor(
    name: string,
    path: string,
    files: readonly string[],
    stats: DatasetStats,
    records: AsyncGenerator<TextRecord>,
    highWaterMark: number,
  ) {
    super({
      async pull(controller) {
        const next = await records.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel() {
        await records.return(undefined);
      },
    }, { highWaterMark });
    this.name = name;
    this.path = path;
    this.files = files;
    this.stats = stats;
  }
}

function looksLikePath(value: string): boolean {
  return /^(\/|\.\.?(\/|$)|~)/.test(value) || value.includes("\\") || formatOf(value) !== null;
}

async function resolveDatasetPath(
  config: DatasetConfig,
  hub: Omit<ResolveRepoOptions, "repoType"> | undefined,
): Promise<string> {
  try {
    await Deno.stat(config.pathOrId);
    return config.pathOrId;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
  }
  if (looksLikePath(config.pathOrId) || !isRepoId(config.pathOrId)) {
    throw new ConfigError(
      `Dataset "${config.name}" at ${config.pathOrId}: no such file or directory`,
    );
  }
  return await resolveRepo(config.pathOrId, {
    allowPatterns: HUB_DATA_PATTERNS,
    ...hub,
    repoType: "dataset",
  });
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

type Cell = { kind: "text"; text: string } | { kind: "bad"; reason: string } | {
  kind: "skip";
};

function jsonCell(bytes: Uint8Array, field: string): Cell {
  let line: string;
  try {
    line = strictUtf8.decode(bytes);
  } catch {
    return { kind: "bad", reason: "invalid UTF-8" };
  }
  if (line.trim() === "") return { kind: "skip" };
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return { kind: "bad", reason: `invalid JSON (${(e as Error).message})` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { kind: "bad", reason: "not a JSON object" };
  }
  if (!Object.hasOwn(value, field)) return { kind: "bad", reason: `missing field "${field}"` };
  return valueCell((value as Record<string, unknown>)[field], field);
}

function valueCell(value: unknown, field: string): Cell {
  if (typeof value === "string") return { kind: "text", text: value };
  if (value === INVALID_UTF8) return { kind: "bad", reason: "invalid UTF-8" };
  const type = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
  return { kind: "bad", reason: `field "${field}" is ${type}, not a string` };
}

function txtCell(bytes: Uint8Array): Cell {
  let line: string;
  try {
    line = strictUtf8.decode(bytes);
  } catch {
    return { kind: "bad", reason: "invalid UTF-8" };
  }
  return line.trim() === "" ? { kind: "skip" } : { kind: "text", text: line };
}

/** Yields one cell per row of a file, in file order. */
async function* readCells(
  file: DataFile,
  field: string,
  describe: string,
  stats: DatasetStats,
): AsyncGenerator<Cell> {
  const countBytes = (n: number) => {
    stats.bytesRead += n;
  };
  if (file.format === "parquet") {
    for await (const value of readParquetColumn(file.path, field, describe, countBytes)) {
      yield valueCell(value, field);
    }
    return;
  }
  const handle = await Deno.open(file.path);
  // `readable` closes the file when it ends or is cancelled.
  const raw = handle.readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        countBytes(chunk.length);
        controller.enqueue(chunk);
      },
    }),
  );
  const bytes: ReadableStream<Uint8Array> = file.format === "jsonl.gz"
    ? raw.pipeThrough<Uint8Array>(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    )
    : raw;
  try {
    for await (const line of readLines(bytes)) {
      yield file.format === "txt" ? txtCell(line) : jsonCell(line, field);
    }
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new Error(`${describe}: cannot read ${file.path}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Opens a dataset as a stream of {@linkcode TextRecord}s.
 *
 * Order is deterministic: files sorted by relative path, rows in file order. `row` is the 0-based
 * index of the row within its file counting every line (bad rows, and the blank lines that are
 * skipped silently, included), so a row number always points at the same line. Bad rows (invalid
 * JSON, not an object, missing or non-string field, invalid UTF-8) are reported and skipped; the
 * run goes on.
 *
 * @param config The dataset: name, path or Hub id, text field, split, worker shard.
 * @param options Bad-row reporting, Hub options, buffering.
 * @returns The source stream; its `stats` count rows, records and bad rows as they are read.
 * @throws {ConfigError} The path does not exist; no data files; every file empty; a parquet file
 * without the text column; an unknown split; a bad shard. A dataset whose rows are all bad errors
 * the stream with a ConfigError when it ends.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDataset } from "./dataset.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.jsonl`, '{"text":"hello"}\n{"text":"world"}\n');
 * const source = await openDataset({ name: "demo", pathOrId: `${dir}/a.jsonl` });
 * const records = await Array.fromAsync(source);
 * assert.equal(records[1]!.text, "world");
 * assert.equal(records[1]!.row, 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openDataset(
  config: DatasetConfig,
  options: OpenDatasetOptions = {},
): Promise<DatasetSource> {
  const name = config.name;
  const field = config.textField ?? "text";
  const shard = config.shard;
  if (
    shard !== undefined &&
    !(Number.isInteger(shard.count) && shard.count >= 1 && Number.isInteger(shard.index) &&
      shard.index >= 0 && shard.index < shard.count)
  ) {
    throw new ConfigError(
      `Dataset "${name}": shard ${shard.index}/${shard.count} is not valid (expected 0 <= index < count)`,
    );
  }
  const path = await resolveDatasetPath(config, options.hub);
  const describe = `Dataset "${name}" at ${path}`;
  const info = await Deno.stat(path);
  let files: DataFile[];
  if (info.isDirectory) {
    files = await listDataFiles(path);
    if (files.length === 0) {
      throw new ConfigError(`${describe} has no data files (${DATA_EXTENSIONS})`);
    }
    files = selectSplit(files, config.split ?? "train", describe);
  } else {
    const format = formatOf(path);
    if (format === null) {
      throw new ConfigError(`${describe}: unsupported file type (expected ${DATA_EXTENSIONS})`);
    }
    files = [{ path, rel: path.split("/").pop()!, format, size: info.size }];
  }
  if (files.every((f) => f.size === 0)) throw new ConfigError(`${describe} has no records`);

  const count = shard?.count ?? 1;
  const index = shard?.index ?? 0;
  const byFile = files.length >= count;
  const stats: DatasetStats = { rowsRead: 0, records: 0, badRows: 0, bytesRead: 0 };
  const maxLogs = options.maxBadRowLogs ?? 10;
  const report = options.onBadRow ?? ((bad: BadRowInfo) => {
    if (stats.badRows <= maxLogs) {
      console.error(`Skipped bad row in dataset "${name}": ${bad.message}`);
    }
  });

  async function* records(): AsyncGenerator<TextRecord> {
    for (const [shardIndex, file] of files.entries()) {
      if (byFile && shardIndex % count !== index) continue;
      let row = 0;
      for await (const cell of readCells(file, field, describe, stats)) {
        const r = row++;
        stats.rowsRead++;
        if (!byFile && r % count !== index) continue;
        if (cell.kind === "skip") continue;
        if (cell.kind === "bad") {
          stats.badRows++;
          const line = file.format === "parquet" ? undefined : r + 1;
          const where = line === undefined ? `${file.path} row ${r}` : `${file.path}:${line}`;
          report({
            source: name,
            file: file.path,
            shard: shardIndex,
            row: r,
            ...(line === undefined ? {} : { line }),
            reason: cell.reason,
            message: `${where}: ${cell.reason}`,
          });
          continue;
        }
        stats.records++;
        yield { source: name, shard: shardIndex, row: r, text: cell.text };
      }
    }
    if (options.onBadRow === undefined && stats.badRows > maxLogs) {
      console.error(
        `Skipped ${stats.badRows - maxLogs} more bad rows in dataset "${name}" ` +
          `(${stats.badRows} in all)`,
      );
    }
    if (stats.records === 0) {
      const slice = shard === undefined ? "" : ` for shard ${index}/${count}`;
      const bad = stats.badRows === 0 ? "" : ` (${stats.badRows} bad rows skipped)`;
      throw new ConfigError(`${describe} has no records${slice}${bad}`);
    }
  }

  return new DatasetSource(
    name,
    path,
    files.map((f) => f.path),
    stats,
    records(),
    options.highWaterMark ?? 1,
  );
}
