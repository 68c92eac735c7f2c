/**
 * Make an OpenAI streaming chat request report its usage, so its cost is
 * known: `llm.force_stream_usage`, and every request a spending or token
 * limit applies to.
 *
 * @module
 */

import { classifyEndpoint } from "./formats.ts";
import type { Provider } from "./types.ts";

type Obj = Record<string, unknown>;

const enc = new TextEncoder();

/**
 * For a Chat Completions request (OpenAI's wire format: OpenAI, Azure, the
 * gateways mapped to `openai`, Gemini's `/openai/` endpoint; the legacy
 * `/completions` too) with `stream: true` and without
 * `stream_options.include_usage: true`, returns the body with
 * `stream_options.include_usage` set to true; null when nothing needs to
 * change or the body is not such a request. The caller fixes Content-Length.
 *
 * The body is edited as text when it has no `stream_options` (the key is
 * inserted after the opening brace), so nothing else in it changes; an
 * existing `stream_options` is replaced by re-serialising the body, which is
 * refused (null) when that would alter a number — JSON integers beyond 2^53
 * (e.g. a large `seed`) do not survive a JavaScript round trip.
 *
 * The extra final chunk has `choices: []`; a client that reads `choices[0]`
 * of every chunk without checking breaks, which is why it is not done for
 * every request: only with `llm.force_stream_usage`, or when a limit needs
 * the usage (the alternative, an unpriced call under a budget, is worse).
 *
 * @example
 * ```ts
 * const body = new TextEncoder().encode('{"model":"gpt-4o","stream":true,"messages":[]}');
 * const out = forceStreamUsage("openai", "/v1/chat/completions", body);
 * // '{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"messages":[]}'
 * ```
 */
export function forceStreamUsage(
  provider: Provider,
  path: string,
  body: Uint8Array,
): Uint8Array | null {
  if (classifyEndpoint(provider, "POST", path)?.format !== "openai-chat") return null;
  let text: string;
  let v: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(body);
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const req = v as Obj;
  if (req.stream !== true) return null;
  const so = req.stream_options;
  if (typeof so === "object" && so !== null && (so as Obj).include_usage === true) return null;

  if (!("stream_options" in req)) {
    const open = text.indexOf("{");
    const rest = text.slice(open + 1);
    // "{}" cannot happen (stream is true), so a comma always follows.
    return enc.encode(`${text.slice(0, open + 1)}"stream_options":{"include_usage":true},${rest}`);
  }
  if (hasUnsafeNumber(req)) return null;
  const options = typeof so === "object" && so !== null && !Array.isArray(so) ? so as Obj : {};
  req.stream_options = { ...options, include_usage: true };
  return enc.encode(JSON.stringify(req));
}

function hasUnsafeNumber(v: unknown): boolean {
  if (typeof v === "number") return Number.isInteger(v) && !Number.isSafeInteger(v);
  if (Array.isArray(v)) return v.some(hasUnsafeNumber);
  if (typeof v === "object" && v !== null) return Object.values(v).some(hasUnsafeNumber);
  return false;
}
