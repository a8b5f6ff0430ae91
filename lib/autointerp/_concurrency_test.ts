import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Semaphore, TokenBucket } from "./_concurrency.ts";

Deno.test("TokenBucket refills at perMinute/60000 per ms and makes takers wait", () => {
  let now = 0;
  const b = new TokenBucket(60, () => now); // 1 unit per second
  assertEquals(b.waitTime(60), 0);
  b.adjust(-60); // spend everything
  assertEquals(b.level, 0);
  assertEquals(b.waitTime(1), 1000);
  now = 500;
  assertEquals(b.waitTime(1), 500);
  now = 120_000;
  assertEquals(b.level, 60); // never above capacity
  assertEquals(b.waitTime(1000), 0); // a request larger than the capacity waits for a full bucket
});

Deno.test("TokenBucket.take() clamps to the capacity and waits for the refill when empty", async () => {
  const b = new TokenBucket(60_000); // 1 unit per ms
  assertEquals(await b.take(1_000_000), 60_000); // a full bucket covers any single request
  const t0 = performance.now();
  assertEquals(await b.take(50), 50); // empty now: about 50 ms to refill 50 units
  const waited = performance.now() - t0;
  assert(waited >= 40 && waited < 1000, `waited ${waited} ms`);
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
