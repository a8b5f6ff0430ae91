/**
 * The `saeflow` command line as a user meets it: the real `cli.ts` run as a subprocess with the
 * permissions deno.json ships (`deno task analyze`), in temporary working directories.
 *
 * Covered: `--help` of every command; the seed's TOML loading unchanged; bad configurations,
 * usage errors and bad inputs (model, tokenizer, dataset, SAE) each giving exit 2 and one line
 * `saeflow: <message>` without a stack trace (unless `--verbose`), and storing no features;
 * secrets never printed; `show feature` (readable and `--json`), `remove analysis`, `remove sae`
 * against a store filled by a real demo run (SQLite, and MongoDB when `MONGO_URI` is set); an
 * unreachable MongoDB giving exit 1 within the timeout; `inspect model|sae`.
 *
 * One demo run (`saeflow analyze` with no argument) is shared by the store tests.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { openStore } from "../lib/store/mod.ts";
import { DEMO_CONFIG_PATH } from "../lib/settings/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import {
  assertCliError,
  assertOk,
  assertSameText,
  type CliResult,
  copyFolder,
  DEMO_SAE,
  hasStackTrace,
  runCli,
  runMany,
  scratchRoot,
  storedFor,
  TINY_NEOX,
  truncateCopy,
  writeSlicedSae,
} from "./_cli_utils.ts";
import { mongoIgnored, withMongo } from "./_utils.ts";

/** Parsed JSON or TOML output, checked field by field. */
// deno-lint-ignore no-explicit-any
type Json = any;

const SCRATCH = scratchRoot("cli");
let scratchCount = 0;
/** A new empty folder under the file's scratch root. */
async function scratch(label: string): Promise<string> {
  const dir = join(SCRATCH, `${label}-${scratchCount++}`);
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** The demo run shared by the store tests: `saeflow analyze` with no argument in a temp cwd. */
let demoRun: Promise<{ cwd: string; out: string; stdout: string }> | undefined;
function demo(): Promise<{ cwd: string; out: string; stdout: string }> {
  demoRun ??= (async () => {
    const cwd = await scratch("demo");
    const stdout = assertOk(await runCli(["analyze"], { cwd }), "the demo run");
    return { cwd, out: join(cwd, "analysis_results"), stdout };
  })();
  return demoRun;
}

/** A copy of the demo run's store folder, for tests that change it. */
async function demoStoreCopy(): Promise<string> {
  const { out } = await demo();
  return await copyFolder(out, await scratch("store"));
}

// The CLI block of the seed document (analyze-saes.md), verbatim: fixtures/seed/.
const SEED_TOML = await Deno.readTextFile(
  new URL("../fixtures/seed/analyze_config.toml", import.meta.url),
);

/** The seed's TOML with the one change a saeflow user makes: where the model files live. */
const SEED_WITH_MODEL = SEED_TOML.replace(
  'dtype = "torch.float16"\n',
  `dtype = "torch.float16"\nmodel_from_pretrained_path = ${JSON.stringify(TINY_NEOX)}\n`,
);

// ---------------------------------------------------------------------------------------------
// Help and usage

Deno.test("`--help` of saeflow and of every command exits 0 and prints its usage", async (t) => {
  const commands = [
    [],
    ["analyze"],
    ["dla"],
    ["autointerp"],
    ["show"],
    ["show", "feature"],
    ["inspect"],
    ["inspect", "model"],
    ["inspect", "sae"],
    ["remove"],
    ["remove", "analysis"],
    ["remove", "sae"],
    ["serve"],
  ];
  const results = await runMany(commands.map((c) => ({ args: [...c, "--help"] })));
  for (const [i, command] of commands.entries()) {
    await t.step(`saeflow ${[...command, "--help"].join(" ")}`, () => {
      const r = results[i]!;
      const out = assertOk(r, command.join(" "));
      assert.ok(
        out.startsWith(`Usage: saeflow${command.map((w) => ` ${w}`).join("")} [options]`),
        out,
      );
      assert.equal(r.stderr, "");
    });
  }
  await t.step("saeflow --version", async () => {
    assert.equal(assertOk(await runCli(["--version"]), "--version").trim(), "0.1.0");
  });
});

Deno.test("usage errors exit 2 with one `saeflow:` line, not commander's two", async (t) => {
  const cases: [string, string[], string][] = [
    [
      "an unknown command",
      ["frobnicate"],
      "unknown command 'frobnicate'; run saeflow --help for usage",
    ],
    ["a misspelt command", ["analyse"], "unknown command 'analyse'; did you mean analyze?"],
    [
      "an unknown option",
      ["analyze", "--nope"],
      "unknown option '--nope'; run saeflow --help for usage",
    ],
    [
      "a missing argument",
      ["show", "feature"],
      "missing required argument 'sae'; run saeflow --help for usage",
    ],
    [
      "a missing option value",
      ["analyze", "--set"],
      "option '--set <key=value>' argument missing; run saeflow --help for usage",
    ],
  ];
  const results = await runMany(cases.map(([, args]) => ({ args })));
  for (const [i, [name, , message]] of cases.entries()) {
    await t.step(name, () => {
      assertCliError(results[i]!, 2, message);
      assert.equal(results[i]!.stdout, "");
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Settings

Deno.test("the seed's TOML loads unchanged and `analyze --print-settings` shows it resolved", async () => {
  const cwd = await scratch("seed");
  await Deno.writeTextFile(join(cwd, "analyze_config.toml"), SEED_WITH_MODEL);
  const r = await runCli(["analyze", "analyze_config.toml", "--print-settings"], { cwd });
  const printed = parseToml(assertOk(r, "--print-settings")) as Json;
  assert.equal(r.stderr, "");
  assert.equal(printed.sae_name, "pythia-160m-sae");
  assert.equal(printed.sae_series, "pythia-sae");
  assert.equal(printed.output_dir, join(cwd, "analysis_results"));
  assert.equal(printed.sae.pretrained_name_or_path, "results", "a name, not a path: kept as is");
  assert.equal(printed.model.dtype, "float16", '"torch.float16" normalized');
  assert.equal(printed.model.device, "cuda");
  assert.equal(printed.model.model_from_pretrained_path, TINY_NEOX);
  assert.equal(printed.mongo.mongo_uri, "mongodb://localhost:27017/", '"localhost" normalized');
  assert.equal(printed.mongo.mongo_db, "mechinterp");
  assert.equal(printed.analyzer.total_analyzing_tokens, 10_000_000);
  assert.deepEqual(printed.activation_factory.hook_points, ["blocks.6.hook_resid_post"]);
  assert.equal(printed.activation_factory.context_size, 1024);
  assert.equal(printed.activation_factory.batch_size, 32);
  assert.deepEqual(printed.activation_factory.sources.map((s: { name: string }) => s.name), [
    "SlimPajama-3B",
  ]);
  assert.equal(
    printed.datasets["SlimPajama-3B"].dataset_name_or_path,
    "Hzfinfdu/SlimPajama-3B",
    "a Hub id, not a path: kept as is",
  );
});

Deno.test("a bad configuration exits 2 with one line saying what is wrong and where", async (t) => {
  const cwd = await scratch("badconfig");
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(join(cwd, name), text);
    return name;
  };
  const seed = await write("seed.toml", SEED_WITH_MODEL);
  const lineOf = (text: string, needle: string) =>
    text.split("\n").findIndex((l) => l.startsWith(needle)) + 1;
  const typo = SEED_WITH_MODEL.replace("sae_series", "sae_seris");
  const nestedTypo = SEED_WITH_MODEL.replace("total_analyzing_tokens", "total_analysing_tokens");
  const badType = SEED_WITH_MODEL.replace("batch_size = 32", 'batch_size = "many"');
  const badSyntax = SEED_WITH_MODEL.replace("batch_size = 32", "batch_size = = 32");
  await Deno.mkdir(join(cwd, "a-folder"));
  const cases: [string, string[], string][] = [
    [
      "a TOML syntax error: file:line:column",
      ["analyze", await write("syntax.toml", badSyntax)],
      `syntax.toml:${lineOf(badSyntax, "batch_size")}:14: invalid value`,
    ],
    [
      "a key defined twice",
      ["analyze", await write("twice.toml", 'sae_name = "a"\nsae_name = "b"\n')],
      "twice.toml:2:1: trying to redefine an already defined table or value",
    ],
    [
      "an unknown key, with did-you-mean",
      ["analyze", await write("typo.toml", typo)],
      `typo.toml:${lineOf(typo, "sae_seris")}: unknown key "sae_seris"; did you mean "sae_series"?`,
    ],
    [
      "an unknown key in a table, with its path",
      ["analyze", await write("nested.toml", nestedTypo)],
      `nested.toml:${lineOf(nestedTypo, "total_analysing_tokens")}: ` +
      'unknown key "analyzer.total_analysing_tokens"; did you mean "analyzer.total_analyzing_tokens"?',
    ],
    [
      "a value of the wrong type, with key path and line",
      ["analyze", await write("type.toml", badType)],
      `type.toml:${lineOf(badType, "batch_size")}: activation_factory.batch_size: ` +
      'expected a positive integer, got "many"',
    ],
    [
      "a missing required key",
      ["analyze", await write("missing.toml", SEED_WITH_MODEL.replace(/^sae_name = .*\n/m, ""))],
      'missing.toml: missing required key "sae_name"',
    ],
    [
      "a --set without =",
      ["analyze", seed, "--set", "analyzer.total_analyzing_tokens"],
      'seed.toml: --set "analyzer.total_analyzing_tokens": expected key.path=value',
    ],
    [
      "a --set with a bad value",
      ["analyze", seed, "--set", "analyzer.total_analyzing_tokens=-5"],
      "seed.toml: --set: analyzer.total_analyzing_tokens: expected a positive integer, got -5",
    ],
    [
      "a --set of an unknown key",
      ["analyze", seed, "--set", "analyzer.total_analyzing_token=5"],
      'seed.toml: --set: unknown key "analyzer.total_analyzing_token"; ' +
      'did you mean "analyzer.total_analyzing_tokens"?',
    ],
    [
      "a missing settings file",
      ["analyze", "no-such.toml"],
      "no-such.toml: settings file not found",
    ],
    [
      "a folder given as the settings file",
      ["dla", "a-folder"],
      "a-folder: is a directory, expected a TOML settings file",
    ],
    [
      "a bad INDEX",
      ["show", "feature", "demo-sae", "-1", "--output-dir", "."],
      'INDEX must be a non-negative integer, got "-1"',
    ],
  ];
  const results = await runMany(cases.map(([, args]) => ({ args, options: { cwd } })));
  for (const [i, [name, , message]] of cases.entries()) {
    await t.step(name, () => {
      assertCliError(results[i]!, 2, message);
      assert.equal(results[i]!.stdout, "");
    });
  }
});

Deno.test("--verbose adds the stack trace that is otherwise never printed", async () => {
  const cwd = await scratch("verbose");
  await Deno.writeTextFile(join(cwd, "typo.toml"), 'sae_name = "s"\nsae_seris = "x"\n');
  const [quiet, before, after] = await runMany([
    { args: ["analyze", "typo.toml"], options: { cwd } },
    { args: ["--verbose", "analyze", "typo.toml"], options: { cwd } },
    { args: ["analyze", "typo.toml", "-v"], options: { cwd } },
  ]) as [CliResult, CliResult, CliResult];
  const message = 'typo.toml:2: unknown key "sae_seris"; did you mean "sae_series"?';
  assertCliError(quiet, 2, message);
  for (const r of [before, after]) {
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split("\n")[0], `saeflow: ${message}`);
    assert.ok(hasStackTrace(r.stderr), `no stack trace with --verbose:\n${r.stderr}`);
    assert.match(r.stderr, /ConfigError/);
  }
});

Deno.test("--print-settings never prints the OpenAI key or a MongoDB password", async (t) => {
  const cwd = await scratch("secrets");
  const KEY = "sk-secret-123";
  const PASSWORD = "hunter2pw";
  const withKey = `sae_name = "demo-sae"
sae_series = "demo"
model_name = "tiny-neox"

[model]
model_name = "tiny-neox"
model_from_pretrained_path = ${JSON.stringify(TINY_NEOX)}

[auto_interp]
openai_api_key = "${KEY}"

[mongo]
mongo_uri = "mongodb://alice:${PASSWORD}@db.example:27017/"
`;
  await Deno.writeTextFile(join(cwd, "with-key.toml"), withKey);
  await Deno.writeTextFile(
    join(cwd, "no-key.toml"),
    withKey.replace(/^openai_api_key.*\n/m, "").replace(/^\[mongo\][^]*$/m, ""),
  );
  await Deno.writeTextFile(
    join(cwd, "bad-uri.toml"),
    withKey.replace("mongodb://alice", "http://alice"),
  );
  const noSecret = (r: CliResult) => {
    for (const secret of [KEY, PASSWORD, "sk-env-456", "envpw789"]) {
      assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), `${secret} printed`);
    }
  };

  await t.step("from the file (autointerp and analyze)", async () => {
    for (const command of ["autointerp", "analyze"]) {
      const r = await runCli([command, "with-key.toml", "--print-settings"], { cwd });
      if (command === "analyze") {
        // analyze needs [sae], [datasets] ...: the secrets must not leak into the error either.
        assert.equal(r.code, 2);
      } else {
        const printed = parseToml(assertOk(r, command)) as Json;
        assert.equal(printed.auto_interp.openai_api_key, "***");
        assert.equal(printed.mongo.mongo_uri, "mongodb://alice:***@db.example:27017/");
      }
      noSecret(r);
    }
  });
  await t.step("from OPENAI_API_KEY and MONGO_URI in the environment", async () => {
    const r = await runCli(["autointerp", "no-key.toml", "--print-settings"], {
      cwd,
      env: { OPENAI_API_KEY: "sk-env-456", MONGO_URI: "mongodb://bob:envpw789@db.example/" },
    });
    const printed = parseToml(assertOk(r, "autointerp")) as Json;
    assert.equal(printed.auto_interp.openai_api_key, "***", "the key from the environment is set");
    assert.equal(printed.mongo.mongo_uri, "mongodb://bob:***@db.example/");
    noSecret(r);
  });
  await t.step("in the message about a bad value", async () => {
    const r = await runCli(["autointerp", "bad-uri.toml", "--print-settings"], { cwd });
    const message = assertCliError(r, 2, /^bad-uri\.toml:13: mongo\.mongo_uri: .*alice:\*\*\*@/);
    assert.ok(!message.includes(PASSWORD));
    noSecret(r);
  });
});

// ---------------------------------------------------------------------------------------------
// show / remove on a demo run (SQLite)

const SAMPLINGS = [
  "top_activations",
  "subsample-0.75",
  "subsample-0.5",
  "subsample-0.25",
  "non_activating",
];

/** Checks the shape of a `show feature --json` document (DESIGN.md, "Store"). */
function checkFeatureJson(doc: Json, sae: string, series: string, index: number): void {
  assert.deepEqual(Object.keys(doc).slice(0, 4), ["sae_name", "sae_series", "index", "analyses"]);
  assert.equal(doc.sae_name, sae);
  assert.equal(doc.sae_series, series);
  assert.equal(doc.index, index);
  const a = doc.analyses.default;
  assert.deepEqual(Object.keys(a), [
    "act_times",
    "n_analyzed_tokens",
    "max_activation",
    "mean",
    "std",
    "histogram",
    "quantiles",
    "samplings",
  ]);
  assert.ok(Number.isInteger(a.act_times) && a.act_times > 0 && a.act_times < a.n_analyzed_tokens);
  assert.ok(Array.isArray(a.histogram.counts), "histogram counts are a plain array");
  assert.equal(a.histogram.counts.reduce((x: number, y: number) => x + y, 0), a.act_times);
  assert.deepEqual(a.samplings.map((s: { name: string }) => s.name), SAMPLINGS);
  const top = a.samplings[0];
  assert.equal(top.band, null);
  assert.ok(top.samples.length > 0);
  assert.equal(top.samples[0].peak, a.max_activation, "the first top sample holds the max");
  for (const sampling of a.samplings) {
    for (const s of sampling.samples) {
      assert.deepEqual(Object.keys(s).slice(0, 4), ["tokens", "token_strings", "acts", "peak"]);
      assert.ok(Array.isArray(s.tokens) && Array.isArray(s.acts) && Array.isArray(s.token_strings));
      assert.equal(s.acts.length, s.tokens.length);
      assert.equal(s.token_strings.length, s.tokens.length);
      assert.ok(s.tokens.every((id: number) => Number.isInteger(id) && id >= 0 && id < 1024));
      assert.ok(s.token_strings.every((x: unknown) => typeof x === "string"));
      assert.equal(s.acts[s.peak_pos], s.peak);
      assert.equal(s.source, "demo-corpus");
      assert.ok(Number.isInteger(s.row) && Number.isInteger(s.shard) && Number.isInteger(s.offset));
    }
  }
}

Deno.test("`show feature` prints a readable feature of the demo run, with its statistics and samplings", async () => {
  const { cwd } = await demo();
  const [text, json, dead] = await runMany([
    {
      args: ["show", "feature", "demo-sae", "0", "--output-dir", "analysis_results"],
      options: { cwd },
    },
    { args: ["show", "feature", "demo-sae", "0", "--json"], options: { cwd } },
    {
      args: ["show", "feature", "demo-sae", "7", "--output-dir", "analysis_results"],
      options: { cwd },
    },
  ]) as [CliResult, CliResult, CliResult];
  const out = assertOk(text, "show feature");
  const doc = JSON.parse(assertOk(json, "show feature --json"));
  const a = doc.analyses.default;
  const lines = out.split("\n");
  assert.equal(lines[0], "demo/demo-sae feature 0");
  assert.equal(lines[1], "analysis default");
  assert.match(
    lines[2]!,
    new RegExp(
      `^active on ${a.act_times} of ${a.n_analyzed_tokens} tokens \\([\\d.]+%\\)   ` +
        `max ${a.max_activation.toPrecision(4)}   mean [\\d.]+   std [\\d.]+$`,
    ),
  );
  assert.ok(lines.includes("activation histogram"));
  assert.ok(lines.some((l) => /^ {2}≤ +[\d.e+-]+ │█* \d+$/.test(l)), "histogram rows");
  for (const name of SAMPLINGS) {
    assert.ok(
      lines.some((l) => l.startsWith(`${name}`) && / \d+ samples$/.test(l)),
      `${name} shown`,
    );
  }
  assert.ok(lines.some((l) => /^ {13}demo-corpus shard 0 row \d+ \+\d+$/.test(l)), "sample origin");
  assert.ok(!out.includes("\x1b"), "no escape sequences when stdout is not a terminal");
  assert.equal(text.stderr, "");

  const deadOut = assertOk(dead, "show a dead feature");
  assert.match(deadOut, /^dead: never active in \d+ analyzed tokens$/m);
});

Deno.test("`show feature --json` prints the DESIGN.md feature document, found the same way by every store flag", async () => {
  const { cwd, out } = await demo();
  const results = await runMany([
    { args: ["show", "feature", "demo-sae", "0", "--json"], options: { cwd } },
    { args: ["show", "feature", "demo-sae", "0", "--json", "--output-dir", out] },
    {
      args: ["show", "feature", "demo-sae", "0", "--json", "--config", DEMO_CONFIG_PATH],
      options: { cwd },
    },
    {
      args: [
        "show",
        "feature",
        "demo-sae",
        "0",
        "--json",
        "--series",
        "demo",
        "--analysis",
        "default",
      ],
      options: { cwd },
    },
  ]);
  const texts = results.map((r, i) => assertOk(r, `variant ${i}`));
  const doc = JSON.parse(texts[0]!);
  checkFeatureJson(doc, "demo-sae", "demo", 0);
  for (const text of texts.slice(1)) assert.equal(text, texts[0]);
});

Deno.test("`show feature` reports what it cannot find with exit 2 and one line", async (t) => {
  const { cwd, out } = await demo();
  const db = join(out, "saeflow.sqlite");
  const empty = await scratch("no-store");
  const cases: [string, string[], string, string?][] = [
    ["an unknown feature", ["demo-sae", "999"], "Feature 999 of demo/demo-sae is not in the store"],
    [
      "an unknown SAE, listing the stored ones",
      ["no-such-sae", "0"],
      `No SAE named "no-such-sae" in ${db}; stored: demo/demo-sae`,
    ],
    [
      "an unknown series",
      ["demo-sae", "0", "--series", "nope"],
      "Feature 0 of nope/demo-sae is not in the store",
    ],
    [
      "an output folder without a store (not created)",
      ["demo-sae", "0", "--output-dir", join(empty, "typo")],
      `${join(empty, "typo")}: no saeflow store here (saeflow.sqlite not found); ` +
      "pass the output_dir of an analysis with --output-dir, or --mongo-uri / --config",
      join(empty, "typo"),
    ],
    [
      "a bad --mongo-timeout-ms",
      ["demo-sae", "0", "--mongo-uri", "mongodb://127.0.0.1:1/", "--mongo-timeout-ms", "soon"],
      '--mongo-timeout-ms: expected a positive integer (milliseconds), got "soon"',
    ],
  ];
  const results = await runMany(
    cases.map(([, args]) => ({ args: ["show", "feature", ...args], options: { cwd } })),
  );
  for (const [i, [name, , message, notCreated]] of cases.entries()) {
    await t.step(name, async () => {
      assertCliError(results[i]!, 2, message);
      if (notCreated) await assert.rejects(Deno.stat(notCreated), Deno.errors.NotFound);
    });
  }
  await t.step("an unknown analysis name is said in the readable view", async () => {
    const r = await runCli(["show", "feature", "demo-sae", "0", "--analysis", "other"], { cwd });
    assert.match(assertOk(r, "--analysis other"), /^no analysis named other; stored: default$/m);
  });
});

Deno.test("`show feature` shows control characters from the data as escapes, never raw", async () => {
  const dir = await scratch("evil");
  const vocab = ["<|endoftext|>", "\x1b[31mred", "\x1b]0;pwned\x07", " plain", "\u009b2J"];
  const record: FeatureRecord = {
    sae_name: "evil-sae",
    sae_series: "evil",
    index: 0,
    analyses: {
      default: {
        act_times: 2,
        n_analyzed_tokens: 10,
        max_activation: 2,
        mean: 1.5,
        std: 0.5,
        histogram: { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array([2]) },
        quantiles: [],
        samplings: [{
          name: "top_activations\x1b[0m",
          band: null,
          samples: [{
            tokens: new Int32Array([0, 1, 2, 3, 4]),
            acts: new Float32Array([0, 2, 1, 0, 0]),
            peak: 2,
            peak_pos: 1,
            source: "corpus\x1b[2J",
            shard: 0,
            row: 3,
            offset: 0,
          }],
        }],
      },
    },
  };
  {
    await using store = await openStore({ outputDir: dir });
    await store.putModel({ name: "evil-model", config: {}, vocab });
    await store.putSae({
      name: "evil-sae",
      series: "evil",
      path: "/nowhere",
      config: {},
      d_sae: 1,
      d_model: 1,
      hook_point: "h",
      model: "evil-model",
    });
    await store.writeFeatures([record]);
  }
  const [text, json] = await runMany([
    { args: ["show", "feature", "evil-sae", "0", "--output-dir", dir] },
    { args: ["show", "feature", "evil-sae", "0", "--output-dir", dir, "--json"] },
  ]) as [CliResult, CliResult];
  const out = assertOk(text, "show feature");
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(out, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/, "a raw control character was printed");
  assert.ok(out.includes("[\\x1b[31mred]"), `the active token, escaped:\n${out}`);
  assert.ok(out.includes("\\x1b]0;pwned\\x07"));
  assert.ok(out.includes("\\x9b2J"));
  assert.ok(out.includes("corpus\\x1b[2J shard 0 row 3 +0"));
  assert.ok(out.includes("top_activations\\x1b[0m: 1 samples"));
  const jsonOut = assertOk(json, "show feature --json");
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(jsonOut, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, "raw control character in JSON");
  const doc = JSON.parse(jsonOut);
  assert.deepEqual(doc.analyses.default.samplings[0].samples[0].token_strings, vocab);
});

Deno.test("`remove analysis` and `remove sae` remove what they name, and nothing that is not there", async (t) => {
  const store = await demoStoreCopy();
  const run = (...args: string[]) => runCli([...args, "--output-dir", store]);
  const db = join(store, "saeflow.sqlite");

  await t.step("remove analysis of an unknown name is exit 2 and removes nothing", async () => {
    assertCliError(
      await run("remove", "analysis", "demo-sae", "nope"),
      2,
      'No analysis named "nope" of demo/demo-sae; stored: default',
    );
    assert.equal((await storedFor(store, "demo", "demo-sae")).analyses.length, 1);
  });
  await t.step("remove analysis demo-sae default, then nothing of the run is left", async () => {
    assert.equal(
      assertOk(await run("remove", "analysis", "demo-sae", "default"), "remove analysis").trim(),
      'removed analysis default of demo/demo-sae: {"analysis":true,"features":256}',
    );
    // The demo's DLA ran inline: its logits were written with the run's generation, so they
    // go with the analysis (`saeflow dla` writes logits that stay with the feature).
    assertCliError(
      await run("show", "feature", "demo-sae", "0"),
      2,
      "Feature 0 of demo/demo-sae is not in the store",
    );
    const stored = await storedFor(store, "demo", "demo-sae");
    assert.deepEqual(stored.analyses, []);
    assert.equal(stored.features, 0);
  });
  await t.step("remove sae demo-sae, then nothing of it is left", async () => {
    assert.equal(
      assertOk(await run("remove", "sae", "demo-sae"), "remove sae").trim(),
      'removed demo/demo-sae: {"sae":true,"analyses":0,"features":0}',
    );
    assertCliError(
      await run("show", "feature", "demo-sae", "0"),
      2,
      `No SAE named "demo-sae" in ${db}; the store holds no SAE`,
    );
    assert.equal((await storedFor(store, "demo", "demo-sae")).features, 0);
    assertCliError(
      await run("remove", "sae", "demo-sae"),
      2,
      `No SAE named "demo-sae" in ${db}; the store holds no SAE`,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// MongoDB

const MONGO_TEST = "`show feature` and `remove` work the same against MongoDB as against SQLite";
Deno.test({
  name: MONGO_TEST,
  ignore: mongoIgnored(MONGO_TEST),
  fn: (t) =>
    withMongo(t, async ({ uri, db }) => {
      // 16 features of the demo SAE: enough for the commands, and quick on FerretDB.
      const sae = await writeSlicedSae(await scratch("sae16"), { dSae: 16 });
      const sqliteCwd = await scratch("sqlite-twin");
      const mongoCwd = await scratch("mongo-run");
      const mongoConfig = join(mongoCwd, "mongo.toml");
      await Deno.writeTextFile(
        mongoConfig,
        `[mongo]\nmongo_uri = ${JSON.stringify(uri)}\nmongo_db = ${JSON.stringify(db)}\n`,
      );
      const runs = await runMany([
        {
          args: ["analyze", "--set", `sae.pretrained_name_or_path=${sae}`],
          options: { cwd: sqliteCwd },
        },
        {
          args: [
            "analyze",
            "--set",
            `sae.pretrained_name_or_path=${sae}`,
            "--set",
            `mongo.mongo_uri=${uri}`,
            "--set",
            `mongo.mongo_db=${db}`,
          ],
          options: { cwd: mongoCwd },
        },
      ]);
      assertOk(runs[0]!, "analyze into SQLite");
      assert.match(
        assertOk(runs[1]!, "analyze into MongoDB"),
        new RegExp(`results: mongodb://.*/${db} `),
      );
      const viaMongo = ["--mongo-uri", uri, "--mongo-db", db];

      await t.step("show feature (readable and --json) prints what SQLite prints", async () => {
        for (const index of ["0", "7"]) {
          const [sqliteText, sqliteJson, mongoText, mongoJson, configJson] = await runMany([
            { args: ["show", "feature", "demo-sae", index], options: { cwd: sqliteCwd } },
            { args: ["show", "feature", "demo-sae", index, "--json"], options: { cwd: sqliteCwd } },
            { args: ["show", "feature", "demo-sae", index, ...viaMongo] },
            { args: ["show", "feature", "demo-sae", index, "--json", ...viaMongo] },
            { args: ["show", "feature", "demo-sae", index, "--json", "--config", mongoConfig] },
          ]) as CliResult[];
          const expected = assertOk(sqliteJson!, "SQLite --json");
          if (index === "0") checkFeatureJson(JSON.parse(expected), "demo-sae", "demo", 0);
          assertSameText(assertOk(mongoJson!, "MongoDB"), expected, `feature ${index} --json`);
          assertSameText(assertOk(configJson!, "--config"), expected, `feature ${index} --config`);
          assertSameText(
            assertOk(mongoText!, "MongoDB show"),
            assertOk(sqliteText!, "SQLite show"),
            `feature ${index} readable`,
          );
        }
      });
      await t.step("an unknown SAE lists the stored ones", async () => {
        assertCliError(
          await runCli(["show", "feature", "nope", "0", ...viaMongo]),
          2,
          new RegExp(`^No SAE named "nope" in mongodb://[^ ]*/${db}; stored: demo/demo-sae$`),
        );
      });
      await t.step("remove analysis, then remove sae", async () => {
        assert.equal(
          assertOk(await runCli(["remove", "analysis", "demo-sae", "default", ...viaMongo]), "rm")
            .trim(),
          'removed analysis default of demo/demo-sae: {"analysis":true,"features":16}',
        );
        assertCliError(
          await runCli(["show", "feature", "demo-sae", "0", "--json", ...viaMongo]),
          2,
          "Feature 0 of demo/demo-sae is not in the store",
        );
        assert.equal(
          assertOk(await runCli(["remove", "sae", "demo-sae", "--config", mongoConfig]), "rm sae")
            .trim(),
          'removed demo/demo-sae: {"sae":true,"analyses":0,"features":0}',
        );
        assertCliError(
          await runCli(["show", "feature", "demo-sae", "0", ...viaMongo]),
          2,
          new RegExp(`^No SAE named "demo-sae" in mongodb://[^ ]*/${db}; the store holds no SAE$`),
        );
      });
    }),
});

Deno.test("an unreachable MongoDB is exit 1 naming the configured timeout, with one line and no password", async (t) => {
  const cwd = await scratch("unreachable");
  const uri = "mongodb://saeflow:s3cr3tpw@127.0.0.1:1/";
  await Deno.writeTextFile(
    join(cwd, "store.toml"),
    `[mongo]\nmongo_uri = "${uri}"\ntimeout_ms = 400\n`,
  );
  // The timeout in the message is the one the store was opened with (each way of setting it is
  // checked); that it bounds the wait is the driver's part (lib/store/mongo_test.ts).
  const message = (ms: number) =>
    new RegExp(`^Cannot reach MongoDB at 127\\.0\\.0\\.1:1 within ${ms} ms: \\S.*$`);
  const cases: [string, string[], Record<string, string>?][] = [
    ["--mongo-uri with --mongo-timeout-ms", [
      "show",
      "feature",
      "x",
      "0",
      "--mongo-uri",
      uri,
      "--mongo-timeout-ms",
      "500",
    ]],
    ["MONGO_URI with MONGO_TIMEOUT_MS", ["show", "feature", "x", "0"], {
      MONGO_URI: uri,
      MONGO_TIMEOUT_MS: "500",
    }],
    ["--config with [mongo] timeout_ms", ["remove", "sae", "x", "--config", "store.toml"]],
    [
      "analyze with a [mongo] table from --set",
      ["analyze", "--set", `mongo.mongo_uri=${uri}`, "--set", "mongo.timeout_ms=500"],
    ],
  ];
  const results = await runMany(
    cases.map(([, args, env]) => ({ args, options: { cwd, env: env ?? {} } })),
  );
  for (const [i, [name]] of cases.entries()) {
    await t.step(name, () => {
      const r = results[i]!;
      const got = assertCliError(r, 1, message(name.includes("config") ? 400 : 500));
      assert.ok(!r.stderr.includes("s3cr3tpw") && !r.stdout.includes("s3cr3tpw"), got);
    });
  }
  await t.step("and the failed analyze stored nothing locally", async () => {
    await assert.rejects(Deno.stat(join(cwd, "analysis_results")), Deno.errors.NotFound);
  });
});

// ---------------------------------------------------------------------------------------------
// inspect

/** `key   value` lines of `inspect` output as a map. */
function fields(text: string): Map<string, string> {
  return new Map(
    text.split("\n").map((l) => /^(\S[^]*?) {2,}(\S.*)$/.exec(l)).filter((m) => m !== null).map((
      m,
    ) => [m![1]!, m![2]!]),
  );
}

Deno.test("`inspect model` prints hook points with shapes, inputs and the vocabulary size", async () => {
  const out = assertOk(await runCli(["inspect", "model", TINY_NEOX]), "inspect model");
  const f = fields(out);
  assert.equal(f.get("model"), join(TINY_NEOX, "model.onnx"));
  assert.equal(f.get("vocab"), "1024");
  assert.match(out, /^max context +256$/m);
  const lines = out.split("\n");
  assert.ok(lines.some((l) => /^ {2}input_ids +int64 \[batch, sequence\]$/.test(l)));
  assert.ok(lines.some((l) => /^ {2}attention_mask +int64 \[batch, sequence\]$/.test(l)));
  assert.ok(lines.some((l) => /^ {2}logits +float32 \[batch, sequence, 1024\]$/.test(l)));
  const hooks = lines.filter((l) =>
    /^ {2}blocks\.\d\.hook_\w+ +\[batch, sequence, 64\] +\S+$/.test(l)
  );
  assert.equal(hooks.length, 16, "4 layers × resid_pre, attn_out, mlp_out, resid_post");
  assert.ok(
    hooks.some((l) =>
      /^ {2}blocks\.3\.hook_resid_post +\[batch, sequence, 64\] +\/gpt_neox\/layers\.3\/Add_1_output_0$/
        .test(l)
    ),
    "the fixture's documented tensor for blocks.3.hook_resid_post",
  );
});

Deno.test("`inspect sae` prints d_model, d_sae, the activation function and the hook point", async () => {
  const [relu, sliced] = await runMany([
    { args: ["inspect", "sae", DEMO_SAE] },
    {
      args: [
        "inspect",
        "sae",
        await writeSlicedSae(await scratch("sae-topk"), { dSae: 32, config: { act_fn: "topk" } }),
      ],
    },
  ]) as [CliResult, CliResult];
  const f = fields(assertOk(relu, "inspect sae"));
  assert.equal(f.get("d_model"), "64");
  assert.equal(f.get("d_sae"), "256");
  assert.equal(f.get("activation"), "relu");
  assert.equal(f.get("hook point"), "blocks.3.hook_resid_post");
  const g = fields(assertOk(sliced, "inspect a sliced SAE"));
  assert.equal(g.get("d_sae"), "32");
  assert.match(g.get("activation") ?? "", /^topk\b.*8/);
});

/** Makes the broken inputs of the `inspect` and `analyze` tests once. */
let brokenInputs: Promise<Record<string, string>> | undefined;
function broken(): Promise<Record<string, string>> {
  brokenInputs ??= (async () => {
    const dir = await scratch("broken");
    const noOnnx = await copyFolder(TINY_NEOX, join(dir, "no-onnx"), ["model.onnx"]);
    const truncatedOnnx = await copyFolder(TINY_NEOX, join(dir, "truncated-onnx"), ["model.onnx"]);
    await truncateCopy(join(TINY_NEOX, "model.onnx"), join(truncatedOnnx, "model.onnx"), 300_000);
    const badTokenizer = await copyFolder(TINY_NEOX, join(dir, "bad-tokenizer"), [
      "tokenizer.json",
    ]);
    await truncateCopy(
      join(TINY_NEOX, "tokenizer.json"),
      join(badTokenizer, "tokenizer.json"),
      5000,
    );
    const truncatedSae = await copyFolder(DEMO_SAE, join(dir, "truncated-sae"), [
      "sae_weights.safetensors",
    ]);
    await truncateCopy(
      join(DEMO_SAE, "sae_weights.safetensors"),
      join(truncatedSae, "sae_weights.safetensors"),
      20_000,
    );
    const emptyDataset = join(dir, "empty.jsonl");
    await Deno.writeTextFile(emptyDataset, "");
    return {
      dir,
      noOnnx,
      truncatedOnnx,
      badTokenizer,
      truncatedSae,
      emptyDataset,
      narrowSae: await writeSlicedSae(join(dir, "narrow-sae"), { dSae: 16, dModel: 32 }),
      swishSae: await writeSlicedSae(join(dir, "swish-sae"), { config: { act_fn: "swish" } }),
    };
  })();
  return brokenInputs;
}

Deno.test("`inspect` rejects a broken model folder or SAE with exit 2 and one line", async (t) => {
  const b = await broken();
  const cases: [string, string[], string | RegExp][] = [
    [
      "a model folder without an ONNX file",
      ["model", b.noOnnx!],
      `Model folder ${b.noOnnx} has no ONNX model: looked for model.onnx, onnx/model.onnx, decoder_model.onnx, onnx/decoder_model.onnx`,
    ],
    [
      "a truncated model.onnx",
      ["model", b.truncatedOnnx!],
      new RegExp(
        `^Cannot load ONNX model ${b.truncatedOnnx}/model\\.onnx: not a valid ONNX protobuf`,
      ),
    ],
    [
      "a path that does not exist",
      ["model", join(b.dir!, "missing")],
      `Cannot find model "${join(b.dir!, "missing")}": no such file or directory, and not a Hub id`,
    ],
    [
      "a truncated SAE",
      ["sae", b.truncatedSae!],
      new RegExp(
        `^Cannot load SAE ${b.truncatedSae}: Cannot read safetensors ${b.truncatedSae}/sae_weights\\.safetensors: .*past the end`,
      ),
    ],
    [
      "an SAE with an unknown act_fn",
      ["sae", b.swishSae!],
      `Cannot load SAE ${b.swishSae}: config.json: act_fn "swish" is not supported; valid: relu, jumprelu, topk, batchtopk`,
    ],
  ];
  const results = await runMany(cases.map(([, args]) => ({ args: ["inspect", ...args] })));
  for (const [i, [name, , message]] of cases.entries()) {
    await t.step(name, () => void assertCliError(results[i]!, 2, message));
  }
});

// ---------------------------------------------------------------------------------------------
// analyze with bad inputs

Deno.test("`analyze` rejects bad inputs with exit 2 and one line, and stores no features", async (t) => {
  const b = await broken();
  const modelPath = (p: string) => `model.model_from_pretrained_path=${p}`;
  const cases: [string, string[], string | RegExp][] = [
    [
      "a model folder without ONNX",
      [modelPath(b.noOnnx!)],
      `Model folder ${b.noOnnx} has no ONNX model: looked for model.onnx, onnx/model.onnx, decoder_model.onnx, onnx/decoder_model.onnx`,
    ],
    [
      "a truncated model.onnx",
      [modelPath(b.truncatedOnnx!)],
      new RegExp(
        `^Cannot load ONNX model ${b.truncatedOnnx}/model\\.onnx: not a valid ONNX protobuf`,
      ),
    ],
    [
      "an unknown hook point, listing the choices",
      ['activation_factory.hook_points=["blocks.9.hook_nope"]'],
      `Unknown hook point "blocks.9.hook_nope" for ONNX model ${TINY_NEOX}/model.onnx; available hook points: ` +
      "blocks.{0..3}.{hook_resid_pre,hook_attn_out,hook_mlp_out,hook_resid_post}",
    ],
    [
      "a tokenizer.json that does not parse",
      [modelPath(b.badTokenizer!)],
      new RegExp(
        `^Cannot load tokenizer: ${b.badTokenizer}/tokenizer\\.json is not valid JSON \\(`,
      ),
    ],
    [
      "an empty dataset file",
      [`datasets.demo-corpus.dataset_name_or_path=${b.emptyDataset}`],
      `Dataset "demo-corpus" at ${b.emptyDataset} has no records`,
    ],
    [
      "a dataset file that does not exist",
      [`datasets.demo-corpus.dataset_name_or_path=${join(b.dir!, "none.jsonl")}`],
      `Dataset "demo-corpus" at ${join(b.dir!, "none.jsonl")}: no such file or directory`,
    ],
    [
      "a context_size larger than the model allows",
      ["activation_factory.context_size=100000"],
      `context_size = 100000 is larger than the model allows (256, from ${TINY_NEOX}/config.json)`,
    ],
    [
      "a truncated safetensors SAE",
      [`sae.pretrained_name_or_path=${b.truncatedSae}`],
      new RegExp(
        `^Cannot load SAE ${b.truncatedSae}: Cannot read safetensors ${b.truncatedSae}/sae_weights\\.safetensors: .*past the end`,
      ),
    ],
    [
      "an SAE whose d_model is not the hook's width",
      [`sae.pretrained_name_or_path=${b.narrowSae}`],
      `SAE ${b.narrowSae} expects d_model 32, but hook blocks.3.hook_resid_post has width 64`,
    ],
    [
      "an SAE with an unknown act_fn",
      [`sae.pretrained_name_or_path=${b.swishSae}`],
      `Cannot load SAE ${b.swishSae}: config.json: act_fn "swish" is not supported; valid: relu, jumprelu, topk, batchtopk`,
    ],
  ];
  const outDirs = cases.map((_, i) => join(b.dir!, `out-${i}`));
  const results = await runMany(cases.map(([, sets], i) => ({
    args: ["analyze", ...[...sets, `output_dir=${outDirs[i]}`].flatMap((s) => ["--set", s])],
    options: { cwd: b.dir! },
  })));
  for (const [i, [name, , message]] of cases.entries()) {
    await t.step(name, async () => {
      const got = assertCliError(results[i]!, 2, message);
      assert.equal(results[i]!.stdout, "");
      const stored = await storedFor(outDirs[i]!, "demo", "demo-sae");
      assert.equal(stored.features, 0, "no feature stored");
      for (const a of stored.analyses) {
        assert.deepEqual([a.status, a.error], ["failed", got], "an analysis left is marked failed");
      }
    });
  }
});
