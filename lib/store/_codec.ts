/**
 * The document encoding shared by both stores.
 *
 * A stored document is plain data (objects, arrays, strings, booleans, `null`, numbers) plus typed
 * arrays. One walker turns such a value into what a store can keep, and back:
 *
 * - a typed array becomes a *tagged binary*: its little-endian bytes and a one-byte dtype tag
 *   ({@linkcode DTYPE_TAGS}); MongoDB keeps it as BSON Binary whose subtype is the tag (user
 *   subtypes 0x80–0x84), SQLite as a slice of the row's blob;
 * - a number that JSON and FerretDB cannot carry (`NaN`, `±Infinity`, `-0`) becomes a tagged
 *   binary too (tag {@linkcode SCALAR_TAG}, 8 bytes of float64), so every number round-trips;
 * - an object key is escaped so that it is a legal MongoDB field name and never collides with the
 *   codec's own markers: `%` → `%25`, `.` → `%2E`, a leading `$` → `%24` ({@linkcode escapeKey});
 * - `undefined` properties are dropped (as `JSON.stringify` does).
 *
 * The SQLite form ({@linkcode packDoc}) is a JSON text when the value holds no binary, else a blob:
 * `"SFD1"`, the JSON length (u32 LE), the JSON (UTF-8) where each binary is `{"$b": tag, "o":
 * offset, "n": length}`, then the binary section.
 *
 * @module
 */

/** A typed array the stores can keep. */
export type StoredTypedArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** Dtype tag of each typed array kind (the BSON Binary subtype in MongoDB). */
export const DTYPE_TAGS = {
  float32: 0x80,
  float64: 0x81,
  int32: 0x82,
  uint8: 0x83,
} as const;

/** Tag of a single float64 number that JSON and FerretDB cannot carry (NaN, ±Infinity, -0). */
export const SCALAR_TAG = 0x84;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A tag and its little-endian bytes. */
export interface TaggedBytes {
  tag: number;
  bytes: Uint8Array;
}

function tagOf(value: ArrayBufferView): number | undefined {
  if (value instanceof Float32Array) return DTYPE_TAGS.float32;
  if (value instanceof Float64Array) return DTYPE_TAGS.float64;
  if (value instanceof Int32Array) return DTYPE_TAGS.int32;
  if (value instanceof Uint8Array) return DTYPE_TAGS.uint8;
  return undefined;
}

function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
  for (let i = 0; i < bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
  return bytes;
}

/**
 * The little-endian bytes of a typed array (a copy) and its dtype tag.
 *
 * @param value A Float32Array, Float64Array, Int32Array or Uint8Array.
 * @returns The tag and a fresh byte array.
 * @throws {TypeError} For any other typed array.
 * @example
 * ```ts
 * import { typedArrayToBytes } from "./_codec.ts";
 * const { tag, bytes } = typedArrayToBytes(new Int32Array([1]));
 * console.assert(tag === 0x82 && bytes.length === 4 && bytes[0] === 1);
 * ```
 */
export function typedArrayToBytes(value: ArrayBufferView): TaggedBytes {
  const tag = tagOf(value);
  if (tag === undefined) {
    throw new TypeError(
      `Cannot store a ${value.constructor.name}: only Float32Array, ` +
        "Float64Array, Int32Array and Uint8Array are supported",
    );
  }
  const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice();
  const width = (value as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
  return { tag, bytes: LITTLE_ENDIAN || width === 1 ? bytes : swapBytes(bytes, width) };
}

/**
 * Rebuilds the value of a tagged binary: a typed array, or a number for {@linkcode SCALAR_TAG}.
 * Unknown tags (e.g. BSON Binary written by another program) come back as a Uint8Array.
 *
 * @param tag The dtype tag.
 * @param bytes The little-endian bytes (not retained: the result owns a copy).
 * @returns The typed array or number.
 * @throws {RangeError} When the byte length is not a multiple of the element size.
 * @example
 * ```ts
 * import { bytesToValue, typedArrayToBytes } from "./_codec.ts";
 * const { tag, bytes } = typedArrayToBytes(new Float32Array([0.1]));
 * console.assert((bytesToValue(tag, bytes) as Float32Array)[0] === Math.fround(0.1));
 * ```
 */
export function bytesToValue(tag: number, bytes: Uint8Array): StoredTypedArray | number {
  const width = tag === DTYPE_TAGS.float64 || tag === SCALAR_TAG
    ? 8
    : tag === DTYPE_TAGS.float32 || tag === DTYPE_TAGS.int32
    ? 4
    : 1;
  if (bytes.length % width !== 0) {
    throw new RangeError(
      `Corrupt stored array: ${bytes.length} bytes for tag 0x${tag.toString(16)}`,
    );
  }
  const copy = new Uint8Array(bytes); // a fresh buffer (a Node Buffer's slice() would share its pool)
  if (!LITTLE_ENDIAN && width > 1) swapBytes(copy, width);
  switch (tag) {
    case DTYPE_TAGS.float32:
      return new Float32Array(copy.buffer, 0, copy.length / 4);
    case DTYPE_TAGS.float64:
      return new Float64Array(copy.buffer, 0, copy.length / 8);
    case DTYPE_TAGS.int32:
      return new Int32Array(copy.buffer, 0, copy.length / 4);
    case SCALAR_TAG: {
      if (copy.length !== 8) throw new RangeError(`Corrupt stored number: ${copy.length} bytes`);
      return new Float64Array(copy.buffer, 0, 1)[0]!;
    }
    default:
      return copy;
  }
}

/** Whether a number needs the binary scalar form (not representable in JSON or FerretDB). */
function isSpecialNumber(n: number): boolean {
  return !Number.isFinite(n) || Object.is(n, -0);
}

/**
 * Escapes an object key into a legal MongoDB field name that never starts with `$` and has no
 * `.`: `%` → `%25`, `.` → `%2E`, a leading `$` → `%24`. Ordinary keys are unchanged.
 *
 * @param key Any string.
 * @returns The escaped key.
 * @example
 * ```ts
 * import { escapeKey } from "./_codec.ts";
 * console.assert(escapeKey("a.b") === "a%2Eb" && escapeKey("$x") === "%24x");
 * ```
 */
export function escapeKey(key: string): string {
  let out = key.replaceAll("%", "%25").replaceAll(".", "%2E");
  if (out.startsWith("$")) out = "%24" + out.slice(1);
  return out;
}

/**
 * Reverses {@linkcode escapeKey}.
 *
 * @param key An escaped key.
 * @returns The original key.
 * @example
 * ```ts
 * import { escapeKey, unescapeKey } from "./_codec.ts";
 * console.assert(unescapeKey(escapeKey("$a.%b")) === "$a.%b");
 * ```
 */
export function unescapeKey(key: string): string {
  if (!key.includes("%")) return key;
  return key.replace(/%(25|2E|24)/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Encodes a value for a store: typed arrays and special numbers go through `binary`, object keys
 * are escaped, `undefined` properties dropped.
 *
 * @param value Plain data with typed arrays.
 * @param binary Makes the store's binary value from a tag and little-endian bytes.
 * @returns The encoded value.
 * @throws {TypeError} For values the stores cannot keep (functions, bigints, class instances).
 * @example
 * ```ts
 * import { encodeValue } from "./_codec.ts";
 * const out = encodeValue({ "a.b": new Uint8Array([7]) }, (tag, bytes) => ({ tag, n: bytes.length }));
 * console.assert(JSON.stringify(out) === '{"a%2Eb":{"tag":131,"n":1}}');
 * ```
 */
export function encodeValue(
  value: unknown,
  binary: (tag: number, bytes: Uint8Array) => unknown,
): unknown {
  const walk = (v: unknown, path: string): unknown => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") {
      if (!isSpecialNumber(v)) return v;
      const bytes = new Uint8Array(new Float64Array([v]).buffer);
      return binary(SCALAR_TAG, LITTLE_ENDIAN ? bytes : swapBytes(bytes, 8));
    }
    if (typeof v === "object") {
      if (ArrayBuffer.isView(v)) {
        const { tag, bytes } = typedArrayToBytes(v);
        return binary(tag, bytes);
      }
      if (Array.isArray(v)) {
        return v.map((x, i) => walk(x === undefined ? null : x, `${path}[${i}]`));
      }
      if (isPlainObject(v)) {
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) {
          if (x !== undefined) out[escapeKey(k)] = walk(x, path ? `${path}.${k}` : k);
        }
        return out;
      }
    }
    throw new TypeError(
      `Cannot store ${path || "the value"}: unsupported ${
        typeof v === "object" ? (v as object).constructor?.name ?? "object" : typeof v
      }`,
    );
  };
  return walk(value, "");
}

/**
 * Reverses {@linkcode encodeValue}.
 *
 * @param value A stored value.
 * @param binary Returns the tag and bytes when `v` is one of the store's binary values, else null.
 * @returns The decoded value, with typed arrays restored and keys unescaped.
 * @example
 * ```ts
 * import { decodeValue, encodeValue } from "./_codec.ts";
 * type B = { tag: number; bytes: Uint8Array };
 * const enc = encodeValue({ x: -0 }, (tag, bytes): B => ({ tag, bytes }));
 * const dec = decodeValue(enc, (v) => (v as B).bytes ? v as B : null) as { x: number };
 * console.assert(Object.is(dec.x, -0));
 * ```
 */
export function decodeValue(
  value: unknown,
  binary: (v: object) => TaggedBytes | null,
): unknown {
  const walk = (v: unknown): unknown => {
    if (v === null || typeof v !== "object") return v;
    const b = binary(v);
    if (b) return bytesToValue(b.tag, b.bytes);
    if (Array.isArray(v)) return v.map(walk);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[unescapeKey(k)] = walk(x);
    return out;
  };
  return walk(value);
}

const MAGIC = new TextEncoder().encode("SFD1");

/**
 * Packs a value into the SQLite form: a JSON text when it holds no binary, else a blob (see the
 * module documentation).
 *
 * @param value Plain data with typed arrays.
 * @returns A string or a blob.
 * @example
 * ```ts
 * import { packDoc, unpackDoc } from "./_codec.ts";
 * console.assert(packDoc({ a: 1 }) === '{"a":1}');
 * const back = unpackDoc(packDoc({ a: new Float64Array([NaN]) })) as { a: Float64Array };
 * console.assert(Number.isNaN(back.a[0]));
 * ```
 */
export function packDoc(value: unknown): string | Uint8Array {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const encoded = encodeValue(value, (tag, bytes) => {
    const ref = { $b: tag, o: offset, n: bytes.length };
    chunks.push(bytes);
    offset += bytes.length;
    return ref;
  });
  const json = JSON.stringify(encoded);
  if (chunks.length === 0) return json;
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, head.length, true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Reverses {@linkcode packDoc}.
 *
 * @param stored The JSON text or blob read from SQLite.
 * @returns The value with typed arrays restored.
 * @throws {RangeError} When a blob is not in the packed format.
 * @example
 * ```ts
 * import { packDoc, unpackDoc } from "./_codec.ts";
 * const back = unpackDoc(packDoc({ t: new Int32Array([3, -4]) })) as { t: Int32Array };
 * console.assert(back.t instanceof Int32Array && back.t[1] === -4);
 * ```
 */
export function unpackDoc(stored: string | Uint8Array): unknown {
  if (typeof stored === "string") return decodeValue(JSON.parse(stored), () => null);
  if (stored.length < 8 || MAGIC.some((b, i) => stored[i] !== b)) {
    throw new RangeError("Corrupt stored document: not in the saeflow packed format");
  }
  const view = new DataView(stored.buffer, stored.byteOffset, stored.byteLength);
  const jsonLength = view.getUint32(4, true);
  const body = 8 + jsonLength;
  if (body > stored.length) throw new RangeError("Corrupt stored document: truncated header");
  const parsed = JSON.parse(new TextDecoder().decode(stored.subarray(8, body)));
  return decodeValue(parsed, (v) => {
    const r = v as { $b?: unknown; o?: unknown; n?: unknown };
    if (typeof r.$b !== "number" || typeof r.o !== "number" || typeof r.n !== "number") return null;
    const start = body + r.o;
    if (start + r.n > stored.length) {
      throw new RangeError("Corrupt stored document: truncated data");
    }
    return { tag: r.$b, bytes: stored.subarray(start, start + r.n) };
  });
}
