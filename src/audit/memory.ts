/**
 * An audit held in memory, built from rows fetched elsewhere: `agentgate run
 * --proxy` reads its session's rows from a running proxy's `/_/api/audit`
 * and reports on them with the same queries as on a file.
 *
 * @module
 */
import type { AuditReadModel, AuditRowWithHeaders } from "./read.ts";
import { openAuditDb } from "./store.ts";
import { sqliteReaderOver } from "./sqlite_read.ts";
import type { SQLInputValue, StatementSync } from "node:sqlite";

/**
 * A read model over `rows` (as the audit API answers them: objects with
 * audit column names). Keys that are not columns are ignored, missing
 * columns read as null; findings are not restored (a row keeps none).
 * Close it when done.
 *
 * @example
 * ```ts
 * const reader = auditFromRows(page.items, "http://127.0.0.1:4100/_/api/audit");
 * const report = await buildReport(reader, { session, since: null, until: null });
 * await reader.close();
 * ```
 */
export function auditFromRows(
  rows: Iterable<Partial<AuditRowWithHeaders>>,
  source = "rows",
): AuditReadModel {
  const db = openAuditDb(":memory:");
  const known = new Set(
    (db.prepare("PRAGMA table_info(audit)").all() as { name: string }[]).map((c) => c.name),
  );
  const inserts = new Map<string, StatementSync>();
  db.exec("BEGIN");
  for (const r of rows) {
    const cols = Object.keys(r).filter((k) => known.has(k));
    const key = cols.join(",");
    let insert = inserts.get(key);
    if (!insert) {
      insert = db.prepare(
        `INSERT OR IGNORE INTO audit (${cols.join(", ")}) VALUES (${
          cols.map(() => "?").join(", ")
        })`,
      );
      inserts.set(key, insert);
    }
    insert.run(...cols.map((k) => {
      const v = (r as Record<string, unknown>)[k];
      if (typeof v === "boolean") return Number(v);
      if (v === undefined) return null;
      if (typeof v === "object" && v !== null) return JSON.stringify(v);
      return v as SQLInputValue;
    }));
  }
  db.exec("COMMIT");
  return sqliteReaderOver(db, source, { owned: true });
}
