/**
 * The one helper for stages that hold a resource (an ONNX session, an SAE encoder, a DLA
 * computer): open it when the stream starts, run each chunk against it, and release it exactly
 * once when the stream ends, however it ends.
 *
 * @module
 */

/** What a stage built with {@linkcode resourceStage} does at each step. */
export interface ResourceStageSteps<R extends AsyncDisposable, I, O> {
  /** Returns the resource when the stream starts: a given one, or one it opens. */
  open(): R | Promise<R>;
  /**
   * Whether the stage releases the resource (`Symbol.asyncDispose`) when it ends. A resource the
   * caller owns is never released here.
   */
  own: boolean;
  /** Runs once the resource is open, before the first chunk (e.g. checks); optional. */
  start?(resource: R): void | Promise<void>;
  /** Handles one input chunk. */
  transform(
    resource: R,
    chunk: I,
    controller: TransformStreamDefaultController<O>,
  ): void | Promise<void>;
  /** Runs after the last chunk, before the release; optional. */
  flush?(resource: R, controller: TransformStreamDefaultController<O>): void | Promise<void>;
}

/**
 * A `TransformStream` whose steps share one resource, released exactly once (when `own`) as soon
 * as the stream is done with it:
 *
 * - after `flush` (the input ended), also when `flush` throws;
 * - when the output is cancelled or the input aborted, once the step in flight (or the opening)
 *   has settled, so a resource is never released under a running step (what that step still
 *   enqueues or throws is dropped: the cancel is what the caller sees);
 * - when `open`'s resource fails `start`, or a `transform` throws (the error then reaches both
 *   sides: the reader gets it and the source is cancelled).
 *
 * A resource that `open` fails to return is not released (there is none). The stream keeps the
 * defaults of `TransformStream`: one chunk queued on the input side, none on the output side.
 *
 * @param steps How to open the resource, whether to release it, and the stream's steps.
 * @returns The stage.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resourceStage } from "./_resource_stage.ts";
 * let released = 0;
 * const scale = { factor: 10, async [Symbol.asyncDispose]() { released++; } };
 * const stage = resourceStage<typeof scale, number, number>({
 *   open: () => scale,
 *   own: true,
 *   transform: (s, n, controller) => controller.enqueue(n * s.factor),
 * });
 * const out = await Array.fromAsync(ReadableStream.from([1, 2]).pipeThrough(stage));
 * assert.deepEqual(out, [10, 20]);
 * assert.equal(released, 1);
 * ```
 */
export function resourceStage<R extends AsyncDisposable, I, O>(
  steps: ResourceStageSteps<R, I, O>,
): TransformStream<I, O> {
  let resource: R | undefined;
  let released = false;
  let cancelled = false;
  // The opening or the step in flight: a cancel waits for it before releasing.
  let busy: Promise<unknown> = Promise.resolve();

  const lease: AsyncDisposable = {
    async [Symbol.asyncDispose]() {
      if (released) return;
      released = true;
      if (steps.own && resource) await resource[Symbol.asyncDispose]();
    },
  };
  const releasingOnError = async (work: () => void | Promise<void>): Promise<void> => {
    try {
      await work();
    } catch (error) {
      await lease[Symbol.asyncDispose]();
      throw error;
    }
  };
  const track = (work: Promise<void>): Promise<void> => {
    busy = work;
    return work;
  };

  return new TransformStream<I, O>({
    start() {
      return track(releasingOnError(async () => {
        resource = await steps.open();
        await steps.start?.(resource);
      }));
    },
    async transform(chunk, controller) {
      try {
        await track(releasingOnError(() => steps.transform(resource!, chunk, controller)));
      } catch (error) {
        // A step that ends after a cancel cannot enqueue any more: the cancel is what counts.
        if (!cancelled) throw error;
      }
    },
    async flush(controller) {
      await using _ = lease;
      await steps.flush?.(resource!, controller);
    },
    async cancel() {
      cancelled = true;
      await busy.catch(() => {});
      await lease[Symbol.asyncDispose]();
    },
  });
}
