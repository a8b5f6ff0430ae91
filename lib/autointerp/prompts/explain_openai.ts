/**
 * Prompts of the `openai` explainer: a one-sentence explanation with an activation-consistency
 * score and a complexity score, as one JSON object.
 *
 * Placeholders: `{{examples}}` (the numbered examples), `{{answer_format}}` (one of the two
 * answer formats below), `{{n}}` (number of examples).
 *
 * @module
 */

/** System prompt. */
export const EXPLAIN_OPENAI_SYSTEM =
  `You study one latent unit ("feature") of a sparse autoencoder trained on a language model's internal activations. You are shown text excerpts where the feature is active. In each excerpt the tokens where it is strongest are wrapped in << and >>. Your job is to say, in one sentence, what the feature responds to.

Guidelines:
- Look first at the marked tokens themselves: the same word, a family of words, a piece of syntax, a formatting character.
- Then at what comes just before them: the feature may depend on context (for example "a noun right after a number") rather than on the token alone.
- Prefer the most specific description that fits every excerpt; say so when it fires on several unrelated things.
- Do not quote the excerpts at length and do not mention the << >> markers.

Also rate:
- activation_consistency, 1 to 5: 5 when every excerpt clearly fits your explanation, 1 when there is no visible common pattern.
- complexity, 1 to 5: 1 for a single token or a simple surface pattern, 5 for an abstract concept that needs understanding of the text.`;

/** User prompt. */
export const EXPLAIN_OPENAI_USER = `Here are {{n}} excerpts where the feature is active.

{{examples}}

{{answer_format}}`;

/** Answer format with reasoning steps (`include_cot = true`). */
export const EXPLAIN_OPENAI_FORMAT_COT =
  `Think it through in a few short steps, then answer with one JSON object and nothing else:
{"steps": ["first observation", "..."], "final_explanation": "This feature fires on ...", "activation_consistency": 1-5, "complexity": 1-5}`;

/** Answer format without reasoning steps. */
export const EXPLAIN_OPENAI_FORMAT = `Answer with one JSON object and nothing else:
{"final_explanation": "This feature fires on ...", "activation_consistency": 1-5, "complexity": 1-5}`;
