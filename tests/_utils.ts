/**
 * Utilities for tests that need services (MongoDB), a browser (Chromium) or scratch space.
 *
 * MongoDB: a test that needs it is registered with {@linkcode mongoTest} (or gets `ignore:
 * mongoIgnored(name)` and calls {@linkcode withMongo}). When `MONGO_URI` is unset the test is
 * skipped with a visible `SKIPPED:` line, unless `REQUIRE_MONGO=1` (as CI sets), in which case
 * it runs and fails. Each use gets its own database (random suffix), dropped at the end; the
 * connection is always closed.
 *
 * Chromium: a browser test gets `ignore: browserIgnored(name)` and launches
 * {@linkcode requireChromium}`()`. When no Chromium is found (`CHROMIUM_PATH`, else `chromium` or
 * `chromium-browser` on `PATH`) the test is skipped with a visible `SKIPPED:` line naming what to
 * install, unless `REQUIRE_BROWSER=1` (as CI sets), in which case it runs and fails.
 *
 * @module
 */

import { join } from "node:path";
import { MongoFeatureStore } from "../lib/store/mongo.ts";

/** The MongoDB URI tests use (`MONGO_URI`), or undefined when unset. */
export function mongoUri(): string | undefined {
  const uri = Deno.env.get("MONGO_URI")?.trim();
  return uri ? uri : undefined;
}

/** Whether MongoDB tests must run (`REQUIRE_MONGO=1`): then a missing server fails them. */
export function mongoRequired(): boolean {
  return Deno.env.get("REQUIRE_MONGO") === "1";
}

/**
 * The `ignore` flag for a test that needs MongoDB: true (and prints `SKIPPED: <name>: ...`) when
 * `MONGO_URI` is unset and `REQUIRE_MONGO` is not `1`.
 */
export function mongoIgnored(testName: string): boolean {
  if (mongoUri() !== undefined || mongoRequired()) return false;
  console.log(`SKIPPED: ${testName}: MONGO_URI unset (set it, or REQUIRE_MONGO=1 to fail instead)`);
  return true;
}

/** A database name no other test uses: `saeflow_test_<label>_<random>` (at most 63 chars). */
export function randomDbName(label = "db"): string {
  const clean = label.toLowerCase().replace(/[^a-z0-9]+/g, "_").slice(0, 30);
  return `saeflow_test_${clean}_${crypto.randomUUID().slice(0, 8)}`;
}

/** What {@linkcode withMongo} hands a test. */
export interface MongoTestEnv {
  /** The server URI (from `MONGO_URI`). */
  uri: string;
  /** This test's own database name; dropped after the test. */
  db: string;
  /** An open store on that database (closed after the test). */
  store: MongoFeatureStore;
}

/**
 * Runs `fn` with its own MongoDB database and an open store on it, then drops the database and
 * closes the store whatever happens.
 *
 * @throws {Error} When `MONGO_URI` is unset (the test should have been ignored, or
 * `REQUIRE_MONGO=1` says it must not be).
 */
export async function withMongo<T>(
  t: Deno.TestContext | string,
  fn: (env: MongoTestEnv) => Promise<T>,
): Promise<T> {
  const uri = mongoUri();
  if (uri === undefined) {
    throw new Error("MongoDB test cannot run: REQUIRE_MONGO=1 but MONGO_URI is unset");
  }
  const db = randomDbName(typeof t === "string" ? t : t.name);
  const store = await MongoFeatureStore.open({ uri, db, timeoutMs: 10_000 });
  try {
    return await fn({ uri, db, store });
  } finally {
    try {
      await store.dropDatabase();
    } finally {
      await store.close();
    }
  }
}

/**
 * Registers a test that needs MongoDB: skipped with a visible message when `MONGO_URI` is unset
 * (unless `REQUIRE_MONGO=1`), else run inside {@linkcode withMongo}.
 */
export function mongoTest(
  name: string,
  fn: (env: MongoTestEnv, t: Deno.TestContext) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: mongoIgnored(name),
    fn: (t) => withMongo(t, (env) => fn(env, t)),
  });
}

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "saeflow_test_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Whether browser tests must run (`REQUIRE_BROWSER=1`): then a missing Chromium fails them. */
export function browserRequired(): boolean {
  return Deno.env.get("REQUIRE_BROWSER") === "1";
}

/** Names of Chromium's executable looked for on `PATH`, in order. */
const CHROMIUM_NAMES = ["chromium", "chromium-browser"];

function isExecutableFile(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * The Chromium the browser tests drive: `CHROMIUM_PATH` when set (and only it), else the first
 * `chromium` or `chromium-browser` on `PATH`; `undefined` when there is none.
 */
export function chromiumPath(): string | undefined {
  const explicit = Deno.env.get("CHROMIUM_PATH")?.trim();
  if (explicit) return isExecutableFile(explicit) ? explicit : undefined;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "")) {
    for (const name of CHROMIUM_NAMES) {
      const path = join(dir, name);
      if (isExecutableFile(path)) return path;
    }
  }
  return undefined;
}

/** Why no Chromium was found, and what to install. */
function noChromium(): string {
  const explicit = Deno.env.get("CHROMIUM_PATH")?.trim();
  const looked = explicit
    ? `CHROMIUM_PATH=${explicit} is not an executable file`
    : `no ${CHROMIUM_NAMES.join(" or ")} on PATH`;
  return `${looked}; install Chromium (Debian: apt-get install chromium) or set CHROMIUM_PATH`;
}

/**
 * The `ignore` flag for a test that needs Chromium: true (and prints `SKIPPED: <name>: ...`,
 * naming what to install) when none is found and `REQUIRE_BROWSER` is not `1`.
 */
export function browserIgnored(testName: string): boolean {
  if (chromiumPath() !== undefined || browserRequired()) return false;
  console.log(`SKIPPED: ${testName}: ${noChromium()} (REQUIRE_BROWSER=1 to fail instead)`);
  return true;
}

/**
 * The Chromium to launch.
 *
 * @throws {Error} When there is none (the test should have been ignored, or `REQUIRE_BROWSER=1`
 * says it must not be).
 */
export function requireChromium(): string {
  const path = chromiumPath();
  if (path === undefined) {
    throw new Error(`Browser test cannot run: REQUIRE_BROWSER=1 but ${noChromium()}`);
  }
  return path;
}

/** A free TCP port on 127.0.0.1 (free when asked; another process may take it later). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A MongoDB-compatible server this test started (and must stop). */
export interface OwnServer {
  /** `mongodb://127.0.0.1:<port>/`. */
  uri: string;
  port: number;
  /** `ferretdb` or `mongod`. */
  kind: string;
  /** Kills it with SIGKILL and waits for it to exit. */
  kill(): Promise<void>;
  /** Stops it (if still running) and removes its data. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The binary of a MongoDB-compatible server to start: `FERRETDB_BIN`, else
 * `$SAEFLOW_TOOLS/bin/ferretdb` (default `~/.cache/saeflow-tools`, where CI builds it), else
 * `mongod` on the PATH; undefined when there is none.
 */
export function serverBinary(): { kind: "ferretdb" | "mongod"; path: string } | undefined {
  const tools = Deno.env.get("SAEFLOW_TOOLS") ?? `${Deno.env.get("HOME")}/.cache/saeflow-tools`;
  for (const path of [Deno.env.get("FERRETDB_BIN"), `${tools}/bin/ferretdb`]) {
    if (path && isFile(path)) return { kind: "ferretdb", path };
  }
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && isFile(`${dir}/mongod`)) return { kind: "mongod", path: `${dir}/mongod` };
  }
  return undefined;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Starts a MongoDB-compatible server of its own (FerretDB with the SQLite backend, or mongod) on
 * a free port, with its data in a temporary folder, and waits until it accepts connections.
 *
 * @throws {Error} When there is no server binary or it does not start within 30 s.
 */
export async function startOwnServer(): Promise<OwnServer> {
  const binary = serverBinary();
  if (!binary) throw new Error("No FerretDB or mongod binary to start a server of the test's own");
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "saeflow_server_" });
  await Deno.mkdir(`${dir}/sqlite`);
  await Deno.mkdir(`${dir}/state`);
  const args = binary.kind === "ferretdb"
    ? [
      "--handler=sqlite",
      `--sqlite-url=file:${dir}/sqlite/`,
      `--listen-addr=127.0.0.1:${port}`,
      "--debug-addr=127.0.0.1:0",
      `--state-dir=${dir}/state`,
      "--telemetry=disable",
      "--log-level=error",
    ]
    : ["--dbpath", `${dir}/sqlite`, "--bind_ip", "127.0.0.1", "--port", String(port), "--quiet"];
  const child = new Deno.Command(binary.path, { args, stdout: "null", stderr: "null" }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }
    await status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      if (exited || Date.now() > deadline) {
        await stop();
        throw new Error(`The ${binary.kind} server of the test did not start on port ${port}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    port,
    kind: binary.kind,
    kill: async () => {
      if (!exited) child.kill("SIGKILL");
      await status;
    },
    stop,
  };
}
