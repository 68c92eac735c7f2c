/**
 * `spending_limit`: refuse (429) once the USD spent in the window for the key
 * has reached the budget.
 *
 * ```yaml
 * policies:
 *   - spending_limit: { usd: 5.00, per: 1d, key: session }   # per: 1h | 1d | 7d | 30d | run
 * ```
 *
 * Semantics:
 * - Costs come from {@link PolicyState.reportUsage} (the LLM layer, after each
 *   response) and, at start, from the audit via `state.ledger.rebuild(rows)`,
 *   so a restart does not reset a daily budget.
 * - The ledger counts every reported cost, whichever rule forwarded it: with
 *   `key: session` the budget covers the session's whole spend, `global` the
 *   proxy's, `host` the target's, `client` the client's, `rule` only what this
 *   rule forwarded. A CEL key counts only what this rule forwarded (its value
 *   is known only here), and is not rebuilt from the audit.
 * - `spent ≥ usd` is refused: a budget exactly reached is spent.
 * - The window slides like a rate limit: a cost at `t` counts during
 *   `[t, t + per)`; `per: run` counts since the process started.
 * - `Retry-After`: whole seconds until enough spend leaves the window to go
 *   below the budget; none for `per: run`.
 *
 * @example
 * ```ts
 * const c = createSpendingLimitChecker({ usd: 5, per: 86_400_000, key: "session" }, { rule: "openai" });
 * c.check(info, Date.now(), state);
 * // { ok: false, status: 429, reason: 'spending limit reached: $5.01 of $5.00 per 1d for session "ci"', … }
 * ```
 *
 * @module
 */

import type { RequestInfo } from "../types.ts";
import { CelEvalError } from "../cel/mod.ts";
import { formatDuration } from "../../util/duration.ts";
import { formatUsd } from "../../util/usd.ts";
import {
  type KeyBucket,
  keyBucket,
  type LimitKey,
  parseDurationValue,
  parseLimitKey,
} from "./rate.ts";
import {
  type Checker,
  type CheckerContext,
  PolicyConfigError,
  type PolicyResult,
  rejectUnknownKeys,
  under,
} from "./types.ts";
import { type PolicyState } from "../../state/mod.ts";

export type { SpendLedger, SpendRow } from "../../state/mod.ts";
export { MemorySpendLedger, spendKeys } from "../../state/mod.ts";

/** A compiled spending limit. */
export interface SpendingLimitConfig {
  /** Budget in USD (0 refuses every request). */
  usd: number;
  /** Window in milliseconds, or `run` for "since this process started". */
  per: number | "run";
  /** `global | rule | host | session | client | <CEL expression>` */
  key: string;
}

const NANO = 1e9;

/** `$5.00`, `$0.0042`: cents unless the amount needs more digits to be told apart. */
export { formatUsd };

/** A spending-limit checker. */
export interface SpendingLimitChecker extends Checker {
  readonly usd: number;
  readonly per: number | "run";
  readonly key: LimitKey;
  /** The ledger key of `info`'s bucket (e.g. `session:ci`). */
  ledgerKey(info: RequestInfo, now: number): string;
  /** USD spent in `info`'s bucket in the window ending at `now`. */
  spent(info: RequestInfo, now: number, state: PolicyState): number;
}

/**
 * Creates the `spending_limit` checker.
 *
 * @example
 * ```ts
 * const c = createSpendingLimitChecker({ usd: 5, per: "run", key: "global" }, { rule: "llm" });
 * ```
 * @throws {PolicyConfigError} for an invalid config.
 */
export function createSpendingLimitChecker(
  config: SpendingLimitConfig,
  ctx: CheckerContext,
): SpendingLimitChecker {
  validate(config);
  const key = parseLimitKey(config.key);
  const per = config.per;
  const limitNano = Math.round(config.usd * NANO);
  const window = per === "run" ? "run" : formatDuration(per);
  const budget = formatUsd(config.usd);

  const ledgerKeyOf = (bucket: KeyBucket): string => {
    switch (key.kind) {
      case "global":
        return "global";
      case "rule":
        return `rule:${ctx.rule}`;
      case "cel":
        // The same expression in two rules keeps two budgets: only this rule charges it.
        return `cel:${ctx.rule}|${key.text}=${bucket.value}`;
      default:
        return `${key.kind}:${bucket.value}`;
    }
  };

  const spentNano = (ledgerKey: string, now: number, state: PolicyState): number => {
    if (per === "run") return state.ledger.spentThisRunNano(ledgerKey);
    // A long window must not be trimmed away by the ledger's retention.
    if (state.ledger.retainMs < per) state.ledger.retainMs = per;
    return state.ledger.spentNano(ledgerKey, now - per);
  };

  return {
    name: "spending_limit",
    stateKey: `spending_limit|${ctx.rule}|${window}|${key.text}`,
    usd: config.usd,
    per,
    key,
    ledgerKey(info, now) {
      return ledgerKeyOf(keyBucket(key, info, now, ctx.rule));
    },
    spent(info, now, state) {
      return spentNano(ledgerKeyOf(keyBucket(key, info, now, ctx.rule)), now, state) / NANO;
    },
    check(info, now, state): PolicyResult {
      let bucket: KeyBucket;
      try {
        bucket = keyBucket(key, info, now, ctx.rule);
      } catch (e) {
        if (!(e instanceof CelEvalError)) throw e;
        return {
          ok: false,
          status: 403,
          reason: `spending limit key error: ${e.message}`,
          retryAfter: null,
          detail: { policy: "spending_limit", key: key.text },
        };
      }
      const ledgerKey = ledgerKeyOf(bucket);
      const spent = spentNano(ledgerKey, now, state);
      if (spent < limitNano) {
        return {
          ok: true,
          commit() {
            // Built-in keys are charged by reportUsage itself; a CEL bucket only
            // exists here, so this request's cost must be routed to it.
            if (key.kind === "cel") {
              state.onUsage(info.id, now, (usage) => {
                if (usage.usd === undefined || usage.usd <= 0) return;
                state.ledger.add([ledgerKey], usage.ts, usage.usd);
                // Named on the audit row, so the ledger is rebuilt with it at start.
                return ledgerKey;
              });
            }
          },
        };
      }
      let retryAfter: number | null = null;
      if (per !== "run" && limitNano > 0) {
        let rest = spent;
        for (const [ts, nano] of state.ledger.entries(ledgerKey, now - per)) {
          rest -= nano;
          if (rest < limitNano) {
            retryAfter = Math.max(1, Math.ceil((ts + per - now) / 1000));
            break;
          }
        }
      }
      const who = bucket.label === "" ? "" : ` for ${bucket.label}`;
      return {
        ok: false,
        status: 429,
        reason: `spending limit reached: ${
          formatUsd(spent / NANO)
        } of ${budget} per ${window}${who}`,
        retryAfter,
        detail: {
          policy: "spending_limit",
          key: key.text,
          key_value: bucket.value,
          spent_usd: spent / NANO,
          limit_usd: config.usd,
          window,
        },
      };
    },
  };
}

function validate(config: SpendingLimitConfig): void {
  if (typeof config.usd !== "number" || !Number.isFinite(config.usd) || config.usd < 0) {
    throw new PolicyConfigError(
      `Invalid usd ${JSON.stringify(config.usd)}: expected an amount of at least 0, e.g. usd: 5.00`,
      ["usd"],
    );
  }
  if (config.per !== "run" && (typeof config.per !== "number" || !(config.per > 0))) {
    throw new PolicyConfigError(`Invalid per: use a window such as 1h, 1d, 7d, 30d, or run`, [
      "per",
    ]);
  }
}

function parseCurrency(value: unknown, key: string): void {
  if (value === undefined) return;
  if (typeof value !== "string" || value.trim().toUpperCase() !== "USD") {
    throw new PolicyConfigError(
      `Unsupported currency ${
        JSON.stringify(value)
      }: only USD is supported, since provider prices are in USD`,
      [key],
    );
  }
}

function parsePer(value: unknown): number | "run" {
  if (value === "run") return "run";
  return parseDurationValue(value);
}

/**
 * Validates the YAML form `{ usd, per, key?, currency? }` (key defaults to
 * `rule`; currency, if given, must be USD).
 *
 * @example
 * ```ts
 * parseSpendingLimitConfig({ usd: 5, per: "1d", key: "session" });
 * // { usd: 5, per: 86400000, key: "session" }
 * ```
 * @throws {PolicyConfigError} with the path of the offending key.
 */
export function parseSpendingLimitConfig(raw: Record<string, unknown>): SpendingLimitConfig {
  rejectUnknownKeys(raw, ["usd", "per", "key", "currency"], "spending_limit");
  parseCurrency(raw.currency, "currency");
  if (raw.usd === undefined) {
    throw new PolicyConfigError(`Missing usd in spending_limit: add a budget, e.g. usd: 5.00`);
  }
  if (raw.per === undefined) {
    throw new PolicyConfigError(
      `Missing per in spending_limit: add a window, e.g. per: 1d (or run)`,
    );
  }
  const config: SpendingLimitConfig = {
    usd: raw.usd as number,
    per: under("per", () => parsePer(raw.per)),
    key: raw.key === undefined ? "rule" : String(raw.key),
  };
  validate(config);
  parseLimitKey(config.key);
  return config;
}

/**
 * Reads the `@agentreserve/proxy` form `{ type: spending_limit, max_amount, currency }`.
 * The original tracked spend "per domain" with no window, so this is a budget
 * per target host since the process started (`per: run`); an optional `per`
 * sets a window. Only USD is accepted (a missing currency means USD).
 *
 * @example
 * ```ts
 * parseLegacySpendingLimit({ type: "spending_limit", max_amount: 10, currency: "USD" });
 * // { usd: 10, per: "run", key: "host" }
 * ```
 * @throws {PolicyConfigError} for another currency: `Unsupported currency "EUR": only USD is supported, …`.
 */
export function parseLegacySpendingLimit(raw: Record<string, unknown>): SpendingLimitConfig {
  rejectUnknownKeys(raw, ["type", "max_amount", "currency", "per"], "spending_limit");
  parseCurrency(raw.currency, "currency");
  const amount = raw.max_amount;
  if (typeof amount !== "number" || !Number.isFinite(amount) || amount < 0) {
    throw new PolicyConfigError(
      `Invalid max_amount ${JSON.stringify(amount)}: expected an amount of at least 0`,
      ["max_amount"],
    );
  }
  return {
    usd: amount,
    per: raw.per === undefined ? "run" : under("per", () => parsePer(raw.per)),
    key: "host",
  };
}
