import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import { backoffDelay, OpenAIChatClient, parseRetryAfter, scrubSecret } from "./client.ts";

Deno.test("parseRetryAfter() reads seconds, HTTP dates and retry-after-ms", () => {
  const now = Date.parse("Wed, 21 Oct 2015 07:28:00 GMT");
  assertEquals(parseRetryAfter(new Headers({ "retry-after": "3" }), now), 3000);
  assertEquals(parseRetryAfter(new Headers({ "retry-after": "0.5" }), now), 500);
  assertEquals(
    parseRetryAfter(new Headers({ "retry-after": "Wed, 21 Oct 2015 07:28:07 GMT" }), now),
    7000,
  );
  assertEquals(
    parseRetryAfter(new Headers({ "retry-after": "Wed, 21 Oct 2015 07:27:00 GMT" }), now),
    0,
  );
  assertEquals(
    parseRetryAfter(new Headers({ "retry-after-ms": "250", "retry-after": "9" }), now),
    250,
  );
  assertEquals(parseRetryAfter(new Headers({ "retry-after": "soon" }), now), undefined);
  assertEquals(parseRetryAfter(new Headers(), now), undefined);
});

Deno.test("backoffDelay() doubles per retry up to the cap, jittered in the upper half", () => {
  assertEquals([1, 2, 3, 4].map((r) => backoffDelay(r, 100, 500, () => 0)), [50, 100, 200, 250]);
  assertEquals(backoffDelay(2, 100, 500, () => 0.5), 150);
});

Deno.test("scrubSecret() removes the key and any bearer token", () => {
  assertEquals(scrubSecret("a sk-XYZ123 b sk-XYZ123", "sk-XYZ123"), "a *** b ***");
  assertEquals(
    scrubSecret('Authorization: "Bearer abc.def"', undefined),
    'Authorization: "Bearer ***"',
  );
});

Deno.test("OpenAIChatClient rejects a proxy with an unsupported scheme and a bad worker count", () => {
  assertThrows(
    () =>
      new OpenAIChatClient({ model: "m", baseURL: "http://127.0.0.1:1/v1", proxy: "ftp://p:1" }),
    {
      name: "ConfigError",
      message: "auto_interp.openai_proxy: unsupported scheme ftp: (expected http, https or socks5)",
    },
  );
  assertThrows(
    () => new OpenAIChatClient({ model: "m", baseURL: "http://127.0.0.1:1/v1", maxWorkers: 0 }),
    ConfigError,
  );
});
