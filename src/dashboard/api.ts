/**
 * The dashboard's read side: parameter parsing and the SQL behind
 * `/_/api/*`. Reads go through a separate read-only `node:sqlite` connection
 * (WAL lets it read while the proxy's writer commits), opened lazily, with
 * prepared statements cached. A missing database reads as empty.
 *
 * Aggregates over a time range read covering indexes only (see migration v3
 * in src/audit/store.ts) and group by walking an index's distinct keys (a
 * "loose index scan": one seek per host, model or session, then a count over
 * that key's time range) instead of sorting rows into a temporary B-tree, so
 * `stats?hours=24` on a million rows stays in the tens of milliseconds.
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import * as time from "../util/time.ts";
import { didYouMean } from "../config/errors.ts";

/** The decisions an audit row can carry, in display order. */
export const DECISIONS = ["allow", "log", "deny", "would_deny", "error"] as const;
/** One of {@link DECISIONS}. */
export type DecisionName = typeof DECISIONS[number];

/** A query parameter that cannot be used: answered 400 with `message` as the reason. */
export class ParamError extends Error {
  override name = "ParamError";
}

// --- parameters --------------------------------------------------------------

/** Reject parameters an endpoint does not know (a typo should not silently widen a query). */
function checkKnown(params: URLSearchParams, known: readonly string[]): void {
  for (const k of new Set(params.keys())) {
    if (!known.includes(k)) {
      throw new ParamError(
        known.length === 0
          ? `unknown parameter "${k}": this endpoint takes none`
          : `unknown parameter "${k}"${didYouMean(k, [...known])}; known: ${known.join(", ")}`,
      );
    }
  }
}

/** The single value of a parameter (a repeated one is ambiguous), or null when absent/empty. */
function one(params: URLSearchParams, name: string): string | null {
  const all = params.getAll(name);
  if (all.length > 1) throw new ParamError(`parameter "${name}" is given ${all.length} times`);
  const v = all[0];
  return v === undefined || v === "" ? null : v;
}

function int(params: URLSearchParams, name: string, dflt: number, min: number, max: number) {
  const v = one(params, name);
  if (v === null) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new ParamError(`"${name}" must be a whole number from ${min} to ${max}, not "${v}"`);
  }
  return Number(v);
}

function text(params: URLSearchParams, name: string, maxLen = 500): string | null {
  const v = one(params, name);
  if (v !== null && v.length > maxLen) {
    throw new ParamError(`"${name}" is longer than ${maxLen} characters`);
  }
  return v;
}

/**
 * A point in time: ms since the epoch (`1718000000000`), a duration before
 * `now` (`15m`, `1h`, `7d`), or an ISO 8601 date (`2025-06-01T12:00:00Z`);
 * see src/util/time.ts for the grammar.
 *
 * @example
 * parseTime("1h", "since", 7_200_000) // 3_600_000
 */
export function parseTime(v: string, name: string, now: number): number {
  const t = time.parseTime(v, { now });
  if (t.ok) return t.ms;
  throw new ParamError(
    t.problem === "duration"
      ? `"${name}": ${t.detail}`
      : `"${name}" must be ${time.describeTimeForms()}, not "${v}"`,
  );
}

/** Filters and page of `GET /_/api/audit`. */
export interface AuditQuery {
  limit: number;
  offset: number;
  /** Exact host, or a glob with `*` (`*.openai.com`). */
  host: string | null;
  decisions: DecisionName[] | null;
  session: string | null;
  rule: string | null;
  /** Substring of host, path, query, reason, rule, session, label, error, model or id. */
  search: string | null;
  since: number | null;
  until: number | null;
}

const AUDIT_PARAMS = [
  "limit",
  "offset",
  "host",
  "hostname",
  "decision",
  "session",
  "session_id",
  "rule",
  "search",
  "since",
  "until",
] as const;

/**
 * Parse the parameters of `GET /_/api/audit` (`hostname` and `session_id` are
 * accepted as aliases, as @agentreserve/proxy and Bastion name them).
 *
 * @example
 * parseAuditQuery(new URLSearchParams("decision=deny&since=1h"), Date.now())
 */
export function parseAuditQuery(params: URLSearchParams, now: number): AuditQuery {
  checkKnown(params, AUDIT_PARAMS);
  const host = alias(params, "host", "hostname", 253);
  const session = alias(params, "session", "session_id", 500);
  const d = one(params, "decision");
  let decisions: DecisionName[] | null = null;
  if (d !== null) {
    decisions = [];
    for (const part of d.split(",")) {
      const x = part.trim();
      if (!(DECISIONS as readonly string[]).includes(x)) {
        throw new ParamError(
          `"decision" must be one or more of ${DECISIONS.join(", ")} (comma-separated), not "${x}"${
            didYouMean(x, [...DECISIONS])
          }`,
        );
      }
      if (!decisions.includes(x as DecisionName)) decisions.push(x as DecisionName);
    }
  }
  const s = one(params, "since");
  const u = one(params, "until");
  const since = s === null ? null : parseTime(s, "since", now);
  const until = u === null ? null : parseTime(u, "until", now);
  if (since !== null && until !== null && since > until) {
    throw new ParamError(`"since" (${since}) is after "until" (${until})`);
  }
  return {
    limit: int(params, "limit", 50, 1, 1000),
    offset: int(params, "offset", 0, 0, 10_000_000),
    host: host?.toLowerCase() ?? null,
    decisions,
    session,
    rule: text(params, "rule"),
    search: text(params, "search", 200),
    since,
    until,
  };
}

function alias(params: URLSearchParams, name: string, other: string, maxLen: number) {
  const a = text(params, name, maxLen);
  const b = text(params, other, maxLen);
  if (a !== null && b !== null && a !== b) {
    throw new ParamError(`"${name}" and "${other}" name the same filter; give one`);
  }
  return a ?? b;
}

/** Parameters of `GET /_/api/stats`. */
export interface StatsQuery {
  hours: number;
  session: string | null;
}

/**
 * Parse `GET /_/api/stats?hours&session` (`hours` 1–8760, default 24;
 * `session_id` is an alias of `session`).
 */
export function parseStatsQuery(params: URLSearchParams): StatsQuery {
  checkKnown(params, ["hours", "session", "session_id"]);
  return {
    hours: int(params, "hours", 24, 1, 8760),
    session: alias(params, "session", "session_id", 500),
  };
}

/**
 * Parse the small parameter sets of the other endpoints: `limit` (when
 * `limit` gives its default and maximum) and `hours` (when allowed). Any
 * other parameter is a {@link ParamError}.
 *
 * @example
 * parseParams(new URLSearchParams("limit=20"), { limit: [50, 1000], hours: true })
 * // { limit: 20, hours: null }
 */
export function parseParams(
  params: URLSearchParams,
  opts: { limit?: [dflt: number, max: number]; hours?: boolean },
): { limit: number; hours: number | null } {
  checkKnown(params, [...(opts.limit ? ["limit"] : []), ...(opts.hours ? ["hours"] : [])]);
  const hours = opts.hours && one(params, "hours") !== null
    ? int(params, "hours", 24, 1, 87_600)
    : null;
  return { limit: opts.limit ? int(params, "limit", opts.limit[0], 1, opts.limit[1]) : 0, hours };
}

// --- results -----------------------------------------------------------------

/** One row of `GET /_/api/audit` (the audit columns except headers). */
export interface AuditRow {
  id: string;
  ts: number;
  session: string | null;
  label: string | null;
  client: string;
  method: string;
  scheme: string;
  host: string;
  port: number;
  path: string | null;
  query: string | null;
  status: number | null;
  decision: string;
  rule: string | null;
  rule_source: string | null;
  reason: string;
  policy: string | null;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
  error: string | null;
  provider: string | null;
  model: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cache_read_tokens: number | null;
  cache_write_tokens: number | null;
  reasoning_tokens: number | null;
  cost_usd: number | null;
  usage_partial: boolean | null;
  price_unknown: boolean | null;
  /** DLP findings recorded for this request. */
  findings_count: number;
}

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

/** `GET /_/api/audit/:id`: the row, its parsed (redacted) headers and its findings. */
export interface AuditDetail extends Omit<AuditRow, "findings_count"> {
  headers: Record<string, unknown> | null;
  findings: Omit<FindingRow, "decision_id" | "host">[];
}

/** `GET /_/api/audit`. */
export interface AuditPage {
  items: AuditRow[];
  /** Rows matching the filters (counted up to {@link TOTAL_CAP}). */
  total: number;
  /** True when more than {@link TOTAL_CAP} rows match (`total` is then the cap). */
  total_capped: boolean;
  limit: number;
  offset: number;
}

/** Counting matches stops here, so a broad text search stays bounded. */
export const TOTAL_CAP = 100_000;

/** `GET /_/api/stats`. */
export interface Stats {
  hours: number;
  session: string | null;
  /** Range covered: [since, until], ms. */
  since: number;
  until: number;
  totals: {
    requests: number;
    allow: number;
    log: number;
    deny: number;
    would_deny: number;
    error: number;
    /** Distinct hosts requested in the range (0 when filtered by session). */
    hosts: number;
    llm_requests: number;
    input_tokens: number;
    output_tokens: number;
    spend_usd: number;
  };
  top_hosts: { host: string; requests: number; deny: number; would_deny: number }[];
  /** Rules that denied most (`rule` null = the policy's default). */
  top_denied_rules: { rule: string | null; deny: number; would_deny: number; last_ts: number }[];
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
      spend_usd: number;
    }[];
  };
}

/** One line of `GET /_/api/sessions`. */
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
  hits: number;
  last_ts: number | null;
}

// --- the reader --------------------------------------------------------------

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

/** The bucket size that splits `rangeMs` into at most 60 buckets. */
export function bucketSize(rangeMs: number): number {
  return BUCKET_SIZES.find((s) => rangeMs / s <= 60) ?? BUCKET_SIZES[BUCKET_SIZES.length - 1];
}

/** Sums of floats without binary noise (`0.30000000000000004`). */
function usd(x: number): number {
  return Math.round(x * 1e10) / 1e10;
}

const ROW_COLUMNS = `id, ts, session, label, client, method, scheme, host, port, path, query,
  status, decision, rule, rule_source, reason, policy, bytes_in, bytes_out, duration_ms, error,
  provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
  reasoning_tokens, cost_usd, usage_partial, price_unknown`;

type Row = Record<string, SQLInputValue>;

function bool(v: unknown): boolean | null {
  return v === null || v === undefined ? null : Boolean(v);
}

function toRow(r: Row): Omit<AuditRow, "findings_count"> {
  return {
    ...(r as unknown as AuditRow),
    usage_partial: bool(r.usage_partial),
    price_unknown: bool(r.price_unknown),
  };
}

/** Escape LIKE wildcards so user text matches literally (with `ESCAPE '\'`). */
function likeLiteral(s: string): string {
  return s.replace(/[\\%_]/g, (c) => "\\" + c);
}

/**
 * Read-only queries over the audit database.
 *
 * @example
 * const reader = new AuditReader("./agentgate.db");
 * const stats = reader.stats({ hours: 24, session: null }, Date.now());
 */
export class AuditReader {
  #db: DatabaseSync | null = null;
  #stmts = new Map<string, StatementSync>();
  #retryAt = 0;

  constructor(readonly path: string) {}

  /** The connection, or null while the database does not exist (retried at most every 500 ms). */
  #open(): DatabaseSync | null {
    if (this.#db) return this.#db;
    const now = Date.now();
    if (now < this.#retryAt) return null;
    try {
      Deno.statSync(this.path);
      const db = new DatabaseSync(this.path, { readOnly: true });
      // Readers never wait on the writer in WAL mode; this only covers WAL recovery.
      db.exec("PRAGMA busy_timeout = 100");
      // Does it hold an audit yet? (A database the proxy has not migrated reads as empty.)
      db.prepare("SELECT 1 FROM audit LIMIT 0").all();
      db.prepare("SELECT 1 FROM findings LIMIT 0").all();
      this.#db = db;
      return db;
    } catch {
      this.#retryAt = now + 500;
      return null;
    }
  }

  #stmt(sql: string): StatementSync | null {
    const db = this.#open();
    if (!db) return null;
    let st = this.#stmts.get(sql);
    if (!st) {
      st = db.prepare(sql);
      this.#stmts.set(sql, st);
    }
    return st;
  }

  #all(sql: string, ...params: SQLInputValue[]): Row[] {
    const st = this.#stmt(sql);
    return st ? st.all(...params) as Row[] : [];
  }

  #get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    const st = this.#stmt(sql);
    return st ? st.get(...params) as Row | undefined : undefined;
  }

  /** Whether the database could be opened (false: every answer is empty). */
  get available(): boolean {
    return this.#open() !== null;
  }

  /** Close the connection (it reopens on the next query). */
  close(): void {
    this.#stmts.clear();
    this.#db?.close();
    this.#db = null;
  }

  /** `GET /_/api/audit`: newest first. */
  audit(q: AuditQuery): AuditPage {
    const where: string[] = [];
    const params: SQLInputValue[] = [];
    if (q.host !== null) {
      if (q.host.includes("*")) {
        where.push("host LIKE ? ESCAPE '\\'");
        params.push(likeLiteral(q.host).replace(/\*/g, "%"));
      } else {
        where.push("host = ?");
        params.push(q.host);
      }
    }
    if (q.session !== null) {
      where.push("session = ?");
      params.push(q.session);
    }
    if (q.rule !== null) {
      where.push("rule = ?");
      params.push(q.rule);
    }
    if (q.since !== null) {
      where.push("ts >= ?");
      params.push(q.since);
    }
    if (q.until !== null) {
      where.push("ts <= ?");
      params.push(q.until);
    }
    if (q.search !== null) {
      const cols = [
        "id",
        "host",
        "path",
        "query",
        "reason",
        "rule",
        "session",
        "label",
        "error",
        "model",
        "method",
      ];
      where.push(`(${cols.map((c) => `${c} LIKE ? ESCAPE '\\'`).join(" OR ")})`);
      const pattern = `%${likeLiteral(q.search)}%`;
      for (let i = 0; i < cols.length; i++) params.push(pattern);
    }
    // Newest first must come from an index in ts order, not from sorting every
    // match: (decision, ts) and (rule, decision, ts) give that order for one
    // decision, so several decisions (or a rule) are read one branch each and merged.
    const split = q.decisions !== null && q.decisions.length > 1 ||
      q.rule !== null && q.decisions === null;
    let rows: Row[];
    if (split) {
      const branch = `SELECT * FROM (SELECT ${ROW_COLUMNS} FROM audit WHERE decision = ?${
        where.map((c) => ` AND ${c}`).join("")
      } ORDER BY ts DESC LIMIT ?)`;
      const decisions = q.decisions ?? DECISIONS;
      rows = this.#all(
        `SELECT u.*,
           (SELECT count(*) FROM findings f WHERE f.decision_id = u.id) AS findings_count
         FROM (${decisions.map(() => branch).join(" UNION ALL ")}) AS u
         ORDER BY ts DESC LIMIT ? OFFSET ?`,
        ...decisions.flatMap((d) => [d, ...params, q.offset + q.limit]),
        q.limit,
        q.offset,
      );
    } else {
      if (q.decisions !== null) {
        where.push("decision = ?");
        params.push(q.decisions[0]);
      }
      rows = this.#all(
        `SELECT ${ROW_COLUMNS},
           (SELECT count(*) FROM findings f WHERE f.decision_id = audit.id) AS findings_count
         FROM audit ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY ts DESC LIMIT ? OFFSET ?`,
        ...params,
        q.limit,
        q.offset,
      );
    }
    if (split && q.decisions !== null) {
      where.push(`decision IN (${q.decisions.map(() => "?").join(", ")})`);
      params.push(...q.decisions);
    }
    const counted = this.#get(
      `SELECT count(*) AS n FROM (SELECT 1 FROM audit ${
        where.length ? `WHERE ${where.join(" AND ")}` : ""
      } LIMIT ${TOTAL_CAP + 1})`,
      ...params,
    );
    const n = Number(counted?.n ?? 0);
    return {
      items: rows.map((r) => ({ ...toRow(r), findings_count: Number(r.findings_count) })),
      total: Math.min(n, TOTAL_CAP),
      total_capped: n > TOTAL_CAP,
      limit: q.limit,
      offset: q.offset,
    };
  }

  /** `GET /_/api/audit/:id`, or null when there is no such row. */
  row(id: string): AuditDetail | null {
    const r = this.#get(`SELECT ${ROW_COLUMNS}, headers FROM audit WHERE id = ?`, id);
    if (!r) return null;
    const { headers, ...rest } = r;
    let parsed: Record<string, unknown> | null = null;
    if (typeof headers === "string") {
      try {
        parsed = JSON.parse(headers);
      } catch {
        parsed = { "(unparsed)": headers };
      }
    }
    const findings = this.#all(
      `SELECT id, ts, detector, direction, location, sample, action
       FROM findings WHERE decision_id = ? ORDER BY id`,
      id,
    ) as unknown as AuditDetail["findings"];
    return { ...toRow(rest), headers: parsed, findings: findings.map((f) => ({ ...f })) };
  }

  /** `GET /_/api/dlp/recent`: newest findings first. */
  findings(limit: number, sinceTs: number | null = null): FindingRow[] {
    return this.#all(
      `SELECT id, decision_id, ts, detector, direction, location, sample, action, host
       FROM findings WHERE ts >= ? ORDER BY ts DESC, id DESC LIMIT ?`,
      sinceTs ?? 0,
      limit,
    ).map((r) => ({ ...r })) as unknown as FindingRow[];
  }

  /** `GET /_/api/stats` over the `hours` before `now`. */
  stats(q: StatsQuery, now: number): Stats {
    const until = now;
    const since = now - q.hours * 3_600_000;
    const size = bucketSize(until - since);
    const s = q.session;

    // Time buckets (their sums are the totals).
    const points: Stats["buckets"]["points"] = [];
    const bucketSql = s === null
      // Per decision, a count over a range of the (decision, ts) index.
      ? `SELECT ${
        DECISIONS.map((d) =>
          `(SELECT count(*) FROM audit WHERE decision = '${d}' AND ts >= ?1 AND ts < ?2) AS ${d}`
        ).join(", ")
      }`
      // One range of the (session, ts, decision, host) index.
      : `SELECT ${
        DECISIONS.map((d) => `count(*) FILTER (WHERE decision = '${d}') AS ${d}`).join(", ")
      } FROM audit WHERE session = ?3 AND ts >= ?1 AND ts < ?2`;
    for (let t = Math.floor(since / size) * size; t <= until; t += size) {
      const r = this.#get(
        bucketSql,
        Math.max(t, since),
        Math.min(t + size, until + 1),
        ...(s === null ? [] : [s]),
      );
      const p = {
        ts: t,
        requests: 0,
        allow: Number(r?.allow ?? 0),
        log: Number(r?.log ?? 0),
        deny: Number(r?.deny ?? 0),
        would_deny: Number(r?.would_deny ?? 0),
        error: Number(r?.error ?? 0),
        spend_usd: 0,
      };
      p.requests = p.allow + p.log + p.deny + p.would_deny + p.error;
      points.push(p);
    }

    // LLM spend by (model, provider), and per bucket.
    const spendByModel: Stats["spend_by_model"] = [];
    const sessLlm = s === null ? "" : " AND session = ?5";
    for (const pr of this.#llmPairs()) {
      const args = [pr.model, pr.provider] as SQLInputValue[];
      const r = this.#get(
        `SELECT count(*) AS n, total(cost_usd) AS c, total(input_tokens) AS i,
           total(output_tokens) AS o
         FROM audit WHERE model IS NOT NULL AND model = ?1 AND provider IS ?2
           AND ts >= ?3 AND ts <= ?4${sessLlm}`,
        ...args,
        since,
        until,
        ...(s === null ? [] : [s]),
      );
      if (!r || Number(r.n) === 0) continue;
      spendByModel.push({
        provider: pr.provider,
        model: pr.model,
        requests: Number(r.n),
        input_tokens: Number(r.i),
        output_tokens: Number(r.o),
        cost_usd: usd(Number(r.c)),
      });
      if (Number(r.c) === 0) continue;
      for (const p of points) {
        const b = this.#get(
          `SELECT total(cost_usd) AS c FROM audit
           WHERE model IS NOT NULL AND model = ?1 AND provider IS ?2 AND ts >= ?3 AND ts < ?4${sessLlm}`,
          ...args,
          Math.max(p.ts, since),
          Math.min(p.ts + size, until + 1),
          ...(s === null ? [] : [s]),
        );
        p.spend_usd += Number(b?.c ?? 0);
      }
    }
    for (const p of points) p.spend_usd = usd(p.spend_usd);
    spendByModel.sort((a, b) => b.cost_usd - a.cost_usd || b.requests - a.requests);

    // Hosts.
    let topHosts: Stats["top_hosts"];
    let hostCount: number;
    if (s === null) {
      // One seek per distinct host in (host, ts, decision), a count over its range...
      const hosts = this.#all(
        `WITH RECURSIVE h(host) AS (
           SELECT min(host) FROM audit
           UNION ALL
           SELECT (SELECT min(host) FROM audit WHERE host > h.host) FROM h WHERE h.host IS NOT NULL),
         c AS MATERIALIZED (
           SELECT host, (SELECT count(*) FROM audit a WHERE a.host = h.host
                           AND a.ts >= ?1 AND a.ts <= ?2) AS n
           FROM h WHERE host IS NOT NULL)
         SELECT host, n, count(*) OVER () AS hosts FROM c WHERE n > 0
         ORDER BY n DESC, host LIMIT 10`,
        since,
        until,
      );
      hostCount = Number(hosts[0]?.hosts ?? 0);
      // ...and the denials of the ten busiest, from the same index.
      topHosts = hosts.map((h) => {
        const d = this.#get(
          `SELECT count(*) FILTER (WHERE decision = 'deny') AS deny,
             count(*) FILTER (WHERE decision = 'would_deny') AS would_deny
           FROM audit WHERE host = ? AND ts >= ? AND ts <= ?`,
          h.host,
          since,
          until,
        );
        return {
          host: h.host as string,
          requests: Number(h.n),
          deny: Number(d?.deny ?? 0),
          would_deny: Number(d?.would_deny ?? 0),
        };
      });
    } else {
      const hosts = this.#all(
        `SELECT host, count(*) AS n, count(*) FILTER (WHERE decision = 'deny') AS deny,
           count(*) FILTER (WHERE decision = 'would_deny') AS would_deny,
           count(*) OVER () AS hosts
         FROM audit WHERE session = ?3 AND ts >= ?1 AND ts <= ?2
         GROUP BY host ORDER BY n DESC, host LIMIT 10`,
        since,
        until,
        s,
      );
      hostCount = Number(hosts[0]?.hosts ?? 0);
      topHosts = hosts.map((h) => ({
        host: h.host as string,
        requests: Number(h.n),
        deny: Number(h.deny),
        would_deny: Number(h.would_deny),
      }));
    }

    // Rules that denied.
    const byRule: Stats["top_denied_rules"] = [];
    if (s === null) {
      // Per distinct rule, counts over exact ranges of (rule, decision, ts).
      for (const rule of this.#ruleNames()) {
        const e = { rule, deny: 0, would_deny: 0, last_ts: 0 };
        for (const d of ["deny", "would_deny"] as const) {
          const r = this.#get(
            `SELECT count(*) AS n, max(ts) AS last FROM audit
             WHERE rule IS ? AND decision = ? AND ts >= ? AND ts <= ?`,
            rule,
            d,
            since,
            until,
          );
          e[d] = Number(r?.n ?? 0);
          if (e[d] > 0) e.last_ts = Math.max(e.last_ts, Number(r!.last));
        }
        if (e.deny + e.would_deny > 0) byRule.push(e);
      }
    } else {
      const m = new Map<string | null, Stats["top_denied_rules"][number]>();
      for (
        const r of this.#all(
          `SELECT rule, decision, count(*) AS n, max(ts) AS last FROM audit
           WHERE session = ? AND decision IN ('deny', 'would_deny') AND ts >= ? AND ts <= ?
           GROUP BY rule, decision`,
          s,
          since,
          until,
        )
      ) {
        const rule = r.rule as string | null;
        let e = m.get(rule);
        if (!e) m.set(rule, e = { rule, deny: 0, would_deny: 0, last_ts: 0 });
        e[r.decision as "deny" | "would_deny"] = Number(r.n);
        e.last_ts = Math.max(e.last_ts, Number(r.last));
      }
      byRule.push(...m.values());
    }
    byRule.sort((a, b) => b.deny + b.would_deny - (a.deny + a.would_deny) || b.last_ts - a.last_ts);

    // Latest denials: newest of each decision from its index, merged.
    const recent = (["deny", "would_deny"] as const).flatMap((d) =>
      this.#all(
        `SELECT id, ts, decision, method, scheme, host, port, path, status, rule, reason, policy,
           session, label
         FROM audit WHERE decision = ? AND ts >= ? AND ts <= ?${
          s === null ? "" : " AND session = ?"
        }
         ORDER BY ts DESC LIMIT 20`,
        d,
        since,
        until,
        ...(s === null ? [] : [s]),
      ).map((r) => ({ ...r }) as unknown as Stats["recent_denials"][number])
    ).sort((a, b) => b.ts - a.ts).slice(0, 20);

    // Spend by session: one seek per distinct session of the (session, ts, cost_usd) index.
    let spendBySession: Stats["spend_by_session"] = [];
    const sessionSpend = (session: string | null) => {
      const r = this.#get(
        `SELECT count(*) AS n, total(cost_usd) AS c FROM audit
         WHERE session IS ?1 AND cost_usd IS NOT NULL AND ts >= ?2 AND ts <= ?3`,
        session,
        since,
        until,
      );
      return r && Number(r.n) > 0
        ? { session, label: null, requests: Number(r.n), cost_usd: usd(Number(r.c)) }
        : null;
    };
    if (s === null) {
      spendBySession = this.#all(
        `WITH RECURSIVE x(session) AS (
           SELECT min(session) FROM audit WHERE cost_usd IS NOT NULL AND session IS NOT NULL
           UNION ALL
           SELECT (SELECT min(session) FROM audit WHERE cost_usd IS NOT NULL AND session > x.session)
           FROM x WHERE x.session IS NOT NULL),
         c AS MATERIALIZED (
           SELECT session,
             (SELECT count(*) FROM audit a WHERE a.session = x.session AND a.cost_usd IS NOT NULL
                AND a.ts >= ?1 AND a.ts <= ?2) AS n,
             (SELECT total(cost_usd) FROM audit a WHERE a.session = x.session
                AND a.cost_usd IS NOT NULL AND a.ts >= ?1 AND a.ts <= ?2) AS c
           FROM x WHERE session IS NOT NULL)
         SELECT session, n, c FROM c WHERE n > 0 ORDER BY c DESC, session LIMIT 10`,
        since,
        until,
      ).map((r) => ({
        session: r.session as string,
        label: null,
        requests: Number(r.n),
        cost_usd: usd(Number(r.c)),
      }));
      const none = sessionSpend(null);
      if (none) {
        spendBySession.push(none);
        spendBySession.sort((a, b) => b.cost_usd - a.cost_usd);
        spendBySession = spendBySession.slice(0, 10);
      }
    } else {
      const one = sessionSpend(s);
      if (one) spendBySession.push(one);
    }
    for (const e of spendBySession) if (e.session !== null) e.label = this.#label(e.session);

    const totals: Stats["totals"] = {
      requests: 0,
      allow: 0,
      log: 0,
      deny: 0,
      would_deny: 0,
      error: 0,
      hosts: hostCount,
      llm_requests: 0,
      input_tokens: 0,
      output_tokens: 0,
      spend_usd: 0,
    };
    for (const p of points) {
      for (const d of DECISIONS) totals[d] += p[d];
      totals.requests += p.requests;
    }
    for (const m of spendByModel) {
      totals.llm_requests += m.requests;
      totals.input_tokens += m.input_tokens;
      totals.output_tokens += m.output_tokens;
      totals.spend_usd += m.cost_usd;
    }
    totals.spend_usd = usd(totals.spend_usd);
    return {
      hours: q.hours,
      session: s,
      since,
      until,
      totals,
      top_hosts: topHosts,
      top_denied_rules: byRule.slice(0, 10),
      recent_denials: recent,
      spend_by_model: spendByModel,
      spend_by_session: spendBySession,
      buckets: { size_ms: size, points },
    };
  }

  /** Distinct values of `rule` (null first when present), one seek each in the rule index. */
  #ruleNames(): (string | null)[] {
    const out: (string | null)[] = [];
    if (this.#get("SELECT 1 AS x FROM audit WHERE rule IS NULL LIMIT 1")) out.push(null);
    let cur = this.#get("SELECT min(rule) AS r FROM audit WHERE rule IS NOT NULL");
    while (cur && cur.r !== null && out.length < 100_000) {
      out.push(cur.r as string);
      cur = this.#get("SELECT min(rule) AS r FROM audit WHERE rule > ?", cur.r);
    }
    return out;
  }

  /**
   * The distinct (model, provider) pairs of the LLM index, one seek each
   * (a loose index scan: there are few of them, and many rows).
   */
  #llmPairs(): { model: string; provider: string | null }[] {
    const out: { model: string; provider: string | null }[] = [];
    let cur = this.#get(
      `SELECT model, provider FROM audit WHERE model IS NOT NULL
       ORDER BY model, provider LIMIT 1`,
    );
    while (cur && out.length < 10_000) {
      const model = cur.model as string;
      const provider = cur.provider as string | null;
      out.push({ model, provider });
      const p = provider === null
        ? this.#get(
          `SELECT provider FROM audit WHERE model IS NOT NULL AND model = ? AND provider IS NOT NULL
           ORDER BY provider LIMIT 1`,
          model,
        )
        : this.#get(
          `SELECT provider FROM audit WHERE model IS NOT NULL AND model = ? AND provider > ?
           ORDER BY provider LIMIT 1`,
          model,
          provider,
        );
      cur = p ? { model, provider: p.provider } : this.#get(
        `SELECT model, provider FROM audit WHERE model IS NOT NULL AND model > ?
         ORDER BY model, provider LIMIT 1`,
        model,
      );
    }
    return out;
  }

  /** The label of a session's latest request. */
  #label(session: string): string | null {
    const r = this.#get(
      "SELECT label FROM audit WHERE session = ? ORDER BY ts DESC LIMIT 1",
      session,
    );
    return (r?.label as string | null | undefined) ?? null;
  }

  /**
   * `GET /_/api/sessions`: sessions by last activity, newest first (requests
   * without a session are one line with `session: null`).
   */
  sessions(limit: number, sinceTs: number | null): SessionRow[] {
    const since = sinceTs ?? 0;
    const rows = this.#all(
      `WITH RECURSIVE x(session) AS (
         SELECT min(session) FROM audit
         UNION ALL
         SELECT (SELECT min(session) FROM audit WHERE session > x.session)
         FROM x WHERE x.session IS NOT NULL)
       SELECT session,
         (SELECT max(ts) FROM audit a WHERE a.session = x.session) AS last_ts
       FROM x WHERE session IS NOT NULL`,
    );
    const none = this.#get(
      "SELECT max(ts) AS last_ts FROM audit WHERE session IS NULL",
    );
    const all = rows.map((r) => ({ session: r.session as string | null, last: Number(r.last_ts) }));
    if (none && none.last_ts !== null) all.push({ session: null, last: Number(none.last_ts) });
    const picked = all.filter((r) => r.last >= since).sort((a, b) => b.last - a.last).slice(
      0,
      limit,
    );
    // One pass over each session's range of (session, ts, decision, host), and
    // one over its priced calls in (session, ts, cost_usd).
    return picked.map(({ session }) => {
      const c = this.#get(
        `SELECT count(*) AS n, min(ts) AS first, max(ts) AS last,
           count(*) FILTER (WHERE decision = 'deny') AS deny,
           count(*) FILTER (WHERE decision = 'would_deny') AS would_deny
         FROM audit WHERE session IS ?1 AND ts >= ?2`,
        session,
        since,
      )!;
      const spend = this.#get(
        `SELECT total(cost_usd) AS c FROM audit
         WHERE session IS ?1 AND cost_usd IS NOT NULL AND ts >= ?2`,
        session,
        since,
      );
      return {
        session,
        label: session === null ? null : this.#label(session),
        requests: Number(c.n),
        deny: Number(c.deny),
        would_deny: Number(c.would_deny),
        spend_usd: usd(Number(spend?.c ?? 0)),
        first_ts: Number(c.first),
        last_ts: Number(c.last),
      };
    });
  }

  /** Hits and last hit of each rule name (key `null`: decided by the default). */
  ruleHits(names: (string | null)[], sinceTs: number | null = null): Map<string | null, RuleHits> {
    // Exact ranges of (rule, decision, ts), one per decision.
    const sql = `SELECT ${
      DECISIONS.map((d) =>
        `(SELECT count(*) FROM audit WHERE rule IS ?1 AND decision = '${d}' AND ts >= ?2)`
      ).join(" + ")
    } AS n, max(${
      DECISIONS.map((d) =>
        `coalesce((SELECT max(ts) FROM audit WHERE rule IS ?1 AND decision = '${d}' AND ts >= ?2), 0)`
      ).join(", ")
    }) AS last`;
    const out = new Map<string | null, RuleHits>();
    for (const name of names) {
      const r = this.#get(sql, name, sinceTs ?? 0);
      const last = Number(r?.last ?? 0);
      out.set(name, { hits: Number(r?.n ?? 0), last_ts: last > 0 ? last : null });
    }
    return out;
  }
}
