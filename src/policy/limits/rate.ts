/**
 * `rate_limit`: at most N requests (or N LLM tokens) per sliding window, per key.
 *
 * ```yaml
 * policies:
 *   - rate_limit: { requests: 60, per: 1m, key: session }
 *   - rate_limit: { tokens: 100000, per: 1m, key: 'request.headers["x-team"]' }
 * ```
 *
 * Semantics:
 * - A true sliding window: a request forwarded at `t` counts during
 *   `[t, t + per)`. With 60/1m, the 61st request passes exactly one minute
 *   after the first, and is refused one millisecond before.
 * - Only forwarded requests count: `commit()` records the request, and the
 *   engine calls it only when the whole decision forwards.
 * - Refusal: 429 with `Retry-After` = whole seconds (rounded up, at least 1)
 *   until the oldest counted request leaves the window.
 * - Tokens: a priced LLM call (an {@link LlmCall}) passes when the tokens
 *   charged in the window + the tokens reserved by calls in flight + its own
 *   worst case (input estimated from the body, output from its max tokens)
 *   fit the limit; `commit()` reserves its worst case until the response
 *   settles and charges the real count ({@link PolicyState.reportUsage}).
 *   Any other request passes while the tokens charged are below the limit.
 * - Counters live in the engine's {@link PolicyState}, keyed by rule, unit,
 *   window and key (a `global` key is shared by all rules with the same unit
 *   and window), so a reload that keeps those keeps the counters, even when
 *   the limit number changes.
 * - Memory: a request log holds at most `limit` timestamps per key; keys idle
 *   for a whole window are dropped.
 *
 * @example
 * ```ts
 * const c = createRateLimitChecker({ requests: 60, perMs: 60_000, key: "session" }, { rule: "openai" });
 * const r = c.check(info, Date.now(), state);
 * if (r.ok) r.commit();
 * ```
 *
 * @module
 */

import type { RequestInfo } from "../types.ts";
import {
  CelError,
  CelEvalError,
  type CelRead,
  type CompiledKeyExpression,
  compileKeyExpression,
} from "../cel/mod.ts";
import { formatDuration, parseDuration } from "../../util/duration.ts";
import {
  type Checker,
  type CheckerContext,
  type LlmCall,
  PolicyConfigError,
  type PolicyResult,
  rejectUnknownKeys,
  under,
} from "./types.ts";
import { type PolicyState } from "../../state/mod.ts";
import { type StateOp, tokenLogKey } from "../../state/shared.ts";
import { suggest } from "../../util/suggest.ts";
import { isoInZone } from "../../util/tz.ts";

/** The built-in key kinds of rate and spending limits; anything else is a CEL expression. */
export const BUILTIN_KEYS = ["global", "rule", "host", "session", "client"] as const;

/** How a limit splits its count into buckets. */
export type LimitKey =
  | {
    kind: (typeof BUILTIN_KEYS)[number];
    text: string;
    reads: ReadonlySet<CelRead>;
    needsBody: false;
  }
  | {
    kind: "cel";
    text: string;
    reads: ReadonlySet<CelRead>;
    needsBody: boolean;
    expr: CompiledKeyExpression;
  };

/**
 * Parses a limit's `key`:
 * - `global`: one bucket shared by every rule that declares the same limit shape;
 * - `rule`: one bucket for the rule;
 * - `host`, `client`: one bucket per target host / client address;
 * - `session`: one bucket per session; requests without a session share one
 *   bucket of their own (reported as "requests without a session"), so an
 *   agent cannot escape a per-session limit by dropping its credentials;
 * - anything else: a CEL expression evaluating to a string, e.g.
 *   `request.headers["x-team"]`.
 *
 * @example
 * ```ts
 * parseLimitKey("session").kind; // "session"
 * parseLimitKey('request.headers["x-team"]').kind; // "cel"
 * ```
 * @throws {PolicyConfigError} with path `["key"]` and the CEL error's offset.
 */
export function parseLimitKey(text: string | undefined, fallback = "rule"): LimitKey {
  const key = text === undefined ? fallback : text;
  if (typeof key !== "string" || key.trim() === "") {
    throw new PolicyConfigError(
      `Invalid key ${
        JSON.stringify(key)
      }: use global, rule, host, session, client or a CEL expression`,
      ["key"],
    );
  }
  const trimmed = key.trim();
  const builtin = BUILTIN_KEYS.find((k) => k === trimmed);
  if (builtin !== undefined) {
    const reads = new Set<CelRead>(
      builtin === "host"
        ? ["request.host"]
        : builtin === "session"
        ? ["session"]
        : builtin === "client"
        ? ["client"]
        : [],
    );
    return { kind: builtin, text: builtin, reads, needsBody: false };
  }
  try {
    const expr = compileKeyExpression(key);
    return { kind: "cel", text: key, reads: expr.reads, needsBody: expr.needsBody, expr };
  } catch (e) {
    if (e instanceof CelError) {
      // A bare word is a misspelt built-in key far more often than a CEL variable.
      const near = /^[a-z_]+$/.test(trimmed) ? suggest(trimmed, BUILTIN_KEYS, 2) : null;
      if (near !== null) {
        throw new PolicyConfigError(
          `Invalid key "${key}" (did you mean "${near}"?): use global, rule, host, session, client or a CEL expression`,
          ["key"],
        );
      }
      throw new PolicyConfigError(`Invalid key "${key}": ${e.message}`, ["key"], e.offset);
    }
    throw e;
  }
}

/** A key's bucket for one request: `value` identifies it, `label` names it in reasons. */
export interface KeyBucket {
  value: string;
  /** `session "ci"`, `host "api.openai.com"`, … or "" for global. */
  label: string;
}

/**
 * {@link keyBucket}, with the error of a CEL key that fails to evaluate
 * returned instead of thrown (the caller answers it as a key error); any
 * other error propagates.
 */
export function tryKeyBucket(
  key: LimitKey,
  info: RequestInfo,
  now: number,
  rule: string,
): KeyBucket | CelEvalError {
  try {
    return keyBucket(key, info, now, rule);
  } catch (e) {
    if (e instanceof CelEvalError) return e;
    throw e;
  }
}

/**
 * The bucket of `info` under `key`.
 * @throws {CelEvalError} when a CEL key fails to evaluate.
 */
export function keyBucket(key: LimitKey, info: RequestInfo, now: number, rule: string): KeyBucket {
  switch (key.kind) {
    case "global":
      return { value: "", label: "" };
    case "rule":
      return { value: rule, label: `rule "${rule}"` };
    case "host":
      return { value: info.host, label: `host "${info.host}"` };
    case "client":
      return { value: info.client, label: `client "${info.client}"` };
    case "session":
      return info.session === null
        ? { value: "", label: "requests without a session" }
        : { value: info.session, label: `session "${info.session}"` };
    case "cel": {
      const value = key.expr.evaluate({ ...info, now: new Date(now) });
      return { value, label: `key "${value}"` };
    }
  }
}

/** A compiled rate limit: exactly one of `requests` and `tokens`. */
export interface RateLimitConfig {
  requests?: number;
  tokens?: number;
  /** Window length in milliseconds. */
  perMs: number;
  /** `global | rule | host | session | client | <CEL expression>` */
  key: string;
}

/** Timestamps (and amounts, for tokens) of one bucket, oldest first. */
class Log {
  ts: number[] = [];
  amount: number[] = [];
  head = 0;

  /** Index of the first entry still inside the window that ends at `now`. */
  firstLive(now: number, perMs: number): number {
    const cutoff = now - perMs;
    let lo = this.head;
    let hi = this.ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ts[mid] <= cutoff) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  push(ts: number, amount: number, now: number, perMs: number): void {
    this.head = this.firstLive(now, perMs);
    // Compact when the dead prefix dominates, so memory stays near the live count.
    if (this.head > 32 && this.head * 2 > this.ts.length) {
      this.ts = this.ts.slice(this.head);
      this.amount = this.amount.slice(this.head);
      this.head = 0;
    }
    let i = this.ts.length;
    while (i > this.head && this.ts[i - 1] > ts) i--;
    this.ts.splice(i, 0, ts);
    this.amount.splice(i, 0, amount);
  }

  newest(): number {
    return this.ts.length > this.head ? this.ts[this.ts.length - 1] : -Infinity;
  }
}

/** One checker's counters: a log per bucket. */
interface RateSlot {
  logs: Map<string, Log>;
  lastSweep: number;
}

/** A rate-limit checker; token limits also take charges. */
export interface RateLimitChecker extends Checker {
  readonly unit: "requests" | "tokens";
  readonly limit: number;
  readonly perMs: number;
  /** The window as shown: `1m`. */
  readonly window: string;
  readonly key: LimitKey;
  /**
   * Charges `tokens` at `ts` to the bucket of `info` (token limits only; the
   * usual path is the hook `commit()` leaves for {@link PolicyState.reportUsage}).
   */
  chargeTokens(info: RequestInfo, ts: number, tokens: number, state: PolicyState): void;
  /** Counted requests or tokens of `info`'s bucket at `now` (for tests and the dashboard). */
  count(info: RequestInfo, now: number, state: PolicyState): number;
  /**
   * Every bucket that holds tokens or reservations (token limits) or counted
   * requests (request limits) at `now`: the budgets view.
   */
  budgets(now: number, state: PolicyState): TokenBudgetState[] | RequestBudgetState[];
  /** One line saying what the limit counts (for `agentgate check`). */
  describe(): string;
}

/** One bucket of a token limit, as the budgets view shows it. */
export interface TokenBudgetState {
  key_value: string;
  used_tokens: number;
  reserved_tokens: number;
  limit_tokens: number;
  /** When the oldest tokens counted leave the window (ISO 8601), or null when none are counted. */
  resets_at: string | null;
}

/** One bucket of a request limit, as the budgets view shows it: its headroom in the window. */
export interface RequestBudgetState {
  key_value: string;
  /** Requests counted in the sliding window that ends now. */
  used_requests: number;
  limit_requests: number;
  /** Requests that would pass now (`limit_requests - used_requests`, at least 0). */
  left_requests: number;
  /** When the oldest counted request leaves the window (ISO 8601), or null when none are counted. */
  resets_at: string | null;
}

/**
 * Creates the `rate_limit` checker.
 *
 * @example
 * ```ts
 * const c = createRateLimitChecker({ requests: 2, perMs: 1_000, key: "global" }, { rule: "r" });
 * ```
 * @throws {PolicyConfigError} for an invalid config (also checked by {@link parseRateLimitConfig}).
 */
export function createRateLimitChecker(
  config: RateLimitConfig,
  ctx: CheckerContext,
): RateLimitChecker {
  const unit: "requests" | "tokens" = config.tokens !== undefined ? "tokens" : "requests";
  const limit = (unit === "tokens" ? config.tokens : config.requests) as number;
  validateLimit(config);
  const perMs = config.perMs;
  const key = parseLimitKey(config.key);
  const window = formatDuration(perMs);
  // `global` buckets are shared across rules; every other key is the rule's own.
  const owner = key.kind === "global" ? "*" : ctx.rule;
  const stateKey = `rate_limit|${owner}|${unit}|${perMs}|${
    key.kind === "cel" ? `cel:${key.text}` : key.kind
  }`;
  const newSlot = (): RateSlot => ({ logs: new Map(), lastSweep: -Infinity });

  const sweep = (slot: RateSlot, now: number) => {
    // Idle buckets cannot matter once their newest entry has left the window.
    if (now - slot.lastSweep < perMs) return;
    slot.lastSweep = now;
    for (const [k, log] of slot.logs) if (log.newest() <= now - perMs) slot.logs.delete(k);
  };

  const used = (log: Log | undefined, now: number): { count: number; first: number } => {
    if (log === undefined) return { count: 0, first: 0 };
    const first = log.firstLive(now, perMs);
    if (unit === "requests") return { count: log.ts.length - first, first };
    let sum = 0;
    for (let i = first; i < log.ts.length; i++) sum += log.amount[i];
    return { count: sum, first };
  };

  const charge = (slot: RateSlot, bucket: string, ts: number, amount: number, now: number) => {
    let log = slot.logs.get(bucket);
    if (log === undefined) slot.logs.set(bucket, log = new Log());
    log.push(ts, amount, now, perMs);
  };

  const keyError = (e: unknown): PolicyResult => ({
    ok: false,
    status: 403,
    reason: `rate limit key error: ${e instanceof Error ? e.message : String(e)}`,
    retryAfter: null,
    detail: { policy: "rate_limit", key: key.text },
  });

  const bucketOf = (info: RequestInfo, now: number) => tryKeyBucket(key, info, now, ctx.rule);

  /** Token reservations of a bucket are held on `tokens:<stateKey>|<bucket>`. */
  const holdPrefix = `tokens:${stateKey}|`;

  /** When the oldest entries have left the window far enough for the request to pass. */
  const leavesAt = (log: Log, first: number, count: number, reserved: number, need: number) => {
    if (unit === "requests") return log.ts[first + (count - limit)] + perMs;
    let rest = count;
    for (let i = first; i < log.ts.length; i++) {
      rest -= log.amount[i];
      if (need > 0 ? rest + reserved + need <= limit : rest < limit) return log.ts[i] + perMs;
    }
    // Even an empty window is too small while these calls are in flight: when it is empty.
    return log.ts[log.ts.length - 1] + perMs;
  };

  const refusal = (
    bucket: KeyBucket,
    count: number,
    reserved: number,
    need: number,
    leaves: number,
    now: number,
  ): PolicyResult & { ok: false } => {
    const retryAfter = Math.max(1, Math.ceil((leaves - now) / 1000));
    const who = bucket.label === "" ? "" : ` for ${bucket.label}`;
    const perWindow = `${limit} ${limit === 1 ? unit.slice(0, -1) : unit} per ${window}${who}`;
    return {
      ok: false,
      status: 429,
      reason: need > 0
        ? `rate limit exceeded: ${count} tokens used + ${reserved} reserved in flight + ${need} for this call > ${perWindow}`
        : `rate limit exceeded: ${perWindow}`,
      retryAfter,
      detail: {
        policy: "rate_limit",
        key: key.text,
        key_value: bucket.value,
        unit,
        count,
        limit,
        window,
        ...(unit === "tokens"
          ? {
            reserved,
            needed: need,
            resets_at: isoInZone(now + retryAfter * 1000, "UTC"),
          }
          : {}),
      },
    };
  };

  return {
    name: "rate_limit",
    stateKey,
    unit,
    limit,
    perMs,
    window,
    key,
    check(info, now, state, call?: LlmCall | null) {
      const slot = state.slot(stateKey, newSlot);
      sweep(slot, now);
      const bucket = bucketOf(info, now);
      if (bucket instanceof CelEvalError) return keyError(bucket);
      const log = slot.logs.get(bucket.value);
      const { count, first } = used(log, now);
      // A priced call must fit with its worst case and what is in flight.
      const need = unit === "tokens" ? call?.tokens ?? 0 : 0;
      const holdKey = `${holdPrefix}${bucket.value}`;
      const reserved = need > 0 ? state.ledger.reservedOn(holdKey) : 0;
      if (need > 0 ? count + reserved + need <= limit : count < limit) {
        return {
          ok: true,
          commit() {
            if (unit === "requests") {
              charge(slot, bucket.value, now, 1, now);
            } else {
              if (need > 0) state.ledger.reserve(info.id, now, [holdKey], need);
              state.onUsage(info.id, now, (usage) => {
                if (usage.tokens !== undefined && usage.tokens > 0) {
                  charge(
                    state.slot(stateKey, newSlot),
                    bucket.value,
                    usage.ts,
                    usage.tokens,
                    usage.ts,
                  );
                }
              });
            }
          },
        };
      }
      // The request passes again once enough of the oldest entries have left the window.
      const leaves = log === undefined ? now : leavesAt(log, first, count, reserved, need);
      return refusal(bucket, count, reserved, need, leaves, now);
    },
    shared(info, now, state, call?: LlmCall | null) {
      const bucket = bucketOf(info, now);
      if (bucket instanceof CelEvalError) return keyError(bucket);
      const need = unit === "tokens" ? call?.tokens ?? 0 : 0;
      const holdKey = `${holdPrefix}${bucket.value}`;
      const op: StateOp = unit === "requests"
        ? { kind: "count", key: `rl:${stateKey}|${bucket.value}`, limit, perMs }
        : {
          kind: "amount",
          key: tokenLogKey(holdKey),
          hold: holdKey,
          limit,
          since: now - perMs,
          perMs,
          need,
        };
      return {
        op,
        commit() {
          const slot = state.slot(stateKey, newSlot);
          if (unit === "requests") return charge(slot, bucket.value, now, 1, now);
          // Always held (even 0): the settlement charges the tokens to this bucket's log.
          state.ledger.reserve(info.id, now, [holdKey], need);
          state.onUsage(info.id, now, (usage) => {
            if (usage.tokens !== undefined && usage.tokens > 0) {
              charge(state.slot(stateKey, newSlot), bucket.value, usage.ts, usage.tokens, usage.ts);
            }
          });
        },
        refuse: (a) => refusal(bucket, a.used, a.reserved, need, a.freesAt ?? now, now),
      };
    },
    chargeTokens(info, ts, tokens, state) {
      if (unit !== "tokens" || !(tokens > 0)) return;
      const bucket = bucketOf(info, ts);
      if (bucket instanceof CelEvalError) return;
      charge(state.slot(stateKey, newSlot), bucket.value, ts, tokens, ts);
    },
    count(info, now, state) {
      const bucket = bucketOf(info, now);
      if (bucket instanceof CelEvalError) return 0;
      return used(state.slot(stateKey, newSlot).logs.get(bucket.value), now).count;
    },
    budgets(now, state) {
      const logs = state.peekSlot<RateSlot>(stateKey)?.logs ?? new Map<string, Log>();
      if (unit === "requests") {
        const out: RequestBudgetState[] = [];
        for (const [value, log] of logs) {
          const { count, first } = used(log, now);
          if (count === 0) continue;
          out.push({
            key_value: value,
            used_requests: count,
            limit_requests: limit,
            left_requests: Math.max(0, limit - count),
            // The oldest counted request frees one slot when it leaves the window.
            resets_at: isoInZone(Math.ceil((log.ts[first] + perMs) / 1000) * 1000, "UTC"),
          });
        }
        return out.sort((a, b) => b.used_requests - a.used_requests);
      }
      const values = new Set(logs.keys());
      for (const k of state.ledger.keysWithPrefix(holdPrefix)) {
        values.add(k.slice(holdPrefix.length));
      }
      const out: TokenBudgetState[] = [];
      for (const value of values) {
        const log = logs.get(value);
        const { count, first } = used(log, now);
        const reserved = state.ledger.reservedOn(`${holdPrefix}${value}`);
        if (count === 0 && reserved === 0) continue;
        out.push({
          key_value: value,
          used_tokens: count,
          reserved_tokens: reserved,
          limit_tokens: limit,
          resets_at: log !== undefined && count > 0
            ? isoInZone(Math.ceil((log.ts[first] + perMs) / 1000) * 1000, "UTC")
            : null,
        });
      }
      return out.sort((a, b) =>
        b.used_tokens + b.reserved_tokens - a.used_tokens - a.reserved_tokens
      );
    },
    describe() {
      const split = key.kind === "global" || key.kind === "rule"
        ? ""
        : key.kind === "cel"
        ? `, one bucket per value of ${key.text}`
        : `, one bucket per ${key.kind}`;
      const whose = key.kind === "global"
        ? "counts the requests of every rule with this limit (key: global)"
        : `counts only the requests rule "${ctx.rule}" allows`;
      return `rate_limit ${limit} ${unit} per ${window}${split}: ${whose}`;
    },
  };
}

function validateLimit(config: RateLimitConfig): void {
  const hasRequests = config.requests !== undefined;
  const hasTokens = config.tokens !== undefined;
  if (hasRequests === hasTokens) {
    throw new PolicyConfigError(
      "Invalid rate_limit: give exactly one of requests and tokens, e.g. { requests: 60, per: 1m }",
    );
  }
  const field = hasRequests ? "requests" : "tokens";
  const n = hasRequests ? config.requests : config.tokens;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw new PolicyConfigError(
      `Invalid ${field} ${JSON.stringify(n)}: expected a whole number of at least 1`,
      [field],
    );
  }
  if (typeof config.perMs !== "number" || !(config.perMs > 0) || !Number.isFinite(config.perMs)) {
    throw new PolicyConfigError(`Invalid per: the window must be longer than 0`, ["per"]);
  }
}

const RATE_KEYS = ["requests", "tokens", "per", "key"];

/**
 * Validates the YAML form `{ requests | tokens, per, key? }` (key defaults to `rule`).
 *
 * @example
 * ```ts
 * parseRateLimitConfig({ requests: 60, per: "1m", key: "session" });
 * // { requests: 60, perMs: 60000, key: "session" }
 * ```
 * @throws {PolicyConfigError} with the path of the offending key.
 */
export function parseRateLimitConfig(raw: Record<string, unknown>): RateLimitConfig {
  rejectUnknownKeys(raw, RATE_KEYS, "rate_limit");
  if (raw.per === undefined) {
    throw new PolicyConfigError(`Missing per in rate_limit: add a window, e.g. per: 1m`);
  }
  const perMs = under("per", () => parseDurationValue(raw.per));
  const config: RateLimitConfig = { perMs, key: raw.key === undefined ? "rule" : String(raw.key) };
  if (raw.requests !== undefined) config.requests = raw.requests as number;
  if (raw.tokens !== undefined) config.tokens = raw.tokens as number;
  validateLimit(config);
  parseLimitKey(config.key);
  return config;
}

/**
 * Reads the `@agentreserve/proxy` form `{ type: rate_limit, max_requests_per_minute }`:
 * a sliding minute per target host ("per domain").
 *
 * @example
 * ```ts
 * parseLegacyRateLimit({ type: "rate_limit", max_requests_per_minute: 60 });
 * // { requests: 60, perMs: 60000, key: "host" }
 * ```
 */
export function parseLegacyRateLimit(raw: Record<string, unknown>): RateLimitConfig {
  rejectUnknownKeys(raw, ["type", "max_requests_per_minute"], "rate_limit");
  const n = raw.max_requests_per_minute;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw new PolicyConfigError(
      `Invalid max_requests_per_minute ${JSON.stringify(n)}: expected a whole number of at least 1`,
      ["max_requests_per_minute"],
    );
  }
  return { requests: n, perMs: 60_000, key: "host" };
}

/** Parses a window given in a config (a duration string); errors carry no path. */
export function parseDurationValue(value: unknown): number {
  let ms: number;
  try {
    ms = parseDuration(value as string);
  } catch (e) {
    throw new PolicyConfigError((e as Error).message);
  }
  if (!(ms > 0)) {
    throw new PolicyConfigError(`Invalid duration "${value}": it must be longer than 0`);
  }
  return ms;
}
