/**
 * Base64 encoding of typed arrays for the analyzer state's JSON form (little-endian bytes, as
 * the arrays are laid out on every platform Deno runs on).
 *
 * @module
 */

/** The native base64 methods of `Uint8Array` (V8 ≥ 13.6; not yet in TypeScript's lib). */
interface Base64Bytes {
  toBase64(): string;
}
const Uint8ArrayBase64 = Uint8Array as unknown as { fromBase64(text: string): Uint8Array };

/** Encodes the bytes of a typed array as base64. */
export function toBase64(array: Int32Array | Float32Array | Float64Array): string {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  return (bytes as unknown as Base64Bytes).toBase64();
}

function bytesOf(text: unknown, where: string, elementSize: number): Uint8Array {
  if (typeof text !== "string") {
    throw new TypeError(`Cannot read analyzer state: ${where} is not a base64 string`);
  }
  let bytes: Uint8Array;
  try {
    bytes = Uint8ArrayBase64.fromBase64(text);
  } catch (cause) {
    throw new TypeError(`Cannot read analyzer state: ${where} is not valid base64`, { cause });
  }
  if (bytes.length % elementSize !== 0) {
    throw new TypeError(
      `Cannot read analyzer state: ${where} has ${bytes.length} bytes, not a multiple of ` +
        `${elementSize}`,
    );
  }
  return bytes;
}

/** Decodes base64 into an `Int32Array`. */
export function int32FromBase64(text: unknown, where: string): Int32Array {
  return new Int32Array(bytesOf(text, where, 4).buffer);
}

/** Decodes base64 into a `Float32Array`. */
export function float32FromBase64(text: unknown, where: string): Float32Array {
  return new Float32Array(bytesOf(text, where, 4).buffer);
}
