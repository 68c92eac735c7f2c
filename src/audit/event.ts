/**
 * The audit row: one per request on every exit path, versioned so readers
 * (dashboard, replay, report) know what they get.
 *
 * @module
 */

/** What finally happened to a request. */
export type AuditDecision = "allow" | "deny" | "log" | "would_deny" | "error";

/** Version 1 of the audit event (the `audit` table's row). */
export interface AuditEventV1 {
  /** Decision id (`X-Agentgate-Decision`). */
  id: string;
  /** ms since epoch, when the request arrived. */
  ts: number;
  session: string | null;
  label: string | null;
  client: string;
  method: string;
  scheme: string;
  host: string;
  port: number;
  /** Path without query; null for a tunnel. */
  path: string | null;
  /** Query string with credentials masked; null when none. */
  query: string | null;
  /** Status sent to the client (null when none was sent). */
  status: number | null;
  decision: AuditDecision;
  rule: string | null;
  /** `file:line` of the rule. */
  rule_source: string | null;
  reason: string;
  /** The policy that decided (e.g. `rate_limit`), if any. */
  policy: string | null;
  /** Request body bytes received from the client (tunnel: client -> upstream). */
  bytes_in: number;
  /** Response bytes sent to the client (tunnel: upstream -> client). */
  bytes_out: number;
  duration_ms: number;
  /** What went wrong (upstream error, client abort), or null. */
  error: string | null;
  /** Request headers as JSON, secrets masked; null for tunnels. */
  headers: string | null;
}
