/**
 * The `rules:` section of every file, compiled in load order: match patterns,
 * methods, the `when:` condition and the policies, plus the lints that need
 * the rules compiled so far (shadowing, what a CONNECT tunnel cannot show,
 * unbudgeted LLM hosts).
 *
 * Errors and warnings are appended to the caller's lists; a rule the schema
 * refused is not compiled (its errors are already reported). What is an error
 * and what a warning is decided here once, for every command (`check`,
 * `serve`, reload, `run`, `test` load alike).
 *
 * @example
 * ```ts
 * const errors: Problem[] = [];
 * const problems: Loaded["problems"] = [];
 * const rules = compileRules(parts, { intercept, detectProvider, errors, problems });
 * if (errors.length) throw new ConfigError(errors);
 * ```
 *
 * @module
 */
import type { Problem } from "./errors.ts";
import { type Part, type SourceNode, type SourceView, validAt } from "./source.ts";
import { KNOWN_METHODS } from "./spec.ts";
import { compilePolicy } from "./policies.ts";
import { didYouMean } from "../util/suggest.ts";
import { compileMatch, type Matcher, matchHost, PatternError } from "../policy/match.ts";
import { ShadowIndex } from "./shadow.ts";
import {
  type AddressAllowance,
  type Cidr,
  cidrContains,
  formatCidr,
  METADATA_ADDRESSES,
  parseCidr,
  parseIp,
} from "../policy/address.ts";
import { type CompiledRule, REQUEST_LEVEL_READS } from "../policy/engine.ts";
import {
  CelError,
  type CelRead,
  compileCondition,
  type CompiledCondition,
} from "../policy/cel/mod.ts";
import type { Checker } from "../policy/limits/types.ts";
import type { Action } from "../policy/types.ts";
import type { Provider } from "../llm/mod.ts";

/** What compiling the rules needs from the rest of the config, and where it reports. */
export interface RulesContext {
  /** Compiled `tls.intercept`: a rule that needs more than host and port must be covered. */
  intercept: Matcher[];
  /** `llm.providers` plus the built-in hosts: a `spending_limit` checks its hosts against it. */
  detectProvider: (host: string) => Provider | null;
  errors: Problem[];
  /** Warnings. */
  problems: Problem[];
  /**
   * Whether to report rules that need more than a tunnel shows (false when
   * `tls.intercept` itself has errors: its fix would be a guess).
   */
  checkTunnels: boolean;
  /**
   * Run the lints that only produce problems (shadowing, tunnels); default
   * true. Off when the policy was already checked elsewhere (the reload worker).
   */
  lint?: boolean;
  /** `limits.max_regex_scan_time`: the time custom DLP regexes may take per scan. */
  regexBudgetMs?: number;
}

/** A `rules:` entry as the schema let it through. */
type RawRule = Record<string, unknown>;

/** What one rule's compilation shares with the next. */
interface RulesState {
  rules: CompiledRule[];
  /** How often each base name was used, for `name#2`. */
  names: Map<string, number>;
  /** The first rule that matches every request, if any: it shadows all later ones. */
  catchAll: CompiledRule | null;
  /** Earlier rules without methods or condition, for the shadowing lint. */
  shadow: ShadowIndex;
  /**
   * Conditions and path matchers by source: rules that repeat one share the
   * compiled value (both are pure), so a large policy takes less memory and
   * less time to load.
   */
  conditions: Map<string, CompiledCondition>;
  paths: Map<string, (path: string) => boolean>;
}

/**
 * The rules of every part, in load order (main file first, then includes
 * depth first), indexed across files.
 *
 * @example
 * ```ts
 * const rules = compileRules(parts, { intercept: [], detectProvider, errors, problems });
 * rules.map((r) => r.name); // ["openai-chat", "**"]
 * ```
 */
export function compileRules(parts: Part[], ctx: RulesContext): CompiledRule[] {
  const steps = compileRuleSteps(parts, ctx);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * {@link compileRules} one rule per step, for a caller that gives the event
 * loop back between slices of steps (a reload while the proxy serves).
 *
 * @example
 * ```ts
 * const steps = compileRuleSteps(parts, ctx);
 * let r = steps.next();
 * while (!r.done) r = steps.next(); // r.value: the rules
 * ```
 */
export function* compileRuleSteps(
  parts: Part[],
  ctx: RulesContext,
): Generator<void, CompiledRule[], void> {
  const state: RulesState = {
    rules: [],
    names: new Map(),
    catchAll: null,
    shadow: new ShadowIndex(),
    conditions: new Map(),
    paths: new Map(),
  };
  let ruleIndex = 0;
  for (const part of parts) {
    const rawRules: RawRule[] = part.raw.rules ?? [];
    for (let fileIndex = 0; fileIndex < rawRules.length; fileIndex++) {
      const index = ruleIndex++;
      if (!validAt(part, ["rules", fileIndex])) continue;
      const rule = compileRule(part, rawRules[fileIndex], fileIndex, index, state, ctx);
      if (rule !== null) state.rules.push(rule);
      yield;
    }
  }
  return state.rules;
}

/** One rule, or null when its patterns or condition do not compile (the error is recorded). */
function compileRule(
  part: Part,
  r: RawRule,
  fileIndex: number,
  index: number,
  state: RulesState,
  ctx: RulesContext,
): CompiledRule | null {
  const { src, legacy } = part;
  const { errors, problems } = ctx;
  const path = ["rules", fileIndex];
  const ruleNode = src.nodeAt(path);
  const patterns = (Array.isArray(r.match) ? r.match : [r.match]) as string[];
  const shownName = (r.name as string | undefined) ?? patterns.join(", ");
  const matchers = compileMatchers(src, r, path, patterns, shownName, legacy, errors, state.paths);
  const methods = compileMethods(src, r, path, problems);
  const ruleName = uniqueName(src, r, path, patterns, index, state.names, problems);
  if (r.match_case === false && matchers !== null && matchers.every((m) => m.path === null)) {
    problems.push(
      src.problem(
        "warning",
        src.nodeAt([...path, "match_case"]),
        `match_case: false has no effect in rule "${ruleName}": its patterns have no path glob ` +
          "(hosts always compare case-insensitively)",
      ),
    );
  }
  const pos = src.pos(ruleNode);

  // `when:` compiled and type-checked now; its errors point into the YAML scalar.
  // Patterns, condition and policies are each compiled, so all their errors show at once.
  const when = compileWhen(src, r, path, ruleName, errors, state.conditions);
  const { checkers, reads: policyReads, needsBody: policyNeedsBody, keyReadsPath } =
    compilePolicies(src, r, path, ruleName, ctx);
  const policiesNode = src.nodeAt([...path, "policies"]);
  if (r.action === "deny" && ((r.policies as unknown[] | undefined)?.length ?? 0) > 0) {
    const message =
      `policies of deny rule "${ruleName}" are never evaluated (a deny rule denies): ` +
      'remove "policies", or make the rule "allow" or "log" to apply them';
    if (legacy) problems.push(src.problem("warning", policiesNode, message));
    else errors.push(src.problem("error", policiesNode, message));
  }
  if (matchers === null || when === undefined) return null;
  const whenRequestReads = when ? [...when.reads].filter((x) => REQUEST_LEVEL_READS.has(x)) : [];
  const keyRequestReads = [...policyReads].filter((x) => REQUEST_LEVEL_READS.has(x));
  const needsWhat = [
    ...(methods !== null ? [`the method (${[...methods].join(", ")})`] : []),
    ...(whenRequestReads.length ? [`${whenRequestReads.join(", ")} in its condition`] : []),
    ...(keyRequestReads.length ? [`${keyRequestReads.join(", ")} in a policy key`] : []),
  ];
  const allowance = compileAllowance(src, r, path, ruleName, matchers, problems);
  const rule: CompiledRule = {
    name: ruleName,
    index,
    source: `${src.file}:${pos.line}`,
    pos: { file: src.file, ...pos },
    match: matchers,
    methods,
    action: r.action as Action,
    reason: (r.reason as string | undefined) ?? null,
    when,
    onError: (r.on_error as "deny" | "skip" | undefined) ?? "deny",
    checkers,
    needsRequest: needsWhat.length > 0,
    needsBody: (when?.needsBody ?? false) || policyNeedsBody,
    needsDest: (when?.reads.has("dest") ?? false) || policyReads.has("dest"),
    allowance,
    needsWhat,
    readsPath: (when?.reads.has("request.path") ?? false) || keyReadsPath,
  };
  const lint = ctx.lint ?? true;
  if (lint) {
    lintShadowed(src, ruleNode, rule, state, problems);
    if (methods === null && when === null) state.shadow.add(rule);
  }
  const isCatchAll = (m: Matcher) =>
    m.host === null && m.port === null && m.scheme === null && m.path === null && m.cidr === null;
  if (!state.catchAll && methods === null && when === null && matchers.some(isCatchAll)) {
    state.catchAll = rule;
  }
  if (lint) lintTunnel(part, r, path, patterns, rule, whenRequestReads.length > 0, ctx);
  return rule;
}

/** `match:` (one pattern or a list); null when any pattern is invalid. */
function compileMatchers(
  src: SourceView,
  r: RawRule,
  path: (string | number)[],
  patterns: string[],
  ruleName: string,
  legacy: boolean,
  errors: Problem[],
  paths: Map<string, (path: string) => boolean>,
): Matcher[] | null {
  const matchers: Matcher[] = [];
  patterns.forEach((pattern, i) => {
    const node = src.nodeAt(
      Array.isArray(r.match) ? [...path, "match", i] : [...path, "match"],
    );
    try {
      matchers.push(compileMatch(pattern, legacy, { nocase: r.match_case === false, paths }));
    } catch (e) {
      if (!(e instanceof PatternError)) throw e;
      errors.push(
        src.problem(
          "error",
          node,
          `invalid match pattern "${pattern}" in rule "${ruleName}": ${e.message}`,
          e.offset,
        ),
      );
    }
  });
  return matchers.length < patterns.length ? null : matchers;
}

/**
 * What the rule may reach of the built-in address deny set: the literal
 * addresses and ranges its `match` names, and `allow_private`. A deny rule
 * reaches nothing, so its allowance is null (and `allow_private` on it is a
 * warning); an allow that opens a cloud metadata address is a lint.
 */
function compileAllowance(
  src: SourceView,
  r: RawRule,
  path: (string | number)[],
  ruleName: string,
  matchers: Matcher[],
  problems: Problem[],
): AddressAllowance | null {
  const allowPrivate = r.allow_private === true;
  if (r.action === "deny") {
    if (r.allow_private !== undefined) {
      problems.push(
        src.problem(
          "warning",
          src.nodeAt([...path, "allow_private"]),
          `allow_private on deny rule "${ruleName}" has no effect (a deny rule connects nowhere)`,
        ),
      );
    }
    return null;
  }
  const ranges: Cidr[] = [];
  for (const m of matchers) {
    if (m.cidr !== null) ranges.push(m.cidr);
    else if (typeof m.host === "string" && parseIp(m.host) !== null) {
      const c = parseCidr(m.host);
      if (typeof c !== "string") ranges.push(c);
    }
  }
  for (const c of ranges) {
    const meta = METADATA_ADDRESSES.find((a) => {
      const b = parseIp(a)!;
      return cidrContains(c, b);
    });
    if (meta !== undefined && c.bits < c.bytes.length * 8) {
      problems.push(
        src.problem(
          "warning",
          src.nodeAt([...path, "match"]),
          `rule "${ruleName}" allows ${
            formatCidr(c)
          }, which includes the cloud metadata address ${meta}: an agent could read instance credentials; name a narrower range`,
        ),
      );
    }
  }
  return allowPrivate || ranges.length ? { allowPrivate, ranges } : null;
}

/** `methods:` upper-cased, or null for all; an unknown method is a warning, not an error. */
function compileMethods(
  src: SourceView,
  r: RawRule,
  path: (string | number)[],
  problems: Problem[],
): Set<string> | null {
  if (r.methods === undefined) return null;
  const list = (Array.isArray(r.methods) ? r.methods : [r.methods]) as string[];
  const methods = new Set(list.map((m) => m.toUpperCase()));
  list.forEach((m, i) => {
    if (!KNOWN_METHODS.includes(m.toUpperCase())) {
      const node = Array.isArray(r.methods)
        ? src.nodeAt([...path, "methods", i])
        : src.nodeAt([...path, "methods"]);
      problems.push(
        src.problem(
          "warning",
          node,
          `unknown HTTP method "${m}"${didYouMean(m.toUpperCase(), KNOWN_METHODS)}`,
        ),
      );
    }
  });
  return methods;
}

/** The rule's name (its patterns when unnamed), `#n` from the second use on. */
function uniqueName(
  src: SourceView,
  r: RawRule,
  path: (string | number)[],
  patterns: string[],
  index: number,
  names: Map<string, number>,
  problems: Problem[],
): string {
  const baseName = (r.name as string | undefined) ?? patterns.join(", ");
  const seen = names.get(baseName) ?? 0;
  names.set(baseName, seen + 1);
  if (seen > 0 && r.name !== undefined) {
    problems.push(
      src.problem(
        "warning",
        src.nodeAt([...path, "name"]),
        `duplicate rule name "${baseName}" (rule ${index + 1}); it is recorded as "${baseName}#${
          seen + 1
        }"`,
      ),
    );
  }
  return seen > 0 ? `${baseName}#${seen + 1}` : baseName;
}

/** `when:` compiled, null when absent, undefined when it does not compile (error recorded). */
function compileWhen(
  src: SourceView,
  r: RawRule,
  path: (string | number)[],
  ruleName: string,
  errors: Problem[],
  cache: Map<string, CompiledCondition>,
): CompiledCondition | null | undefined {
  if (typeof r.when !== "string") return null;
  const known = cache.get(r.when);
  if (known) return known;
  try {
    const c = compileCondition(r.when);
    cache.set(r.when, c);
    return c;
  } catch (e) {
    if (!(e instanceof CelError)) throw e;
    errors.push(
      src.problem(
        "error",
        src.nodeAt([...path, "when"]),
        `invalid condition in rule "${ruleName}": ${e.message}`,
        e.offset,
      ),
    );
    return undefined;
  }
}

/** `policies:` compiled; what their keys read and whether any needs the body. */
function compilePolicies(
  src: SourceView,
  r: RawRule,
  path: (string | number)[],
  ruleName: string,
  ctx: RulesContext,
): { checkers: Checker[]; reads: Set<CelRead>; needsBody: boolean; keyReadsPath: boolean } {
  const checkers: Checker[] = [];
  const reads = new Set<CelRead>();
  let needsBody = false;
  // A dlp policy scans the canonical URL: not a key that could tell readings apart.
  let keyReadsPath = false;
  ((r.policies as unknown[] | undefined) ?? []).forEach((raw, i) => {
    const compiled = compilePolicy(raw, ruleName, (h) => ctx.detectProvider(h) !== null, {
      regexBudgetMs: ctx.regexBudgetMs,
    });
    if ("message" in compiled) {
      const at = [...path, "policies", i, ...compiled.path];
      const node = src.nodeAt(at, compiled.atKey) ?? src.nodeAt([...path, "policies", i]);
      ctx.errors.push(src.problem("error", node, compiled.message, compiled.offset ?? 0));
      return;
    }
    checkers.push(compiled.checker);
    for (const x of compiled.reads) reads.add(x);
    needsBody ||= compiled.needsBody;
    keyReadsPath ||= compiled.checker.name !== "dlp" && compiled.reads.has("request.path");
  });
  return { checkers, reads, needsBody, keyReadsPath };
}

/**
 * Warns when an earlier rule without methods or condition matches everything
 * this one can match: that rule always decides first.
 */
function lintShadowed(
  src: SourceView,
  ruleNode: SourceNode,
  rule: CompiledRule,
  state: RulesState,
  problems: Problem[],
): void {
  const { catchAll } = state;
  const shadow = catchAll ?? state.shadow.find(rule);
  if (shadow) {
    problems.push({
      ...src.problem(
        "warning",
        ruleNode,
        `rule "${rule.name}" can never match: rule "${shadow.name}" (${shadow.source}) matches ${
          shadow === catchAll ? "every request" : "all its requests"
        } first`,
      ),
    });
  }
}

/**
 * Tunnels (https) show host and port only: a rule that needs more of a host
 * that is not intercepted cannot decide its HTTPS requests, which are denied
 * with a reason naming the rule (fail closed). A warning, for every command
 * alike (`check --strict` fails on it): the rule still decides plain-HTTP
 * requests, and an internal plain-HTTP service is a fair thing to write rules
 * for. It says how HTTPS requests are handled and the fix.
 */
function lintTunnel(
  part: Part,
  r: RawRule,
  path: (string | number)[],
  patterns: string[],
  rule: CompiledRule,
  whenReadsRequest: boolean,
  ctx: RulesContext,
): void {
  if (!ctx.checkTunnels) return;
  const { src } = part;
  const tunnelProblem = (node: SourceNode, what: string, host: string) =>
    ctx.problems.push(src.problem(
      "warning",
      node,
      `rule "${rule.name}" uses ${what}, which a CONNECT tunnel does not reveal: ` +
        `agentgate denies HTTPS requests to "${host}" with a reason naming this rule and ` +
        "matches plain-HTTP requests in full; " +
        (part.legacy
          ? `to decide HTTPS requests too, add "version: 1" to make this an agentgate policy ` +
            `and add "${host}" to tls.intercept`
          : `to decide HTTPS requests too, add "${host}" to tls.intercept (or write the ` +
            'pattern with "http://" if the rule is meant for plain HTTP only)'),
    ));
  const hostOf = (m: Matcher, i: number) =>
    m.host === null ? "*" : typeof m.host === "string" ? m.host : patterns[i].split("/")[0];
  const tunnelable = rule.match.map((m, i) => ({ m, i })).filter(({ m }) =>
    m.scheme !== "http" && !intercepted(ctx.intercept, m, null)
  );
  if (rule.needsRequest && tunnelable.length > 0) {
    const hosts = tunnelable.map(({ m, i }) => hostOf(m, i)).join('", "');
    const node = rule.methods !== null
      ? src.nodeAt([...path, "methods"])
      : whenReadsRequest
      ? src.nodeAt([...path, "when"])
      : src.nodeAt([...path, "policies"]);
    const globs = tunnelable.flatMap(({ m }) =>
      m.pathGlob !== null ? [`the path glob "${m.pathGlob}"`] : []
    );
    tunnelProblem(node, [...globs, ...rule.needsWhat].join(" and "), hosts);
  } else {
    for (const { m, i } of tunnelable) {
      if (m.path === null) continue;
      const node = src.nodeAt(
        Array.isArray(r.match) ? [...path, "match", i] : [...path, "match"],
      );
      tunnelProblem(node, `the path glob "${m.pathGlob}"`, hostOf(m, i));
    }
  }
}

/** Whether every host a rule pattern can match is intercepted (a representative host for globs). */
function intercepted(intercept: Matcher[], m: Matcher, port: number | null): boolean {
  if (m.hostGlob === null) return intercept.some((i) => i.host === null);
  const sample = m.hostGlob.replace(/\*+/g, "x").replace(/\?/g, "x");
  return intercept.some((i) => matchHost(i, sample, port ?? m.port ?? 443));
}

/**
 * Lints that look at the whole policy once its rules compiled: `default:
 * allow` in enforce mode, LLM hosts allowed without policies while a
 * spending limit exists elsewhere, and limited rules that could see traffic
 * agentgate cannot price (see {@link lintUnpriced}).
 *
 * @example
 * ```ts
 * lintPolicy(main, rules, detectProvider, intercept, problems);
 * problems.at(-1)?.message; // 'rule "openai" allows the LLM host "api.openai.com" with no policies …'
 * ```
 */
export function lintPolicy(
  main: Part,
  rules: CompiledRule[],
  detectProvider: (host: string, port?: number) => Provider | null,
  intercept: Matcher[],
  problems: Problem[],
): void {
  lintUnpriced(main, rules, detectProvider, intercept, problems);
  const { raw, legacy } = main;
  if (!legacy && (raw.default ?? "deny") === "allow" && (raw.mode ?? "enforce") === "enforce") {
    problems.push(
      main.src.problem(
        "warning",
        main.src.nodeAt(["default"]),
        'default: allow in enforce mode lets every request no rule names through; prefer "deny" (or "log" while you learn the traffic)',
      ),
    );
  }
  const budgeted = rules.some((r) => r.checkers.some((c) => c.name === "spending_limit"));
  if (!budgeted) return;
  for (const r of rules) {
    if (r.action !== "allow" || r.checkers.length > 0) continue;
    const llmHost = r.match.find((m) =>
      typeof m.host === "string" && detectProvider(m.host, m.port ?? undefined)
    );
    if (!llmHost) continue;
    problems.push({
      severity: "warning",
      ...(r.pos ?? { file: r.source, line: 0, col: 0 }),
      message:
        `rule "${r.name}" allows the LLM host "${llmHost.host}" with no policies while a spending limit exists elsewhere: its calls are not budgeted`,
    });
  }
}

/** The limits of a rule that count LLM usage: spending limits and token rate limits. */
function meters(rule: CompiledRule): string[] {
  const out = new Set<string>();
  for (const c of rule.checkers) {
    if (c.name === "spending_limit") out.add("spending_limit");
    if (c.name === "rate_limit" && (c as { unit?: string }).unit === "tokens") {
      out.add("rate_limit (tokens)");
    }
  }
  return [...out];
}

/**
 * Warns where a rule with a spending or token limit could let traffic
 * through that agentgate cannot price, so the limit would not count it:
 *
 * - a host that is not an LLM provider (no usage to read) — a glob or a
 *   catch-all pattern covers such hosts too;
 * - an LLM host outside `tls.intercept`: HTTPS calls pass through a tunnel
 *   whose usage is never read;
 * - `llm.unknown_price: allow`: calls to models without a price, or whose
 *   price lacks what the call uses, are forwarded and counted below their cost.
 */
function lintUnpriced(
  main: Part,
  rules: CompiledRule[],
  detectProvider: (host: string, port?: number) => Provider | null,
  intercept: Matcher[],
  problems: Problem[],
): void {
  const warn = (r: CompiledRule, message: string) =>
    problems.push({
      severity: "warning",
      ...(r.pos ?? { file: r.source, line: 0, col: 0 }),
      message,
    });
  let spendLimited: CompiledRule | null = null;
  for (const r of rules) {
    if (r.action === "deny") continue;
    const limits = meters(r);
    if (limits.length === 0) continue;
    if (limits.includes("spending_limit")) spendLimited ??= r;
    const what = `rule "${r.name}" has a ${limits.join(" and a ")}`;
    for (const m of r.match) {
      const host = m.hostGlob === null
        ? null
        : typeof m.host === "string"
        ? m.host
        : m.hostGlob.replace(/\*+/g, "x").replace(/\?/g, "x");
      const shown = m.hostGlob ?? "*";
      const provider = host === null ? null : detectProvider(host, m.port ?? undefined);
      if (provider === null) {
        warn(
          r,
          `${what}, but "${shown}" ${
            typeof m.host === "string"
              ? "is not an LLM provider"
              : "covers hosts that are not LLM providers"
          }: agentgate reads no usage there, so those requests pass unpriced ` +
            `(map a provider's host in llm.providers, or narrow the match)`,
        );
      } else if (m.scheme !== "http" && !intercepted(intercept, m, null)) {
        warn(
          r,
          `${what}, but "${shown}" is not in tls.intercept: its HTTPS calls pass through a tunnel ` +
            `whose usage is never read, so they pass unpriced (add "${shown}" to tls.intercept)`,
        );
      }
    }
  }
  const unknownPrice = (main.raw.llm as { unknown_price?: string } | undefined)?.unknown_price;
  if (spendLimited && unknownPrice === "allow") {
    problems.push(
      main.src.problem(
        "warning",
        main.src.nodeAt(["llm", "unknown_price"]),
        `llm.unknown_price: allow forwards calls to models without a price (or whose price lacks ` +
          `what the call uses) under the spending limit of rule "${spendLimited.name}": they are ` +
          `counted at $0 or below their cost (add the model to llm.prices instead)`,
      ),
    );
  }
}
