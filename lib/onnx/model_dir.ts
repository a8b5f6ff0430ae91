/**
 * A local language-model folder: the ONNX file (`model.onnx`, or the transformers.js layout
 * `onnx/model.onnx`; older Optimum exports' `decoder_model.onnx`, the decoder without past
 * key/values, when there is no `model.onnx`) with `config.json`, `tokenizer.json` and
 * `tokenizer_config.json` beside it.
 *
 * @module
 */
import { join } from "node:path";
import { ConfigError } from "../errors.ts";

/** The ONNX file names looked for, in order. */
export const ONNX_CANDIDATES = [
  "model.onnx",
  "onnx/model.onnx",
  "decoder_model.onnx",
  "onnx/decoder_model.onnx",
] as const;

/**
 * The files of a Hub model repository that a model folder needs: the JSON files (config,
 * tokenizer), each ONNX candidate and its external data (`model.onnx_data`, `model.onnx.data`).
 * Quantized and fp16 variants, merged decoders and decoders with past are not downloaded.
 */
export const MODEL_FILE_PATTERNS: readonly string[] = [
  "*.json",
  ...ONNX_CANDIDATES.flatMap((c) => [c, `${c}_data`, `${c}.data`]),
];

/** The files of a model folder. */
export interface ModelDir {
  /** The folder. */
  dir: string;
  /** The ONNX file. */
  onnxPath: string;
  /** `config.json`, when present. */
  configPath: string | null;
  /** `tokenizer.json`, when present (beside the folder's root or the ONNX file). */
  tokenizerPath: string | null;
  /** `tokenizer_config.json`, when present. */
  tokenizerConfigPath: string | null;
  /** The parsed `config.json` (`{}` when absent). */
  config: Record<string, unknown>;
}

/**
 * Finds the files of a model folder.
 *
 * @param dir The folder.
 * @returns The paths and the parsed `config.json`.
 * @throws {ConfigError} when the folder does not exist, holds no ONNX file (naming the files
 *   looked for), or has an unreadable `config.json`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadModelDir } from "./model_dir.ts";
 * const m = await loadModelDir(new URL("../../fixtures/tiny-neox", import.meta.url).pathname);
 * assert(m.onnxPath.endsWith("model.onnx"));
 * ```
 */
export async function loadModelDir(dir: string): Promise<ModelDir> {
  try {
    if (!(await Deno.stat(dir)).isDirectory) {
      throw new ConfigError(`Model folder ${dir} is not a folder`);
    }
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`Model folder ${dir} does not exist`, { cause: e });
  }
  let onnxPath: string | null = null;
  for (const name of ONNX_CANDIDATES) {
    if (await isFile(join(dir, name))) {
      onnxPath = join(dir, name);
      break;
    }
  }
  if (!onnxPath) {
    throw new ConfigError(
      `Model folder ${dir} has no ONNX model: looked for ${ONNX_CANDIDATES.join(", ")}`,
    );
  }
  const find = async (name: string) => {
    for (const p of [join(dir, name), join(dir, "onnx", name)]) if (await isFile(p)) return p;
    return null;
  };
  const configPath = await find("config.json");
  let config: Record<string, unknown> = {};
  if (configPath) {
    try {
      const parsed = JSON.parse(await Deno.readTextFile(configPath));
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) config = parsed;
      else throw new SyntaxError("not a JSON object");
    } catch (e) {
      throw new ConfigError(`Cannot read ${configPath}: ${(e as Error).message}`, { cause: e });
    }
  }
  return {
    dir,
    onnxPath,
    configPath,
    tokenizerPath: await find("tokenizer.json"),
    tokenizerConfigPath: await find("tokenizer_config.json"),
    config,
  };
}

/**
 * The longest context the model supports, from `config.json` (`max_position_embeddings`,
 * `n_positions`, `n_ctx`), or `null` when it does not say.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { maxContextSize } from "./model_dir.ts";
 * assert.equal(maxContextSize({ config: { n_positions: 1024 } }), 1024);
 * ```
 */
export function maxContextSize(model: Pick<ModelDir, "config">): number | null {
  for (const key of ["max_position_embeddings", "n_positions", "n_ctx"]) {
    const v = model.config[key];
    if (typeof v === "number" && Number.isInteger(v) && v > 0) return v;
  }
  return null;
}

/**
 * Checks that `contextSize` fits the model.
 *
 * @throws {ConfigError} "context_size = N is larger than the model allows (M, max_position_embeddings
 *   in <config>)".
 *
 * @example
 * ```ts
 * import { checkContextSize } from "./model_dir.ts";
 * checkContextSize({ config: { n_positions: 1024 }, configPath: "config.json" }, 128);
 * ```
 */
export function checkContextSize(
  model: Pick<ModelDir, "config" | "configPath">,
  contextSize: number,
): void {
  const max = maxContextSize(model);
  if (max !== null && contextSize > max) {
    throw new ConfigError(
      `context_size = ${contextSize} is larger than the model allows (${max}, from ${
        model.configPath ?? "config.json"
      })`,
    );
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}
