/**
 * The report of `agentgate report` and `agentgate run`: what went through
 * the proxy, from an audit database. Building is separate from formatting
 * (`format.ts`): one {@link Report} value, printed as text, markdown or JSON.
 *
 * Everything is aggregated in SQL, so a report over a month of a busy audit
 * reads indexes and groups rows inside SQLite rather than in JavaScript.
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { openAuditDb } from "../audit/store.ts";

/** Identifies the JSON shape of a {@link Report}. */
export const REPORT_FORMAT = "agentgate.report/v1";

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
}

/** Requests to one host. */
export interface HostLine extends DecisionCounts {
  host: string;
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

/** Hits of one rule (`rule` null: no rule decided). */
export interface RuleLine extends DecisionCounts {
  rule: string | null;
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

/** One session's share (only when the report is not about one session). */
export interface SessionLine {
  session: string | null;
  label: string | null;
  requests: number;
  deny: number;
  would_deny: number;
  cost_usd: number;
}

/** Everything a report shows; its JSON form is the `--format json` output. */
export interface Report {
  format: typeof REPORT_FORMAT;
  /** Where the rows came from (an audit file, or a proxy's API). */
  source: string;
  filter: ReportFilter;
  /** The label of the session (when `filter.session` is set and its rows carry one). */
  label: string | null;
  /** Time of the first and last row covered, or null when none. */
  first_ts: number | null;
  last_ts: number | null;
  totals: DecisionCounts & {
    hosts: number;
    llm_requests: number;
    input_tokens: number;
    output_tokens: number;
    cost_usd: number;
    cost_unknown: number;
  };
  /** Most requests first. */
  hosts: HostLine[];
  /** Oldest first. */
  denials: DenialLine[];
  /** Most first. */
  errors: ErrorLine[];
  /** Most hits first. */
  rules: RuleLine[];
  /** Highest cost first. */
  models: ModelLine[];
  /** Most requests first; empty when the report is about one session. */
  sessions: SessionLine[];
  /** Entries left out of each list by the size cap ({@link BuildOptions.maxItems}). */
  truncated: { hosts: number; denials: number; errors: number; rules: number; sessions: number };
}

/** Options of {@link buildReport}. */
export interface BuildOptions {
  /** Name shown as the source (default: the database's file name). */
  source?: string;
  /** Cap of every list (default 1000); what is cut is counted in `truncated`. */
  maxItems?: number;
}

type Row = Record<string, SQLInputValue>;

const ZERO: DecisionCounts = { requests: 0, allow: 0, log: 0, deny: 0, would_deny: 0, error: 0 };

function counts(rows: Row[], keyOf: (r: Row) => string): Map<string, DecisionCounts> {
  const out = new Map<string, DecisionCounts>();
  for (const r of rows) {
    const key = keyOf(r);
    let c = out.get(key);
    if (!c) out.set(key, c = { ...ZERO });
    const n = Number(r.n);
    c.requests += n;
    const d = r.decision as keyof DecisionCounts;
    if (d in c && d !== "requests") c[d] += n;
  }
  return out;
}

/** Sums of floats without binary noise (`0.30000000000000004`). */
function usd(x: number): number {
  return Math.round(x * 1e10) / 1e10;
}

/**
 * Build the report of the rows matching `filter` in an open audit database.
 *
 * @example
 * const db = openAuditForReport("./agentgate.db");
 * const report = buildReport(db, { session: "ci-1a2b3c4d", since: null, until: null });
 * db.close();
 */
export function buildReport(
  db: DatabaseSync,
  filter: ReportFilter,
  opts: BuildOptions = {},
): Report {
  const max = opts.maxItems ?? 1000;
  const where: string[] = [];
  const params: SQLInputValue[] = [];
  if (filter.session !== null) {
    where.push("session = ?");
    params.push(filter.session);
  }
  if (filter.since !== null) {
    where.push("ts >= ?");
    params.push(filter.since);
  }
  if (filter.until !== null) {
    where.push("ts <= ?");
    params.push(filter.until);
  }
  const and = (extra?: string) => {
    const all = extra ? [...where, extra] : where;
    return all.length ? ` WHERE ${all.join(" AND ")}` : "";
  };
  const all = (sql: string) => db.prepare(sql).all(...params) as Row[];
  const hasLlm = columns(db).has("model");

  const byDecision = all(`SELECT decision, count(*) AS n FROM audit${and()} GROUP BY decision`);
  const totalsCounts = counts(byDecision, () => "").get("") ?? { ...ZERO };
  const span = all(`SELECT min(ts) AS a, max(ts) AS b FROM audit${and()}`)[0];

  const hostRows = all(`SELECT host, decision, count(*) AS n FROM audit${and()}
    GROUP BY host, decision`);
  const hostsAll: HostLine[] = [...counts(hostRows, (r) => String(r.host))]
    .map(([host, c]) => ({ host, ...c }))
    .sort((a, b) => b.requests - a.requests || (a.host < b.host ? -1 : 1));

  const denialRows = all(`SELECT decision, count(*) AS n, method, scheme, host, port, path,
      min(ts) AS first_ts, max(ts) AS last_ts, status, rule, rule_source, reason, policy
    FROM audit${and("decision IN ('deny', 'would_deny')")}
    GROUP BY decision, method, scheme, host, port, path, rule, reason
    ORDER BY first_ts, host, path`);
  const denialsAll: DenialLine[] = denialRows.map((r) => ({
    decision: r.decision as DenialLine["decision"],
    count: Number(r.n),
    method: String(r.method),
    scheme: String(r.scheme),
    host: String(r.host),
    port: Number(r.port),
    path: r.path === null ? null : String(r.path),
    status: r.status === null ? null : Number(r.status),
    rule: r.rule === null ? null : String(r.rule),
    rule_source: r.rule_source === null ? null : String(r.rule_source),
    reason: String(r.reason),
    policy: r.policy === null ? null : String(r.policy),
    first_ts: Number(r.first_ts),
    last_ts: Number(r.last_ts),
  }));

  const errorRows = all(`SELECT host, reason, error, count(*) AS n
    FROM audit${and("decision = 'error'")} GROUP BY host, reason, error
    ORDER BY n DESC, host, reason`);
  const errorsAll: ErrorLine[] = errorRows.map((r) => ({
    host: String(r.host),
    reason: String(r.reason),
    error: r.error === null ? null : String(r.error),
    count: Number(r.n),
  }));

  const ruleRows = all(`SELECT rule, decision, count(*) AS n FROM audit${and()}
    GROUP BY rule, decision`);
  const NONE = "\u0000";
  const rulesAll: RuleLine[] = [...counts(ruleRows, (r) => r.rule === null ? NONE : String(r.rule))]
    .map(([rule, c]) => ({ rule: rule === NONE ? null : rule, ...c }))
    .sort((a, b) =>
      b.requests - a.requests ||
      (a.rule === null ? 1 : b.rule === null ? -1 : a.rule < b.rule ? -1 : 1)
    );

  const models: ModelLine[] = hasLlm
    ? all(`SELECT provider, model, count(*) AS n, total(input_tokens) AS i,
          total(output_tokens) AS o, total(cost_usd) AS c,
          count(*) FILTER (WHERE cost_usd IS NULL) AS unknown,
          count(*) FILTER (WHERE usage_partial = 1) AS partial
        FROM audit${and("model IS NOT NULL")} GROUP BY provider, model
        ORDER BY c DESC, n DESC, model`).map((r) => ({
      provider: r.provider === null ? null : String(r.provider),
      model: String(r.model),
      requests: Number(r.n),
      input_tokens: Number(r.i),
      output_tokens: Number(r.o),
      cost_usd: usd(Number(r.c)),
      cost_unknown: Number(r.unknown),
      partial: Number(r.partial),
    }))
    : [];

  const sessionsAll: SessionLine[] = filter.session !== null ? [] : all(
    `SELECT session, max(label) AS label, count(*) AS n,
       count(*) FILTER (WHERE decision = 'deny') AS deny,
       count(*) FILTER (WHERE decision = 'would_deny') AS would_deny,
       ${hasLlm ? "total(cost_usd)" : "0"} AS c
     FROM audit${and()} GROUP BY session ORDER BY n DESC, session`,
  ).map((r) => ({
    session: r.session === null ? null : String(r.session),
    label: r.label === null ? null : String(r.label),
    requests: Number(r.n),
    deny: Number(r.deny),
    would_deny: Number(r.would_deny),
    cost_usd: usd(Number(r.c)),
  }));

  let label: string | null = null;
  if (filter.session !== null) {
    const l = all(`SELECT label FROM audit${and("label IS NOT NULL")} LIMIT 1`)[0];
    label = l ? String(l.label) : null;
  }

  const cut = <T>(xs: T[]): [T[], number] => [xs.slice(0, max), Math.max(0, xs.length - max)];
  const [hosts, hostsCut] = cut(hostsAll);
  const [denials, denialsCut] = cut(denialsAll);
  const [errors, errorsCut] = cut(errorsAll);
  const [rules, rulesCut] = cut(rulesAll);
  const [sessions, sessionsCut] = cut(sessionsAll);
  return {
    format: REPORT_FORMAT,
    source: opts.source ?? "audit",
    filter: { ...filter },
    label,
    first_ts: span?.a === null || span?.a === undefined ? null : Number(span.a),
    last_ts: span?.b === null || span?.b === undefined ? null : Number(span.b),
    totals: {
      ...totalsCounts,
      hosts: hostsAll.length,
      llm_requests: models.reduce((s, m) => s + m.requests, 0),
      input_tokens: models.reduce((s, m) => s + m.input_tokens, 0),
      output_tokens: models.reduce((s, m) => s + m.output_tokens, 0),
      cost_usd: usd(models.reduce((s, m) => s + m.cost_usd, 0)),
      cost_unknown: models.reduce((s, m) => s + m.cost_unknown, 0),
    },
    hosts,
    denials,
    errors,
    rules,
    models,
    sessions,
    truncated: {
      hosts: hostsCut,
      denials: denialsCut,
      errors: errorsCut,
      rules: rulesCut,
      sessions: sessionsCut,
    },
  };
}

function columns(db: DatabaseSync): Set<string> {
  const rows = db.prepare("PRAGMA table_info(audit)").all() as { name: string }[];
  return new Set(rows.map((r) => r.name));
}

/** Thrown when an audit database cannot be read for a report. */
export class ReportSourceError extends Error {
  override name = "ReportSourceError";
}

/**
 * Open an audit database read-only (never creating or migrating it: a report
 * must not change the file it reads).
 *
 * @example
 * const db = openAuditForReport("./agentgate.db");
 */
export function openAuditForReport(path: string): DatabaseSync {
  try {
    Deno.statSync(path);
  } catch {
    throw new ReportSourceError(`no audit database at "${path}"`);
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
    db.exec("PRAGMA busy_timeout = 1000");
  } catch (e) {
    throw new ReportSourceError(`cannot open audit database "${path}": ${(e as Error).message}`);
  }
  try {
    db.prepare("SELECT id, ts, session, decision, host FROM audit LIMIT 0").all();
  } catch (e) {
    db.close();
    throw new ReportSourceError(
      `"${path}" is not an agentgate audit database: ${(e as Error).message}`,
    );
  }
  return db;
}

/**
 * An in-memory audit holding `rows` (objects with audit column names, as the
 * proxy's `/_/api/audit` answers them), to build a report from rows fetched
 * elsewhere. Unknown keys are ignored; missing columns stay NULL.
 *
 * @example
 * const db = auditFromRows(page.items);
 * const report = buildReport(db, { session: null, since: null, until: null });
 */
export function auditFromRows(rows: Record<string, unknown>[]): DatabaseSync {
  const db = openAuditDb(":memory:");
  const known = columns(db);
  db.exec("BEGIN");
  for (const r of rows) {
    const cols = Object.keys(r).filter((k) => known.has(k));
    const values = cols.map((k) => {
      const v = r[k];
      if (typeof v === "boolean") return Number(v);
      if (v === undefined) return null;
      if (typeof v === "object" && v !== null) return JSON.stringify(v);
      return v as SQLInputValue;
    });
    db.prepare(
      `INSERT OR IGNORE INTO audit (${cols.join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`,
    ).run(...values);
  }
  db.exec("COMMIT");
  return db;
}
