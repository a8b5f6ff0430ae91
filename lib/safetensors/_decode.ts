/**
 * Turning a tensor's raw little-endian bytes into typed arrays.
 *
 * @module
 */

import { bf16BitsToNumber, f16BitsToNumber, LITTLE_ENDIAN } from "./_dtype.ts";
import type { TensorInfo } from "./_header.ts";
import { SafetensorsError } from "./error.ts";

/** Copies `bytes` into a fresh, aligned buffer (a safetensors tensor need not be aligned). */
function aligned(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy.buffer;
}

/** Decodes a float tensor to f32 (F16/BF16 widened exactly; F64 rounded to nearest f32). */
export function decodeF32(info: TensorInfo, bytes: Uint8Array, path: string): Float32Array {
  const n = info.size;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (info.dtype) {
    case "F32": {
      if (LITTLE_ENDIAN) return new Float32Array(aligned(bytes));
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case "F64": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    }
    case "F16": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16BitsToNumber(view.getUint16(2 * i, true));
      return out;
    }
    case "BF16": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = bf16BitsToNumber(view.getUint16(2 * i, true));
      return out;
    }
    case "I32":
    case "I64":
      throw new SafetensorsError(`has integer dtype ${info.dtype}; read it with readInt()`, {
        path,
        tensor: info.name,
      });
  }
}

/** Decodes an integer tensor: I32 → Int32Array, I64 → BigInt64Array. */
export function decodeInt(
  info: TensorInfo,
  bytes: Uint8Array,
  path: string,
): Int32Array | BigInt64Array {
  const n = info.size;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (info.dtype) {
    case "I32": {
      if (LITTLE_ENDIAN) return new Int32Array(aligned(bytes));
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      return out;
    }
    case "I64": {
      if (LITTLE_ENDIAN) return new BigInt64Array(aligned(bytes));
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getBigInt64(8 * i, true);
      return out;
    }
    default:
      throw new SafetensorsError(`has float dtype ${info.dtype}; read it with readF32()`, {
        path,
        tensor: info.name,
      });
  }
}
