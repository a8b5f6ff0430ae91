/**
 * Direct Logit Attribution of SAE features: each decoder row W_dec[f] is treated as a
 * residual-stream vector and run through the model's own final norm and unembedding (the
 * {@linkcode UnembeddingTail} of its ONNX graph), in chunks of rows through ONNX Runtime; each
 * feature's logits are reduced at once to the top tokens on both sides and a histogram, so the
 * `d_sae × vocab` matrix never exists.
 *
 * What is computed, exactly: `logits_f = tail(W_dec[f])`, i.e. for a LayerNorm model
 * `LN(W_dec[f]) · W_U + b_U` with the norm's own centering, scaling, weight and bias (RMSNorm
 * likewise; a soft-cap inside the graph is applied too), then, with `center` (the default), minus
 * its mean over the vocabulary. That equals what the Python tool (`lm-saes`,
 * `DirectLogitAttributor`) computes on a TransformerLens model with processed weights:
 * `fold_ln` turns `ln_final` into `LayerNormPre`/`RMSNormPre`, which still normalizes each vector,
 * and moves the weight and bias into `W_U`/`b_U`; `center_unembed` then removes the vocabulary
 * mean of `W_U` and `b_U`, which is the same as centering the logits. With `center: false` it
 * equals the unprocessed model (`from_pretrained_no_processing`, which recent `lm-saes` versions
 * load). TransformerLens applies a soft-cap outside `unembed`, so on soft-capped models (Gemma 2)
 * the values differ from the Python tool's by the tanh; the order of the tokens does not.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import { OnnxModel } from "../onnx/mod.ts";
import {
  createSession,
  halfToFloat,
  type OrtSession,
  type SessionOptions,
  type Tensor,
  tensor,
  type TensorType,
} from "../ort/mod.ts";
import type { FeatureLogits } from "../types.ts";
import { floatToHalf } from "./_half.ts";
import { summarizeRow } from "./_summarize.ts";
import {
  type FindTailOptions,
  findUnembeddingTail,
  type ShapeInput,
  type UnembeddingTail,
} from "./tail.ts";

/** Bytes of logits one chunk may take when no `chunkSize` is given (64 MiB). */
export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;

/** Options of {@linkcode DlaComputer.create}; every field optional. */
export interface DlaOptions {
  /** Tokens kept on each side (`top_positive`, `top_negative`). Default 10. */
  topK?: number;
  /** Subtract each feature's mean logit over the vocabulary. Default `true`. */
  center?: boolean;
  /** Bins of each feature's logit histogram. Default 50. */
  bins?: number;
  /**
   * Decoder rows per ONNX Runtime run. Default: as many as fit in 64 MiB of float32 logits
   * (`⌊64 MiB / (4 · vocab)⌋`, e.g. 333 for a vocabulary of 50,304), at least 1.
   */
  chunkSize?: number;
  /** Display strings by token id; ids it does not cover get `""`. Default: none. */
  vocab?: readonly string[];
  /** The SAE's `d_model`, checked against the residual stream's width. Default: not checked. */
  dModel?: number;
  /** Where the tail starts and ends, when it cannot be found from the graph. */
  tail?: FindTailOptions;
  /** ONNX Runtime session settings (device, threads). */
  session?: SessionOptions;
}

/** {@linkcode DlaOptions} with every default applied. */
export interface ResolvedDlaOptions {
  topK: number;
  center: boolean;
  bins: number;
  chunkSize: number;
  vocab: readonly string[] | undefined;
}

/**
 * Runs decoder rows through a model's unembedding tail and reduces each feature's logits.
 *
 * Release it with {@linkcode DlaComputer.release} or `await using`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DlaComputer } from "./computer.ts";
 * await using dla = await DlaComputer.create(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   { topK: 3, session: { intraOpThreads: 1 } },
 * );
 * const rows = new Float32Array(2 * dla.dModel).map((_, i) => Math.sin(i));
 * const [a, b] = await dla.computeChunk(rows);
 * assert.equal(a!.top_positive.length, 3);
 * assert.equal(b!.histogram.counts.length, 50);
 * ```
 */
export class DlaComputer implements AsyncDisposable {
  /** The tail the session runs. */
  readonly tail: UnembeddingTail;
  /** Width of the residual stream (and of each decoder row). */
  readonly dModel: number;
  /** Number of logits per row. */
  readonly vocabSize: number;
  /** The options in force. */
  readonly options: ResolvedDlaOptions;
  #session: OrtSession | null;
  #runs = 1; // the check at creation

  private constructor(
    tail: UnembeddingTail,
    session: OrtSession,
    dModel: number,
    vocabSize: number,
    options: ResolvedDlaOptions,
  ) {
    this.tail = tail;
    this.#session = session;
    this.dModel = dModel;
    this.vocabSize = vocabSize;
    this.options = options;
  }

  /**
   * Finds the unembedding tail of a model, opens an ONNX Runtime session on it and checks it
   * with one run.
   *
   * @param model The language model (`OnnxModel` or `.onnx` path), or a tail found before.
   * @param options Top-k, centering, chunk size, vocabulary, the SAE's d_model, session settings.
   * @returns The computer; release it.
   * @throws {ConfigError} when the tail cannot be found, when `dModel` differs from the residual
   *   stream's width, when `topK` is not a positive integer or exceeds the vocabulary, or when
   *   `chunkSize`/`bins` are not positive integers.
   */
  static async create(
    model: OnnxModel | string | UnembeddingTail,
    options: DlaOptions = {},
  ): Promise<DlaComputer> {
    const topK = options.topK ?? 10;
    const bins = options.bins ?? 50;
    positiveInteger("top_k", topK);
    positiveInteger("bins", bins);
    if (options.chunkSize !== undefined) positiveInteger("chunk_size", options.chunkSize);
    const tail = typeof model === "string"
      ? findUnembeddingTail(await OnnxModel.load(model), options.tail)
      : model instanceof OnnxModel
      ? findUnembeddingTail(model, options.tail)
      : model;
    const source = tail.model.source;
    if (options.dModel !== undefined && tail.dModel !== null && options.dModel !== tail.dModel) {
      throw dModelError(options.dModel, tail);
    }
    const dModel = tail.dModel ?? options.dModel;
    if (dModel === undefined) {
      throw new ConfigError(
        `Cannot tell the width of the residual stream "${tail.residTensor}" of ONNX model ` +
          `${source}: the graph records no shape for it; give the SAE's d_model`,
      );
    }
    if (tail.vocabSize !== null) checkTopK(topK, tail.vocabSize, source);
    const session = await createSession(tail.model, options.session ?? {});
    let vocabSize: number;
    try {
      vocabSize = await probe(session, tail, dModel, options.dModel !== undefined);
      checkTopK(topK, vocabSize, source);
    } catch (e) {
      await session.release();
      throw e;
    }
    const chunkSize = options.chunkSize ??
      Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / (4 * vocabSize)));
    return new DlaComputer(tail, session, dModel, vocabSize, {
      topK,
      center: options.center ?? true,
      bins,
      chunkSize,
      vocab: options.vocab,
    });
  }

  /** Whether the session has been released. */
  get released(): boolean {
    return this.#session === null;
  }

  /** How many times the session has run (the check at creation included). */
  get runs(): number {
    return this.#runs;
  }

  /**
   * The raw logits of a chunk of rows: `[n × vocab]`, row-major, not centered.
   *
   * @param rows `n × dModel` values, row-major (any `n`, but `chunkSize` bounds the memory).
   * @throws {RangeError} when `rows.length` is not a multiple of `dModel`.
   */
  async logits(rows: Float32Array): Promise<Float32Array> {
    const session = this.#session;
    if (!session) throw new Error("Cannot run a DlaComputer that was released");
    const n = rowCount(rows.length, this.dModel);
    this.#runs++;
    return await runTail(session, this.tail, rows, n, this.dModel, this.vocabSize);
  }

  /**
   * Reduces raw logits (from {@linkcode logits}) feature by feature.
   *
   * @param logits `n × vocab` values.
   * @param firstIndex Feature index of the first row, for messages. Default 0.
   * @returns One result per row.
   * @throws {RangeError} when a row holds NaN or an infinity (e.g. a broken decoder row).
   */
  summarize(logits: Float32Array, firstIndex = 0): FeatureLogits[] {
    const n = rowCount(logits.length, this.vocabSize);
    const out: FeatureLogits[] = new Array(n);
    for (let r = 0; r < n; r++) {
      try {
        out[r] = summarizeRow(logits, r * this.vocabSize, this.vocabSize, this.options);
      } catch (e) {
        throw new RangeError(`DLA of feature ${firstIndex + r}: ${(e as Error).message}`);
      }
    }
    return out;
  }

  /**
   * The DLA of a chunk of decoder rows.
   *
   * @param rows `n × dModel` values, row-major.
   * @param firstIndex Feature index of the first row, for messages. Default 0.
   * @returns One result per row, in order.
   */
  async computeChunk(rows: Float32Array, firstIndex = 0): Promise<FeatureLogits[]> {
    return this.summarize(await this.logits(rows), firstIndex);
  }

  /** Frees the session. Safe to call more than once. */
  async release(): Promise<void> {
    const s = this.#session;
    this.#session = null;
    if (s) await s.release();
  }

  /** Same as {@linkcode release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

function positiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new ConfigError(`DLA ${name} must be a positive integer, got ${value}`);
  }
}

function checkTopK(topK: number, vocabSize: number, source: string): void {
  if (topK > vocabSize) {
    throw new ConfigError(
      `DLA top_k ${topK} is larger than the vocabulary of ONNX model ${source} ` +
        `(${vocabSize} tokens)`,
    );
  }
}

function dModelError(dModel: number, tail: UnembeddingTail, why = ""): ConfigError {
  return new ConfigError(
    `SAE d_model ${dModel} does not match ONNX model ${tail.model.source}: its residual ` +
      `stream "${tail.residTensor}" ${
        tail.dModel !== null ? `has width ${tail.dModel}` : `does not take rows of that width`
      }${why}`,
  );
}

function rowCount(length: number, width: number): number {
  const n = length / width;
  if (!Number.isInteger(n)) {
    throw new RangeError(`DLA: ${length} values are not a whole number of rows of ${width}`);
  }
  return n;
}

async function runTail(
  session: OrtSession,
  tail: UnembeddingTail,
  rows: Float32Array,
  n: number,
  dModel: number,
  vocabSize: number | null,
): Promise<Float32Array> {
  const leading = tail.layout === "batch" ? [n, 1] : tail.layout === "sequence" ? [1, n] : [n];
  const dims = [...leading, dModel];
  const feeds: Record<string, Tensor> = {
    [tail.residTensor]: tail.elemType === "float16"
      ? tensor("float16", floatToHalf(rows), dims)
      : tensor("float32", rows, dims),
  };
  for (const input of tail.shapeInputs) feeds[input.name] = zeros(input, leading);
  const result = await session.run(feeds, [tail.logitsTensor]);
  const out = result[tail.logitsTensor]!;
  const data = out.type === "float16"
    ? halfToFloat(out.data as Uint16Array)
    : out.type === "float32"
    ? out.data as Float32Array
    : Float32Array.from(out.data as Float64Array);
  const last = out.dims[out.dims.length - 1] ?? 0;
  if (data.length !== n * last || (vocabSize !== null && last !== vocabSize)) {
    throw new RangeError(
      `DLA: the unembedding tail returned logits of shape [${out.dims}] for ${n} rows`,
    );
  }
  return data;
}

/** Zeros for an input the tail reads for its shape only, shaped to match the residual rows. */
function zeros(input: ShapeInput, leading: readonly number[]): Tensor {
  const dims = input.dims.map((d) => typeof d === "number" ? d : leading[d.residAxis]!);
  const size = dims.reduce((a, b) => a * b, 1);
  const type = input.elemType as TensorType;
  const data = type === "int64"
    ? new BigInt64Array(size)
    : type === "int32"
    ? new Int32Array(size)
    : type === "int8"
    ? new Int8Array(size)
    : type === "uint8" || type === "bool"
    ? new Uint8Array(size)
    : type === "float16"
    ? new Uint16Array(size)
    : type === "float64"
    ? new Float64Array(size)
    : new Float32Array(size);
  return tensor(type, data, dims);
}

/** One run on zero rows: checks that the tail takes rows of `dModel` and tells the vocabulary. */
async function probe(
  session: OrtSession,
  tail: UnembeddingTail,
  dModel: number,
  fromSae: boolean,
): Promise<number> {
  let logits: Float32Array;
  try {
    // Two rows, so that a tail that only works for one (a fixed size-1 axis) fails here.
    logits = await runTail(session, tail, new Float32Array(2 * dModel), 2, dModel, null);
  } catch (e) {
    const first = String((e as Error).message).split("\n")[0];
    if (fromSae) throw dModelError(dModel, tail, ` (ONNX Runtime: ${first})`);
    throw new ConfigError(
      `Cannot run the unembedding tail of ONNX model ${tail.model.source} from ` +
        `"${tail.residTensor}" on rows of width ${dModel}: ${first}`,
      { cause: e },
    );
  }
  if (logits.length === 0) {
    throw new ConfigError(
      `The unembedding tail of ONNX model ${tail.model.source} returned no logits`,
    );
  }
  return logits.length / 2;
}
