/**
 * SAE checkpoints: loading both layouts with scale factors folded, a reference encoder, and the
 * `inspect sae` description.
 *
 * @module
 */

export {
  type ActivationKind,
  checkHookWidth,
  type SaeActivation,
  type SaeDescription,
  type SaeFormat,
  type SaeNormalization,
} from "./sae.ts";
export { loadSae, type LoadSaeOptions } from "./load_sae.ts";
export { encodeReference, type SparseActivations } from "./reference.ts";
export { describeSae } from "./inspect.ts";
export {
  buildEncoderGraph,
  buildFusedModel,
  canFuse,
  DEFAULT_MAX_ELEMENTS_PER_RUN,
  type EncoderGraphOptions,
  type EncoderStats,
  type FuseCheck,
  type FusedInput,
  type FusedModelNames,
  fusedModelNames,
  type FusedModelOptions,
  FusedSaeEncoder,
  SaeEncoder,
  type SaeEncoderOptions,
} from "./onnx_encoder.ts";
