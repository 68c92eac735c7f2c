/**
 * The decision engine: first matching rule wins. Sans-IO and total — it never
 * throws for a request; a bug inside it becomes a deny with reason
 * `internal error` (fail closed).
 *
 * @module
 */
import type { Action, Decision, DlpPlan, RequestInfo } from "./types.ts";
import { type Matcher, matchHost } from "./match.ts";
import { HostGlobIndex } from "./hostindex.ts";
import { CelEvalError, type CelRead, type CompiledCondition } from "./cel/mod.ts";
import type { Checker, PolicyResult } from "./limits/types.ts";
import type { PolicyState } from "../state/mod.ts";
import type { Provider, UsageRecord } from "../llm/types.ts";

/** Request fields a CONNECT tunnel does not reveal. */
export const REQUEST_LEVEL_READS: ReadonlySet<CelRead> = new Set([
  "request.method",
  "request.path",
  "request.query",
  "request.headers",
  "body",
]);

/** A rule after load: everything the hot path needs is precomputed. */
export interface CompiledRule {
  /** Unique within the policy (duplicates get `#2`, `#3`). */
  name: string;
  index: number;
  /** `file:line` where the rule is written. */
  source: string;
  /** Where the rule is written, for lints. */
  pos?: { file: string; line: number; col: number };
  /** The rule matches when any of these patterns does. */
  match: Matcher[];
  methods: ReadonlySet<string> | null;
  action: Action;
  reason: string | null;
  /** `when:` condition, or null. */
  when: CompiledCondition | null;
  /** What a condition that fails to evaluate does: deny (default) or skip the rule. */
  onError: "deny" | "skip";
  /** Policies that must all pass (allow and log rules). */
  checkers: Checker[];
  /**
   * True when the rule needs more than host and port: methods, a condition or a
   * policy key reading request fields (a path glob is per pattern, see Matcher).
   */
  needsRequest: boolean;
  /** True when the condition or a policy key reads the JSON body. */
  needsBody: boolean;
  /** Besides a path glob, what the rule needs that a tunnel does not show (for reasons). */
  needsWhat: string[];
}

/** LLM settings the engine needs (spending limits on models without a price). */
export interface LlmSettings {
  /** The wire format of a host, or null when it is not an LLM provider. */
  detect(host: string): Provider | null;
  pricer: {
    price(usage: UsageRecord, when: Date): { costUsd: number | null; priceUnknown: boolean };
  };
  forceStreamUsage: boolean;
  unknownPrice: "deny" | "allow";
}

/** A compiled policy: rules plus the two top-level switches. */
export interface CompiledPolicy {
  mode: "enforce" | "audit";
  defaultAction: Action;
  /** Where the default came from, for reasons (`default` or the legacy format's implicit log). */
  defaultSource: string;
  rules: CompiledRule[];
  /** Rules by exact host; built by {@link indexRules}. */
  index?: RuleIndex;
  /** LLM settings; absent in tests that need none. */
  llm?: LlmSettings;
}

/**
 * Rules indexed by host: a request only walks the rules whose patterns can
 * match its host — those naming it exactly, those with a host glob that
 * matches it (found through {@link HostGlobIndex}, not by testing every
 * glob), and the catch-alls — in the policy's order. The cost of a decision
 * grows with the rules that match the request's host, not with the size of
 * the policy. Candidate lists are cached per host.
 */
export interface RuleIndex {
  /** The rules with a pattern whose host part matches `host`, in policy order. */
  candidates(host: string): CompiledRule[];
}

const MAX_CACHED_HOSTS = 10_000;

/**
 * Build the host index of a rule list.
 *
 * @example
 * policy.index = indexRules(policy.rules);
 * policy.index.candidates("api.openai.com");
 */
export function indexRules(rules: CompiledRule[]): RuleIndex {
  const b = new RuleIndexBuilder();
  for (const r of rules) b.add(r);
  return b.build();
}

/**
 * The host index built one rule at a time (a reload adds rules between
 * slices of event-loop time, see `config/offthread.ts`).
 *
 * @example
 * const b = new RuleIndexBuilder();
 * for (const r of rules) b.add(r);
 * policy.index = b.build();
 */
export class RuleIndexBuilder {
  #exact = new Map<string, CompiledRule[]>();
  #globs = new HostGlobIndex<CompiledRule>();
  #anyHost: CompiledRule[] = [];

  /** Add the next rule (rules are added in policy order). */
  add(r: CompiledRule): void {
    for (const m of r.match) {
      if (m.host === null) {
        if (this.#anyHost[this.#anyHost.length - 1] !== r) this.#anyHost.push(r);
      } else if (typeof m.host === "string") {
        const list = this.#exact.get(m.host);
        if (!list) this.#exact.set(m.host, [r]);
        else if (list[list.length - 1] !== r) list.push(r);
      } else this.#globs.add(m.hostGlob!, m.host, r);
    }
  }

  /** The index of the rules added. */
  build(): RuleIndex {
    const exact = this.#exact;
    const globs = this.#globs;
    const anyHost = this.#anyHost;
    const cache = new Map<string, CompiledRule[]>();
    return {
      candidates(host: string): CompiledRule[] {
        let list = cache.get(host);
        if (list) return list;
        const set = new Set<CompiledRule>(anyHost);
        for (const r of exact.get(host) ?? []) set.add(r);
        globs.lookup(host, (r) => set.add(r));
        list = [...set];
        if (list.length > 1) list.sort((a, b) => a.index - b.index);
        if (cache.size >= MAX_CACHED_HOSTS) cache.clear();
        cache.set(host, list);
        return list;
      },
    };
  }
}

/** Input of {@link decide}. */
export interface DecideInput {
  info: RequestInfo;
  /** ms since epoch (injected, so tests control time). */
  now: number;
  /** Counters of rate / spending limits (kept by the caller across requests). */
  state: PolicyState;
  /**
   * Whether the body has been read (buffered and parsed into `info.body`, or
   * found unusable) or there is none. When false and a candidate rule needs the
   * body, the decision comes back with `needsBody: true` and nothing committed.
   */
  bodyRead?: boolean;
  /**
   * For a CONNECT (`info.path === null`): the tunnel will be intercepted, so
   * rules that need the request are decided per request inside it; the tunnel
   * itself is refused only by a host-level deny (or a deny default when no
   * rule can match the host), and policies are not charged for it.
   */
  intercept?: boolean;
  /**
   * When given, every rule considered is explained here in order (for
   * `agentgate eval` and test diffs); decisions are the same with or without.
   */
  trace?: TraceEntry[];
}

/** Why one rule did or did not decide a request. */
export interface TraceEntry {
  rule: string;
  source: string;
  /** What happened at this rule. */
  outcome:
    | "no-match"
    | "needs-request"
    | "condition-false"
    | "condition-error"
    | "skipped"
    | "policy-failed"
    | "decided";
  /** Human detail: the pattern that missed, the condition value, the policy result. */
  detail: string;
}

/** Why a rule's pattern or methods do not match (tracing only, off the hot path). */
function explainMiss(rule: CompiledRule, info: RequestInfo): string {
  if (info.path !== null && rule.methods !== null && !rule.methods.has(info.method)) {
    return `method ${info.method} is not in [${[...rule.methods].join(", ")}]`;
  }
  const patterns = rule.match.map((m) => `"${m.source}"`).join(", ");
  const what = info.path === null
    ? `${info.host}:${info.port}`
    : `${info.scheme}://${info.host}:${info.port}${info.path}`;
  return `${what} does not match ${patterns}`;
}

/** Reason recorded for an intercepted tunnel. */
export const INTERCEPT_REASON = "intercepted: each request inside is decided on its own";

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
      if (m.path === null && !rule.needsRequest) return true;
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
 * Callers outside the policy layer go through `pipeline.ts`, which reads the
 * body when a decision asks for it and applies the DLP verdicts.
 *
 * @example
 * const d = decide(policy, { info, now: Date.now(), state: new PolicyState() });
 * if (d.needsBody) readTheBodyAndDecideAgain();
 * else if (d.verdict === "deny") refuse(d);
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

/** Two rules' worth of DLP plans as one (findings joined, first redaction/response plan kept). */
function mergeDlp(a: DlpPlan, b: DlpPlan): DlpPlan {
  return {
    findings: [...a.findings, ...b.findings],
    redactRequest: a.redactRequest ?? b.redactRequest,
    redactHeaders: [...new Set([...a.redactHeaders, ...b.redactHeaders])],
    response: a.response ?? b.response,
    allowed: (d, w, h) => a.allowed(d, w, h) && b.allowed(d, w, h),
    inspection: [...(a.inspection ?? []), ...(b.inspection ?? [])],
  };
}

/** The model a request asks for: the JSON body's `model`, or Gemini's URL path. */
export function requestModel(provider: Provider, info: RequestInfo): string | null {
  if (provider === "gemini") {
    const m = /\/models\/([^/:]+)/.exec(info.path ?? "");
    if (m) return decodeURIComponent(m[1]);
  }
  const body = info.body as { model?: unknown } | undefined;
  return typeof body?.model === "string" ? body.model : null;
}

/**
 * A spending limit cannot hold a call whose cost will be unknown: with
 * `llm.unknown_price: deny` (the default) such a call is denied, naming the
 * model, rather than recorded at $0.
 */
function unknownPriceDenial(
  policy: CompiledPolicy,
  rule: CompiledRule,
  input: DecideInput,
): string | "needs-body" | null {
  const llm = policy.llm;
  if (!llm || llm.unknownPrice === "allow" || input.info.path === null) return null;
  if (!rule.checkers.some((c) => c.name === "spending_limit")) return null;
  const provider = llm.detect(input.info.host);
  if (provider === null || input.info.method !== "POST") return null;
  let model = requestModel(provider, input.info);
  if (model === null && input.bodyRead === false && provider !== "gemini") return "needs-body";
  if (model === null) {
    return `spending limit of rule "${rule.name}" cannot be enforced: the request names no model (llm.unknown_price: deny)`;
  }
  const probe: UsageRecord = {
    provider,
    model,
    inputTokens: 1,
    outputTokens: 1,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    partial: false,
    error: null,
  };
  if (!llm.pricer.price(probe, new Date(input.now)).priceUnknown) return null;
  model = model.slice(0, 100);
  return `no price is known for model "${model}", so the spending limit of rule "${rule.name}" cannot be enforced (llm.unknown_price: deny; add it to llm.prices)`;
}

type Note = (rule: CompiledRule, outcome: TraceEntry["outcome"], detail: string) => void;

/**
 * A rule's `when:` condition: "holds" (or no condition), "skip" (false, or
 * an error under `on_error: skip`), or the deny an error decides.
 */
function condition(
  policy: CompiledPolicy,
  rule: CompiledRule,
  info: RequestInfo,
  now: number,
  note: Note | undefined,
): "holds" | "skip" | Decision {
  if (rule.when === null) return "holds";
  try {
    if (rule.when.evaluate({ ...info, now: new Date(now) })) return "holds";
    note?.(rule, "condition-false", `condition ${rule.when.expr} is false`);
    return "skip";
  } catch (e) {
    if (!(e instanceof CelEvalError)) throw e;
    const skip = rule.onError === "skip";
    note?.(
      rule,
      skip ? "skipped" : "condition-error",
      `condition error: ${e.message}${skip ? " (on_error: skip)" : ""}`,
    );
    if (skip) return "skip";
    return decision(policy, rule, "deny", `condition error in rule "${rule.name}": ${e.message}`);
  }
}

function decideUnsafe(policy: CompiledPolicy, input: DecideInput): Decision {
  const { info, now, state, trace } = input;
  // A trace walks every rule (to explain the misses); decisions do not change.
  const rules = policy.index && !trace ? policy.index.candidates(info.host) : policy.rules;
  const note: Note = (rule, outcome, detail) =>
    trace?.push({ rule: rule.name, source: rule.source, outcome, detail });
  for (const rule of rules) {
    const m = ruleMatches(rule, info);
    if (m === false) {
      if (trace) note(rule, "no-match", explainMiss(rule, info));
      continue;
    }
    if (input.intercept && info.path === null) {
      if (m !== true) {
        if (trace) note(rule, "needs-request", "decided per request inside the intercepted tunnel");
        return decision(policy, null, "log", INTERCEPT_REASON);
      }
      const c = condition(policy, rule, info, now, trace && note);
      if (c === "skip") continue;
      if (c !== "holds") return c;
      if (rule.action === "deny") {
        if (trace) note(rule, "decided", "action deny (the tunnel is refused)");
        return decision(policy, rule, "deny", rule.reason ?? `denied by rule "${rule.name}"`);
      }
      if (trace) note(rule, "decided", `action ${rule.action}: the tunnel is intercepted`);
      return decision(policy, null, "log", INTERCEPT_REASON);
    }
    if (m !== true) {
      const needs = [
        ...(m.pathGlob !== null ? [`the path (${m.pathGlob})`] : []),
        ...rule.needsWhat,
      ].join(" and ");
      if (trace) {
        note(rule, "needs-request", `needs ${needs}; a CONNECT tunnel shows only the host`);
      }
      return decision(
        policy,
        rule,
        "deny",
        `rule "${rule.name}" (${rule.source}) needs ${needs}, which a CONNECT tunnel to ` +
          `"${info.host}:${info.port}" does not reveal: the host must be intercepted`,
      );
    }
    if (rule.needsBody && input.bodyRead === false) {
      return {
        ...decision(policy, rule, "deny", "the request body is needed"),
        needsBody: true,
        needs: "body",
      };
    }
    const c = condition(policy, rule, info, now, trace && note);
    if (c === "skip") continue;
    if (c !== "holds") return c;
    if (rule.action === "deny") {
      if (trace) note(rule, "decided", `action deny`);
      return decision(policy, rule, "deny", rule.reason ?? `denied by rule "${rule.name}"`);
    }
    const passed: PolicyResult[] = [];
    for (const checker of rule.checkers) {
      const r = checker.check(info, now, state);
      if (!r.ok) {
        if (trace) note(rule, "policy-failed", `${checker.name}: ${r.reason}`);
        return {
          verdict: policy.mode === "audit" ? "would_deny" : "deny",
          rule: rule.name,
          ruleSource: rule.source,
          reason: r.reason,
          policy: checker.name,
          status: r.status,
          retryAfter: r.retryAfter,
          detail: r.detail,
          ...(r.findings ? { findings: r.findings } : {}),
          ...(r.inspection?.length ? { inspection: r.inspection } : {}),
        };
      }
      passed.push(r);
    }
    const unpriced = unknownPriceDenial(policy, rule, input);
    if (unpriced === "needs-body") {
      return {
        ...decision(policy, rule, "deny", "the request body is needed"),
        needsBody: true,
        needs: "model",
      };
    }
    if (unpriced !== null) {
      return {
        ...decision(policy, rule, "deny", unpriced),
        policy: "spending_limit",
        verdict: policy.mode === "audit" ? "would_deny" : "deny",
      };
    }
    // Only a forwarded request consumes rate-limit slots.
    let dlp: Decision["dlp"];
    for (const r of passed) {
      if (!r.ok) continue;
      r.commit();
      if (r.dlp) dlp = dlp ? mergeDlp(dlp, r.dlp) : r.dlp;
    }
    if (trace) {
      note(
        rule,
        "decided",
        `action ${rule.action}${
          rule.checkers.length ? `; ${rule.checkers.map((c) => c.name).join(", ")} passed` : ""
        }`,
      );
    }
    const d = decision(policy, rule, rule.action, rule.reason ?? `matched rule "${rule.name}"`);
    return dlp ? { ...d, dlp } : d;
  }
  const reason = policy.defaultAction === "deny"
    ? `no rule matched (${policy.defaultSource}: deny)`
    : `no rule matched (${policy.defaultSource}: ${policy.defaultAction})`;
  return decision(policy, null, policy.defaultAction, reason);
}
