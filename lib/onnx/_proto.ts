/**
 * The ONNX protobuf codec: the static protobufjs code of `npm:onnx-proto` (ONNX 1.10 schema,
 * IR version 8), plus small helpers for its 64-bit integers. The only module that imports
 * `onnx-proto`: the rest of saeflow, tests included, goes through it.
 *
 * Fields that ONNX added after 1.10 (`metadata_props` on nodes and values, `NodeProto.overload`,
 * `ModelProto.configuration`) are unknown to this schema: they are skipped when a model is read
 * and therefore absent from re-encoded models. ONNX Runtime does not need them to run a model.
 *
 * @module
 */
import onnxProto from "onnx-proto";

/** The generated `onnx` namespace (message classes and enums). */
export const onnx = onnxProto.onnx;

/** A decoded `ModelProto`. */
export type ModelProto = onnxProto.onnx.ModelProto;
/** A `GraphProto` (plain object or decoded). */
export type GraphProto = onnxProto.onnx.IGraphProto;
/** A `NodeProto` (plain object or decoded). */
export type NodeProto = onnxProto.onnx.INodeProto;
/** A `TensorProto` (plain object or decoded). */
export type TensorProto = onnxProto.onnx.ITensorProto;
/** A `ValueInfoProto` (plain object or decoded). */
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;
/** An `AttributeProto` (plain object or decoded). */
export type AttributeProto = onnxProto.onnx.IAttributeProto;

/** A protobufjs 64-bit integer: a `Long`-like object or a plain number. */
export type Int64 = number | { toNumber(): number } | null | undefined;

/**
 * Converts a protobufjs int64 value (a `Long` when the `long` package is present) to a number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toNumber } from "./_proto.ts";
 * assert.equal(toNumber(7), 7);
 * assert.equal(toNumber(undefined), 0);
 * ```
 */
export function toNumber(value: Int64): number {
  if (value === null || value === undefined) return 0;
  return typeof value === "number" ? value : value.toNumber();
}

/** ONNX `TensorProto.DataType` codes and the names saeflow uses for them. */
export const ELEM_TYPE_NAMES: Record<number, string> = {
  1: "float32",
  2: "uint8",
  3: "int8",
  4: "uint16",
  5: "int16",
  6: "int32",
  7: "int64",
  8: "string",
  9: "bool",
  10: "float16",
  11: "float64",
  12: "uint32",
  13: "uint64",
  16: "bfloat16",
};

/**
 * The name of an ONNX element type code (`1` → `"float32"`), or `"type<N>"` for codes it does
 * not know.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { elemTypeName } from "./_proto.ts";
 * assert.equal(elemTypeName(10), "float16");
 * ```
 */
export function elemTypeName(code: number): string {
  return ELEM_TYPE_NAMES[code] ?? `type${code}`;
}

/**
 * The ONNX element type code of a name (`"float32"` → `1`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { elemTypeCode } from "./_proto.ts";
 * assert.equal(elemTypeCode("int64"), 7);
 * ```
 */
export function elemTypeCode(name: string): number {
  for (const [code, n] of Object.entries(ELEM_TYPE_NAMES)) if (n === name) return Number(code);
  throw new TypeError(`Unknown ONNX element type "${name}"`);
}
