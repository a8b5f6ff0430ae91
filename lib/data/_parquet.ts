/**
 * Reads one column of a parquet file row group by row group with `hyparquet`, through an
 * `AsyncBuffer` over an open file (seek + read, serialized), so only the footer and the current
 * row group's column chunk are in memory.
 *
 * @module
 */

import {
  type AsyncBuffer,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from "hyparquet";
import { ConfigError } from "../errors.ts";

/** Marks a string cell whose bytes are not valid UTF-8. */
export const INVALID_UTF8: unique symbol = Symbol("invalid UTF-8");

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function stringFromBytes(bytes: Uint8Array | undefined): string | typeof INVALID_UTF8 | undefined {
  if (bytes === undefined) return undefined;
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return INVALID_UTF8;
  }
}

function fileBuffer(
  file: Deno.FsFile,
  byteLength: number,
  path: string,
  onRead: (bytes: number) => void,
): AsyncBuffer {
  let queue: Promise<unknown> = Promise.resolve();
  const readAt = async (start: number, end: number): Promise<ArrayBuffer> => {
    const out = new Uint8Array(end - start);
    await file.seek(start, Deno.SeekMode.Start);
    let offset = 0;
    while (offset < out.length) {
      const n = await file.read(out.subarray(offset));
      if (n === null) throw new Error(`Cannot read ${path}: file ended at byte ${start + offset}`);
      offset += n;
    }
    onRead(out.length);
    return out.buffer;
  };
  return {
    byteLength,
    slice(start: number, end: number = byteLength): Promise<ArrayBuffer> {
      // hyparquet may ask for several ranges at once; one file position means one at a time.
      const next = queue.then(() => readAt(start, end));
      queue = next.catch(() => {});
      return next;
    },
  };
}

/**
 * Yields the values of `column`, row by row, reading one row group at a time (`onRead` is told
 * the size of every read). The file is closed
 * when the generator finishes, throws or is returned early.
 *
 * @throws {ConfigError} The file is not parquet, or has no such column.
 */
export async function* readParquetColumn(
  path: string,
  column: string,
  describe: string,
  onRead: (bytes: number) => void = () => {},
): AsyncGenerator<unknown> {
  using file = await Deno.open(path);
  const { size } = await file.stat();
  const buffer = fileBuffer(file, size, path, onRead);
  let metadata;
  try {
    // A small first read of the footer: hyparquet reads more when the footer is larger.
    metadata = await parquetMetadataAsync(buffer, { initialFetchSize: 1 << 14 });
  } catch (e) {
    throw new ConfigError(`${describe}: ${path} is not a parquet file (${(e as Error).message})`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  if (!columns.includes(column)) {
    throw new ConfigError(
      `${describe}: ${path} has no column "${column}" (columns: ${columns.join(", ")})`,
    );
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    const rows = await parquetReadObjects({
      file: buffer,
      metadata,
      columns: [column],
      rowStart,
      rowEnd,
      parsers: { stringFromBytes },
    });
    for (const row of rows) yield row[column];
    rowStart = rowEnd;
  }
}
