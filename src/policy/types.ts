/**
 * Shared value types of the policy engine. The engine is sans-IO: the proxy
 * builds a {@link RequestInfo}, the engine returns a {@link Decision}.
 *
 * @module
 */

import type { RecordedFinding, Scanner } from "../dlp/mod.ts";

/** What the proxy knows about one request when it asks for a decision. */
export interface RequestInfo {
  /** Decision id (also the audit row id and the `X-Agentgate-Decision` header). */
  id: string;
  /** Session id (from `agentgate run` / proxy credentials), or null. */
  session: string | null;
  /** Human label of the session (`--label`), or null. */
  label: string | null;
  /** Client address (IP, without port). */
  client: string;
  /** Upper-case method; `CONNECT` for a tunnel that is not intercepted. */
  method: string;
  /** `http` for plain requests, `https` for tunnels and intercepted requests. */
  scheme: "http" | "https";
  /** Normalized host: lower-case, no trailing dot, IPv6 without brackets. */
  host: string;
  port: number;
  /** Path without the query; null for a CONNECT tunnel (the path is unknown). */
  path: string | null;
  /** Raw query string without the leading `?` ("" when none). */
  query: string;
  /** Request headers with lower-case names (empty for a tunnel). */
  headers: Record<string, string>;
  /** Parsed JSON body, present only when a matching rule needs it. */
  body?: unknown;
  /**
   * The body as text for secret scanning (decompressed, JSON strings
   * unescaped), present only when a `dlp` policy of a matching rule needs it.
   */
  bodyText?: string;
}

/** The verdict of a rule. */
export type Action = "allow" | "deny" | "log";

/** What happens to the request; `would_deny` = deny in `mode: audit`, forwarded. */
export type Verdict = "allow" | "deny" | "log" | "would_deny";

/** A decision is a value: asserted in tests, stored in the audit. */
export interface Decision {
  verdict: Verdict;
  /** Name of the deciding rule; null when the default decided. */
  rule: string | null;
  /** `file:line` of the deciding rule, when it came from a file. */
  ruleSource: string | null;
  /** Stable, human-readable reason. */
  reason: string;
  /** Policy that failed (e.g. `rate_limit`), when a policy decided. */
  policy: string | null;
  /** HTTP status for a deny: 403, or 429 for limits. */
  status: number;
  /** Seconds a client should wait (rate / spending limits). */
  retryAfter: number | null;
  /** Extra JSON-serialisable detail for the deny body (e.g. the key's count). */
  detail?: Record<string, unknown>;
  /**
   * Set when a candidate rule needs the request body and it was not read yet:
   * not a decision. The caller buffers the body and decides again (nothing
   * was committed).
   */
  needsBody?: true;
  /** Why the body is needed: a condition or dlp policy reads it, or the model must be priced. */
  needs?: "body" | "model";
  /** DLP: what to redact and scan for a forwarded request (merged over the rule's dlp policies). */
  dlp?: DlpPlan;
  /** DLP findings (masked) of a blocked request. */
  findings?: RecordedFinding[];
  /** What a policy could not inspect in full (a DLP scan cut by its time budget). */
  inspection?: string[];
}

/** What a DLP finding leads to. */
export type DlpAction = "warn" | "redact" | "block";

/** What the proxy must do for a request a `dlp` policy let through. */
export interface DlpPlan {
  /** Findings of the request (already masked). */
  findings: RecordedFinding[];
  /** Redact the request body (and header values) with this scanner. */
  redactRequest: Scanner | null;
  /** Header names (lower-case) whose values carried a finding to redact. */
  redactHeaders: string[];
  /** Scan the response with this scanner and action. */
  response: { scanner: Scanner; action: DlpAction } | null;
  /** Exceptions, for findings made later (response). */
  allowed(detector: string, where: "header" | "body" | "url", host: string): boolean;
  /** What the request scan could not inspect in full (recorded on the row). */
  inspection?: string[];
}
