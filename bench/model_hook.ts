/**
 * Model-hook throughput on the tiny-neox fixture (batches of 8 × 128 tokens, hook
 * `blocks.3.hook_resid_post`): the stage, against the same pruned graph run directly through the
 * session with prebuilt feeds (`limit`), alternating batch by batch (about 3 s each). One session
 * thread, so that the figures do not depend on what else runs on the machine's cores.
 *
 * @module
 */
import type { Bench } from "./_report.ts";
import { openHookSession } from "../lib/ort/mod.ts";
import type { ContextBatch } from "../lib/types.ts";
import { modelHook } from "../stages/model_hook.ts";

const MODEL = new URL("../fixtures/tiny-neox/model.onnx", import.meta.url).pathname;
const B = 8;
const T = 128;
const RUN_MS = 6000;

function makeBatch(i: number): ContextBatch {
  const tokens = new Int32Array(B * T);
  let x = 12345 + i;
  for (let k = 0; k < tokens.length; k++) {
    x = (x * 1103515245 + 12345) >>> 0;
    tokens[k] = x % 1024;
  }
  const attention = new Uint8Array(B * T).fill(1);
  return {
    batchSize: B,
    contextSize: T,
    tokens,
    mask: attention.slice(),
    attention,
    origins: Array.from({ length: B }, (_, b) => ({ source: "bench", shard: 0, row: i * B + b })),
  };
}

/** The model-hook benchmark. */
export const modelHookBench: Bench = async (report) => {
  await using hs = await openHookSession(MODEL, ["blocks.3.hook_resid_post"], {
    intraOpThreads: 1,
  });
  const batches = Array.from({ length: 16 }, (_, i) => makeBatch(i));
  const feeds = batches.map((b) => hs.feeds(b));
  const outputs = hs.session.outputNames;
  for (const f of feeds.slice(0, 3)) await hs.session.run(f, outputs); // warm-up

  // Each pull first times one direct run of the next batch's prebuilt feeds, then hands the batch
  // to the stage: the two alternate batch by batch, so a change in machine load hits both alike.
  let direct = 0;
  let n = 0;
  const start = performance.now();
  const source = new ReadableStream<ContextBatch>({
    async pull(c) {
      if (performance.now() - start >= RUN_MS) return c.close();
      const i = n++ % batches.length;
      const t0 = performance.now();
      await hs.session.run(feeds[i]!, outputs);
      direct += performance.now() - t0;
      c.enqueue(batches[i]!);
    },
  }, { highWaterMark: 0 });
  let tokens = 0;
  for await (const batch of source.pipeThrough(modelHook({ session: hs }))) {
    tokens += batch.batchSize * batch.contextSize;
  }
  const staged = performance.now() - start - direct;
  const value = tokens / (staged / 1000);
  const limit = tokens / (direct / 1000);
  report({
    bench: "model_hook",
    metric: "tokens/s (tiny-neox, 8×128)",
    value,
    unit: "tokens/s",
    limit,
  });
};

if (import.meta.main) {
  const { report } = await import("./_report.ts");
  await modelHookBench(report);
}
