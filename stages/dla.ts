/**
 * The DLA stage: feature records in, the same records with `logits` (Direct Logit Attribution)
 * out.
 *
 * @module
 */
import { ConfigError } from "../lib/errors.ts";
import {
  attributeSae,
  checkDecoderWidth,
  type DlaComputer,
  type FindTailOptions,
  openDlaComputer,
  type SaeDecoder,
  type UnembeddingTail,
} from "../lib/dla/mod.ts";
import type { OnnxModel } from "../lib/onnx/mod.ts";
import type { SessionOptions } from "../lib/ort/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { resourceStage } from "./_resource_stage.ts";

/**
 * Options of {@linkcode dla}: the SAE, and either an open `computer` or a `model` for the stage
 * to open one with the DLA settings (`topK`, `center`, `bins`, `vocab`, `tail`, `session` apply
 * only then: a given computer keeps its own).
 */
export interface DlaStageOptions {
  /** The SAE whose decoder rows are attributed (a `SaeDescription` will do). Required. */
  sae: SaeDecoder;
  /** An open computer (`DlaComputer.create`). The caller owns it unless `ownComputer` is true. */
  computer?: DlaComputer;
  /** The language model (`OnnxModel`, `.onnx` path, or its tail), when no `computer` is given. */
  model?: OnnxModel | string | UnembeddingTail;
  /** Tokens kept on each side. Default 10. */
  topK?: number;
  /** Center each feature's logits over the vocabulary. Default `true`. */
  center?: boolean;
  /** Histogram bins. Default 50. */
  bins?: number;
  /**
   * Records gathered into one ONNX Runtime run. Default: the computer's chunk size (64 MiB of
   * logits, e.g. 333 records for a vocabulary of 50,304).
   */
  chunkSize?: number;
  /** Token display strings by id. */
  vocab?: readonly string[];
  /** Where the tail starts and ends, when it cannot be found from the graph. */
  tail?: FindTailOptions;
  /** ONNX Runtime session settings. */
  session?: SessionOptions;
  /**
   * Whether the stage releases the computer when it ends (flush, cancel, abort, error). Default:
   * `true` when the stage opened it from `model`, `false` for a given `computer`.
   */
  ownComputer?: boolean;
}

/**
 * Adds the Direct Logit Attribution of each record's feature (`logits`: top positive and
 * negative tokens, logit histogram), computed from the SAE's decoder row through the model's own
 * final norm and unembedding by the DLA driver (`attributeSae`, one run per chunk). A record that already has `logits` gets them
 * replaced, so running the stage twice gives the same records.
 *
 * Streams: records are gathered into chunks of `chunkSize` and run through the model together;
 * the chunk is emitted, in input order, once it is computed, and the last partial chunk when the
 * input ends. The stage takes the next record only when it has room, so at most one chunk of
 * records is held. A computer the stage owns is released when the input ends, when the output is
 * cancelled, when the input is aborted, and when a chunk fails (the error then reaches both
 * sides). A computer opened from `model` is opened when the stream starts; a failure there (no
 * tail found, d_model mismatch, `topK` over the vocabulary) errors the stream with a ConfigError.
 *
 * @param options The SAE, the computer or model, and the DLA settings.
 * @returns A `TransformStream<FeatureRecord, FeatureRecord>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dla } from "./dla.ts";
 * const dModel = 64;
 * const sae = { W_dec: new Float32Array(2 * dModel).map((_, i) => Math.sin(i)), dModel, dSae: 2 };
 * const records = [0, 1].map((index) => ({ sae_name: "s", sae_series: "x", index, analyses: {} }));
 * const out = await Array.fromAsync(ReadableStream.from(records).pipeThrough(dla({
 *   sae,
 *   model: new URL("../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   topK: 3,
 * })));
 * assert.equal(out[1]!.index, 1);
 * assert.equal(out[1]!.logits!.top_positive.length, 3);
 * ```
 */
export function dla(options: DlaStageOptions): TransformStream<FeatureRecord, FeatureRecord> {
  if (!options.computer && !options.model) throw new TypeError("dla(): give a computer or a model");
  const { sae } = options;
  if (sae.W_dec.length !== sae.dSae * sae.dModel) {
    throw new RangeError(
      `dla(): W_dec has ${sae.W_dec.length} values, expected d_sae ${sae.dSae} × d_model ` +
        `${sae.dModel}`,
    );
  }
  if (
    options.chunkSize !== undefined &&
    (!Number.isInteger(options.chunkSize) || options.chunkSize < 1)
  ) {
    throw new ConfigError(`DLA chunk_size must be a positive integer, got ${options.chunkSize}`);
  }
  let chunkSize = 0;
  let buffer: FeatureRecord[] = [];

  // One chunk of records through the DLA driver, emitted in input order.
  const run = async (
    computer: DlaComputer,
    controller: TransformStreamDefaultController<FeatureRecord>,
  ) => {
    const records = buffer;
    buffer = [];
    for (const r of records) {
      if (!Number.isInteger(r.index) || r.index < 0 || r.index >= sae.dSae) {
        throw new RangeError(
          `dla(): feature index ${r.index} of ${r.sae_series}/${r.sae_name} is out of range for ` +
            `SAE ${sae.path ?? ""} (d_sae ${sae.dSae})`,
        );
      }
    }
    const results = attributeSae({
      sae,
      model: computer,
      features: records.map((r) => r.index),
      chunkSize: records.length,
    });
    let i = 0;
    for await (const { logits } of results) controller.enqueue({ ...records[i++]!, logits });
  };

  return resourceStage<DlaComputer, FeatureRecord, FeatureRecord>({
    open: () => options.computer ?? openDlaComputer(options.model!, options),
    own: options.ownComputer ?? !options.computer,
    start(computer) {
      checkDecoderWidth(sae, computer);
      chunkSize = options.chunkSize ?? computer.options.chunkSize;
    },
    async transform(computer, record, controller) {
      buffer.push(record);
      if (buffer.length >= chunkSize) await run(computer, controller);
    },
    async flush(computer, controller) {
      if (buffer.length > 0) await run(computer, controller);
    },
  });
}
