/**
 * `saeflow inspect model DIR`: what a model folder offers (inputs, hook points with shapes,
 * vocabulary size, opset).
 *
 * @module
 */
import {
  type Dim,
  type HookPoint,
  listHookPoints,
  loadModelDir,
  maxContextSize,
  OnnxModel,
  summarizeHooks,
} from "../onnx/mod.ts";
import { feedBuilder } from "./feeds.ts";
import { createSession } from "./session.ts";

/** The result of {@linkcode inspectModel}. */
export interface ModelInspection {
  /** The model folder. */
  dir: string;
  /** The ONNX file. */
  onnxPath: string;
  /** `architectures[0]` or `model_type` of config.json, when given. */
  architecture: string | null;
  /** Default-domain opset. */
  opset: number;
  /** ONNX IR version. */
  irVersion: number;
  /** The program that wrote the file (`pytorch 2.1.0`). */
  producer: string;
  /** Graph inputs. */
  inputs: { name: string; elemType: string | null; shape: Dim[] | null }[];
  /** Graph outputs. */
  outputs: { name: string; elemType: string | null; shape: Dim[] | null }[];
  /** Vocabulary size (config.json `vocab_size`, else the last dimension of `logits`). */
  vocabSize: number | null;
  /** Longest context, from config.json. */
  maxContext: number | null;
  /** Hook points, with shapes `["batch", "sequence", d_model]`. */
  hookPoints: HookPoint[];
  /** Whether initializers are stored in external data files. */
  externalData: boolean;
}

/**
 * Reads a model folder and lists its hook points with their shapes. Hook shapes the graph does
 * not record are measured by running the pruned graph once on a 1×2 input.
 *
 * @param dir The model folder.
 * @returns What the model offers.
 * @throws {ConfigError} for a folder without an ONNX file or a corrupt model.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { inspectModel, formatInspect } from "./inspect.ts";
 * const info = await inspectModel(new URL("../../fixtures/tiny-neox", import.meta.url).pathname);
 * assert(info.hookPoints[0]?.shape?.[2] === 64);
 * assert(formatInspect(info).includes("blocks.0.hook_resid_pre"));
 * ```
 */
export async function inspectModel(dir: string): Promise<ModelInspection> {
  const files = await loadModelDir(dir);
  const model = await OnnxModel.load(files.onnxPath);
  const hookPoints = listHookPoints(model);
  const missing = hookPoints.filter((h) => h.shape === null || h.shape.some((d) => d === null));
  if (missing.length > 0) {
    const tensors = [...new Set(missing.map((h) => h.tensor))];
    await using session = await createSession(model.prune(tensors), { intraOpThreads: 1 });
    const feeds = feedBuilder(session.inputMetadata, model.source)({
      batchSize: 1,
      contextSize: 2,
      tokens: new Int32Array(2),
      attention: new Uint8Array([1, 1]),
    });
    const out = await session.run(feeds);
    for (const h of missing) {
      const dims = out[h.tensor]?.dims ?? [];
      h.shape = dims.length === 3 ? ["batch", "sequence", dims[2]!] : [...dims];
    }
  }
  const outputs = model.outputs.map(({ name, elemType, shape }) => ({ name, elemType, shape }));
  const logits = outputs.find((o) => o.name === "logits") ?? outputs[0];
  const lastDim = logits?.shape?.[logits.shape.length - 1];
  const cfg = files.config;
  const vocab = typeof cfg.vocab_size === "number"
    ? cfg.vocab_size
    : typeof lastDim === "number"
    ? lastDim
    : null;
  const arch = Array.isArray(cfg.architectures) && typeof cfg.architectures[0] === "string"
    ? cfg.architectures[0]
    : typeof cfg.model_type === "string"
    ? cfg.model_type
    : null;
  return {
    dir,
    onnxPath: files.onnxPath,
    architecture: arch,
    opset: model.opset,
    irVersion: model.irVersion,
    producer: `${model.proto.producerName ?? ""} ${model.proto.producerVersion ?? ""}`.trim(),
    inputs: model.inputs.map(({ name, elemType, shape }) => ({ name, elemType, shape })),
    outputs,
    vocabSize: vocab,
    maxContext: maxContextSize(files),
    hookPoints,
    externalData: (model.graph.initializer ?? []).some((t) => t.dataLocation === 1),
  };
}

/**
 * Formats an inspection as the text `saeflow inspect model` prints.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatInspect } from "./inspect.ts";
 * const text = formatInspect({
 *   dir: "m", onnxPath: "m/model.onnx", architecture: null, opset: 17, irVersion: 8,
 *   producer: "pytorch", inputs: [], outputs: [], vocabSize: 10, maxContext: null,
 *   hookPoints: [], externalData: false,
 * });
 * assert(text.includes("opset 17"));
 * ```
 */
export function formatInspect(info: ModelInspection): string {
  const shape = (s: Dim[] | null) => (s ? `[${s.map((d) => d ?? "?").join(", ")}]` : "[?]");
  const lines = [
    `model       ${info.onnxPath}${info.externalData ? " (+ external data)" : ""}`,
    `arch        ${info.architecture ?? "unknown"}`,
    `onnx        opset ${info.opset}, IR ${info.irVersion}, by ${info.producer || "unknown"}`,
    `vocab       ${info.vocabSize ?? "unknown"}`,
    `max context ${info.maxContext ?? "unknown"}`,
    "inputs",
    ...info.inputs.map((i) => `  ${i.name}  ${i.elemType ?? "?"} ${shape(i.shape)}`),
    "outputs",
    ...info.outputs.map((o) => `  ${o.name}  ${o.elemType ?? "?"} ${shape(o.shape)}`),
  ];
  if (info.hookPoints.length === 0) {
    lines.push("hook points none found in the node names; give graph tensor names instead");
  } else {
    lines.push(`hook points ${summarizeHooks(info.hookPoints.map((h) => h.hook))}`);
    const width = Math.max(...info.hookPoints.map((h) => h.hook.length));
    for (const h of info.hookPoints) {
      lines.push(`  ${h.hook.padEnd(width)}  ${shape(h.shape)}  ${h.tensor}`);
    }
  }
  return lines.join("\n");
}
