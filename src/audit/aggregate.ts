/**
 * The arithmetic both audit read models share (SQLite, `sqlite_read.ts`;
 * PostgreSQL, `pg_read.ts`): what their queries return is grouped, split into
 * requests and tunnels and summed here, once, so the two backends answer
 * alike by construction rather than by keeping two copies in step.
 *
 * @module
 */
import { type DecisionCounts, DECISIONS, type Stats } from "./read.ts";

/** A grouped row: a count `n` for one `decision` (and whatever it was grouped by). */
export type CountRow = Record<string, unknown>;

/** Sums of floats without binary noise (`0.30000000000000004`). */
export function usd(x: number): number {
  return Math.round(x * 1e10) / 1e10;
}

/** Escape LIKE wildcards so user text matches literally (with `ESCAPE '\'`). */
export function likeLiteral(s: string): string {
  return s.replace(/[\\%_]/g, (c) => "\\" + c);
}

/** Counts of nothing (copy before adding to it). */
export const ZERO: Readonly<DecisionCounts> = Object.freeze({
  requests: 0,
  allow: 0,
  log: 0,
  deny: 0,
  would_deny: 0,
  error: 0,
  challenge: 0,
});

/**
 * Per-decision counts (`n` per `decision`) summed under `keyOf` of each row.
 *
 * @example
 * counts([{ decision: "deny", n: 2 }], () => "").get("") // { requests: 2, deny: 2, … }
 */
export function counts<K>(rows: CountRow[], keyOf: (r: CountRow) => K): Map<K, DecisionCounts> {
  const out = new Map<K, DecisionCounts>();
  for (const r of rows) {
    const key = keyOf(r);
    let c = out.get(key);
    if (!c) out.set(key, c = { ...ZERO });
    const n = Number(r.n);
    c.requests += n;
    const d = r.decision as keyof DecisionCounts;
    if (d in c && d !== "requests") c[d] += n;
  }
  return out;
}

/** Whether a grouped row counts tunnels: its `t` column (`method = 'CONNECT'`), 1 or true. */
export function isTunnelRow(r: CountRow): boolean {
  return r.t === true || Number(r.t) === 1;
}

/**
 * Rows grouped by a key, decision and tunnel flag `t`, as one line per key:
 * the requests' counts and the number of tunnels (counted apart). Keys with
 * requests come first.
 *
 * @example
 * splitTunnels(rows, (r) => r.host as string) // [{ key: "a.test", counts: {…}, tunnels: 1 }]
 */
export function splitTunnels<K>(
  rows: CountRow[],
  keyOf: (r: CountRow) => K,
): { key: K; counts: DecisionCounts; tunnels: number }[] {
  const tunnels = counts(rows.filter(isTunnelRow), keyOf);
  const requests = counts(rows.filter((r) => !isTunnelRow(r)), keyOf);
  return [...new Set([...requests.keys(), ...tunnels.keys()])].map((key) => ({
    key,
    counts: requests.get(key) ?? { ...ZERO },
    tunnels: tunnels.get(key)?.requests ?? 0,
  }));
}

/**
 * The overview's totals, summed from its buckets and its spend by model.
 *
 * @example
 * statsTotals(points, spendByModel, hostCount).requests
 */
export function statsTotals(
  points: Stats["buckets"]["points"],
  spendByModel: Stats["spend_by_model"],
  hosts: number,
): Stats["totals"] {
  const totals: Stats["totals"] = {
    requests: 0,
    tunnels: 0,
    allow: 0,
    log: 0,
    deny: 0,
    would_deny: 0,
    error: 0,
    challenge: 0,
    hosts,
    llm_requests: 0,
    input_tokens: 0,
    output_tokens: 0,
    spend_usd: 0,
  };
  for (const p of points) {
    for (const d of DECISIONS) totals[d] += p[d];
    totals.requests += p.requests;
    totals.tunnels += p.tunnels;
  }
  for (const m of spendByModel) {
    totals.llm_requests += m.requests;
    totals.input_tokens += m.input_tokens;
    totals.output_tokens += m.output_tokens;
    totals.spend_usd += m.cost_usd;
  }
  totals.spend_usd = usd(totals.spend_usd);
  return totals;
}
