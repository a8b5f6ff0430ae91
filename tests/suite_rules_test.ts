/**
 * Rules the test suite itself keeps, checked so that they cannot quietly come undone:
 *
 * - no `.ts` file calls with `console.assert`, which prints and never fails a test or a doc
 *   example (assert with `node:assert/strict`, or the helpers of `lib/_testing.ts` that wrap it);
 * - `deno test` runs every test and every doc example with the op and resource sanitizers on
 *   (`deno.json`: Deno 2.8 and later turn them off by default).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { withTempDir } from "./_utils.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Folders never scanned: dependencies, data, build output, and dot-folders (.git, .ci). */
const SKIPPED = new Set(["node_modules", "fixtures", "dist"]);

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) {
      if (entry.name.startsWith(".") || SKIPPED.has(entry.name)) {
        continue;
      }
      yield* tsFiles(path);
    } else if (entry.isFile && entry.name.endsWith(".ts")) {
      yield path;
    }
  }
}

Deno.test("no .ts file asserts with console.assert, which never fails", async () => {
  const call = /\bconsole\s*\.\s*assert\s*\(/; // a call, not a mention like this file's
  const offenders: string[] = [];
  let scanned = 0;
  for await (const path of tsFiles(ROOT)) {
    scanned++;
    const lines = (await Deno.readTextFile(path)).split("\n");
    for (const [i, line] of lines.entries()) {
      if (call.test(line)) offenders.push(`${relative(ROOT, path)}:${i + 1}: ${line.trim()}`);
    }
  }
  assert.ok(scanned > 100, `only ${scanned} .ts files found under ${ROOT}`);
  assert.deepEqual(offenders, [], `use node:assert/strict instead:\n${offenders.join("\n")}`);
});

Deno.test("deno test fails a test and a doc example that leak an op or a resource", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      join(dir, "leak_test.ts"),
      [
        'Deno.test("leaks a timer", () => {',
        "  setTimeout(() => {}, 60_000);",
        "});",
        'Deno.test("leaks a file", async () => {',
        "  await Deno.open(import.meta.filename!);",
        "});",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(
      join(dir, "leak.ts"),
      [
        "/**",
        " * Leaks a file in its example.",
        " *",
        " * @example",
        " * ```ts",
        " * await Deno.open(import.meta.filename!);",
        " * ```",
        " */",
        "export const leak = 1;",
        "",
      ].join("\n"),
    );
    // Only the project's deno.json may turn the sanitizers on: no DENO_TEST_SANITIZE_* from here.
    const env = Object.fromEntries(
      Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("DENO_TEST_SANITIZE")),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "test",
        "--config",
        join(ROOT, "deno.json"),
        "--no-lock",
        "--allow-read",
        "--doc",
        join(dir, "leak_test.ts"),
        join(dir, "leak.ts"),
      ],
      cwd: dir,
      clearEnv: true,
      env: { ...env, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, text);
    assert.match(text, /^FAILED \| 0 passed \| 3 failed/m, text);
    assert.match(text, /leaks a timer => .*\nerror: Leaks detected:\n {2}- A timer was started/);
    assert.match(text, /leaks a file => .*\nerror: Leaks detected:\n {2}- A file was opened/);
    assert.match(text, /leak\.ts#5-8\.ts => .*\nerror: Leaks detected:\n {2}- A file was opened/);
  });
});
