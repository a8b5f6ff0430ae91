/**
 * Prompts of the fuzzing scorer: every excerpt has some tokens marked `<<like this>>`; in some
 * the marks are where the feature fires, in others they were put on random tokens. Given the
 * explanation, say which excerpts are marked correctly.
 *
 * Placeholders: `{{explanation}}`, `{{examples}}`, `{{n}}`, `{{answer_format}}`.
 *
 * @module
 */

/** System prompt. */
export const FUZZING_SYSTEM =
  `You test an explanation of a latent unit ("feature") of a language model. You get the explanation and a numbered list of text excerpts in which some tokens are marked with << and >>. In some excerpts the marked tokens are exactly where the feature fires; in others the marks were placed on unrelated tokens. Using only the explanation, decide for each excerpt whether its marked tokens are ones the explanation describes.`;

/** User prompt. */
export const FUZZING_USER = `Explanation: {{explanation}}

{{examples}}

For each of the {{n}} excerpts, in order, decide whether the marked tokens are correct.
{{answer_format}}`;

/** Answer format with reasoning. */
export const FUZZING_FORMAT_COT =
  `Note a few short observations first, then answer with one JSON object and nothing else, with exactly {{n}} booleans (true = correctly marked):
{"steps": ["..."], "evaluation_results": [true, false, ...]}`;

/** Answer format without reasoning. */
export const FUZZING_FORMAT =
  `Answer with one JSON object and nothing else, with exactly {{n}} booleans (true = correctly marked):
{"evaluation_results": [true, false, ...]}`;
