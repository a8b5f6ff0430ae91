/**
 * What both stores share for analyzer states: key validation and cutting a byte stream into
 * stored pieces.
 *
 * @module
 */

import { checkAnalysisName } from "./_common.ts";
import type { AnalyzerStateKey } from "./types.ts";

/**
 * Checks an analyzer state key.
 *
 * @throws {TypeError} When the series or SAE name is not a string.
 * @throws {RangeError} When shard/count are not integers with `0 <= shard < count`.
 * @throws {ConfigError} For an empty analysis name.
 */
export function checkStateKey(key: AnalyzerStateKey): AnalyzerStateKey {
  if (typeof key.sae_series !== "string" || typeof key.sae_name !== "string") {
    throw new TypeError("Invalid analyzer state key: sae_series and sae_name must be strings");
  }
  checkAnalysisName(key.analysis);
  if (
    !Number.isSafeInteger(key.count) || key.count < 1 || !Number.isSafeInteger(key.shard) ||
    key.shard < 0 || key.shard >= key.count
  ) {
    throw new RangeError(
      `Invalid analyzer state shard ${key.shard}/${key.count}: expected 0 <= shard < count`,
    );
  }
  return key;
}

/**
 * Re-cuts a byte stream into pieces of exactly `size` bytes (the last one shorter), copying
 * only as much as one piece.
 */
export async function* pieces(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let piece = new Uint8Array(size);
  let used = 0;
  for await (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError("Cannot store analyzer state: a chunk is not a Uint8Array");
    }
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(size - used, chunk.length - at);
      piece.set(chunk.subarray(at, at + n), used);
      used += n;
      at += n;
      if (used === size) {
        yield piece;
        piece = new Uint8Array(size);
        used = 0;
      }
    }
  }
  if (used > 0) yield piece.slice(0, used);
}
