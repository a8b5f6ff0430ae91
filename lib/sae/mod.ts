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
