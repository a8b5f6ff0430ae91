import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ChatRequestError, OpenAIChatClient, type RetryInfo } from "../lib/autointerp/client.ts";
import { ManualClock } from "../lib/_testing.ts";
import { type FakeHandler, rejection, startOpenAIServer } from "./_openai_server.ts";

function assertStringIncludes(text: string, part: string): void {
  assert(
    text.includes(part),
    `expected ${JSON.stringify(text)} to include ${JSON.stringify(part)}`,
  );
}

async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls?: new (...args: never[]) => E,
): Promise<E> {
  const e = await rejection(fn);
  if (cls) assert(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
  return e as E;
}

const KEY = "sk-test-CLIENTKEY-0123456789";

async function withServer(
  handler: FakeHandler,
  fn: (server: ReturnType<typeof startOpenAIServer>) => Promise<void>,
): Promise<void> {
  const server = startOpenAIServer(handler);
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

function client(
  baseURL: string,
  extra: Partial<ConstructorParameters<typeof OpenAIChatClient>[0]> = {},
) {
  return new OpenAIChatClient({
    model: "fake-model",
    apiKey: KEY,
    baseURL,
    timeoutMs: 2000,
    retryBaseDelayMs: 5,
    retryMaxDelayMs: 20,
    ...extra,
  });
}

const hello = [{ role: "user" as const, content: "hello" }];

Deno.test("OpenAIChatClient sends a real request through npm:openai and returns content and usage", async () => {
  await withServer(
    () => ({ content: '{"ok": true}', usage: { prompt_tokens: 7, completion_tokens: 3 } }),
    async (server) => {
      const c = client(server.baseURL);
      const r = await c.complete({
        messages: hello,
        responseFormat: "json_object",
        maxTokens: 50,
        temperature: 0,
      });
      assertEquals(r.content, '{"ok": true}');
      assertEquals(r.usage, { prompt_tokens: 7, completion_tokens: 3 });
      assertEquals(server.bodies[0]!.model, "fake-model");
      assertEquals(server.bodies[0]!.response_format, { type: "json_object" });
      assertEquals(server.bodies[0]!.max_tokens, 50);
      assertEquals(server.authorizations[0], `Bearer ${KEY}`);
      assertEquals(c.stats.usage, { prompt_tokens: 7, completion_tokens: 3 });
    },
  );
});

Deno.test("OpenAIChatClient waits the Retry-After seconds of a 429 before retrying", async () => {
  await withServer(
    (_b, n) => n === 1 ? { status: 429, headers: { "retry-after": "1" } } : { content: "fine" },
    async (server) => {
      const clock = new ManualClock();
      const retries: RetryInfo[] = [];
      const answer = client(server.baseURL, { onRetry: (i) => retries.push(i), timers: clock })
        .complete({ messages: hello });
      // The attempt's timeout (2000 ms), then the wait before the retry.
      await clock.waitForSleeps(2);
      assertEquals(clock.sleeps, [2000, 1000]);
      assertEquals(clock.pending, [1000]); // the first attempt's timeout ended with its answer
      assertEquals(retries.map((r) => [r.delayMs, r.fromRetryAfter]), [[1000, true]]);
      assertStringIncludes(retries[0]!.reason, "HTTP 429");
      clock.advance(999);
      await new Promise((r) => setTimeout(r, 0));
      assertEquals(server.requests, 1, "retried before the Retry-After delay was over");
      clock.advance(1);
      assertEquals((await answer).content, "fine");
      assertEquals(server.requests, 2);
    },
  );
});

Deno.test("OpenAIChatClient honours retry-after-ms and an HTTP-date Retry-After", async () => {
  await withServer(
    (_b, n) =>
      n === 1 ? { status: 429, headers: { "retry-after-ms": "300" } } : n === 2
        ? {
          status: 503,
          // An HTTP date has second precision: this one is 0–1 s ahead when the client reads it.
          headers: { "retry-after": new Date(Date.now() + 1000).toUTCString() },
        }
        : { content: "fine" },
    async (server) => {
      const clock = new ManualClock();
      const retries: RetryInfo[] = [];
      const answer = client(server.baseURL, { onRetry: (i) => retries.push(i), timers: clock })
        .complete({ messages: hello });
      await clock.waitForSleeps(2);
      assertEquals(clock.sleeps, [2000, 300]);
      assertEquals(retries[0]!.fromRetryAfter, true);
      clock.advance(300);
      await clock.waitForSleeps(4);
      const fromDate = retries[1]!;
      assert(fromDate.fromRetryAfter, JSON.stringify(fromDate));
      assert(fromDate.delayMs >= 0 && fromDate.delayMs <= 1000, JSON.stringify(fromDate));
      assertEquals(clock.sleeps, [2000, 300, 2000, fromDate.delayMs]);
      assertEquals(server.requests, 2);
      clock.advance(fromDate.delayMs);
      assertEquals((await answer).content, "fine");
      assertEquals(server.requests, 3);
    },
  );
});

Deno.test("OpenAIChatClient retries 500s with backoff and succeeds", async () => {
  await withServer(
    (_b, n) => n <= 2 ? { status: 500 } : { content: "third time" },
    async (server) => {
      const retries: RetryInfo[] = [];
      const r = await client(server.baseURL, { onRetry: (i) => retries.push(i) }).complete({
        messages: hello,
      });
      assertEquals(r.content, "third time");
      assertEquals(server.requests, 3);
      assertEquals(retries.map((i) => i.fromRetryAfter), [false, false]);
    },
  );
});

Deno.test("OpenAIChatClient gives up after max_retries and reports the last failure", async () => {
  await withServer(() => ({ status: 502 }), async (server) => {
    const c = client(server.baseURL, { maxRetries: 2 });
    const e = await assertRejects(() => c.complete({ messages: hello }), ChatRequestError);
    assertEquals(
      e.message.startsWith("chat completion failed after 3 attempt(s): HTTP 502"),
      true,
      e.message,
    );
    assertEquals(e.status, 502);
    assertEquals(e.attempts, 3);
    assertEquals(server.requests, 3);
  });
});

Deno.test("OpenAIChatClient does not retry a 400", async () => {
  await withServer(
    () => ({ status: 400, body: '{"error": {"message": "bad model"}}' }),
    async (server) => {
      const e = await assertRejects(
        () => client(server.baseURL).complete({ messages: hello }),
        ChatRequestError,
      );
      assertStringIncludes(e.message, "HTTP 400");
      assertStringIncludes(e.message, "bad model");
      assertEquals(server.requests, 1);
    },
  );
});

Deno.test("OpenAIChatClient times out a hung request after timeoutMs and retries it", async () => {
  await withServer(
    (_b, n) => n === 1 ? { hang: true } : { content: "after timeout" },
    async (server) => {
      const clock = new ManualClock();
      const retries: RetryInfo[] = [];
      const answer = client(server.baseURL, {
        timeoutMs: 300,
        random: () => 0, // backoff of the first retry: exactly half the 5 ms base
        onRetry: (i) => retries.push(i),
        timers: clock,
      }).complete({ messages: hello });
      await server.waitForRequests(1); // the request hangs at the server …
      assertEquals(clock.pending, [300]); // … while the client's 300 ms timeout runs
      clock.advance(299);
      await new Promise((r) => setTimeout(r, 0));
      assertEquals(retries.length, 0, "gave up before the timeout");
      clock.advance(1);
      await clock.waitForSleeps(2); // the timeout fired: the client waits to retry
      assertEquals(retries.map((r) => [r.reason, r.delayMs]), [["no answer within 300 ms", 2.5]]);
      clock.advance(2.5);
      assertEquals((await answer).content, "after timeout");
      assertEquals(clock.sleeps, [300, 2.5, 300]);
      assertEquals(clock.pending, []); // the answered attempt's timeout was cancelled
      assertEquals(server.requests, 2);
    },
  );
});

Deno.test("OpenAIChatClient retries a body that is not JSON and a dropped connection", async () => {
  await withServer(
    (_b, n) =>
      n === 1 ? { rawBody: "<html>bad gateway" } : n === 2 ? { drop: true } : { content: "ok" },
    async (server) => {
      const retries: RetryInfo[] = [];
      const r = await client(server.baseURL, { onRetry: (i) => retries.push(i) }).complete({
        messages: hello,
      });
      assertEquals(r.content, "ok");
      assertEquals(server.requests, 3);
      assertEquals(retries.length, 2);
    },
  );
});

Deno.test("OpenAIChatClient stops at once when the caller aborts, without retrying", async () => {
  await withServer(() => ({ hang: true }), async (server) => {
    const abort = new AbortController();
    const e = await assertRejects(async () => {
      const answer = client(server.baseURL).complete({ messages: hello, signal: abort.signal });
      await server.waitForRequests(1);
      abort.abort(new Error("user stop"));
      await answer;
    });
    assertEquals((e as Error).message, "user stop");
    assertEquals(server.requests, 1);
  });
});

Deno.test("OpenAIChatClient keeps at most max_workers requests in flight", async () => {
  await withServer(async () => {
    await new Promise((r) => setTimeout(r, 20));
    return { content: "x" };
  }, async (server) => {
    const c = client(server.baseURL, { maxWorkers: 4 });
    await Promise.all(Array.from({ length: 16 }, () => c.complete({ messages: hello })));
    assertEquals(server.requests, 16);
    assertEquals(server.maxInFlight, 4);
    assertEquals(c.stats.maxInFlight, 4);
  });
});

Deno.test("OpenAIChatClient returns log-probabilities when asked and the endpoint gives them", async () => {
  await withServer(
    () => ({
      content: "1: 7",
      logprobs: (t) => [{ token: t, logprob: -0.1 }, { token: "3", logprob: -2.4 }],
    }),
    async (server) => {
      const r = await client(server.baseURL).complete({ messages: hello, logprobs: 2 });
      assertEquals(server.bodies[0]!.logprobs, true);
      assertEquals(server.bodies[0]!.top_logprobs, 2);
      assertEquals(r.logprobs!.map((t) => t.token).join(""), "1: 7");
      assertEquals(r.logprobs!.at(-1)!.top.length, 2);
    },
  );
});

Deno.test("OpenAIChatClient removes the API key from errors and retry reasons even when the server echoes it", async () => {
  await withServer(
    (_b, n) =>
      n === 1
        ? {
          status: 500,
          body: JSON.stringify({ error: { message: `upstream said: Bearer ${KEY} and ${KEY}` } }),
        }
        : { status: 401, body: JSON.stringify({ error: { message: `invalid key ${KEY}` } }) },
    async (server) => {
      const reasons: string[] = [];
      const e = await assertRejects(
        () =>
          client(server.baseURL, { onRetry: (i) => reasons.push(i.reason) }).complete({
            messages: hello,
          }),
        ChatRequestError,
      );
      assertEquals(server.authorizations[0], `Bearer ${KEY}`); // the key was really used
      assertStringIncludes(e.message, "HTTP 401");
      assertStringIncludes(reasons[0]!, "HTTP 500");
      for (const text of [e.message, e.stack ?? "", ...reasons, JSON.stringify(e)]) {
        assert(!text.includes(KEY), `key leaked in: ${text}`);
        assert(!text.includes("CLIENTKEY"), `key leaked in: ${text}`);
      }
    },
  );
});

Deno.test("OpenAIChatClient sends requests through openai_proxy, with its credentials", async () => {
  // The fake server doubles as the HTTP proxy: the upstream host does not exist, so an answer
  // can only come through the proxy.
  await withServer(() => ({ content: "via proxy" }), async (proxy) => {
    const c = client("http://upstream.invalid/v1", { proxy: new URL(proxy.baseURL).origin });
    try {
      const r = await c.complete({ messages: hello });
      assertEquals(r.content, "via proxy");
      assertEquals(proxy.requests, 1);
      assertEquals(proxy.proxyAuthorizations, []);
    } finally {
      c.close();
    }
  });
  await withServer(() => ({ content: "via proxy" }), async (proxy) => {
    const { host } = new URL(proxy.baseURL);
    // user "us@er", password "p:w", percent-encoded in the URL as they must be.
    const c = client("http://upstream.invalid/v1", {
      proxy: `http://us%40er:p%3Aw@${host}`,
      maxRetries: 0,
    });
    assertEquals((await c.complete({ messages: hello })).content, "via proxy");
    assertEquals(proxy.proxyAuthorizations, [`Basic ${btoa("us@er:p:w")}`]);
    c.close();
    c.close(); // idempotent
    // Closed: the proxy is gone, and with it the only way to the upstream host.
    await assertRejects(() => c.complete({ messages: hello }), ChatRequestError);
    assertEquals(proxy.requests, 1);
  });
});
