/**
 * The spend ledger: USD spent per key over time, in integer nano-dollars so
 * that sums are exact. Keys are the built-in ones (`global`, `rule:…`,
 * `host:…`, `session:…`, `client:…`) and those of CEL-keyed limits; the
 * ledger is rebuilt from the audit's costs at start.
 *
 * @module
 */
import type { SpendRow as AuditSpendRow } from "../audit/read.ts";

/**
 * Spent USD per key over time. Keys are strings such as `global`,
 * `rule:openai`, `host:api.openai.com`, `session:ci`, `session:` (no session),
 * `client:10.0.0.5`, or a CEL key of one rule's limit. See {@link spendKeys}.
 */
export interface SpendLedger {
  /** Records `usd` spent at `ts` under each key. */
  add(keys: Iterable<string>, ts: number, usd: number): void;
  /** USD spent under `key` after `sinceMs` (exclusive). */
  spent(key: string, sinceMs: number): number;
  /**
   * Replaces the content with costs read back from the audit (at start), so a
   * restart does not reset a daily budget. Rows may come in any order.
   */
  rebuild(rows: Iterable<SpendRow>): void;
}

/**
 * A cost as the audit holds it (its read model's `spendRows`); the extra
 * keys of CEL-keyed budgets may be absent.
 */
export type SpendRow = Omit<AuditSpendRow, "spend_keys"> & { spend_keys?: string[] };

/** The ledger keys a cost counts under, whatever limits exist: one per built-in key kind. */
export function spendKeys(row: Omit<SpendRow, "ts" | "usd" | "spend_keys">): string[] {
  const keys = [
    "global",
    `host:${row.host}`,
    `session:${row.session ?? ""}`,
    `client:${row.client}`,
  ];
  if (row.rule !== null) keys.push(`rule:${row.rule}`);
  return keys;
}

/**
 * Costs are kept as integer nano-dollars so that sums are exact and "exactly
 * reached" is decidable (0.1 + 0.2 is not 0.3 in doubles).
 */
const NANO = 1e9;

/** Sorted (ts, cost) log per key, trimmed to the longest window any limit needs. */
class KeyLog {
  ts: number[] = [];
  nano: number[] = [];
  head = 0;
  /** Nano-USD of the entries held. */
  total = 0;
  /** Nano-USD since the process started: kept apart so trimming never loses `per: run`. */
  run = 0;

  add(ts: number, nano: number, runStart: number): void {
    // Appends are in time order in practice; an out-of-order cost is inserted.
    let i = this.ts.length;
    while (i > this.head && this.ts[i - 1] > ts) i--;
    this.ts.splice(i, 0, ts);
    this.nano.splice(i, 0, nano);
    this.total += nano;
    if (ts >= runStart) this.run += nano;
  }

  /** Drops entries at or before `cutoff`. */
  trim(cutoff: number): void {
    while (this.head < this.ts.length && this.ts[this.head] <= cutoff) {
      this.total -= this.nano[this.head];
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > this.ts.length) {
      this.ts = this.ts.slice(this.head);
      this.nano = this.nano.slice(this.head);
      this.head = 0;
    }
  }

  /** Index of the first entry after `since`. */
  firstAfter(since: number): number {
    let lo = this.head;
    let hi = this.ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ts[mid] <= since) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Nano-USD after `since` (exclusive). */
  sumAfter(since: number): number {
    let sum = this.total;
    const first = this.firstAfter(since);
    for (let i = this.head; i < first; i++) sum -= this.nano[i];
    return sum;
  }

  get size(): number {
    return this.ts.length - this.head;
  }
}

/** How often the ledger forgets old costs (on `add`). */
const LEDGER_SWEEP_MS = 60_000;

/**
 * The in-memory {@link SpendLedger}. Costs are kept per key for `retainMs`
 * (raised by each spending limit to its window); `per: run` totals are kept
 * apart, so they survive the trimming.
 */
export class MemorySpendLedger implements SpendLedger {
  #logs = new Map<string, KeyLog>();
  #lastSweep = -Infinity;
  /** Start of `per: run` windows: costs at or after it count as this run's. */
  readonly startedAt: number;
  /** Costs older than this are forgotten; each spending limit raises it to its window. */
  retainMs: number;

  constructor(options: { startedAt?: number; retainMs?: number } = {}) {
    this.startedAt = options.startedAt ?? Date.now();
    this.retainMs = options.retainMs ?? 31 * 86_400_000;
  }

  add(keys: Iterable<string>, ts: number, usd: number): void {
    if (!(usd > 0) || !Number.isFinite(usd)) return;
    const nano = Math.round(usd * NANO);
    for (const key of keys) {
      let log = this.#logs.get(key);
      if (log === undefined) this.#logs.set(key, log = new KeyLog());
      log.add(ts, nano, this.startedAt);
    }
    if (ts - this.#lastSweep >= LEDGER_SWEEP_MS) this.sweep(ts);
  }

  spent(key: string, sinceMs: number): number {
    return this.spentNano(key, sinceMs) / NANO;
  }

  /** Exact nano-USD after `sinceMs` (exclusive): what limits compare. */
  spentNano(key: string, sinceMs: number): number {
    const log = this.#logs.get(key);
    return log === undefined ? 0 : log.sumAfter(sinceMs);
  }

  /** Nano-USD spent under `key` since {@link startedAt} (`per: run`). */
  spentThisRunNano(key: string): number {
    return this.#logs.get(key)?.run ?? 0;
  }

  /** Entries of `key` after `sinceMs`, oldest first (for Retry-After). */
  *entries(key: string, sinceMs: number): Generator<[ts: number, nano: number]> {
    const log = this.#logs.get(key);
    if (log === undefined) return;
    for (let i = log.firstAfter(sinceMs); i < log.ts.length; i++) yield [log.ts[i], log.nano[i]];
  }

  rebuild(rows: Iterable<SpendRow>): void {
    this.#logs.clear();
    const sorted = [...rows].filter((r) => r.usd > 0).sort((a, b) => a.ts - b.ts);
    for (const row of sorted) {
      const keys = spendKeys(row);
      if (row.spend_keys) keys.push(...row.spend_keys);
      this.add(keys, row.ts, row.usd);
    }
  }

  /** Forgets costs older than `retainMs` before `now`, and keys left with nothing to count. */
  sweep(now: number): void {
    this.#lastSweep = now;
    const cutoff = now - this.retainMs;
    for (const [key, log] of this.#logs) {
      log.trim(cutoff);
      if (log.size === 0 && log.run === 0) this.#logs.delete(key);
    }
  }

  /** Number of keys held (for metrics and tests). */
  get keyCount(): number {
    return this.#logs.size;
  }
}
