/**
 * Private: one question to the LLM whose answer must parse, asked again once (with a short
 * correction) when it does not; the transcript and token usage are collected as it goes.
 *
 * @module
 */

import type { ChatClient, ChatMessage, ChatResponse, ChatUsage } from "./client.ts";
import type { ResolvedAutoInterpOptions } from "./options.ts";

/** Prompts, answers and usage of one feature's requests. */
export interface Transcript {
  /** Every message sent and every answer received, in order. */
  messages: { role: string; content: string }[];
  /** Summed token usage. */
  usage: ChatUsage;
}

/** What every explainer and scorer needs. */
export interface AskContext {
  /** The chat client. */
  client: ChatClient;
  /** Resolved options. */
  options: ResolvedAutoInterpOptions;
  /** Collects prompts, answers and usage. */
  transcript: Transcript;
  /** Aborts everything. */
  signal?: AbortSignal | undefined;
}

/** A parse outcome. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * The LLM's answer could not be understood, twice. The feature is recorded as failed with this
 * message.
 */
export class AnswerFormatError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "AnswerFormatError";
  }
}

/** A new empty transcript. */
export function newTranscript(): Transcript {
  return { messages: [], usage: { prompt_tokens: 0, completion_tokens: 0 } };
}

/**
 * Sends `messages`; parses the answer with `parse`; on a parse failure asks once more, adding
 * the bad answer and a one-line correction. Throws {@linkcode AnswerFormatError} after two bad
 * answers; request failures ({@linkcode ChatRequestError}) pass through.
 */
export async function ask<T>(
  task: string,
  messages: ChatMessage[],
  parse: (response: ChatResponse) => Parsed<T>,
  ctx: AskContext,
  extra: { json?: boolean; logprobs?: number } = {},
): Promise<T> {
  const json = extra.json ?? true;
  let conversation = messages;
  let reason = "";
  for (let attempt = 1; attempt <= 2; attempt++) {
    const response = await ctx.client.complete({
      messages: conversation,
      maxTokens: ctx.options.max_tokens,
      ...(ctx.options.temperature !== undefined ? { temperature: ctx.options.temperature } : {}),
      ...(json && ctx.options.json_mode ? { responseFormat: "json_object" as const } : {}),
      ...(extra.logprobs !== undefined ? { logprobs: extra.logprobs } : {}),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    const t = ctx.transcript;
    t.usage.prompt_tokens += response.usage.prompt_tokens;
    t.usage.completion_tokens += response.usage.completion_tokens;
    t.messages.push(...conversation.slice(attempt === 1 ? 0 : messages.length + 1));
    t.messages.push({ role: "assistant", content: response.content });
    const parsed = parse(response);
    if (parsed.ok) return parsed.value;
    reason = parsed.reason;
    conversation = [
      ...messages,
      { role: "assistant", content: response.content },
      {
        role: "user",
        content:
          `Your answer could not be used: ${reason}. Answer again in exactly the requested format.`,
      },
    ];
  }
  throw new AnswerFormatError(`${task}: ${reason} (2 attempts)`);
}
