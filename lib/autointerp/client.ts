/**
 * The chat client: the project's small {@linkcode ChatClient} interface and its implementation on
 * `npm:openai` against any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, OpenRouter, ...).
 *
 * This is the only module that imports `openai`. It adds what the package's own client does not
 * do the way a long auto-interpretation run needs: a concurrency limit, requests-per-minute and
 * tokens-per-minute limits, retries with exponential backoff and jitter that honour
 * `Retry-After`, a per-request timeout covering the whole exchange, an optional proxy, and error
 * messages from which the API key is always removed.
 *
 * @module
 */

import OpenAI from "openai";
import { ConfigError } from "../errors.ts";
import { REAL_TIMERS, Semaphore, type Timers, TokenBucket } from "./_concurrency.ts";

export type { Timers } from "./_concurrency.ts";

/** One chat message. */
export interface ChatMessage {
  /** `system`, `user` or `assistant`. */
  role: "system" | "user" | "assistant";
  /** The text. */
  content: string;
}

/** One chat completion request. */
export interface ChatRequest {
  /** The conversation. */
  messages: ChatMessage[];
  /** `json_object` asks the endpoint for a JSON answer (`response_format`). Default: plain text. */
  responseFormat?: "json_object" | "text";
  /** When set, asks for log-probabilities with this many alternatives per token (0–20). */
  logprobs?: number;
  /** Most tokens to generate. Default 1000. */
  maxTokens?: number;
  /** Sampling temperature. Default: the endpoint's. */
  temperature?: number;
  /** Aborts the request (and any wait for a retry or a rate limit). */
  signal?: AbortSignal;
}

/** Token counts of one or more requests. */
export interface ChatUsage {
  /** Prompt tokens. */
  prompt_tokens: number;
  /** Generated tokens. */
  completion_tokens: number;
}

/** The log-probability of one generated token and its most likely alternatives. */
export interface TokenLogprob {
  /** The generated token. */
  token: string;
  /** Its log-probability. */
  logprob: number;
  /** The most likely alternatives at this position (the generated one usually among them). */
  top: { token: string; logprob: number }[];
}

/** The answer to a {@linkcode ChatRequest}. */
export interface ChatResponse {
  /** The generated text ("" when the endpoint returned none). */
  content: string;
  /** Token usage as reported by the endpoint (0 when it reports none). */
  usage: ChatUsage;
  /** Per-token log-probabilities, only when requested and returned by the endpoint. */
  logprobs?: TokenLogprob[];
}

/**
 * What the auto-interpretation core needs from an LLM: one chat completion at a time. Limits,
 * retries and timeouts are the implementation's business.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ChatClient } from "./client.ts";
 * const echo: ChatClient = {
 *   model: "echo",
 *   complete: (r) =>
 *     Promise.resolve({
 *       content: r.messages.at(-1)?.content ?? "",
 *       usage: { prompt_tokens: 0, completion_tokens: 0 },
 *     }),
 * };
 * assert.equal((await echo.complete({ messages: [{ role: "user", content: "hi" }] })).content, "hi");
 * ```
 */
export interface ChatClient {
  /** The model name requests go to. */
  readonly model: string;
  /** Sends one request; rejects with {@linkcode ChatRequestError} when it finally fails. */
  complete(request: ChatRequest): Promise<ChatResponse>;
  /** Releases what the client holds (connections, proxy client). */
  close?(): void;
}

/**
 * A chat request that failed for good: a non-retryable HTTP status, or every retry used up. The
 * message never contains the API key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChatRequestError } from "./client.ts";
 * const e = new ChatRequestError("HTTP 400: bad request", { status: 400, attempts: 1 });
 * assert.equal(e.name, "ChatRequestError");
 * assert.equal(e.status, 400);
 * ```
 */
export class ChatRequestError extends Error {
  /** The last HTTP status, when the endpoint answered. */
  readonly status: number | undefined;
  /** Attempts made. */
  readonly attempts: number;

  /** Creates the error; `message` (and `cause`, if any) must already be free of secrets. */
  constructor(
    message: string,
    info: { status?: number | undefined; attempts: number; cause?: unknown },
  ) {
    super(message, "cause" in info ? { cause: info.cause } : undefined);
    this.name = "ChatRequestError";
    this.status = info.status;
    this.attempts = info.attempts;
  }
}

/**
 * Why no request to an endpoint can succeed, whatever it asks:
 *
 * - `unreachable`: no HTTP answer at all — connection refused, DNS lookup or TLS handshake
 *   failed, the connection closed before any response, or (while the endpoint has not answered
 *   a single request) no answer within the timeout;
 * - `unauthorized`: HTTP 401, the API key was refused;
 * - `forbidden`: HTTP 403, the key may not use this endpoint or model;
 * - `not_found`: HTTP 404, a wrong base URL path or a model the endpoint does not have (OpenAI,
 *   vLLM and Ollama all answer 404 for an unknown model).
 */
export type EndpointFault = "unreachable" | "unauthorized" | "forbidden" | "not_found";

/**
 * A request failed in a way that every other request would fail too (see
 * {@linkcode EndpointFault}), so a caller running many requests should stop rather than go on.
 * Thrown by {@linkcode OpenAIChatClient.complete} after the request's retries (HTTP 401, 403
 * and 404 are not retried). The message names the base URL — never the API key — and `cause`
 * holds the last failure, also free of the key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChatRequestError, LLMUnavailableError } from "./client.ts";
 * const e = new LLMUnavailableError(
 *   "the LLM at http://127.0.0.1:8000/v1 refused the API key (401 Unauthorized)",
 *   { fault: "unauthorized", baseURL: "http://127.0.0.1:8000/v1", status: 401, attempts: 1 },
 * );
 * assert.ok(e instanceof ChatRequestError);
 * assert.equal(e.name, "LLMUnavailableError");
 * assert.equal(e.fault, "unauthorized");
 * ```
 */
export class LLMUnavailableError extends ChatRequestError {
  /** What is wrong with the endpoint. */
  readonly fault: EndpointFault;
  /** The endpoint's base URL (user and password removed). */
  readonly baseURL: string;

  /** Creates the error; `message` (and `cause`, if any) must already be free of secrets. */
  constructor(
    message: string,
    info: {
      fault: EndpointFault;
      baseURL: string;
      status?: number | undefined;
      attempts: number;
      cause?: unknown;
    },
  ) {
    super(message, info);
    this.name = "LLMUnavailableError";
    this.fault = info.fault;
    this.baseURL = info.baseURL;
  }
}

/** What {@linkcode OpenAIChatClientOptions.onRetry} is told before a retry. */
export interface RetryInfo {
  /** The attempt that failed (1-based). */
  attempt: number;
  /** Why it failed (free of secrets). */
  reason: string;
  /** Milliseconds until the next attempt. */
  delayMs: number;
  /** Whether the delay came from the server's `Retry-After`. */
  fromRetryAfter: boolean;
}

/** Options of {@linkcode OpenAIChatClient}. Every field but `model` is optional. */
export interface OpenAIChatClientOptions {
  /** Model name (`openai_model`). */
  model: string;
  /** API key (`openai_api_key`). Default: `OPENAI_API_KEY`; none needed for a custom base URL. */
  apiKey?: string | undefined;
  /** Endpoint (`openai_base_url`), e.g. `http://localhost:8000/v1`. Default: OpenAI's. */
  baseURL?: string | undefined;
  /** Proxy URL (`openai_proxy`): `http://`, `https://` or `socks5://`, user:password allowed. */
  proxy?: string | undefined;
  /** Most requests in flight at once (`max_workers`). Default 10. */
  maxWorkers?: number;
  /** Requests per minute; 0 or unset for no limit. */
  requestsPerMinute?: number | undefined;
  /** Tokens (prompt estimate + `maxTokens`) per minute; 0 or unset for no limit. */
  tokensPerMinute?: number | undefined;
  /** Per-request timeout in milliseconds, covering the whole exchange. Default 60 000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 5. */
  maxRetries?: number;
  /** First backoff delay in milliseconds (doubled each retry, with jitter). Default 1000. */
  retryBaseDelayMs?: number;
  /** Largest backoff delay in milliseconds. Default 60 000. */
  retryMaxDelayMs?: number;
  /** Longest `Retry-After` honoured, in milliseconds (longer ones are cut to it). Default 600 000. */
  maxRetryAfterMs?: number;
  /** Called before each retry (for logging); the reason is free of secrets. */
  onRetry?: (info: RetryInfo) => void;
  /** Random source for the jitter, in [0, 1). Default `Math.random`. */
  random?: () => number;
  /**
   * The clock and timer of the retry waits, the rate limits and the per-attempt timeout. Default
   * the real ones (`performance.now()`, `setTimeout`); tests pass a clock they move by hand.
   */
  timers?: Timers;
}

/** Counters of an {@linkcode OpenAIChatClient}. */
export interface ChatClientStats {
  /** HTTP requests sent (attempts, retries included). */
  requests: number;
  /** Retries made. */
  retries: number;
  /** Requests in flight now. */
  inFlight: number;
  /** Most requests ever in flight at once. */
  maxInFlight: number;
  /** Tokens used by successful requests. */
  usage: ChatUsage;
}

/**
 * Removes `secret` (and any bearer token) from `text`.
 *
 * @param text The text to clean.
 * @param secret The secret to remove; ignored when empty or shorter than 4 characters.
 * @returns The text with each occurrence replaced by `***`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { scrubSecret } from "./client.ts";
 * assert.equal(scrubSecret("key sk-abc123 here", "sk-abc123"), "key *** here");
 * ```
 */
export function scrubSecret(text: string, secret: string | undefined): string {
  let out = text.replace(/Bearer\s+[^\s"',]+/gi, "Bearer ***");
  if (secret && secret.length >= 4) out = out.split(secret).join("***");
  return out;
}

/**
 * Parses a `Retry-After` value (delay seconds or an HTTP date) or a `retry-after-ms` value.
 *
 * @param headers The response headers.
 * @param now The current time in epoch milliseconds.
 * @returns The delay in milliseconds, or `undefined` when there is no usable header.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRetryAfter } from "./client.ts";
 * assert.equal(parseRetryAfter(new Headers({ "retry-after": "2" })), 2000);
 * const at = Date.parse("Wed, 21 Oct 2015 07:28:10 GMT");
 * assert.equal(parseRetryAfter(new Headers({ "retry-after": "Wed, 21 Oct 2015 07:28:10 GMT" }), at - 3000), 3000);
 * ```
 */
export function parseRetryAfter(
  headers: Headers | undefined | null,
  now: number = Date.now(),
): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "" && Number.isFinite(Number(ms)) && Number(ms) >= 0) {
    return Number(ms);
  }
  const value = headers.get("retry-after");
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/**
 * Backoff delay before retry number `retry` (1-based): `base·2^(retry-1)`, capped at `max`, with
 * "equal jitter" (a uniform draw in the upper half), so that many workers do not retry in step.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { backoffDelay } from "./client.ts";
 * assert.equal(backoffDelay(3, 100, 10_000, () => 0), 200);
 * assert(backoffDelay(3, 100, 10_000, () => 0.999) < 400);
 * ```
 */
export function backoffDelay(
  retry: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const full = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return full / 2 + (full / 2) * random();
}

interface Failure {
  retryable: boolean;
  reason: string;
  status?: number | undefined;
  retryAfterMs?: number | undefined;
  /** Set when every request would fail this way (decided once the retries are used up). */
  fault?: EndpointFault | undefined;
  /** For a fault: the short reason its message gives in parentheses. */
  detail?: string | undefined;
  /** No answer in time. */
  timedOut?: boolean;
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error && e.cause.message ? ` (${e.cause.message})` : "";
    return `${e.message || e.name}${cause}`;
  }
  return String(e);
}

/**
 * Why a connection failed, in a few words: `connection refused`, `DNS lookup failed`,
 * `TLS handshake failed (...)`, or the innermost cause's message without fetch's
 * `error sending request for url (...)` preamble (which repeats the URL).
 */
function connectionDetail(e: unknown): string {
  let inner: unknown = e;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  const message = inner instanceof Error ? inner.message || inner.name : String(inner);
  const text = message.replace(/^error sending request\b.*?: client error \(\w+\): /s, "");
  if (/connection refused/i.test(text)) return "connection refused";
  if (/\bdns error\b|failed to lookup address|name or service not known|getaddrinfo/i.test(text)) {
    return "DNS lookup failed";
  }
  if (/certificate|\btls\b|\bssl\b|handshake|corrupt message/i.test(text)) {
    return `TLS handshake failed (${text})`;
  }
  return text;
}

/** The endpoint's own words from an HTTP error (its `error.message`), on one short line. */
function serverDetail(e: InstanceType<typeof OpenAI.APIError>): string {
  const body = e.error as { message?: unknown } | undefined;
  const text = typeof body?.message === "string"
    ? body.message
    : e.message.replace(/^\d{3}\s*/, "");
  const line = text.split("\n")[0]!.trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

const FAULT_OF_STATUS: Record<number, EndpointFault> = {
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
};

function classify(e: unknown): Failure {
  if (e instanceof OpenAI.APIConnectionTimeoutError) {
    const reason = "the request timed out";
    return { retryable: true, reason, detail: reason, timedOut: true };
  }
  if (e instanceof OpenAI.APIConnectionError) {
    // fetch rejected before any response: refused, DNS, TLS, closed before the answer.
    const detail = connectionDetail(e);
    return {
      retryable: true,
      reason: `connection failed: ${detail}`,
      fault: "unreachable",
      detail,
    };
  }
  if (e instanceof OpenAI.APIError && typeof e.status === "number") {
    const s = e.status;
    return {
      retryable: s === 408 || s === 409 || s === 429 || s >= 500,
      reason: `HTTP ${s}: ${e.message}`,
      status: s,
      retryAfterMs: parseRetryAfter(e.headers),
      fault: FAULT_OF_STATUS[s],
      detail: serverDetail(e),
    };
  }
  if (e instanceof SyntaxError) {
    return { retryable: true, reason: `the response body is not valid JSON: ${e.message}` };
  }
  if (e instanceof TypeError) {
    // fetch reports dropped connections and unreadable bodies as TypeError.
    return { retryable: true, reason: `connection failed: ${describe(e)}` };
  }
  return { retryable: false, reason: describe(e) };
}

function resolveApiKey(options: OpenAIChatClientOptions): string {
  const key = options.apiKey ?? readEnv("OPENAI_API_KEY");
  if (key) return key;
  if (options.baseURL) return "not-needed"; // vLLM, Ollama and friends take any key
  throw new ConfigError(
    "auto_interp.openai_api_key: no API key: set OPENAI_API_KEY or auto_interp.openai_api_key (or openai_base_url for a local endpoint)",
  );
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

function createProxyClient(url: string): Deno.HttpClient {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`auto_interp.openai_proxy: not a URL: ${scrubUserInfo(url)}`);
  }
  const transport = parsed.protocol === "https:"
    ? "https"
    : parsed.protocol === "http:"
    ? "http"
    : parsed.protocol === "socks5:" || parsed.protocol === "socks5h:"
    ? "socks5"
    : undefined;
  if (!transport) {
    throw new ConfigError(
      `auto_interp.openai_proxy: unsupported scheme ${parsed.protocol} (expected http, https or socks5)`,
    );
  }
  const username = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  parsed.username = "";
  parsed.password = "";
  return Deno.createHttpClient({
    proxy: {
      transport,
      url: parsed.href,
      ...(username ? { basicAuth: { username, password } } : {}),
    },
  });
}

function scrubUserInfo(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//***@");
}

const STATUS_TEXT: Record<EndpointFault, string> = {
  unreachable: "",
  unauthorized: "401 Unauthorized",
  forbidden: "403 Forbidden",
  not_found: "404 Not Found",
};

/** The one-line message of an {@linkcode LLMUnavailableError}. */
function faultMessage(
  fault: EndpointFault,
  where: { baseURL: string; model: string; proxy: string | undefined },
  detail: string,
  attempts: number,
): string {
  const at = `the LLM at ${where.baseURL}`;
  const status = STATUS_TEXT[fault];
  switch (fault) {
    case "unreachable":
      return `cannot reach ${at}${where.proxy ? ` through the proxy ${where.proxy}` : ""} ` +
        `(${detail}) after ${attempts} attempt${attempts === 1 ? "" : "s"}`;
    case "unauthorized":
      // Servers tend to echo (part of) the key in a 401's text: leave it out.
      return `${at} refused the API key (${status})`;
    case "forbidden":
      return `${at} denied access with this API key (${status}${detail ? `: ${detail}` : ""})`;
    case "not_found":
      return `${at} has no model "${where.model}" or no chat completions route ` +
        `(${status}${detail ? `: ${detail}` : ""})`;
  }
}

function estimateTokens(request: ChatRequest): number {
  let chars = 0;
  for (const m of request.messages) chars += m.content.length;
  return Math.ceil(chars / 4) + (request.maxTokens ?? DEFAULT_MAX_TOKENS);
}

const DEFAULT_MAX_TOKENS = 1000;

/**
 * A {@linkcode ChatClient} on `npm:openai` with concurrency, rate limits, retries and timeouts.
 *
 * The `openai` package's own retries are turned off (`maxRetries: 0`) and its logging is off, so
 * these are the only retries and nothing is printed by it. Retried: HTTP 408, 409, 429 and 5xx,
 * timeouts, failed and dropped connections and unparseable bodies; a `Retry-After` (seconds or
 * HTTP date) or `retry-after-ms` header sets the wait, otherwise exponential backoff with
 * jitter. The concurrency permit is released while waiting to retry.
 *
 * A request that finally fails rejects with {@linkcode ChatRequestError}, or with its subclass
 * {@linkcode LLMUnavailableError} when the endpoint itself is unusable: HTTP 401, 403 or 404
 * (not retried), or, after the retries, no HTTP answer at all (connection refused, DNS, TLS),
 * or timeouts while the endpoint has never answered a request of this client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OpenAIChatClient } from "./client.ts";
 * const client = new OpenAIChatClient({ model: "gpt-4o-mini", baseURL: "http://127.0.0.1:9/v1", maxWorkers: 4 });
 * assert.equal(client.model, "gpt-4o-mini");
 * assert.equal(client.baseURL, "http://127.0.0.1:9/v1");
 * assert.equal(client.stats.inFlight, 0);
 * client.close();
 * ```
 */
export class OpenAIChatClient implements ChatClient {
  /** The model requests go to. */
  readonly model: string;
  /** The endpoint requests go to (user and password removed), as error messages name it. */
  readonly baseURL: string;
  /** Whether the endpoint has answered any request (with any HTTP status or body). */
  #answered = false;
  #openai: OpenAI;
  #key: string;
  #httpClient: Deno.HttpClient | undefined;
  /** The proxy, for messages (user and password removed). */
  #proxy: string | undefined;
  #semaphore: Semaphore;
  #rpm: TokenBucket | undefined;
  #tpm: TokenBucket | undefined;
  #timeoutMs: number;
  #maxRetries: number;
  #baseDelay: number;
  #maxDelay: number;
  #maxRetryAfter: number;
  #onRetry: ((info: RetryInfo) => void) | undefined;
  #random: () => number;
  #timers: Timers;
  #stats: ChatClientStats = {
    requests: 0,
    retries: 0,
    inFlight: 0,
    maxInFlight: 0,
    usage: { prompt_tokens: 0, completion_tokens: 0 },
  };

  /** Creates the client; throws {@linkcode ConfigError} for a missing key or a bad proxy URL. */
  constructor(options: OpenAIChatClientOptions) {
    const maxWorkers = options.maxWorkers ?? 10;
    if (!Number.isInteger(maxWorkers) || maxWorkers < 1) {
      throw new ConfigError(`auto_interp.max_workers: expected an integer ≥ 1, got ${maxWorkers}`);
    }
    this.model = options.model;
    this.#key = resolveApiKey(options);
    this.#httpClient = options.proxy ? createProxyClient(options.proxy) : undefined;
    this.#proxy = options.proxy ? scrubUserInfo(options.proxy) : undefined;
    this.#openai = new OpenAI({
      apiKey: this.#key,
      baseURL: options.baseURL ?? null,
      maxRetries: 0,
      logLevel: "off",
      // Our own AbortSignal bounds each attempt; this one only backs it up.
      timeout: (options.timeoutMs ?? 60_000) + 5_000,
      ...(this.#httpClient ? { fetchOptions: { client: this.#httpClient } } : {}),
    });
    this.baseURL = scrubSecret(scrubUserInfo(this.#openai.baseURL), this.#key);
    this.#semaphore = new Semaphore(maxWorkers);
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#rpm = options.requestsPerMinute
      ? new TokenBucket(options.requestsPerMinute, this.#timers)
      : undefined;
    this.#tpm = options.tokensPerMinute
      ? new TokenBucket(options.tokensPerMinute, this.#timers)
      : undefined;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#maxRetries = options.maxRetries ?? 5;
    this.#baseDelay = options.retryBaseDelayMs ?? 1000;
    this.#maxDelay = options.retryMaxDelayMs ?? 60_000;
    this.#maxRetryAfter = options.maxRetryAfterMs ?? 600_000;
    this.#onRetry = options.onRetry;
    this.#random = options.random ?? Math.random;
  }

  /** Counters: requests, retries, in flight now and at most, tokens used. */
  get stats(): ChatClientStats {
    return { ...this.#stats, usage: { ...this.#stats.usage } };
  }

  /** Sends one chat completion request, with limits, retries and a timeout per attempt. */
  async complete(request: ChatRequest): Promise<ChatResponse> {
    const signal = request.signal;
    let last: Failure = { retryable: false, reason: "no attempt was made" };
    let attempts = 0;
    for (let attempt = 1; attempt <= this.#maxRetries + 1; attempt++) {
      signal?.throwIfAborted();
      attempts = attempt;
      try {
        const response = await this.#attempt(request);
        this.#answered = true;
        return response;
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (e instanceof AttemptTimeout) {
          const reason = `no answer within ${this.#timeoutMs} ms`;
          last = { retryable: true, reason, detail: reason, timedOut: true };
        } else {
          last = classify(e);
          if (!last.timedOut && last.fault !== "unreachable") this.#answered = true;
        }
        last.reason = scrubSecret(last.reason, this.#key);
        if (!last.retryable || attempt > this.#maxRetries) break;
        const fromRetryAfter = last.retryAfterMs !== undefined;
        const delayMs = fromRetryAfter
          ? Math.min(last.retryAfterMs!, this.#maxRetryAfter)
          : backoffDelay(attempt, this.#baseDelay, this.#maxDelay, this.#random);
        this.#stats.retries++;
        this.#onRetry?.({ attempt, reason: last.reason, delayMs, fromRetryAfter });
        await this.#timers.sleep(delayMs, signal);
      }
    }
    // Timeouts of an endpoint that has not answered a single request: as good as unreachable.
    if (last.timedOut && !this.#answered) last.fault = "unreachable";
    if (last.fault) {
      const detail = scrubSecret(last.detail ?? "", this.#key);
      const where = { baseURL: this.baseURL, model: this.model, proxy: this.#proxy };
      throw new LLMUnavailableError(
        scrubSecret(faultMessage(last.fault, where, detail, attempts), this.#key),
        {
          fault: last.fault,
          baseURL: this.baseURL,
          status: last.status,
          attempts,
          cause: new Error(last.reason),
        },
      );
    }
    throw new ChatRequestError(
      scrubSecret(`chat completion failed after ${attempts} attempt(s): ${last.reason}`, this.#key),
      { status: last.status, attempts },
    );
  }

  async #attempt(request: ChatRequest): Promise<ChatResponse> {
    const release = await this.#semaphore.acquire(request.signal);
    const estimate = estimateTokens(request);
    try {
      await this.#rpm?.take(1, request.signal);
      const charged = (await this.#tpm?.take(estimate, request.signal)) ?? 0;
      const timeout = new AbortController();
      const answered = new AbortController(); // ends the timeout's wait when the attempt ends
      this.#timers.sleep(this.#timeoutMs, answered.signal).then(
        () => timeout.abort(new AttemptTimeout()),
        () => {}, // the attempt ended first
      );
      const signals = request.signal ? [request.signal, timeout.signal] : [timeout.signal];
      this.#stats.requests++;
      this.#stats.inFlight++;
      this.#stats.maxInFlight = Math.max(this.#stats.maxInFlight, this.#stats.inFlight);
      try {
        const completion = await this.#openai.chat.completions.create({
          model: this.model,
          messages: request.messages,
          max_tokens: request.maxTokens ?? DEFAULT_MAX_TOKENS,
          ...(request.temperature !== undefined ? { temperature: request.temperature } : {}),
          ...(request.responseFormat === "json_object"
            ? { response_format: { type: "json_object" as const } }
            : {}),
          ...(request.logprobs !== undefined
            ? { logprobs: true, top_logprobs: request.logprobs }
            : {}),
        }, { signal: AbortSignal.any(signals), maxRetries: 0 });
        const choice = completion.choices?.[0];
        const usage = {
          prompt_tokens: completion.usage?.prompt_tokens ?? 0,
          completion_tokens: completion.usage?.completion_tokens ?? 0,
        };
        this.#stats.usage.prompt_tokens += usage.prompt_tokens;
        this.#stats.usage.completion_tokens += usage.completion_tokens;
        const used = usage.prompt_tokens + usage.completion_tokens;
        if (used > 0) this.#tpm?.adjust(charged - used);
        const response: ChatResponse = { content: choice?.message?.content ?? "", usage };
        const lp = choice?.logprobs?.content;
        if (request.logprobs !== undefined && Array.isArray(lp)) {
          response.logprobs = lp.map((t) => ({
            token: t.token,
            logprob: t.logprob,
            top: (t.top_logprobs ?? []).map((a) => ({ token: a.token, logprob: a.logprob })),
          }));
        }
        return response;
      } catch (e) {
        if (timeout.signal.aborted && !request.signal?.aborted) throw new AttemptTimeout();
        throw e;
      } finally {
        answered.abort();
        this.#stats.inFlight--;
      }
    } finally {
      release();
    }
  }

  /** Closes the proxy HTTP client, if any. */
  close(): void {
    this.#httpClient?.close();
    this.#httpClient = undefined;
  }

  /** Same as {@linkcode OpenAIChatClient.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

class AttemptTimeout extends Error {
  constructor() {
    super("the request timed out");
    this.name = "AttemptTimeout";
  }
}
