import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { openStore } from "../store/open.ts";
import type { FeatureListOptions, FeatureSummary } from "../store/types.ts";
import { SummaryIndex } from "./_summaries.ts";

function summary(index: number, act_times: number, max_activation: number, text?: string) {
  const s: FeatureSummary = { index, act_times, max_activation, n_analyzed_tokens: 100 };
  if (text !== undefined) s.interpretation_text = text;
  return s;
}

const SUMMARIES = [
  summary(4, 7, 2.5, "Cats on mats"),
  summary(0, 3, 1.5),
  summary(2, 0, 0),
  summary(1, 7, NaN, "dogs"),
  summary(3, 3, 2.5, "CATS again"),
];

Deno.test("SummaryIndex pages like the store: sort key, ties by index, NaN max lowest", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await using store = await openStore({ outputDir: dir });
    const histogram = { relative_accuracy: 0.01, index_offset: 0, counts: new Float64Array(0) };
    await store.writeFeatures(SUMMARIES.map((s) => ({
      sae_series: "s",
      sae_name: "n",
      index: s.index,
      analyses: {
        default: {
          act_times: s.act_times,
          n_analyzed_tokens: 100,
          max_activation: s.max_activation,
          mean: 0,
          std: 0,
          histogram,
          quantiles: [],
          samplings: [],
        },
      },
    })));
    const index = new SummaryIndex(SUMMARIES);
    for (const sort of ["index", "act_times", "max_activation"] as const) {
      for (const order of ["asc", "desc"] as const) {
        for (const alive of [undefined, true, false]) {
          const name = `${sort} ${order} alive=${alive}`;
          await t.step(name, async () => {
            const options: FeatureListOptions = {
              series: "s",
              name: "n",
              sort,
              order,
              skip: 1,
              limit: 3,
            };
            if (alive !== undefined) options.alive = alive;
            const fromStore = (await store.listFeatures(options)).map((f) => f.index);
            const page = index.page({
              sort,
              order,
              skip: 1,
              limit: 3,
              ...(alive === undefined ? {} : { alive }),
            });
            assertEquals(page.features.map((f) => f.index), fromStore);
            assertEquals(page.total, await store.countFeatures(options));
          });
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SummaryIndex searches explanations case-insensitively within the filters", () => {
  const index = new SummaryIndex(SUMMARIES);
  const q = (extra: { alive?: boolean; sort?: "index" | "act_times" }) =>
    index.page({
      sort: extra.sort ?? "index",
      order: "asc",
      skip: 0,
      limit: 10,
      q: "cats",
      ...extra,
    });
  assertEquals(q({}).features.map((f) => f.index), [3, 4]);
  assertEquals(q({ sort: "act_times" }).features.map((f) => f.index), [3, 4]);
  assertEquals(q({ alive: false }), { total: 0, features: [] });
  assertEquals(
    index.page({ sort: "index", order: "desc", skip: 0, limit: 2 }).features.map((f) => f.index),
    [4, 3],
  );
});
