import assert from "node:assert/strict";
import { assertRejects, eventually } from "../lib/_testing.ts";
import { resourceStage, type ResourceStageSteps } from "./_resource_stage.ts";

/** A resource that counts how often it was released. */
class Counted implements AsyncDisposable {
  releases = 0;
  async [Symbol.asyncDispose]() {
    await Promise.resolve();
    this.releases++;
  }
}

/** A source of 1, 2, 3, … that counts pulls and can fail at a given pull. */
function source(n: number, opts: { failAt?: number } = {}) {
  const state = { pulls: 0, cancelled: false as unknown };
  const stream = new ReadableStream<number>({
    pull(controller) {
      const i = state.pulls++;
      if (i === opts.failAt) controller.error(new Error("source broke"));
      else if (i >= n) controller.close();
      else controller.enqueue(i + 1);
    },
    cancel(reason) {
      state.cancelled = reason ?? true;
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

/** A stage that doubles numbers against `resource` (and fails on `failOn`). */
function doubler(
  resource: Counted,
  own: boolean,
  more: Partial<ResourceStageSteps<Counted, number, number>> & { failOn?: number } = {},
) {
  return resourceStage<Counted, number, number>({
    open: () => resource,
    own,
    transform(r, n, controller) {
      assert.equal(r, resource);
      if (n === more.failOn) throw new RangeError(`cannot double ${n}`);
      controller.enqueue(2 * n);
    },
    ...more,
  });
}

Deno.test("resourceStage() releases an owned resource once, after the last chunk", async (t) => {
  await t.step("when the input ends", async () => {
    const resource = new Counted();
    let flushedBeforeRelease: boolean | undefined;
    const out = await Array.fromAsync(
      source(3).stream.pipeThrough(doubler(resource, true, {
        flush(r, controller) {
          flushedBeforeRelease = r.releases === 0;
          controller.enqueue(0);
        },
      })),
    );
    assert.deepEqual(out, [2, 4, 6, 0]);
    assert.equal(flushedBeforeRelease, true);
    assert.equal(resource.releases, 1);
  });
  await t.step("when flush throws", async () => {
    const resource = new Counted();
    await assertRejects(
      () =>
        Array.fromAsync(
          source(1).stream.pipeThrough(doubler(resource, true, {
            flush() {
              throw new Error("flush broke");
            },
          })),
        ),
      Error,
      "flush broke",
    );
    assert.equal(resource.releases, 1);
  });
  await t.step("an input that never started still gets it opened and released", async () => {
    let opened = 0;
    const resource = new Counted();
    const stage = resourceStage<Counted, number, number>({
      open: () => (opened++, resource),
      own: true,
      transform: () => {},
    });
    assert.deepEqual(await Array.fromAsync(ReadableStream.from<number>([]).pipeThrough(stage)), []);
    assert.equal(opened, 1);
    assert.equal(resource.releases, 1);
  });
});

Deno.test("resourceStage() never releases a resource it does not own", async (t) => {
  await t.step("at the end of the input", async () => {
    const resource = new Counted();
    await Array.fromAsync(source(2).stream.pipeThrough(doubler(resource, false)));
    assert.equal(resource.releases, 0);
  });
  await t.step("on cancel", async () => {
    const resource = new Counted();
    const reader = source(5).stream.pipeThrough(doubler(resource, false)).getReader();
    await reader.read();
    await reader.cancel("enough");
    assert.equal(resource.releases, 0);
  });
  await t.step("on an error", async () => {
    const resource = new Counted();
    await assertRejects(
      () => Array.fromAsync(source(3).stream.pipeThrough(doubler(resource, false, { failOn: 2 }))),
      RangeError,
      "cannot double 2",
    );
    assert.equal(resource.releases, 0);
  });
});

Deno.test("resourceStage() cancel reaches the source and releases the resource", async (t) => {
  await t.step("cancelling the output", async () => {
    const resource = new Counted();
    const { stream, state } = source(100);
    const reader = stream.pipeThrough(doubler(resource, true)).getReader();
    assert.deepEqual(await reader.read(), { done: false, value: 2 });
    await reader.cancel("enough");
    assert.equal(resource.releases, 1);
    await eventually(() => state.cancelled === "enough", "the cancel reached the source");
    assert(state.pulls < 100, `pulled ${state.pulls} of 100`);
  });
  await t.step("aborting the input", async () => {
    const resource = new Counted();
    const stage = doubler(resource, true);
    const writer = stage.writable.getWriter();
    await writer.abort(new Error("stop"));
    await eventually(() => resource.releases === 1, "the resource was released");
    await assertRejects(() => stage.readable.getReader().read(), Error, "stop");
  });
  await t.step("a cancel during a step releases only once the step has ended", async () => {
    const resource = new Counted();
    const { promise: gate, resolve: open } = Promise.withResolvers<void>();
    let entered = false;
    let releasesSeenByStep: number | undefined;
    const stage = resourceStage<Counted, number, number>({
      open: () => resource,
      own: true,
      async transform(r, n, controller) {
        entered = true;
        await gate;
        releasesSeenByStep = r.releases;
        controller.enqueue(n);
      },
    });
    const reader = source(5).stream.pipeThrough(stage).getReader();
    const read = reader.read().catch(() => {});
    await eventually(() => entered, "the step started");
    const cancelled = reader.cancel("enough");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(resource.releases, 0, "released under a running step");
    open();
    await cancelled;
    await read;
    assert.equal(releasesSeenByStep, 0);
    assert.equal(resource.releases, 1);
  });
  await t.step("a cancel while the resource is opening releases it once it is open", async () => {
    const resource = new Counted();
    const { promise: gate, resolve: open } = Promise.withResolvers<void>();
    const stage = resourceStage<Counted, number, number>({
      open: async () => (await gate, resource),
      own: true,
      transform: () => {},
    });
    const cancelled = stage.readable.cancel("never mind");
    await new Promise((r) => setTimeout(r, 20));
    open();
    await cancelled;
    assert.equal(resource.releases, 1);
  });
});

Deno.test("resourceStage() errors travel both ways and release the resource", async (t) => {
  await t.step("a source error reaches the reader", async () => {
    const resource = new Counted();
    const { stream } = source(5, { failAt: 2 });
    await assertRejects(
      () => Array.fromAsync(stream.pipeThrough(doubler(resource, true))),
      Error,
      "source broke",
    );
    await eventually(() => resource.releases === 1, "the resource was released");
  });
  await t.step("a failing step errors the reader and cancels the source", async () => {
    const resource = new Counted();
    const { stream, state } = source(5);
    const out: number[] = [];
    await assertRejects(
      async () => {
        for await (const n of stream.pipeThrough(doubler(resource, true, { failOn: 3 }))) {
          out.push(n);
        }
      },
      RangeError,
      "cannot double 3",
    );
    assert.deepEqual(out, [2, 4]);
    assert.equal(resource.releases, 1);
    await eventually(() => state.cancelled !== false, "the source was cancelled");
  });
  await t.step("a failing start check errors the stream", async () => {
    const resource = new Counted();
    const { stream } = source(5);
    await assertRejects(
      () =>
        Array.fromAsync(stream.pipeThrough(doubler(resource, true, {
          start() {
            throw new TypeError("does not fit");
          },
        }))),
      TypeError,
      "does not fit",
    );
    assert.equal(resource.releases, 1);
  });
  await t.step(
    "a resource that cannot be opened errors the stream, with nothing to release",
    async () => {
      let transformed = false;
      const stage = resourceStage<Counted, number, number>({
        open: () => Promise.reject(new Error("cannot open")),
        own: true,
        transform: () => void (transformed = true),
      });
      await assertRejects(
        () => Array.fromAsync(ReadableStream.from([1]).pipeThrough(stage)),
        Error,
        "cannot open",
      );
      assert.equal(transformed, false);
    },
  );
});
