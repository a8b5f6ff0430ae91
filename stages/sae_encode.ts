/**
 * The SAE-encode stage: activation batches in, sparse feature batches out (the standalone ONNX
 * encoder; see `fused_encode.ts` for the fused model+SAE stage).
 *
 * @module
 */
import { ConfigError } from "../lib/errors.ts";
import type { Device } from "../lib/ort/mod.ts";
import {
  checkHookWidth,
  loadSae,
  type LoadSaeOptions,
  type SaeDescription,
  SaeEncoder,
} from "../lib/sae/mod.ts";
import type { ActivationBatch, ContextBatch, FeatureBatch } from "../lib/types.ts";
import { resourceStage } from "./_resource_stage.ts";

/** Options of {@linkcode saeEncode}: an open `encoder`, or an `sae` for the stage to open one. */
export interface SaeEncodeOptions {
  /** An open encoder. The caller owns it unless `ownEncoder` is true. */
  encoder?: SaeEncoder;
  /** The SAE (loaded, or its folder) to open an encoder for, when no `encoder` is given. */
  sae?: SaeDescription | string;
  /** How to load `sae` when it is a folder. */
  loadOptions?: LoadSaeOptions;
  /** Which activations of the batch to encode; default: the SAE's `hookPointIn`. */
  hookPoint?: string;
  /** `"cpu"` (default) or `"cuda"`, when the stage opens the encoder. */
  device?: Device;
  /** Threads within an operator, when the stage opens the encoder; default: one per core. */
  intraOpThreads?: number;
  /** Upper bound on tokens × d_sae per session run; default 2^27. */
  maxElementsPerRun?: number;
  /**
   * Whether the stage releases the encoder when it ends (flush, cancel, abort, error). Default:
   * `true` when the stage opened it, `false` for a given `encoder`.
   */
  ownEncoder?: boolean;
}

/** The `ContextBatch` part of a batch (drops the activations so that they can be freed). */
function contextOf(batch: ContextBatch): ContextBatch {
  const { batchSize, contextSize, tokens, mask, attention, origins } = batch;
  return { batchSize, contextSize, tokens, mask, attention, origins };
}

/**
 * Encodes the activations of each batch at the SAE's hook point with the standalone ONNX encoder.
 * Tokens with `mask = 0` (BOS, padding) produce no entries. Only the active entries leave ONNX
 * Runtime; the output batch carries the context fields and the COO arrays, not the activations.
 *
 * Streams: one batch is queued on each side and the encoder runs only when downstream reads. An
 * encoder the stage owns is released when the input ends, when the output is cancelled, when the
 * input is aborted and when a batch fails (the error then reaches both sides). A batch without
 * activations for the hook, or whose width differs from the SAE's d_model, fails with a
 * ConfigError.
 *
 * @param options the encoder or SAE, and the hook point
 * @returns a `TransformStream<ActivationBatch, FeatureBatch>`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { saeEncode } from "./sae_encode.ts";
 * import type { SaeDescription } from "../lib/sae/mod.ts";
 * const sae = {
 *   path: "demo", dModel: 2, dSae: 2, activation: { kind: "relu" }, hookPointIn: "h",
 *   W_enc: new Float32Array([1, -1, 1, 1]), b_enc: new Float32Array([0, 0.5]),
 *   b_dec: new Float32Array(2), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * const batch = {
 *   batchSize: 1, contextSize: 2, tokens: new Int32Array([0, 7]),
 *   mask: new Uint8Array([0, 1]), attention: new Uint8Array([1, 1]),
 *   origins: [{ source: "demo", shard: 0, row: 0 }],
 *   activations: { h: new Float32Array([9, 9, 1, 2]) }, dModel: { h: 2 },
 * };
 * const [out] = await Array.fromAsync(
 *   ReadableStream.from([batch]).pipeThrough(saeEncode({ sae, intraOpThreads: 1 })),
 * );
 * assert.equal([...out!.position].join(), "1,1");
 * assert.equal(out!.value[0], 3);
 * ```
 */
export function saeEncode(
  options: SaeEncodeOptions,
): TransformStream<ActivationBatch, FeatureBatch> {
  if (!options.encoder && !options.sae) {
    throw new TypeError("saeEncode(): give an encoder or an sae");
  }
  let hook = "";

  return resourceStage<SaeEncoder, ActivationBatch, FeatureBatch>({
    async open() {
      if (options.encoder) return options.encoder;
      const sae = typeof options.sae === "string"
        ? await loadSae(options.sae, options.loadOptions)
        : options.sae!;
      return await SaeEncoder.create(sae, {
        ...(options.device === undefined ? {} : { device: options.device }),
        ...(options.intraOpThreads === undefined ? {} : { intraOpThreads: options.intraOpThreads }),
        ...(options.maxElementsPerRun === undefined
          ? {}
          : { maxElementsPerRun: options.maxElementsPerRun }),
      });
    },
    own: options.ownEncoder ?? !options.encoder,
    start(encoder) {
      hook = options.hookPoint ?? encoder.sae.hookPointIn;
    },
    async transform(encoder, batch, controller) {
      const n = batch.batchSize * batch.contextSize;
      const acts = batch.activations[hook];
      if (acts === undefined) {
        throw new ConfigError(
          `saeEncode(): the batch has no activations for hook point "${hook}" (it has ${
            Object.keys(batch.activations).join(", ") || "none"
          })`,
        );
      }
      checkHookWidth(encoder.sae, batch.dModel[hook] ?? acts.length / Math.max(n, 1), hook);
      const { position, feature, value } = await encoder.encode(acts, n, batch.mask);
      controller.enqueue({
        ...contextOf(batch),
        dSae: encoder.sae.dSae,
        position,
        feature,
        value,
      });
    },
  });
}
