/**
 * The PostgreSQL implementation of the audit's read model
 * ({@link AuditReadModel}): the dashboard, `report`, `replay` and the spend
 * rebuild over the audit every replica writes, so any replica shows the fleet.
 *
 * The answers are those of src/audit/sqlite_read.ts, row for row (the same
 * tests run against both: src/audit/sqlite_read_test.ts). The query text is
 * not shared where SQLite's was shaped around SQLite's planner — loose index
 * scans through recursive CTEs and one count per decision, which PostgreSQL
 * answers better with one hash aggregate over an index range — but the
 * report's GROUP BYs are the same statements, differing only in dialect
 * (`$n` parameters, `coalesce(sum())` for `total()`, booleans). Strings are
 * ordered `COLLATE "C"` (byte order, as SQLite's BINARY), whatever the
 * database's collation.
 *
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import { AUDIT_COLUMNS, parseSpendKeys } from "./event.ts";
import {
  type AuditDetail,
  type AuditPage,
  type AuditQuery,
  AuditReadError,
  type AuditReadModel,
  type AuditRow,
  type AuditRowWithHeaders,
  bucketSize,
  DECISIONS,
  type DenialLine,
  type ErrorLine,
  type FindingRow,
  type HostLine,
  type ModelLine,
  type ReportAggregates,
  type ReportFilter,
  type RuleHits,
  type RuleLine,
  type SessionLine,
  type SessionRow,
  SORT_COLUMNS,
  type SpendRow,
  type Stats,
  type StatsQuery,
  TOTAL_CAP,
} from "./read.ts";
import {
  counts,
  isTunnelRow,
  likeLiteral,
  splitTunnels,
  statsTotals,
  usd,
  ZERO,
} from "./aggregate.ts";
import { pgPool, pgSource, type PgTarget } from "./pg.ts";

type Row = Record<string, unknown>;

const ROW_COLUMNS = AUDIT_COLUMNS.filter((c) => c !== "headers" && c !== "spend_keys");
const ROW_SQL = ROW_COLUMNS.join(", ");

/** Sort columns that are numbers (the others are text, ordered by bytes). */
const NUMERIC_SORT = new Set(["ts", "status", "cost_usd", "duration_ms"]);

/** Byte order for a text column, as SQLite's BINARY collation. */
const C = (col: string) => `${col} COLLATE "C"`;

/** `null` sorts first, then byte order (SQLite's order of a text column). */
function cmpNullFirst(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  return a < b ? -1 : 1;
}

function toRow(r: Row): Omit<AuditRow, "findings_count"> {
  const out: Row = {};
  for (const c of ROW_COLUMNS) out[c] = r[c] ?? null;
  return out as unknown as Omit<AuditRow, "findings_count">;
}

/** Builds a WHERE clause with `$n` parameters. */
class Where {
  parts: string[] = [];
  params: unknown[] = [];
  add(sql: (p: (v: unknown) => string) => string): this {
    this.parts.push(sql((v) => {
      this.params.push(v);
      return `$${this.params.length}`;
    }));
    return this;
  }
  /** A parameter outside the WHERE (LIMIT, OFFSET). */
  p(v: unknown): string {
    this.params.push(v);
    return `$${this.params.length}`;
  }
  sql(extra?: string): string {
    const all = extra ? [...this.parts, extra] : this.parts;
    return all.length ? ` WHERE ${all.join(" AND ")}` : "";
  }
}

/**
 * Read-only queries over a PostgreSQL audit, through a small pool of its own.
 * Failures reject with an {@link AuditReadError} naming the database (never
 * its password).
 *
 * @example
 * ```ts
 * const reader = openPgAuditReader(target, (k) => Deno.env.get(k));
 * const stats = await reader.stats({ hours: 24, session: null }, Date.now());
 * await reader.close();
 * ```
 */
export class PgAuditReader implements AuditReadModel {
  #pool: pg.Pool | null;
  readonly source: string;

  constructor(target: PgTarget, env: (name: string) => string | undefined) {
    this.source = pgSource(target);
    this.#pool = pgPool(target, env, 2);
  }

  async #all(sql: string, params: unknown[] = []): Promise<Row[]> {
    if (this.#pool === null) {
      throw new AuditReadError(`the reader of audit "${this.source}" is closed`, "unreadable");
    }
    try {
      const r = await this.#pool.query(sql, params);
      return r.rows as Row[];
    } catch (e) {
      throw new AuditReadError(
        `cannot read audit "${this.source}": ${(e as Error).message}`,
        "unreadable",
      );
    }
  }

  async #get(sql: string, params: unknown[] = []): Promise<Row | undefined> {
    return (await this.#all(sql, params))[0];
  }

  async close(): Promise<void> {
    const p = this.#pool;
    this.#pool = null;
    await p?.end().catch(() => {});
  }

  async audit(q: AuditQuery): Promise<AuditPage> {
    const w = new Where();
    if (q.host !== null) {
      if (q.host.includes("*")) {
        w.add((p) => `host LIKE ${p(likeLiteral(q.host!).replace(/\*/g, "%"))} ESCAPE '\\'`);
      } else w.add((p) => `host = ${p(q.host)}`);
    }
    if (q.session !== null) w.add((p) => `session = ${p(q.session)}`);
    if (q.rule !== null) w.add((p) => `rule = ${p(q.rule)}`);
    if (q.since !== null) w.add((p) => `ts >= ${p(q.since)}`);
    if (q.until !== null) w.add((p) => `ts <= ${p(q.until)}`);
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
      // SQLite's LIKE ignores ASCII case; ILIKE is PostgreSQL's.
      w.add((p) => {
        const pattern = p(`%${likeLiteral(q.search!)}%`);
        return `(${cols.map((c) => `${c} ILIKE ${pattern} ESCAPE '\\'`).join(" OR ")})`;
      });
    }
    if (q.decisions !== null) w.add((p) => `decision = ANY(${p(q.decisions)}::text[])`);
    if (q.tunnels === true) w.add(() => "method = 'CONNECT'");
    if (q.tunnels === false) w.add(() => "method != 'CONNECT'");
    if (q.model !== null && q.model !== undefined) w.add((p) => `model = ${p(q.model)}`);
    if (q.policy !== null && q.policy !== undefined) w.add((p) => `policy = ${p(q.policy)}`);
    if (q.status !== null && q.status !== undefined) w.add((p) => `status = ${p(q.status)}`);
    const sorted = q.sort && (q.sort.column !== "ts" || q.sort.dir !== "desc") ? q.sort : null;
    if (sorted && !(SORT_COLUMNS as readonly string[]).includes(sorted.column)) {
      throw new AuditReadError(`cannot sort the audit by "${sorted.column}"`, "unreadable");
    }
    // NULLs last either way, ties newest first then by id (SQLite's order); text
    // in byte order. The column name comes from SORT_COLUMNS.
    const col = sorted === null
      ? null
      : NUMERIC_SORT.has(sorted.column)
      ? sorted.column
      : C(sorted.column);
    const order = col === null
      ? "ts DESC"
      : `${sorted!.column} IS NULL, ${col} ${sorted!.dir === "asc" ? "ASC" : "DESC"}, ts DESC, ${
        C("id")
      } DESC`;
    const where = w.sql();
    const countParams = [...w.params];
    const rows = await this.#all(
      `SELECT ${ROW_SQL},
         (SELECT count(*) FROM findings f WHERE f.decision_id = audit.id) AS findings_count
       FROM audit${where} ORDER BY ${order} LIMIT ${w.p(q.limit)} OFFSET ${w.p(q.offset)}`,
      w.params,
    );
    const counted = await this.#get(
      `SELECT count(*) AS n FROM (SELECT 1 FROM audit${where} LIMIT ${TOTAL_CAP + 1}) x`,
      countParams,
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

  async row(id: string): Promise<AuditDetail | null> {
    const r = await this.#get(`SELECT ${ROW_SQL}, headers FROM audit WHERE id = $1`, [id]);
    if (!r) return null;
    let parsed: Record<string, unknown> | null = null;
    if (typeof r.headers === "string") {
      try {
        parsed = JSON.parse(r.headers);
      } catch {
        parsed = { "(unparsed)": r.headers };
      }
    }
    const findings = await this.#all(
      `SELECT id, ts, detector, direction, location, sample, action
       FROM findings WHERE decision_id = $1 ORDER BY id`,
      [id],
    );
    return {
      ...toRow(r),
      headers: parsed,
      findings: findings.map((f) => ({ ...f, id: Number(f.id) })) as AuditDetail["findings"],
    };
  }

  async findings(limit: number, sinceTs: number | null = null): Promise<FindingRow[]> {
    const rows = await this.#all(
      `SELECT id, decision_id, ts, detector, direction, location, sample, action, host
       FROM findings WHERE ts >= $1 ORDER BY ts DESC, id DESC LIMIT $2`,
      [sinceTs ?? 0, limit],
    );
    return rows.map((f) => ({ ...f, id: Number(f.id) })) as unknown as FindingRow[];
  }

  async stats(q: StatsQuery, now: number): Promise<Stats> {
    const until = now;
    const since = now - q.hours * 3_600_000;
    const size = bucketSize(until - since);
    const s = q.session;
    const w = new Where().add((p) => `ts >= ${p(since)}`).add((p) => `ts <= ${p(until)}`);
    if (s !== null) w.add((p) => `session = ${p(s)}`);
    const P = w.params;

    const points: Stats["buckets"]["points"] = [];
    const index = new Map<number, Stats["buckets"]["points"][number]>();
    for (let t = Math.floor(since / size) * size; t <= until; t += size) {
      const p = { ts: t, ...ZERO, tunnels: 0, spend_usd: 0 };
      points.push(p);
      index.set(t, p);
    }
    const bucket = `(ts - (ts % ${size}))`;
    for (
      const r of await this.#all(
        `SELECT ${bucket} AS b, decision, method = 'CONNECT' AS t, count(*) AS n
         FROM audit${w.sql()} GROUP BY 1, 2, 3`,
        P,
      )
    ) {
      const p = index.get(Number(r.b));
      const d = r.decision as typeof DECISIONS[number];
      if (p && (DECISIONS as readonly string[]).includes(d)) {
        // Requests leave tunnels out: they are counted apart.
        if (r.t === true) p.tunnels += Number(r.n);
        else {
          p[d] += Number(r.n);
          p.requests += Number(r.n);
        }
      }
    }
    for (
      const r of await this.#all(
        `SELECT ${bucket} AS b, coalesce(sum(cost_usd), 0) AS c FROM audit${
          w.sql("model IS NOT NULL")
        } GROUP BY 1`,
        P,
      )
    ) {
      const p = index.get(Number(r.b));
      if (p) p.spend_usd = usd(Number(r.c));
    }

    const spendByModel: Stats["spend_by_model"] = (await this.#all(
      `SELECT provider, model, count(*) AS n, coalesce(sum(cost_usd), 0) AS c,
         coalesce(sum(input_tokens), 0) AS i, coalesce(sum(output_tokens), 0) AS o
       FROM audit${w.sql("model IS NOT NULL")} GROUP BY model, provider
       ORDER BY ${C("model")}, ${C("provider")} NULLS FIRST`,
      P,
    )).map((r) => ({
      provider: r.provider as string | null,
      model: r.model as string,
      requests: Number(r.n),
      input_tokens: Number(r.i),
      output_tokens: Number(r.o),
      cost_usd: usd(Number(r.c)),
    }));
    spendByModel.sort((a, b) => b.cost_usd - a.cost_usd || b.requests - a.requests);

    const hosts = await this.#all(
      `SELECT host, count(*) AS n,
         count(*) FILTER (WHERE decision = 'deny' AND method != 'CONNECT') AS deny,
         count(*) FILTER (WHERE decision = 'would_deny' AND method != 'CONNECT') AS would_deny,
         count(*) FILTER (WHERE method = 'CONNECT') AS tunnels,
         count(*) OVER () AS hosts
       FROM audit${w.sql()} GROUP BY host ORDER BY n DESC, ${C("host")} LIMIT 10`,
      P,
    );
    const hostCount = Number(hosts[0]?.hosts ?? 0);
    const topHosts = hosts.map((h) => ({
      host: h.host as string,
      requests: Number(h.n) - Number(h.tunnels),
      deny: Number(h.deny),
      would_deny: Number(h.would_deny),
      tunnels: Number(h.tunnels),
    }));

    const m = new Map<string | null, Stats["top_denied_rules"][number]>();
    for (
      const r of await this.#all(
        `SELECT rule, decision, count(*) AS n, max(ts) AS last FROM audit${
          w.sql("decision IN ('deny', 'would_deny') AND method != 'CONNECT'")
        } GROUP BY rule, decision`,
        P,
      )
    ) {
      const rule = r.rule as string | null;
      let e = m.get(rule);
      if (!e) m.set(rule, e = { rule, deny: 0, would_deny: 0, last_ts: 0 });
      e[r.decision as "deny" | "would_deny"] = Number(r.n);
      e.last_ts = Math.max(e.last_ts, Number(r.last));
    }
    const byRule = [...m.values()].sort((a, b) => cmpNullFirst(a.rule, b.rule));
    byRule.sort((a, b) => b.deny + b.would_deny - (a.deny + a.would_deny) || b.last_ts - a.last_ts);

    const recent = (await this.#all(
      `SELECT id, ts, decision, method, scheme, host, port, path, status, rule, reason, policy,
         session, label
       FROM audit${w.sql("decision IN ('deny', 'would_deny')")} ORDER BY ts DESC LIMIT 20`,
      P,
    )).map((r) => ({ ...r }) as unknown as Stats["recent_denials"][number]);

    const bySession = (await this.#all(
      `SELECT session, count(*) AS n, coalesce(sum(cost_usd), 0) AS c FROM audit${
        w.sql("cost_usd IS NOT NULL")
      } GROUP BY session ORDER BY c DESC, ${C("session")}`,
      P,
    )).map((r) => ({
      session: r.session as string | null,
      label: null as string | null,
      requests: Number(r.n),
      cost_usd: usd(Number(r.c)),
    }));
    let spendBySession = bySession.filter((e) => e.session !== null).slice(0, 10);
    const none = bySession.find((e) => e.session === null);
    if (none) {
      spendBySession.push(none);
      spendBySession.sort((a, b) => b.cost_usd - a.cost_usd);
      spendBySession = spendBySession.slice(0, 10);
    }
    const labels = await this.#labels(
      spendBySession.map((e) => e.session).filter((x): x is string => x !== null),
    );
    for (const e of spendBySession) if (e.session !== null) e.label = labels.get(e.session) ?? null;

    const totals = statsTotals(points, spendByModel, hostCount);
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

  /** The label of each session's latest request. */
  async #labels(sessions: string[]): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    if (sessions.length === 0) return out;
    for (
      const r of await this.#all(
        `SELECT DISTINCT ON (session) session, label FROM audit
         WHERE session = ANY($1::text[]) ORDER BY session, ts DESC`,
        [sessions],
      )
    ) out.set(r.session as string, r.label as string | null);
    return out;
  }

  async sessions(limit: number, sinceTs: number | null): Promise<SessionRow[]> {
    const since = sinceTs ?? 0;
    const last = await this.#all(`SELECT session, max(ts) AS last FROM audit GROUP BY session`);
    const picked = last.map((r) => ({ session: r.session as string | null, last: Number(r.last) }))
      .filter((r) => r.last >= since).sort((a, b) => b.last - a.last).slice(0, limit);
    if (picked.length === 0) return [];
    const c = new Map<string | null, Row>();
    for (
      const r of await this.#all(
        `SELECT session, count(*) AS n, min(ts) AS first, max(ts) AS last,
           count(*) FILTER (WHERE decision = 'deny') AS deny,
           count(*) FILTER (WHERE decision = 'would_deny') AS would_deny,
           coalesce(sum(cost_usd), 0) AS c
         FROM audit WHERE ts >= $1 GROUP BY session`,
        [since],
      )
    ) c.set(r.session as string | null, r);
    const labels = await this.#labels(
      picked.map((p) => p.session).filter((x): x is string => x !== null),
    );
    return picked.map(({ session }) => {
      const r = c.get(session)!;
      return {
        session,
        label: session === null ? null : labels.get(session) ?? null,
        requests: Number(r.n),
        deny: Number(r.deny),
        would_deny: Number(r.would_deny),
        spend_usd: usd(Number(r.c)),
        first_ts: Number(r.first),
        last_ts: Number(r.last),
      };
    });
  }

  async ruleHits(
    names: (string | null)[],
    sinceTs: number | null = null,
  ): Promise<Map<string | null, RuleHits>> {
    const got = new Map<string | null, Row>();
    for (
      const r of await this.#all(
        `SELECT rule, count(*) AS n, count(*) FILTER (WHERE method = 'CONNECT') AS t,
           max(ts) AS last FROM audit
         WHERE ts >= $1 AND decision = ANY($2::text[]) GROUP BY rule`,
        [sinceTs ?? 0, DECISIONS],
      )
    ) got.set(r.rule as string | null, r);
    const out = new Map<string | null, RuleHits>();
    for (const name of names) {
      const r = got.get(name);
      const tunnels = Number(r?.t ?? 0);
      out.set(name, {
        hits: Number(r?.n ?? 0) - tunnels,
        tunnels,
        last_ts: r ? Number(r.last) : null,
      });
    }
    return out;
  }

  async reportAggregates(filter: ReportFilter): Promise<ReportAggregates> {
    const w = new Where();
    if (filter.session !== null) w.add((p) => `session = ${p(filter.session)}`);
    if (filter.since !== null) w.add((p) => `ts >= ${p(filter.since)}`);
    if (filter.until !== null) w.add((p) => `ts <= ${p(filter.until)}`);
    const all = (sql: string) => this.#all(sql, w.params);
    const and = (extra?: string) => w.sql(extra);

    // Tunnels (CONNECT rows) are counted apart from requests: `t` tells them apart.
    const byDecision = await all(
      `SELECT decision, method = 'CONNECT' AS t, count(*) AS n FROM audit${and()}
       GROUP BY decision, t`,
    );
    const span = (await all(`SELECT min(ts) AS a, max(ts) AS b FROM audit${and()}`))[0];
    const hostRows = await all(`SELECT host, decision, method = 'CONNECT' AS t, count(*) AS n
      FROM audit${and()} GROUP BY host, decision, t`);
    const hosts: HostLine[] = splitTunnels(hostRows, (r) => String(r.host))
      .map((l) => ({ host: l.key, ...l.counts, tunnels: l.tunnels }));
    const ruleRows = await all(`SELECT rule, decision, method = 'CONNECT' AS t, count(*) AS n
      FROM audit${and()} GROUP BY rule, decision, t`);
    const rules: RuleLine[] = splitTunnels(ruleRows, (r) => r.rule === null ? null : String(r.rule))
      .map((l) => ({ rule: l.key, ...l.counts, tunnels: l.tunnels }));

    // SQLite takes these bare columns from some row of the group; here, its latest.
    const latest = (c: string) => `(array_agg(${c} ORDER BY ts DESC))[1] AS ${c}`;
    const denials: DenialLine[] = (await all(
      `SELECT decision, count(*) AS n, method, scheme, host, port, path, min(ts) AS first_ts,
         max(ts) AS last_ts, ${latest("status")}, rule, ${latest("rule_source")}, reason,
         ${latest("policy")}
       FROM audit${and("decision IN ('deny', 'would_deny')")}
       GROUP BY decision, method, scheme, host, port, path, rule, reason
       ORDER BY first_ts, ${C("host")}, ${C("path")} NULLS FIRST`,
    )).map((r) => ({
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

    const errors: ErrorLine[] = (await all(
      `SELECT host, reason, error, count(*) AS n
       FROM audit${and("decision = 'error'")} GROUP BY host, reason, error
       ORDER BY n DESC, ${C("host")}, ${C("reason")}`,
    )).map((r) => ({
      host: String(r.host),
      reason: String(r.reason),
      error: r.error === null ? null : String(r.error),
      count: Number(r.n),
    }));

    const models: ModelLine[] = (await all(
      `SELECT provider, model, count(*) AS n, coalesce(sum(input_tokens), 0) AS i,
         coalesce(sum(output_tokens), 0) AS o, coalesce(sum(cost_usd), 0) AS c,
         count(*) FILTER (WHERE cost_usd IS NULL) AS unknown,
         count(*) FILTER (WHERE usage_partial) AS partial
       FROM audit${and("model IS NOT NULL")} GROUP BY provider, model
       ORDER BY c DESC, n DESC, ${C("model")}`,
    )).map((r) => ({
      provider: r.provider === null ? null : String(r.provider),
      model: String(r.model),
      requests: Number(r.n),
      input_tokens: Number(r.i),
      output_tokens: Number(r.o),
      cost_usd: usd(Number(r.c)),
      cost_unknown: Number(r.unknown),
      partial: Number(r.partial),
    }));

    const sessions: SessionLine[] = filter.session !== null ? [] : (await all(
      `SELECT session, max(${C("label")}) AS label, count(*) AS n,
         count(*) FILTER (WHERE decision = 'deny') AS deny,
         count(*) FILTER (WHERE decision = 'would_deny') AS would_deny,
         coalesce(sum(cost_usd), 0) AS c
       FROM audit${and()} GROUP BY session ORDER BY n DESC, ${C("session")} NULLS FIRST`,
    )).map((r) => ({
      session: r.session === null ? null : String(r.session),
      label: r.label === null ? null : String(r.label),
      requests: Number(r.n),
      deny: Number(r.deny),
      would_deny: Number(r.would_deny),
      cost_usd: usd(Number(r.c)),
    }));

    let label: string | null = null;
    if (filter.session !== null) {
      const l = (await all(`SELECT label FROM audit${and("label IS NOT NULL")} LIMIT 1`))[0];
      label = l ? String(l.label) : null;
    }
    return {
      counts: counts(byDecision.filter((r) => !isTunnelRow(r)), () => "").get("") ?? { ...ZERO },
      tunnels: counts(byDecision.filter(isTunnelRow), () => "").get("") ?? { ...ZERO },
      first_ts: span?.a === null || span?.a === undefined ? null : Number(span.a),
      last_ts: span?.b === null || span?.b === undefined ? null : Number(span.b),
      hosts,
      rules,
      denials,
      errors,
      models,
      sessions,
      label,
    };
  }

  async rowsSince(sinceMs: number): Promise<AuditRowWithHeaders[]> {
    return (await this.#all(
      `SELECT ${ROW_SQL}, headers,
         (SELECT count(*) FROM findings f WHERE f.decision_id = audit.id) AS findings_count
       FROM audit WHERE ts >= $1 ORDER BY ts, ${C("id")}`,
      [sinceMs],
    )).map((r) => ({
      ...toRow(r),
      headers: r.headers as string | null,
      findings_count: Number(r.findings_count),
    }));
  }

  async spendRows(sinceMs: number): Promise<SpendRow[]> {
    return (await this.#all(
      `SELECT id, ts, COALESCE(charged_usd, cost_usd) AS usd, session, host, client, rule, spend_keys
       FROM audit WHERE COALESCE(charged_usd, cost_usd) > 0 AND ts > $1`,
      [sinceMs],
    )).map((r) => ({
      id: r.id as string,
      ts: Number(r.ts),
      usd: Number(r.usd),
      session: r.session as string | null,
      host: r.host as string,
      client: r.client as string,
      rule: r.rule as string | null,
      spend_keys: parseSpendKeys(r.spend_keys),
    }));
  }
}

/**
 * A reader of the PostgreSQL audit at `target` (connections opened on use,
 * at most two).
 *
 * @example
 * ```ts
 * const reader = openPgAuditReader(config.audit.postgres!, (k) => Deno.env.get(k));
 * ```
 */
export function openPgAuditReader(
  target: PgTarget,
  env: (name: string) => string | undefined,
): PgAuditReader {
  return new PgAuditReader(target, env);
}
