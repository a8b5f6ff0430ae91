/**
 * An ONNX model that can be read, inspected and edited: hook tensors become graph outputs, the
 * unused rest is pruned, a tail is extracted as its own model, an SAE encoder is appended.
 *
 * External data: initializers stored outside `model.onnx` (`data_location = EXTERNAL`) stay
 * external. Their files are checked when the model is loaded (present, long enough) but never read
 * into memory; a session made from the edited bytes resolves them from {@linkcode OnnxModel.baseDir}
 * (see `createSession`). This keeps models of any size loadable: only the graph is in memory.
 *
 * Every edit returns a new `OnnxModel`; node and tensor protos are shared, never mutated.
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import {
  type AttributeProto,
  elemTypeCode,
  elemTypeName,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  onnx,
  type TensorProto,
  toNumber,
  type ValueInfoProto,
} from "./_proto.ts";

export type { NodeProto, TensorProto, ValueInfoProto } from "./_proto.ts";

/** A tensor dimension: a size, or a symbolic name such as `"batch_size"`, or `null` if unknown. */
export type Dim = number | string | null;

/** What the graph says about one tensor. */
export interface TensorInfo {
  /** The tensor name. */
  name: string;
  /** Element type (`"float32"`, `"float16"`, `"int64"`, …), or `null` when it cannot be told. */
  elemType: string | null;
  /** The shape, or `null` when the graph does not record it. */
  shape: Dim[] | null;
  /** Where it comes from. */
  kind: "input" | "initializer" | "node";
}

/** One attribute value of a node built with {@linkcode makeNode}, named as in `AttributeProto`. */
export type AttributeValue =
  | { i: number }
  | { f: number }
  | { s: string }
  | { ints: number[] }
  | { floats: number[] }
  | { t: InitializerSpec };

/** A node to append, in plain form. */
export interface NodeSpec {
  /** The operator, e.g. `"MatMul"`. */
  opType: string;
  /** Input tensor names (`""` for an omitted optional input). */
  inputs: string[];
  /** Output tensor names. */
  outputs: string[];
  /** Node name; defaults to `/saeflow/<opType>_<n>`. */
  name?: string;
  /** Operator domain; default `""` (the ONNX domain). `com.microsoft` ops get an opset import. */
  domain?: string;
  /** Attributes by name. */
  attributes?: Record<string, AttributeValue>;
}

/** A constant tensor to add as an initializer. */
export interface InitializerSpec {
  /** Tensor name. */
  name: string;
  /** Dimensions. */
  dims: number[];
  /** The values; the element type follows the array type (`Uint16Array` is read as float16). */
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;
  /** Element type when the array type is ambiguous (`"bool"` for a `Uint8Array`, …). */
  elemType?: string;
}

/** A graph output to declare: a name, or a name with its type and shape. */
export type OutputSpec = string | { name: string; elemType?: string; shape?: Dim[] };

/** Options for {@linkcode OnnxModel.fromBytes}. */
export interface FromBytesOptions {
  /** Folder that external data locations are relative to; default: none (no external data). */
  baseDir?: string;
  /** Path named in error messages; default `"<bytes>"`. */
  source?: string;
}

/**
 * An ONNX model in memory, with the graph queries and edits the model-hook and DLA stages need.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OnnxModel } from "./graph.ts";
 * const model = await OnnxModel.load(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 * );
 * const pruned = model.prune(["/gpt_neox/layers.1/Add_1_output_0"]);
 * assert(pruned.nodes.length < model.nodes.length);
 * ```
 */
export class OnnxModel {
  /** The decoded model. Treat as read-only: edits go through the methods, which copy. */
  readonly proto: ModelProto;
  /** Folder that external data locations are relative to (`null` when loaded from bytes). */
  readonly baseDir: string | null;
  /** Where the model came from, for messages. */
  readonly source: string;
  #producers: Map<string, NodeProto> | undefined;
  #consumers: Map<string, NodeProto[]> | undefined;
  #types: Map<string, string | null> | undefined;
  #initializers: Map<string, TensorProto> | undefined;

  private constructor(proto: ModelProto, baseDir: string | null, source: string) {
    this.proto = proto;
    this.baseDir = baseDir;
    this.source = source;
  }

  /**
   * Reads and checks `model.onnx` (and the presence and size of its external data files).
   *
   * @param path The `.onnx` file.
   * @returns The model.
   * @throws {ConfigError} "Cannot load ONNX model <path>: …" when the file is missing, corrupt,
   *   truncated or refers to missing external data.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * const m = await OnnxModel.load(
   *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
   * );
   * assert(m.inputs.some((i) => i.name === "input_ids"));
   * ```
   */
  static async load(path: string): Promise<OnnxModel> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
      throw new ConfigError(`Cannot load ONNX model ${path}: ${why}`, { cause: e });
    }
    const model = OnnxModel.fromBytes(bytes, { baseDir: dirname(resolve(path)), source: path });
    await model.#checkExternalData();
    return model;
  }

  /**
   * Decodes a model from bytes and checks that its graph is complete.
   *
   * @param bytes The serialized `ModelProto`.
   * @param options Where external data lives and what to call the model in messages.
   * @returns The model.
   * @throws {ConfigError} "Cannot load ONNX model <source>: …" when the bytes are not a model.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * try {
   *   OnnxModel.fromBytes(new Uint8Array([8, 7, 18, 200]));
   * } catch (e) {
   *   assert((e as Error).message.startsWith("Cannot load ONNX model <bytes>:"));
   * }
   * ```
   */
  static fromBytes(bytes: Uint8Array, options: FromBytesOptions = {}): OnnxModel {
    const source = options.source ?? "<bytes>";
    let proto: ModelProto;
    try {
      proto = onnx.ModelProto.decode(bytes);
    } catch (e) {
      throw new ConfigError(
        `Cannot load ONNX model ${source}: not a valid ONNX protobuf (${(e as Error).message})`,
        { cause: e },
      );
    }
    const model = new OnnxModel(proto, options.baseDir ?? null, source);
    model.#validate();
    return model;
  }

  /** The graph. */
  get graph(): GraphProto {
    return this.proto.graph!;
  }

  /** The nodes in graph (topological) order. */
  get nodes(): readonly NodeProto[] {
    return this.graph.node ?? [];
  }

  /** The graph inputs that are not initializers (what a session must be fed). */
  get inputs(): TensorInfo[] {
    const inits = new Set((this.graph.initializer ?? []).map((t) => t.name ?? ""));
    return (this.graph.input ?? []).filter((v) => !inits.has(v.name ?? "")).map((v) =>
      valueInfo(v, "input")
    );
  }

  /** The graph outputs. */
  get outputs(): TensorInfo[] {
    return (this.graph.output ?? []).map((v) => {
      const info = valueInfo(v, "node");
      return { ...info, elemType: info.elemType ?? this.elemType(info.name) };
    });
  }

  /** The default-domain opset version (`ai.onnx`). */
  get opset(): number {
    const entry = (this.proto.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
    return toNumber(entry?.version);
  }

  /** The IR version of the model file. */
  get irVersion(): number {
    return toNumber(this.proto.irVersion);
  }

  /**
   * Lists every tensor: graph inputs, initializers and node outputs, with the type and shape the
   * graph records (value_info, inputs, outputs, initializers) and element types propagated through
   * the common operators where the graph records none. Shapes are not inferred.
   *
   * @returns The tensors, graph inputs first, then initializers, then node outputs in node order.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * const m = await OnnxModel.load(
   *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
   * );
   * assert(m.tensors().some((t) => t.name === "logits" && t.elemType === "float32"));
   * ```
   */
  tensors(): TensorInfo[] {
    const known = this.#recorded();
    const out: TensorInfo[] = [];
    const seen = new Set<string>();
    const push = (name: string, kind: TensorInfo["kind"]) => {
      if (!name || seen.has(name)) return;
      seen.add(name);
      const rec = known.get(name);
      out.push({
        name,
        kind,
        elemType: rec?.elemType ?? this.elemType(name),
        shape: rec?.shape ?? null,
      });
    };
    const inits = new Set((this.graph.initializer ?? []).map((t) => t.name ?? ""));
    for (const v of this.graph.input ?? []) {
      if (!inits.has(v.name ?? "")) push(v.name ?? "", "input");
    }
    for (const t of this.graph.initializer ?? []) push(t.name ?? "", "initializer");
    for (const n of this.nodes) for (const o of n.output ?? []) push(o, "node");
    return out;
  }

  /**
   * The recorded information about one tensor, or `undefined` when the graph has no such tensor.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * const m = await OnnxModel.load(
   *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
   * );
   * assert(m.tensor("input_ids")?.elemType === "int64");
   * ```
   */
  tensor(name: string): TensorInfo | undefined {
    if (!this.has(name)) return undefined;
    const rec = this.#recorded().get(name);
    const kind: TensorInfo["kind"] = this.producer(name)
      ? "node"
      : this.#initializer(name)
      ? "initializer"
      : "input";
    return {
      name,
      kind,
      elemType: rec?.elemType ?? this.elemType(name),
      shape: rec?.shape ?? null,
    };
  }

  /** Whether the graph defines a tensor of this name (input, initializer or node output). */
  has(name: string): boolean {
    return this.#producerMap().has(name) || this.#initializer(name) !== undefined ||
      (this.graph.input ?? []).some((v) => v.name === name);
  }

  /** The node that produces a tensor, or `undefined` for inputs, initializers and unknown names. */
  producer(name: string): NodeProto | undefined {
    return this.#producerMap().get(name);
  }

  /** The nodes that consume a tensor, in node order (subgraph references included). */
  consumers(name: string): NodeProto[] {
    if (!this.#consumers) {
      const map = new Map<string, NodeProto[]>();
      for (const n of this.nodes) {
        for (const i of nodeInputs(n)) {
          const list = map.get(i);
          if (!list) map.set(i, [n]);
          else if (list[list.length - 1] !== n) list.push(n);
        }
      }
      this.#consumers = map;
    }
    return this.#consumers.get(name) ?? [];
  }

  /**
   * The element type of a tensor, from the graph's records or propagated through the operators
   * (`Cast` → `to`, `Shape` → int64, comparisons → bool, most others → their first input's type).
   *
   * @returns The type name, or `null` when it cannot be told.
   */
  elemType(name: string): string | null {
    this.#types ??= this.#propagateTypes();
    return this.#types.get(name) ?? null;
  }

  /**
   * A copy of the model whose graph outputs are the current ones plus `names`.
   *
   * @throws {ConfigError} when a name is not a tensor of the graph.
   */
  addOutputs(names: OutputSpec[]): OnnxModel {
    const current = this.graph.output ?? [];
    const have = new Set(current.map((v) => v.name));
    const added = names.filter((n) => !have.has(specName(n))).map((n) => this.#outputInfo(n));
    return this.#with({ output: [...current, ...added] });
  }

  /**
   * A copy of the model that computes exactly `outputs`: every node that does not feed one of them
   * is removed, and so are unused initializers, value_info entries and graph inputs.
   *
   * @param outputs The tensors to keep as graph outputs (in this order).
   * @throws {ConfigError} when an output is not a tensor of the graph.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * const m = await OnnxModel.load(
   *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
   * );
   * const p = m.prune(["/gpt_neox/embed_in/Gather_output_0"]);
   * assert.equal(p.inputs.map((i) => i.name).join(), "input_ids");
   * ```
   */
  prune(outputs: OutputSpec[]): OnnxModel {
    return this.extractSubgraph([], outputs);
  }

  /**
   * A new model that computes `outputs` from `inputs`: the given tensors become graph inputs
   * (nothing above them is kept), the rest is pruned as in {@linkcode prune}. Graph inputs of the
   * original that are still needed stay inputs.
   *
   * @param inputs Tensors that become the new graph inputs (e.g. the last residual stream).
   * @param outputs Tensors that become the graph outputs (e.g. `logits`).
   * @throws {ConfigError} when a name is not a tensor of the graph.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * const m = await OnnxModel.load(
   *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
   * );
   * const tail = m.extractSubgraph(["/gpt_neox/layers.3/Add_1_output_0"], ["logits"]);
   * assert(tail.inputs[0]?.name === "/gpt_neox/layers.3/Add_1_output_0");
   * ```
   */
  extractSubgraph(inputs: string[], outputs: OutputSpec[]): OnnxModel {
    for (const name of [...inputs, ...outputs.map(specName)]) this.#require(name);
    const stop = new Set(inputs);
    const needed = new Set<string>();
    const keep = new Set<NodeProto>();
    const stack = outputs.map(specName);
    while (stack.length > 0) {
      const name = stack.pop()!;
      if (needed.has(name)) continue;
      needed.add(name);
      if (stop.has(name)) continue;
      const node = this.producer(name);
      if (!node || keep.has(node)) continue;
      keep.add(node);
      for (const i of nodeInputs(node)) if (!needed.has(i)) stack.push(i);
    }
    const nodes = this.nodes.filter((n) => keep.has(n));
    const inits = (this.graph.initializer ?? []).filter((t) =>
      needed.has(t.name ?? "") && !stop.has(t.name ?? "")
    );
    const initNames = new Set(inits.map((t) => t.name));
    const oldInputs = (this.graph.input ?? []).filter((v) =>
      needed.has(v.name ?? "") && !stop.has(v.name ?? "") &&
      (!this.#initializer(v.name ?? "") || initNames.has(v.name))
    );
    const newInputs = inputs.map((name) => this.#outputInfo(name));
    const outs = outputs.map((o) => this.#outputInfo(o));
    const valueInfo = (this.graph.valueInfo ?? []).filter((v) =>
      needed.has(v.name ?? "") && !stop.has(v.name ?? "")
    );
    return this.#with({
      node: nodes,
      initializer: inits,
      input: [...newInputs, ...oldInputs],
      output: outs,
      valueInfo,
    });
  }

  /**
   * A copy of the model with nodes and initializers appended after the existing nodes and
   * `newOutputs` added to the graph outputs (prune afterwards to drop what is no longer needed).
   *
   * @param nodes The nodes, in topological order; they may consume any tensor of the graph.
   * @param initializers Constant tensors the nodes use.
   * @param newOutputs Tensors to declare as additional graph outputs.
   * @throws {ConfigError} when a new tensor name is already taken or a node input is undefined.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * const m = await OnnxModel.load(
   *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
   * );
   * const x = "/gpt_neox/layers.1/Add_1_output_0";
   * const m2 = m.appendNodes(
   *   [{ opType: "Relu", inputs: [x], outputs: ["relu_out"] }],
   *   [],
   *   [{ name: "relu_out", elemType: "float32" }],
   * ).prune(["relu_out"]);
   * assert(m2.outputs[0]?.name === "relu_out");
   * ```
   */
  appendNodes(
    nodes: (NodeSpec | NodeProto)[],
    initializers: InitializerSpec[],
    newOutputs: OutputSpec[],
  ): OnnxModel {
    const defined = new Set<string>(this.tensors().map((t) => t.name));
    const inits = initializers.map((spec) => {
      if (defined.has(spec.name)) {
        throw new ConfigError(
          `Cannot append to ONNX model ${this.source}: tensor "${spec.name}" already exists`,
        );
      }
      defined.add(spec.name);
      return makeTensor(spec);
    });
    const protos: NodeProto[] = [];
    const domains = new Set<string>();
    let n = this.nodes.length;
    for (const spec of nodes) {
      const node = "opType" in spec && "inputs" in spec ? makeNode(spec, `_${n++}`) : spec;
      for (const i of node.input ?? []) {
        if (i && !defined.has(i)) {
          throw new ConfigError(
            `Cannot append to ONNX model ${this.source}: node ${node.name} reads "${i}", ` +
              `which is not defined`,
          );
        }
      }
      for (const o of node.output ?? []) {
        if (defined.has(o)) {
          throw new ConfigError(
            `Cannot append to ONNX model ${this.source}: tensor "${o}" already exists`,
          );
        }
        defined.add(o);
      }
      if (node.domain && node.domain !== "ai.onnx") domains.add(node.domain);
      protos.push(node);
    }
    const opsets = [...(this.proto.opsetImport ?? [])];
    for (const d of domains) {
      if (!opsets.some((o) => o.domain === d)) opsets.push({ domain: d, version: 1 });
    }
    const next = this.#with({
      node: [...this.nodes, ...protos],
      initializer: [...(this.graph.initializer ?? []), ...inits],
    }, { opsetImport: opsets });
    return next.addOutputs(newOutputs);
  }

  /**
   * Serializes the model (external data stays external, with its original locations).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { OnnxModel } from "./graph.ts";
   * const m = await OnnxModel.load(
   *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
   * );
   * assert.equal(OnnxModel.fromBytes(m.toBytes()).nodes.length, m.nodes.length);
   * ```
   */
  toBytes(): Uint8Array {
    return onnx.ModelProto.encode(this.proto).finish();
  }

  /**
   * Reads the data of an initializer (inline or external) as a typed array of its element type
   * (`float16` as raw `Uint16Array` bits).
   *
   * @throws {ConfigError} when there is no such initializer or its data cannot be read.
   */
  async readInitializer(
    name: string,
  ): Promise<{ elemType: string; dims: number[]; data: ArrayBufferView }> {
    const t = this.#initializer(name);
    if (!t) throw new ConfigError(`ONNX model ${this.source} has no initializer "${name}"`);
    const elemType = elemTypeName(t.dataType ?? 0);
    const dims = (t.dims ?? []).map(toNumber);
    const count = dims.reduce((a, b) => a * b, 1);
    let bytes: Uint8Array | undefined;
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const { path, offset, length } = this.#externalRef(t);
      const file = await Deno.open(path);
      try {
        bytes = new Uint8Array(length ?? (await file.stat()).size - offset);
        await file.seek(offset, Deno.SeekMode.Start);
        let read = 0;
        while (read < bytes.length) {
          const n = await file.read(bytes.subarray(read));
          if (n === null) throw new ConfigError(`External data ${path} ends early for "${name}"`);
          read += n;
        }
      } finally {
        file.close();
      }
    } else if (t.rawData && t.rawData.length > 0) {
      bytes = t.rawData;
    }
    if (bytes) {
      const copy = bytes.slice();
      return { elemType, dims, data: typedView(elemType, copy.buffer) };
    }
    const data: ArrayBufferView = elemType === "float32"
      ? Float32Array.from(t.floatData ?? [])
      : elemType === "float64"
      ? Float64Array.from(t.doubleData ?? [])
      : elemType === "int64"
      ? BigInt64Array.from((t.int64Data ?? []).map((v) => BigInt(toNumber(v))))
      : elemType === "float16"
      ? Uint16Array.from(t.int32Data ?? [])
      : Int32Array.from(t.int32Data ?? []);
    if ((data as Float32Array).length !== count && count !== 0) {
      throw new ConfigError(`Cannot read initializer "${name}" of ${this.source}: data is missing`);
    }
    return { elemType, dims, data };
  }

  // ---- internals ----

  #with(graph: Partial<GraphProto>, model: Partial<ModelProto> = {}): OnnxModel {
    const g = onnx.GraphProto.fromObject({});
    Object.assign(g, this.graph, graph);
    const m = onnx.ModelProto.fromObject({});
    Object.assign(m, this.proto, model, { graph: g });
    return new OnnxModel(m, this.baseDir, this.source);
  }

  #producerMap(): Map<string, NodeProto> {
    if (!this.#producers) {
      const map = new Map<string, NodeProto>();
      for (const n of this.nodes) for (const o of n.output ?? []) if (o) map.set(o, n);
      this.#producers = map;
    }
    return this.#producers;
  }

  #initializer(name: string): TensorProto | undefined {
    this.#initializers ??= new Map((this.graph.initializer ?? []).map((t) => [t.name ?? "", t]));
    return this.#initializers.get(name);
  }

  #require(name: string): void {
    if (!this.has(name)) {
      throw new ConfigError(`ONNX model ${this.source} has no tensor "${name}"`);
    }
  }

  #recorded(): Map<string, { elemType: string | null; shape: Dim[] | null }> {
    const map = new Map<string, { elemType: string | null; shape: Dim[] | null }>();
    for (const t of this.graph.initializer ?? []) {
      map.set(t.name ?? "", {
        elemType: elemTypeName(t.dataType ?? 0),
        shape: (t.dims ?? []).map(toNumber),
      });
    }
    for (const list of [this.graph.valueInfo, this.graph.input, this.graph.output]) {
      for (const v of list ?? []) {
        const info = valueInfo(v, "node");
        if (info.elemType !== null || info.shape !== null) {
          map.set(info.name, { elemType: info.elemType, shape: info.shape });
        }
      }
    }
    return map;
  }

  #outputInfo(spec: OutputSpec): ValueInfoProto {
    const name = specName(spec);
    this.#require(name);
    const rec = this.#recorded().get(name);
    const elemType = (typeof spec === "object" ? spec.elemType : undefined) ?? rec?.elemType ??
      this.elemType(name);
    const shape = (typeof spec === "object" ? spec.shape : undefined) ?? rec?.shape ?? null;
    const tensorType: Record<string, unknown> = {};
    if (elemType) tensorType.elemType = elemTypeCode(elemType);
    if (shape) {
      tensorType.shape = {
        dim: shape.map((d) =>
          typeof d === "number" ? { dimValue: d } : typeof d === "string" ? { dimParam: d } : {}
        ),
      };
    }
    return onnx.ValueInfoProto.fromObject({ name, type: { tensorType } });
  }

  #propagateTypes(): Map<string, string | null> {
    const types = new Map<string, string | null>();
    for (const [name, rec] of this.#recorded()) if (rec.elemType) types.set(name, rec.elemType);
    const first = (n: NodeProto, index = 0) => types.get(n.input?.[index] ?? "") ?? null;
    for (const n of this.nodes) {
      const op = n.opType ?? "";
      let t: string | null;
      if (op === "Cast") t = elemTypeName(toNumber(attr(n, "to")?.i));
      else if (op === "CastLike") t = first(n, 1);
      else if (op === "Constant") {
        const v = attr(n, "value");
        t = v?.t
          ? elemTypeName(v.t.dataType ?? 0)
          : attr(n, "value_float") || attr(n, "value_floats")
          ? "float32"
          : "int64";
      } else if (op === "ConstantOfShape") {
        const v = attr(n, "value");
        t = v?.t ? elemTypeName(v.t.dataType ?? 0) : "float32";
      } else if (["Shape", "Size", "NonZero", "ArgMax", "ArgMin"].includes(op)) t = "int64";
      else if (
        ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor"]
          .includes(op) || op.startsWith("Is")
      ) t = "bool";
      else if (op === "Where") t = first(n, 1);
      else if (op === "Gather" || op === "GatherElements" || op === "GatherND") t = first(n, 0);
      else t = first(n, 0);
      for (const o of n.output ?? []) if (o && !types.has(o)) types.set(o, t);
    }
    return types;
  }

  #validate(): void {
    const fail = (why: string) => {
      throw new ConfigError(`Cannot load ONNX model ${this.source}: ${why}`);
    };
    const g = this.proto.graph;
    if (!g) fail("the file holds no graph (not an ONNX model, or empty)");
    if ((g!.node ?? []).length === 0) fail("the graph has no nodes");
    const defined = new Set<string>([""]);
    for (const v of g!.input ?? []) defined.add(v.name ?? "");
    for (const t of g!.initializer ?? []) defined.add(t.name ?? "");
    for (const n of g!.node ?? []) {
      for (const i of n.input ?? []) {
        if (!defined.has(i)) {
          fail(
            `node ${n.name || n.opType} reads "${i}", which no earlier node, input or ` +
              `initializer defines (the file is truncated or not topologically sorted)`,
          );
        }
      }
      for (const o of n.output ?? []) defined.add(o);
    }
    for (const v of g!.output ?? []) {
      if (!defined.has(v.name ?? "")) fail(`graph output "${v.name}" is never computed`);
    }
  }

  #externalRef(t: TensorProto): { path: string; offset: number; length: number | undefined } {
    const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
    const location = entries.get("location");
    if (!location) {
      throw new ConfigError(
        `Cannot load ONNX model ${this.source}: initializer "${t.name}" is external but has no location`,
      );
    }
    if (!this.baseDir) {
      throw new ConfigError(
        `Cannot load ONNX model ${this.source}: initializer "${t.name}" is stored in external ` +
          `file ${location}, but the model was given as bytes without a folder`,
      );
    }
    const length = entries.get("length");
    return {
      path: resolve(this.baseDir, location),
      offset: Number(entries.get("offset") ?? 0),
      length: length === undefined ? undefined : Number(length),
    };
  }

  async #checkExternalData(): Promise<void> {
    const sizes = new Map<string, number>();
    for (const t of this.graph.initializer ?? []) {
      if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
      const { path, offset, length } = this.#externalRef(t);
      let size = sizes.get(path);
      if (size === undefined) {
        try {
          size = (await Deno.stat(path)).size;
        } catch {
          throw new ConfigError(
            `Cannot load ONNX model ${this.source}: external data file ${path} ` +
              `(for initializer "${t.name}") is missing`,
          );
        }
        sizes.set(path, size);
      }
      if (offset + (length ?? 0) > size) {
        throw new ConfigError(
          `Cannot load ONNX model ${this.source}: external data file ${path} is truncated ` +
            `(initializer "${t.name}" needs bytes up to ${
              offset + (length ?? 0)
            }, file has ${size})`,
        );
      }
    }
  }
}

/** A graph input or output of {@linkcode buildModel}. */
export interface GraphValue {
  /** Tensor name. */
  name: string;
  /** `float32`, `float16`, `int64`, `int32`, `uint8` or `bool`. */
  elemType: string;
  /** Dimensions; strings are symbolic. */
  dims: (number | string)[];
}

const ELEM_CODES: Record<string, number> = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
};

/**
 * Serializes a new single-graph ONNX model (IR 8) from plain nodes and initializers. `OnnxModel`
 * edits existing models only; this makes the standalone encoder graph and benchmark graphs.
 *
 * @param parts nodes in topological order, initializers, graph inputs and outputs, opset
 * @returns the model bytes
 * @throws {TypeError} for an element type it does not know
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildModel, OnnxModel } from "./graph.ts";
 * const bytes = buildModel({
 *   nodes: [{ opType: "Relu", inputs: ["x"], outputs: ["y"] }],
 *   initializers: [],
 *   inputs: [{ name: "x", elemType: "float32", dims: ["n"] }],
 *   outputs: [{ name: "y", elemType: "float32", dims: ["n"] }],
 * });
 * assert.deepEqual(OnnxModel.fromBytes(bytes).outputs.map((o) => o.name), ["y"]);
 * ```
 */
export function buildModel(parts: {
  nodes: NodeSpec[];
  initializers: InitializerSpec[];
  inputs: GraphValue[];
  outputs: GraphValue[];
  opset?: number;
  name?: string;
}): Uint8Array {
  const valueInfo = (v: GraphValue) => {
    const elemType = ELEM_CODES[v.elemType];
    if (elemType === undefined) throw new TypeError(`Unknown element type "${v.elemType}"`);
    return onnx.ValueInfoProto.fromObject({
      name: v.name,
      type: {
        tensorType: {
          elemType,
          shape: {
            dim: v.dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })),
          },
        },
      },
    });
  };
  const graph = onnx.GraphProto.fromObject({ name: parts.name ?? "saeflow" });
  graph.node = parts.nodes.map((n, i) => makeNode(n, `_${i}`)) as InstanceType<
    typeof onnx.NodeProto
  >[];
  graph.initializer = parts.initializers.map(makeTensor) as InstanceType<typeof onnx.TensorProto>[];
  graph.input = parts.inputs.map(valueInfo);
  graph.output = parts.outputs.map(valueInfo);
  const model = onnx.ModelProto.fromObject({
    irVersion: 8,
    producerName: "saeflow",
    opsetImport: [{ domain: "", version: parts.opset ?? 17 }],
  });
  model.graph = graph;
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Builds a `NodeProto` from a plain description.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeNode } from "./graph.ts";
 * const n = makeNode({ opType: "Relu", inputs: ["x"], outputs: ["y"] });
 * assert.equal(n.opType, "Relu");
 * assert.equal(n.name, "/saeflow/Relu");
 * ```
 */
export function makeNode(spec: NodeSpec, suffix = ""): NodeProto {
  const attribute: AttributeProto[] = Object.entries(spec.attributes ?? {}).map(([name, v]) => {
    const T = onnx.AttributeProto.AttributeType;
    if ("i" in v) return { name, type: T.INT, i: v.i };
    if ("f" in v) return { name, type: T.FLOAT, f: v.f };
    if ("s" in v) return { name, type: T.STRING, s: new TextEncoder().encode(v.s) };
    if ("ints" in v) return { name, type: T.INTS, ints: v.ints };
    if ("floats" in v) return { name, type: T.FLOATS, floats: v.floats };
    return { name, type: T.TENSOR, t: makeTensor(v.t) };
  });
  return onnx.NodeProto.fromObject({
    name: spec.name ?? `/saeflow/${spec.opType}${suffix}`,
    opType: spec.opType,
    domain: spec.domain ?? "",
    input: spec.inputs,
    output: spec.outputs,
    attribute,
  });
}

/**
 * Builds an initializer `TensorProto` (raw little-endian data) from a typed array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeTensor } from "./graph.ts";
 * const t = makeTensor({ name: "w", dims: [2], data: new Float32Array([1, 2]) });
 * assert(t.dataType === 1 && t.rawData?.length === 8);
 * ```
 */
export function makeTensor(spec: InitializerSpec): TensorProto {
  const elemType = spec.elemType ?? (
    spec.data instanceof Float32Array
      ? "float32"
      : spec.data instanceof Float64Array
      ? "float64"
      : spec.data instanceof Int32Array
      ? "int32"
      : spec.data instanceof BigInt64Array
      ? "int64"
      : spec.data instanceof Uint16Array
      ? "float16"
      : "uint8"
  );
  const count = spec.dims.reduce((a, b) => a * b, 1);
  if (spec.data.length !== count) {
    throw new RangeError(
      `Initializer "${spec.name}" has ${spec.data.length} values for dims [${spec.dims}]`,
    );
  }
  return onnx.TensorProto.fromObject({
    name: spec.name,
    dims: spec.dims,
    dataType: elemTypeCode(elemType),
    rawData: new Uint8Array(spec.data.buffer, spec.data.byteOffset, spec.data.byteLength),
  });
}

/** The names a node reads, including outer-scope names its subgraphs (If/Loop/Scan) read. */
function nodeInputs(node: NodeProto): string[] {
  const names = (node.input ?? []).filter((i) => i !== "");
  for (const a of node.attribute ?? []) {
    for (const g of [a.g, ...(a.graphs ?? [])]) if (g) names.push(...outerNames(g));
  }
  return names;
}

function outerNames(g: GraphProto): string[] {
  const local = new Set<string>();
  for (const v of g.input ?? []) local.add(v.name ?? "");
  for (const t of g.initializer ?? []) local.add(t.name ?? "");
  const out: string[] = [];
  for (const n of g.node ?? []) {
    for (const i of nodeInputs(n)) if (!local.has(i)) out.push(i);
    for (const o of n.output ?? []) local.add(o);
  }
  return out;
}

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

function specName(spec: OutputSpec): string {
  return typeof spec === "string" ? spec : spec.name;
}

function valueInfo(v: ValueInfoProto, kind: TensorInfo["kind"]): TensorInfo {
  const tt = v.type?.tensorType;
  const elemType = tt?.elemType ? elemTypeName(tt.elemType) : null;
  const shape = tt?.shape
    ? (tt.shape.dim ?? []).map((d): Dim => {
      // Decoded messages say which member of the `value` oneof is set; plain objects do not.
      const which = (d as { value?: string }).value;
      if (which === "dimParam" || (which === undefined && d.dimParam)) return d.dimParam ?? null;
      if (which === "dimValue" || (which === undefined && d.dimValue != null)) {
        return toNumber(d.dimValue);
      }
      return null;
    })
    : null;
  return { name: v.name ?? "", kind, elemType, shape };
}

function typedView(elemType: string, buffer: ArrayBufferLike): ArrayBufferView {
  switch (elemType) {
    case "float32":
      return new Float32Array(buffer);
    case "float64":
      return new Float64Array(buffer);
    case "int64":
      return new BigInt64Array(buffer);
    case "int32":
      return new Int32Array(buffer);
    case "float16":
    case "bfloat16":
      return new Uint16Array(buffer);
    default:
      return new Uint8Array(buffer);
  }
}
