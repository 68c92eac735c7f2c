/**
 * The spend ledger: what budgets count. Charges (USD spent per key over
 * time, in integer nano-dollars so that sums are exact) and reservations
 * (the worst-case cost of calls in flight, held on the same keys until the
 * call settles). The ledger is rebuilt from the audit and the spend journal
 * at start.
 *
 * Keys are strings. A spending limit counts the requests its own rule
 * allowed, unless it says `scope: all`:
 *
 * | limit                          | ledger key                      |
 * | ------------------------------ | ------------------------------- |
 * | `key: rule` (or `global`)      | `rule:openai`                   |
 * | `key: session`                 | `rule:openai\|session:ci`       |
 * | `key: host` / `client`         | `rule:openai\|host:…`, `…\|client:…` |
 * | `key: <CEL>`                   | `cel:openai\|<expr>=<value>`    |
 * | `key: global, scope: all`      | `global`                        |
 * | `key: session, scope: all`     | `session:ci` (`host:…`, `client:…`) |
 *
 * Token limits reserve on `tokens:…` keys (amounts in tokens); their
 * charges live in the rate limiter's own counters.
 *
 * @module
 */
import type { SpendRow as AuditSpendRow } from "../audit/read.ts";

/** A call's hold on budgets while it is in flight. */
export interface Reservation {
  /** When it was taken (ms since the epoch). */
  ts: number;
  /** Amount held per key: nano-USD on spend keys, tokens on `tokens:` keys (0 = key only). */
  holds: Map<string, number>;
}

/**
 * What budgets count: charges over time and reservations in flight, per key.
 * {@link MemorySpendLedger} is the in-process implementation; a shared
 * backend (Redis) implements the same interface. Every method is
 * synchronous: the engine reads and reserves inside a decision, before any
 * await.
 *
 * @example
 * ```ts
 * const ledger: SpendLedger = new MemorySpendLedger();
 * ledger.reserve("req-1", Date.now(), ["rule:openai|session:ci"], 4_000_000); // $0.004 held
 * ledger.release("req-1");
 * ledger.add(["rule:openai|session:ci"], Date.now(), 0.0012); // the real cost
 * ```
 */
export interface SpendLedger {
  /** Start of `per: run` windows: costs at or after it count as this run's. */
  readonly startedAt: number;
  /** Records `usd` spent at `ts` under each key. */
  add(keys: Iterable<string>, ts: number, usd: number): void;
  /** USD spent under `key` after `sinceMs` (exclusive). */
  spent(key: string, sinceMs: number): number;
  /** Exact nano-USD spent under `key` after `sinceMs` (exclusive). */
  spentNano(key: string, sinceMs: number): number;
  /** Nano-USD spent under `key` since {@link startedAt} (`per: run`). */
  spentThisRunNano(key: string): number;
  /** Charges of `key` after `sinceMs`, oldest first, as `[ts, nano]` (for Retry-After). */
  entries(key: string, sinceMs: number): Iterable<[ts: number, nano: number]>;
  /** Keep charges for at least `ms` (each limit raises it to its window). */
  retain(ms: number): void;
  /** Replaces the charges with those read back at start (audit, spend journal); any order. */
  rebuild(rows: Iterable<SpendRow>): void;
  /**
   * Holds `amount` under each of `keys` for request `id` (added to the
   * request's reservation; a key it already holds keeps its amount).
   */
  reserve(id: string, ts: number, keys: Iterable<string>, amount: number): void;
  /** The amount held under `key` by every reservation in flight. */
  reservedOn(key: string): number;
  /** The reservation of request `id`, if it holds one. */
  reservation(id: string): Reservation | undefined;
  /** Drops the reservation of request `id` and returns it. */
  release(id: string): Reservation | undefined;
  /** Keys starting with `prefix` that hold charges or reservations (for the budgets view). */
  keysWithPrefix(prefix: string): string[];
  /** Requests holding a reservation now. */
  readonly reservationCount: number;
}

/**
 * A cost as it is read back at start (the audit's `spendRows`, or the spend
 * journal); the extra keys of CEL-keyed budgets may be absent.
 */
export type SpendRow = Omit<AuditSpendRow, "spend_keys" | "id"> & {
  id?: string;
  spend_keys?: string[];
};

/**
 * The ledger keys a cost counts under, whatever limits exist: the rule's own
 * keys (`rule:R`, `rule:R|session:…`, `rule:R|host:…`, `rule:R|client:…`) and
 * the keys of `scope: all` budgets (`global`, `session:…`, `host:…`,
 * `client:…`). A request the default allowed (no rule) counts only for the
 * latter. CEL keys come on top (see {@link SpendRow.spend_keys}).
 *
 * @example
 * ```ts
 * spendKeys({ session: "ci", host: "api.openai.com", client: "10.0.0.5", rule: "openai" });
 * // ["global", "session:ci", "host:api.openai.com", "client:10.0.0.5",
 * //  "rule:openai", "rule:openai|session:ci", "rule:openai|host:api.openai.com", "rule:openai|client:10.0.0.5"]
 * ```
 */
export function spendKeys(row: Omit<SpendRow, "ts" | "usd" | "spend_keys" | "id">): string[] {
  const session = `session:${row.session ?? ""}`;
  const host = `host:${row.host}`;
  const client = `client:${row.client}`;
  const keys = ["global", session, host, client];
  if (row.rule !== null) {
    const r = `rule:${row.rule}`;
    keys.push(r, `${r}|${session}`, `${r}|${host}`, `${r}|${client}`);
  }
  return keys;
}

/**
 * Costs are kept as integer nano-dollars so that sums are exact and "exactly
 * reached" is decidable (0.1 + 0.2 is not 0.3 in doubles).
 */
export const NANO = 1e9;

/**
 * Charges within one second are kept as one entry (at the latest of their
 * times): a busy key holds at most one entry a second, and a charge leaves
 * a rolling window at most this much late, never early.
 */
const MERGE_MS = 1000;

/**
 * Sorted (ts, cost) log per key, trimmed to the longest window any limit
 * needs, with running sums so that a window's total is two array reads.
 */
class KeyLog {
  ts: number[] = [];
  nano: number[] = [];
  /** `cum[i]` = nano-USD of entries 0..i (entries before `head` included). */
  cum: number[] = [];
  head = 0;
  /** Nano-USD since the process started: kept apart so trimming never loses `per: run`. */
  run = 0;

  add(ts: number, nano: number, runStart: number): void {
    if (ts >= runStart) this.run += nano;
    const n = this.ts.length;
    const last = n - 1;
    if (n === this.head || ts >= this.ts[last]) {
      if (n > this.head && Math.floor(ts / MERGE_MS) === Math.floor(this.ts[last] / MERGE_MS)) {
        this.ts[last] = ts;
        this.nano[last] += nano;
        this.cum[last] += nano;
      } else {
        this.ts.push(ts);
        this.nano.push(nano);
        this.cum.push((n > 0 ? this.cum[last] : 0) + nano);
      }
      return;
    }
    // An out-of-order cost (rare: a rebuild sorts, reports come in time order) is inserted.
    let i = n;
    while (i > this.head && this.ts[i - 1] > ts) i--;
    this.ts.splice(i, 0, ts);
    this.nano.splice(i, 0, nano);
    this.cum.splice(i, 0, 0);
    for (let j = i; j <= n; j++) this.cum[j] = (j > 0 ? this.cum[j - 1] : 0) + this.nano[j];
  }

  /** Nano-USD of the entries held. */
  get total(): number {
    const n = this.ts.length;
    if (n === this.head) return 0;
    return this.cum[n - 1] - (this.head > 0 ? this.cum[this.head - 1] : 0);
  }

  /** Drops entries at or before `cutoff`. */
  trim(cutoff: number): void {
    while (this.head < this.ts.length && this.ts[this.head] <= cutoff) this.head++;
    if (this.head > 64 && this.head * 2 > this.ts.length) {
      const base = this.cum[this.head - 1];
      this.ts = this.ts.slice(this.head);
      this.nano = this.nano.slice(this.head);
      this.cum = this.cum.slice(this.head).map((c) => c - base);
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
    const n = this.ts.length;
    const first = this.firstAfter(since);
    if (first >= n) return 0;
    return this.cum[n - 1] - (first > 0 ? this.cum[first - 1] : 0);
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
 * apart, so they survive the trimming. Reservations are kept per request,
 * with a running sum per key, so a check reads one map entry.
 */
export class MemorySpendLedger implements SpendLedger {
  #logs = new Map<string, KeyLog>();
  #lastSweep = -Infinity;
  #reservations = new Map<string, Reservation>();
  #reserved = new Map<string, number>();
  /** Start of `per: run` windows: costs at or after it count as this run's. */
  readonly startedAt: number;
  /** Costs older than this are forgotten; each spending limit raises it to its window. */
  retainMs: number;

  constructor(options: { startedAt?: number; retainMs?: number } = {}) {
    this.startedAt = options.startedAt ?? Date.now();
    // A calendar month is at most 31 days and an hour (a DST change) long.
    this.retainMs = options.retainMs ?? 32 * 86_400_000;
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

  spentNano(key: string, sinceMs: number): number {
    const log = this.#logs.get(key);
    return log === undefined ? 0 : log.sumAfter(sinceMs);
  }

  spentThisRunNano(key: string): number {
    return this.#logs.get(key)?.run ?? 0;
  }

  *entries(key: string, sinceMs: number): Generator<[ts: number, nano: number]> {
    const log = this.#logs.get(key);
    if (log === undefined) return;
    for (let i = log.firstAfter(sinceMs); i < log.ts.length; i++) yield [log.ts[i], log.nano[i]];
  }

  retain(ms: number): void {
    if (this.retainMs < ms) this.retainMs = ms;
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

  reserve(id: string, ts: number, keys: Iterable<string>, amount: number): void {
    const add = Number.isFinite(amount) && amount > 0 ? Math.round(amount) : 0;
    let r = this.#reservations.get(id);
    if (r === undefined) this.#reservations.set(id, r = { ts, holds: new Map() });
    for (const key of keys) {
      if (r.holds.has(key)) continue;
      r.holds.set(key, add);
      if (add > 0) this.#reserved.set(key, (this.#reserved.get(key) ?? 0) + add);
    }
  }

  reservedOn(key: string): number {
    return this.#reserved.get(key) ?? 0;
  }

  reservation(id: string): Reservation | undefined {
    // Most requests hold nothing: skip hashing a fresh id.
    return this.#reservations.size === 0 ? undefined : this.#reservations.get(id);
  }

  release(id: string): Reservation | undefined {
    const r = this.#reservations.get(id);
    if (r === undefined) return undefined;
    this.#reservations.delete(id);
    for (const [key, amount] of r.holds) {
      if (amount === 0) continue;
      const left = (this.#reserved.get(key) ?? 0) - amount;
      if (left > 0) this.#reserved.set(key, left);
      else this.#reserved.delete(key);
    }
    return r;
  }

  keysWithPrefix(prefix: string): string[] {
    const out = new Set<string>();
    for (const k of this.#logs.keys()) if (k.startsWith(prefix)) out.add(k);
    for (const k of this.#reserved.keys()) if (k.startsWith(prefix)) out.add(k);
    return [...out];
  }

  get reservationCount(): number {
    return this.#reservations.size;
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
