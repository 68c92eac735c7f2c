/**
 * The DLP addon: records the findings of a request's verdict (the pipeline
 * decided them, redacted what it could and denied what it could not), and
 * scans responses as they stream when a `dlp` policy asks for it — `warn`
 * only records (an observer: the response passes unchanged, framing
 * included); `redact` and `block` rewrite or cut it (a transform).
 *
 * @module
 */
import {
  createSseContentScanner,
  createStreamScanner,
  type Finding,
  type RecordedFinding,
  type ScanReport,
  type SseContentScanner,
  type StreamScanner,
} from "../../dlp/mod.ts";
import type { ResponseScan } from "../../policy/pipeline.ts";
import type { Exchange } from "../exchange.ts";
import type { ResponseObserver, ResponseTransform } from "../forward.ts";
import type { Addon } from "./types.ts";
import { rawHeader } from "./headers.ts";

/**
 * One UTF-8 decoder for every response, used without `stream` (the bytes of
 * a character split across chunks are carried by the caller, see
 * {@link utf8Tail}): a streaming `TextDecoder` per response cost about 1 µs
 * and 900 bytes of garbage per response in s4 with DLP warn.
 */
const UTF8 = new TextDecoder();

/**
 * How many bytes at the end of `c` (0-3) start a UTF-8 character that `c`
 * does not finish: they are decoded with the next chunk, as a streaming
 * decoder would.
 *
 * @example
 * utf8Tail(new Uint8Array([0x61, 0xe2, 0x82])); // 2 (the first two bytes of "€")
 */
export function utf8Tail(c: Uint8Array): number {
  const n = c.length;
  for (let k = 1; k <= 3 && k <= n; k++) {
    const b = c[n - k];
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: its lead is further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > k ? k : 0;
  }
  return 0;
}

/**
 * The text of one response's chunks through the shared decoder: the start
 * of a character split across chunks ({@link utf8Tail}) is held in
 * `pending` and decoded with the next chunk.
 *
 * @example
 * const u = new Utf8Carry();
 * u.decode(new Uint8Array([0x61, 0xe2, 0x82])) + u.decode(new Uint8Array([0xac])); // "a€"
 */
export class Utf8Carry {
  /** Bytes of an unfinished character, waiting for the next chunk. */
  pending: Uint8Array | null = null;

  decode(c: Uint8Array): string {
    let bytes = c;
    if (this.pending !== null) {
      bytes = new Uint8Array(this.pending.length + c.length);
      bytes.set(this.pending);
      bytes.set(c, this.pending.length);
      this.pending = null;
    }
    const tail = utf8Tail(bytes);
    if (tail > 0) {
      this.pending = bytes.slice(bytes.length - tail);
      bytes = bytes.subarray(0, bytes.length - tail);
    }
    return UTF8.decode(bytes);
  }
}

/** Content types worth scanning as text. */
export function isTextual(ct: string): boolean {
  return /^(text\/|application\/(json|[\w.+-]*\+json|xml|[\w.+-]*\+xml|x-www-form-urlencoded|javascript|x-ndjson))/i
    .test(ct.trim()) || /event-stream/i.test(ct);
}

/**
 * The DLP addon.
 *
 * @example
 * const addons = [..., dlpAddon({ log: (l) => console.error(l) })];
 */
export function dlpAddon(deps: { log: (line: string) => void }): Addon {
  const logged = new Map<string, number>();
  /** Record findings on the row, and log each (detector, host, direction) once a minute. */
  const note = (ex: Exchange, findings: RecordedFinding[]) => {
    const now = Date.now();
    for (const f of findings) {
      ex.findings.push(f);
      const key = `${f.detector}|${ex.info.host}|${f.direction}`;
      if ((logged.get(key) ?? 0) > now - 60_000) continue;
      if (logged.size > 10_000) logged.clear();
      logged.set(key, now);
      deps.log(
        `agentgate: dlp ${f.action} ${f.detector} in ${f.direction} ${f.location} ${ex.info.scheme}://${ex.info.host}${
          ex.shownPath ?? ""
        } sample=${f.sample} id=${ex.info.id}`,
      );
    }
  };
  return {
    name: "dlp",
    decided(ex, verdict) {
      if (verdict.findings.length) note(ex, verdict.findings);
      if (verdict.inspection) ex.inspection.push(...verdict.inspection);
    },
    request(ex, out) {
      const scan = out.verdict.responseScan;
      if (!scan) return;
      const dlp = responseDlp(scan, ex, (found) => note(ex, found));
      if ("observer" in dlp) out.observe(dlp.observer);
      else out.transform(dlp.transform);
      // Only an uncompressed response can be scanned and redacted in flight.
      out.setHeader("accept-encoding", "identity");
    },
  };
}

/** The observer (`warn`) or transform (`redact`, `block`) that scans one response. */
function responseDlp(
  plan: ResponseScan,
  ex: Exchange,
  note: (found: RecordedFinding[]) => void,
): { observer: ResponseObserver } | { transform: ResponseTransform } {
  const { scanner, action } = plan;
  const host = ex.info.host;
  // Custom detectors stopped by their time budget, per chunk: noted once each.
  const report: ScanReport = { cut: [] };
  const noteCuts = () => {
    for (const c of report.cut.splice(0)) {
      ex.inspection.push(
        `dlp: custom detector "${c.detector}" stopped by limits.max_regex_scan_time in the response: part of it was not scanned`,
      );
    }
  };
  const utf8 = new Utf8Carry();
  let stream: StreamScanner;
  let sse: SseContentScanner | null = null;
  // The raw scanner and the SSE delta scanner can see the same secret: count it
  // once (made at the first finding: most responses have none).
  let seen: Set<string> | null = null;
  const take = (found: Finding[]): RecordedFinding[] => {
    if (found.length === 0) return [];
    const once = seen ??= new Set<string>();
    const kept = found.filter((f) => {
      const k = `${f.detector}|${f.masked}`;
      if (once.has(k) || plan.allowed(f.detector, "body", host)) return false;
      once.add(k);
      return true;
    }).map((f) => ({
      detector: f.detector,
      direction: "response" as const,
      location: "body",
      sample: f.masked,
      action,
    }));
    note(kept);
    return kept;
  };
  /** Sets up the scanners; false when the response is not text it can read. */
  const start = (raw: string[]): boolean => {
    const ce = rawHeader(raw, "content-encoding");
    const ct = rawHeader(raw, "content-type") ?? "";
    if (ce && ce.toLowerCase() !== "identity" && isTextual(ct)) {
      // The upstream ignored `accept-encoding: identity` (warn: forwarded, noted).
      ex.inspection.push(`dlp: response not scanned: content-encoding "${ce.slice(0, 40)}"`);
    }
    if ((ce && ce.toLowerCase() !== "identity") || !isTextual(ct)) return false;
    stream = createStreamScanner(scanner, { redact: action !== "warn", report });
    if (/event-stream/i.test(ct)) sse = createSseContentScanner(scanner.reporting(report));
    return true;
  };
  const scan = (c: Uint8Array) => {
    const text = utf8.decode(c);
    const r = stream.push(text);
    const inSse = sse?.push(text);
    const found = take(inSse?.length ? [...r.findings, ...inSse] : r.findings);
    if (report.cut.length) noteCuts();
    return { output: r.output, found };
  };
  const finish = (): string => {
    const r = stream.end();
    const inSse = sse?.end();
    take(inSse?.length ? [...r.findings, ...inSse] : r.findings);
    if (report.cut.length) noteCuts();
    return r.output;
  };
  if (action === "warn") {
    let scanning = false;
    return {
      observer: {
        head: (_status, raw) => void (scanning = start(raw)),
        chunk: (c) => void (scanning && scan(c)),
        end: () => void (scanning && finish()),
      },
    };
  }
  const enc = new TextEncoder();
  // An upstream that compresses anyway cannot be scanned: under block or
  // redact, fail closed (warn forwards it and notes it, in start()).
  let refused: string | null = null;
  return {
    transform: {
      head: (_status, raw) => {
        const ce = rawHeader(raw, "content-encoding");
        if (
          ce && ce.toLowerCase() !== "identity" && isTextual(rawHeader(raw, "content-type") ?? "")
        ) {
          refused = `response cut by DLP: it is compressed ("${
            ce.slice(0, 40)
          }") and cannot be scanned (${action})`;
          return true;
        }
        return start(raw);
      },
      chunk: (c) => {
        if (refused !== null) return { out: new Uint8Array(0), cut: refused };
        const { output, found } = scan(c);
        const out = enc.encode(output);
        if (action === "block" && found.length) {
          return {
            out,
            cut: `response cut by DLP: ${[...new Set(found.map((f) => f.detector))].join(", ")}`,
          };
        }
        return { out };
      },
      end: () => (refused !== null ? new Uint8Array(0) : enc.encode(finish())),
    },
  };
}
