/**
 * A session over the pruned graph that computes only the hook tensors: the hook points are
 * resolved, become graph outputs, every node that does not feed one is removed (the LM head and
 * the blocks above the highest hook go), and the session is created from the edited bytes.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import { type FeedBuilder, feedBuilder } from "./feeds.ts";
import { OnnxModel, resolveHooks } from "../onnx/mod.ts";
import { createSession, type OrtSession, type SessionOptions } from "./session.ts";

/** Settings of {@linkcode openHookSession}; all optional. */
export interface HookSessionOptions extends SessionOptions {
  /**
   * The floating-point type the model is expected to compute in (`"float32"` or `"float16"`);
   * default: whatever the model uses. A mismatch is a ConfigError.
   */
  dtype?: "float32" | "float16";
}

/** A session computing hook tensors, with what is needed to feed it and read its outputs. */
export interface HookSession extends AsyncDisposable {
  /** The session (owned by this object: released by {@linkcode HookSession.release}). */
  session: OrtSession;
  /** The pruned model the session runs. */
  model: OnnxModel;
  /** Hook name → graph output name, in the order asked. */
  tensors: Record<string, string>;
  /** Builds the feeds of a token batch. */
  feeds: FeedBuilder;
  /** The floating-point type of the hook outputs (`"float32"` or `"float16"`). */
  dtype: string;
  /** Releases the session. */
  release(): Promise<void>;
}

/**
 * Opens a session that computes the given hook points.
 *
 * @param model The model, or the path of its `.onnx` file.
 * @param hooks TransformerLens hook names or raw tensor names.
 * @param options Session settings and the expected dtype.
 * @returns The hook session; release it (or `await using`).
 * @throws {ConfigError} for unknown hooks, a dtype mismatch, or inputs saeflow cannot feed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openHookSession } from "./hook_session.ts";
 * await using hs = await openHookSession(
 *   new URL("../../fixtures/tiny-neox/model.onnx", import.meta.url).pathname,
 *   ["blocks.1.hook_resid_post"],
 *   { intraOpThreads: 1 },
 * );
 * assert.equal(hs.session.outputNames.length, 1);
 * ```
 */
export async function openHookSession(
  model: OnnxModel | string,
  hooks: readonly string[],
  options: HookSessionOptions = {},
): Promise<HookSession> {
  const full = typeof model === "string" ? await OnnxModel.load(model) : model;
  if (hooks.length === 0) throw new ConfigError("No hook point given for the model hook");
  const tensors = resolveHooks(full, hooks);
  const pruned = full.prune([...new Set(Object.values(tensors))]);
  const { dtype: wanted, ...sessionOptions } = options;
  const session = await createSession(pruned, sessionOptions);
  try {
    const types = new Set(
      session.outputMetadata.map((m) => m.type ?? pruned.elemType(m.name) ?? "unknown"),
    );
    const dtype = types.size === 1 ? [...types][0]! : [...types].join("/");
    if (dtype !== "float32" && dtype !== "float16") {
      throw new ConfigError(
        `Hook tensors of ONNX model ${full.source} are ${dtype}, expected float32 or float16`,
      );
    }
    if (wanted !== undefined && wanted !== dtype) {
      throw new ConfigError(
        `dtype = "${wanted}" was asked, but ONNX model ${full.source} computes in ${dtype}; ` +
          `set dtype = "${dtype}" or use a ${wanted} export of the model`,
      );
    }
    const feeds = feedBuilder(session.inputMetadata, full.source);
    const release = () => session.release();
    return {
      session,
      model: pruned,
      tensors,
      feeds,
      dtype,
      release,
      [Symbol.asyncDispose]: release,
    };
  } catch (e) {
    await session.release();
    throw e;
  }
}

/**
 * Converts IEEE half-precision bits to float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { halfToFloat } from "./hook_session.ts";
 * assert.equal(halfToFloat(new Uint16Array([0x3c00]))[0], 1);
 * ```
 */
export function halfToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    out[i] = exp === 0
      ? sign * frac * 2 ** -24
      : exp === 31
      ? (frac ? NaN : sign * Infinity)
      : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}
