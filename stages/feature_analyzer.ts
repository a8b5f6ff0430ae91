/**
 * The feature analyzer stage: {@linkcode FeatureBatch}es in, one {@linkcode FeatureRecord} per
 * feature out when the input ends (see `lib/analysis/state.ts` for the semantics).
 *
 * The stage is a {@linkcode ReadableWritablePair} (use it with `pipeThrough`) rather than a
 * `TransformStream`, because a transformer's `flush` cannot wait for the reader: the `d_sae`
 * records would all be queued at once. Here each record is built only when the reader pulls it.
 *
 * Streams:
 * - input: a queue of one batch; a batch is folded into the state as soon as it is written.
 * - output: nothing until the input closes; then one record per pull, `0..d_sae-1` in order.
 * - cancelling the output errors the input side, so a `pipeThrough` cancels the source.
 * - an error of the source (input aborted) errors the output with the same reason; a malformed
 *   batch errors both sides with a `RangeError`.
 * - `limitTokens`: after the batch that brings the context tokens (`B×T` per batch) to the limit,
 *   the input side is closed to further writes the way `TransformStreamDefaultController.terminate`
 *   does it (errored, so that `pipeThrough` cancels the source) and the records are emitted.
 *
 * @module
 */

import { AnalyzerState } from "../lib/analysis/state.ts";
import type { FeatureAnalyzerOptions } from "../lib/analysis/options.ts";
import type { FeatureBatch, FeatureRecord } from "../lib/types.ts";

/** Options of {@linkcode featureAnalyzer}: the analyzer options, plus a state to resume from. */
export interface FeatureAnalyzerStageOptions extends FeatureAnalyzerOptions {
  /**
   * Continue from this state (e.g. restored with `AnalyzerState.fromJSON` after a crash) instead
   * of a new one; the other analyzer options are then taken from the state, except `limitTokens`,
   * which counts the state's tokens too.
   */
  initialState?: AnalyzerState;
}

/**
 * The stream pair returned by {@linkcode featureAnalyzer}, with running counts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { featureAnalyzer } from "./feature_analyzer.ts";
 * const batch = {
 *   batchSize: 1, contextSize: 2, dSae: 3,
 *   tokens: new Int32Array([7, 8]), mask: new Uint8Array([1, 1]),
 *   attention: new Uint8Array([1, 1]), origins: [{ source: "d", shard: 0, row: 0 }],
 *   position: new Int32Array([1]), feature: new Int32Array([2]), value: new Float32Array([1.5]),
 * };
 * const records = await Array.fromAsync(ReadableStream.from([batch]).pipeThrough(featureAnalyzer()));
 * assert.equal(records.length, 3);
 * assert.equal(records[2]!.analyses.default!.max_activation, 1.5);
 * ```
 */
export class FeatureAnalyzerStream {
  /** Where the batches go. */
  readonly writable: WritableStream<FeatureBatch>;
  /** Where the records come from, after the input ends. */
  readonly readable: ReadableStream<FeatureRecord>;
  /** The state being filled (save it with `toJSON()` to resume or merge later). */
  readonly state: AnalyzerState;
  #emitted = 0;
  #limitReached = false;

  /**
   * Creates the pair; prefer {@linkcode featureAnalyzer}.
   *
   * @param options The analyzer options.
   */
  constructor(options: FeatureAnalyzerStageOptions = {}) {
    const { initialState, ...rest } = options;
    const state = initialState ?? new AnalyzerState(rest);
    this.state = state;
    const limit = options.limitTokens ?? state.options.limitTokens;
    let readableController!: ReadableStreamDefaultController<FeatureRecord>;
    let writableController!: WritableStreamDefaultController;
    let inputDone!: () => void;
    const ended = new Promise<void>((resolve) => inputDone = resolve);
    let failed = false;
    let records: Generator<FeatureRecord> | undefined;
    const fail = (reason: unknown) => {
      failed = true;
      readableController.error(reason);
      inputDone();
    };

    this.writable = new WritableStream<FeatureBatch>({
      start: (controller) => {
        writableController = controller;
      },
      write: (batch) => {
        try {
          state.add(batch);
        } catch (error) {
          fail(error);
          throw error;
        }
        if (limit !== null && limit !== undefined && state.nTokens >= limit) {
          this.#limitReached = true;
          inputDone();
          writableController.error(
            new Error(
              `featureAnalyzer: input closed after ${state.nTokens} tokens (limit ${limit})`,
            ),
          );
        }
      },
      close: () => inputDone(),
      abort: (reason) => fail(reason),
    }, new CountQueuingStrategy({ highWaterMark: 1 }));

    this.readable = new ReadableStream<FeatureRecord>({
      start: (controller) => {
        readableController = controller;
      },
      pull: async (controller) => {
        await ended;
        if (failed) return;
        records ??= state.records();
        const next = records.next();
        if (next.done) controller.close();
        else {
          this.#emitted++;
          controller.enqueue(next.value);
        }
      },
      cancel: (reason) => {
        failed = true;
        writableController.error(reason);
        inputDone();
      },
    }, new CountQueuingStrategy({ highWaterMark: 0 }));
  }

  /** Context tokens analyzed so far (`B×T` per batch), the count `limitTokens` compares. */
  get nTokens(): number {
    return this.state.nTokens;
  }

  /** Analyzed (mask = 1) tokens so far. */
  get nAnalyzedTokens(): number {
    return this.state.nAnalyzedTokens;
  }

  /** Batches added so far. */
  get nBatches(): number {
    return this.state.nBatches;
  }

  /** Records handed to the reader so far. */
  get recordsEmitted(): number {
    return this.#emitted;
  }

  /** Whether the input was closed by `limitTokens`. */
  get limitReached(): boolean {
    return this.#limitReached;
  }
}

/**
 * The feature analyzer stage.
 *
 * @param options Analyzer options (all optional; see `FeatureAnalyzerOptions`).
 * @returns A readable/writable pair for `pipeThrough`.
 * @throws {ConfigError} An option is out of range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { featureAnalyzer } from "./feature_analyzer.ts";
 * const stage = featureAnalyzer({ nTop: 5, seed: 1 });
 * await ReadableStream.from([]).pipeTo(stage.writable);
 * assert.equal((await Array.fromAsync(stage.readable)).length, 0); // d_sae unknown: no batch
 * ```
 */
export function featureAnalyzer(options: FeatureAnalyzerStageOptions = {}): FeatureAnalyzerStream {
  return new FeatureAnalyzerStream(options);
}
