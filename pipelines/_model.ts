/**
 * Finding the language model a run names (a local folder or a Hub id), its vocabulary as display
 * strings, and its store document.
 *
 * @module
 */

import { ConfigError } from "../lib/errors.ts";
import { resolveRepo } from "../lib/hub/mod.ts";
import { loadModelDir, MODEL_FILE_PATTERNS, type ModelDir } from "../lib/onnx/mod.ts";
import type { LanguageModelConfig } from "../lib/settings/mod.ts";
import { loadTokenizer, vocabDisplayStrings } from "../lib/data/mod.ts";
import type { FeatureStore, ModelDoc } from "../lib/store/mod.ts";
import type { LogFn } from "./_progress.ts";
import { jsonData } from "./_store.ts";

/** The settings that locate a language model. */
export interface ModelSettings {
  /** The top-level `model_name` (the model's name in the store). */
  model_name: string | null;
  /** `[model]`, when given. */
  model: LanguageModelConfig | null;
}

/**
 * The name a run stores its model under: the top-level `model_name`, else `model.model_name`.
 *
 * @param settings Resolved settings (any kind).
 * @returns The name.
 * @throws {ConfigError} When neither is set.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { modelNameOf } from "./_model.ts";
 * assert.equal(modelNameOf({ model_name: "pythia", model: null }), "pythia");
 * ```
 */
export function modelNameOf(settings: ModelSettings): string {
  const name = settings.model_name ?? settings.model?.model_name;
  if (!name) throw new ConfigError("model_name: expected the language model's name");
  return name;
}

/** A language model found on disk, with the configuration to store for it. */
export interface ResolvedModel {
  /** Its name in the store. */
  name: string;
  /** The model folder's files. */
  dir: ModelDir;
  /** The `[model]` table to store as the model document's `config` (paths absolute). */
  config: Record<string, unknown>;
}

/**
 * Finds the language model's folder: `model.model_from_pretrained_path` when given, else
 * `model.model_name` resolved through the Hugging Face cache (and downloaded unless
 * `local_files_only`). Without a `[model]` table the model document stored under `model_name`
 * is used (its `config` is the `[model]` table of the run that stored it), as the Python tool
 * does; failing that, `model_name` itself is resolved.
 *
 * @param settings `model_name` and `[model]`.
 * @param options `store` to look a model up in when there is no `[model]` table; `log` for
 *   download progress.
 * @returns The model's name, files and configuration.
 * @throws {ConfigError} When the folder cannot be found or holds no ONNX model.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveModel } from "./_model.ts";
 * import { LanguageModelConfigSchema } from "../lib/settings/mod.ts";
 * const m = await resolveModel({
 *   model_name: "tiny-neox",
 *   model: LanguageModelConfigSchema.parse({
 *     model_from_pretrained_path: new URL("../fixtures/tiny-neox", import.meta.url).pathname,
 *   }),
 * });
 * assert(m.dir.onnxPath.endsWith("model.onnx"));
 * ```
 */
export async function resolveModel(
  settings: ModelSettings,
  options: { store?: FeatureStore; log?: LogFn } = {},
): Promise<ResolvedModel> {
  const name = modelNameOf(settings);
  let config: Record<string, unknown> | null = settings.model ? jsonData(settings.model) : null;
  if (config === null && options.store) {
    config = (await options.store.getModel(name))?.config ?? null;
  }
  config ??= { model_name: name, model_from_pretrained_path: null };
  const local = stringOrNull(config["model_from_pretrained_path"]);
  let folder: string;
  if (local !== null) {
    folder = local;
  } else {
    const id = stringOrNull(config["model_name"]) ?? name;
    const cacheDir = stringOrNull(config["cache_dir"]);
    folder = await resolveRepo(id, {
      repoType: "model",
      allowPatterns: [...MODEL_FILE_PATTERNS],
      ...(cacheDir !== null ? { cacheDir } : {}),
      ...(config["local_files_only"] === true ? { offline: true } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
  }
  const dir = await loadModelDir(folder);
  return { name, dir, config: { ...config, model_from_pretrained_path: dir.dir } };
}

/**
 * The display string of every token id of a model, from the `tokenizer.json` of its folder.
 *
 * @param dir The model folder's files.
 * @returns `vocab[id]`.
 * @throws {ConfigError} When the folder has no `tokenizer.json` or it cannot be loaded.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadModelDir } from "../lib/onnx/mod.ts";
 * import { loadVocab } from "./_model.ts";
 * const vocab = await loadVocab(await loadModelDir(new URL("../fixtures/tiny-neox", import.meta.url).pathname));
 * assert(vocab.length > 0);
 * assert.equal(vocab[0], "<|endoftext|>");
 * ```
 */
export async function loadVocab(dir: ModelDir): Promise<string[]> {
  if (!dir.tokenizerPath) {
    throw new ConfigError(
      `Model folder ${dir.dir} has no tokenizer.json: it is needed for the token strings`,
    );
  }
  return vocabDisplayStrings(await loadTokenizer(dir.tokenizerPath));
}

/**
 * The model document of a run: the stored one when it has a vocabulary, else one made from the
 * model's tokenizer and written to the store.
 *
 * @param store The store.
 * @param model The model as found by {@linkcode resolveModel}.
 * @returns The stored model document.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureModelDoc, resolveModel } from "./_model.ts";
 * import { openSettingsStore } from "./_store.ts";
 * await using store = await openSettingsStore({ mongo: null, output_dir: await Deno.makeTempDir() });
 * import { LanguageModelConfigSchema } from "../lib/settings/mod.ts";
 * const model_from_pretrained_path = new URL("../fixtures/tiny-neox", import.meta.url).pathname;
 * const model = await resolveModel({
 *   model_name: "tiny-neox",
 *   model: LanguageModelConfigSchema.parse({ model_from_pretrained_path }),
 * });
 * const doc = await ensureModelDoc(store, model);
 * assert((await store.getModel("tiny-neox"))?.vocab.length === doc.vocab.length);
 * ```
 */
export async function ensureModelDoc(store: FeatureStore, model: ResolvedModel): Promise<ModelDoc> {
  const existing = await store.getModel(model.name);
  if (existing && existing.vocab.length > 0) return existing;
  const doc: ModelDoc = {
    name: model.name,
    config: existing?.config ?? model.config,
    vocab: await loadVocab(model.dir),
  };
  await store.putModel(doc);
  return doc;
}

function stringOrNull(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}
