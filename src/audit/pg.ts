/**
 * The audit in PostgreSQL: how agentgate connects (`audit.postgres`, the
 * password from an environment variable), the schema and its forward
 * migrations (an `agentgate_schema` version table; replicas starting together
 * migrate under an advisory lock, one at a time), and the column types.
 *
 * The client is `npm:pg` (node-postgres). Measured under Deno 2.9 against a
 * local PostgreSQL 15 (multi-row INSERT of 30,000 41-column rows, 500 a
 * statement, and 2,000 one-row queries), `pg` wrote 15-17k rows/s and answered
 * a small query in ~0.12 ms; `postgres` (porsager) wrote 16-20k rows/s and
 * answered in ~0.2 ms. The writer here sends one `unnest` statement per batch,
 * so the client's own row encoding is not the bottleneck; the dashboard asks
 * many small queries, where `pg` is faster; and `pg`'s explicit Client/Pool
 * with per-client type parsers fits a writer that reconnects by itself.
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { AUDIT_COLUMNS } from "./event.ts";
import type { PgTarget } from "../util/pg_url.ts";

export { parsePgUrl, PgSchemaError, pgSource, type PgTarget } from "../util/pg_url.ts";
import { PgSchemaError } from "../util/pg_url.ts";

// bigint (count(*), ts) and numeric (sum of bigint) as JS numbers: ms
// timestamps and counts stay far below 2^53.
const TYPES = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === 20 || oid === 1700) return (v: string) => v === null ? null : Number(v);
    return pg.types.getTypeParser(oid, format as "text");
  },
};

/** A new client for `t` (not yet connected). `env` supplies the password. */
export function pgClient(
  t: PgTarget,
  env: (name: string) => string | undefined,
  opts: { queryTimeoutMs?: number } = {},
): pg.Client {
  return new pg.Client(clientConfig(t, env, opts));
}

/** A pool of at most `max` connections to `t`. */
export function pgPool(
  t: PgTarget,
  env: (name: string) => string | undefined,
  max: number,
): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(t, env, { queryTimeoutMs: 30_000 }), max });
  // An idle client whose server went away emits "error" on the pool: without a
  // listener that would be an uncaught exception. The next query reconnects.
  pool.on("error", () => {});
  return pool;
}

function clientConfig(
  t: PgTarget,
  env: (name: string) => string | undefined,
  opts: { queryTimeoutMs?: number },
): pg.ClientConfig {
  return {
    host: t.host,
    port: t.port,
    user: t.user,
    database: t.database,
    // Read at every connection: a rotated password is picked up on reconnect.
    password: () => Promise.resolve(env(t.passwordEnv) ?? ""),
    ssl: t.sslmode === "disable" ? false : { rejectUnauthorized: t.sslmode === "verify-full" },
    connectionTimeoutMillis: 5_000,
    query_timeout: opts.queryTimeoutMs ?? 10_000,
    application_name: "agentgate",
    types: TYPES,
  };
}

/** PostgreSQL types of the audit's columns (a new column fails to compile until it is typed here). */
export const PG_COLUMN_TYPES: Record<typeof AUDIT_COLUMNS[number], string> = {
  id: "text",
  ts: "bigint",
  session: "text",
  label: "text",
  client: "text",
  method: "text",
  scheme: "text",
  host: "text",
  port: "integer",
  path: "text",
  query: "text",
  status: "integer",
  decision: "text",
  rule: "text",
  rule_source: "text",
  reason: "text",
  policy: "text",
  bytes_in: "bigint",
  bytes_out: "bigint",
  duration_ms: "double precision",
  error: "text",
  headers: "text",
  provider: "text",
  model: "text",
  input_tokens: "bigint",
  output_tokens: "bigint",
  cache_read_tokens: "bigint",
  cache_write_tokens: "bigint",
  reasoning_tokens: "bigint",
  cost_usd: "double precision",
  usage_partial: "boolean",
  price_unknown: "boolean",
  spend_keys: "text",
  price_source: "text",
  price_incomplete: "boolean",
  price_missing: "text",
  service_tier: "text",
  reserved_usd: "double precision",
  charged_usd: "double precision",
  dest_ip: "text",
  inspection: "text",
};

const NOT_NULL = new Set([
  "id",
  "ts",
  "client",
  "method",
  "scheme",
  "host",
  "port",
  "decision",
  "reason",
  "bytes_in",
  "bytes_out",
  "duration_ms",
]);

/**
 * Forward migrations of the PostgreSQL audit; entry i brings the schema from
 * version i to i+1 (recorded in `agentgate_schema`). Append, never edit: a
 * database migrated by an older build is brought forward from where it is.
 */
export const PG_MIGRATIONS: string[] = [
  // v1: the audit as SQLite schema v9 has it, in one step.
  `CREATE TABLE audit (
     ${
    AUDIT_COLUMNS.map((c) =>
      `${c} ${PG_COLUMN_TYPES[c]}${
        c === "id" ? " PRIMARY KEY" : NOT_NULL.has(c) ? " NOT NULL" : ""
      }`
    ).join(",\n     ")
  }
   );
   CREATE INDEX audit_ts ON audit (ts);
   CREATE INDEX audit_host_ts ON audit (host, ts);
   CREATE INDEX audit_decision_ts ON audit (decision, ts);
   CREATE INDEX audit_session_ts ON audit (session, ts);
   CREATE INDEX audit_rule_ts ON audit (rule, decision, ts);
   CREATE INDEX audit_llm_ts ON audit (ts) INCLUDE (model, provider, cost_usd)
     WHERE model IS NOT NULL;
   CREATE INDEX audit_charge_ts ON audit (ts) WHERE COALESCE(charged_usd, cost_usd) > 0;
   CREATE TABLE findings (
     id bigserial PRIMARY KEY,
     decision_id text NOT NULL,
     ts bigint NOT NULL,
     detector text NOT NULL,
     direction text NOT NULL,
     location text NOT NULL,
     sample text NOT NULL,
     action text NOT NULL,
     host text NOT NULL
   );
   CREATE INDEX findings_ts ON findings (ts);
   CREATE INDEX findings_decision ON findings (decision_id);`,
];

/** Schema version this build writes to PostgreSQL. */
export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

// pg_advisory_xact_lock key: "agentgate" in ASCII, folded into an int8.
const LOCK_KEY = 0x6167656e74676174n & 0x7fffffffffffffffn;

/**
 * Bring the database to {@link PG_SCHEMA_VERSION}, in one transaction under an
 * advisory lock (replicas starting at once migrate one after the other; the
 * second finds nothing to do). Returns the version found before.
 *
 * @throws {PgSchemaError} when the database is newer than this build.
 */
export async function migratePg(client: pg.Client): Promise<number> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1)", [LOCK_KEY.toString()]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS agentgate_schema (
         version integer PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const r = await client.query("SELECT coalesce(max(version), 0) AS v FROM agentgate_schema");
    const found = Number(r.rows[0].v);
    if (found > PG_MIGRATIONS.length) {
      throw new PgSchemaError(
        `the audit database was written by a newer agentgate (schema version ${found}, this build knows ${PG_MIGRATIONS.length})`,
      );
    }
    for (let v = found; v < PG_MIGRATIONS.length; v++) {
      await client.query(PG_MIGRATIONS[v]);
      await client.query("INSERT INTO agentgate_schema (version) VALUES ($1)", [v + 1]);
    }
    await client.query("COMMIT");
    return found;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  }
}
