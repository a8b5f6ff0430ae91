/**
 * A strict safetensors reader: header validation up front, then one tensor at a time.
 *
 * @module
 */

import { decodeF32, decodeInt } from "./_decode.ts";
import type { Dtype } from "./_dtype.ts";
import { type Header, parseHeader, readHeaderLength, type TensorInfo } from "./_header.ts";
import { SafetensorsError } from "./error.ts";

export type { Dtype, TensorInfo };

/** Header accessors shared by the file and in-memory readers. */
abstract class SafetensorsHeader {
  /** The file path, or the label given to {@linkcode parseSafetensors}. */
  readonly path: string;
  /** The validated header. */
  protected readonly header: Header;

  protected constructor(path: string, header: Header) {
    this.path = path;
    this.header = header;
  }

  /** Tensor names in header order. */
  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  /** The `__metadata__` string map (empty when absent). */
  get metadata(): Record<string, string> {
    return { ...this.header.metadata };
  }

  /** Whether a tensor of that name exists. */
  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  /**
   * The dtype, shape and byte range of a tensor.
   *
   * @throws {SafetensorsError} when there is no such tensor
   */
  info(name: string): TensorInfo {
    const info = this.header.tensors.get(name);
    if (info === undefined) {
      const names = this.names;
      const list = names.length > 12 ? `${names.slice(0, 12).join(", ")}, ...` : names.join(", ");
      throw new SafetensorsError(`has no tensor "${name}" (tensors: ${list || "none"})`, {
        path: this.path,
      });
    }
    return { ...info, shape: [...info.shape] };
  }
}

/**
 * A safetensors file opened for reading. `open` reads and validates only the 8-byte length and
 * the header; each `readF32`/`readInt` then seeks to and reads only that tensor's bytes.
 * Close it with `close()` or `using`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SafetensorsFile, writeSafetensors } from "./mod.ts";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await Deno.writeFile(path, writeSafetensors({ w: { dtype: "BF16", shape: [2], data: [1.5, -2] } }));
 * using file = await SafetensorsFile.open(path);
 * assert.equal(file.info("w").dtype, "BF16");
 * assert.equal((await file.readF32("w"))[1], -2);
 * ```
 */
export class SafetensorsFile extends SafetensorsHeader implements Disposable {
  #file: Deno.FsFile;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(path: string, header: Header, file: Deno.FsFile) {
    super(path, header);
    this.#file = file;
  }

  /**
   * Opens a file and validates its header.
   *
   * @param path the `.safetensors` file
   * @throws {SafetensorsError} when the file cannot be opened or its header is invalid
   */
  static async open(path: string): Promise<SafetensorsFile> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new SafetensorsError(`cannot open the file (${detail})`, { path, cause });
    }
    try {
      const size = (await file.stat()).size;
      const prefix = await readExactly(file, 0, Math.min(8, size), path);
      const n = readHeaderLength(prefix, size, path);
      const json = await readExactly(file, 8, n, path);
      return new SafetensorsFile(path, parseHeader(json, size - 8 - n, path), file);
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /**
   * Reads a float tensor as f32 (F16 and BF16 widened exactly, F64 rounded).
   *
   * @throws {SafetensorsError} for an unknown name, an integer tensor, or an I/O error
   */
  readF32(name: string): Promise<Float32Array> {
    const info = this.info(name);
    return this.#read(info).then((bytes) => decodeF32(info, bytes, this.path));
  }

  /**
   * Reads an integer tensor: I32 as `Int32Array`, I64 as `BigInt64Array`.
   *
   * @throws {SafetensorsError} for an unknown name, a float tensor, or an I/O error
   */
  readInt(name: string): Promise<Int32Array | BigInt64Array> {
    const info = this.info(name);
    return this.#read(info).then((bytes) => decodeInt(info, bytes, this.path));
  }

  /** Closes the file handle (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }

  /** Same as {@linkcode SafetensorsFile.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #read(info: TensorInfo): Promise<Uint8Array> {
    if (this.#closed) {
      return Promise.reject(
        new SafetensorsError("file is closed", { path: this.path, tensor: info.name }),
      );
    }
    // Reads share one file position, so they are serialized.
    const next = this.#queue.then(() =>
      readExactly(this.#file, this.header.dataStart + info.begin, info.end - info.begin, this.path)
    );
    this.#queue = next.catch(() => {});
    return next;
  }
}

/**
 * A safetensors image held in memory, validated like a file. Reads are synchronous.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSafetensors, writeSafetensors } from "./mod.ts";
 * const st = parseSafetensors(writeSafetensors({ b: { dtype: "F32", shape: [3], data: [1, 2, 3] } }, { v: "1" }));
 * assert.equal(st.names[0], "b");
 * assert.equal(st.metadata.v, "1");
 * assert.equal(st.readF32("b")[2], 3);
 * ```
 */
export class SafetensorsBytes extends SafetensorsHeader {
  #bytes: Uint8Array;

  /** Use {@linkcode parseSafetensors}. */
  constructor(bytes: Uint8Array, path: string) {
    const n = readHeaderLength(bytes, bytes.length, path);
    super(path, parseHeader(bytes.subarray(8, 8 + n), bytes.length - 8 - n, path));
    this.#bytes = bytes;
  }

  /** Reads a float tensor as f32. See {@linkcode SafetensorsFile.readF32}. */
  readF32(name: string): Float32Array {
    const info = this.info(name);
    return decodeF32(info, this.#slice(info), this.path);
  }

  /** Reads an integer tensor. See {@linkcode SafetensorsFile.readInt}. */
  readInt(name: string): Int32Array | BigInt64Array {
    const info = this.info(name);
    return decodeInt(info, this.#slice(info), this.path);
  }

  #slice(info: TensorInfo): Uint8Array {
    const start = this.header.dataStart;
    return this.#bytes.subarray(start + info.begin, start + info.end);
  }
}

/**
 * Validates a safetensors image in memory.
 *
 * @param bytes the whole file
 * @param label a name for error messages (default `<bytes>`)
 * @throws {SafetensorsError} when the header is invalid
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSafetensors, SafetensorsError } from "./mod.ts";
 * try {
 *   parseSafetensors(new Uint8Array(4), "x.safetensors");
 * } catch (e) {
 *   assert(e instanceof SafetensorsError);
 * }
 * ```
 */
export function parseSafetensors(bytes: Uint8Array, label = "<bytes>"): SafetensorsBytes {
  return new SafetensorsBytes(bytes, label);
}

async function readExactly(
  file: Deno.FsFile,
  offset: number,
  length: number,
  path: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  try {
    await file.seek(offset, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < length) {
      const n = await file.read(out.subarray(filled));
      if (n === null) {
        throw new SafetensorsError(
          `file ended at byte ${offset + filled} while reading ${length} bytes at offset ${offset}`,
          { path },
        );
      }
      filled += n;
    }
  } catch (cause) {
    if (cause instanceof SafetensorsError) throw cause;
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new SafetensorsError(`read of ${length} bytes at offset ${offset} failed (${detail})`, {
      path,
      cause,
    });
  }
  return out;
}
