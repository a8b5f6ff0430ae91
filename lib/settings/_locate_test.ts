import assert from "node:assert/strict";
import { pathKey } from "./_keypath.ts";
import { lineOf, locateKeys } from "./_locate.ts";

const DOC = `# comment with key = "value"
title = "t" # trailing
a.b.c = 1
"quoted.key" = 2
notes = """
fake = 1
[not_a_table]
"""
lit = '''
other = 2
'''

[datasets."Slim.Pajama"]
path = "p"

[[sources]]
name = "first"

[[sources]]
name = "second"
[sources.extra]
deep = true

[inline]
t = { x = 1, y = { z = 2 } }
arr = [
  1,
  { k = "v" }, # comment
]
after = 3
`;

Deno.test("locateKeys() finds the line of keys, tables and elements", async (t) => {
  const lines = locateKeys(DOC);
  const cases: [(string | number)[], number | undefined][] = [
    [["title"], 2],
    [["a"], 3],
    [["a", "b", "c"], 3],
    [["quoted.key"], 4],
    [["notes"], 5],
    [["fake"], undefined],
    [["not_a_table"], undefined],
    [["lit"], 9],
    [["other"], undefined],
    [["datasets"], 13],
    [["datasets", "Slim.Pajama"], 13],
    [["datasets", "Slim.Pajama", "path"], 14],
    [["sources"], 16],
    [["sources", 0], 16],
    [["sources", 0, "name"], 17],
    [["sources", 1], 19],
    [["sources", 1, "name"], 20],
    [["sources", 1, "extra"], 21],
    [["sources", 1, "extra", "deep"], 22],
    [["inline", "t", "y", "z"], 25],
    [["inline", "arr", 0], 27],
    [["inline", "arr", 1], 28],
    [["inline", "arr", 1, "k"], 28],
    [["inline", "after"], 30],
  ];
  for (const [path, line] of cases) {
    await t.step(JSON.stringify(path), () => assert.equal(lines.get(pathKey(path)), line));
  }
});

Deno.test("lineOf() falls back to the closest known table", () => {
  const lines = locateKeys(DOC);
  assert.equal(lineOf(lines, ["sources", 1, "missing"]), 19);
  assert.equal(lineOf(lines, ["nowhere", "x"]), undefined);
});

Deno.test("locateKeys() gives up quietly on malformed text", () => {
  const lines = locateKeys('[unclosed\nkey = "open\n= 3\n[[x');
  assert.ok(lines instanceof Map);
});
