/**
 * agentgate DLP: a pure, sans-IO detection engine for secrets, personal data
 * and threat patterns in agent traffic. The proxy decides *which* traffic is
 * scanned and *what* happens (the `dlp` policy); this module only finds,
 * masks and redacts.
 *
 * - {@link compileScanner}: detector names (+ custom RE2 regexes) → a reusable
 *   `Scanner` with `scan(text)` and `redact(text, findings)`.
 * - {@link decodeForScan}: body bytes → scan text (decompressed, JSON strings
 *   unescaped, forms decoded, binary skipped, capped).
 * - {@link redactJson}, {@link redactForm}, {@link redactBody}: redaction that
 *   keeps the body's format valid.
 * - {@link createStreamScanner}: response bodies and SSE in chunks, redacted in
 *   stream with a bounded hold-back; {@link createSseContentScanner}: secrets
 *   an LLM streams token by token across events.
 * - {@link DETECTORS}: names and one-line descriptions, for docs and
 *   did-you-mean ({@link suggestDetector}).
 * - {@link maskHeaders}, {@link maskQuery}, {@link maskPath}, {@link maskText}:
 *   credentials masked by name, shape and known service URL before anything
 *   is stored or logged (`secrets.ts`).
 *
 * @example
 * ```ts
 * import { compileScanner, decodeForScan, DETECTOR_NAMES } from "./mod.ts";
 * const scanner = compileScanner({ detectors: DETECTOR_NAMES }); // once, at config load
 * const bytes = new TextEncoder().encode('{"prompt":"my key is AKIAIOSFODNN7EXAMPLE"}');
 * const body = decodeForScan(bytes, "application/json", null, 1 << 20);
 * const findings = body ? scanner.scan(body.text) : [];
 * // [{ detector: "aws_access_key", start: 22, end: 42, masked: "AKIA…MPLE" }]
 * ```
 *
 * @module
 */

export { DETECTOR_NAMES, type DetectorInfo, DETECTORS } from "./detectors.ts";
export {
  compileScanner,
  type CustomDetector,
  type Finding,
  mask,
  type ScanCut,
  type Scanner,
  type ScannerConfig,
  type ScanReport,
  suggestDetector,
  TOO_MANY_FINDINGS,
  unknownDetectorMessage,
} from "./scanner.ts";
export {
  createStreamScanner,
  type StreamResult,
  type StreamScanner,
  type StreamScanOptions,
} from "./stream.ts";
export {
  type DecodedBody,
  decodeForScan,
  formScanText,
  jsonScanText,
  type JsonStringSpan,
} from "./decode.ts";
export { type JsonRedaction, redactJson } from "./json.ts";
export { createSseContentScanner, type SseContentScanner } from "./sse.ts";
export { redactBody, type RedactedBody, redactForm } from "./redact.ts";
export type { RecordedFinding } from "./finding.ts";
export {
  isSecretName,
  looksLikeToken,
  MASK,
  maskHeaders,
  maskHeaderValue,
  maskPath,
  maskQuery,
  maskText,
  nameWords,
} from "./secrets.ts";
