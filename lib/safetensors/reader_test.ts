import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "./_testing.ts";
import { parseSafetensors, SafetensorsError, SafetensorsFile, writeSafetensors } from "./mod.ts";

/** Builds a file from a header object (serialized as is) and `dataLength` data bytes. */
function build(header: unknown, dataLength: number, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLength);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const f32 = (begin: number, end: number, shape: number[]) => ({
  dtype: "F32",
  shape,
  data_offsets: [begin, end],
});

Deno.test("SafetensorsFile reads one tensor at a time from disk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "w.safetensors");
    const W = Float32Array.from({ length: 12 }, (_, i) => i / 4 - 1);
    await Deno.writeFile(
      path,
      writeSafetensors({
        W: { dtype: "F32", shape: [3, 4], data: W },
        b: { dtype: "BF16", shape: [4], data: [1, -0.5, 256, 0.125] },
        n: { dtype: "I64", shape: [1], data: [7n] },
      }, { version: "1.0" }),
    );
    using file = await SafetensorsFile.open(path);
    assertEquals(file.names.sort(), ["W", "b", "n"]);
    assertEquals(file.metadata, { version: "1.0" });
    assertEquals(file.info("W").shape, [3, 4]);
    // Concurrent reads share one file position; they must not interleave.
    const [w, b, n] = await Promise.all([file.readF32("W"), file.readF32("b"), file.readInt("n")]);
    assertEquals([...w], [...W]);
    assertEquals([...b], [1, -0.5, 256, 0.125]);
    assertEquals([...n], [7n]);
    // Only the tensor's own bytes are read: corrupting another tensor's bytes after open
    // does not affect this one.
    const bytes = await Deno.readFile(path);
    const dataStart = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
    bytes.fill(0xff, dataStart + file.info("W").begin, dataStart + file.info("W").end);
    await Deno.writeFile(path, bytes);
    assertEquals([...await file.readF32("b")], [1, -0.5, 256, 0.125]);
    assert(Number.isNaN((await file.readF32("W"))[0]!));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SafetensorsFile.open() reports a missing file and a truncated file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = join(dir, "none.safetensors");
    const e = await assertRejects(
      () => SafetensorsFile.open(missing),
      SafetensorsError,
      `Cannot read safetensors ${missing}: cannot open the file (No such file or directory (os error 2): open '${missing}')`,
    );
    assertEquals(e.path, missing);
    const cut = join(dir, "cut.safetensors");
    const whole = writeSafetensors({ W: { dtype: "F32", shape: [4], data: [1, 2, 3, 4] } });
    await Deno.writeFile(cut, whole.subarray(0, whole.length - 4));
    await assertRejects(
      () => SafetensorsFile.open(cut),
      SafetensorsError,
      `Cannot read safetensors ${cut}: tensor "W" data_offsets [0, 16] run past the end of the 12-byte data section`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SafetensorsFile refuses reads after close()", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await Deno.writeFile(path, writeSafetensors({ x: { dtype: "F32", shape: [1], data: [1] } }));
    const file = await SafetensorsFile.open(path);
    file.close();
    file.close();
    await assertRejects(
      () => file.readF32("x"),
      SafetensorsError,
      `Cannot read safetensors ${path}: tensor "x" file is closed`,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("parseSafetensors() rejects each malformed header with one clear line", async (t) => {
  const cases: [string, Uint8Array, string][] = [
    [
      "a file shorter than the length prefix",
      new Uint8Array(5),
      "file is 5 bytes, shorter than the 8-byte header length prefix",
    ],
    [
      "a header length past the end",
      build({}, 0, 1000n),
      "header length 1000 exceeds the 2 bytes that follow the length prefix",
    ],
    [
      "a header length of 2^64-1",
      build({}, 0, 2n ** 64n - 1n),
      "header length 18446744073709551615 exceeds the limit of 100000000 bytes",
    ],
    ["a header length of zero", build({}, 0, 0n), "header length 0 is too small for a JSON object"],
    [
      "a header that is not JSON",
      build({}, 0).map((b, i) => i === 9 ? 0x41 : b),
      "header is not valid JSON (Expected property name or '}' in JSON at position 1 (line 1 column 2))",
    ],
    ["a header that is a JSON array", build([1], 0), 'header does not start with "{" (got "[1]")'],
    [
      "invalid UTF-8",
      (() => {
        const b = build({ "ab": 1 }, 0);
        b[10] = 0xff;
        return b;
      })(),
      "header is not valid UTF-8",
    ],
    [
      "a non-string metadata value",
      build({ __metadata__: { v: 1 } }, 0),
      '__metadata__ value of "v" is not a string (got 1)',
    ],
    [
      "metadata that is not an object",
      build({ __metadata__: "x" }, 0),
      '__metadata__ is not an object (got "x")',
    ],
    [
      "an unsupported dtype",
      build({ mask: { dtype: "BOOL", shape: [1], data_offsets: [0, 1] } }, 1),
      'tensor "mask" has unsupported dtype "BOOL"; supported: F32, F16, BF16, F64, I32, I64',
    ],
    [
      "a negative dimension",
      build({ W: f32(0, 4, [-1]) }, 4),
      'tensor "W" shape must be an array of non-negative integers (got [-1])',
    ],
    [
      "a fractional dimension",
      build({ W: f32(0, 4, [1.5]) }, 4),
      'tensor "W" shape must be an array of non-negative integers (got [1.5])',
    ],
    [
      "offsets past the data section",
      build({ W: f32(0, 8, [2]) }, 4),
      'tensor "W" data_offsets [0, 8] run past the end of the 4-byte data section',
    ],
    [
      "reversed offsets",
      build({ W: f32(4, 0, [1]) }, 4),
      'tensor "W" data_offsets [4, 0] are reversed',
    ],
    [
      "offsets that are not a pair",
      build({ W: { dtype: "F32", shape: [1], data_offsets: [0] } }, 4),
      'tensor "W" data_offsets must be two non-negative integers (got [0])',
    ],
    [
      "a size that disagrees with the shape",
      build({ W: f32(0, 8, [3]) }, 8),
      'tensor "W" shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8',
    ],
    [
      "overlapping tensors",
      build({ A: f32(0, 8, [2]), B: f32(4, 12, [2]) }, 12),
      'tensor "B" overlaps tensor "A" (bytes [4, 12] vs [0, 8])',
    ],
    [
      "an entry that is not an object",
      build({ W: [1, 2] }, 0),
      'tensor "W" entry is not an object (got [1,2])',
    ],
    [
      "an overflowing shape",
      build({ W: f32(0, 4, [2 ** 40, 2 ** 40]) }, 4),
      'tensor "W" shape [1099511627776,1099511627776] has too many elements',
    ],
  ];
  for (const [name, bytes, detail] of cases) {
    await t.step(`rejects ${name}`, () => {
      assertThrows(
        () => parseSafetensors(bytes, "bad.safetensors"),
        SafetensorsError,
        `Cannot read safetensors bad.safetensors: ${detail}`,
      );
    });
  }
});

Deno.test("readers name the tensor when it is missing or read with the wrong method", () => {
  const st = parseSafetensors(
    writeSafetensors({
      W: { dtype: "F32", shape: [1], data: [1] },
      ids: { dtype: "I32", shape: [1], data: [3] },
    }),
    "m.safetensors",
  );
  assertThrows(
    () => st.info("W_E"),
    SafetensorsError,
    'Cannot read safetensors m.safetensors: has no tensor "W_E" (tensors: W, ids)',
  );
  assertThrows(
    () => st.readF32("ids"),
    SafetensorsError,
    'Cannot read safetensors m.safetensors: tensor "ids" has integer dtype I32; read it with readInt()',
  );
  assertThrows(
    () => st.readInt("W"),
    SafetensorsError,
    'Cannot read safetensors m.safetensors: tensor "W" has float dtype F32; read it with readF32()',
  );
});

Deno.test("parseSafetensors() accepts a space-padded header, gaps, and zero-size tensors", () => {
  const header = { A: f32(8, 12, [1]), Z: f32(4, 4, [0, 3]), __metadata__: {} };
  const json = new TextEncoder().encode(JSON.stringify(header) + "   ");
  const bytes = new Uint8Array(8 + json.length + 12);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(json, 8);
  new DataView(bytes.buffer).setFloat32(8 + json.length + 8, 2.5, true);
  const st = parseSafetensors(bytes);
  assertEquals([...st.readF32("A")], [2.5]);
  assertEquals(st.readF32("Z").length, 0);
  assertEquals(st.metadata, {});
});
