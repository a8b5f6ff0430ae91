import assert from "node:assert/strict";
import { assertThrows } from "./_testing.ts";
import { ConfigError } from "./errors.ts";
import { normalizeMongoUri } from "./mongo_uri.ts";
import { MongoDBConfigSchema } from "./settings/mod.ts";
import { normalizeMongoUri as storeNormalizeMongoUri } from "./store/mod.ts";

Deno.test("normalizeMongoUri() completes bare hosts and keeps real URIs", async (t) => {
  const cases: [string, string][] = [
    ["localhost", "mongodb://localhost:27017/"],
    ["localhost:27018", "mongodb://localhost:27018/"],
    ["10.0.0.5", "mongodb://10.0.0.5:27017/"],
    ["user:pw@db.example", "mongodb://user:pw@db.example:27017/"],
    ["a:1,b", "mongodb://a:1,b:27017/"],
    ["db/mechinterp?retryWrites=true", "mongodb://db:27017/mechinterp?retryWrites=true"],
    [" mongodb://localhost:27017/ ", "mongodb://localhost:27017/"],
    ["mongodb+srv://cluster0.example.net/", "mongodb+srv://cluster0.example.net/"],
  ];
  for (const [input, expected] of cases) {
    await t.step(JSON.stringify(input), () => assert.equal(normalizeMongoUri(input), expected));
  }
});

Deno.test("normalizeMongoUri() refuses what is not a MongoDB URI, without the password", async (t) => {
  const cases: [string, string][] = [
    ["", "Invalid MongoDB URI: it is empty"],
    ["  ", "Invalid MongoDB URI: it is empty"],
    [
      "http://localhost",
      'Invalid MongoDB URI scheme "http://": expected mongodb:// or mongodb+srv://',
    ],
    [
      "has space",
      'Invalid MongoDB URI "has space": expected mongodb://host[:port]/ or a bare host[:port]',
    ],
    [
      "admin:s3cr%21t@bad host",
      'Invalid MongoDB URI "admin:****@bad host": expected mongodb://host[:port]/ or a bare ' +
      "host[:port]",
    ],
    [
      "mongodb://",
      'Invalid MongoDB URI "mongodb://": expected mongodb://host[:port]/ or a bare host[:port]',
    ],
  ];
  for (const [input, message] of cases) {
    await t.step(JSON.stringify(input), () => {
      const error = assertThrows(() => normalizeMongoUri(input), ConfigError, message);
      assert(!error.message.includes("s3cr"), error.message);
    });
  }
});

Deno.test("the settings and the store complete a URI with the same normalizeMongoUri()", () => {
  assert.equal(storeNormalizeMongoUri, normalizeMongoUri);
  assert.equal(
    MongoDBConfigSchema.parse({ mongo_uri: "user:pw@db.example" }).mongo_uri,
    normalizeMongoUri("user:pw@db.example"),
  );
  assert.throws(() => MongoDBConfigSchema.parse({ mongo_uri: "http://db.example" }));
});
