/**
 * A small, strict safetensors reader and writer (F32, F16, BF16, F64, I32, I64).
 *
 * @module
 */

export { SafetensorsError, type SafetensorsErrorOptions } from "./error.ts";
export {
  type Dtype,
  parseSafetensors,
  SafetensorsBytes,
  SafetensorsFile,
  type TensorInfo,
} from "./reader.ts";
export { type TensorInput, writeSafetensors } from "./writer.ts";
