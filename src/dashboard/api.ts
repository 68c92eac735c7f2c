/**
 * The dashboard API's query parameters: `/_/api/*` query strings parsed
 * into the audit read model's filters (src/audit/read.ts), every bad value
 * a {@link ParamError} that answers 400 with a reason. The queries
 * themselves are the read model's.
 *
 * @module
 */
import * as time from "../util/time.ts";
import { didYouMean } from "../util/suggest.ts";
import {
  type AuditQuery,
  type AuditRow,
  type DecisionName,
  DECISIONS,
  SORT_COLUMNS,
  type SortColumn,
  type StatsQuery,
} from "../audit/read.ts";

/** A query parameter that cannot be used: answered 400 with `message` as the reason. */
export class ParamError extends Error {
  override name = "ParamError";
}

// --- parameters --------------------------------------------------------------

/** Reject parameters an endpoint does not know (a typo should not silently widen a query). */
function checkKnown(params: URLSearchParams, known: readonly string[]): void {
  for (const k of new Set(params.keys())) {
    if (!known.includes(k)) {
      throw new ParamError(
        known.length === 0
          ? `unknown parameter "${k}": this endpoint takes none`
          : `unknown parameter "${k}"${didYouMean(k, [...known])}; known: ${known.join(", ")}`,
      );
    }
  }
}

/** The single value of a parameter (a repeated one is ambiguous), or null when absent/empty. */
function one(params: URLSearchParams, name: string): string | null {
  const all = params.getAll(name);
  if (all.length > 1) throw new ParamError(`parameter "${name}" is given ${all.length} times`);
  const v = all[0];
  return v === undefined || v === "" ? null : v;
}

function int(params: URLSearchParams, name: string, dflt: number, min: number, max: number) {
  const v = one(params, name);
  if (v === null) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new ParamError(`"${name}" must be a whole number from ${min} to ${max}, not "${v}"`);
  }
  return Number(v);
}

function text(params: URLSearchParams, name: string, maxLen = 500): string | null {
  const v = one(params, name);
  if (v !== null && v.length > maxLen) {
    throw new ParamError(`"${name}" is longer than ${maxLen} characters`);
  }
  return v;
}

/**
 * A point in time: ms since the epoch (`1718000000000`), a duration before
 * `now` (`15m`, `1h`, `7d`), or an ISO 8601 date (`2025-06-01T12:00:00Z`);
 * see src/util/time.ts for the grammar.
 *
 * @example
 * parseTime("1h", "since", 7_200_000) // 3_600_000
 */
export function parseTime(v: string, name: string, now: number): number {
  const t = time.parseTime(v, { now });
  if (t.ok) return t.ms;
  throw new ParamError(
    t.problem === "duration"
      ? `"${name}": ${t.detail}`
      : `"${name}" must be ${time.describeTimeForms()}, not "${v}"`,
  );
}

const AUDIT_PARAMS = [
  "limit",
  "offset",
  "host",
  "hostname",
  "decision",
  "session",
  "session_id",
  "rule",
  "search",
  "since",
  "until",
  "tunnels",
  "model",
  "policy",
  "status",
  "sort",
] as const;

/** The audit filters plus the export's `format` (`GET /_/api/export`). */
export const EXPORT_PARAMS = [...AUDIT_PARAMS, "format"] as const;

/**
 * Parse the parameters of `GET /_/api/audit` (`hostname` and `session_id` are
 * accepted as aliases, as @agentreserve/proxy and Bastion name them).
 *
 * @example
 * parseAuditQuery(new URLSearchParams("decision=deny&since=1h"), Date.now())
 */
export function parseAuditQuery(
  params: URLSearchParams,
  now: number,
  known: readonly string[] = AUDIT_PARAMS,
): AuditQuery {
  checkKnown(params, known);
  const host = alias(params, "host", "hostname", 253);
  const session = alias(params, "session", "session_id", 500);
  const d = one(params, "decision");
  let decisions: DecisionName[] | null = null;
  if (d !== null) {
    decisions = [];
    for (const part of d.split(",")) {
      const x = part.trim();
      if (!(DECISIONS as readonly string[]).includes(x)) {
        throw new ParamError(
          `"decision" must be one or more of ${DECISIONS.join(", ")} (comma-separated), not "${x}"${
            didYouMean(x, [...DECISIONS])
          }`,
        );
      }
      if (!decisions.includes(x as DecisionName)) decisions.push(x as DecisionName);
    }
  }
  const s = one(params, "since");
  const u = one(params, "until");
  const since = s === null ? null : parseTime(s, "since", now);
  const until = u === null ? null : parseTime(u, "until", now);
  if (since !== null && until !== null && since > until) {
    throw new ParamError(`"since" (${since}) is after "until" (${until})`);
  }
  return {
    limit: int(params, "limit", 50, 1, 1000),
    offset: int(params, "offset", 0, 0, 10_000_000),
    host: host?.toLowerCase() ?? null,
    decisions,
    session,
    rule: text(params, "rule"),
    search: text(params, "search", 200),
    since,
    until,
    tunnels: tunnelsParam(one(params, "tunnels")),
    model: text(params, "model", 200),
    policy: text(params, "policy", 100),
    status: one(params, "status") === null ? null : int(params, "status", 0, 100, 599),
    sort: sortParam(one(params, "sort")),
  };
}

/** `tunnels=only` (tunnels alone), `tunnels=exclude` (requests alone); absent: both. */
function tunnelsParam(v: string | null): boolean | null {
  if (v === null) return null;
  if (v === "only") return true;
  if (v === "exclude") return false;
  throw new ParamError(`"tunnels" must be "only" or "exclude", not "${v}"`);
}

/** `sort=host` (ascending) or `sort=-cost_usd` (descending). */
function sortParam(v: string | null): AuditQuery["sort"] {
  if (v === null) return null;
  const desc = v.startsWith("-");
  const column = desc ? v.slice(1) : v;
  if (!(SORT_COLUMNS as readonly string[]).includes(column)) {
    throw new ParamError(
      `"sort" must be a column (${SORT_COLUMNS.join(", ")}), "-" first for descending, not "${v}"${
        didYouMean(column, [...SORT_COLUMNS])
      }`,
    );
  }
  return { column: column as SortColumn, dir: desc ? "desc" : "asc" };
}

function alias(params: URLSearchParams, name: string, other: string, maxLen: number) {
  const a = text(params, name, maxLen);
  const b = text(params, other, maxLen);
  if (a !== null && b !== null && a !== b) {
    throw new ParamError(`"${name}" and "${other}" name the same filter; give one`);
  }
  return a ?? b;
}

/**
 * Parse `GET /_/api/stats?hours&session` (`hours` 1–8760, default 24;
 * `session_id` is an alias of `session`).
 */
export function parseStatsQuery(params: URLSearchParams): StatsQuery {
  checkKnown(params, ["hours", "session", "session_id"]);
  return {
    hours: int(params, "hours", 24, 1, 8760),
    session: alias(params, "session", "session_id", 500),
  };
}

/**
 * Parse the small parameter sets of the other endpoints: `limit` (when
 * `limit` gives its default and maximum) and `hours` (when allowed). Any
 * other parameter is a {@link ParamError}.
 *
 * @example
 * parseParams(new URLSearchParams("limit=20"), { limit: [50, 1000], hours: true })
 * // { limit: 20, hours: null }
 */
export function parseParams(
  params: URLSearchParams,
  opts: { limit?: [dflt: number, max: number]; hours?: boolean },
): { limit: number; hours: number | null } {
  checkKnown(params, [...(opts.limit ? ["limit"] : []), ...(opts.hours ? ["hours"] : [])]);
  const hours = opts.hours && one(params, "hours") !== null
    ? int(params, "hours", 24, 1, 87_600)
    : null;
  return { limit: opts.limit ? int(params, "limit", opts.limit[0], 1, opts.limit[1]) : 0, hours };
}

// --- grouped denials -----------------------------------------------------------

/** The denials of a row page worth grouping (what {@link groupDenials} reads of a row). */
export type DenialRow = Pick<
  AuditRow,
  | "id"
  | "ts"
  | "decision"
  | "method"
  | "scheme"
  | "host"
  | "port"
  | "path"
  | "status"
  | "rule"
  | "policy"
  | "reason"
>;

/**
 * Identical denials (same decision, rule, policy, reason and host) as one
 * line: how many, the first and latest time, and the latest request's
 * method, path and id (to open its detail).
 */
export interface DenialGroup {
  decision: string;
  rule: string | null;
  policy: string | null;
  reason: string;
  host: string;
  count: number;
  first_ts: number;
  last_ts: number;
  last_id: string;
  method: string;
  scheme: string;
  port: number;
  /** The latest request's path (null: a tunnel). */
  path: string | null;
  status: number | null;
}

/** The overview's grouped denials (`denial_groups` of `GET /_/api/stats`). */
export interface DenialGroups {
  /** Latest first, at most `max`. */
  groups: DenialGroup[];
  /** Denials in the range (counted up to the audit's total cap). */
  denials: number;
  /** The latest denials the groups were built from (all of them when equal to `denials`). */
  grouped: number;
}

/** How many of the latest denials the overview groups. */
export const DENIALS_GROUPED = 1000;

/**
 * Group `rows` (newest first) into identical denials, latest group first.
 *
 * @example
 * groupDenials(rows, 20).map((g) => `${g.count}× ${g.host}: ${g.reason}`)
 */
export function groupDenials(rows: readonly DenialRow[], max: number): DenialGroup[] {
  const groups = new Map<string, DenialGroup>();
  // What a group shows of its latest request.
  const latest = (r: DenialRow) => ({
    last_ts: r.ts,
    last_id: r.id,
    method: r.method,
    scheme: r.scheme,
    port: r.port,
    path: r.path,
    status: r.status,
  });
  for (const r of rows) {
    const key = JSON.stringify([r.decision, r.rule, r.policy, r.reason, r.host]);
    const g = groups.get(key);
    if (g === undefined) {
      const { decision, rule, policy, reason, host } = r;
      groups.set(key, {
        decision,
        rule,
        policy,
        reason,
        host,
        count: 1,
        first_ts: r.ts,
        ...latest(r),
      });
      continue;
    }
    g.count++;
    if (r.ts < g.first_ts) g.first_ts = r.ts;
    if (r.ts > g.last_ts) Object.assign(g, latest(r));
  }
  return [...groups.values()].sort((a, b) => b.last_ts - a.last_ts).slice(0, max);
}
