/**
 * A safetensors writer, used for test fixtures and for saving converted checkpoints.
 *
 * @module
 */

import {
  type Dtype,
  DTYPE_SIZE,
  isDtype,
  numberToBf16Bits,
  numberToF16Bits,
  SUPPORTED_DTYPES,
} from "./_dtype.ts";
import { SafetensorsError } from "./error.ts";

/** One tensor to write. */
export interface TensorInput {
  /** The dtype to store it as; numbers are converted (F16/BF16 round to nearest even). */
  dtype: Dtype;
  /** The shape (`[]` for a scalar). */
  shape: readonly number[];
  /** Row-major values; `bigint`s are accepted for I64. */
  data: ArrayLike<number> | ArrayLike<bigint>;
}

/**
 * Serializes tensors to a safetensors image. Tensors are laid out by decreasing element size,
 * then by name (as the reference implementation does), and the header is padded with spaces so
 * that every tensor starts on an 8-byte boundary. F16/BF16 values are the f32 value rounded to
 * nearest, ties to even; I32/I64 values must be integers in range.
 *
 * @param tensors name → tensor
 * @param metadata optional `__metadata__` string map
 * @returns the file bytes
 * @throws {SafetensorsError} for a bad dtype, shape, length or integer value
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSafetensors, writeSafetensors } from "./mod.ts";
 * const bytes = writeSafetensors({ x: { dtype: "F16", shape: [2, 1], data: [0.1, 65504] } });
 * const x = parseSafetensors(bytes).readF32("x");
 * assert(Math.abs(x[0]! - 0.1) < 1e-4);
 * assert.equal(x[1], 65504);
 * ```
 */
export function writeSafetensors(
  tensors: Record<string, TensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const names = Object.keys(tensors);
  for (const name of names) validate(name, tensors[name]!);
  names.sort((a, b) => {
    const d = DTYPE_SIZE[tensors[b]!.dtype] - DTYPE_SIZE[tensors[a]!.dtype];
    return d !== 0 ? d : a < b ? -1 : a > b ? 1 : 0;
  });
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new SafetensorsError(`metadata value of "${k}" is not a string`, { action: "write" });
      }
    }
    header["__metadata__"] = { ...metadata };
  }
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const bytes = t.data.length * DTYPE_SIZE[t.dtype];
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const name of names) {
    at = encode(name, tensors[name]!, view, at);
  }
  return out;
}

function validate(name: string, t: TensorInput): void {
  const at = { tensor: name, action: "write" as const };
  if (!isDtype(t.dtype)) {
    throw new SafetensorsError(
      `has unsupported dtype ${JSON.stringify(t.dtype)}; supported: ${SUPPORTED_DTYPES.join(", ")}`,
      at,
    );
  }
  let size = 1;
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(`shape [${t.shape.join(", ")}] has an invalid dimension ${d}`, at);
    }
    size *= d;
  }
  if (size !== t.data.length) {
    throw new SafetensorsError(
      `has ${t.data.length} values but shape [${t.shape.join(", ")}] needs ${size}`,
      at,
    );
  }
}

function encode(name: string, t: TensorInput, view: DataView, at: number): number {
  const n = t.data.length;
  const data = t.data as ArrayLike<number | bigint>;
  const num = (i: number): number => {
    const v = data[i]!;
    return typeof v === "bigint" ? Number(v) : v;
  };
  switch (t.dtype) {
    case "F32":
      for (let i = 0; i < n; i++) view.setFloat32(at + 4 * i, num(i), true);
      break;
    case "F64":
      for (let i = 0; i < n; i++) view.setFloat64(at + 8 * i, num(i), true);
      break;
    case "F16":
      for (let i = 0; i < n; i++) view.setUint16(at + 2 * i, numberToF16Bits(num(i)), true);
      break;
    case "BF16":
      for (let i = 0; i < n; i++) view.setUint16(at + 2 * i, numberToBf16Bits(num(i)), true);
      break;
    case "I32":
      for (let i = 0; i < n; i++) {
        const v = num(i);
        if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
          throw new SafetensorsError(`value ${v} at index ${i} does not fit I32`, {
            tensor: name,
            action: "write",
          });
        }
        view.setInt32(at + 4 * i, v, true);
      }
      break;
    case "I64":
      for (let i = 0; i < n; i++) {
        const v = data[i]!;
        let b: bigint;
        if (typeof v === "bigint") b = v;
        else if (Number.isSafeInteger(v)) b = BigInt(v);
        else {
          throw new SafetensorsError(`value ${v} at index ${i} is not a safe integer for I64`, {
            tensor: name,
            action: "write",
          });
        }
        if (b < -(2n ** 63n) || b >= 2n ** 63n) {
          throw new SafetensorsError(`value ${b} at index ${i} does not fit I64`, {
            tensor: name,
            action: "write",
          });
        }
        view.setBigInt64(at + 8 * i, b, true);
      }
      break;
  }
  return at + n * DTYPE_SIZE[t.dtype];
}
