/**
 * Finding and loading the SAE a run names (a local folder or a Hub id), and its store document.
 *
 * @module
 */

import { join } from "node:path";
import { resolveRepo } from "../lib/hub/mod.ts";
import { loadSae, type SaeDescription } from "../lib/sae/mod.ts";
import type { PretrainedSAE } from "../lib/settings/mod.ts";
import type { FeatureStore, SaeDoc } from "../lib/store/mod.ts";
import type { LogFn } from "./_progress.ts";
import { jsonData } from "./_store.ts";

/** Whether a local path exists. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

/**
 * Where an SAE that is not a local path lives on the Hub, as the Python tool reads
 * `pretrained_name_or_path`: `org/repo` is a whole repository; `org/repo/sub/folder` is the folder
 * `sub/folder` of `org/repo` (one SAE of a repository holding many); a Llama Scope name
 * `fnlp/<model>-L<layer><R|A|M|T|C>-<8|32>x` is the folder of that name in
 * `fnlp/<model>-LX<R|A|M|T|C>-<8|32>x`.
 *
 * @param path `pretrained_name_or_path`, known not to be a local path.
 * @returns The repository id and the folder within it (`""` for the whole repository).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { saeHubLocation } from "./_sae.ts";
 * const l = saeHubLocation("fnlp/Llama3_1-8B-Base-L15R-8x");
 * assert.equal(l.repo, "fnlp/Llama3_1-8B-Base-LXR-8x");
 * assert.equal(l.folder, "Llama3_1-8B-Base-L15R-8x");
 * assert.equal(saeHubLocation("org/saes/blocks.3.hook_resid_post").folder, "blocks.3.hook_resid_post");
 * ```
 */
export function saeHubLocation(path: string): { repo: string; folder: string } {
  const parts = path.split("/");
  if (parts[0] === "fnlp" && parts.length === 2) {
    const repo = path.replace(/L(\d{1,2})([RAMTC])-(8|32)x/g, "LX$2-$3x");
    if (repo !== path) return { repo, folder: parts[1]! };
  }
  return { repo: parts.slice(0, 2).join("/"), folder: parts.slice(2).join("/") };
}

/**
 * Finds an SAE (a local folder, or a Hub id through the Hugging Face cache: see
 * {@linkcode saeHubLocation}; only the SAE's own folder is downloaded) and loads it with the
 * `[sae]` settings: `fold_activation_scale` picks the scale activations are reported in
 * (`true`: the folded `input` scale of the Python tool; `false`: the training scale).
 *
 * @param sae The `[sae]` table.
 * @param options `log` for download progress lines.
 * @returns The loaded SAE.
 * @throws {ConfigError} When the SAE cannot be found or its checkpoint is bad.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSettingsSae } from "./_sae.ts";
 * const sae = await loadSettingsSae({
 *   pretrained_name_or_path: new URL("../fixtures/sae/lm-saes-relu", import.meta.url).pathname,
 *   device: "cpu", dtype: "float32", fold_activation_scale: true, strict_loading: true,
 * });
 * assert.equal(sae.dSae, 256);
 * assert.equal(sae.hookPointIn, "blocks.3.hook_resid_post");
 * ```
 */
export async function loadSettingsSae(
  sae: PretrainedSAE,
  options: { log?: LogFn } = {},
): Promise<SaeDescription> {
  const path = sae.pretrained_name_or_path;
  let dir: string;
  if (await exists(path)) dir = path;
  else {
    const { repo, folder } = saeHubLocation(path);
    const snapshot = await resolveRepo(repo, {
      repoType: "model",
      ...(folder ? { allowPatterns: [`${folder}/*`] } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
    dir = folder ? join(snapshot, folder) : snapshot;
  }
  return await loadSae(dir, { scale: sae.fold_activation_scale ? "input" : "normalized" });
}

/**
 * The store document of an SAE.
 *
 * @param sae The loaded SAE.
 * @param ids `series`, `name` (from `sae_series`, `sae_name`) and the `model` name.
 * @returns The document for `putSae`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { saeDocOf } from "./_sae.ts";
 * import type { SaeDescription } from "../lib/sae/mod.ts";
 * const sae = { path: "/saes/l3", dSae: 8, dModel: 4, hookPointIn: "blocks.3.hook_resid_post", config: {} } as SaeDescription;
 * assert.equal(saeDocOf(sae, { series: "x", name: "l3", model: "m" }).d_sae, 8);
 * ```
 */
export function saeDocOf(
  sae: SaeDescription,
  ids: { series: string; name: string; model: string },
): SaeDoc {
  return {
    name: ids.name,
    series: ids.series,
    path: sae.path,
    config: jsonData(sae.config),
    d_sae: sae.dSae,
    d_model: sae.dModel,
    hook_point: sae.hookPointIn,
    model: ids.model,
  };
}

/**
 * Writes the SAE document unless the store already has one for `(series, name)`.
 *
 * @param store The store.
 * @param doc The document.
 * @returns The stored document (the existing one when there was one).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureSaeDoc } from "./_sae.ts";
 * import { openSettingsStore } from "./_store.ts";
 * await using store = await openSettingsStore({ mongo: null, output_dir: await Deno.makeTempDir() });
 * const doc = { name: "l3", series: "x", path: "/p", config: {}, d_sae: 8, d_model: 4, hook_point: "h", model: "m" };
 * await ensureSaeDoc(store, doc);
 * const again = await ensureSaeDoc(store, { ...doc, path: "/elsewhere" });
 * assert.equal(again.path, "/p");
 * ```
 */
export async function ensureSaeDoc(store: FeatureStore, doc: SaeDoc): Promise<SaeDoc> {
  const existing = await store.getSae(doc.series, doc.name);
  if (existing) return existing;
  await store.putSae(doc);
  return doc;
}
