/**
 * What the policy checkers remember across requests and reloads: one slot
 * per checker (rate-limit windows, …), the spend ledger with the
 * reservations of calls in flight, and the usage hooks a forwarded request
 * left for its response. In-process; the engine reads and changes it
 * synchronously inside a decision.
 *
 * @module
 */
import {
  MemorySpendLedger,
  NANO,
  type Reservation,
  spendKeys,
  type SpendLedger,
} from "./ledger.ts";
import { type SharedState, tokenLogKey } from "./shared.ts";

/** One usage report for a forwarded request (from the LLM layer, after the response). */
export interface Usage {
  /** When the cost or tokens were incurred (ms since the epoch). */
  ts: number;
  /** Cost in USD charged to budgets (0 or absent when nothing is charged). */
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

/** Pending usage hooks older than this are dropped: the response never reported. */
const PENDING_TTL_MS = 60 * 60_000;
const PENDING_MAX = 100_000;

/**
 * Everything the policy checkers remember: one slot per `stateKey`, the spend
 * ledger (charges and reservations), and usage hooks waiting for a request's
 * usage report. The engine keeps one instance for the life of the process,
 * across config reloads.
 *
 * A priced call's life: the decision reserves its worst-case cost
 * (`ledger.reserve`, in the checkers' `commit`); the response settles it —
 * {@link reportUsage} releases the reservation and charges the real cost —
 * or {@link dropUsage} releases it when nothing is charged.
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
  readonly ledger: SpendLedger;
  /**
   * The shared backend (`state:`), or null: every settlement of a request
   * that holds a reservation is told to it as well.
   */
  shared: SharedState | null = null;
  #slots = new Map<string, unknown>();
  #pending = new Map<string, { at: number; hooks: UsageHook[] }>();

  constructor(options: { startedAt?: number; ledger?: SpendLedger } = {}) {
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

  /** The state of one checker, or undefined when it has none yet (read-only views). */
  peekSlot<T>(key: string): T | undefined {
    return this.#slots.get(key) as T | undefined;
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
   * Settles a forwarded request once its response is known: its reservation
   * is released, the cost is charged under the built-in keys
   * ({@link spendKeys}) and every spend key the reservation held (CEL-keyed
   * budgets), then the hooks left by the request's committed checks run
   * (token rate limits). Returns the charged keys that the built-in keys do
   * not cover (the row's `spend_keys`, so the ledger is rebuilt with them).
   */
  reportUsage(requestId: string, usage: Usage): string[] {
    const held = this.ledger.release(requestId);
    const charged: string[] = [];
    let keys: string[] = [];
    if (usage.usd !== undefined && usage.usd > 0) {
      keys = spendKeys(usage);
      if (held !== undefined) {
        // Every other key a budget holds is one of the built-in ones.
        for (const key of held.holds.keys()) {
          if (!key.startsWith("cel:")) continue;
          keys.push(key);
          charged.push(key);
        }
      }
      this.ledger.add(keys, usage.ts, usage.usd);
    }
    if (this.shared !== null && held !== undefined) {
      const nano = keys.length ? Math.round(usage.usd! * NANO) : 0;
      const charges: [string, number][] = keys.map((k) => [k, nano]);
      const tokens = usage.tokens ?? 0;
      for (const key of held.holds.keys()) {
        if (key.startsWith("tokens:") && tokens > 0) charges.push([tokenLogKey(key), tokens]);
      }
      this.shared.settle({ id: requestId, ts: usage.ts, release: [...held.holds.keys()], charges });
    }
    const entry = this.#pending.get(requestId);
    if (entry === undefined) return charged;
    this.#pending.delete(requestId);
    for (const hook of entry.hooks) {
      const key = hook(usage);
      if (typeof key === "string" && !charged.includes(key)) charged.push(key);
    }
    return charged;
  }

  /**
   * Forgets a request that will not report (denied after its checks, no
   * response, not a priced call): its reservation is released, its hooks
   * dropped. Returns the released reservation.
   */
  dropUsage(requestId: string): Reservation | undefined {
    this.#pending.delete(requestId);
    const held = this.ledger.release(requestId);
    if (this.shared !== null && held !== undefined) {
      this.shared.settle({
        id: requestId,
        ts: held.ts,
        release: [...held.holds.keys()],
        charges: [],
      });
    }
    return held;
  }

  /**
   * The USD a request holds in flight (its largest spend hold), or null when
   * it holds none.
   */
  reservedUsd(requestId: string): number | null {
    const r = this.ledger.reservation(requestId);
    if (r === undefined) return null;
    let nano = 0;
    for (const [key, amount] of r.holds) {
      if (!key.startsWith("tokens:") && amount > nano) nano = amount;
    }
    return nano === 0 ? null : nano / NANO;
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
