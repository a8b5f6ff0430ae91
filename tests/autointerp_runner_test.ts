/**
 * The `autointerp` runner against a local OpenAI-compatible server (tests/_openai_server.ts) and
 * a real store (SQLite in a temporary folder; MongoDB when `MONGO_URI` is set): interpretations
 * stored, dead and interpreted features skipped, an interrupted run resumed with every feature
 * interpreted once, failures retried by the next run, and the API key never leaking.
 */

import assert from "node:assert/strict";
import { ConfigError, InterruptedError } from "../lib/errors.ts";
import { parseSettings } from "../lib/settings/mod.ts";
import type { AutoInterpSettings } from "../lib/settings/mod.ts";
import { type FeatureStore, featureToJson } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { LLMUnavailableError } from "../lib/autointerp/client.ts";
import {
  autoInterp,
  AutoInterpFailedError,
  type AutoInterpRunOptions,
} from "../pipelines/autointerp.ts";
import { openSettingsStore } from "../pipelines/_store.ts";
import { type CliResult, hasStackTrace, runCli } from "./_cli_utils.ts";
import {
  CAT_EXPLANATION,
  catFeature,
  closedPortURL,
  type FakeOpenAIServer,
  featureOf,
  rejection,
  scriptedLlm,
  type ScriptOptions,
  startClosingListener,
  startOpenAIServer,
  taskOf,
  TEST_VOCAB,
} from "./_openai_server.ts";
import { mongoIgnored, withMongo, withTempDir } from "./_utils.ts";

const SECRET = "sk-runner-SECRET-0123456789abcdef";
const SERIES = "test";
const NAME = "test-sae";
const LIVE = [0, 1, 2, 3, 4, 5];
const DEAD = 6;

/** Settings as the CLI would load them: TOML text, the key from `OPENAI_API_KEY`. */
function loadSettings(
  server: FakeOpenAIServer,
  where: { outputDir: string } | { uri: string; db: string },
  extra: { top?: string; autoInterp?: string } = {},
): AutoInterpSettings {
  const store = "outputDir" in where
    ? `output_dir = ${JSON.stringify(where.outputDir)}`
    : `output_dir = "unused"\n`;
  const mongo = "uri" in where
    ? `[mongo]\nmongo_uri = ${JSON.stringify(where.uri)}\nmongo_db = ${JSON.stringify(where.db)}\n`
    : "";
  const text = `
sae_name = "${NAME}"
sae_series = "${SERIES}"
model_name = "test-model"
${store}
${extra.top ?? ""}

[model]
model_name = "test-model"

[auto_interp]
openai_base_url = ${JSON.stringify(server.baseURL)}
openai_model = "scripted"
request_timeout = 0.5
retry_base_delay = 0.005
retry_max_delay = 0.02
${extra.autoInterp ?? ""}
${mongo}`;
  return parseSettings(text, "autointerp.toml", "autointerp", {
    env: { OPENAI_API_KEY: SECRET },
    cwd: "/tmp",
  });
}

/** Six live `cat` features, one dead one, the model's vocabulary and the SAE document. */
async function fill(store: FeatureStore): Promise<void> {
  await store.putModel({ name: "test-model", config: {}, vocab: TEST_VOCAB });
  await store.putSae({
    name: NAME,
    series: SERIES,
    path: "/saes/test",
    config: {},
    d_sae: 16,
    d_model: 8,
    hook_point: "blocks.0.hook_resid_post",
    model: "test-model",
  });
  await store.writeFeatures([
    ...LIVE.map((i) => catFeature(i)),
    catFeature(DEAD, { dead: true }),
  ]);
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

async function interpreted(store: FeatureStore): Promise<FeatureRecord[]> {
  const all = await Array.fromAsync(store.readFeatures(SERIES, NAME));
  return all.filter((r) => r.interpretation !== undefined);
}

/** Explain requests per feature index. */
function explainCounts(server: FakeOpenAIServer): Map<number, number> {
  const counts = new Map<number, number>();
  for (const body of server.bodies) {
    if (taskOf(body) !== "explain") continue;
    const f = featureOf(body)!;
    counts.set(f, (counts.get(f) ?? 0) + 1);
  }
  return counts;
}

async function noSecretIn(store: FeatureStore, texts: string[]): Promise<void> {
  for (const text of texts) assert.ok(!text.includes(SECRET), `the key leaked: ${text}`);
  const all = await Array.fromAsync(store.readFeatures(SERIES, NAME));
  for (const r of all) {
    const doc = await store.getFeature(SERIES, NAME, r.index);
    assert.ok(!JSON.stringify(featureToJson(doc!, TEST_VOCAB)).includes(SECRET));
  }
}

/** The main contract against one store. */
async function runnerContract(
  t: Deno.TestContext,
  store: FeatureStore,
  where: { outputDir: string } | { uri: string; db: string },
) {
  await fill(store);
  await withServer({}, async (server) => {
    const lines: string[] = [];
    const settings = loadSettings(server, where, { top: "max_workers = 3" });

    await t.step("live features get interpretations; the dead one is skipped", async () => {
      const summary = await autoInterp(settings, {
        log: (l) => lines.push(l),
        progressIntervalMs: 0,
      });
      assert.equal(summary.done, LIVE.length);
      assert.equal(summary.passed, LIVE.length);
      assert.equal(summary.failed, 0);
      assert.equal(summary.skipped_dead, 1);
      assert.equal(summary.skipped_existing, 0);
      assert.equal(summary.stored, LIVE.length);
      assert.equal(summary.features, LIVE.length + 1);
      assert.equal(summary.location, store.location);
      const done = await interpreted(store);
      assert.deepEqual(done.map((r) => r.index), LIVE);
      for (const r of done) {
        assert.equal(r.interpretation!.text, CAT_EXPLANATION);
        assert.equal(r.interpretation!.model, "scripted");
        assert.equal(r.interpretation!.passed, true);
        assert.equal(r.analyses["default"]?.act_times, 14, "the analysis is kept");
      }
      assert.equal((await store.getFeature(SERIES, NAME, DEAD))?.interpretation, undefined);
      assert.ok(server.maxInFlight <= 3, `at most max_workers requests: ${server.maxInFlight}`);
    });

    await t.step("progress and a summary with tokens are logged", () => {
      assert.match(lines[0]!, /^auto-interp: \d\/7 features {2}\S+ features\/s {2}elapsed /);
      assert.match(
        lines.at(-1)!,
        /^auto-interp: 6 done \(6 passed\), 0 failed, 1 dead and 0 already interpreted skipped, \d+ tokens .*; in .*, stored in /,
      );
    });

    await t.step("the API key is sent, but never logged or stored", async () => {
      assert.ok(server.authorizations.every((a) => a === `Bearer ${SECRET}`));
      await noSecretIn(store, lines);
    });

    await t.step("a second run skips everything and sends nothing", async () => {
      const before = server.requests;
      const summary = await autoInterp(settings, { log: () => {} });
      assert.equal(summary.skipped_existing, LIVE.length);
      assert.equal(summary.done, 0);
      assert.equal(server.requests, before);
    });

    await t.step("overwrite_existing interprets the selected features again", async () => {
      const again = loadSettings(server, where, { autoInterp: "overwrite_existing = true" });
      const summary = await autoInterp(again, { features: [2, 4], log: () => {} });
      assert.equal(summary.done, 2);
      assert.equal(summary.skipped_existing, 0);
      const counts = explainCounts(server);
      assert.deepEqual(LIVE.map((i) => counts.get(i)), [1, 1, 2, 1, 2, 1]);
    });
  });
}

Deno.test("autointerp runner interprets stored features into the SQLite store", async (t) => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await runnerContract(t, store, { outputDir: dir });
  });
});

const MONGO_NAME = "autointerp runner interprets stored features into MongoDB";
Deno.test({
  name: MONGO_NAME,
  ignore: mongoIgnored(MONGO_NAME),
  fn: (t) => withMongo(t, ({ uri, db, store }) => runnerContract(t, store, { uri, db })),
});

Deno.test("an interrupted autointerp run resumes where it stopped: every feature is interpreted once", async () => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await fill(store);
    await withServer({ delayMs: 2 }, async (server) => {
      const settings = loadSettings(server, { outputDir: dir }, { top: "max_workers = 1" });
      const stop = new AbortController();
      let completed = 0;
      const first: AutoInterpRunOptions = {
        signal: stop.signal,
        log: () => {},
        onFeature: (e) => {
          if (e.status === "done" && ++completed === 3) stop.abort("SIGINT");
        },
      };
      // As Ctrl-C does through the CLI (withSignals): exit 130 and one line.
      const error = await rejection(() => autoInterp(settings, first));
      assert.ok(error instanceof InterruptedError, String(error));
      assert.equal(error.exitCode, 130);
      assert.equal(
        error.message,
        "autointerp: stopped by SIGINT; 3 interpretations are stored, a later run does the rest",
      );
      assert.deepEqual((await interpreted(store)).map((r) => r.index), [0, 1, 2]);

      const summary = await autoInterp(settings, { log: () => {} });
      assert.equal(summary.done, LIVE.length - 3);
      assert.equal(summary.skipped_existing, 3);
      assert.equal(summary.skipped_dead, 1);
      assert.deepEqual((await interpreted(store)).map((r) => r.index), LIVE);
      const counts = explainCounts(server);
      assert.deepEqual(LIVE.map((i) => counts.get(i)), LIVE.map(() => 1), "one explanation each");
    });
  });
});

Deno.test("an autointerp run interrupted with several features in flight loses none and stores each once", async () => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await fill(store);
    await withServer({ delayMs: 5 }, async (server) => {
      const settings = loadSettings(server, { outputDir: dir }, { top: "max_workers = 3" });
      const stop = new AbortController();
      let done = 0;
      const first = await rejection(() =>
        autoInterp(settings, {
          signal: stop.signal,
          log: () => {},
          onFeature: (e) => {
            if (e.status === "done") done++;
            if (done === 2) stop.abort(new Error("interrupted"));
          },
        })
      );
      assert.equal((first as Error).message, "interrupted");
      const kept = (await interpreted(store)).map((r) => r.index);
      assert.equal(kept.length, done, "every finished interpretation was written");

      const summary = await autoInterp(settings, { log: () => {} });
      assert.equal(summary.done + kept.length, LIVE.length);
      assert.deepEqual((await interpreted(store)).map((r) => r.index), LIVE);
      const counts = explainCounts(server);
      for (const i of kept) assert.equal(counts.get(i), 1, `feature ${i} explained once`);
      const redone = LIVE.filter((i) => (counts.get(i) ?? 0) > 1);
      assert.ok(redone.length <= 2, `only features in flight are asked again: ${redone}`);
    });
  });
});

Deno.test("features whose interpretation failed are recorded without the key and retried by the next run", async () => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await fill(store);
    let broken = true;
    const lines: string[] = [];
    await withServer({
      override: (body) => {
        if (!broken || featureOf(body) !== 1) return undefined;
        // A 400 fails only this feature (a 401 would stop the run: see the tests below).
        return { status: 400, body: JSON.stringify({ error: { message: `bad key ${SECRET}` } }) };
      },
    }, async (server) => {
      const settings = loadSettings(server, { outputDir: dir }, { autoInterp: "max_retries = 0" });
      const first = await autoInterp(settings, { log: (l) => lines.push(l) });
      assert.equal(first.failed, 1);
      assert.equal(first.done, LIVE.length - 1);
      const failed = await store.getFeature(SERIES, NAME, 1);
      assert.match(failed?.interpretation?.error ?? "", /HTTP 400: 400 bad key \*\*\*/);
      assert.equal(failed?.interpretation?.passed, false);
      assert.ok(lines.some((l) => l.startsWith("auto-interp: feature 1 failed")));
      await noSecretIn(store, lines);

      broken = false;
      const second = await autoInterp(settings, { log: (l) => lines.push(l) });
      assert.equal(second.done, 1);
      assert.equal(second.skipped_existing, LIVE.length - 1);
      const fixed = await store.getFeature(SERIES, NAME, 1);
      assert.equal(fixed?.interpretation?.text, CAT_EXPLANATION);
      assert.equal(fixed?.interpretation?.error, undefined);
    });
  });
});

Deno.test("autointerp runner selects features by list, range and top_k_features", async (t) => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await fill(store);
    // Feature 3 fires most often, then 5.
    await store.writeFeatures([3, 5].map((i, k) => {
      const r = catFeature(i, { nTop: 12 - k });
      return r;
    }));
    await withServer({}, async (server) => {
      const at = { outputDir: dir };
      await t.step("feature_range, both ends included", async () => {
        const s = await autoInterp(loadSettings(server, at, { top: "feature_range = [1, 2]" }), {
          log: () => {},
        });
        assert.equal(s.done, 2);
        assert.deepEqual((await interpreted(store)).map((r) => r.index), [1, 2]);
      });
      await t.step("top_k_features, by act_times", async () => {
        const s = await autoInterp(loadSettings(server, at, { top: "top_k_features = 2" }), {
          log: () => {},
        });
        assert.equal(s.done, 2);
        assert.deepEqual((await interpreted(store)).map((r) => r.index), [1, 2, 3, 5]);
      });
      await t.step("an explicit list, with a feature the store lacks", async () => {
        const lines: string[] = [];
        const s = await autoInterp(loadSettings(server, at), {
          features: [0, 6, 9],
          log: (l) => lines.push(l),
        });
        assert.equal(s.done, 1);
        assert.equal(s.skipped_dead, 1);
        assert.equal(s.missing, 1);
        assert.ok(
          lines.includes(
            'auto-interp: 1 of the 3 selected features have no analysis "default" in the store; skipped',
          ),
        );
      });
    });
  });
});

Deno.test("autointerp runner refuses a store without analyzed features", async () => {
  await withTempDir(async (dir) => {
    await withServer({}, async (server) => {
      const error = await rejection(() =>
        autoInterp(loadSettings(server, { outputDir: dir }), { log: () => {} })
      );
      assert.ok(error instanceof ConfigError);
      assert.equal(
        error.message,
        `No features of test/test-sae with analysis "default" in ${dir}/saeflow.sqlite: ` +
          "run saeflow analyze first",
      );
      assert.equal(server.requests, 0);
    });
  });
});

Deno.test({
  name: "autointerp runner without an API key fails with a ConfigError naming the setting",
  ignore: Deno.env.get("OPENAI_API_KEY") !== undefined,
  fn: async () => {
    await withTempDir(async (dir) => {
      await using store = await openSettingsStore({ mongo: null, output_dir: dir });
      await fill(store);
      const settings = parseSettings(
        `sae_name = "${NAME}"\nsae_series = "${SERIES}"\nmodel_name = "m"\n` +
          `output_dir = ${JSON.stringify(dir)}\n[model]\n[auto_interp]\n`,
        "autointerp.toml",
        "autointerp",
        { env: {} },
      );
      const error = await rejection(() => autoInterp(settings, { log: () => {} }));
      assert.ok(error instanceof ConfigError);
      assert.equal(
        error.message,
        "auto_interp.openai_api_key: no API key: set OPENAI_API_KEY or auto_interp.openai_api_key (or openai_base_url for a local endpoint)",
      );
    });
  },
});

// --- Through the CLI ---------------------------------------------------------------------------

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const CLI_NAME =
  "saeflow autointerp CONFIG --features interprets them with the key from the environment";
async function cli(args: string[], cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    cwd,
    env: { MONGO_URI: "", NO_COLOR: "1", OPENAI_API_KEY: SECRET },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: CLI_NAME,
  fn: async () => {
    await withTempDir(async (dir) => {
      {
        await using store = await openSettingsStore({ mongo: null, output_dir: `${dir}/out` });
        await fill(store);
      }
      await withServer({}, async (server) => {
        const config = `${dir}/autointerp.toml`;
        await Deno.writeTextFile(
          config,
          [
            `sae_name = "${NAME}"`,
            `sae_series = "${SERIES}"`,
            `model_name = "test-model"`,
            `output_dir = "out"`,
            `[model]`,
            `[auto_interp]`,
            `openai_base_url = ${JSON.stringify(server.baseURL)}`,
            `openai_model = "scripted"`,
          ].join("\n"),
        );
        const run = await cli(["autointerp", config, "--features", "0,3"], dir);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stderr, /auto-interp: 2 done \(2 passed\), 0 failed/);
        assert.ok(!run.stderr.includes(SECRET) && !run.stdout.includes(SECRET));
        assert.ok(server.authorizations.every((a) => a === `Bearer ${SECRET}`));
        assert.deepEqual([...explainCounts(server).keys()].sort(), [0, 3]);

        const show = await cli(
          ["show", "feature", NAME, "3", "--series", SERIES, "--output-dir", "out", "--json"],
          dir,
        );
        assert.equal(show.code, 0, show.stderr);
        assert.ok(!show.stdout.includes(SECRET));
        assert.equal(JSON.parse(show.stdout).interpretation.text, CAT_EXPLANATION);
      });
    });
  },
});

// --- Failing loudly -----------------------------------------------------------------------------

/**
 * The run against an endpoint that refuses the key from feature 2 on (max_workers = 1): it
 * stops there, keeps features 0 and 1, records nothing for feature 2, sends nothing more, and
 * names the base URL but never the key; the next run against a working endpoint does the rest.
 */
async function unusableEndpointContract(
  store: FeatureStore,
  where: { outputDir: string } | { uri: string; db: string },
) {
  await fill(store);
  let refuse = true;
  await withServer({
    override: (body) =>
      refuse && featureOf(body) === 2
        ? { status: 401, body: JSON.stringify({ error: { message: `bad key ${SECRET}` } }) }
        : undefined,
  }, async (server) => {
    const settings = loadSettings(server, where, { top: "max_workers = 1" });
    const lines: string[] = [];
    const error = await rejection(() => autoInterp(settings, { log: (l) => lines.push(l) }));
    assert.ok(error instanceof AutoInterpFailedError, String(error));
    assert.equal(error.name, "AutoInterpFailedError");
    assert.equal(
      error.message,
      `autointerp: the LLM at ${server.baseURL} refused the API key (401 Unauthorized); ` +
        "nothing more was sent",
    );
    assert.ok(error.cause instanceof LLMUnavailableError);
    assert.equal(error.summary.done, 2);
    assert.equal(error.summary.stored, 2);
    assert.equal(featureOf(server.bodies.at(-1)!), 2, "nothing was sent after feature 2's 401");
    assert.deepEqual((await interpreted(store)).map((r) => r.index), [0, 1]);
    assert.match(
      lines.at(-1)!,
      /^auto-interp: 2 done \(2 passed\), 0 failed, .*; stopped after .*, 2 interpretations stored in /,
    );
    await noSecretIn(store, [...lines, error.message, error.stack ?? "", String(error.cause)]);

    refuse = false;
    const again = await autoInterp(settings, { log: () => {} });
    assert.equal(again.done, LIVE.length - 2);
    assert.equal(again.skipped_existing, 2);
    assert.deepEqual((await interpreted(store)).map((r) => r.index), LIVE);
  });
}

Deno.test("an autointerp run whose API key is refused stops at once and keeps what finished (SQLite)", async () => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await unusableEndpointContract(store, { outputDir: dir });
  });
});

const MONGO_REFUSED =
  "an autointerp run whose API key is refused stops at once and keeps what finished (MongoDB)";
Deno.test({
  name: MONGO_REFUSED,
  ignore: mongoIgnored(MONGO_REFUSED),
  fn: (t) => withMongo(t, ({ uri, db, store }) => unusableEndpointContract(store, { uri, db })),
});

Deno.test("an autointerp run in which every feature failed rejects, with the failures stored", async () => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await fill(store);
    await withServer({
      override: (body) => taskOf(body) === "explain" ? { content: "no JSON here" } : undefined,
    }, async (server) => {
      const lines: string[] = [];
      const error = await rejection(() =>
        autoInterp(loadSettings(server, { outputDir: dir }), { log: (l) => lines.push(l) })
      );
      assert.ok(error instanceof AutoInterpFailedError, String(error));
      assert.equal(error.cause, undefined);
      assert.match(
        error.message,
        /^autointerp: all 6 features sent to the LLM failed, none was interpreted; feature \d: explanation: /,
      );
      assert.equal(error.summary.failed, LIVE.length);
      assert.equal(error.summary.stored, LIVE.length);
      assert.match(lines.at(-1)!, /^auto-interp: 0 done \(0 passed\), 6 failed, 1 dead /);
      const stored = await interpreted(store);
      assert.deepEqual(stored.map((r) => r.index), LIVE);
      assert.ok(stored.every((r) => r.interpretation!.error?.startsWith("explanation: ")));
    });
  });
});

/** Writes `autointerp.toml` for the CLI (store in `out/`, fast retries) and fills the store. */
async function cliSetup(
  dir: string,
  baseURL: string,
  extra: { top?: string[]; autoInterp?: string[] } = {},
): Promise<string> {
  {
    await using store = await openSettingsStore({ mongo: null, output_dir: `${dir}/out` });
    await fill(store);
  }
  const config = `${dir}/autointerp.toml`;
  await Deno.writeTextFile(
    config,
    [
      `sae_name = "${NAME}"`,
      `sae_series = "${SERIES}"`,
      `model_name = "test-model"`,
      `output_dir = "out"`,
      ...extra.top ?? [],
      `[model]`,
      `[auto_interp]`,
      `openai_base_url = ${JSON.stringify(baseURL)}`,
      `openai_model = "scripted"`,
      `retry_base_delay = 0.005`,
      `retry_max_delay = 0.02`,
      ...extra.autoInterp ?? [],
    ].join("\n"),
  );
  return config;
}

/** Runs the CLI with the shipped permissions and the key in `OPENAI_API_KEY`. */
function cliRun(args: string[], dir: string): Promise<CliResult> {
  return runCli(args, { cwd: dir, env: { OPENAI_API_KEY: SECRET } });
}

/** The stderr lines that name `url`: there must be exactly one, the last, and no key. */
function failureLine(run: CliResult, url: string): string {
  const context = `exit ${run.code}; stderr:\n${run.stderr}`;
  assert.equal(run.code, 1, context);
  assert.ok(!run.stderr.includes(SECRET) && !run.stdout.includes(SECRET), "the key leaked");
  assert.ok(!hasStackTrace(run.stderr), context);
  const lines = run.stderr.split("\n").filter((l) => l.trim() !== "");
  const naming = lines.filter((l) => l.includes(url));
  assert.equal(naming.length, 1, `one line should name ${url}: ${context}`);
  assert.equal(naming[0], lines.at(-1), context);
  return naming[0]!;
}

async function storedAt(dir: string): Promise<FeatureRecord[]> {
  await using store = await openSettingsStore({ mongo: null, output_dir: `${dir}/out` });
  await noSecretIn(store, []);
  return await interpreted(store);
}

Deno.test("saeflow autointerp against a closed port exits 1 after the first features' retries, naming the base URL", async () => {
  await withTempDir(async (dir) => {
    const url = closedPortURL();
    const config = await cliSetup(dir, url, {
      top: ["max_workers = 3"],
      autoInterp: ["max_retries = 2"],
    });
    const run = await cliRun(["autointerp", config], dir);
    assert.equal(
      failureLine(run, url),
      `saeflow: autointerp: cannot reach the LLM at ${url} (connection refused) after 3 attempts; ` +
        "nothing more was sent",
    );
    // Retries of the (at most 3) features in flight, none of the other 3; no "failed" feature.
    const retries = run.stderr.split("\n").filter((l) => /attempt \d failed/.test(l));
    assert.ok(retries.length >= 2 && retries.length <= 3 * 2, run.stderr);
    assert.ok(retries.every((l) => l.includes("(connection failed: connection refused)")));
    assert.doesNotMatch(run.stderr, /feature \d failed/);
    assert.match(run.stderr, /auto-interp: 0 done \(0 passed\), 0 failed, .*; stopped after /);
    assert.deepEqual(await storedAt(dir), [], "nothing is recorded for an endpoint never reached");
  });
});

Deno.test("saeflow autointerp stops after the first feature's attempts when every connection is dropped", async () => {
  await withTempDir(async (dir) => {
    const port = startClosingListener();
    try {
      const config = await cliSetup(dir, port.baseURL, {
        top: ["max_workers = 1"],
        autoInterp: ["max_retries = 2"],
      });
      const run = await cliRun(["autointerp", config], dir);
      assert.equal(
        failureLine(run, port.baseURL),
        `saeflow: autointerp: cannot reach the LLM at ${port.baseURL} (connection closed before ` +
          "message completed) after 3 attempts; nothing more was sent",
      );
      assert.equal(port.connections, 3, "the first feature's 3 attempts, none for the other 5");
    } finally {
      await port.close();
    }
  });
});

Deno.test("saeflow autointerp whose API key is refused exits 1 after one request per feature in flight", async () => {
  await withTempDir(async (dir) => {
    const echo = JSON.stringify({ error: { message: `Incorrect API key provided: ${SECRET}` } });
    await withServer({ override: () => ({ status: 401, body: echo }) }, async (server) => {
      const config = await cliSetup(dir, server.baseURL, { top: ["max_workers = 2"] });
      const run = await cliRun(["autointerp", config], dir);
      assert.equal(
        failureLine(run, server.baseURL),
        `saeflow: autointerp: the LLM at ${server.baseURL} refused the API key ` +
          "(401 Unauthorized); nothing more was sent",
      );
      assert.ok(server.authorizations.every((a) => a === `Bearer ${SECRET}`));
      assert.ok(server.requests >= 1 && server.requests <= 2, `${server.requests} requests`);
      assert.deepEqual(await storedAt(dir), []);
    });
  });
});

Deno.test("saeflow autointerp exits 1 when every feature failed and 0 when only some did", async (t) => {
  await t.step("all failed", async () => {
    await withTempDir(async (dir) => {
      await withServer({
        override: (body) => taskOf(body) === "explain" ? { content: "not JSON" } : undefined,
      }, async (server) => {
        const config = await cliSetup(dir, server.baseURL);
        const run = await cliRun(["autointerp", config], dir);
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, /auto-interp: 0 done \(0 passed\), 6 failed, 1 dead /);
        assert.match(
          run.stderr.trimEnd().split("\n").at(-1)!,
          /^saeflow: autointerp: all 6 features sent to the LLM failed, none was interpreted; feature \d: explanation: the answer is not valid JSON/,
        );
        assert.ok(!run.stderr.includes(SECRET));
        assert.equal((await storedAt(dir)).length, LIVE.length, "the failures are stored");
      });
    });
  });

  await t.step("some failed: unchanged, exit 0 with the count", async () => {
    await withTempDir(async (dir) => {
      await withServer({
        override: (body) =>
          featureOf(body) === 1 && taskOf(body) === "explain" ? { content: "not JSON" } : undefined,
      }, async (server) => {
        const config = await cliSetup(dir, server.baseURL);
        const run = await cliRun(["autointerp", config], dir);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stderr, /auto-interp: 5 done \(5 passed\), 1 failed, 1 dead /);
        assert.match(run.stderr, /auto-interp: feature 1 failed: explanation: /);
        assert.doesNotMatch(run.stderr, /saeflow: /);
      });
    });
  });
});
