/**
 * What an LLM request shows, before it is sent, about how it will be billed:
 * a service tier it asks for, server-side tools it offers the model, audio
 * in or out, a prompt long enough for a long-context price. The engine
 * prices this sketch to learn, before forwarding, whether the call can be
 * priced in full under a spending limit.
 *
 * @module
 */
import type { Provider, UsageRecord } from "./types.ts";

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Bytes of request body per token assumed when estimating the prompt's size
 * (English text is about 4 bytes per token; JSON framing adds bytes).
 */
export const TYPICAL_BYTES_PER_TOKEN = 4;

/**
 * The billing-relevant parts of a request, as a usage sketch for the pricer:
 * 1 input and 1 output token (or the body's size / {@link TYPICAL_BYTES_PER_TOKEN}
 * input tokens when `bodyBytes` is known), plus a count of 1 for each
 * feature the request turns on.
 *
 * - service tier: OpenAI's `service_tier` (`priority`, `flex`, `scale`);
 * - web search: OpenAI Responses `tools: [{type: "web_search…"}]`,
 *   Anthropic `web_search_…` tools, Gemini `google_search` /
 *   `googleSearchRetrieval`; file search: `{type: "file_search"}`;
 * - tools with a fee agentgate has no price for: OpenAI `code_interpreter`,
 *   `image_generation`; Anthropic `code_execution_…`;
 * - audio: Chat Completions `modalities: ["audio"]` (audio out) and
 *   `input_audio` message parts (audio in).
 *
 * @example
 * ```ts
 * foreseeUsage("openai", "gpt-5", { model: "gpt-5", service_tier: "priority" }, 2048);
 * // { provider: "openai", model: "gpt-5", inputTokens: 512, …, serviceTier: "priority" }
 * ```
 */
export function foreseeUsage(
  provider: Provider,
  model: string,
  body: unknown,
  bodyBytes: number | null,
): UsageRecord {
  const u: UsageRecord = {
    provider,
    model,
    inputTokens: bodyBytes !== null && bodyBytes > 0
      ? Math.ceil(bodyBytes / TYPICAL_BYTES_PER_TOKEN)
      : 1,
    outputTokens: 1,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    partial: false,
    error: null,
  };
  if (!isObj(body)) return u;
  if (provider === "openai" && typeof body.service_tier === "string") {
    u.serviceTier = body.service_tier;
  }
  const other: Record<string, number> = {};
  for (const t of Array.isArray(body.tools) ? body.tools : []) {
    if (!isObj(t)) continue;
    const type = typeof t.type === "string" ? t.type : "";
    if (type.startsWith("web_search") || "google_search" in t || "googleSearch" in t) {
      u.webSearches = 1;
    } else if ("google_search_retrieval" in t || "googleSearchRetrieval" in t) {
      u.webSearches = 1;
    } else if (type === "file_search") u.fileSearches = 1;
    else if (type === "code_interpreter") other.code_interpreter_call = 1;
    else if (type === "image_generation") other.image_generation_call = 1;
    else if (type.startsWith("code_execution")) other.code_execution_requests = 1;
  }
  if (Object.keys(other).length) u.otherToolCalls = other;
  if (Array.isArray(body.modalities) && body.modalities.includes("audio")) {
    u.outputAudioTokens = 1;
  }
  if (Array.isArray(body.messages) && body.messages.some(hasInputAudio)) {
    u.inputAudioTokens = 1;
  }
  return u;
}

function hasInputAudio(m: unknown): boolean {
  return isObj(m) && Array.isArray(m.content) &&
    m.content.some((p) => isObj(p) && p.type === "input_audio");
}
