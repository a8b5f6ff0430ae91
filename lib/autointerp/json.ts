/**
 * Lenient JSON extraction from LLM answers.
 *
 * Models wrap JSON in code fences, add a sentence before or after it, write Python literals,
 * single quotes or trailing commas. {@linkcode parseLenientJson} accepts those and nothing more
 * adventurous: an answer that still does not parse is reported as a failure with the reason.
 *
 * @module
 */

/** The outcome of {@linkcode parseLenientJson}. */
export type LenientJsonResult =
  | { ok: true; value: unknown }
  | { ok: false; reason: string };

/**
 * Extracts one JSON value (object or array) from an LLM answer.
 *
 * Tried in order: the whole text; the content of a ```` ```json ```` fence; the first balanced
 * `{...}` or `[...]` span (string-aware); each of those again after repairs — single-quoted
 * strings to double-quoted, Python `True`/`False`/`None`, unquoted object keys, trailing commas.
 *
 * @param text The answer.
 * @returns The value, or the reason nothing could be parsed.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLenientJson } from "./json.ts";
 * const r = parseLenientJson("Sure! ```json\n{'a': True, 'b': [1, 2,],}\n``` Hope this helps.");
 * assert(r.ok);
 * assert.equal(JSON.stringify(r.value), '{"a":true,"b":[1,2]}');
 * assert(!parseLenientJson("no json here").ok);
 * ```
 */
export function parseLenientJson(text: string): LenientJsonResult {
  const candidates: string[] = [];
  const trimmed = text.trim();
  if (trimmed === "") return { ok: false, reason: "the answer is empty" };
  candidates.push(trimmed);
  for (const m of trimmed.matchAll(/```[a-zA-Z0-9_-]*\s*\n?([\s\S]*?)```/g)) {
    if (m[1] !== undefined) candidates.push(m[1].trim());
  }
  const span = balancedSpan(trimmed);
  if (span !== undefined) candidates.push(span);
  for (const c of candidates) {
    const v = tryParse(c);
    if (v.ok) return v;
  }
  for (const c of candidates) {
    const inner = balancedSpan(c) ?? c;
    const v = tryParse(repair(inner));
    if (v.ok) return v;
  }
  const preview = trimmed.length > 80 ? `${trimmed.slice(0, 80)}…` : trimmed;
  return { ok: false, reason: `the answer is not valid JSON: ${JSON.stringify(preview)}` };
}

function tryParse(text: string): LenientJsonResult {
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== "object") {
      return { ok: false, reason: "not an object or array" };
    }
    return { ok: true, value };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** The first balanced `{...}` or `[...]` span, skipping brackets inside strings. */
function balancedSpan(text: string): string | undefined {
  for (let start = 0; start < text.length; start++) {
    const ch = text[start];
    if (ch !== "{" && ch !== "[") continue;
    const end = matchClose(text, start);
    if (end !== undefined) return text.slice(start, end + 1);
  }
  return undefined;
}

function matchClose(text: string, start: number): number | undefined {
  const stack: string[] = [];
  let quote: string | undefined;
  for (let i = start; i < text.length; i++) {
    const ch = text[i]!;
    if (quote) {
      if (ch === "\\") i++;
      else if (ch === quote) quote = undefined;
      continue;
    }
    if (ch === '"' || (ch === "'" && !isWordChar(text[i - 1]))) quote = ch;
    else if (ch === "{") stack.push("}");
    else if (ch === "[") stack.push("]");
    else if (ch === "}" || ch === "]") {
      if (stack.pop() !== ch) return undefined;
      if (stack.length === 0) return i;
    }
  }
  return undefined;
}

function isWordChar(ch: string | undefined): boolean {
  return ch !== undefined && /[A-Za-z0-9]/.test(ch);
}

/** Rewrites single-quoted strings, Python literals, bare keys and trailing commas. */
function repair(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '"') {
      const end = stringEnd(text, i, '"');
      out += text.slice(i, end + 1);
      i = end;
    } else if (ch === "'" && !isWordChar(text[i - 1])) {
      const end = stringEnd(text, i, "'");
      const body = text.slice(i + 1, end).replace(/\\'/g, "'").replace(/(?<!\\)"/g, '\\"');
      out += `"${body}"`;
      i = end;
    } else {
      out += ch;
    }
  }
  // Outside strings now only; protect strings while rewriting the rest.
  const parts = out.split(/("(?:[^"\\]|\\.)*")/);
  for (let k = 0; k < parts.length; k += 2) {
    parts[k] = parts[k]!
      .replace(/\bTrue\b/g, "true")
      .replace(/\bFalse\b/g, "false")
      .replace(/\bNone\b/g, "null")
      .replace(/([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:/g, '$1"$2":')
      .replace(/,\s*([}\]])/g, "$1");
  }
  return parts.join("");
}

function stringEnd(text: string, start: number, quote: string): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === quote) return i;
  }
  return text.length - 1;
}
