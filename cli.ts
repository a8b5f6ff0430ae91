/**
 * The `saeflow` command line. Thin by design: parse arguments, call a runner, map errors to exit
 * codes (0 ok, 1 runtime failure, 2 usage or configuration error). An error prints one line
 * (`saeflow: <message>`) without a stack trace unless `--verbose` is given.
 *
 * @module
 */

import { Command, CommanderError, Option, type OptionValues } from "@commander-js/extra-typings";
import { ConfigError, exitCodeFor } from "./lib/errors.ts";
import { DEMO_CONFIG_PATH, formatSettings, loadSettings } from "./lib/settings/mod.ts";
import {
  requireExistingStore,
  resolveStoreLocation,
  type StoreFlags,
} from "./lib/cli/store_location.ts";
import { renderFeature } from "./lib/cli/show.ts";
import { type AnalysisDoc, type FeatureStore, featureToJson, openStore } from "./lib/store/mod.ts";
import { formatInspect, inspectModel } from "./lib/ort/mod.ts";
import { describeSae, loadSae } from "./lib/sae/mod.ts";
import { resolveRepo } from "./lib/hub/mod.ts";
import {
  analyzeSae,
  autoInterp,
  directLogitAttribute,
  mergeAnalysis,
  resolveShard,
  withSignals,
} from "./pipelines/mod.ts";
import { serveViewer } from "./lib/viewer/mod.ts";

/** The version printed by `saeflow --version`. */
export const VERSION = "0.1.0";

const collect = (value: string, previous: string[]) => [...previous, value];

// deno-lint-ignore no-explicit-any
function storeOptions<A extends any[], O extends OptionValues, G extends OptionValues>(
  cmd: Command<A, O, G>,
) {
  return cmd
    .option("--config <file>", "settings file whose [mongo] table or output_dir names the store")
    .option("--mongo-uri <uri>", "MongoDB URI (default: $MONGO_URI)")
    .option("--mongo-db <name>", "MongoDB database (default: mechinterp)")
    .option("--output-dir <dir>", "folder of the embedded SQLite store")
    .option("--mongo-timeout-ms <ms>", "how long to wait for MongoDB (default: 5000)");
}

/** Opens the store the flags name; it must already exist (these commands never create one). */
async function withStore<R>(flags: StoreFlags, fn: (store: FeatureStore) => Promise<R>) {
  const where = await resolveStoreLocation(flags);
  await requireExistingStore(where);
  await using store = await openStore(where);
  return await fn(store);
}

/**
 * Prints a commander usage error as the one line every other error gets:
 * `saeflow: unknown command 'x'; did you mean y?` or `...; run saeflow --help for usage`.
 */
function usageLine(text: string): string {
  const lines = text.trim().split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const message = (lines[0] ?? "usage error").replace(/^error: /, "");
  const hint = lines.slice(1).map((l) => l.replace(/^\((.*)\)$/, "$1")).join(" ");
  const suggestion = /^did you mean/i.test(hint) ? hint.replace(/^Did/, "did") : "";
  return `saeflow: ${message}; ${suggestion || "run saeflow --help for usage"}\n`;
}

/** Finds the series of an SAE given by name, when `--series` is not given. */
async function seriesOf(store: FeatureStore, sae: string, series?: string): Promise<string> {
  if (series) return series;
  const found = (await store.listSaes()).filter((s) => s.name === sae);
  if (found.length === 1) return found[0]!.series;
  if (found.length === 0) {
    const all = (await store.listSaes()).map((s) => `${s.series}/${s.name}`);
    throw new ConfigError(
      `No SAE named "${sae}" in ${store.location}` +
        (all.length ? `; stored: ${all.join(", ")}` : "; the store holds no SAE"),
    );
  }
  throw new ConfigError(
    `SAE "${sae}" is in several series (${found.map((s) => s.series).join(", ")}); pass --series`,
  );
}

/**
 * JSON text that is safe to print to a terminal: besides what `JSON.stringify` escapes (C0),
 * DEL, the C1 controls (U+0080–U+009F, e.g. U+009B, a one-character CSI) and the line and
 * paragraph separators are written as `\uXXXX`. Still the same JSON value.
 */
function jsonForTerminal(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Why an analysis has no complete result to show, or undefined when it has one. */
function unpublishedHint(a: AnalysisDoc): string | undefined {
  const run = a.run;
  switch (a.status) {
    case "complete":
      return undefined;
    case "partial":
      return `analysis "${a.name}" is partial (${a.shards?.done.length ?? 0} of ${
        a.shards?.count ?? "?"
      } shards stored); run saeflow merge with its settings`;
    case "running":
      return run && Date.parse(run.expires_at) < Date.now()
        ? `analysis "${a.name}" has no complete result: its run (${run.owner}, started ${run.started_at}) stopped renewing its lease at ${run.heartbeat_at} and published nothing`
        : `analysis "${a.name}" is running (${
          run ? `${run.owner}, started ${run.started_at}` : `started ${a.started_at}`
        }) and has no complete result yet`;
    case "interrupted":
    case "failed":
      return `analysis "${a.name}" has no complete result: its last run ${
        a.status === "interrupted" ? "was interrupted" : "failed"
      }${a.error ?? run?.error ? ` (${a.error ?? run?.error})` : ""}; nothing was published`;
  }
}

function parseIndex(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new ConfigError(`INDEX must be a non-negative integer, got "${value}"`);
  }
  return n;
}

/** Builds the program; exported for tests. */
export function buildProgram(): Command {
  const program = new Command()
    .name("saeflow")
    .description("Analyze Sparse Autoencoder features: contexts, statistics, DLA, explanations.")
    .version(VERSION)
    .option("-v, --verbose", "print stack traces with errors")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(usageLine(text)) });

  program.command("analyze")
    .description("analyze an SAE on a dataset (the bundled demo when no file is given)")
    .argument("[config]", "TOML settings (the Python tool's AnalyzeSAESettings)")
    .option(
      "--set <key=value>",
      "override a setting, e.g. analyzer.total_analyzing_tokens=1e6",
      collect,
      [] as string[],
    )
    .option("--print-settings", "print the resolved settings (secrets redacted) and exit")
    .option(
      "--shard <i/N>",
      "analyze only slice i of N and store its state for `saeflow merge` (default: " +
        "$JOB_COMPLETION_INDEX, or $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT)",
    )
    .option("--shards <N>", "the shard count with $JOB_COMPLETION_INDEX (default: $SAEFLOW_SHARDS)")
    .option(
      "--strict-hook-point",
      "fail when the SAE's config names another hook point than the one analyzed (default: warn)",
    )
    .action(async (config, opts) => {
      const file = config ?? DEMO_CONFIG_PATH;
      const shard = resolveShard({
        ...(opts.shard !== undefined ? { shard: opts.shard } : {}),
        ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
      });
      const settings = await loadSettings(file, "analyze", { overrides: opts.set });
      if (opts.printSettings) return console.log(formatSettings(settings));
      // SIGINT/SIGTERM: the run ends as interrupted, publishes nothing, exits 130/143.
      await withSignals((signal) =>
        analyzeSae(settings, {
          ...(shard ? { shard } : {}),
          signal,
          hookMismatch: opts.strictHookPoint ? "error" : "warn",
        })
      );
    });

  program.command("merge")
    .description("merge the shard states of `analyze --shard i/N` runs and write the features")
    .argument("<config>", "the TOML settings the shards ran with")
    .option("--set <key=value>", "override a setting", collect, [] as string[])
    .action(async (config, opts) => {
      const settings = await loadSettings(config, "analyze", { overrides: opts.set });
      await withSignals((signal) => mergeAnalysis(settings, { signal }));
    });

  program.command("dla")
    .description("Direct Logit Attribution of every feature of an SAE")
    .argument("<config>", "TOML settings (DirectLogitAttributeSettings)")
    .option("--set <key=value>", "override a setting", collect, [] as string[])
    .option("--print-settings", "print the resolved settings (secrets redacted) and exit")
    .action(async (config, opts) => {
      const settings = await loadSettings(config, "dla", { overrides: opts.set });
      if (opts.printSettings) return console.log(formatSettings(settings));
      // SIGINT/SIGTERM: stops between features (their logits are stored), exits 130/143.
      await withSignals((signal) => directLogitAttribute(settings, { signal }));
    });

  program.command("autointerp")
    .description("explain and score features through an OpenAI-compatible API")
    .argument("<config>", "TOML settings (AutoInterpSettings)")
    .option("--set <key=value>", "override a setting", collect, [] as string[])
    .option("--features <list>", "comma-separated feature indices (default: all)")
    .option("--print-settings", "print the resolved settings (secrets redacted) and exit")
    .action(async (config, opts) => {
      const settings = await loadSettings(config, "autointerp", { overrides: opts.set });
      if (opts.printSettings) return console.log(formatSettings(settings));
      const features = opts.features?.split(",").map((s) => parseIndex(s.trim()));
      // SIGINT/SIGTERM stop cleanly: interpretations already finished are stored; exit 130/143.
      await withSignals((signal) =>
        autoInterp(settings, { ...(features ? { features } : {}), signal })
      );
    });

  const show = program.command("show").description("show stored results");
  storeOptions(
    show.command("feature")
      .description("one feature: statistics, contexts, logits, explanation")
      .argument("<sae>", "SAE name")
      .argument("<index>", "feature index")
      .option("--series <series>", "SAE series (needed when the name is in several)")
      .option("--analysis <name>", "analysis to show (default: default)")
      .option("--json", "print the stored document as JSON"),
  ).action(async (sae, index, opts) => {
    const i = parseIndex(index);
    await withStore(opts, async (store) => {
      const series = await seriesOf(store, sae, opts.series);
      const record = await store.getFeature(series, sae, i);
      const analyses = await store.listAnalyses(series, sae);
      if (!record) {
        // No complete result: say why (a run in progress, interrupted, failed, or sharded).
        const hint = analyses.map(unpublishedHint).find((h) => h !== undefined);
        throw new ConfigError(
          `Feature ${i} of ${series}/${sae} is not in the store${hint ? `: ${hint}` : ""}`,
        );
      }
      // A newer run of an analysis shown here: the result shown is the last complete one.
      for (const a of analyses) {
        if (a.status === "complete" && a.run?.status === "running") {
          console.error(
            `note: a newer run of analysis "${a.name}" (${a.run.owner}, started ${a.run.started_at}) is not finished; shown: the complete result of ${a.finished_at}`,
          );
        }
      }
      const saeDoc = await store.getSae(series, sae);
      const model = saeDoc?.model ? await store.getModel(saeDoc.model) : null;
      const doc = featureToJson(record, model?.vocab);
      if (opts.json) console.log(jsonForTerminal(doc));
      else {
        console.log(renderFeature(doc, {
          color: Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR"),
          ...(opts.analysis ? { analysis: opts.analysis } : {}),
        }));
      }
    });
  });

  const inspect = program.command("inspect").description("describe a model or an SAE");
  inspect.command("model")
    .description("hook points with shapes, inputs and vocabulary size of an ONNX model")
    .argument("<dir>", "model folder or Hugging Face id")
    .action(async (dir) => {
      const path = await resolveRepo(dir, { repoType: "model" });
      console.log(formatInspect(await inspectModel(path)));
    });
  inspect.command("sae")
    .description("d_model, d_sae, activation function, normalization and hook point of an SAE")
    .argument("<path>", "SAE folder or Hugging Face id")
    .action(async (path) => {
      const sae = await loadSae(await resolveRepo(path, { repoType: "model" }));
      console.log(describeSae(sae).join("\n"));
    });

  const remove = program.command("remove").description("remove stored results");
  storeOptions(
    remove.command("analysis")
      .description("remove one analysis of an SAE from every feature")
      .argument("<sae>", "SAE name")
      .argument("<name>", "analysis name")
      .option("--series <series>", "SAE series"),
  ).action(async (sae, name, opts) => {
    await withStore(opts, async (store) => {
      const series = await seriesOf(store, sae, opts.series);
      const result = await store.removeAnalysis(series, sae, name);
      if (!result.analysis && result.features === 0) {
        const stored = (await store.listAnalyses(series, sae)).map((a) => a.name);
        throw new ConfigError(
          `No analysis named "${name}" of ${series}/${sae}` +
            (stored.length ? `; stored: ${stored.join(", ")}` : "; the SAE has no analysis"),
        );
      }
      console.log(`removed analysis ${name} of ${series}/${sae}: ${JSON.stringify(result)}`);
    });
  });
  storeOptions(
    remove.command("sae")
      .description("remove an SAE with all its features and analyses")
      .argument("<sae>", "SAE name")
      .option("--series <series>", "SAE series"),
  ).action(async (sae, opts) => {
    await withStore(opts, async (store) => {
      const series = await seriesOf(store, sae, opts.series);
      const result = await store.removeSae(series, sae);
      console.log(`removed ${series}/${sae}: ${JSON.stringify(result)}`);
    });
  });

  storeOptions(
    program.command("serve")
      .description("browse the stored features in a web page")
      .option("--port <n>", "port (default 8080; 0 picks a free one)", "8080")
      .addOption(new Option("--host <host>", "address to bind").default("127.0.0.1")),
  ).action(async (opts) => {
    const port = Number(opts.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new ConfigError(`--port must be an integer in [0, 65535], got "${opts.port}"`);
    }
    const where = await resolveStoreLocation(opts);
    await requireExistingStore(where);
    const store = await openStore(where);
    const server = serveViewer(store, { port, host: opts.host });
    console.log(
      `saeflow viewer on http://${server.addr.hostname}:${server.addr.port}/ (${store.location})`,
    );
    await server.finished;
    await store.close();
  });

  return program;
}

/**
 * Runs the CLI with the given arguments and returns the exit code.
 *
 * @param args the arguments after the program name.
 * @returns 0, 1 or 2.
 */
export async function main(args: string[]): Promise<number> {
  const program = buildProgram();
  const verbose = args.includes("-v") || args.includes("--verbose");
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; every other commander error is a usage error.
      return error.exitCode === 0 ? 0 : 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    console.error(`saeflow: ${message.split("\n")[0]}`);
    if (verbose && error instanceof Error && error.stack) console.error(error.stack);
    return exitCodeFor(error);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
