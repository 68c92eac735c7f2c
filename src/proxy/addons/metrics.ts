/**
 * In-process counters and histograms, rendered in the Prometheus text
 * exposition format at `/_/metrics`, and the addon that feeds them from each
 * finished exchange (its audit row and timings). Updating them is a map
 * lookup and an add: cheap enough for the request path.
 *
 * @module
 */
import type { BackendStatus } from "../../util/backends.ts";
import type { AuditEventV1 } from "../../audit/event.ts";
import type { Exchange } from "../exchange.ts";
import type { Addon } from "./types.ts";

/** Histogram bucket upper bounds in seconds (Prometheus' defaults, plus sub-ms for decisions). */
const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const DECISION_BUCKETS = [
  0.000005,
  0.00001,
  0.000025,
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.01,
];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly buckets: number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }
  observe(v: number) {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) {
      if (v <= this.buckets[i]) {
        this.counts[i]++;
        return;
      }
    }
  }
}

/** Escape a label value per the exposition format (backslash, quote, newline). */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(obj: Record<string, string>): string {
  const parts = Object.entries(obj).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Values read at scrape time. */
export interface MetricGauges {
  auditQueueDepth(): number;
  auditWriteErrors(): number;
  /** Rows in the audit's spool (PostgreSQL away), its bytes, and 1 when it is full. */
  auditSpool?(): { rows: number; bytes: number; full: boolean };
  tunnelsOpen(): number;
  leafCacheSize(): number;
  /** The fleet view's backends (shared state, audit sinks); absent: none. */
  backends?(): BackendStatus[];
}

/**
 * The proxy's metrics.
 *
 * @example
 * metrics.request("allow", "openai");
 * metrics.upstream(0.132);
 * res.end(metrics.render());
 */
export class Metrics {
  #requests = new Map<string, { decision: string; rule: string; n: number }>();
  #spend = new Map<string, { provider: string; model: string; usd: number }>();
  #tokens = new Map<string, { provider: string; model: string; kind: string; n: number }>();
  #dlp = new Map<string, { detector: string; action: string; n: number }>();
  #swaps = new Map<string, number>();
  #tripwires = new Map<string, { credential: string; kind: string; n: number }>();
  #upstream = new Histogram(UPSTREAM_BUCKETS);
  #decision = new Histogram(DECISION_BUCKETS);

  constructor(private readonly gauges: MetricGauges) {}

  /** One finished request by final decision and rule ("" when the default decided). */
  request(decision: string, rule: string | null): void {
    const r = rule ?? "";
    const k = `${decision}\u0000${r}`;
    const e = this.#requests.get(k);
    if (e) e.n++;
    else this.#requests.set(k, { decision, rule: r, n: 1 });
  }

  /** Time from forwarding to the upstream's response head, in seconds. */
  upstream(seconds: number): void {
    this.#upstream.observe(seconds);
  }

  /** Time spent in the engine's `decide`, in seconds. */
  decision(seconds: number): void {
    this.#decision.observe(seconds);
  }

  /** Spend of one LLM call. */
  spend(provider: string, model: string, usd: number): void {
    const k = `${provider}\u0000${model}`;
    const e = this.#spend.get(k);
    if (e) e.usd += usd;
    else this.#spend.set(k, { provider, model, usd });
  }

  /** Tokens of one LLM call, by kind (`input`, `output`, `cache_read`, `cache_write`, `reasoning`). */
  tokens(provider: string, model: string, kind: string, n: number): void {
    if (n <= 0) return;
    const k = `${provider}\u0000${model}\u0000${kind}`;
    const e = this.#tokens.get(k);
    if (e) e.n += n;
    else this.#tokens.set(k, { provider, model, kind, n });
  }

  /** One DLP finding. */
  dlpFinding(detector: string, action: string): void {
    const k = `${detector}\u0000${action}`;
    const e = this.#dlp.get(k);
    if (e) e.n++;
    else this.#dlp.set(k, { detector, action, n: 1 });
  }

  /** A request forwarded with a credential's real secret in place of its phantom. */
  credentialSwap(credential: string): void {
    this.#swaps.set(credential, (this.#swaps.get(credential) ?? 0) + 1);
  }

  /** A request refused by the credentials tripwire (`phantom` out of place, or a real `secret` sent). */
  credentialTripwire(credential: string, kind: string): void {
    const k = `${credential}\u0000${kind}`;
    const e = this.#tripwires.get(k);
    if (e) e.n++;
    else this.#tripwires.set(k, { credential, kind, n: 1 });
  }

  /** The exposition text. */
  render(): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family("agentgate_requests_total", "counter", "Requests by final decision and rule.");
    for (const e of this.#requests.values()) {
      out.push(`agentgate_requests_total${labels({ decision: e.decision, rule: e.rule })} ${e.n}`);
    }
    const histo = (name: string, help: string, h: Histogram) => {
      family(name, "histogram", help);
      let acc = 0;
      h.buckets.forEach((b, i) => {
        acc += h.counts[i];
        out.push(`${name}_bucket{le="${num(b)}"} ${acc}`);
      });
      out.push(
        `${name}_bucket{le="+Inf"} ${h.count}`,
        `${name}_sum ${num(h.sum)}`,
        `${name}_count ${h.count}`,
      );
    };
    histo(
      "agentgate_upstream_duration_seconds",
      "Time from forwarding a request to the upstream response head.",
      this.#upstream,
    );
    histo("agentgate_decision_duration_seconds", "Time spent deciding a request.", this.#decision);
    family("agentgate_spend_usd_total", "counter", "USD spent on LLM calls by provider and model.");
    for (const e of this.#spend.values()) {
      out.push(
        `agentgate_spend_usd_total${labels({ provider: e.provider, model: e.model })} ${
          num(e.usd)
        }`,
      );
    }
    family("agentgate_tokens_total", "counter", "LLM tokens by provider, model and kind.");
    for (const e of this.#tokens.values()) {
      out.push(
        `agentgate_tokens_total${
          labels({ provider: e.provider, model: e.model, kind: e.kind })
        } ${e.n}`,
      );
    }
    family("agentgate_dlp_findings_total", "counter", "DLP findings by detector and action.");
    for (const e of this.#dlp.values()) {
      out.push(
        `agentgate_dlp_findings_total${labels({ detector: e.detector, action: e.action })} ${e.n}`,
      );
    }
    family(
      "agentgate_credential_swaps_total",
      "counter",
      "Requests forwarded with a credential's real secret swapped in for its phantom.",
    );
    for (const [credential, n] of this.#swaps) {
      out.push(`agentgate_credential_swaps_total${labels({ credential })} ${n}`);
    }
    family(
      "agentgate_credential_tripwires_total",
      "counter",
      "Requests refused by the credentials tripwire: a phantom out of place (kind phantom) or a real secret sent by the client (kind secret).",
    );
    for (const e of this.#tripwires.values()) {
      out.push(
        `agentgate_credential_tripwires_total${
          labels({ credential: e.credential, kind: e.kind })
        } ${e.n}`,
      );
    }
    const gauge = (name: string, help: string, v: number, type = "gauge") => {
      family(name, type, help);
      out.push(`${name} ${num(v)}`);
    };
    gauge(
      "agentgate_audit_queue_depth",
      "Audit rows waiting to be written.",
      this.gauges.auditQueueDepth(),
    );
    gauge(
      "agentgate_audit_write_errors_total",
      "Audit batch writes that failed (rows are kept and retried).",
      this.gauges.auditWriteErrors(),
      "counter",
    );
    const spool = this.gauges.auditSpool?.();
    if (spool) {
      gauge(
        "agentgate_audit_spool_rows",
        "Audit rows waiting in the local spool for PostgreSQL.",
        spool.rows,
      );
      gauge("agentgate_audit_spool_bytes", "Bytes the audit spool holds.", spool.bytes);
      gauge(
        "agentgate_audit_spool_full",
        "1 when the audit spool is at its bound and rows are being dropped.",
        spool.full ? 1 : 0,
      );
    }
    gauge("agentgate_tunnels_open", "CONNECT tunnels currently open.", this.gauges.tunnelsOpen());
    gauge(
      "agentgate_tls_leaf_cache_size",
      "Leaf certificates cached.",
      this.gauges.leafCacheSize(),
    );
    const backends = this.gauges.backends?.() ?? [];
    if (backends.length) {
      const series = (
        name: string,
        type: string,
        help: string,
        v: (b: BackendStatus) => number | null,
      ) => {
        family(name, type, help);
        for (const b of backends) {
          const x = v(b);
          if (x !== null) out.push(`${name}${labels({ backend: b.name, kind: b.kind })} ${num(x)}`);
        }
      };
      series("agentgate_backend_up", "gauge", "1 when the backend answers, 0 when it does not.", (
        b,
      ) => b.up ? 1 : 0);
      series(
        "agentgate_backend_latency_seconds",
        "gauge",
        "Recent round-trip latency to the backend (moving average).",
        (b) => b.latency_ms === null ? null : b.latency_ms / 1000,
      );
      series(
        "agentgate_backend_errors_total",
        "counter",
        "Failed round trips to the backend.",
        (b) => b.errors,
      );
      series(
        "agentgate_backend_queued",
        "gauge",
        "Items waiting for the backend (queued charges, spooled rows).",
        (b) => b.queued,
      );
      series(
        "agentgate_backend_dropped_total",
        "counter",
        "Items given up past the backend's queue bound.",
        (b) => b.dropped,
      );
      series(
        "agentgate_backend_fallback",
        "gauge",
        "1 while agentgate works around the backend being down (on_state_error local or allow, a spool).",
        (b) => b.mode !== null && b.mode !== "deny" ? 1 : 0,
      );
    }
    return out.join("\n") + "\n";
  }
}

/**
 * The metrics addon: counts every finished exchange by decision and rule,
 * observes its decision and upstream times, and adds its LLM spend and
 * tokens and its DLP findings — all read from the final row, so what the
 * metrics say and what the audit holds cannot drift apart.
 *
 * @example
 * const metrics = new Metrics(gauges);
 * const addons = [..., metricsAddon(metrics)];
 */
export function metricsAddon(metrics: Metrics): Addon {
  return {
    name: "metrics",
    done(event: AuditEventV1, ex: Exchange) {
      metrics.request(event.decision, event.rule);
      if (ex.decideSeconds !== null) metrics.decision(ex.decideSeconds);
      if (ex.upstreamSeconds !== null) metrics.upstream(ex.upstreamSeconds);
      if (event.provider) {
        const model = event.model ?? "unknown";
        if (typeof event.cost_usd === "number") {
          metrics.spend(event.provider, model, event.cost_usd);
        }
        metrics.tokens(event.provider, model, "input", event.input_tokens ?? 0);
        metrics.tokens(event.provider, model, "output", event.output_tokens ?? 0);
        metrics.tokens(event.provider, model, "cache_read", event.cache_read_tokens ?? 0);
        metrics.tokens(event.provider, model, "cache_write", event.cache_write_tokens ?? 0);
        metrics.tokens(event.provider, model, "reasoning", event.reasoning_tokens ?? 0);
      }
      for (const f of event.findings ?? []) metrics.dlpFinding(f.detector, f.action);
    },
  };
}
