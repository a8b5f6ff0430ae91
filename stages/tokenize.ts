/**
 * The tokenize stage: text records in, fixed-size context batches out.
 *
 * @module
 */

import { ConfigError } from "../lib/errors.ts";
import type { ContextBatch, ContextOrigin, TextRecord } from "../lib/types.ts";
import { type Tokenizer, type TokenizerSource, toLoadedTokenizer } from "../lib/data/mod.ts";

/** Options of {@linkcode tokenize}. `tokenizer`, `contextSize` and `batchSize` are required. */
export interface TokenizeOptions {
  /**
   * A loaded `@huggingface/tokenizers` `Tokenizer`, a {@linkcode LoadedTokenizer}, or the path of
   * a folder with `tokenizer.json` + `tokenizer_config.json` (or of the `tokenizer.json` itself).
   */
  tokenizer: TokenizerSource;
  /** Tokens per context `T` (the seed's `context_size`), BOS included. */
  contextSize: number;
  /** Contexts per batch `B`. The last batch may be smaller. */
  batchSize: number;
  /** Put the BOS token first in every context. Default `true`. */
  prependBos?: boolean;
  /**
   * Split a row longer than the context into several contexts (each starting with BOS when
   * `prependBos`, `offset` set on every context) instead of truncating it. Default `false`: one
   * row fills one context, as in the Python tool.
   */
  splitLongRows?: boolean;
  /** Token ids never analyzed (mask 0), besides BOS, EOS and padding. Default none. */
  ignoreTokenIds?: number[];
  /** BOS id. Default: `bos_token` of the tokenizer config. */
  bosTokenId?: number;
  /** EOS id. Default: `eos_token` of the tokenizer config. */
  eosTokenId?: number;
  /** Padding id. Default: `pad_token`, else EOS (as for Pythia), else BOS, else 0. */
  padTokenId?: number;
}

interface Resolved {
  tokenizer: Tokenizer;
  bos: number | undefined;
  pad: number;
  unmasked: (id: number) => boolean;
}

async function resolveTokenizer(options: TokenizeOptions): Promise<Resolved> {
  const loaded = await toLoadedTokenizer(options.tokenizer);
  const prependBos = options.prependBos ?? true;
  const bos = options.bosTokenId ?? loaded.bosTokenId;
  const eos = options.eosTokenId ?? loaded.eosTokenId;
  const pad = options.padTokenId ?? loaded.padTokenId ?? eos ?? bos ?? 0;
  if (prependBos && bos === undefined) {
    throw new ConfigError(
      `Cannot prepend BOS: the tokenizer ${loaded.path} names no bos_token; set the BOS token id ` +
        `or turn prepend_bos off`,
    );
  }
  const ignored = new Set<number>(options.ignoreTokenIds ?? []);
  for (const id of [bos, eos, pad]) if (id !== undefined) ignored.add(id);
  return { tokenizer: loaded.tokenizer, bos, pad, unmasked: (id) => !ignored.has(id) };
}

function positiveInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`tokenize(): ${name} must be an integer >= ${min}, got ${value}`);
  }
}

/**
 * Tokenizes text records into batches of fixed-size contexts.
 *
 * One row becomes one context of `contextSize` tokens: BOS first (when `prependBos`), then the
 * row's tokens (encoded without the tokenizer's own special tokens), truncated, then padding.
 * `attention` is 1 on real tokens (BOS included) and 0 on padding; `mask` is 0 on the BOS
 * position, on padding, and on every token whose id is BOS, EOS, PAD or in `ignoreTokenIds`
 * (as the Python tool filters by id). An empty row gives a context of BOS alone (nothing
 * analyzed), so row numbers stay dense; with `prependBos` off an empty row gives nothing.
 *
 * With `splitLongRows`, a row of `n` tokens becomes `ceil(n / (contextSize - 1))` contexts (or
 * `/ contextSize` without BOS), each starting with BOS, back to back without overlap;
 * `origins[b].offset` is the index, in the row's tokens (BOS not counted), of the context's first
 * text token. Without it, `offset` is absent (0).
 *
 * Batches hold `batchSize` contexts; the last one is smaller (`batchSize` says how many). Queues:
 * one record on the writable side, one batch on the readable side. A tokenizer given as a path is
 * loaded when the stream starts: a tokenizer.json that does not parse errors the stream with a
 * ConfigError naming the file.
 *
 * @param options Tokenizer, context size, batch size and the special-token policy.
 * @returns A `TransformStream<TextRecord, ContextBatch>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenize } from "./tokenize.ts";
 * const records = ReadableStream.from([{ source: "demo", shard: 0, row: 0, text: "Hello world" }]);
 * const batches = await Array.fromAsync(records.pipeThrough(tokenize({
 *   tokenizer: new URL("../fixtures/tiny-neox", import.meta.url).pathname,
 *   contextSize: 8,
 *   batchSize: 4,
 * })));
 * assert.equal(batches.length, 1);
 * assert.equal(batches[0]!.batchSize, 1);
 * assert.equal(batches[0]!.tokens[0], 0);
 * assert.equal(batches[0]!.mask[0], 0); // BOS, not analyzed
 * ```
 */
export function tokenize(options: TokenizeOptions): TransformStream<TextRecord, ContextBatch> {
  const T = options.contextSize;
  const B = options.batchSize;
  positiveInteger("contextSize", T, (options.prependBos ?? true) ? 2 : 1);
  positiveInteger("batchSize", B, 1);
  const prependBos = options.prependBos ?? true;
  const split = options.splitLongRows ?? false;
  const body = prependBos ? T - 1 : T;
  let r: Resolved;

  let tokens = new Int32Array(B * T);
  let mask = new Uint8Array(B * T);
  let attention = new Uint8Array(B * T);
  let origins: ContextOrigin[] = [];

  const take = (count: number): ContextBatch => {
    const batch: ContextBatch = {
      batchSize: count,
      contextSize: T,
      tokens: count === B ? tokens : tokens.slice(0, count * T),
      mask: count === B ? mask : mask.slice(0, count * T),
      attention: count === B ? attention : attention.slice(0, count * T),
      origins,
    };
    tokens = new Int32Array(B * T);
    mask = new Uint8Array(B * T);
    attention = new Uint8Array(B * T);
    origins = [];
    return batch;
  };

  const addContext = (ids: number[], start: number, origin: ContextOrigin): void => {
    const b = origins.length;
    let p = b * T;
    const end = p + T;
    if (prependBos) {
      tokens[p] = r.bos!;
      attention[p] = 1; // mask stays 0 on BOS
      p++;
    }
    const stop = Math.min(ids.length, start + body);
    for (let i = start; i < stop; i++, p++) {
      const id = ids[i]!;
      tokens[p] = id;
      attention[p] = 1;
      mask[p] = r.unmasked(id) ? 1 : 0;
    }
    tokens.fill(r.pad, p, end); // padding: attention and mask stay 0
    origins.push(origin);
  };

  return new TransformStream<TextRecord, ContextBatch>(
    {
      async start() {
        r = await resolveTokenizer(options);
      },
      transform(record, controller) {
        const ids = r.tokenizer.encode(record.text, { add_special_tokens: false }).ids;
        if (ids.length === 0 && !prependBos) return;
        const base = { source: record.source, shard: record.shard, row: record.row };
        const starts = split ? Math.max(1, Math.ceil(ids.length / body)) : 1;
        for (let c = 0; c < starts; c++) {
          const start = c * body;
          addContext(ids, start, split ? { ...base, offset: start } : base);
          if (origins.length === B) controller.enqueue(take(B));
        }
      },
      flush(controller) {
        if (origins.length > 0) controller.enqueue(take(origins.length));
      },
    },
    { highWaterMark: 1 },
    { highWaterMark: 1 },
  );
}
