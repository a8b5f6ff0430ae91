/**
 * Hugging Face Hub resolution: local path → local Hugging Face cache → download into the cache.
 *
 * @module
 */

export {
  findInCache,
  hubCacheDir,
  isRepoId,
  repoFolderName,
  type RepoType,
  resolveRepo,
  type ResolveRepoOptions,
} from "./resolve.ts";
