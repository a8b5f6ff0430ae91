/**
 * What a layout parser hands to the folding step: training-scale weights plus the semantics read
 * from the config, and the tensor-reading helpers both parsers share.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { SafetensorsError, SafetensorsFile } from "../safetensors/mod.ts";
import type { ActivationKind, SaeFormat } from "./sae.ts";

/** A checkpoint as stored, before any folding. */
export interface RawSae {
  format: SaeFormat;
  path: string;
  config: Record<string, unknown>;
  dModel: number;
  dSae: number;
  hookPointIn: string;
  hookPointOut: string;
  /** [dModel × dSae] */
  W_enc: Float32Array;
  b_enc: Float32Array;
  /** [dSae × dModel] */
  W_dec: Float32Array;
  b_dec: Float32Array;
  activation: ActivationKind;
  k?: number;
  /** Thresholds in the training (normalized) scale. */
  threshold?: Float32Array;
  applyBDecToInput: boolean;
  /**
   * `lm-saes`: scale by ‖W_dec_f‖, activate, divide back (reported unscaled).
   * `saelens`: scale by ‖W_dec_f‖, activate, report scaled; decode divides (foldable exactly).
   */
  decoderNormGating: "none" | "lm-saes" | "saelens";
  normMethod: string;
  perToken: "none" | "rescale" | "layer-norm";
  datasetAverageNorm: { in: number; out: number } | null;
  center: boolean | null;
  centerSource: string;
  dtype: string;
}

/** "Cannot load SAE <path>: <detail>" */
export function fail(path: string, detail: string, cause?: unknown): ConfigError {
  return new ConfigError(
    `Cannot load SAE ${path}: ${detail}`,
    cause === undefined ? {} : { cause },
  );
}

/** Reads and parses a JSON object file, or fails with a one-line ConfigError. */
export async function readJsonObject(dir: string, file: string): Promise<Record<string, unknown>> {
  const full = `${dir}/${file}`;
  let text: string;
  try {
    text = await Deno.readTextFile(full);
  } catch (cause) {
    throw fail(
      dir,
      `cannot read ${file} (${cause instanceof Error ? cause.message : cause})`,
      cause,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw fail(
      dir,
      `${file} is not valid JSON (${cause instanceof Error ? cause.message : cause})`,
      cause,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw fail(dir, `${file} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Whether a file exists (and is a file). */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Opens the weights file of a checkpoint folder; a malformed file is a one-line `ConfigError`
 * naming the folder (the safetensors reader's own message says what is wrong).
 */
export async function openWeights(dir: string, file: string): Promise<SafetensorsFile> {
  try {
    return await SafetensorsFile.open(`${dir}/${file}`);
  } catch (cause) {
    if (cause instanceof SafetensorsError) throw fail(dir, cause.message, cause);
    throw cause;
  }
}

/** Reads a float tensor, checking its presence and shape. */
export async function readTensor(
  dir: string,
  file: SafetensorsFile,
  name: string,
  shape: readonly number[],
): Promise<Float32Array> {
  const fileName = file.path.slice(file.path.lastIndexOf("/") + 1);
  if (!file.has(name)) {
    const names = file.names;
    const list = names.length > 12 ? `${names.slice(0, 12).join(", ")}, ...` : names.join(", ");
    throw fail(dir, `tensor ${name} is missing from ${fileName} (it has: ${list || "no tensors"})`);
  }
  const info = file.info(name);
  const same = info.shape.length === shape.length && info.shape.every((d, i) => d === shape[i]);
  if (!same) {
    throw fail(
      dir,
      `tensor ${name} has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`,
    );
  }
  if (info.dtype === "I32" || info.dtype === "I64") {
    throw fail(dir, `tensor ${name} has integer dtype ${info.dtype}, expected a float dtype`);
  }
  try {
    return await file.readF32(name);
  } catch (cause) {
    if (cause instanceof SafetensorsError) throw fail(dir, cause.message, cause);
    throw cause;
  }
}

/** Reads a scalar float tensor (shape `[]` or `[1]`). */
export async function readScalar(
  dir: string,
  file: SafetensorsFile,
  name: string,
): Promise<number> {
  const info = file.info(name);
  const shape = info.shape.length === 0 ? [] : [1];
  return (await readTensor(dir, file, name, shape))[0]!;
}

/** A positive integer config field, or a ConfigError naming it. */
export function positiveInteger(dir: string, file: string, key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw fail(dir, `${file}: ${key} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A boolean config field with a default, or a ConfigError naming it. */
export function booleanField(
  dir: string,
  file: string,
  config: Record<string, unknown>,
  key: string,
  fallback: boolean,
): boolean {
  const v = config[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") {
    throw fail(dir, `${file}: ${key} must be true or false, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A string config field, or a ConfigError naming it. */
export function stringField(dir: string, file: string, key: string, value: unknown): string {
  if (typeof value !== "string" || value === "") {
    throw fail(dir, `${file}: ${key} must be a non-empty string, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Whether the config says how the model was loaded: an explicit `center_writing_weights` in the
 * config itself or in `model_from_pretrained_kwargs` (top level or under `metadata`).
 */
export function centerFromConfig(
  config: Record<string, unknown>,
): { center: boolean | null; source: string } {
  const places: [string, unknown][] = [["center_writing_weights", config]];
  const obj = (v: unknown): Record<string, unknown> | null =>
    typeof v === "object" && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : null;
  const kw = obj(config["model_from_pretrained_kwargs"]);
  if (kw) places.push(["model_from_pretrained_kwargs.center_writing_weights", kw]);
  for (const metaKey of ["metadata", "meta"]) {
    const meta = obj(config[metaKey]);
    const mkw = meta ? obj(meta["model_from_pretrained_kwargs"]) : null;
    if (mkw) places.push([`${metaKey}.model_from_pretrained_kwargs.center_writing_weights`, mkw]);
  }
  for (const [label, holder] of places) {
    const v = (holder as Record<string, unknown>)["center_writing_weights"];
    if (typeof v === "boolean") return { center: v, source: `config ${label} = ${v}` };
  }
  return { center: null, source: "the config does not say how the model was loaded" };
}
