/**
 * The `dla` runner on the fixtures (tiny-neox + the lm-saes-relu SAE), against the SQLite store
 * and MongoDB (`MONGO_URI`): every feature gets the logits `attributeSae` computes, re-runs are
 * idempotent, analyses already stored are kept; and `saeflow dla` through the real CLI.
 */

import assert from "node:assert/strict";
import { attributeSae, type FeatureDla } from "../lib/dla/mod.ts";
import { ConfigError, InterruptedError } from "../lib/errors.ts";
import { loadSae } from "../lib/sae/mod.ts";
import {
  type DirectLogitAttributeSettings,
  type DirectLogitAttributeSettingsInput,
  DirectLogitAttributeSettingsSchema,
} from "../lib/settings/mod.ts";
import type { FeatureStore } from "../lib/store/mod.ts";
import type { FeatureAnalysis, FeatureRecord } from "../lib/types.ts";
import { directLogitAttribute } from "../pipelines/dla.ts";
import { loadVocab } from "../pipelines/_model.ts";
import { openSettingsStore } from "../pipelines/_store.ts";
import { loadModelDir } from "../lib/onnx/mod.ts";
import { mongoIgnored, withMongo, withTempDir } from "./_utils.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url).pathname;
const SAE_DIR = `${FIXTURES}sae/lm-saes-relu`;
const MODEL_DIR = `${FIXTURES}tiny-neox`;
const SESSION = { intraOpThreads: 1 };
const SERIES = "fixtures";
const NAME = "relu-l3";
const D_SAE = 256;

function settings(extra: Partial<DirectLogitAttributeSettingsInput> = {}) {
  return DirectLogitAttributeSettingsSchema.parse({
    sae_name: NAME,
    sae_series: SERIES,
    model_name: "tiny-neox",
    sae: { pretrained_name_or_path: SAE_DIR },
    model: { model_name: "tiny-neox", model_from_pretrained_path: MODEL_DIR },
    direct_logit_attributor: { top_k: 7, chunk_size: 40 },
    ...extra,
  });
}

/** The logits computed directly, once per file. */
let reference: Promise<Map<number, FeatureDla["logits"]>> | undefined;
function expected(): Promise<Map<number, FeatureDla["logits"]>> {
  reference ??= (async () => {
    const sae = await loadSae(SAE_DIR);
    const vocab = await loadVocab(await loadModelDir(MODEL_DIR));
    const out = new Map<number, FeatureDla["logits"]>();
    for await (
      const { index, logits } of attributeSae({
        sae,
        model: `${MODEL_DIR}/model.onnx`,
        topK: 7,
        center: true,
        vocab,
        session: SESSION,
      })
    ) out.set(index, logits);
    return out;
  })();
  return reference;
}

function fakeAnalysis(): FeatureAnalysis {
  return {
    act_times: 17,
    n_analyzed_tokens: 4096,
    max_activation: 3.5,
    mean: 1.25,
    std: 0.5,
    histogram: { relative_accuracy: 0.01, index_offset: -3, counts: new Float64Array([1, 4, 12]) },
    quantiles: [{ q: 0.5, value: 1.1 }],
    samplings: [{
      name: "top_activations",
      band: null,
      samples: [{
        tokens: new Int32Array([5, 6, 7]),
        acts: new Float32Array([0, 3.5, 0.25]),
        peak: 3.5,
        peak_pos: 1,
        source: "corpus",
        shard: 0,
        row: 12,
        offset: 0,
      }],
    }],
  };
}

async function readAll(store: FeatureStore): Promise<FeatureRecord[]> {
  return await Array.fromAsync(store.readFeatures(SERIES, NAME));
}

function assertSameTokens(got: FeatureDla["logits"], want: FeatureDla["logits"], index: number) {
  for (const side of ["top_positive", "top_negative"] as const) {
    assert.deepEqual(
      got[side].map((t) => [t.id, t.token]),
      want[side].map((t) => [t.id, t.token]),
      `feature ${index} ${side}`,
    );
    got[side].forEach((t, k) => {
      assert.ok(Math.abs(t.logit - want[side][k]!.logit) < 1e-5, `feature ${index} ${side}[${k}]`);
    });
  }
}

/**
 * The runner's contract against one store; `withSettings` points settings at that store and
 * `count` limits the run to features `[0, count)` (MongoDB-compatible test servers are slow).
 */
async function runnerContract(
  t: Deno.TestContext,
  store: FeatureStore,
  withSettings: (s: DirectLogitAttributeSettings) => DirectLogitAttributeSettings,
  count = D_SAE,
) {
  const want = await expected();
  const range = count === D_SAE ? {} : { feature_range: [0, count - 1] as [number, number] };
  const analysis = fakeAnalysis();
  await store.writeFeatures([{
    sae_series: SERIES,
    sae_name: NAME,
    index: 5,
    analyses: { default: analysis },
  }]);

  const lines: string[] = [];
  let first: FeatureRecord[] = [];
  await t.step("every feature gets the logits attributeSae() computes", async () => {
    const summary = await directLogitAttribute(withSettings(settings(range)), {
      log: (l) => lines.push(l),
      session: SESSION,
      writeBatch: 100,
      progressIntervalMs: 0,
    });
    assert.equal(summary.features, count);
    assert.equal(summary.d_sae, D_SAE);
    assert.equal(summary.sae, `${SERIES}/${NAME}`);
    assert.equal(summary.location, store.location);
    first = await readAll(store);
    assert.deepEqual(first.map((r) => r.index), Array.from({ length: count }, (_, i) => i));
    for (const r of first) {
      assert.ok(r.logits, `feature ${r.index} has logits`);
      assert.equal(r.logits.top_positive.length, 7);
      assertSameTokens(r.logits, want.get(r.index)!, r.index);
    }
  });

  await t.step("progress lines and one summary line are logged", () => {
    assert.match(
      lines[0]!,
      new RegExp(`^dla: \\d+/${count} features  \\S+ features/s  elapsed `),
    );
    assert.match(
      lines.at(-1)!,
      new RegExp(
        `^dla: ${count} features of fixtures/relu-l3 through tiny-neox's unembedding in .*` +
          "top 7 tokens, centered; stored in ",
      ),
    );
  });

  await t.step("the SAE and the model with its vocabulary are stored", async () => {
    const sae = await store.getSae(SERIES, NAME);
    assert.equal(sae?.d_sae, D_SAE);
    assert.equal(sae?.hook_point, "blocks.3.hook_resid_post");
    assert.equal(sae?.model, "tiny-neox");
    const model = await store.getModel("tiny-neox");
    assert.equal(model?.vocab[0], "<|endoftext|>");
    assert.equal(model?.config["model_from_pretrained_path"], MODEL_DIR);
  });

  await t.step("an analysis stored before is kept", async () => {
    const f = await store.getFeature(SERIES, NAME, 5);
    assert.deepEqual(f?.analyses["default"], analysis);
    assert.ok(f?.logits);
  });

  await t.step("a re-run, with the model found through the store, changes nothing", async () => {
    const summary = await directLogitAttribute(withSettings(settings({ ...range, model: null })), {
      log: () => {},
      session: SESSION,
    });
    assert.equal(summary.features, count);
    const again = await readAll(store);
    assert.equal(again.length, count);
    assert.deepEqual(again, first);
  });
}

Deno.test("dla runner writes every feature's logits to the SQLite store", async (t) => {
  await withTempDir(async (dir) => {
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    await runnerContract(t, store, (s) => ({ ...s, output_dir: dir }));
  });
});

const MONGO_NAME = "dla runner writes every feature's logits to MongoDB";
Deno.test({
  name: MONGO_NAME,
  ignore: mongoIgnored(MONGO_NAME),
  fn: (t) =>
    withMongo(t, async ({ uri, db, store }) => {
      await runnerContract(t, store, (s) => ({
        ...s,
        mongo: { mongo_uri: uri, mongo_db: db, timeout_ms: 10_000 },
      }), 16);
    }),
});

Deno.test("dla runner computes only the selected features", async () => {
  await withTempDir(async (dir) => {
    const want = await expected();
    const summary = await directLogitAttribute(
      { ...settings({ feature_range: [10, 12] }), output_dir: dir },
      { log: () => {}, session: SESSION },
    );
    assert.equal(summary.features, 3);
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    const records = await readAll(store);
    assert.deepEqual(records.map((r) => r.index), [10, 11, 12]);
    for (const r of records) assertSameTokens(r.logits!, want.get(r.index)!, r.index);

    await directLogitAttribute({ ...settings(), output_dir: dir }, {
      features: [200, 3],
      log: () => {},
      session: SESSION,
    });
    assert.deepEqual((await readAll(store)).map((r) => r.index), [3, 10, 11, 12, 200]);
  });
});

Deno.test("dla runner refuses a feature index beyond d_sae with a ConfigError", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      directLogitAttribute({ ...settings({ features: [3, 256] }), output_dir: dir }, {
        log: () => {},
        session: SESSION,
      }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(
          e.message,
          "features: feature 256 is out of range for SAE fixtures/relu-l3 (d_sae 256)",
        );
        return true;
      },
    );
  });
});

Deno.test("dla runner refuses a model folder without an ONNX model", async () => {
  await withTempDir(async (dir) => {
    const tokenizerOnly = `${dir}/tokenizer-only`;
    await Deno.mkdir(tokenizerOnly);
    await Deno.copyFile(`${MODEL_DIR}/tokenizer.json`, `${tokenizerOnly}/tokenizer.json`);
    await assert.rejects(
      directLogitAttribute(
        {
          ...settings({ model: { model_name: "gpt2", model_from_pretrained_path: tokenizerOnly } }),
          output_dir: dir,
        },
        { log: () => {}, session: SESSION },
      ),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(
          e.message,
          `Model folder ${tokenizerOnly} has no ONNX model: looked for model.onnx, onnx/model.onnx, decoder_model.onnx, onnx/decoder_model.onnx`,
        );
        return true;
      },
    );
  });
});

// --- Through the CLI ---------------------------------------------------------------------------

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const CLI_NAME = "saeflow dla CONFIG stores logits that saeflow show feature --json prints";
async function cli(args: string[], cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    cwd,
    env: { MONGO_URI: "", NO_COLOR: "1" },
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
      const config = `${dir}/dla.toml`;
      await Deno.writeTextFile(
        config,
        [
          `sae_name = "${NAME}"`,
          `sae_series = "${SERIES}"`,
          `model_name = "tiny-neox"`,
          `output_dir = "out"`,
          `[sae]`,
          `pretrained_name_or_path = "${SAE_DIR}"`,
          `[model]`,
          `model_from_pretrained_path = "${MODEL_DIR}"`,
          `[direct_logit_attributor]`,
          `top_k = 7`,
        ].join("\n"),
      );
      const run = await cli(["dla", config], dir);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /dla: 256 features of fixtures\/relu-l3/);

      const show = await cli(["show", "feature", NAME, "42", "--output-dir", "out", "--json"], dir);
      assert.equal(show.code, 0, show.stderr);
      const doc = JSON.parse(show.stdout);
      const want = (await expected()).get(42)!;
      assert.deepEqual(
        doc.logits.top_positive.map((t: { id: number; token: string }) => [t.id, t.token]),
        want.top_positive.map((t) => [t.id, t.token]),
      );
      assert.equal(doc.logits.histogram.counts.length, want.histogram.counts.length);

      const bad = await cli(["dla", config, "--set", "direct_logit_attributor.chunk_size=0"], dir);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /direct_logit_attributor\.chunk_size: expected a positive integer/);
    });
  },
});

Deno.test("dla runner stopped by SIGTERM: one InterruptedError line, exit 143, finished logits kept", async () => {
  await withTempDir(async (dir) => {
    const stop = new AbortController();
    const error = await directLogitAttribute({ ...settings(), output_dir: dir }, {
      session: SESSION,
      progressIntervalMs: 0,
      log: (line) => {
        if (line.startsWith("dla: 2/256 ")) stop.abort("SIGTERM");
      },
      signal: stop.signal,
    }).then(() => undefined, (e) => e);
    assert.ok(error instanceof InterruptedError, String(error));
    assert.equal(error.exitCode, 143);
    const m =
      /^dla: stopped by SIGTERM after (\d+) of 256 features; their logits are stored, a later run does the rest$/
        .exec(error.message);
    assert.ok(m, error.message);
    const n = Number(m[1]);
    assert.ok(n >= 1 && n <= 3, `stopped after feature 2 was computed, got ${n}`);
    await using store = await openSettingsStore({ mongo: null, output_dir: dir });
    assert.deepEqual(
      (await readAll(store)).map((r) => r.index),
      Array.from({ length: n }, (_, i) => i),
      "exactly the features the message names are stored",
    );
  });
});
