/**
 * Prompts of the simulation scorer: given the explanation, predict the feature's activation on
 * every token of an excerpt, as one digit 0–9 per token. The digits' log-probabilities give an
 * expected activation per token, compared with the real one.
 *
 * Placeholders: `{{explanation}}`, `{{tokens}}` (lines `i: "token"`), `{{n}}`.
 *
 * @module
 */

/** System prompt. */
export const SIMULATION_SYSTEM =
  `You simulate a latent unit ("feature") of a language model from its explanation. For each token of an excerpt you predict how strongly the feature fires on it, as a single digit: 0 for not at all, 9 for as strongly as it ever does. Most tokens of most excerpts are 0.`;

/** User prompt. */
export const SIMULATION_USER = `Explanation: {{explanation}}

Tokens:
{{tokens}}

Answer with exactly {{n}} lines, one per token in order, each "index: digit" (for example "3: 0"), and nothing else.`;
