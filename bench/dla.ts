/**
 * DLA throughput at GPT-2-small scale: d_model 768, vocabulary 50,304, an SAE of d_sae 24,576
 * (random, seeded), through a generated tail (LayerNorm + MatMul [768 → 50,304]). The figure is
 * features/s over the first `DLA_BENCH_FEATURES` features (default 4,096, so the run stays under
 * a minute; every chunk costs the same, so the rate holds for all 24,576), against the FLOP-bound
 * limit: the same-shaped MatMul `[chunk × 768] · [768 × 50,304]` alone through ONNX Runtime, on
 * the same rows, measured in the same run before and after the DLA pass (the faster of the two
 * is the limit). Peak memory is the largest RSS sampled during the DLA pass.
 *
 * @module
 */
import type { Bench } from "./_report.ts";
import { attributeSae, DlaComputer, findUnembeddingTail } from "../lib/dla/mod.ts";
import { buildMatMul, buildTail, uniform } from "../lib/dla/_testing.ts";
import { createSession, tensor } from "../lib/ort/mod.ts";

const D_MODEL = 768;
const VOCAB = 50_304;
const D_SAE = 24_576;

/** The DLA benchmark. */
export const dlaBench: Bench = async (report) => {
  const timed = Math.min(D_SAE, Number(Deno.env.get("DLA_BENCH_FEATURES") ?? 4096));
  const W_dec = uniform(1, D_SAE * D_MODEL, -0.05, 0.05);
  const unembedT = uniform(2, D_MODEL * VOCAB, -0.05, 0.05);
  const { model } = buildTail({
    dModel: D_MODEL,
    vocab: VOCAB,
    norm: "LayerNorm",
    unembedT,
    weights: {
      weight: uniform(3, D_MODEL, 0.5, 1.5),
      bias: uniform(4, D_MODEL, -0.1, 0.1),
    },
  });
  await using dla = await DlaComputer.create(findUnembeddingTail(model), {
    dModel: D_MODEL,
    session: {},
  });
  await using matmul = await createSession(buildMatMul(D_MODEL, VOCAB, unembedT));
  const chunk = dla.options.chunkSize;
  const rowsOf = (start: number) =>
    W_dec.subarray(start * D_MODEL, Math.min(start + chunk, timed) * D_MODEL);

  const timeMatMul = async () => {
    const t0 = performance.now();
    for (let start = 0; start < timed; start += chunk) {
      const rows = rowsOf(start);
      await matmul.run({ x: tensor("float32", rows, [rows.length / D_MODEL, D_MODEL]) }, ["y"]);
    }
    return timed / ((performance.now() - t0) / 1000);
  };

  // Warm-up: one chunk each.
  await matmul.run({ x: tensor("float32", rowsOf(0), [chunk, D_MODEL]) }, ["y"]);
  await dla.computeChunk(rowsOf(0));

  const before = await timeMatMul();
  const baseline = Deno.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }, 20);
  const sae = { W_dec: W_dec.subarray(0, timed * D_MODEL), dModel: D_MODEL, dSae: timed };
  const t0 = performance.now();
  let n = 0;
  for await (const _ of attributeSae({ sae, model: dla })) {
    n++;
    if (n % chunk === 0) peak = Math.max(peak, Deno.memoryUsage().rss);
  }
  const value = n / ((performance.now() - t0) / 1000);
  clearInterval(sampler);
  peak = Math.max(peak, Deno.memoryUsage().rss);
  const after = await timeMatMul();

  const shape = `d_sae ${D_SAE}, d_model ${D_MODEL}, vocab ${VOCAB}`;
  report({
    bench: "dla",
    metric: `features/s (${shape}; ${timed} timed, chunk ${chunk})`,
    value,
    unit: "features/s",
    limit: Math.max(before, after),
  });
  report({
    bench: "dla",
    metric: "MatMul-only features/s (before, after)",
    value: Math.min(before, after),
    unit: "features/s",
    limit: Math.max(before, after),
  });
  report({ bench: "dla", metric: "peak RSS during DLA", value: peak / 2 ** 20, unit: "MiB" });
  report({
    bench: "dla",
    metric: "RSS growth during DLA (after warm-up)",
    value: (peak - baseline) / 2 ** 20,
    unit: "MiB",
  });
};

if (import.meta.main) {
  const { report } = await import("./_report.ts");
  await dlaBench(report);
}
