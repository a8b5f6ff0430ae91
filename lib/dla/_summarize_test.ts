import { assert, assertEquals, prng } from "./_testing.ts";
import { summarizeRow } from "./_summarize.ts";

/** Brute force: sort everything (value, then id), centered by the float64 mean. */
function bruteForce(row: Float32Array, k: number, center: boolean) {
  const mean = center ? row.reduce((s, v) => s + v, 0) / row.length : 0;
  const ids = Array.from(row.keys());
  const desc = [...ids].sort((a, b) => row[b]! - row[a]! || a - b).slice(0, k);
  const asc = [...ids].sort((a, b) => row[a]! - row[b]! || a - b).slice(0, k);
  return {
    pos: desc.map((id) => [id, row[id]! - mean]),
    neg: asc.map((id) => [id, row[id]! - mean]),
    mean,
  };
}

Deno.test("summarizeRow() selects exactly what a full sort selects, ties to the lower id", async (t) => {
  const rand = prng(42);
  const cases = [
    { name: "distinct values", n: 5000, k: 10, levels: 0 },
    { name: "many ties", n: 3000, k: 25, levels: 7 },
    { name: "k = 1", n: 100, k: 1, levels: 0 },
    { name: "k = vocabulary", n: 40, k: 40, levels: 5 },
    { name: "k just under half", n: 41, k: 20, levels: 3 },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const row = new Float32Array(c.n).map(() => {
        const x = rand() * 2 - 1;
        return c.levels ? Math.round(x * c.levels) / c.levels : x;
      });
      // Put the row in the middle of a larger buffer: offsets must be honoured.
      const buffer = new Float32Array(c.n + 20).fill(99);
      buffer.set(row, 10);
      for (const center of [true, false]) {
        const got = summarizeRow(buffer, 10, c.n, {
          topK: c.k,
          bins: 50,
          center,
          vocab: undefined,
        });
        const want = bruteForce(row, c.k, center);
        assertEquals(got.top_positive.map((e) => [e.id, e.logit]), want.pos);
        assertEquals(got.top_negative.map((e) => [e.id, e.logit]), want.neg);
        const { edges, counts } = got.histogram;
        assertEquals(counts.reduce((a, b) => a + b, 0), c.n);
        const lo = Math.min(...row) - want.mean;
        const hi = Math.max(...row) - want.mean;
        assert(Math.abs(edges[0]! - lo) < 1e-9 && Math.abs(edges[50]! - hi) < 1e-9);
        // Every value falls in the bin whose edges hold it (numpy's rule, the last bin closed).
        const expected = new Float64Array(50);
        for (const v of row) {
          const x = v - want.mean;
          let b = edges.findIndex((e, i) => i < 50 && x >= e && x < edges[i + 1]!);
          if (b < 0) b = 49;
          expected[b]!++;
        }
        const off = counts.reduce((s, n, i) => s + Math.abs(n - expected[i]!), 0);
        assert(off <= 2, `histogram differs from the edge rule by ${off}`);
      }
    });
  }
});

Deno.test("summarizeRow() refuses NaN and infinite logits", () => {
  for (const bad of [NaN, Infinity]) {
    const row = new Float32Array([1, 2, bad, 3]);
    let message = "";
    try {
      summarizeRow(row, 0, 4, { topK: 2, bins: 5, center: true, vocab: undefined });
    } catch (e) {
      assert(e instanceof RangeError);
      message = e.message;
    }
    assertEquals(message, `the logits hold ${Number.isNaN(bad) ? "NaN" : "an infinity"}`);
  }
});
