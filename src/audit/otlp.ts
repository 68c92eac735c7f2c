/**
 * The decision stream as OpenTelemetry logs (`audit.otlp`): every audit row
 * as one log record, POSTed over OTLP/HTTP (JSON) to a collector's
 * `/v1/logs`, with the official `@opentelemetry/sdk-logs` and
 * `@opentelemetry/exporter-logs-otlp-http` (they work under Deno: checked
 * against a real receiver in src/audit/otlp_test.ts).
 *
 * The SDK's `BatchLogRecordProcessor` is not used: past its queue (2,048
 * records) it drops records with nothing but a diagnostic line, and the
 * audit never loses a row silently. Records go to this module's own bounded
 * queue instead, are exported in batches, requeued when the collector
 * refuses them, and counted (and logged) when dropped past the bound.
 *
 * A record: `timeUnixNano` the request's arrival, severity INFO (WARN for
 * `deny`, `would_deny` and `error`), the body a line for people
 * (`deny GET https://host:443/path: reason`), and each non-empty audit column
 * as an attribute `agentgate.<column>` (the rule, its `file:line`, session,
 * host, cost…), request headers aside; DLP findings as `agentgate.findings`
 * (their detectors). Rows arrive masked, so no record holds a secret.
 *
 * @module
 */
import {
  LoggerProvider,
  type LogRecordProcessor,
  type ReadableLogRecord,
} from "@opentelemetry/sdk-logs";
import { OTLPLogExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { type AnyValueMap, type Logger, SeverityNumber } from "@opentelemetry/api-logs";
import { AUDIT_COLUMNS, type AuditEventV1 } from "./event.ts";
import type { AuditSink, SinkStatus } from "./sink.ts";

/** Options of {@link OtlpSink}. */
export interface OtlpOptions {
  /** agentgate's version (the resource's `service.version`). */
  version: string;
  /** The replica's name (the resource's `service.instance.id`), e.g. the host name. */
  instance?: string;
  /** Export interval (default 500 ms). */
  flushMs?: number;
  /** Records per request (default 512). */
  batch?: number;
  /** Records held while the collector refuses them (default 100,000). */
  maxQueue?: number;
  log?: (message: string) => void;
}

/** The attributes of one row. */
export function otlpAttributes(e: AuditEventV1): AnyValueMap {
  const out: AnyValueMap = {};
  for (const c of AUDIT_COLUMNS) {
    if (c === "headers") continue;
    const v = e[c];
    if (v === null || v === undefined) continue;
    if (c === "spend_keys") {
      if (e.spend_keys?.length) out["agentgate.spend_keys"] = [...e.spend_keys];
      continue;
    }
    out[`agentgate.${c}`] = v as string | number | boolean;
  }
  if (e.findings?.length) out["agentgate.findings"] = e.findings.map((f) => f.detector);
  return out;
}

/**
 * Streams rows to an OTLP/HTTP collector.
 *
 * @example
 * ```ts
 * const sink = new OtlpSink("http://collector:4318/v1/logs", { version: "0.1.0" });
 * sink.add(event);
 * await sink.close();
 * ```
 */
export class OtlpSink implements AuditSink {
  #queue: ReadableLogRecord[] = [];
  #provider: LoggerProvider;
  #logger: Logger;
  #exporter: OTLPLogExporter;
  #busy: Promise<void> | null = null;
  #timer: ReturnType<typeof setInterval>;
  #closed = false;
  #lastLog = 0;
  #written = 0;
  #dropped = 0;
  #errors = 0;
  #lastError: string | null = null;
  #latency: number | null = null;

  constructor(readonly url: string, private readonly opts: OtlpOptions) {
    this.#exporter = new OTLPLogExporter({ url, timeoutMillis: 10_000 });
    const queue: LogRecordProcessor = {
      onEmit: (record) => this.#enqueue(record),
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    this.#provider = new LoggerProvider({
      resource: resourceFromAttributes({
        "service.name": "agentgate",
        "service.version": opts.version,
        ...(opts.instance ? { "service.instance.id": opts.instance } : {}),
      }),
      processors: [queue],
    });
    this.#logger = this.#provider.getLogger("agentgate.audit", opts.version);
    this.#timer = setInterval(() => this.#kick(), opts.flushMs ?? 500);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  add(e: AuditEventV1): void {
    if (this.#closed) {
      this.#dropped++;
      return;
    }
    const warn = e.decision === "deny" || e.decision === "would_deny" || e.decision === "error";
    this.#logger.emit({
      timestamp: e.ts,
      observedTimestamp: e.ts,
      severityNumber: warn ? SeverityNumber.WARN : SeverityNumber.INFO,
      severityText: warn ? "WARN" : "INFO",
      body: `${e.decision} ${e.method} ${e.scheme}://${e.host}:${e.port}${
        e.path ?? ""
      }: ${e.reason}`,
      attributes: otlpAttributes(e),
    });
  }

  #enqueue(record: ReadableLogRecord) {
    this.#queue.push(record);
    const max = this.opts.maxQueue ?? 100_000;
    if (this.#queue.length > max) {
      const over = this.#queue.length - max;
      this.#queue.splice(0, over);
      this.#dropped += over;
      this.#log(
        `audit.otlp: queue full while the collector refuses records; dropped ${over}, ${this.#dropped} in total`,
      );
    }
  }

  #kick() {
    if (this.#busy !== null || this.#queue.length === 0) return;
    this.#busy = this.#export().finally(() => (this.#busy = null));
  }

  async #export() {
    const batch = this.#queue.splice(0, this.opts.batch ?? 512);
    const t0 = performance.now();
    const result = await new Promise<{ code: number; error?: Error }>((resolve) =>
      this.#exporter.export(batch, resolve)
    );
    if (result.code === 0) {
      this.#written += batch.length;
      this.#latency = Math.round((performance.now() - t0) * 100) / 100;
      this.#lastError = null;
      return;
    }
    this.#queue = batch.concat(this.#queue);
    this.#errors++;
    this.#lastError = result.error?.message ?? "export failed";
    this.#log(`audit.otlp: export to ${this.url} failed (records kept): ${this.#lastError}`);
  }

  status(): SinkStatus {
    return {
      kind: "otlp",
      target: this.url,
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

  /** Export what is queued (a few attempts), then shut the exporter down. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (let i = 0; i < 20 && (this.#busy || this.#queue.length); i++) {
      if (this.#busy) await this.#busy;
      if (this.#queue.length === 0) break;
      const before = this.#errors;
      this.#busy = this.#export().finally(() => (this.#busy = null));
      await this.#busy;
      if (this.#errors > before + 2) break;
    }
    if (this.#queue.length) {
      this.#dropped += this.#queue.length;
      this.#log(`audit.otlp: ${this.#queue.length} record(s) could not be exported at shutdown`);
    }
    await this.#provider.shutdown().catch(() => {});
    await this.#exporter.shutdown().catch(() => {});
  }

  #log(message: string) {
    const now = Date.now();
    if (now - this.#lastLog < 1000) return;
    this.#lastLog = now;
    (this.opts.log ?? ((m) => console.error(m)))(`agentgate: ${message}`);
  }
}
