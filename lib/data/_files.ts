/**
 * Finding the data files of a dataset: one file, a folder of files, or a Hugging Face `datasets`
 * snapshot (`data/train-00000-of-00002.parquet`, `train/0000.parquet`, …), with split selection.
 *
 * @module
 */

import { join, relative, sep } from "node:path";
import { ConfigError } from "../errors.ts";

/** File formats a dataset can be made of. */
export type DataFormat = "jsonl" | "jsonl.gz" | "txt" | "parquet";

/** One data file; its index in the returned list is its shard index. */
export interface DataFile {
  /** Absolute or as-given path. */
  path: string;
  /** Path relative to the dataset root, `/`-separated (the file name for a single file). */
  rel: string;
  format: DataFormat;
  size: number;
}

/** The extensions a dataset file may have, for messages. */
export const DATA_EXTENSIONS = ".jsonl, .jsonl.gz, .txt, .parquet";

/** The format of a file name, or `null` when it is not a data file. */
export function formatOf(name: string): DataFormat | null {
  const lower = name.toLowerCase();
  if (lower.endsWith(".jsonl.gz")) return "jsonl.gz";
  if (lower.endsWith(".jsonl")) return "jsonl";
  if (lower.endsWith(".txt")) return "txt";
  if (lower.endsWith(".parquet")) return "parquet";
  return null;
}

async function walk(root: string, dir: string, out: DataFile[]): Promise<void> {
  const entries: Deno.DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry);
  for (const entry of entries) {
    if (entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    let isDir = entry.isDirectory;
    let isFile = entry.isFile;
    let size = 0;
    if (entry.isSymlink || isFile) {
      // Hub snapshots are symlinks into blobs/: follow them.
      const info = await Deno.stat(path).catch(() => null);
      if (info === null) continue;
      isDir = info.isDirectory;
      isFile = info.isFile;
      size = info.size;
    }
    if (isDir) await walk(root, path, out);
    else if (isFile) {
      const format = formatOf(entry.name);
      if (format !== null) {
        out.push({ path, rel: relative(root, path).split(sep).join("/"), format, size });
      }
    }
  }
}

/** Lists the data files under `root` (recursively, dot-files skipped), sorted by relative path. */
export async function listDataFiles(root: string): Promise<DataFile[]> {
  const out: DataFile[] = [];
  await walk(root, root, out);
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

const SPLIT_WORDS = ["train", "test", "validation", "valid", "val", "dev", "eval"];

function splitPattern(split: string): RegExp {
  const escaped = split.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[/._ -])${escaped}([/._ -]|$)`, "i");
}

/** The split names that appear in the files' relative paths (`train`, `test`, …). */
export function splitsIn(files: readonly DataFile[]): string[] {
  return SPLIT_WORDS.filter((word) => files.some((f) => splitPattern(word).test(f.rel)));
}

/**
 * Keeps the files of one split. A path belongs to split `S` when `S` appears in it as a word
 * delimited by `/ . _ -` or a space (`data/train-00000-of-00002.parquet`, `train/0.jsonl`,
 * `train.jsonl`). When no path names any split, every file is kept.
 */
export function selectSplit(
  files: DataFile[],
  split: string,
  describe: string,
): DataFile[] {
  const chosen = files.filter((f) => splitPattern(split).test(f.rel));
  if (chosen.length > 0) return chosen;
  const found = splitsIn(files);
  if (found.length === 0) return files;
  throw new ConfigError(`${describe} has no split "${split}" (found: ${found.join(", ")})`);
}
