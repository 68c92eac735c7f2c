/**
 * Streaming DLP for response bodies and SSE: finds secrets split across
 * chunks and, when asked, redacts them in stream while delaying output by at
 * most `window` characters.
 *
 * @module
 */

import { type Finding, type Scanner, type ScanReport, TOO_MANY_FINDINGS } from "./scanner.ts";

/** Options of {@link createStreamScanner}. */
export interface StreamScanOptions {
  /**
   * Most characters held back from `output` when redacting (default 256).
   * After each scan the stream keeps the last `window - floor(window / 8)`
   * characters and scans again once more than `window` are pending: a secret
   * split across chunks is caught and redacted whole when the part a
   * detector needs to recognize it fits in that hold-back (built-in
   * detectors need 11–130 characters; a `curl … | sh` with a very long URL
   * or a one-liner spread over more may have its beginning released), and a
   * stream of tiny chunks is rescanned at most every `window / 8` characters.
   */
  window?: number;
  /** Replace findings in `output` with `[REDACTED:<detector>]` (default false: output passes through at once). */
  redact?: boolean;
  /**
   * Without redaction the text is forwarded at once and only findings are
   * wanted, so scanning waits until this many characters are pending (or
   * the end): each character is scanned about once instead of once per
   * `window / 8`. Default 8192 (capped to fit `maxRetain`).
   */
  batch?: number;
  /** Already-released characters kept for look-behind and context detectors (default 256). */
  context?: number;
  /**
   * Most characters kept in memory (default 16384). A match still growing
   * past it (only a custom regex can do that: built-in matches are shorter)
   * is reported as is and redaction of its remainder stops.
   */
  maxRetain?: number;
  /** Where scans report custom detectors their time budget stopped (see `ScannerConfig.budgetMs`). */
  report?: ScanReport;
}

/** What one `push` or `end` gives back. */
export interface StreamResult {
  /** New findings; offsets are relative to the whole stream. */
  findings: Finding[];
  /** Text to forward now (the input itself when not redacting). */
  output: string;
}

/** A stateful scanner for one stream. */
export interface StreamScanner {
  /** Feeds the next chunk of decoded text; returns what may be forwarded now. */
  push(chunk: string): StreamResult;
  /** Flushes the held-back text and reports the findings that were still open. */
  end(): StreamResult;
}

/**
 * True when a match ending at `end` may still change with more text: it ends
 * within 16 characters of the buffer end (an optional suffix such as " 0>&1"
 * may be arriving), or only blanks (that detectors trim) follow it.
 */
function atEnd(buf: string, end: number): boolean {
  if (buf.length - end <= 16) return true;
  if (buf.length - end > 64) return false;
  for (let i = end; i < buf.length; i++) {
    const c = buf.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 10 && c !== 13) return false;
  }
  return true;
}

interface Span {
  start: number;
  end: number;
  detector: string;
  marked: boolean;
}

/**
 * Wraps a scanner for one stream of text chunks (a decoded response body or
 * an SSE stream).
 *
 * @example
 * ```ts
 * import { compileScanner } from "./scanner.ts";
 * import { createStreamScanner } from "./stream.ts";
 * const s = createStreamScanner(compileScanner({ detectors: ["aws_access_key"] }), { redact: true });
 * const a = s.push("data: key AKIAIOSFOD");   // held back: output ""
 * const b = s.push("NN7EXAMPLE done\n\n");
 * const c = s.end();
 * a.output + b.output + c.output; // "data: key [REDACTED:aws_access_key] done\n\n"
 * [...a.findings, ...b.findings, ...c.findings]; // [{ detector: "aws_access_key", start: 10, end: 30, … }]
 * ```
 */
export function createStreamScanner(
  scanner: Scanner,
  options: StreamScanOptions = {},
): StreamScanner {
  return new StreamScan(scanner, options);
}

/**
 * {@link createStreamScanner}'s scanner: one object with its state in fields
 * and its steps as methods (closures over the state cost ~750 bytes per
 * stream, one per DLP-scanned response); the map of reported findings is
 * made at the first finding.
 */
class StreamScan implements StreamScanner {
  readonly #scanner: Scanner;
  readonly #report: ScanReport | undefined;
  readonly #window: number;
  readonly #redact: boolean;
  readonly #context: number;
  readonly #maxRetain: number;
  readonly #hold: number;
  readonly #batch: number;

  #buf = ""; // retained text; buf[0] is at stream offset `base`
  #base = 0;
  #released = 0; // stream offset up to which output was returned
  #scanned = 0; // stream offset up to which the last scan looked
  #leftOpen = false; // buf[0] follows a forced cut: its left neighbour is unknown
  #ended = false;
  #reported: Map<string, number> | null = null; // "detector@start" -> start
  #spans: Span[] = []; // redaction spans, stream offsets, sorted, disjoint

  constructor(scanner: Scanner, options: StreamScanOptions) {
    this.#scanner = scanner;
    this.#report = options.report;
    const window = Math.max(0, Math.floor(options.window ?? 256));
    this.#window = window;
    this.#redact = options.redact ?? false;
    const context = Math.max(0, options.context ?? 256);
    this.#context = context;
    const maxRetain = Math.max(window + context + 1, options.maxRetain ?? 16384);
    this.#maxRetain = maxRetain;
    // Rescan after every `step` new characters, keeping `hold` back: a secret
    // is caught whole when its detectable part fits in `hold` (7/8 of the
    // window), and a stream of 1-byte chunks costs at most
    // (context + window) / step = 16 times a single scan by default.
    const step = Math.max(1, Math.floor(window / 8));
    this.#hold = Math.max(0, window - step);
    // A 1 KB response is then scanned once, at its end, not 1.5 times
    // (s4 with DLP warn: the scan was most of DLP's cost per request).
    this.#batch = Math.max(step, Math.min(options.batch ?? 8192, maxRetain - context - 1));
  }

  push(chunk: string): StreamResult {
    if (this.#ended) throw new Error("Stream scanner already ended: create one per stream");
    if (chunk === "") return { findings: [], output: "" };
    this.#buf += chunk;
    const bufEnd = this.#base + this.#buf.length;
    if (!this.#redact) {
      this.#released = bufEnd;
      if (bufEnd - this.#scanned < this.#batch) return { findings: [], output: chunk };
      const { fresh, open } = this.#scanNow(false);
      return { findings: fresh.concat(this.#trim(open)), output: chunk };
    }
    if (bufEnd - this.#released <= this.#window) return { findings: [], output: "" };
    const { fresh, open } = this.#scanNow(false);
    const output = this.#emit(bufEnd - this.#hold);
    return { findings: fresh.concat(this.#trim(open)), output };
  }

  end(): StreamResult {
    if (this.#ended) return { findings: [], output: "" };
    this.#ended = true;
    const { fresh } = this.#scanNow(true);
    const output = this.#emit(this.#base + this.#buf.length);
    this.#buf = "";
    this.#spans = [];
    this.#reported = null;
    return { findings: fresh, output: this.#redact ? output : "" };
  }

  #scanNow(final: boolean): { fresh: Finding[]; open: Finding[] } {
    const fresh: Finding[] = [];
    const open: Finding[] = [];
    const found: Span[] = [];
    const buf = this.#buf;
    const base = this.#base;
    for (const f of this.#scanner.scan(buf, this.#report)) {
      // A match at the very start of a force-cut buffer may be the tail of a
      // longer token whose head is gone: it cannot be judged, so skip it.
      if (this.#leftOpen && f.start === 0) continue;
      const g: Finding = { ...f, start: f.start + base, end: f.end + base };
      found.push({ start: g.start, end: g.end, detector: g.detector, marked: false });
      const key = `${g.detector}@${g.start}`;
      const reported = this.#reported ??= new Map();
      if (reported.has(key)) continue;
      // A match at the end (or followed only by blanks a detector trims) may
      // still grow: report it once more text, or the end, settles it.
      if (!final && atEnd(buf, f.end) && f.detector !== TOO_MANY_FINDINGS) {
        open.push(g);
        continue;
      }
      reported.set(key, g.start);
      fresh.push(g);
    }
    this.#scanned = base + buf.length;
    if (this.#redact) this.#mergeSpans(found);
    return { fresh, open };
  }

  /** Replaces unmarked spans with the latest scan; marked spans only grow. */
  #mergeSpans(found: Span[]): void {
    const all = this.#spans.filter((s) => s.marked).concat(found);
    all.sort((a, b) => a.start - b.start || b.end - a.end);
    const merged: Span[] = [];
    for (const s of all) {
      const last = merged[merged.length - 1];
      if (last && s.start < last.end) {
        last.end = Math.max(last.end, s.end);
        last.marked ||= s.marked;
      } else merged.push({ ...s });
    }
    this.#spans = merged;
  }

  /** Output for [released, to), redacted when asked. */
  #emit(to: number): string {
    const released = this.#released;
    if (to <= released) return "";
    const buf = this.#buf;
    const base = this.#base;
    if (!this.#redact) {
      this.#released = to;
      return buf.slice(released - base, to - base);
    }
    let out = "";
    let p = released;
    for (const s of this.#spans) {
      if (s.end <= p) continue;
      if (s.start >= to) break;
      const start = Math.max(s.start, p);
      out += buf.slice(p - base, start - base);
      if (!s.marked) {
        out += `[REDACTED:${s.detector}]`;
        s.marked = true;
      }
      p = Math.min(s.end, to);
    }
    out += buf.slice(p - base, to - base);
    this.#released = to;
    this.#spans = this.#spans.filter((s) => s.end > to);
    return out;
  }

  /** Drops text no longer needed; returns open findings a forced cut had to report. */
  #trim(open: Finding[]): Finding[] {
    const base = this.#base;
    const bufEnd = base + this.#buf.length;
    let target = Math.min(this.#released, bufEnd) - this.#context;
    for (const f of open) target = Math.min(target, f.start - 1); // keep its left neighbour
    const forced = bufEnd - this.#maxRetain;
    let late: Finding[] = [];
    if (target < forced) {
      target = forced;
      late = open.filter((f) => f.start < target);
      const reported = this.#reported ??= new Map();
      for (const f of late) reported.set(`${f.detector}@${f.start}`, f.start);
    }
    if (target <= base) return late;
    // Prefer a cut right after whitespace: then buf[0]'s left neighbour is a
    // boundary, exactly as in the unbroken text.
    let cut = target;
    const stop = Math.max(base, target - 64);
    while (cut > stop && !/\s/.test(this.#buf[cut - 1 - base])) cut--;
    if (cut > stop) this.#leftOpen = false;
    else {
      cut = target;
      this.#leftOpen = true;
    }
    this.#buf = this.#buf.slice(cut - base);
    this.#base = cut;
    if (this.#reported) {
      for (const [k, start] of this.#reported) if (start < cut) this.#reported.delete(k);
    }
    return late;
  }
}
