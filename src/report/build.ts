/**
 * The report of `agentgate report` and `agentgate run`: what went through
 * the proxy, from the audit's read model. Building is separate from
 * formatting (`format.ts`): one {@link Report} value, printed as text,
 * markdown or JSON.
 *
 * The aggregation is the read model's (`reportAggregates`: in SQL, so a
 * month of a busy audit is grouped inside the database, not in
 * JavaScript); this module orders, caps and totals it.
 *
 * @module
 */
import {
  AuditReadError,
  type AuditReadModel,
  type DecisionCounts,
  type DenialLine,
  type ErrorLine,
  type HostLine,
  type ModelLine,
  type ReportFilter,
  type RuleLine,
  type SessionLine,
} from "../audit/read.ts";
import { openAuditFile } from "../audit/sqlite_read.ts";
import { pgSource, type PgTarget } from "../util/pg_url.ts";

/** Identifies the JSON shape of a {@link Report}. */
export const REPORT_FORMAT = "agentgate.report/v1";

/** Everything a report shows; its JSON form is the `--format json` output. */
export interface Report {
  format: typeof REPORT_FORMAT;
  /** Where the rows came from (an audit file, or a proxy's API). */
  source: string;
  filter: ReportFilter;
  /** The label of the session (when `filter.session` is set and its rows carry one). */
  label: string | null;
  /** Time of the first and last row covered, or null when none. */
  first_ts: number | null;
  last_ts: number | null;
  totals: DecisionCounts & {
    hosts: number;
    llm_requests: number;
    input_tokens: number;
    output_tokens: number;
    cost_usd: number;
    cost_unknown: number;
  };
  /**
   * Tunnels (CONNECT rows) per decision: connections, counted apart from
   * `totals` (an intercepted tunnel's requests are counted there).
   */
  tunnels: DecisionCounts;
  /** Most requests first. */
  hosts: HostLine[];
  /** Oldest first. */
  denials: DenialLine[];
  /** Most first. */
  errors: ErrorLine[];
  /** Most hits first. */
  rules: RuleLine[];
  /** Highest cost first. */
  models: ModelLine[];
  /** Most requests first; empty when the report is about one session. */
  sessions: SessionLine[];
  /** Entries left out of each list by the size cap ({@link BuildOptions.maxItems}). */
  truncated: { hosts: number; denials: number; errors: number; rules: number; sessions: number };
  /** What only `agentgate run` knows about its own proxy (absent in `agentgate report`). */
  run?: RunFacts;
}

/** A reload of the policy while a run's proxy served (`run --watch`). */
export interface PolicyReload {
  /** ms since the epoch. */
  at: number;
  /** `file change`, `SIGHUP` or `api`. */
  trigger: string;
  /** Applied (true) or rejected, the previous policy staying in force (false). */
  ok: boolean;
  /** Rules in force after an applied reload. */
  rules: number | null;
  /** `file:line:col: message` of a rejected one. */
  errors: string[];
}

/** Facts of an `agentgate run` beyond its audit rows. */
export interface RunFacts {
  /** Whether the policy was watched (`--watch`); without it, it was read once. */
  watch: boolean;
  /** Every reload during the run, oldest first. */
  policy_reloads: PolicyReload[];
  /**
   * Requests the run's proxy refused (407) because their credentials were not
   * the run's: a forged or guessed session. Null with `--proxy` (a shared
   * proxy cannot tell whose they were).
   */
  invalid_credentials: number | null;
}

/** Options of {@link buildReport}. */
export interface BuildOptions {
  /** Name shown as the source (default: the database's file name). */
  source?: string;
  /** Cap of every list (default 1000); what is cut is counted in `truncated`. */
  maxItems?: number;
}

/** Sums of floats without binary noise (`0.30000000000000004`). */
function usd(x: number): number {
  return Math.round(x * 1e10) / 1e10;
}

/**
 * Build the report of the rows matching `filter`.
 *
 * @example
 * const reader = openAuditForReport("./agentgate.db");
 * const report = await buildReport(reader, { session: "ci-1a2b3c4d", since: null, until: null });
 * await reader.close();
 */
export async function buildReport(
  reader: AuditReadModel,
  filter: ReportFilter,
  opts: BuildOptions = {},
): Promise<Report> {
  const max = opts.maxItems ?? 1000;
  const a = await reader.reportAggregates(filter);
  const hostsAll: HostLine[] = [...a.hosts]
    .sort((x, y) => y.requests - x.requests || y.tunnels - x.tunnels || (x.host < y.host ? -1 : 1));
  const rulesAll: RuleLine[] = [...a.rules].sort((x, y) =>
    y.requests - x.requests || y.tunnels - x.tunnels ||
    (x.rule === null ? 1 : y.rule === null ? -1 : x.rule < y.rule ? -1 : 1)
  );
  const models = a.models;

  const cut = <T>(xs: T[]): [T[], number] => [xs.slice(0, max), Math.max(0, xs.length - max)];
  const [hosts, hostsCut] = cut(hostsAll);
  const [denials, denialsCut] = cut(a.denials);
  const [errors, errorsCut] = cut(a.errors);
  const [rules, rulesCut] = cut(rulesAll);
  const [sessions, sessionsCut] = cut(a.sessions);
  return {
    format: REPORT_FORMAT,
    source: opts.source ?? "audit",
    filter: { ...filter },
    label: a.label,
    first_ts: a.first_ts,
    last_ts: a.last_ts,
    totals: {
      ...a.counts,
      hosts: hostsAll.length,
      llm_requests: models.reduce((s, m) => s + m.requests, 0),
      input_tokens: models.reduce((s, m) => s + m.input_tokens, 0),
      output_tokens: models.reduce((s, m) => s + m.output_tokens, 0),
      cost_usd: usd(models.reduce((s, m) => s + m.cost_usd, 0)),
      cost_unknown: models.reduce((s, m) => s + m.cost_unknown, 0),
    },
    tunnels: { ...a.tunnels },
    hosts,
    denials,
    errors,
    rules,
    models,
    sessions,
    truncated: {
      hosts: hostsCut,
      denials: denialsCut,
      errors: errorsCut,
      rules: rulesCut,
      sessions: sessionsCut,
    },
  };
}

/** Thrown when an audit cannot be read for a report. */
export class ReportSourceError extends Error {
  override name = "ReportSourceError";
}

/**
 * Open an audit file read-only for a report (never creating or migrating
 * it: a report must not change the file it reads).
 *
 * @example
 * const reader = openAuditForReport("./agentgate.db");
 * @throws {ReportSourceError} when there is no audit at `path` or it cannot be read.
 */
export function openAuditForReport(path: string): AuditReadModel {
  try {
    return openAuditFile(path);
  } catch (e) {
    if (!(e instanceof AuditReadError)) throw e;
    throw new ReportSourceError(
      e.code === "not_found" ? `no audit database at "${path}"` : e.message,
    );
  }
}

/**
 * The audit a policy names, read-only: its PostgreSQL audit when
 * `audit.postgres` is set (the fleet's rows, password from its variable),
 * else its SQLite file. `source` names it for the report, without secrets.
 *
 * @example
 * const { reader, source } = await openConfiguredAudit(config.audit, (k) => Deno.env.get(k));
 * @throws {ReportSourceError} when there is no SQLite audit at the path or it cannot be read.
 */
export async function openConfiguredAudit(
  audit: { path: string; postgres: PgTarget | null },
  env: (name: string) => string | undefined,
): Promise<{ reader: AuditReadModel; source: string }> {
  if (audit.postgres !== null) {
    // Loaded only here: the PostgreSQL client costs memory every other command would pay.
    const { openPgAuditReader } = await import("../audit/pg_read.ts");
    return { reader: openPgAuditReader(audit.postgres, env), source: pgSource(audit.postgres) };
  }
  return { reader: openAuditForReport(audit.path), source: audit.path };
}
