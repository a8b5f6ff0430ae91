import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { ManualClock } from "../_testing.ts";
import { Semaphore, TokenBucket } from "./_concurrency.ts";

Deno.test("TokenBucket refills at perMinute/60000 per ms and makes takers wait", () => {
  const clock = new ManualClock();
  const b = new TokenBucket(60, clock); // 1 unit per second
  assertEquals(b.waitTime(60), 0);
  b.adjust(-60); // spend everything
  assertEquals(b.level, 0);
  assertEquals(b.waitTime(1), 1000);
  clock.advance(500);
  assertEquals(b.waitTime(1), 500);
  clock.advance(119_500);
  assertEquals(b.level, 60); // never above capacity
  assertEquals(b.waitTime(1000), 0); // a request larger than the capacity waits for a full bucket
});

Deno.test("TokenBucket.take() clamps to the capacity and waits for the refill when empty", async () => {
  const clock = new ManualClock();
  const b = new TokenBucket(60_000, clock); // 1 unit per ms
  assertEquals(await b.take(1_000_000), 60_000); // a full bucket covers any single request
  assertEquals(clock.sleeps, []);
  let taken: number | undefined;
  const second = b.take(50).then((n) => taken = n); // empty now: 50 ms to refill 50 units
  await clock.waitForSleeps(1);
  assertEquals(clock.pending, [50]);
  clock.advance(49);
  await Promise.resolve();
  assertEquals(taken, undefined, "took the units before they were there");
  clock.advance(1);
  await second;
  assertEquals([taken, clock.sleeps], [50, [50]]);
});

Deno.test("TokenBucket.take() serves takers in order and stops waiting when aborted", async () => {
  const clock = new ManualClock();
  const b = new TokenBucket(60_000, clock);
  await b.take(60_000);
  const order: string[] = [];
  const big = b.take(100).then(() => order.push("big"));
  const small = b.take(1).then(() => order.push("small"));
  await clock.waitForSleeps(1);
  assertEquals(clock.pending, [100]); // the small request waits behind the large one
  clock.advance(100);
  await big;
  await clock.waitForSleeps(2); // the large one emptied the bucket again: 1 ms for the small one
  assertEquals(clock.pending, [1]);
  clock.advance(1);
  await small;
  assertEquals(order, ["big", "small"]);
  const abort = new AbortController();
  const waiting = b.take(10, abort.signal);
  await clock.waitForSleeps(3);
  abort.abort(new Error("stop"));
  await rejects(waiting, { message: "stop" });
  assertEquals(clock.pending, []);
});

Deno.test("Semaphore never lets more than its permits through", async () => {
  const s = new Semaphore(3);
  let inside = 0, most = 0;
  await Promise.all(Array.from({ length: 10 }, async () => {
    const release = await s.acquire();
    inside++;
    most = Math.max(most, inside);
    await new Promise((r) => setTimeout(r, 2));
    inside--;
    release();
  }));
  assertEquals(most, 3);
  assertEquals(s.inUse, 0);
});

Deno.test("Semaphore.acquire() rejects with the abort reason while waiting", async () => {
  const s = new Semaphore(1);
  const release = await s.acquire();
  const abort = new AbortController();
  const waiting = s.acquire(abort.signal);
  abort.abort(new Error("stop"));
  const e = await waiting.then(() => undefined, (err) => err);
  assert(e instanceof Error && e.message === "stop");
  release();
  assertEquals(s.inUse, 0);
});
