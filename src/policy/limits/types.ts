/**
 * The shape every policy checker shares (rate limit, time window, spending
 * limit, …); the state they keep across requests lives in `src/state/`.
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
import type { PolicyState } from "../../state/policy_state.ts";
import type { RecordedFinding } from "../../dlp/mod.ts";
import { didYouMean } from "../../util/suggest.ts";
import type { StateOp } from "../../state/shared.ts";

/** The outcome of one policy for one request. */
export type PolicyResult =
  | {
    ok: true;
    /** Records the request (a rate-limit slot, a reservation, …); call only when it is forwarded. */
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
    /** What the check could not inspect in full (recorded on the row). */
    inspection?: string[];
  };

/**
 * The worst case of a priced LLM call, estimated before it is forwarded:
 * what spending and token limits reserve while it is in flight.
 */
export interface LlmCall {
  /** Worst-case cost in nano-USD, or null when the model has no known price. */
  nano: number | null;
  /** Worst-case tokens (input estimated from the body + the output cap). */
  tokens: number;
}

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
  /**
   * Decides; must not throw and must not change state (that is `commit`'s
   * job). `call` is the worst case of a priced LLM call (null or absent for
   * anything else): budgets check that it fits and reserve it on commit.
   */
  check(info: RequestInfo, now: number, state: PolicyState, call?: LlmCall | null): PolicyResult;
  /**
   * With shared state (`state:`): what this limit asks the backend, or a
   * result decided without it (a key that fails to evaluate). Checkers that
   * keep no counters (time windows, DLP) have none and are checked locally.
   */
  shared?(
    info: RequestInfo,
    now: number,
    state: PolicyState,
    call?: LlmCall | null,
  ): SharedCheck | PolicyResult;
}

/** A limit checked by the shared backend (see `state/shared.ts`). */
export interface SharedCheck {
  op: StateOp;
  /** Records in the process's own state what the backend recorded (its mirror). */
  commit(): void;
  /** The refusal for the backend's numbers (same reason as the local check). */
  refuse(a: { used: number; reserved: number; freesAt: number | null }): PolicyResult & {
    ok: false;
  };
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
