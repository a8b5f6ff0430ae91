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
 * offset, "n": length}`, then the binary section. A feature analysis is packed by
 * {@linkcode packFeatureAnalysis} in the same layout under the magic `"SFA1"`, its samples stored
 * column-wise; {@linkcode unpackDoc} reads both magics, so files written before stay readable.
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
 * import assert from "node:assert/strict";
 * import { typedArrayToBytes } from "./_codec.ts";
 * const { tag, bytes } = typedArrayToBytes(new Int32Array([1]));
 * assert.equal(tag, 0x82);
 * assert.equal(bytes.length, 4);
 * assert.equal(bytes[0], 1);
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
 * import assert from "node:assert/strict";
 * import { bytesToValue, typedArrayToBytes } from "./_codec.ts";
 * const { tag, bytes } = typedArrayToBytes(new Float32Array([0.1]));
 * assert.equal((bytesToValue(tag, bytes) as Float32Array)[0], Math.fround(0.1));
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
 * import assert from "node:assert/strict";
 * import { escapeKey } from "./_codec.ts";
 * assert.equal(escapeKey("a.b"), "a%2Eb");
 * assert.equal(escapeKey("$x"), "%24x");
 * ```
 */
export function escapeKey(key: string): string {
  if (!PLAIN_KEY.test(key)) return escapeSlow(key);
  return key;
}

const PLAIN_KEY = /^[^$%.][^%.]*$|^$/;

function escapeSlow(key: string): string {
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
 * import assert from "node:assert/strict";
 * import { escapeKey, unescapeKey } from "./_codec.ts";
 * assert.equal(unescapeKey(escapeKey("$a.%b")), "$a.%b");
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
 * import assert from "node:assert/strict";
 * import { encodeValue } from "./_codec.ts";
 * const out = encodeValue({ "a.b": new Uint8Array([7]) }, (tag, bytes) => ({ tag, n: bytes.length }));
 * assert.equal(JSON.stringify(out), '{"a%2Eb":{"tag":131,"n":1}}');
 * ```
 */
export function encodeValue(
  value: unknown,
  binary: (tag: number, bytes: Uint8Array) => unknown,
): unknown {
  return encodeViews(value, (tag, view, width) => {
    const bytes = view.slice();
    return binary(tag, LITTLE_ENDIAN || width === 1 ? bytes : swapBytes(bytes, width));
  });
}

/**
 * {@linkcode encodeValue} without copies: `binary` gets a byte view of the value's own memory (in
 * the platform's byte order) and the element width.
 */
function encodeViews(
  value: unknown,
  binary: (tag: number, view: Uint8Array, width: number) => unknown,
): unknown {
  // The path to the current value, built only for an error message.
  const trail: (string | number)[] = [];
  const pathOf = () =>
    trail.map((p, i) => typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`).join("");
  const walk = (v: unknown): unknown => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") {
      if (!isSpecialNumber(v)) return v;
      return binary(SCALAR_TAG, new Uint8Array(new Float64Array([v]).buffer), 8);
    }
    if (typeof v === "object") {
      if (ArrayBuffer.isView(v)) {
        const tag = tagOf(v);
        if (tag === undefined) typedArrayToBytes(v); // throws the unsupported-dtype error
        const width = (v as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
        return binary(tag!, new Uint8Array(v.buffer, v.byteOffset, v.byteLength), width);
      }
      if (Array.isArray(v)) {
        const out = new Array<unknown>(v.length);
        for (let i = 0; i < v.length; i++) {
          const x = v[i];
          trail.push(i);
          out[i] = walk(x === undefined ? null : x);
          trail.pop();
        }
        return out;
      }
      if (isPlainObject(v)) {
        const out: Record<string, unknown> = {};
        for (const k in v) {
          if (!Object.hasOwn(v, k)) continue;
          const x = (v as Record<string, unknown>)[k];
          if (x === undefined) continue;
          trail.push(k);
          out[escapeKey(k)] = walk(x);
          trail.pop();
        }
        return out;
      }
    }
    throw new TypeError(
      `Cannot store ${pathOf() || "the value"}: unsupported ${
        typeof v === "object" ? (v as object).constructor?.name ?? "object" : typeof v
      }`,
    );
  };
  return walk(value);
}

/**
 * Reverses {@linkcode encodeValue}.
 *
 * @param value A stored value.
 * @param binary Returns the tag and bytes when `v` is one of the store's binary values, else null.
 * @returns The decoded value, with typed arrays restored and keys unescaped.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeValue, encodeValue } from "./_codec.ts";
 * type B = { tag: number; bytes: Uint8Array };
 * const enc = encodeValue({ x: -0 }, (tag, bytes): B => ({ tag, bytes }));
 * const dec = decodeValue(enc, (v) => (v as B).bytes ? v as B : null) as { x: number };
 * assert(Object.is(dec.x, -0));
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
const MAGIC_ANALYSIS = new TextEncoder().encode("SFA1");
const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

/** Packs `value` with `magic` in front (the SFD1 layout); a JSON text when it holds no binary. */
function pack(value: unknown, magic: Uint8Array): string | Uint8Array {
  const views: { view: Uint8Array; width: number }[] = [];
  let offset = 0;
  const encoded = encodeViews(value, (tag, view, width) => {
    const ref = { $b: tag, o: offset, n: view.length };
    views.push({ view, width });
    offset += view.length;
    return ref;
  });
  const json = JSON.stringify(encoded);
  if (views.length === 0) return json;
  const head = ENCODER.encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  out.set(magic, 0);
  new DataView(out.buffer).setUint32(4, head.length, true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const { view, width } of views) {
    out.set(view, at);
    if (!LITTLE_ENDIAN && width > 1) swapBytes(out.subarray(at, at + view.length), width);
    at += view.length;
  }
  return out;
}

/**
 * Packs a value into the SQLite form: a JSON text when it holds no binary, else a blob (see the
 * module documentation).
 *
 * @param value Plain data with typed arrays.
 * @returns A string or a blob.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packDoc, unpackDoc } from "./_codec.ts";
 * assert.equal(packDoc({ a: 1 }), '{"a":1}');
 * const back = unpackDoc(packDoc({ a: new Float64Array([NaN]) })) as { a: Float64Array };
 * assert(Number.isNaN(back.a[0]));
 * ```
 */
export function packDoc(value: unknown): string | Uint8Array {
  return pack(value, MAGIC);
}

const SAMPLE_KEYS = ["tokens", "acts", "peak", "peak_pos", "source", "shard", "row", "offset"];

/** Whether `s` is a sample with exactly the fields of `Sample` (the columnar form keeps those). */
function isPlainSample(s: unknown): boolean {
  if (typeof s !== "object" || s === null || !isPlainObject(s)) return false;
  const r = s as Record<string, unknown>;
  let n = 0;
  for (const k in r) {
    if (Object.hasOwn(r, k)) n++;
  }
  return n === SAMPLE_KEYS.length && r.tokens instanceof Int32Array &&
    r.acts instanceof Float32Array && r.tokens.length === r.acts.length &&
    typeof r.peak === "number" && typeof r.peak_pos === "number" &&
    typeof r.source === "string" && typeof r.shard === "number" && typeof r.row === "number" &&
    typeof r.offset === "number";
}

/** The samplings of `a` when every one is a plain object whose samples are plain samples. */
function plainSamplings(a: unknown): Record<string, unknown>[] | null {
  if (typeof a !== "object" || a === null || !isPlainObject(a)) return null;
  const samplings = (a as { samplings?: unknown }).samplings;
  if (!Array.isArray(samplings) || samplings.length === 0) return null;
  for (const g of samplings) {
    if (typeof g !== "object" || g === null || !isPlainObject(g)) return null;
    const samples = (g as { samples?: unknown }).samples;
    if (!Array.isArray(samples) || !samples.every(isPlainSample)) return null;
  }
  return samplings as Record<string, unknown>[];
}

interface ColumnarSamples {
  /** Samples per sampling. */
  counts: Int32Array;
  /** Window length of each sample. */
  lens: Int32Array;
  /** All tokens: u16 little-endian pairs (a Uint8Array) when every id fits, else Int32Array. */
  tok: Uint8Array | Int32Array;
  /** Positions (in the concatenated windows) of the activations that are not +0. */
  nzAt: Int32Array;
  /** Those activations. */
  nzVal: Float32Array;
  /** peak, peak_pos, shard, row, offset of each sample. */
  num: Float64Array;
  /** Index of each sample's source in `sources`. */
  src: Int32Array;
  sources: string[];
}

/**
 * Packs a feature analysis (`analyses.<name>` of a `FeatureRecord`) into the SQLite form. Its
 * samples are stored column-wise in one pass: the windows' tokens concatenated (as 16-bit ids
 * when they all fit), their activations sparse (only the entries that are not +0, with their
 * positions), and the other fields as a few numeric columns; the rest of the document as in
 * {@linkcode packDoc}. A document whose samples have other fields or types than `Sample`'s is
 * packed by {@linkcode packDoc}. {@linkcode unpackDoc} reads both forms.
 *
 * @param analysis A feature analysis (or any value).
 * @returns A string or a blob.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packFeatureAnalysis, unpackDoc } from "./_codec.ts";
 * const sample = {
 *   tokens: new Int32Array([5, 6]), acts: new Float32Array([0, 1.5]), peak: 1.5, peak_pos: 1,
 *   source: "d", shard: 0, row: 3, offset: 0,
 * };
 * const a = { act_times: 1, samplings: [{ name: "top", band: null, samples: [sample] }] };
 * const back = unpackDoc(packFeatureAnalysis(a)) as typeof a;
 * assert.equal(back.samplings[0]!.samples[0]!.acts[1], 1.5);
 * ```
 */
export function packFeatureAnalysis(analysis: unknown): string | Uint8Array {
  const samplings = plainSamplings(analysis);
  if (samplings === null) return packDoc(analysis);
  let n = 0;
  let total = 0;
  let fits16 = true;
  for (const g of samplings) {
    for (const s of g.samples as { tokens: Int32Array }[]) {
      n++;
      total += s.tokens.length;
      if (fits16) {
        const t = s.tokens;
        for (let j = 0; j < t.length; j++) {
          if (t[j]! >>> 16 !== 0) {
            fits16 = false;
            break;
          }
        }
      }
    }
  }
  const counts = new Int32Array(samplings.length);
  const lens = new Int32Array(n);
  const tok16 = fits16 ? new Uint16Array(total) : null;
  const tok32 = fits16 ? null : new Int32Array(total);
  const nzAt = new Int32Array(total);
  const nzVal = new Float32Array(total);
  const num = new Float64Array(5 * n);
  const src = new Int32Array(n);
  const sources: string[] = [];
  const sourceIndex = new Map<string, number>();
  const stubs: Record<string, unknown>[] = [];
  let i = 0;
  let at = 0;
  let nz = 0;
  for (const [gi, g] of samplings.entries()) {
    const stub: Record<string, unknown> = {};
    for (const k in g) if (Object.hasOwn(g, k) && k !== "samples") stub[k] = g[k];
    stubs.push(stub);
    const samples = g.samples as {
      tokens: Int32Array;
      acts: Float32Array;
      peak: number;
      peak_pos: number;
      source: string;
      shard: number;
      row: number;
      offset: number;
    }[];
    counts[gi] = samples.length;
    for (const s of samples) {
      const len = s.tokens.length;
      lens[i] = len;
      if (tok16) tok16.set(s.tokens, at);
      else tok32!.set(s.tokens, at);
      const acts = s.acts;
      for (let j = 0; j < len; j++) {
        const v = acts[j]!;
        if (v !== 0 || 1 / v < 0) {
          nzAt[nz] = at + j;
          nzVal[nz++] = v;
        }
      }
      num[5 * i] = s.peak;
      num[5 * i + 1] = s.peak_pos;
      num[5 * i + 2] = s.shard;
      num[5 * i + 3] = s.row;
      num[5 * i + 4] = s.offset;
      let si = sourceIndex.get(s.source);
      if (si === undefined) {
        si = sources.length;
        sources.push(s.source);
        sourceIndex.set(s.source, si);
      }
      src[i++] = si;
      at += len;
    }
  }
  const columns: ColumnarSamples = {
    counts,
    lens,
    tok: tok16
      ? (LITTLE_ENDIAN ? new Uint8Array(tok16.buffer) : swapBytes(new Uint8Array(tok16.buffer), 2))
      : tok32!,
    nzAt: nzAt.subarray(0, nz),
    nzVal: nzVal.subarray(0, nz),
    num,
    src,
    sources,
  };
  return pack({ doc: { ...(analysis as object), samplings: stubs }, columns }, MAGIC_ANALYSIS);
}

/** Rebuilds the samples of a {@linkcode packFeatureAnalysis} document. */
function fromColumns(packed: { doc: Record<string, unknown>; columns: ColumnarSamples }): unknown {
  const { doc, columns: c } = packed;
  const stubs = doc.samplings as Record<string, unknown>[];
  let tokens: Int32Array;
  if (c.tok instanceof Int32Array) tokens = c.tok;
  else {
    const bytes = c.tok;
    tokens = new Int32Array(bytes.length / 2);
    for (let j = 0; j < tokens.length; j++) tokens[j] = bytes[2 * j]! | (bytes[2 * j + 1]! << 8);
  }
  const expected = c.lens.reduce((x, y) => x + y, 0);
  if (expected !== tokens.length || c.counts.reduce((x, y) => x + y, 0) !== c.lens.length) {
    throw new RangeError("Corrupt stored document: sample columns do not match");
  }
  const acts = new Float32Array(tokens.length);
  for (let j = 0; j < c.nzAt.length; j++) acts[c.nzAt[j]!] = c.nzVal[j]!;
  let i = 0;
  let at = 0;
  const samplings = stubs.map((stub, gi) => {
    const samples = [];
    for (let k = 0; k < c.counts[gi]!; k++, i++) {
      const len = c.lens[i]!;
      samples.push({
        tokens: tokens.slice(at, at + len),
        acts: acts.slice(at, at + len),
        peak: c.num[5 * i]!,
        peak_pos: c.num[5 * i + 1]!,
        source: c.sources[c.src[i]!]!,
        shard: c.num[5 * i + 2]!,
        row: c.num[5 * i + 3]!,
        offset: c.num[5 * i + 4]!,
      });
      at += len;
    }
    return { ...stub, samples };
  });
  return { ...doc, samplings };
}

/**
 * Reverses {@linkcode packDoc}.
 *
 * @param stored The JSON text or blob read from SQLite.
 * @returns The value with typed arrays restored.
 * @throws {RangeError} When a blob is not in the packed format.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packDoc, unpackDoc } from "./_codec.ts";
 * const back = unpackDoc(packDoc({ t: new Int32Array([3, -4]) })) as { t: Int32Array };
 * assert(back.t instanceof Int32Array);
 * assert.equal(back.t[1], -4);
 * ```
 */
export function unpackDoc(stored: string | Uint8Array): unknown {
  if (typeof stored === "string") return decodeValue(JSON.parse(stored), () => null);
  const columnar = stored.length >= 8 && MAGIC_ANALYSIS.every((b, i) => stored[i] === b);
  if (stored.length < 8 || (!columnar && MAGIC.some((b, i) => stored[i] !== b))) {
    throw new RangeError("Corrupt stored document: not in the saeflow packed format");
  }
  const view = new DataView(stored.buffer, stored.byteOffset, stored.byteLength);
  const jsonLength = view.getUint32(4, true);
  const body = 8 + jsonLength;
  if (body > stored.length) throw new RangeError("Corrupt stored document: truncated header");
  const parsed = JSON.parse(DECODER.decode(stored.subarray(8, body)));
  const value = decodeValue(parsed, (v) => {
    const r = v as { $b?: unknown; o?: unknown; n?: unknown };
    if (typeof r.$b !== "number" || typeof r.o !== "number" || typeof r.n !== "number") return null;
    const start = body + r.o;
    if (start + r.n > stored.length) {
      throw new RangeError("Corrupt stored document: truncated data");
    }
    return { tag: r.$b, bytes: stored.subarray(start, start + r.n) };
  });
  return columnar ? fromColumns(value as Parameters<typeof fromColumns>[0]) : value;
}
