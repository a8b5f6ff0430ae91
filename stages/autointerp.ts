/**
 * The auto-interpretation stage: feature records in, the same records with `interpretation` set
 * out.
 *
 * @module
 */

import { type ChatClient, type ChatUsage, OpenAIChatClient } from "../lib/autointerp/client.ts";
import { interpretFeature, isDeadFeature, isInterpreted } from "../lib/autointerp/interpret.ts";
import {
  type AutoInterpOptions,
  resolveAutoInterpOptions,
  type ResolvedAutoInterpOptions,
} from "../lib/autointerp/options.ts";
import type { FeatureRecord, Interpretation } from "../lib/types.ts";

/** What happened to one feature. */
export interface AutoInterpEvent {
  /** The feature index. */
  index: number;
  /**
   * `done` (interpreted; see `interpretation.passed`), `failed` (interpretation has `error`),
   * `skipped_dead` (never fired), `skipped_existing` (already interpreted, no overwrite).
   */
  status: "done" | "failed" | "skipped_dead" | "skipped_existing";
  /** The new interpretation (`done` and `failed`). */
  interpretation?: Interpretation;
}

/** Options of {@linkcode autointerpStage}: the `[auto_interp]` options plus what the stage needs. */
export interface AutoInterpStageOptions extends AutoInterpOptions {
  /** Token id → display string for the features' model (the store keeps it per model). */
  vocab: readonly string[];
  /**
   * The chat client. Default: an `OpenAIChatClient` built from the `openai_*`, `max_workers`,
   * rate-limit, timeout and retry options, closed when the stream ends.
   */
  client?: ChatClient;
  /** Aborting stops the stage: requests in flight are cancelled and the stream errors. */
  signal?: AbortSignal;
  /** Called once per feature, in completion order (progress, summaries). */
  onFeature?: (event: AutoInterpEvent) => void;
  /**
   * Receives one line per retry and per failed feature (never containing the API key). Default
   * `console.error`; pass `() => {}` to silence.
   */
  log?: (line: string) => void;
}

/** Running totals of an auto-interpretation run. */
export interface AutoInterpSummary {
  /** Features interpreted (passed or not). */
  done: number;
  /** Of those, features that passed. */
  passed: number;
  /** Features that failed (error recorded). */
  failed: number;
  /** Dead features skipped. */
  skipped_dead: number;
  /** Already-interpreted features skipped. */
  skipped_existing: number;
  /** Tokens used. */
  usage: ChatUsage;
}

/**
 * Running totals fed by {@linkcode AutoInterpStageOptions.onFeature}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AutoInterpTally } from "./autointerp.ts";
 * const tally = new AutoInterpTally();
 * tally.add({ index: 3, status: "skipped_dead" });
 * assert.equal(tally.summary.skipped_dead, 1);
 * assert(tally.line().startsWith("auto-interp: 0 done"));
 * ```
 */
export class AutoInterpTally {
  /** The totals so far. */
  readonly summary: AutoInterpSummary = {
    done: 0,
    passed: 0,
    failed: 0,
    skipped_dead: 0,
    skipped_existing: 0,
    usage: { prompt_tokens: 0, completion_tokens: 0 },
  };

  /** Counts one event; usable directly as `onFeature: (e) => tally.add(e)`. */
  add(event: AutoInterpEvent): void {
    const s = this.summary;
    s[event.status === "done" ? "done" : event.status]++;
    if (event.status === "done" && event.interpretation?.passed) s.passed++;
    const u = event.interpretation?.usage;
    if (u) {
      s.usage.prompt_tokens += u.prompt_tokens;
      s.usage.completion_tokens += u.completion_tokens;
    }
  }

  /** One summary line: done, passed, failed, skipped, tokens. */
  line(): string {
    const s = this.summary;
    return `auto-interp: ${s.done} done (${s.passed} passed), ${s.failed} failed, ` +
      `${s.skipped_dead} dead and ${s.skipped_existing} already interpreted skipped, ` +
      `${s.usage.prompt_tokens + s.usage.completion_tokens} tokens ` +
      `(${s.usage.prompt_tokens} prompt, ${s.usage.completion_tokens} completion)`;
  }
}

function defaultClient(o: ResolvedAutoInterpOptions, log: (line: string) => void): ChatClient {
  return new OpenAIChatClient({
    model: o.openai_model,
    apiKey: o.openai_api_key,
    baseURL: o.openai_base_url,
    proxy: o.openai_proxy,
    maxWorkers: o.max_workers,
    requestsPerMinute: o.requests_per_minute,
    tokensPerMinute: o.tokens_per_minute,
    timeoutMs: o.request_timeout * 1000,
    maxRetries: o.max_retries,
    retryBaseDelayMs: o.retry_base_delay * 1000,
    retryMaxDelayMs: o.retry_max_delay * 1000,
    onRetry: (r) =>
      log(
        `auto-interp: attempt ${r.attempt} failed (${r.reason}); retrying in ${
          Math.round(r.delayMs)
        } ms${r.fromRetryAfter ? " (Retry-After)" : ""}`,
      ),
  });
}

/**
 * The auto-interpretation stage: a `TransformStream<FeatureRecord, FeatureRecord>` that sets
 * `interpretation` on each feature (see `interpretFeature`).
 *
 * - Up to `max_workers` features are interpreted at once; the stage stops pulling input while
 *   that many are in flight, so memory is bounded by `max_workers` records plus the queues.
 *   Records are emitted in **completion order**, not input order.
 * - Dead features, and features already interpreted without error (unless
 *   `overwrite_existing`), pass through unchanged, without any request. A feature whose
 *   interpretation failed is interpreted again.
 * - A feature that fails (requests exhausted, unusable answers) is emitted with
 *   `interpretation.error` and `passed: false`; the run goes on.
 * - An endpoint that no feature can use — unreachable after a request's retries, an API key
 *   refused (401, 403), no such model or route (404) — errors the stream with the client's
 *   `LLMUnavailableError` as soon as the first feature meets it: requests in flight are
 *   cancelled, no more input is pulled, and that feature is not emitted.
 * - Cancelling the output, aborting the input, or aborting `signal` cancels requests in flight;
 *   features in flight are then not emitted (a later run does them).
 *
 * @param options Auto-interp options, the vocabulary, and optionally a client.
 * @returns The stage.
 * @throws {ConfigError} For a bad option or a missing API key.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { autointerpStage } from "./autointerp.ts";
 * const dead = { sae_name: "s", sae_series: "x", index: 0, analyses: {} };
 * const stage = autointerpStage({
 *   vocab: [],
 *   client: { model: "none", complete: () => Promise.reject(new Error("unused")) },
 * });
 * const out = await Array.fromAsync(ReadableStream.from([dead]).pipeThrough(stage));
 * assert.equal(out.length, 1);
 * assert.equal(out[0]!.interpretation, undefined);
 * ```
 */
export function autointerpStage(
  options: AutoInterpStageOptions,
): TransformStream<FeatureRecord, FeatureRecord> {
  const resolved = resolveAutoInterpOptions(options);
  const log = options.log ?? ((line: string) => console.error(line));
  const ownClient = options.client === undefined;
  const client = options.client ?? defaultClient(resolved, log);
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const inflight = new Set<Promise<void>>();
  const emit = (event: AutoInterpEvent) => options.onFeature?.(event);
  let failure: { reason: unknown } | undefined;
  const rethrow = () => {
    if (failure) throw failure.reason;
  };
  let closed = false;
  const release = () => {
    if (closed) return;
    closed = true;
    if (ownClient) client.close?.();
  };

  return new TransformStream<FeatureRecord, FeatureRecord>({
    async transform(record, controller) {
      rethrow();
      signal.throwIfAborted();
      if (isDeadFeature(record, resolved.analysis_name)) {
        controller.enqueue(record);
        emit({ index: record.index, status: "skipped_dead" });
        return;
      }
      if (!resolved.overwrite_existing && isInterpreted(record)) {
        controller.enqueue(record);
        emit({ index: record.index, status: "skipped_existing" });
        return;
      }
      const task: Promise<void> = interpretFeature(record, {
        client,
        options: resolved,
        vocab: options.vocab,
        signal,
      }).then((interpretation) => {
        controller.enqueue({ ...record, interpretation });
        if (interpretation.error !== undefined) {
          log(`auto-interp: feature ${record.index} failed: ${interpretation.error}`);
        }
        emit({
          index: record.index,
          status: interpretation.error === undefined ? "done" : "failed",
          interpretation,
        });
      }).catch((reason) => {
        failure ??= { reason };
        stop.abort(reason);
        release();
        try {
          controller.error(reason);
        } catch {
          // already errored or closed
        }
      }).finally(() => inflight.delete(task));
      inflight.add(task);
      while (inflight.size >= resolved.max_workers) await Promise.race(inflight);
      rethrow();
    },
    async flush() {
      await Promise.all(inflight);
      release();
      rethrow();
    },
    cancel(reason) {
      stop.abort(reason);
      release();
    },
  });
}
