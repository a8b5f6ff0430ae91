/**
 * Hugging Face Hub resolution for models, datasets and SAEs: a local path, else the local
 * Hugging Face cache, else (when online) a download through the Hub's ordinary HTTP file layout
 * into that same cache, so the next run works offline.
 *
 * Cache layout written (the one `huggingface_hub` reads and writes):
 *
 * ```
 * <cache>/models--org--name/
 *   refs/<revision>                   commit sha the revision pointed at
 *   blobs/<etag>                      file content, named by the Hub's ETag
 *   snapshots/<sha>/<path>            relative symlink to ../../blobs/<etag>
 * ```
 *
 * When the Hub sends no usable ETag, or the file system refuses symlinks, the file is written as
 * a plain file inside `snapshots/<sha>/` instead (the layout `HF_HUB_DISABLE_SYMLINKS=1` makes).
 * `refs/<revision>` is written last, so an interrupted download is not mistaken for a complete
 * snapshot of a branch. A cached snapshot is used as is, without asking the Hub whether the
 * branch moved: pin `revision` to a commit sha, or delete the cache folder, to refresh.
 *
 * @module
 */

import { dirname, join, relative, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { matchesAny } from "./_glob.ts";

/** Repository kinds on the Hub that saeflow reads. */
export type RepoType = "model" | "dataset";

/** Options of {@linkcode resolveRepo}; every field is optional. */
export interface ResolveRepoOptions {
  /** `model` (default) or `dataset`. SAE repositories are model repositories. */
  repoType?: RepoType;
  /** Branch, tag or commit sha. Default `main`. */
  revision?: string;
  /**
   * Download only files whose repository path matches one of these `fnmatch` patterns
   * (`*.json`, `data/train-*`, `onnx/`). Default: every file.
   */
  allowPatterns?: string[];
  /** Never touch the network. Default: `HF_HUB_OFFLINE` is `1`/`true`/`yes`/`on`. */
  offline?: boolean;
  /** Hub base URL. Default: `HF_ENDPOINT`, else `https://huggingface.co`. */
  endpoint?: string;
  /** Cache folder. Default: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  /** Access token sent as `Authorization: Bearer …` (never logged). Default: `HF_TOKEN`. */
  token?: string;
  /** Where one-line progress messages go. Default: standard error. */
  log?: (line: string) => void;
  /** Aborts a download in progress. */
  signal?: AbortSignal;
}

const DEFAULT_ENDPOINT = "https://huggingface.co";
const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;
const COMMIT = /^[0-9a-f]{40}$/;

function env(name: string): string | undefined {
  try {
    const value = Deno.env.get(name);
    return value === "" ? undefined : value;
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

/**
 * The Hugging Face hub cache folder: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
 * `~/.cache/huggingface/hub` (`XDG_CACHE_HOME` is honoured for `~/.cache`).
 *
 * @returns The absolute cache path (it may not exist yet).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hubCacheDir } from "./resolve.ts";
 * assert(hubCacheDir().length > 0);
 * ```
 */
export function hubCacheDir(): string {
  const direct = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE");
  if (direct !== undefined) return resolve(direct);
  const home = env("HF_HOME");
  if (home !== undefined) return resolve(home, "hub");
  const xdg = env("XDG_CACHE_HOME");
  if (xdg !== undefined) return resolve(xdg, "huggingface", "hub");
  return resolve(env("HOME") ?? env("USERPROFILE") ?? ".", ".cache", "huggingface", "hub");
}

/**
 * The cache folder name of a repository: `models--org--name`, `datasets--org--name`.
 *
 * @param id The repository id, `org/name` or `name`.
 * @param repoType `model` or `dataset`.
 * @returns The folder name inside the hub cache.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { repoFolderName } from "./resolve.ts";
 * assert.equal(repoFolderName("EleutherAI/pythia-70m", "model"), "models--EleutherAI--pythia-70m");
 * ```
 */
export function repoFolderName(id: string, repoType: RepoType): string {
  return `${repoType}s--${id.split("/").join("--")}`;
}

/**
 * Whether a string has the shape of a Hub repository id (`name` or `org/name`).
 *
 * @param value The string to test.
 * @returns `true` for `org/name`-shaped strings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isRepoId } from "./resolve.ts";
 * assert(isRepoId("EleutherAI/pythia-70m"));
 * assert(!isRepoId("./models/pythia"));
 * ```
 */
export function isRepoId(value: string): boolean {
  return REPO_ID.test(value) && !value.includes("..");
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** Whether a snapshot folder holds a file (at any depth) whose relative path matches a pattern. */
async function holdsMatch(snapshot: string, patterns: string[]): Promise<boolean> {
  const walk = async (dir: string): Promise<boolean> => {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      const info = entry.isSymlink ? await statOrNull(path) : entry;
      if (info?.isDirectory) {
        if (await walk(path)) return true;
      } else if (info && matchesAny(relative(snapshot, path), patterns)) return true;
    }
    return false;
  };
  return await walk(snapshot);
}

/**
 * Looks a repository up in the local hub cache only.
 *
 * @param id Repository id.
 * @param options Repository type, revision and cache folder.
 * @returns The snapshot folder, or `null` when the cache does not hold this revision.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findInCache } from "./resolve.ts";
 * const dir = await findInCache("no-such-org/no-such-model", { cacheDir: "/nonexistent" });
 * assert.equal(dir, null);
 * ```
 */
export async function findInCache(
  id: string,
  options: Pick<ResolveRepoOptions, "repoType" | "revision" | "cacheDir"> = {},
): Promise<string | null> {
  const repoType = options.repoType ?? "model";
  const revision = options.revision ?? "main";
  const folder = join(options.cacheDir ?? hubCacheDir(), repoFolderName(id, repoType));
  let sha = revision;
  if (!COMMIT.test(revision)) {
    try {
      sha = (await Deno.readTextFile(join(folder, "refs", revision))).trim();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
      throw e;
    }
  }
  if (sha === "" || sha.includes("/") || sha.includes("..")) return null;
  const snapshot = join(folder, "snapshots", sha);
  const info = await statOrNull(snapshot);
  return info?.isDirectory ? snapshot : null;
}

/**
 * Resolves a model or dataset to a local folder: an existing local path is returned as is
 * (absolute); a Hub id is looked up in the Hugging Face cache, and, when online, downloaded
 * through the Hub's HTTP file layout (`GET {endpoint}/api/{models|datasets}/{id}/revision/{rev}`
 * for the file list, `GET {endpoint}/[datasets/]{id}/resolve/{sha}/{file}` per file) into the
 * cache.
 *
 * @param idOrPath A local file or folder, or a Hub repository id such as `EleutherAI/pythia-70m`.
 * @param options Repository type, revision, file patterns, endpoint, cache folder, token.
 * @returns The absolute local path: the given path, or the snapshot folder in the cache.
 * @throws {ConfigError} The path does not exist and is not a repository id; the repository is not
 * cached and downloads are off; the Hub answers 401/403/404; no file matches `allowPatterns`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveRepo } from "./resolve.ts";
 * const dir = await Deno.makeTempDir();
 * assert.equal(await resolveRepo(dir), dir);
 * await Deno.remove(dir);
 * ```
 */
export async function resolveRepo(
  idOrPath: string,
  options: ResolveRepoOptions = {},
): Promise<string> {
  const repoType = options.repoType ?? "model";
  const revision = options.revision ?? "main";
  if ((await statOrNull(idOrPath)) !== null) return resolve(idOrPath);
  if (!isRepoId(idOrPath)) {
    throw new ConfigError(
      `Cannot find ${repoType} "${idOrPath}": no such file or directory, and not a Hub id`,
    );
  }
  const cacheDir = options.cacheDir ?? hubCacheDir();
  const cached = await findInCache(idOrPath, { repoType, revision, cacheDir });
  // A snapshot downloaded for other patterns (another SAE of the same repository) does not
  // answer this request: it must hold at least one file that the patterns select.
  if (
    cached !== null && (!options.allowPatterns || await holdsMatch(cached, options.allowPatterns))
  ) {
    return cached;
  }

  const offlineEnv = (env("HF_HUB_OFFLINE") ?? "").toLowerCase();
  const offline = options.offline ?? ["1", "true", "yes", "on"].includes(offlineEnv);
  if (offline) {
    throw new ConfigError(
      `Cannot find ${repoType} "${idOrPath}" (revision ${revision}): not a local path and not ` +
        `in the Hugging Face cache at ${cacheDir}, and downloads are off (offline mode)`,
    );
  }
  return await download(idOrPath, {
    repoType,
    revision,
    cacheDir,
    endpoint: (options.endpoint ?? env("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    token: options.token ?? env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN"),
    allowPatterns: options.allowPatterns,
    log: options.log ?? ((line: string) => console.error(line)),
    signal: options.signal,
  });
}

interface DownloadOptions {
  repoType: RepoType;
  revision: string;
  cacheDir: string;
  endpoint: string;
  token: string | undefined;
  allowPatterns: string[] | undefined;
  log: (line: string) => void;
  signal: AbortSignal | undefined;
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

/**
 * GET with redirects followed by hand, so the headers of the Hub's own answer (`X-Linked-Etag`,
 * `X-Repo-Commit`, sent on the redirect to the LFS/CDN storage) are kept, and the token is sent
 * only to the Hub's origin.
 */
async function hubFetch(
  url: string,
  what: string,
  o: DownloadOptions,
): Promise<{ response: Response; hubHeaders: Headers }> {
  let hubHeaders: Headers | undefined;
  let current = new URL(url);
  const origin = new URL(o.endpoint).origin;
  for (let hop = 0; hop <= 10; hop++) {
    const headers: Record<string, string> = { "user-agent": "saeflow" };
    if (o.token !== undefined && current.origin === origin) {
      headers.authorization = `Bearer ${o.token}`;
    }
    let response: Response;
    try {
      response = await fetch(current, {
        headers,
        redirect: "manual",
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } catch (e) {
      if (o.signal?.aborted) throw e;
      throw new Error(
        `Cannot reach the Hugging Face Hub at ${o.endpoint} to download ${what}: ${
          (e as Error).message.split("\n")[0]
        } (set HF_HUB_OFFLINE=1 to use only the cache at ${o.cacheDir})`,
        { cause: e },
      );
    }
    hubHeaders ??= response.headers;
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body?.cancel();
      current = new URL(location, current);
      continue;
    }
    if (response.ok) return { response, hubHeaders };
    await response.body?.cancel();
    const status = `${response.status} ${response.statusText}`.trim();
    if ([401, 403, 404].includes(response.status)) {
      throw new ConfigError(
        `Cannot download ${what} from ${o.endpoint}: the Hub answered ${status} (no such ` +
          `repository, revision or file, or it is private/gated: set HF_TOKEN); it is not in the ` +
          `cache at ${o.cacheDir} either`,
      );
    }
    throw new Error(`Cannot download ${what} from ${o.endpoint}: the Hub answered ${status}`);
  }
  throw new Error(`Cannot download ${what} from ${o.endpoint}: too many redirects`);
}

function normalizeEtag(value: string | null): string | null {
  if (value === null) return null;
  const etag = value.replace(/^W\//, "").replace(/^"|"$/g, "");
  return /^[A-Za-z0-9._-]+$/.test(etag) ? etag : null;
}

async function download(id: string, o: DownloadOptions): Promise<string> {
  const what = `${o.repoType} "${id}" (revision ${o.revision})`;
  const api = `${o.endpoint}/api/${o.repoType}s/${id}/revision/${encodeURIComponent(o.revision)}`;
  const info: unknown = await (await hubFetch(api, what, o)).response.json();
  const sha = (info as { sha?: unknown })?.sha;
  const siblings = (info as { siblings?: unknown })?.siblings;
  if (typeof sha !== "string" || !/^[A-Za-z0-9._-]+$/.test(sha) || !Array.isArray(siblings)) {
    throw new Error(
      `Cannot download ${what}: unexpected answer from ${api} (no "sha" or "siblings")`,
    );
  }
  const files = siblings
    .map((s) => (s as { rfilename?: unknown })?.rfilename)
    .filter((f): f is string =>
      typeof f === "string" && !f.split("/").some((part) => part === ".." || part === "")
    )
    .filter((f) => matchesAny(f, o.allowPatterns))
    .sort();
  if (files.length === 0) {
    throw new ConfigError(
      `Cannot download ${what}: no file of the repository matches ${
        JSON.stringify(o.allowPatterns ?? ["*"])
      }`,
    );
  }
  const folder = join(o.cacheDir, repoFolderName(id, o.repoType));
  const snapshot = join(folder, "snapshots", sha);
  const blobs = join(folder, "blobs");
  await Deno.mkdir(blobs, { recursive: true });
  o.log(`Downloading ${what}: ${files.length} file(s) from ${o.endpoint} into ${folder}`);
  const prefix = o.repoType === "dataset" ? "datasets/" : "";
  for (const file of files) {
    const target = join(snapshot, file);
    if ((await statOrNull(target)) !== null) continue;
    const url = `${o.endpoint}/${prefix}${id}/resolve/${encodeURIComponent(sha)}/${
      encodePath(file)
    }`;
    const { response, hubHeaders } = await hubFetch(url, `${what} file ${file}`, o);
    await Deno.mkdir(dirname(target), { recursive: true });
    const etag = normalizeEtag(hubHeaders.get("x-linked-etag") ?? hubHeaders.get("etag"));
    if (etag === null) {
      await writeBody(response, target);
      continue;
    }
    const blob = join(blobs, etag);
    if ((await statOrNull(blob)) === null) await writeBody(response, blob);
    else await response.body?.cancel();
    try {
      await Deno.symlink(relative(dirname(target), blob), target);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      await Deno.copyFile(blob, target); // no symlinks here: a plain file, as huggingface_hub does
    }
  }
  if (o.revision !== sha) {
    const ref = join(folder, "refs", o.revision);
    await Deno.mkdir(dirname(ref), { recursive: true });
    await Deno.writeTextFile(ref, sha);
  }
  return snapshot;
}

async function writeBody(response: Response, path: string): Promise<void> {
  const partial = `${path}.incomplete`;
  const file = await Deno.open(partial, { write: true, create: true, truncate: true });
  if (response.body === null) file.close();
  else await response.body.pipeTo(file.writable); // closes the file, also on error
  await Deno.rename(partial, path);
}
