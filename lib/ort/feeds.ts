/**
 * Builds the input tensors of a causal-LM session from token batches: `input_ids`,
 * `attention_mask`, `position_ids` and empty past key/values, whichever the export takes.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import {
  type Tensor,
  tensor,
  type TensorData,
  type TensorType,
  type ValueMetadata,
} from "./session.ts";

/** The token part of a `ContextBatch`. */
export interface TokenBatch {
  /** Contexts `B`. */
  batchSize: number;
  /** Tokens per context `T`. */
  contextSize: number;
  /** Token ids, `B*T`. */
  tokens: Int32Array;
  /** 1 for real tokens, 0 for padding (the model's `attention_mask`), `B*T`. */
  attention: Uint8Array;
}

/** Turns token batches into session feeds. */
export type FeedBuilder = (batch: TokenBatch) => Record<string, Tensor>;

const PAST = /past|cache/i;

/**
 * Plans the feeds for a session's inputs once, and returns the function that builds them per
 * batch. Position ids are `cumsum(attention) - 1`, clipped at 0, as Hugging Face computes them;
 * past key/value inputs get empty tensors `[B, heads, 0, head_dim]`; `use_cache_branch` is false.
 *
 * @param inputs The session's input metadata (`OrtSession.inputMetadata`).
 * @param model The model's name, for messages.
 * @returns The builder.
 * @throws {ConfigError} when the model takes an input saeflow cannot feed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { feedBuilder } from "./feeds.ts";
 * const build = feedBuilder([
 *   { name: "input_ids", type: "int64", shape: ["batch", "seq"] },
 *   { name: "position_ids", type: "int64", shape: ["batch", "seq"] },
 * ], "demo");
 * const feeds = build({
 *   batchSize: 1,
 *   contextSize: 3,
 *   tokens: new Int32Array([5, 6, 0]),
 *   attention: new Uint8Array([1, 1, 0]),
 * });
 * assert.equal([...feeds.position_ids!.data].join(), "0,1,1");
 * ```
 */
export function feedBuilder(inputs: readonly ValueMetadata[], model: string): FeedBuilder {
  const steps: ((b: TokenBatch, out: Record<string, Tensor>) => void)[] = [];
  for (const input of inputs) {
    const { name } = input;
    const type = (input.type ?? "int64") as TensorType;
    if (name === "input_ids") {
      steps.push((b, out) => {
        out[name] = tensor(type, convert(b.tokens, type), [b.batchSize, b.contextSize]);
      });
    } else if (name === "attention_mask") {
      steps.push((b, out) => {
        out[name] = tensor(type, convert(b.attention, type), [b.batchSize, b.contextSize]);
      });
    } else if (name === "position_ids") {
      steps.push((b, out) => {
        const pos = new Int32Array(b.tokens.length);
        for (let i = 0; i < b.batchSize; i++) {
          let sum = 0;
          for (let t = 0; t < b.contextSize; t++) {
            const k = i * b.contextSize + t;
            sum += b.attention[k]!;
            pos[k] = sum > 0 ? sum - 1 : 0;
          }
        }
        out[name] = tensor(type, convert(pos, type), [b.batchSize, b.contextSize]);
      });
    } else if (name === "token_type_ids") {
      steps.push((b, out) => {
        out[name] = tensor(type, convert(new Int32Array(b.tokens.length), type), [
          b.batchSize,
          b.contextSize,
        ]);
      });
    } else if (name === "use_cache_branch") {
      steps.push((_b, out) => {
        out[name] = tensor("bool", new Uint8Array(1), [1]);
      });
    } else if (PAST.test(name) && input.shape.length === 4) {
      const [, heads, , headDim] = input.shape;
      if (typeof heads !== "number" || typeof headDim !== "number") {
        throw new ConfigError(
          `Cannot feed ONNX model ${model}: past key/value input "${name}" has shape ` +
            `[${input.shape}], expected fixed head count and head size`,
        );
      }
      const empty = emptyOf(type);
      steps.push((b, out) => {
        out[name] = tensor(type, empty, [b.batchSize, heads, 0, headDim]);
      });
    } else {
      throw new ConfigError(
        `Cannot feed ONNX model ${model}: it takes input "${name}" [${input.shape}], ` +
          `and saeflow only feeds input_ids, attention_mask, position_ids, token_type_ids, ` +
          `past key/values and use_cache_branch`,
      );
    }
  }
  return (batch) => {
    const out: Record<string, Tensor> = {};
    for (const step of steps) step(batch, out);
    return out;
  };
}

function convert(values: Int32Array | Uint8Array, type: TensorType): TensorData {
  switch (type) {
    case "int64": {
      const out = new BigInt64Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]!);
      return out;
    }
    case "int32":
      return values instanceof Int32Array ? values : Int32Array.from(values);
    case "float32":
      return Float32Array.from(values);
    case "bool":
    case "uint8":
      return values instanceof Uint8Array ? values : Uint8Array.from(values, (v) => (v ? 1 : 0));
    default:
      throw new ConfigError(`Cannot feed token ids as ${type}`);
  }
}

function emptyOf(type: TensorType): TensorData {
  switch (type) {
    case "float16":
      return new Uint16Array(0);
    case "float64":
      return new Float64Array(0);
    default:
      return new Float32Array(0);
  }
}
