/**
 * Chooses and opens the model + SAE encode part of the analyze pipeline: the fused graph (one
 * ONNX Runtime session from token ids to sparse feature activations) when the hook point and the
 * SAE allow it, else the model-hook stage followed by the standalone SAE encoder.
 *
 * Everything is opened here, before any data flows, so that a bad hook point or a width
 * mismatch fails the run before anything is stored.
 *
 * @module
 */

import type { OnnxModel } from "../lib/onnx/mod.ts";
import { openHookSession } from "../lib/ort/mod.ts";
import { canFuse, FusedSaeEncoder, type SaeDescription, SaeEncoder } from "../lib/sae/mod.ts";
import type { ContextBatch, FeatureBatch } from "../lib/types.ts";
import { fusedEncode } from "../stages/fused_encode.ts";
import { modelHook } from "../stages/model_hook.ts";
import { saeEncode } from "../stages/sae_encode.ts";

/** Options of {@linkcode encodeStage}. */
export interface EncodeStageOptions {
  /** The language model. */
  model: OnnxModel;
  /** The SAE. */
  sae: SaeDescription;
  /** The hook point (TransformerLens name or tensor name). */
  hookPoint: string;
  /** `cpu` or `cuda`. */
  device: "cpu" | "cuda";
  /** The floating-point type the model computes in. */
  dtype: string;
  /** Prefer the fused graph (default true). */
  fused?: boolean;
  /** ONNX Runtime intra-op threads (default: one per core). */
  threads?: number;
}

/** The chosen encode stage; the stage owns (and releases) its sessions. */
export interface EncodeStage {
  stream: TransformStream<ContextBatch, FeatureBatch>;
  /** Whether the fused graph is used. */
  fused: boolean;
  /** Why the fused graph is not used, when it is not. */
  reason: string | null;
  /**
   * Seconds spent so far in the fused graph's `encode()` (its session runs and their outputs),
   * or null when the graph is not fused.
   */
  encodeSeconds(): number | null;
}

/**
 * Opens the encode stage of the analyze pipeline.
 *
 * @param options model, SAE, hook point and engine choices.
 * @returns a `ContextBatch → FeatureBatch` stage and which engine it uses.
 * @throws {ConfigError} for an unknown hook point or a width mismatch.
 */
export async function encodeStage(options: EncodeStageOptions): Promise<EncodeStage> {
  const threads = options.threads ? { intraOpThreads: options.threads } : {};
  const dtype = options.dtype === "float16" ? "float16" : "float32";
  const check = canFuse(options.model, options.sae, options.hookPoint);
  if ((options.fused ?? true) && check.fusable && dtype === "float32") {
    const encoder = await FusedSaeEncoder.create(options.model, options.sae, options.hookPoint, {
      device: options.device,
      ...threads,
    });
    return {
      stream: fusedEncode({ encoder, ownEncoder: true }),
      fused: true,
      reason: null,
      encodeSeconds: () => encoder.stats.seconds,
    };
  }
  const session = await openHookSession(options.model, [options.hookPoint], {
    device: options.device,
    dtype,
    ...threads,
  });
  let encoder: SaeEncoder;
  try {
    encoder = await SaeEncoder.create(options.sae, { device: options.device, ...threads });
  } catch (error) {
    await session.release();
    throw error;
  }
  const hook = modelHook({ session, hookPoints: [options.hookPoint], ownSession: true });
  const encode = saeEncode({ encoder, hookPoint: options.hookPoint, ownEncoder: true });
  return {
    stream: {
      writable: hook.writable,
      readable: hook.readable.pipeThrough(encode),
    } as unknown as TransformStream<ContextBatch, FeatureBatch>,
    fused: false,
    reason: options.fused === false
      ? "fused graph turned off"
      : check.fusable
      ? `model dtype ${dtype}`
      : check.reason,
    encodeSeconds: () => null,
  };
}
