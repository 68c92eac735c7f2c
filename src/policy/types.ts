/**
 * Shared value types of the policy engine. The engine is sans-IO: the proxy
 * builds a {@link RequestInfo}, the engine returns a {@link Decision}.
 *
 * @module
 */

import type { StateAsk } from "../state/shared.ts";
import type { RecordedFinding, Scanner } from "../dlp/mod.ts";
import type { PathSpelling } from "./path.ts";

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
  /**
   * `http` for plain requests (also inside a CONNECT that carried plain
   * HTTP, and that tunnel's own row), `https` for tunnels and intercepted requests.
   */
  scheme: "http" | "https";
  /** Normalized host: lower-case, no trailing dot, IPv6 without brackets. */
  host: string;
  port: number;
  /**
   * Canonical path without the query (`policy/path.ts`: how the strictest
   * common upstream reads it); null for a CONNECT tunnel (the path is unknown).
   */
  path: string | null;
  /**
   * Set when the raw path has features servers read differently (`//`, dot
   * segments, `;` parameters, `\`, encoded slashes …): the pipeline checks
   * its readings (`limits.ambiguous_paths`). Absent or null otherwise.
   */
  spelling?: PathSpelling | null;
  /** Raw query string without the leading `?` ("" when none). */
  query: string;
  /** Request headers with lower-case names (empty for a tunnel). */
  headers: Record<string, string>;
  /** Parsed JSON body, present only when a matching rule needs it. */
  body?: unknown;
  /**
   * Bytes of the body as read (present once it was read): what a priced LLM
   * call's input tokens are estimated from.
   */
  bodySize?: number;
  /**
   * Where the request goes: known once its name was resolved (by the proxy),
   * or at once for an address literal or a host pinned by `upstream.resolve`.
   * Absent until then.
   */
  dest?: Destination;
  /**
   * The body as text for secret scanning (decompressed, JSON strings
   * unescaped), present only when a `dlp` policy of a matching rule needs it.
   */
  bodyText?: string;
  /**
   * What `bodyText` leaves out (set with it): the part of a body past
   * `limits.max_scan_bytes` or past a decompression limit. A verdict whose
   * rule scanned the body reports it in its `inspection`.
   */
  bodyNotes?: string[];
}

/** The address a request connects to, and what it was chosen from. */
export interface Destination {
  /** The address agentgate connects to (canonical text, IPv4-mapped as IPv4): CEL `dest.ip`. */
  ip: string;
  /** The port it connects to (`upstream.resolve` may change it). */
  port: number;
  /** Every address the name resolved to, in the order they were tried; `ip` is one of them. */
  addresses: string[];
  /** Pinned by the operator in `upstream.resolve`: an explicit choice, not judged by the guard. */
  pinned: boolean;
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
  /**
   * Set when the destination address is needed and `info.dest` is not known
   * yet: a rule matches by address or reads `dest`, or (for the proxy) the
   * request is about to be forwarded and its address must be checked. Not a
   * decision: the caller resolves the name and decides again.
   */
  needsDest?: true;
  /**
   * Why the body or the address is needed: a condition or dlp policy reads the
   * body, the model must be priced, or a rule or the address guard needs the
   * destination.
   */
  needs?: "body" | "model" | "dest" | "state";
  /**
   * With shared state: what the deciding rule's limits ask the backend (set
   * with `needs: "state"`; not a decision, nothing committed). The caller
   * asks and decides again with the answer.
   */
  stateAsk?: StateAsk;
  /** DLP: what to redact and scan for a forwarded request (merged over the rule's dlp policies). */
  dlp?: DlpPlan;
  /** DLP findings (masked) of a blocked request. */
  findings?: RecordedFinding[];
  /**
   * The request is forwarded under a rule with a spending or token limit:
   * its usage must be known, so the LLM layer asks for it in streams
   * (`stream_options.include_usage`) whatever `llm.force_stream_usage` says.
   */
  metered?: true;
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
