/**
 * The autointerp stage against a local OpenAI-compatible server through the real `openai`
 * client: faults survived, the concurrency cap, skipping, resume after an interruption,
 * backpressure, cancellation, and the API key never leaking.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  type AutoInterpEvent,
  autointerpStage,
  type AutoInterpStageOptions,
  AutoInterpTally,
} from "../stages/autointerp.ts";
import type { FeatureRecord, ScoreMetrics } from "../lib/types.ts";
import {
  type ChatClient,
  LLMUnavailableError,
  OpenAIChatClient,
} from "../lib/autointerp/client.ts";
import {
  catFeature,
  closedPortURL,
  type FakeOpenAIServer,
  featureOf,
  rejection,
  scriptedLlm,
  type ScriptOptions,
  startOpenAIServer,
  taskOf,
  TEST_VOCAB,
} from "./_openai_server.ts";
import { GatedSink, pullCountingSource, settle } from "../lib/_testing.ts";

const FAST = {
  request_timeout: 0.3,
  retry_base_delay: 0.005,
  retry_max_delay: 0.02,
  openai_model: "scripted",
  openai_api_key: "sk-test-stage",
} as const;

async function run(
  server: FakeOpenAIServer,
  records: FeatureRecord[],
  options: Partial<AutoInterpStageOptions> = {},
): Promise<
  { out: FeatureRecord[]; events: AutoInterpEvent[]; logs: string[]; tally: AutoInterpTally }
> {
  const events: AutoInterpEvent[] = [];
  const logs: string[] = [];
  const tally = new AutoInterpTally();
  const stage = autointerpStage({
    ...FAST,
    vocab: TEST_VOCAB,
    openai_base_url: server.baseURL,
    log: (l) => logs.push(l),
    onFeature: (e) => {
      events.push(e);
      tally.add(e);
    },
    ...options,
  });
  const out = await Array.fromAsync(ReadableStream.from(records).pipeThrough(stage));
  return { out, events, logs, tally };
}

async function withServer<T>(
  script: ScriptOptions,
  fn: (server: FakeOpenAIServer) => Promise<T>,
): Promise<T> {
  const server = startOpenAIServer(scriptedLlm(script));
  try {
    return await fn(server);
  } finally {
    await server.close();
  }
}

const features = (n: number, from = 0) => Array.from({ length: n }, (_, i) => catFeature(from + i));

Deno.test("autointerp stage survives a 429 with Retry-After, 500s, a hung request, bad bodies and malformed JSON", async () => {
  let explainOf5 = 0;
  await withServer({
    override: (b, n) => {
      if (n === 2) return { status: 429, headers: { "retry-after": "1" } };
      if (n === 3 || n === 4) return { status: 500 };
      if (n === 6) return { hang: true };
      if (n === 8) return { rawBody: "<html>502 Bad Gateway</html>" };
      if (n === 9) return { drop: true };
      const f = featureOf(b);
      if (taskOf(b) === "explain" && f === 4 && b.messages.length === 2) {
        return { content: "The feature is about cats, I think." }; // not JSON: asked again
      }
      if (taskOf(b) === "explain" && f === 5) {
        explainOf5++;
        return { content: "{not json at all" }; // never usable: feature 5 fails
      }
      return undefined;
    },
  }, async (server) => {
    const { out, logs, tally } = await run(server, features(8), { max_workers: 4 });
    assertEquals(out.map((r) => r.index).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
    for (const r of out) {
      if (r.index === 5) continue;
      assertEquals(r.interpretation!.error, undefined, `feature ${r.index}`);
      assertEquals(r.interpretation!.passed, true);
      assertEquals((r.interpretation!.scores.detection as ScoreMetrics).balanced_accuracy, 1);
    }
    const failed = out.find((r) => r.index === 5)!.interpretation!;
    assertEquals(failed.passed, false);
    assertEquals(explainOf5, 2);
    assert(
      failed.error!.startsWith("explanation: the answer is not valid JSON"),
      String(failed.error),
    );
    assertEquals(tally.summary.done, 7);
    assertEquals(tally.summary.passed, 7);
    assertEquals(tally.summary.failed, 1);
    assert(
      logs.some((l) => l.includes("HTTP 429") && l.includes("retrying in 1000 ms (Retry-After)")),
      logs.join("\n"),
    );
    assert(logs.some((l) => l.includes("HTTP 500")), logs.join("\n"));
    assert(logs.some((l) => l.includes("no answer within 300 ms")), logs.join("\n"));
    assert(logs.some((l) => l.includes("not valid JSON")), logs.join("\n")); // the HTML body
    // The dropped connection shows as a failed read or a truncated body, depending on timing.
    assert(
      logs.some((l) => l.includes("connection failed") || l.includes("Unterminated string")),
      logs.join("\n"),
    );
    assert(logs.some((l) => l.startsWith("auto-interp: feature 5 failed: explanation:")));
    assert(server.maxInFlight <= 4);
  });
});

Deno.test("autointerp stage with max_workers = 4 never has more than 4 requests in flight", async () => {
  await withServer({ delayMs: 15 }, async (server) => {
    const { out } = await run(server, features(12), { max_workers: 4 });
    assertEquals(out.length, 12);
    assertEquals(server.requests, 36); // explanation + detection + fuzzing per feature
    assertEquals(server.maxInFlight, 4); // the cap was reached and never passed
  });
});

Deno.test("autointerp stage skips dead and already interpreted features unless overwrite_existing", async () => {
  await withServer({}, async (server) => {
    const done = catFeature(1);
    done.interpretation = {
      text: "old",
      method: "openai",
      model: "m",
      scores: {},
      passed: true,
      at: "x",
    };
    const failedBefore = catFeature(2);
    failedBefore.interpretation = {
      ...done.interpretation,
      text: "",
      error: "HTTP 500",
      passed: false,
    };
    const dead = catFeature(3, { dead: true });
    const { out, events } = await run(server, [done, failedBefore, dead]);
    const byIndex = new Map(out.map((r) => [r.index, r]));
    assertEquals(byIndex.get(1)!.interpretation!.text, "old");
    assertEquals(byIndex.get(2)!.interpretation!.error, undefined); // failed ones are redone
    assertEquals(byIndex.get(3)!.interpretation, undefined);
    assertEquals(
      events.map((e) => [e.index, e.status]).sort(),
      [[1, "skipped_existing"], [2, "done"], [3, "skipped_dead"]],
    );
    assertEquals(new Set(server.bodies.map(featureOf)), new Set([2]));
    const again = await run(server, [done], { overwrite_existing: true });
    assertEquals(again.out[0]!.interpretation!.text, 'The word "cat".');
  });
});

Deno.test("autointerp stage: an interrupted run resumed finishes every feature exactly once", async () => {
  await withServer({ delayMs: 10 }, async (server) => {
    const store = new Map<number, FeatureRecord>(features(12).map((r) => [r.index, r]));
    const produced = new Map<number, number>(); // feature → interpretations produced
    const sink = (abortAfter?: { n: number; controller: AbortController }) => {
      let writes = 0;
      return new WritableStream<FeatureRecord>({
        write(r) {
          store.set(r.index, r);
          if (++writes === abortAfter?.n) abortAfter.controller.abort(new Error("interrupted"));
        },
      });
    };
    const count = (e: AutoInterpEvent) => {
      if (e.status === "done") produced.set(e.index, (produced.get(e.index) ?? 0) + 1);
    };
    const interrupt = new AbortController();
    const stage1 = autointerpStage({
      ...FAST,
      vocab: TEST_VOCAB,
      openai_base_url: server.baseURL,
      max_workers: 3,
      signal: interrupt.signal,
      onFeature: count,
      log: () => {},
    });
    const e = await rejection(() =>
      ReadableStream.from([...store.values()]).pipeThrough(stage1).pipeTo(
        sink({ n: 5, controller: interrupt }),
      )
    );
    assertEquals((e as Error).message, "interrupted");
    const afterFirst = [...store.values()].filter((r) => r.interpretation).map((r) => r.index);
    assert(afterFirst.length >= 5 && afterFirst.length < 12, `stored ${afterFirst.length}`);
    const requestsBefore = server.bodies.length;

    const events2: AutoInterpEvent[] = [];
    const stage2 = autointerpStage({
      ...FAST,
      vocab: TEST_VOCAB,
      openai_base_url: server.baseURL,
      max_workers: 3,
      onFeature: (ev) => {
        count(ev);
        events2.push(ev);
      },
      log: () => {},
    });
    await ReadableStream.from([...store.values()]).pipeThrough(stage2).pipeTo(sink());
    // Every feature interpreted, each stored interpretation produced exactly once.
    for (const r of store.values()) assertEquals(r.interpretation?.error, undefined);
    assertEquals([...store.values()].every((r) => r.interpretation?.text), true);
    for (const stored of afterFirst) assertEquals(produced.get(stored), 1);
    assertEquals(
      [...store.keys()].filter((i) => !afterFirst.includes(i)).every((i) => produced.get(i) === 1),
      true,
    );
    // The resumed run asked nothing about features finished before the interruption.
    const resumedAbout = new Set(server.bodies.slice(requestsBefore).map(featureOf));
    for (const i of afterFirst) assert(!resumedAbout.has(i), `feature ${i} was asked again`);
    assertEquals(
      events2.filter((ev) => ev.status === "skipped_existing").length,
      afterFirst.length,
    );
  });
});

Deno.test("autointerp stage pulls no more input than max_workers plus the queues while the sink is blocked", async () => {
  await withServer({}, async (server) => {
    const all = features(40);
    const src = pullCountingSource((i) => all[i]);
    const sink = new GatedSink<FeatureRecord>();
    const stage = autointerpStage({
      ...FAST,
      vocab: TEST_VOCAB,
      openai_base_url: server.baseURL,
      max_workers: 2,
      log: () => {},
    });
    const piped = src.stream.pipeThrough(stage).pipeTo(sink.stream);
    await sink.waitForWrites(1); // the sink holds the first interpreted feature
    await settle(() => [src.pulls, server.requests], 20);
    // The feature in the sink, two being interpreted (max_workers) or done and queued behind
    // it, one in the stage's input queue: a handful, never all 40.
    const held = src.pulls;
    assert(held <= 4, `pulled ${held} records with the sink blocked`);
    assert(server.requests <= 3 * 3, `${server.requests} requests with the sink blocked`);
    sink.release();
    await sink.waitForWrites(2);
    await settle(() => [src.pulls, server.requests], 20);
    assert(src.pulls <= held + 1, `one feature taken let ${src.pulls - held} more in`);
    sink.fail("enough");
    assertEquals(await piped.catch((e) => e), "enough");
    assertEquals(src.cancelReason, "enough");
  });
});

Deno.test("autointerp stage: cancelling the output reaches the source and aborts requests in flight", async () => {
  await withServer({ override: () => ({ hang: true }) }, async (server) => {
    const all = features(5);
    const src = pullCountingSource((i) => all[i]);
    // The client the stage would build, wrapped to see each request's signal and its outcome.
    using http = new OpenAIChatClient({
      model: FAST.openai_model,
      apiKey: FAST.openai_api_key,
      baseURL: server.baseURL,
      maxWorkers: 2,
      timeoutMs: 30_000,
      maxRetries: 0,
    });
    const calls: { signal: AbortSignal | undefined; outcome: Promise<unknown> }[] = [];
    const client: ChatClient = {
      model: http.model,
      complete(request) {
        const answer = http.complete(request);
        calls.push({ signal: request.signal, outcome: answer.then(() => "answered", (e) => e) });
        return answer;
      },
    };
    const reader = src.stream.pipeThrough(
      autointerpStage({ ...FAST, vocab: TEST_VOCAB, client, max_workers: 2, log: () => {} }),
    ).getReader();
    const pending = reader.read();
    await server.waitForRequests(2); // both workers' requests hang at the server
    await reader.cancel("user stop");
    assertEquals((await pending).done, true);
    assertEquals(calls.map((c) => c.signal?.aborted), [true, true]);
    // Both requests ended with the cancel's reason, not with their 30 s timeout.
    assertEquals(await Promise.all(calls.map((c) => c.outcome)), ["user stop", "user stop"]);
    assertEquals(await src.cancelled, "user stop");
  });
});

Deno.test("autointerp stage stops at the first feature that meets an unusable endpoint", async (t) => {
  await t.step("features finished before are emitted; nothing is sent after the 401", async () => {
    await withServer({
      override: (b) => featureOf(b) === 2 ? { status: 401 } : undefined,
    }, async (server) => {
      let pulls = 0;
      const all = features(6);
      const events: AutoInterpEvent[] = [];
      const out: FeatureRecord[] = [];
      const source = new ReadableStream<FeatureRecord>({
        pull(c) {
          const r = all[pulls++];
          if (r) c.enqueue(r);
          else c.close();
        },
      }, { highWaterMark: 0 });
      const stage = autointerpStage({
        ...FAST,
        vocab: TEST_VOCAB,
        openai_base_url: server.baseURL,
        max_workers: 1,
        log: () => {},
        onFeature: (e) => events.push(e),
      });
      const e = await rejection(async () => {
        for await (const r of source.pipeThrough(stage)) out.push(r);
      });
      assert(e instanceof LLMUnavailableError, String(e));
      assertEquals(
        e.message,
        `the LLM at ${server.baseURL} refused the API key (401 Unauthorized)`,
      );
      assertEquals(events.map((ev) => [ev.index, ev.status]), [[0, "done"], [1, "done"]]);
      assertEquals(out.map((r) => r.index), [0, 1]);
      const requests = server.requests;
      assertEquals(featureOf(server.bodies.at(-1)!), 2, "the last request was feature 2's");
      await new Promise((r) => setTimeout(r, 30));
      assertEquals(server.requests, requests, "nothing was sent after the 401");
      assert(pulls <= 4, `pulled ${pulls} records`);
    });
  });

  await t.step("requests in flight are cancelled and the source is cancelled", async () => {
    await withServer({
      override: (b) => featureOf(b) === 1 ? { status: 401 } : { hang: true },
    }, async (server) => {
      let cancelled: unknown;
      const all = features(5);
      const source = new ReadableStream<FeatureRecord>({
        pull(c) {
          const r = all.shift();
          if (r) c.enqueue(r);
          else c.close();
        },
        cancel(reason) {
          cancelled = reason;
        },
      }, { highWaterMark: 0 });
      using client = new OpenAIChatClient({
        model: "scripted",
        apiKey: "sk-test-stage",
        baseURL: server.baseURL,
        timeoutMs: 30_000,
        maxWorkers: 2,
      });
      const stage = autointerpStage({
        ...FAST,
        vocab: TEST_VOCAB,
        client,
        max_workers: 2,
        log: () => {},
      });
      const e = await rejection(() => Array.fromAsync(source.pipeThrough(stage)));
      assert(e instanceof LLMUnavailableError, String(e));
      // The abort reaches feature 0's hung request a few ticks later; its timeout is 30 s.
      const deadline = performance.now() + 5000;
      while (client.stats.inFlight > 0 && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assertEquals(client.stats.inFlight, 0, "feature 0's hung request was cancelled");
      assertEquals(server.requests, 2);
      assertEquals(cancelled, e);
    });
  });

  await t.step("a closed port: the first feature's retries, then the stream errors", async () => {
    const url = closedPortURL();
    const logs: string[] = [];
    const events: AutoInterpEvent[] = [];
    const e = await rejection(() =>
      Array.fromAsync(
        ReadableStream.from(features(4)).pipeThrough(autointerpStage({
          ...FAST,
          vocab: TEST_VOCAB,
          openai_base_url: url,
          max_workers: 1,
          max_retries: 2,
          log: (l) => logs.push(l),
          onFeature: (ev) => events.push(ev),
        })),
      )
    );
    assert(e instanceof LLMUnavailableError, String(e));
    assertEquals(e.message, `cannot reach the LLM at ${url} (connection refused) after 3 attempts`);
    assertEquals(events, []);
    assertEquals(logs.length, 2, logs.join("\n")); // the two retries; no "feature failed" line
    assert(logs.every((l) => l.includes("(connection failed: connection refused)")));
  });
});

Deno.test("autointerp stage passes an upstream error downstream", async () => {
  await withServer({}, async (server) => {
    const boom = new Error("source broke");
    const source = new ReadableStream<FeatureRecord>({
      start(c) {
        c.enqueue(catFeature(0));
        c.error(boom);
      },
    });
    const e = await rejection(() =>
      Array.fromAsync(source.pipeThrough(
        autointerpStage({
          ...FAST,
          vocab: TEST_VOCAB,
          openai_base_url: server.baseURL,
          log: () => {},
        }),
      ))
    );
    assertEquals(e, boom);
  });
});

Deno.test("the API key never appears in logs, errors, stored prompts or the show output", async () => {
  const KEY = "sk-live-SECRET-9f8e7d6c5b4a";
  const captured: string[] = [];
  const original = {
    log: console.log,
    error: console.error,
    warn: console.warn,
    info: console.info,
  };
  const capture = (...args: unknown[]) => captured.push(args.map(String).join(" "));
  console.log =
    console.error =
    console.warn =
    console.info =
      capture;
  let out: FeatureRecord[] = [];
  let server: FakeOpenAIServer | undefined;
  try {
    server = startOpenAIServer(scriptedLlm({
      override: (b, n) => {
        const f = featureOf(b);
        const echo = JSON.stringify({ error: { message: `key was ${KEY} (Bearer ${KEY})` } });
        if (f === 0 && n <= 2) return { status: 500, body: echo }; // retried, then fine
        if (f === 1 && taskOf(b) === "explain") return { status: 400, body: echo }; // fails
        return undefined;
      },
    }));
    const stage = autointerpStage({
      ...FAST,
      openai_api_key: KEY,
      vocab: TEST_VOCAB,
      openai_base_url: server.baseURL,
      save_prompts: true,
      max_workers: 1,
      // default log: console.error (captured)
    });
    out = await Array.fromAsync(ReadableStream.from(features(3)).pipeThrough(stage));
    assert(server.authorizations.every((a) => a === `Bearer ${KEY}`)); // the key was used
  } finally {
    Object.assign(console, original);
    await server?.close();
  }
  const failed = out.find((r) => r.index === 1)!.interpretation!;
  assert(failed.error!.includes("HTTP 400"), String(failed.error));
  assert(captured.some((l) => l.includes("HTTP 500")), captured.join("\n"));
  assert(captured.some((l) => l.includes("feature 1 failed")), captured.join("\n"));
  assert(out.some((r) => (r.interpretation?.prompts?.length ?? 0) > 0));
  const show = JSON.stringify(
    out,
    (_k, v) => ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v,
    2,
  );
  for (const [where, text] of [["logs", captured.join("\n")], ["show output", show]] as const) {
    assert(!text.includes(KEY), `the key leaked into the ${where}`);
    assert(!text.includes("SECRET-9f8e"), `part of the key leaked into the ${where}`);
  }
});
