/**
 * The DLA driver: decoder rows of an SAE (all, or the features asked for) through a
 * {@linkcode DlaComputer}, chunk by chunk. The `dla` runner runs it over a whole SAE; the `dla()`
 * stage runs it on each chunk of records.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { OnnxModel } from "../onnx/mod.ts";
import type { SessionOptions } from "../ort/mod.ts";
import type { FeatureLogits } from "../types.ts";
import { DlaComputer, type DlaOptions } from "./computer.ts";
import type { FindTailOptions, UnembeddingTail } from "./tail.ts";

/** The part of an SAE that DLA reads (a `SaeDescription` has it). */
export interface SaeDecoder {
  /** Decoder weights `[dSae × dModel]`, row-major. */
  W_dec: Float32Array;
  /** Width of each decoder row. */
  dModel: number;
  /** Number of features. */
  dSae: number;
  /** Where the SAE came from, for messages. */
  path?: string;
}

/** Settings of {@linkcode attributeSae}. */
export interface AttributeSaeOptions {
  /** The SAE (its decoder). */
  sae: SaeDecoder;
  /** The language model (`OnnxModel` or `.onnx` path), or its tail, or an open computer. */
  model: OnnxModel | string | UnembeddingTail | DlaComputer;
  /** Tokens kept on each side. Default 10. */
  topK?: number;
  /** Center each feature's logits over the vocabulary. Default `true`. */
  center?: boolean;
  /** Histogram bins. Default 50. */
  bins?: number;
  /**
   * Rows per ONNX Runtime run, also with an open computer. Default: the computer's chunk size
   * (64 MiB of logits).
   */
  chunkSize?: number;
  /** Token display strings by id. */
  vocab?: readonly string[];
  /** Only these features, in this order. Default: all, in index order. */
  features?: readonly number[];
  /** Where the tail starts and ends, when it cannot be found from the graph. */
  tail?: FindTailOptions;
  /** ONNX Runtime session settings. */
  session?: SessionOptions;
}

/** One feature's DLA. */
export interface FeatureDla {
  /** Feature index. */
  index: number;
  /** Its logits summary. */
  logits: FeatureLogits;
}

/**
 * Yields the DLA of every feature of an SAE (or of `features`), in order.
 *
 * Rows are run `chunkSize` at a time; while one chunk is being reduced, ONNX Runtime already
 * computes the next, so at most two chunks of logits exist at once. The session is opened when
 * iteration starts and released when it ends, also when the consumer stops early or an error is
 * thrown (a computer passed in `model` is left open: its owner releases it).
 *
 * @param options The SAE, the model and the DLA settings.
 * @returns The features' DLA, in order.
 * @throws {ConfigError} for an SAE whose d_model differs from the model's, a model without a
 *   findable tail, `topK` larger than the vocabulary, or a feature index out of range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { attributeSae } from "./attribute.ts";
 * const dModel = 64;
 * const W_dec = new Float32Array(3 * dModel).map((_, i) => Math.cos(i));
 * const got = await Array.fromAsync(attributeSae({
 *   sae: { W_dec, dModel, dSae: 3 },
 *   model: new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   topK: 5,
 *   session: { intraOpThreads: 1 },
 * }));
 * assert.equal(got.length, 3);
 * assert.equal(got[2]!.index, 2);
 * assert.equal(got[0]!.logits.top_positive.length, 5);
 * ```
 */
export async function* attributeSae(options: AttributeSaeOptions): AsyncGenerator<FeatureDla> {
  const { sae } = options;
  if (sae.W_dec.length !== sae.dSae * sae.dModel) {
    throw new ConfigError(
      `SAE ${sae.path ?? ""}: W_dec has ${sae.W_dec.length} values, expected d_sae ${sae.dSae} ` +
        `× d_model ${sae.dModel}`.trimStart(),
    );
  }
  const features = options.features ?? null;
  if (features) {
    for (const f of features) {
      if (!Number.isInteger(f) || f < 0 || f >= sae.dSae) {
        throw new ConfigError(
          `DLA: feature index ${f} is out of range for SAE ${sae.path ?? ""} (d_sae ${sae.dSae})`,
        );
      }
    }
  }
  if (options.chunkSize !== undefined) checkChunkSize(options.chunkSize);
  const owned = !(options.model instanceof DlaComputer);
  const computer = options.model instanceof DlaComputer
    ? options.model
    : await openDlaComputer(options.model, options);
  let pending: Promise<Float32Array> | null = null;
  try {
    checkDecoderWidth(sae, computer);
    const total = features ? features.length : sae.dSae;
    const size = options.chunkSize ?? computer.options.chunkSize;
    const d = sae.dModel;
    const rowsOf = (start: number, end: number): Float32Array => {
      if (!features) return sae.W_dec.subarray(start * d, end * d);
      const rows = new Float32Array((end - start) * d);
      for (let i = start; i < end; i++) {
        const f = features[i]!;
        rows.set(sae.W_dec.subarray(f * d, (f + 1) * d), (i - start) * d);
      }
      return rows;
    };
    const indexOf = (i: number) => features ? features[i]! : i;
    let start = 0;
    pending = total > 0 ? computer.logits(rowsOf(0, Math.min(size, total))) : null;
    while (pending) {
      const end = Math.min(start + size, total);
      const logits = await pending;
      // Start the next chunk before reducing this one: ONNX Runtime computes on its own threads.
      pending = end < total ? computer.logits(rowsOf(end, Math.min(end + size, total))) : null;
      pending?.catch(() => {}); // reported when awaited; not unhandled if we stop first
      const V = computer.vocabSize;
      for (let r = 0; r < end - start; r++) {
        const index = indexOf(start + r);
        const [summary] = computer.summarize(logits.subarray(r * V, (r + 1) * V), index);
        yield { index, logits: summary! };
      }
      start = end;
    }
  } finally {
    // A run still in flight (the consumer stopped early) must end before its session goes.
    if (pending) await pending.catch(() => {});
    if (owned) await computer.release();
  }
}

/**
 * Opens a {@linkcode DlaComputer} for an SAE's decoder rows with the DLA settings (the SAE's
 * d_model is checked against the model's residual stream). Release it.
 *
 * @param model The language model (`OnnxModel` or `.onnx` path), or its tail.
 * @param options The SAE and the DLA settings (`topK`, `center`, `bins`, `chunkSize`, `vocab`,
 *   `tail`, `session`).
 * @returns The computer.
 * @throws {ConfigError} for an SAE whose d_model differs from the model's, a model without a
 *   findable tail, or `topK` larger than the vocabulary.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDlaComputer } from "./attribute.ts";
 * const sae = { W_dec: new Float32Array(64), dModel: 64, dSae: 1 };
 * await using computer = await openDlaComputer(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   { sae, topK: 3, session: { intraOpThreads: 1 } },
 * );
 * assert.equal(computer.options.topK, 3);
 * ```
 */
export function openDlaComputer(
  model: OnnxModel | string | UnembeddingTail,
  options: Omit<AttributeSaeOptions, "model" | "features">,
): Promise<DlaComputer> {
  const out: DlaOptions = { dModel: options.sae.dModel };
  if (options.topK !== undefined) out.topK = options.topK;
  if (options.center !== undefined) out.center = options.center;
  if (options.bins !== undefined) out.bins = options.bins;
  if (options.chunkSize !== undefined) out.chunkSize = options.chunkSize;
  if (options.vocab !== undefined) out.vocab = options.vocab;
  if (options.tail !== undefined) out.tail = options.tail;
  if (options.session !== undefined) out.session = options.session;
  return DlaComputer.create(model, out);
}

/**
 * Checks that a computer takes rows of an SAE's width (its residual stream has the SAE's
 * d_model).
 *
 * @param sae The SAE (its decoder).
 * @param computer An open computer.
 * @throws {ConfigError} naming both widths when they differ.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkDecoderWidth, DlaComputer } from "./mod.ts";
 * import { ConfigError } from "../errors.ts";
 * await using computer = await DlaComputer.create(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   { session: { intraOpThreads: 1 } },
 * );
 * checkDecoderWidth({ W_dec: new Float32Array(64), dModel: 64, dSae: 1 }, computer);
 * assert.throws(
 *   () => checkDecoderWidth({ W_dec: new Float32Array(48), dModel: 48, dSae: 1 }, computer),
 *   ConfigError,
 * );
 * ```
 */
export function checkDecoderWidth(sae: SaeDecoder, computer: DlaComputer): void {
  if (computer.dModel !== sae.dModel) {
    throw new ConfigError(
      `SAE d_model ${sae.dModel} does not match ONNX model ${computer.tail.model.source}: its ` +
        `residual stream "${computer.tail.residTensor}" has width ${computer.dModel}`,
    );
  }
}

function checkChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < 1) {
    throw new ConfigError(`DLA chunk_size must be a positive integer, got ${chunkSize}`);
  }
}
