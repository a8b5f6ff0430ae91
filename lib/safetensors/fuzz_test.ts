/**
 * Fuzzing the reader: 10,000 mutations of a valid file must each either parse (and then read
 * every tensor, or fail with SafetensorsError) or throw SafetensorsError — never another error.
 */

import { join } from "node:path";
// Mulberry32: a small seeded PRNG, so that a failure can be replayed.
import { mulberry32 as prng } from "../_random.ts";
import { assert } from "./_testing.ts";
import { parseSafetensors, SafetensorsError, SafetensorsFile, writeSafetensors } from "./mod.ts";

const SEED = writeSafetensors({
  W_E: { dtype: "F32", shape: [4, 8], data: Float32Array.from({ length: 32 }, (_, i) => i - 16) },
  b_E: { dtype: "BF16", shape: [8], data: [1, 2, 3, 4, 5, 6, 7, 8] },
  W_D: { dtype: "F16", shape: [8, 4], data: Float32Array.from({ length: 32 }, (_, i) => i / 8) },
  norm: { dtype: "F64", shape: [], data: [3.5] },
  steps: { dtype: "I64", shape: [1], data: [100n] },
  ids: { dtype: "I32", shape: [2], data: [1, -1] },
}, { version: "9.9", format: "pt" });
const HEADER_LEN = Number(new DataView(SEED.buffer).getBigUint64(0, true));
const HEADER = JSON.parse(new TextDecoder().decode(SEED.subarray(8, 8 + HEADER_LEN)));

const WEIRD: unknown[] = [
  null,
  true,
  "",
  "F32",
  "BOOL",
  "F8_E4M3",
  -1,
  0,
  1,
  2.5,
  2 ** 53,
  1e308,
  -0,
  [],
  [0],
  [1, 2],
  [-1, 4],
  [0, 1e20],
  {},
  { a: 1 },
  "x".repeat(100),
  [[1]],
  ["1"],
];

function withHeader(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function mutate(rand: () => number): Uint8Array {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const kind = Math.floor(rand() * 6);
  const bytes = SEED.slice();
  switch (kind) {
    case 0: { // byte flips, mostly in the length prefix and header
      const flips = 1 + Math.floor(rand() * 8);
      for (let i = 0; i < flips; i++) {
        const at = rand() < 0.8
          ? Math.floor(rand() * (8 + HEADER_LEN))
          : Math.floor(rand() * bytes.length);
        bytes[at] = rand() < 0.5
          ? bytes[at]! ^ (1 << Math.floor(rand() * 8))
          : Math.floor(rand() * 256);
      }
      return bytes;
    }
    case 1: // truncation
      return bytes.subarray(0, Math.floor(rand() * bytes.length));
    case 2: { // header length changes
      const view = new DataView(bytes.buffer);
      const options = [
        0n,
        1n,
        2n,
        BigInt(HEADER_LEN - 1),
        BigInt(HEADER_LEN + 1),
        BigInt(HEADER_LEN + 8),
        BigInt(bytes.length),
        2n ** 63n,
        2n ** 64n - 1n,
        BigInt(Math.floor(rand() * 2 ** 32)),
      ];
      view.setBigUint64(0, pick(options), true);
      return bytes;
    }
    case 3: { // JSON edits: replace a field of a tensor with a weird value
      const header = structuredClone(HEADER);
      const names = Object.keys(header);
      const name = pick(names);
      if (name === "__metadata__") header[name][pick(["version", "x"])] = pick(WEIRD);
      else header[name][pick(["dtype", "shape", "data_offsets", "extra"])] = pick(WEIRD);
      return withHeader(header, SEED.subarray(8 + HEADER_LEN));
    }
    case 4: { // JSON edits: shift offsets, drop or duplicate entries, reshape
      const header = structuredClone(HEADER);
      const names = Object.keys(header).filter((n) => n !== "__metadata__");
      const name = pick(names);
      const op = Math.floor(rand() * 4);
      if (op === 0) {
        header[name].data_offsets = header[name].data_offsets.map((o: number) =>
          o + Math.floor(rand() * 17) - 8
        );
      } else if (op === 1) delete header[name];
      else if (op === 2) header[`${name}_copy`] = structuredClone(header[name]);
      else header[name].shape = header[name].shape.map(() => Math.floor(rand() * 10));
      return withHeader(header, SEED.subarray(8 + HEADER_LEN));
    }
    default: { // random whole-header replacement by arbitrary JSON-ish text, or appended bytes
      if (rand() < 0.5) {
        const text = pick([
          "[]",
          "null",
          "{",
          "{}",
          '{"a":',
          "1",
          '"x"',
          '{"__metadata__":null}',
          " {}",
        ]);
        const json = new TextEncoder().encode(text);
        const out = new Uint8Array(8 + json.length);
        new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
        out.set(json, 8);
        return out;
      }
      const extra = new Uint8Array(Math.floor(rand() * 16)).map(() => Math.floor(rand() * 256));
      const out = new Uint8Array(bytes.length + extra.length);
      out.set(bytes);
      out.set(extra, bytes.length);
      return out;
    }
  }
}

function readAll(
  st: { names: string[]; info(n: string): { dtype: string } },
  read: (n: string, int: boolean) => unknown,
) {
  for (const name of st.names) read(name, st.info(name).dtype.startsWith("I"));
}

Deno.test("10,000 mutated files either parse or throw SafetensorsError", () => {
  const rand = prng(20240611);
  let parsed = 0;
  for (let i = 0; i < 10_000; i++) {
    const bytes = mutate(rand);
    try {
      const st = parseSafetensors(bytes, `mutant-${i}`);
      readAll(st, (n, int) => int ? st.readInt(n) : st.readF32(n));
      parsed++;
    } catch (e) {
      if (!(e instanceof SafetensorsError)) {
        throw new Error(`mutant ${i} threw ${e instanceof Error ? e.name : typeof e}: ${e}`);
      }
    }
  }
  // Both outcomes must occur, or the mutations are not exercising the reader.
  assert(parsed > 100 && parsed < 9_000, `${parsed} of 10000 mutants parsed`);
});

Deno.test("200 mutated files on disk either open or throw SafetensorsError", async () => {
  const rand = prng(7);
  const dir = await Deno.makeTempDir();
  try {
    for (let i = 0; i < 200; i++) {
      const path = join(dir, `m${i}.safetensors`);
      await Deno.writeFile(path, mutate(rand));
      try {
        using file = await SafetensorsFile.open(path);
        for (const name of file.names) {
          if (file.info(name).dtype.startsWith("I")) await file.readInt(name);
          else await file.readF32(name);
        }
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw new Error(`mutant ${i} threw ${e}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
