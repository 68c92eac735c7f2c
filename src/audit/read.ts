/**
 * The audit's read model: every question the rest of agentgate asks of the
 * audit (the dashboard's API, `report` and `run`'s report, `replay`, the
 * spend ledger rebuilt at start), as one interface, and the shapes of the
 * answers. The SQLite implementation is src/audit/sqlite_read.ts; a second
 * backend (PostgreSQL is planned) implements this interface and nothing
 * else, so no caller changes.
 *
 * Every query returns a Promise. SQLite (`node:sqlite`) answers
 * synchronously, and its implementation does all its work inside the call
 * (the Promise is already settled when returned), so going through `await`
 * costs a microtask and changes no ordering. A PostgreSQL client cannot
 * answer synchronously at all: a synchronous interface would have to be
 * broken again, at every caller, by the second backend. Every caller can
 * await: the dashboard's routes and the report and replay commands are
 * async, and the spend rebuild at start awaits its rows before the ledger
 * is replaced (with SQLite before the proxy can accept a connection; with a
 * network backend the server will have to wait for it before listening).
 *
 * The signatures carry no storage types: filters and answers are plain
 * values, times are ms since the epoch.
 *
 * @example
 * ```ts
 * async function denials(reader: AuditReadModel, session: string) {
 *   const r = await reader.reportAggregates({ session, since: null, until: null });
 *   return r.counts.deny;
 * }
 * ```
 *
 * @module
 */
import type { AuditDecision, AuditEventV1 } from "./event.ts";

/** The decisions an audit row can carry, in display order. */
export const DECISIONS = [
  "allow",
  "log",
  "deny",
  "would_deny",
  "error",
  "challenge",
] as const satisfies readonly AuditDecision[];
/** One of {@link DECISIONS}. */
export type DecisionName = typeof DECISIONS[number];

// --- rows --------------------------------------------------------------------

/**
 * A stored request as readers see it: the event without its headers (large,
 * shown only in a row's detail), its findings (another table; counted here)
 * and its extra spend keys (the ledger's business, see {@link SpendRow}).
 * Every column is present; what an older audit lacks reads as null.
 */
export type AuditRow =
  & Required<Omit<AuditEventV1, "headers" | "findings" | "spend_keys">>
  & {
    /** DLP findings recorded for this request. */
    findings_count: number;
  };

/** A row with its request headers as stored (JSON text, secrets masked; null for a tunnel). */
export type AuditRowWithHeaders = AuditRow & Pick<AuditEventV1, "headers">;

/** A DLP finding (`sample` is masked when it is stored). */
export interface FindingRow {
  id: number;
  decision_id: string;
  ts: number;
  detector: string;
  direction: string;
  location: string;
  sample: string;
  action: string;
  host: string;
}

/** One row in detail: its parsed (redacted) headers and its findings. */
export interface AuditDetail extends Omit<AuditRow, "findings_count"> {
  headers: Record<string, unknown> | null;
  findings: Omit<FindingRow, "decision_id" | "host">[];
}

/** A priced request, as the spend ledger is rebuilt from it at start. */
export interface SpendRow {
  /** The request's id (to tell it apart from the spend journal's entries). */
  id: string;
  ts: number;
  /** What its budgets were charged (`charged_usd`, else `cost_usd` on older rows), always above 0. */
  usd: number;
  session: string | null;
  host: string;
  client: string;
  rule: string | null;
  /** Ledger keys of CEL-keyed budgets it was charged to (empty when none, or unreadable). */
  spend_keys: string[];
}

// --- the audit listing -------------------------------------------------------

/** Filters and page of {@link AuditReadModel.audit}; null means "any". */
export interface AuditQuery {
  limit: number;
  offset: number;
  /** Exact host, or a glob with `*` (`*.openai.com`). */
  host: string | null;
  decisions: DecisionName[] | null;
  session: string | null;
  rule: string | null;
  /** Substring of host, path, query, reason, rule, session, label, error, model, method or id. */
  search: string | null;
  /** Rows with `ts >= since`. */
  since: number | null;
  /** Rows with `ts <= until`. */
  until: number | null;
  /**
   * Tunnels (CONNECT rows) only (true), requests only (false), or both
   * (null, the default).
   */
  tunnels?: boolean | null;
  /** Exact model name (`model` column). */
  model?: string | null;
  /** Exact policy that decided (`rate_limit`, `dlp`, `spending_limit`, …). */
  policy?: string | null;
  /** Exact status sent to the client. */
  status?: number | null;
  /**
   * Order of the listing (default newest first). Ties are broken newest
   * first, then by id descending, so pages never overlap.
   */
  sort?: { column: SortColumn; dir: "asc" | "desc" } | null;
}

/** Columns the audit listing can be sorted by. */
export const SORT_COLUMNS = [
  "ts",
  "decision",
  "method",
  "host",
  "path",
  "status",
  "rule",
  "session",
  "model",
  "cost_usd",
  "duration_ms",
] as const;
/** One of {@link SORT_COLUMNS}. */
export type SortColumn = typeof SORT_COLUMNS[number];

/** Counting matches stops here, so a broad text search stays bounded. */
export const TOTAL_CAP = 100_000;

/** A page of the audit listing, newest first. */
export interface AuditPage {
  items: AuditRow[];
  /** Rows matching the filters (counted up to {@link TOTAL_CAP}). */
  total: number;
  /** True when more than {@link TOTAL_CAP} rows match (`total` is then the cap). */
  total_capped: boolean;
  limit: number;
  offset: number;
}

// --- the overview ------------------------------------------------------------

/** Range and scope of {@link AuditReadModel.stats}. */
export interface StatsQuery {
  /** The hours before `now` covered. */
  hours: number;
  session: string | null;
}

/**
 * Whether a row is a tunnel (a CONNECT: a connection, counted apart from the
 * requests inside it or sent in plain).
 *
 * @example
 * isTunnel({ method: "CONNECT" }) // true
 */
export function isTunnel(row: { method: string }): boolean {
  return row.method === "CONNECT";
}

/**
 * The overview of a time range (the dashboard's `GET /_/api/stats`).
 * Requests and their per-decision counts leave tunnels (CONNECT rows) out:
 * those are counted in `tunnels`. Recent denials include denied tunnels.
 */
export interface Stats {
  hours: number;
  session: string | null;
  /** Range covered: [since, until], ms. */
  since: number;
  until: number;
  totals: {
    /** Requests, tunnels left out (the decisions below sum to it). */
    requests: number;
    /** Tunnels (CONNECT rows) of every decision. */
    tunnels: number;
    allow: number;
    log: number;
    deny: number;
    would_deny: number;
    error: number;
    /** 407 answers to clients that sent no credentials yet (not denials). */
    challenge: number;
    /** Distinct hosts requested in the range (of the session, when filtered by one). */
    hosts: number;
    llm_requests: number;
    input_tokens: number;
    output_tokens: number;
    spend_usd: number;
  };
  /** The ten busiest hosts. */
  top_hosts: {
    host: string;
    requests: number;
    deny: number;
    would_deny: number;
    /** Tunnels to the host (not in `requests`, `deny`, `would_deny`). */
    tunnels: number;
  }[];
  /** Rules that denied most requests (`rule` null = the policy's default); tunnels left out. */
  top_denied_rules: { rule: string | null; deny: number; would_deny: number; last_ts: number }[];
  /** The 20 latest denials and would-be denials. */
  recent_denials: {
    id: string;
    ts: number;
    decision: string;
    method: string;
    scheme: string;
    host: string;
    port: number;
    path: string | null;
    status: number | null;
    rule: string | null;
    reason: string;
    policy: string | null;
    session: string | null;
    label: string | null;
  }[];
  spend_by_model: {
    provider: string | null;
    model: string;
    requests: number;
    input_tokens: number;
    output_tokens: number;
    cost_usd: number;
  }[];
  spend_by_session: {
    session: string | null;
    label: string | null;
    requests: number;
    cost_usd: number;
  }[];
  /** Requests and spend over time, in buckets of {@link bucketSize}. */
  buckets: {
    size_ms: number;
    points: {
      ts: number;
      requests: number;
      allow: number;
      log: number;
      deny: number;
      would_deny: number;
      error: number;
      challenge: number;
      /** Tunnels opened in the bucket (not in `requests`). */
      tunnels: number;
      spend_usd: number;
    }[];
  };
}

const BUCKET_SIZES = [
  60_000,
  300_000,
  600_000,
  900_000,
  1_800_000,
  3_600_000,
  7_200_000,
  10_800_000,
  21_600_000,
  43_200_000,
  86_400_000,
  7 * 86_400_000,
];

/**
 * The bucket size of {@link Stats.buckets} that splits `rangeMs` into at
 * most 60 buckets (part of the contract: every backend buckets alike).
 *
 * @example
 * bucketSize(24 * 3_600_000) // 1_800_000
 */
export function bucketSize(rangeMs: number): number {
  return BUCKET_SIZES.find((s) => rangeMs / s <= 60) ?? BUCKET_SIZES[BUCKET_SIZES.length - 1];
}

/** One session's activity. */
export interface SessionRow {
  session: string | null;
  /** The label of the session's latest request. */
  label: string | null;
  requests: number;
  deny: number;
  would_deny: number;
  spend_usd: number;
  first_ts: number;
  last_ts: number;
}

/** Hit count and last hit of a rule name (`null` = decided by the default). */
export interface RuleHits {
  /** Requests it decided (tunnels left out). */
  hits: number;
  /** Tunnels (CONNECT) it decided. */
  tunnels: number;
  last_ts: number | null;
}

// --- the report --------------------------------------------------------------

/** Which rows a report covers. */
export interface ReportFilter {
  /** Exact session id, or null for every session. */
  session: string | null;
  /** Rows with `ts >= since` (ms), or null. */
  since: number | null;
  /** Rows with `ts <= until` (ms), or null. */
  until: number | null;
}

/** Requests per decision. */
export interface DecisionCounts {
  requests: number;
  allow: number;
  log: number;
  deny: number;
  would_deny: number;
  error: number;
  /** 407 answers to clients that sent no credentials yet (not denials). */
  challenge: number;
}

/** Requests to one host (tunnels left out of the counts). */
export interface HostLine extends DecisionCounts {
  host: string;
  /** Tunnels (CONNECT) to the host. */
  tunnels: number;
}

/** Denials (or would-be denials) of the same request for the same rule and reason. */
export interface DenialLine {
  decision: "deny" | "would_deny";
  /** How many requests were denied this way. */
  count: number;
  method: string;
  scheme: string;
  host: string;
  port: number;
  /** Null for a tunnel (CONNECT). */
  path: string | null;
  status: number | null;
  /** Null when no rule decided (the policy default, proxy authentication). */
  rule: string | null;
  rule_source: string | null;
  reason: string;
  policy: string | null;
  first_ts: number;
  last_ts: number;
}

/** Requests that failed upstream (or were cut), grouped by host and reason. */
export interface ErrorLine {
  host: string;
  reason: string;
  /** Short error code (`upstream dns`, `client abort`), or null. */
  error: string | null;
  count: number;
}

/** Hits of one rule (`rule` null: no rule decided); tunnels left out of the counts. */
export interface RuleLine extends DecisionCounts {
  rule: string | null;
  /** Tunnels (CONNECT) it decided. */
  tunnels: number;
}

/** LLM usage of one model. */
export interface ModelLine {
  provider: string | null;
  model: string;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  /** Sum of the known costs (USD). */
  cost_usd: number;
  /** Requests whose cost is unknown (model without a price): `cost_usd` is a lower bound. */
  cost_unknown: number;
  /** Requests whose usage is a lower bound (stream cut). */
  partial: number;
}

/** One session's share. */
export interface SessionLine {
  session: string | null;
  label: string | null;
  requests: number;
  deny: number;
  would_deny: number;
  cost_usd: number;
}

/**
 * Everything a report aggregates over the rows of a {@link ReportFilter},
 * uncut (the report caps and totals them). Orders are part of the contract
 * where stated; `hosts` and `rules` come in any order.
 */
export interface ReportAggregates {
  /** Requests; tunnels (CONNECT rows) are counted in `tunnels`. */
  counts: DecisionCounts;
  /** Tunnels per decision (`requests`: all tunnels). */
  tunnels: DecisionCounts;
  /** Time of the first and last row covered, or null when none. */
  first_ts: number | null;
  last_ts: number | null;
  hosts: HostLine[];
  rules: RuleLine[];
  /** Oldest first (then host, path). */
  denials: DenialLine[];
  /** Most first (then host, reason). */
  errors: ErrorLine[];
  /** Highest cost first (then most requests, model); empty for an audit without LLM columns. */
  models: ModelLine[];
  /** Most requests first (then session); empty when the filter names a session. */
  sessions: SessionLine[];
  /** A label of the filter's session (null without a session filter or a labelled row). */
  label: string | null;
}

// --- the interface -----------------------------------------------------------

/**
 * Read-only queries over an audit. Implementations never change the audit.
 *
 * @example
 * ```ts
 * const reader = openAuditReader("./agentgate.db");
 * const stats = await reader.stats({ hours: 24, session: null }, Date.now());
 * ```
 */
export interface AuditReadModel {
  /** Where the rows come from, for people: a file path, a URL without credentials. */
  readonly source: string;

  /** A page of rows matching `q`, newest first, with the count of all matches. */
  audit(q: AuditQuery): Promise<AuditPage>;

  /** One row with its headers and findings, or null when there is no such row. */
  row(id: string): Promise<AuditDetail | null>;

  /** DLP findings at or after `sinceTs` (null: all), newest first, at most `limit`. */
  findings(limit: number, sinceTs?: number | null): Promise<FindingRow[]>;

  /** The overview of the `q.hours` before `now`. */
  stats(q: StatsQuery, now: number): Promise<Stats>;

  /**
   * Sessions active at or after `sinceTs` (null: ever), latest activity
   * first, at most `limit`; requests without a session are one line with
   * `session: null`.
   */
  sessions(limit: number, sinceTs: number | null): Promise<SessionRow[]>;

  /** Hits and last hit of each rule name at or after `sinceTs` (key `null`: the default). */
  ruleHits(
    names: (string | null)[],
    sinceTs?: number | null,
  ): Promise<Map<string | null, RuleHits>>;

  /** What a report shows of the rows matching `filter`. */
  reportAggregates(filter: ReportFilter): Promise<ReportAggregates>;

  /** Every row at or after `sinceMs`, oldest first (then by id), with headers: what replay reads. */
  rowsSince(sinceMs: number): Promise<AuditRowWithHeaders[]>;

  /** Rows with a cost above 0 strictly after `sinceMs`, in any order: what the spend ledger is rebuilt from. */
  spendRows(sinceMs: number): Promise<SpendRow[]>;

  /** Release the connection. Queries after it are an error (or, for a lazy reader, reopen). */
  close(): Promise<void>;
}

/**
 * The audit cannot be read: it does not exist, is not an agentgate audit,
 * or the storage refused. `code` says which, for callers that word it.
 */
export class AuditReadError extends Error {
  override name = "AuditReadError";
  constructor(
    message: string,
    readonly code: "not_found" | "not_an_audit" | "unreadable",
  ) {
    super(message);
  }
}
