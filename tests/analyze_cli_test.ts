/**
 * `saeflow analyze` through the real CLI (`deno run` with the permissions `deno task analyze`
 * grants): the bundled demo with no argument, re-runs that replace instead of duplicating, and
 * the same configuration stored in SQLite and in MongoDB giving byte-identical
 * `saeflow show feature --json` output.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { openStore } from "../lib/store/mod.ts";
import { DEMO_CONFIG_PATH } from "../lib/settings/mod.ts";
import { type CliResult, runCli, writeSlicedSae } from "./_analyze_utils.ts";
import { mongoIgnored, mongoUri, withMongo, withTempDir } from "./_utils.ts";

const SERIES = "demo";
const SAE = "demo-sae";

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what} exited ${r.code}:\n${r.stderr}`);
  return r.stdout;
}

/** Checks the summary lines of a demo run; returns the densest feature's index. */
function checkSummary(stdout: string, cwd: string): { densest: number; tokens: number } {
  const lines = stdout.trimEnd().split("\n");
  const first = /^analyzed (\d+) tokens \((\d+) analyzed\) in [\d.]+ s: (\d+) tokens\/s/.exec(
    lines[0] ?? "",
  );
  assert.ok(first, `first summary line: ${lines[0]}`);
  const [tokens, analyzed, rate] = first.slice(1).map(Number) as [number, number, number];
  assert.ok(tokens > 30_000 && analyzed > 20_000 && analyzed < tokens && rate > 0, lines[0] ?? "");
  const counts = /^features: (\d+) alive, (\d+) dead \(of 256\)$/.exec(lines[1] ?? "");
  assert.ok(counts, `second summary line: ${lines[1]}`);
  assert.equal(Number(counts[1]) + Number(counts[2]), 256);
  assert.ok(Number(counts[2]) >= 4, "the SAE fixture has at least 4 dead features");
  assert.equal(lines[2], "densest features:");
  const densest = /^ {2}#(\d+) {2}active on (\d+) tokens {2}top token ".*"$/.exec(lines[3] ?? "");
  assert.ok(densest, `densest line: ${lines[3]}`);
  const where = lines.find((l) => l.startsWith("results: "));
  assert.equal(
    where,
    `results: ${join(cwd, "analysis_results", "saeflow.sqlite")} (analysis "default")`,
  );
  assert.equal(
    lines.at(-1),
    `look at one: saeflow show feature ${SAE} ${densest[1]} --series ${SERIES} --output-dir ${
      join(cwd, "analysis_results")
    }`,
  );
  return { densest: Number(densest[1]), tokens };
}

Deno.test("`saeflow analyze` with no file runs the demo into the working directory, and a re-run replaces it", async () => {
  await withTempDir(async (cwd) => {
    const first = checkSummary(ok(await runCli(["analyze"], { cwd }), "analyze"), cwd);

    const read = async () => {
      await using store = await openStore({ outputDir: join(cwd, "analysis_results") });
      return {
        count: await store.countFeatures({ series: SERIES, name: SAE }),
        analyses: await store.listAnalyses(SERIES, SAE),
        saes: await store.listSaes(),
        records: await Array.fromAsync(store.readFeatures(SERIES, SAE)),
      };
    };
    const before = await read();
    assert.equal(before.count, 256);
    assert.equal(before.analyses.length, 1);
    assert.equal(before.analyses[0]!.status, "complete");
    assert.equal(before.saes.length, 1);

    // The command the summary suggests works from the same directory.
    const shown = ok(
      await runCli([
        "show",
        "feature",
        SAE,
        String(first.densest),
        "--series",
        SERIES,
        "--config",
        DEMO_CONFIG_PATH,
      ], { cwd }),
      "show",
    );
    assert.match(shown, new RegExp(`#${first.densest}|${first.densest}`));

    const second = checkSummary(ok(await runCli(["analyze"], { cwd }), "second analyze"), cwd);
    assert.deepEqual(second, first);
    const after = await read();
    assert.equal(after.count, 256, "features duplicated");
    assert.equal(after.analyses.length, 1, "analyses duplicated");
    assert.equal(after.analyses[0]!.status, "complete");
    assert.ok(after.analyses[0]!.started_at > before.analyses[0]!.started_at, "not replaced");
    assert.equal(after.saes.length, 1);
    // Seeded and deterministic: the replaced documents are the same.
    assert.deepEqual(after.records, before.records);
  });
});

/**
 * The demo settings with absolute input paths, a smaller token budget, the first 32 features of
 * the demo SAE (a MongoDB-compatible test server such as FerretDB upserts a few hundred large
 * feature documents slowly), and the given store table.
 */
async function demoConfig(dir: string, name: string, sae: string, store: string) {
  const demoDir = join(DEMO_CONFIG_PATH, "..");
  const text = (await Deno.readTextFile(DEMO_CONFIG_PATH))
    .replaceAll('"../', `"${demoDir}/../`)
    .replace(/^pretrained_name_or_path = .*$/m, `pretrained_name_or_path = ${JSON.stringify(sae)}`)
    .replace(/^output_dir = .*$/m, `output_dir = ${JSON.stringify(join(dir, "out"))}`)
    .replace(/^total_analyzing_tokens = .*$/m, "total_analyzing_tokens = 8192");
  const file = join(dir, name);
  await Deno.writeTextFile(file, text + store);
  return file;
}

Deno.test({
  name: "SQLite and MongoDB runs of one config give byte-identical `saeflow show feature --json`",
  ignore: mongoIgnored("analyze CLI: SQLite vs MongoDB"),
  fn: (t) =>
    withMongo(t, async ({ db }) => {
      await withTempDir(async (dir) => {
        const uri = mongoUri()!;
        const sae = await writeSlicedSae(dir, 32);
        const sqlite = await demoConfig(dir, "sqlite.toml", sae, "");
        const mongo = await demoConfig(
          dir,
          "mongo.toml",
          sae,
          `\n[mongo]\nmongo_uri = ${JSON.stringify(uri)}\nmongo_db = ${JSON.stringify(db)}\n`,
        );
        const sqliteRun = ok(await runCli(["analyze", sqlite], { cwd: dir }), "analyze (SQLite)");
        const mongoRun = ok(await runCli(["analyze", mongo], { cwd: dir }), "analyze (MongoDB)");
        assert.match(sqliteRun, /results: .*saeflow\.sqlite/);
        assert.match(mongoRun, new RegExp(`results: mongodb://.*/${db}`));
        // Same counts, same densest features.
        const counts = (s: string) =>
          s.split("\n").slice(1).filter((l) => !l.startsWith("results") && !l.startsWith("look"));
        assert.deepEqual(counts(mongoRun), counts(sqliteRun));
        assert.match(sqliteRun, /features: \d+ alive, \d+ dead \(of 32\)/);
        const densest = Number(/^ {2}#(\d+) /m.exec(sqliteRun)![1]);

        // The densest feature, a dead one (7: b_E = -50), the first and the last.
        for (const index of [densest, 7, 0, 31]) {
          const show = (config: string) =>
            runCli([
              "show",
              "feature",
              SAE,
              String(index),
              "--series",
              SERIES,
              "--config",
              config,
              "--json",
            ], {
              cwd: dir,
            });
          const [a, b] = await Promise.all([show(sqlite), show(mongo)]);
          const fromSqlite = ok(a, `show ${index} (SQLite)`);
          const fromMongo = ok(b, `show ${index} (MongoDB)`);
          const doc = JSON.parse(fromSqlite);
          assert.equal(doc.index, index);
          if (index === 7) assert.equal(doc.analyses.default.act_times, 0);
          else assert.ok(doc.analyses.default.samplings.length > 0);
          assert.ok(
            fromMongo === fromSqlite,
            `feature ${index}: MongoDB and SQLite documents differ`,
          );
        }
      });
    }),
});
