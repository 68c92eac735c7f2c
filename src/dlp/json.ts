/**
 * Redaction that keeps a JSON body valid JSON with the same structure.
 *
 * @module
 */

import { jsonScanText, type JsonStringSpan } from "./decode.ts";
import { type Finding, redactSpans, type Scanner } from "./scanner.ts";

/** Result of {@link redactJson}. */
export interface JsonRedaction {
  /** The body to forward: redacted, still valid JSON when the input was. */
  text: string;
  /**
   * Findings, with offsets into the scan text (`jsonScanText(body).text`, the
   * same text `decodeForScan` returns for a JSON body); for a body that is not
   * valid JSON, offsets into the body itself.
   */
  findings: Finding[];
  /** False when the body was not valid JSON and was redacted as plain text. */
  json: boolean;
}

const NUMBER_CHARS = /[0-9.eE+-]/;

/**
 * Scans a JSON body and replaces each finding inside a string (value or key)
 * with `[REDACTED:<detector>]`, re-encoding only the strings that changed. A
 * finding in a number (a card number sent as a JSON number) replaces that
 * number with the marker as a string. Everything else — key order,
 * whitespace, other escapes — is kept byte for byte, so `JSON.parse` of the
 * result succeeds and has the same shape.
 *
 * A body that is not valid JSON is scanned and redacted as plain text.
 *
 * @example
 * ```ts
 * import { compileScanner } from "./scanner.ts";
 * import { redactJson } from "./json.ts";
 * const scanner = compileScanner({ detectors: ["private_key"] });
 * const body = JSON.stringify({ messages: [{ content: "-----BEGIN EC PRIVATE KEY-----\nMHc…\n-----END EC PRIVATE KEY-----\nthanks" }] });
 * redactJson(body, scanner).text;
 * // '{"messages":[{"content":"[REDACTED:private_key]\\nthanks"}]}'
 * ```
 */
export function redactJson(body: string, scanner: Scanner): JsonRedaction {
  const { text, strings } = jsonScanText(body);
  const findings = scanner.scan(text);
  if (findings.length === 0) return { text: body, findings, json: true };
  try {
    JSON.parse(body);
  } catch {
    const plain = scanner.scan(body);
    return { text: scanner.redact(body, plain), findings: plain, json: false };
  }

  // Per string literal: the parts of findings inside its decoded content.
  const perString = new Map<number, { detector: string; start: number; end: number }[]>();
  // Raw ranges of findings outside string contents (numbers, structure).
  const rawRanges: [number, number, string][] = [];
  for (const f of findings) {
    let pos = f.start;
    let i = firstStringEndingAfter(strings, pos);
    while (pos < f.end) {
      const s = strings[i];
      if (s === undefined || f.end <= s.textStart) {
        rawRanges.push([rawOf(strings, i, pos), rawOf(strings, i, f.end), f.detector]);
        break;
      }
      if (pos < s.textStart) {
        rawRanges.push([rawOf(strings, i, pos), s.rawStart + 1, f.detector]);
        pos = s.textStart;
      }
      const a = Math.max(pos, s.textStart) - s.textStart;
      const b = Math.min(f.end, s.textEnd) - s.textStart;
      if (b > a) {
        let list = perString.get(i);
        if (!list) perString.set(i, list = []);
        list.push({ detector: f.detector, start: a, end: b });
      }
      pos = Math.max(pos, s.textEnd);
      i++;
    }
  }

  // Replacements in raw coordinates: [rawStart, rawEnd, newText].
  const edits: [number, number, string][] = [];
  for (const [i, spans] of perString) {
    const s = strings[i];
    const content = text.slice(s.textStart, s.textEnd);
    edits.push([s.rawStart, s.rawEnd, JSON.stringify(redactSpans(content, spans))]);
  }
  for (const [a0, b0, detector] of rawRanges) {
    // widen to whole number tokens, then replace each one that holds a digit
    let a = a0;
    let b = b0;
    while (a > 0 && NUMBER_CHARS.test(body[a - 1])) a--;
    while (b < body.length && NUMBER_CHARS.test(body[b])) b++;
    let i = a;
    while (i < b) {
      if (!NUMBER_CHARS.test(body[i])) {
        i++;
        continue;
      }
      let j = i;
      while (j < b && NUMBER_CHARS.test(body[j])) j++;
      if (/\d/.test(body.slice(i, j))) edits.push([i, j, JSON.stringify(`[REDACTED:${detector}]`)]);
      i = j;
    }
  }
  edits.sort((x, y) => x[0] - y[0]);
  let out = "";
  let pos = 0;
  for (const [a, b, t] of edits) {
    if (a < pos) continue; // two findings widened to the same number
    out += body.slice(pos, a) + t;
    pos = b;
  }
  out += body.slice(pos);
  return { text: out, findings, json: true };
}

/** Index of the first string literal whose decoded content ends after `pos`. */
function firstStringEndingAfter(strings: JsonStringSpan[], pos: number): number {
  let lo = 0;
  let hi = strings.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (strings[mid].textEnd <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Raw offset of scan-text offset `t`, which lies outside string contents and
 * before string `i` (after string `i - 1`). The line break inserted after a
 * string of 2+ characters has no raw counterpart and maps to the character
 * after the quote.
 */
function rawOf(strings: JsonStringSpan[], i: number, t: number): number {
  const prev = strings[i - 1];
  if (!prev) return t;
  if (t <= prev.textEnd) return prev.rawEnd - 1; // the closing quote
  const lineBreak = prev.textEnd - prev.textStart >= 2 ? 1 : 0;
  if (lineBreak && t === prev.textEnd + 1) return prev.rawEnd;
  return prev.rawEnd + (t - (prev.textEnd + 1 + lineBreak));
}
