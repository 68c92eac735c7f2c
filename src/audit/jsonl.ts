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
  #queue: string[] = [];
  #busy: Promise<void> | null = null;
  #timer: ReturnType<typeof setInterval>;
  #closed = false;
  #lastLog = 0;
  #written = 0;
  #dropped = 0;
  #errors = 0;
  #lastError: string | null = null;
  #latency: number | null = null;
  #enc = new TextEncoder();

  private constructor(
    readonly target: string,
    readonly file: Deno.FsFile | null,
    private readonly opts: JsonlOptions,
  ) {
    this.#timer = setInterval(() => this.#kick(), opts.flushMs ?? 200);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /** Open `path` for appending (created 0600: rows name hosts and sessions), or stdout for `-`. */
  static async open(path: string, opts: JsonlOptions = {}): Promise<JsonlSink> {
    const file = path === "-"
      ? null
      : await Deno.open(path, { append: true, create: true, mode: 0o600 });
    return new JsonlSink(path, file, opts);
  }

  add(event: AuditEventV1): void {
    if (this.#closed) {
      this.#dropped++;
      return;
    }
    this.#queue.push(JSON.stringify(decisionJson(event)));
    const max = this.opts.maxQueue ?? 100_000;
    if (this.#queue.length > max) {
      const over = this.#queue.length - max;
      this.#queue.splice(0, over);
      this.#dropped += over;
      this.#log(
        `audit.jsonl: queue full while writes fail; dropped ${over} line(s), ${this.#dropped} in total`,
      );
    }
  }

  #kick() {
    if (this.#busy !== null || this.#queue.length === 0) return;
    this.#busy = this.#write().finally(() => (this.#busy = null));
  }

  async #write() {
    const lines = this.#queue;
    this.#queue = [];
    const bytes = this.#enc.encode(lines.join("\n") + "\n");
    const t0 = performance.now();
    try {
      let off = 0;
      const out = this.file ?? this.opts.stdout ?? Deno.stdout;
      while (off < bytes.length) off += await out.write(bytes.subarray(off));
      this.#written += lines.length;
      this.#latency = Math.round((performance.now() - t0) * 100) / 100;
      this.#lastError = null;
    } catch (e) {
      // Kept and retried on the next tick, oldest first.
      this.#queue = lines.concat(this.#queue);
      this.#errors++;
      this.#lastError = (e as Error).message;
      this.#log(`audit.jsonl: write to "${this.target}" failed (lines kept): ${this.#lastError}`);
    }
  }

  status(): SinkStatus {
    return {
      kind: "jsonl",
      target: this.target,
      up: this.#lastError === null,
      latency_ms: this.#latency,
      errors: this.#errors,
      last_error: this.#lastError,
      queued: this.#queue.length,
      written: this.#written,
      dropped: this.#dropped,
      spooled: 0,
    };
  }

  /** Write what is queued, then close the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (let i = 0; i < 3 && (this.#busy || this.#queue.length); i++) {
      if (this.#busy) await this.#busy;
      if (this.#queue.length) await this.#write();
    }
    if (this.#queue.length) {
      this.#dropped += this.#queue.length;
      this.#log(`audit.jsonl: ${this.#queue.length} line(s) could not be written at shutdown`);
    }
    this.file?.close();
  }

  #log(message: string) {
    const now = Date.now();
    if (now - this.#lastLog < 1000) return;
    this.#lastLog = now;
    (this.opts.log ?? ((m) => console.error(m)))(`agentgate: ${message}`);
  }
}
