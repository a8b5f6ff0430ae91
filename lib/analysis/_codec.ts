/**
 * Base64 encoding of typed arrays for the analyzer state's JSON form (little-endian bytes, as
 * the arrays are laid out on every platform Deno runs on).
 *
 * @module
 */

/** Encodes the bytes of a typed array as base64. */
export function toBase64(array: Int32Array | Float32Array | Float64Array): string {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  let out = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    out += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(out);
}

function bytesOf(text: unknown, where: string, elementSize: number): Uint8Array {
  if (typeof text !== "string") {
    throw new TypeError(`Cannot read analyzer state: ${where} is not a base64 string`);
  }
  let binary: string;
  try {
    binary = atob(text);
  } catch (cause) {
    throw new TypeError(`Cannot read analyzer state: ${where} is not valid base64`, { cause });
  }
  if (binary.length % elementSize !== 0) {
    throw new TypeError(
      `Cannot read analyzer state: ${where} has ${binary.length} bytes, not a multiple of ` +
        `${elementSize}`,
    );
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
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
