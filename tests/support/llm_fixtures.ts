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
const OPENROUTER = "openrouter.ai";

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
  // Priced items beyond tokens (issue 15): server-side tools, audio, service
  // tiers, cache-write durations, provider-reported cost, long context.
  {
    file: "anthropic-messages-web-search.json",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "application/json",
    stream: false,
    // usage.server_tool_use.web_search_requests: 3.
    expected: usage("anthropic", "claude-sonnet-4-20250514", {
      inputTokens: 6039,
      outputTokens: 931,
      webSearches: 3,
      serviceTier: "standard",
    }),
  },
  {
    file: "anthropic-messages-web-fetch-stream.sse",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    // message_delta repeats the input counters, cumulative: 9012 replaces message_start's 2210.
    expected: usage("anthropic", "claude-opus-4-1-20250805", {
      inputTokens: 9012,
      outputTokens: 310,
      webFetches: 1,
      serviceTier: "standard",
    }),
  },
  {
    file: "anthropic-messages-cache-1h.json",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "application/json",
    stream: false,
    // input 50 + cache writes 3000 (1000 with the 5-minute TTL, 2000 with 1 hour) + cache read 1000.
    expected: usage("anthropic", "claude-haiku-4-5-20251001", {
      inputTokens: 4050,
      outputTokens: 200,
      cacheReadTokens: 1000,
      cacheWriteTokens: 3000,
      cacheWrite1hTokens: 2000,
      serviceTier: "standard",
    }),
  },
  {
    file: "anthropic-messages-batch.json",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "application/json",
    stream: false,
    // A Message Batches result's message: usage.service_tier "batch".
    expected: usage("anthropic", "claude-sonnet-4-20250514", {
      inputTokens: 1000,
      outputTokens: 500,
      serviceTier: "batch",
    }),
  },
  {
    file: "anthropic-messages-long-context.json",
    provider: "anthropic",
    host: ANTHROPIC,
    method: "POST",
    path: "/v1/messages",
    status: 200,
    contentType: "application/json",
    stream: false,
    // 250k input tokens: above the 200k long-context threshold of Claude Sonnet 4.
    expected: usage("anthropic", "claude-sonnet-4-20250514", {
      inputTokens: 250000,
      outputTokens: 1200,
      serviceTier: "standard",
    }),
  },
  {
    file: "openai-chat-audio.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/chat/completions",
    status: 200,
    contentType: "application/json",
    stream: false,
    // prompt_tokens_details.audio_tokens 1024 of 1190; completion_tokens_details.audio_tokens 330 of 412.
    expected: usage("openai", "gpt-audio-2025-08-28", {
      inputTokens: 1190,
      outputTokens: 412,
      inputAudioTokens: 1024,
      outputAudioTokens: 330,
      serviceTier: "default",
    }),
  },
  {
    file: "openai-chat-priority.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/chat/completions",
    status: 200,
    contentType: "application/json",
    stream: false,
    expected: usage("openai", "gpt-5-2025-08-07", {
      inputTokens: 2500,
      outputTokens: 800,
      cacheReadTokens: 1024,
      reasoningTokens: 512,
      serviceTier: "priority",
    }),
  },
  {
    file: "openai-responses-flex.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/responses",
    status: 200,
    contentType: "application/json",
    stream: false,
    expected: usage("openai", "o3-2025-04-16", {
      inputTokens: 3000,
      outputTokens: 1500,
      reasoningTokens: 1200,
      serviceTier: "flex",
    }),
  },
  {
    file: "openai-responses-web-search.json",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/responses",
    status: 200,
    contentType: "application/json",
    stream: false,
    // Two web_search_call output items.
    expected: usage("openai", "gpt-4.1-2025-04-14", {
      inputTokens: 9420,
      outputTokens: 412,
      webSearches: 2,
      serviceTier: "default",
    }),
  },
  {
    file: "openai-responses-web-search-stream.sse",
    provider: "openai",
    host: OPENAI,
    method: "POST",
    path: "/v1/responses",
    status: 200,
    contentType: "text/event-stream; charset=utf-8",
    stream: true,
    // One web_search_call, seen in output_item.done and again in response.completed: counted once.
    expected: usage("openai", "gpt-4.1-mini-2025-04-14", {
      inputTokens: 8211,
      outputTokens: 265,
      webSearches: 1,
      serviceTier: "default",
    }),
  },
  {
    file: "openrouter-chat.json",
    provider: "openai",
    host: OPENROUTER,
    method: "POST",
    path: "/api/v1/chat/completions",
    status: 200,
    contentType: "application/json",
    stream: false,
    // usage.cost: what OpenRouter billed.
    expected: usage("openai", "openai/gpt-4o-mini", {
      inputTokens: 14,
      outputTokens: 10,
      providerCostUsd: 0.0000081,
    }),
  },
  {
    file: "openrouter-chat-stream-byok.sse",
    provider: "openai",
    host: OPENROUTER,
    method: "POST",
    path: "/api/v1/chat/completions",
    status: 200,
    contentType: "text/event-stream",
    stream: true,
    // Bring your own key: OpenRouter's fee (cost) plus what the provider bills the key.
    expected: usage("openai", "anthropic/claude-sonnet-4", {
      inputTokens: 1520,
      outputTokens: 240,
      providerCostUsd: 0.000408 + 0.00816,
    }),
  },
  {
    file: "gemini-generate-audio.json",
    provider: "gemini",
    host: GEMINI,
    method: "POST",
    path: "/v1beta/models/gemini-2.5-flash:generateContent",
    status: 200,
    contentType: "application/json; charset=UTF-8",
    stream: false,
    // promptTokensDetails: TEXT 12, AUDIO 1600.
    expected: usage("gemini", "gemini-2.5-flash", {
      inputTokens: 1612,
      outputTokens: 95,
      inputAudioTokens: 1600,
    }),
  },
];
