/**
 * Detection of secrets that an LLM streams token by token: in an SSE response
 * a key is split across many `data:` events (`"content":"sk"`,
 * `"content":"-proj-Ab"`, …), so no scan of the raw bytes can see it whole.
 * This scanner reassembles the text deltas of OpenAI, Anthropic and Gemini
 * events and scans them as one stream.
 *
 * It only detects: redacting a secret spread over several events would mean
 * rewriting their JSON. Run it beside {@link createStreamScanner} on the raw
 * body, which redacts what fits in one event.
 *
 * @module
 */

import type { Finding, Scanner } from "./scanner.ts";
import { createStreamScanner, type StreamScanner } from "./stream.ts";

/** Keys whose string values are generated text in provider stream events. */
const TEXT_KEYS = new Set([
  "content", // OpenAI chat: choices[].delta.content
  "arguments", // OpenAI chat: tool_calls[].function.arguments
  "refusal",
  "reasoning_content",
  "text", // Anthropic text_delta, Gemini candidates[].content.parts[].text
  "partial_json", // Anthropic input_json_delta
  "thinking",
  "delta", // OpenAI Responses: response.output_text.delta
]);

/** Longest partial line kept while waiting for its end (a stream without newlines is scanned as it comes). */
const MAX_LINE = 1 << 20;

/** A content scanner for one SSE response. */
export interface SseContentScanner {
  /** Feeds raw SSE text; returns findings with offsets into the reassembled content. */
  push(chunk: string): Finding[];
  /** Flushes a last event without a blank line and returns the remaining findings. */
  end(): Finding[];
}

/**
 * Creates a scanner over the text deltas of an SSE stream. Findings' offsets
 * are relative to the concatenated deltas (the text the user would see).
 *
 * @example
 * ```ts
 * import { compileScanner } from "./scanner.ts";
 * import { createSseContentScanner } from "./sse.ts";
 * const sse = createSseContentScanner(compileScanner({ detectors: ["aws_access_key"] }));
 * sse.push('data: {"choices":[{"delta":{"content":"AKIAIOSF"}}]}\n\n');
 * sse.push('data: {"choices":[{"delta":{"content":"ODNN7EXAMPLE ok"}}]}\n\n');
 * sse.end(); // [{ detector: "aws_access_key", start: 0, end: 20, masked: "AKIA…MPLE" }]
 * ```
 */
export function createSseContentScanner(
  scanner: Scanner,
  options: { window?: number } = {},
): SseContentScanner {
  const inner: StreamScanner = createStreamScanner(scanner, { window: options.window });
  let partial = ""; // an incomplete line
  let data: string[] = []; // data lines of the event being read

  function dispatch(findings: Finding[]): void {
    if (data.length === 0) return;
    const payload = data.join("\n");
    data = [];
    if (payload === "[DONE]") return;
    let text: string;
    try {
      const parts: string[] = [];
      collect(JSON.parse(payload), parts, 0);
      text = parts.join("");
    } catch {
      text = payload + "\n"; // not JSON: plain text events
    }
    if (text) findings.push(...inner.push(text).findings);
  }

  function line(l: string, findings: Finding[]): void {
    if (l.endsWith("\r")) l = l.slice(0, -1);
    if (l === "") dispatch(findings);
    else if (l.startsWith("data:")) data.push(l.charCodeAt(5) === 32 ? l.slice(6) : l.slice(5));
    // event:, id:, retry: and comments carry no generated text
  }

  return {
    push(chunk: string): Finding[] {
      const findings: Finding[] = [];
      let text = partial + chunk;
      let nl = text.indexOf("\n");
      let pos = 0;
      while (nl !== -1) {
        line(text.slice(pos, nl), findings);
        pos = nl + 1;
        nl = text.indexOf("\n", pos);
      }
      text = text.slice(pos);
      if (text.length > MAX_LINE) {
        line(text, findings); // a line too long to wait for: take it as it is
        text = "";
      }
      partial = text;
      return findings;
    },
    end(): Finding[] {
      const findings: Finding[] = [];
      if (partial) line(partial, findings);
      partial = "";
      dispatch(findings);
      findings.push(...inner.end().findings);
      return findings;
    },
  };
}

/** Appends, in document order, the string values under text keys (depth-limited). */
function collect(v: unknown, out: string[], depth: number): void {
  if (depth > 16 || v === null || typeof v !== "object") return;
  if (Array.isArray(v)) {
    for (const x of v) collect(x, out, depth + 1);
    return;
  }
  for (const [k, x] of Object.entries(v)) {
    if (typeof x === "string") {
      if (TEXT_KEYS.has(k)) out.push(x);
    } else collect(x, out, depth + 1);
  }
}
