import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { bf16BitsToNumber, numberToBf16Bits } from "../safetensors/_dtype.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertThrows,
  dense,
  prng,
  randomWeights,
  uniform,
  writeLmSaes,
  writeSaeLens,
} from "./_testing.ts";
import { checkHookWidth, encodeReference, loadSae, type SaeDescription } from "./mod.ts";

const D = 16;
const N = 48;
const T = 40;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sae_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Random activations with a typical norm well away from √d (so that scale factors matter). */
function inputs(seed: number, scale = 3): Float32Array {
  return uniform(prng(seed), T * D, -scale, scale);
}

function assertClose(a: Float32Array, b: Float32Array, rel: number, what: string): void {
  assertEquals(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    const tol = rel * Math.max(1, Math.abs(a[i]!), Math.abs(b[i]!));
    assert(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

function activeSet(sae: SaeDescription, x: Float32Array): string[] {
  const acts = encodeReference(sae, x, T);
  return [...acts.position].map((p, j) => `${p}:${acts.feature[j]}`);
}

Deno.test("the same SAE in both layouts loads to the same description and activations", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(1, D, N);
    await writeLmSaes(join(dir, "lm"), w, { apply_decoder_bias_to_pre_encoder: true });
    await writeSaeLens(join(dir, "sl"), w, {});
    const lm = await loadSae(join(dir, "lm"));
    const sl = await loadSae(join(dir, "sl"));
    assertEquals([lm.format, sl.format], ["lm-saes", "saelens"]);
    for (
      const key of [
        "dModel",
        "dSae",
        "activation",
        "W_enc",
        "b_enc",
        "W_dec",
        "b_dec",
        "applyBDecToInput",
        "sparsityIncludeDecoderNorm",
        "hookPointIn",
        "hookPointOut",
        "center",
        "dtype",
      ] as const
    ) {
      assertEquals(lm[key], sl[key], key);
    }
    assertEquals(lm.hookPointIn, "blocks.0.hook_resid_post");
    const x = inputs(2);
    const a = encodeReference(lm, x, T);
    assert(a.value.length > T, "expected some activity");
    assertEquals(a, encodeReference(sl, x, T));
  });
});

Deno.test("JumpReLU thresholds agree across layouts, and LM-SAEs gates in decoder-norm units", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(3, D, N);
    await writeLmSaes(join(dir, "lm"), w, { act_fn: "jumprelu" });
    await writeSaeLens(join(dir, "sl"), w, {
      architecture: "jumprelu",
      apply_b_dec_to_input: false,
    });
    const x = inputs(4);
    const lm = await loadSae(join(dir, "lm"));
    const sl = await loadSae(join(dir, "sl"));
    assertClose(lm.activation.threshold!, w.threshold!, 1e-6, "threshold");
    assertEquals(activeSet(lm, x), activeSet(sl, x));

    // sparsity_include_decoder_norm: h·‖W_D_f‖ > θ_f  ⇔  h > θ_f/‖W_D_f‖ (SAELens has no gating).
    await writeLmSaes(join(dir, "lmg"), w, {
      act_fn: "jumprelu",
      sparsity_include_decoder_norm: true,
    });
    const gated = await loadSae(join(dir, "lmg"));
    const norms = gated.decoderNorm!;
    const equivalent = w.threshold!.map((t, f) => t / norms[f]!);
    await writeSaeLens(join(dir, "sl2"), w, {
      architecture: "jumprelu",
      apply_b_dec_to_input: false,
    }, {
      threshold: equivalent,
    });
    const sl2 = await loadSae(join(dir, "sl2"));
    assertEquals(activeSet(gated, x), activeSet(sl2, x));
    assertClose(
      dense(encodeReference(gated, x, T), T, N),
      dense(encodeReference(sl2, x, T), T, N),
      1e-6,
      "acts",
    );
    assert(
      activeSet(gated, x).join() !== activeSet(lm, x).join(),
      "gating must change which features fire",
    );
  });
});

Deno.test("TopK with decoder norms: LM-SAEs reports h, SAELens reports h·‖W_dec_f‖", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(5, D, N);
    await writeLmSaes(join(dir, "lm"), w, {
      act_fn: "topk",
      top_k: 5,
      sparsity_include_decoder_norm: true,
    });
    await writeSaeLens(join(dir, "sl"), w, {
      architecture: "topk",
      k: 5,
      rescale_acts_by_decoder_norm: true,
      apply_b_dec_to_input: false,
    });
    const lm = await loadSae(join(dir, "lm"));
    const sl = await loadSae(join(dir, "sl"));
    assertEquals(
      sl.sparsityIncludeDecoderNorm,
      false,
      "SAELens rescaling is folded into the weights",
    );
    const x = inputs(6);
    const a = encodeReference(lm, x, T);
    const b = encodeReference(sl, x, T);
    assertEquals([...a.position], [...b.position]);
    assertEquals([...a.feature], [...b.feature]);
    const norms = lm.decoderNorm!;
    const scaled = Float32Array.from(a.value, (v, j) => v * norms[a.feature[j]!]!);
    assertClose(scaled, b.value, 1e-5, "scaled topk values");
    for (let t = 0; t < T; t++) assert([...a.position].filter((p) => p === t).length <= 5);
  });
});

Deno.test("a dataset-wise norm is folded: input scale = training scale ÷ f, thresholds rescaled", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(7, D, N);
    const avg = 2.5; // f = √16 / 2.5 = 1.6
    const hook = "blocks.3.hook_resid_post";
    const config = {
      act_fn: "jumprelu",
      sparsity_include_decoder_norm: true,
      apply_decoder_bias_to_pre_encoder: true,
      hook_point_in: hook,
      hook_point_out: hook,
    };
    await writeLmSaes(join(dir, "ds"), w, { ...config, norm_activation: "dataset-wise" }, {
      extra: { [`dataset_average_activation_norm.${hook}`]: avg },
    });
    await writeLmSaes(join(dir, "inf"), w, { ...config, norm_activation: "inference" });
    const f = Math.sqrt(D) / avg;
    const x = inputs(8);
    const xTrain = x.map((v) => v * f);
    const training = dense(encodeReference(await loadSae(join(dir, "inf")), xTrain, T), T, N);

    const normalized = await loadSae(join(dir, "ds"), { scale: "normalized" });
    assertEquals(normalized.normalization.scale, "normalized");
    assertClose(dense(encodeReference(normalized, x, T), T, N), training, 1e-5, "normalized");

    const folded = await loadSae(join(dir, "ds"));
    assertEquals(folded.normalization, {
      method: "dataset-wise",
      perToken: "none",
      datasetAverageNorm: { in: avg, out: avg },
      inputFactor: f,
      scale: "input",
      thresholdsRescaled: true,
    });
    assertClose(
      dense(encodeReference(folded, x, T), T, N),
      training.map((v) => v / f),
      1e-5,
      "input scale",
    );
    // Reconstruction in raw units: W_dec and b_dec map input-scale acts to raw activations.
    assertClose(folded.b_dec, w.b_dec.map((v) => v / f), 1e-6, "b_dec");

    const asSaved = await loadSae(join(dir, "ds"), { jumpReluThresholds: "as-saved" });
    assertClose(asSaved.activation.threshold!, w.threshold!, 1e-6, "as-saved threshold");
    assertEquals(asSaved.normalization.thresholdsRescaled, false);
    assert(
      activeSet(asSaved, x).join() !== activeSet(folded, x).join(),
      "as-saved must differ here",
    );
  });
});

Deno.test("a BF16 checkpoint equals an F32 one holding the same bf16 values", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(9, D, N);
    const round = (a: Float32Array) => a.map((v) => bf16BitsToNumber(numberToBf16Bits(v)));
    const r = {
      ...w,
      W_enc: round(w.W_enc),
      b_enc: round(w.b_enc),
      W_dec: round(w.W_dec),
      b_dec: round(w.b_dec),
    };
    await writeLmSaes(join(dir, "bf16"), w, {}, { dtype: "BF16" });
    await writeLmSaes(join(dir, "f32"), r, {});
    const a = await loadSae(join(dir, "bf16"));
    const b = await loadSae(join(dir, "f32"));
    assertEquals([a.dtype, b.dtype], ["BF16", "F32"]);
    const x = inputs(10);
    assertEquals(encodeReference(a, x, T), encodeReference(b, x, T));
  });
});

Deno.test("center comes from the config, can be overridden, and removes each token's mean", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(11, D, N);
    await writeSaeLens(join(dir, "c"), w, {
      metadata: {
        hook_name: "blocks.0.hook_resid_post",
        model_from_pretrained_kwargs: { center_writing_weights: true },
      },
    });
    const on = await loadSae(join(dir, "c"));
    assertEquals([on.center, on.centerSource], [
      true,
      "config metadata.model_from_pretrained_kwargs.center_writing_weights = true",
    ]);
    const off = await loadSae(join(dir, "c"), { center: false });
    assertEquals([off.center, off.centerSource], [false, "set by the caller"]);
    const x = inputs(12);
    const centered = x.slice();
    for (let t = 0; t < T; t++) {
      const row = centered.subarray(t * D, (t + 1) * D);
      const mean = row.reduce((s, v) => s + v, 0) / D;
      row.forEach((v, i) => (row[i] = v - mean));
    }
    assertClose(
      dense(encodeReference(on, x, T), T, N),
      dense(encodeReference(off, centered, T), T, N),
      1e-5,
      "center",
    );
    await writeSaeLens(join(dir, "plain"), w, {});
    const plain = await loadSae(join(dir, "plain"));
    assertEquals([plain.center, plain.centerSource], [
      false,
      "the config does not say how the model was loaded",
    ]);
  });
});

Deno.test("per-token normalizations are applied by the encoder", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(13, D, N);
    await writeLmSaes(join(dir, "tw"), w, { norm_activation: "token-wise" });
    await writeLmSaes(join(dir, "inf"), w, {});
    const tw = await loadSae(join(dir, "tw"));
    assertEquals(tw.normalization.perToken, "rescale");
    const x = inputs(14);
    const scaled = x.slice();
    for (let t = 0; t < T; t++) {
      const row = scaled.subarray(t * D, (t + 1) * D);
      const norm = Math.hypot(...row);
      row.forEach((v, i) => (row[i] = v * Math.sqrt(D) / norm));
    }
    const inf = await loadSae(join(dir, "inf"));
    assertClose(
      dense(encodeReference(tw, x, T), T, N),
      dense(encodeReference(inf, scaled, T), T, N),
      1e-5,
      "token-wise",
    );
    await writeSaeLens(join(dir, "ln"), w, { normalize_activations: "layer_norm" });
    assertEquals((await loadSae(join(dir, "ln"))).normalization.perToken, "layer-norm");
    await writeSaeLens(join(dir, "old"), w, {
      normalize_activations: false,
      hook_point: "blocks.1.hook_mlp_out",
      metadata: undefined,
    });
    const old = await loadSae(join(dir, "old"));
    assertEquals([old.normalization.method, old.hookPointIn], ["none", "blocks.1.hook_mlp_out"]);
  });
});

Deno.test("old flat SAELens configs with activation_fn_str topk load as TopK", async () => {
  await withTempDir(async (dir) => {
    const w = randomWeights(15, D, N);
    await writeSaeLens(join(dir, "old"), w, {
      architecture: undefined,
      activation_fn_str: "topk",
      activation_fn_kwargs: { k: 3 },
      hook_name: "blocks.2.hook_resid_pre",
      metadata: undefined,
    });
    const sae = await loadSae(join(dir, "old"));
    assertEquals(sae.activation, { kind: "topk", k: 3 });
    assertEquals(sae.hookPointIn, "blocks.2.hook_resid_pre");
  });
});

Deno.test("loadSae() rejects bad checkpoints with a one-line ConfigError", async (t) => {
  await withTempDir(async (dir) => {
    const w = randomWeights(17, D, N);
    const cases: [string, () => Promise<string>, string][] = [
      ["a missing folder", () => Promise.resolve(join(dir, "nope")), "no such folder"],
      ["a file instead of a folder", async () => {
        await writeSaeLens(join(dir, "f"), w, {});
        return join(dir, "f", "cfg.json");
      }, "not a folder (give the folder that holds config.json or cfg.json)"],
      ["a folder without a config", async () => {
        await Deno.mkdir(join(dir, "empty"));
        return join(dir, "empty");
      }, "no config.json (Language-Model-SAEs) or cfg.json (SAELens) in the folder"],
      ["a model config instead of an SAE config", async () => {
        await Deno.mkdir(join(dir, "lmcfg"));
        await Deno.writeTextFile(
          join(dir, "lmcfg", "config.json"),
          JSON.stringify({ model_type: "gpt_neox" }),
        );
        return join(dir, "lmcfg");
      }, "config.json has no d_model: not a Language-Model-SAEs SAE config"],
      [
        "invalid JSON",
        async () => {
          await Deno.mkdir(join(dir, "badjson"));
          await Deno.writeTextFile(join(dir, "badjson", "cfg.json"), "{ d_in: 3");
          return join(dir, "badjson");
        },
        "cfg.json is not valid JSON (Expected property name or '}' in JSON at position 2 (line 1 column 3))",
      ],
      [
        "a missing tensor",
        async () => {
          await writeLmSaes(join(dir, "missing"), w, {}, { omit: ["W_E"] });
          return join(dir, "missing");
        },
        "tensor W_E is missing from sae_weights.safetensors (it has: W_D, activation_function.log_jumprelu_threshold, b_D, b_E)",
      ],
      ["a transposed tensor", async () => {
        const big = randomWeights(18, 64, 512);
        await writeLmSaes(join(dir, "shape"), big, {}, { shapes: { W_E: [512, 64] } });
        return join(dir, "shape");
      }, "tensor W_E has shape [512, 64], expected [64, 512]"],
      ["an unknown act_fn", async () => {
        await writeLmSaes(join(dir, "gelu"), w, { act_fn: "gelu" });
        return join(dir, "gelu");
      }, 'config.json: act_fn "gelu" is not supported; valid: relu, jumprelu, topk, batchtopk'],
      [
        "an unknown SAELens architecture",
        async () => {
          await writeSaeLens(join(dir, "gated"), w, { architecture: "gated" });
          return join(dir, "gated");
        },
        'cfg.json: architecture "gated" is not supported; valid: standard, jumprelu, topk, batchtopk',
      ],
      [
        "a batch-wise norm",
        async () => {
          await writeLmSaes(join(dir, "bw"), w, { norm_activation: "batch-wise" });
          return join(dir, "bw");
        },
        'config.json: norm_activation "batch-wise" scales each batch by its own average norm, so activations depend on the batch; not supported (use "dataset-wise")',
      ],
      [
        "a dataset-wise norm without its tensor",
        async () => {
          await writeLmSaes(join(dir, "nonorm"), w, { norm_activation: "dataset-wise" });
          return join(dir, "nonorm");
        },
        'norm_activation is "dataset-wise" but tensor dataset_average_activation_norm.blocks.0.hook_resid_post is missing from sae_weights.safetensors',
      ],
      [
        "a garbage dataset norm",
        async () => {
          await writeLmSaes(join(dir, "zeronorm"), w, { norm_activation: "dataset-wise" }, {
            extra: { "dataset_average_activation_norm.blocks.0.hook_resid_post": 0 },
          });
          return join(dir, "zeronorm");
        },
        "tensor dataset_average_activation_norm.blocks.0.hook_resid_post is 0, expected a positive norm",
      ],
      [
        "a BatchTopK SAE without a threshold",
        async () => {
          await writeLmSaes(join(dir, "btk"), w, { act_fn: "batchtopk" }, {
            omit: ["activation_function.log_jumprelu_threshold"],
          });
          return join(dir, "btk");
        },
        'act_fn "batchtopk" needs a saved JumpReLU threshold (activation_function.log_jumprelu_threshold) to be evaluated per token; sae_weights.safetensors has none',
      ],
      ["a JumpReLU SAELens SAE without a threshold", async () => {
        await writeSaeLens(join(dir, "jr"), { ...w, threshold: undefined } as never, {
          architecture: "jumprelu",
        });
        return join(dir, "jr");
      }, "tensor threshold is missing from sae_weights.safetensors"],
      [
        "a truncated weights file",
        async () => {
          await writeSaeLens(join(dir, "cut"), w, {});
          const p = join(dir, "cut", "sae_weights.safetensors");
          const bytes = await Deno.readFile(p);
          await Deno.writeFile(p, bytes.subarray(0, bytes.length - 10));
          return join(dir, "cut");
        },
        `Cannot read safetensors ${
          join(dir, "cut", "sae_weights.safetensors")
        }: tensor "b_enc" data_offsets [6208, 6400] run past the end of the 6390-byte data section`,
      ],
      ["a bad k", async () => {
        await writeSaeLens(join(dir, "k0"), w, { architecture: "topk", k: 0 });
        return join(dir, "k0");
      }, "cfg.json: k must be a positive integer, got 0"],
    ];
    for (const [name, setup, detail] of cases) {
      await t.step(`rejects ${name}`, async () => {
        const path = await setup();
        await assertRejects(() => loadSae(path), ConfigError, `Cannot load SAE ${path}: ${detail}`);
      });
    }
  });
});

Deno.test("checkHookWidth() names the SAE, its d_model and the hook", async () => {
  await withTempDir(async (dir) => {
    await writeSaeLens(dir, randomWeights(19, D, N), {});
    const sae = await loadSae(dir);
    checkHookWidth(sae, D, "blocks.0.hook_resid_post");
    assertThrows(
      () => checkHookWidth(sae, 768, "blocks.0.hook_resid_post"),
      ConfigError,
      `SAE ${dir} expects d_model 16, but hook blocks.0.hook_resid_post has width 768`,
    );
  });
});
