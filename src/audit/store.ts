/**
 * The SQLite audit (`node:sqlite`, built into Deno: no FFI, works inside
 * `deno compile`). Rows are queued on the request path and written in
 * batches by a timer, in one transaction per batch (WAL, synchronous=NORMAL).
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import { AUDIT_COLUMNS, type AuditEventV1 } from "./event.ts";
import { type SqliteAuditReader, sqliteReaderOver } from "./sqlite_read.ts";
import type { SinkStatus } from "./sink.ts";

/** Forward migrations; entry i brings the schema from version i to i+1. */
const MIGRATIONS: string[] = [
  `CREATE TABLE audit (
     id TEXT NOT NULL PRIMARY KEY,
     ts INTEGER NOT NULL,
     session TEXT,
     label TEXT,
     client TEXT NOT NULL,
     method TEXT NOT NULL,
     scheme TEXT NOT NULL,
     host TEXT NOT NULL,
     port INTEGER NOT NULL,
     path TEXT,
     query TEXT,
     status INTEGER,
     decision TEXT NOT NULL,
     rule TEXT,
     rule_source TEXT,
     reason TEXT NOT NULL,
     policy TEXT,
     bytes_in INTEGER NOT NULL,
     bytes_out INTEGER NOT NULL,
     duration_ms REAL NOT NULL,
     error TEXT,
     headers TEXT
   );
   CREATE INDEX audit_ts ON audit (ts);
   CREATE INDEX audit_host_ts ON audit (host, ts);
   CREATE INDEX audit_decision_ts ON audit (decision, ts);
   CREATE INDEX audit_session_ts ON audit (session, ts);`,
  // v2: LLM usage and cost per request, and DLP findings.
  `ALTER TABLE audit ADD COLUMN provider TEXT;
   ALTER TABLE audit ADD COLUMN model TEXT;
   ALTER TABLE audit ADD COLUMN input_tokens INTEGER;
   ALTER TABLE audit ADD COLUMN output_tokens INTEGER;
   ALTER TABLE audit ADD COLUMN cache_read_tokens INTEGER;
   ALTER TABLE audit ADD COLUMN cache_write_tokens INTEGER;
   ALTER TABLE audit ADD COLUMN reasoning_tokens INTEGER;
   ALTER TABLE audit ADD COLUMN cost_usd REAL;
   ALTER TABLE audit ADD COLUMN usage_partial INTEGER;
   ALTER TABLE audit ADD COLUMN price_unknown INTEGER;
   CREATE INDEX audit_model_ts ON audit (model, ts) WHERE model IS NOT NULL;
   CREATE TABLE findings (
     id INTEGER PRIMARY KEY,
     decision_id TEXT NOT NULL,
     ts INTEGER NOT NULL,
     detector TEXT NOT NULL,
     direction TEXT NOT NULL,
     location TEXT NOT NULL,
     sample TEXT NOT NULL,
     action TEXT NOT NULL,
     host TEXT NOT NULL
   );
   CREATE INDEX findings_ts ON findings (ts);
   CREATE INDEX findings_decision ON findings (decision_id);`,
  // v3: covering indexes for the dashboard (src/audit/sqlite_read.ts), so its
  // aggregates over a time range read index entries, never table rows. Each
  // dropped index is a prefix of its replacement.
  `DROP INDEX audit_host_ts;
   CREATE INDEX audit_host_cover ON audit (host, ts, decision);
   DROP INDEX audit_session_ts;
   CREATE INDEX audit_session_cover ON audit (session, ts, decision, host);
   DROP INDEX audit_model_ts;
   CREATE INDEX audit_llm_cover ON audit
     (model, provider, ts, session, cost_usd, input_tokens, output_tokens)
     WHERE model IS NOT NULL;
   CREATE INDEX audit_session_cost ON audit (session, ts, cost_usd) WHERE cost_usd IS NOT NULL;
   CREATE INDEX audit_rule_cover ON audit (rule, decision, ts);`,
  // v4: the spend ledger is rebuilt from priced rows at every start; without
  // this partial index that read scanned the whole audit.
  `CREATE INDEX audit_cost_ts ON audit (ts) WHERE cost_usd IS NOT NULL;`,
  // v5: the budgets a request's cost was charged to beyond the built-in keys
  // (CEL-keyed spending limits), so they too are rebuilt at start.
  `ALTER TABLE audit ADD COLUMN spend_keys TEXT;`,
  // v6: which source priced a call, whether that price lacked something the
  // usage shows (a lower bound), what it lacked, and the provider's service tier.
  `ALTER TABLE audit ADD COLUMN price_source TEXT;
   ALTER TABLE audit ADD COLUMN price_incomplete INTEGER;
   ALTER TABLE audit ADD COLUMN price_missing TEXT;
   ALTER TABLE audit ADD COLUMN service_tier TEXT;`,
  // v7: reserve, then settle: the worst case a priced call held while in
  // flight, and what its budgets were charged when it settled (the cost, or
  // the reservation when the response carried no usable usage). Budgets are
  // rebuilt from the charge; this partial index keeps that read small.
  `ALTER TABLE audit ADD COLUMN reserved_usd REAL;
   ALTER TABLE audit ADD COLUMN charged_usd REAL;
   CREATE INDEX audit_charge_ts ON audit (ts) WHERE COALESCE(charged_usd, cost_usd) > 0;`,
  // v8: the address a request's host resolved to and was connected to (the
  // address guard judges it; replay re-judges it under a proposed policy).
  `ALTER TABLE audit ADD COLUMN dest_ip TEXT;`,
  // v9: what was not inspected in full (decompression limits, DLP scans cut short).
  `ALTER TABLE audit ADD COLUMN inspection TEXT;`,
  // v10: tunnels (CONNECT rows) are counted apart from requests; these partial
  // indexes count them per decision, host and rule without reading table rows,
  // and request counts are the covering indexes' counts minus these.
  `CREATE INDEX audit_tunnel_decision ON audit (decision, ts) WHERE method = 'CONNECT';
   CREATE INDEX audit_tunnel_host ON audit (host, ts, decision) WHERE method = 'CONNECT';
   CREATE INDEX audit_tunnel_rule ON audit (rule, decision, ts) WHERE method = 'CONNECT';`,
];

/** Rows written per transaction slice (~2-4 ms of event-loop time). */
const SLICE = 300;

/**
 * Rows per INSERT statement. node:sqlite pays per call and per bound value
 * (~0.5 us a call, 30-70 ns a value in Deno 2.9): one statement for 16 rows
 * and, for rows without LLM usage, only the columns they fill cost ~7.6 us a
 * row instead of ~10.8 (scripts: a 60,000-row loop over the real schema).
 */
const ROWS_PER_INSERT = 16;

/**
 * Columns only priced LLM calls and spending limits fill (null on every other
 * row): `provider` … `charged_usd` of {@link AUDIT_COLUMNS}.
 */
const USAGE_COLUMNS: readonly string[] = AUDIT_COLUMNS.slice(
  AUDIT_COLUMNS.indexOf("provider"),
  AUDIT_COLUMNS.indexOf("charged_usd") + 1,
);

/** The columns of a row without usage (in {@link pushRow}'s order). */
const PLAIN_COLUMNS = AUDIT_COLUMNS.filter((c) => !USAGE_COLUMNS.includes(c));

const flag = (b: boolean | null | undefined) => b === undefined || b === null ? null : Number(b);

/** A row's {@link USAGE_COLUMNS} values, into `out` (emptied first). */
function usageValues(out: unknown[], e: AuditEventV1): void {
  out.length = 0;
  out.push(
    e.provider ?? null,
    e.model ?? null,
    e.input_tokens ?? null,
    e.output_tokens ?? null,
    e.cache_read_tokens ?? null,
    e.cache_write_tokens ?? null,
    e.reasoning_tokens ?? null,
    e.cost_usd ?? null,
    flag(e.usage_partial),
    flag(e.price_unknown),
    e.spend_keys?.length ? JSON.stringify(e.spend_keys) : null,
    e.price_source ?? null,
    flag(e.price_incomplete),
    e.price_missing ?? null,
    e.service_tier ?? null,
    e.reserved_usd ?? null,
    e.charged_usd ?? null,
  );
}

/** Whether every usage value is null: the row is written with {@link PLAIN_COLUMNS}. */
function allNull(values: readonly unknown[]): boolean {
  for (const v of values) if (v !== null) return false;
  return true;
}

/**
 * A row's values in column order, appended to `out`: {@link AUDIT_COLUMNS},
 * or {@link PLAIN_COLUMNS} when `usage` is null.
 */
function pushRow(out: unknown[], e: AuditEventV1, usage: readonly unknown[] | null): void {
  out.push(
    e.id,
    e.ts,
    e.session,
    e.label,
    e.client,
    e.method,
    e.scheme,
    e.host,
    e.port,
    e.path,
    e.query,
    e.status,
    e.decision,
    e.rule,
    e.rule_source,
    e.reason,
    e.policy,
    e.bytes_in,
    e.bytes_out,
    e.duration_ms,
    e.error,
    e.headers,
  );
  if (usage !== null) { for (const v of usage) out.push(v); }
  out.push(e.dest_ip ?? null, e.inspection ?? null);
}

/** Schema version this build writes. */
export const AUDIT_SCHEMA_VERSION = MIGRATIONS.length;

/** Thrown when the audit database cannot be opened or migrated. */
export class AuditOpenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuditOpenError";
  }
}

/** Options of {@link AuditStore.open}. */
export interface AuditStoreOptions {
  /** Rows older than this are deleted at open and every hour (0 = keep). */
  retentionMs?: number;
  /** Flush interval (default 200 ms). */
  flushMs?: number;
  /** Rows kept in memory while the database refuses writes (default 100,000). */
  maxQueue?: number;
  /** Where write problems are reported (default: stderr). */
  log?: (message: string) => void;
  /** Clock, for tests. */
  now?: () => number;
  /** Called with the rows of each committed transaction (the spend journal forgets them). */
  onWritten?: (events: readonly AuditEventV1[]) => void;
}

/**
 * Open (create, migrate) an audit database in WAL mode.
 *
 * @example
 * const db = openAuditDb("./agentgate.db");
 */
export function openAuditDb(path: string): DatabaseSync {
  let db: DatabaseSync;
  try {
    // A directory made for the audit is private (0700): the rows name hosts, paths, sessions.
    if (path !== ":memory:") Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    db = new DatabaseSync(path);
  } catch (e) {
    throw new AuditOpenError(`cannot open audit database "${path}": ${(e as Error).message}`);
  }
  try {
    // A short busy timeout: the writer runs on the event loop and must not stall it.
    db.exec("PRAGMA busy_timeout = 50");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    const row = db.prepare("PRAGMA user_version").get() as { user_version: number };
    const version = row.user_version;
    if (version > MIGRATIONS.length) {
      throw new Error(
        `it was written by a newer agentgate (schema version ${version}, this build knows ${MIGRATIONS.length})`,
      );
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.exec("BEGIN IMMEDIATE");
      try {
        db.exec(MIGRATIONS[v]);
        db.exec(`PRAGMA user_version = ${v + 1}`);
        db.exec("COMMIT");
      } catch (e) {
        db.exec("ROLLBACK");
        throw e;
      }
    }
  } catch (e) {
    db.close();
    throw new AuditOpenError(`cannot use audit database "${path}": ${(e as Error).message}`);
  }
  return db;
}

/**
 * Queues audit rows and writes them in batches off the request path.
 *
 * @example
 * const store = AuditStore.open("./agentgate.db", { retentionMs: 30 * 86_400_000 });
 * store.add(event);
 * store.close(); // flushes what is queued, then closes (synchronous)
 */
export class AuditStore {
  #queue: AuditEventV1[] = [];
  /** INSERT statements by row count (negative: plain rows), prepared when first needed. */
  #inserts = new Map<number, StatementSync>();
  #insertFinding: StatementSync;
  #timer: ReturnType<typeof setInterval>;
  #retentionTimer: ReturnType<typeof setInterval> | null = null;
  #soon: ReturnType<typeof setTimeout> | null = null;
  /** Rows inserted in the transaction that is still open. */
  #tx: AuditEventV1[] = [];
  #closed = false;
  #lastErrorLog = 0;
  /** Writes that failed (the rows stay queued and are retried). */
  writeErrors = 0;
  /** Rows dropped because the queue overflowed while writes failed (logged). */
  dropped = 0;
  /** Last write error message, or null after a successful write. */
  lastError: string | null = null;
  /** Rows written since open. */
  written = 0;

  readonly #db: DatabaseSync;
  readonly #path: string;

  private constructor(db: DatabaseSync, path: string, private readonly opts: AuditStoreOptions) {
    this.#db = db;
    this.#path = path;
    this.#insertFinding = db.prepare(
      `INSERT INTO findings (decision_id, ts, detector, direction, location, sample, action, host)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#timer = setInterval(() => this.#tick(), opts.flushMs ?? 200);
    Deno.unrefTimer(this.#timer as unknown as number);
    if (opts.retentionMs) {
      this.prune();
      this.#retentionTimer = setInterval(() => this.prune(), 3_600_000);
      Deno.unrefTimer(this.#retentionTimer as unknown as number);
    }
  }

  /** Open the database at `path` and start the writer. */
  static open(path: string, opts: AuditStoreOptions = {}): AuditStore {
    return new AuditStore(openAuditDb(path), path, opts);
  }

  /**
   * Read what this store has written, through its own connection (so an
   * in-memory audit can be read at all). Rows are seen once flushed. A
   * process that reads while the writer runs (the dashboard) opens its own
   * read-only connection instead (`openAuditReader`): between the slices of
   * a write this connection is inside a transaction. Closing the reader
   * leaves the store open.
   *
   * @example
   * ```ts
   * store.flush();
   * const report = await buildReport(store.reader(), { session: null, since: null, until: null });
   * ```
   */
  reader(): SqliteAuditReader {
    return sqliteReaderOver(this.#db, this.#path, { owned: false });
  }

  /** The backend's numbers for the fleet view. */
  status(): SinkStatus {
    return {
      kind: "sqlite",
      target: this.#path,
      up: this.lastError === null,
      latency_ms: null,
      errors: this.writeErrors,
      last_error: this.lastError,
      queued: this.#queue.length,
      written: this.written,
      dropped: this.dropped,
      spooled: 0,
    };
  }

  /** Rows waiting to be written. */
  get queueDepth(): number {
    return this.#queue.length;
  }

  /** Queue a row (never blocks, never throws). */
  add(event: AuditEventV1): void {
    if (this.#closed) {
      this.dropped++;
      this.#log(`audit row ${event.id} arrived after the audit was closed and was not written`);
      return;
    }
    this.#queue.push(event);
    const max = this.opts.maxQueue ?? 100_000;
    if (this.#queue.length > max) {
      const over = this.#queue.length - max;
      this.#queue.splice(0, over);
      this.dropped += over;
      this.#log(
        `audit queue full (${max} rows) while writes fail; dropped ${over} oldest row(s), ${this.dropped} in total`,
      );
    }
    // A burst is written soon rather than growing until the next tick.
    if (this.#queue.length >= SLICE && this.#soon === null) {
      this.#soon = setTimeout(() => {
        this.#soon = null;
        this.#tick();
      }, 0);
    }
  }

  /**
   * Write the queue in slices of {@link SLICE} rows, yielding to the event
   * loop between them: one 3,000-row transaction (200 ms at 15k req/s) blocked
   * it for ~20 ms and showed as the proxy's p99 latency.
   */
  #tick() {
    if (this.#soon !== null || this.#closed) return;
    this.#step();
  }

  /**
   * One slice of a write: the transaction stays open across slices and
   * commits when the queue is empty, so a tick's rows cost one COMMIT (the
   * page writes) however they were sliced.
   */
  #step() {
    try {
      if (this.#tx.length === 0 && this.#queue.length === 0) return;
      if (this.#tx.length === 0) this.#db.exec("BEGIN");
      const batch = this.#queue.length <= SLICE ? this.#queue : this.#queue.slice(0, SLICE);
      this.#queue = batch === this.#queue ? [] : this.#queue.slice(batch.length);
      // Rows of the open transaction, to requeue them if it fails.
      for (const e of batch) this.#tx.push(e);
      this.#insertRows(batch);
      if (this.#queue.length === 0) {
        this.#db.exec("COMMIT");
        this.written += this.#tx.length;
        this.#committed(this.#tx);
        this.#tx = [];
        this.lastError = null;
        return;
      }
    } catch (e) {
      this.#failed(e);
      return;
    }
    this.#soon = setTimeout(() => {
      this.#soon = null;
      this.#step();
    }, 0);
  }

  #committed(events: AuditEventV1[]) {
    try {
      this.opts.onWritten?.(events);
    } catch (e) {
      this.#log(`audit: a listener of written rows failed: ${(e as Error).message}`);
    }
  }

  #failed(e: unknown) {
    try {
      this.#db.exec("ROLLBACK");
    } catch {
      // Already rolled back by SQLite (e.g. SQLITE_FULL).
    }
    // Keep the rows (oldest first) and retry on the next tick.
    this.#queue = this.#tx.concat(this.#queue);
    this.#tx = [];
    this.writeErrors++;
    this.lastError = (e as Error).message;
    this.#log(
      `audit write failed (${this.#queue.length} row(s) queued, will retry): ${this.lastError}`,
    );
  }

  /** The INSERT of `rows` rows (plain ones: only {@link PLAIN_COLUMNS}). */
  #insertOf(rows: number, plain: boolean): StatementSync {
    const key = plain ? -rows : rows;
    let st = this.#inserts.get(key);
    if (st === undefined) {
      const cols = plain ? PLAIN_COLUMNS : AUDIT_COLUMNS;
      const one = `(${cols.map(() => "?").join(", ")})`;
      st = this.#db.prepare(
        `INSERT OR IGNORE INTO audit (${cols.join(", ")}) VALUES ${
          Array.from({ length: rows }, () => one).join(", ")
        }`,
      );
      this.#inserts.set(key, st);
    }
    return st;
  }

  /** Insert rows (inside the open transaction), {@link ROWS_PER_INSERT} to a statement. */
  #insertRows(batch: AuditEventV1[]) {
    const plain: AuditEventV1[] = [];
    const priced: { e: AuditEventV1; usage: unknown[] }[] = [];
    const usage: unknown[] = [];
    for (const e of batch) {
      usageValues(usage, e);
      if (allNull(usage)) plain.push(e);
      else priced.push({ e, usage: usage.slice() });
    }
    this.#insertAll(plain.length, true, (i, out) => pushRow(out, plain[i], null));
    this.#insertAll(priced.length, false, (i, out) => pushRow(out, priced[i].e, priced[i].usage));
    for (const e of batch) {
      for (const f of e.findings ?? []) {
        this.#insertFinding.run(
          e.id,
          e.ts,
          f.detector,
          f.direction,
          f.location,
          f.sample,
          f.action,
          e.host,
        );
      }
    }
  }

  /** `count` rows of one kind, `push(i, out)` appending row i's values. */
  #insertAll(count: number, plain: boolean, push: (i: number, out: unknown[]) => void) {
    const values: unknown[] = [];
    for (let at = 0; at < count; at += ROWS_PER_INSERT) {
      const n = Math.min(ROWS_PER_INSERT, count - at);
      values.length = 0;
      for (let i = at; i < at + n; i++) push(i, values);
      this.#insertOf(n, plain).run(...values as SQLInputValue[]);
    }
  }

  /** Write every queued row now, in one transaction; returns the number written. */
  flush(): number {
    if (this.#soon !== null) {
      clearTimeout(this.#soon);
      this.#soon = null;
    }
    if (this.#tx.length === 0 && this.#queue.length === 0) return 0;
    try {
      if (this.#tx.length === 0) this.#db.exec("BEGIN");
      const batch = this.#queue;
      this.#queue = [];
      for (const e of batch) this.#tx.push(e);
      this.#insertRows(batch);
      this.#db.exec("COMMIT");
      const n = this.#tx.length;
      this.written += n;
      this.#committed(this.#tx);
      this.#tx = [];
      this.lastError = null;
      return n;
    } catch (e) {
      this.#failed(e);
      return 0;
    }
  }

  /** Delete rows older than the retention period (in small batches). */
  prune(): number {
    const keep = this.opts.retentionMs;
    if (!keep) return 0;
    const cutoff = (this.opts.now ?? Date.now)() - keep;
    let total = 0;
    try {
      const del = this.#db.prepare(
        "DELETE FROM audit WHERE rowid IN (SELECT rowid FROM audit WHERE ts < ? LIMIT 5000)",
      );
      this.#db.prepare("DELETE FROM findings WHERE ts < ?").run(cutoff);
      for (;;) {
        const r = del.run(cutoff);
        total += Number(r.changes);
        if (Number(r.changes) < 5000) break;
      }
    } catch (e) {
      this.#log(`audit retention cleanup failed: ${(e as Error).message}`);
    }
    return total;
  }

  /** Stop the writer, flush what is queued, close the database. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#retentionTimer !== null) clearInterval(this.#retentionTimer);
    if (this.#soon !== null) clearTimeout(this.#soon);
    for (let attempt = 0; attempt < 20 && this.#queue.length > 0; attempt++) this.flush();
    if (this.#queue.length > 0) {
      this.#log(`audit: ${this.#queue.length} row(s) could not be written at shutdown`);
    }
    this.#db.close();
  }

  #log(message: string) {
    const now = Date.now();
    // At most one line a second: a failing disk must not flood the terminal.
    if (now - this.#lastErrorLog < 1000) return;
    this.#lastErrorLog = now;
    (this.opts.log ?? ((m) => console.error(m)))(`agentgate: ${message}`);
  }
}
