/**
 * TransformerLens hook names (`blocks.6.hook_resid_post`, …) resolved to tensors of an ONNX
 * graph exported by `torch.onnx.export` / optimum, by reading the module-scoped node names
 * (`/gpt_neox/layers.6/…`, `/transformer/h.6/…`, `/model/layers.6/…`).
 *
 * How a block `L` (node scope `<prefix>.L/`) is read:
 * - the residual Adds are the `Add` nodes directly in the block's scope (`/model/layers.6/Add_1`,
 *   not `/model/layers.6/input_layernorm/Add`), in graph order;
 * - `hook_resid_post` is the output of the last of them (for GPT-NeoX with
 *   `use_parallel_residual`, `(mlp_out + attn_out) + resid_pre`; sequential blocks
 *   `(resid_pre + attn_out) + mlp_out`);
 * - the Add inputs are read through nodes that pass a value on unchanged (`Identity`, a `Cast` to
 *   the type it already has): Llama's RMSNorm casts its input to float32, a no-op Cast scoped in
 *   the norm (`/model/layers.6/input_layernorm/Cast`) whose output the residual branch reads;
 * - `hook_resid_pre` is the one input of those Adds produced outside the block (the embedding
 *   output for block 0, the previous block's `hook_resid_post` after);
 * - `hook_attn_out` / `hook_mlp_out` are the Add inputs produced inside the block's attention
 *   (`attention`, `attn`, `self_attn`) / MLP (`mlp`, `feed_forward`, `ffn`) sub-scope, i.e. after
 *   the output projection and its bias (norm scopes such as `post_attention_layernorm` are
 *   neither);
 * - `hook_resid_mid` (sequential blocks only) is the output of the Add of `resid_pre` and
 *   `attn_out`, when it also feeds the MLP branch (a parallel block has no `resid_mid`).
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { Dim, OnnxModel } from "./graph.ts";
import type { NodeProto } from "./_proto.ts";

/** The hook kinds saeflow resolves, in block order. */
export const HOOK_KINDS = [
  "hook_resid_pre",
  "hook_attn_out",
  "hook_resid_mid",
  "hook_mlp_out",
  "hook_resid_post",
] as const;

/** One resolvable hook point. */
export interface HookPoint {
  /** TransformerLens name, e.g. `blocks.1.hook_resid_post`. */
  hook: string;
  /** The graph tensor. */
  tensor: string;
  /** Its shape when the graph records it (or once probed), else `null`. */
  shape: Dim[] | null;
  /** Block index. */
  layer: number;
}

interface Block {
  layer: number;
  scope: string;
  hooks: Map<string, string>;
}

/**
 * Lists the hook points that can be resolved in the model, block by block.
 *
 * @param model The model.
 * @returns The hook points (empty when the graph has no module-scoped node names).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OnnxModel } from "./graph.ts";
 * import { listHookPoints } from "./hooks.ts";
 * const m = await OnnxModel.load(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 * );
 * const post = listHookPoints(m).find((h) => h.hook === "blocks.1.hook_resid_post");
 * assert(post?.tensor === "/gpt_neox/layers.1/Add_1_output_0");
 * ```
 */
export function listHookPoints(model: OnnxModel): HookPoint[] {
  const out: HookPoint[] = [];
  for (const block of readBlocks(model)) {
    for (const kind of HOOK_KINDS) {
      const tensor = block.hooks.get(kind);
      if (tensor === undefined) continue;
      out.push({
        hook: `blocks.${block.layer}.${kind}`,
        tensor,
        shape: model.tensor(tensor)?.shape ?? null,
        layer: block.layer,
      });
    }
  }
  return out;
}

/**
 * Resolves hook names (or raw tensor names) to graph tensors.
 *
 * @param model The model.
 * @param hooks TransformerLens hook names or tensor names.
 * @returns Hook name → tensor name, in the order given.
 * @throws {ConfigError} for a name that is neither a resolvable hook point nor a tensor, with the
 *   available hook points.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OnnxModel } from "./graph.ts";
 * import { resolveHooks } from "./hooks.ts";
 * const m = await OnnxModel.load(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 * );
 * const t = resolveHooks(m, ["blocks.1.hook_resid_post", "logits"]);
 * assert.equal(t["logits"], "logits");
 * ```
 */
export function resolveHooks(model: OnnxModel, hooks: readonly string[]): Record<string, string> {
  const points = listHookPoints(model);
  const byHook = new Map(points.map((p) => [p.hook, p.tensor]));
  const out: Record<string, string> = {};
  for (const hook of hooks) {
    const tensor = byHook.get(hook) ?? (model.has(hook) ? hook : undefined);
    if (tensor === undefined) {
      const available = points.length > 0
        ? `available hook points: ${summarizeHooks(points.map((p) => p.hook))}`
        : "no hook points could be read from its node names; give a graph tensor name instead";
      throw new ConfigError(
        `Unknown hook point "${hook}" for ONNX model ${model.source}; ${available}`,
      );
    }
    out[hook] = tensor;
  }
  return out;
}

/**
 * Writes a list of hook names compactly: `blocks.{0..3}.{hook_resid_pre,hook_mlp_out}`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { summarizeHooks } from "./hooks.ts";
 * const s = summarizeHooks(["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]);
 * assert.equal(s, "blocks.{0..1}.hook_mlp_out");
 * ```
 */
export function summarizeHooks(hooks: readonly string[]): string {
  const layersByKind = new Map<string, number[]>();
  const other: string[] = [];
  for (const h of hooks) {
    const m = /^blocks\.(\d+)\.(.+)$/.exec(h);
    if (!m) {
      other.push(h);
      continue;
    }
    const list = layersByKind.get(m[2]!) ?? [];
    list.push(Number(m[1]));
    layersByKind.set(m[2]!, list);
  }
  const groups = new Map<string, string[]>();
  for (const [kind, layers] of layersByKind) {
    const key = ranges(layers);
    groups.set(key, [...(groups.get(key) ?? []), kind]);
  }
  const parts = [...groups].map(([key, kinds]) =>
    `blocks.${key}.${kinds.length === 1 ? kinds[0] : `{${kinds.join(",")}}`}`
  );
  return [...parts, ...other].join(", ");
}

function ranges(layers: number[]): string {
  const sorted = [...new Set(layers)].sort((a, b) => a - b);
  if (sorted.length === 1) return String(sorted[0]);
  const contiguous = sorted.every((v, i) => i === 0 || v === sorted[i - 1]! + 1);
  return contiguous ? `{${sorted[0]}..${sorted[sorted.length - 1]}}` : `{${sorted.join(",")}}`;
}

/** Groups the nodes by block scope and reads each block's hook tensors. */
function readBlocks(model: OnnxModel): Block[] {
  // The first `name.N` path component of a node name is its block: `/model/layers.6/...`.
  const scopes = new Map<string, Map<number, NodeProto[]>>();
  for (const node of model.nodes) {
    const m = /^(\/(?:[^/]+\/)*?[A-Za-z_][\w]*)\.(\d+)\//.exec(node.name ?? "");
    if (!m) continue;
    const prefix = m[1]!;
    const layer = Number(m[2]);
    let layers = scopes.get(prefix);
    if (!layers) scopes.set(prefix, layers = new Map());
    const list = layers.get(layer);
    if (list) list.push(node);
    else layers.set(layer, [node]);
  }
  // The block list is the prefix with the most blocks (`/gpt_neox/layers`, `/transformer/h`).
  let best: [string, Map<number, NodeProto[]>] | undefined;
  for (const entry of scopes) if (!best || entry[1].size > best[1].size) best = entry;
  if (!best) return [];
  const [prefix, layers] = best;
  const blocks: Block[] = [];
  for (const layer of [...layers.keys()].sort((a, b) => a - b)) {
    const scope = `${prefix}.${layer}`;
    const hooks = readBlock(model, scope, layers.get(layer)!);
    if (hooks.size > 0) blocks.push({ layer, scope, hooks });
  }
  return blocks;
}

function readBlock(model: OnnxModel, scope: string, nodes: NodeProto[]): Map<string, string> {
  const hooks = new Map<string, string>();
  const direct = new RegExp(`^${escapeRegExp(scope)}/Add(_\\d+)?$`);
  const adds = nodes.filter((n) => n.opType === "Add" && direct.test(n.name ?? ""));
  const last = adds[adds.length - 1];
  if (!last) return hooks;
  const inside = (tensor: string) => model.producer(tensor)?.name?.startsWith(`${scope}/`) ?? false;
  // The sub-module a tensor is computed in (`self_attn` for `<scope>/self_attn/o_proj/MatMul`);
  // "" for nodes directly in the block scope or outside it.
  const subScope = (tensor: string) => {
    const name = model.producer(tensor)?.name ?? "";
    if (!name.startsWith(`${scope}/`)) return "";
    const parts = name.slice(scope.length + 1).split("/");
    return parts.length > 1 ? parts[0]! : "";
  };
  // Each Add input read through value-preserving nodes: Llama's RMSNorm casts its input to
  // float32 (a no-op Cast in a float32 export, named in the norm's scope), and the residual
  // branch reads that Cast's output instead of the block input.
  const inputs = adds.map((add) => (add.input ?? []).map((i) => passThrough(model, i)));
  const outside = new Set<string>();
  for (const input of inputs.flat()) {
    if (!inside(input) && model.producer(input)) outside.add(input);
    const kind = branchKind(subScope(input));
    if (kind) hooks.set(kind, input);
  }
  if (outside.size === 1) hooks.set("hook_resid_pre", [...outside][0]!);
  hooks.set("hook_resid_post", last.output![0]!);
  const pre = hooks.get("hook_resid_pre");
  const attn = hooks.get("hook_attn_out");
  const first = adds[0]!;
  const mid = first.output![0]!;
  const feedsMlp = model.consumers(mid).some((n) =>
    !adds.includes(n) && inside(n.output?.[0] ?? "")
  );
  if (
    adds.length === 2 && pre && attn && inputs[0]!.includes(pre) && inputs[0]!.includes(attn) &&
    feedsMlp
  ) {
    hooks.set("hook_resid_mid", mid);
  }
  return hooks;
}

/**
 * Which branch output a block sub-module computes: attention (`attention`, `attn`, `self_attn`,
 * `self_attention`) or MLP (`mlp`, `feed_forward`, `ffn`). Norm modules named after the branch
 * they precede or follow (`post_attention_layernorm`, `ln_mlp`) are neither.
 */
function branchKind(sub: string): "hook_attn_out" | "hook_mlp_out" | undefined {
  if (sub === "" || /norm|(^|_)ln(_|$)/i.test(sub)) return undefined;
  if (/att/i.test(sub)) return "hook_attn_out";
  if (/mlp|ffn|feed_?forward/i.test(sub)) return "hook_mlp_out";
  return undefined;
}

/**
 * The tensor a value comes from, followed back through nodes that pass it on unchanged:
 * `Identity`, and `Cast` to the element type the tensor already has.
 */
function passThrough(model: OnnxModel, tensor: string): string {
  let current = tensor;
  for (;;) {
    const node = model.producer(current);
    const source = node?.input?.[0];
    if (!node || !source) return current;
    const same = node.opType === "Identity" ||
      (node.opType === "Cast" && model.elemType(source) !== null &&
        model.elemType(source) === model.elemType(current));
    if (!same) return current;
    current = source;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
