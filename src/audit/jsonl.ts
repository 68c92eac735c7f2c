/**
 * The decision stream as JSON lines (`audit.jsonl`): every audit row, as it
 * is written, one JSON object a line, to a file (appended) or stdout (`-`),
 * for a SIEM or a log shipper (Vector, Fluent Bit, Promtail) to pick up.
 *
 * A line carries every audit column (null when empty) in the table's order,
 * `headers` as an object, `spend_keys` as an array and the DLP `findings`.
 * Rows arrive masked (`Exchange.finish`), so a line never holds a secret.
 *
 * @module
 */
import { AUDIT_COLUMNS, type AuditEventV1 } from "./event.ts";
import type { AuditSink, SinkStatus } from "./sink.ts";
import { StreamQueue } from "./stream_queue.ts";

/**
 * One row as the stream's JSON object (shared by the OTLP body).
 *
 * @example
 * decisionJson(event).rule_source // "agentgate.yaml:12"
 */
export function decisionJson(e: AuditEventV1): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of AUDIT_COLUMNS) {
    const v = e[c];
    if (c === "headers" && typeof v === "string") {
      try {
        out.headers = JSON.parse(v);
      } catch {
        out.headers = v;
      }
    } else if (c === "spend_keys") {
      out.spend_keys = e.spend_keys ?? [];
    } else out[c] = v ?? null;
  }
  out.findings = e.findings ?? [];
  return out;
}

/** Options of {@link JsonlSink.open}. */
export interface JsonlOptions {
  /** Flush interval (default 200 ms). */
  flushMs?: number;
  /** Lines held while the target refuses writes (default 100,000). */
  maxQueue?: number;
  log?: (message: string) => void;
  /** Where `-` writes (tests): default Deno.stdout. */
  stdout?: { write(p: Uint8Array): Promise<number> };
}

/**
 * Writes each row as a JSON line, in batches off the request path.
 *
 * @example
 * ```ts
 * const sink = await JsonlSink.open("/var/log/agentgate/decisions.jsonl");
 * sink.add(event);
 * await sink.close();
 * ```
 */
export class JsonlSink implements AuditSink {
  #queue: StreamQueue<string>;
  #enc = new TextEncoder();

  private constructor(
    readonly target: string,
    readonly file: Deno.FsFile | null,
    opts: JsonlOptions,
  ) {
    const out = file ?? opts.stdout ?? Deno.stdout;
    this.#queue = new StreamQueue<string>({
      name: "audit.jsonl",
      kind: "jsonl",
      target,
      unit: "line",
      flushMs: opts.flushMs ?? 200,
      maxQueue: opts.maxQueue,
      log: opts.log,
      send: async (lines) => {
        const bytes = this.#enc.encode(lines.join("\n") + "\n");
        for (let off = 0; off < bytes.length;) off += await out.write(bytes.subarray(off));
      },
    });
  }

  /** Open `path` for appending (created 0600: rows name hosts and sessions), or stdout for `-`. */
  static async open(path: string, opts: JsonlOptions = {}): Promise<JsonlSink> {
    const file = path === "-"
      ? null
      : await Deno.open(path, { append: true, create: true, mode: 0o600 });
    return new JsonlSink(path, file, opts);
  }

  add(event: AuditEventV1): void {
    if (this.#queue.closed) return this.#queue.refuse();
    this.#queue.push(JSON.stringify(decisionJson(event)));
  }

  status(): SinkStatus {
    return this.#queue.status();
  }

  /** Write what is queued, then close the file. */
  async close(): Promise<void> {
    if (this.#queue.closed) return;
    await this.#queue.close();
    this.file?.close();
  }
}
