/**
 * The audit row: one per request on every exit path, versioned so readers
 * (dashboard, replay, report) know what they get.
 *
 * @module
 */
import type { RecordedFinding } from "../dlp/mod.ts";

/**
 * What finally happened to a request. `challenge` is a 407 answered to a
 * client that sent no credentials (git/libcurl, .NET and Java send them only
 * after it): not a denial, and never a session's.
 */
export type AuditDecision = "allow" | "deny" | "log" | "would_deny" | "error" | "challenge";

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
  /** LLM provider wire format (`openai`, `anthropic`, `gemini`) when usage was read. */
  provider?: string | null;
  model?: string | null;
  /** Prompt-side tokens including cache reads and writes. */
  input_tokens?: number | null;
  /** Output tokens including reasoning. */
  output_tokens?: number | null;
  cache_read_tokens?: number | null;
  cache_write_tokens?: number | null;
  reasoning_tokens?: number | null;
  /** USD; null when unknown (never 0 for an unknown price). */
  cost_usd?: number | null;
  /** True when the stream was cut and the counts are a lower bound. */
  usage_partial?: boolean | null;
  /** True when the model has no known price. */
  price_unknown?: boolean | null;
  /**
   * Where the cost came from: `provider` (the provider's own report, e.g.
   * OpenRouter's `usage.cost`), `config` (`llm.prices`) or `genai-prices`
   * (the bundled price data); null when nothing was priced.
   */
  price_source?: "provider" | "config" | "genai-prices" | null;
  /**
   * True when the price lacked something the usage shows (a service tier,
   * audio, a server-side tool, a long-context tier): `cost_usd` prices the
   * rest and is a lower bound.
   */
  price_incomplete?: boolean | null;
  /** What the price lacked, e.g. `service tier "priority", web searches`; null when complete. */
  price_missing?: string | null;
  /** The service tier the provider reports (`default`, `priority`, `flex`, `standard`, `batch`, …). */
  service_tier?: string | null;
  /**
   * Budgets the cost was charged to besides the built-in keys (global, host,
   * session, client, rule): the ledger keys of CEL-keyed spending limits.
   * Stored as a JSON array; read back when the ledger is rebuilt at start.
   */
  spend_keys?: string[] | null;
  /**
   * USD a priced call held against its budgets while in flight (its worst
   * case: input estimated from the body, output from its cap); null when it
   * reserved nothing.
   */
  reserved_usd?: number | null;
  /**
   * USD its budgets were charged when it settled: `cost_usd`, or the
   * reservation when the response carried no usable usage; null when nothing
   * was charged. Budgets are rebuilt from it at start.
   */
  charged_usd?: number | null;
  /**
   * The address the request's host resolved to and agentgate connected to
   * (or, when the address guard denied it, the address it refused); null when
   * no address was looked up (a request denied by name, a DNS failure).
   */
  dest_ip?: string | null;
  /**
   * What agentgate did not inspect in full, or null: a body whose inflation
   * stopped at a limit before usage or DLP read it all, a DLP scan cut by its
   * time budget or size cap, a compressed response DLP could not read. The
   * traffic itself was not changed by it. Notes are joined with "; ".
   */
  inspection?: string | null;
  /** DLP findings (masked samples only), stored in the `findings` table. */
  findings?: AuditFinding[];
}

/** One DLP finding as stored in the `findings` table (declared by the DLP library). */
export type AuditFinding = RecordedFinding;

/**
 * The stored `spend_keys` column (a JSON array of strings, as the writer
 * stores it) as keys; anything else (NULL, a row from another tool, a
 * damaged value) as none.
 *
 * @example
 * parseSpendKeys('["rule:openai:team:a"]') // ["rule:openai:team:a"]
 */
export function parseSpendKeys(json: unknown): string[] {
  if (typeof json !== "string") return [];
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) && v.every((k) => typeof k === "string") ? v : [];
  } catch {
    return [];
  }
}

/**
 * The `audit` table's columns in insert order (the findings live in their
 * own table). Readers take theirs from this list.
 */
export const AUDIT_COLUMNS = [
  "id",
  "ts",
  "session",
  "label",
  "client",
  "method",
  "scheme",
  "host",
  "port",
  "path",
  "query",
  "status",
  "decision",
  "rule",
  "rule_source",
  "reason",
  "policy",
  "bytes_in",
  "bytes_out",
  "duration_ms",
  "error",
  "headers",
  "provider",
  "model",
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "reasoning_tokens",
  "cost_usd",
  "usage_partial",
  "price_unknown",
  "spend_keys",
  "price_source",
  "price_incomplete",
  "price_missing",
  "service_tier",
  "reserved_usd",
  "charged_usd",
  "dest_ip",
  "inspection",
] as const satisfies readonly (keyof AuditEventV1)[];
