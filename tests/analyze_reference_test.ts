/**
 * `analyzeSae` against a slow, obviously-correct reference on real data: the tiny-neox fixture
 * model, the lm-saes-relu SAE (d_sae 256, dataset-wise norm, decoder-norm gating) at
 * `blocks.3.hook_resid_post`, and the first 64 corpus rows as contexts of 128 tokens (about 5,000
 * analyzed tokens).
 *
 * The reference tokenizes each row itself, runs the hook session (the LM pruned at the hook, no
 * SAE) for dense `[tokens, 64]` activations, encodes every token with `encodeReference` (float64,
 * plain loops), and computes per feature, with plain loops: act_times, max, mean, population std,
 * each context's peak, the ranking by peak, the band eligibility and the never-firing contexts.
 *
 * Tolerances, and why: the pipeline's activations come from the fused float32 graph (the SAE
 * encoder's 64-term dot products rounded in float32), the reference's from float64 arithmetic on
 * float32 hook values (the fused graph's LM part and the pruned hook session may differ in the
 * last bits, as ONNX Runtime fuses them differently). The difference is a few float32 ulps *of
 * the terms* (the dataset-norm scale folded into W_enc, 64 products), so values are compared on
 * the scale of the feature's maximum: |Δ| ≤ 5e-5 · max (measured: ≤ 9e-6 · max), and
 * max_activation within 1e-5 relative (measured: ≤ 4e-6). Means and standard deviations are within 1e-4 relative
 * (measured: ≤ 4e-6; a mean of values each within 9e-6 · max of the reference). act_times is
 * exact: the fixture SAE's biases keep every pre-activation on the corpus ≥ 1e-4 away from the
 * firing cut (fixtures/README.md), and the rows are fed as the SAE fixture was built (no BOS,
 * 128 tokens). Top-n order: rank by rank, the stored context's reference peak must equal the
 * reference peak of that rank within the tolerance, so only near-ties (within 5e-5 · max) may swap
 * places. Bands and non-activating samples are compared exactly with the n eligible contexts of
 * smallest seeded priority key (DESIGN.md: bottom-k sampling), unless a context sits within the
 * tolerance of a band edge, when membership in either band is accepted.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadTokenizer } from "../lib/data/mod.ts";
import { openHookSession } from "../lib/ort/mod.ts";
import { encodeReference, loadSae } from "../lib/sae/mod.ts";
import { parseSettings } from "../lib/settings/mod.ts";
import { openStore } from "../lib/store/mod.ts";
import type { FeatureRecord } from "../lib/types.ts";
import { analyzeSae } from "../pipelines/analyze.ts";
import type { AnalyzeSummary } from "../pipelines/summary.ts";
import {
  analyzedTokens,
  checkFeature,
  type DenseContext,
  type DenseRun,
  featureFacts,
  FIXTURES,
  type SamplingSpec,
} from "./_analyze_utils.ts";

const T = 128;
const B = 8;
const ROWS = 64;
const HOOK = "blocks.3.hook_resid_post";
const SOURCE = "corpus";
const SEED = 3;
const WINDOW = { before: 8, after: 4 };
/** The SAE fixture's features that never fire on the corpus. */
const CORPUS_DEAD = [7, 77, 177, 250];
const TOL = { value: 5e-5, max: 1e-5, stats: 1e-4 };

const TOML = (out: string) => `
sae_name = "relu-l3"
sae_series = "reference"
model_name = "tiny-neox"
output_dir = ${JSON.stringify(out)}

[sae]
pretrained_name_or_path = "${FIXTURES}sae/lm-saes-relu"

[model]
model_name = "tiny-neox"
model_from_pretrained_path = "${FIXTURES}tiny-neox"
prepend_bos = false

[datasets.${SOURCE}]
dataset_name_or_path = "${FIXTURES}text/corpus.jsonl"

[activation_factory]
target = "activations-2d"
hook_points = ["${HOOK}"]
batch_size = ${B}
context_size = ${T}

[[activation_factory.sources]]
type = "dataset"
name = "${SOURCE}"

[analyzer]
total_analyzing_tokens = ${ROWS * T}
window_before = ${WINDOW.before}
window_after = ${WINDOW.after}
seed = ${SEED}

[analyzer.subsamples]
top_activations = { proportion = 1.0, n_samples = 10 }
"subsampling_80%" = { proportion = 0.8, n_samples = 3 }
"subsampling_60%" = { proportion = 0.6, n_samples = 3 }
"subsampling_40%" = { proportion = 0.4, n_samples = 3 }
"subsampling_20%" = { proportion = 0.2, n_samples = 3 }
non_activating = { proportion = 0.3, n_samples = 5 }
`;

/** The reference: the first ROWS rows, tokenized, hooked, encoded in float64. */
async function reference(): Promise<DenseRun> {
  const { tokenizer } = await loadTokenizer(`${FIXTURES}tiny-neox`);
  const lines = (await Deno.readTextFile(`${FIXTURES}text/corpus.jsonl`)).split("\n");
  const contexts: DenseContext[] = lines.slice(0, ROWS).map((line, row) => {
    const ids = tokenizer.encode(JSON.parse(line).text, { add_special_tokens: false }).ids
      .slice(0, T);
    const tokens = new Int32Array(T); // pad = EOS = 0
    tokens.set(ids);
    const mask = new Uint8Array(T);
    ids.forEach((id, t) => mask[t] = id === 0 ? 0 : 1);
    return {
      tokens,
      mask,
      length: ids.length,
      origin: { source: SOURCE, shard: 0, row, offset: 0 },
    };
  });
  const sae = await loadSae(`${FIXTURES}sae/lm-saes-relu`);
  const N = sae.dSae;
  const D = sae.dModel;
  const acts = new Float32Array(ROWS * T * N);
  await using hs = await openHookSession(`${FIXTURES}tiny-neox/model.onnx`, [HOOK], {
    intraOpThreads: 1,
  });
  for (let b0 = 0; b0 < ROWS; b0 += B) {
    const batch = contexts.slice(b0, b0 + B);
    const tokens = new Int32Array(batch.length * T);
    const attention = new Uint8Array(batch.length * T);
    batch.forEach((c, i) => {
      tokens.set(c.tokens, i * T);
      attention.fill(1, i * T, i * T + c.length);
    });
    const out = await hs.session.run(
      hs.feeds({ batchSize: batch.length, contextSize: T, tokens, attention }),
    );
    const x = out[hs.tensors[HOOK]!]!.data as Float32Array;
    batch.forEach((c, i) => {
      const ci = b0 + i;
      const enc = encodeReference(sae, x.slice(i * T * D, (i * T + c.length) * D), c.length);
      for (let j = 0; j < enc.value.length; j++) {
        const t = enc.position[j]!;
        if (c.mask[t]) acts[(ci * T + t) * N + enc.feature[j]!] = enc.value[j]!;
      }
    });
  }
  return { contexts, contextSize: T, dSae: N, acts };
}

interface Run {
  ref: DenseRun;
  summary: AnalyzeSummary;
  records: FeatureRecord[];
  samplings: SamplingSpec[];
}

/** The pipeline run and the reference, computed once for the tests of this file. */
let cached: Promise<Run> | undefined;
function run(): Promise<Run> {
  cached ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "saeflow_test_" });
    try {
      const out = join(dir, "out");
      const settings = parseSettings(TOML(out), join(dir, "analyze.toml"), "analyze", {
        env: {},
        cwd: dir,
      });
      const summary = await analyzeSae(settings, { log: () => {}, progress: false, threads: 1 });
      await using store = await openStore({ outputDir: out });
      const records = await Array.fromAsync(store.readFeatures("reference", "relu-l3"));
      return {
        ref: await reference(),
        summary,
        records,
        samplings: settings.analyzer.samplings as SamplingSpec[],
      };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  return cached;
}

Deno.test("analyzeSae() reads the same contexts and tokens as the reference", async () => {
  const { ref, summary, records } = await run();
  assert.equal(summary.tokens, ROWS * T);
  assert.equal(summary.analyzedTokens, analyzedTokens(ref));
  assert.ok(analyzedTokens(ref) > 3000, `only ${analyzedTokens(ref)} tokens analyzed`);
  assert.equal(records.length, 256);
  for (const r of records) {
    assert.equal(r.analyses.default!.n_analyzed_tokens, analyzedTokens(ref), `feature ${r.index}`);
  }
});

Deno.test("analyzeSae() agrees with the float64 reference on every statistic and sample of 256 features", async () => {
  const { ref, records, samplings } = await run();
  let exact = 0;
  let tolerated = 0;
  for (const r of records) {
    const report = checkFeature(r.analyses.default!, featureFacts(ref, r.index), ref, {
      samplings,
      windowBefore: WINDOW.before,
      windowAfter: WINDOW.after,
      seed: SEED,
      tol: TOL,
    });
    exact += report.exactBands;
    tolerated += report.toleratedBands;
  }
  // Near-edge contexts are rare: almost every band is compared exactly (measured: 989 of 1008).
  assert.ok(exact > 900 && tolerated <= exact / 20, `${exact} exact, ${tolerated} tolerated`);
});

Deno.test("analyzeSae() output: bands hold only in-band peaks, non-activating samples no active token, dead features nothing", async () => {
  const { ref, records, samplings } = await run();
  const bySpec = new Map(samplings.map((s) => [s.name, s]));
  const ctxOf = new Map(ref.contexts.map((c, i) => [c.origin.row, i]));
  let bandSamples = 0;
  let nonActivating = 0;
  for (const r of records) {
    const a = r.analyses.default!;
    if (a.act_times === 0) {
      assert.deepEqual(a.samplings, [], `dead feature ${r.index} has samplings`);
      assert.equal(a.max_activation, 0);
      continue;
    }
    for (const sampling of a.samplings) {
      const spec = bySpec.get(sampling.name)!;
      for (const s of sampling.samples) {
        const ci = ctxOf.get(s.row)!;
        // The context's true peak (over all its tokens, not just the window), per the reference.
        let peak = 0;
        for (let t = 0; t < T; t++) peak = Math.max(peak, ref.acts[(ci * T + t) * 256 + r.index]!);
        if (spec.kind === "band") {
          bandSamples++;
          assert.ok(s.peak > spec.lower * a.max_activation, `feature ${r.index} ${spec.name}`);
          assert.ok(
            s.peak <= spec.proportion * a.max_activation,
            `feature ${r.index} ${spec.name}`,
          );
          assert.ok(Math.abs(peak - s.peak) <= TOL.value * a.max_activation, "peak of the context");
        } else if (spec.kind === "non_activating") {
          nonActivating++;
          assert.ok(s.acts.every((v) => v === 0), `feature ${r.index}: active token in window`);
          assert.equal(peak, 0, `feature ${r.index}: fires in non-activating row ${s.row}`);
        }
      }
    }
  }
  assert.ok(bandSamples > 500 && nonActivating > 500, `${bandSamples} / ${nonActivating} samples`);
  for (const f of CORPUS_DEAD) {
    const a = records[f]!.analyses.default!;
    assert.equal(a.act_times, 0, `feature ${f} fired`);
    assert.deepEqual(a.samplings, []);
    assert.deepEqual(a.quantiles, []);
  }
});
