/**
 * The lifecycle of a run that writes an analysis (`analyze`, `merge`): nothing half-written is
 * ever visible.
 *
 * ```
 * begin (lease) ─▶ write features under the run's generation ─▶ publish (one write) ─▶ clean up
 *      │                 heartbeat renews the lease                     │
 *      └──────── error / signal ─▶ end: failed | interrupted, the run's writes removed
 * ```
 *
 * - {@linkcode AnalysisRun.begin} takes the analysis' lease in the store (`beginAnalysisRun`): a
 *   second run on the same analysis name fails at once with `AnalysisBusyError` naming the
 *   holder, unless the holder's lease lapsed (a killed run stops renewing it): then what the
 *   dead run wrote is removed and the new run begins.
 * - While the run lasts, a heartbeat renews the lease every quarter of its length.
 * - Features go to the store under the run's generation ({@linkcode AnalysisRun.writer}); readers
 *   keep seeing the previous published result until {@linkcode AnalysisRun.publish} switches the
 *   analysis document to the new generation in one write.
 * - {@linkcode AnalysisRun.end} (or disposal without publishing) marks the run failed or
 *   interrupted and removes what it wrote. A failure to end never hides the error that ended it.
 *
 * @module
 */

import { AnalysisBusyError } from "../lib/errors.ts";
import type {
  AnalysisDoc,
  AnalysisKey,
  AnalysisRunInfo,
  FeatureStore,
  RunOutcome,
} from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { storeWriter, type StoreWriterOptions } from "../stages/store_writer.ts";

/** Default lease: a run that stops renewing for this long is taken to be dead. */
export const DEFAULT_LEASE_MS = 60_000;

/**
 * The lease length a run asks for: `SAEFLOW_LEASE_SECONDS` when set (a positive number), else
 * {@linkcode DEFAULT_LEASE_MS}.
 *
 * @param env Reads an environment variable (default `Deno.env.get`).
 * @returns Milliseconds.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { leaseMsFromEnv } from "./analysis_run.ts";
 * assert.equal(leaseMsFromEnv(() => "2.5"), 2500);
 * assert.equal(leaseMsFromEnv(() => undefined), 60000);
 * ```
 */
export function leaseMsFromEnv(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): number {
  const text = env("SAEFLOW_LEASE_SECONDS");
  const seconds = text === undefined ? NaN : Number(text);
  return Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : DEFAULT_LEASE_MS;
}

/**
 * Who this process is, for the lease: `host <hostname> pid <pid>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runOwner } from "./analysis_run.ts";
 * assert(runOwner().endsWith(` pid ${Deno.pid}`));
 * ```
 */
export function runOwner(): string {
  return `host ${hostname()} pid ${Deno.pid}`;
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
}

/** Options of {@linkcode AnalysisRun.begin}. */
export interface AnalysisRunOptions {
  /** Lease length, ms. Default {@linkcode leaseMsFromEnv}. */
  leaseMs?: number;
  /** Who runs it. Default {@linkcode runOwner}. */
  owner?: string;
}

/** The analysis document fields a run publishes (status, generation and run are set for it). */
export type PublishedFields = Omit<AnalysisDoc, "status" | "generation" | "run">;

/**
 * One run writing one analysis: its lease, heartbeat, generation, and how it ends. Use with
 * `await using`: disposal without {@linkcode publish} or {@linkcode end} ends it as failed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStore } from "../lib/store/mod.ts";
 * import { AnalysisRun } from "./analysis_run.ts";
 * await using store = await openStore({ outputDir: await Deno.makeTempDir() });
 * const doc = { sae_series: "x", sae_name: "s", name: "default", settings: {}, n_analyzed_tokens: 0,
 *   started_at: new Date().toISOString(), timings: {} };
 * {
 *   await using run = await AnalysisRun.begin(store, doc);
 *   const writer = run.writer().getWriter();
 *   await writer.write({ sae_series: "x", sae_name: "s", index: 0, analyses: { default: {
 *     act_times: 0, n_analyzed_tokens: 0, max_activation: 0, mean: 0, std: 0,
 *     histogram: { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array(0) },
 *     quantiles: [], samplings: [] } } });
 *   await writer.close();
 *   assert.equal(await store.getFeature("x", "s", 0), null); // not published yet
 *   await run.publish({ ...doc, finished_at: new Date().toISOString() });
 * }
 * assert.equal((await store.getFeature("x", "s", 0))?.index, 0);
 * ```
 */
export class AnalysisRun implements AsyncDisposable {
  readonly #store: FeatureStore;
  readonly #key: AnalysisKey;
  readonly #leaseMs: number;
  readonly #info: AnalysisRunInfo;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #renewing: Promise<void> = Promise.resolve();
  #lost: Error | undefined;
  #done = false;

  private constructor(
    store: FeatureStore,
    key: AnalysisKey,
    info: AnalysisRunInfo,
    leaseMs: number,
  ) {
    this.#store = store;
    this.#key = key;
    this.#info = info;
    this.#leaseMs = leaseMs;
    this.#heartbeat = setInterval(() => this.#renew(), Math.max(1, Math.floor(leaseMs / 4)));
    // The heartbeat alone must not keep a process alive.
    Deno.unrefTimer(this.#heartbeat);
  }

  /**
   * Takes the analysis' lease and starts the heartbeat.
   *
   * @param store The store.
   * @param doc The analysis document as far as known at the start (stored when nothing is
   *   published yet; a published analysis keeps its document until this run publishes).
   * @param options Lease length and owner.
   * @returns The run.
   * @throws {AnalysisBusyError} When a live run holds the analysis.
   */
  static async begin(
    store: FeatureStore,
    doc: Omit<AnalysisDoc, "status" | "finished_at" | "generation" | "run">,
    options: AnalysisRunOptions = {},
  ): Promise<AnalysisRun> {
    const leaseMs = options.leaseMs ?? leaseMsFromEnv();
    const owner = options.owner ?? runOwner();
    const info = await store.beginAnalysisRun(doc, { owner, leaseMs });
    const key = { sae_series: doc.sae_series, sae_name: doc.sae_name, name: doc.name };
    return new AnalysisRun(store, key, info, leaseMs);
  }

  /** The generation this run writes under. */
  get generation(): string {
    return this.#info.generation;
  }

  /** The run as stored when it began. */
  get info(): AnalysisRunInfo {
    return this.#info;
  }

  /**
   * The store writer for this run's features (under its generation). Fails a write once the
   * lease is lost.
   *
   * @param options Batch size and a callback per stored batch.
   */
  writer(options: Omit<StoreWriterOptions, "generation"> = {}): WritableStream<FeatureRecord> {
    return storeWriter(this.#store, {
      ...options,
      generation: this.generation,
      beforeWrite: () => {
        if (this.#lost) throw this.#lost;
      },
    });
  }

  /**
   * Publishes the run: the analysis document becomes `doc` with status `complete` and this
   * run's generation, in one write; earlier generations are then removed.
   *
   * @param doc The final analysis document.
   * @throws {AnalysisBusyError} When the lease was lost to another run.
   */
  async publish(doc: PublishedFields): Promise<void> {
    this.#stopHeartbeat();
    await this.#renewing;
    if (this.#lost) throw this.#lost;
    this.#done = true;
    await this.#store.publishAnalysisRun(doc, this.generation);
  }

  /**
   * Ends the run without publishing: marks it `failed` or `interrupted` and removes what it
   * wrote; the previously published result (if any) stays as it was. Never throws: a store that
   * cannot record the end is reported through `onError` (the caller's own error matters more).
   *
   * @param outcome How it ended.
   * @param onError Told when the end could not be stored.
   */
  async end(outcome: RunOutcome, onError?: (error: unknown) => void): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    this.#stopHeartbeat();
    await this.#renewing;
    try {
      await this.#store.endAnalysisRun(this.#key, this.generation, outcome);
    } catch (error) {
      onError?.(error);
    }
  }

  /** Ends the run as failed unless it was published or ended. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.end({ status: "failed", error: "the run stopped before publishing" });
  }

  #renew() {
    this.#renewing = this.#renewing.then(async () => {
      if (this.#done || this.#lost) return;
      try {
        await this.#store.renewAnalysisRun(this.#key, this.generation, { leaseMs: this.#leaseMs });
      } catch (error) {
        if (error instanceof AnalysisBusyError) {
          this.#lost = error;
          this.#stopHeartbeat();
        }
        // Other errors (a store briefly unreachable): the next beat tries again; the writes
        // themselves report a store that is gone.
      }
    });
  }

  #stopHeartbeat() {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}

/**
 * Runs `fn` with an `AbortSignal` that SIGINT and SIGTERM abort (with the signal's name as the
 * reason), removing the listeners afterwards. A second signal before `fn` settles exits the
 * process at once (130 / 143).
 *
 * @param fn The work; it should stop soon after the signal aborts.
 * @returns What `fn` returns.
 * @example
 * ```ts ignore
 * import { withSignals } from "./analysis_run.ts";
 * await withSignals(async (signal) => { while (!signal.aborted) await work(); });
 * ```
 */
export async function withSignals<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const listeners = (["SIGINT", "SIGTERM"] as const).map((name) => {
    const listener = () => {
      // A second signal while the run is still ending: stop at once (nothing more is written;
      // the lease lapses and the next run removes what this one wrote).
      if (abort.signal.aborted) Deno.exit(name === "SIGINT" ? 130 : 143);
      abort.abort(name);
    };
    Deno.addSignalListener(name, listener);
    return [name, listener] as const;
  });
  try {
    return await fn(abort.signal);
  } finally {
    for (const [name, listener] of listeners) Deno.removeSignalListener(name, listener);
  }
}

/**
 * The signal that aborted `signal`, when it was SIGINT or SIGTERM.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signalName } from "./analysis_run.ts";
 * const a = new AbortController();
 * a.abort("SIGTERM");
 * assert.equal(signalName(a.signal), "SIGTERM");
 * ```
 */
export function signalName(signal: AbortSignal | undefined): "SIGINT" | "SIGTERM" | undefined {
  const reason = signal?.aborted ? signal.reason : undefined;
  return reason === "SIGINT" || reason === "SIGTERM" ? reason : undefined;
}
