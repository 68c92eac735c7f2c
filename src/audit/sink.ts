/**
 * Audit sinks: every place a finished exchange's row goes. The primary sink
 * is the audit the read model reads (SQLite's `AuditStore`, or PostgreSQL's
 * `PgAuditStore`); streams (`JsonlSink`, `OtlpSink`) carry the same rows out
 * as they happen. Rows reach every sink already masked (`Exchange.finish`
 * masks before it queues), so no sink masks again and none can leak.
 *
 * @module
 */
import type { AuditEventV1 } from "./event.ts";

/**
 * What a sink reports about its backend: the numbers the fleet view shows
 * (up or down, latency, errors, rows spooled).
 */
export interface SinkStatus {
  /** `sqlite`, `postgres`, `jsonl`, `otlp`. */
  kind: string;
  /** Where it writes, without credentials. */
  target: string;
  /** Whether the last write (or connection attempt) succeeded. */
  up: boolean;
  /** Duration of the last successful write, ms (null before the first). */
  latency_ms: number | null;
  /** Writes that failed since start (their rows were kept, spooled or reported as dropped). */
  errors: number;
  /** The last failure's message, or null after a success. */
  last_error: string | null;
  /** Rows waiting in memory. */
  queued: number;
  /** Rows written since start. */
  written: number;
  /** Rows lost since start (each one logged). */
  dropped: number;
  /** Rows held in the local spool (PostgreSQL only; 0 elsewhere). */
  spooled: number;
  /** Bytes the spool holds, and its bound (PostgreSQL only). */
  spool_bytes?: number;
  spool_max_bytes?: number;
  /** True when the spool is at its bound and rows are being dropped. */
  spool_full?: boolean;
}

/** A place audit rows go. */
export interface AuditSink {
  /** Queue a row: never blocks, never throws. */
  add(event: AuditEventV1): void;
  /** Write what is queued and release the backend. */
  close(): Promise<void> | void;
  status(): SinkStatus;
}

/**
 * The proxy's audit: the primary sink and the streams, behind the one
 * `add` the proxy calls. Health reads the primary's queue and errors; a
 * stream that drops rows makes `lastError` non-null too (the audit is then
 * incomplete somewhere, and `/_/health` says so).
 *
 * @example
 * ```ts
 * const audit = new AuditFanout(store, [JsonlSink.open("-")]);
 * audit.add(event);
 * await audit.close();
 * ```
 */
export class AuditFanout {
  constructor(
    readonly primary: AuditSink & {
      readonly queueDepth: number;
      readonly lastError: string | null;
      readonly writeErrors: number;
      readonly written: number;
    },
    readonly streams: AuditSink[] = [],
  ) {}

  add(event: AuditEventV1): void {
    this.primary.add(event);
    for (const s of this.streams) s.add(event);
  }

  get queueDepth(): number {
    return this.primary.queueDepth + this.streams.reduce((n, s) => n + s.status().queued, 0);
  }

  get writeErrors(): number {
    return this.primary.writeErrors;
  }

  get written(): number {
    return this.primary.written;
  }

  /** The primary's error, else the first stream that is losing rows. */
  get lastError(): string | null {
    if (this.primary.lastError !== null) return this.primary.lastError;
    for (const s of this.streams) {
      const st = s.status();
      if (st.dropped > 0 && st.last_error !== null) return `${st.kind}: ${st.last_error}`;
    }
    return null;
  }

  /** Every sink's status, the primary first. */
  status(): SinkStatus[] {
    return [this.primary.status(), ...this.streams.map((s) => s.status())];
  }

  async close(): Promise<void> {
    await Promise.all([this.primary.close(), ...this.streams.map((s) => s.close())]);
  }
}
