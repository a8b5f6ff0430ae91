import { assertEquals, assertThrows } from "./_testing.ts";
import { bf16BitsToNumber, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from "./_dtype.ts";
import { parseSafetensors, SafetensorsError, writeSafetensors } from "./mod.ts";

// Expected bits produced by torch 1.13: torch.tensor(x, dtype=float32).to(float16/bfloat16).
const TORCH_BITS: [number, number, number][] = [
  [0.0, 0, 0],
  [-0.0, 32768, 32768],
  [1.0, 15360, 16256],
  [65504.0, 31743, 18304],
  [65520.0, 31744, 18304], // f16 overflow by rounding
  [65519.98828125, 31743, 18304],
  [5.960464477539063e-08, 1, 13184], // smallest f16 subnormal
  [2.9802322387695312e-08, 0, 13056], // exactly half of it: ties to even (0)
  [2.980232594040899e-08, 1, 13056], // just above half: rounds up
  [4.470348358154297e-08, 1, 13120],
  [5.999999848427251e-05, 1007, 14460], // subnormal
  [6.1005353927612305e-05, 1024, 14464], // rounds up to the smallest normal
  [1.0000000150474662e+30, 31744, 29002],
  [Infinity, 31744, 32640],
  [-Infinity, 64512, 65408],
  [0.10000000149011612, 11878, 15821],
  [1.00048828125, 15360, 16256], // f16 tie, even below
  [1.000732421875, 15361, 16256], // f16 tie, even above
];

Deno.test("f16 and bf16 encoding rounds to nearest even like torch", () => {
  for (const [x, f16, bf16] of TORCH_BITS) {
    assertEquals(numberToF16Bits(x), f16, `f16 of ${x}`);
    assertEquals(numberToBf16Bits(x), bf16, `bf16 of ${x}`);
  }
  assertEquals(Number.isNaN(f16BitsToNumber(numberToF16Bits(NaN))), true);
  assertEquals(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(NaN))), true);
});

Deno.test("writeSafetensors() round-trips every dtype through parseSafetensors()", () => {
  const bytes = writeSafetensors({
    a: { dtype: "F32", shape: [2, 2], data: [1.5, -2, 3.25, 1e-3] },
    b: { dtype: "F16", shape: [3], data: [0.5, -1, 2048] },
    c: { dtype: "BF16", shape: [], data: [1 / 3] },
    d: { dtype: "F64", shape: [2], data: [Math.PI, -1e300] },
    e: { dtype: "I32", shape: [2], data: [-7, 2 ** 31 - 1] },
    f: { dtype: "I64", shape: [2], data: [-(2n ** 63n), 42n] },
    empty: { dtype: "F32", shape: [0, 4], data: [] },
  }, { format: "pt" });
  const st = parseSafetensors(bytes, "mem");
  assertEquals(st.metadata, { format: "pt" });
  assertEquals(st.names.sort(), ["a", "b", "c", "d", "e", "empty", "f"]);
  assertEquals([...st.readF32("a")], [1.5, -2, 3.25, Math.fround(1e-3)]);
  assertEquals([...st.readF32("b")], [0.5, -1, 2048]);
  assertEquals(st.readF32("c")[0], bf16BitsToNumber(numberToBf16Bits(1 / 3)));
  assertEquals([...st.readF32("d")], [Math.fround(Math.PI), -Infinity]);
  assertEquals([...st.readInt("e")], [-7, 2 ** 31 - 1]);
  assertEquals([...st.readInt("f")], [-(2n ** 63n), 42n]);
  assertEquals(st.readF32("empty").length, 0);
  assertEquals(st.info("a"), {
    name: "a",
    dtype: "F32",
    shape: [2, 2],
    size: 4,
    begin: st.info("a").begin,
    end: st.info("a").begin + 16,
  });
});

Deno.test("writeSafetensors() aligns the data section and every tensor to 8 bytes", () => {
  const bytes = writeSafetensors({
    h: { dtype: "F16", shape: [3], data: [1, 2, 3] },
    d: { dtype: "F64", shape: [1], data: [1] },
    s: { dtype: "F32", shape: [1], data: [1] },
  });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals((8 + n) % 8, 0);
  const st = parseSafetensors(bytes);
  assertEquals(st.names, ["d", "s", "h"]);
  assertEquals(st.info("d").begin, 0);
  assertEquals(st.info("s").begin, 8);
});

Deno.test("writeSafetensors() rejects bad input with SafetensorsError", async (t) => {
  const cases: [string, () => unknown, string][] = [
    [
      "length mismatch",
      () => writeSafetensors({ w: { dtype: "F32", shape: [2, 4], data: [1, 2] } }),
      'Cannot write safetensors <bytes>: tensor "w" has 2 values but shape [2, 4] needs 8',
    ],
    [
      "unknown dtype",
      () => writeSafetensors({ w: { dtype: "U8" as "F32", shape: [1], data: [1] } }),
      'Cannot write safetensors <bytes>: tensor "w" has unsupported dtype "U8"; supported: F32, F16, BF16, F64, I32, I64',
    ],
    [
      "non-integer I32",
      () => writeSafetensors({ w: { dtype: "I32", shape: [1], data: [1.5] } }),
      'Cannot write safetensors <bytes>: tensor "w" value 1.5 at index 0 does not fit I32',
    ],
    [
      "negative dimension",
      () => writeSafetensors({ w: { dtype: "F32", shape: [-1], data: [] } }),
      'Cannot write safetensors <bytes>: tensor "w" shape [-1] has an invalid dimension -1',
    ],
  ];
  for (const [name, fn, message] of cases) {
    await t.step(name, () => {
      assertThrows(fn, SafetensorsError, message);
    });
  }
});
