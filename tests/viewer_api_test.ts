import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { featureToJson } from "../lib/store/json.ts";
import type { FeatureStore } from "../lib/store/types.ts";
import { createViewerHandler } from "../lib/viewer/server.ts";
import { mongoTest } from "./_utils.ts";
import {
  fillStore,
  type Fixture,
  withFilledStore,
  withViewer,
  XSS_IMG,
  XSS_SCRIPT,
} from "./_viewer_utils.ts";

// deno-lint-ignore no-explicit-any
type Json = any;
type Get = (
  path: string,
  init?: RequestInit,
) => Promise<{ status: number; body: Json; res: Response }>;

function getter(store: FeatureStore, cacheMs?: number): Get {
  const handler = createViewerHandler(store, cacheMs === undefined ? {} : { cacheMs });
  return async (path, init) => {
    const res = await handler(new Request(`http://127.0.0.1:8080${path}`, init));
    const type = res.headers.get("content-type") ?? "";
    const body = type.startsWith("application/json") ? await res.json() : await res.text();
    return { status: res.status, body, res };
  };
}

function apiTest(
  name: string,
  fn: (get: Get, fixture: Fixture, store: FeatureStore) => Promise<void>,
) {
  Deno.test(name, () => withFilledStore((store, fixture) => fn(getter(store), fixture, store)));
}

/**
 * A listing test run twice: with caching off, so that plain pages come from the store's own
 * paging, and with the summary index warmed (a text search loads it), which then serves them.
 */
function listTest(
  name: string,
  fn: (get: Get, fixture: Fixture, store: FeatureStore) => Promise<void>,
) {
  Deno.test(name, async (t) => {
    await withFilledStore(async (store, fixture) => {
      await t.step("from the store", () => fn(getter(store, 0), fixture, store));
      await t.step("from the summary index", async () => {
        const get = getter(store);
        for (const analysis of ["default", "second"]) {
          assertEquals((await get(`${base}/features?q=warm&analysis=${analysis}`)).status, 200);
        }
        await fn(get, fixture, store);
      });
    });
  });
}

const base = "/api/saes/test/tiny-sae";

/** Features of the default analysis as [index, act_times, max] sorted by a key. */
function expectedOrder(
  fixture: Fixture,
  key: "act_times" | "max_activation",
  order: "asc" | "desc",
) {
  const rows = [...fixture.records.values()].map((r) => ({
    index: r.index,
    value: r.analyses.default![key],
  }));
  rows.sort((a, b) =>
    (order === "asc" ? a.value - b.value : b.value - a.value) || a.index - b.index
  );
  return rows.map((r) => r.index);
}

apiTest("GET /api/saes lists the SAEs in the store", async (get) => {
  const { status, body } = await get("/api/saes");
  assertEquals(status, 200);
  assertEquals(body, {
    saes: [{
      series: "test",
      name: "tiny-sae",
      d_sae: 16,
      d_model: 8,
      hook_point: "blocks.1.hook_resid_post",
      model: "tiny-model",
    }],
  });
});

apiTest(
  "GET /api/saes/:series/:name gives the SAE, its analyses and alive/dead counts",
  async (get, fx) => {
    const { status, body } = await get(base);
    assertEquals(status, 200);
    assertEquals(body.sae.d_sae, 16);
    assertEquals(body.analyses.map((a: { name: string }) => a.name), ["default", "second"]);
    assertEquals(body.analysis, "default");
    assertEquals(body.counts, { total: fx.records.size, alive: fx.records.size - 1, dead: 1 });
    const second = await get(`${base}?analysis=second`);
    assertEquals(second.body.counts, { total: 4, alive: 3, dead: 1 });
    const analyses = await get(`${base}/analyses`);
    assertEquals(analyses.body.analyses.map((a: { name: string }) => a.name), [
      "default",
      "second",
    ]);
  },
);

listTest("GET .../features pages through the features by index", async (get, fx) => {
  const all = [...fx.records.keys()].sort((a, b) => a - b);
  const first = await get(`${base}/features?limit=5`);
  assertEquals(first.status, 200);
  assertEquals(first.body.total, all.length);
  assertEquals(first.body.features.map((f: { index: number }) => f.index), all.slice(0, 5));
  const last = await get(`${base}/features?limit=5&skip=10`);
  assertEquals(last.body.features.map((f: { index: number }) => f.index), all.slice(10, 15));
  assertEquals([last.body.skip, last.body.limit, last.body.total], [10, 5, all.length]);
  const beyond = await get(`${base}/features?skip=100`);
  assertEquals(beyond.body.features, []);
  const f0 = first.body.features[0];
  const r0 = fx.records.get(0)!.analyses.default!;
  assertEquals(f0, {
    index: 0,
    act_times: r0.act_times,
    max_activation: r0.max_activation,
    n_analyzed_tokens: fx.nTokens,
    interpretation_text: "The word cat and other small animals",
    frequency: r0.act_times / fx.nTokens,
  });
});

listTest("GET .../features sorts by index, act_times and max in both orders", async (get, fx) => {
  const all = [...fx.records.keys()].sort((a, b) => a - b);
  const cases: [string, number[]][] = [
    ["sort=index&order=desc", [...all].reverse()],
    ["sort=act_times", expectedOrder(fx, "act_times", "desc")],
    ["sort=act_times&order=asc", expectedOrder(fx, "act_times", "asc")],
    ["sort=max", expectedOrder(fx, "max_activation", "desc")],
    ["sort=max&order=asc", expectedOrder(fx, "max_activation", "asc")],
  ];
  for (const [query, expected] of cases) {
    const { status, body } = await get(`${base}/features?${query}&limit=500`);
    assertEquals(status, 200, query);
    assertEquals(body.features.map((f: { index: number }) => f.index), expected, query);
  }
  const page = await get(`${base}/features?sort=act_times&skip=3&limit=4`);
  assertEquals(
    page.body.features.map((f: { index: number }) => f.index),
    expectedOrder(fx, "act_times", "desc").slice(3, 7),
  );
});

listTest(
  "GET .../features filters alive and dead features and searches explanations",
  async (get, fx) => {
    const dead = await get(`${base}/features?alive=false`);
    assertEquals(dead.body.features.map((f: { index: number }) => f.index), [fx.deadIndex]);
    assertEquals(dead.body.total, 1);
    const alive = await get(`${base}/features?alive=true&limit=500`);
    assertEquals(alive.body.total, fx.records.size - 1);
    assert(alive.body.features.every((f: { act_times: number }) => f.act_times > 0));

    const cat = await get(`${base}/features?q=CAT`);
    assertEquals(cat.body.features.map((f: { index: number }) => f.index), [0, 8]);
    assertEquals([cat.body.total, cat.body.q], [2, "cat"]);
    const catByMax = await get(`${base}/features?q=cat&sort=max&order=asc&limit=1&skip=1`);
    const order = expectedOrder(fx, "max_activation", "asc").filter((i) => i === 0 || i === 8);
    assertEquals(catByMax.body.features.map((f: { index: number }) => f.index), [order[1]]);
    assertEquals(catByMax.body.total, 2);
    const none = await get(`${base}/features?q=zebra`);
    assertEquals([none.body.total, none.body.features], [0, []]);
    const second = await get(`${base}/features?analysis=second&alive=true`);
    assertEquals(second.body.features.map((f: { index: number }) => f.index), [0, 1, 2]);
  },
);

apiTest(
  "GET .../features/:index returns the feature document with token strings",
  async (get, fx, store) => {
    const { status, body, res } = await get(`${base}/features/0`);
    assertEquals(status, 200);
    assertEquals(res.headers.get("cache-control"), "no-store");
    const stored = await store.getFeature("test", "tiny-sae", 0);
    assertEquals(body, JSON.parse(JSON.stringify(featureToJson(stored!, fx.vocab))));
    const top = body.analyses.default.samplings[0];
    assertEquals(top.name, "top_activations");
    assertEquals(top.samples[0].token_strings.slice(1, 5), [" the", " cat", " sat", " on"]);
    assertEquals(Object.keys(body.analyses), ["default", "second"]);
    const xss = await get(`${base}/features/${fx.xssIndex}`);
    assertEquals(xss.body.analyses.default.samplings[0].samples[0].token_strings.slice(0, 4), [
      " the",
      XSS_SCRIPT,
      " cat",
      XSS_IMG,
    ]);
  },
);

apiTest(
  "unknown SAEs, analyses, features and routes answer 404 with a JSON error",
  async (get, fx) => {
    const cases: [string, string][] = [
      ["/api/saes/test/nope", "Unknown SAE test/nope"],
      ["/api/saes/nope/tiny-sae/features", "Unknown SAE nope/tiny-sae"],
      ["/api/saes/test/nope/features/0", "Unknown SAE test/nope"],
      [`${base}/features/16`, "Feature 16 does not exist: SAE test/tiny-sae has 16 features"],
      [
        `${base}/features/${fx.missingIndex}`,
        `Feature ${fx.missingIndex} of SAE test/tiny-sae is not in the store`,
      ],
      [
        `${base}/features?analysis=third`,
        'Unknown analysis "third" of SAE test/tiny-sae (known: default, second)',
      ],
      [
        `${base}/frequencies?analysis=third`,
        'Unknown analysis "third" of SAE test/tiny-sae (known: default, second)',
      ],
      [`${base}/nothing`, `No API route ${base}/nothing`],
      ["/api/other", "No API route /api/other"],
      ["/nowhere", "Not found: /nowhere"],
      ["/assets/nope.js", "Not found: /assets/nope.js"],
    ];
    for (const [path, error] of cases) {
      const { status, body, res } = await get(path);
      assertEquals(status, 404, path);
      assertEquals(res.headers.get("content-type"), "application/json; charset=utf-8", path);
      assertEquals(body, { error }, path);
    }
  },
);

apiTest("bad query values and paths answer 400 naming the value", async (get) => {
  const cases: [string, string][] = [
    [`${base}/features?sort=name`, 'Invalid sort "name": expected index, act_times or max'],
    [`${base}/features?order=up`, 'Invalid order "up": expected asc or desc'],
    [
      `${base}/features?skip=-1`,
      'Invalid skip "-1": expected an integer from 0 to 9007199254740991',
    ],
    [
      `${base}/features?skip=1.5`,
      'Invalid skip "1.5": expected an integer from 0 to 9007199254740991',
    ],
    [`${base}/features?limit=0`, 'Invalid limit "0": expected an integer from 1 to 500'],
    [`${base}/features?limit=501`, 'Invalid limit "501": expected an integer from 1 to 500'],
    [`${base}/features?limit=ten`, 'Invalid limit "ten": expected an integer from 1 to 500'],
    [`${base}/features?alive=maybe`, 'Invalid alive "maybe": expected true, false or all'],
    [`${base}/features?analysis=`, 'Invalid analysis "": expected a name'],
    [`${base}/features?q=${"x".repeat(201)}`, "Invalid q: longer than 200 characters"],
    [`${base}/features/-1`, 'Invalid feature index "-1": expected an integer >= 0'],
    [`${base}/features/1e3`, 'Invalid feature index "1e3": expected an integer >= 0'],
    [
      `${base}/features/99999999999`,
      'Invalid feature index "99999999999": expected an integer >= 0',
    ],
    [`${base}/frequencies?bins=0`, 'Invalid bins "0": expected an integer from 1 to 1000'],
    [`${base}/random?alive=sometimes`, 'Invalid alive "sometimes": expected true, false or all'],
    ["/api/saes/test/%E0%A4%A/features", 'Invalid percent-encoding in path segment "%E0%A4%A"'],
  ];
  for (const [path, error] of cases) {
    const { status, body } = await get(path);
    assertEquals(status, 400, path);
    assertEquals(body, { error }, path);
  }
});

apiTest("GET .../frequencies bins log10 frequencies of the alive features", async (get, fx) => {
  const { status, body } = await get(`${base}/frequencies?bins=10`);
  assertEquals(status, 200);
  assertEquals([body.total, body.alive, body.dead], [fx.records.size, fx.records.size - 1, 1]);
  assertEquals(body.n_analyzed_tokens, fx.nTokens);
  assertEquals([body.edges.length, body.counts.length], [11, 10]);
  assertEquals(body.counts.reduce((a: number, b: number) => a + b, 0), fx.records.size - 1);
  const logs = [...fx.records.values()]
    .map((r) => r.analyses.default!.act_times)
    .filter((n) => n > 0)
    .map((n) => Math.log10(n / fx.nTokens));
  assert(Math.abs(body.edges[0] - Math.min(...logs)) < 1e-12);
  assert(Math.abs(body.edges[10] - Math.max(...logs)) < 1e-12);
});

apiTest(
  "GET .../random picks alive features by default and dead ones when asked",
  async (get, fx) => {
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const { status, body } = await get(`${base}/random`);
      assertEquals(status, 200);
      assert(fx.records.has(body.index) && body.index !== fx.deadIndex, `picked ${body.index}`);
      seen.add(body.index);
    }
    assert(seen.size > 3, `random picked only ${[...seen]}`);
    const dead = await get(`${base}/random?alive=false`);
    assertEquals(dead.body, { index: fx.deadIndex });
    const none = await get(`${base}/random?alive=false&analysis=second`);
    assertEquals(none.body, { index: fx.deadIndex });
  },
);

apiTest("nothing writes: methods other than GET and HEAD answer 405", async (get, fx, store) => {
  for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
    const { status, body } = await get(`${base}/features/0`, {
      method,
      body: method === "DELETE" ? null : "{}",
    });
    assertEquals(status, 405, method);
    assertEquals(body, { error: `Method ${method} not allowed: the viewer is read-only` });
  }
  assertEquals(await store.countFeatures({ series: "test", name: "tiny-sae" }), fx.records.size);
});

apiTest("page routes serve the page with a strict content security policy", async (get) => {
  for (const path of ["/", "/sae/test/tiny-sae", "/sae/test/tiny-sae/feature/5"]) {
    const { status, body, res } = await get(path);
    assertEquals(status, 200, path);
    assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert(String(body).includes('<script type="module" src="/assets/app.js">'), path);
    const csp = res.headers.get("content-security-policy") ?? "";
    assert(csp.includes("script-src 'self'") && !csp.includes("unsafe"), csp);
  }
  const js = await get("/assets/app.js");
  assertEquals(js.res.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert(
    !/innerHTML|outerHTML|insertAdjacentHTML|document\.write/.test(js.body),
    "app.js must not write HTML",
  );
  const css = await get("/assets/app.css");
  assertEquals([css.status, css.res.headers.get("content-type")], [200, "text/css; charset=utf-8"]);
});

Deno.test("serveViewer() binds loopback and refuses foreign Host headers", async () => {
  await withViewer(async ({ server }) => {
    assertEquals(server.addr.hostname, "127.0.0.1");
    const ok = await fetch(`${server.url}/api/saes`);
    assertEquals(ok.status, 200);
    await ok.body?.cancel();
    const local = await fetch(`http://localhost:${server.addr.port}/api/saes`);
    assertEquals(local.status, 200);
    await local.body?.cancel();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(
      new TextEncoder().encode(
        "GET /api/saes HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
      ),
    );
    const chunks: Uint8Array[] = [];
    for await (const c of conn.readable) chunks.push(c);
    const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    assert(text.startsWith("HTTP/1.1 403"), text.slice(0, 40));
    assert(text.includes('{"error":"Host \\"evil.example\\" is not allowed"}'), text);
  });
});

mongoTest("the API answers the same over MongoDB as over SQLite", async ({ store: mongo }) => {
  await fillStore(mongo);
  await withFilledStore(async (sqlite, fx) => {
    const fromMongo = getter(mongo);
    const fromSqlite = getter(sqlite);
    const paths = [
      "/api/saes",
      base,
      `${base}?analysis=second`,
      `${base}/features?sort=act_times&limit=7&skip=2`,
      `${base}/features?sort=max&order=asc&alive=true`,
      `${base}/features?alive=false`,
      `${base}/features?q=cat`,
      `${base}/features/0`,
      `${base}/features/${fx.xssIndex}`,
      `${base}/features/${fx.missingIndex}`,
      `${base}/frequencies?bins=7`,
      `${base}/features?analysis=third`,
    ];
    for (const path of paths) {
      const [a, b] = await Promise.all([fromMongo(path), fromSqlite(path)]);
      assertEquals([a.status, a.body], [b.status, b.body], path);
    }
  });
});
