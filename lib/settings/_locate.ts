/**
 * Finds the line on which each key path of a TOML document is defined, so that validation errors
 * can say where the offending key is. smol-toml gives no positions, so this is a small scanner of
 * its own: it follows `[table]`, `[[array.of.tables]]` (with element indices), quoted keys, dotted
 * keys, inline tables and arrays (element indices), and skips strings (also multi-line) and
 * comments. It is meant for documents that already parsed; on malformed input it gives up quietly
 * rather than failing.
 *
 * @module
 */

import { decodeBasicString, type KeySegment, pathKey } from "./_keypath.ts";

/**
 * Maps `pathKey(path)` to the 1-based line where that path is first defined (a key, a table
 * header, or an array element).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { locateKeys } from "./_locate.ts";
 * import { pathKey } from "./_keypath.ts";
 * const lines = locateKeys('a = 1\n[datasets."x y"]\npath = "p"\n[[s]]\nname = "n"\n');
 * assert(lines.get(pathKey(["datasets", "x y", "path"])) === 3);
 * assert(lines.get(pathKey(["s", 0, "name"])) === 5);
 * ```
 */
export function locateKeys(text: string): Map<string, number> {
  return new Locator(text).run();
}

/**
 * The line of the longest prefix of `path` that `lines` knows (the key itself, else its table),
 * or undefined when not even the first segment is known.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lineOf, locateKeys } from "./_locate.ts";
 * const lines = locateKeys("[analyzer]\nx = 1\n");
 * assert(lineOf(lines, ["analyzer", "missing"]) === 1);
 * assert(lineOf(lines, ["nowhere"]) === undefined);
 * ```
 */
export function lineOf(
  lines: ReadonlyMap<string, number>,
  path: readonly KeySegment[],
): number | undefined {
  for (let end = path.length; end > 0; end--) {
    const line = lines.get(pathKey(path.slice(0, end)));
    if (line !== undefined) return line;
  }
  return undefined;
}

class Locator {
  readonly #s: string;
  #i = 0;
  #line = 1;
  readonly #lines = new Map<string, number>();
  /** Number of elements seen so far for each array of tables, by path key. */
  readonly #arrayCounts = new Map<string, number>();

  constructor(text: string) {
    this.#s = text;
  }

  run(): Map<string, number> {
    let current: KeySegment[] = [];
    while (this.#i < this.#s.length) {
      const before = this.#i;
      this.#skipSpaces();
      const c = this.#peek();
      if (c === undefined) break;
      if (c === "\n" || c === "\r") {
        this.#next();
      } else if (c === "#") {
        this.#skipComment();
      } else if (c === "[") {
        current = this.#header();
        this.#skipToLineEnd();
      } else {
        const line = this.#line;
        const key = this.#key();
        this.#skipSpaces();
        if (key.length === 0 || this.#peek() !== "=") {
          this.#skipToLineEnd();
        } else {
          this.#next();
          this.#skipSpaces();
          const full = [...current, ...key];
          this.#recordChain(current.length, full, line);
          this.#value(full);
          this.#skipToLineEnd();
        }
      }
      if (this.#i === before) this.#next();
    }
    return this.#lines;
  }

  #header(): KeySegment[] {
    const line = this.#line;
    const isArray = this.#s[this.#i + 1] === "[";
    this.#i += isArray ? 2 : 1;
    this.#skipSpaces();
    const key = this.#key();
    const resolved = this.#resolveHeader(key, isArray);
    if (!isArray) {
      this.#recordChain(0, resolved, line);
      return resolved;
    }
    this.#recordChain(0, resolved, line);
    const k = pathKey(resolved);
    const index = this.#arrayCounts.get(k) ?? 0;
    this.#arrayCounts.set(k, index + 1);
    const element = [...resolved, index];
    this.#record(element, line);
    return element;
  }

  /** Inserts the current element index after each prefix that names an array of tables. */
  #resolveHeader(key: readonly string[], isArray: boolean): KeySegment[] {
    const out: KeySegment[] = [];
    key.forEach((segment, n) => {
      out.push(segment);
      const isLast = n === key.length - 1;
      if (isLast && isArray) return;
      const count = this.#arrayCounts.get(pathKey(out));
      if (count !== undefined && count > 0) out.push(count - 1);
    });
    return out;
  }

  #recordChain(from: number, path: readonly KeySegment[], line: number): void {
    for (let end = Math.max(1, from + 1); end <= path.length; end++) {
      this.#record(path.slice(0, end), line);
    }
  }

  #record(path: readonly KeySegment[], line: number): void {
    const k = pathKey(path);
    if (!this.#lines.has(k)) this.#lines.set(k, line);
  }

  /** A dotted key; empty when none could be read. */
  #key(): string[] {
    const segments: string[] = [];
    for (;;) {
      this.#skipSpaces();
      const c = this.#peek();
      if (c === '"' || c === "'") {
        const start = this.#i;
        this.#next();
        while (this.#i < this.#s.length && this.#peek() !== c && this.#peek() !== "\n") {
          if (c === '"' && this.#peek() === "\\") this.#next();
          this.#next();
        }
        this.#next();
        const raw = this.#s.slice(start, this.#i);
        segments.push(c === '"' ? decodeBasicString(raw) : raw.slice(1, -1));
      } else {
        const start = this.#i;
        while (this.#i < this.#s.length && /[A-Za-z0-9_-]/.test(this.#peek()!)) this.#next();
        if (this.#i === start) return segments;
        segments.push(this.#s.slice(start, this.#i));
      }
      this.#skipSpaces();
      if (this.#peek() !== ".") return segments;
      this.#next();
    }
  }

  #value(path: KeySegment[]): void {
    const c = this.#peek();
    if (c === '"' || c === "'") {
      this.#string();
    } else if (c === "[") {
      this.#next();
      for (let index = 0;; index++) {
        this.#skipBlank();
        const d = this.#peek();
        if (d === undefined) return;
        if (d === "]") {
          this.#next();
          return;
        }
        const element = [...path, index];
        this.#record(element, this.#line);
        const before = this.#i;
        this.#value(element);
        this.#skipBlank();
        if (this.#peek() === ",") this.#next();
        else if (this.#i === before) return;
      }
    } else if (c === "{") {
      this.#next();
      for (;;) {
        this.#skipBlank();
        const d = this.#peek();
        if (d === undefined) return;
        if (d === "}") {
          this.#next();
          return;
        }
        if (d === ",") {
          this.#next();
          continue;
        }
        const line = this.#line;
        const key = this.#key();
        this.#skipSpaces();
        if (key.length === 0 || this.#peek() !== "=") return;
        this.#next();
        this.#skipSpaces();
        const full = [...path, ...key];
        this.#recordChain(path.length, full, line);
        this.#value(full);
      }
    } else {
      while (this.#i < this.#s.length && !/[,\]}#\r\n]/.test(this.#peek()!)) this.#next();
    }
  }

  #string(): void {
    const q = this.#peek()!;
    if (this.#s.startsWith(q.repeat(3), this.#i)) {
      this.#i += 3;
      while (this.#i < this.#s.length && !this.#s.startsWith(q.repeat(3), this.#i)) {
        if (q === '"' && this.#peek() === "\\") this.#next();
        this.#next();
      }
      this.#i += 3;
      // A multi-line string may end with up to two more quotes of its content.
      while (this.#peek() === q) this.#next();
      return;
    }
    this.#next();
    while (this.#i < this.#s.length && this.#peek() !== q && this.#peek() !== "\n") {
      if (q === '"' && this.#peek() === "\\") this.#next();
      this.#next();
    }
    this.#next();
  }

  #peek(): string | undefined {
    return this.#s[this.#i];
  }

  #next(): void {
    if (this.#s[this.#i] === "\n") this.#line++;
    this.#i++;
  }

  #skipSpaces(): void {
    while (this.#peek() === " " || this.#peek() === "\t") this.#next();
  }

  #skipComment(): void {
    while (this.#i < this.#s.length && this.#peek() !== "\n") this.#next();
  }

  /** Spaces, newlines and comments (inside arrays and inline tables). */
  #skipBlank(): void {
    for (;;) {
      const c = this.#peek();
      if (c === " " || c === "\t" || c === "\r" || c === "\n") this.#next();
      else if (c === "#") this.#skipComment();
      else return;
    }
  }

  #skipToLineEnd(): void {
    while (this.#i < this.#s.length && this.#peek() !== "\n") {
      const c = this.#peek();
      if (c === '"' || c === "'") this.#string();
      else this.#next();
    }
  }
}
