/**
 * ONNX Runtime sessions. This is the only module of saeflow that imports `onnxruntime-node`;
 * everything else uses the small {@linkcode Tensor} / {@linkcode OrtSession} interfaces below.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { ConfigError } from "../errors.ts";

/** Element types a {@linkcode Tensor} can hold. */
export type TensorType =
  | "float32"
  | "float16"
  | "float64"
  | "int64"
  | "int32"
  | "int8"
  | "uint8"
  | "bool";

/** The data array of a tensor (`float16` is raw bits in a `Uint16Array`). */
export type TensorData =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

/** A dense tensor going into or coming out of a session. Row-major. */
export interface Tensor {
  /** Element type. */
  readonly type: TensorType;
  /** Dimensions. */
  readonly dims: readonly number[];
  /** The values, `dims` multiplied together of them. */
  readonly data: TensorData;
}

/** A session input or output as the runtime describes it. */
export interface ValueMetadata {
  /** Tensor name. */
  name: string;
  /** Element type, when it is a tensor. */
  type: string | undefined;
  /** Dimensions; symbolic ones as strings. */
  shape: (number | string)[];
}

/** Where a session runs. */
export type Device = "cpu" | "cuda";

/** Session settings; all optional. */
export interface SessionOptions {
  /** `"cpu"` (default) or `"cuda"` (needs the CUDA provider libraries of onnxruntime-node). */
  device?: Device;
  /** Threads used within an operator; default: ONNX Runtime's choice (one per core). */
  intraOpThreads?: number;
  /** Threads used across operators; default: ONNX Runtime's choice. */
  interOpThreads?: number;
  /** Graph optimizations; default `"all"`. */
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /**
   * Folder that external data locations are relative to, when the model is given as bytes;
   * default: the folder of the model path, or `baseDir` of an `OnnxModel`-like source.
   */
  externalDataDir?: string;
}

/** Anything with serialized bytes and a folder for its external data (an `OnnxModel`). */
export interface ModelSource {
  toBytes(): Uint8Array;
  readonly baseDir: string | null;
  readonly source?: string;
}

/**
 * Creates a tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "./session.ts";
 * const t = tensor("int64", new BigInt64Array([1n, 2n]), [1, 2]);
 * assert.equal(t.dims[1], 2);
 * ```
 */
export function tensor(type: TensorType, data: TensorData, dims: readonly number[]): Tensor {
  // deno-lint-ignore no-explicit-any
  return new ort.Tensor(type as any, data as any, dims) as unknown as Tensor;
}

/**
 * An ONNX Runtime inference session. Release it with {@linkcode OrtSession.release} or
 * `await using`.
 */
export class OrtSession implements AsyncDisposable {
  #session: ort.InferenceSession | null;
  /** Names of the inputs the session must be fed. */
  readonly inputNames: readonly string[];
  /** Names of the outputs it computes. */
  readonly outputNames: readonly string[];
  /** Inputs with type and shape. */
  readonly inputMetadata: readonly ValueMetadata[];
  /** Outputs with type and shape. */
  readonly outputMetadata: readonly ValueMetadata[];
  /** Where it runs. */
  readonly device: Device;

  /** @internal Use {@linkcode createSession}. */
  constructor(session: ort.InferenceSession, device: Device) {
    this.#session = session;
    this.device = device;
    this.inputNames = session.inputNames;
    this.outputNames = session.outputNames;
    const meta = (m: ort.InferenceSession.ValueMetadata): ValueMetadata => ({
      name: m.name,
      type: m.isTensor ? m.type : undefined,
      shape: m.isTensor ? [...m.shape] : [],
    });
    this.inputMetadata = session.inputMetadata.map(meta);
    this.outputMetadata = session.outputMetadata.map(meta);
  }

  /** Whether {@linkcode release} has been called. */
  get released(): boolean {
    return this.#session === null;
  }

  /**
   * Runs the model.
   *
   * @param feeds One tensor per input name.
   * @param outputs The outputs to compute; default all.
   * @returns The outputs by name.
   * @throws {Error} when the session was released, or when ONNX Runtime fails.
   */
  async run(
    feeds: Record<string, Tensor>,
    outputs?: readonly string[],
  ): Promise<Record<string, Tensor>> {
    if (!this.#session) throw new Error("Cannot run an ONNX session that was released");
    const result = outputs
      ? await this.#session.run(feeds as unknown as ort.InferenceSession.FeedsType, [...outputs])
      : await this.#session.run(feeds as unknown as ort.InferenceSession.FeedsType);
    return result as unknown as Record<string, Tensor>;
  }

  /** Frees the native session. Safe to call more than once. */
  async release(): Promise<void> {
    const s = this.#session;
    this.#session = null;
    if (s) await s.release();
  }

  /** Same as {@linkcode release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/**
 * Creates a session from a model path, serialized bytes or an `OnnxModel`.
 *
 * @param source The model: a `.onnx` path, bytes, or an object with `toBytes()` and `baseDir`.
 * @param options Device, threads, optimization level.
 * @returns The session.
 * @throws {ConfigError} when CUDA is asked for but cannot be used (with how to install it), or
 *   when ONNX Runtime rejects the model.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSession } from "./session.ts";
 * await using s = await createSession(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   { intraOpThreads: 1 },
 * );
 * assert(s.inputNames.includes("input_ids"));
 * ```
 */
export async function createSession(
  source: string | Uint8Array | ModelSource,
  options: SessionOptions = {},
): Promise<OrtSession> {
  const device = options.device ?? "cpu";
  if (device === "cuda") {
    const missing = missingCudaProvider();
    if (missing) throw cudaError(`${missing} is not installed`);
  }
  const opts: ort.InferenceSession.SessionOptions = {
    executionProviders: device === "cuda" ? ["cuda", "cpu"] : ["cpu"],
    graphOptimizationLevel: options.graphOptimizationLevel ?? "all",
  };
  if (options.intraOpThreads !== undefined) opts.intraOpNumThreads = options.intraOpThreads;
  if (options.interOpThreads !== undefined) opts.interOpNumThreads = options.interOpThreads;
  let input: string | Uint8Array;
  let dir = options.externalDataDir;
  let name: string;
  if (typeof source === "string") {
    input = source;
    name = source;
  } else if (source instanceof Uint8Array) {
    input = source;
    name = "<bytes>";
  } else {
    input = source.toBytes();
    dir ??= source.baseDir ?? undefined;
    name = source.source ?? "<model>";
  }
  if (dir !== undefined && typeof input !== "string") {
    // ONNX Runtime resolves external data of a model given as bytes from this folder.
    opts.extra = { session: { model_external_initializers_file_folder_path: dir } };
  }
  try {
    const s = await ort.InferenceSession.create(input as Uint8Array, opts);
    return new OrtSession(s, device);
  } catch (e) {
    const message = String((e as Error).message ?? e).split("\n")[0] ?? "";
    if (device === "cuda" && /cuda|provider|libcu|shared library/i.test(message)) {
      throw cudaError(message, e);
    }
    throw new ConfigError(`ONNX Runtime cannot load model ${name}: ${message}`, { cause: e });
  }
}

function cudaError(why: string, cause?: unknown): ConfigError {
  return new ConfigError(
    `Cannot use device = "cuda": ONNX Runtime's CUDA provider cannot be loaded (${why}). ` +
      `onnxruntime-node fetches its CUDA 12 provider libraries in its install script: reinstall ` +
      `it with ONNXRUNTIME_NODE_INSTALL=cuda12 and that script allowed (deno install ` +
      `--allow-scripts=npm:onnxruntime-node; npm: --onnxruntime-node-install=cuda12), with ` +
      `CUDA 12 and cuDNN 9 on the library path; or set device = "cpu"`,
    { cause },
  );
}

/** The CUDA provider library missing from the onnxruntime-node binaries folder, if any. */
function missingCudaProvider(): string | null {
  if (Deno.build.os !== "linux") return null;
  try {
    const index = fromFileUrl(import.meta.resolve("onnxruntime-node"));
    const bin = join(
      dirname(index),
      "..",
      "bin",
      "napi-v6",
      "linux",
      Deno.build.arch === "x86_64" ? "x64" : "arm64",
    );
    for (const lib of ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"]) {
      if (!existsSync(join(bin, lib))) return lib;
    }
  } catch {
    // Cannot locate the package files: let ONNX Runtime tell.
  }
  return null;
}

/**
 * Whether the installed onnxruntime-node ships or has fetched a provider for `device`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deviceAvailable } from "./session.ts";
 * assert(deviceAvailable("cpu"));
 * ```
 */
export function deviceAvailable(device: Device): boolean {
  if (device === "cpu") return true;
  if (missingCudaProvider()) return false;
  try {
    const list = (ort as unknown as {
      listSupportedBackends?: () => { name: string; bundled: boolean }[];
    }).listSupportedBackends?.() ?? [];
    return list.some((b) => b.name === device);
  } catch {
    return false;
  }
}
