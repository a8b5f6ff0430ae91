/**
 * Prompts of the detection scorer: given the explanation, say which excerpts the feature fires
 * on. Activating and non-activating excerpts are shuffled together and shown without marks.
 *
 * Placeholders: `{{explanation}}`, `{{examples}}` (lines `Example i: text`), `{{n}}`,
 * `{{answer_format}}`.
 *
 * @module
 */

/** System prompt. */
export const DETECTION_SYSTEM =
  `You test an explanation of a latent unit ("feature") of a language model. You get the explanation and a numbered list of text excerpts. Some excerpts contain text the feature fires on, the others do not. Using only the explanation, decide for each excerpt whether the feature fires anywhere in it.`;

/** User prompt. */
export const DETECTION_USER = `Explanation: {{explanation}}

{{examples}}

For each of the {{n}} excerpts, in order, decide whether the feature fires in it.
{{answer_format}}`;

/** Answer format with reasoning. */
export const DETECTION_FORMAT_COT =
  `Note a few short observations first, then answer with one JSON object and nothing else, with exactly {{n}} booleans:
{"steps": ["..."], "evaluation_results": [true, false, ...]}`;

/** Answer format without reasoning. */
export const DETECTION_FORMAT =
  `Answer with one JSON object and nothing else, with exactly {{n}} booleans:
{"evaluation_results": [true, false, ...]}`;
