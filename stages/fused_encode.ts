/**
 * The fused model+SAE stage: context batches in, sparse feature batches out, the language model
 * and the SAE encoder in one ONNX Runtime session (the LM pruned above the hook, the encoder
 * appended at the hook tensor, only the active entries as outputs).
 *
 * @module
 */
import type { OnnxModel } from "../lib/onnx/mod.ts";
import type { Device } from "../lib/ort/mod.ts";
import {
  FusedSaeEncoder,
  loadSae,
  type LoadSaeOptions,
  type SaeDescription,
} from "../lib/sae/mod.ts";
import type { ContextBatch, FeatureBatch } from "../lib/types.ts";
import { resourceStage } from "./_resource_stage.ts";

export { canFuse, type FuseCheck } from "../lib/sae/mod.ts";

/**
 * Options of {@linkcode fusedEncode}: an open `encoder`, or a `model` and an `sae` for the stage to
 * open one.
 */
export interface FusedEncodeOptions {
  /** An open fused encoder. The caller owns it unless `ownEncoder` is true. */
  encoder?: FusedSaeEncoder;
  /** The language model: an `OnnxModel`, a `.onnx` path or a model folder. */
  model?: OnnxModel | string;
  /** The SAE (loaded, or its folder). */
  sae?: SaeDescription | string;
  /** How to load `sae` when it is a folder. */
  loadOptions?: LoadSaeOptions;
  /** Hook point (TransformerLens name or tensor name); default: the SAE's `hookPointIn`. */
  hookPoint?: string;
  /** `"cpu"` (default) or `"cuda"`. */
  device?: Device;
  /** Threads within an operator; default: one per core. */
  intraOpThreads?: number;
  /** Upper bound on tokens × d_sae per session run (contexts are split); default 2^27. */
  maxElementsPerRun?: number;
  /**
   * Whether the stage releases the encoder when it ends (flush, cancel, abort, error). Default:
   * `true` when the stage opened it, `false` for a given `encoder`.
   */
  ownEncoder?: boolean;
}

/**
 * Runs the language model and the SAE encoder on each context batch in one session run and
 * emits the active features: the same `FeatureBatch` as model hook → SAE encode, without the
 * `[tokens, d_model]` activations or a dense `[tokens, d_sae]` matrix ever reaching JavaScript.
 * `attention` is fed as the model's attention mask; tokens with `mask = 0` produce no entries.
 * Use {@linkcode canFuse} to choose between this stage and the two separate ones.
 *
 * Streams: one batch is queued on each side and the model runs only when downstream reads. An
 * encoder the stage owns is opened when the stream starts (an unknown hook or a d_model that
 * differs from the hook's width errors the stream with a ConfigError) and released when the input
 * ends, when the output is cancelled, when the input is aborted and when a batch fails (the error
 * then reaches both sides).
 *
 * @param options the encoder, or the model, SAE and hook point
 * @returns a `TransformStream<ContextBatch, FeatureBatch>`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fusedEncode } from "./fused_encode.ts";
 * import type { SaeDescription } from "../lib/sae/mod.ts";
 * const sae = {
 *   path: "demo", dModel: 64, dSae: 16, activation: { kind: "relu" },
 *   hookPointIn: "blocks.1.hook_resid_post",
 *   W_enc: new Float32Array(64 * 16).fill(0.01), b_enc: new Float32Array(16).fill(1),
 *   b_dec: new Float32Array(64), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * const batch = {
 *   batchSize: 1, contextSize: 3, tokens: new Int32Array([0, 5, 6]),
 *   mask: new Uint8Array([0, 1, 1]), attention: new Uint8Array([1, 1, 1]),
 *   origins: [{ source: "demo", shard: 0, row: 0 }],
 * };
 * const [out] = await Array.fromAsync(ReadableStream.from([batch]).pipeThrough(fusedEncode({
 *   model: new URL("../fixtures/tiny-neox", import.meta.url).pathname,
 *   sae,
 *   intraOpThreads: 1,
 * })));
 * assert.equal(out!.dSae, 16);
 * assert(out!.position.every((p) => p > 0));
 * ```
 */
export function fusedEncode(
  options: FusedEncodeOptions,
): TransformStream<ContextBatch, FeatureBatch> {
  if (!options.encoder && !(options.model && options.sae)) {
    throw new TypeError("fusedEncode(): give an encoder, or a model and an sae");
  }
  return resourceStage<FusedSaeEncoder, ContextBatch, FeatureBatch>({
    async open() {
      if (options.encoder) return options.encoder;
      const sae = typeof options.sae === "string"
        ? await loadSae(options.sae, options.loadOptions)
        : options.sae!;
      return await FusedSaeEncoder.create(options.model!, sae, options.hookPoint, {
        ...(options.device === undefined ? {} : { device: options.device }),
        ...(options.intraOpThreads === undefined ? {} : { intraOpThreads: options.intraOpThreads }),
        ...(options.maxElementsPerRun === undefined
          ? {}
          : { maxElementsPerRun: options.maxElementsPerRun }),
      });
    },
    own: options.ownEncoder ?? !options.encoder,
    async transform(encoder, batch, controller) {
      const { position, feature, value } = await encoder.encode(batch);
      const { batchSize, contextSize, tokens, mask, attention, origins } = batch;
      controller.enqueue({
        batchSize,
        contextSize,
        tokens,
        mask,
        attention,
        origins,
        dSae: encoder.sae.dSae,
        position,
        feature,
        value,
      });
    },
  });
}
