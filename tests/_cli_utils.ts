/**
 * Utilities for the CLI process tests (`tests/cli_test.ts`): running the real `cli.ts` with the
 * permissions the project ships, asserting the one-line error contract, scratch folders, and
 * small inputs derived from the fixtures (broken model folders, sliced or mismatched SAEs).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile, writeSafetensors } from "../lib/safetensors/mod.ts";
import { openStore } from "../lib/store/mod.ts";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));
/** The fixtures folder. */
export const FIXTURES: string = join(ROOT, "fixtures");
/** The tiny GPT-NeoX model folder (`fixtures/tiny-neox`). */
export const TINY_NEOX: string = join(FIXTURES, "tiny-neox");
/** The base SAE of the demo (`fixtures/sae/lm-saes-relu`). */
export const DEMO_SAE: string = join(FIXTURES, "sae", "lm-saes-relu");

/**
 * The `--allow-*` flags of the `analyze` task in deno.json: the permissions the project ships
 * the CLI with. Read from deno.json so that the tests follow when they are narrowed.
 */
export const CLI_PERMISSIONS: readonly string[] = (() => {
  const denoJson = JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json"))) as {
    tasks: Record<string, string>;
  };
  const task = denoJson.tasks["analyze"] ?? "";
  const flags = task.split(/\s+/).filter((w) => w.startsWith("--allow-"));
  if (flags.length === 0) throw new Error(`deno.json: no --allow-* flags in task "analyze"`);
  return flags;
})();

/** What one CLI run did. */
export interface CliResult {
  /** The exit code. */
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode runCli}. */
export interface RunCliOptions {
  /** Working directory (default: the repository root). */
  cwd?: string;
  /**
   * Extra environment variables. The child gets only `PATH`, `HOME`, `DENO_DIR`,
   * `XDG_CACHE_HOME`, `NO_COLOR=1`, `HF_HUB_OFFLINE=1` and these, so a `MONGO_URI` or
   * `OPENAI_API_KEY` of the test process never leaks into a run.
   */
  env?: Record<string, string>;
}

/** `deno run <shipped permissions> cli.ts ...args`, with the environment rules of runCli. */
function cliCommand(args: readonly string[], options: RunCliOptions): Deno.Command {
  const env: Record<string, string> = { NO_COLOR: "1", HF_HUB_OFFLINE: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_PERMISSIONS, join(ROOT, "cli.ts"), ...args],
    cwd: options.cwd ?? ROOT,
    env: { ...env, ...options.env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * Runs `deno run <shipped permissions> cli.ts ...args` as a subprocess.
 *
 * @param args the CLI arguments.
 * @param options working directory and environment.
 * @returns exit code and output.
 */
export async function runCli(
  args: readonly string[],
  options: RunCliOptions = {},
): Promise<CliResult> {
  const out = await cliCommand(args, options).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/**
 * Runs several CLI invocations, at most `concurrency` at a time, results in input order.
 *
 * @param runs the argument lists with their options.
 * @param concurrency how many processes at once (default 3).
 */
export async function runMany(
  runs: readonly { args: readonly string[]; options?: RunCliOptions }[],
  concurrency = 3,
): Promise<CliResult[]> {
  const results: CliResult[] = new Array(runs.length);
  let next = 0;
  const worker = async () => {
    while (next < runs.length) {
      const i = next++;
      const run = runs[i]!;
      results[i] = await runCli(run.args, run.options);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, runs.length) }, worker));
  return results;
}

/** Asserts a successful run and returns its stdout. */
export function assertOk(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what} exited ${r.code}; stderr:\n${r.stderr}`);
  return r.stdout;
}

const STACK_FRAME = /^\s+at\s/m;

/**
 * Asserts the CLI's error contract: the exit code, and stderr that is exactly one line
 * `saeflow: <message>` with no stack trace.
 *
 * @param r the run.
 * @param code the expected exit code (2: usage or configuration, 1: runtime).
 * @param message the exact message after `saeflow: `, or a pattern it must match.
 * @returns the message.
 */
export function assertCliError(r: CliResult, code: 1 | 2, message: string | RegExp): string {
  const context = `exit ${r.code}; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`;
  assert.equal(r.code, code, `expected exit ${code}, got ${context}`);
  assert.doesNotMatch(r.stderr, STACK_FRAME, `a stack trace was printed: ${context}`);
  const lines = r.stderr.split(/\r\n|\r|\n/).filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `stderr should be one line: ${context}`);
  const line = lines[0]!;
  assert.ok(line.startsWith("saeflow: "), `the line should start with "saeflow: ": ${line}`);
  const got = line.slice("saeflow: ".length);
  if (typeof message === "string") assert.equal(got, message);
  else assert.match(got, message);
  return got;
}

/** Whether a stack trace (a `    at ...` frame) was printed. */
export function hasStackTrace(text: string): boolean {
  return STACK_FRAME.test(text);
}

/** Copies a folder's files (not recursive) to a new folder; returns the new folder. */
export async function copyFolder(from: string, to: string, skip: readonly string[] = []) {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isFile && !skip.includes(entry.name)) {
      await Deno.copyFile(join(from, entry.name), join(to, entry.name));
    }
  }
  return to;
}

/** Writes the first `bytes` bytes of `from` to `to`. */
export async function truncateCopy(from: string, to: string, bytes: number): Promise<void> {
  const data = await Deno.readFile(from);
  assert.ok(bytes < data.length, `${from} has only ${data.length} bytes`);
  await Deno.writeFile(to, data.subarray(0, bytes));
}

/** Options of {@linkcode writeSlicedSae}. */
export interface SlicedSaeOptions {
  /** Number of features to keep: features `0..dSae-1` of the demo SAE (default 16). */
  dSae?: number;
  /** Input width: the first `dModel` input dimensions (default 64, all of them). */
  dModel?: number;
  /** Changes to `config.json` (e.g. `{ act_fn: "swish" }`). */
  config?: Record<string, unknown>;
  /**
   * The hook point the SAE says it was trained at (`hook_point_in`/`_out`, and the name of its
   * dataset-norm tensors). Default: the demo SAE's.
   */
  hookPoint?: string;
}

/**
 * Writes a Language-Model-SAEs checkpoint made from the demo SAE (`lm-saes-relu`): its first
 * `dSae` features over its first `dModel` input dimensions, with `d_sae`/`d_model` in
 * `config.json` to match. With the default `dModel` the kept features behave exactly as in
 * the demo SAE (each feature's encoder column, bias and decoder row are unchanged).
 *
 * @param dir the folder to write (created).
 * @param options how many features and inputs, config changes.
 * @returns `dir`.
 */
export async function writeSlicedSae(dir: string, options: SlicedSaeOptions = {}): Promise<string> {
  const k = options.dSae ?? 16;
  const dm = options.dModel ?? 64;
  using file = await SafetensorsFile.open(join(DEMO_SAE, "sae_weights.safetensors"));
  const [wE, bE, wD, bD] = await Promise.all(
    ["W_E", "b_E", "W_D", "b_D"].map((n) => file.readF32(n)),
  ) as [Float32Array, Float32Array, Float32Array, Float32Array];
  const [, fullSae] = file.info("W_E").shape as [number, number];
  const fullModel = wE.length / fullSae;
  const encoder = new Float32Array(dm * k);
  const decoder = new Float32Array(k * dm);
  for (let i = 0; i < dm; i++) {
    for (let j = 0; j < k; j++) {
      encoder[i * k + j] = wE[i * fullSae + j]!;
      decoder[j * dm + i] = wD[j * fullModel + i]!;
    }
  }
  const tensors: Parameters<typeof writeSafetensors>[0] = {
    W_E: { dtype: "F32", shape: [dm, k], data: encoder },
    b_E: { dtype: "F32", shape: [k], data: bE.slice(0, k) },
    W_D: { dtype: "F32", shape: [k, dm], data: decoder },
    b_D: { dtype: "F32", shape: [dm], data: bD.slice(0, dm) },
  };
  const config = JSON.parse(await Deno.readTextFile(join(DEMO_SAE, "config.json")));
  const hook = options.hookPoint;
  for (const name of file.names) {
    if (name.startsWith("dataset_average_activation_norm.")) {
      const renamed = hook ? name.replace(config.hook_point_in, hook) : name;
      tensors[renamed] = { dtype: "F32", shape: [], data: await file.readF32(name) };
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(join(dir, "sae_weights.safetensors"), writeSafetensors(tensors));
  Object.assign(
    config,
    { d_model: dm, d_sae: k, expansion_factor: k / dm },
    hook ? { hook_point_in: hook, hook_point_out: hook } : {},
    options.config,
  );
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  return dir;
}

/** What a SQLite store folder holds for one SAE (nothing when the file does not exist). */
export interface StoredSummary {
  /** Whether `saeflow.sqlite` exists. */
  exists: boolean;
  /** Feature documents of the SAE (with or without analyses). */
  features: number;
  /** Status of each analysis document of the SAE. */
  analyses: { name: string; status: string; error?: string }[];
}

/**
 * Reads what an output folder's SQLite store holds for `series/name`, without creating it.
 *
 * @param outputDir the store folder.
 * @param series the SAE series.
 * @param name the SAE name.
 */
export async function storedFor(
  outputDir: string,
  series: string,
  name: string,
): Promise<StoredSummary> {
  try {
    await Deno.stat(join(outputDir, "saeflow.sqlite"));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { exists: false, features: 0, analyses: [] };
    throw error;
  }
  await using store = await openStore({ outputDir });
  let features = 0;
  for await (const _ of store.readFeatures(series, name)) features++;
  return {
    exists: true,
    features,
    analyses: (await store.listAnalyses(series, name)).map((a) => ({
      name: a.name,
      status: a.status,
      ...(a.error === undefined ? {} : { error: a.error }),
    })),
  };
}

/**
 * A scratch folder for the whole test file, removed when the process exits.
 *
 * @param label a word for the folder name.
 */
export function scratchRoot(label: string): string {
  const dir = Deno.makeTempDirSync({ prefix: `saeflow_${label}_` });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  });
  return dir;
}

/**
 * Asserts two outputs are identical; on a difference, reports the first differing line (with
 * its number) instead of a diff of the whole, possibly huge, text.
 *
 * @param actual the output under test.
 * @param expected the reference output.
 * @param what what is compared, for the message.
 */
export function assertSameText(actual: string, expected: string, what: string): void {
  if (actual === expected) return;
  const a = actual.split("\n");
  const e = expected.split("\n");
  const i = a.findIndex((line, n) => line !== e[n]);
  const at = i < 0 ? a.length : i;
  const context = e.slice(Math.max(0, at - 3), at).map((l) => `  ${l}`).join("\n");
  assert.fail(
    `${what}: first difference at line ${at + 1} (of ${a.length} vs ${e.length}), after\n` +
      `${context}\n  got:      ${JSON.stringify(a[at])}\n  expected: ${JSON.stringify(e[at])}`,
  );
}

/**
 * Writes a wide Language-Model-SAEs checkpoint from the demo SAE: feature `j` is demo feature
 * `j % 256` with its encoder column scaled by `1 + 0.01·⌊j / 256⌋` (so every feature fires
 * where its demo feature does, at slightly different strengths), for runs whose write phase must
 * last a while (thousands of feature records).
 *
 * @param dir the folder to write (created).
 * @param dSae the number of features.
 * @returns `dir`.
 */
export async function writeWideSae(dir: string, dSae: number): Promise<string> {
  using file = await SafetensorsFile.open(join(DEMO_SAE, "sae_weights.safetensors"));
  const [wE, bE, wD, bD] = await Promise.all(
    ["W_E", "b_E", "W_D", "b_D"].map((n) => file.readF32(n)),
  ) as [Float32Array, Float32Array, Float32Array, Float32Array];
  const [dm, base] = file.info("W_E").shape as [number, number];
  const encoder = new Float32Array(dm * dSae);
  const decoder = new Float32Array(dSae * dm);
  const bias = new Float32Array(dSae);
  for (let j = 0; j < dSae; j++) {
    const src = j % base;
    const scale = 1 + 0.01 * Math.floor(j / base);
    for (let i = 0; i < dm; i++) {
      encoder[i * dSae + j] = wE[i * base + src]! * scale;
      decoder[j * dm + i] = wD[src * dm + i]!;
    }
    bias[j] = bE[src]!;
  }
  const tensors: Parameters<typeof writeSafetensors>[0] = {
    W_E: { dtype: "F32", shape: [dm, dSae], data: encoder },
    b_E: { dtype: "F32", shape: [dSae], data: bias },
    W_D: { dtype: "F32", shape: [dSae, dm], data: decoder },
    b_D: { dtype: "F32", shape: [dm], data: bD },
  };
  for (const name of file.names) {
    if (name.startsWith("dataset_average_activation_norm.")) {
      tensors[name] = { dtype: "F32", shape: [], data: await file.readF32(name) };
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(join(dir, "sae_weights.safetensors"), writeSafetensors(tensors));
  const config = JSON.parse(await Deno.readTextFile(join(DEMO_SAE, "config.json")));
  Object.assign(config, { d_sae: dSae, expansion_factor: dSae / dm });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  return dir;
}

/** A CLI process started by {@linkcode spawnCli}, its stderr read line by line as it comes. */
export interface SpawnedCli {
  /** The process (kill it with `child.kill(signal)`). */
  child: Deno.ChildProcess;
  /** Resolves with the first stderr line matching `pattern` (rejects if the process ends first). */
  waitForLine(pattern: RegExp): Promise<string>;
  /** Exit code and everything printed, once the process ended. */
  done: Promise<{ code: number; signal: Deno.Signal | null; stdout: string; stderr: string }>;
}

/**
 * Starts `deno run <shipped permissions> cli.ts ...args` (same environment rules as
 * {@linkcode runCli}) and reads its stderr as it is printed.
 *
 * @param args the CLI arguments.
 * @param options working directory and environment.
 */
export function spawnCli(args: readonly string[], options: RunCliOptions = {}): SpawnedCli {
  const child = cliCommand(args, options).spawn();
  let stderr = "";
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  let ended = false;
  const failWaiters: ((e: Error) => void)[] = [];
  const readErr = (async () => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of child.stderr) {
      const text = decoder.decode(chunk, { stream: true });
      stderr += text;
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.pattern.test(line)) {
            waiters[i]!.resolve(line);
            waiters.splice(i, 1);
            failWaiters.splice(i, 1);
          }
        }
      }
    }
    ended = true;
    for (const fail of failWaiters) fail(new Error(`the process ended; stderr:\n${stderr}`));
  })();
  const readOut = new Response(child.stdout).text();
  const done = (async () => {
    const status = await child.status;
    const [stdout] = await Promise.all([readOut, readErr]);
    return { code: status.code, signal: status.signal, stdout, stderr };
  })();
  return {
    child,
    done,
    waitForLine(pattern) {
      const seen = stderr.split("\n").find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      if (ended) return Promise.reject(new Error(`the process ended; stderr:\n${stderr}`));
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve });
        failWaiters.push(reject);
      });
    },
  };
}
