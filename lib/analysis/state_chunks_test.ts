import assert from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import { AnalyzerState } from "./state.ts";
import { stateFromChunks, stateToChunks } from "./state_chunks.ts";
import { synthetic, toBatches } from "./_test_util.ts";

const OPTIONS = {
  nTop: 8,
  seed: 11,
  subsamples: {
    top_activations: { proportion: 1, n_samples: 8 },
    "subsample-0.5": { proportion: 0.5, n_samples: 4 },
    "subsample-0.25": { proportion: 0.25, n_samples: 4 },
  },
  nNonActivating: 4,
};

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) (out.set(c, at), at += c.length);
  return out;
}

/** A state with many candidates: 400 contexts, 120 features. */
function bigState(): AnalyzerState {
  const s = synthetic({ seed: 5, nCtx: 400, T: 24, dSae: 120 });
  const state = new AnalyzerState(OPTIONS);
  for (const b of toBatches(s, 16)) state.add(b);
  return state;
}

Deno.test("stateFromChunks(stateToChunks(s)) restores every record of s, in slices and gzip'ed", async (t) => {
  const state = bigState();
  const want = state.finish();
  const json = state.toJSON();
  assert.ok(json.candidates.length > 1000, `only ${json.candidates.length} candidates`);
  for (const options of [{ slice: 50 }, { slice: 50, gzip: false }, {}]) {
    await t.step(JSON.stringify(options), async () => {
      const chunks = await Array.fromAsync(stateToChunks(state, options));
      const back = await stateFromChunks(chunks, options.gzip === false ? { gzip: false } : {});
      assert.equal(back.nTokens, state.nTokens);
      assert.equal(back.nAnalyzedTokens, state.nAnalyzedTokens);
      assert.deepEqual(back.finish(), want);
    });
  }
});

Deno.test("stateToChunks() never stringifies the whole state: the largest string is one slice", async () => {
  const state = bigState();
  const whole = JSON.stringify(state.toJSON()).length;
  const original = JSON.stringify;
  let largest = 0;
  let calls = 0;
  JSON.stringify = ((...args: Parameters<typeof original>) => {
    const out = original(...args);
    calls++;
    largest = Math.max(largest, out?.length ?? 0);
    return out;
  }) as typeof original;
  let frames: Uint8Array[];
  try {
    frames = await Array.fromAsync(stateToChunks(state, { slice: 100, gzip: false }));
  } finally {
    JSON.stringify = original;
  }
  assert.ok(calls > 10, `${calls} stringify calls`);
  assert.ok(largest < whole / 5, `largest string ${largest} of ${whole}`);
  // Every frame is a length-prefixed piece no larger than that.
  for (const f of frames) {
    const size = new DataView(f.buffer, f.byteOffset, 4).getUint32(0, true);
    assert.equal(size + 4, f.length);
    assert.ok(size <= largest * 3, `frame of ${size} bytes`);
  }
});

Deno.test("stateFromChunks() reads the bytes however they are cut", async () => {
  const state = bigState();
  const bytes = concat(await Array.fromAsync(stateToChunks(state)));
  const pieces: Uint8Array[] = [];
  for (let i = 0, n = 1; i < bytes.length; i += n, n = (n * 7) % 4099 + 1) {
    pieces.push(bytes.subarray(i, i + n));
  }
  const back = await stateFromChunks(pieces);
  assert.deepEqual(back.finish(), state.finish());
});

Deno.test("stateFromChunks() refuses truncated, empty or foreign bytes with a TypeError", async (t) => {
  const state = bigState();
  const frames = await Array.fromAsync(stateToChunks(state, { slice: 100, gzip: false }));
  const cases: [string, Uint8Array[], RegExp][] = [
    ["empty", [], /^Cannot read analyzer state chunks: no frame \(the data is empty\)$/],
    [
      "without the end frame",
      frames.slice(0, -1),
      /^Cannot read analyzer state chunks: no end frame \(the data is truncated\)$/,
    ],
    [
      "without a middle frame",
      [...frames.slice(0, 2), ...frames.slice(3)],
      /^Cannot read analyzer state chunks: candidates has \d+ entries, the header says \d+$/,
    ],
    [
      "cut inside a frame",
      [...frames.slice(0, 2), frames[2]!.subarray(0, 10)],
      /^Cannot read analyzer state chunks: 10 bytes after the last whole frame$/,
    ],
    [
      "not a state",
      [new TextEncoder().encode("\x02\x00\x00\x00{}")],
      /^Cannot read analyzer state chunks: expected format "saeflow-state-chunks" version 1$/,
    ],
  ];
  for (const [name, chunks, message] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        () => stateFromChunks(chunks, { gzip: false }),
        (e) => e instanceof TypeError && message.test(e.message),
      );
    });
  }
  await t.step("gzip'ed bytes cut short", async () => {
    const gz = await Array.fromAsync(stateToChunks(state));
    const all = concat(gz);
    await assert.rejects(
      () => stateFromChunks([all.subarray(0, all.length >> 1)]),
      (e) => e instanceof TypeError && /^Cannot read analyzer state chunks: /.test(e.message),
    );
  });
});

Deno.test("stateFromChunks() refuses analyzer options other than the saved ones", async () => {
  const chunks = await Array.fromAsync(stateToChunks(bigState()));
  await assert.rejects(
    () => stateFromChunks(chunks, { analyzer: { ...OPTIONS, seed: 12 } }),
    (e) =>
      e instanceof ConfigError &&
      e.message.startsWith("Cannot restore analyzer state with different options"),
  );
  const renamed = await stateFromChunks(chunks, {
    analyzer: { ...OPTIONS, analysisName: "other" },
  });
  assert.ok(renamed.finish().every((r) => r.analyses.other !== undefined));
});
