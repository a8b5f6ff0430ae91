import assert from "node:assert/strict";
import { ConfigError, StoreUnavailableError } from "../errors.ts";
import {
  DEFAULT_MONGO_TIMEOUT_MS,
  mongoClientOptions,
  MongoFeatureStore,
  mongoHosts,
  normalizeMongoUri,
} from "./mongo.ts";

Deno.test("normalizeMongoUri() accepts a bare host as the Python tool does", async (t) => {
  const cases: [string, string][] = [
    ["localhost", "mongodb://localhost:27017/"],
    ["localhost:27018", "mongodb://localhost:27018/"],
    ["user:pw@db.example", "mongodb://user:pw@db.example:27017/"],
    ["db.example/mydb", "mongodb://db.example:27017/mydb"],
    [" mongodb://h:1/x ", "mongodb://h:1/x"],
    ["mongodb+srv://cluster.example/", "mongodb+srv://cluster.example/"],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => assert.equal(normalizeMongoUri(input), want));
  }
});

Deno.test("normalizeMongoUri() refuses another scheme and an empty value", () => {
  assert.throws(
    () => normalizeMongoUri("http://localhost:27017"),
    (e) =>
      e instanceof ConfigError &&
      e.message === 'Invalid MongoDB URI scheme "http://": expected mongodb:// or mongodb+srv://',
  );
  assert.throws(
    () => normalizeMongoUri("  "),
    (e) => e instanceof ConfigError && e.message === "Invalid MongoDB URI: it is empty",
  );
});

Deno.test("mongoHosts() lists host:port without credentials", () => {
  assert.equal(mongoHosts("localhost"), "localhost:27017");
  assert.equal(mongoHosts("mongodb://u:p@w@a,b:2/db?x=1"), "a:27017,b:2");
  assert.equal(mongoHosts("mongodb+srv://u:p@cluster.example/db"), "cluster.example");
});

Deno.test("MongoFeatureStore.open() refuses a bad database name before connecting", async () => {
  await assert.rejects(
    () => MongoFeatureStore.open({ uri: "localhost", db: "a.b" }),
    (e) =>
      e instanceof ConfigError &&
      e.message ===
        'Invalid MongoDB database name "a.b": use 1–63 characters without /\\. "$*<>:|?',
  );
});

Deno.test("the store's timeout bounds the driver's server selection and connection attempts", () => {
  for (const timeoutMs of [500, DEFAULT_MONGO_TIMEOUT_MS]) {
    const o = mongoClientOptions(timeoutMs);
    assert.deepEqual([o.serverSelectionTimeoutMS, o.connectTimeoutMS], [timeoutMs, timeoutMs]);
  }
});

Deno.test("MongoFeatureStore.open() reports an unreachable server without the password", async () => {
  await assert.rejects(
    () =>
      MongoFeatureStore.open({
        uri: "mongodb://admin:p%40ss-secret@127.0.0.1:1,127.0.0.1:2/?authSource=admin",
        db: "x",
        timeoutMs: 500,
      }),
    (e) => {
      assert.ok(e instanceof StoreUnavailableError);
      assert.match(
        e.message,
        /^Cannot reach MongoDB at 127\.0\.0\.1:1,127\.0\.0\.1:2 within 500 ms: /,
      );
      for (const secret of ["p%40ss-secret", "p@ss-secret", "admin:"]) {
        assert.ok(!e.message.includes(secret), e.message);
      }
      return true;
    },
  );
});
