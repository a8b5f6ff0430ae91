/**
 * Loading settings: TOML file → `--set` overrides → environment → zod validation → paths
 * resolved. Every failure is a {@link ConfigError} with a one-line message that says where
 * (`file:line:`, `file: --set:`, or `file: MONGO_URI:`) and what (unknown key with a "did you
 * mean", bad value with what was expected and what was given, missing required key).
 *
 * ## Environment
 *
 * - `OPENAI_API_KEY` fills `auto_interp.openai_api_key` when the `[auto_interp]` table is present
 *   and has no key.
 * - `MONGO_URI` and `MONGO_DB` fill `mongo.mongo_uri` / `mongo.mongo_db` when the `[mongo]`
 *   table lacks them (as the Python tool's `MongoDBConfig` defaults do). When there is no
 *   `[mongo]` table at all, a non-empty `MONGO_URI` switches the store to that MongoDB server
 *   (with `MONGO_DB`, default `"mechinterp"`): every command that reads or writes the store finds
 *   it the same way, and DESIGN.md says store commands honour `MONGO_URI`. Without `[mongo]`
 *   and without `MONGO_URI`, the store is the embedded SQLite file under `output_dir`.
 * - Values written in the file or with `--set` always win over the environment.
 *
 * ## Relative paths
 *
 * - `output_dir` is relative to the working directory, as in the Python tool.
 * - Inputs (`sae.pretrained_name_or_path`, `model.model_from_pretrained_path`,
 *   `model.cache_dir`, `datasets.*.dataset_name_or_path`, `datasets.*.cache_dir`) are looked up
 *   first relative to the TOML file's folder, then relative to the working directory (for values
 *   given with `--set`: the other way round); the first that exists wins and becomes absolute.
 * - When neither exists, a value that can only be a path (`model_from_pretrained_path`,
 *   `cache_dir`, or one starting with `./` or `../`) is resolved against the first place anyway
 *   (so that the later "not found" error shows a full path); any other value
 *   (`"EleutherAI/pythia-160m"`, `"results"`) is kept as written: a Hub id or a stored name.
 * - `~/` is expanded with `HOME`.
 *
 * @module
 */

import { parse as parseToml, TomlDate, TomlError } from "smol-toml";
import * as nodePath from "node:path";
import { fileURLToPath } from "node:url";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";
import { displayPath, type KeySegment, parseKeyPath } from "./_keypath.ts";
import { lineOf, locateKeys } from "./_locate.ts";
import { closest } from "./_suggest.ts";
import { type SettingsByKind, type SettingsKind, settingsSchemas } from "./schemas.ts";

/** Options of {@link loadSettings} and {@link parseSettings}. */
export interface LoadSettingsOptions {
  /**
   * `--set` overrides, each `key.path=value`. The value is read as a TOML value when it parses
   * as one (`10_000`, `true`, `"text"`, `[1, 2]`, `{ a = 1 }`), else as a bare string. Key
   * segments may be quoted (`datasets."SlimPajama-3B".dataset_name_or_path=...`); array elements
   * are addressed as `sources[0]` or `sources.0`. Applied in order, after the file.
   * Default: none.
   */
  overrides?: readonly string[];
  /**
   * Environment variables (`OPENAI_API_KEY`, `MONGO_URI`, `MONGO_DB`, `HOME`). Default: the
   * process environment (read only for these names, and only when permitted).
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** Working directory for `output_dir` and the fallback of relative inputs. Default: `Deno.cwd()`. */
  cwd?: string;
  /**
   * Folder that relative inputs resolve against. Default: the folder of the settings file (for
   * {@link parseSettings}: the folder of `fileName` relative to `cwd`).
   */
  baseDir?: string;
}

/**
 * Absolute path of the bundled demo configuration that `deno task analyze` runs when no file is
 * given (`fixtures/demo/analyze.toml`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEMO_CONFIG_PATH } from "./load.ts";
 * assert(DEMO_CONFIG_PATH.endsWith("analyze.toml"));
 * ```
 */
export const DEMO_CONFIG_PATH: string = fileURLToPath(
  new URL("../../fixtures/demo/analyze.toml", import.meta.url),
);

/**
 * Reads a TOML settings file and resolves it for one runner.
 *
 * @param file the settings file, as the user named it (used as is in messages).
 * @param kind which runner's settings: `"analyze"`, `"dla"` or `"autointerp"`.
 * @param options overrides, environment, working directory.
 * @returns the resolved settings, every default applied.
 * @throws {ConfigError} when the file cannot be read or the settings are invalid.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSettings } from "./load.ts";
 * const file = await Deno.makeTempFile({ suffix: ".toml" });
 * await Deno.writeTextFile(file, `
 * sae_name = "s"
 * sae_series = "x"
 * model_name = "gpt2"
 * [sae]
 * pretrained_name_or_path = "results"
 * [direct_logit_attributor]
 * `);
 * const s = await loadSettings(file, "dla", { env: {}, overrides: ["direct_logit_attributor.top_k=5"] });
 * assert(s.direct_logit_attributor.top_k === 5);
 * await Deno.remove(file);
 * ```
 */
export async function loadSettings<K extends SettingsKind>(
  file: string,
  kind: K,
  options: LoadSettingsOptions = {},
): Promise<SettingsByKind[K]> {
  return parseSettings(await readSettingsText(file), file, kind, options);
}

/**
 * Reads a TOML settings file as it is written: the parsed document, no schema applied, no
 * default, override or environment variable filled in. For callers that need a table or two of
 * any runner's settings (the commands that only open the store read `[mongo]` and `output_dir`).
 *
 * @param file the settings file, as the user named it (used as is in messages).
 * @returns the TOML document.
 * @throws {ConfigError} when the file cannot be read or is not valid TOML, with the same
 *   messages as {@link loadSettings}.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readSettingsFile } from "./load.ts";
 * const file = await Deno.makeTempFile({ suffix: ".toml" });
 * await Deno.writeTextFile(file, 'output_dir = "out"\n[mongo]\nmongo_db = "x"\n');
 * const doc = await readSettingsFile(file);
 * assert.equal(doc.output_dir, "out");
 * assert.equal((doc.mongo as Record<string, unknown>).mongo_db, "x");
 * await Deno.remove(file);
 * ```
 */
export async function readSettingsFile(file: string): Promise<Record<string, unknown>> {
  return parseTomlDocument(await readSettingsText(file), file);
}

async function readSettingsText(file: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "settings file not found"
      : error instanceof Deno.errors.IsADirectory
      ? "is a directory, expected a TOML settings file"
      : `cannot read settings file (${error instanceof Error ? error.message : String(error)})`;
    throw new ConfigError(`${file}: ${reason}`, { cause: error });
  }
}

function parseTomlDocument(text: string, fileName: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const message = (error.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
      throw new ConfigError(`${fileName}:${error.line}:${error.column}: ${message}`, {
        cause: error,
      });
    }
    throw error;
  }
}

/**
 * Parses TOML settings text and resolves it for one runner (what {@link loadSettings} does after
 * reading the file).
 *
 * @param text the TOML document.
 * @param fileName the name used in messages and, unless `options.baseDir` is given, whose folder
 *   relative inputs resolve against.
 * @param kind which runner's settings.
 * @param options overrides, environment, working directory.
 * @returns the resolved settings.
 * @throws {ConfigError} with a one-line message.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSettings } from "./load.ts";
 * import { ConfigError } from "../errors.ts";
 * assert.throws(
 *   () => parseSettings('sae_name = "s"\nsae_seris = "x"\n', "a.toml", "dla", { env: {} }),
 *   (e) =>
 *     e instanceof ConfigError &&
 *     e.message === 'a.toml:2: unknown key "sae_seris"; did you mean "sae_series"?',
 * );
 * ```
 */
export function parseSettings<K extends SettingsKind>(
  text: string,
  fileName: string,
  kind: K,
  options: LoadSettingsOptions = {},
): SettingsByKind[K] {
  const cwd = options.cwd ?? Deno.cwd();
  const env = (name: string) => options.env !== undefined ? options.env[name] : readEnv(name);
  const baseDir = options.baseDir ?? nodePath.dirname(nodePath.resolve(cwd, fileName));

  const raw = parseTomlDocument(text, fileName);

  const overrides = (options.overrides ?? []).map((arg) => applyOverride(raw, arg, fileName));
  const envOrigins = fillFromEnvironment(raw, env);

  const context: ErrorContext = {
    fileName,
    raw,
    lines: locateKeys(text),
    overrides,
    envOrigins,
    schema: settingsSchemas[kind],
  };
  const result = settingsSchemas[kind].safeParse(raw);
  if (!result.success) throw new ConfigError(describeIssues(result.error.issues, context));

  const settings = result.data as SettingsByKind[K];
  resolvePaths(settings, { cwd, baseDir, env, overrides });
  return settings;
}

// ---------------------------------------------------------------------------------------------
// Environment and overrides

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

interface EnvOrigin {
  path: KeySegment[];
  name: string;
}

function fillFromEnvironment(
  raw: Record<string, unknown>,
  env: (name: string) => string | undefined,
): EnvOrigin[] {
  const origins: EnvOrigin[] = [];
  const apiKey = env("OPENAI_API_KEY");
  const autoInterp = raw["auto_interp"];
  if (apiKey && isTable(autoInterp) && autoInterp["openai_api_key"] === undefined) {
    autoInterp["openai_api_key"] = apiKey;
    origins.push({ path: ["auto_interp", "openai_api_key"], name: "OPENAI_API_KEY" });
  }
  const uri = env("MONGO_URI");
  const db = env("MONGO_DB");
  let mongo = raw["mongo"];
  if (mongo === undefined && uri) {
    mongo = raw["mongo"] = {};
  }
  if (isTable(mongo)) {
    if (uri && mongo["mongo_uri"] === undefined) {
      mongo["mongo_uri"] = uri;
      origins.push({ path: ["mongo", "mongo_uri"], name: "MONGO_URI" });
    }
    if (db && mongo["mongo_db"] === undefined) {
      mongo["mongo_db"] = db;
      origins.push({ path: ["mongo", "mongo_db"], name: "MONGO_DB" });
    }
  }
  return origins;
}

/** Applies one `--set key.path=value` to the raw document; returns the path it set. */
function applyOverride(raw: Record<string, unknown>, arg: string, fileName: string): KeySegment[] {
  const eq = arg.indexOf("=");
  if (eq < 0) {
    throw new ConfigError(`${fileName}: --set ${JSON.stringify(arg)}: expected key.path=value`);
  }
  const keyText = arg.slice(0, eq).trim();
  let segments: KeySegment[];
  try {
    segments = parseKeyPath(keyText);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(
      `${fileName}: --set ${
        JSON.stringify(keyText)
      }: bad key path (${reason}), expected key.path=value`,
    );
  }
  const value = parseOverrideValue(arg.slice(eq + 1));
  const resolved: KeySegment[] = [];
  let container: unknown = raw;
  segments.forEach((segment, n) => {
    const isLast = n === segments.length - 1;
    const here = displayPath([...resolved, segment]);
    let next: unknown;
    if (Array.isArray(container)) {
      const index = typeof segment === "number"
        ? segment
        : /^\d+$/.test(segment)
        ? Number(segment)
        : NaN;
      if (!Number.isInteger(index) || index >= container.length) {
        throw new ConfigError(
          `${fileName}: --set: ${here}: no such element (the array has ${container.length})`,
        );
      }
      resolved.push(index);
      if (isLast) {
        container[index] = value;
        return;
      }
      next = container[index];
    } else if (isTable(container)) {
      if (typeof segment === "number") {
        throw new ConfigError(
          `${fileName}: --set: ${here}: ${displayPath(resolved)} is not an array`,
        );
      }
      resolved.push(segment);
      if (isLast) {
        container[segment] = value;
        return;
      }
      next = container[segment];
      if (next === undefined) next = container[segment] = {};
    } else {
      throw new ConfigError(`${fileName}: --set: ${here}: ${displayPath(resolved)} is not a table`);
    }
    if (!isTable(next) && !Array.isArray(next)) {
      throw new ConfigError(
        `${fileName}: --set: ${displayPath([...resolved])}: expected a table, got ${
          describeValue(next, resolved)
        }`,
      );
    }
    container = next;
  });
  return resolved;
}

function parseOverrideValue(text: string): unknown {
  try {
    const value = parseToml(`v = ${text}`)["v"];
    if (value === undefined || value instanceof TomlDate) return text;
    return value;
  } catch {
    return text;
  }
}

// ---------------------------------------------------------------------------------------------
// Error messages

interface ErrorContext {
  fileName: string;
  raw: Record<string, unknown>;
  lines: Map<string, number>;
  overrides: KeySegment[][];
  envOrigins: EnvOrigin[];
  schema: z.ZodType;
}

type Origin = { kind: "file"; line: number | undefined } | { kind: "set" } | {
  kind: "env";
  name: string;
};

interface Candidate {
  rank: number;
  line: number;
  message: string;
}

/** One line for the most useful issue: unknown keys first, then bad values, then missing keys. */
function describeIssues(issues: readonly z.core.$ZodIssue[], context: ErrorContext): string {
  const candidates = issues.map((issue) => describeIssue(issue, context));
  candidates.sort((a, b) => a.rank - b.rank || a.line - b.line);
  return candidates[0]?.message ?? `${context.fileName}: invalid settings`;
}

function describeIssue(issue: z.core.$ZodIssue, context: ErrorContext): Candidate {
  const base = issue.path.filter((s): s is KeySegment => typeof s !== "symbol");
  if (issue.code === "unrecognized_keys") {
    const path = [...base, issue.keys[0] ?? ""];
    const origin = originOf(path, context);
    const suggestion = suggestKey(path, context.schema);
    const hint = suggestion === undefined ? "" : `; did you mean "${suggestion}"?`;
    return {
      rank: 0,
      line: sortLine(origin),
      message: `${prefix(origin, context)}unknown key "${displayPath(path)}"${hint}`,
    };
  }
  const value = valueAt(context.raw, base);
  const params = issue.code === "custom" ? issue.params : undefined;
  const origin = originOf(base, context);
  if (value === undefined || params?.["missing"] === true) {
    const detail = issue.code === "custom" ? ` (${issue.message})` : "";
    return {
      rank: 2,
      line: sortLine(origin),
      message: `${prefix(origin, context)}missing required key "${displayPath(base)}"${detail}`,
    };
  }
  // A wrong `type` explains the other keys of its table better than their "unknown key" errors.
  return {
    rank: base[base.length - 1] === "type" ? -1 : 1,
    line: sortLine(origin),
    message: `${prefix(origin, context)}${displayPath(base)}: ${oneLine(issue.message)}, got ${
      describeValue(value, base)
    }`,
  };
}

function sortLine(origin: Origin): number {
  return origin.kind === "file" ? origin.line ?? 0 : Number.MAX_SAFE_INTEGER;
}

function originOf(path: readonly KeySegment[], context: ErrorContext): Origin {
  if (context.overrides.some((o) => isPrefix(o, path) || isPrefix(path, o))) return { kind: "set" };
  const env = context.envOrigins.find((o) => isPrefix(o.path, path) || isPrefix(path, o.path));
  if (env !== undefined) return { kind: "env", name: env.name };
  return { kind: "file", line: lineOf(context.lines, path) };
}

function prefix(origin: Origin, context: ErrorContext): string {
  switch (origin.kind) {
    case "set":
      return `${context.fileName}: --set: `;
    case "env":
      return `${context.fileName}: ${origin.name}: `;
    case "file":
      return origin.line === undefined
        ? `${context.fileName}: `
        : `${context.fileName}:${origin.line}: `;
  }
}

function isPrefix(short: readonly KeySegment[], long: readonly KeySegment[]): boolean {
  return short.length <= long.length && short.every((s, i) => s === long[i]);
}

function valueAt(raw: unknown, path: readonly KeySegment[]): unknown {
  let value = raw;
  for (const segment of path) {
    if (Array.isArray(value) && typeof segment === "number") value = value[segment];
    else if (isTable(value) && typeof segment === "string") value = value[segment];
    else return undefined;
  }
  return value;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}

/** How a bad value is shown: short, one line, secrets hidden. */
/** A number as TOML writes it (`nan`, `inf`, `-inf` for the non-finite ones). */
function tomlNumber(value: number): string {
  if (Number.isNaN(value)) return "nan";
  if (Number.isFinite(value)) return String(value);
  return value > 0 ? "inf" : "-inf";
}

function describeValue(value: unknown, path: readonly KeySegment[]): string {
  const key = path[path.length - 1];
  if (typeof key === "string" && isSecretKey(key) && value !== null) return '"***"';
  if (typeof value === "string") return truncate(JSON.stringify(redactUrl(value)));
  if (typeof value === "number") return tomlNumber(value);
  if (typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (value instanceof TomlDate) return `a date (${value.toISOString()})`;
  if (Array.isArray(value)) {
    if (value.some((v) => isTable(v))) return "an array of tables";
    return truncate(`[${value.map((v) => describeValue(v, [])).join(", ")}]`);
  }
  if (isTable(value)) return "a table";
  return String(value);
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// Schema introspection for "did you mean"

interface SchemaDef {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  valueType?: z.ZodType;
  element?: z.ZodType;
  items?: z.ZodType[];
}

function defOf(schema: z.ZodType): SchemaDef {
  return (schema as unknown as { _zod: { def: SchemaDef } })._zod.def;
}

function unwrap(schema: z.ZodType): z.ZodType {
  for (;;) {
    const def = defOf(schema);
    const inner =
      ["optional", "nullable", "default", "prefault", "readonly", "catch", "nonoptional"]
          .includes(def.type)
        ? def.innerType
        : def.type === "pipe"
        ? def.in
        : undefined;
    if (inner === undefined) return schema;
    schema = inner;
  }
}

function schemaAt(root: z.ZodType, path: readonly KeySegment[]): z.ZodType | undefined {
  let schema: z.ZodType | undefined = root;
  for (const segment of path) {
    if (schema === undefined) return undefined;
    const def = defOf(unwrap(schema));
    if (def.type === "object" && typeof segment === "string") schema = def.shape?.[segment];
    else if (def.type === "record") schema = def.valueType;
    else if (def.type === "array") schema = def.element;
    else if (def.type === "tuple" && typeof segment === "number") schema = def.items?.[segment];
    else return undefined;
  }
  return schema === undefined ? undefined : unwrap(schema);
}

function objectKeys(schema: z.ZodType | undefined): string[] {
  if (schema === undefined) return [];
  const def = defOf(unwrap(schema));
  return def.type === "object" ? Object.keys(def.shape ?? {}) : [];
}

/** A close key at the same level, else the same key name elsewhere in the settings. */
function suggestKey(path: readonly KeySegment[], root: z.ZodType): string | undefined {
  const key = path[path.length - 1];
  if (typeof key !== "string") return undefined;
  const parent = path.slice(0, -1);
  const near = closest(key, objectKeys(schemaAt(root, parent)));
  if (near !== undefined) return displayPath([...parent, near]);
  const elsewhere: KeySegment[][] = [];
  const walk = (schema: z.ZodType, at: string[]) => {
    for (const name of objectKeys(schema)) {
      const child = schemaAt(schema, [name]);
      if (name.toLowerCase() === key.toLowerCase()) elsewhere.push([...at, name]);
      if (child !== undefined && at.length < 4) walk(child, [...at, name]);
    }
  };
  walk(root, []);
  return elsewhere.length > 0 ? displayPath(elsewhere[0]!) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Paths

interface PathContext {
  cwd: string;
  baseDir: string;
  env: (name: string) => string | undefined;
  overrides: KeySegment[][];
}

type Mutable = Record<string, unknown>;

function resolvePaths(settings: object, context: PathContext): void {
  const s = settings as Mutable;
  const resolveField = (table: unknown, at: KeySegment[], key: string, onlyPath: boolean) => {
    if (!isTable(table)) return;
    const value = table[key];
    if (typeof value !== "string") return;
    table[key] = resolveInput(value, [...at, key], onlyPath, context);
  };
  resolveField(s["sae"], ["sae"], "pretrained_name_or_path", false);
  resolveField(s["model"], ["model"], "model_from_pretrained_path", true);
  resolveField(s["model"], ["model"], "cache_dir", true);
  const datasets = s["datasets"];
  if (isTable(datasets)) {
    for (const [name, dataset] of Object.entries(datasets)) {
      resolveField(dataset, ["datasets", name], "dataset_name_or_path", false);
      resolveField(dataset, ["datasets", name], "cache_dir", true);
    }
  }
  if (typeof s["output_dir"] === "string") {
    s["output_dir"] = nodePath.resolve(context.cwd, expandHome(s["output_dir"], context.env));
  }
}

function resolveInput(
  value: string,
  path: readonly KeySegment[],
  onlyPath: boolean,
  context: PathContext,
): string {
  const expanded = expandHome(value, context.env);
  if (nodePath.isAbsolute(expanded)) return nodePath.normalize(expanded);
  const fromSet = context.overrides.some((o) => isPrefix(o, path) || isPrefix(path, o));
  const bases = fromSet ? [context.cwd, context.baseDir] : [context.baseDir, context.cwd];
  for (const base of bases) {
    const candidate = nodePath.resolve(base, expanded);
    if (exists(candidate)) return candidate;
  }
  if (onlyPath || /^\.\.?([/\\]|$)/.test(expanded)) return nodePath.resolve(bases[0]!, expanded);
  return value;
}

function expandHome(value: string, env: (name: string) => string | undefined): string {
  const home = env("HOME");
  if (home && (value === "~" || value.startsWith("~/"))) return nodePath.join(home, value.slice(1));
  return value;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Redaction and printing

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof TomlDate) && !(value instanceof Date);
}

function isSecretKey(key: string): boolean {
  return /(api_key|password|secret)$/i.test(key);
}

/**
 * Hides the password of a URL with credentials: `mongodb://user:pw@host/` →
 * `mongodb://user:***@host/`. Other strings are returned unchanged.
 *
 * @param value any string.
 * @returns the string with a URL password replaced by `***`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactUrl } from "./load.ts";
 * assert(redactUrl("mongodb://u:pw@h:27017/") === "mongodb://u:***@h:27017/");
 * assert(redactUrl("mongodb://h:27017/") === "mongodb://h:27017/");
 * ```
 */
export function redactUrl(value: string): string {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)([\s\S]*)$/i.exec(value);
  if (match === null) return value;
  const [, scheme, authority = "", rest = ""] = match;
  const at = authority.lastIndexOf("@");
  if (at < 0) return value;
  const colon = authority.indexOf(":");
  if (colon < 0 || colon > at) return value;
  return `${scheme}${authority.slice(0, colon + 1)}***${authority.slice(at)}${rest}`;
}

/**
 * A deep copy of settings with secrets hidden: `openai_api_key` (and any key ending in
 * `api_key`, `password` or `secret`) becomes `"***"` when set, and passwords inside URLs
 * (`mongodb://user:***@host`) are replaced. Use it before printing or storing settings.
 *
 * @param settings resolved (or any) settings.
 * @returns the redacted copy; the input is not changed.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactSettings } from "./load.ts";
 * const r = redactSettings({ auto_interp: { openai_api_key: "sk-123" }, mongo: { mongo_uri: "mongodb://a:b@h/" } });
 * assert(r.auto_interp.openai_api_key === "***");
 * assert(r.mongo.mongo_uri === "mongodb://a:***@h/");
 * ```
 */
export function redactSettings<T>(settings: T): T {
  return redact(settings, "") as T;
}

function redact(value: unknown, key: string): unknown {
  if (typeof value === "string") return isSecretKey(key) ? "***" : redactUrl(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, ""));
  if (isTable(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, k)]));
  }
  return value;
}

/** Options of {@link formatSettings}. */
export interface FormatSettingsOptions {
  /** `"toml"` (default): TOML-like text, unset values as comments; `"json"`: indented JSON. */
  format?: "toml" | "json";
}

/**
 * Readable text of the redacted settings, for `--print-settings`-style output and logs. Never
 * contains a secret.
 *
 * @param settings resolved settings.
 * @param options output format.
 * @returns the text (ends with a newline).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSettings } from "./load.ts";
 * const text = formatSettings({ sae_name: "s", mongo: null, auto_interp: { openai_api_key: "sk-1" } });
 * assert(text.includes('sae_name = "s"') && !text.includes("sk-1"));
 * ```
 */
export function formatSettings(settings: unknown, options: FormatSettingsOptions = {}): string {
  const redacted = redactSettings(settings);
  if (options.format === "json") return `${JSON.stringify(redacted, null, 2)}\n`;
  if (!isTable(redacted)) return `${formatValue(redacted)}\n`;
  const out: string[] = [];
  emitTable(redacted, [], out);
  return `${out.join("\n").replace(/^\n+/, "")}\n`;
}

function emitTable(
  table: Record<string, unknown>,
  at: string[],
  out: string[],
  headerPrinted = false,
): void {
  const tables: [string, Record<string, unknown>][] = [];
  const arrays: [string, Record<string, unknown>[]][] = [];
  const scalars: string[] = [];
  for (const [key, value] of Object.entries(table)) {
    if (value === undefined) continue;
    if (isTable(value)) tables.push([key, value]);
    else if (Array.isArray(value) && value.length > 0 && value.every(isTable)) {
      arrays.push([key, value as Record<string, unknown>[]]);
    } else if (value === null) scalars.push(`# ${tomlKey(key)} = (not set)`);
    else scalars.push(`${tomlKey(key)} = ${formatValue(value)}`);
  }
  const hasChildren = tables.length > 0 || arrays.length > 0;
  if (!headerPrinted && at.length > 0 && (scalars.length > 0 || !hasChildren)) {
    out.push("", `[${at.map(tomlKey).join(".")}]`);
  }
  out.push(...scalars);
  for (const [key, value] of tables) emitTable(value, [...at, key], out);
  for (const [key, elements] of arrays) {
    for (const element of elements) {
      out.push("", `[[${[...at, key].map(tomlKey).join(".")}]]`);
      emitTable(element, [...at, key], out, true);
    }
  }
}

function tomlKey(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") return tomlNumber(value);
  if (typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (value === null) return '""';
  if (value instanceof TomlDate) return value.toISOString();
  if (Array.isArray(value)) return `[${value.map(formatValue).join(", ")}]`;
  if (isTable(value)) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined && v !== null);
    return `{ ${entries.map(([k, v]) => `${tomlKey(k)} = ${formatValue(v)}`).join(", ")} }`;
  }
  return JSON.stringify(String(value));
}
