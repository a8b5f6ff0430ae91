/**
 * Tests over the Python-made SAE fixtures in `fixtures/sae/` (made by another script; see
 * `fixtures/README.md`). The fixtures are committed: a missing folder fails the test, naming it.
 */

import { fixturePath } from "../_testing.ts";
import { assert, assertEquals, prng, uniform } from "./_testing.ts";
import { encodeReference, loadSae, type SaeDescription } from "./mod.ts";

/** Loads the fixture SAE `fixtures/sae/<name>`. */
const fixtureSae = (name: string) => loadSae(fixturePath(`sae/${name}`));
const T = 64;

function denseActs(sae: SaeDescription, x: Float32Array): Float64Array {
  const acts = encodeReference(sae, x, T);
  const out = new Float64Array(T * sae.dSae);
  for (let j = 0; j < acts.value.length; j++) {
    out[acts.position[j]! * sae.dSae + acts.feature[j]!] = acts.value[j]!;
  }
  return out;
}

Deno.test({
  name: "the Python-made LM-SAEs and SAELens twins give identical activations",
  fn: async () => {
    const lm = await fixtureSae("lm-saes-relu-plain");
    const sl = await fixtureSae("saelens-relu");
    assertEquals([lm.format, sl.format], ["lm-saes", "saelens"]);
    assertEquals([lm.dModel, lm.dSae], [sl.dModel, sl.dSae]);
    const x = uniform(prng(1), T * lm.dModel, -2, 2);
    const a = denseActs(lm, x);
    const b = denseActs(sl, x);
    let active = 0;
    for (let i = 0; i < a.length; i++) {
      if (a[i]! > 0) active++;
      assert(
        Math.abs(a[i]! - b[i]!) <= 1e-5 * Math.max(1, Math.abs(a[i]!)),
        `entry ${i}: ${a[i]} vs ${b[i]}`,
      );
    }
    assert(active > 0, "no feature fired on random inputs");
  },
});

Deno.test({
  name: "the Python-made bf16 twin matches the f32 SAE within bf16 precision",
  fn: async () => {
    const f32 = await fixtureSae("lm-saes-relu-plain");
    const bf16 = await fixtureSae("lm-saes-relu-bf16");
    assertEquals(bf16.dtype, "BF16");
    const d = f32.dModel, n = f32.dSae;
    const x = uniform(prng(2), T * d, -2, 2);
    const a = denseActs(f32, x);
    const b = denseActs(bf16, x);
    // Each bf16 weight is within 2^-8 (relative) of the f32 one, so each pre-activation is within
    // 2^-7 · (Σ_i (|x_i| + |b_dec_i|)·|W_enc[i,f]| + |b_enc_f|) (generous), and ReLU is 1-Lipschitz.
    for (let t = 0; t < T; t++) {
      for (let f = 0; f < n; f++) {
        let bound = Math.abs(f32.b_enc[f]!);
        for (let i = 0; i < d; i++) {
          bound += (Math.abs(x[t * d + i]!) + Math.abs(f32.b_dec[i]!)) *
            Math.abs(f32.W_enc[i * n + f]!);
        }
        bound = bound * 2 ** -7 + 1e-6;
        const diff = Math.abs(a[t * n + f]! - b[t * n + f]!);
        assert(
          diff <= bound,
          `token ${t} feature ${f}: ${a[t * n + f]} vs ${b[t * n + f]} (bound ${bound})`,
        );
      }
    }
  },
});
