/**
 * The worst case of an LLM call before it is sent: what budgets reserve
 * while it is in flight. Fast (no tokenizer: a few field reads and one
 * cached price lookup) and meant to err high:
 *
 * - Input tokens = body bytes / {@link BYTES_PER_TOKEN} (1 for every provider)
 *   + {@link INPUT_OVERHEAD_TOKENS} (+ {@link TOOLS_OVERHEAD_TOKENS} for an
 *   Anthropic body with tools, whose tool-use system prompt is not in the
 *   body). One token per byte is a bound, not a guess: a byte-level BPE
 *   tokenizer (OpenAI's, Claude's; Gemini's falls back to bytes) never
 *   makes more tokens than the text has UTF-8 bytes, and the JSON body is
 *   at least that long. Measured with o200k: English prose is 4.6 bytes per
 *   token, code 2.7, random alphanumerics or base64 1.5, random printable
 *   ASCII 1.4 — a ratio of 3 would let code and random strings slip under
 *   their reservation. The price of the bound: prose reserves about 4× its
 *   input, which matters only near a budget's end. Not covered: content the
 *   body only points at (an uploaded file's id, a Gemini `fileData` URI) and
 *   documents billed per page (a PDF of many near-empty pages).
 * - Output tokens = the request's cap — `max_completion_tokens` /
 *   `max_tokens` (Chat Completions, times `n`), `max_output_tokens`
 *   (Responses), `max_tokens` (Anthropic), `generationConfig.maxOutputTokens`
 *   (Gemini, times `candidateCount`) — or `llm.reserve_output_tokens` when it
 *   sets none; 0 for embeddings.
 * - An Anthropic body that asks for prompt caching (`cache_control`) has its
 *   input priced as cache writes (1-hour writes when a `ttl: 1h` is set),
 *   which cost more than plain input.
 * - The price is the pricer's own (`llm.prices`, then genai-prices), looked
 *   up for token counts rounded up to a coarse grid (≤ 6.25 % above) and
 *   cached, so the decision does not pay genai-prices' ~30 µs per call.
 *
 * A call's real cost can exceed its reservation only when the provider
 * bills more than the request's own output cap allows (server tools, a
 * missing cap larger than `reserve_output_tokens`); the charge is then the
 * real cost, at settlement.
 *
 * @module
 */
import { classifyEndpoint } from "./formats.ts";
import type { Provider, UsageRecord } from "./types.ts";

/** Body bytes per input token assumed by the estimate: a bound for byte-level tokenizers. */
export const BYTES_PER_TOKEN: Record<Provider, number> = {
  openai: 1,
  anthropic: 1,
  gemini: 1,
};

/** Tokens added to every estimate for what the provider wraps around the body. */
export const INPUT_OVERHEAD_TOKENS = 64;

/**
 * Tokens added for an Anthropic call with tools: its tool-use system prompt
 * (~350 tokens), and per built-in tool (`type: computer_…`, `bash_…`, …),
 * whose definition the provider adds (up to ~750 tokens each).
 */
export const TOOLS_OVERHEAD_TOKENS = { prompt: 512, builtin: 1024 };

/** Output tokens reserved for a call that sets no cap (`llm.reserve_output_tokens`). */
export const DEFAULT_RESERVE_OUTPUT_TOKENS = 4096;

/** The request fields an estimate reads. */
export interface CallRequest {
  method: string;
  /** Request path (a query string after `?` is ignored). */
  path: string;
  /** Parsed JSON body, when it was read. */
  body: unknown;
  /** Body bytes as sent. */
  bodySize: number;
  /** The host the call goes to (a gateway's own prices are found by it). */
  host?: string;
}

/** The worst case of one call. */
export interface CallEstimate {
  model: string | null;
  inputTokens: number;
  outputTokens: number;
  /** Worst-case USD, or null when the model has no known price. */
  usd: number | null;
}

/** The part of a pricer the estimator uses (the proxy's `llm.pricer`). */
export interface Pricer {
  price(
    usage: UsageRecord,
    when: Date,
    host?: string,
  ): { costUsd: number | null; priceUnknown: boolean };
}

/** Options of {@link createEstimator}. */
export interface EstimatorOptions {
  /** The same pricer the charge uses. */
  pricer: Pricer;
  /** Output tokens reserved for a call without a cap. */
  reserveOutputTokens?: number;
}

/** A positive whole number from a request field, else null. */
function cap(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) && v >= 1 ? Math.ceil(v) : null;
}

/** How many completions a request asks for (1 when it does not say). */
function count(v: unknown): number {
  return typeof v === "number" && Number.isInteger(v) && v > 1 ? Math.min(v, 128) : 1;
}

/**
 * Whether an Anthropic body asks for prompt caching, and for 1-hour writes.
 * A bounded walk: `cache_control` sits on blocks of `system`, `messages`
 * and `tools`, a few levels down.
 */
function cacheWrites(body: unknown): "none" | "5m" | "1h" {
  let found: "none" | "5m" | "1h" = "none";
  let budget = 20_000;
  const walk = (v: unknown, depth: number): void => {
    if (found === "1h" || depth > 6 || budget-- <= 0 || v === null || typeof v !== "object") return;
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1);
      return;
    }
    const o = v as Record<string, unknown>;
    const cc = o.cache_control;
    if (cc !== undefined && cc !== null) {
      found = (cc as { ttl?: unknown }).ttl === "1h" ? "1h" : found === "none" ? "5m" : found;
    }
    for (const k in o) if (k !== "cache_control") walk(o[k], depth + 1);
  };
  walk(body, 0);
  return found;
}

/** What an Anthropic body's tools add to its input beyond their bytes. */
function toolsOverhead(tools: unknown): number {
  if (!Array.isArray(tools) || tools.length === 0) return 0;
  let n = TOOLS_OVERHEAD_TOKENS.prompt;
  for (const t of tools) {
    const type = (t as { type?: unknown } | null)?.type;
    if (typeof type === "string" && type !== "custom") n += TOOLS_OVERHEAD_TOKENS.builtin;
  }
  return n;
}

/** `n` rounded up to a grid of 16 steps per power of two (at most 6.25 % more). */
export function roundUp(n: number): number {
  if (n <= 64) return 64;
  const step = 2 ** (Math.floor(Math.log2(n)) - 4);
  return Math.ceil(n / step) * step;
}

const MAX_CACHED_PRICES = 10_000;

/**
 * Creates the estimator of worst-case call costs.
 *
 * @example
 * ```ts
 * const e = createEstimator({ pricer: createPricer() });
 * e.estimate("openai", { method: "POST", path: "/v1/chat/completions",
 *   body: { model: "gpt-4o-mini", max_tokens: 500, messages: [] }, bodySize: 900 }, new Date());
 * // { model: "gpt-4o-mini", inputTokens: 964, outputTokens: 500, usd: 0.000456 }
 * ```
 */
export function createEstimator(opts: EstimatorOptions): {
  /** The worst case of a call, or null when the request is not one that reports usage. */
  estimate(provider: Provider, req: CallRequest, when: Date): CallEstimate | null;
} {
  const reserveOutput = opts.reserveOutputTokens ?? DEFAULT_RESERVE_OUTPUT_TOKENS;
  const prices = new Map<string, number | null>();
  let pricesDay = -1;

  const price = (usage: UsageRecord, when: Date, host: string | undefined): number | null => {
    // Price tables change by date: the cache holds one day's lookups.
    const day = Math.floor(when.getTime() / 86_400_000);
    if (day !== pricesDay || prices.size >= MAX_CACHED_PRICES) {
      prices.clear();
      pricesDay = day;
    }
    const key = `${
      host ?? ""
    }\0${usage.provider}\0${usage.model}\0${usage.inputTokens}\0${usage.outputTokens}\0${
      usage.cacheWriteTokens ? (usage.cacheWrite1hTokens ? "1h" : "5m") : ""
    }`;
    let usd = prices.get(key);
    if (usd === undefined) {
      // The host finds a gateway's own price list (OpenRouter, Groq, Azure), as the charge does.
      const p = opts.pricer.price(usage, new Date(day * 86_400_000), host);
      usd = p.priceUnknown ? null : p.costUsd;
      prices.set(key, usd);
    }
    return usd;
  };

  return {
    estimate(provider, req, when) {
      const endpoint = classifyEndpoint(provider, req.method, req.path);
      if (endpoint === null) return null;
      const body = (req.body !== null && typeof req.body === "object" ? req.body : {}) as Record<
        string,
        unknown
      >;
      const model = endpoint.urlModel ?? (typeof body.model === "string" ? body.model : null);
      const inputTokens = Math.ceil(Math.max(0, req.bodySize) / BYTES_PER_TOKEN[provider]) +
        INPUT_OVERHEAD_TOKENS + (provider === "anthropic" ? toolsOverhead(body.tools) : 0);
      let outputTokens: number;
      switch (endpoint.format) {
        case "openai-embeddings":
          outputTokens = 0;
          break;
        case "openai-chat":
          outputTokens =
            (cap(body.max_completion_tokens) ?? cap(body.max_tokens) ?? reserveOutput) *
            count(body.n);
          break;
        case "openai-responses":
          outputTokens = cap(body.max_output_tokens) ?? reserveOutput;
          break;
        case "anthropic":
          outputTokens = cap(body.max_tokens) ?? reserveOutput;
          break;
        case "gemini": {
          const g = (body.generationConfig ?? body.generation_config ?? {}) as Record<
            string,
            unknown
          >;
          outputTokens = (cap(g.maxOutputTokens) ?? cap(g.max_output_tokens) ?? reserveOutput) *
            count(g.candidateCount ?? g.candidate_count);
          break;
        }
      }
      if (model === null) return { model, inputTokens, outputTokens, usd: null };
      const input = roundUp(inputTokens);
      const writes = provider === "anthropic" ? cacheWrites(body) : "none";
      const usd = price(
        {
          provider,
          model,
          inputTokens: input,
          outputTokens: outputTokens === 0 ? 0 : roundUp(outputTokens),
          cacheReadTokens: 0,
          cacheWriteTokens: writes === "none" ? 0 : input,
          ...(writes === "1h" ? { cacheWrite1hTokens: input } : {}),
          reasoningTokens: 0,
          partial: false,
          error: null,
        },
        when,
        req.host,
      );
      return { model, inputTokens, outputTokens, usd };
    },
  };
}
