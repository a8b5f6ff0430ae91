import assert from "node:assert/strict";
import * as nodePath from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../errors.ts";
import {
  DEMO_CONFIG_PATH,
  formatSettings,
  loadSettings,
  type LoadSettingsOptions,
  parseSettings,
  redactSettings,
  type SettingsKind,
} from "./mod.ts";

/**
 * The CLI example of the seed guide (docs "Analyze Sparse Autoencoders"), verbatim, plus the one
 * line saeflow needs: where the ONNX export of the model is.
 */
const SEED_TOML = Deno.readTextFileSync(
  new URL("../../fixtures/seed/analyze_config.toml", import.meta.url),
).replace(
  'dtype = "torch.float16"\n',
  'dtype = "torch.float16"\nmodel_from_pretrained_path = "../models/pythia-160m-onnx"\n',
);

/** A scratch folder used both as the TOML's folder and the working directory. */
function withTempDir(fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "saeflow-settings-" });
    try {
      await fn(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

function parseIn<K extends SettingsKind = "analyze">(
  dir: string,
  text: string,
  kind: K = "analyze" as K,
  options: LoadSettingsOptions = {},
) {
  return parseSettings(text, "analyze.toml", kind, {
    env: {},
    cwd: dir,
    baseDir: nodePath.join(dir, "cfg"),
    ...options,
  });
}

function assertConfigError(fn: () => unknown, message: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.message, message);
  assert.ok(!caught.message.includes("\n"), "the message is one line");
}

Deno.test(
  "loadSettings() loads the seed's TOML and resolves every default",
  withTempDir(async (dir) => {
    Deno.mkdirSync(nodePath.join(dir, "cfg"));
    const file = nodePath.join(dir, "cfg", "analyze.toml");
    Deno.writeTextFileSync(file, SEED_TOML);
    const s = await loadSettings(file, "analyze", { env: {}, cwd: dir });

    assert.equal(s.sae_name, "pythia-160m-sae");
    assert.equal(s.sae_series, "pythia-sae");
    assert.equal(s.model_name, "pythia-160m");
    assert.equal(s.output_dir, nodePath.join(dir, "analysis_results"));
    assert.equal(s.feature_analysis_name, "default");
    assert.equal(s.analysis_name, "default");
    assert.deepEqual(s.sae, {
      pretrained_name_or_path: "results",
      device: "cpu",
      dtype: "float32",
      fold_activation_scale: true,
      strict_loading: true,
    });
    assert.ok(s.model !== null);
    assert.equal(s.model.model_name, "EleutherAI/pythia-160m");
    assert.equal(s.model.device, "cuda");
    assert.equal(s.model.dtype, "float16");
    assert.equal(s.model.model_from_pretrained_path, nodePath.join(dir, "models/pythia-160m-onnx"));
    assert.equal(s.model.max_length, 2048);
    assert.deepEqual(s.datasets, {
      "SlimPajama-3B": {
        dataset_name_or_path: "Hzfinfdu/SlimPajama-3B",
        cache_dir: null,
        text_field: "text",
      },
    });
    assert.equal(s.activation_factory.target, "activations-2d");
    assert.deepEqual(s.activation_factory.hook_points, ["blocks.6.hook_resid_post"]);
    assert.equal(s.activation_factory.batch_size, 32);
    assert.equal(s.activation_factory.context_size, 1024);
    assert.equal(s.activation_factory.ignore_token_ids, null);
    assert.equal(s.activation_factory.split_long_rows, false);
    assert.deepEqual(s.activation_factory.sources, [{
      type: "dataset",
      name: "SlimPajama-3B",
      sample_weights: 1,
      is_dataset_tokenized: false,
      prepend_bos: true,
    }]);
    assert.deepEqual(s.mongo, {
      mongo_uri: "mongodb://localhost:27017/",
      mongo_db: "mechinterp",
      timeout_ms: 5000,
    });
    assert.equal(s.analyzer.total_analyzing_tokens, 10_000_000);
    assert.deepEqual(
      s.analyzer.samplings.map((x) => [x.name, x.kind, x.lower, x.proportion, x.n_samples]),
      [
        ["top_activations", "top", 0, 1, 20],
        ["subsampling_80%", "band", 0.6, 0.8, 10],
        ["subsampling_60%", "band", 0.4, 0.6, 10],
        ["subsampling_40%", "band", 0.2, 0.4, 10],
        ["subsampling_20%", "band", 0, 0.2, 10],
        ["non_activating", "non_activating", 0, 1, 20],
      ],
    );
    assert.equal(s.analyzer.subsample_rule, "uniform");
    assert.equal(s.analyzer.window_before, 32);
    assert.equal(s.analyzer.window_after, 32);
    assert.equal(s.analyzer.n_top, 20);
    assert.equal(s.analyzer.n_non_activating, 20);
    assert.equal(s.direct_logit_attributor, null);
    assert.equal(s.auto_interp, null);
  }),
);

Deno.test("the demo configuration resolves its inputs against fixtures/", async () => {
  const repo = fileURLToPath(new URL("../../", import.meta.url));
  const cwd = Deno.makeTempDirSync();
  try {
    const s = await loadSettings(DEMO_CONFIG_PATH, "analyze", { env: {}, cwd });
    assert.equal(DEMO_CONFIG_PATH, nodePath.join(repo, "fixtures/demo/analyze.toml"));
    assert.equal(s.sae_name, "demo-sae");
    assert.equal(s.sae_series, "demo");
    assert.equal(s.model_name, "tiny-neox");
    assert.equal(s.sae.pretrained_name_or_path, nodePath.join(repo, "fixtures/sae/lm-saes-relu"));
    assert.equal(s.model?.model_from_pretrained_path, nodePath.join(repo, "fixtures/tiny-neox"));
    assert.equal(
      s.datasets?.["demo-corpus"]?.dataset_name_or_path,
      nodePath.join(repo, "fixtures/text/corpus.jsonl"),
    );
    assert.equal(s.output_dir, nodePath.join(cwd, "analysis_results"));
    assert.deepEqual(s.activation_factory.hook_points, ["blocks.3.hook_resid_post"]);
    assert.equal(s.activation_factory.batch_size, 8);
    assert.equal(s.activation_factory.context_size, 64);
    assert.equal(s.mongo, null);
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("bad settings fail with one ConfigError line that says where and what", async (t) => {
  const dir = Deno.makeTempDirSync();
  const run = (text: string, overrides: string[] = [], env: Record<string, string> = {}) => () =>
    parseSettings(text, "analyze.toml", "analyze", { env, cwd: dir, baseDir: dir, overrides });
  const cases: { name: string; run: () => unknown; message: string }[] = [
    {
      name: "a TOML syntax error gives file:line:col",
      run: run(SEED_TOML.replace("batch_size = 32", "batch_size = ")),
      message: "analyze.toml:21:14: invalid value",
    },
    {
      name: "an unknown key gives its line and the closest valid key",
      run: run(SEED_TOML.replace("total_analyzing_tokens", "totl_analyzing_tokens")),
      message:
        'analyze.toml:32: unknown key "analyzer.totl_analyzing_tokens"; did you mean "analyzer.total_analyzing_tokens"?',
    },
    {
      name: "an unknown table is suggested the right one",
      run: run(SEED_TOML.replace("[analyzer]", "[analyser]")),
      message: 'analyze.toml:31: unknown key "analyser"; did you mean "analyzer"?',
    },
    {
      name: "a key in the wrong table is pointed to where it belongs",
      run: run(`${SEED_TOML}\n[auto_interp]\nanalysis_name = "a"\n`),
      message:
        'analyze.toml:35: unknown key "auto_interp.analysis_name"; did you mean "analysis_name"?',
    },
    {
      name: "an unknown key with nothing close gets no suggestion",
      run: run(SEED_TOML.replace("[sae]\n", "[sae]\nzzz = 1\n")),
      message: 'analyze.toml:7: unknown key "sae.zzz"',
    },
    {
      name: "a bad value gives the path, what was expected and what was given",
      run: run(SEED_TOML.replace("10_000_000", '"ten"')),
      message:
        'analyze.toml:32: analyzer.total_analyzing_tokens: expected a positive integer, got "ten"',
    },
    {
      name: "a bad dtype is named",
      run: run(SEED_TOML.replace('"torch.float16"', '"torch.int8"')),
      message:
        'analyze.toml:12: model.dtype: expected "float32", "float16" or "bfloat16" (or "torch.float16" etc.), got "torch.int8"',
    },
    {
      name: "a bad element of an array of tables is found by its index",
      run: run(
        `${
          SEED_TOML.replace(
            "[mongo]",
            '[[activation_factory.sources]]\nname = "SlimPajama-3B"\nsample_weights = -1\n\n[mongo]',
          )
        }`,
      ),
      message:
        "analyze.toml:30: activation_factory.sources[1].sample_weights: expected a positive number, got -1",
    },
    {
      name: "a cached-activations source is refused by its type, not its other keys",
      run: run(SEED_TOML.replace('type = "dataset"', 'type = "activations"\npath = "acts"')),
      message:
        'analyze.toml:25: activation_factory.sources[0].type: expected "dataset" (cached "activations" sources are not supported), got "activations"',
    },
    {
      name: "a source must name a dataset",
      run: run(SEED_TOML.replace('name = "SlimPajama-3B"', 'name = "SlimPajama"')),
      message:
        'analyze.toml:26: activation_factory.sources[0].name: expected the name of a [datasets] table ("SlimPajama-3B"), got "SlimPajama"',
    },
    {
      name: "a missing top-level key has no line",
      run: run(SEED_TOML.replace('sae_name = "pythia-160m-sae"\n', "")),
      message: 'analyze.toml: missing required key "sae_name"',
    },
    {
      name: "a missing key of a present table gives the table's line",
      run: run(SEED_TOML.replace("batch_size = 32\n", "")),
      message: 'analyze.toml:18: missing required key "activation_factory.batch_size"',
    },
    {
      name: "a bad --set value names --set",
      run: run(SEED_TOML, ["analyzer.total_analyzing_tokens=ten"]),
      message:
        'analyze.toml: --set: analyzer.total_analyzing_tokens: expected a positive integer, got "ten"',
    },
    {
      name: "a bad --set key is suggested the right one",
      run: run(SEED_TOML, ["analyzer.total_analysing_tokens=5"]),
      message:
        'analyze.toml: --set: unknown key "analyzer.total_analysing_tokens"; did you mean "analyzer.total_analyzing_tokens"?',
    },
    {
      name: "a --set without a value is refused",
      run: run(SEED_TOML, ["analyzer"]),
      message: 'analyze.toml: --set "analyzer": expected key.path=value',
    },
    {
      name: "a --set through a value that is not a table is refused",
      run: run(SEED_TOML, ["sae_name.x=1"]),
      message: 'analyze.toml: --set: sae_name: expected a table, got "pythia-160m-sae"',
    },
    {
      name: "a --set past the end of an array is refused",
      run: run(SEED_TOML, ["activation_factory.sources[3].name=x"]),
      message:
        "analyze.toml: --set: activation_factory.sources[3]: no such element (the array has 1)",
    },
    {
      name: "a bad value from the environment names the variable and hides the password",
      run: run(SEED_TOML.replace('mongo_uri = "localhost"\n', ""), [], {
        MONGO_URI: "http://user:hunter2@host",
      }),
      message:
        'analyze.toml: MONGO_URI: mongo.mongo_uri: expected a MongoDB URI ("mongodb://host:port/", "mongodb+srv://…", or a bare "host[:port]"), got "http://user:***@host"',
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assertConfigError(c.run, c.message));
  }
  await t.step("a missing file is a ConfigError naming it", async () => {
    const missing = nodePath.join(dir, "nope.toml");
    await assert.rejects(
      () => loadSettings(missing, "analyze", { env: {} }),
      (error: unknown) =>
        error instanceof ConfigError && error.message === `${missing}: settings file not found`,
    );
  });
  Deno.removeSync(dir, { recursive: true });
});

Deno.test(
  "--set overrides read TOML values, quoted keys and array indices, and win over the file",
  withTempDir((dir) => {
    const s = parseIn(dir, SEED_TOML, "analyze", {
      overrides: [
        "analyzer.total_analyzing_tokens=2_000",
        'datasets."SlimPajama-3B".dataset_name_or_path=org/other-set',
        "activation_factory.sources[0].prepend_bos=false",
        "activation_factory.sources.0.sample_weights=0.5",
        'activation_factory.hook_points=["blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"]',
        "analyzer.subsamples={ top_activations = { proportion = 1.0, n_samples = 3 } }",
        'sae_name="with spaces"',
        "mongo.mongo_db=other",
        "model.dtype=bf16",
        "direct_logit_attributor.top_k=7",
      ],
    });
    assert.equal(s.analyzer.total_analyzing_tokens, 2000);
    assert.equal(s.datasets?.["SlimPajama-3B"]?.dataset_name_or_path, "org/other-set");
    assert.equal(s.activation_factory.sources[0]?.prepend_bos, false);
    assert.equal(s.activation_factory.sources[0]?.sample_weights, 0.5);
    assert.deepEqual(s.activation_factory.hook_points, [
      "blocks.1.hook_resid_post",
      "blocks.2.hook_mlp_out",
    ]);
    assert.equal(s.analyzer.samplings[0]?.n_samples, 3);
    assert.equal(s.sae_name, "with spaces");
    assert.equal(s.mongo?.mongo_db, "other");
    assert.equal(s.mongo?.mongo_uri, "mongodb://localhost:27017/");
    assert.equal(s.model?.dtype, "bfloat16");
    assert.equal(s.direct_logit_attributor?.top_k, 7);
  }),
);

Deno.test(
  "relative inputs resolve against the TOML's folder first, --set values against the working directory first",
  withTempDir((dir) => {
    Deno.mkdirSync(nodePath.join(dir, "cfg", "results"), { recursive: true });
    Deno.mkdirSync(nodePath.join(dir, "data"));
    Deno.writeTextFileSync(nodePath.join(dir, "data", "c.jsonl"), "{}\n");
    const text = SEED_TOML.replace(
      '"Hzfinfdu/SlimPajama-3B"',
      '"data/c.jsonl"',
    );
    const s = parseIn(dir, text);
    assert.equal(s.sae.pretrained_name_or_path, nodePath.join(dir, "cfg", "results"));
    assert.equal(
      s.datasets?.["SlimPajama-3B"]?.dataset_name_or_path,
      nodePath.join(dir, "data", "c.jsonl"),
      "falls back to the working directory when only there",
    );
    Deno.mkdirSync(nodePath.join(dir, "results"));
    const t = parseIn(dir, text, "analyze", { overrides: ["sae.pretrained_name_or_path=results"] });
    assert.equal(t.sae.pretrained_name_or_path, nodePath.join(dir, "results"));
    const u = parseIn(dir, text, "analyze", {
      overrides: ["sae.pretrained_name_or_path=~/sae", "output_dir=out"],
      env: { HOME: "/home/someone" },
    });
    assert.equal(u.sae.pretrained_name_or_path, "/home/someone/sae");
    assert.equal(u.output_dir, nodePath.join(dir, "out"));
  }),
);

Deno.test(
  "the environment fills the API key and MongoDB settings, never over the file",
  withTempDir((dir) => {
    const base = SEED_TOML.replace('[mongo]\nmongo_uri = "localhost"\n', "");
    const withInterp = `${base}\n[auto_interp]\nopenai_model = "gpt-4o"\n`;

    const a = parseIn(dir, withInterp, "analyze", {
      env: { OPENAI_API_KEY: "sk-env-123", MONGO_URI: "db.internal:27018", MONGO_DB: "features" },
    });
    assert.equal(a.auto_interp?.openai_api_key, "sk-env-123");
    assert.deepEqual(a.mongo, {
      mongo_uri: "mongodb://db.internal:27018/",
      mongo_db: "features",
      timeout_ms: 5000,
    });

    const b = parseIn(
      dir,
      withInterp.replace('openai_model = "gpt-4o"', 'openai_api_key = "sk-file"'),
      "analyze",
      {
        env: { OPENAI_API_KEY: "sk-env-123" },
      },
    );
    assert.equal(b.auto_interp?.openai_api_key, "sk-file");

    const c = parseIn(dir, `${base}\n[mongo]\nmongo_db = "mine"\n`, "analyze", {
      env: { MONGO_URI: "mongodb://m:1/", MONGO_DB: "theirs" },
    });
    assert.equal(c.mongo?.mongo_uri, "mongodb://m:1/");
    assert.equal(c.mongo?.mongo_db, "mine");

    const d = parseIn(dir, base, "analyze", { env: { MONGO_DB: "only-db" } });
    assert.equal(d.mongo, null, "MONGO_DB alone does not switch to MongoDB");

    const e = parseIn(dir, base, "analyze", { env: {} });
    assert.equal(e.mongo, null);
    assert.equal(e.auto_interp, null);
  }),
);

Deno.test(
  "one settings file drives analyze, dla and autointerp",
  withTempDir((dir) => {
    const text = `${SEED_TOML}\n[direct_logit_attributor]\ntop_k = 5\n\n[auto_interp]\n`;
    const dla = parseIn(dir, text, "dla");
    assert.equal(dla.direct_logit_attributor.top_k, 5);
    assert.equal(dla.model_name, "pythia-160m");
    const ai = parseIn(dir, text, "autointerp");
    assert.equal(ai.auto_interp.n_activating_examples, 7);
    assert.equal(ai.model.dtype, "float16");
    assertConfigError(
      () => parseIn(dir, SEED_TOML, "dla"),
      'analyze.toml: missing required key "direct_logit_attributor"',
    );
  }),
);

Deno.test("redaction never lets the API key or a MongoDB password through", async (t) => {
  const dir = Deno.makeTempDirSync();
  try {
    const secret = "sk-live-0123456789abcdef";
    const text = SEED_TOML.replace(
      'mongo_uri = "localhost"',
      'mongo_uri = "mongodb://alice:pa55word@db:27017/"',
    ) +
      `\n[auto_interp]\nopenai_proxy = "http://bob:proxypass@proxy:3128"\n`;
    const s = parseIn(dir, text, "autointerp", { env: { OPENAI_API_KEY: secret } });
    assert.equal(s.auto_interp.openai_api_key, secret, "the resolved settings keep the key");

    for (const format of ["toml", "json"] as const) {
      await t.step(`formatSettings(${format})`, () => {
        const out = formatSettings(s, { format });
        assert.ok(!out.includes(secret), "no API key");
        assert.ok(!out.includes("pa55word") && !out.includes("proxypass"), "no password");
        assert.ok(out.includes("alice:***@db:27017"));
        assert.ok(out.includes("bob:***@proxy:3128"));
        assert.ok(out.includes('"***"'));
      });
    }
    await t.step("redactSettings() copies", () => {
      const r = redactSettings(s);
      assert.equal(r.auto_interp.openai_api_key, "***");
      assert.equal(r.mongo?.mongo_uri, "mongodb://alice:***@db:27017/");
      assert.equal(s.auto_interp.openai_api_key, secret, "the input is unchanged");
    });
    await t.step("a bad --set of the key does not echo it", () => {
      assertConfigError(
        () => parseIn(dir, text, "autointerp", { overrides: ["auto_interp.openai_api_key=[1]"] }),
        'analyze.toml: --set: auto_interp.openai_api_key: expected a string, got "***"',
      );
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("formatSettings() prints TOML that reads back to the same settings", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const s = parseIn(dir, SEED_TOML);
    const printed = formatSettings(s);
    assert.ok(printed.includes("[datasets.SlimPajama-3B]"));
    assert.ok(printed.includes("[[activation_factory.sources]]"));
    assert.ok(printed.includes("# cache_dir = (not set)"));
    // Derived keys are printed too; drop them before reading the text back as settings.
    const blocks = printed.split("\n\n").filter((b) => !b.startsWith("[[analyzer.samplings]]"));
    const back = parseIn(dir, blocks.join("\n\n").replace(/^analysis_name = .*$/m, ""));
    assert.deepEqual(back, s);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
