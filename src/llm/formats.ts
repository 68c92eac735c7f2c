/**
 * Per-wire-format usage extraction: which endpoints report usage, which
 * stream events carry it, and how each provider's counters map onto
 * {@link UsageRecord}'s semantics. Pure: strings in, counters out.
 *
 * @module
 */

import type { SseSink } from "./sse.ts";
import type { Provider, UsageRecord } from "./types.ts";

/** The response shapes the tap understands. */
export type Format =
  | "openai-chat"
  | "openai-responses"
  | "openai-embeddings"
  | "anthropic"
  | "gemini";

/** A usage-bearing endpoint: its format, and the model named by the URL (Gemini). */
export interface Endpoint {
  /** Response shape to read. */
  format: Format;
  /** Model in the path (`/models/{model}:generateContent`), else null. */
  urlModel: string | null;
  /** Gemini `streamGenerateContent` (a JSON array when not `alt=sse`). */
  stream: boolean;
}

const GEMINI_PATH = /\/(?:models|tunedModels)\/([^/:]+):(generateContent|streamGenerateContent)$/;

/**
 * Classifies a request; null when it is not a call that reports usage (e.g.
 * `GET /v1/models`, `POST /v1/messages/count_tokens`).
 */
export function classifyEndpoint(
  provider: Provider,
  method: string,
  rawPath: string,
): Endpoint | null {
  // Retrieving a stored response (GET /v1/responses/{id}) returns its usage
  // again but is not billed again: only POSTs count.
  if (method.toUpperCase() !== "POST") return null;
  const q = rawPath.indexOf("?");
  let path = q >= 0 ? rawPath.slice(0, q) : rawPath;
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  // Gemini also serves the OpenAI wire format under /v1beta/openai/.
  if (provider === "openai" || (provider === "gemini" && path.includes("/openai/"))) {
    if (path.endsWith("/completions")) {
      return { format: "openai-chat", urlModel: null, stream: false };
    }
    if (path.endsWith("/responses")) {
      return { format: "openai-responses", urlModel: null, stream: false };
    }
    if (path.endsWith("/embeddings")) {
      return { format: "openai-embeddings", urlModel: null, stream: false };
    }
    return null;
  }
  if (provider === "anthropic") {
    return path.endsWith("/messages")
      ? { format: "anthropic", urlModel: null, stream: false }
      : null;
  }
  const m = GEMINI_PATH.exec(path);
  if (!m) return null;
  let model = m[1];
  try {
    model = decodeURIComponent(model);
  } catch {
    // keep it as sent
  }
  return { format: "gemini", urlModel: model, stream: m[2] === "streamGenerateContent" };
}

/**
 * True when `key` (quoted, e.g. `"usage"`) occurs as a key whose value is an
 * object. A cheap filter before JSON.parse: OpenAI puts `"usage":null` in
 * every chunk, and `"usage"` with both quotes unescaped cannot occur inside a
 * JSON string, so text content never matches.
 */
export function hasObjectKey(s: string, key: string): boolean {
  let i = s.indexOf(key);
  while (i !== -1) {
    let j = i + key.length;
    while (isWs(s.charCodeAt(j))) j++;
    if (s.charCodeAt(j) === 0x3a) {
      j++;
      while (isWs(s.charCodeAt(j))) j++;
      if (s.charCodeAt(j) === 0x7b) return true;
    }
    i = s.indexOf(key, j);
  }
  return false;
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function count(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** A provider error object as one line: `overloaded_error: Overloaded`. */
export function formatProviderError(e: unknown): string {
  if (typeof e === "string") return e.slice(0, 500);
  if (!isObj(e)) return "Unknown provider error";
  // Anthropic nests {type:"error", error:{…}}.
  if (e.type === "error" && isObj(e.error)) return formatProviderError(e.error);
  // The most specific label: OpenAI's string code (rate_limit_exceeded) over its
  // type (requests), Anthropic's type, Gemini's status over its numeric code.
  const kindRaw = typeof e.code === "string" && e.code !== ""
    ? e.code
    : typeof e.type === "string" && e.type !== "error"
    ? e.type
    : e.status ?? e.code;
  const kind = typeof kindRaw === "string" || typeof kindRaw === "number" ? String(kindRaw) : "";
  const msg = typeof e.message === "string" ? e.message : "";
  const text = kind && msg ? `${kind}: ${msg}` : msg || kind || "Unknown provider error";
  return text.slice(0, 500);
}

// Raw counters as each provider names them; the latest value of a field wins
// (Anthropic's message_delta and Gemini's chunks are cumulative).
interface Counters {
  // OpenAI (chat, embeddings, responses)
  in?: number;
  out?: number;
  cached?: number;
  cacheWrite?: number;
  reasoning?: number;
  // Anthropic
  aIn?: number;
  aCacheCreate?: number;
  aCacheRead?: number;
  aCacheCreate1h?: number;
  // Gemini
  gPrompt?: number;
  gTool?: number;
  gCandidates?: number;
  // Modalities (parts of the counts above)
  inAudio?: number;
  cacheAudio?: number;
  outAudio?: number;
  // Server-side tools billed per call
  webSearches?: number;
  webFetches?: number;
}

/** Responses API output items with a fee per call: the ones agentgate prices, and the rest. */
const PRICED_ITEMS = new Set(["web_search_call", "file_search_call"]);
const FEE_ITEMS = new Set(["code_interpreter_call", "image_generation_call"]);

/**
 * Collects usage from the parts of one response, fed whole JSON texts (a
 * body, an array element) or SSE events (it is an {@link SseSink}); `tokens()`
 * gives the counters in {@link UsageRecord} semantics.
 *
 * @example
 * ```ts
 * const ex = new UsageExtractor("openai-chat");
 * ex.json('{"model":"gpt-4o","usage":{"prompt_tokens":5,"completion_tokens":2}}', false);
 * ex.end();
 * ex.tokens().inputTokens; // 5
 * ```
 */
export class UsageExtractor implements SseSink {
  /** Response shape being read. */
  readonly format: Format;
  /** Model named by the response, once seen. */
  model: string | null = null;
  /** The provider's own error (in-band or in an error body). */
  providerError: string | null = null;
  /** The final usage of the response was seen (not just a start-of-stream value). */
  final = false;
  /** Some usage was seen. */
  sawUsage = false;
  /** Our own problem reading the body (bad JSON), reported when usage is incomplete. */
  readError: string | null = null;
  /**
   * Set before feeding what a cut stream left over: an incomplete last event
   * is expected then, not a reason to report a read error.
   */
  quiet = false;
  #c: Counters = {};
  /** Service tier the response names. */
  #tier: string | undefined;
  /** USD the provider says the call cost (OpenRouter `usage.cost`). */
  #providerCost: number | undefined;
  /** Other server-tool counters with a fee (Anthropic `server_tool_use`). */
  #otherTools: Record<string, number> = {};
  /** Responses API tool-call items by id (`output_item.done`, then the completed response). */
  #items = new Map<string, string>();
  // Gemini repeats cumulative usage in every chunk: only the first and the
  // latest are parsed, the latest lazily at the end.
  #geminiFirst = true;
  #geminiLast: string | null = null;

  /** Starts an empty extractor for one response of this shape. */
  constructor(format: Format) {
    this.format = format;
  }

  /** SSE events whose data never carries usage, model or errors. */
  skip(event: string): boolean {
    return event.endsWith(".delta") || event === "content_block_delta" ||
      event === "content_block_start" || event === "content_block_stop" || event === "ping";
  }

  /** One SSE event (data null when skipped or oversize). */
  event(name: string, data: string | null): void {
    if (this.format === "anthropic" && name === "message_stop") this.final = true;
    if (data === null) return;
    if (this.format === "openai-chat" && data.length < 16 && data.trim() === "[DONE]") return;
    // The Responses API's `error` event has no "error" key ({type, code, message});
    // a finished output item may be a tool call billed per call.
    this.json(
      data,
      true,
      name === "error" ||
        (this.format === "openai-responses" && name === "response.output_item.done"),
    );
  }

  /** One JSON text: a whole body, an array element or an event's data. */
  json(text: string, streamed: boolean, force = false): void {
    if (force) {
      // parse below
    } else if (this.format === "gemini" && streamed) {
      if (
        !hasObjectKey(text, '"error"') && !this.#geminiFirst &&
        !text.includes('"groundingMetadata"')
      ) {
        if (text.includes('"usageMetadata"')) {
          this.#geminiLast = text;
          if (text.includes('"finishReason"')) this.final = true;
        }
        return;
      }
      // Parsed now, so it is newer than any deferred chunk.
      if (text.includes('"usageMetadata"')) this.#geminiLast = null;
    } else if (
      streamed &&
      !(this.model === null && text.includes('"model')) &&
      !hasObjectKey(text, '"usage"') &&
      !hasObjectKey(text, '"error"')
    ) {
      return;
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      if (!this.quiet) {
        this.readError = streamed
          ? "Stream event is not valid JSON"
          : "Response body is not valid JSON";
      }
      return;
    }
    if (!isObj(v)) return;
    this.#apply(v, streamed);
  }

  /** Ends the input: parses what was deferred. */
  end(): void {
    if (this.#geminiLast !== null) {
      const t = this.#geminiLast;
      this.#geminiLast = null;
      try {
        const v = JSON.parse(t);
        if (isObj(v)) this.#applyGemini(v, true);
      } catch {
        if (!this.quiet) this.readError = "Stream event is not valid JSON";
      }
    }
  }

  #apply(v: Obj, streamed: boolean): void {
    switch (this.format) {
      case "openai-chat":
      case "openai-embeddings":
        this.#setModel(v.model);
        this.#setTier(v.service_tier);
        if (isObj(v.usage)) {
          this.#openaiChat(v.usage);
          this.final = true;
        }
        if (v.error !== undefined && v.error !== null) {
          this.providerError = formatProviderError(v.error);
        }
        return;
      case "openai-responses": {
        // Streamed events wrap the response object ({type, response}); a body is the object.
        const r = isObj(v.response) ? v.response : v;
        this.#setModel(r.model);
        this.#setTier(r.service_tier);
        if (v.type === "response.output_item.done" && isObj(v.item)) {
          this.#item(v.item, typeof v.output_index === "number" ? v.output_index : -1);
        }
        if (Array.isArray(r.output)) r.output.forEach((it, i) => isObj(it) && this.#item(it, i));
        if (isObj(r.usage)) {
          this.#openaiResponses(r.usage);
          const type = typeof v.type === "string" ? v.type : "";
          if (
            !streamed || type === "response.completed" || type === "response.incomplete" ||
            type === "response.failed"
          ) {
            this.final = true;
          }
        }
        if (isObj(r.error)) this.providerError = formatProviderError(r.error);
        else if (v.type === "error") this.providerError = formatProviderError(v);
        else if (isObj(v.error)) this.providerError = formatProviderError(v.error);
        return;
      }
      case "anthropic": {
        if (v.type === "error" || (v.type === undefined && isObj(v.error))) {
          this.providerError = formatProviderError(v);
          return;
        }
        const m = isObj(v.message) ? v.message : v; // message_start wraps the message
        this.#setModel(m.model);
        const u = isObj(m.usage) ? m.usage : isObj(v.usage) ? v.usage : null;
        if (u) {
          this.#anthropic(u);
          if (!streamed || v.type === "message_delta") this.final = true;
        }
        return;
      }
      case "gemini":
        this.#applyGemini(v, streamed);
        return;
    }
  }

  #applyGemini(v: Obj, streamed: boolean): void {
    this.#geminiFirst = false;
    if (isObj(v.error)) {
      this.providerError = formatProviderError(v.error);
      return;
    }
    if (typeof v.modelVersion === "string" && v.modelVersion !== "") this.model = v.modelVersion;
    if (isObj(v.usageMetadata)) {
      const u = v.usageMetadata;
      this.#set("gPrompt", u.promptTokenCount);
      this.#set("gTool", u.toolUsePromptTokenCount);
      this.#set("cached", u.cachedContentTokenCount);
      this.#set("gCandidates", u.candidatesTokenCount);
      this.#set("reasoning", u.thoughtsTokenCount);
      // Per-modality breakdowns: audio is billed at its own rate on some models.
      this.#set("inAudio", audioOf(u.promptTokensDetails));
      this.#set("cacheAudio", audioOf(u.cacheTokensDetails));
      this.#set("outAudio", audioOf(u.candidatesTokensDetails));
      this.sawUsage = true;
      if (!streamed) this.final = true;
    }
    if (Array.isArray(v.candidates)) {
      for (const c of v.candidates) {
        if (!isObj(c)) continue;
        if (streamed && typeof c.finishReason === "string") this.final = true;
        // Grounding with Google Search is billed per grounded call / query.
        const g = c.groundingMetadata;
        if (isObj(g) && Array.isArray(g.webSearchQueries) && g.webSearchQueries.length > 0) {
          this.#c.webSearches = Math.max(this.#c.webSearches ?? 0, g.webSearchQueries.length);
        }
      }
    }
    // A blocked prompt has no candidates, only promptFeedback: the stream ends there.
    if (streamed && isObj(v.promptFeedback) && typeof v.promptFeedback.blockReason === "string") {
      this.final = true;
    }
  }

  #setModel(m: unknown): void {
    if (this.model === null && typeof m === "string" && m !== "") this.model = m;
  }

  #setTier(t: unknown): void {
    if (typeof t === "string" && t !== "") this.#tier = t.slice(0, 40);
  }

  /** One Responses API output item: tool calls with a fee are counted once per id. */
  #item(it: Obj, index: number): void {
    const type = typeof it.type === "string" ? it.type : "";
    if (!PRICED_ITEMS.has(type) && !FEE_ITEMS.has(type)) return;
    const id = typeof it.id === "string" && it.id !== "" ? it.id : `#${index}`;
    this.#items.set(id, type);
  }

  /** OpenRouter (and gateways copying it) report what the call cost in `usage.cost`. */
  #cost(u: Obj): void {
    const cost = count(u.cost);
    if (cost === undefined) return;
    // Bring-your-own-key: `cost` is the gateway's fee, the provider bills the key apart.
    const upstream = u.is_byok === true && isObj(u.cost_details)
      ? count(u.cost_details.upstream_inference_cost) ?? 0
      : 0;
    this.#providerCost = cost + upstream;
  }

  #set(k: keyof Counters, v: unknown): void {
    const n = count(v);
    if (n !== undefined) this.#c[k] = n;
  }

  #openaiChat(u: Obj): void {
    this.sawUsage = true;
    this.#set("in", u.prompt_tokens);
    this.#set("out", u.completion_tokens);
    if (isObj(u.prompt_tokens_details)) {
      this.#set("cached", u.prompt_tokens_details.cached_tokens);
      this.#set("cacheWrite", u.prompt_tokens_details.cache_write_tokens);
      this.#set("inAudio", u.prompt_tokens_details.audio_tokens);
    }
    if (isObj(u.completion_tokens_details)) {
      this.#set("reasoning", u.completion_tokens_details.reasoning_tokens);
      this.#set("outAudio", u.completion_tokens_details.audio_tokens);
    }
    this.#cost(u);
  }

  #openaiResponses(u: Obj): void {
    this.sawUsage = true;
    this.#set("in", u.input_tokens);
    this.#set("out", u.output_tokens);
    if (isObj(u.input_tokens_details)) {
      this.#set("cached", u.input_tokens_details.cached_tokens);
      this.#set("cacheWrite", u.input_tokens_details.cache_write_tokens);
      this.#set("inAudio", u.input_tokens_details.audio_tokens);
    }
    if (isObj(u.output_tokens_details)) {
      this.#set("reasoning", u.output_tokens_details.reasoning_tokens);
      this.#set("outAudio", u.output_tokens_details.audio_tokens);
    }
    this.#cost(u);
  }

  #anthropic(u: Obj): void {
    this.sawUsage = true;
    this.#set("aIn", u.input_tokens);
    this.#set("aCacheCreate", u.cache_creation_input_tokens);
    this.#set("aCacheRead", u.cache_read_input_tokens);
    this.#set("out", u.output_tokens);
    if (isObj(u.cache_creation)) {
      this.#set("aCacheCreate1h", u.cache_creation.ephemeral_1h_input_tokens);
    }
    this.#setTier(u.service_tier);
    if (isObj(u.server_tool_use)) {
      for (const [k, n] of Object.entries(u.server_tool_use)) {
        const v = count(n);
        if (v === undefined) continue;
        if (k === "web_search_requests") this.#c.webSearches = v;
        else if (k === "web_fetch_requests") this.#c.webFetches = v;
        else if (v > 0) this.#otherTools[k.slice(0, 60)] = v;
        else delete this.#otherTools[k.slice(0, 60)];
      }
    }
    this.#cost(u);
  }

  /**
   * What else the response says about its price: audio parts, server-side
   * tool calls, the service tier and a provider-reported cost (only the
   * fields that are present and not 0).
   */
  extras(): Pick<
    UsageRecord,
    | "inputAudioTokens"
    | "cacheAudioReadTokens"
    | "outputAudioTokens"
    | "webSearches"
    | "webFetches"
    | "fileSearches"
    | "otherToolCalls"
    | "serviceTier"
    | "providerCostUsd"
  > {
    const c = this.#c;
    const out: ReturnType<UsageExtractor["extras"]> = {};
    if (c.inAudio) out.inputAudioTokens = c.inAudio;
    if (c.cacheAudio) out.cacheAudioReadTokens = c.cacheAudio;
    if (c.outAudio) out.outputAudioTokens = c.outAudio;
    let web = c.webSearches ?? 0;
    let file = 0;
    const other: Record<string, number> = { ...this.#otherTools };
    for (const type of this.#items.values()) {
      if (type === "web_search_call") web++;
      else if (type === "file_search_call") file++;
      else other[type] = (other[type] ?? 0) + 1;
    }
    if (web) out.webSearches = web;
    if (c.webFetches) out.webFetches = c.webFetches;
    if (file) out.fileSearches = file;
    if (Object.keys(other).length) out.otherToolCalls = other;
    if (this.#tier !== undefined) out.serviceTier = this.#tier;
    if (this.#providerCost !== undefined) out.providerCostUsd = this.#providerCost;
    return out;
  }

  /** Counters in {@link UsageRecord} semantics (see its JSDoc). */
  tokens(): Pick<
    UsageRecord,
    | "inputTokens"
    | "outputTokens"
    | "cacheReadTokens"
    | "cacheWriteTokens"
    | "cacheWrite1hTokens"
    | "reasoningTokens"
  > {
    const c = this.#c;
    switch (this.format) {
      case "anthropic": {
        const cacheRead = c.aCacheRead ?? 0;
        const cacheWrite = c.aCacheCreate ?? 0;
        const t = {
          inputTokens: (c.aIn ?? 0) + cacheRead + cacheWrite,
          outputTokens: c.out ?? 0,
          cacheReadTokens: cacheRead,
          cacheWriteTokens: cacheWrite,
          reasoningTokens: 0,
        };
        const h = Math.min(c.aCacheCreate1h ?? 0, cacheWrite);
        return h > 0 ? { ...t, cacheWrite1hTokens: h } : t;
      }
      case "gemini":
        return {
          inputTokens: (c.gPrompt ?? 0) + (c.gTool ?? 0),
          outputTokens: (c.gCandidates ?? 0) + (c.reasoning ?? 0),
          cacheReadTokens: c.cached ?? 0,
          cacheWriteTokens: 0,
          reasoningTokens: c.reasoning ?? 0,
        };
      default:
        return {
          inputTokens: c.in ?? 0,
          outputTokens: c.out ?? 0,
          cacheReadTokens: c.cached ?? 0,
          cacheWriteTokens: c.cacheWrite ?? 0,
          reasoningTokens: c.reasoning ?? 0,
        };
    }
  }
}

/** Sum of the `AUDIO` entries of a Gemini `*TokensDetails` list; undefined when there is no list. */
function audioOf(details: unknown): number | undefined {
  if (!Array.isArray(details)) return undefined;
  let n = 0;
  for (const d of details) {
    if (isObj(d) && d.modality === "AUDIO") n += count(d.tokenCount) ?? 0;
  }
  return n;
}

/** Model named by a request body (`{"model": "…"}`), if any. */
export function requestModel(body: unknown): string | null {
  return isObj(body) && typeof body.model === "string" && body.model !== "" ? body.model : null;
}

/**
 * Usage from the tail of a body too large to keep: the last `"usage"` (or
 * `"usageMetadata"`) object and the last `"model"` and `"service_tier"`
 * strings in it.
 */
export function usageFromTail(ex: UsageExtractor, tail: string): boolean {
  const key = ex.format === "gemini" ? '"usageMetadata"' : '"usage"';
  for (
    let at = tail.lastIndexOf(key);
    at !== -1;
    at = at === 0 ? -1 : tail.lastIndexOf(key, at - 1)
  ) {
    let j = at + key.length;
    while (isWs(tail.charCodeAt(j))) j++;
    if (tail.charCodeAt(j) !== 0x3a) continue;
    j++;
    while (isWs(tail.charCodeAt(j))) j++;
    if (tail.charCodeAt(j) !== 0x7b) continue;
    const close = matchBrace(tail, j);
    if (close === -1) continue;
    let usage: unknown;
    try {
      usage = JSON.parse(tail.slice(j, close + 1));
    } catch {
      continue;
    }
    const mKey = ex.format === "gemini" ? "modelVersion" : "model";
    let model: string | undefined;
    for (const m of tail.matchAll(new RegExp(`"${mKey}"\\s*:\\s*"([^"\\\\]*)"`, "g"))) {
      model = m[1];
    }
    // The service tier prices the call too (OpenAI puts it beside the usage).
    let tier: string | undefined;
    for (const m of tail.matchAll(/"service_tier"\s*:\s*"([^"\\]*)"/g)) tier = m[1];
    const wrapper = ex.format === "gemini"
      ? { usageMetadata: usage, modelVersion: model }
      : { usage, model, service_tier: tier };
    ex.json(JSON.stringify(wrapper), false);
    return true;
  }
  return false;
}

function matchBrace(s: string, open: number): number {
  let depth = 0;
  let inStr = false;
  for (let i = open; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (inStr) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inStr = false;
    } else if (c === 0x22) inStr = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) return i;
  }
  return -1;
}
