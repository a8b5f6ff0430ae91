/**
 * An {@linkcode AnalyzerState} as a stream of bytes, written and read in pieces, so that a state
 * of any size can be saved (at 24,576 features a state is ~250 MB of JSON: one
 * `JSON.stringify` of it exceeds V8's maximum string length).
 *
 * The byte stream is gzip (`CompressionStream`) over a sequence of frames; a frame is a 4-byte
 * little-endian length and that many bytes of UTF-8 JSON:
 *
 * 1. `{ format: "saeflow-state-chunks", version: 1, header, counts }` — `header` is
 *    `AnalyzerState.toJSON()` without its three lists, `counts` their lengths;
 * 2. `{ candidates: [...] }`, `{ features: [...] }`, `{ nonActivating: [...] }` frames holding
 *    slices of at most {@linkcode STATE_SLICE} entries of each list, in order;
 * 3. `{ end: true }`.
 *
 * Reading checks the frames, the counts and the end frame, so a truncated or corrupt state is a
 * `TypeError`, never a silently smaller state. Only `toJSON()` / `fromJSON()` of the state are
 * used: the result is exactly the state that was saved.
 *
 * @module
 */

import { AnalyzerState, type AnalyzerStateJSON } from "./state.ts";
import type { FeatureAnalyzerOptions } from "./options.ts";

/** The `format` of the first frame. */
const CHUNKS_FORMAT = "saeflow-state-chunks";
/** The version of the frame layout. */
const CHUNKS_VERSION = 1;

/**
 * Default list entries per frame. A candidate is ~1 KB of JSON with a 64-token window, a feature
 * a few KB, so a frame stays at a few MB.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STATE_SLICE } from "./state_chunks.ts";
 * assert(STATE_SLICE > 0);
 * ```
 */
export const STATE_SLICE = 1024;

/** Options of {@linkcode stateToChunks}. */
export interface StateChunksOptions {
  /** List entries per frame; default {@linkcode STATE_SLICE}. */
  slice?: number;
  /** Gzip the byte stream (default true). Both sides must agree. */
  gzip?: boolean;
}

/** Options of {@linkcode stateFromChunks}. */
export interface StateFromChunksOptions {
  /** Whether the bytes are gzip'ed (default true, as {@linkcode stateToChunks} writes them). */
  gzip?: boolean;
  /**
   * Analyzer options to restore with (see `AnalyzerState.fromJSON`): their sampling, window, seed
   * and histogram settings must equal the saved ones.
   */
  analyzer?: FeatureAnalyzerOptions;
}

type Lists = Pick<AnalyzerStateJSON, "candidates" | "features" | "nonActivating">;
const LISTS = ["candidates", "features", "nonActivating"] as const;

const encoder = new TextEncoder();

function frame(value: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(value));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  return out;
}

/** A gzip (de)compression stream typed for `Uint8Array`s of any buffer. */
function gzipStream(way: "compress" | "decompress"): TransformStream<Uint8Array, Uint8Array> {
  const stream = way === "compress"
    ? new CompressionStream("gzip")
    : new DecompressionStream("gzip");
  return stream as unknown as TransformStream<Uint8Array, Uint8Array>;
}

async function* frames(state: AnalyzerState, slice: number): AsyncGenerator<Uint8Array> {
  const json = state.toJSON();
  const { candidates, features, nonActivating, ...header } = json;
  const lists: Lists = { candidates, features, nonActivating };
  yield frame({
    format: CHUNKS_FORMAT,
    version: CHUNKS_VERSION,
    header,
    counts: {
      candidates: candidates.length,
      features: features.length,
      nonActivating: nonActivating.length,
    },
  });
  for (const name of LISTS) {
    const list = lists[name] as unknown[];
    for (let i = 0; i < list.length; i += slice) {
      yield frame({ [name]: list.slice(i, i + slice) });
    }
  }
  yield frame({ end: true });
}

/**
 * Serializes a state as a stream of byte chunks (gzip'ed frames, see the module doc). No string
 * larger than one frame is ever built.
 *
 * @param state The state to save (it is not changed, apart from the pruning `toJSON` does).
 * @param options Frame size and compression.
 * @returns The bytes, in pieces of arbitrary size; concatenated, they are the saved state.
 * @throws {RangeError} For a slice that is not a positive integer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AnalyzerState } from "./state.ts";
 * import { stateFromChunks, stateToChunks } from "./state_chunks.ts";
 * const state = new AnalyzerState({ seed: 3 });
 * const back = await stateFromChunks(stateToChunks(state));
 * assert(back.options.seed === 3 && back.nTokens === 0);
 * ```
 */
export async function* stateToChunks(
  state: AnalyzerState,
  options: StateChunksOptions = {},
): AsyncGenerator<Uint8Array> {
  const slice = options.slice ?? STATE_SLICE;
  if (!Number.isSafeInteger(slice) || slice < 1) {
    throw new RangeError(`Invalid slice ${slice}: expected a positive integer`);
  }
  const source = frames(state, slice);
  if (options.gzip === false) {
    yield* source;
    return;
  }
  const compressed = ReadableStream.from(source).pipeThrough(gzipStream("compress"));
  for await (const chunk of compressed) yield chunk;
}

/** Collects the frames of a byte stream. */
async function* readFrames(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<unknown> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let buffer = new Uint8Array(0);
  let length = 0; // bytes of `buffer` in use
  const need = (n: number) => {
    if (buffer.length >= n) return;
    const grown = new Uint8Array(Math.max(n, 2 * buffer.length));
    grown.set(buffer.subarray(0, length));
    buffer = grown;
  };
  let start = 0;
  for await (const chunk of bytes) {
    // Drop what was consumed, then append.
    if (start > 0) {
      buffer.copyWithin(0, start, length);
      length -= start;
      start = 0;
    }
    need(length + chunk.length);
    buffer.set(chunk, length);
    length += chunk.length;
    while (length - start >= 4) {
      const size = new DataView(buffer.buffer, start, 4).getUint32(0, true);
      if (length - start < 4 + size) break;
      const text = decoder.decode(buffer.subarray(start + 4, start + 4 + size));
      start += 4 + size;
      yield JSON.parse(text);
    }
  }
  if (length - start > 0) {
    throw new TypeError(
      `Cannot read analyzer state chunks: ${length - start} bytes after the last whole frame`,
    );
  }
}

/**
 * Restores a state from the chunks {@linkcode stateToChunks} wrote.
 *
 * @param chunks The bytes, in pieces of any size (e.g. as a store returns them).
 * @param options Compression and the analyzer options to restore with.
 * @returns The state, equal to the one saved.
 * @throws {TypeError} The bytes are not a complete saved state (truncated, corrupt, wrong
 *   format).
 * @throws {ConfigError} `options.analyzer` is incompatible with the saved state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AnalyzerState } from "./state.ts";
 * import { stateFromChunks, stateToChunks } from "./state_chunks.ts";
 * const chunks = await Array.fromAsync(stateToChunks(new AnalyzerState({ nTop: 4 })));
 * const state = await stateFromChunks(chunks);
 * assert(state.options.nTop === 4);
 * ```
 */
export async function stateFromChunks(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: StateFromChunksOptions = {},
): Promise<AnalyzerState> {
  const fail = (what: string): never => {
    throw new TypeError(`Cannot read analyzer state chunks: ${what}`);
  };
  let bytes: AsyncIterable<Uint8Array> = ReadableStream.from(chunks);
  if (options.gzip !== false) {
    bytes = ReadableStream.from(chunks).pipeThrough(gzipStream("decompress"));
  }
  let header: Record<string, unknown> | undefined;
  let counts: Record<string, number> | undefined;
  const lists: Lists = { candidates: [], features: [], nonActivating: [] };
  let ended = false;
  try {
    for await (const f of readFrames(bytes)) {
      if (typeof f !== "object" || f === null) fail("a frame is not a JSON object");
      const o = f as Record<string, unknown>;
      if (ended) fail("a frame after the end frame");
      if (header === undefined) {
        if (o.format !== CHUNKS_FORMAT || o.version !== CHUNKS_VERSION) {
          fail(`expected format "${CHUNKS_FORMAT}" version ${CHUNKS_VERSION}`);
        }
        header = o.header as Record<string, unknown>;
        counts = o.counts as Record<string, number>;
        if (typeof header !== "object" || header === null || typeof counts !== "object") {
          fail("the first frame has no header and counts");
        }
        continue;
      }
      if (o.end === true) {
        ended = true;
        continue;
      }
      const name = LISTS.find((n) => Array.isArray(o[n]));
      if (name === undefined) fail(`unknown frame with keys ${Object.keys(o).join(", ")}`);
      const list = lists[name!] as unknown[];
      for (const item of o[name!] as unknown[]) list.push(item);
    }
  } catch (error) {
    if (error instanceof TypeError && error.message.startsWith("Cannot read analyzer state")) {
      throw error;
    }
    const why = error instanceof Error ? error.message : String(error);
    throw new TypeError(`Cannot read analyzer state chunks: ${why}`, { cause: error });
  }
  if (header === undefined) fail("no frame (the data is empty)");
  if (!ended) fail("no end frame (the data is truncated)");
  for (const name of LISTS) {
    if (lists[name].length !== counts![name]) {
      fail(`${name} has ${lists[name].length} entries, the header says ${counts![name]}`);
    }
  }
  return AnalyzerState.fromJSON({ ...header, ...lists }, options.analyzer);
}
