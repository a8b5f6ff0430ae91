/**
 * Hub resolution against a local HTTP server that speaks the Hugging Face Hub's file layout:
 * `GET /api/{models|datasets}/{id}/revision/{rev}` and `GET /[datasets/]{id}/resolve/{rev}/{file}`
 * (with the LFS-style redirect to a CDN URL and the `X-Linked-Etag` / `X-Repo-Commit` headers).
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { assertRejects, test } from "../lib/_testing.ts";
import { ConfigError } from "../lib/errors.ts";
import { repoFolderName, resolveRepo } from "../lib/hub/mod.ts";
import { openDataset } from "../lib/data/mod.ts";
import { listHookPoints, OnnxModel } from "../lib/onnx/mod.ts";
import { LanguageModelConfigSchema } from "../lib/settings/schemas.ts";
import { resolveModel } from "../pipelines/_model.ts";
import { loadSettingsSae } from "../pipelines/_sae.ts";

interface FakeRepo {
  sha: string;
  files: Record<string, Uint8Array>;
  /** Files served like LFS files: a redirect to /cdn/<sha256> with X-Linked-Etag. */
  lfs?: string[];
}

interface FakeHub {
  endpoint: string;
  requests: { path: string; authorization: string | null }[];
  [Symbol.asyncDispose](): Promise<void>;
}

const enc = new TextEncoder();

function assertStringIncludes(actual: string, expected: string): void {
  assert(
    actual.includes(expected),
    `${JSON.stringify(actual)} does not include ${JSON.stringify(expected)}`,
  );
}

async function hex(algorithm: "SHA-1" | "SHA-256", data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest(algorithm, data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Starts a fake Hub on 127.0.0.1:0 serving `repos` (key `model:org/name` / `dataset:org/name`). */
function startFakeHub(repos: Record<string, FakeRepo>): FakeHub {
  const requests: FakeHub["requests"] = [];
  const cdn = new Map<string, Uint8Array>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const path = decodeURIComponent(url.pathname);
    requests.push({ path, authorization: req.headers.get("authorization") });
    const api = path.match(/^\/api\/(models|datasets)\/(.+)\/revision\/([^/]+)$/);
    if (api) {
      const repo = repos[`${api[1] === "models" ? "model" : "dataset"}:${api[2]}`];
      if (repo === undefined || (api[3] !== "main" && api[3] !== repo.sha)) {
        return Response.json({ error: "Repository not found" }, { status: 404 });
      }
      return Response.json({
        _id: "x",
        id: api[2],
        sha: repo.sha,
        siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })),
      });
    }
    const cdnMatch = path.match(/^\/cdn\/([0-9a-f]{64})$/);
    if (cdnMatch) {
      const body = cdn.get(cdnMatch[1]!);
      return body
        ? new Response(body as Uint8Array<ArrayBuffer>)
        : new Response(null, { status: 404 });
    }
    const resolveMatch = path.match(/^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (resolveMatch) {
      const repo = repos[`${resolveMatch[1] ? "dataset" : "model"}:${resolveMatch[2]}`];
      const body = repo?.files[resolveMatch[4]!];
      if (repo === undefined || body === undefined || resolveMatch[3] !== repo.sha) {
        return new Response("Entry not found", { status: 404 });
      }
      if (repo.lfs?.includes(resolveMatch[4]!)) {
        const sha256 = await hex("SHA-256", body);
        cdn.set(sha256, body);
        return new Response(null, {
          status: 302,
          headers: {
            location: `/cdn/${sha256}`,
            "x-linked-etag": `"${sha256}"`,
            "x-linked-size": String(body.length),
            "x-repo-commit": repo.sha,
          },
        });
      }
      return new Response(body as Uint8Array<ArrayBuffer>, {
        headers: { etag: `"${await hex("SHA-1", body)}"`, "x-repo-commit": repo.sha },
      });
    }
    return new Response("Not found", { status: 404 });
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

const MODEL_SHA = "1111111111111111111111111111111111111111";
const DATASET_SHA = "2222222222222222222222222222222222222222";

const REPOS: Record<string, FakeRepo> = {
  "model:tiny-org/tiny-model": {
    sha: MODEL_SHA,
    files: {
      "config.json": enc.encode('{"model_type":"gpt_neox"}'),
      "tokenizer.json": enc.encode('{"version":"1.0"}'),
      "onnx/model.onnx": new Uint8Array([8, 7, 18, 4, 116, 101, 115, 116]),
      "README.md": enc.encode("# tiny\n"),
    },
    lfs: ["onnx/model.onnx"],
  },
  "dataset:tiny-org/tiny-text": {
    sha: DATASET_SHA,
    files: {
      "README.md": enc.encode("---\nconfigs: []\n---\n"),
      "data/train-00000-of-00002.jsonl": enc.encode('{"text":"a"}\n{"text":"b"}\n'),
      "data/train-00001-of-00002.jsonl": enc.encode('{"text":"c"}\n'),
      "data/test-00000-of-00001.jsonl": enc.encode('{"text":"held out"}\n'),
    },
  },
};

const quiet = () => {};

test("resolveRepo() downloads a model into the hub cache layout, then resolves it offline", async () => {
  await using hub = startFakeHub(REPOS);
  const cacheDir = await Deno.makeTempDir();
  try {
    const dir = await resolveRepo("tiny-org/tiny-model", {
      endpoint: hub.endpoint,
      cacheDir,
      offline: false,
      log: quiet,
    });
    const repoDir = join(cacheDir, "models--tiny-org--tiny-model");
    assertEquals(dir, join(repoDir, "snapshots", MODEL_SHA));
    assertEquals((await Deno.readTextFile(join(repoDir, "refs", "main"))).trim(), MODEL_SHA);
    assertEquals(await Deno.readTextFile(join(dir, "config.json")), '{"model_type":"gpt_neox"}');
    assertEquals(
      await Deno.readFile(join(dir, "onnx", "model.onnx")),
      REPOS["model:tiny-org/tiny-model"]!.files["onnx/model.onnx"],
    );
    // Snapshot entries are relative symlinks into blobs/, named by the ETag.
    const link = await Deno.readLink(join(dir, "onnx", "model.onnx"));
    const sha256 = await hex(
      "SHA-256",
      REPOS["model:tiny-org/tiny-model"]!.files["onnx/model.onnx"]!,
    );
    assertEquals(link, join("..", "..", "..", "blobs", sha256));
    const configSha1 = await hex(
      "SHA-1",
      REPOS["model:tiny-org/tiny-model"]!.files["config.json"]!,
    );
    assert((await Deno.lstat(join(repoDir, "blobs", configSha1))).isFile);

    const before = hub.requests.length;
    const again = await resolveRepo("tiny-org/tiny-model", { cacheDir, offline: true });
    assertEquals(again, dir);
    assertEquals(hub.requests.length, before, "the offline resolution made HTTP requests");
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

test("resolveRepo() downloads only the files matching allowPatterns", async () => {
  await using hub = startFakeHub(REPOS);
  const cacheDir = await Deno.makeTempDir();
  try {
    const dir = await resolveRepo("tiny-org/tiny-model", {
      endpoint: hub.endpoint,
      cacheDir,
      allowPatterns: ["*.json"],
      offline: false,
      log: quiet,
    });
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assertEquals(names.sort(), ["config.json", "tokenizer.json"]);
    assert(!hub.requests.some((r) => r.path.includes("model.onnx")));
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

test("resolveRepo() sends HF_TOKEN as a Bearer header and never logs it", async () => {
  await using hub = startFakeHub(REPOS);
  const cacheDir = await Deno.makeTempDir();
  const lines: string[] = [];
  try {
    await resolveRepo("tiny-org/tiny-model", {
      endpoint: hub.endpoint,
      cacheDir,
      token: "hf_secret_value",
      allowPatterns: ["README.md"],
      offline: false,
      log: (line) => lines.push(line),
    });
    const hubRequests = hub.requests.filter((r) => !r.path.startsWith("/cdn/"));
    assert(hubRequests.length >= 2);
    for (const r of hubRequests) assertEquals(r.authorization, "Bearer hf_secret_value");
    assertEquals(lines.length, 1);
    assert(!lines.join("\n").includes("hf_secret_value"));
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

test("resolveRepo() honours HF_ENDPOINT and HF_HUB_CACHE from the environment", async () => {
  await using hub = startFakeHub(REPOS);
  const cacheDir = await Deno.makeTempDir();
  const saved = ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_HUB_OFFLINE"].map((k) => [k, Deno.env.get(k)]);
  try {
    Deno.env.set("HF_ENDPOINT", hub.endpoint + "/");
    Deno.env.set("HF_HUB_CACHE", cacheDir);
    Deno.env.delete("HF_HUB_OFFLINE");
    const dir = await resolveRepo("tiny-org/tiny-model", {
      allowPatterns: ["config.json"],
      log: quiet,
    });
    assertEquals(
      dir,
      join(cacheDir, repoFolderName("tiny-org/tiny-model", "model"), "snapshots", MODEL_SHA),
    );
    Deno.env.set("HF_HUB_OFFLINE", "1");
    const err = await assertRejects(() => resolveRepo("tiny-org/other"), ConfigError);
    assertStringIncludes(err.message, `"tiny-org/other"`);
    assertStringIncludes(err.message, cacheDir);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k!) : Deno.env.set(k!, v);
    await Deno.remove(cacheDir, { recursive: true });
  }
});

test("resolveRepo() turns a Hub 404 into a ConfigError naming the repository", async () => {
  await using hub = startFakeHub(REPOS);
  const cacheDir = await Deno.makeTempDir();
  try {
    const err = await assertRejects(
      () =>
        resolveRepo("tiny-org/missing", {
          endpoint: hub.endpoint,
          cacheDir,
          offline: false,
          log: quiet,
        }),
      ConfigError,
    );
    assertEquals(
      err.message,
      `Cannot download model "tiny-org/missing" (revision main) from ${hub.endpoint}: the Hub ` +
        `answered 404 Not Found (no such repository, revision or file, or it is private/gated: ` +
        `set HF_TOKEN); it is not in the cache at ${cacheDir} either`,
    );
    // Nothing was written for the missing repository.
    const entries = [];
    for await (const e of Deno.readDir(cacheDir)) entries.push(e.name);
    assertEquals(entries, []);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

test("resolveRepo() reports an unreachable Hub in one line with the endpoint", async () => {
  const cacheDir = await Deno.makeTempDir();
  // A port that was just free: nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  try {
    const err = await assertRejects(
      () =>
        resolveRepo("tiny-org/tiny-model", {
          endpoint: `http://127.0.0.1:${port}`,
          cacheDir,
          offline: false,
          log: quiet,
        }),
      Error,
    );
    assertStringIncludes(
      err.message,
      `Cannot reach the Hugging Face Hub at http://127.0.0.1:${port}`,
    );
    assert(!err.message.includes("\n"));
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

test("resolveRepo() downloads a dataset repo through /api/datasets and /datasets/…/resolve", async () => {
  await using hub = startFakeHub(REPOS);
  const cacheDir = await Deno.makeTempDir();
  try {
    const dir = await resolveRepo("tiny-org/tiny-text", {
      repoType: "dataset",
      endpoint: hub.endpoint,
      cacheDir,
      offline: false,
      log: quiet,
    });
    assertEquals(dir, join(cacheDir, "datasets--tiny-org--tiny-text", "snapshots", DATASET_SHA));
    assert(hub.requests.some((r) => r.path === "/api/datasets/tiny-org/tiny-text/revision/main"));
    assert(hub.requests.some((r) => r.path.startsWith("/datasets/tiny-org/tiny-text/resolve/")));

    // The cached snapshot reads as a dataset offline: split "train", shards in sorted order.
    const source = await openDataset(
      { name: "tiny", pathOrId: "tiny-org/tiny-text" },
      { hub: { cacheDir, offline: true } },
    );
    const records = await Array.fromAsync(source);
    assertEquals(records.map((r) => [r.text, r.shard, r.row]), [["a", 0, 0], ["b", 0, 1], [
      "c",
      1,
      0,
    ]]);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

test("resolveRepo() returns an existing local path as itself and rejects a bad one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await resolveRepo(dir, { offline: true }), dir);
    const err = await assertRejects(() => resolveRepo(join(dir, "nope")), ConfigError);
    assertEquals(
      err.message,
      `Cannot find model "${join(dir, "nope")}": no such file or directory, and not a Hub id`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `fn` with HF_ENDPOINT / HF_HUB_CACHE pointing at `hub` and a fresh cache, restored after. */
async function withHubEnv(hub: FakeHub, fn: (cacheDir: string) => Promise<void>): Promise<void> {
  const cacheDir = await Deno.makeTempDir();
  const saved = ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_HUB_OFFLINE"].map((k) => [k, Deno.env.get(k)]);
  try {
    Deno.env.set("HF_ENDPOINT", hub.endpoint);
    Deno.env.set("HF_HUB_CACHE", cacheDir);
    Deno.env.delete("HF_HUB_OFFLINE");
    await fn(cacheDir);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k!) : Deno.env.set(k!, v);
    await Deno.remove(cacheDir, { recursive: true });
  }
}

const FIXTURES = new URL("../fixtures/", import.meta.url).pathname;
const junk = (n: number) => new Uint8Array(n).fill(7);
const fixture = (path: string) => Deno.readFileSync(join(FIXTURES, path));

test("resolveModel() takes only what it needs from a transformers.js repository (its decoder without past)", async () => {
  await using hub = startFakeHub({
    "model:Xenova/tiny-gpt2": {
      sha: MODEL_SHA,
      files: {
        "config.json": fixture("tiny-gpt2/config.json"),
        "tokenizer.json": fixture("tiny-gpt2/tokenizer.json"),
        "tokenizer_config.json": fixture("tiny-gpt2/tokenizer_config.json"),
        "onnx/decoder_model.onnx": fixture("tiny-gpt2/model.onnx"),
        "onnx/decoder_model_merged.onnx": junk(1000),
        "onnx/decoder_model_quantized.onnx": junk(1000),
        "onnx/decoder_with_past_model.onnx": junk(1000),
        "README.md": enc.encode("# tiny\n"),
      },
      lfs: ["onnx/decoder_model.onnx", "onnx/decoder_model_merged.onnx"],
    },
  });
  await withHubEnv(hub, async () => {
    const m = await resolveModel({
      model_name: "tiny",
      model: LanguageModelConfigSchema.parse({ model_name: "Xenova/tiny-gpt2" }),
    }, { log: quiet });
    assert(m.dir.onnxPath.endsWith(join("onnx", "decoder_model.onnx")), m.dir.onnxPath);
    const fetched = hub.requests.map((r) => r.path).filter((p) => p.includes("/resolve/"));
    assertEquals(fetched.map((p) => p.split(`/resolve/${MODEL_SHA}/`)[1]).sort(), [
      "config.json",
      "onnx/decoder_model.onnx",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    const hooks = listHookPoints(await OnnxModel.load(m.dir.onnxPath)).map((h) => h.hook);
    assert(hooks.includes("blocks.1.hook_resid_post"), hooks.join(", "));
  });
});

test("loadSettingsSae() reads org/repo/folder and Llama Scope names as lm-saes does, downloading one folder", async () => {
  const relu = {
    config: fixture("sae/lm-saes-relu/config.json"),
    weights: fixture("sae/lm-saes-relu/sae_weights.safetensors"),
  };
  await using hub = startFakeHub({
    "model:org/saes": {
      sha: MODEL_SHA,
      files: {
        "blocks.3.hook_resid_post/config.json": relu.config,
        "blocks.3.hook_resid_post/sae_weights.safetensors": relu.weights,
        "more/blocks.2/config.json": relu.config,
        "more/blocks.2/sae_weights.safetensors": relu.weights,
        "blocks.0.hook_resid_post/sae_weights.safetensors": junk(5000),
      },
      lfs: ["blocks.3.hook_resid_post/sae_weights.safetensors"],
    },
    "model:fnlp/Tiny-LXR-8x": {
      sha: DATASET_SHA,
      files: {
        "Tiny-L3R-8x/config.json": relu.config,
        "Tiny-L3R-8x/sae_weights.safetensors": relu.weights,
        "Tiny-L5R-8x/sae_weights.safetensors": junk(5000),
      },
    },
  });
  await withHubEnv(hub, async () => {
    const settings = (path: string) => ({
      pretrained_name_or_path: path,
      device: "cpu" as const,
      dtype: "float32" as const,
      fold_activation_scale: true,
      strict_loading: true,
    });
    const fetched = () =>
      hub.requests.map((r) => r.path).filter((p) => p.includes("/resolve/")).sort();
    const a = await loadSettingsSae(settings("org/saes/blocks.3.hook_resid_post"), { log: quiet });
    assertEquals(a.dSae, 256);
    assertEquals(fetched(), [
      `/org/saes/resolve/${MODEL_SHA}/blocks.3.hook_resid_post/config.json`,
      `/org/saes/resolve/${MODEL_SHA}/blocks.3.hook_resid_post/sae_weights.safetensors`,
    ]);
    // Another folder of the same, already cached, repository is downloaded, not looked for in vain.
    const b = await loadSettingsSae(settings("org/saes/more/blocks.2"), { log: quiet });
    assertEquals(b.dSae, 256);
    assertEquals(fetched().length, 4);
    // Cached now: no request at all.
    const before = hub.requests.length;
    await loadSettingsSae(settings("org/saes/blocks.3.hook_resid_post"), { log: quiet });
    assertEquals(hub.requests.length, before);

    const c = await loadSettingsSae(settings("fnlp/Tiny-L3R-8x"), { log: quiet });
    assertEquals(c.dSae, 256);
    assert(!hub.requests.some((r) => r.path.includes("Tiny-L5R-8x")));
    assert(!hub.requests.some((r) => r.path.includes("blocks.0.hook_resid_post")));
  });
});
