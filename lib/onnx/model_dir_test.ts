import { assertEquals, assertRejects, assertThrows } from "./_testing.ts";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { checkContextSize, loadModelDir, maxContextSize } from "./model_dir.ts";

const NEOX = new URL("../../fixtures/tiny-neox", import.meta.url).pathname;

Deno.test("loadModelDir() finds model.onnx, config, tokenizer files", async () => {
  const m = await loadModelDir(NEOX);
  assertEquals(m.onnxPath, join(NEOX, "model.onnx"));
  assertEquals(m.tokenizerPath, join(NEOX, "tokenizer.json"));
  assertEquals(m.tokenizerConfigPath, join(NEOX, "tokenizer_config.json"));
  assertEquals(maxContextSize(m), 256);
});

Deno.test("loadModelDir() reads the transformers.js layout onnx/model.onnx", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "onnx"));
    await Deno.copyFile(join(NEOX, "model.onnx"), join(dir, "onnx", "model.onnx"));
    await Deno.copyFile(join(NEOX, "tokenizer.json"), join(dir, "tokenizer.json"));
    const m = await loadModelDir(dir);
    assertEquals(m.onnxPath, join(dir, "onnx", "model.onnx"));
    assertEquals(m.tokenizerPath, join(dir, "tokenizer.json"));
    assertEquals(m.configPath, null);
    assertEquals(maxContextSize(m), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a model folder without an ONNX file is a ConfigError naming the files looked for", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assertRejects(
      () => loadModelDir(dir),
      ConfigError,
      `Model folder ${dir} has no ONNX model: looked for model.onnx, onnx/model.onnx, decoder_model.onnx, onnx/decoder_model.onnx`,
    );
    await assertRejects(() => loadModelDir(join(dir, "nope")), ConfigError, "does not exist");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkContextSize() rejects a context longer than the model's positions", async () => {
  const m = await loadModelDir(NEOX);
  checkContextSize(m, 256);
  assertThrows(
    () => checkContextSize(m, 1024),
    ConfigError,
    `context_size = 1024 is larger than the model allows (256, from ${join(NEOX, "config.json")})`,
  );
});
