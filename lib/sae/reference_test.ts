import { assertEquals, assertThrows } from "./_testing.ts";
import { encodeReference, type SaeDescription } from "./mod.ts";

/** A 2-feature SAE over d_model = 2 with identity encoder, to compute by hand. */
function sae(over: Partial<SaeDescription>): SaeDescription {
  return {
    format: "lm-saes",
    path: "hand",
    dModel: 2,
    dSae: 2,
    activation: { kind: "relu" },
    W_enc: new Float32Array([1, 0, 0, 1]),
    b_enc: new Float32Array([0, 0]),
    W_dec: new Float32Array([1, 0, 0, 1]),
    b_dec: new Float32Array([0, 0]),
    applyBDecToInput: false,
    sparsityIncludeDecoderNorm: false,
    decoderNorm: null,
    normalization: {
      method: "none",
      perToken: "none",
      datasetAverageNorm: null,
      inputFactor: 1,
      scale: "input",
      thresholdsRescaled: false,
    },
    center: false,
    centerSource: "test",
    hookPointIn: "h",
    hookPointOut: "h",
    dtype: "F32",
    config: {},
    ...over,
  };
}

const run = (s: SaeDescription, x: number[]) => {
  const a = encodeReference(s, new Float32Array(x), x.length / 2);
  return [...a.position].map((p, j) => [p, a.feature[j], a.value[j]]);
};

Deno.test("encodeReference() computes ReLU, b_dec subtraction and centering by hand", () => {
  assertEquals(run(sae({}), [0.5, -1, -2, 3]), [[0, 0, 0.5], [1, 1, 3]]);
  const bdec = sae({
    applyBDecToInput: true,
    b_dec: new Float32Array([1, -1]),
    b_enc: new Float32Array([0, 0.25]),
  });
  assertEquals(run(bdec, [0.5, -1]), [[0, 1, 0.25]]); // (0.5-1, -1+1) + (0, 0.25)
  assertEquals(run(sae({ center: true }), [3, 1]), [[0, 0, 1]]); // (3,1) - 2 = (1,-1)
});

Deno.test("encodeReference() applies JumpReLU strictly above the threshold and above zero", () => {
  const s = sae({ activation: { kind: "jumprelu", threshold: new Float32Array([0.5, -1]) } });
  assertEquals(run(s, [0.5, -0.5]), []); // 0.5 is not > 0.5; -0.5 > -1 but not > 0
  assertEquals(run(s, [0.75, 0.25]), [[0, 0, 0.75], [0, 1, 0.25]]);
  const b = sae({ activation: { kind: "batchtopk", threshold: new Float32Array([1, 1]) } });
  assertEquals(run(b, [2, 0.5]), [[0, 0, 2]]);
});

Deno.test("encodeReference() gates in decoder-norm units before the activation and divides after", () => {
  // LM-SAEs encode: hidden_pre *= decoder_norm; act; feature_acts /= decoder_norm.
  const gated = sae({
    activation: { kind: "jumprelu", threshold: new Float32Array([1, 1]) },
    sparsityIncludeDecoderNorm: true,
    decoderNorm: new Float32Array([4, 0.5]),
  });
  assertEquals(run(gated, [0.5, 1.5]), [[0, 0, 0.5]]); // 0.5·4 = 2 > 1 fires; 1.5·0.5 = 0.75 does not
  const topk = sae({
    activation: { kind: "topk", k: 1 },
    sparsityIncludeDecoderNorm: true,
    decoderNorm: new Float32Array([1, 2]),
  });
  assertEquals(run(topk, [3, 2]), [[0, 1, 2]]); // ranks by (3, 4): feature 1 wins with value 2
  const dead = sae({ sparsityIncludeDecoderNorm: true, decoderNorm: new Float32Array([0, 1]) });
  assertEquals(run(dead, [5, 5]), [[0, 1, 5]]); // a zero decoder row never fires
});

Deno.test("encodeReference() keeps exactly k per token, ties to the lower index, then ReLU", () => {
  const s = sae({
    dSae: 4,
    W_enc: new Float32Array([1, 1, 1, -1, 0, 0, 0, 0]),
    b_enc: new Float32Array([0, 0, 0, 0]),
    activation: { kind: "topk", k: 2 },
  });
  assertEquals(run(s, [1, 0]), [[0, 0, 1], [0, 1, 1]]); // three-way tie at 1: features 0 and 1
  assertEquals(run(s, [-1, 0]), [[0, 3, 1]]); // top-2 are (1, -1): the negative one is dropped
});

Deno.test("encodeReference() applies the per-token normalizations", () => {
  const base = sae({}).normalization;
  const rescale = sae({ normalization: { ...base, perToken: "rescale" } });
  assertEquals(run(rescale, [3, 4]), [[0, 0, Math.fround(3 * Math.SQRT2 / 5)], [
    0,
    1,
    Math.fround(4 * Math.SQRT2 / 5),
  ]]);
  assertEquals(run(rescale, [0, 0]), []);
  const ln = sae({ normalization: { ...base, perToken: "layer-norm" } });
  // mean 2, unbiased std √2: ((3-2)/(√2+1e-5), (1-2)/(√2+1e-5))
  assertEquals(run(ln, [3, 1]), [[0, 0, Math.fround(1 / (Math.SQRT2 + 1e-5))]]);
});

Deno.test("encodeReference() checks its input length", () => {
  assertThrows(
    () => encodeReference(sae({}), new Float32Array(3), 2),
    RangeError,
    "encodeReference: got 3 values, expected 2 × 2",
  );
});
