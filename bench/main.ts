/**
 * `deno task bench [NAME...]`: runs the named benchmarks (all when none is named).
 *
 * @module
 */
import { type Bench, report } from "./_report.ts";
import { modelHookBench } from "./model_hook.ts";
import { dlaBench } from "./dla.ts";
import { analyzerBench } from "./analyzer.ts";
import { analyzeBench } from "./analyze.ts";
import { saeEncodeBench } from "./sae_encode.ts";
import { viewerBench } from "./viewer.ts";
import { storeRerunBench } from "./store_rerun.ts";

/** Benchmarks by name. Each module is imported statically so that the program stays compile-ready. */
const benches: Record<string, Bench> = {
  model_hook: modelHookBench,
  sae_encode: saeEncodeBench,
  analyzer: analyzerBench,
  analyze: analyzeBench,
  dla: dlaBench,
  viewer: viewerBench,
  store_rerun: storeRerunBench,
};

const names = Deno.args.length > 0 ? Deno.args : Object.keys(benches);
for (const name of names) {
  const bench = benches[name];
  if (!bench) {
    console.error(`Unknown benchmark "${name}"; choose from: ${Object.keys(benches).join(", ")}`);
    Deno.exit(2);
  }
  await bench(report);
}
