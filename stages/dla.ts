/**
 * The DLA stage: feature records in, the same records with `logits` (Direct Logit Attribution)
 * out.
 *
 * @module
 */
import { ConfigError } from "../lib/errors.ts";
import {
  DlaComputer,
  type FindTailOptions,
  type SaeDecoder,
  type UnembeddingTail,
} from "../lib/dla/mod.ts";
import type { OnnxModel, SessionOptions } from "../lib/onnx/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";

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
 * final norm and unembedding (see `DlaComputer`). A record that already has `logits` gets them
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
  const owns = options.ownComputer ?? !options.computer;
  let computer = options.computer;
  let chunkSize = 0;
  let buffer: FeatureRecord[] = [];
  let ended = false;

  const release = async () => {
    if (ended) return;
    ended = true;
    buffer = [];
    if (owns && computer) await computer.release();
  };

  const run = async (controller: TransformStreamDefaultController<FeatureRecord>) => {
    const records = buffer;
    buffer = [];
    const d = sae.dModel;
    const rows = new Float32Array(records.length * d);
    records.forEach((r, i) => {
      if (!Number.isInteger(r.index) || r.index < 0 || r.index >= sae.dSae) {
        throw new RangeError(
          `dla(): feature index ${r.index} of ${r.sae_series}/${r.sae_name} is out of range for ` +
            `SAE ${sae.path ?? ""} (d_sae ${sae.dSae})`,
        );
      }
      rows.set(sae.W_dec.subarray(r.index * d, (r.index + 1) * d), i * d);
    });
    const logits = await computer!.logits(rows);
    const V = computer!.vocabSize;
    records.forEach((r, i) => {
      const [summary] = computer!.summarize(logits.subarray(i * V, (i + 1) * V), r.index);
      controller.enqueue({ ...r, logits: summary! });
    });
  };

  return new TransformStream<FeatureRecord, FeatureRecord>({
    async start() {
      if (!computer) {
        const opts: Parameters<typeof DlaComputer.create>[1] = { dModel: sae.dModel };
        if (options.topK !== undefined) opts.topK = options.topK;
        if (options.center !== undefined) opts.center = options.center;
        if (options.bins !== undefined) opts.bins = options.bins;
        if (options.chunkSize !== undefined) opts.chunkSize = options.chunkSize;
        if (options.vocab !== undefined) opts.vocab = options.vocab;
        if (options.tail !== undefined) opts.tail = options.tail;
        if (options.session !== undefined) opts.session = options.session;
        computer = await DlaComputer.create(options.model!, opts);
      }
      if (computer.dModel !== sae.dModel) {
        await release();
        throw new ConfigError(
          `SAE d_model ${sae.dModel} does not match ONNX model ${computer.tail.model.source}: ` +
            `its residual stream "${computer.tail.residTensor}" has width ${computer.dModel}`,
        );
      }
      chunkSize = options.chunkSize ?? computer.options.chunkSize;
    },
    async transform(record, controller) {
      try {
        buffer.push(record);
        if (buffer.length >= chunkSize) await run(controller);
      } catch (e) {
        await release();
        throw e;
      }
    },
    async flush(controller) {
      try {
        if (buffer.length > 0) await run(controller);
      } finally {
        await release();
      }
    },
    cancel: release,
  });
}
