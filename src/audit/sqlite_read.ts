/**
 * The SQLite implementation of the audit's read model ({@link AuditReadModel}),
 * over `node:sqlite`. Reads go through their own read-only connection (WAL
 * lets it read while the proxy's writer commits) with prepared statements
 * cached, except `AuditStore.reader()` and an in-memory audit, which read
 * through the connection that holds the rows.
 *
 * Aggregates over a time range read covering indexes only (see migration v3
 * in src/audit/store.ts) and group by walking an index's distinct keys (a
 * "loose index scan": one seek per host, model or session, then a count over
 * that key's time range) instead of sorting rows into a temporary B-tree, so
 * `stats` over 24 hours of a million rows stays in the tens of milliseconds.
 *
 * Audits written by older versions are read as they are, never migrated:
 * columns they lack read as null, a missing `findings` table as no findings.
 * The report's aggregates, rows and spend rows work on any version; the
 * dashboard's overview needs schema v2 (LLM columns).
 *
 * @module
 */
import { AUDIT_COLUMNS, parseSpendKeys } from "./event.ts";
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
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

/** The columns of an {@link AuditRow}, in the order the API has always answered them. */
const ROW_COLUMNS = AUDIT_COLUMNS.filter(
  (c): c is Exclude<typeof AUDIT_COLUMNS[number], "headers" | "spend_keys"> =>
    c !== "headers" && c !== "spend_keys",
);

// A column added to the event must be read here too (this fails to compile until it is).
const _everyColumn: Exclude<keyof AuditRow, typeof ROW_COLUMNS[number] | "findings_count"> extends
  never ? true : false = true;

type Row = Record<string, SQLInputValue>;

function bool(v: unknown): boolean | null {
  return v === null || v === undefined ? null : Boolean(v);
}

function toRow(r: Row): Omit<AuditRow, "findings_count"> {
  return {
    ...(r as unknown as AuditRow),
    usage_partial: bool(r.usage_partial),
    price_unknown: bool(r.price_unknown),
    price_incomplete: bool(r.price_incomplete),
  };
}

/** What a connection's audit holds: its columns, and whether findings are stored. */
interface Schema {
  columns: Set<string>;
  findings: boolean;
}

function schemaOf(db: DatabaseSync): Schema {
  const cols = db.prepare("PRAGMA table_info(audit)").all() as { name: string }[];
  const findings = db.prepare(
    "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'findings'",
  ).get();
  return { columns: new Set(cols.map((c) => c.name)), findings: findings !== undefined };
}

/** How a reader gets its connection. */
type Source =
  /** Opened on first use, read-only; a missing (or not yet migrated) database reads as empty. */
  | { kind: "lazy"; path: string }
  /** Given, open; `owned`: closed with the reader. */
  | { kind: "open"; db: DatabaseSync; owned: boolean };

/**
 * Read-only queries over a SQLite audit. Get one from {@link openAuditReader}
 * (the dashboard: lazy, a missing file reads as empty), {@link openAuditFile}
 * (report, replay: the file must be an audit), `AuditStore.reader()` or
 * `auditFromRows()` (src/audit/memory.ts).
 *
 * Every query runs synchronously inside the call (node:sqlite has no other
 * mode) and returns a settled Promise; failures reject with an
 * {@link AuditReadError}.
 *
 * @example
 * ```ts
 * const reader = openAuditReader("./agentgate.db");
 * const stats = await reader.stats({ hours: 24, session: null }, Date.now());
 * await reader.close();
 * ```
 */
export class SqliteAuditReader implements AuditReadModel {
  #db: DatabaseSync | null = null;
  #owned = true;
  #lazyPath: string | null = null;
  #schema: Schema | null = null;
  #stmts = new Map<string, StatementSync>();
  #retryAt = 0;
  /** Why the last lazy open failed, when the file exists (null: missing, or not an audit yet). */
  #openError: string | null = null;

  private constructor(readonly source: string, how: Source) {
    if (how.kind === "lazy") {
      this.#lazyPath = how.path;
    } else {
      this.#db = how.db;
      this.#owned = how.owned;
      this.#schema = schemaOf(how.db);
    }
  }

  /** @internal Use {@link openAuditReader}, {@link openAuditFile} or {@link sqliteReaderOver}. */
  static create(source: string, how: Source): SqliteAuditReader {
    return new SqliteAuditReader(source, how);
  }

  /**
   * The connection, or null while a lazy reader's database does not exist or
   * cannot be opened (retried at most every 500 ms, not on every request).
   */
  #open(): DatabaseSync | null {
    if (this.#db) return this.#db;
    const path = this.#lazyPath;
    if (path === null) {
      throw new AuditReadError(`the reader of audit "${this.source}" is closed`, "unreadable");
    }
    const now = Date.now();
    if (now < this.#retryAt) return null;
    this.#retryAt = now + 500;
    try {
      Deno.statSync(path);
    } catch {
      this.#openError = null; // nothing to read yet
      return null;
    }
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(path, { readOnly: true });
      // Readers never wait on the writer in WAL mode; this only covers WAL recovery.
      db.exec("PRAGMA busy_timeout = 100");
      const schema = schemaOf(db);
      if (!schema.columns.has("id") || !schema.findings) {
        // A database the proxy has not migrated yet reads as empty.
        db.close();
        this.#openError = null;
        return null;
      }
      this.#db = db;
      this.#schema = schema;
      this.#openError = null;
      this.#retryAt = 0;
      return db;
    } catch (e) {
      db?.close();
      this.#openError = (e as Error).message;
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

  /** A column by name, or NULL under its name when this audit predates it. */
  #column(name: string): string {
    return this.#schema === null || this.#schema.columns.has(name) ? name : `NULL AS ${name}`;
  }

  #rowColumns(): string {
    return ROW_COLUMNS.map((c) => this.#column(c)).join(", ");
  }

  /** The findings of the row aliased `alias`, counted (0 when the audit stores none). */
  #findingsCount(alias: string): string {
    return this.#schema?.findings === false
      ? "0"
      : `(SELECT count(*) FROM findings f WHERE f.decision_id = ${alias}.id)`;
  }

  /** Run a query; what SQLite throws becomes an {@link AuditReadError} naming the audit. */
  #answer<T>(query: () => T): Promise<T> {
    try {
      // Opened first: the SQL depends on the columns this audit has.
      this.#open();
      return Promise.resolve(query());
    } catch (e) {
      if (e instanceof AuditReadError) return Promise.reject(e);
      return Promise.reject(
        new AuditReadError(
          `cannot read audit "${this.source}": ${(e as Error).message}`,
          "unreadable",
        ),
      );
    }
  }

  /** Whether the database could be opened (false: every answer is empty). */
  get available(): boolean {
    return this.#open() !== null;
  }

  /** Close the connection (a lazy reader reopens it on its next query). */
  close(): Promise<void> {
    this.#stmts.clear();
    if (this.#owned) this.#db?.close();
    this.#db = null;
    this.#schema = null;
    return Promise.resolve();
  }

  audit(q: AuditQuery): Promise<AuditPage> {
    return this.#answer(() => this.#audit(q));
  }

  row(id: string): Promise<AuditDetail | null> {
    return this.#answer(() => this.#row(id));
  }

  findings(limit: number, sinceTs: number | null = null): Promise<FindingRow[]> {
    return this.#answer(() => this.#findings(limit, sinceTs));
  }

  stats(q: StatsQuery, now: number): Promise<Stats> {
    return this.#answer(() => this.#stats(q, now));
  }

  sessions(limit: number, sinceTs: number | null): Promise<SessionRow[]> {
    return this.#answer(() => this.#sessions(limit, sinceTs));
  }

  ruleHits(
    names: (string | null)[],
    sinceTs: number | null = null,
  ): Promise<Map<string | null, RuleHits>> {
    return this.#answer(() => this.#ruleHits(names, sinceTs));
  }

  reportAggregates(filter: ReportFilter): Promise<ReportAggregates> {
    return this.#answer(() => this.#reportAggregates(filter));
  }

  rowsSince(sinceMs: number): Promise<AuditRowWithHeaders[]> {
    return this.#answer(() => this.#rowsSince(sinceMs));
  }

  spendRows(sinceMs: number): Promise<SpendRow[]> {
    return this.#answer(() => this.#spendRows(sinceMs));
  }

  /** `GET /_/api/audit`: newest first. */
  #audit(q: AuditQuery): AuditPage {
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
    if (q.tunnels === true) where.push("method = 'CONNECT'");
    if (q.tunnels === false) where.push("method != 'CONNECT'");
    for (
      const [col, v] of [["model", q.model], ["policy", q.policy], ["status", q.status]] as const
    ) {
      if (v === null || v === undefined) continue;
      where.push(`${this.#column(col)} = ?`.replace(/^NULL AS \w+/, "NULL"));
      params.push(v);
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
    // Another order than newest first sorts the matches (bounded by the filters).
    const sorted = q.sort && (q.sort.column !== "ts" || q.sort.dir !== "desc") ? q.sort : null;
    if (sorted && !(SORT_COLUMNS as readonly string[]).includes(sorted.column)) {
      throw new AuditReadError(`cannot sort the audit by "${sorted.column}"`, "unreadable");
    }
    const split = sorted === null && (q.decisions !== null && q.decisions.length > 1 ||
      q.rule !== null && q.decisions === null);
    let rows: Row[];
    if (split) {
      const branch = `SELECT * FROM (SELECT ${this.#rowColumns()} FROM audit WHERE decision = ?${
        where.map((c) => ` AND ${c}`).join("")
      } ORDER BY ts DESC LIMIT ?)`;
      const decisions = q.decisions ?? DECISIONS;
      rows = this.#all(
        `SELECT u.*, ${this.#findingsCount("u")} AS findings_count
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
        `SELECT ${this.#rowColumns()}, ${this.#findingsCount("audit")} AS findings_count
         FROM audit ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY ${
          sorted === null
            ? "ts DESC"
            // NULLs last either way; the column name comes from SORT_COLUMNS.
            : `${this.#column(sorted.column).replace(/^NULL AS \w+/, "NULL")} IS NULL, ${
              this.#column(sorted.column).replace(/^NULL AS \w+/, "NULL")
            } ${sorted.dir === "asc" ? "ASC" : "DESC"}, ts DESC, id DESC`
        } LIMIT ? OFFSET ?`,
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
  #row(id: string): AuditDetail | null {
    const r = this.#get(
      `SELECT ${this.#rowColumns()}, ${this.#column("headers")} FROM audit WHERE id = ?`,
      id,
    );
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
    const findings = this.#schema?.findings === false ? [] : this.#all(
      `SELECT id, ts, detector, direction, location, sample, action
       FROM findings WHERE decision_id = ? ORDER BY id`,
      id,
    ) as unknown as AuditDetail["findings"];
    return { ...toRow(rest), headers: parsed, findings: findings.map((f) => ({ ...f })) };
  }

  /** `GET /_/api/dlp/recent`: newest findings first. */
  #findings(limit: number, sinceTs: number | null): FindingRow[] {
    if (this.#schema?.findings === false) return [];
    return this.#all(
      `SELECT id, decision_id, ts, detector, direction, location, sample, action, host
       FROM findings WHERE ts >= ? ORDER BY ts DESC, id DESC LIMIT ?`,
      sinceTs ?? 0,
      limit,
    ).map((r) => ({ ...r })) as unknown as FindingRow[];
  }

  /** `GET /_/api/stats` over the `hours` before `now`. */
  #stats(q: StatsQuery, now: number): Stats {
    const until = now;
    const since = now - q.hours * 3_600_000;
    const size = bucketSize(until - since);
    const s = q.session;

    // Time buckets (their sums are the totals).
    const points: Stats["buckets"]["points"] = [];
    const bucketSql = s === null
      // Per decision, a count over a range of the (decision, ts) index, and
      // of its tunnels over the partial tunnel index.
      ? `SELECT ${
        DECISIONS.map((d) =>
          `(SELECT count(*) FROM audit WHERE decision = '${d}' AND ts >= ?1 AND ts < ?2) AS ${d}, ` +
          `(SELECT count(*) FROM audit WHERE method = 'CONNECT' AND decision = '${d}' ` +
          `AND ts >= ?1 AND ts < ?2) AS t_${d}`
        ).join(", ")
      }`
      // One range of the (session, ts, decision, host) index.
      : `SELECT ${
        DECISIONS.map((d) =>
          `count(*) FILTER (WHERE decision = '${d}') AS ${d}, ` +
          `count(*) FILTER (WHERE decision = '${d}' AND method = 'CONNECT') AS t_${d}`
        ).join(", ")
      } FROM audit WHERE session = ?3 AND ts >= ?1 AND ts < ?2`;
    for (let t = Math.floor(since / size) * size; t <= until; t += size) {
      const r = this.#get(
        bucketSql,
        Math.max(t, since),
        Math.min(t + size, until + 1),
        ...(s === null ? [] : [s]),
      );
      // Requests leave tunnels out: they are counted apart.
      const req = (d: string) => Number(r?.[d] ?? 0) - Number(r?.[`t_${d}`] ?? 0);
      const p = {
        ts: t,
        requests: 0,
        allow: req("allow"),
        log: req("log"),
        deny: req("deny"),
        would_deny: req("would_deny"),
        error: req("error"),
        challenge: req("challenge"),
        tunnels: DECISIONS.reduce((n, d) => n + Number(r?.[`t_${d}`] ?? 0), 0),
        spend_usd: 0,
      };
      p.requests = p.allow + p.log + p.deny + p.would_deny + p.error + p.challenge;
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
        // Its tunnels, from the partial tunnel index, are counted apart.
        const t = this.#get(
          `SELECT count(*) AS n, count(*) FILTER (WHERE decision = 'deny') AS deny,
             count(*) FILTER (WHERE decision = 'would_deny') AS would_deny
           FROM audit WHERE method = 'CONNECT' AND host = ? AND ts >= ? AND ts <= ?`,
          h.host,
          since,
          until,
        );
        return {
          host: h.host as string,
          requests: Number(h.n) - Number(t?.n ?? 0),
          deny: Number(d?.deny ?? 0) - Number(t?.deny ?? 0),
          would_deny: Number(d?.would_deny ?? 0) - Number(t?.would_deny ?? 0),
          tunnels: Number(t?.n ?? 0),
        };
      });
    } else {
      const hosts = this.#all(
        `SELECT host, count(*) AS n,
           count(*) FILTER (WHERE decision = 'deny' AND method != 'CONNECT') AS deny,
           count(*) FILTER (WHERE decision = 'would_deny' AND method != 'CONNECT') AS would_deny,
           count(*) FILTER (WHERE method = 'CONNECT') AS tunnels,
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
        requests: Number(h.n) - Number(h.tunnels),
        deny: Number(h.deny),
        would_deny: Number(h.would_deny),
        tunnels: Number(h.tunnels),
      }));
    }

    // Rules that denied.
    const byRule: Stats["top_denied_rules"] = [];
    if (s === null) {
      // Per distinct rule, counts over exact ranges of (rule, decision, ts).
      for (const rule of this.#ruleNames()) {
        const e = { rule, deny: 0, would_deny: 0, last_ts: 0 };
        for (const d of ["deny", "would_deny"] as const) {
          // Requests only: the rule's tunnels (partial tunnel index) are taken out.
          const r = this.#get(
            `SELECT count(*) AS n, max(ts) AS last FROM audit
             WHERE rule IS ? AND decision = ? AND ts >= ? AND ts <= ?`,
            rule,
            d,
            since,
            until,
          );
          const t = this.#get(
            `SELECT count(*) AS n FROM audit
             WHERE method = 'CONNECT' AND rule IS ? AND decision = ? AND ts >= ? AND ts <= ?`,
            rule,
            d,
            since,
            until,
          );
          e[d] = Number(r?.n ?? 0) - Number(t?.n ?? 0);
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
             AND method != 'CONNECT'
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
  #sessions(limit: number, sinceTs: number | null): SessionRow[] {
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
  #ruleHits(names: (string | null)[], sinceTs: number | null): Map<string | null, RuleHits> {
    // Exact ranges of (rule, decision, ts), one per decision.
    const sql = `SELECT ${
      DECISIONS.map((d) =>
        `(SELECT count(*) FROM audit WHERE rule IS ?1 AND decision = '${d}' AND ts >= ?2)`
      ).join(" + ")
    } AS n, ${
      DECISIONS.map((d) =>
        `(SELECT count(*) FROM audit WHERE method = 'CONNECT' AND rule IS ?1 AND decision = '${d}' AND ts >= ?2)`
      ).join(" + ")
    } AS t, max(${
      DECISIONS.map((d) =>
        `coalesce((SELECT max(ts) FROM audit WHERE rule IS ?1 AND decision = '${d}' AND ts >= ?2), 0)`
      ).join(", ")
    }) AS last`;
    const out = new Map<string | null, RuleHits>();
    for (const name of names) {
      const r = this.#get(sql, name, sinceTs ?? 0);
      const last = Number(r?.last ?? 0);
      const tunnels = Number(r?.t ?? 0);
      out.set(name, {
        hits: Number(r?.n ?? 0) - tunnels,
        tunnels,
        last_ts: last > 0 ? last : null,
      });
    }
    return out;
  }

  #reportAggregates(filter: ReportFilter): ReportAggregates {
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
    const all = (sql: string) => this.#all(sql, ...params);
    const hasLlm = this.#schema?.columns.has("model") ?? false;

    // Tunnels (CONNECT rows) are counted apart from requests: `t` tells them apart.
    const byDecision = all(`SELECT decision, method = 'CONNECT' AS t, count(*) AS n
      FROM audit${and()} GROUP BY decision, t`);
    const span = all(`SELECT min(ts) AS a, max(ts) AS b FROM audit${and()}`)[0];

    const hostRows = all(`SELECT host, decision, method = 'CONNECT' AS t, count(*) AS n
      FROM audit${and()} GROUP BY host, decision, t`);
    const hosts: HostLine[] = splitTunnels(hostRows, (r) => String(r.host))
      .map((l) => ({ host: l.key, ...l.counts, tunnels: l.tunnels }));

    const ruleRows = all(`SELECT rule, decision, method = 'CONNECT' AS t, count(*) AS n
      FROM audit${and()} GROUP BY rule, decision, t`);
    const rules: RuleLine[] = splitTunnels(ruleRows, (r) => r.rule === null ? null : String(r.rule))
      .map((l) => ({ rule: l.key, ...l.counts, tunnels: l.tunnels }));

    const denials: DenialLine[] = all(`SELECT decision, count(*) AS n, method, scheme, host, port,
        path, min(ts) AS first_ts, max(ts) AS last_ts, status, rule, rule_source, reason, policy
      FROM audit${and("decision IN ('deny', 'would_deny')")}
      GROUP BY decision, method, scheme, host, port, path, rule, reason
      ORDER BY first_ts, host, path`).map((r) => ({
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

    const errors: ErrorLine[] = all(`SELECT host, reason, error, count(*) AS n
      FROM audit${and("decision = 'error'")} GROUP BY host, reason, error
      ORDER BY n DESC, host, reason`).map((r) => ({
      host: String(r.host),
      reason: String(r.reason),
      error: r.error === null ? null : String(r.error),
      count: Number(r.n),
    }));

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

    const sessions: SessionLine[] = filter.session !== null ? [] : all(
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

  #rowsSince(sinceMs: number): AuditRowWithHeaders[] {
    return this.#all(
      `SELECT ${this.#rowColumns()}, ${this.#column("headers")},
         ${this.#findingsCount("audit")} AS findings_count
       FROM audit WHERE ts >= ? ORDER BY ts, id`,
      sinceMs,
    ).map((r) => ({
      ...toRow(r),
      headers: r.headers as string | null,
      findings_count: Number(r.findings_count),
    }));
  }

  #spendRows(sinceMs: number): SpendRow[] {
    const db = this.#open();
    if (db === null && this.#openError !== null) {
      // A budget must not silently restart from zero because the audit could not be read.
      throw new AuditReadError(
        `cannot open audit "${this.source}": ${this.#openError}`,
        "unreadable",
      );
    }
    if (this.#schema !== null && !this.#schema.columns.has("cost_usd")) return [];
    // What budgets were charged; rows from before reservations have only their cost.
    const charged = this.#schema === null || this.#schema.columns.has("charged_usd")
      ? "COALESCE(charged_usd, cost_usd)"
      : "cost_usd";
    return this.#all(
      `SELECT id, ts, ${charged} AS usd, session, host, client, rule, ${this.#column("spend_keys")}
       FROM audit WHERE ${charged} > 0 AND ts > ?`,
      sinceMs,
    ).map((r) => ({
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
 * A reader of the audit at `path` for a long-running process (the proxy's
 * dashboard and spend rebuild): opened on first use, read-only, and while
 * the file does not exist (or holds no audit yet) every answer is empty.
 *
 * @example
 * ```ts
 * const reader = openAuditReader(config.audit.path);
 * ```
 */
export function openAuditReader(path: string): SqliteAuditReader {
  return SqliteAuditReader.create(path, { kind: "lazy", path });
}

/**
 * Open the audit file at `path` read-only, for a command that reads it once
 * (report, replay). Never creates, migrates or changes the file.
 *
 * @example
 * ```ts
 * const reader = openAuditFile("./agentgate.db");
 * try {
 *   console.log((await reader.rowsSince(0)).length);
 * } finally {
 *   await reader.close();
 * }
 * ```
 * @throws {AuditReadError} `not_found`, `not_an_audit` or `unreadable`.
 */
export function openAuditFile(path: string): SqliteAuditReader {
  try {
    Deno.statSync(path);
  } catch {
    throw new AuditReadError(`cannot open audit "${path}": file not found`, "not_found");
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
    db.exec("PRAGMA busy_timeout = 1000");
  } catch (e) {
    throw new AuditReadError(`cannot open audit "${path}": ${(e as Error).message}`, "unreadable");
  }
  try {
    db.prepare("SELECT id, ts, session, decision, host FROM audit LIMIT 0").all();
  } catch (e) {
    db.close();
    throw new AuditReadError(
      `"${path}" is not an agentgate audit database: ${(e as Error).message}`,
      "not_an_audit",
    );
  }
  return SqliteAuditReader.create(path, { kind: "open", db, owned: true });
}

/**
 * A reader over a connection that is already open: the writer's own (then
 * `owned: false`, and closing the reader leaves it open) or an in-memory
 * audit's. For src/audit only: elsewhere no connection is handed around.
 *
 * @example
 * ```ts
 * const reader = sqliteReaderOver(openAuditDb(":memory:"), "memory", { owned: true });
 * ```
 */
export function sqliteReaderOver(
  db: DatabaseSync,
  source: string,
  opts: { owned: boolean },
): SqliteAuditReader {
  return SqliteAuditReader.create(source, { kind: "open", db, owned: opts.owned });
}
