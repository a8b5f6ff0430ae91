import { assert, assertEquals, assertThrows } from "../onnx/_testing.ts";
import { ConfigError } from "../errors.ts";
import { onnx } from "../onnx/_proto.ts";
import { feedBuilder } from "./feeds.ts";
import { OnnxModel } from "../onnx/mod.ts";
import { createSession } from "./session.ts";

/** A decoder-like export taking position ids and one layer of past key/values. */
function pastModel(): OnnxModel {
  const input = (name: string, elemType: number, dims: (number | string)[]) => ({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }) },
      },
    },
  });
  const proto = onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "past",
      input: [
        input("input_ids", 7, ["batch", "sequence"]),
        input("attention_mask", 7, ["batch", "sequence"]),
        input("position_ids", 7, ["batch", "sequence"]),
        input("past_key_values.0.key", 1, ["batch", 2, "past_sequence", 4]),
      ],
      node: [
        {
          name: "/c",
          opType: "Concat",
          input: ["past_key_values.0.key", "past_key_values.0.key"],
          output: ["present"],
          attribute: [{ name: "axis", type: 2, i: 2 }],
        },
        {
          name: "/p",
          opType: "Add",
          input: ["position_ids", "attention_mask"],
          output: ["pos_plus_mask"],
        },
        { name: "/i", opType: "Identity", input: ["input_ids"], output: ["ids"] },
      ],
      output: [input("present", 1, []), input("pos_plus_mask", 7, []), input("ids", 7, [])].map((
        v,
      ) => ({ name: v.name })),
    },
  }).finish();
  return OnnxModel.fromBytes(proto);
}

Deno.test("feeds give position ids like Hugging Face and empty past key/values", async () => {
  await using session = await createSession(pastModel(), { intraOpThreads: 1 });
  const build = feedBuilder(session.inputMetadata, "past");
  const feeds = build({
    batchSize: 2,
    contextSize: 4,
    tokens: new Int32Array([7, 8, 9, 10, 0, 0, 11, 12]),
    attention: new Uint8Array([1, 1, 1, 0, 0, 0, 1, 1]),
  });
  assertEquals(feeds["past_key_values.0.key"]!.dims, [2, 2, 0, 4]);
  const out = await session.run(feeds);
  assertEquals(out.present!.dims, [2, 2, 0, 4]);
  // position ids: cumsum(mask) - 1 clipped at 0 → [0,1,2,2] and [0,0,0,1]; plus the mask.
  assertEquals([...(out.pos_plus_mask!.data as BigInt64Array)].map(Number), [
    1,
    2,
    3,
    2,
    0,
    0,
    1,
    2,
  ]);
  assertEquals([...(out.ids!.data as BigInt64Array)].map(Number), [7, 8, 9, 10, 0, 0, 11, 12]);
});

Deno.test("feeds reject an input saeflow cannot feed, naming it", () => {
  const e = assertThrows(
    () => feedBuilder([{ name: "pixel_values", type: "float32", shape: [1, 3, 224, 224] }], "vit"),
    ConfigError,
    `Cannot feed ONNX model vit: it takes input "pixel_values" [1,3,224,224]`,
  );
  assert(!e.message.includes("\n"));
  assertThrows(
    () =>
      feedBuilder(
        [{ name: "past_key_values.0.key", type: "float32", shape: ["b", "h", "p", "d"] }],
        "m",
      ),
    ConfigError,
    `past key/value input "past_key_values.0.key" has shape [b,h,p,d]`,
  );
});

Deno.test("feeds follow the export's id type (int32 ids, bool mask)", () => {
  const build = feedBuilder([
    { name: "input_ids", type: "int32", shape: ["b", "s"] },
    { name: "attention_mask", type: "bool", shape: ["b", "s"] },
    { name: "use_cache_branch", type: "bool", shape: [1] },
  ], "m");
  const f = build({
    batchSize: 1,
    contextSize: 2,
    tokens: new Int32Array([3, 4]),
    attention: new Uint8Array([1, 0]),
  });
  assertEquals(f.input_ids!.type, "int32");
  assertEquals([...f.attention_mask!.data as Uint8Array], [1, 0]);
  assertEquals([...f.use_cache_branch!.data as Uint8Array], [0]);
});
