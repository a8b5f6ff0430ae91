/**
 * Prompts of the `neuronpedia` explainer: a label of 1–6 words built from the tokens where the
 * feature peaks (with their preceding context), the tokens that follow them, the output tokens
 * it promotes and suppresses (DLA), and the excerpts.
 *
 * Placeholders: `{{max_tokens}}`, `{{next_tokens}}`, `{{top_logits}}`, `{{bottom_logits}}`,
 * `{{texts}}`, `{{answer_format}}`.
 *
 * @module
 */

/** System prompt. */
export const EXPLAIN_LABEL_SYSTEM =
  `You name latent units ("features") of a sparse autoencoder trained on a language model. You get four kinds of evidence and return a very short label (1 to 6 words, usually 1 to 3) for what the feature detects or makes the model predict.

Evidence:
- PEAK TOKENS: the token where the feature is strongest in each top excerpt, after the three tokens before it in brackets, e.g. "[in the year] 1984".
- NEXT TOKENS: the token right after each peak token.
- PROMOTED and SUPPRESSED: output tokens the feature pushes up or down directly (may be empty).
- EXCERPTS: the top excerpts themselves.

Work through them in this order and use the first that gives a clear, specific answer (combine them when they agree):
1. The peak tokens are the same word, its variants, or one category: name it. If instead the bracketed context is what they share, name that ("after 'in the year'").
2. The next tokens share something (a word, a first letter, a category): answer "say <that>".
3. The promoted tokens share something: answer "say <that>".
4. The excerpts share a topic or genre: name it.
5. Only if nothing else works, the suppressed tokens share something: answer "not <that>".

Rules: be specific ("US state names", not "proper nouns"); no filler such as "words related to" or "tokens"; if no guess is possible, the label is "N/A".`;

/** User prompt. */
export const EXPLAIN_LABEL_USER = `PEAK TOKENS:
{{max_tokens}}

NEXT TOKENS:
{{next_tokens}}

PROMOTED:
{{top_logits}}

SUPPRESSED:
{{bottom_logits}}

EXCERPTS:
{{texts}}

{{answer_format}}`;

/** Answer format with reasoning (`include_cot = true`). */
export const EXPLAIN_LABEL_FORMAT_COT =
  `Reason briefly through the steps, then answer with one JSON object and nothing else:
{"steps": ["step 1: ...", "..."], "final_explanation": "<1-6 word label>"}`;

/** Answer format without reasoning. */
export const EXPLAIN_LABEL_FORMAT = `Answer with one JSON object and nothing else:
{"final_explanation": "<1-6 word label>"}`;
