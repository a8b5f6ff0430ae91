/**
 * Key paths (`analyzer.total_analyzing_tokens`, `datasets."My set".dataset_name_or_path`,
 * `activation_factory.sources[0].name`): parsing them from `--set` arguments and printing them
 * in messages.
 *
 * @module
 */

/** One step of a key path: a table key, or an index into an array. */
export type KeySegment = string | number;

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

/**
 * Prints a key path the way a user would write it in TOML: bare keys joined by dots, other keys
 * quoted, array indices as `[n]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { displayPath } from "./_keypath.ts";
 * assert(displayPath(["datasets", "a b", "cache_dir"]) === 'datasets."a b".cache_dir');
 * assert(displayPath(["activation_factory", "sources", 0, "name"]) ===
 *   "activation_factory.sources[0].name");
 * ```
 */
export function displayPath(path: readonly KeySegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") {
      out += `[${segment}]`;
      continue;
    }
    const text = BARE_KEY.test(segment) ? segment : JSON.stringify(segment);
    out += out === "" ? text : `.${text}`;
  }
  return out;
}

/**
 * A stable map key for a path (segments may contain dots, so joining is not enough).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pathKey } from "./_keypath.ts";
 * assert(pathKey(["a", 0]) === '["a",0]');
 * ```
 */
export function pathKey(path: readonly KeySegment[]): string {
  return JSON.stringify(path);
}

/**
 * Parses a dotted key path as written on the command line: bare segments, `"quoted"` or
 * `'literal'` segments, and `[n]` array indices. Bare all-digit segments stay strings; the caller
 * decides whether they index an array.
 *
 * @throws {SyntaxError} with a short reason when the path is malformed.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseKeyPath } from "./_keypath.ts";
 * const p = parseKeyPath('datasets."SlimPajama-3B".dataset_name_or_path');
 * assert(p.length === 3 && p[1] === "SlimPajama-3B");
 * assert(parseKeyPath("a.sources[1].name")[2] === 1);
 * ```
 */
export function parseKeyPath(text: string): KeySegment[] {
  const segments: KeySegment[] = [];
  let i = 0;
  const n = text.length;
  const skipSpaces = () => {
    while (i < n && (text[i] === " " || text[i] === "\t")) i++;
  };
  skipSpaces();
  if (i >= n) throw new SyntaxError("empty key path");
  while (i < n) {
    skipSpaces();
    const c = text[i];
    if (c === '"' || c === "'") {
      const end = findClosingQuote(text, i);
      if (end < 0) throw new SyntaxError("unterminated quoted key");
      const raw = text.slice(i, end + 1);
      segments.push(c === '"' ? decodeBasicString(raw) : raw.slice(1, -1));
      i = end + 1;
    } else {
      const start = i;
      while (i < n && /[A-Za-z0-9_-]/.test(text[i]!)) i++;
      if (i === start) throw new SyntaxError(`unexpected character ${JSON.stringify(c)}`);
      segments.push(text.slice(start, i));
    }
    while (i < n && text[i] === "[") {
      const close = text.indexOf("]", i);
      const inner = close < 0 ? "" : text.slice(i + 1, close).trim();
      if (!/^\d+$/.test(inner)) throw new SyntaxError("expected [index]");
      segments.push(Number(inner));
      i = close + 1;
    }
    skipSpaces();
    if (i >= n) break;
    if (text[i] !== ".") throw new SyntaxError(`unexpected character ${JSON.stringify(text[i])}`);
    i++;
    skipSpaces();
    if (i >= n) throw new SyntaxError("key path ends with a dot");
  }
  return segments;
}

/** Index of the quote closing the string that opens at `start`, or -1. */
export function findClosingQuote(text: string, start: number): number {
  const quote = text[start];
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") return -1;
    if (quote === '"' && c === "\\") {
      i++;
      continue;
    }
    if (c === quote) return i;
  }
  return -1;
}

/** Decodes a TOML basic string literal (with its quotes); falls back to the raw content. */
export function decodeBasicString(raw: string): string {
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === "string" ? value : raw.slice(1, -1);
  } catch {
    return raw.slice(1, -1);
  }
}
