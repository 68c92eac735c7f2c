/**
 * One request (or tunnel) from arrival to its audit row. Whatever path a
 * request takes — forwarded, denied, upstream error, client abort, forced
 * shutdown — `finish` runs exactly once and queues exactly one row.
 *
 * @module
 */
import type { AuditDecision, AuditEventV1, AuditFinding } from "../audit/event.ts";
import { maskText, redactHeaders, redactPath, redactQuery } from "../audit/redact.ts";
import type { Decision, RequestInfo } from "../policy/types.ts";
import type { AgentgateConfig } from "../config/load.ts";

/** How an exchange ended, beyond what the decision says. */
export interface Outcome {
  status: number | null;
  /** Overrides the decision's verdict (e.g. `error` for an upstream failure). */
  decision?: AuditDecision;
  /** Reason override (e.g. the upstream failure), else the decision's reason. */
  reason?: string;
  error?: string | null;
  /** Policy override (e.g. `proxy_auth` for a 407 challenge). */
  policy?: string;
}

/** Where finished exchanges go. */
export interface ExchangeSink {
  record(event: AuditEventV1, exchange: Exchange): void;
}

let seq = 0;
const rand = new Uint8Array(4096);
let randPos = rand.length;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const HEX1 = Array.from({ length: 16 }, (_, i) => i.toString(16));
let prefixAt = -1;
let prefix = "";

/**
 * A time-ordered UUID (version 7): rows are appended in key order, so the
 * audit's primary-key index does not fragment; the random part makes ids
 * unguessable across processes.
 *
 * @example
 * newDecisionId() // "0193a6b2-4c1e-7f3a-9d2b-5e8c1a7f0b3d"
 */
export function newDecisionId(now = Date.now()): string {
  if (randPos + 10 > rand.length) {
    crypto.getRandomValues(rand);
    randPos = 0;
  }
  const r = rand;
  const p = randPos;
  randPos += 10;
  if (now !== prefixAt) {
    // The timestamp part is the same for every id of one millisecond.
    const ts = now.toString(16).padStart(12, "0");
    prefix = `${ts.slice(0, 8)}-${ts.slice(8, 12)}-7`;
    prefixAt = now;
  }
  seq = (seq + 1) & 0xfff;
  return `${prefix}${HEX1[seq >> 8]}${HEX[seq & 0xff]}-` +
    `${HEX[(r[p] & 0x3f) | 0x80]}${HEX[r[p + 1]]}-` +
    `${HEX[r[p + 2]]}${HEX[r[p + 3]]}${HEX[r[p + 4]]}${HEX[r[p + 5]]}${HEX[r[p + 6]]}${
      HEX[r[p + 7]]
    }`;
}

function scrubbed(ex: Exchange, text: string | null | undefined): string | null {
  return text === null || text === undefined ? null : ex.scrub(text);
}

/** The state of one request while it is in flight. */
export class Exchange {
  readonly ts = Date.now();
  readonly t0 = performance.now();
  decision: Decision | null = null;
  bytesIn = 0;
  bytesOut = 0;
  done = false;
  /** DLP findings (masked), stored in the findings table with the row. */
  findings: AuditFinding[] = [];
  /**
   * What was not inspected in full (a decompression limit, a DLP scan cut
   * short), recorded in the row's `inspection` column.
   */
  inspection: string[] = [];
  /**
   * LLM usage and cost read from the response, merged into the row; its
   * `error` (the provider's in-band error) fills the row's when the proxy
   * has none of its own.
   */
  usage: Partial<AuditEventV1> | null = null;
  /** Seconds spent deciding (all steps), or null when nothing was decided. */
  decideSeconds: number | null = null;
  /** Seconds from forwarding to the upstream's response head, or null. */
  upstreamSeconds: number | null = null;
  /** @internal The server's slots holding this exchange (util/slots.ts); -1: not held. */
  inflightSlot = -1;
  /** @internal */
  tunnelSlot = -1;
  /** Tears the exchange down (forced shutdown); set by whoever owns its sockets. */
  abort: (why: string) => void = () => {};
  #shownPath: string | null | undefined;
  /** Masks for text that came from the upstream (a swapped secret it echoes must never be kept). */
  #masks: ((text: string) => string)[] | null = null;

  /** Mask what `fn` masks in every text of this exchange that may quote the upstream. */
  addMask(fn: (text: string) => string): void {
    (this.#masks ??= []).push(fn);
  }

  /** `text` with the exchange's masks applied (the row's reason and error, answers quoting them). */
  scrub(text: string): string {
    if (this.#masks === null) return text;
    for (const m of this.#masks) text = m(text);
    return text;
  }

  constructor(
    readonly info: RequestInfo,
    private readonly sink: ExchangeSink,
    /** The configuration in force when the request arrived. */
    readonly config: AgentgateConfig,
  ) {}

  /**
   * The path as the audit and log lines show it: capability tokens masked
   * (decisions still see `info.path`). Computed once.
   */
  get shownPath(): string | null {
    if (this.#shownPath === undefined) {
      this.#shownPath = this.info.path === null ? null : redactPath(this.info.path, this.info.host);
    }
    return this.#shownPath;
  }

  /** Write the audit row (once; later calls are ignored). */
  finish(outcome: Outcome): void {
    if (this.done) return;
    this.done = true;
    const d = this.decision;
    const info = this.info;
    const isTunnel = info.path === null;
    const { error: providerError, ...usage } = this.usage ?? {};
    this.sink.record({
      id: info.id,
      ts: this.ts,
      session: info.session,
      label: info.label,
      client: info.client,
      method: info.method,
      scheme: info.scheme,
      host: info.host,
      port: info.port,
      path: this.shownPath,
      query: info.query === "" ? null : redactQuery(info.query),
      status: outcome.status,
      decision: outcome.decision ?? d?.verdict ?? "error",
      rule: d?.rule ?? null,
      rule_source: d?.ruleSource ?? null,
      // Reasons and errors may quote what the client sent (a target, a key), or an
      // upstream echoing a swapped secret.
      reason: maskText(this.scrub(outcome.reason ?? d?.reason ?? "")),
      policy: outcome.policy ?? d?.policy ?? null,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      duration_ms: Math.round((performance.now() - this.t0) * 1000) / 1000,
      error: maskNullable(scrubbed(this, outcome.error ?? providerError ?? null)),
      headers: isTunnel ? null : JSON.stringify(redactHeaders(info.headers)),
      dest_ip: info.dest?.ip ?? null,
      ...usage,
      inspection: this.inspection.length
        ? [...new Set(this.inspection)].join("; ").slice(0, 2000)
        : null,
      ...(this.findings.length ? { findings: this.findings } : {}),
    }, this);
  }
}

function maskNullable(text: string | null): string | null {
  return text === null ? null : maskText(text);
}
