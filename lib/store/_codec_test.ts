import assert from "node:assert/strict";
import {
  bytesToValue,
  decodeValue,
  DTYPE_TAGS,
  encodeValue,
  escapeKey,
  packDoc,
  SCALAR_TAG,
  typedArrayToBytes,
  unescapeKey,
} from "./_codec.ts";

Deno.test("typedArrayToBytes() tags each dtype and writes little-endian bytes", async (t) => {
  const cases = [
    { value: new Float32Array([1]), tag: DTYPE_TAGS.float32, bytes: [0, 0, 0x80, 0x3f] },
    {
      value: new Float64Array([1]),
      tag: DTYPE_TAGS.float64,
      bytes: [0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
    },
    { value: new Int32Array([-2]), tag: DTYPE_TAGS.int32, bytes: [0xfe, 0xff, 0xff, 0xff] },
    { value: new Uint8Array([7, 9]), tag: DTYPE_TAGS.uint8, bytes: [7, 9] },
  ];
  for (const c of cases) {
    await t.step(c.value.constructor.name, () => {
      const out = typedArrayToBytes(c.value);
      assert.equal(out.tag, c.tag);
      assert.deepEqual(Array.from(out.bytes), c.bytes);
      const back = bytesToValue(out.tag, out.bytes);
      assert.equal(back.constructor, c.value.constructor);
      assert.deepEqual(back, c.value);
    });
  }
});

Deno.test("typedArrayToBytes() copies only the view of a larger buffer", () => {
  const whole = new Float32Array([1, 2, 3, 4]);
  const { bytes } = typedArrayToBytes(whole.subarray(1, 3));
  assert.deepEqual(bytesToValue(DTYPE_TAGS.float32, bytes), new Float32Array([2, 3]));
});

Deno.test("bytesToValue() never aliases a pooled buffer it was given a view of", () => {
  const pool = new Uint8Array(64).fill(0xaa);
  pool.set(new Uint8Array(new Int32Array([5, 6]).buffer), 16);
  const back = bytesToValue(DTYPE_TAGS.int32, pool.subarray(16, 24)) as Int32Array;
  assert.deepEqual(Array.from(back), [5, 6]);
  assert.equal(back.buffer.byteLength, 8);
});

Deno.test("typedArrayToBytes() refuses dtypes the stores cannot keep", () => {
  assert.throws(
    () => typedArrayToBytes(new Int16Array(2)),
    (e) =>
      e instanceof TypeError &&
      e.message === "Cannot store a Int16Array: only Float32Array, Float64Array, Int32Array " +
          "and Uint8Array are supported",
  );
});

Deno.test("bytesToValue() rejects a byte length that is not a multiple of the element", () => {
  assert.throws(
    () => bytesToValue(DTYPE_TAGS.float64, new Uint8Array(12)),
    (e) => e instanceof RangeError && e.message === "Corrupt stored array: 12 bytes for tag 0x81",
  );
});

Deno.test("escapeKey() makes any key a legal MongoDB field name, reversibly", () => {
  for (const key of ["plain", "a.b", "$x", "%", "%2E", "$.%$", "", "x$"]) {
    const escaped = escapeKey(key);
    assert.ok(!escaped.includes(".") && !escaped.startsWith("$"), escaped);
    assert.equal(unescapeKey(escaped), key);
  }
  assert.equal(escapeKey("plain"), "plain");
});

Deno.test("encodeValue() turns special numbers into scalars and drops undefined", () => {
  const seen: number[] = [];
  const out = encodeValue({ a: NaN, b: -0, c: 1.5, d: undefined, e: [Infinity] }, (tag) => {
    seen.push(tag);
    return `<${tag}>`;
  });
  assert.deepEqual(out, {
    a: `<${SCALAR_TAG}>`,
    b: `<${SCALAR_TAG}>`,
    c: 1.5,
    e: [`<${SCALAR_TAG}>`],
  });
  assert.equal(seen.length, 3);
});

Deno.test("encodeValue() names the path of a value it cannot store", () => {
  assert.throws(
    () => encodeValue({ a: { b: [1, 2n] } }, () => null),
    (e) => e instanceof TypeError && e.message === "Cannot store a.b[1]: unsupported bigint",
  );
  assert.throws(
    () => encodeValue({ when: new Date(0) }, () => null),
    (e) => e instanceof TypeError && e.message === "Cannot store when: unsupported Date",
  );
});

Deno.test("packDoc() keeps plain data as JSON text and typed arrays in a blob", async (t) => {
  await t.step("plain data", () => {
    assert.equal(packDoc({ "a.b": [1, "x", null, true] }), '{"a%2Eb":[1,"x",null,true]}');
  });
  await t.step("typed arrays and odd numbers round-trip", async () => {
    const { unpackDoc } = await import("./_codec.ts");
    const value = {
      f: new Float32Array([0.1, -0, NaN]),
      d: new Float64Array([5e-324]),
      i: new Int32Array([-(2 ** 31)]),
      u: new Uint8Array([255]),
      n: -Infinity,
      "$b": { o: 1, n: 2 },
    };
    const packed = packDoc(value);
    assert.ok(packed instanceof Uint8Array);
    assert.deepEqual(unpackDoc(packed), value);
  });
  await t.step("a corrupt blob is refused", async () => {
    const { unpackDoc } = await import("./_codec.ts");
    assert.throws(
      () => unpackDoc(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])),
      (e) =>
        e instanceof RangeError &&
        e.message === "Corrupt stored document: not in the saeflow packed format",
    );
  });
});

Deno.test("decodeValue() restores binaries and unescapes keys", () => {
  const enc = encodeValue({ "x.y": new Int32Array([4]) }, (tag, bytes) => ({ tag, bytes }));
  const dec = decodeValue(
    enc,
    (v) => ("tag" in v ? v as { tag: number; bytes: Uint8Array } : null),
  );
  assert.deepEqual(dec, { "x.y": new Int32Array([4]) });
});

Deno.test("packFeatureAnalysis() round-trips samples column-wise, exact to -0, NaN and wide ids", async (t) => {
  const { packFeatureAnalysis, unpackDoc } = await import("./_codec.ts");
  const sample = (tokens: number[], acts: number[], row: number) => ({
    tokens: new Int32Array(tokens),
    acts: new Float32Array(acts),
    peak: Math.max(...acts),
    peak_pos: acts.indexOf(Math.max(...acts)),
    source: row % 2 ? "odd" : "even",
    shard: 1,
    row,
    offset: 2.5,
  });
  const analysis = (tokens: number[]) => ({
    act_times: 3,
    max_activation: 2,
    histogram: { relative_accuracy: 0.01, index_offset: -3, counts: new Float64Array([1, 2]) },
    samplings: [
      { name: "top_activations", band: null, samples: [sample(tokens, [0, -0, 2], 7)] },
      { name: "empty", band: [0, 0.5], samples: [] },
      { name: "more", band: [0.5, 1], samples: [sample([1], [NaN], 8), sample([], [], 9)] },
    ],
  });
  await t.step("16-bit ids", () => {
    const a = analysis([0, 65535, 3]);
    const packed = packFeatureAnalysis(a) as Uint8Array;
    assert.equal(new TextDecoder().decode(packed.subarray(0, 4)), "SFA1");
    assert.deepEqual(unpackDoc(packed), a);
  });
  await t.step("ids beyond 16 bits", () => {
    const a = analysis([-1, 65536, 1 << 30]);
    assert.deepEqual(unpackDoc(packFeatureAnalysis(a)), a);
  });
  await t.step("samples with other fields fall back to the generic form", () => {
    const a = analysis([1, 2, 3]);
    (a.samplings[0]!.samples[0] as Record<string, unknown>).extra = "x";
    const packed = packFeatureAnalysis(a) as Uint8Array;
    assert.equal(new TextDecoder().decode(packed.subarray(0, 4)), "SFD1");
    assert.deepEqual(unpackDoc(packed), a);
  });
});
