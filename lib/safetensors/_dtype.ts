/**
 * Dtype table and the float conversions (f16 and bf16, with round-to-nearest-even on encode).
 *
 * @module
 */

/** The dtypes this project reads and writes. */
export type Dtype = "F32" | "F16" | "BF16" | "F64" | "I32" | "I64";

/** Bytes per element of each supported dtype. */
export const DTYPE_SIZE: Readonly<Record<Dtype, number>> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  F16: 2,
  BF16: 2,
};

/** Supported dtype names, for error messages. */
export const SUPPORTED_DTYPES: readonly Dtype[] = ["F32", "F16", "BF16", "F64", "I32", "I64"];

/** Whether `name` is a supported dtype. */
export function isDtype(name: string): name is Dtype {
  return Object.hasOwn(DTYPE_SIZE, name);
}

/** True on little-endian hosts, where typed arrays can view safetensors bytes directly. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE half bits → number. */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** bfloat16 bits → number (exact: a bf16 is the top half of an f32). */
export function bf16BitsToNumber(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** number → f32 bits (the number is first rounded to f32). */
function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}

/** number → bfloat16 bits, rounding the f32 value to nearest, ties to even. NaN stays NaN. */
export function numberToBf16Bits(x: number): number {
  const bits = f32Bits(x);
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff; // quiet NaN
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** number → IEEE half bits, rounding the f32 value to nearest, ties to even (with subnormals). */
export function numberToF16Bits(x: number): number {
  const bits = f32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant === 0 ? 0 : 0x200 | (mant >>> 13));
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    const half = 2 ** (shift - 1);
    const rem = full % 2 ** shift;
    let m = Math.floor(full / 2 ** shift);
    if (rem > half || (rem === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return h;
}
