/**
 * The decision engine: first matching rule wins. Sans-IO and total — it never
 * throws for a request; a bug inside it becomes a deny with reason
 * `internal error` (fail closed).
 *
 * @module
 */
import type { Action, Decision, DlpPlan, RequestInfo } from "./types.ts";
import { type Matcher, matchHost } from "./match.ts";
import {
  type AddressAllowance,
  addressInRange,
  addressReason,
  allowedBy,
  classifyAddress,
} from "./address.ts";
import { HostGlobIndex } from "./hostindex.ts";
import { CelEvalError, type CelRead, type CompiledCondition } from "./cel/mod.ts";
import type { Checker, LlmCall, PolicyResult, SharedCheck } from "./limits/types.ts";
import { NANO, type PolicyState } from "../state/mod.ts";
import type { OnStateError, StateAnswer, StateAsk, StateOp } from "../state/shared.ts";
import type { Provider, UsageRecord } from "../llm/types.ts";
import type { Pricer } from "../llm/pricing.ts";
import type { CallEstimate, CallRequest } from "../llm/estimate.ts";

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
  /**
   * True when the condition or a rate/spending key reads `request.path`: then
   * every reading of an ambiguous path must be the same string
   * (`policy/ambiguity.ts`).
   */
  readsPath?: boolean;
  /** True when the condition or a policy key reads `dest` (the resolved address). */
  needsDest: boolean;
  /**
   * Addresses of the built-in deny set this rule may reach when it forwards:
   * the literal addresses and ranges its `match` names, and `allow_private`.
   * Null when it names none.
   */
  allowance: AddressAllowance | null;
  /** Besides a path glob, what the rule needs that a tunnel does not show (for reasons). */
  needsWhat: string[];
}

/** LLM settings the engine needs (spending limits on models without a price). */
export interface LlmSettings {
  /** The wire format of a host (and port), or null when it is not an LLM provider. */
  detect(host: string, port?: number): Provider | null;
  pricer: Pricer;
  /** A usage sketch of what a request shows before it is sent (`llm/foresee.ts`). */
  foresee(provider: Provider, model: string, body: unknown, bodyBytes: number | null): UsageRecord;
  forceStreamUsage: boolean;
  unknownPrice: "deny" | "allow";
  /**
   * The worst case of a call (input estimated from the body, output from its
   * cap), priced like its charge; null when the request is not one that
   * reports usage. Absent: budgets reserve nothing.
   */
  estimate?(provider: Provider, req: CallRequest, when: Date): CallEstimate | null;
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
  /**
   * The caller resolves names (the proxy): when `info.dest` is unknown, a
   * request about to be forwarded comes back with `needsDest: true` and
   * nothing committed, so its address is checked before it is connected to.
   * Without it (`test`, `eval`, `replay`) the address is checked only when
   * `info.dest` is given; a rule that matches by address or reads `dest`
   * asks for it either way.
   */
  resolve?: boolean;
  /** Addresses of the host agentgate runs on (canonical), denied like loopback. */
  local?: ReadonlySet<string>;
  /**
   * Limits live in a shared backend (`state:`; the value is
   * `state.on_state_error`): a rule whose limits keep counters comes back
   * with `needs: "state"` and its {@link Decision.stateAsk}, nothing
   * committed; the caller asks the backend and decides again with
   * `stateAnswer`. Absent: the in-process state decides (test, eval, replay).
   */
  shared?: OnStateError;
  /** The backend's answer to the decision's `stateAsk`. */
  stateAnswer?: StateAnswer;
}

/** Why one rule did or did not decide a request. */
export interface TraceEntry {
  rule: string;
  source: string;
  /** What happened at this rule. */
  outcome:
    | "no-match"
    | "needs-request"
    | "needs-dest"
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

/**
 * A call refused for a price it cannot have (an unknown model, a gap the
 * request shows). In audit mode it is forwarded: its usage is still wanted.
 */
function unpricedDecision(
  policy: CompiledPolicy,
  rule: CompiledRule,
  unpriced: string,
  metered: boolean,
): Decision {
  const d: Decision = {
    ...decision(policy, rule, "deny", unpriced),
    policy: "spending_limit",
    verdict: policy.mode === "audit" ? "would_deny" : "deny",
  };
  return d.verdict === "would_deny" && metered ? { ...d, metered: true } : d;
}

/**
 * true, false, the pattern that matched the host but needs the request
 * (tunnels), or "dest" when an address range can only be matched once the
 * name is resolved.
 */
function ruleMatches(rule: CompiledRule, info: RequestInfo): boolean | Matcher | "dest" {
  if (info.path !== null && rule.methods !== null && !rule.methods.has(info.method)) return false;
  let needs: Matcher | null = null;
  let needsDest = false;
  for (const m of rule.match) {
    if (m.cidr !== null) {
      if (m.scheme !== null && m.scheme !== info.scheme) continue;
      if (info.dest === undefined) needsDest = true;
      else if (addressInRange(m.cidr, info.dest.ip)) return true;
      continue;
    }
    if (!matchHost(m, info.host, info.port, info.scheme)) continue;
    if (info.path === null) {
      // A tunnel shows host and port only: never guess what the path would be.
      if (m.path === null && !rule.needsRequest) return true;
      needs ??= m;
    } else if (m.path === null || m.path(info.path)) return true;
  }
  return needsDest ? "dest" : needs ?? false;
}

/**
 * Asks the caller for the destination address (nothing is committed). The
 * guard asks with the verdict it is about to give (`allow` / `log`: a DNS
 * failure is recorded under it); a rule that cannot match without the
 * address asks with `deny`, as nothing is decided yet.
 */
function askDest(
  policy: CompiledPolicy,
  rule: CompiledRule | null,
  why: string,
  forward?: Action,
): Decision {
  return {
    ...decision(policy, rule, forward ?? "deny", why),
    ...(forward ? {} : { verdict: "deny" as const }),
    needsDest: true,
    needs: "dest",
  };
}

/**
 * The built-in address guard for a request about to be forwarded under
 * `rule` (null: the default): null when its destination may be reached, the
 * denial when it may not, or a request for the address when the caller
 * resolves and it is unknown. Without an address and without a resolving
 * caller there is nothing to check.
 */
function guardAddress(
  policy: CompiledPolicy,
  rule: CompiledRule | null,
  input: DecideInput,
  note: Note | undefined,
): Decision | null {
  const { info } = input;
  const dest = info.dest;
  if (dest === undefined) {
    return input.resolve
      ? askDest(
        policy,
        rule,
        `the address of "${info.host}" must be checked before connecting`,
        rule?.action ?? policy.defaultAction,
      )
      : null;
  }
  // An address pinned in upstream.resolve is the operator's explicit choice.
  if (dest.pinned) return null;
  const found = classifyAddress(dest.ip, input.local);
  if (found === null || allowedBy(found, rule?.allowance ?? null)) return null;
  const reason = addressReason(info.host, found);
  if (rule !== null) note?.(rule, "policy-failed", `address: ${reason}`);
  return {
    verdict: policy.mode === "audit" ? "would_deny" : "deny",
    rule: rule?.name ?? null,
    ruleSource: rule?.source ?? null,
    reason,
    policy: "address",
    status: 403,
    retryAfter: null,
  };
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
 * Decide one request. `info.path` must already be canonical
 * (`request.ts` `requestInfo`); `info.path === null` marks a CONNECT tunnel.
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
    const d = decideUnsafe(policy, input);
    // In mode: audit a would-be deny is forwarded, so a resolving caller needs its address
    // too (nothing was committed for it: policies that count come after the guard).
    if (
      d.verdict === "would_deny" && input.resolve && input.info.dest === undefined &&
      !d.needsBody && !d.needsDest && d.needs !== "state" &&
      !(input.intercept && input.info.path === null)
    ) return { ...d, needsDest: true, needs: "dest" };
    return d;
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

/** Whether a rule's policies need the usage of what it forwards (a spending or token limit). */
function isMetered(rule: CompiledRule): boolean {
  const s = shapeOf(rule);
  return s.spends || s.tokens;
}

/** What budgets a rule carries. */
interface BudgetShape {
  spends: boolean;
  tokens: boolean;
}

const ruleShapes = new WeakMap<CompiledRule, BudgetShape>();
const policyShapes = new WeakMap<CompiledPolicy, { spendAll: string[] }>();

function shapeOf(rule: CompiledRule): BudgetShape {
  let s = ruleShapes.get(rule);
  if (s === undefined) {
    s = {
      spends: rule.checkers.some((c) => c.name === "spending_limit"),
      tokens: rule.checkers.some((c) =>
        c.name === "rate_limit" && (c as { unit?: string }).unit === "tokens"
      ),
    };
    ruleShapes.set(rule, s);
  }
  return s;
}

/**
 * The keys (`global`, `session`, `host`, `client`) of the policy's `scope:
 * all` spending limits: every priced call is reserved on them, whichever
 * rule allows it, since its cost counts for those budgets.
 */
function spendAllKeys(policy: CompiledPolicy): string[] {
  let s = policyShapes.get(policy);
  if (s === undefined) {
    const kinds = new Set<string>();
    for (const r of policy.rules) {
      for (const c of r.checkers) {
        const limit = c as { scope?: string; key?: { kind: string } };
        if (c.name === "spending_limit" && limit.scope === "all" && limit.key) {
          kinds.add(limit.key.kind);
        }
      }
    }
    s = { spendAll: [...kinds] };
    policyShapes.set(policy, s);
  }
  return s.spendAll;
}

/** The provider of a request that may be a priced LLM call, or null. */
function llmProvider(policy: CompiledPolicy, info: RequestInfo): Provider | null {
  if (info.path === null || info.method !== "POST" || !policy.llm) return null;
  return policy.llm.detect(info.host, info.port);
}

/** The worst case of a priced call, or null (not a call that reports usage, or no estimator). */
function llmCall(
  policy: CompiledPolicy,
  provider: Provider,
  info: RequestInfo,
  now: number,
): LlmCall | null {
  const e = policy.llm?.estimate?.(provider, {
    method: info.method,
    path: info.path!,
    body: info.body,
    bodySize: info.bodySize ?? 0,
    host: info.host,
  }, new Date(now));
  if (!e) return null;
  return {
    // Rounded up, but not for the float noise of the multiplication.
    nano: e.usd === null ? null : Math.ceil(e.usd * NANO - 1e-3),
    tokens: e.inputTokens + e.outputTokens,
  };
}

/**
 * Holds a forwarded call's worst case on the keys of the `scope: all`
 * budgets its cost will count for (its own rule's budgets reserved their
 * keys in their `commit`).
 */
function reserveAcrossRules(
  state: PolicyState,
  info: RequestInfo,
  kinds: string[],
  now: number,
  call: LlmCall | null,
): void {
  if (call === null || call.nano === null || kinds.length === 0) return;
  state.ledger.reserve(info.id, now, acrossKeys(info, kinds), call.nano);
}

/** The ledger keys of the `scope: all` budgets a request counts for. */
function acrossKeys(info: RequestInfo, kinds: string[]): string[] {
  return kinds.map((k) =>
    k === "global"
      ? "global"
      : `${k}:${k === "session" ? info.session ?? "" : k === "host" ? info.host : info.client}`
  );
}

/**
 * A spending limit cannot hold a call whose cost will be unknown or only
 * partly known: with `llm.unknown_price: deny` (the default) such a call is
 * denied, naming the model and what has no price (a service tier the request
 * asks for, a server-side tool it offers, audio, a prompt long enough for a
 * long-context price — as far as the request shows them), rather than
 * recorded at $0 or below its cost.
 */
function unknownPriceDenial(
  policy: CompiledPolicy,
  rule: CompiledRule,
  input: DecideInput,
): string | "needs-body" | null {
  const llm = policy.llm;
  if (!llm || llm.unknownPrice === "allow" || input.info.path === null) return null;
  if (!rule.checkers.some((c) => c.name === "spending_limit")) return null;
  const info = input.info;
  const provider = llm.detect(info.host, info.port);
  if (provider === null || info.method !== "POST") return null;
  let model = requestModel(provider, info);
  if (model === null && input.bodyRead === false && provider !== "gemini") return "needs-body";
  if (model === null) {
    return `spending limit of rule "${rule.name}" cannot be enforced: the request names no model (llm.unknown_price: deny)`;
  }
  const length = Number(info.headers["content-length"]);
  const probe = llm.foresee(
    provider,
    model,
    info.body,
    Number.isSafeInteger(length) && length > 0 ? length : null,
  );
  const price = llm.pricer.price(probe, new Date(input.now), info.host);
  if (!price.priceUnknown && !price.priceIncomplete) return null;
  model = model.slice(0, 100);
  const enforce = `so the spending limit of rule "${rule.name}" cannot be enforced ` +
    `(llm.unknown_price: deny; add it to llm.prices)`;
  if (price.priceUnknown) return `no price is known for model "${model}", ${enforce}`;
  return `no price is known for ${price.missing.join(" and ")} of model "${model}", ${enforce}`;
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
    if (m === "dest" || (rule.needsDest && info.dest === undefined)) {
      const what = m === "dest"
        ? `matches by address (${rule.match.filter((x) => x.cidr).map((x) => x.source).join(", ")})`
        : `reads dest in ${rule.when?.reads.has("dest") ? "its condition" : "a policy key"}`;
      if (trace) note(rule, "needs-dest", `${what}: needs the resolved address of "${info.host}"`);
      return askDest(
        policy,
        rule,
        `rule "${rule.name}" (${rule.source}) ${what}, so it needs the resolved address of "${info.host}"`,
      );
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
    // Forwarded: the address it connects to must pass the guard first (before
    // any policy counts the request).
    const guarded = guardAddress(policy, rule, input, trace && note);
    if (guarded !== null) return guarded;
    // A priced call under a budget: its worst case is checked and reserved.
    const shape = shapeOf(rule);
    const spendAll = spendAllKeys(policy);
    let call: LlmCall | null = null;
    if (shape.spends || shape.tokens || spendAll.length > 0) {
      const provider = llmProvider(policy, info);
      if (provider !== null) {
        if (input.bodyRead === false) {
          return {
            ...decision(policy, rule, "deny", "the request body is needed"),
            needsBody: true,
            needs: "model",
          };
        }
        call = llmCall(policy, provider, info, now);
      }
    }
    if (input.shared) {
      const s = decideShared(policy, rule, input, call, spendAll);
      if (s !== null) return s;
    }
    const passed: PolicyResult[] = [];
    for (const checker of rule.checkers) {
      const r = checker.check(info, now, state, call);
      if (!r.ok) {
        if (trace) note(rule, "policy-failed", `${checker.name}: ${r.reason}`);
        return refusedBy(policy, rule, checker.name, r);
      }
      passed.push(r);
    }
    const metered = isMetered(rule);
    const unpriced = unknownPriceDenial(policy, rule, input);
    if (unpriced === "needs-body") {
      return {
        ...decision(policy, rule, "deny", "the request body is needed"),
        needsBody: true,
        needs: "model",
      };
    }
    if (unpriced !== null) return unpricedDecision(policy, rule, unpriced, metered);
    // Only a forwarded request consumes rate-limit slots and reserves budgets.
    let dlp: Decision["dlp"];
    for (const r of passed) {
      if (!r.ok) continue;
      r.commit();
      if (r.dlp) dlp = dlp ? mergeDlp(dlp, r.dlp) : r.dlp;
    }
    reserveAcrossRules(state, info, spendAll, now, call);
    if (trace) {
      note(
        rule,
        "decided",
        `action ${rule.action}${
          rule.checkers.length ? `; ${rule.checkers.map((c) => c.name).join(", ")} passed` : ""
        }`,
      );
    }
    const d: Decision = decision(
      policy,
      rule,
      rule.action,
      rule.reason ?? `matched rule "${rule.name}"`,
    );
    if (metered) d.metered = true;
    return dlp ? { ...d, dlp } : d;
  }
  const reason = policy.defaultAction === "deny"
    ? `no rule matched (${policy.defaultSource}: deny)`
    : `no rule matched (${policy.defaultSource}: ${policy.defaultAction})`;
  if (policy.defaultAction !== "deny" && !(input.intercept && info.path === null)) {
    const guarded = guardAddress(policy, null, input, undefined);
    if (guarded !== null) return guarded;
  }
  const spendAll = spendAllKeys(policy);
  if (policy.defaultAction !== "deny" && spendAll.length > 0 && info.path !== null) {
    // Its cost counts for `scope: all` budgets too.
    const provider = llmProvider(policy, info);
    if (provider !== null && input.bodyRead !== false) {
      reserveAcrossRules(state, info, spendAll, now, llmCall(policy, provider, info, now));
    }
  }
  return decision(policy, null, policy.defaultAction, reason);
}

/** The deny of a failed policy. */
function refusedBy(
  policy: CompiledPolicy,
  rule: CompiledRule,
  name: string,
  r: PolicyResult & { ok: false },
): Decision {
  return {
    ...(policy.mode === "audit" && isMetered(rule) ? { metered: true as const } : {}),
    verdict: policy.mode === "audit" ? "would_deny" : "deny",
    rule: rule.name,
    ruleSource: rule.source,
    reason: r.reason,
    policy: name,
    status: r.status,
    retryAfter: r.retryAfter,
    detail: r.detail,
    ...(r.findings ? { findings: r.findings } : {}),
    ...(r.inspection?.length ? { inspection: r.inspection } : {}),
  };
}

/** The reason of a request refused because the shared state cannot answer (`on_state_error: deny`). */
export function stateErrorReason(error: string): string {
  return `shared state unavailable: ${error} (state.on_state_error: deny)`;
}

/**
 * The rule's policies with shared state: the limits that keep counters are
 * asked of the backend in one {@link StateAsk} (the first pass returns it),
 * the others checked here; the second pass completes with the answer. Null
 * when the rule asks nothing (no such limit before the first local refusal):
 * then the in-process path decides, as without shared state.
 */
function decideShared(
  policy: CompiledPolicy,
  rule: CompiledRule,
  input: DecideInput,
  call: LlmCall | null,
  spendAll: string[],
): Decision | null {
  const { info, now, state, trace } = input;
  const ops: StateOp[] = [];
  /** Per checker: its shared check, or its local result. */
  const steps: { checker: Checker; shared: SharedCheck | null; local: PolicyResult | null }[] = [];
  let refused: number | null = null;
  for (const checker of rule.checkers) {
    const sc = checker.shared?.(info, now, state, call);
    if (sc !== undefined && "op" in sc) {
      ops.push(sc.op);
      steps.push({ checker, shared: sc, local: null });
      continue;
    }
    const r = sc ?? checker.check(info, now, state, call);
    steps.push({ checker, shared: null, local: r });
    if (!r.ok) {
      refused = steps.length - 1;
      break;
    }
  }
  const unpriced = refused === null ? unknownPriceDenial(policy, rule, input) : null;
  if (unpriced === "needs-body") return null; // the in-process path asks for the body
  const across = refused === null && unpriced === null && call !== null && call.nano !== null &&
      spendAll.length > 0
    ? acrossKeys(info, spendAll)
    : [];
  if (across.length) ops.push({ kind: "reserve", keys: across, need: call!.nano! });
  if (ops.length === 0) return null;
  const answer = input.stateAnswer;
  if (answer === undefined) {
    const ask: StateAsk = {
      id: info.id,
      now,
      rule: rule.name,
      ops,
      commit: refused === null && unpriced === null,
    };
    return {
      ...decision(policy, rule, "deny", "the shared state is needed"),
      needs: "state",
      stateAsk: ask,
    };
  }
  const mode = input.shared!;
  if ("error" in answer && mode === "deny") {
    const reason = stateErrorReason(answer.error);
    if (trace) {
      trace.push({
        rule: rule.name,
        source: rule.source,
        outcome: "policy-failed",
        detail: reason,
      });
    }
    return {
      ...decision(policy, rule, "deny", reason),
      verdict: policy.mode === "audit" ? "would_deny" : "deny",
      policy: "state",
      status: 503,
    };
  }
  // Every limit in rule order: the first refusal decides.
  const commits: (() => void)[] = [];
  let op = 0;
  for (const s of steps) {
    let r: PolicyResult;
    if (s.shared === null) r = s.local!;
    else if ("error" in answer) {
      // local: the process's own counters; allow: the limit passes (recorded locally).
      r = mode === "local"
        ? s.checker.check(info, now, state, call)
        : { ok: true, commit: s.shared.commit };
      op++;
    } else if (!answer.ok && answer.index === op++) r = s.shared.refuse(answer);
    else r = { ok: true, commit: s.shared.commit };
    if (!r.ok) {
      if (trace) {
        trace.push({
          rule: rule.name,
          source: rule.source,
          outcome: "policy-failed",
          detail: `${s.checker.name}: ${r.reason}`,
        });
      }
      return refusedBy(policy, rule, s.checker.name, r);
    }
    commits.push(r.commit);
  }
  const metered = isMetered(rule);
  if (unpriced !== null) return unpricedDecision(policy, rule, unpriced, metered);
  let dlp: Decision["dlp"];
  for (const [i, commit] of commits.entries()) {
    commit();
    const r = steps[i].local;
    if (r?.ok && r.dlp) dlp = dlp ? mergeDlp(dlp, r.dlp) : r.dlp;
  }
  reserveAcrossRules(state, info, spendAll, now, call);
  if (trace) {
    trace.push({
      rule: rule.name,
      source: rule.source,
      outcome: "decided",
      detail: `action ${rule.action}; ${rule.checkers.map((c) => c.name).join(", ")} passed`,
    });
  }
  const d = decision(policy, rule, rule.action, rule.reason ?? `matched rule "${rule.name}"`);
  if (metered) d.metered = true;
  return dlp ? { ...d, dlp } : d;
}
