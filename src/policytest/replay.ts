/**
 * Replay: re-decide every request recorded in the audit under a proposed
 * policy, in time order with rate-limit and spending state rebuilt as it
 * goes, and compare with what was recorded.
 *
 * What the audit keeps is what the engine sees, except the body (never
 * stored): a request whose decision needs its body is counted as "needs
 * body", never guessed — with one exact exception: when the only thing
 * needed is the model an LLM call named (for a spending limit's price check),
 * the model the audit recorded from the response is used. Secrets in headers
 * and queries were masked before they were stored; conditions see the mask.
 * The address a name resolved to is the row's `dest_ip`: the address guard
 * and rules that match by address judge it again; a row without one whose
 * decision needs it is counted as "needs address".
 *
 * @module
 */
import type { AuditRowWithHeaders } from "../audit/read.ts";
import type { Decision, RequestInfo, Verdict } from "../policy/types.ts";
import { PolicyState } from "../state/mod.ts";
import { type AgentgateConfig, isIntercepted } from "../config/load.ts";
import { canonicalIp, knownDestination } from "../policy/address.ts";
import { type BuiltRequest, decideRequest } from "./request.ts";
import type { CompiledRule } from "../policy/engine.ts";
import type { DlpChecker } from "../policy/limits/dlp.ts";

/** allow / log are "allowed"; deny / would_deny "denied" (the policy's intent). */
export type Outcome = "allowed" | "denied";

/** A decision as replay compares it. */
export interface ReplayDecision {
  /** The verdict, or `forwarded` for a recorded upstream error (allow or log, not told apart). */
  verdict: Verdict | "forwarded";
  outcome: Outcome;
  rule: string | null;
  rule_source: string | null;
  reason: string;
  policy: string | null;
}

/** The change groups replay counts. */
export type ChangeKind =
  | "allow_to_deny"
  | "deny_to_allow"
  | "rule_changed"
  | "unchanged"
  | "needs_body"
  | "needs_dest";

/** Example requests of one group that look alike (same request line and decisions). */
export interface ReplayExample {
  /** Time of the first such request (ms). */
  ts: number;
  /** How many requests in the group share it. */
  count: number;
  method: string;
  /** `https://host/path?query`, or `host:port` for a tunnel. */
  url: string;
  session: string | null;
  before: ReplayDecision;
  after: ReplayDecision | null;
}

/** The outcome of a replay. */
export interface ReplayReport {
  /** Rows read. */
  total: number;
  counts: Record<ChangeKind, number>;
  /** Up to `examples` distinct examples per group. */
  examples: Record<ChangeKind, ReplayExample[]>;
  /** Rows that hold no policy decision, by why. */
  skipped: { count: number; reasons: Record<string, number> };
  /** First and last replayed timestamps, or null when none. */
  first: number | null;
  last: number | null;
}

const denied = (v: string) => v === "deny" || v === "would_deny";

/** What the recorded row says the policy decided, or why it holds no decision. */
export function recordedDecision(row: AuditRowWithHeaders): ReplayDecision | { skip: string } {
  const base = {
    rule: row.rule,
    rule_source: row.rule_source,
    reason: row.reason,
    policy: row.policy,
  };
  switch (row.decision) {
    case "allow":
    case "log":
      // A CONNECT that carried plain HTTP: its requests have rows of their own.
      if (row.path === null && row.scheme === "http") return { skip: "plain-HTTP tunnel" };
      return { ...base, verdict: row.decision, outcome: "allowed" };
    case "deny":
    case "would_deny":
      // Denials by the proxy rather than the policy: credentials, misdirected requests.
      if (row.rule === null && row.status === 407) return { skip: "proxy authentication" };
      if (row.rule === null && row.status === 421) return { skip: "misdirected request" };
      return { ...base, verdict: row.decision, outcome: "denied" };
    case "challenge":
      return { skip: "proxy authentication" };
    case "error":
      // Forwarded under the policy, then the upstream failed: the policy allowed it.
      if (row.error?.startsWith("upstream ")) {
        return { ...base, verdict: "forwarded", outcome: "allowed" };
      }
      if (row.status === 508) return { skip: "request loop" };
      if (row.error === "client aborted") return { skip: "client aborted before the decision" };
      if (row.error?.startsWith("client TLS handshake") || row.error === "leaf certificate") {
        return { skip: "TLS interception failed" };
      }
      return { skip: "error without a policy decision" };
    default:
      return { skip: `unknown decision "${row.decision}"` };
  }
}

function headersOf(row: AuditRowWithHeaders): Record<string, string> {
  if (!row.headers) return {};
  try {
    const h = JSON.parse(row.headers);
    return h && typeof h === "object" && !Array.isArray(h) ? h : {};
  } catch {
    return {};
  }
}

/**
 * Where a row's request went under the proposed policy: pinned there or an
 * address literal, else the address the row recorded (null when none).
 */
function destOfRow(config: AgentgateConfig, row: AuditRowWithHeaders): RequestInfo["dest"] {
  const known = knownDestination(config.resolve, row.host, row.port);
  if (known !== null) return known;
  const ip = row.dest_ip ? canonicalIp(row.dest_ip) : null;
  return ip === null ? undefined : { ip, port: row.port, addresses: [ip], pinned: false };
}

/** The request of a row as the proposed policy's proxy would see it. */
export function requestOfRow(config: AgentgateConfig, row: AuditRowWithHeaders): BuiltRequest {
  const dest = destOfRow(config, row);
  const base = {
    id: row.id,
    session: row.session,
    label: row.label,
    client: row.client,
    host: row.host,
    port: row.port,
    ...(dest ? { dest } : {}),
  };
  const tunnel: RequestInfo = {
    ...base,
    method: "CONNECT",
    scheme: "https",
    path: null,
    query: "",
    headers: {},
  };
  if (row.path === null) return { kind: "tunnel", info: tunnel, tunnel: null };
  const scheme = row.scheme === "https" ? "https" : "http";
  // A request recorded inside an intercepted tunnel, to a host the proposed
  // policy no longer intercepts, would be a tunnel again.
  if (scheme === "https" && !isIntercepted(config, row.host, row.port)) {
    return { kind: "tunnel", info: tunnel, tunnel: null };
  }
  const info: RequestInfo = {
    ...base,
    method: row.method,
    scheme,
    path: row.path,
    query: row.query ?? "",
    headers: headersOf(row),
    // The audit keeps no bodies, but their size: what a budget's estimate reads.
    ...(row.bytes_in > 0 ? { bodySize: row.bytes_in } : {}),
  };
  return {
    kind: scheme === "https" ? "intercepted" : "http",
    info,
    tunnel: scheme === "https" ? tunnel : null,
  };
}

function hadBody(row: AuditRowWithHeaders, headers: Record<string, string>): boolean {
  if (row.bytes_in > 0) return true;
  const cl = headers["content-length"];
  return (cl !== undefined && cl !== "0") || headers["transfer-encoding"] !== undefined;
}

function asReplay(d: Decision): ReplayDecision {
  return {
    verdict: d.verdict,
    outcome: denied(d.verdict) ? "denied" : "allowed",
    rule: d.rule,
    rule_source: d.ruleSource,
    reason: d.reason,
    policy: d.policy,
  };
}

/**
 * Whether `rule` reads the body only through request-scanning `dlp` policies
 * (its condition and its policies' keys do not read it).
 */
function bodyOnlyForDlp(rule: CompiledRule): boolean {
  if (rule.when?.needsBody) return false;
  let dlp = false;
  for (const c of rule.checkers) {
    if (c.name === "dlp") dlp ||= (c as DlpChecker).scansRequest;
    else if ((c as { key?: { needsBody: boolean } }).key?.needsBody) return false;
  }
  return dlp;
}

function urlOf(row: AuditRowWithHeaders): string {
  const host = row.host.includes(":") ? `[${row.host}]` : row.host;
  if (row.path === null) return `${host}:${row.port}`;
  const dflt = row.scheme === "https" ? 443 : 80;
  return `${row.scheme}://${host}${row.port === dflt ? "" : `:${row.port}`}${row.path}${
    row.query ? `?${row.query}` : ""
  }`;
}

/**
 * Re-decide `rows` (oldest first) under `config` and group the changes.
 *
 * @example
 * const report = replay(config, await reader.rowsSince(Date.now() - 7 * 86_400_000));
 * report.counts.allow_to_deny
 */
export function replay(
  config: AgentgateConfig,
  rows: AuditRowWithHeaders[],
  opts: { examples?: number } = {},
): ReplayReport {
  const max = opts.examples ?? 5;
  const counts: Record<ChangeKind, number> = {
    allow_to_deny: 0,
    deny_to_allow: 0,
    rule_changed: 0,
    unchanged: 0,
    needs_body: 0,
    needs_dest: 0,
  };
  const examples: Record<ChangeKind, ReplayExample[]> = {
    allow_to_deny: [],
    deny_to_allow: [],
    rule_changed: [],
    unchanged: [],
    needs_body: [],
    needs_dest: [],
  };
  const exampleKeys = new Map<string, ReplayExample>();
  const skipped = { count: 0, reasons: {} as Record<string, number> };
  const state = new PolicyState({ startedAt: rows[0]?.ts ?? Date.now() });
  const rulesByName = new Map(config.policy.rules.map((r) => [r.name, r]));
  let first: number | null = null;
  let last: number | null = null;

  for (const row of rows) {
    const before = recordedDecision(row);
    if ("skip" in before) {
      skipped.count++;
      skipped.reasons[before.skip] = (skipped.reasons[before.skip] ?? 0) + 1;
      continue;
    }
    first ??= row.ts;
    last = row.ts;
    const req = requestOfRow(config, row);
    const bodyRead = req.kind === "tunnel" || !hadBody(row, req.info.headers);
    let d = decideRequest(config, req, { now: row.ts, state, bodyRead }).decision;
    if (d.needsBody && row.model !== null && d.rule !== null) {
      // Nothing up to this rule reads the body, and the rule itself does not
      // either: only the spending limit's model check does, and the audit
      // recorded the model.
      const rule = rulesByName.get(d.rule);
      if (rule && !rule.needsBody) {
        req.info.body = { model: row.model };
        d = decideRequest(config, req, { now: row.ts, state, bodyRead: true }).decision;
      }
    }
    if (d.needsBody && d.rule !== null) {
      // The body is needed by the rule's dlp policy alone: its recorded scan stands in.
      const rule = rulesByName.get(d.rule);
      if (rule && bodyOnlyForDlp(rule)) {
        const blocked = before.policy === "dlp" && before.outcome === "denied";
        if (blocked || row.findings_count === 0) {
          req.info.bodyText = "";
          if (row.model !== null) req.info.body = { model: row.model };
          const clean = decideRequest(config, req, { now: row.ts, state, bodyRead: true }).decision;
          d = blocked && clean.rule === d.rule && !denied(clean.verdict)
            ? {
              ...clean,
              verdict: config.policy.mode === "audit" ? "would_deny" : "deny",
              policy: "dlp",
              reason: before.reason,
              status: 403,
              dlp: undefined,
            }
            : clean;
        }
      }
    }
    let kind: ChangeKind;
    let after: ReplayDecision | null = null;
    if (d.needsBody) kind = "needs_body";
    else if (d.needsDest) kind = "needs_dest";
    else {
      after = asReplay(d);
      if (before.outcome === "allowed" && after.outcome === "denied") kind = "allow_to_deny";
      else if (before.outcome === "denied" && after.outcome === "allowed") kind = "deny_to_allow";
      else if (
        before.rule !== after.rule ||
        (before.verdict !== "forwarded" && before.verdict !== after.verdict)
      ) kind = "rule_changed";
      else kind = "unchanged";
      // A forwarded request's charge and tokens count toward the proposed
      // limits; it settles at once (replay has one request in flight at a time).
      const cost = row.charged_usd ?? row.cost_usd ?? 0;
      const tokens = (row.input_tokens ?? 0) + (row.output_tokens ?? 0);
      if (d.verdict === "deny" || !(cost > 0 || tokens > 0)) state.dropUsage(req.info.id);
      else {
        state.reportUsage(req.info.id, {
          ts: row.ts + Math.round(row.duration_ms ?? 0),
          ...(cost > 0 ? { usd: cost } : {}),
          ...(tokens > 0 ? { tokens } : {}),
          session: row.session,
          host: row.host,
          client: row.client,
          rule: d.rule,
        });
      }
    }
    counts[kind]++;
    const url = urlOf(row);
    const key = JSON.stringify([
      kind,
      row.method,
      url,
      row.session,
      // Different reasons never share a group: one DLP block and four spending
      // denials of the same request are two lines.
      before.verdict,
      before.rule,
      before.policy,
      before.reason,
      after?.verdict,
      after?.rule,
      after?.policy,
      after?.reason,
    ]);
    const seen = exampleKeys.get(key);
    if (seen) seen.count++;
    else if (examples[kind].length < max) {
      const ex: ReplayExample = {
        ts: row.ts,
        count: 1,
        method: row.method,
        url,
        session: row.session,
        before,
        after,
      };
      examples[kind].push(ex);
      exampleKeys.set(key, ex);
    }
  }
  return { total: rows.length, counts, examples, skipped, first, last };
}
