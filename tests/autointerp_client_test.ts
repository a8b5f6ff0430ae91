import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  ChatRequestError,
  LLMUnavailableError,
  OpenAIChatClient,
  type RetryInfo,
} from "../lib/autointerp/client.ts";
import {
  closedPortURL,
  type FakeHandler,
  rejection,
  startClosingListener,
  startOpenAIServer,
} from "./_openai_server.ts";
import { ManualClock } from "../lib/_testing.ts";

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
    assert(!(e instanceof LLMUnavailableError), "a 502 is the request's failure, not a fault");
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
      assert(!(e instanceof LLMUnavailableError), "a 400 is the request's failure, not a fault");
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
        LLMUnavailableError,
      );
      assertEquals(server.authorizations[0], `Bearer ${KEY}`); // the key was really used
      assertStringIncludes(e.message, "401 Unauthorized");
      const cause = e.cause as Error;
      assertStringIncludes(cause.message, "HTTP 401: 401 invalid key ***");
      assertStringIncludes(reasons[0]!, "HTTP 500");
      for (
        const text of [
          e.message,
          e.stack ?? "",
          cause.message,
          cause.stack ?? "",
          ...reasons,
          JSON.stringify(e),
        ]
      ) {
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

Deno.test("OpenAIChatClient reports an endpoint no request can use as LLMUnavailableError naming the base URL", async (t) => {
  /** Sends one request that must fail with an LLMUnavailableError; returns it and the retries. */
  const unavailable = async (
    baseURL: string,
    extra: Partial<ConstructorParameters<typeof OpenAIChatClient>[0]> = {},
  ) => {
    const retries: RetryInfo[] = [];
    const c = client(baseURL, { maxRetries: 2, onRetry: (i) => retries.push(i), ...extra });
    const e = await assertRejects(() => c.complete({ messages: hello }), LLMUnavailableError);
    assertEquals(e.name, "LLMUnavailableError");
    assert(e instanceof ChatRequestError, "still a ChatRequestError");
    assertEquals(e.baseURL, baseURL);
    for (const text of [e.message, (e.cause as Error).message, ...retries.map((r) => r.reason)]) {
      assert(!text.includes(KEY) && !text.includes("CLIENTKEY"), `key leaked in: ${text}`);
    }
    return { e, retries };
  };

  await t.step("connection refused: retried, then unreachable", async () => {
    const url = closedPortURL();
    const { e, retries } = await unavailable(url);
    assertEquals(e.fault, "unreachable");
    assertEquals(e.message, `cannot reach the LLM at ${url} (connection refused) after 3 attempts`);
    assertEquals(e.attempts, 3);
    assertEquals(
      retries.map((r) => r.reason),
      Array(2).fill("connection failed: connection refused"),
    );
  });

  await t.step("a port that closes every connection: each attempt reaches it", async () => {
    const port = startClosingListener();
    try {
      const { e } = await unavailable(port.baseURL);
      assertEquals(e.fault, "unreachable");
      assertEquals(
        e.message,
        `cannot reach the LLM at ${port.baseURL} (connection closed before message completed) after 3 attempts`,
      );
      assertEquals(port.connections, 3);
    } finally {
      await port.close();
    }
  });

  await t.step("a host that does not resolve", async () => {
    const url = "http://saeflow-no-such-host.invalid/v1";
    const { e } = await unavailable(url, { maxRetries: 0 });
    assertEquals(e.message, `cannot reach the LLM at ${url} (DNS lookup failed) after 1 attempt`);
  });

  await t.step("a TLS handshake that fails (https to a plain HTTP server)", async () => {
    await withServer(() => ({ content: "never" }), async (server) => {
      const url = server.baseURL.replace("http:", "https:");
      const { e } = await unavailable(url, { maxRetries: 0 });
      assertEquals(e.fault, "unreachable");
      assert(
        e.message.startsWith(`cannot reach the LLM at ${url} (TLS handshake failed (`),
        e.message,
      );
      assertEquals(server.requests, 0);
    });
  });

  await t.step("HTTP 401, 403 and 404: one attempt each, never retried", async (t) => {
    const cases = [
      {
        status: 401,
        fault: "unauthorized",
        message: (url: string) => `the LLM at ${url} refused the API key (401 Unauthorized)`,
      },
      {
        status: 403,
        fault: "forbidden",
        message: (url: string) =>
          `the LLM at ${url} denied access with this API key (403 Forbidden: no access to fake-model)`,
      },
      {
        status: 404,
        fault: "not_found",
        message: (url: string) =>
          `the LLM at ${url} has no model "fake-model" or no chat completions route ` +
          "(404 Not Found: The model `fake-model` does not exist.)",
      },
    ] as const;
    for (const c of cases) {
      await t.step(`${c.status}`, async () => {
        const texts: Record<number, string> = {
          401: `Incorrect API key provided: ${KEY}`,
          403: "no access to fake-model",
          404: "The model `fake-model` does not exist.",
        };
        await withServer(
          () => ({
            status: c.status,
            body: JSON.stringify({ error: { message: texts[c.status] } }),
          }),
          async (server) => {
            const { e, retries } = await unavailable(server.baseURL);
            assertEquals(e.fault, c.fault);
            assertEquals(e.status, c.status);
            assertEquals(e.message, c.message(server.baseURL));
            assertEquals(server.requests, 1);
            assertEquals(retries.length, 0);
          },
        );
      });
    }
  });

  await t.step("a base URL with a wrong path (404 from the server's router)", async () => {
    await withServer(() => ({ content: "never" }), async (server) => {
      const url = server.baseURL.replace(/\/v1$/, "/api");
      const { e } = await unavailable(url);
      assertEquals(e.fault, "not_found");
      assertEquals(
        e.message,
        `the LLM at ${url} has no model "fake-model" or no chat completions route ` +
          "(404 Not Found: no route POST /api/chat/completions)",
      );
      assertEquals(server.requests, 0); // the router answered; no chat request was handled
    });
  });

  await t.step("user and password in the base URL are not repeated", async () => {
    const url = closedPortURL().replace("http://", "http://me:hunter2@");
    const c = client(url, { maxRetries: 0 });
    const e = await assertRejects(() => c.complete({ messages: hello }), LLMUnavailableError);
    assert(!e.message.includes("hunter2") && !e.baseURL.includes("hunter2"), e.message);
    assert(e.message.startsWith("cannot reach the LLM at http://***@127.0.0.1:"), e.message);
  });

  await t.step("a proxy that cannot be reached is named (without its password)", async () => {
    const proxy = closedPortURL().replace(/\/v1$/, "");
    const c = client("http://upstream.invalid/v1", {
      maxRetries: 0,
      proxy: proxy.replace("http://", "http://me:hunter2@"),
    });
    try {
      const e = await assertRejects(() => c.complete({ messages: hello }), LLMUnavailableError);
      assertEquals(
        e.message,
        "cannot reach the LLM at http://upstream.invalid/v1 through the proxy " +
          `${proxy.replace("http://", "http://***@")} (connection refused) after 1 attempt`,
      );
    } finally {
      c.close();
    }
  });

  await t.step("timeouts of an endpoint that never answered: unreachable", async () => {
    await withServer(() => ({ hang: true }), async (server) => {
      const { e } = await unavailable(server.baseURL, { timeoutMs: 100, maxRetries: 1 });
      assertEquals(
        e.message,
        `cannot reach the LLM at ${server.baseURL} (no answer within 100 ms) after 2 attempts`,
      );
      assertEquals(server.requests, 2);
    });
  });
});

Deno.test("OpenAIChatClient: timeouts after the endpoint has answered fail only the request", async () => {
  await withServer((_b, n) => n === 1 ? { content: "first" } : { hang: true }, async (server) => {
    const c = client(server.baseURL, { timeoutMs: 100, maxRetries: 1 });
    assertEquals((await c.complete({ messages: hello })).content, "first");
    const e = await assertRejects(() => c.complete({ messages: hello }), ChatRequestError);
    assert(!(e instanceof LLMUnavailableError), e.message);
    assertEquals(
      e.message,
      "chat completion failed after 2 attempt(s): no answer within 100 ms",
    );
  });
});
