/**
 * Validation of the safetensors header: the 8-byte length prefix and the JSON that follows.
 *
 * Format (https://github.com/huggingface/safetensors, README "Format"): an unsigned little-endian
 * 64-bit header length N, N bytes of UTF-8 JSON (an object, possibly padded with spaces), then the
 * data section. Each entry but `__metadata__` is `{dtype, shape, data_offsets: [begin, end]}` with
 * offsets relative to the start of the data section.
 *
 * @module
 */

import { type Dtype, DTYPE_SIZE, isDtype, SUPPORTED_DTYPES } from "./_dtype.ts";
import { SafetensorsError } from "./error.ts";

/** One tensor's header entry, validated. */
export interface TensorInfo {
  /** The tensor name. */
  name: string;
  /** Its dtype. */
  dtype: Dtype;
  /** Its shape (`[]` for a scalar). */
  shape: number[];
  /** Number of elements (1 for a scalar). */
  size: number;
  /** Byte offset of its first byte, relative to the start of the data section. */
  begin: number;
  /** Byte offset one past its last byte, relative to the start of the data section. */
  end: number;
}

/** A validated header. */
export interface Header {
  /** The header length N. */
  headerLength: number;
  /** Byte offset of the data section within the file (8 + N). */
  dataStart: number;
  /** Length of the data section in bytes. */
  dataLength: number;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
  /** Tensors in header order. */
  tensors: Map<string, TensorInfo>;
}

/** Largest header accepted, as in the reference implementation (100 MB). */
export const MAX_HEADER_LENGTH = 100_000_000;

/**
 * Reads the header length from the first 8 bytes and checks it against the file size.
 * Returns N as a number.
 */
export function readHeaderLength(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new SafetensorsError(
      `file is ${fileSize} bytes, shorter than the 8-byte header length prefix`,
      { path },
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n < 2n) {
    throw new SafetensorsError(`header length ${n} is too small for a JSON object`, { path });
  }
  if (n > BigInt(MAX_HEADER_LENGTH)) {
    throw new SafetensorsError(
      `header length ${n} exceeds the limit of ${MAX_HEADER_LENGTH} bytes`,
      {
        path,
      },
    );
  }
  if (n > BigInt(fileSize - 8)) {
    throw new SafetensorsError(
      `header length ${n} exceeds the ${fileSize - 8} bytes that follow the length prefix`,
      { path },
    );
  }
  return Number(n);
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Parses and validates the header JSON.
 *
 * @param json the N header bytes
 * @param dataLength length of the data section (file size − 8 − N)
 * @param path file path or label, for messages
 */
export function parseHeader(json: Uint8Array, dataLength: number, path: string): Header {
  const headerLength = json.length;
  let text: string;
  try {
    text = decoder.decode(json);
  } catch (cause) {
    throw new SafetensorsError("header is not valid UTF-8", { path, cause });
  }
  if (!text.startsWith("{")) {
    throw new SafetensorsError(`header does not start with "{" (got ${show(text.slice(0, 8))})`, {
      path,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new SafetensorsError(`header is not valid JSON (${detail})`, { path, cause });
  }
  if (!isPlainObject(parsed)) throw new SafetensorsError("header is not a JSON object", { path });

  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      if (!isPlainObject(entry)) {
        throw new SafetensorsError(`__metadata__ is not an object (got ${show(entry)})`, { path });
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") {
          throw new SafetensorsError(
            `__metadata__ value of "${k}" is not a string (got ${show(v)})`,
            {
              path,
            },
          );
        }
        metadata[k] = v;
      }
      continue;
    }
    tensors.set(name, parseEntry(name, entry, dataLength, path));
  }
  checkOverlaps([...tensors.values()], path);
  return { headerLength, dataStart: 8 + headerLength, dataLength, metadata, tensors };
}

function parseEntry(name: string, entry: unknown, dataLength: number, path: string): TensorInfo {
  const at = { path, tensor: name };
  if (!isPlainObject(entry)) {
    throw new SafetensorsError(`entry is not an object (got ${show(entry)})`, at);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string") {
    throw new SafetensorsError(`dtype is not a string (got ${show(dtype)})`, at);
  }
  if (!isDtype(dtype)) {
    throw new SafetensorsError(
      `has unsupported dtype ${show(dtype)}; supported: ${SUPPORTED_DTYPES.join(", ")}`,
      at,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new SafetensorsError(
      `shape must be an array of non-negative integers (got ${show(shape)})`,
      at,
    );
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 || !isNonNegativeInteger(offsets[0]) ||
    !isNonNegativeInteger(offsets[1])
  ) {
    throw new SafetensorsError(
      `data_offsets must be two non-negative integers (got ${show(offsets)})`,
      at,
    );
  }
  const begin = offsets[0] as number;
  const end = offsets[1] as number;
  if (begin > end) throw new SafetensorsError(`data_offsets [${begin}, ${end}] are reversed`, at);
  if (end > dataLength) {
    throw new SafetensorsError(
      `data_offsets [${begin}, ${end}] run past the end of the ${dataLength}-byte data section`,
      at,
    );
  }
  let size = 1;
  for (const d of shape as number[]) {
    size *= d;
    if (!Number.isSafeInteger(size)) {
      throw new SafetensorsError(`shape ${show(shape)} has too many elements`, at);
    }
  }
  const bytes = size * DTYPE_SIZE[dtype];
  if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
    throw new SafetensorsError(
      `shape ${
        show(shape)
      } of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      at,
    );
  }
  return { name, dtype, shape: [...(shape as number[])], size, begin, end };
}

function checkOverlaps(infos: TensorInfo[], path: string): void {
  const nonEmpty = infos.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < nonEmpty.length; i++) {
    const prev = nonEmpty[i - 1]!;
    const cur = nonEmpty[i]!;
    if (cur.begin < prev.end) {
      throw new SafetensorsError(
        `overlaps tensor "${prev.name}" (bytes [${cur.begin}, ${cur.end}] vs [${prev.begin}, ${prev.end}])`,
        { path, tensor: cur.name },
      );
    }
  }
}
