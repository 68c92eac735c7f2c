/**
 * Turns a request or response body into the text the detectors scan:
 * decompresses (gzip, deflate, br, zstd), skips binary media, decodes JSON
 * string escapes and form encoding, and caps the size.
 *
 * @module
 */

import { createDecoder, type Decoder } from "../util/decompress.ts";

/** Text ready for `Scanner.scan`, and whether the body was cut at `maxBytes`. */
export interface DecodedBody {
  /** The scan text (for JSON: see {@link jsonScanText}; for forms: {@link formScanText}). */
  text: string;
  /** The body was longer than `maxBytes` once decoded: only its head is in `text`. */
  truncated: boolean;
  /** Decompression stopped at the ratio limit (`stopped at a compression ratio over …`), if it did. */
  limited?: string;
}

/**
 * Decodes a body for scanning; null when it cannot or need not be scanned
 * (images, audio, video, fonts, archives, an unknown or corrupt
 * `Content-Encoding`).
 *
 * - `Content-Encoding` gzip / x-gzip / deflate (zlib or raw) / br / zstd,
 *   stacked in any order; a truncated compressed body decodes as far as it
 *   goes, and decompression stops at `maxBytes` (a zip bomb costs nothing).
 * - JSON (`application/json`, `*+json`, NDJSON): string values are unescaped
 *   (`\n`, `\/`, `\u002d` …) so an escaped PEM key or path is seen as it is;
 *   each string is followed by a line break so line-based detectors
 *   (`curl … | sh`) never join two values. See {@link jsonScanText}.
 * - `application/x-www-form-urlencoded`: each `key=value` decoded, one a line.
 * - Text and unknown types: UTF-8 (or the declared charset); a body that
 *   sniffs as binary (NUL bytes, known magic numbers) is skipped.
 *
 * @example
 * ```ts
 * import { decodeForScan } from "./decode.ts";
 * const body = new TextEncoder().encode('{"key":"-----BEGIN RSA PRIVATE KEY-----\\nMIIE…"}');
 * decodeForScan(body, "application/json", null, 1 << 20);
 * // { text: '{"key"<LF>:"-----BEGIN RSA PRIVATE KEY-----<LF>MIIE…"<LF>}', truncated: false }
 * ```
 */
export function decodeForScan(
  bytes: Uint8Array,
  contentType: string | null,
  contentEncoding: string | null,
  maxBytes: number,
  maxRatio = 100,
): DecodedBody | null {
  const d = decodeBody(bytes, contentType, contentEncoding, maxBytes, maxRatio);
  if (d === null) return null;
  const limited = d.limited ? { limited: d.limited } : {};
  if (d.kind === "json") {
    return { text: jsonScanText(d.text, false).text, truncated: d.truncated, ...limited };
  }
  if (d.kind === "form") return { text: formScanText(d.text), truncated: d.truncated, ...limited };
  return { text: d.text, truncated: d.truncated, ...limited };
}

/**
 * @internal The body as text (decompressed, charset-decoded, capped) and its
 * kind, before any JSON or form decoding; null when it is not scanned.
 */
export function decodeBody(
  bytes: Uint8Array,
  contentType: string | null,
  contentEncoding: string | null,
  maxBytes: number,
  maxRatio = 100,
): {
  kind: "json" | "form" | "text";
  text: string;
  truncated: boolean;
  limited: string | null;
} | null {
  const { kind, charset } = classify(contentType);
  if (kind === "binary") return null; // before decompressing it
  const dec = decompress(bytes, contentEncoding, maxBytes, maxRatio);
  if (dec === null) return null;
  let { bytes: body, truncated } = dec;
  if (body.length > maxBytes) {
    body = body.subarray(0, maxBytes);
    truncated = true;
  }
  if (kind === "unknown" && looksBinary(body)) return null;
  const text = decodeText(body, charset, truncated);
  return { kind: kind === "unknown" ? "text" : kind, text, truncated, limited: dec.limited };
}

// ---------------------------------------------------------------------------
// content types

type Kind = "json" | "form" | "text" | "binary" | "unknown";

const BINARY_TYPES = new Set([
  "application/octet-stream",
  "application/pdf",
  "application/zip",
  "application/gzip",
  "application/x-gzip",
  "application/x-tar",
  "application/x-bzip2",
  "application/x-7z-compressed",
  "application/x-xz",
  "application/zstd",
  "application/wasm",
  "application/vnd.ms-fontobject",
]);

function classify(contentType: string | null): { kind: Kind; charset: string | null } {
  if (!contentType) return { kind: "unknown", charset: null };
  const [type, ...params] = contentType.toLowerCase().split(";");
  const t = type.trim();
  let charset: string | null = null;
  for (const p of params) {
    const [k, v] = p.split("=");
    if (k?.trim() === "charset" && v) charset = v.trim().replace(/^"|"$/g, "");
  }
  let kind: Kind;
  if (
    t === "application/json" || t.endsWith("+json") || t === "application/x-ndjson" ||
    t === "application/jsonl" || t === "application/json-seq" || t === "text/json"
  ) {
    kind = "json";
  } else if (t === "application/x-www-form-urlencoded") {
    kind = "form";
  } else if (
    t.startsWith("image/") || t.startsWith("audio/") || t.startsWith("video/") ||
    t.startsWith("font/") || BINARY_TYPES.has(t)
  ) {
    // octet-stream is listed: it is what uploads of arbitrary files use, and
    // scanning megabytes of binary would only produce noise.
    kind = "binary";
  } else if (
    t.startsWith("text/") || t.endsWith("+xml") || t.endsWith("/xml") ||
    t === "application/javascript" || t === "application/x-sh" || t === "application/yaml" ||
    t === "application/x-yaml" || t === "application/graphql" || t === "application/sql" ||
    t.startsWith("multipart/")
  ) {
    kind = "text";
  } else {
    kind = "unknown"; // protobuf, grpc, vendor types: scanned unless they sniff binary
  }
  return { kind, charset };
}

const MAGIC: number[][] = [
  [0x89, 0x50, 0x4e, 0x47], // PNG
  [0xff, 0xd8, 0xff], // JPEG
  [0x47, 0x49, 0x46, 0x38], // GIF
  [0x25, 0x50, 0x44, 0x46], // PDF
  [0x50, 0x4b, 0x03, 0x04], // ZIP
  [0x1f, 0x8b], // gzip
  [0x52, 0x49, 0x46, 0x46], // RIFF (WebP, WAV)
  [0x00, 0x61, 0x73, 0x6d], // wasm
];

function looksBinary(b: Uint8Array): boolean {
  if (MAGIC.some((m) => m.every((x, i) => b[i] === x))) return true;
  const n = Math.min(b.length, 4096);
  for (let i = 0; i < n; i++) if (b[i] === 0) return true;
  return false;
}

function decodeText(b: Uint8Array, charset: string | null, truncated: boolean): string {
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset ?? "utf-8");
  } catch {
    decoder = new TextDecoder("utf-8");
  }
  // A cut in the middle of a multi-byte character is not a U+FFFD in the text.
  return decoder.decode(b, { stream: truncated });
}

// ---------------------------------------------------------------------------
// content encodings

/**
 * Undo the content codings, incrementally and bounded (`util/decompress.ts`):
 * at most `maxBytes` of output and `maxRatio` output bytes per input byte.
 * A truncated body decodes as far as it goes; an unknown coding or corrupt
 * data gives null (the caller decides: fail open or closed).
 */
function decompress(
  bytes: Uint8Array,
  contentEncoding: string | null,
  maxBytes: number,
  maxRatio: number,
): { bytes: Uint8Array; truncated: boolean; limited: string | null } | null {
  let d: Decoder | null;
  try {
    d = createDecoder(contentEncoding, { maxOutputBytes: maxBytes, maxRatio });
  } catch {
    return null; // a coding we cannot decode
  }
  if (d === null) return { bytes, truncated: false, limited: null };
  const out: Uint8Array[] = [];
  try {
    // In slices, so a limit stops the work early rather than after the whole input.
    for (let i = 0; i < bytes.length && d.limited === null; i += 65536) {
      out.push(...d.push(bytes.subarray(i, i + 65536)));
    }
    out.push(...d.end());
  } catch {
    return null; // corrupt
  }
  let n = 0;
  for (const c of out) n += c.length;
  const all = new Uint8Array(n);
  n = 0;
  for (const c of out) {
    all.set(c, n);
    n += c.length;
  }
  // Reaching the byte cap is the usual truncation at maxBytes, not news.
  const limited = d.limited !== null && !d.limited.startsWith("stopped at " + maxBytes + " ")
    ? d.limited
    : null;
  return { bytes: all, truncated: d.limited !== null, limited };
}

// ---------------------------------------------------------------------------
// JSON

/** A JSON string literal: where it is in the raw body and where its decoded content is in the scan text. */
export interface JsonStringSpan {
  /** Offset of the opening quote in the raw JSON. */
  rawStart: number;
  /** Offset just after the closing quote in the raw JSON (body length if unterminated). */
  rawEnd: number;
  /** Offset of the decoded content in the scan text (just after the opening quote). */
  textStart: number;
  /** Offset just after the decoded content in the scan text. */
  textEnd: number;
  /** False when the literal was unterminated or held an invalid escape (content kept raw). */
  decoded: boolean;
}

/**
 * The scan text of a JSON body: the raw JSON with every string literal's
 * content unescaped, and a line break after each string literal of two or
 * more characters.
 *
 * Why not `JSON.parse` and walk the values? Numbers stay as written (a 19-digit
 * card number would lose precision), keys and structure stay in place so
 * context detectors see `"aws_secret_access_key": "…"`, and an invalid or
 * truncated body is still scanned. Linear: quotes and backslashes are found
 * with `indexOf`, and each backslash is visited once.
 *
 * `strings` (the position of each literal, for {@link redactJson}) is only
 * built when `withSpans` is true.
 *
 * @example
 * ```ts
 * import { jsonScanText } from "./decode.ts";
 * jsonScanText('{"p":"~\\/.ssh\\/id_rsa"}').text; // '{"p":"~/.ssh/id_rsa"\n}'
 * ```
 */
export function jsonScanText(
  raw: string,
  withSpans = true,
): { text: string; strings: JsonStringSpan[] } {
  const strings: JsonStringSpan[] = [];
  const parts: string[] = [];
  let pos = 0; // raw offset copied to `parts` so far
  let delta = 0; // text offset minus raw offset, for raw text not yet copied
  let nb = raw.indexOf("\\"); // the next backslash not yet passed
  let q = raw.indexOf('"');
  while (q !== -1) {
    // the closing quote is one not preceded by an odd number of backslashes
    let close = raw.indexOf('"', q + 1);
    while (close !== -1 && raw.charCodeAt(close - 1) === 92) {
      let k = close - 1;
      while (k > q && raw.charCodeAt(k) === 92) k--;
      if ((close - 1 - k) % 2 === 0) break;
      close = raw.indexOf('"', close + 1);
    }
    const end = close === -1 ? raw.length : close;
    while (nb !== -1 && nb <= q) nb = raw.indexOf("\\", q + 1);
    let content: string | null = null; // null: the raw content is the text
    let decoded = close !== -1;
    if (nb !== -1 && nb < end) {
      content = unescapeJson(raw, q + 1, end, nb);
      nb = nextBackslash;
      if (content === null) decoded = false;
    }
    const textStart = q + 1 + delta;
    const contentLen = content === null ? end - (q + 1) : content.length;
    if (withSpans) {
      strings.push({
        rawStart: q,
        rawEnd: close === -1 ? raw.length : close + 1,
        textStart,
        textEnd: textStart + contentLen,
        decoded,
      });
    }
    if (content !== null) {
      parts.push(raw.slice(pos, q + 1), content);
      pos = end;
      delta += content.length - (end - (q + 1));
    }
    if (close === -1) break;
    // A line break after each string (of 2+ characters: a shorter one cannot
    // hold a command), so `curl …` in one value and `| sh` in the next are
    // never on one line. Short strings are copied in bulk, unchanged.
    if (contentLen >= 2) {
      parts.push(raw.slice(pos, close + 1), "\n");
      pos = close + 1;
      delta += 1;
    }
    q = raw.indexOf('"', close + 1);
  }
  parts.push(raw.slice(pos));
  return { text: parts.join(""), strings };
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

/** Set by {@link unescapeJson}: the first backslash at or after the string's end. */
let nextBackslash = -1;

/**
 * Unescapes the JSON string content `raw[from..to)` whose first backslash is
 * at `bs`; null for an invalid escape. Leaves in `nextBackslash` the first
 * backslash at or after `to`, so no text is searched twice.
 */
function unescapeJson(raw: string, from: number, to: number, bs: number): string | null {
  let out = "";
  let pos = from;
  let ok = true;
  while (bs !== -1 && bs < to) {
    out += raw.slice(pos, bs);
    const c = raw[bs + 1];
    const simple = SIMPLE_ESCAPES[c];
    if (simple !== undefined) {
      out += simple;
      pos = bs + 2;
    } else if (c === "u" && bs + 6 <= to && /^[0-9A-Fa-f]{4}$/.test(raw.slice(bs + 2, bs + 6))) {
      out += String.fromCharCode(parseInt(raw.slice(bs + 2, bs + 6), 16));
      pos = bs + 6;
    } else {
      ok = false;
      pos = bs + 1;
    }
    bs = raw.indexOf("\\", Math.max(pos, bs + 1));
  }
  nextBackslash = bs;
  return ok ? out + raw.slice(pos, to) : null;
}

// ---------------------------------------------------------------------------
// forms

/**
 * The scan text of an `application/x-www-form-urlencoded` body (or a query
 * string): each `key=value` percent- and plus-decoded, one per line.
 *
 * @example
 * ```ts
 * import { formScanText } from "./decode.ts";
 * formScanText("cmd=curl+x%7Csh&a=1"); // "cmd=curl x|sh\na=1"
 * ```
 */
export function formScanText(body: string): string {
  // "&" separates pairs before decoding, so an encoded %26 stays inside its
  // value; the rest is one linear pass, without exceptions on bad escapes.
  return percentDecode(body.replace(/\+/g, " ").replace(/&/g, "\n"));
}

const utf8 = new TextDecoder();

function hexAt(s: string, i: number): number {
  const h = s.charCodeAt(i);
  const l = s.charCodeAt(i + 1);
  const v = (c: number) =>
    c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1;
  const a = v(h);
  const b = v(l);
  return a < 0 || b < 0 ? -1 : a * 16 + b;
}

/** @internal Decodes runs of %XX as UTF-8 (invalid sequences become U+FFFD); a stray "%" stays. */
export function percentDecode(s: string): string {
  let i = s.indexOf("%");
  if (i === -1) return s;
  let out = "";
  let pos = 0;
  const bytes: number[] = [];
  while (i !== -1) {
    out += s.slice(pos, i);
    let j = i;
    bytes.length = 0;
    for (let v; s.charCodeAt(j) === 37 && (v = hexAt(s, j + 1)) >= 0; j += 3) bytes.push(v);
    if (bytes.length === 0) {
      out += "%";
      j = i + 1;
    } else if (bytes.length <= 4096 && bytes.every((b) => b < 128)) {
      out += String.fromCharCode(...bytes);
    } else out += utf8.decode(new Uint8Array(bytes));
    pos = j;
    i = s.indexOf("%", j);
  }
  return out + s.slice(pos);
}
