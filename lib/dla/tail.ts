/**
 * The unembedding tail of a language model: the part of its ONNX graph from the last
 * residual-stream tensor (the input of the final norm) to the logits, taken out as a model of its
 * own. Direct Logit Attribution runs SAE decoder rows through it, so whatever the exporter put
 * there (LayerNorm or RMSNorm, biases, tied embeddings, logit soft-capping) is applied exactly as
 * the model applies it, without a table of architectures.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import { type Dim, listHookPoints, type NodeProto, type OnnxModel } from "../onnx/mod.ts";

/** Node scopes (last path component) that hold a model's final norm. */
export const FINAL_NORM_SCOPES = [
  "final_layer_norm",
  "ln_f",
  "norm",
  "final_layernorm",
  "norm_f",
  "final_norm",
  "ln_final",
] as const;

/**
 * How decoder rows are laid out when fed to the tail: as `N` batch entries of one position
 * (`[N, 1, d]`), as one sequence of `N` positions (`[1, N, d]`), or as a plain matrix (`[N, d]`).
 * The norm and the unembedding act on each position alone, so all three give the same logits.
 */
export type TailLayout = "batch" | "sequence" | "matrix";

/**
 * A graph input that the tail reads for its shape alone (GPT-2 reshapes the final hidden states
 * to `input_ids.shape + (hidden,)`): it is fed zeros of the shape it would have next to the
 * residual rows.
 */
export interface ShapeInput {
  /** The graph input, e.g. `input_ids`. */
  name: string;
  /** Its element type, e.g. `int64`. */
  elemType: string;
  /**
   * Its dimensions: a fixed size, or the size of an axis of the residual feed (`residAxis` 0 and
   * 1 of `[N, 1, d]` in the `batch` layout, so `input_ids` is fed as `[N, 1]`).
   */
  dims: readonly (number | { residAxis: number })[];
}

/** The extracted tail and what is known about it. */
export interface UnembeddingTail {
  /**
   * The residual-stream tensor of the full model that the tail reads (its only input whose values
   * matter; see `shapeInputs`).
   */
  residTensor: string;
  /** The logits tensor the tail computes (its only output). */
  logitsTensor: string;
  /** How the residual tensor was found, for messages and `inspect`. */
  foundBy: string;
  /** Width of the residual stream, when the graph tells it (else known after a first run). */
  dModel: number | null;
  /** Vocabulary size (last dimension of the logits), when the graph records it. */
  vocabSize: number | null;
  /** How rows are fed, chosen from the recorded shape of the residual tensor. */
  layout: TailLayout;
  /** Element type of the residual tensor (`float32` or `float16`). */
  elemType: string;
  /** Other graph inputs of the tail, read for their shape only (fed zeros); usually none. */
  shapeInputs: readonly ShapeInput[];
  /** The tail as a model of its own (its `toBytes()` are the tail's bytes). */
  model: OnnxModel;
}

/** Options of {@linkcode findUnembeddingTail}; all optional. */
export interface FindTailOptions {
  /** The residual-stream tensor to start from; default: found from the graph (see below). */
  residTensor?: string;
  /** The logits tensor; default: the graph output `logits`, else the only float graph output. */
  logitsTensor?: string;
}

/**
 * Finds the last residual-stream tensor and the logits of a language model and extracts the
 * graph between them.
 *
 * The residual tensor is, in this order: the one given; the input of the final norm (the
 * activation that nodes scoped `…/final_layer_norm/`, `…/ln_f/`, `…/norm/`, `…/final_layernorm/`,
 * `…/norm_f/`, `…/final_norm/` or `…/ln_final/`, outside the blocks, read from outside their
 * scope); the last block's `hook_resid_post`. The logits must depend on the values of that tensor
 * alone. Other graph inputs may be read for their shape only (`Shape(input_ids)` feeding the
 * target of a `Reshape`, as GPT-2 exports do): they stay inputs of the tail, listed in
 * `shapeInputs`, and are fed zeros of the shape that matches the residual rows. A tail that reads
 * the values of `input_ids`, `attention_mask` or any other graph input is refused.
 *
 * @param model The language model.
 * @param options Tensors to use instead of the ones found.
 * @returns The tail.
 * @throws {ConfigError} when no logits or no residual tensor can be found (the message says
 *   which tensors were looked for), when the tail reads the values of other graph inputs, or when
 *   the shape of an input it reads for its shape cannot be matched to the residual stream's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OnnxModel } from "../onnx/mod.ts";
 * import { findUnembeddingTail } from "./tail.ts";
 * const model = await OnnxModel.load(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 * );
 * const tail = findUnembeddingTail(model);
 * assert.equal(tail.residTensor, "/gpt_neox/layers.3/Add_1_output_0");
 * assert.equal(tail.logitsTensor, "logits");
 * assert.equal(tail.vocabSize, 1024);
 * ```
 */
export function findUnembeddingTail(
  model: OnnxModel,
  options: FindTailOptions = {},
): UnembeddingTail {
  const logitsTensor = options.logitsTensor ?? findLogits(model);
  if (!model.has(logitsTensor)) {
    throw new ConfigError(`ONNX model ${model.source} has no tensor "${logitsTensor}" (logits)`);
  }
  const ancestors = ancestorNodes(model, logitsTensor);
  let residTensor = options.residTensor;
  let foundBy = "given";
  if (residTensor !== undefined) {
    if (!model.has(residTensor)) {
      throw new ConfigError(
        `ONNX model ${model.source} has no tensor "${residTensor}" (residual stream)`,
      );
    }
  } else {
    const norm = finalNormInput(model, ancestors);
    if (norm) {
      residTensor = norm.tensor;
      foundBy = `input of the final norm ${norm.scope}`;
    } else {
      const post = lastResidPost(model, ancestors);
      if (post) {
        residTensor = post.tensor;
        foundBy = post.hook;
      }
    }
  }
  if (residTensor === undefined) {
    throw new ConfigError(
      `Cannot find the unembedding tail of ONNX model ${model.source}: looked for the input of ` +
        `a final norm feeding "${logitsTensor}" (node scopes ${
          FINAL_NORM_SCOPES.map((s) => `…/${s}/`).join(", ")
        } outside the blocks) and for the last block's blocks.N.hook_resid_post, found neither; ` +
        `name the residual-stream tensor with the residTensor option`,
    );
  }
  const feedsLogits = residTensor === logitsTensor ||
    [...ancestors].some((n) => (n.input ?? []).includes(residTensor!));
  if (!feedsLogits) {
    throw new ConfigError(
      `Cannot use "${residTensor}" as the residual stream of ONNX model ${model.source}: ` +
        `"${logitsTensor}" does not depend on it`,
    );
  }
  const tail = model.extractSubgraph([residTensor], [logitsTensor]);
  const others = tail.inputs.filter((i) => i.name !== residTensor);
  const valueReads = others.length > 0 ? valueInputs(tail, logitsTensor) : new Set<string>();
  const readValues = others.filter((i) => valueReads.has(i.name)).map((i) => i.name);
  if (readValues.length > 0) {
    const names = readValues.join(", ");
    throw new ConfigError(
      `Cannot use the unembedding tail of ONNX model ${model.source}: the path from ` +
        `"${residTensor}" to "${logitsTensor}" also reads graph input(s) ${names}; DLA needs ` +
        `a tail that depends on the residual stream alone (other inputs may be read for their ` +
        `shape only)`,
    );
  }
  const residInfo = tail.inputs.find((i) => i.name === residTensor);
  const elemType = residInfo?.elemType ?? model.elemType(residTensor) ?? "float32";
  if (elemType !== "float32" && elemType !== "float16") {
    throw new ConfigError(
      `Cannot use "${residTensor}" of ONNX model ${model.source} as the residual stream: its ` +
        `element type is ${elemType}, expected float32 or float16`,
    );
  }
  const shape = residInfo?.shape ?? null;
  const logitsShape = model.tensor(logitsTensor)?.shape ?? null;
  const last = (s: Dim[] | null) => {
    const d = s?.[s.length - 1];
    return typeof d === "number" && d > 0 ? d : null;
  };
  const vocabSize = last(logitsShape);
  const layout = chooseLayout(model.source, residTensor, shape);
  const shapeInputs = others.map((input) =>
    shapeInput(model.source, input, (shape ?? logitsShape)?.slice(0, -1) ?? null, layout)
  );
  return {
    residTensor,
    logitsTensor,
    foundBy,
    dModel: last(shape) ?? unembeddingWidth(tail, vocabSize),
    vocabSize,
    layout,
    elemType,
    shapeInputs,
    model: tail,
  };
}

/** The logits tensor: the output named `logits`, else the only float output. */
function findLogits(model: OnnxModel): string {
  const outputs = model.outputs;
  const named = outputs.find((o) => o.name === "logits");
  if (named) return named.name;
  const floats = outputs.filter((o) => o.elemType === "float32" || o.elemType === "float16");
  if (floats.length === 1) return floats[0]!.name;
  throw new ConfigError(
    `Cannot find the logits of ONNX model ${model.source}: looked for a graph output named ` +
      `"logits" or a single float output, found outputs ${
        outputs.map((o) => o.name).join(", ") || "(none)"
      }; name it with the logitsTensor option`,
  );
}

/** Every node that the tensor depends on (including its producer). */
function ancestorNodes(model: OnnxModel, tensor: string): Set<NodeProto> {
  const seen = new Set<NodeProto>();
  const stack = [tensor];
  const visited = new Set<string>();
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (visited.has(name)) continue;
    visited.add(name);
    const node = model.producer(name);
    if (!node || seen.has(node)) continue;
    seen.add(node);
    for (const i of node.input ?? []) if (i) stack.push(i);
  }
  return seen;
}

const BLOCK_COMPONENT = /\.\d+$/;

/** The single activation that the final-norm nodes read from outside their scope. */
function finalNormInput(
  model: OnnxModel,
  ancestors: Set<NodeProto>,
): { tensor: string; scope: string } | null {
  const byScope = new Map<string, NodeProto[]>();
  for (const node of model.nodes) {
    if (!ancestors.has(node)) continue;
    const parts = (node.name ?? "").split("/");
    if (parts.length < 3 || parts[0] !== "") continue;
    const scopeParts = parts.slice(1, -1);
    const lastPart = scopeParts[scopeParts.length - 1] ?? "";
    if (!(FINAL_NORM_SCOPES as readonly string[]).includes(lastPart)) continue;
    if (scopeParts.some((p) => BLOCK_COMPONENT.test(p))) continue;
    const scope = `/${scopeParts.join("/")}`;
    const list = byScope.get(scope);
    if (list) list.push(node);
    else byScope.set(scope, [node]);
  }
  // The last such scope before the logits is the final norm.
  const scopes = [...byScope.entries()];
  for (let s = scopes.length - 1; s >= 0; s--) {
    const [scope, nodes] = scopes[s]!;
    const inside = new Set(nodes.flatMap((n) => n.output ?? []));
    const candidates = new Set<string>();
    for (const n of nodes) {
      for (const i of n.input ?? []) {
        if (!i || inside.has(i)) continue;
        if (model.tensor(i)?.kind === "initializer") continue;
        if (model.producer(i)?.opType === "Constant") continue;
        const t = model.elemType(i);
        if (t !== "float32" && t !== "float16") continue;
        candidates.add(i);
      }
    }
    if (candidates.size === 1) return { tensor: [...candidates][0]!, scope };
  }
  return null;
}

/** The last block's `hook_resid_post`, when it feeds the logits. */
function lastResidPost(
  model: OnnxModel,
  ancestors: Set<NodeProto>,
): { tensor: string; hook: string } | null {
  const posts = listHookPoints(model).filter((h) => h.hook.endsWith(".hook_resid_post"));
  const last = posts[posts.length - 1];
  if (!last) return null;
  const producer = model.producer(last.tensor);
  return producer && ancestors.has(producer) ? { tensor: last.tensor, hook: last.hook } : null;
}

/** d_model read off the unembedding weight (a MatMul/Gemm initializer) when shapes are absent. */
function unembeddingWidth(tail: OnnxModel, vocab: number | null): number | null {
  const found: number[] = [];
  for (const node of tail.nodes) {
    const op = node.opType;
    if (op !== "MatMul" && op !== "Gemm") continue;
    const b = node.input?.[1] ?? "";
    let dims = tail.tensor(b)?.kind === "initializer" ? tail.tensor(b)?.shape : null;
    let transposed = op === "Gemm" &&
      (node.attribute ?? []).some((a) => a.name === "transB" && Number(a.i) === 1);
    const producer = tail.producer(b);
    if (!dims && producer?.opType === "Transpose") {
      const src = producer.input?.[0] ?? "";
      if (tail.tensor(src)?.kind === "initializer") {
        dims = tail.tensor(src)?.shape ?? null;
        transposed = !transposed;
      }
    }
    if (!dims || dims.length !== 2) continue;
    const [rows, cols] = dims as [Dim, Dim];
    const [inDim, outDim] = transposed ? [cols, rows] : [rows, cols];
    if (typeof inDim !== "number") continue;
    if (vocab !== null && outDim !== vocab) continue;
    found.push(inDim);
  }
  return found.length > 0 ? found[found.length - 1]! : null;
}

function chooseLayout(source: string, tensor: string, shape: Dim[] | null): TailLayout {
  if (shape === null) return "batch";
  const fixed = (d: Dim | undefined) => typeof d === "number";
  if (shape.length === 2) {
    if (fixed(shape[0])) return fail();
    return "matrix";
  }
  if (shape.length !== 3) return fail();
  if (!fixed(shape[0]) || shape[1] === 1) return "batch";
  if (!fixed(shape[1]) || shape[0] === 1) return "sequence";
  return fail();

  function fail(): never {
    throw new ConfigError(
      `Cannot feed decoder rows to the unembedding tail of ONNX model ${source}: its input ` +
        `"${tensor}" has the fixed shape [${shape!.join(", ")}]; export the model with dynamic ` +
        `batch or sequence axes`,
    );
  }
}

/** Element types a shape-only input can be fed zeros of. */
const ZERO_TYPES = ["int64", "int32", "int8", "uint8", "bool", "float32", "float16", "float64"];

/**
 * How a graph input read for its shape is fed: each symbolic dimension is matched by name to an
 * axis of the residual stream (`[batch, sequence]` of `[batch, sequence, hidden]`).
 */
function shapeInput(
  source: string,
  input: { name: string; elemType: string | null; shape: Dim[] | null },
  residLeading: Dim[] | null,
  layout: TailLayout,
): ShapeInput {
  const fail = (why: string): never => {
    throw new ConfigError(
      `Cannot feed graph input "${input.name}" to the unembedding tail of ONNX model ${source}, ` +
        `which reads its shape: ${why}`,
    );
  };
  const elemType = input.elemType ?? "";
  if (!ZERO_TYPES.includes(elemType)) fail(`its element type ${elemType || "is unknown"}`);
  const rank = layout === "matrix" ? 1 : 2;
  if (residLeading === null || residLeading.length !== rank) {
    fail(
      `the graph records no ${rank + 1}-dimensional shape for the residual stream or the logits ` +
        `to match its dimensions to`,
    );
  }
  if (input.shape === null) fail("the graph records no shape for it");
  const dims = input.shape!.map((d) => {
    if (typeof d === "number" && d > 0) return d;
    const axis = typeof d === "string" ? residLeading!.indexOf(d) : -1;
    if (axis < 0) {
      fail(
        `its dimension ${d === null ? "(unnamed)" : `"${d}"`} is none of the residual ` +
          `stream's [${residLeading!.join(", ")}]`,
      );
    }
    return { residAxis: axis };
  });
  return { name: input.name, elemType, dims };
}

/**
 * Input positions whose values set the output's shape, for the operators where they do; every
 * other operator's output shape follows from its inputs' shapes alone.
 */
const SHAPE_ARGUMENTS: Record<string, readonly number[]> = {
  Reshape: [1],
  Expand: [1],
  Tile: [1],
  Slice: [1, 2, 3, 4],
  Pad: [1, 3],
  Squeeze: [1],
  Unsqueeze: [1],
  Split: [1],
  TopK: [1],
  OneHot: [1],
  Range: [0, 1, 2],
  ConstantOfShape: [0],
  NonZero: [0],
  Compress: [1],
  Unique: [0],
  Resize: [1, 2, 3],
  Upsample: [1],
  CenterCropPad: [1],
  ReduceMean: [1],
  ReduceSum: [1],
  ReduceMax: [1],
  ReduceMin: [1],
  ReduceProd: [1],
  ReduceL1: [1],
  ReduceL2: [1],
  ReduceLogSum: [1],
  ReduceLogSumExp: [1],
  ReduceSumSquare: [1],
};

/**
 * The graph inputs whose values the tensor depends on, through its values or its shape.
 *
 * Each tensor carries two sets of graph inputs: those its values depend on and those its shape
 * depends on. `Shape` and `Size` turn the shape of their input into values and drop the values;
 * the arguments in {@linkcode SHAPE_ARGUMENTS} turn values into a shape. A node with subgraphs
 * (`If`, `Loop`, `Scan`) is taken to depend on everything it reads in both ways.
 */
function valueInputs(tail: OnnxModel, tensor: string): Set<string> {
  const values = new Map<string, Set<string>>();
  const shapes = new Map<string, Set<string>>();
  const empty = new Set<string>();
  for (const input of tail.inputs) values.set(input.name, new Set([input.name]));
  const union = (sets: (Set<string> | undefined)[]) => {
    const out = new Set<string>();
    for (const set of sets) for (const v of set ?? empty) out.add(v);
    return out;
  };
  for (const node of tail.nodes) {
    const inputs = node.input ?? [];
    const subgraphs = (node.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0);
    let value: Set<string>;
    let shape: Set<string>;
    if (subgraphs) {
      value = shape = new Set(tail.inputs.map((i) => i.name));
    } else if (node.opType === "Shape" || node.opType === "Size") {
      value = union([shapes.get(inputs[0] ?? "")]);
      shape = new Set();
    } else {
      value = union(inputs.flatMap((i) => [values.get(i), shapes.get(i)]));
      const args = SHAPE_ARGUMENTS[node.opType ?? ""] ?? [];
      shape = union([
        ...inputs.map((i) => shapes.get(i)),
        ...args.map((k) => values.get(inputs[k] ?? "")),
      ]);
    }
    for (const out of node.output ?? []) {
      values.set(out, value);
      shapes.set(out, shape);
    }
  }
  return union([values.get(tensor), shapes.get(tensor)]);
}
