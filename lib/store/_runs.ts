/**
 * What both stores share for analysis runs (`beginAnalysisRun` and the rest): the rules that
 * turn the stored analysis document into the next one, and the messages of the errors they
 * throw. Each store applies them atomically its own way (SQLite: one `BEGIN IMMEDIATE`
 * transaction; MongoDB: an insert with a deterministic `_id` into the analysis' log), so both
 * decide alike.
 *
 * @module
 */

import { AnalysisBusyError } from "../errors.ts";
import { checkAnalysisName } from "./_common.ts";
import type {
  AnalysisDoc,
  AnalysisKey,
  AnalysisRunInfo,
  LeaseOptions,
  RunOutcome,
} from "./types.ts";

/** What `beginAnalysisRun` is given besides the lease. */
export type BeginDoc = Omit<AnalysisDoc, "status" | "finished_at" | "generation" | "run">;
/** What `publishAnalysisRun` is given besides the generation. */
export type PublishDoc = Omit<AnalysisDoc, "status" | "generation" | "run">;

/**
 * A generation as stored: 1–64 letters, digits, `_` or `-` (it becomes part of a MongoDB
 * collection name). `beginAnalysisRun` makes them with `crypto.randomUUID()`.
 */
const GENERATION = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Checks a generation given to `writeFeatures` or a run method; `""` (features written without
 * one) is allowed only when `allowEmpty`.
 *
 * @throws {RangeError} For anything else.
 */
export function checkGeneration(generation: string, allowEmpty = false): string {
  if (allowEmpty && generation === "") return generation;
  if (typeof generation !== "string" || !GENERATION.test(generation)) {
    throw new RangeError(
      `Invalid generation ${
        JSON.stringify(generation)
      }: expected 1-64 letters, digits, "_" or "-" (as beginAnalysisRun returns)`,
    );
  }
  return generation;
}

/** Checks an analysis key. */
export function checkKey(key: AnalysisKey): AnalysisKey {
  if (typeof key.sae_series !== "string" || typeof key.sae_name !== "string") {
    throw new TypeError("Invalid analysis key: sae_series and sae_name must be strings");
  }
  checkAnalysisName(key.name);
  return key;
}

/** The key of an analysis document. */
export function keyOf(doc: { sae_series: string; sae_name: string; name: string }): AnalysisKey {
  return { sae_series: doc.sae_series, sae_name: doc.sae_name, name: doc.name };
}

/** `analysis "default" of series/sae`, for messages. */
export function describeKey(key: AnalysisKey): string {
  return `analysis ${JSON.stringify(key.name)} of ${key.sae_series}/${key.sae_name}`;
}

/** The generation readers see for an analysis: its document's, else `""`. */
export function publishedGeneration(doc: AnalysisDoc | null | undefined): string {
  return doc?.generation ?? "";
}

/** Whether `run` holds its analysis at `now`: running and its lease not yet lapsed. */
export function isLive(run: AnalysisRunInfo | undefined, now: Date): run is AnalysisRunInfo {
  return run !== undefined && run.status === "running" &&
    Date.parse(run.expires_at) > now.getTime();
}

/** The error of a begin while another run holds the analysis. */
export function busyError(key: AnalysisKey, run: AnalysisRunInfo): AnalysisBusyError {
  return new AnalysisBusyError(
    `Cannot begin a run of ${describeKey(key)}: it is being written by ${run.owner} since ` +
      `${run.started_at} (generation ${run.generation}; its lease runs until ${run.expires_at} ` +
      `unless its heartbeat renews it)`,
  );
}

/** The error of a renew or publish by a run that no longer holds its analysis. */
export function lostError(
  key: AnalysisKey,
  generation: string,
  verb: string,
  current: AnalysisDoc | null,
): AnalysisBusyError {
  const run = current?.run;
  let now = "it was removed";
  if (current && run && run.generation !== generation) {
    now = `${run.owner} began generation ${run.generation} at ${run.started_at} (status ` +
      `${run.status}) after this run's lease lapsed`;
  } else if (current && run) {
    now = `this run already ended (${run.status})`;
  } else if (current) {
    now = current.generation === undefined
      ? "no run holds it"
      : `generation ${current.generation} is published and no run holds it`;
  }
  return new AnalysisBusyError(
    `Cannot ${verb} generation ${generation} of ${describeKey(key)}: the run no longer holds ` +
      `it (${now})`,
  );
}

/** A fresh run: status `running`, a new generation, a lease of `leaseMs` from now. */
export function newRun(lease: LeaseOptions, generation = newGeneration()): AnalysisRunInfo {
  if (typeof lease.owner !== "string" || lease.owner === "") {
    throw new TypeError("Cannot begin an analysis run: lease.owner must be a non-empty string");
  }
  checkLeaseMs(lease.leaseMs);
  const now = lease.now ?? new Date();
  return {
    generation,
    owner: lease.owner,
    started_at: now.toISOString(),
    heartbeat_at: now.toISOString(),
    expires_at: new Date(now.getTime() + lease.leaseMs).toISOString(),
    status: "running",
  };
}

/** A new generation (a UUID). */
export function newGeneration(): string {
  return crypto.randomUUID();
}

function checkLeaseMs(leaseMs: number): void {
  if (!Number.isFinite(leaseMs) || leaseMs <= 0) {
    throw new RangeError(`Invalid lease ${leaseMs} ms: expected a positive number`);
  }
}

/**
 * The document after a begin: the current one with `run` when something is published (readers
 * go on seeing it), else `doc` with status `running` and `run`.
 *
 * @throws {AnalysisBusyError} When another run's lease is live at `now`.
 */
export function beginDoc(
  current: AnalysisDoc | null,
  doc: BeginDoc,
  run: AnalysisRunInfo,
  now: Date,
): AnalysisDoc {
  const key = keyOf(doc);
  if (isLive(current?.run, now)) throw busyError(key, current.run);
  if (current?.generation !== undefined) return { ...current, run };
  const { error: _, ...rest } = doc as AnalysisDoc;
  return { ...rest, status: "running", finished_at: null, run };
}

/**
 * The document after a renew, or null when there is nothing to change (the run already
 * published).
 *
 * @throws {AnalysisBusyError} When the run no longer holds the analysis.
 */
export function renewDoc(
  current: AnalysisDoc | null,
  key: AnalysisKey,
  generation: string,
  leaseMs: number,
  now: Date,
): AnalysisDoc | null {
  checkLeaseMs(leaseMs);
  if (current?.generation === generation && current.run?.generation !== generation) return null;
  const run = current?.run;
  if (!current || !run || run.generation !== generation || run.status !== "running") {
    throw lostError(key, generation, "renew the lease of", current);
  }
  return {
    ...current,
    run: {
      ...run,
      heartbeat_at: now.toISOString(),
      expires_at: new Date(now.getTime() + leaseMs).toISOString(),
    },
  };
}

/**
 * The document after a publish: `doc` with status `complete` and `generation`, no `run`; or
 * null when that generation is already published.
 *
 * @throws {AnalysisBusyError} When the run no longer holds the analysis.
 */
export function publishDoc(
  current: AnalysisDoc | null,
  doc: PublishDoc,
  generation: string,
): AnalysisDoc | null {
  const key = keyOf(doc);
  if (current?.generation === generation && current.run?.generation !== generation) return null;
  const run = current?.run;
  if (!current || !run || run.generation !== generation || run.status !== "running") {
    throw lostError(key, generation, "publish", current);
  }
  const { run: _, error: __, ...rest } = doc as AnalysisDoc;
  return { ...rest, status: "complete", generation };
}

/**
 * The document after a run ends without publishing, or null when that run does not hold the
 * analysis (nothing to change). With a published generation only `run` changes; without one the
 * analysis takes the outcome's status (and error), finished now.
 */
export function endDoc(
  current: AnalysisDoc | null,
  generation: string,
  outcome: RunOutcome,
  now: Date,
): AnalysisDoc | null {
  if (outcome.status !== "failed" && outcome.status !== "interrupted") {
    throw new RangeError(
      `Invalid run outcome ${JSON.stringify(outcome.status)}: expected failed or interrupted`,
    );
  }
  const run = current?.run;
  if (!current || !run || run.generation !== generation || run.status !== "running") return null;
  const ended: AnalysisRunInfo = { ...run, status: outcome.status };
  if (outcome.error !== undefined) ended.error = outcome.error;
  if (current.generation !== undefined) return { ...current, run: ended };
  const { error: _, ...rest } = current;
  const doc: AnalysisDoc = {
    ...rest,
    status: outcome.status,
    finished_at: now.toISOString(),
    run: ended,
  };
  if (outcome.error !== undefined) doc.error = outcome.error;
  return doc;
}
