/**
 * The skeleton every runner follows: `source → stages → sink`, one WHATWG pipe chain with a
 * queue of one item per arrow, stopped by one signal.
 *
 * | runner       | source                         | stages                        | sink                       |
 * | ------------ | ------------------------------ | ----------------------------- | -------------------------- |
 * | `analyze`    | datasets → tokenize → encode   | analyzer, [DLA]               | `AnalysisRun.writer()`     |
 * | `merge`      | the merged shard states        | [DLA]                         | `AnalysisRun.writer()`     |
 * | `dla`        | `attributeSae()` per feature   | feature → record              | `storeWriter()`            |
 * | `autointerp` | `store.readFeatures()`         | the auto-interp stage         | (records written per event) |
 *
 * @module
 */

/** Options of {@linkcode runPipeline}. */
export interface RunPipelineOptions {
  /** Stops the whole chain: the source is cancelled and the sink aborted (or closed, below). */
  signal?: AbortSignal;
  /**
   * On an error or abort, close the sink instead of aborting it, so that what reached it is
   * still written (per-feature results that stand on their own: DLA logits). Default false:
   * the sink is aborted and drops what it buffered.
   */
  keepOnError?: boolean;
}

/**
 * Pipes `source` through `stages` into `sink` and resolves when the sink has closed; rejects
 * with the first error of any part (cancelling the source and aborting — or closing, with
 * `keepOnError` — the sink).
 *
 * @param source Where the items come from.
 * @param stages Transforms, in order.
 * @param sink Where the results go.
 * @param options The signal, and what the sink does on an error.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runPipeline } from "./_pipeline.ts";
 * const out: number[] = [];
 * await runPipeline(
 *   ReadableStream.from([1, 2, 3]),
 *   [new TransformStream<number, number>({ transform: (x, c) => c.enqueue(x * 10) })],
 *   new WritableStream<number>({ write: (x) => void out.push(x) }),
 * );
 * assert.deepEqual(out, [10, 20, 30]);
 * ```
 */
export async function runPipeline<T>(
  source: ReadableStream<unknown>,
  // deno-lint-ignore no-explicit-any
  stages: readonly TransformStream<any, any>[],
  sink: WritableStream<T>,
  options: RunPipelineOptions = {},
): Promise<void> {
  const { signal, keepOnError = false } = options;
  let stream = source;
  for (const stage of stages) stream = stream.pipeThrough(stage);
  const pipeOptions = { ...(signal ? { signal } : {}), preventAbort: keepOnError };
  try {
    await stream.pipeTo(sink, pipeOptions);
  } catch (error) {
    if (keepOnError && !sink.locked) await sink.close().catch(() => {});
    throw error;
  }
}
