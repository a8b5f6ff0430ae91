/**
 * Helpers for the DLA tests and benchmark (not part of the public API): a builder of small
 * unembedding-tail graphs (LayerNorm or decomposed RMSNorm, tied or untied unembedding, optional
 * soft-cap), a plain-TypeScript reference (norm + unembedding written out), and loaders of a
 * fixture model's final-norm and unembedding weights.
 *
 * @module
 */
import { onnx } from "../onnx/_proto.ts";
import { makeNode, makeTensor, type NodeSpec, OnnxModel } from "../onnx/mod.ts";
import { SafetensorsFile, writeSafetensors } from "../safetensors/mod.ts";
import { dirname } from "node:path";
import { mulberry32 as prng } from "../_random.ts";
import { fixturePath } from "../_testing.ts";

/** Mulberry32 seeded PRNG (the project's one, from lib/_random.ts). */
export { prng };
export { assert, assertEquals, assertRejects, assertThrows, maxAbsDiff } from "../onnx/_testing.ts";

/** `n` seeded values uniform in [lo, hi). */
export function uniform(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  const rand = prng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

/** The weights of a final norm and unembedding, as a reference reads them. */
export interface HeadWeights {
  /** `LayerNorm` (mean-centered, with optional bias) or `RMSNorm`. */
  norm: "LayerNorm" | "RMSNorm";
  eps: number;
  /** Norm weight `[d]`. */
  weight: Float32Array;
  /** Norm bias `[d]`, when there is one. */
  bias: Float32Array | null;
  /** Unembedding `[vocab × d]` (the `lm_head.weight` layout). */
  unembed: Float32Array;
  /** Unembedding bias `[vocab]`, when there is one. */
  unembedBias: Float32Array | null;
  /** Logit soft-cap, when there is one. */
  softcap: number | null;
  dModel: number;
  vocab: number;
}

/** Plain-TypeScript reference: `unembed(norm(row))` in float64, optionally centered. */
export function referenceLogits(w: HeadWeights, row: Float32Array, center: boolean): Float64Array {
  const d = w.dModel;
  let mean = 0;
  if (w.norm === "LayerNorm") {
    for (let i = 0; i < d; i++) mean += row[i]!;
    mean /= d;
  }
  let sq = 0;
  for (let i = 0; i < d; i++) sq += (row[i]! - mean) ** 2;
  const scale = 1 / Math.sqrt(sq / d + w.eps);
  const h = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    h[i] = (row[i]! - mean) * scale * w.weight[i]! + (w.bias ? w.bias[i]! : 0);
  }
  const out = new Float64Array(w.vocab);
  for (let v = 0; v < w.vocab; v++) {
    let s = w.unembedBias ? w.unembedBias[v]! : 0;
    for (let i = 0; i < d; i++) s += h[i]! * w.unembed[v * d + i]!;
    out[v] = w.softcap ? w.softcap * Math.tanh(s / w.softcap) : s;
  }
  if (center) {
    let m = 0;
    for (const x of out) m += x;
    m /= w.vocab;
    for (let v = 0; v < w.vocab; v++) out[v] = out[v]! - m;
  }
  return out;
}

/** Token ids by value: descending (ties: lower id first), or ascending for `negative`. */
export function rankIds(logits: Float64Array, k: number, negative: boolean): number[] {
  const ids = Array.from(logits.keys());
  ids.sort((a, b) => (negative ? logits[a]! - logits[b]! : logits[b]! - logits[a]!) || a - b);
  return ids.slice(0, k);
}

/** Settings of {@linkcode buildTail}. */
export interface TailSpec {
  dModel: number;
  vocab: number;
  norm: "LayerNorm" | "RMSNorm";
  /** Tied: the unembedding is a Transpose of an embedding initializer `[vocab × d]`. */
  tied?: boolean;
  softcap?: number;
  /** Also read a graph input `attention_mask` inside the tail (a broken tail). */
  readsMask?: boolean;
  /**
   * Reshape the normed stream before the unembedding to a shape read off `input_ids`: `"shape"`
   * to `Shape(input_ids) ++ [-1]` (GPT-2 style, read for its shape only), `"nonzero"` to one
   * computed from `Shape(NonZero(input_ids))` (which depends on the values of `input_ids`).
   */
  reshapeByInput?: "shape" | "nonzero";
  /** Dimensions of the `input_ids` graph input; default `["batch", "sequence"]`. */
  inputDims?: (number | string)[];
  /** Omit the node scopes (no final norm can be recognized). */
  anonymous?: boolean;
  seed?: number;
  /** Given weights instead of random ones. */
  weights?: Partial<HeadWeights>;
  /**
   * The untied unembedding as `[d × vocab]` (the MatMul layout), for the benchmark: no
   * `[vocab × d]` copy is made and `weights.unembed` is left empty.
   */
  unembedT?: Float32Array;
}

/**
 * Builds a model `embedding → final norm → unembedding [→ soft-cap] → logits` with node scopes
 * like a Llama export (`/model/norm/…`, `/lm_head/…`): the graph input `input_ids` feeds a Gather
 * whose output is the residual stream (`/model/embed_tokens/Gather_output_0`).
 */
export function buildTail(spec: TailSpec): { model: OnnxModel; weights: HeadWeights } {
  const { dModel: d, vocab: V } = spec;
  const seed = spec.seed ?? 1;
  const w: HeadWeights = {
    norm: spec.norm,
    eps: spec.weights?.eps ?? 1e-5,
    weight: spec.weights?.weight ?? uniform(seed, d, 0.5, 1.5),
    bias: spec.norm === "LayerNorm" ? spec.weights?.bias ?? uniform(seed + 1, d, -0.2, 0.2) : null,
    unembed: spec.weights?.unembed ??
      (spec.unembedT ? new Float32Array(0) : uniform(seed + 2, V * d, -0.3, 0.3)),
    unembedBias: null,
    softcap: spec.softcap ?? null,
    dModel: d,
    vocab: V,
  };
  const s = (scope: string, op: string) => spec.anonymous ? `${op}_${scope.length}` : scope + op;
  const resid = "/model/embed_tokens/Gather_output_0";
  const nodes: NodeSpec[] = [{
    opType: "Gather",
    name: s("/model/embed_tokens/", "Gather"),
    inputs: ["embed.weight", "input_ids"],
    outputs: [resid],
  }];
  const inits = [
    makeTensor({ name: "norm.weight", dims: [d], data: w.weight }),
    makeTensor({ name: "eps", dims: [], data: new Float32Array([w.eps]) }),
  ];
  let normed: string;
  if (spec.norm === "LayerNorm") {
    inits.push(makeTensor({ name: "norm.bias", dims: [d], data: w.bias! }));
    normed = "/model/norm/LayerNormalization_output_0";
    nodes.push({
      opType: "LayerNormalization",
      name: s("/model/norm/", "LayerNormalization"),
      inputs: [resid, "norm.weight", "norm.bias"],
      outputs: [normed],
      attributes: { axis: { i: -1 }, epsilon: { f: w.eps } },
    });
  } else {
    const n = (op: string, inputs: string[], attributes?: NodeSpec["attributes"]) => {
      const out = `/model/norm/${op}_output_0`;
      const node: NodeSpec = {
        opType: op.split("_")[0]!,
        name: s("/model/norm/", op),
        inputs,
        outputs: [out],
      };
      if (attributes) node.attributes = attributes;
      nodes.push(node);
      return out;
    };
    inits.push(makeTensor({ name: "two", dims: [], data: new Float32Array([2]) }));
    const pow = n("Pow", [resid, "two"]);
    const mean = n("ReduceMean", [pow], { axes: { ints: [-1] }, keepdims: { i: 1 } });
    const add = n("Add", [mean, "eps"]);
    const sqrt = n("Sqrt", [add]);
    const recip = n("Reciprocal", [sqrt]);
    const scaled = n("Mul", [resid, recip]);
    normed = n("Mul_1", ["norm.weight", scaled]);
  }
  if (spec.readsMask) {
    const maskF = "/model/norm/Cast_output_0";
    nodes.push({
      opType: "Cast",
      name: s("/model/norm/", "Cast"),
      inputs: ["attention_mask"],
      outputs: [maskF],
      attributes: { to: { i: onnx.TensorProto.DataType.FLOAT } },
    });
    const unsq = "/model/norm/Unsqueeze_output_0";
    nodes.push({
      opType: "Unsqueeze",
      name: s("/model/norm/", "Unsqueeze"),
      inputs: [maskF, "axes"],
      outputs: [unsq],
    });
    inits.push(makeTensor({ name: "axes", dims: [1], data: new BigInt64Array([-1n]) }));
    nodes.push({
      opType: "Mul",
      name: s("/model/norm/", "Mul_2"),
      inputs: [normed, unsq],
      outputs: ["/model/norm/Mul_2_output_0"],
    });
    normed = "/model/norm/Mul_2_output_0";
  }
  if (spec.reshapeByInput) {
    const scoped = (op: string, inputs: string[], attributes?: NodeSpec["attributes"]) => {
      const node: NodeSpec = {
        opType: op.split("_")[0]!,
        name: s("/model/", op),
        inputs,
        outputs: [`/model/${op}_output_0`],
      };
      if (attributes) node.attributes = attributes;
      nodes.push(node);
      return node.outputs[0]!;
    };
    const source = spec.reshapeByInput === "nonzero"
      ? scoped("NonZero", ["input_ids"])
      : "input_ids";
    const shape = scoped("Shape", [source]);
    inits.push(makeTensor({ name: "minus_one", dims: [1], data: new BigInt64Array([-1n]) }));
    const target = scoped("Concat", [shape, "minus_one"], { axis: { i: 0 } });
    normed = scoped("Reshape", [normed, target]);
  }
  // The embedding is [V × d]; the unembedding is its Transpose (tied) or its own weight.
  inits.push(
    spec.unembedT
      ? makeTensor({ name: "embed.weight", dims: [1, d], data: new Float32Array(d) })
      : makeTensor({ name: "embed.weight", dims: [V, d], data: w.unembed }),
  );
  let unembedIn: string;
  if (spec.tied) {
    unembedIn = "/lm_head/Transpose_output_0";
    nodes.push({
      opType: "Transpose",
      name: s("/lm_head/", "Transpose"),
      inputs: ["embed.weight"],
      outputs: [unembedIn],
      attributes: { perm: { ints: [1, 0] } },
    });
  } else {
    let t = spec.unembedT;
    if (!t) {
      t = new Float32Array(d * V);
      for (let v = 0; v < V; v++) for (let i = 0; i < d; i++) t[i * V + v] = w.unembed[v * d + i]!;
    }
    inits.push(makeTensor({ name: "lm_head.weight_T", dims: [d, V], data: t }));
    unembedIn = "lm_head.weight_T";
  }
  const logits = spec.softcap ? "/lm_head/MatMul_output_0" : "logits";
  nodes.push({
    opType: "MatMul",
    name: s("/lm_head/", "MatMul"),
    inputs: [normed, unembedIn],
    outputs: [logits],
  });
  if (spec.softcap) {
    inits.push(makeTensor({ name: "cap", dims: [], data: new Float32Array([spec.softcap]) }));
    nodes.push({ opType: "Div", inputs: [logits, "cap"], outputs: ["capped_div"] });
    nodes.push({ opType: "Tanh", inputs: ["capped_div"], outputs: ["capped_tanh"] });
    nodes.push({ opType: "Mul", inputs: ["capped_tanh", "cap"], outputs: ["logits"] });
  }
  const F = onnx.TensorProto.DataType.FLOAT;
  const I64 = onnx.TensorProto.DataType.INT64;
  const info = (name: string, elemType: number, dims: (number | string)[]) => ({
    name,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((x) => typeof x === "number" ? { dimValue: x } : { dimParam: x }),
        },
      },
    },
  });
  const inputs = [info("input_ids", I64, spec.inputDims ?? ["batch", "sequence"])];
  if (spec.readsMask) inputs.push(info("attention_mask", I64, ["batch", "sequence"]));
  const proto = onnx.ModelProto.fromObject({
    irVersion: 8,
    producerName: "saeflow-dla-test",
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "tail",
      node: nodes.map((n, i) => makeNode(n, `_${i}`)),
      initializer: inits,
      input: inputs,
      output: [info("logits", F, ["batch", "sequence", V])],
    },
  });
  const bytes = onnx.ModelProto.encode(proto).finish();
  return {
    model: OnnxModel.fromBytes(bytes, { source: `<generated ${spec.norm} tail>` }),
    weights: w,
  };
}

/** A MatMul-only model `x [N, d] · W [d, V]`: the FLOP-bound limit of DLA. */
export function buildMatMul(dModel: number, vocab: number, wT: Float32Array): OnnxModel {
  const F = onnx.TensorProto.DataType.FLOAT;
  const proto = onnx.ModelProto.fromObject({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "matmul",
      node: [makeNode({ opType: "MatMul", inputs: ["x", "w"], outputs: ["y"] })],
      initializer: [makeTensor({ name: "w", dims: [dModel, vocab], data: wT })],
      input: [{
        name: "x",
        type: {
          tensorType: { elemType: F, shape: { dim: [{ dimParam: "n" }, { dimValue: dModel }] } },
        },
      }],
      output: [{ name: "y", type: { tensorType: { elemType: F } } }],
    },
  });
  return OnnxModel.fromBytes(onnx.ModelProto.encode(proto).finish(), { source: "<matmul>" });
}

/** The fixture folder of a model; fails, naming it, when its `model.onnx` is missing. */
export function fixtureDir(name: string): string {
  return dirname(fixturePath(`${name}/model.onnx`));
}

/**
 * A fixture model's final-norm and unembedding weights, from `expected/manifest.json` when it is
 * there, else from `model.safetensors` + `config.json` (GPT-NeoX, Llama, GPT-2 names; tied
 * embeddings read from the input embedding).
 */
export async function fixtureHead(dir: string): Promise<HeadWeights> {
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  try {
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/expected/manifest.json`));
    if (manifest.unembed && manifest.ln_final) return await fromManifest(dir, manifest);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  using st = await SafetensorsFile.open(`${dir}/model.safetensors`);
  const has = (n: string) => st.has(n);
  const first = (...names: string[]) => names.find(has);
  const weightName = first(
    "gpt_neox.final_layer_norm.weight",
    "model.norm.weight",
    "transformer.ln_f.weight",
  );
  const unembedName = first(
    "embed_out.weight",
    "lm_head.weight",
    "model.embed_tokens.weight",
    "transformer.wte.weight",
  );
  if (!weightName || !unembedName) throw new Error(`${dir}: no final norm / unembedding found`);
  const biasName = weightName.replace(/weight$/, "bias");
  const rms = config.rms_norm_eps !== undefined;
  const unembed = await st.readF32(unembedName);
  const dModel = config.hidden_size ?? config.n_embd;
  return {
    norm: rms ? "RMSNorm" : "LayerNorm",
    eps: config.rms_norm_eps ?? config.layer_norm_eps ?? config.layer_norm_epsilon,
    weight: await st.readF32(weightName),
    bias: has(biasName) ? await st.readF32(biasName) : null,
    unembed,
    unembedBias: has("lm_head.bias") ? await st.readF32("lm_head.bias") : null,
    softcap: config.final_logit_softcapping ?? null,
    dModel,
    vocab: unembed.length / dModel,
  };
}

async function fromManifest(
  dir: string,
  // deno-lint-ignore no-explicit-any
  m: any,
): Promise<HeadWeights> {
  const read = async (entry: { file: string } | undefined) =>
    entry ? new Float32Array((await Deno.readFile(`${dir}/expected/${entry.file}`)).buffer) : null;
  const unembed = (await read(m.unembed))!;
  const [vocab, dModel] = m.unembed.shape as [number, number];
  const type = String(m.ln_final.type);
  return {
    norm: /rms/i.test(type) ? "RMSNorm" : "LayerNorm",
    eps: m.ln_final_eps,
    weight: (await read(m.ln_final.weight))!,
    bias: await read(m.ln_final.bias),
    unembed,
    unembedBias: await read(m.unembed_bias),
    softcap: m.final_logit_softcapping ?? null,
    dModel,
    vocab,
  };
}

/**
 * Writes a small Language-Model-SAEs checkpoint (`config.json` + `sae_weights.safetensors`) with
 * the given decoder and random encoder weights, for `loadSae`.
 */
export async function writeTestSae(
  dir: string,
  W_dec: Float32Array,
  dModel: number,
  hook = "blocks.3.hook_resid_post",
): Promise<void> {
  const dSae = W_dec.length / dModel;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      sae_type: "sae",
      d_model: dModel,
      d_sae: dSae,
      hook_point_in: hook,
      hook_point_out: hook,
      act_fn: "relu",
      norm_activation: "inference",
      sparsity_include_decoder_norm: false,
      use_decoder_bias: true,
    }),
  );
  await Deno.writeFile(
    `${dir}/sae_weights.safetensors`,
    writeSafetensors({
      W_E: { dtype: "F32", shape: [dModel, dSae], data: uniform(91, dModel * dSae) },
      b_E: { dtype: "F32", shape: [dSae], data: new Float32Array(dSae) },
      W_D: { dtype: "F32", shape: [dSae, dModel], data: W_dec },
      b_D: { dtype: "F32", shape: [dModel], data: new Float32Array(dModel) },
    }),
  );
}
