import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { frequencyHistogram } from "./_frequency.ts";

Deno.test("frequencyHistogram() bins log10 frequencies of alive features and counts the dead", () => {
  const n = 1000;
  const h = frequencyHistogram([
    { act_times: 1, n_analyzed_tokens: n }, // -3
    { act_times: 10, n_analyzed_tokens: n }, // -2
    { act_times: 10, n_analyzed_tokens: n }, // -2
    { act_times: 100, n_analyzed_tokens: n }, // -1
    { act_times: 0, n_analyzed_tokens: n },
  ], 2);
  assertEquals({ total: h.total, alive: h.alive, dead: h.dead }, { total: 5, alive: 4, dead: 1 });
  assertEquals(h.edges.map((e) => Math.round(e * 1e9) / 1e9), [-3, -2, -1]);
  // -2 sits on the inner edge and goes to the upper bin; -1 is the top edge and is included.
  assertEquals(h.counts, [1, 3]);
});

Deno.test("frequencyHistogram() widens a single value to one decade and is empty when all are dead", () => {
  const one = frequencyHistogram([{ act_times: 5, n_analyzed_tokens: 500 }], 4);
  assertEquals(one.edges.map((e) => Math.round(e * 1e9) / 1e9), [-2.5, -2.25, -2, -1.75, -1.5]);
  assertEquals(one.counts, [0, 0, 1, 0]);
  const none = frequencyHistogram([{ act_times: 0, n_analyzed_tokens: 500 }], 4);
  assertEquals(none, { total: 1, alive: 0, dead: 1, edges: [], counts: [] });
});
