/**
 * `postgres://` URLs as agentgate reads them (`audit.postgres`): the policy
 * compiler checks them, the audit connects with the result. A password in
 * the URL is refused: it comes from an environment variable.
 *
 * @module
 */

/** Where and how to connect, compiled from `audit.postgres` and `audit.password_env`. */
export interface PgTarget {
  /** The URL as configured (it never carries a password: `check` refuses one). */
  url: string;
  host: string;
  port: number;
  user: string;
  database: string;
  /** `disable` (default), `require` (TLS, any certificate), `verify-full` (TLS, verified). */
  sslmode: "disable" | "require" | "verify-full";
  /** The environment variable holding the password (default `PGPASSWORD`). */
  passwordEnv: string;
}

/**
 * Parse a `postgres://` URL, or say what is wrong with it (the policy
 * compiler turns the message into a `file:line:col` error).
 *
 * @example
 * parsePgUrl("postgres://agentgate@db:5432/audit", "PGPASSWORD").database // "audit"
 * parsePgUrl("postgres://u:secret@db/audit", "PGPASSWORD") // a string: the password is refused
 */
export function parsePgUrl(url: string, passwordEnv: string): PgTarget | string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `"${url}" is not a URL (expected postgres://USER@HOST:PORT/DATABASE)`;
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    return `"${u.protocol}" is not a PostgreSQL URL scheme (expected postgres://USER@HOST:PORT/DATABASE)`;
  }
  if (u.password !== "") {
    return "the URL carries a password: policy files are read by many (git, CI logs, " +
      `the dashboard); remove it and put it in the environment variable "${passwordEnv}" ` +
      "(audit.password_env names another)";
  }
  if (u.hostname === "") {
    return "the URL names no host (expected postgres://USER@HOST:PORT/DATABASE)";
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ""));
  if (database === "" || database.includes("/")) {
    return "the URL names no database (expected postgres://USER@HOST:PORT/DATABASE)";
  }
  const sslmode = u.searchParams.get("sslmode") ?? "disable";
  if (sslmode !== "disable" && sslmode !== "require" && sslmode !== "verify-full") {
    return `sslmode "${sslmode}" is not supported (use disable, require or verify-full)`;
  }
  for (const k of u.searchParams.keys()) {
    if (k !== "sslmode") return `unknown URL parameter "${k}" (only sslmode is read)`;
  }
  return {
    url,
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port === "" ? 5432 : Number(u.port),
    user: decodeURIComponent(u.username) || "agentgate",
    database,
    sslmode,
    passwordEnv,
  };
}

/** The URL without anything secret, for banners and `source`. */
export function pgSource(t: PgTarget): string {
  return `postgres://${t.user}@${
    t.host.includes(":") ? `[${t.host}]` : t.host
  }:${t.port}/${t.database}`;
}

/** The database was written by a newer agentgate: this build must not write to it. */
export class PgSchemaError extends Error {
  override name = "PgSchemaError";
}
