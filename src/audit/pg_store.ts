/**
 * The PostgreSQL audit writer. Rows are queued on the request path and
 * written in batches by a timer: one statement per batch (`INSERT … SELECT
 * FROM unnest(…)`, the same text whatever the batch size, so the server plans
 * it once; the findings go in the same statement). Several replicas write to
 * one database; ids are unique per request, and `ON CONFLICT (id) DO NOTHING`
 * makes a retried batch harmless (its findings are inserted only with rows
 * that were new).
 *
 * When PostgreSQL cannot take a batch (down, unreachable, too slow), the rows
 * go to the spool (`spool.ts`, a local SQLite file) and, while the spool holds
 * anything, new rows join it there, so they reach the database oldest first.
 * The writer reconnects by itself (at most once a second) and drains the spool
 * before anything else. Past the spool's bound rows are dropped — counted,
 * logged, and `/_/health` answers 503 — never silently.
 *
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import { AUDIT_COLUMNS, type AuditEventV1 } from "./event.ts";
import {
  migratePg,
  PG_COLUMN_TYPES,
  pgClient,
  PgSchemaError,
  pgSource,
  type PgTarget,
} from "./pg.ts";
import { AuditSpool } from "./spool.ts";
import type { AuditSink, SinkStatus } from "./sink.ts";

/** Rows per statement (41 arrays of this length). */
const BATCH = 2000;

/** Options of {@link PgAuditStore.open}. */
export interface PgAuditStoreOptions {
  /** The environment (the password's variable is read at every connection). */
  env: (name: string) => string | undefined;
  /** The spool file (`:memory:` in tests that do not restart). */
  spoolPath: string;
  /** The spool's bound in bytes of row JSON (default 1 GiB). */
  spoolMaxBytes?: number;
  /** Rows older than this are deleted at start and every hour (0 = keep). */
  retentionMs?: number;
  /** Flush interval (default 200 ms). */
  flushMs?: number;
  /** Rows held in memory before they go to the spool while a write is slow (default 20,000). */
  maxQueue?: number;
  log?: (message: string) => void;
  now?: () => number;
  /** Called with rows once PostgreSQL committed them (the spend journal forgets them). */
  onWritten?: (events: readonly AuditEventV1[]) => void;
}

const INSERT_SQL = `WITH rows AS (
    INSERT INTO audit (${AUDIT_COLUMNS.join(", ")})
    SELECT * FROM unnest(${
  AUDIT_COLUMNS.map((c, i) => `$${i + 1}::${PG_COLUMN_TYPES[c]}[]`).join(", ")
})
    ON CONFLICT (id) DO NOTHING
    RETURNING id)
  INSERT INTO findings (decision_id, ts, detector, direction, location, sample, action, host)
  SELECT f.* FROM unnest(${
  ["text", "bigint", "text", "text", "text", "text", "text", "text"].map((t, i) =>
    `$${AUDIT_COLUMNS.length + i + 1}::${t}[]`
  ).join(", ")
}) AS f(decision_id, ts, detector, direction, location, sample, action, host)
  WHERE f.decision_id IN (SELECT id FROM rows)`;

function columnValue(e: AuditEventV1, c: typeof AUDIT_COLUMNS[number]): unknown {
  if (c === "spend_keys") return e.spend_keys?.length ? JSON.stringify(e.spend_keys) : null;
  return e[c] ?? null;
}

/** The statement's parameters for `batch`: one array per column, then the findings'. */
function params(batch: readonly AuditEventV1[]): unknown[][] {
  const cols = AUDIT_COLUMNS.map((c) => batch.map((e) => columnValue(e, c)));
  const f: unknown[][] = [[], [], [], [], [], [], [], []];
  for (const e of batch) {
    for (const x of e.findings ?? []) {
      const v = [e.id, e.ts, x.detector, x.direction, x.location, x.sample, x.action, e.host];
      for (let i = 0; i < 8; i++) f[i].push(v[i]);
    }
  }
  return [...cols, ...f];
}

/**
 * Queues audit rows and writes them to PostgreSQL off the request path,
 * spooling to a local file while it cannot.
 *
 * @example
 * ```ts
 * const store = await PgAuditStore.open(target, { env: (k) => Deno.env.get(k), spoolPath });
 * store.add(event);
 * await store.close(); // writes (or spools) what is queued
 * ```
 */
export class PgAuditStore implements AuditSink {
  #queue: AuditEventV1[] = [];
  #client: pg.Client | null = null;
  #connecting: Promise<pg.Client | null> | null = null;
  #nextConnect = 0;
  #busy: Promise<void> | null = null;
  #timer: ReturnType<typeof setInterval>;
  #retentionTimer: ReturnType<typeof setInterval> | null = null;
  #soon: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  #lastLog = 0;
  #spool: AuditSpool;
  #up = false;
  #latency: number | null = null;
  #backendError: string | null = null;
  /** Writes that failed (their rows went to the spool). */
  writeErrors = 0;
  /** Rows lost (the spool was full or refused them); each loss is logged. */
  dropped = 0;
  /** Rows committed to PostgreSQL since start. */
  written = 0;
  #spoolError: string | null = null;
  #schemaError: string | null = null;

  /** Why rows are being lost right now, or null (spooling loses nothing). */
  get lastError(): string | null {
    return this.#schemaError ?? this.#spoolError;
  }

  private constructor(readonly target: PgTarget, private readonly opts: PgAuditStoreOptions) {
    this.#spool = AuditSpool.open(opts.spoolPath, opts.spoolMaxBytes ?? 2 ** 30);
    this.#timer = setInterval(() => this.#kick(), opts.flushMs ?? 200);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /**
   * Open the spool, connect and migrate. A database that cannot be reached
   * now is not an error (rows spool until it can); one written by a newer
   * agentgate is ({@link PgSchemaError}).
   */
  static async open(target: PgTarget, opts: PgAuditStoreOptions): Promise<PgAuditStore> {
    const store = new PgAuditStore(target, opts);
    try {
      await store.#connect(true);
    } catch (e) {
      await store.#shutdownClient();
      store.#stopTimers();
      store.#spool.close();
      throw e;
    }
    if (store.#spool.rows > 0) {
      store.#log(
        `audit spool "${opts.spoolPath}" holds ${store.#spool.rows} row(s) from before; draining them into PostgreSQL`,
      );
    }
    if (opts.retentionMs) {
      store.#retentionTimer = setInterval(() => void store.prune(), 3_600_000);
      Deno.unrefTimer(store.#retentionTimer as unknown as number);
      void store.prune();
    }
    store.#kick();
    return store;
  }

  /** Where rows go, without credentials. */
  get source(): string {
    return pgSource(this.target);
  }

  /** Rows waiting in memory (the spool's rows are in {@link status}). */
  get queueDepth(): number {
    return this.#queue.length;
  }

  /** Rows the spool holds. */
  get spooled(): number {
    return this.#spool.rows;
  }

  status(): SinkStatus {
    return {
      kind: "postgres",
      target: this.source,
      up: this.#up,
      latency_ms: this.#latency,
      errors: this.writeErrors,
      last_error: this.#backendError,
      queued: this.#queue.length,
      written: this.written,
      dropped: this.dropped,
      spooled: this.#spool.rows,
      spool_bytes: this.#spool.bytes,
      spool_max_bytes: this.#spool.maxBytes,
      spool_full: this.#spoolError !== null,
    };
  }

  add(event: AuditEventV1): void {
    if (this.#closed) {
      this.dropped++;
      this.#log(`audit row ${event.id} arrived after the audit was closed and was not written`);
      return;
    }
    this.#queue.push(event);
    // A slow database must not grow memory: past the bound, rows wait in the spool.
    if (this.#queue.length > (this.opts.maxQueue ?? 20_000)) this.#toSpool(this.#queue.splice(0));
    if (this.#queue.length >= BATCH / 4 && this.#soon === null) {
      this.#soon = setTimeout(() => {
        this.#soon = null;
        this.#kick();
      }, 0);
    }
  }

  /** Start a write round unless one runs. */
  #kick() {
    if (this.#busy !== null) return;
    if (this.#queue.length === 0 && this.#spool.rows === 0) return;
    this.#busy = this.#round().finally(() => {
      this.#busy = null;
      if (
        !this.#closed && (this.#queue.length >= BATCH / 4 || (this.#up && this.#spool.rows > 0))
      ) {
        this.#kick();
      }
    });
  }

  /** One round: connect if needed, drain the spool (oldest first), then write the queue. */
  async #round(): Promise<void> {
    const client = await this.#connect(false);
    if (client === null) {
      // Unreachable: what is queued waits in the spool, on disk, not in memory.
      this.#toSpool(this.#queue.splice(0));
      return;
    }
    if (this.#spool.rows > 0) {
      // New rows join the spool, so the database gets them in order.
      this.#toSpool(this.#queue.splice(0));
      const rows = this.#spool.peek(BATCH);
      if (rows.length === 0) return;
      const events = rows.map((r) => r.event);
      if (await this.#write(client, events)) {
        this.#spool.remove(rows[rows.length - 1].seq);
        if (this.#spool.rows === 0) this.#log("audit spool drained: PostgreSQL has every row");
      }
      return;
    }
    const batch = this.#queue.splice(0, BATCH);
    if (batch.length === 0) return;
    if (!(await this.#write(client, batch))) this.#toSpool(batch);
  }

  /** Insert `batch` in one statement; false (and the connection dropped) when it failed. */
  async #write(client: pg.Client, batch: AuditEventV1[]): Promise<boolean> {
    const t0 = performance.now();
    try {
      await client.query({
        name: "agentgate_audit_insert",
        text: INSERT_SQL,
        values: params(batch),
      });
    } catch (e) {
      this.writeErrors++;
      this.#down(e);
      // A broken or timed-out connection is not reused: the next round reconnects.
      await this.#shutdownClient();
      return false;
    }
    this.#latency = Math.round((performance.now() - t0) * 100) / 100;
    this.#up = true;
    this.#backendError = null;
    this.#spoolError = null;
    this.written += batch.length;
    try {
      this.opts.onWritten?.(batch);
    } catch (e) {
      this.#log(`audit: a listener of written rows failed: ${(e as Error).message}`);
    }
    return true;
  }

  #down(e: unknown) {
    const first = this.#up || this.#backendError === null;
    this.#up = false;
    this.#backendError = (e as Error).message || String(e);
    if (first) {
      this.#log(
        `audit: PostgreSQL ${this.source} is unavailable, rows go to the spool "${this.opts.spoolPath}" until it returns: ${this.#backendError}`,
        true,
      );
    }
  }

  /**
   * The writer's connection: connected and migrated, or null while the
   * database cannot be reached (tried again after a second). `strict`: a
   * newer schema throws (at open); later it only stops writes.
   */
  #connect(strict: boolean): Promise<pg.Client | null> {
    if (this.#client !== null) return Promise.resolve(this.#client);
    if (this.#connecting !== null) return this.#connecting;
    const now = Date.now();
    if (!strict && now < this.#nextConnect) return Promise.resolve(null);
    this.#nextConnect = now + 1000;
    this.#connecting = (async () => {
      const client = pgClient(this.target, this.opts.env);
      // A server that goes away emits "error" on an idle client: noted, then reconnected.
      client.on("error", (e: Error) => {
        this.#down(e);
        if (this.#client === client) this.#client = null;
      });
      try {
        await client.connect();
        const from = await migratePg(client);
        if (from === 0) this.#log(`audit: created the agentgate schema in ${this.source}`);
        this.#client = client;
        this.#up = true;
        this.#backendError = null;
        return client;
      } catch (e) {
        await client.end().catch(() => {});
        if (e instanceof PgSchemaError) {
          if (strict) throw e;
          this.#schemaError = e.message;
        }
        this.#down(e);
        return null;
      }
    })().finally(() => (this.#connecting = null));
    return this.#connecting;
  }

  async #shutdownClient() {
    const c = this.#client;
    this.#client = null;
    if (c) await c.end().catch(() => {});
  }

  /** Keep `events` in the spool; what does not fit is dropped, loudly. */
  #toSpool(events: AuditEventV1[]) {
    if (events.length === 0) return;
    let kept = 0;
    let why: string | null = null;
    try {
      kept = this.#spool.push(events);
    } catch (e) {
      why = `the audit spool "${this.opts.spoolPath}" refused rows: ${(e as Error).message}`;
    }
    const lost = events.length - kept;
    if (lost === 0) {
      this.#spoolError = null;
      return;
    }
    this.dropped += lost;
    this.#spoolError = why ??
      `the audit spool "${this.opts.spoolPath}" is full (${this.#spool.bytes} of ${this.#spool.maxBytes} bytes)`;
    this.#log(
      `audit: ${lost} row(s) dropped (${this.dropped} in total): ${this.#spoolError}`,
      true,
    );
  }

  /** Delete rows older than the retention period (every replica may; deleting twice is harmless). */
  async prune(): Promise<number> {
    const keep = this.opts.retentionMs;
    if (!keep || this.#client === null) return 0;
    const cutoff = (this.opts.now ?? Date.now)() - keep;
    try {
      await this.#client.query("DELETE FROM findings WHERE ts < $1", [cutoff]);
      const r = await this.#client.query("DELETE FROM audit WHERE ts < $1", [cutoff]);
      return r.rowCount ?? 0;
    } catch (e) {
      this.#log(`audit retention cleanup failed: ${(e as Error).message}`);
      return 0;
    }
  }

  /** Wait until what is queued now is written or spooled (tests, shutdown). */
  async flush(): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      if (this.#busy) await this.#busy;
      if (this.#queue.length === 0 && (this.#spool.rows === 0 || !this.#up)) return;
      this.#kick();
      if (!this.#busy) return;
    }
  }

  /** Write what is queued (or spool it, when the database is away), then close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopTimers();
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && this.#queue.length > 0) {
      if (this.#busy) await this.#busy;
      if (this.#queue.length === 0) break;
      const client = this.#client;
      if (client === null) break;
      const batch = this.#queue.splice(0, BATCH);
      if (!(await this.#write(client, batch))) this.#toSpool(batch);
    }
    if (this.#busy) await this.#busy;
    // Whatever is left is on disk for the next start.
    this.#toSpool(this.#queue.splice(0));
    if (this.#spool.rows > 0) {
      this.#log(
        `audit: ${this.#spool.rows} row(s) wait in the spool "${this.opts.spoolPath}" for PostgreSQL; the next start drains them`,
        true,
      );
    }
    await this.#shutdownClient();
    this.#spool.close();
  }

  #stopTimers() {
    clearInterval(this.#timer);
    if (this.#retentionTimer !== null) clearInterval(this.#retentionTimer);
    if (this.#soon !== null) clearTimeout(this.#soon);
  }

  #log(message: string, always = false) {
    const now = Date.now();
    if (!always && now - this.#lastLog < 1000) return;
    this.#lastLog = now;
    (this.opts.log ?? ((m) => console.error(m)))(`agentgate: ${message}`);
  }
}
