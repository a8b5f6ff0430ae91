/**
 * Fills `{{name}}` placeholders of a prompt template.
 *
 * @module
 */

/**
 * Replaces every `{{name}}` in `template` with `values[name]`.
 *
 * @throws {RangeError} When a placeholder has no value (a programming error).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fillTemplate } from "./_fill.ts";
 * assert.equal(fillTemplate("Hi {{who}}!", { who: "you" }), "Hi you!");
 * ```
 */
export function fillTemplate(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{\{([a-z_]+)\}\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new RangeError(`Cannot fill prompt: no value for {{${name}}}`);
    return String(v);
  });
}
