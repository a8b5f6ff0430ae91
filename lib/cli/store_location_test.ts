import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { assertRejects } from "../_testing.ts";
import { ConfigError } from "../errors.ts";
import { loadSettings } from "../settings/mod.ts";
import { resolveStoreLocation } from "./store_location.ts";

const dir = await Deno.makeTempDir({ prefix: "store_location_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

async function config(name: string, text: string): Promise<string> {
  const file = join(dir, name);
  await Deno.writeTextFile(file, text);
  return file;
}

Deno.test("resolveStoreLocation() reads [mongo] or output_dir from --config", async (t) => {
  await t.step("a [mongo] table names the server, its database and timeout", async () => {
    const file = await config(
      "mongo.toml",
      '[mongo]\nmongo_uri = "db.example"\nmongo_db = "saes"\ntimeout_ms = 700\n',
    );
    assert.deepEqual(await resolveStoreLocation({ config: file }, {}), {
      mongo: { uri: "db.example", db: "saes", timeoutMs: 700 },
    });
  });
  await t.step("without [mongo], MONGO_URI comes before output_dir", async () => {
    const file = await config("out.toml", 'output_dir = "somewhere"\n');
    assert.deepEqual(await resolveStoreLocation({ config: file }, { MONGO_URI: "h" }), {
      mongo: { uri: "h", db: "mechinterp" },
    });
    assert.deepEqual(await resolveStoreLocation({ config: file }, {}), {
      outputDir: resolve("somewhere"),
    });
  });
});

Deno.test("resolveStoreLocation() fails on a --config file as loadSettings() does", async (t) => {
  const cases: [string, string | null][] = [
    ["broken.toml", "sae_name = \n"],
    ["missing.toml", null],
  ];
  for (const [name, text] of cases) {
    await t.step(name, async () => {
      const file = text === null ? join(dir, name) : await config(name, text);
      const expected = await assertRejects(
        () => loadSettings(file, "dla", { env: {} }),
        ConfigError,
      );
      assert.match(expected.message, new RegExp(`^${file}:`));
      await assertRejects(
        () => resolveStoreLocation({ config: file }, {}),
        ConfigError,
        expected.message,
      );
    });
  }
});
