/**
 * `fnmatch`-style patterns as `huggingface_hub` applies them to repository file paths
 * (`allow_patterns`): `*` matches any run of characters including `/`, `?` one character,
 * `[abc]` / `[!abc]` a character class. A pattern ending in `/` matches everything below that
 * folder.
 *
 * @module
 */

/** Compiles one pattern to an anchored regular expression. */
export function globToRegExp(pattern: string): RegExp {
  const p = pattern.endsWith("/") ? pattern + "*" : pattern;
  let out = "^";
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === "*") out += ".*";
    else if (c === "?") out += ".";
    else if (c === "[") {
      const close = p.indexOf("]", i + 2);
      if (close === -1) {
        out += "\\[";
        continue;
      }
      let body = p.slice(i + 1, close);
      const negate = body.startsWith("!");
      if (negate) body = body.slice(1);
      out += "[" + (negate ? "^" : "") + body.replace(/[\\\]^]/g, "\\$&") + "]";
      i = close;
    } else out += c.replace(/[.+^${}()|\\/]/g, "\\$&");
  }
  return new RegExp(out + "$", "s");
}

/** Whether `path` matches any of `patterns` (every path matches when `patterns` is undefined). */
export function matchesAny(path: string, patterns: readonly string[] | undefined): boolean {
  if (patterns === undefined) return true;
  return patterns.some((pattern) => globToRegExp(pattern).test(path));
}
