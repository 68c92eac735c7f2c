/**
 * The spool: a local SQLite file that holds audit rows while the audit
 * database (PostgreSQL) cannot take them, oldest first, until they are
 * drained into it. Bounded by bytes: past the bound a row is refused (the
 * caller counts and reports it), never an older one overwritten.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import type { AuditEventV1 } from "./event.ts";

/** One spooled row and its place in the spool. */
export interface SpooledRow {
  seq: number;
  event: AuditEventV1;
}

/**
 * A spool file.
 *
 * @example
 * ```ts
 * const spool = AuditSpool.open("/var/lib/agentgate/audit-spool.db", 256 * 2 ** 20);
 * spool.push(rows);               // the rows that did not fit
 * const batch = spool.peek(1000); // oldest first
 * spool.remove(batch.at(-1)!.seq); // once the database has them
 * ```
 */
export class AuditSpool {
  #db: DatabaseSync;
  #insert: StatementSync;
  #rows = 0;
  #bytes = 0;

  private constructor(db: DatabaseSync, readonly path: string, readonly maxBytes: number) {
    this.#db = db;
    this.#insert = db.prepare("INSERT INTO spool (bytes, row) VALUES (?, ?)");
    const r = db.prepare("SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM spool").get() as {
      n: number;
      b: number;
    };
    this.#rows = Number(r.n);
    this.#bytes = Number(r.b);
  }

  /** Open (or create) the spool at `path`; rows a previous process left are kept. */
  static open(path: string, maxBytes: number): AuditSpool {
    if (path !== ":memory:") Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const db = new DatabaseSync(path);
    try {
      db.exec("PRAGMA busy_timeout = 50");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec(
        "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, bytes INTEGER NOT NULL, row TEXT NOT NULL)",
      );
    } catch (e) {
      db.close();
      throw e;
    }
    return new AuditSpool(db, path, maxBytes);
  }

  /** Rows held. */
  get rows(): number {
    return this.#rows;
  }

  /** Bytes held (of the rows' JSON). */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Append `events` in one transaction, as many as fit under the bound;
   * returns how many were kept (the first ones). Throws when the file
   * refuses the write (nothing of this call is then kept).
   */
  push(events: readonly AuditEventV1[]): number {
    if (events.length === 0) return 0;
    let kept = 0;
    let bytes = 0;
    this.#db.exec("BEGIN");
    try {
      for (const e of events) {
        const text = JSON.stringify(e);
        if (this.#bytes + bytes + text.length > this.maxBytes) break;
        this.#insert.run(text.length, text);
        bytes += text.length;
        kept++;
      }
      this.#db.exec("COMMIT");
    } catch (e) {
      try {
        this.#db.exec("ROLLBACK");
      } catch {
        // already rolled back
      }
      throw e;
    }
    this.#rows += kept;
    this.#bytes += bytes;
    return kept;
  }

  /** The oldest `n` rows (a row that no longer parses is skipped and removed later). */
  peek(n: number): SpooledRow[] {
    const rows = this.#db.prepare("SELECT seq, row FROM spool ORDER BY seq LIMIT ?").all(n) as {
      seq: number;
      row: string;
    }[];
    const out: SpooledRow[] = [];
    for (const r of rows) {
      try {
        out.push({ seq: Number(r.seq), event: JSON.parse(r.row) });
      } catch {
        // Cannot happen for rows this module wrote; a damaged one must not block the drain.
      }
    }
    return out;
  }

  /** Forget every row up to and including `seq` (they are in the database). */
  remove(seq: number): void {
    const r = this.#db.prepare(
      "SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM spool WHERE seq <= ?",
    ).get(seq) as { n: number; b: number };
    this.#db.prepare("DELETE FROM spool WHERE seq <= ?").run(seq);
    this.#rows -= Number(r.n);
    this.#bytes -= Number(r.b);
  }

  close(): void {
    this.#db.close();
  }
}
