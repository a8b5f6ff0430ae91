/**
 * The readable terminal view of one feature for `saeflow show feature`: statistics, a text
 * histogram of activations, each sampling's contexts with active tokens shaded by strength, the
 * DLA tokens and the explanation.
 *
 * Dataset text is untrusted: every control character (C0, DEL, C1, and so escape sequences) is
 * shown as a visible `\xNN` / `\u{...}` escape, never written raw to the terminal.
 *
 * @module
 */

import type { FeatureAnalysisJson, FeatureJson, SampleJson } from "../store/json.ts";

/** Options of {@linkcode renderFeature}. */
export interface RenderOptions {
  /** Use ANSI colours (default: false). Without colour, active tokens are shown as `[token]`. */
  color?: boolean;
  /** The analysis to show (default: the first one, `default` when present). */
  analysis?: string;
  /** Samples shown per sampling (default 5). */
  maxSamples?: number;
  /** Tokens shown on each side of the peak (default 12). */
  around?: number;
}

/**
 * Replaces control characters with visible escapes so that data can never move the cursor,
 * change colours or set the window title.
 *
 * @param text untrusted text.
 * @returns the text with `\x1b` shown as the four characters `\x1b`, and so on.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitize } from "./show.ts";
 * assert.equal(sanitize("a\x1b[31mb"), "a\\x1b[31mb");
 * assert.equal(sanitize("tab\there"), "tab\\x09here");
 * ```
 */
export function sanitize(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}

const fmt = (x: number) =>
  x === 0
    ? "0"
    : Math.abs(x) >= 1000 || Math.abs(x) < 0.001
    ? x.toExponential(3)
    : x.toPrecision(4);

/** The shade for an activation relative to the max: 0..4. */
function level(act: number, max: number): number {
  if (act <= 0 || max <= 0) return 0;
  return Math.min(4, 1 + Math.floor((act / max) * 4));
}

const SHADES = ["", "\x1b[48;5;223m", "\x1b[48;5;216m", "\x1b[48;5;209m", "\x1b[48;5;202m"];
const RESET = "\x1b[0m";

function renderSample(s: SampleJson, max: number, o: Required<RenderOptions>): string {
  const from = Math.max(0, s.peak_pos - o.around);
  const to = Math.min(s.tokens.length, s.peak_pos + o.around + 1);
  const parts: string[] = [];
  for (let i = from; i < to; i++) {
    const text = sanitize(s.token_strings?.[i] ?? `<${s.tokens[i]}>`);
    const act = s.acts[i] ?? 0;
    const lv = level(act, max);
    if (lv === 0) parts.push(text);
    else if (o.color) {
      parts.push(`${SHADES[lv]}${i === s.peak_pos ? "\x1b[1m" : ""}${text}${RESET}`);
    } else parts.push(`[${text}]`);
  }
  const where = `${sanitize(s.source)} shard ${s.shard} row ${s.row} +${s.offset}`;
  return `  ${fmt(s.peak).padStart(9)}  ${parts.join("")}\n             ${where}`;
}

/** A text histogram of the active values, from the stored log-bucket histogram. */
function renderHistogram(a: FeatureAnalysisJson, bins = 12, width = 40): string[] {
  const h = a.histogram;
  if (!h || h.counts.length === 0 || a.max_activation <= 0) return [];
  const alpha = h.relative_accuracy;
  const gamma = (1 + alpha) / (1 - alpha);
  // Representative value of bucket i: 2γ^i / (γ + 1).
  const values: [number, number][] = h.counts.map((c, i) => [
    (2 * gamma ** (h.index_offset + i)) / (gamma + 1),
    c,
  ]);
  const lo = Math.log(Math.max(values[0]![0], a.max_activation * 1e-4));
  const hi = Math.log(a.max_activation);
  const counts = new Array<number>(bins).fill(0);
  for (const [v, c] of values) {
    const t = hi > lo ? (Math.log(Math.max(v, Math.exp(lo))) - lo) / (hi - lo) : 1;
    counts[Math.min(bins - 1, Math.max(0, Math.floor(t * bins)))]! += c;
  }
  const top = Math.max(...counts);
  return counts.map((c, i) => {
    const edge = Math.exp(lo + ((i + 1) / bins) * (hi - lo));
    const bar = "█".repeat(top > 0 ? Math.round((c / top) * width) : 0);
    return `  ≤ ${fmt(edge).padStart(9)} │${bar} ${c}`;
  });
}

/**
 * Renders a feature (the JSON document of {@link featureToJson}) for a terminal.
 *
 * @param doc the feature document.
 * @param options colour, analysis, how much to show.
 * @returns the text to print.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderFeature } from "./show.ts";
 * const text = renderFeature({ sae_name: "s", sae_series: "x", index: 3, analyses: {} });
 * assert(text.includes("feature 3"));
 * ```
 */
export function renderFeature(doc: FeatureJson, options: RenderOptions = {}): string {
  const names = Object.keys(doc.analyses);
  const o: Required<RenderOptions> = {
    color: options.color ?? false,
    analysis: options.analysis ?? (names.includes("default") ? "default" : names[0] ?? ""),
    maxSamples: options.maxSamples ?? 5,
    around: options.around ?? 12,
  };
  const out: string[] = [];
  const bold = (s: string) => (o.color ? `\x1b[1m${s}${RESET}` : s);
  out.push(bold(`${sanitize(doc.sae_series)}/${sanitize(doc.sae_name)} feature ${doc.index}`));
  const a = doc.analyses[o.analysis];
  if (a) {
    const freq = a.n_analyzed_tokens > 0 ? a.act_times / a.n_analyzed_tokens : 0;
    out.push(
      `analysis ${sanitize(o.analysis)}${
        names.length > 1
          ? ` (also: ${names.filter((n) => n !== o.analysis).map(sanitize).join(", ")})`
          : ""
      }`,
    );
    if (a.act_times === 0) {
      out.push(`dead: never active in ${a.n_analyzed_tokens} analyzed tokens`);
    } else {
      out.push(
        `active on ${a.act_times} of ${a.n_analyzed_tokens} tokens (${
          (freq * 100).toPrecision(3)
        }%)` +
          `   max ${fmt(a.max_activation)}   mean ${fmt(a.mean)}   std ${fmt(a.std)}`,
      );
      const qs = a.quantiles.filter((q) => [0.5, 0.9, 0.99].includes(q.q));
      if (qs.length) {
        out.push(`quantiles ${qs.map((q) => `p${q.q * 100}=${fmt(q.value)}`).join("  ")}`);
      }
      out.push("", bold("activation histogram"), ...renderHistogram(a));
    }
    for (const sampling of a.samplings) {
      const band = sampling.band ? ` (${sampling.band[0]}·max, ${sampling.band[1]}·max]` : "";
      out.push("", bold(`${sanitize(sampling.name)}${band}: ${sampling.samples.length} samples`));
      for (const s of sampling.samples.slice(0, o.maxSamples)) {
        out.push(renderSample(s, a.max_activation, o));
      }
      if (sampling.samples.length > o.maxSamples) {
        out.push(`  … ${sampling.samples.length - o.maxSamples} more (--json shows all)`);
      }
    }
  } else if (names.length === 0) {
    out.push("no analysis stored for this feature");
  } else {
    out.push(
      `no analysis named ${sanitize(o.analysis)}; stored: ${names.map(sanitize).join(", ")}`,
    );
  }
  if (doc.logits) {
    const row = (l: { token: string; logit: number }) =>
      `${JSON.stringify(sanitize(l.token))} ${fmt(l.logit)}`;
    out.push("", bold("direct logit attribution"));
    out.push(`  promotes   ${doc.logits.top_positive.map(row).join("  ")}`);
    out.push(`  suppresses ${doc.logits.top_negative.map(row).join("  ")}`);
  }
  const it = doc.interpretation;
  if (it) {
    out.push("", bold("interpretation"));
    if (it.error) out.push(`  failed: ${sanitize(it.error)}`);
    else out.push(`  ${sanitize(it.text)}   (${sanitize(it.method)}, ${sanitize(it.model)})`);
    for (const [name, score] of Object.entries(it.scores ?? {})) {
      if ("skipped" in score) out.push(`  ${name}: skipped (${sanitize(String(score.skipped))})`);
      else {out.push(
          `  ${name}: balanced accuracy ${fmt(score.balanced_accuracy)}  f1 ${fmt(score.f1)}`,
        );}
    }
    if (!it.error) out.push(`  ${it.passed ? "passed" : "did not pass"}`);
  }
  return out.join("\n");
}
