/**
 * Fixture files for tests of audit readers: databases this module never
 * writes itself (another tool's SQLite file, an audit of an older schema),
 * so that tests elsewhere need no SQL of their own.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";

/**
 * Write a SQLite database at `path` that is not an agentgate audit.
 *
 * @example
 * ```ts
 * writeForeignDatabase(`${dir}/other.db`);
 * ```
 */
export function writeForeignDatabase(path: string): void {
  const db = new DatabaseSync(path);
  db.exec("CREATE TABLE t (x)");
  db.close();
}

/**
 * Write an audit as an older agentgate (or a trimmed-down tool) left it: an
 * `audit` table with only the columns the rows name, no `findings` table,
 * schema version 0, not in WAL mode.
 *
 * @example
 * ```ts
 * writeLegacyAudit(`${dir}/v1.db`, [{ id: "a", ts: 1, host: "h", decision: "deny" }]);
 * ```
 */
export function writeLegacyAudit(
  path: string,
  rows: Record<string, string | number | null>[],
): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const db = new DatabaseSync(path);
  try {
    db.exec(`CREATE TABLE audit (${columns.map((c) => `"${c}"`).join(", ")})`);
    const insert = db.prepare(
      `INSERT INTO audit (${columns.map((c) => `"${c}"`).join(", ")})
       VALUES (${columns.map(() => "?").join(", ")})`,
    );
    for (const r of rows) insert.run(...columns.map((c) => r[c] ?? null));
  } finally {
    db.close();
  }
}
