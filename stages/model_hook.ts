/**
 * The model-hook stage: context batches in, the same batches with the hooked activations out.
 *
 * @module
 */
import { ConfigError } from "../lib/errors.ts";
import type { OnnxModel } from "../lib/onnx/mod.ts";
import {
  halfToFloat,
  type HookSession,
  type HookSessionOptions,
  openHookSession,
} from "../lib/ort/mod.ts";
import type { ActivationBatch, ContextBatch } from "../lib/types.ts";
import { resourceStage } from "./_resource_stage.ts";

/**
 * Options of {@linkcode modelHook}: either an open `session`, or a `model` with `hookPoints`
 * for the stage to open one.
 */
export interface ModelHookOptions {
  /**
   * An open hook session (`openHookSession`). The caller owns it unless `ownSession` is true.
   * Several stages may share one session one after the other, but not at the same time.
   */
  session?: HookSession;
  /** The model (`OnnxModel` or `.onnx` path) to open a session for, when no `session` is given. */
  model?: OnnxModel | string;
  /**
   * Hook points to emit (TransformerLens names or tensor names). Default: every hook of the
   * given `session`. Required with `model`.
   */
  hookPoints?: string[];
  /** Session settings (device, threads, dtype) when the stage opens the session. */
  sessionOptions?: HookSessionOptions;
  /**
   * Whether the stage releases the session when it ends (flush, cancel, abort, error). Default:
   * `true` when the stage opened the session from `model`, `false` for a given `session`.
   */
  ownSession?: boolean;
}

/**
 * Runs the language model on each context batch and adds the activations at the hook points.
 *
 * The session computes only the hook tensors (the graph is pruned above the highest hook: the
 * LM head never runs), all hooks in one run. `attention` is fed as `attention_mask`; position ids
 * and empty past key/values are fed when the export takes them. Activations are the session's
 * output arrays themselves (`Float32Array(B*T*d_model)` per hook, row-major), not copies;
 * float16 models are converted to float32.
 *
 * Streams: one batch is queued on each side, and the stage runs the model only when downstream
 * reads, so a slow consumer stalls the source. A session the stage owns is released when the
 * input ends, when the output is cancelled, when the input is aborted, and when a batch fails
 * (the error then reaches both sides). A session opened from `model` is opened when the stream
 * starts; a failure there (unknown hook, bad file) errors the stream with a ConfigError.
 *
 * @param options The session or model, and the hook points.
 * @returns A `TransformStream<ContextBatch, ActivationBatch>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelHook } from "./model_hook.ts";
 * const batch = {
 *   batchSize: 1,
 *   contextSize: 4,
 *   tokens: new Int32Array([0, 10, 11, 12]),
 *   mask: new Uint8Array([0, 1, 1, 1]),
 *   attention: new Uint8Array([1, 1, 1, 1]),
 *   origins: [{ source: "demo", shard: 0, row: 0 }],
 * };
 * const out = await Array.fromAsync(ReadableStream.from([batch]).pipeThrough(modelHook({
 *   model: new URL("../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   hookPoints: ["blocks.1.hook_resid_post"],
 * })));
 * assert.equal(out[0]!.activations["blocks.1.hook_resid_post"]!.length, 4 * 64);
 * ```
 */
export function modelHook(
  options: ModelHookOptions,
): TransformStream<ContextBatch, ActivationBatch> {
  if (!options.session && !options.model) {
    throw new TypeError("modelHook(): give a session or a model");
  }
  if (!options.session && !options.hookPoints?.length) {
    throw new TypeError("modelHook(): hookPoints are required with a model");
  }
  const hooks: [hook: string, tensor: string][] = [];
  let outputs: string[] = [];

  return resourceStage<HookSession, ContextBatch, ActivationBatch>({
    open: () =>
      options.session ??
        openHookSession(options.model!, options.hookPoints!, options.sessionOptions),
    own: options.ownSession ?? !options.session,
    start(hs) {
      const names = options.hookPoints ?? Object.keys(hs.tensors);
      for (const hook of names) {
        const tensor = hs.tensors[hook];
        if (tensor === undefined) {
          throw new ConfigError(
            `modelHook(): hook point "${hook}" is not computed by the given session (it computes ` +
              `${Object.keys(hs.tensors).join(", ")})`,
          );
        }
        hooks.push([hook, tensor]);
      }
      outputs = [...new Set(hooks.map(([, t]) => t))];
    },
    async transform(hs, batch, controller) {
      const { batchSize: B, contextSize: T } = batch;
      if (batch.tokens.length !== B * T || batch.attention.length !== B * T) {
        throw new RangeError(
          `modelHook(): batch of ${B}×${T} has ${batch.tokens.length} tokens and ` +
            `${batch.attention.length} attention values`,
        );
      }
      const result = await hs.session.run(hs.feeds(batch), outputs);
      const activations: Record<string, Float32Array> = {};
      const dModel: Record<string, number> = {};
      for (const [hook, name] of hooks) {
        const t = result[name]!;
        const d = t.dims[t.dims.length - 1] ?? 0;
        if (t.dims.length !== 3 || t.dims[0] !== B || t.dims[1] !== T) {
          throw new RangeError(
            `modelHook(): hook "${hook}" (${name}) has shape [${t.dims}], expected [${B}, ${T}, d]`,
          );
        }
        activations[hook] = t.type === "float16"
          ? halfToFloat(t.data as Uint16Array)
          : t.data as Float32Array;
        dModel[hook] = d;
      }
      controller.enqueue({ ...batch, activations, dModel });
    },
  });
}
