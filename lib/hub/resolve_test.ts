import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { matchesAny } from "./_glob.ts";
import { findInCache, isRepoId, resolveRepo } from "./resolve.ts";

Deno.test("matchesAny() follows fnmatch as huggingface_hub's allow_patterns do", () => {
  const cases: [string, string[] | undefined, boolean][] = [
    ["config.json", ["*.json"], true],
    ["onnx/model.onnx", ["*.onnx"], true], // * crosses "/" as in fnmatch
    ["onnx/model.onnx", ["onnx/"], true], // a folder pattern
    ["model.onnx_data", ["*.onnx"], false],
    ["data/train-00000-of-00002.parquet", ["data/train-*"], true],
    ["data/test-00000-of-00001.parquet", ["data/train-*"], false],
    ["a.txt", ["?.txt"], true],
    ["b.txt", ["[!b].txt"], false],
    ["c.txt", ["[abc].txt"], true],
    ["x(1).json", ["x(1).json"], true],
    ["anything", undefined, true],
  ];
  for (const [path, patterns, expected] of cases) {
    assertEquals(matchesAny(path, patterns), expected, `${path} ~ ${JSON.stringify(patterns)}`);
  }
});

Deno.test("isRepoId() tells Hub ids from paths", () => {
  for (const id of ["gpt2", "EleutherAI/pythia-70m", "org/name.v2", "a_b/c-d"]) {
    assert(isRepoId(id), id);
  }
  for (const p of ["./x", "/abs/path", "a/b/c", "../x", "org/..", ""]) assert(!isRepoId(p), p);
});

Deno.test("findInCache() follows refs/<revision> to snapshots/<sha>, as huggingface_hub writes them", async () => {
  const cacheDir = await Deno.makeTempDir();
  try {
    const sha = "0123456789abcdef0123456789abcdef01234567";
    const repo = join(cacheDir, "models--EleutherAI--pythia-70m");
    await Deno.mkdir(join(repo, "refs"), { recursive: true });
    await Deno.mkdir(join(repo, "snapshots", sha), { recursive: true });
    await Deno.writeTextFile(join(repo, "refs", "main"), sha); // no trailing newline, as Python writes it
    const snapshot = join(repo, "snapshots", sha);
    assertEquals(await findInCache("EleutherAI/pythia-70m", { cacheDir }), snapshot);
    assertEquals(await findInCache("EleutherAI/pythia-70m", { cacheDir, revision: sha }), snapshot);
    assertEquals(await findInCache("EleutherAI/pythia-70m", { cacheDir, revision: "v1" }), null);
    assertEquals(
      await findInCache("EleutherAI/pythia-70m", { cacheDir, repoType: "dataset" }),
      null,
    );
    // resolveRepo() uses it without any network.
    assertEquals(await resolveRepo("EleutherAI/pythia-70m", { cacheDir, offline: true }), snapshot);
    const err = await resolveRepo("EleutherAI/pythia-160m", { cacheDir, offline: true }).catch((
      e,
    ) => e);
    assert(err instanceof ConfigError);
    assertEquals(
      err.message,
      `Cannot find model "EleutherAI/pythia-160m" (revision main): not a local path and not in ` +
        `the Hugging Face cache at ${cacheDir}, and downloads are off (offline mode)`,
    );
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});
