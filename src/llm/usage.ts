/**
 * The usage tap: reads token usage from a copy of an LLM response as it
 * streams past, without ever holding a chunk back from the client.
 *
 * @module
 */

import { createDecoder, type Decoder } from "../util/decompress.ts";
import {
  classifyEndpoint,
  type Endpoint,
  formatProviderError,
  requestModel,
  UsageExtractor,
  usageFromTail,
} from "./formats.ts";
import { BodyCollector, JsonArraySplitter } from "./json_stream.ts";
import { SseParser } from "./sse.ts";
import type { Provider, UsageRecord, UsageTap, UsageTapContext } from "./types.ts";

/** Limits of one tap; the defaults suit the proxy. */
export interface UsageTapLimits {
  /** A non-streamed JSON body is kept up to this many bytes (default 8 MiB). */
  maxBodyBytes?: number;
  /** Past that, only this tail is kept to find `usage` in (default 256 KiB). */
  tailBytes?: number;
  /**
   * One SSE event (counted in decoded characters) or streamed array element
   * (in bytes) is kept up to this size (default 8 MiB); a larger one is skipped.
   */
  maxEventBytes?: number;
  /** An error body (non-2xx) is kept up to this many bytes (default 64 KiB). */
  maxErrorBytes?: number;
  /** Decode compressed bodies by buffering them instead of incrementally (tests). */
  forceBufferedDecode?: boolean;
  /** A compressed body is inflated to at most this many bytes (default 64 MiB). */
  maxDecompressedBytes?: number;
  /** …and at most this many bytes per compressed byte, past 1 MiB (default 100). */
  maxDecompressionRatio?: number;
}

const MiB = 1024 * 1024;

const UNKNOWN_TOKENS = {
  inputTokens: null,
  outputTokens: null,
  cacheReadTokens: null,
  cacheWriteTokens: null,
  reasoningTokens: null,
} as const;

type Mode = "sse" | "body" | "array" | "sniff";

// Whitespace and a UTF-8 byte order mark may precede the first significant byte.
const SNIFF_SKIP = new Set([0x20, 0x0a, 0x0d, 0x09, 0xef, 0xbb, 0xbf]);

/**
 * Starts a usage tap for one response. Feed it every response chunk (after
 * or while forwarding it) and call `finish` once when the body ends or is cut.
 * `push` never throws and costs about one pass of `indexOf` over the bytes,
 * plus a `JSON.parse` of the few events that carry usage.
 *
 * @example
 * ```ts
 * const tap = createUsageTap("openai", {
 *   method: "POST", path: "/v1/chat/completions", status: 200,
 *   contentType: "text/event-stream", contentEncoding: null,
 *   requestBody: { model: "gpt-4o-mini", stream: true },
 * });
 * for await (const chunk of upstreamBody) { client.write(chunk); tap.push(chunk); }
 * const usage = tap.finish({ complete: true }); // UsageRecord | null
 * ```
 */
export function createUsageTap(
  provider: Provider,
  ctx: UsageTapContext,
  limits: UsageTapLimits = {},
): UsageTap {
  let endpoint: Endpoint | null = null;
  try {
    endpoint = classifyEndpoint(provider, ctx.method, ctx.path);
  } catch {
    // A malformed context is not an LLM call we can read: same as unknown.
  }
  if (endpoint === null) return { push() {}, finish: () => null };
  return new Tap(provider, endpoint, ctx, limits);
}

class Tap implements UsageTap {
  #provider: Provider;
  #endpoint: Endpoint;
  #ctx: UsageTapContext;
  #limits: Required<
    Omit<UsageTapLimits, "forceBufferedDecode" | "maxDecompressedBytes" | "maxDecompressionRatio">
  >;
  #ex: UsageExtractor;
  #isError: boolean;
  #decoder: Decoder | null = null;
  #mode: Mode;
  #sse: SseParser | null = null;
  #body: BodyCollector | null = null;
  #array: JsonArraySplitter | null = null;
  #failure: string | null = null;
  #finished = false;

  constructor(
    provider: Provider,
    endpoint: Endpoint,
    ctx: UsageTapContext,
    limits: UsageTapLimits,
  ) {
    this.#provider = provider;
    this.#endpoint = endpoint;
    this.#ctx = ctx;
    this.#limits = {
      maxBodyBytes: limits.maxBodyBytes ?? 8 * MiB,
      tailBytes: limits.tailBytes ?? 256 * 1024,
      maxEventBytes: limits.maxEventBytes ?? 8 * MiB,
      maxErrorBytes: limits.maxErrorBytes ?? 64 * 1024,
    };
    this.#ex = new UsageExtractor(endpoint.format);
    this.#isError = ctx.status < 200 || ctx.status >= 300;
    try {
      this.#decoder = createDecoder(ctx.contentEncoding, {
        forceBuffered: limits.forceBufferedDecode,
        maxBuffered: this.#limits.maxBodyBytes,
        maxOutputBytes: limits.maxDecompressedBytes ?? 64 * MiB,
        maxRatio: limits.maxDecompressionRatio ?? 100,
      });
    } catch (e) {
      this.#failure = (e as Error).message;
    }
    if (this.#isError) {
      this.#mode = "body";
      this.#body = new BodyCollector(this.#limits.maxErrorBytes, this.#limits.maxErrorBytes);
    } else {
      const ct = (ctx.contentType ?? "").toLowerCase();
      if (ct.includes("text/event-stream")) this.#mode = "sse";
      else if (ct.includes("json")) this.#mode = endpoint.stream ? "array" : "body";
      else this.#mode = "sniff";
      this.#startMode();
    }
  }

  push(chunk: Uint8Array): void {
    if (this.#failure !== null || this.#finished || chunk.length === 0) return;
    let parts: Uint8Array[];
    try {
      parts = this.#decoder ? this.#decoder.push(chunk) : [chunk];
    } catch (e) {
      this.#fail("Could not decompress response body", e);
      return;
    }
    try {
      for (const part of parts) this.#feed(part);
    } catch (e) {
      this.#fail("Could not read response body", e);
    }
  }

  finish(opts: { complete: boolean }): UsageRecord | null {
    if (this.#finished) throw new Error("Usage tap already finished");
    this.#finished = true;
    if (this.#decoder) {
      let parts: Uint8Array[] = [];
      try {
        parts = this.#decoder.end();
      } catch (e) {
        this.#fail("Could not decompress response body", e);
      }
      try {
        if (this.#failure === null) { for (const part of parts) this.#feed(part); }
      } catch (e) {
        this.#fail("Could not read response body", e);
      }
    }
    const ex = this.#ex;
    try {
      this.#endInput(opts.complete);
    } catch (e) {
      this.#fail("Could not read response body", e);
    }
    const model = ex.model ?? requestModel(this.#ctx.requestBody) ?? this.#endpoint.urlModel;
    const base = { provider: this.#provider, model };
    if (this.#isError) {
      // A failed call is not billed: its counts are known (0 unless the body says more).
      return {
        ...base,
        ...ex.tokens(),
        ...ex.extras(),
        partial: !opts.complete,
        error: ex.providerError ?? `HTTP ${this.#ctx.status}`,
        providerError: true,
      };
    }
    const final = ex.final && ex.sawUsage;
    const cut = this.#decoder?.limited;
    const inspection = cut ? { inspection: `response body decompression ${cut}` } : {};
    const ourError = this.#failure ?? ex.readError ??
      (this.#sse && this.#sse.oversizeEvents > 0
        ? "Stream event over the size cap skipped"
        : null) ??
      (this.#array && this.#array.oversizeElements > 0
        ? "Stream element over the size cap skipped"
        : null);
    // No usage seen at all: the counts are unknown, not 0.
    const tokens = ex.sawUsage ? ex.tokens() : UNKNOWN_TOKENS;
    return {
      ...base,
      ...tokens,
      ...ex.extras(),
      partial: !opts.complete || !final,
      error: ex.providerError ?? (final ? null : ourError),
      providerError: ex.providerError !== null,
      ...inspection,
    };
  }

  #startMode(): void {
    const max = this.#limits.maxEventBytes;
    const ex = this.#ex;
    switch (this.#mode) {
      case "sse":
        this.#sse = new SseParser(ex, max);
        return;
      case "array":
        this.#array = new JsonArraySplitter((t) => ex.json(t, true), max);
        return;
      case "body":
        this.#body = new BodyCollector(this.#limits.maxBodyBytes, this.#limits.tailBytes);
        return;
      case "sniff":
        return;
    }
  }

  #feed(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#mode === "sniff") {
      // Unknown Content-Type: the first significant byte tells JSON from SSE.
      let i = 0;
      while (i < bytes.length && SNIFF_SKIP.has(bytes[i])) i++;
      if (i === bytes.length) return;
      const c = bytes[i];
      if (c === 0x7b || c === 0x5b) this.#mode = this.#endpoint.stream ? "array" : "body";
      else this.#mode = "sse";
      this.#startMode();
    }
    if (this.#sse) this.#sse.push(bytes);
    else if (this.#array) this.#array.push(bytes);
    else if (this.#body) this.#body.push(bytes);
  }

  #endInput(complete: boolean): void {
    const ex = this.#ex;
    // A cut stream's last event is expected to be incomplete.
    ex.quiet = !complete;
    if (this.#sse) this.#sse.end();
    if (this.#body) {
      const { text, truncated } = this.#body.text();
      if (this.#isError) {
        this.#readErrorBody(text);
      } else if (!truncated) {
        if (text.trim() !== "" || complete) ex.json(text, false);
      } else if (!usageFromTail(ex, text)) {
        ex.readError =
          `Response body over ${this.#limits.maxBodyBytes} bytes and no usage in its tail`;
      }
    }
    ex.end();
  }

  #readErrorBody(text: string): void {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return;
    }
    // Gemini's streaming endpoint wraps its error in an array.
    if (Array.isArray(v)) v = v[0];
    if (typeof v === "object" && v !== null && "error" in v) {
      this.#ex.providerError = formatProviderError(
        (v as { type?: unknown }).type === "error" ? v : (v as { error: unknown }).error,
      );
    }
  }

  #fail(what: string, e: unknown): void {
    if (this.#failure !== null) return;
    this.#failure = `${what}: ${e instanceof Error ? e.message : String(e)}`;
  }
}
