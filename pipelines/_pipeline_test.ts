import assert from "node:assert/strict";
import { test } from "../lib/_testing.ts";
import { runPipeline } from "./_pipeline.ts";

function collector<T>() {
  const out: T[] = [];
  let aborted: unknown;
  let closed = false;
  const sink = new WritableStream<T>({
    write: (x) => void out.push(x),
    close: () => void (closed = true),
    abort: (r) => void (aborted = r),
  });
  return { sink, out, state: () => ({ closed, aborted }) };
}

test("runPipeline() runs source → stages → sink in order", async () => {
  const c = collector<string>();
  await runPipeline(
    ReadableStream.from([1, 2]),
    [
      new TransformStream<number, number>({ transform: (x, k) => k.enqueue(x + 1) }),
      new TransformStream<number, string>({ transform: (x, k) => k.enqueue(`#${x}`) }),
    ],
    c.sink,
  );
  assert.deepEqual(c.out, ["#2", "#3"]);
  assert.equal(c.state().closed, true);
});

test("runPipeline(): a source error aborts the sink, or closes it with keepOnError", async () => {
  const failing = () =>
    new ReadableStream<number>({
      start(k) {
        k.enqueue(1);
      },
      pull() {
        throw new Error("disk gone");
      },
    });
  const aborted = collector<number>();
  await assert.rejects(runPipeline(failing(), [], aborted.sink), /disk gone/);
  assert.equal((aborted.state().aborted as Error).message, "disk gone");
  assert.equal(aborted.state().closed, false);

  const kept = collector<number>();
  await assert.rejects(runPipeline(failing(), [], kept.sink, { keepOnError: true }), /disk gone/);
  assert.deepEqual(kept.out, [1]);
  assert.equal(kept.state().closed, true, "what reached the sink is flushed");
  assert.equal(kept.state().aborted, undefined);
});

test("runPipeline(): the signal cancels the source and rejects with its reason", async () => {
  let cancelled: unknown;
  const stop = new AbortController();
  const source = new ReadableStream<number>({
    pull(k) {
      k.enqueue(0);
      stop.abort("SIGINT");
    },
    cancel(r) {
      cancelled = r;
    },
  });
  const c = collector<number>();
  await assert.rejects(
    runPipeline(source, [], c.sink, { signal: stop.signal }),
    (e) => e === "SIGINT",
  );
  assert.equal(cancelled, "SIGINT");
  assert.equal(c.state().aborted, "SIGINT");
});
