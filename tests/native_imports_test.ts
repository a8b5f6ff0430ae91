/**
 * The pure entry points load no native dependency: importing the ONNX graph tools
 * (`lib/onnx/mod.ts`) or the settings loader (`lib/settings/mod.ts`) must not load
 * onnxruntime-node's native addon, nor mongodb, openai or node:sqlite. Checked twice, each time
 * with `lib/ort/mod.ts` (which does load ONNX Runtime) as the control that shows the check can
 * fail:
 *
 * - in a fresh process that imports the entry point: no native library of a package
 *   (`*.node`, `libonnxruntime*`) appears in its memory map (`/proc/self/maps`, Linux);
 * - in the module graph Deno loads for it (`deno info --json`, value imports only: `import type`
 *   loads nothing): no `npm:onnxruntime-node`, `npm:mongodb`, `npm:openai` or `node:sqlite`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "./_cli_utils.ts";

/** The entry points that must stay native-free. */
const PURE = ["lib/onnx/mod.ts", "lib/settings/mod.ts"];
/** The control: the ONNX Runtime entry point, which loads the addon. */
const NATIVE = "lib/ort/mod.ts";

/** Packages whose loading a pure entry point must not cause. */
const FORBIDDEN: [name: string, pattern: RegExp][] = [
  ["onnxruntime-node", /^npm:\/?onnxruntime-node@/],
  ["mongodb", /^npm:\/?mongodb@/],
  ["openai", /^npm:\/?openai@/],
  ["node:sqlite", /^node:sqlite$/],
];

async function run(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `deno ${args.join(" ")} failed: ${stderr}`);
  return new TextDecoder().decode(out.stdout);
}

/** The native libraries of packages mapped into a process that imported `entry` and nothing else. */
async function nativeLibrariesAfterImport(entry: string): Promise<string[]> {
  const url = pathToFileURL(join(ROOT, entry)).href;
  const probe = `
    await import(${JSON.stringify(url)});
    const maps = Deno.readTextFileSync("/proc/self/maps");
    const files = new Set(maps.split("\\n").map((l) => l.trim().split(/\\s+/)[5] ?? ""));
    console.log(JSON.stringify([...files].filter((f) => f.startsWith("/"))));
  `;
  const files: string[] = JSON.parse(await run(["eval", "--ext=ts", probe]));
  return files.filter((f) => f.endsWith(".node") || /onnxruntime/.test(f));
}

/** The specifiers Deno loads (value imports, followed from `entry`) when `entry` is imported. */
async function loadedModules(entry: string): Promise<Set<string>> {
  const info = JSON.parse(await run(["info", "--json", entry])) as {
    roots: string[];
    redirects: Record<string, string>;
    modules: { specifier: string; dependencies?: { code?: { specifier: string } }[] }[];
  };
  const resolve = (s: string) => info.redirects[s] ?? s;
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const todo = info.roots.map(resolve);
  while (todo.length > 0) {
    const specifier = todo.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dep of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dep.code) todo.push(resolve(dep.code.specifier));
    }
  }
  return seen;
}

function forbiddenIn(modules: Set<string>): string[] {
  return FORBIDDEN.filter(([, pattern]) => [...modules].some((m) => pattern.test(m))).map((
    [name],
  ) => name);
}

Deno.test({
  name: "importing the graph tools or the settings maps no native addon into the process",
  ignore: Deno.build.os !== "linux",
  async fn(t) {
    await t.step(`the control: importing ${NATIVE} maps ONNX Runtime's addon`, async () => {
      const libs = await nativeLibrariesAfterImport(NATIVE);
      assert(libs.some((f) => f.endsWith("onnxruntime_binding.node")), JSON.stringify(libs));
    });
    for (const entry of PURE) {
      await t.step(entry, async () => {
        assert.deepEqual(await nativeLibrariesAfterImport(entry), []);
      });
    }
  },
});

Deno.test("the graph tools and the settings load neither onnxruntime-node, mongodb, openai nor node:sqlite", async (t) => {
  await t.step("the control: the root mod.ts loads all four", async () => {
    assert.deepEqual(forbiddenIn(await loadedModules("mod.ts")), FORBIDDEN.map(([name]) => name));
  });
  for (const entry of PURE) {
    await t.step(entry, async () => {
      const modules = await loadedModules(entry);
      assert(modules.size > 1, `${entry} loads ${[...modules]}`);
      assert.deepEqual(forbiddenIn(modules), []);
    });
  }
});
