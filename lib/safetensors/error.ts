/**
 * The single error class of the safetensors reader and writer.
 *
 * @module
 */

/** Where a {@linkcode SafetensorsError} happened. */
export interface SafetensorsErrorOptions extends ErrorOptions {
  /** The file path or in-memory label (`<bytes>` when none was given). */
  path?: string;
  /** The offending tensor name, when one is to blame. */
  tensor?: string;
  /** Whether reading (the default) or writing failed. */
  action?: "read" | "write";
}

/**
 * Any failure to read or write a safetensors file: a truncated file, a bad header, an unknown
 * dtype, offsets outside the data section, overlapping tensors, an I/O error. The message is one
 * line naming the file and, where one is to blame, the tensor or byte offset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SafetensorsError } from "./error.ts";
 * const e = new SafetensorsError("header length 999 exceeds the file size 40", { path: "w.safetensors" });
 * assert.equal(e.name, "SafetensorsError");
 * assert.equal(e.message, "Cannot read safetensors w.safetensors: header length 999 exceeds the file size 40");
 * ```
 */
export class SafetensorsError extends Error {
  /** The file path or in-memory label. */
  readonly path: string;
  /** The offending tensor name, when one is to blame. */
  readonly tensor: string | undefined;

  /** Creates an error; the message is prefixed with the path (and the tensor name, if given). */
  constructor(detail: string, options: SafetensorsErrorOptions = {}) {
    const path = options.path ?? "<bytes>";
    const where = options.tensor === undefined ? "" : `tensor "${options.tensor}" `;
    super(`Cannot ${options.action ?? "read"} safetensors ${path}: ${where}${detail}`, options);
    this.name = "SafetensorsError";
    this.path = path;
    this.tensor = options.tensor;
  }
}
