/**
 * The recorded-format responses in `tests/fixtures/llm/` and the usage each
 * must yield — one table for the unit tests in src/llm/ and the proxy's end-to-end
 * tests (`tests/fixtures/llm/README.md` lists the same numbers).
 *
 * @module
 */

import type { Provider, UsageRecord } from "../../src/llm/types.ts";

/** One fixture: how a fake provider serves it, and the usage it must yield. */
export interface LlmFixture {
  /** File name in `tests/fixtures/llm/`. */
  file: string;
  /** Wire format. */
  provider: Provider;
  /** Host the real provider answers on. */
  host: string;
  /** Request method. */
  method: "POST";
  /** Request path (with query) that yields this response. */
  path: string;
  /** Response status. */
  status: number;
  /** Response `Content-Type`. */
  contentType: string;
  /** SSE or streamed JSON array (true) or one JSON body (false). */
  stream: boolean;
  /** `finish({ complete: true })` after the whole file. */
  expected: UsageRecord;
}

/** Absolute URL of a fixture file. */
export function fixtureUrl(file: string): URL {
  return new URL(`../fixtures/llm/${file}`, import.meta.url);
}

const OPENAI = "api.openai.com";
const ANTHROPIC = "api.anthropic.com";
const GEMINI = "generativelanguage.googleapis.com";

function usage(
  provider: Provider,
  model: string | null,
  t: Partial<Omit<UsageRecord, "provider" | "model">>,
): UsageRecord {
  return {
    provider,
    model,
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    partial: false,
    error: null,
    providerError: false,
    ...t,
  };
}

/** The five counts of a response that carried no usage at all: unknown. */
const UNKNOWN = {
  inputTokens: null,
  outputTokens: null,
  cacheReadTokens: null,
  cacheWriteTokens: null,
  reasoningTokens: null,
};

/** Every fixture with its expected usage. */
export const LLM_FIXTURES: readonly LlmFixture[] = [
  {
    file: "openai-chat.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/chat/completions",
    status: 200,
    contentType: "application/json",
    stream: false,
    expected: usage("openai", "gpt-4o-2024-08-06", {
      serviceTier: "default",
      inputTokens: 1117,
      outputTokens: 46,
      cacheReadTokens: 1024,
    }),
  },
  {
    file: "openai-chat-reasoning.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/chat/completions",
    status: 200,
    contentType: "application/json",
    stream: false,
    expected: usage("openai", "o3-mini-2025-01-31", {
      serviceTier: "default",
      inputTokens: 75,
      outputTokens: 1186,
      reasoningTokens: 1024,
    }),
  },
  {
    file: "openai-chat-stream.sse",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/chat/completions",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    expected: usage("openai", "gpt-4o-mini-2024-07-18", {
      serviceTier: "default",
      inputTokens: 24,
      outputTokens: 17,
    }),
  },
  {
    file: "openai-chat-stream-no-usage.sse",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/chat/completions",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    // No stream_options.include_usage: usage unknown (partial, cost null), not 0.
    expected: usage("openai", "gpt-4o-mini-2024-07-18", {
      ...UNKNOWN,
      partial: true,
      serviceTier: "default",
    }),
  },
  {
    file: "openai-responses.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/responses",
    status: 200,
    contentType: "application/json",
    stream: false,
    expected: usage("openai", "o4-mini-2025-04-16", {
      serviceTier: "default",
      inputTokens: 2006,
      outputTokens: 764,
      cacheReadTokens: 1920,
      reasoningTokens: 576,
    }),
  },
  {
    file: "openai-responses-stream.sse",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/responses",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    expected: usage("openai", "gpt-4.1-2025-04-14", {
      serviceTier: "auto",
      inputTokens: 37,
      outputTokens: 12,
    }),
  },
  {
    file: "openai-embeddings.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/embeddings",
    status: 200,
    contentType: "application/json",
    stream: false,
    expected: usage("openai", "text-embedding-3-small", { inputTokens: 13 }),
  },
  {
    file: "openai-error-429.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/chat/completions",
    status: 429,
    contentType: "application/json",
    stream: false,
    expected: usage("openai", null, {
      providerError: true,
      error: "rate_limit_exceeded: Rate limit reached for gpt-4o in organization org-Xk2v9Lq on " +
        "tokens per min (TPM): Limit 30000, Used 29804, Requested 1163. Please try again in " +
        "1.934s. Visit https://platform.openai.com/account/rate-limits to learn more.",
    }),
  },
  {
    file: "anthropic-messages.json",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "application/json",
    stream: false,
    // input_tokens 21 + cache_creation_input_tokens 2048.
    expected: usage("anthropic", "claude-sonnet-4-20250514", {
      serviceTier: "standard",
      inputTokens: 2069,
      outputTokens: 393,
      cacheWriteTokens: 2048,
    }),
  },
  {
    file: "anthropic-messages-stream.sse",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    // message_start: input 12 + cache read 2048; message_delta: output 187.
    expected: usage("anthropic", "claude-sonnet-4-20250514", {
      serviceTier: "standard",
      inputTokens: 2060,
      outputTokens: 187,
      cacheReadTokens: 2048,
    }),
  },
  {
    file: "anthropic-messages-stream-error.sse",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    expected: usage("anthropic", "claude-3-5-haiku-20241022", {
      inputTokens: 25,
      outputTokens: 1,
      partial: true,
      error: "overloaded_error: Overloaded",
      providerError: true,
    }),
  },
  {
    file: "anthropic-messages-stream-truncated.sse",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    // Cut inside a content_block_delta: only message_start's usage was seen.
    expected: usage("anthropic", "claude-3-5-haiku-20241022", {
      inputTokens: 472,
      outputTokens: 2,
      partial: true,
    }),
  },
  {
    file: "anthropic-error-529.json",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 529,
    contentType: "application/json",
    stream: false,
    expected: usage("anthropic", null, {
      error: "overloaded_error: Overloaded",
      providerError: true,
    }),
  },
  {
    file: "gemini-generate.json",
    provider: "gemini",
    host: GEMINI,
    method: "POST",
    path: "/v1beta/models/gemini-2.5-flash:generateContent",
    status: 200,
    contentType: "application/json; charset=UTF-8",
    stream: false,
    // candidates 96 + thoughts 412.
    expected: usage("gemini", "gemini-2.5-flash", {
      inputTokens: 2310,
      outputTokens: 508,
      cacheReadTokens: 2048,
      reasoningTokens: 412,
    }),
  },
  {
    file: "gemini-stream.sse",
    provider: "gemini",
    host: GEMINI,
    method: "POST",
    path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    status: 200,
    contentType: "text/event-stream",
    stream: true,
    // candidates 43 + thoughts 198.
    expected: usage("gemini", "gemini-2.5-flash", {
      inputTokens: 9,
      outputTokens: 241,
      reasoningTokens: 198,
    }),
  },
  {
    file: "gemini-stream.json",
    provider: "gemini",
    host: GEMINI,
    method: "POST",
    path: "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
    status: 200,
    contentType: "application/json; charset=UTF-8",
    stream: true,
    // candidates 58 + thoughts 301.
    expected: usage("gemini", "gemini-2.5-pro", {
      inputTokens: 1043,
      outputTokens: 359,
      cacheReadTokens: 1024,
      reasoningTokens: 301,
    }),
  },
];
