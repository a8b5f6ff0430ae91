import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { AnalyzerState } from "../lib/analysis/state.ts";
import { synthetic, toBatches } from "../lib/analysis/_test_util.ts";
import type { FeatureBatch, FeatureRecord } from "../lib/types.ts";
import { GatedSink, pullCountingSource, settle } from "../lib/_testing.ts";
import { featureAnalyzer } from "./feature_analyzer.ts";

const OPTIONS = { nTop: 4, windowBefore: 3, windowAfter: 3, seed: 5 };
const DATA = synthetic({ seed: 21, nCtx: 60, T: 8, dSae: 40 });
const BATCHES = toBatches(DATA, 4); // 15 batches of 32 tokens

/** A source that counts pulls and can run forever (cycling the batches) or fail. */
function source(options: { forever?: boolean; failAfter?: number; onPull?: (n: number) => void }) {
  return pullCountingSource<FeatureBatch>((i) => {
    options.onPull?.(i);
    if (options.failAfter !== undefined && i === options.failAfter) throw new Error("disk gone");
    if (!options.forever && i === BATCHES.length) return undefined;
    const b = BATCHES[i % BATCHES.length]!;
    const round = Math.floor(i / BATCHES.length);
    return { ...b, origins: b.origins.map((o) => ({ ...o, shard: o.shard + 10 * round })) };
  });
}

Deno.test("featureAnalyzer() emits one record per feature when the input ends, as AnalyzerState does", async () => {
  const records = await Array.fromAsync(source({}).stream.pipeThrough(featureAnalyzer(OPTIONS)));
  const state = new AnalyzerState(OPTIONS);
  for (const b of BATCHES) state.add(b);
  assertEquals(records, state.finish());
  assertEquals(records.map((r) => r.index), Array.from({ length: 40 }, (_, i) => i));
});

Deno.test("featureAnalyzer() pulls the source at most a batch ahead and emits nothing before the input ends", async () => {
  const stage = featureAnalyzer(OPTIONS);
  let maxAhead = 0;
  const src = source({ onPull: (n) => maxAhead = Math.max(maxAhead, n - stage.nBatches) });
  const reader = src.stream.pipeThrough(stage).getReader();
  const first = await reader.read();
  assertEquals(first.value?.index, 0);
  assertEquals(stage.nBatches, BATCHES.length);
  assert(maxAhead <= 2, `the source ran ${maxAhead} batches ahead`);
  await reader.cancel();
});

Deno.test("featureAnalyzer() builds records only as the sink takes them", async () => {
  const stage = featureAnalyzer(OPTIONS);
  const sink = new GatedSink<FeatureRecord>();
  const piped = source({}).stream.pipeThrough(stage).pipeTo(sink.stream);
  sink.release(); // record 0 is taken; record 1 is held
  await sink.waitForWrites(2);
  await settle(() => stage.recordsEmitted);
  // Record 0 taken and record 1 held by the sink: no record is built ahead of them.
  assert(stage.recordsEmitted <= 2, `built ${stage.recordsEmitted} records with the sink blocked`);
  sink.release(1000);
  await piped;
  assertEquals([sink.received.length, stage.recordsEmitted], [40, 40]);
  assertEquals(sink.received.map((r) => r.index), Array.from({ length: 40 }, (_, i) => i));
});

Deno.test("featureAnalyzer() passes a cancel of its output on to the source", async () => {
  let fifth!: () => void;
  const pulledFive = new Promise<void>((r) => fifth = r);
  const src = source({ forever: true, onPull: (n) => n === 5 && fifth() });
  const reader = src.stream.pipeThrough(featureAnalyzer(OPTIONS)).getReader();
  const pending = reader.read();
  await pulledFive;
  await reader.cancel("enough");
  assertEquals(await src.cancelled, "enough");
  assertEquals((await pending).done, true);
});

Deno.test("featureAnalyzer() hands an error of the source to the reader", async () => {
  const reader = source({ failAfter: 3 }).stream.pipeThrough(featureAnalyzer(OPTIONS)).getReader();
  await rejects(reader.read(), (e: unknown) => e instanceof Error && e.message === "disk gone");
});

Deno.test("featureAnalyzer() errors its output and cancels the source on a malformed batch", async () => {
  const bad = { ...BATCHES[0]!, mask: new Uint8Array(1) };
  const src = pullCountingSource<FeatureBatch>((i) => [BATCHES[0]!, bad][i]);
  const reader = src.stream.pipeThrough(featureAnalyzer(OPTIONS)).getReader();
  const isBad = (e: unknown) =>
    e instanceof RangeError &&
    e.message === "Cannot analyze FeatureBatch: mask has length 1, expected B*T = 32";
  await rejects(reader.read(), isBad);
  assert(isBad(await src.cancelled), "the source was not cancelled with the error");
});

Deno.test("featureAnalyzer() with limitTokens stops the source after the batch reaching the limit", async () => {
  const stage = featureAnalyzer({ ...OPTIONS, limitTokens: 100 });
  const src = source({ forever: true });
  const records = await Array.fromAsync(src.stream.pipeThrough(stage));
  assert((await src.cancelled) instanceof Error);
  assertEquals([stage.nTokens, stage.nBatches, stage.limitReached], [128, 4, true]);
  const state = new AnalyzerState(OPTIONS);
  for (const b of BATCHES.slice(0, 4)) state.add(b);
  assertEquals(records, state.finish());
});

Deno.test("featureAnalyzer() resumes from a saved state", async () => {
  const first = new AnalyzerState(OPTIONS);
  for (const b of BATCHES.slice(0, 6)) first.add(b);
  const saved = JSON.parse(JSON.stringify(first));
  const stage = featureAnalyzer({ initialState: AnalyzerState.fromJSON(saved) });
  const records = await Array.fromAsync(ReadableStream.from(BATCHES.slice(6)).pipeThrough(stage));
  const whole = new AnalyzerState(OPTIONS);
  for (const b of BATCHES) whole.add(b);
  assertEquals(records, whole.finish());
});
