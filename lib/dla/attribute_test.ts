import { dirname } from "node:path";
import { fixturePath } from "../_testing.ts";
import { ConfigError } from "../errors.ts";
import { OnnxModel } from "../onnx/mod.ts";
import { loadSae } from "../sae/mod.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  fixtureDir,
  fixtureHead,
  rankIds,
  referenceLogits,
  uniform,
  writeTestSae,
} from "./_testing.ts";
import { attributeSae, DlaComputer } from "./mod.ts";

const neox = await OnnxModel.load(`${fixtureDir("tiny-neox")}/model.onnx`);
const ONE_THREAD = { intraOpThreads: 1 };
const dir = await Deno.makeTempDir({ prefix: "dla_sae_" });
await writeTestSae(`${dir}/ok`, uniform(5, 23 * 64), 64);
await writeTestSae(`${dir}/narrow`, uniform(6, 10 * 48), 48);
const sae = await loadSae(`${dir}/ok`);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("attributeSae() yields every feature in order, the same for any chunk size", async () => {
  const whole = await Array.fromAsync(
    attributeSae({ sae, model: neox, topK: 4, chunkSize: 64, session: ONE_THREAD }),
  );
  const chunked = await Array.fromAsync(
    attributeSae({ sae, model: neox, topK: 4, chunkSize: 5, session: ONE_THREAD }),
  );
  assertEquals(whole.map((f) => f.index), Array.from({ length: 23 }, (_, i) => i));
  assertEquals(chunked, whole);
  // …and equal to the computer run on each row alone.
  await using dla = await DlaComputer.create(neox, { topK: 4, session: ONE_THREAD });
  for (const f of [0, 7, 22]) {
    const [alone] = await dla.computeChunk(sae.W_dec.subarray(f * 64, (f + 1) * 64));
    assertEquals(
      whole[f]!.logits.top_positive.map((t) => t.id),
      alone!.top_positive.map((t) => t.id),
    );
    assert(
      Math.abs(whole[f]!.logits.top_positive[0]!.logit - alone!.top_positive[0]!.logit) < 1e-5,
    );
  }
});

Deno.test({
  name: "attributeSae() over the lm-saes-relu fixture SAE matches the reference for every feature",
  async fn() {
    const fixture = await loadSae(dirname(fixturePath("sae/lm-saes-relu/config.json")));
    const head = await fixtureHead(fixtureDir("tiny-neox"));
    let n = 0;
    for await (const { index, logits } of attributeSae({ sae: fixture, model: neox })) {
      assertEquals(index, n++);
      const row = fixture.W_dec.subarray(index * 64, (index + 1) * 64);
      const ref = referenceLogits(head, row, true);
      assertEquals(logits.top_positive.map((t) => t.id), rankIds(ref, 10, false));
      assertEquals(logits.top_negative.map((t) => t.id), rankIds(ref, 10, true));
      for (const t of logits.top_positive) assert(Math.abs(t.logit - ref[t.id]!) < 1e-4);
    }
    assertEquals(n, fixture.dSae);
  },
});

Deno.test("attributeSae() does only the features asked for, in the order asked", async () => {
  const got = await Array.fromAsync(attributeSae({
    sae,
    model: neox,
    features: [20, 3, 11],
    chunkSize: 2,
    session: ONE_THREAD,
  }));
  const all = await Array.fromAsync(attributeSae({ sae, model: neox, session: ONE_THREAD }));
  assertEquals(got.map((f) => f.index), [20, 3, 11]);
  for (const f of got) assertEquals(f.logits, all[f.index]!.logits);
});

Deno.test("attributeSae() runs at most one chunk ahead of its consumer and leaves a given computer open", async () => {
  await using dla = await DlaComputer.create(neox, { chunkSize: 4, session: ONE_THREAD });
  for await (const f of attributeSae({ sae, model: dla })) {
    assertEquals(f.index, 0);
    break;
  }
  // The check at creation, the first chunk and the one computed ahead.
  assertEquals(dla.runs, 3);
  assert(!dla.released);
});

Deno.test("attributeSae() refuses bad input with a ConfigError", async (t) => {
  await t.step("an SAE whose d_model differs from the model's", async () => {
    const narrow = await loadSae(`${dir}/narrow`);
    await assertRejects(
      () => Array.fromAsync(attributeSae({ sae: narrow, model: neox })),
      ConfigError,
      `SAE d_model 48 does not match ONNX model ${neox.source}: its residual stream ` +
        `"/gpt_neox/layers.3/Add_1_output_0" has width 64`,
    );
  });
  await t.step("a feature index out of range", async () => {
    await assertRejects(
      () => Array.fromAsync(attributeSae({ sae, model: neox, features: [23] })),
      ConfigError,
      `DLA: feature index 23 is out of range for SAE ${dir}/ok (d_sae 23)`,
    );
  });
  await t.step("top_k larger than the vocabulary", async () => {
    await assertRejects(
      () => Array.fromAsync(attributeSae({ sae, model: neox, topK: 5000 })),
      ConfigError,
      "DLA top_k 5000 is larger than the vocabulary",
    );
  });
});
