/**
 * A local OpenAI-compatible HTTP server for tests: `POST /v1/chat/completions` on 127.0.0.1 with
 * a random port, answering through a test-supplied function, with injectable faults (an HTTP
 * error with headers such as `Retry-After`, a request that hangs until the client gives up, a
 * body that is not JSON, a connection dropped mid-body), optional log-probabilities, and
 * counters (requests, requests in flight now and at most, the Authorization and
 * Proxy-Authorization headers seen) and a promise for the n-th request's arrival.
 * Also: synthetic features that fire on " cat" and a scripted LLM that answers the
 * auto-interp prompts about them by reading the prompts.
 *
 * @module
 */

import type { FeatureRecord, Sample } from "../lib/types.ts";
import {
  DETECTION_SYSTEM,
  EXPLAIN_LABEL_SYSTEM,
  EXPLAIN_OPENAI_SYSTEM,
  FUZZING_SYSTEM,
  SIMULATION_SYSTEM,
} from "../lib/autointerp/prompts/mod.ts";

/** The request body the server receives (the fields tests look at). */
export interface ChatCompletionBody {
  model: string;
  messages: { role: string; content: string }[];
  response_format?: { type: string };
  logprobs?: boolean;
  top_logprobs?: number;
  max_tokens?: number;
  temperature?: number;
}

/** How to answer one request. */
export type FakeReply =
  /** A normal completion with this content. `logprobs` adds per-token log-probabilities. */
  | {
    content: string;
    logprobs?: boolean | ((token: string) => { token: string; logprob: number }[]);
    usage?: { prompt_tokens: number; completion_tokens: number };
  }
  /** An HTTP error: status, optional headers (e.g. `retry-after`) and body. */
  | { status: number; headers?: Record<string, string>; body?: string }
  /** Never answer (until the server closes); the client must time out. Not counted in flight. */
  | { hang: true }
  /** A 200 response whose body is this raw text (not JSON). */
  | { rawBody: string }
  /** Send the start of a response body, then drop the connection. */
  | { drop: true };

/** Decides the reply to a request; `n` counts requests from 1. */
export type FakeHandler = (body: ChatCompletionBody, n: number) => FakeReply | Promise<FakeReply>;

/** A running fake server. */
export interface FakeOpenAIServer {
  /** Base URL for the client, ending in `/v1`. */
  baseURL: string;
  /** Requests received. */
  readonly requests: number;
  /** Requests being handled now. */
  readonly inFlight: number;
  /** Most requests ever handled at once. */
  readonly maxInFlight: number;
  /** Every request body received, in order of arrival. */
  readonly bodies: ChatCompletionBody[];
  /** Authorization headers received. */
  readonly authorizations: string[];
  /** Proxy-Authorization headers received (when the server serves as an HTTP proxy). */
  readonly proxyAuthorizations: string[];
  /** Resolves once `n` requests in all have arrived. */
  waitForRequests(n: number): Promise<void>;
  /** Stops the server (releasing hung requests first). */
  close(): Promise<void>;
}

/** Splits text into pseudo-tokens: each digit alone, other runs together. */
export function pseudoTokens(text: string): string[] {
  return text.match(/\d|[^\d]+/g) ?? [];
}

/**
 * Starts the server on 127.0.0.1 (a free port).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startOpenAIServer } from "./_openai_server.ts";
 * const server = startOpenAIServer(() => ({ content: "hi" }));
 * const r = await fetch(`${server.baseURL}/chat/completions`, { method: "POST", body: JSON.stringify({ model: "m", messages: [] }) });
 * assert.equal((await r.json()).choices[0].message.content, "hi");
 * await server.close();
 * ```
 */
export function startOpenAIServer(handler: FakeHandler): FakeOpenAIServer {
  let requests = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const bodies: ChatCompletionBody[] = [];
  const authorizations: string[] = [];
  const proxyAuthorizations: string[] = [];
  const watchers: { n: number; resolve: () => void }[] = [];
  const hung = new Set<() => void>();
  const controller = new AbortController();

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen: () => {} },
    async (req) => {
      const url = new URL(req.url);
      if (req.method !== "POST" || url.pathname !== "/v1/chat/completions") {
        return Response.json({ error: { message: `no route ${req.method} ${url.pathname}` } }, {
          status: 404,
        });
      }
      const n = ++requests;
      for (const w of watchers.filter((w) => requests >= w.n)) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve();
      }
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        authorizations.push(req.headers.get("authorization") ?? "");
        const proxyAuth = req.headers.get("proxy-authorization");
        if (proxyAuth !== null) proxyAuthorizations.push(proxyAuth);
        const body = (await req.json()) as ChatCompletionBody;
        bodies.push(body);
        const reply = await handler(body, n);
        if ("hang" in reply) {
          // Released by close(): the server cannot see the client give up without
          // request.signal, whose legacy behaviour Deno warns about. Not counted in flight.
          inFlight--;
          await new Promise<void>((resolve) => {
            const done = () => {
              hung.delete(done);
              resolve();
            };
            hung.add(done);
          });
          inFlight++;
          return new Response(null, { status: 499 });
        }
        if ("status" in reply) {
          return new Response(
            reply.body ?? JSON.stringify({ error: { message: `fake error ${reply.status}` } }),
            {
              status: reply.status,
              headers: { "content-type": "application/json", ...reply.headers },
            },
          );
        }
        if ("rawBody" in reply) {
          return new Response(reply.rawBody, { headers: { "content-type": "application/json" } });
        }
        if ("drop" in reply) {
          // Promise 1000 bytes, send a few, end: the client sees the connection fail mid-body.
          return new Response('{"id": "x", "choices": [{"mess', {
            headers: { "content-type": "application/json", "content-length": "1000" },
          });
        }
        const content = reply.content;
        let logprobs: unknown = null;
        if (reply.logprobs && body.logprobs) {
          const alternatives = typeof reply.logprobs === "function"
            ? reply.logprobs
            : (t: string) => [{ token: t, logprob: 0 }];
          logprobs = {
            content: pseudoTokens(content).map((t) => {
              const top = alternatives(t).slice(0, body.top_logprobs ?? 0);
              return {
                token: t,
                logprob: top.find((a) => a.token === t)?.logprob ?? 0,
                bytes: null,
                top_logprobs: top.map((a) => ({ ...a, bytes: null })),
              };
            }),
            refusal: null,
          };
        }
        const promptChars = body.messages.reduce((s, m) => s + m.content.length, 0);
        return Response.json({
          id: `chatcmpl-${n}`,
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: body.model,
          choices: [{
            index: 0,
            message: { role: "assistant", content, refusal: null },
            logprobs,
            finish_reason: "stop",
          }],
          usage: reply.usage ?? {
            prompt_tokens: Math.ceil(promptChars / 4),
            completion_tokens: Math.ceil(content.length / 4),
            total_tokens: Math.ceil(promptChars / 4) + Math.ceil(content.length / 4),
          },
        });
      } finally {
        inFlight--;
      }
    },
  );
  const addr = server.addr as Deno.NetAddr;
  return {
    baseURL: `http://127.0.0.1:${addr.port}/v1`,
    get requests() {
      return requests;
    },
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    bodies,
    authorizations,
    proxyAuthorizations,
    waitForRequests(n: number) {
      if (requests >= n) return Promise.resolve();
      return new Promise<void>((resolve) => watchers.push({ n, resolve }));
    },
    async close() {
      for (const release of [...hung]) release();
      controller.abort();
      await server.finished;
    },
  };
}

/**
 * A base URL on 127.0.0.1 where nothing listens (a port just bound and released), so a request
 * there is refused. (Port 9, the usual choice, is one that `fetch` will not even try.)
 */
export function closedPortURL(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return `http://127.0.0.1:${port}/v1`;
}

/** A TCP port that accepts connections and closes each at once, counting them. */
export interface ClosingListener {
  /** Base URL for the client, ending in `/v1`. */
  baseURL: string;
  /** Connections accepted (one per request attempt). */
  readonly connections: number;
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * Starts a {@linkcode ClosingListener}: every request sent there fails before any HTTP answer
 * ("connection closed before message completed"), like a server that is up but broken, while
 * the test can count the attempts that reached it.
 */
export function startClosingListener(): ClosingListener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        connections++;
        conn.close();
      }
    } catch {
      // closed
    }
  })();
  return {
    baseURL: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/v1`,
    get connections() {
      return connections;
    },
    async close() {
      listener.close();
      await accepting;
    },
  };
}

/** Runs `fn`, expecting it to reject; returns the rejection reason (throws if it resolved). */
export async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection, but the promise resolved");
}

// ---------------------------------------------------------------------------------------------
// Synthetic features and a scripted "LLM" that answers the auto-interp prompts by reading them.
// ---------------------------------------------------------------------------------------------

const WORDS = [" the", " a", " dog", " sat", " on", " mat", " ran", " big", " red", "."];

/** The test vocabulary: `<bos>`, the filler words, `" cat"`, then `" F0"`…`" F99"` (feature tags). */
export const TEST_VOCAB: string[] = [
  "<bos>",
  ...WORDS,
  " cat",
  ...Array.from({ length: 100 }, (_, i) => ` F${i}`),
];
const CAT = TEST_VOCAB.indexOf(" cat");
const tag = (index: number) => TEST_VOCAB.indexOf(` F${index}`);

function sample(feature: number, k: number, peak: number | null): Sample {
  const n = 12;
  const tokens = new Int32Array(n);
  const acts = new Float32Array(n);
  tokens[0] = tag(feature); // lets the scripted LLM tell features apart
  for (let j = 1; j < n; j++) tokens[j] = 1 + ((k * 7 + j * 3 + feature) % WORDS.length);
  let peakPos = 0;
  if (peak !== null) {
    peakPos = 3 + (k % 6);
    tokens[peakPos] = CAT;
    acts[peakPos] = peak;
    acts[peakPos + 1] = peak * 0.2; // weak activation after the peak: below the threshold
  }
  return {
    tokens,
    acts,
    peak: peak ?? 0,
    peak_pos: peakPos,
    source: "synthetic",
    shard: 0,
    row: feature * 100 + k,
    offset: 0,
  };
}

/**
 * A feature that fires on `" cat"`: `nTop` top samples (peaks 10, 9.5, …), `nBand` band samples
 * (peaks around 3), `nNon` non-activating samples. `dead` gives a feature that never fired.
 */
export function catFeature(
  index: number,
  opts: { nTop?: number; nBand?: number; nNon?: number; dead?: boolean } = {},
): FeatureRecord {
  const { nTop = 10, nBand = 4, nNon = 6, dead = false } = opts;
  const top = Array.from({ length: dead ? 0 : nTop }, (_, k) => sample(index, k, 10 - k * 0.5));
  const band = Array.from(
    { length: dead ? 0 : nBand },
    (_, k) => sample(index, 50 + k, 3 - k * 0.1),
  );
  const non = Array.from({ length: nNon }, (_, k) => sample(index, 80 + k, null));
  return {
    sae_name: "test-sae",
    sae_series: "test",
    index,
    analyses: {
      default: {
        act_times: dead ? 0 : nTop + nBand,
        n_analyzed_tokens: 10_000,
        max_activation: dead ? 0 : 10,
        mean: dead ? 0 : 5,
        std: dead ? 0 : 2,
        histogram: { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array() },
        quantiles: [],
        samplings: [
          { name: "top_activations", band: null, samples: top },
          { name: "band_0", band: [0, 0.5], samples: band },
          { name: "non_activating", band: null, samples: non },
        ],
      },
    },
  };
}

/** Which prompt a request carries. */
export type Task = "explain" | "label" | "detection" | "fuzzing" | "simulation" | "unknown";

/** The task of a request, from its system prompt. */
export function taskOf(body: ChatCompletionBody): Task {
  const system = body.messages[0]?.content;
  if (system === EXPLAIN_OPENAI_SYSTEM) return "explain";
  if (system === EXPLAIN_LABEL_SYSTEM) return "label";
  if (system === DETECTION_SYSTEM) return "detection";
  if (system === FUZZING_SYSTEM) return "fuzzing";
  if (system === SIMULATION_SYSTEM) return "simulation";
  return "unknown";
}

/** The feature index a request is about (from the ` F<i>` tag tokens in its prompt). */
export function featureOf(body: ChatCompletionBody): number | undefined {
  const m = body.messages.map((x) => x.content).join("\n").match(/ F(\d+)/);
  return m ? Number(m[1]) : undefined;
}

/** The `Example i: text` lines of the (first) user prompt. */
export function exampleLinesOf(body: ChatCompletionBody): string[] {
  const user = body.messages[1]?.content ?? "";
  return [...user.matchAll(/^Example \d+: (.*)$/gm)].map((m) => m[1]!);
}

/** Options of {@linkcode scriptedLlm}. */
export interface ScriptOptions {
  /** Detection: also say "fires" for the first non-activating example (one false positive). */
  detectionFalsePositive?: boolean;
  /** Return per-token log-probabilities for simulation answers. Default true. */
  logprobs?: boolean;
  /** Replace the reply to a request (return undefined to answer normally). */
  override?: (body: ChatCompletionBody, n: number) => FakeReply | undefined;
  /** Delay every answer by this many ms. */
  delayMs?: number;
}

/** The scripted explanation the LLM gives. */
export const CAT_EXPLANATION = 'The word "cat".';

/**
 * A {@linkcode FakeHandler} that answers like a competent model on {@linkcode catFeature}s:
 * explains "cat", detects the excerpts containing " cat", accepts the marks that are on " cat",
 * and simulates 9 on " cat" tokens and 0 elsewhere (with log-probabilities 0.8/0.2 on 9/8).
 */
export function scriptedLlm(opts: ScriptOptions = {}): FakeHandler {
  return async (body, n) => {
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    const o = opts.override?.(body, n);
    if (o) return o;
    switch (taskOf(body)) {
      case "explain":
        return {
          content: JSON.stringify({
            steps: ["every marked token is cat"],
            final_explanation: CAT_EXPLANATION,
            activation_consistency: 5,
            complexity: 1,
          }),
        };
      case "label":
        return { content: '{"steps": ["peak tokens are all cat"], "final_explanation": "cat"}' };
      case "detection": {
        let flipped = !opts.detectionFalsePositive;
        const results = exampleLinesOf(body).map((line) => {
          if (line.includes(" cat")) return true;
          if (!flipped) return (flipped = true);
          return false;
        });
        return {
          content: JSON.stringify({ steps: ["look for cat"], evaluation_results: results }),
        };
      }
      case "fuzzing": {
        const results = exampleLinesOf(body).map((line) => {
          const spans = [...line.matchAll(/<<(.*?)>>/g)].map((m) => m[1]!.trim());
          return spans.length > 0 && spans.every((s) => s === "cat");
        });
        return { content: JSON.stringify({ evaluation_results: results }) };
      }
      case "simulation": {
        const user = body.messages[1]?.content ?? "";
        const lines = [...user.matchAll(/^(\d+): (".*")$/gm)].map((m) =>
          `${m[1]}: ${JSON.parse(m[2]!) === " cat" ? 9 : 0}`
        );
        return {
          content: lines.join("\n"),
          logprobs: opts.logprobs === false
            ? false
            : (t: string) =>
              t === "9"
                ? [{ token: "9", logprob: Math.log(0.8) }, { token: "8", logprob: Math.log(0.2) }]
                : [{ token: t, logprob: 0 }],
        };
      }
      default:
        return { status: 400, body: '{"error": {"message": "unknown prompt"}}' };
    }
  };
}
