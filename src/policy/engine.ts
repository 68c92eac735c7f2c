/**
 * The decision engine: first matching rule wins. Sans-IO and total — it never
 * throws for a request; a bug inside it becomes a deny with reason
 * `internal error` (fail closed).
 *
 * @module
 */
import type { Action, Decision, RequestInfo } from "./types.ts";
import { type Matcher, matchHost } from "./match.ts";

/** A rule after load: everything the hot path needs is precomputed. */
export interface CompiledRule {
  /** Unique within the policy (duplicates get `#2`, `#3`). */
  name: string;
  index: number;
  /** `file:line` where the rule is written. */
  source: string;
  /** The rule matches when any of these patterns does. */
  match: Matcher[];
  methods: ReadonlySet<string> | null;
  action: Action;
  reason: string | null;
  /** Raw policy configs, kept for the policy checkers. */
  policies: unknown[];
  /** True when the rule needs more than host and port (path glob or methods). */
  needsRequest: boolean;
}

/** A compiled policy: rules plus the two top-level switches. */
export interface CompiledPolicy {
  mode: "enforce" | "audit";
  defaultAction: Action;
  /** Where the default came from, for reasons (`default` or the legacy format's implicit log). */
  defaultSource: string;
  rules: CompiledRule[];
}

/** Input of {@link decide}. */
export interface DecideInput {
  info: RequestInfo;
  /** ms since epoch (injected, so tests control time). */
  now: number;
}

/** Counts of engine failures, for logs and metrics. */
export const engineErrors = { count: 0, last: "" };

function verdictFor(action: Action, mode: CompiledPolicy["mode"]): Decision["verdict"] {
  if (action !== "deny") return action;
  return mode === "audit" ? "would_deny" : "deny";
}

/** true, false, or the pattern that matched the host but needs the request (tunnels). */
function ruleMatches(rule: CompiledRule, info: RequestInfo): boolean | Matcher {
  if (info.path !== null && rule.methods !== null && !rule.methods.has(info.method)) return false;
  let needs: Matcher | null = null;
  for (const m of rule.match) {
    if (!matchHost(m, info.host, info.port, info.scheme)) continue;
    if (info.path === null) {
      // A tunnel shows host and port only: never guess what the path would be.
      if (m.path === null && rule.methods === null) return true;
      needs ??= m;
    } else if (m.path === null || m.path(info.path)) return true;
  }
  return needs ?? false;
}

function decision(
  policy: CompiledPolicy,
  rule: CompiledRule | null,
  action: Action,
  reason: string,
): Decision {
  return {
    verdict: verdictFor(action, policy.mode),
    rule: rule?.name ?? null,
    ruleSource: rule?.source ?? null,
    reason,
    policy: null,
    status: action === "deny" ? 403 : 200,
    retryAfter: null,
  };
}

/**
 * Decide one request. `info.path` must already be normalized
 * ({@link normalizePath}); `info.path === null` marks a CONNECT tunnel.
 *
 * @example
 * const d = decide(policy, { info, now: Date.now() });
 * if (d.verdict === "deny") reject(d);
 */
export function decide(policy: CompiledPolicy, input: DecideInput): Decision {
  try {
    return decideUnsafe(policy, input);
  } catch (e) {
    engineErrors.count++;
    engineErrors.last = e instanceof Error ? e.stack ?? e.message : String(e);
    return {
      verdict: "deny",
      rule: null,
      ruleSource: null,
      reason: "internal error",
      policy: null,
      status: 403,
      retryAfter: null,
    };
  }
}

function decideUnsafe(policy: CompiledPolicy, { info }: DecideInput): Decision {
  for (const rule of policy.rules) {
    const m = ruleMatches(rule, info);
    if (m === false) continue;
    if (m !== true) {
      const needs = [
        m.pathGlob !== null ? `the path (${m.pathGlob})` : null,
        rule.methods !== null ? `the method (${[...rule.methods].join(", ")})` : null,
      ].filter(Boolean).join(" and ");
      return decision(
        policy,
        rule,
        "deny",
        `rule "${rule.name}" (${rule.source}) needs ${needs}, which a CONNECT tunnel to ` +
          `"${info.host}:${info.port}" does not reveal: the host must be intercepted`,
      );
    }
    const reason = rule.reason ??
      (rule.action === "deny" ? `denied by rule "${rule.name}"` : `matched rule "${rule.name}"`);
    return decision(policy, rule, rule.action, reason);
  }
  const reason = policy.defaultAction === "deny"
    ? `no rule matched (${policy.defaultSource}: deny)`
    : `no rule matched (${policy.defaultSource}: ${policy.defaultAction})`;
  return decision(policy, null, policy.defaultAction, reason);
}
