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
import { StreamQueue } from "./stream_queue.ts";

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
  #queue: StreamQueue<ReadableLogRecord>;
  #provider: LoggerProvider;
  #logger: Logger;
  #exporter: OTLPLogExporter;

  constructor(readonly url: string, opts: OtlpOptions) {
    this.#exporter = new OTLPLogExporter({ url, timeoutMillis: 10_000 });
    this.#queue = new StreamQueue<ReadableLogRecord>({
      name: "audit.otlp",
      kind: "otlp",
      target: url,
      unit: "record",
      batch: opts.batch ?? 512,
      flushMs: opts.flushMs ?? 500,
      maxQueue: opts.maxQueue,
      log: opts.log,
      send: async (batch) => {
        const result = await new Promise<{ code: number; error?: Error }>((resolve) =>
          this.#exporter.export(batch, resolve)
        );
        if (result.code !== 0) throw result.error ?? new Error("export failed");
      },
    });
    const processor: LogRecordProcessor = {
      onEmit: (record) => this.#queue.push(record),
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    this.#provider = new LoggerProvider({
      resource: resourceFromAttributes({
        "service.name": "agentgate",
        "service.version": opts.version,
        ...(opts.instance ? { "service.instance.id": opts.instance } : {}),
      }),
      processors: [processor],
    });
    this.#logger = this.#provider.getLogger("agentgate.audit", opts.version);
  }

  add(e: AuditEventV1): void {
    if (this.#queue.closed) return this.#queue.refuse();
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

  status(): SinkStatus {
    return this.#queue.status();
  }

  /** Export what is queued, then shut the exporter down. */
  async close(): Promise<void> {
    if (this.#queue.closed) return;
    await this.#queue.close();
    await this.#provider.shutdown().catch(() => {});
    await this.#exporter.shutdown().catch(() => {});
  }
}
