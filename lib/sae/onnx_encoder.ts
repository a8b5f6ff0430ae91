/**
 * SAE encoders that run in ONNX Runtime with a sparse output: a standalone encoder graph (input:
 * hook activations) and the fused LM + SAE graph (input: token ids), built from the SAE's weights
 * by `encoder_graph.ts`. Only the active `(position, feature, value)` triples cross from ONNX
 * Runtime to JavaScript: 12 bytes per active entry, never a dense `[tokens, d_sae]` array.
 *
 * Memory: inside ONNX Runtime one run holds a float32 `[tokens, ⌈d_sae/16⌉·16]` matrix (400 MB
 * for 4,096 tokens × 24,576 features). Longer inputs are split into several runs so that this
 * matrix stays under `maxElementsPerRun` (default 2^27 values, 512 MB).
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { buildModel, loadModelDir, OnnxModel, resolveHooks } from "../onnx/mod.ts";
import {
  createSession,
  type Device,
  type FeedBuilder,
  feedBuilder,
  type OrtSession,
  type SessionOptions,
  type Tensor,
  tensor,
} from "../ort/mod.ts";
import { ENCODER_BLOCK, encoderNodes, MIN_ENCODER_OPSET } from "./encoder_graph.ts";
import type { SparseActivations } from "./reference.ts";
import { checkHookWidth, type SaeDescription } from "./sae.ts";

/** Opset of the standalone encoder graph. */
const STANDALONE_OPSET = 17;

/** Default bound on `tokens × d_sae` per session run (a 512 MB float32 matrix). */
export const DEFAULT_MAX_ELEMENTS_PER_RUN = 2 ** 27;

/** Options of {@linkcode buildEncoderGraph}. */
export interface EncoderGraphOptions {
  /** Name of the activations input `[tokens, d_model]` float32; default `"x"`. */
  inputName?: string;
  /** Name of the analysis-mask input `[tokens]` bool; default `"mask"`. */
  maskName?: string;
}

/**
 * Builds the standalone encoder graph: inputs `x` float32 `[tokens, d_model]` and `mask` bool
 * `[tokens]`; outputs `position` int32 (row of `x`), `feature` int32 and `value` float32, only the
 * active entries of the unmasked rows, sorted by position then feature.
 *
 * @param sae the loaded SAE
 * @param options input names
 * @returns the serialized ONNX model (opset 17)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildEncoderGraph } from "./onnx_encoder.ts";
 * import type { SaeDescription } from "./mod.ts";
 * const sae = {
 *   dModel: 2, dSae: 2, activation: { kind: "relu" },
 *   W_enc: new Float32Array([1, -1, 1, 1]), b_enc: new Float32Array([0, 0.5]),
 *   b_dec: new Float32Array(2), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * const bytes = buildEncoderGraph(sae);
 * assert(bytes.length > 0);
 * ```
 */
export function buildEncoderGraph(
  sae: SaeDescription,
  options: EncoderGraphOptions = {},
): Uint8Array {
  const input = options.inputName ?? "x";
  const mask = options.maskName ?? "mask";
  const parts = encoderNodes(sae, { input, mask, opset: STANDALONE_OPSET });
  return buildModel({
    nodes: parts.nodes,
    initializers: parts.initializers,
    inputs: [
      { name: input, elemType: "float32", dims: ["tokens", sae.dModel] },
      { name: mask, elemType: "bool", dims: ["tokens"] },
    ],
    outputs: [
      { name: parts.outputs.position, elemType: "int32", dims: ["active"] },
      { name: parts.outputs.feature, elemType: "int32", dims: ["active"] },
      { name: parts.outputs.value, elemType: "float32", dims: ["active"] },
    ],
    opset: STANDALONE_OPSET,
    name: "saeflow_sae_encoder",
  });
}

/** Options of {@linkcode buildFusedModel}. */
export interface FusedModelOptions {
  /** Prefix of every tensor the encoder adds; default `"saeflow_sae/"`. */
  prefix?: string;
}

/** The names of a fused model's extra input and its outputs. */
export interface FusedModelNames {
  /** The analysis-mask input, bool `[batch × sequence]`. */
  mask: string;
  /** Output: flat token index `b·T + t`, int32. */
  position: string;
  /** Output: feature index, int32. */
  feature: string;
  /** Output: activation value, float32. */
  value: string;
}

/**
 * The tensor names {@linkcode buildFusedModel} uses for a prefix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fusedModelNames } from "./onnx_encoder.ts";
 * assert.equal(fusedModelNames().mask, "saeflow_sae/mask");
 * ```
 */
export function fusedModelNames(prefix = "saeflow_sae/"): FusedModelNames {
  return {
    mask: `${prefix}mask`,
    position: `${prefix}position`,
    feature: `${prefix}feature`,
    value: `${prefix}value`,
  };
}

/**
 * Builds the fused model: the language model pruned to the hook tensor, the SAE encoder appended
 * there (the hook `[batch, sequence, d_model]` is flattened to tokens; float16 is cast to
 * float32), one extra input — the analysis mask, bool `[batch × sequence]` — and the three sparse
 * outputs of {@linkcode fusedModelNames} as its only outputs (the hook tensor is not one). One
 * session run goes from token ids to feature activations.
 *
 * Returns an `OnnxModel` rather than bytes so that a session made from it resolves the LM's
 * external data from its folder (`createSession(model)`; `model.toBytes()` gives the bytes).
 *
 * @param lm the language model
 * @param hookPoint TransformerLens hook name or graph tensor name
 * @param sae the loaded SAE
 * @param options the name prefix
 * @returns the fused model
 * @throws {ConfigError} for an unknown hook, an opset below 11, a hook that is not float32 or
 *   float16, a hook whose recorded width differs from the SAE's d_model, or a name collision
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildFusedModel, fusedModelNames } from "./onnx_encoder.ts";
 * import { OnnxModel } from "../onnx/mod.ts";
 * import type { SaeDescription } from "./mod.ts";
 * const lm = await OnnxModel.load(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 * );
 * const sae = {
 *   path: "demo", dModel: 64, dSae: 16, activation: { kind: "relu" },
 *   W_enc: new Float32Array(64 * 16).fill(0.01), b_enc: new Float32Array(16),
 *   b_dec: new Float32Array(64), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * const fused = buildFusedModel(lm, "blocks.1.hook_resid_post", sae);
 * assert.equal(fused.outputs.map((o) => o.name).join(), Object.values(fusedModelNames()).slice(1).join());
 * ```
 */
export function buildFusedModel(
  lm: OnnxModel,
  hookPoint: string,
  sae: SaeDescription,
  options: FusedModelOptions = {},
): OnnxModel {
  const check = canFuse(lm, sae, hookPoint);
  if (!check.fusable) throw new ConfigError(check.reason);
  const prefix = options.prefix ?? "saeflow_sae/";
  const names = fusedModelNames(prefix);
  const hook = check.tensor!;
  const parts = encoderNodes(sae, {
    input: hook,
    inputType: check.elemType === "float16" ? "float16" : "float32",
    flatten: true,
    mask: names.mask,
    prefix,
    opset: lm.opset,
  });
  for (const t of [...parts.initializers.map((i) => i.name), names.mask]) {
    if (lm.has(t)) {
      throw new ConfigError(
        `Cannot fuse the SAE into ONNX model ${lm.source}: it already has a tensor "${t}"`,
      );
    }
  }
  // The mask is defined by a placeholder Constant, then made a graph input by extractSubgraph
  // (OnnxModel has no "add input" edit): everything above it is cut, the LM above the hook stays.
  const placeholder = {
    opType: "Constant",
    inputs: [],
    outputs: [names.mask],
    name: `${prefix}mask_placeholder`,
    attributes: {
      value: { t: { name: "", dims: [1], data: new Uint8Array([1]), elemType: "bool" } },
    },
  };
  const outputs = [
    { name: names.position, elemType: "int32", shape: ["active"] },
    { name: names.feature, elemType: "int32", shape: ["active"] },
    { name: names.value, elemType: "float32", shape: ["active"] },
  ];
  return lm
    .appendNodes([placeholder, ...parts.nodes], parts.initializers, outputs)
    .extractSubgraph([names.mask], outputs);
}

/** The answer of {@linkcode canFuse}. */
export interface FuseCheck {
  /** Whether the SAE can be appended to the model at the hook. */
  fusable: boolean;
  /** Why not (empty when fusable). */
  reason: string;
  /** The hook tensor, when the hook resolves. */
  tensor?: string;
  /** Its element type when the graph tells (`float32`, `float16`), else `null`. */
  elemType?: string | null;
}

/**
 * Whether the SAE can be fused into the model at `hookPoint` (what the pipeline uses to choose
 * the fused model+SAE stage over model hook → SAE encode). It can when the hook resolves to a
 * tensor, the model's opset is ≥ 11, the tensor is float32 or float16 (or its type is not
 * recorded), and its width, when the graph records it, equals the SAE's d_model. A width the graph
 * does not record is checked when the fused session opens.
 *
 * @param lm the language model
 * @param sae the loaded SAE
 * @param hookPoint default: the SAE's `hookPointIn`
 * @returns whether, and why not
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { canFuse } from "./onnx_encoder.ts";
 * import { OnnxModel } from "../onnx/mod.ts";
 * import type { SaeDescription } from "./mod.ts";
 * const lm = await OnnxModel.load(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 * );
 * const sae = { dModel: 64, path: "s", hookPointIn: "blocks.9.hook_resid_post" } as SaeDescription;
 * assert(!canFuse(lm, sae).fusable);
 * assert(canFuse(lm, sae, "blocks.3.hook_resid_post").fusable);
 * ```
 */
export function canFuse(lm: OnnxModel, sae: SaeDescription, hookPoint?: string): FuseCheck {
  const hook = hookPoint ?? sae.hookPointIn;
  let tensorName: string;
  try {
    tensorName = resolveHooks(lm, [hook])[hook]!;
  } catch (e) {
    if (e instanceof ConfigError) return { fusable: false, reason: e.message };
    throw e;
  }
  if (lm.opset < MIN_ENCODER_OPSET) {
    return {
      fusable: false,
      tensor: tensorName,
      reason: `ONNX model ${lm.source} has opset ${lm.opset}; the fused SAE encoder needs ≥ ` +
        `${MIN_ENCODER_OPSET}`,
    };
  }
  const info = lm.tensor(tensorName);
  const elemType = info?.elemType ?? null;
  if (elemType !== null && elemType !== "float32" && elemType !== "float16") {
    return {
      fusable: false,
      tensor: tensorName,
      elemType,
      reason: `Hook ${hook} of ONNX model ${lm.source} is ${elemType}, expected float32 or float16`,
    };
  }
  const width = info?.shape?.[info.shape.length - 1];
  if (typeof width === "number" && width !== sae.dModel) {
    return {
      fusable: false,
      tensor: tensorName,
      elemType,
      reason: `SAE ${sae.path} expects d_model ${sae.dModel}, but hook ${hook} has width ${width}`,
    };
  }
  return { fusable: true, reason: "", tensor: tensorName, elemType };
}

/** Session settings of the encoders; all optional. */
export interface SaeEncoderOptions {
  /** `"cpu"` (default) or `"cuda"`. */
  device?: Device;
  /** Threads within an operator; default: ONNX Runtime's choice (one per core). */
  intraOpThreads?: number;
  /**
   * Upper bound on `tokens × d_sae` per session run (the size of the dense matrix inside ONNX
   * Runtime); longer inputs are split. Default 2^27.
   */
  maxElementsPerRun?: number;
}

/** Counters of an encoder, for benchmarks and progress lines. */
export interface EncoderStats {
  /** Session runs. */
  runs: number;
  /** Analyzed (unmasked) tokens encoded. */
  tokens: number;
  /** Active entries returned. */
  entries: number;
  /** Bytes of output tensors that crossed from ONNX Runtime to JavaScript. */
  bytesOut: number;
  /** Wall-clock seconds spent in `encode()` (session runs and reading their outputs). */
  seconds: number;
}

/**
 * Joins the sparse outputs of several runs, shifting positions by each run's offset, and counts
 * them in `stats` (with the time since `started`, when the `encode()` call began).
 */
function collect(
  parts: { out: Record<string, Tensor>; offset: number }[],
  names: {
    position: string;
    feature: string;
    value: string;
  },
  stats: EncoderStats,
  started: number,
): SparseActivations {
  let total = 0;
  for (const { out } of parts) total += out[names.value]!.data.length;
  const position = new Int32Array(total);
  const feature = new Int32Array(total);
  const value = new Float32Array(total);
  let at = 0;
  for (const { out, offset } of parts) {
    const pos = out[names.position]!.data as Int32Array;
    const feat = out[names.feature]!.data as Int32Array;
    const val = out[names.value]!.data as Float32Array;
    stats.bytesOut += pos.byteLength + feat.byteLength + val.byteLength;
    for (let j = 0; j < pos.length; j++) position[at + j] = pos[j]! + offset;
    feature.set(feat, at);
    value.set(val, at);
    at += pos.length;
  }
  stats.entries += total;
  stats.seconds += (performance.now() - started) / 1000;
  return { position, feature, value };
}

/** A 0/1 bool mask for ONNX Runtime (copies only when `mask` holds other values). */
function boolMask(mask: Uint8Array): Uint8Array {
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]! > 1) return Uint8Array.from(mask, (v) => (v ? 1 : 0));
  }
  return mask;
}

function countOnes(mask: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  return n;
}

/**
 * The standalone ONNX encoder: hook activations in, sparse feature activations out. Release it
 * with {@linkcode SaeEncoder.release} or `await using`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SaeEncoder } from "./onnx_encoder.ts";
 * import type { SaeDescription } from "./mod.ts";
 * const sae = {
 *   dModel: 2, dSae: 2, activation: { kind: "relu" },
 *   W_enc: new Float32Array([1, -1, 1, 1]), b_enc: new Float32Array([0, 0.5]),
 *   b_dec: new Float32Array(2), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * await using enc = await SaeEncoder.create(sae, { intraOpThreads: 1 });
 * const acts = await enc.encode(new Float32Array([1, 2, 5, 5]), 2, new Uint8Array([1, 0]));
 * assert.equal([...acts.feature].join(), "0,1");
 * assert.equal(acts.value[0], 3);
 * ```
 */
export class SaeEncoder implements AsyncDisposable {
  /** The SAE it encodes with. */
  readonly sae: SaeDescription;
  /** Counters since creation. */
  readonly stats: EncoderStats = { runs: 0, tokens: 0, entries: 0, bytesOut: 0, seconds: 0 };
  #session: OrtSession;
  #maxTokens: number;

  private constructor(sae: SaeDescription, session: OrtSession, maxElements: number) {
    this.sae = sae;
    this.#session = session;
    const width = Math.ceil(sae.dSae / ENCODER_BLOCK) * ENCODER_BLOCK;
    this.#maxTokens = Math.max(1, Math.floor(maxElements / width));
  }

  /**
   * Builds the encoder graph and opens its session.
   *
   * @param sae the loaded SAE
   * @param options device, threads, run size
   * @returns the encoder
   * @throws {ConfigError} when ONNX Runtime cannot load the graph or the device
   */
  static async create(sae: SaeDescription, options: SaeEncoderOptions = {}): Promise<SaeEncoder> {
    const session = await createSession(buildEncoderGraph(sae), {
      ...(options.device === undefined ? {} : { device: options.device }),
      ...(options.intraOpThreads === undefined ? {} : { intraOpThreads: options.intraOpThreads }),
    });
    return new SaeEncoder(sae, session, options.maxElementsPerRun ?? DEFAULT_MAX_ELEMENTS_PER_RUN);
  }

  /** Whether {@linkcode release} has been called. */
  get released(): boolean {
    return this.#session.released;
  }

  /**
   * Encodes `nTokens` rows of hook activations.
   *
   * @param x activations `[nTokens × d_model]` row-major
   * @param nTokens number of tokens
   * @param mask 1 = encode the token, 0 = skip it (no entries); default: all tokens
   * @returns the active entries, sorted by position (row of `x`) then feature
   * @throws {RangeError} when `x` or `mask` has the wrong length
   * @throws {Error} when the encoder was released
   */
  async encode(x: Float32Array, nTokens: number, mask?: Uint8Array): Promise<SparseActivations> {
    const d = this.sae.dModel;
    if (x.length !== nTokens * d) {
      throw new RangeError(
        `SaeEncoder.encode(): got ${x.length} values, expected ${nTokens} tokens × d_model ${d}`,
      );
    }
    if (mask !== undefined && mask.length !== nTokens) {
      throw new RangeError(
        `SaeEncoder.encode(): mask has ${mask.length} values for ${nTokens} tokens`,
      );
    }
    if (this.#session.released) throw new Error("Cannot encode with a released SaeEncoder");
    const started = performance.now();
    const m = mask === undefined ? new Uint8Array(nTokens).fill(1) : boolMask(mask);
    const parts: { out: Record<string, Tensor>; offset: number }[] = [];
    for (let s = 0; s < nTokens; s += this.#maxTokens) {
      const e = Math.min(nTokens, s + this.#maxTokens);
      const chunkMask = m.subarray(s, e);
      const analyzed = countOnes(chunkMask);
      if (analyzed === 0) continue;
      const out = await this.#session.run({
        x: tensor("float32", x.subarray(s * d, e * d), [e - s, d]),
        mask: tensor("bool", chunkMask, [e - s]),
      });
      this.stats.runs++;
      this.stats.tokens += analyzed;
      parts.push({ out, offset: s });
    }
    return collect(
      parts,
      { position: "position", feature: "feature", value: "value" },
      this.stats,
      started,
    );
  }

  /** Frees the session. Safe to call more than once. */
  release(): Promise<void> {
    return this.#session.release();
  }

  /** Same as {@linkcode release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/** The tokens of a batch the fused encoder needs (a `ContextBatch` has them). */
export interface FusedInput {
  /** Contexts `B`. */
  batchSize: number;
  /** Tokens per context `T`. */
  contextSize: number;
  /** Token ids, `B*T`. */
  tokens: Int32Array;
  /** The model's attention mask (1 = real token), `B*T`. */
  attention: Uint8Array;
  /** The analysis mask (1 = analyzed), `B*T`. */
  mask: Uint8Array;
}

/**
 * The fused model + SAE encoder: token ids in, sparse feature activations at the hook out, in one
 * ONNX Runtime session per run. Release it with {@linkcode FusedSaeEncoder.release} or
 * `await using`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FusedSaeEncoder } from "./onnx_encoder.ts";
 * import type { SaeDescription } from "./mod.ts";
 * const sae = {
 *   path: "demo", dModel: 64, dSae: 16, activation: { kind: "relu" },
 *   W_enc: new Float32Array(64 * 16).fill(0.01), b_enc: new Float32Array(16).fill(1),
 *   b_dec: new Float32Array(64), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * await using enc = await FusedSaeEncoder.create(
 *   new URL("../../fixtures/tiny-neox", import.meta.url).pathname,
 *   sae,
 *   "blocks.1.hook_resid_post",
 *   { intraOpThreads: 1 },
 * );
 * const acts = await enc.encode({
 *   batchSize: 1, contextSize: 3, tokens: new Int32Array([0, 5, 6]),
 *   attention: new Uint8Array([1, 1, 1]), mask: new Uint8Array([0, 1, 1]),
 * });
 * assert(acts.position.every((p) => p > 0));
 * ```
 */
export class FusedSaeEncoder implements AsyncDisposable {
  /** The SAE it encodes with. */
  readonly sae: SaeDescription;
  /** The hook point asked for. */
  readonly hookPoint: string;
  /** The graph tensor it resolved to. */
  readonly hookTensor: string;
  /** Counters since creation. */
  readonly stats: EncoderStats = { runs: 0, tokens: 0, entries: 0, bytesOut: 0, seconds: 0 };
  #session: OrtSession;
  #feeds: FeedBuilder;
  #names: FusedModelNames;
  #maxElements: number;

  private constructor(
    sae: SaeDescription,
    hookPoint: string,
    hookTensor: string,
    session: OrtSession,
    feeds: FeedBuilder,
    names: FusedModelNames,
    maxElements: number,
  ) {
    this.sae = sae;
    this.hookPoint = hookPoint;
    this.hookTensor = hookTensor;
    this.#session = session;
    this.#feeds = feeds;
    this.#names = names;
    this.#maxElements = maxElements;
  }

  /**
   * Loads the model (an `OnnxModel`, a `.onnx` path or a model folder), fuses the SAE at the hook
   * and opens the session. When the graph does not record the hook's width, the session is run
   * once on two tokens to check it.
   *
   * @param model the language model
   * @param sae the loaded SAE
   * @param hookPoint default: the SAE's `hookPointIn`
   * @param options device, threads, run size
   * @returns the encoder
   * @throws {ConfigError} when the SAE cannot be fused (see {@linkcode canFuse}), when the hook's
   *   width differs from the SAE's d_model, or when ONNX Runtime rejects the model
   */
  static async create(
    model: OnnxModel | string,
    sae: SaeDescription,
    hookPoint?: string,
    options: SaeEncoderOptions = {},
  ): Promise<FusedSaeEncoder> {
    const lm = typeof model === "string" ? await loadModel(model) : model;
    const hook = hookPoint ?? sae.hookPointIn;
    const fused = buildFusedModel(lm, hook, sae);
    const tensorName = resolveHooks(lm, [hook])[hook]!;
    const sessionOptions = {
      ...(options.device === undefined ? {} : { device: options.device }),
      ...(options.intraOpThreads === undefined ? {} : { intraOpThreads: options.intraOpThreads }),
    };
    const width = lm.tensor(tensorName)?.shape?.at(-1);
    let session: OrtSession;
    try {
      session = await createSession(fused, sessionOptions);
    } catch (e) {
      // ONNX Runtime's shape inference may see a width mismatch first: say it in SAE terms.
      if (typeof width !== "number") await checkWidth(lm, tensorName, sae, hook, sessionOptions);
      throw e;
    }
    const names = fusedModelNames();
    try {
      const feeds = feedBuilder(
        session.inputMetadata.filter((m) => m.name !== names.mask),
        lm.source,
      );
      const encoder = new FusedSaeEncoder(
        sae,
        hook,
        tensorName,
        session,
        feeds,
        names,
        options.maxElementsPerRun ?? DEFAULT_MAX_ELEMENTS_PER_RUN,
      );
      if (typeof width !== "number") {
        // The graph does not record the width: run two tokens, and say what is wrong if it fails.
        const batch = probeBatch();
        try {
          await session.run({
            ...feeds(batch),
            [names.mask]: tensor("bool", batch.mask, [batch.mask.length]),
          });
        } catch (e) {
          await checkWidth(lm, tensorName, sae, hook, sessionOptions);
          throw new ConfigError(
            `Cannot run the SAE fused into ONNX model ${lm.source}: ${
              String((e as Error).message ?? e).split("\n")[0]
            }`,
            { cause: e },
          );
        }
      }
      return encoder;
    } catch (e) {
      await session.release();
      throw e;
    }
  }

  /** Whether {@linkcode release} has been called. */
  get released(): boolean {
    return this.#session.released;
  }

  /**
   * Runs the model and the SAE on a token batch.
   *
   * @param batch token ids, attention mask and analysis mask, `B*T` each
   * @returns the active entries, sorted by position (`b·T + t`) then feature; masked tokens have
   *   none
   * @throws {RangeError} when the arrays do not hold `B*T` values
   * @throws {Error} when the encoder was released, or when ONNX Runtime fails
   */
  async encode(batch: FusedInput): Promise<SparseActivations> {
    const { batchSize: B, contextSize: T } = batch;
    if (
      batch.tokens.length !== B * T || batch.attention.length !== B * T ||
      batch.mask.length !== B * T
    ) {
      throw new RangeError(
        `FusedSaeEncoder.encode(): batch of ${B}×${T} has ${batch.tokens.length} tokens, ` +
          `${batch.attention.length} attention and ${batch.mask.length} mask values`,
      );
    }
    if (this.#session.released) throw new Error("Cannot encode with a released FusedSaeEncoder");
    const started = performance.now();
    const width = Math.ceil(this.sae.dSae / ENCODER_BLOCK) * ENCODER_BLOCK;
    const per = Math.max(1, Math.floor(this.#maxElements / (Math.max(T, 1) * width)));
    const mask = boolMask(batch.mask);
    const parts: { out: Record<string, Tensor>; offset: number }[] = [];
    for (let b0 = 0; b0 < B; b0 += per) {
      const b1 = Math.min(B, b0 + per);
      const chunkMask = mask.subarray(b0 * T, b1 * T);
      const analyzed = countOnes(chunkMask);
      if (analyzed === 0) continue;
      const sub = {
        batchSize: b1 - b0,
        contextSize: T,
        tokens: batch.tokens.subarray(b0 * T, b1 * T),
        attention: batch.attention.subarray(b0 * T, b1 * T),
      };
      const out = await this.#session.run({
        ...this.#feeds(sub),
        [this.#names.mask]: tensor("bool", chunkMask, [chunkMask.length]),
      }, [this.#names.position, this.#names.feature, this.#names.value]);
      this.stats.runs++;
      this.stats.tokens += analyzed;
      parts.push({ out, offset: b0 * T });
    }
    return collect(parts, this.#names, this.stats, started);
  }

  /** Frees the session. Safe to call more than once. */
  release(): Promise<void> {
    return this.#session.release();
  }

  /** Same as {@linkcode release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/** Loads a model from a `.onnx` path or a model folder. */
async function loadModel(path: string): Promise<OnnxModel> {
  let isDir = false;
  try {
    isDir = (await Deno.stat(path)).isDirectory;
  } catch {
    // OnnxModel.load says the file is missing.
  }
  return OnnxModel.load(isDir ? (await loadModelDir(path)).onnxPath : path);
}

/** Two tokens, to run a model once. */
function probeBatch(): FusedInput {
  return {
    batchSize: 1,
    contextSize: 2,
    tokens: new Int32Array(2),
    attention: new Uint8Array([1, 1]),
    mask: new Uint8Array([1, 1]),
  };
}

/** Measures the hook's width by running the LM pruned to it; throws the ConfigError if it differs. */
async function checkWidth(
  lm: OnnxModel,
  tensorName: string,
  sae: SaeDescription,
  hook: string,
  sessionOptions: SessionOptions,
): Promise<void> {
  await using probe = await createSession(lm.prune([tensorName]), {
    ...sessionOptions,
    intraOpThreads: 1,
  });
  const out = await probe.run(feedBuilder(probe.inputMetadata, lm.source)(probeBatch()));
  checkHookWidth(sae, out[tensorName]?.dims.at(-1) ?? NaN, hook);
}
