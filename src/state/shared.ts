/**
 * Shared state (`state: { redis: … }`): what a decision asks a shared
 * backend, and what it answers. Values only — the engine builds a
 * {@link StateAsk} for the rule that decides, the proxy sends it to the
 * backend (one atomic round trip: every limit checked, and all of them
 * recorded or none), and the engine completes the decision with the
 * {@link StateAnswer}. `agentgate test`, `eval` and `replay` never ask: they
 * decide with the in-process {@link PolicyState}.
 *
 * The process keeps its own {@link PolicyState} as a mirror of what it
 * recorded (reservations to settle, the budgets view, and the counters
 * `on_state_error: local` decides with while the backend is away).
 *
 * @example
 * ```ts
 * const d = decide(policy, { info, now, state, shared: "deny" });
 * if (d.needs === "state") {
 *   const answer = await backend.ask(d.stateAsk!); // one round trip
 *   decide(policy, { info, now, state, shared: "deny", stateAnswer: answer });
 * }
 * ```
 *
 * @module
 */

/** What `state.on_state_error` does when the backend cannot answer. */
export type OnStateError = "deny" | "allow" | "local";

/**
 * One limit of the deciding rule, as the backend checks it:
 * - `count`: at most `limit` requests in the sliding window `perMs` (a
 *   request rate limit); recorded as one entry at `now`.
 * - `amount`: what is charged after `since` (exclusive) on `key` + what
 *   calls in flight hold on `hold` + `need` fit `limit` (when `need` is 0:
 *   charged < limit); recorded as a hold of `need` on `hold` (tokens and
 *   spending limits). `perMs` is the rolling window (for when it frees up),
 *   or null for a calendar or `per: run` window.
 * - `reserve`: holds `need` on each of `keys` (the `scope: all` budgets a
 *   priced call counts for, whichever rule allows it); never refuses.
 */
export type StateOp =
  | { kind: "count"; key: string; limit: number; perMs: number }
  | {
    kind: "amount";
    key: string;
    hold: string;
    limit: number;
    since: number;
    perMs: number | null;
    need: number;
  }
  | { kind: "reserve"; keys: string[]; need: number };

/** What a decision asks the backend: its limits, in the rule's order. */
export interface StateAsk {
  /** The request (the holds are recorded under its id). */
  id: string;
  /** The decision time (ms since the epoch): windows end here. */
  now: number;
  /** The rule that decides (the answer is used only for it). */
  rule: string;
  ops: StateOp[];
  /**
   * Record them when all pass. False when the request is refused anyway (a
   * policy that needs no state refused it after these): only checked.
   */
  commit: boolean;
}

/** The backend's answer to a {@link StateAsk}. */
export type StateAnswer =
  | { ok: true }
  /**
   * The op at `index` refused: `used` (requests or amount in the window),
   * `reserved` (held in flight), and when enough leaves the window for it to
   * pass (ms since the epoch), or null when unknown.
   */
  | { ok: false; index: number; used: number; reserved: number; freesAt: number | null }
  /** The backend could not answer (down, timed out): `state.on_state_error` decides. */
  | { error: string };

/** What a settled call tells the backend: holds to drop, amounts to charge. */
export interface StateSettle {
  id: string;
  /** When the charges were incurred (ms since the epoch). */
  ts: number;
  /** Hold keys to release (the reservation's). */
  release: string[];
  /** `[key, amount]`: nano-USD on ledger keys, tokens on `tk:` token-log keys. */
  charges: [string, number][];
}

/** Also counted for a committed request rate limit while the backend was away (replayed). */
export interface StateCount {
  key: string;
  id: string;
  ts: number;
  perMs: number;
}

/**
 * The backend as the proxy sees it. `ask` never throws: a failure is the
 * `{ error }` answer. `settle` and `count` record what happened and never
 * throw either: while the backend is away they are queued (bounded) and
 * replayed when it returns.
 */
export interface SharedState {
  readonly onError: OnStateError;
  ask(ask: StateAsk): Promise<StateAnswer>;
  settle(s: StateSettle): void;
  /** Replays request counts recorded while the backend was away (`local`, `allow`). */
  count(c: StateCount): void;
}

/** The token log of a token limit's hold key (`tokens:<stateKey>|<bucket>` → `tk:…`). */
export function tokenLogKey(holdKey: string): string {
  return `tk:${holdKey.slice("tokens:".length)}`;
}
