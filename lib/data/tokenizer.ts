/**
 * Loading a Hugging Face tokenizer (`tokenizer.json` + `tokenizer_config.json`) with
 * `@huggingface/tokenizers`, its special token ids, and the display string of every token id.
 * The only module that imports `@huggingface/tokenizers`.
 *
 * @module
 */

import { Tokenizer } from "@huggingface/tokenizers";
import { dirname, join } from "node:path";
import { ConfigError } from "../errors.ts";

/** The `@huggingface/tokenizers` tokenizer (get one with {@linkcode loadTokenizer}). */
export type { Tokenizer };

/**
 * A tokenizer as callers hand it over: a `@huggingface/tokenizers` `Tokenizer`, a
 * {@linkcode LoadedTokenizer}, or the path of a folder with `tokenizer.json` (or of the file).
 */
export type TokenizerSource = Tokenizer | LoadedTokenizer | string;

/** A tokenizer with the special token ids its config names. */
export interface LoadedTokenizer {
  /** The `@huggingface/tokenizers` instance. */
  tokenizer: Tokenizer;
  /** The `tokenizer.json` it was loaded from. */
  path: string;
  /** `bos_token` of `tokenizer_config.json`, as an id. */
  bosTokenId?: number;
  /** `eos_token`, as an id. */
  eosTokenId?: number;
  /** `pad_token`, as an id (`null` in Pythia's config: then undefined). */
  padTokenId?: number;
  /** Whether the decoder is byte-level BPE (GPT-2, GPT-NeoX, Llama 3, Qwen, …). */
  byteLevel: boolean;
}

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ConfigError(`Cannot load tokenizer: ${path} does not exist`);
    }
    throw e;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(
      `Cannot load tokenizer: ${path} is not valid JSON (${(e as Error).message})`,
    );
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError(`Cannot load tokenizer: ${path} is not a JSON object (${what})`);
  }
  return value as Record<string, unknown>;
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value !== null && typeof value === "object" && "content" in value) {
    const content = (value as { content: unknown }).content;
    if (typeof content === "string") return content;
  }
  return undefined;
}

function isByteLevel(decoder: unknown): boolean {
  // Decoders of @huggingface/tokenizers are callable objects: typeof "function".
  if (decoder === null || (typeof decoder !== "object" && typeof decoder !== "function")) {
    return false;
  }
  const d = decoder as { type?: unknown; decoders?: unknown; config?: unknown };
  if (d.type === "ByteLevel") return true;
  if (d.type === "Sequence" && Array.isArray(d.decoders)) return d.decoders.some(isByteLevel);
  return d.config !== undefined && isByteLevel(d.config);
}

/**
 * The special token ids named in a tokenizer config (`bos_token`, `eos_token`, `pad_token`,
 * strings or `{content}` objects), looked up in the tokenizer's vocabulary.
 *
 * @param tokenizer The tokenizer.
 * @param config The parsed `tokenizer_config.json`.
 * @returns The ids that exist.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenizer, specialTokenIds } from "./tokenizer.ts";
 * const { tokenizer } = await loadTokenizer(new URL("../../fixtures/tiny-neox", import.meta.url).pathname);
 * assert.equal(specialTokenIds(tokenizer, { eos_token: "<|endoftext|>" }).eosTokenId, 0);
 * ```
 */
export function specialTokenIds(
  tokenizer: Tokenizer,
  config: Record<string, unknown>,
): { bosTokenId?: number; eosTokenId?: number; padTokenId?: number } {
  const out: { bosTokenId?: number; eosTokenId?: number; padTokenId?: number } = {};
  for (
    const [key, prop] of [["bos_token", "bosTokenId"], ["eos_token", "eosTokenId"], [
      "pad_token",
      "padTokenId",
    ]] as const
  ) {
    const content = tokenContent(config[key]);
    const id = content === undefined ? undefined : tokenizer.token_to_id(content);
    if (id !== undefined) out[prop] = id;
  }
  return out;
}

/**
 * Loads a tokenizer from a folder holding `tokenizer.json` (and `tokenizer_config.json`, optional),
 * or from the path of a `tokenizer.json` file (its config is looked up beside it).
 *
 * @param path Folder or `tokenizer.json` file.
 * @returns The tokenizer and its special token ids.
 * @throws {ConfigError} A file is missing or is not valid JSON, or the tokenizer cannot be built.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenizer } from "./tokenizer.ts";
 * const tok = await loadTokenizer(new URL("../../fixtures/tiny-neox", import.meta.url).pathname);
 * assert.equal(tok.eosTokenId, 0);
 * assert(tok.byteLevel);
 * ```
 */
export async function loadTokenizer(path: string): Promise<LoadedTokenizer> {
  let file = path;
  try {
    if ((await Deno.stat(path)).isDirectory) file = join(path, "tokenizer.json");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ConfigError(`Cannot load tokenizer: ${path} does not exist`);
    }
    throw e;
  }
  const json = await readJson(file, "tokenizer.json");
  const configPath = join(dirname(file), "tokenizer_config.json");
  let config: Record<string, unknown> = {};
  try {
    await Deno.stat(configPath);
    config = await readJson(configPath, "tokenizer_config.json");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (e) {
    throw new ConfigError(`Cannot load tokenizer from ${file}: ${(e as Error).message}`);
  }
  return {
    tokenizer,
    path: file,
    ...specialTokenIds(tokenizer, config),
    byteLevel: isByteLevel(json.decoder),
  };
}

/**
 * A {@linkcode LoadedTokenizer} from any {@linkcode TokenizerSource}: a path is loaded with
 * {@linkcode loadTokenizer}; a bare `Tokenizer` gets the special token ids of the config it was
 * built with (byte-level detected from its decoder); a `LoadedTokenizer` is returned as it is.
 *
 * @param source The tokenizer, loaded or not.
 * @returns The tokenizer and its special token ids.
 * @throws {ConfigError} When a path cannot be loaded (see {@linkcode loadTokenizer}).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenizer, toLoadedTokenizer } from "./tokenizer.ts";
 * const loaded = await loadTokenizer(new URL("../../fixtures/tiny-neox", import.meta.url).pathname);
 * assert.equal(await toLoadedTokenizer(loaded), loaded);
 * const bare = await toLoadedTokenizer(loaded.tokenizer);
 * assert.equal(bare.path, "(tokenizer object)");
 * assert.equal(bare.eosTokenId, loaded.eosTokenId);
 * ```
 */
export async function toLoadedTokenizer(source: TokenizerSource): Promise<LoadedTokenizer> {
  if (typeof source === "string") return await loadTokenizer(source);
  if (!(source instanceof Tokenizer)) return source;
  // The config the Tokenizer was built with holds bos_token/eos_token/pad_token.
  const config = (source as unknown as { config?: Record<string, unknown> }).config;
  return {
    tokenizer: source,
    path: "(tokenizer object)",
    ...specialTokenIds(source, config ?? {}),
    byteLevel: isByteLevel(source.decoder),
  };
}

// GPT-2's byte ↔ unicode table: printable bytes stand for themselves, the others for 256 + n.
const UNICODE_TO_BYTE: Map<string, number> = (() => {
  const map = new Map<string, number>();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    map.set(String.fromCodePoint(printable ? b : 256 + n++), b);
  }
  return map;
})();

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

/**
 * Shows bytes as text: valid UTF-8 sequences as their characters, every other byte as `<0xE2>`.
 *
 * @param bytes The bytes.
 * @returns The display string.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { displayBytes } from "./tokenizer.ts";
 * assert.equal(displayBytes(new Uint8Array([0x20, 0x74, 0xe2, 0x80])), " t<0xE2><0x80>");
 * ```
 */
export function displayBytes(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const n = sequenceLength(bytes[i]!);
    if (n > 0 && i + n <= bytes.length) {
      try {
        out += fatal.decode(bytes.subarray(i, i + n));
        i += n;
        continue;
      } catch {
        // not a valid sequence: show the lead byte alone
      }
    }
    out += `<0x${bytes[i]!.toString(16).toUpperCase().padStart(2, "0")}>`;
    i += 1;
  }
  return out;
}

/**
 * The display string of every token id, `result[id]`: what the token means on its own, so a
 * viewer needs no tokenizer. Byte-level BPE tokens are mapped back to their bytes (`Ġthe` →
 * ` the`), bytes that are not valid UTF-8 on their own shown as `<0xE2>`; added and special
 * tokens as their content; other tokenizers through `decode([id])`. Ids with no token are `""`.
 *
 * @param tokenizer A loaded tokenizer, or a bare `Tokenizer` (byte-level detected from its
 * decoder).
 * @returns One string per id, `0 … max id`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenizer, vocabDisplayStrings } from "./tokenizer.ts";
 * const tok = await loadTokenizer(new URL("../../fixtures/tiny-neox", import.meta.url).pathname);
 * const vocab = vocabDisplayStrings(tok);
 * assert.equal(vocab[0], "<|endoftext|>");
 * ```
 */
export function vocabDisplayStrings(tokenizer: Tokenizer | LoadedTokenizer): string[] {
  const tok = tokenizer instanceof Tokenizer ? tokenizer : tokenizer.tokenizer;
  const byteLevel = tokenizer instanceof Tokenizer ? isByteLevel(tok.decoder) : tokenizer.byteLevel;
  const vocab = tok.get_vocab(true);
  let size = 0;
  for (const id of vocab.values()) size = Math.max(size, id + 1);
  const added = tok.get_added_tokens_decoder();
  const out: string[] = new Array(size).fill("");
  for (let id = 0; id < size; id++) {
    const addedToken = added.get(id);
    if (addedToken !== undefined) {
      out[id] = addedToken.content;
      continue;
    }
    const token = tok.id_to_token(id);
    if (token === undefined) continue;
    if (byteLevel) {
      const bytes: number[] = [];
      for (const ch of token) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b !== undefined) bytes.push(b);
        else bytes.push(...new TextEncoder().encode(ch));
      }
      out[id] = displayBytes(new Uint8Array(bytes));
    } else {
      const text = tok.decode([id], { clean_up_tokenization_spaces: false });
      out[id] = text.includes("\uFFFD") ? token : text;
    }
  }
  return out;
}
