/**
 * The shape every policy checker shares (rate limit, time window, spending
 * limit, …) and the state the engine keeps for them across requests and
 * reloads.
 *
 * Flow: the engine calls `check` on each policy of the matching rule, in order;
 * the first `{ ok: false }` decides. Only when the whole decision forwards the
 * request does the engine call `commit()` on every `{ ok: true }` result, so a
 * request denied by a later policy (or by `mode: audit` bookkeeping) does not
 * consume a rate-limit slot.
 *
 * @example
 * ```ts
 * const state = new PolicyState();
 * const results = checkers.map((c) => c.check(info, Date.now(), state));
 * const denied = results.find((r) => !r.ok);
 * if (!denied) for (const r of results) if (r.ok) r.commit();
 * ```
 *
 * @module
 */

import type { DlpPlan, RequestInfo } from "../types.ts";
import type { RecordedFinding } from "../../dlp/mod.ts";
import { didYouMean } from "../../util/suggest.ts";

/** The outcome of one policy for one request. */
export type PolicyResult =
  | {
    ok: true;
    /** Records the request (a rate-limit slot, …); call only when it is forwarded. */
    commit(): void;
    /** What the proxy must do for a request a `dlp` policy let through. */
    dlp?: DlpPlan;
  }
  | {
    ok: false;
    /** HTTP status: 429 for rate and spending limits, 403 for time windows. */
    status: number;
    /** Stable, human-readable reason, e.g. `rate limit exceeded: 60 requests per 1m for session "ci"`. */
    reason: string;
    /** Whole seconds until a retry can succeed (≥ 1), or null when unknown. */
    retryAfter: number | null;
    /** JSON-serialisable detail for the deny body and the audit. */
    detail: Record<string, unknown>;
    /** DLP findings behind a block (masked). */
    findings?: RecordedFinding[];
  };

/** A compiled policy: created once at load, `check` runs on the hot path. */
export interface Checker {
  /** Policy name as written in the config: `rate_limit`, `time_window`, `spending_limit`. */
  readonly name: string;
  /**
   * Where this checker keeps its counters in {@link PolicyState}: derived from
   * the rule name and the parts of the config that give counters their meaning,
   * so a reload that keeps them keeps the counters.
   */
  readonly stateKey: string;
  /** Decides; must not throw and must not change state (that is `commit`'s job). */
  check(info: RequestInfo, now: number, state: PolicyState): PolicyResult;
}

/** What a checker knows about where it is declared. */
export interface CheckerContext {
  /** Name of the rule that carries the policy. */
  rule: string;
}

/**
 * A config value that does not validate. `path` names the offending key below
 * the policy (e.g. `["per"]`), so the config loader can point at its YAML node.
 */
export class PolicyConfigError extends Error {
  override name = "PolicyConfigError";
  /**
   * @param path key path below the policy, e.g. `["hours", 1]`
   * @param offset 0-based offset into the string value at `path` (CEL keys), when known
   */
  constructor(
    message: string,
    readonly path: readonly (string | number)[] = [],
    readonly offset: number | null = null,
  ) {
    super(message);
  }
}

/** Prefixes the path of a {@link PolicyConfigError} thrown by `f` with `key`. */
export function under<T>(key: string | number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PolicyConfigError) {
      throw new PolicyConfigError(e.message, [key, ...e.path], e.offset);
    }
    throw e;
  }
}

/** Throws for a key of `raw` that is not in `allowed`, with a did-you-mean hint. */
export function rejectUnknownKeys(
  raw: Record<string, unknown>,
  allowed: readonly string[],
  policy: string,
): void {
  const shown = allowed.filter((k) => k !== "type").join(", ");
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new PolicyConfigError(`Invalid ${policy}: expected a mapping with ${shown}`);
  }
  for (const key of Object.keys(raw)) {
    if (allowed.includes(key)) continue;
    const hint = didYouMean(key, allowed, (_, k) => Math.max(1, Math.floor(k.length / 4)));
    throw new PolicyConfigError(
      `Unknown key "${key}" in ${policy}${hint}: the keys are ${shown}`,
      [key],
    );
  }
}

/** One usage report for a forwarded request (from the LLM layer, after the response). */
export interface Usage {
  /** When the cost or tokens were incurred (ms since the epoch). */
  ts: number;
  /** Cost in USD (0 when unknown). */
  usd?: number;
  /** Tokens consumed (input + output). */
  tokens?: number;
  /** Session id of the request, or null. */
  session: string | null;
  host: string;
  client: string;
  /** Name of the rule that allowed the request, or null when the default did. */
  rule: string | null;
}

/** A callback that a committed check leaves for the request's usage report. */
export type UsageHook = (usage: Usage) => string | void;

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

/** A cost row as the audit stores it. */
export interface SpendRow {
  ts: number;
  usd: number;
  session: string | null;
  host: string;
  client: string;
  rule: string | null;
  /** Further ledger keys the cost was charged to (CEL-keyed budgets; `spend_keys`). */
  keys?: string[];
}

/**
 * The audit's `spend_keys` column (a JSON array of strings) as keys; anything
 * else (NULL, a row from another tool, a damaged value) as none.
 */
export function parseSpendKeys(json: string | null): string[] | undefined {
  if (json === null) return undefined;
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) && v.every((k) => typeof k === "string") ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The ledger keys a cost counts under, whatever limits exist: one per built-in key kind. */
export function spendKeys(row: Omit<SpendRow, "ts" | "usd">): string[] {
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
      if (row.keys) keys.push(...row.keys);
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

/** Pending usage hooks older than this are dropped: the response never reported. */
const PENDING_TTL_MS = 60 * 60_000;
const PENDING_MAX = 100_000;

/**
 * Everything the policy checkers remember: one slot per `stateKey`, the spend
 * ledger, and usage hooks waiting for a request's usage report. The engine
 * keeps one instance for the life of the process, across config reloads.
 *
 * @example
 * ```ts
 * const state = new PolicyState({ startedAt: Date.now() });
 * state.ledger.rebuild(auditCostRows);
 * // …after an LLM response:
 * state.reportUsage(info.id, { ts: Date.now(), usd: 0.0123, tokens: 812, session: "ci", host, client, rule: "openai" });
 * ```
 */
export class PolicyState {
  /** When this process started: the start of `per: run` windows. */
  readonly startedAt: number;
  readonly ledger: MemorySpendLedger;
  #slots = new Map<string, unknown>();
  #pending = new Map<string, { at: number; hooks: UsageHook[] }>();

  constructor(options: { startedAt?: number; ledger?: MemorySpendLedger } = {}) {
    this.startedAt = options.startedAt ?? options.ledger?.startedAt ?? Date.now();
    this.ledger = options.ledger ?? new MemorySpendLedger({ startedAt: this.startedAt });
  }

  /** The state of one checker, created on first use. */
  slot<T>(key: string, init: () => T): T {
    let v = this.#slots.get(key) as T | undefined;
    if (v === undefined) {
      v = init();
      this.#slots.set(key, v);
    }
    return v;
  }

  /** Drops slots whose checker is gone after a reload. */
  retainSlots(keys: Iterable<string>): void {
    const keep = new Set(keys);
    for (const k of this.#slots.keys()) if (!keep.has(k)) this.#slots.delete(k);
  }

  /** Slot keys currently held. */
  slotKeys(): string[] {
    return [...this.#slots.keys()];
  }

  /** Registers a hook to run when the request's usage is reported (by `commit`). */
  onUsage(requestId: string, now: number, hook: UsageHook): void {
    let entry = this.#pending.get(requestId);
    if (entry === undefined) {
      this.#expirePending(now);
      this.#pending.set(requestId, entry = { at: now, hooks: [] });
    }
    entry.hooks.push(hook);
  }

  /**
   * Reports a forwarded request's usage once its response is known: the cost
   * goes to the ledger under the built-in keys, then the hooks left by the
   * request's committed checks run (token rate limits, CEL-keyed budgets).
   */
  reportUsage(requestId: string, usage: Usage): string[] {
    if (usage.usd !== undefined && usage.usd > 0) {
      this.ledger.add(spendKeys(usage), usage.ts, usage.usd);
    }
    const entry = this.#pending.get(requestId);
    if (entry === undefined) return [];
    this.#pending.delete(requestId);
    const charged: string[] = [];
    for (const hook of entry.hooks) {
      const key = hook(usage);
      if (typeof key === "string") charged.push(key);
    }
    return charged;
  }

  /** Forgets the hooks of a request that will never report (e.g. upstream failed). */
  dropUsage(requestId: string): void {
    this.#pending.delete(requestId);
  }

  /** Number of requests waiting for a usage report (for tests and metrics). */
  get pendingCount(): number {
    return this.#pending.size;
  }

  #expirePending(now: number): void {
    // Insertion order is time order, so expired entries are at the front.
    for (const [id, entry] of this.#pending) {
      if (entry.at > now - PENDING_TTL_MS && this.#pending.size < PENDING_MAX) break;
      this.#pending.delete(id);
    }
  }
}
