/**
 * The budgets view: every spending limit and rate limit of a policy, with
 * each of its keys' spend (or tokens, or requests and the headroom left),
 * what calls in flight hold, the limit, the window and when it resets. Read-only; what `GET /_/api/budgets`
 * answers.
 *
 * @module
 */
import type { CompiledPolicy } from "../engine.ts";
import type { BudgetState, SpendingLimitChecker } from "./spend.ts";
import type { RateLimitChecker, RequestBudgetState, TokenBudgetState } from "./rate.ts";
import type { PolicyState } from "../../state/mod.ts";

/** One limit and its keys. */
export type LimitView =
  & {
    rule: string;
    /** `file:line` of the rule. */
    source: string;
    /** What the limit counts, in one line (as `agentgate check` prints it). */
    describe: string;
    key: string;
    window: string;
    /** Keys left out after `maxKeys` (the largest are shown). */
    truncated: number;
  }
  & (
    | {
      policy: "spending_limit";
      scope: "rule" | "all";
      tz: string | null;
      limit_usd: number;
      budgets: BudgetState[];
    }
    | {
      policy: "rate_limit";
      unit: "tokens";
      limit_tokens: number;
      budgets: TokenBudgetState[];
    }
    | {
      policy: "rate_limit";
      unit: "requests";
      limit_requests: number;
      /** Each key's headroom: requests left in the sliding window. */
      budgets: RequestBudgetState[];
    }
  );

/** The whole view. */
export interface BudgetsView {
  /** When it was taken (ISO 8601). */
  at: string;
  /** Requests holding a reservation now. */
  in_flight: number;
  limits: LimitView[];
}

/**
 * The budgets of `policy` at `now`.
 *
 * @example
 * ```ts
 * budgetsView(config.policy, state, Date.now()).limits[0].budgets[0];
 * // { ledger_key: "rule:openai|session:ci", key_value: "ci", spent_usd: 1.25, reserved_usd: 0.02, limit_usd: 5, resets_at: "…" }
 * ```
 */
export function budgetsView(
  policy: CompiledPolicy,
  state: PolicyState,
  now: number,
  opts: { maxKeys?: number } = {},
): BudgetsView {
  const max = opts.maxKeys ?? 100;
  const limits: LimitView[] = [];
  for (const rule of policy.rules) {
    for (const c of rule.checkers) {
      if (c.name === "spending_limit") {
        const s = c as SpendingLimitChecker;
        const all = s.budgets(now, state);
        limits.push({
          rule: rule.name,
          source: rule.source,
          describe: s.describe(),
          policy: "spending_limit",
          key: s.key.text,
          scope: s.scope,
          window: s.window,
          tz: s.tz,
          limit_usd: s.usd,
          budgets: all.slice(0, max),
          truncated: Math.max(0, all.length - max),
        });
      } else if (c.name === "rate_limit") {
        const r = c as RateLimitChecker;
        const common = {
          rule: rule.name,
          source: rule.source,
          describe: r.describe(),
          policy: "rate_limit" as const,
          key: r.key.text,
          window: r.window,
        };
        if (r.unit === "tokens") {
          const all = r.budgets(now, state) as TokenBudgetState[];
          limits.push({
            ...common,
            unit: "tokens",
            limit_tokens: r.limit,
            budgets: all.slice(0, max),
            truncated: Math.max(0, all.length - max),
          });
        } else {
          const all = r.budgets(now, state) as RequestBudgetState[];
          limits.push({
            ...common,
            unit: "requests",
            limit_requests: r.limit,
            budgets: all.slice(0, max),
            truncated: Math.max(0, all.length - max),
          });
        }
      }
    }
  }
  return { at: new Date(now).toISOString(), in_flight: state.ledger.reservationCount, limits };
}
