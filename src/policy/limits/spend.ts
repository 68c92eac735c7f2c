/**
 * `spending_limit`: a USD budget per window and key. A priced LLM call
 * reserves its worst-case cost before it is forwarded and settles at its real
 * cost when its response ends; a call whose reservation does not fit is
 * refused (429).
 *
 * ```yaml
 * policies:
 *   - spending_limit: { usd: 5.00, per: day, key: session, tz: Europe/Berlin }
 *   # per: 1h | 1d | 7d | 30d (rolling) | day | week | month (calendar) | run
 *   # scope: rule (default) | all
 * ```
 *
 * Semantics:
 * - Scope: the budget counts the spend of the requests its own rule allowed,
 *   split by `key` (`key: rule`, the default, is all of the rule's traffic;
 *   `global` is the same within the rule). `scope: all` counts the spend of
 *   every rule's requests, split by `key` (`global`, `session`, `host` or
 *   `client`): a budget across rules is opt-in.
 * - Check: a priced call (an {@link LlmCall}) fits when spent + reserved in
 *   flight + its own worst case ≤ `usd`; any other request passes while
 *   spent < `usd` (a budget exactly reached is spent). `commit` reserves the
 *   call's worst case on the budget's ledger key until the response settles
 *   it ({@link PolicyState.reportUsage}).
 * - Windows: a duration slides (a cost at `t` counts during `[t, t + per)`);
 *   `day`, `week` (from Monday) and `month` follow the calendar in `tz`
 *   (default: the machine's zone) and reset at local midnight; `run` counts
 *   since the process started and never resets.
 * - Every refusal says when the budget resets (`resets_at`, the reason, and
 *   `Retry-After`): the calendar period's end, or when enough spend has left
 *   a rolling window for this call to fit; none for `run`.
 * - Costs survive restarts: the ledger is rebuilt from the audit and the
 *   spend journal at start (`state.ledger.rebuild(rows)`).
 *
 * @example
 * ```ts
 * const c = createSpendingLimitChecker({ usd: 5, per: 86_400_000, key: "session" }, { rule: "openai" });
 * c.check(info, Date.now(), state, { nano: 4_000_000, tokens: 2_000 });
 * // { ok: false, status: 429, reason: 'spending limit reached: $4.99 spent + $0.00 reserved in flight + $0.004 for this call > $5.00 per 1d for session "ci"; resets at …', … }
 * ```
 *
 * @module
 */

import type { RequestInfo } from "../types.ts";
import { CelEvalError } from "../cel/mod.ts";
import { formatDuration } from "../../util/duration.ts";
import { formatUsd } from "../../util/usd.ts";
import {
  type CalendarUnit,
  defaultTimeZone,
  isoInZone,
  nextPeriodStart,
  periodStart,
} from "../../util/tz.ts";
import {
  type KeyBucket,
  keyBucket,
  type LimitKey,
  parseDurationValue,
  parseLimitKey,
  tryKeyBucket,
} from "./rate.ts";
import {
  type Checker,
  type CheckerContext,
  PolicyConfigError,
  type PolicyResult,
  rejectUnknownKeys,
  under,
} from "./types.ts";
import { NANO, type PolicyState } from "../../state/mod.ts";
import { validateTimeZone } from "./time_window.ts";
import type { StateOp } from "../../state/shared.ts";

export type { SpendLedger, SpendRow } from "../../state/mod.ts";
export { MemorySpendLedger, spendKeys } from "../../state/mod.ts";

/** The calendar windows of a budget. */
export const CALENDAR_UNITS: readonly CalendarUnit[] = ["day", "week", "month"];

/** A compiled spending limit. */
export interface SpendingLimitConfig {
  /** Budget in USD (0 refuses every request). */
  usd: number;
  /**
   * Window: milliseconds (rolling), a calendar unit (`day`, `week`, `month`
   * in `tz`), or `run` for "since this process started".
   */
  per: number | CalendarUnit | "run";
  /** `global | rule | host | session | client | <CEL expression>` */
  key: string;
  /** Whose spend counts: the rule's own requests (default) or every rule's. */
  scope?: "rule" | "all";
  /** IANA zone of a calendar window (default: the machine's). */
  tz?: string;
}

/** `$5.00`, `$0.0042`: cents unless the amount needs more digits to be told apart. */
export { formatUsd };

/** One budget of a spending limit, as the budgets view shows it. */
export interface BudgetState {
  /** The ledger key (`rule:openai|session:ci`). */
  ledger_key: string;
  /** The key's value (`ci`), "" for a rule-wide or global budget. */
  key_value: string;
  spent_usd: number;
  reserved_usd: number;
  limit_usd: number;
  /** When the budget resets (ISO 8601), or null (`per: run`; a rolling window with nothing spent). */
  resets_at: string | null;
}

/** A spending-limit checker. */
export interface SpendingLimitChecker extends Checker {
  readonly usd: number;
  readonly per: number | CalendarUnit | "run";
  readonly key: LimitKey;
  readonly scope: "rule" | "all";
  /** Zone of a calendar window; null for rolling and `run` windows. */
  readonly tz: string | null;
  /** The window as shown: `1d`, `day (Europe/Berlin)`, `run`. */
  readonly window: string;
  /** The ledger key of `info`'s bucket (e.g. `rule:openai|session:ci`). */
  ledgerKey(info: RequestInfo, now: number): string;
  /** USD spent in `info`'s bucket in the window holding `now`. */
  spent(info: RequestInfo, now: number, state: PolicyState): number;
  /** Every budget of this limit that holds spend or reservations at `now`. */
  budgets(now: number, state: PolicyState): BudgetState[];
  /** One line saying what the limit counts (for `agentgate check`). */
  describe(): string;
}

/** Reading the key's value back from a ledger key, for the budgets view. */
const SCOPED_KINDS = ["session", "host", "client"] as const;

/**
 * Creates the `spending_limit` checker.
 *
 * @example
 * ```ts
 * const c = createSpendingLimitChecker({ usd: 5, per: "month", key: "session", tz: "UTC" }, { rule: "llm" });
 * ```
 * @throws {PolicyConfigError} for an invalid config.
 */
export function createSpendingLimitChecker(
  config: SpendingLimitConfig,
  ctx: CheckerContext,
): SpendingLimitChecker {
  validate(config);
  const key = parseLimitKey(config.key);
  const scope = config.scope ?? "rule";
  validateScope(scope, key);
  const per = config.per;
  const calendar = typeof per === "string" && per !== "run" ? per : null;
  const tz = calendar === null ? null : validateTimeZone(config.tz ?? defaultTimeZone());
  const limitNano = Math.round(config.usd * NANO);
  const window = per === "run"
    ? "run"
    : calendar !== null
    ? `${calendar} (${tz})`
    : formatDuration(per as number);
  const budget = formatUsd(config.usd);
  const rule = `rule:${ctx.rule}`;

  const ledgerKeyOf = (bucket: KeyBucket): string => {
    switch (key.kind) {
      case "global":
        return scope === "all" ? "global" : rule;
      case "rule":
        return rule;
      case "cel":
        // The same expression in two rules keeps two budgets: only this rule charges it.
        return `cel:${ctx.rule}|${key.text}=${bucket.value}`;
      default:
        return scope === "all"
          ? `${key.kind}:${bucket.value}`
          : `${rule}|${key.kind}:${bucket.value}`;
    }
  };
  /** Every ledger key of this limit starts with it. */
  const prefix = key.kind === "cel"
    ? `cel:${ctx.rule}|${key.text}=`
    : key.kind === "global" || key.kind === "rule"
    ? (scope === "all" ? "global" : rule)
    : scope === "all"
    ? `${key.kind}:`
    : `${rule}|${key.kind}:`;

  // The current calendar period, computed once per period: zone arithmetic
  // costs microseconds, a check must not.
  let periodFrom = 0;
  let periodTo = -1;
  const period = (now: number): void => {
    if (now >= periodFrom && now < periodTo) return;
    periodFrom = periodStart(now, calendar!, tz!);
    periodTo = nextPeriodStart(now, calendar!, tz!);
  };

  /** Charges after this instant count (exclusive); null for `per: run`. */
  const since = (now: number): number | null => {
    if (per === "run") return null;
    if (calendar !== null) {
      period(now);
      return periodFrom - 1;
    }
    return now - (per as number);
  };

  const spentNano = (ledgerKey: string, now: number, state: PolicyState): number => {
    const from = since(now);
    if (from === null) return state.ledger.spentThisRunNano(ledgerKey);
    // A long window must not be trimmed away by the ledger's retention.
    state.ledger.retain(now - from + 3_600_000);
    return state.ledger.spentNano(ledgerKey, from);
  };

  /**
   * When the budget lets `need` (on top of `reserved`) fit again: the next
   * calendar period, or when enough spend has left a rolling window (all of
   * it, when even an empty window is too small); null for `run`.
   */
  const resetsAt = (
    ledgerKey: string,
    spent: number,
    reserved: number,
    need: number,
    now: number,
    state: PolicyState,
  ): number | null => {
    if (per === "run") return null;
    if (calendar !== null) {
      period(now);
      return periodTo;
    }
    let rest = spent;
    let last: number | null = null;
    for (const [ts, nano] of state.ledger.entries(ledgerKey, now - (per as number))) {
      rest -= nano;
      last = ts + (per as number);
      if (need > 0 ? rest + reserved + need <= limitNano : rest < limitNano) return last;
    }
    return last;
  };

  const show = (ms: number) => isoInZone(Math.ceil(ms / 1000) * 1000, tz ?? "UTC");

  const refusal = (
    bucket: KeyBucket,
    spent: number,
    reserved: number,
    need: number,
    resets: number | null,
    now: number,
  ): PolicyResult & { ok: false } => {
    const who = bucket.label === "" ? "" : ` for ${bucket.label}`;
    const usd = (nano: number) => formatUsd(nano / NANO);
    const amounts = need > 0
      ? `${usd(spent)} spent + ${usd(reserved)} reserved in flight + ${
        usd(need)
      } for this call > ${budget}`
      : `${usd(spent)} spent of ${budget}`;
    const alone = need > limitNano
      ? " (this call alone exceeds the budget: lower its max_tokens)"
      : "";
    const when = resets !== null
      ? `; resets at ${show(resets)}`
      : per === "run"
      ? "; it does not reset (per: run)"
      : reserved > 0
      ? "; it frees up as the calls in flight settle"
      : "";
    return {
      ok: false,
      status: 429,
      reason: `spending limit reached: ${amounts} per ${window}${who}${alone}${when}`,
      retryAfter: resets === null ? null : Math.max(1, Math.ceil((resets - now) / 1000)),
      detail: {
        policy: "spending_limit",
        key: key.text,
        key_value: bucket.value,
        scope,
        spent_usd: spent / NANO,
        reserved_usd: reserved / NANO,
        needed_usd: need / NANO,
        limit_usd: config.usd,
        window,
        resets_at: resets === null ? null : show(resets),
      },
    };
  };

  /** A CEL key that cannot be evaluated denies the request (as rate limits do). */
  const keyError = (e: CelEvalError): PolicyResult => ({
    ok: false,
    status: 403,
    reason: `spending limit key error: ${e.message}`,
    retryAfter: null,
    detail: { policy: "spending_limit", key: key.text },
  });

  return {
    name: "spending_limit",
    stateKey: `spending_limit|${ctx.rule}|${window}|${key.text}|${scope}`,
    usd: config.usd,
    per,
    key,
    scope,
    tz,
    window,
    ledgerKey(info, now) {
      return ledgerKeyOf(keyBucket(key, info, now, ctx.rule));
    },
    spent(info, now, state) {
      return spentNano(ledgerKeyOf(keyBucket(key, info, now, ctx.rule)), now, state) / NANO;
    },
    check(info, now, state, call): PolicyResult {
      const bucket = tryKeyBucket(key, info, now, ctx.rule);
      if (bucket instanceof CelEvalError) return keyError(bucket);
      const ledgerKey = ledgerKeyOf(bucket);
      const spent = spentNano(ledgerKey, now, state);
      const need = call?.nano ?? 0;
      // A priced call must fit with what is in flight; anything else passes
      // while the budget is not spent.
      const reserved = need > 0 ? state.ledger.reservedOn(ledgerKey) : 0;
      if (need > 0 ? spent + reserved + need <= limitNano : spent < limitNano) {
        return {
          ok: true,
          commit() {
            // Held until the response settles. A CEL bucket is known only
            // here: a hold (even of 0) names it, so the real cost is charged to it.
            if (need > 0 || key.kind === "cel") {
              state.ledger.reserve(info.id, now, [ledgerKey], need);
            }
          },
        };
      }
      const resets = resetsAt(ledgerKey, spent, reserved, need, now, state);
      return refusal(bucket, spent, reserved, need, resets, now);
    },
    shared(info, now, state, call) {
      const bucket = tryKeyBucket(key, info, now, ctx.rule);
      if (bucket instanceof CelEvalError) return keyError(bucket);
      const ledgerKey = ledgerKeyOf(bucket);
      const need = call?.nano ?? 0;
      const from = since(now);
      const op: StateOp = {
        kind: "amount",
        key: ledgerKey,
        hold: ledgerKey,
        limit: limitNano,
        since: from ?? state.startedAt - 1,
        perMs: typeof per === "number" ? per : null,
        need,
      };
      return {
        op,
        commit() {
          // Always held (even 0): the settlement releases it on the backend too.
          state.ledger.reserve(info.id, now, [ledgerKey], need);
        },
        refuse(a) {
          const resets = per === "run"
            ? null
            : calendar !== null
            ? (period(now), periodTo)
            : a.freesAt;
          return refusal(bucket, a.used, a.reserved, need, resets, now);
        },
      };
    },
    budgets(now, state) {
      const out: BudgetState[] = [];
      for (const ledgerKey of state.ledger.keysWithPrefix(prefix)) {
        let value = "";
        if (key.kind === "cel") value = ledgerKey.slice(prefix.length);
        else if (SCOPED_KINDS.includes(key.kind as typeof SCOPED_KINDS[number])) {
          value = ledgerKey.slice(prefix.length);
        } else if (ledgerKey !== prefix) continue; // `rule:R|session:…` is another limit's
        const spent = spentNano(ledgerKey, now, state);
        const reserved = state.ledger.reservedOn(ledgerKey);
        if (spent === 0 && reserved === 0) continue;
        const resets = resetsAt(ledgerKey, spent, 0, 0, now, state);
        out.push({
          ledger_key: ledgerKey,
          key_value: value,
          spent_usd: spent / NANO,
          reserved_usd: reserved / NANO,
          limit_usd: config.usd,
          resets_at: resets === null ? null : show(resets),
        });
      }
      return out.sort((a, b) => b.spent_usd + b.reserved_usd - a.spent_usd - a.reserved_usd);
    },
    describe() {
      const split = key.kind === "global" || key.kind === "rule"
        ? ""
        : key.kind === "cel"
        ? `, one budget per value of ${key.text}`
        : `, one budget per ${key.kind}`;
      const whose = scope === "all"
        ? "counts the requests of every rule (scope: all)"
        : `counts only the requests rule "${ctx.rule}" allows`;
      return `spending_limit ${budget} per ${window}${split}: ${whose}`;
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
  const per = config.per;
  if (
    per !== "run" && !(CALENDAR_UNITS as readonly unknown[]).includes(per) &&
    (typeof per !== "number" || !(per > 0))
  ) {
    throw new PolicyConfigError(
      `Invalid per: use a window such as 1h, 1d, 7d, 30d, a calendar day, week or month, or run`,
      ["per"],
    );
  }
  if (config.scope !== undefined && config.scope !== "rule" && config.scope !== "all") {
    throw new PolicyConfigError(
      `Invalid scope ${
        JSON.stringify(config.scope)
      }: use rule (this rule's requests) or all (every rule's)`,
      ["scope"],
    );
  }
}

function validateScope(scope: "rule" | "all", key: LimitKey): void {
  if (scope !== "all") return;
  if (key.kind === "rule") {
    throw new PolicyConfigError(
      `scope: all cannot go with key: rule, which counts one rule's requests: use key global, session, host or client`,
      ["scope"],
    );
  }
  if (key.kind === "cel") {
    throw new PolicyConfigError(
      `scope: all needs a built-in key (global, session, host or client): a CEL key is evaluated only for this rule's requests`,
      ["scope"],
    );
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

const CALENDAR_ALIASES: Record<string, CalendarUnit> = {
  daily: "day",
  weekly: "week",
  monthly: "month",
  days: "day",
  weeks: "week",
  months: "month",
};

function parsePer(value: unknown): number | CalendarUnit | "run" {
  if (value === "run") return "run";
  if (typeof value === "string" && (CALENDAR_UNITS as readonly string[]).includes(value)) {
    return value as CalendarUnit;
  }
  const near = typeof value === "string" ? CALENDAR_ALIASES[value.toLowerCase()] : undefined;
  if (near !== undefined) {
    throw new PolicyConfigError(
      `Invalid per "${value}" (did you mean "${near}"?): use day, week or month for a calendar window, or a duration such as 1d`,
    );
  }
  return parseDurationValue(value);
}

/**
 * Validates the YAML form `{ usd, per, key?, scope?, tz?, currency? }` (key
 * defaults to `rule`, scope to `rule`; `tz` only with a calendar window;
 * currency, if given, must be USD).
 *
 * @example
 * ```ts
 * parseSpendingLimitConfig({ usd: 5, per: "1d", key: "session" });
 * // { usd: 5, per: 86400000, key: "session", scope: "rule" }
 * parseSpendingLimitConfig({ usd: 200, per: "month", key: "session", scope: "all", tz: "Europe/Berlin" });
 * ```
 * @throws {PolicyConfigError} with the path of the offending key.
 */
export function parseSpendingLimitConfig(raw: Record<string, unknown>): SpendingLimitConfig {
  rejectUnknownKeys(raw, ["usd", "per", "key", "scope", "tz", "currency"], "spending_limit");
  parseCurrency(raw.currency, "currency");
  if (raw.usd === undefined) {
    throw new PolicyConfigError(`Missing usd in spending_limit: add a budget, e.g. usd: 5.00`);
  }
  if (raw.per === undefined) {
    throw new PolicyConfigError(
      `Missing per in spending_limit: add a window, e.g. per: day (or 1d, month, run)`,
    );
  }
  const config: SpendingLimitConfig = {
    usd: raw.usd as number,
    per: under("per", () => parsePer(raw.per)),
    key: raw.key === undefined ? "rule" : String(raw.key),
    scope: raw.scope as "rule" | "all" | undefined ?? "rule",
  };
  if (raw.tz !== undefined) {
    if (typeof config.per !== "string" || config.per === "run") {
      throw new PolicyConfigError(
        `tz applies to calendar windows only: use per: day, week or month with it`,
        ["tz"],
      );
    }
    config.tz = under("tz", () => validateTimeZone(raw.tz as string));
  }
  validate(config);
  validateScope(config.scope!, parseLimitKey(config.key));
  return config;
}

/**
 * Reads the `@agentreserve/proxy` form `{ type: spending_limit, max_amount, currency }`.
 * The original tracked spend "per domain" with no window, whichever rule
 * forwarded it, so this is a budget per target host across rules
 * (`scope: all`) since the process started (`per: run`); an optional `per`
 * sets a window. Only USD is accepted (a missing currency means USD).
 *
 * @example
 * ```ts
 * parseLegacySpendingLimit({ type: "spending_limit", max_amount: 10, currency: "USD" });
 * // { usd: 10, per: "run", key: "host", scope: "all" }
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
    scope: "all",
  };
}
