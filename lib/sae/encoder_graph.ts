/**
 * The SAE encoder as ONNX nodes with a sparse output, shared by the standalone encoder graph and
 * the fused LM + SAE graph (`onnx_encoder.ts`).
 *
 * The nodes compute exactly the steps of {@linkcode SaeDescription} on the rows of the input that
 * the analysis mask keeps, and leave ONNX Runtime as three 1-D tensors `position` (int32),
 * `feature` (int32), `value` (float32) sorted by position then feature: only the active entries,
 * 12 bytes each. The dense `[tokens, d_sae]` matrix exists only inside ONNX Runtime.
 *
 * How the dense part is kept to one matrix product plus one parallel pass (measured on the
 * 4,096 × 768 × 24,576 benchmark shape, ONNX Runtime 1.30 CPU):
 *
 * - Everything per token (masking, centering, per-token normalization, `− b_dec`) runs on the
 *   `[tokens, d_model]` input, which is d_sae / d_model times smaller than the output.
 * - ReLU / JumpReLU / BatchTopK: all thresholds and the decoder-norm gating are folded into the
 *   bias of one `Gemm`: `margin_f = x·W_f + b_f − τ_f` with `τ_f = max(θ_f, 0) / ‖W_dec_f‖`
 *   (gated) or `max(θ_f, 0)` (not gated), so a feature is active exactly when `margin_f > 0`,
 *   and its value is `margin_f + τ_f` (= x·W_f + b_f, the pre-activation). A gated feature with
 *   a zero decoder row gets τ = +∞ (a zero column and a bias of −FLT_MAX): it never fires.
 * - Sparse extraction in two levels: the margin is viewed as blocks of 16 features, `ReduceMax`
 *   (multi-threaded) gives each block's maximum, `NonZero` lists the blocks with a positive
 *   maximum (d_sae / 16 flags per token), and only those blocks are gathered and scanned again.
 *   A single `NonZero` over the whole margin is single-threaded in ONNX Runtime 1.30 and cost
 *   about 2.5 times as much on the benchmark shape. d_sae is padded to a multiple of 16 with
 *   features that never fire.
 * - TopK: `Gemm` with the decoder norms folded into the columns (g = pre · ‖W_dec_f‖), `TopK`
 *   per token (ties go to the lower feature index in both ONNX Runtime and the reference), a
 *   second `TopK` on the negated indices to order each token's k entries by feature, then the
 *   positive ones are extracted and divided by ‖W_dec_f‖ when gated.
 *
 * The number of active features per token is never bounded (no per-token top-k bound is used
 * for ReLU/JumpReLU), so no token ever has to be recomputed.
 *
 * @module
 */

import type { InitializerSpec, NodeSpec } from "../onnx/mod.ts";
import type { SaeDescription } from "./sae.ts";

/** Features per block of the two-level sparse extraction. */
export const ENCODER_BLOCK = 16;

/** The largest finite float32, used as an "never active" margin. */
const FLT_MAX = 3.4028234663852886e38;

/** Epsilon of SAELens `layer_norm` input normalization (as in `encodeReference`). */
const LAYER_NORM_EPS = 1e-5;

/** Settings of {@linkcode encoderNodes}. */
export interface EncoderNodesOptions {
  /** The tensor holding the activations: `[tokens, d_model]`, or any rank with d_model last. */
  input: string;
  /** Element type of `input`: `float32` (default) or `float16` (cast to float32 first). */
  inputType?: "float32" | "float16";
  /** Whether `input` has a rank other than 2 and must be flattened to `[-1, d_model]`. */
  flatten?: boolean;
  /** A bool `[tokens]` tensor: 1 = analyze the token. Tokens with 0 produce no entries. */
  mask: string;
  /** Prefix of every tensor and node name the encoder adds (to avoid collisions). */
  prefix?: string;
  /** Default-domain opset of the model the nodes go into (≥ 11); default 17. */
  opset?: number;
}

/** The encoder's nodes, initializers and the names of its three outputs. */
export interface EncoderNodes {
  /** The nodes in topological order. */
  nodes: NodeSpec[];
  /** The constants. */
  initializers: InitializerSpec[];
  /** Output tensor names: flat token index (int32), feature (int32), value (float32). */
  outputs: { position: string; feature: string; value: string };
}

/** The smallest opset the encoder nodes need (`TopK` with `largest`, `Flatten` axis −1). */
export const MIN_ENCODER_OPSET = 11;

/**
 * Builds the encoder's nodes and initializers.
 *
 * @param sae the loaded SAE (every scale factor folded)
 * @param options input, mask and naming
 * @returns the nodes, initializers and output names
 * @throws {RangeError} for an opset below 11, a TopK SAE without k, a JumpReLU SAE without
 *   thresholds, or d_sae ≥ 2^24
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encoderNodes } from "./encoder_graph.ts";
 * import type { SaeDescription } from "./mod.ts";
 * const sae = {
 *   dModel: 2, dSae: 2, activation: { kind: "relu" },
 *   W_enc: new Float32Array([1, -1, 1, 1]), b_enc: new Float32Array([0, 0.5]),
 *   b_dec: new Float32Array(2), applyBDecToInput: false,
 *   sparsityIncludeDecoderNorm: false, decoderNorm: null, center: false,
 *   normalization: { perToken: "none" },
 * } as unknown as SaeDescription;
 * const parts = encoderNodes(sae, { input: "x", mask: "mask" });
 * assert.equal(parts.outputs.value, "value");
 * assert(parts.nodes.some((n) => n.opType === "Gemm"));
 * ```
 */
export function encoderNodes(sae: SaeDescription, options: EncoderNodesOptions): EncoderNodes {
  const p = options.prefix ?? "";
  const opset = options.opset ?? 17;
  if (opset < MIN_ENCODER_OPSET) {
    throw new RangeError(`The SAE encoder needs ONNX opset ≥ ${MIN_ENCODER_OPSET}, got ${opset}`);
  }
  if (sae.dSae >= 2 ** 24) {
    throw new RangeError(`The SAE encoder supports d_sae < 2^24, got ${sae.dSae}`);
  }
  const d = sae.dModel;
  const nodes: NodeSpec[] = [];
  const initializers: InitializerSpec[] = [];
  let count = 0;
  const name = (what: string) => `${p}${what}`;
  const node = (
    opType: string,
    inputs: string[],
    attributes: NodeSpec["attributes"] = {},
    nOut = 1,
  ): string[] => {
    const id = count++;
    const outputs = Array.from({ length: nOut }, (_, i) => name(`${opType}_${id}_out${i}`));
    nodes.push({ opType, inputs, outputs, name: name(`${opType}_${id}`), attributes });
    return outputs;
  };
  const op = (opType: string, inputs: string[], attributes: NodeSpec["attributes"] = {}) =>
    node(opType, inputs, attributes)[0]!;
  const constant = (what: string, dims: number[], data: InitializerSpec["data"]) => {
    if (!initializers.some((t) => t.name === name(what))) {
      initializers.push({ name: name(what), dims, data });
    }
    return name(what);
  };
  const i64 = (what: string, values: number[], scalar = false) =>
    constant(what, scalar ? [] : [values.length], BigInt64Array.from(values.map(BigInt)));
  const f32 = (what: string, value: number) => constant(what, [], new Float32Array([value]));
  /** A reduction over the last axis, keeping it: axes became an input in opset 18. */
  const reduce = (opType: string, x: string) =>
    opset >= 18
      ? op(opType, [x, i64("axis_last", [-1])], { keepdims: { i: 1 } })
      : op(opType, [x], { axes: { ints: [-1] }, keepdims: { i: 1 } });

  // ---- input side: [tokens, d_model] ----
  let x = options.input;
  if (options.inputType === "float16") x = op("Cast", [x], { to: { i: 1 } });
  if (options.flatten) x = op("Flatten", [x], { axis: { i: -1 } });
  const flatShape = i64("shape_flat", [-1]);
  const rows = op("Reshape", [op("NonZero", [options.mask]), flatShape]);
  x = op("Compress", [x, options.mask], { axis: { i: 0 } });
  if (sae.center) x = op("Sub", [x, reduce("ReduceMean", x)]);
  if (sae.normalization.perToken === "rescale") {
    const norm = op("Sqrt", [reduce("ReduceSumSquare", x)]);
    const zero = f32("zero_f", 0);
    const safe = op("Where", [op("Equal", [norm, zero]), f32("one_f", 1), norm]);
    x = op("Div", [op("Mul", [x, f32("sqrt_d", Math.sqrt(d))]), safe]);
  } else if (sae.normalization.perToken === "layer-norm") {
    const centered = op("Sub", [x, reduce("ReduceMean", x)]);
    const variance = op("Div", [reduce("ReduceSumSquare", centered), f32("d_minus_1", d - 1)]);
    const denom = op("Add", [op("Sqrt", [variance]), f32("ln_eps", LAYER_NORM_EPS)]);
    x = op("Div", [centered, denom]);
  }
  if (sae.applyBDecToInput) x = op("Sub", [x, constant("b_dec", [d], sae.b_dec)]);

  const zeroF = f32("zero", 0);
  const one = i64("one", [1], true);
  const zeroI = i64("zero_i", [0], true);
  let tok: string;
  let feat: string;
  let value: string;
  if (sae.activation.kind === "topk") {
    ({ tok, feat, value } = topkPart());
  } else {
    ({ tok, feat, value } = thresholdPart());
  }
  const outputs = { position: name("position"), feature: name("feature"), value: name("value") };
  nodes.push(
    {
      opType: "Cast",
      inputs: [op("Gather", [rows, tok], { axis: { i: 0 } })],
      outputs: [outputs.position],
      name: name("position_cast"),
      attributes: { to: { i: 6 } },
    },
    {
      opType: "Cast",
      inputs: [feat],
      outputs: [outputs.feature],
      name: name("feature_cast"),
      attributes: { to: { i: 6 } },
    },
    { opType: "Identity", inputs: [value], outputs: [outputs.value], name: name("value_out") },
  );
  return { nodes, initializers, outputs };

  /** ReLU, JumpReLU, BatchTopK: margin > 0 through a two-level NonZero. */
  function thresholdPart() {
    const n = sae.dSae;
    const B = ENCODER_BLOCK;
    const np = Math.ceil(n / B) * B;
    const W = new Float32Array(d * np);
    const c = new Float32Array(np).fill(-FLT_MAX);
    const tau = new Float32Array(np);
    const { kind, threshold } = sae.activation;
    if (kind !== "relu" && threshold === undefined) {
      throw new RangeError(`SAE ${sae.path}: ${kind} has no threshold`);
    }
    const gate = sae.sparsityIncludeDecoderNorm ? sae.decoderNorm : null;
    if (sae.sparsityIncludeDecoderNorm && gate === null) {
      throw new RangeError(`SAE ${sae.path}: sparsityIncludeDecoderNorm without decoderNorm`);
    }
    let anyTau = false;
    for (let f = 0; f < n; f++) {
      const th = kind === "relu" ? 0 : Math.max(threshold![f]!, 0);
      let t: number;
      if (gate !== null) {
        const g = gate[f]!;
        if (!(g > 0)) continue; // never fires: zero column, margin −FLT_MAX
        t = th / g;
      } else t = th;
      for (let i = 0; i < d; i++) W[i * np + f] = sae.W_enc[i * n + f]!;
      tau[f] = t;
      c[f] = sae.b_enc[f]! - t;
      if (tau[f] !== 0) anyTau = true;
    }
    const margin = op("Gemm", [x, constant("W_enc", [d, np], W), constant("bias", [np], c)]);
    const blocks = op("Reshape", [margin, i64("shape_blocks", [-1, B])]);
    const blockMax = opset >= 18
      ? op("ReduceMax", [blocks, i64("axis_1", [1])], { keepdims: { i: 0 } })
      : op("ReduceMax", [blocks], { axes: { ints: [1] }, keepdims: { i: 0 } });
    const live = op("Reshape", [op("NonZero", [op("Greater", [blockMax, zeroF])]), flatShape]);
    const cand = op("Gather", [blocks, live], { axis: { i: 0 } });
    const hits = op("NonZero", [op("Greater", [cand, zeroF])]);
    const hitBlock = op("Gather", [hits, zeroI], { axis: { i: 0 } });
    const hitCol = op("Gather", [hits, one], { axis: { i: 0 } });
    const blockSize = i64("block", [B], true);
    const local = op("Add", [op("Mul", [hitBlock, blockSize]), hitCol]);
    const marginValue = op("Gather", [op("Reshape", [cand, flatShape]), local], {
      axis: { i: 0 },
    });
    const flat = op("Add", [
      op("Mul", [op("Gather", [live, hitBlock], { axis: { i: 0 } }), blockSize]),
      hitCol,
    ]);
    const width = i64("width", [np], true);
    const tok = op("Div", [flat, width]);
    const feat = op("Sub", [flat, op("Mul", [tok, width])]);
    const value = anyTau
      ? op("Add", [
        marginValue,
        op("Gather", [constant("tau", [np], tau), feat], {
          axis: { i: 0 },
        }),
      ])
      : marginValue;
    return { tok, feat, value };
  }

  /** TopK per token, entries ordered by feature, the positive ones kept. */
  function topkPart() {
    const n = sae.dSae;
    const kRaw = sae.activation.k;
    if (kRaw === undefined) throw new RangeError(`SAE ${sae.path}: topk has no k`);
    const k = Math.min(kRaw, n);
    const gate = sae.sparsityIncludeDecoderNorm ? sae.decoderNorm : null;
    if (sae.sparsityIncludeDecoderNorm && gate === null) {
      throw new RangeError(`SAE ${sae.path}: sparsityIncludeDecoderNorm without decoderNorm`);
    }
    let W = sae.W_enc;
    let b = sae.b_enc;
    if (gate !== null) {
      W = new Float32Array(d * n);
      b = new Float32Array(n);
      for (let f = 0; f < n; f++) {
        const g = gate[f]! > 0 ? gate[f]! : 0;
        for (let i = 0; i < d; i++) W[i * n + f] = sae.W_enc[i * n + f]! * g;
        b[f] = sae.b_enc[f]! * g;
      }
    }
    const g = op("Gemm", [x, constant("W_enc", [d, n], W), constant("bias", [n], b)]);
    const kT = i64("k", [k]);
    const attrs = { axis: { i: -1 }, largest: { i: 1 }, sorted: { i: 1 } };
    const [vals, idx] = node("TopK", [g, kT], attrs, 2) as [string, string];
    const key = op("Neg", [op("Cast", [idx], { to: { i: 1 } })]);
    const [, perm] = node("TopK", [key, kT], attrs, 2) as [string, string];
    const sortedVals = op("GatherElements", [vals, perm], { axis: { i: 1 } });
    const sortedIdx = op("GatherElements", [idx, perm], { axis: { i: 1 } });
    const hits = op("NonZero", [op("Greater", [sortedVals, zeroF])]);
    const tok = op("Gather", [hits, zeroI], { axis: { i: 0 } });
    const col = op("Gather", [hits, one], { axis: { i: 0 } });
    const local = op("Add", [op("Mul", [tok, i64("k_scalar", [k], true)]), col]);
    const feat = op("Gather", [op("Reshape", [sortedIdx, flatShape]), local], { axis: { i: 0 } });
    let value = op("Gather", [op("Reshape", [sortedVals, flatShape]), local], { axis: { i: 0 } });
    if (gate !== null) {
      value = op("Div", [
        value,
        op("Gather", [constant("decoder_norm", [n], gate), feat], {
          axis: { i: 0 },
        }),
      ]);
    }
    return { tok, feat, value };
  }
}
