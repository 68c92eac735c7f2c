/**
 * Value types shared by the LLM modules: which wire format a host speaks, the
 * usage read from one response, and what the proxy tells a usage tap.
 *
 * @module
 */

/** Wire format of an LLM provider (not the vendor: Azure OpenAI speaks `openai`). */
export type Provider = "openai" | "anthropic" | "gemini";

/** Every {@link Provider}, for config validation. */
export const PROVIDERS: readonly Provider[] = ["openai", "anthropic", "gemini"];

/**
 * Token usage of one LLM call, normalised so every provider means the same.
 *
 * Token semantics (the same for every provider, and the same as
 * `@pydantic/genai-prices`' `input_tokens`, so cache tokens are never counted
 * twice):
 *
 * - `inputTokens` is every prompt-side token, **including** cache reads and
 *   cache writes. Uncached input = `inputTokens - cacheReadTokens -
 *   cacheWriteTokens`.
 *   OpenAI: `prompt_tokens` / `input_tokens` as reported (they include cached).
 *   Anthropic: `input_tokens + cache_creation_input_tokens +
 *   cache_read_input_tokens` (Anthropic reports them as disjoint parts).
 *   Gemini: `promptTokenCount + toolUsePromptTokenCount` (the latter are
 *   tool results fed back as input and billed as input).
 * - `outputTokens` is every generated token, **including** reasoning.
 *   OpenAI: `completion_tokens` / `output_tokens` (include reasoning).
 *   Anthropic: `output_tokens` (includes thinking).
 *   Gemini: `candidatesTokenCount + thoughtsTokenCount` (Gemini reports
 *   thoughts apart from candidates, and bills them as output).
 * - `cacheReadTokens`, `cacheWriteTokens`: parts of `inputTokens`.
 * - `reasoningTokens`: part of `outputTokens`, for information only — never
 *   add it to `outputTokens` when pricing. 0 when the provider does not say
 *   (Anthropic does not report thinking tokens apart).
 * - The five counts are `null` together when the response carried no usage
 *   at all (an OpenAI stream without `stream_options.include_usage`, a stream
 *   cut before its usage): unknown, which is not 0.
 * - Audio tokens are parts of the input / output counts (OpenAI
 *   `prompt_tokens_details.audio_tokens`, `completion_tokens_details.audio_tokens`;
 *   Gemini's `AUDIO` modality details), priced at audio rates.
 *
 * @example
 * ```ts
 * const usage: UsageRecord = {
 *   provider: "anthropic", model: "claude-sonnet-4-20250514",
 *   inputTokens: 1200, outputTokens: 80, cacheReadTokens: 1000,
 *   cacheWriteTokens: 0, reasoningTokens: 0, partial: false, error: null,
 *   webSearches: 2, serviceTier: "standard",
 * };
 * ```
 */
export interface UsageRecord {
  /** Wire format the response was read as. */
  provider: Provider;
  /** Model as the response names it, else the request body, else the URL (Gemini). */
  model: string | null;
  /** Every prompt-side token, cache reads and writes included; null when unknown. */
  inputTokens: number | null;
  /** Every generated token, reasoning included; null when unknown. */
  outputTokens: number | null;
  /** Part of `inputTokens` read from the provider's prompt cache. */
  cacheReadTokens: number | null;
  /** Part of `inputTokens` written to the prompt cache (Anthropic; some OpenAI-compatible gateways). */
  cacheWriteTokens: number | null;
  /**
   * Part of `cacheWriteTokens` written with Anthropic's 1-hour TTL (priced
   * higher than 5-minute writes). Present only when the response reports it
   * and it is not 0.
   */
  cacheWrite1hTokens?: number;
  /** Part of `outputTokens` spent reasoning (OpenAI, Gemini); 0 when not reported. */
  reasoningTokens: number | null;
  /** Part of `inputTokens` that is audio (cached audio included); present when not 0. */
  inputAudioTokens?: number;
  /** Part of `cacheReadTokens` that is audio (Gemini); present when not 0. */
  cacheAudioReadTokens?: number;
  /** Part of `outputTokens` that is audio; present when not 0. */
  outputAudioTokens?: number;
  /**
   * Server-side web searches billed per call: Anthropic
   * `usage.server_tool_use.web_search_requests`, OpenAI Responses
   * `web_search_call` output items, Gemini grounding queries. Present when not 0.
   */
  webSearches?: number;
  /** Anthropic `usage.server_tool_use.web_fetch_requests` (no fee beyond tokens); present when not 0. */
  webFetches?: number;
  /** OpenAI Responses `file_search_call` output items; present when not 0. */
  fileSearches?: number;
  /**
   * Other server-side tool use with a fee of its own, by kind
   * (`code_interpreter_call`, `image_generation_call`, an unknown
   * `server_tool_use` counter): agentgate has no price for them.
   */
  otherToolCalls?: Record<string, number>;
  /**
   * The service tier the provider says it served the call in: OpenAI's
   * `service_tier` (`default`, `flex`, `priority`, `scale`), Anthropic's
   * `usage.service_tier` (`standard`, `priority`, `batch`).
   */
  serviceTier?: string;
  /**
   * USD the provider (or gateway) says the call cost: OpenRouter's
   * `usage.cost` (plus `cost_details.upstream_inference_cost` for a
   * bring-your-own-key call). Preferred over any price table.
   */
  providerCostUsd?: number;
  /**
   * True when the counts are a lower bound: the stream ended before its final
   * usage (client abort, upstream cut, in-band error), the response carried no
   * usage at all (an OpenAI stream without `stream_options.include_usage`), or
   * the body could not be read to the end.
   */
  partial: boolean;
  /**
   * Why the call failed or the usage could not be read, or null: the
   * provider's error (`overloaded_error: Overloaded`, `HTTP 429`) or ours
   * (`Response body is not valid JSON`).
   */
  error: string | null;
  /**
   * True when `error` is the provider's own (an error body, or an in-band
   * `error` / `response.failed` event in a 200 stream); false when it is ours
   * or there is none.
   */
  providerError?: boolean;
  /**
   * Set when a limit stopped the tap before it read the whole body (a
   * compressed response inflating past `maxDecompressedBytes` or the ratio):
   * `response body decompression stopped at …`. The counts are then what the
   * part read showed (`partial` tells whether the final usage was seen).
   */
  inspection?: string;
}

/** What the proxy knows about a response when it starts a usage tap. */
export interface UsageTapContext {
  /** Request method (usage is only read for POST). */
  method: string;
  /** Request path; a query string after `?` is ignored. */
  path: string;
  /** Parsed JSON request body, when the proxy has it (model fallback). */
  requestBody?: unknown;
  /** Response status. */
  status: number;
  /** Response `Content-Type`, or null. */
  contentType: string | null;
  /** Response `Content-Encoding`, or null. */
  contentEncoding: string | null;
}

/** Reads usage from a copy of a response body; see {@link createUsageTap}. */
export interface UsageTap {
  /** Feeds the next response chunk. Never throws; the chunk may be reused after. */
  push(chunk: Uint8Array): void;
  /**
   * Ends the tap. `complete` is false when the body did not end normally
   * (client abort, upstream reset). Returns null when the call is not one that
   * reports usage (not an LLM endpoint). Call once.
   */
  finish(opts: { complete: boolean }): UsageRecord | null;
}
