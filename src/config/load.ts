/**
 * Loading a policy: YAML -> validate (every error with file:line:col) ->
 * compile (globs, methods, defaults) into what the hot path trusts.
 *
 * @module
 */
import { isMap, isPair, isScalar, LineCounter, type Node, parseDocument, Scalar } from "yaml";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { ConfigError, type Problem } from "./errors.ts";
import { didYouMean } from "../util/suggest.ts";
import { type Path, type SchemaIssue, validate } from "./schema.ts";
import {
  configSchema,
  includeSchema,
  KNOWN_METHODS,
  legacySchema,
  parseListen,
  V1_ONLY_KEYS,
} from "./spec.ts";
import {
  compileMatch,
  type Matcher,
  matchHost,
  normalizeHost,
  PatternError,
} from "../policy/match.ts";
import {
  type CompiledPolicy,
  type CompiledRule,
  indexRules,
  REQUEST_LEVEL_READS,
} from "../policy/engine.ts";
import {
  CelError,
  type CelRead,
  compileCondition,
  type CompiledCondition,
} from "../policy/cel/mod.ts";
import type { Checker } from "../policy/limits/types.ts";
import { compilePolicy } from "./policies.ts";
import type { Action } from "../policy/types.ts";
import { parseDuration } from "../policy/duration.ts";
import { DEFAULT_POLICY_NAME, DEFAULT_POLICY_YAML } from "./default.ts";
import {
  createPricer,
  createProviderDetector,
  type ModelPriceOverride,
  type Provider,
} from "../llm/mod.ts";
import picomatch from "picomatch";
import type { LlmSettings } from "../policy/engine.ts";

/** A loaded, compiled configuration. */
export interface AgentgateConfig {
  /** The file it came from (or `<embedded default>`). */
  file: string;
  /** Absolute paths of every file it was loaded from (the file and its includes). */
  files: string[];
  format: "v1" | "agentreserve";
  embedded: boolean;
  listen: { host: string; port: number };
  dashboard: boolean;
  /** Accepted proxy tokens (`proxy.auth`); empty = no proxy authentication. */
  proxyAuth: string[];
  /** Dashboard/API bearer token (from `dashboard.token` or `dashboard.token_env`), or null. */
  dashboardToken: string | null;
  policy: CompiledPolicy;
  audit: { path: string; retentionMs: number };
  upstream: { connectTimeoutMs: number; responseTimeoutMs: number };
  limits: { maxBodyBytes: number; maxScanBytes: number };
  tls: {
    /** Compiled `tls.intercept` host globs (empty: nothing is intercepted). */
    intercept: Matcher[];
    /** CA directory, or null for the default ($AGENTGATE_HOME or ~/.agentgate). */
    caDir: string | null;
    /** Absolute paths of extra upstream roots. */
    upstreamCa: string[];
    leafKey: "ecdsa-p256" | "rsa-2048";
  };
  /** `agentgate run` / `env` settings. */
  run: { noProxy: string[] | null };
  /** `upstream.resolve`: host -> address to connect to instead. */
  resolve: Map<string, { host: string; port: number }>;
  llm: LlmSettings;
}

/** Whether `tls.intercept` covers host:port. */
export function isIntercepted(config: AgentgateConfig, host: string, port: number): boolean {
  for (const m of config.tls.intercept) if (matchHost(m, host, port)) return true;
  return false;
}

/** A config plus the non-fatal problems found while loading it. */
export interface Loaded {
  config: AgentgateConfig;
  /**
   * Warnings, and lint errors (`lint: true`): problems `check` fails on but
   * that do not stop `serve`, so a file in the @agentreserve/proxy format
   * always loads.
   */
  problems: (Problem & { lint?: boolean })[];
}

/** One parsed YAML file, able to locate any path in it. */
class SourceFile {
  readonly lines = new LineCounter();
  readonly doc;
  constructor(readonly file: string, readonly text: string) {
    this.doc = parseDocument(text, {
      lineCounter: this.lines,
      uniqueKeys: true,
      prettyErrors: false,
    });
  }

  /** Position of a node (its key when `atKey`), plus a character offset into a scalar. */
  pos(node: Node | null | undefined, offset = 0): { line: number; col: number } {
    if (!node?.range) return { line: 0, col: 0 };
    let start = node.range[0];
    if (offset > 0 && isScalar(node)) start = scalarOffset(this.text, node, offset);
    const p = this.lines.linePos(start);
    return { line: p.line, col: p.col };
  }

  /** The node at a path (a pair's key when `atKey`). */
  nodeAt(path: Path, atKey = false): Node | null {
    if (!atKey) return (this.doc.getIn(path, true) as Node | undefined) ?? null;
    const parent = this.doc.getIn(path.slice(0, -1), true);
    if (isMap(parent)) {
      for (const pair of parent.items) {
        if (isPair(pair) && isScalar(pair.key) && pair.key.value === path[path.length - 1]) {
          return pair.key as Node;
        }
      }
    }
    return null;
  }

  problem(
    severity: Problem["severity"],
    node: Node | null | undefined,
    message: string,
    offset = 0,
  ): Problem {
    return { severity, file: this.file, ...this.pos(node, offset), message };
  }
}

/**
 * Map an offset in a scalar's value to an offset in the source text, so an
 * error inside a `match` pattern or a CEL condition points at the character.
 */
export function scalarOffset(text: string, node: Scalar, offset: number): number {
  const [start, end] = node.range!;
  const src = text.slice(start, end);
  switch (node.type) {
    case Scalar.QUOTE_DOUBLE:
    case Scalar.QUOTE_SINGLE:
      return start + 1 + offset;
    case Scalar.BLOCK_LITERAL:
    case Scalar.BLOCK_FOLDED: {
      // Value line k is source line k+1 (after the `|` header) minus its indentation.
      const value = String(node.value);
      const before = value.slice(0, offset);
      const lineNo = before.split("\n").length - 1;
      const col = offset - (before.lastIndexOf("\n") + 1);
      const srcLines = src.split("\n");
      const first = srcLines.slice(1).find((l) => l.trim() !== "") ?? "";
      const indent = first.length - first.trimStart().length;
      let pos = start + srcLines[0].length + 1;
      for (let i = 1; i <= lineNo && i < srcLines.length; i++) pos += srcLines[i].length + 1;
      return pos + indent + col;
    }
    default:
      return start + offset;
  }
}

/**
 * Whether pattern `a` matches every request pattern `b` can (identical, or
 * strictly broader: any host/port/scheme/path, a glob over an exact name, a
 * shorter `*.suffix`, a `/prefix/**` over a longer path glob).
 */
function covers(a: Matcher, b: Matcher): boolean {
  if (a.scheme !== null && a.scheme !== b.scheme) return false;
  if (a.port !== null && a.port !== b.port) return false;
  let host = a.host === null;
  if (!host && b.hostGlob !== null) {
    if (a.hostGlob === b.hostGlob) host = true;
    else if (typeof b.host === "string") host = matchHost(a, b.host, b.port ?? a.port ?? 443);
    else {
      const sa = /^\*+(\.[^*?]+)$/.exec(a.hostGlob ?? "")?.[1];
      const sb = /^\*+(\.[^*?]+)$/.exec(b.hostGlob)?.[1];
      host = sa !== undefined && sb !== undefined && sb.endsWith(sa);
    }
  }
  if (!host) return false;
  if (a.path === null) return true;
  if (b.pathGlob === null) return false;
  if (a.pathGlob === b.pathGlob) return true;
  const prefix = a.pathGlob!.endsWith("/**") ? a.pathGlob!.slice(0, -2) : null;
  return prefix !== null && !/[*?[\]{}]/.test(prefix) && b.pathGlob.startsWith(prefix);
}

/** Where a relative path in `file` points. */
function resolveFrom(file: string, p: string, cwd: string): string {
  if (isAbsolute(p)) return p;
  return file.startsWith("<") ? resolve(cwd, p) : resolve(cwd, dirname(file), p);
}

/** One parsed and validated policy file. */
interface Part {
  src: SourceFile;
  // deno-lint-ignore no-explicit-any
  raw: Record<string, any>;
  legacy: boolean;
  /** Absolute path ("" for the embedded default). */
  abs: string;
}

/** Parse and validate one file; throws ConfigError. */
function parsePart(
  text: string,
  file: string,
  role: "main" | "include",
  problems: Loaded["problems"],
  abs = "",
): Part {
  const src = new SourceFile(file, text);
  const errors: Problem[] = [];
  for (const e of src.doc.errors) {
    const p = src.lines.linePos(e.pos[0]);
    errors.push({
      severity: "error",
      file,
      line: p.line,
      col: p.col,
      message: `invalid YAML: ${
        e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")
      }`,
    });
  }
  if (errors.length) throw new ConfigError(errors);
  for (const w of src.doc.warnings) {
    const p = src.lines.linePos(w.pos[0]);
    problems.push({ severity: "warning", file, line: p.line, col: p.col, message: w.message });
  }
  const root = src.doc.contents as Node | null;
  if (root === null || (isScalar(root) && root.value === null)) {
    throw new ConfigError([src.problem("error", root, "the policy file is empty")]);
  }
  if (!isMap(root)) {
    throw new ConfigError([src.problem("error", root, "a policy file must be a YAML mapping")]);
  }
  const hasVersion = src.doc.has("version");
  if (!hasVersion && role === "main") {
    // A v1 file that forgot `version:` would silently get the legacy default (log):
    // refuse instead of guessing.
    const v1Key = V1_ONLY_KEYS.find((k) => src.doc.has(k));
    const ruleKey = ["name", "methods"].find((k) =>
      (src.doc.get("rules") as { items?: unknown[] } | undefined)?.items?.some((r) =>
        isMap(r) && r.has(k)
      )
    );
    if (v1Key || ruleKey) {
      throw new ConfigError([
        src.problem(
          "error",
          root,
          `missing key "version": this file uses "${
            v1Key ?? ruleKey
          }", which only agentgate policies have; add "version: 1" at the top ` +
            "(a file without version is read as @agentreserve/proxy configuration)",
        ),
      ]);
    }
  }
  const legacy = !hasVersion && role === "main";
  const issues: SchemaIssue[] = [];
  const schema = role === "include" ? includeSchema : legacy ? legacySchema : configSchema;
  const raw = validate(root, schema, [], issues) as Part["raw"];
  for (const i of issues) {
    const node = i.atKey ? src.nodeAt(i.path, true) ?? i.node : i.node;
    let message = i.message;
    if (
      role === "include" && i.atKey && i.path.length === 1 && i.path[0] in configSchema.properties
    ) {
      message = `key "${
        i.path[0]
      }" can only be set in the main policy file, not in an included one`;
    }
    errors.push(src.problem("error", node, message));
  }
  if (errors.length) throw new ConfigError(errors);
  return { src, raw, legacy, abs };
}

/** Glob characters in an include pattern. */
const GLOB_CHARS = /[*?[\]{}]/;

/** Files an include pattern names, sorted; policy tests (`*_test.yaml`) are skipped. */
function expandInclude(pattern: string, baseDir: string): string[] {
  const absPattern = isAbsolute(pattern) ? pattern : resolve(baseDir, pattern);
  if (!GLOB_CHARS.test(pattern)) return [absPattern];
  const segs = absPattern.split("/");
  const firstGlob = segs.findIndex((s) => GLOB_CHARS.test(s));
  const root = segs.slice(0, firstGlob).join("/") || "/";
  const match = picomatch(absPattern, { dot: false });
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const e of entries) {
      const full = `${dir === "/" ? "" : dir}/${e.name}`;
      if (e.isDirectory && depth < 16) walk(full, depth + 1);
      else if (e.isFile && match(full) && !/_test\.ya?ml$/.test(e.name)) out.push(full);
    }
  };
  walk(root, 0);
  return out.sort();
}

/**
 * The included files of a part, depth first, each once; a cycle or a missing
 * file is an error at the including file's line.
 */
function collectIncludes(part: Part, cwd: string, stack: string[]): Part[] {
  const list = (part.raw.include ?? []) as string[];
  if (list.length === 0) return [];
  const errors: Problem[] = [];
  const out: Part[] = [];
  const baseDir = part.abs ? dirname(part.abs) : cwd;
  list.forEach((pattern, i) => {
    const node = part.src.nodeAt(["include", i]);
    const files = expandInclude(pattern, baseDir);
    if (files.length === 0) {
      errors.push(part.src.problem("error", node, `include pattern "${pattern}" matches no file`));
      return;
    }
    for (const abs of files) {
      if (stack.includes(abs)) {
        errors.push(
          part.src.problem(
            "error",
            node,
            `include cycle: ${
              [...stack.slice(stack.indexOf(abs)), abs].map((f) => relative(cwd, f)).join(" -> ")
            }`,
          ),
        );
        continue;
      }
      let text: string;
      try {
        text = Deno.readTextFileSync(abs);
      } catch (e) {
        const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
        errors.push(part.src.problem("error", node, `cannot include "${pattern}": ${why}`));
        continue;
      }
      const child = parsePart(text, relative(cwd, abs) || abs, "include", [], abs);
      out.push(child, ...collectIncludes(child, cwd, [...stack, abs]));
    }
  });
  if (errors.length) throw new ConfigError(errors);
  return out;
}

/**
 * Parse, validate and compile a policy text.
 *
 * @example
 * const { config } = parseConfig("version: 1\nrules: []\n", "inline.yaml", Deno.cwd());
 */
export function parseConfig(text: string, file: string, cwd: string): Loaded {
  const errors: Problem[] = [];
  const problems: Loaded["problems"] = [];
  const mainAbs = file.startsWith("<") ? "" : resolve(cwd, file);
  const main = parsePart(text, file, "main", problems, mainAbs);
  const parts = [main, ...collectIncludes(main, cwd, mainAbs ? [mainAbs] : [])];
  const { raw, legacy } = main;
  // Settings that included files may add to (tls.intercept, llm), merged in load order.
  const interceptPatterns = parts.flatMap((p) =>
    ((p.raw.tls?.intercept ?? []) as string[]).map((pattern, i) => ({ part: p, pattern, i }))
  );
  const llmProviders: Record<string, Provider> = {};
  const llmPrices: Record<string, unknown> = {};
  let forceStream: boolean | undefined;
  for (const p of [...parts].reverse()) {
    Object.assign(llmProviders, p.raw.llm?.providers ?? {});
    Object.assign(llmPrices, p.raw.llm?.prices ?? {});
  }
  for (const p of parts) forceStream ??= p.raw.llm?.force_stream_usage;
  const detectProvider = createProviderDetector(
    Object.entries(llmProviders).map(([host, provider]) => ({ host, provider })),
  );

  // --- compile ---------------------------------------------------------------
  const intercept: Matcher[] = [];
  interceptPatterns.forEach(({ part, pattern, i }) => {
    const src = part.src;
    const node = src.nodeAt(["tls", "intercept", i]);
    if (pattern.includes("/")) {
      errors.push(
        src.problem("error", node, `tls.intercept takes host globs, not paths: "${pattern}"`),
      );
      return;
    }
    try {
      intercept.push(compileMatch(pattern));
    } catch (e) {
      if (!(e instanceof PatternError)) throw e;
      errors.push(
        src.problem(
          "error",
          node,
          `invalid host glob "${pattern}" in tls.intercept: ${e.message}`,
          e.offset,
        ),
      );
    }
  });
  /** Whether every host a rule pattern can match is intercepted (a representative host for globs). */
  const covered = (m: Matcher, port: number | null) => {
    if (m.hostGlob === null) return intercept.some((i) => i.host === null);
    const sample = m.hostGlob.replace(/\*+/g, "x").replace(/\?/g, "x");
    return intercept.some((i) => matchHost(i, sample, port ?? m.port ?? 443));
  };
  const rules: CompiledRule[] = [];
  const names = new Map<string, number>();
  let catchAll: CompiledRule | null = null;
  let ruleIndex = 0;
  for (const part of parts) {
    const src = part.src;
    const legacy = part.legacy;
    const rawRules: Record<string, unknown>[] = part.raw.rules ?? [];
    rawRules.forEach((r, fileIndex) => {
      const index = ruleIndex++;
      const path = ["rules", fileIndex];
      const ruleNode = src.nodeAt(path);
      const patterns = (Array.isArray(r.match) ? r.match : [r.match]) as string[];
      const matchers: Matcher[] = [];
      patterns.forEach((pattern, i) => {
        const node = src.nodeAt(
          Array.isArray(r.match) ? [...path, "match", i] : [...path, "match"],
        );
        try {
          matchers.push(compileMatch(pattern, legacy));
        } catch (e) {
          if (!(e instanceof PatternError)) throw e;
          errors.push(
            src.problem(
              "error",
              node,
              `invalid match pattern "${pattern}" in rule ${index + 1}: ${e.message}`,
              e.offset,
            ),
          );
        }
      });
      if (matchers.length < patterns.length) return;
      let methods: Set<string> | null = null;
      if (r.methods !== undefined) {
        const list = (Array.isArray(r.methods) ? r.methods : [r.methods]) as string[];
        methods = new Set(list.map((m) => m.toUpperCase()));
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
      }
      const baseName = (r.name as string | undefined) ?? patterns.join(", ");
      const seen = names.get(baseName) ?? 0;
      names.set(baseName, seen + 1);
      if (seen > 0 && r.name !== undefined) {
        problems.push(
          src.problem(
            "warning",
            src.nodeAt([...path, "name"]),
            `duplicate rule name "${baseName}" (rule ${
              index + 1
            }); it is recorded as "${baseName}#${seen + 1}"`,
          ),
        );
      }
      const pos = src.pos(ruleNode);
      const ruleName = seen > 0 ? `${baseName}#${seen + 1}` : baseName;

      // `when:` compiled and type-checked now; its errors point into the YAML scalar.
      let when: CompiledCondition | null = null;
      if (typeof r.when === "string") {
        try {
          when = compileCondition(r.when);
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
          return;
        }
      }
      const checkers: Checker[] = [];
      const policyReads = new Set<CelRead>();
      let policyNeedsBody = false;
      ((r.policies as unknown[] | undefined) ?? []).forEach((raw, i) => {
        const compiled = compilePolicy(raw, ruleName, (h) => detectProvider(h) !== null);
        if ("message" in compiled) {
          const at = [...path, "policies", i, ...compiled.path];
          const node = src.nodeAt(at, compiled.atKey) ?? src.nodeAt([...path, "policies", i]);
          errors.push(src.problem("error", node, compiled.message, compiled.offset ?? 0));
          return;
        }
        checkers.push(compiled.checker);
        for (const x of compiled.reads) policyReads.add(x);
        policyNeedsBody ||= compiled.needsBody;
      });
      if (r.action === "deny" && checkers.length > 0) {
        problems.push(
          src.problem(
            "warning",
            src.nodeAt([...path, "policies"]),
            `policies of deny rule "${ruleName}" are never evaluated (a deny rule denies)`,
          ),
        );
      }
      const whenRequestReads = when
        ? [...when.reads].filter((x) => REQUEST_LEVEL_READS.has(x))
        : [];
      const keyRequestReads = [...policyReads].filter((x) => REQUEST_LEVEL_READS.has(x));
      const needsWhat = [
        ...(methods !== null ? [`the method (${[...methods].join(", ")})`] : []),
        ...(whenRequestReads.length ? [`${whenRequestReads.join(", ")} in its condition`] : []),
        ...(keyRequestReads.length ? [`${keyRequestReads.join(", ")} in a policy key`] : []),
      ];
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
        needsWhat,
      };
      // Shadowing: an earlier rule without methods or condition that matches
      // everything this one can match always decides first.
      const shadow = catchAll ?? rules.find((e) =>
        e.methods === null && e.when === null &&
        matchers.every((m) => e.match.some((em) => covers(em, m)))
      );
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
      const isCatchAll = (m: Matcher) =>
        m.host === null && m.port === null && m.scheme === null && m.path === null;
      if (!catchAll && methods === null && when === null && matchers.some(isCatchAll)) {
        catchAll = rule;
      }
      // Tunnels (https) show host and port only; a rule that needs more cannot decide them.
      const tunnelProblem = (node: Node | null, what: string, host: string) =>
        problems.push({
          ...src.problem(
            "error",
            node,
            `rule "${rule.name}" uses ${what}, which a CONNECT tunnel does not reveal: ` +
              `HTTPS requests to "${host}" are denied with a reason (plain-HTTP requests are matched in full); ` +
              `add "${host}" to tls.intercept`,
          ),
          lint: true,
        });
      const hostOf = (m: Matcher, i: number) =>
        m.host === null ? "*" : typeof m.host === "string" ? m.host : patterns[i].split("/")[0];
      const tunnelable = matchers.map((m, i) => ({ m, i })).filter(({ m }) =>
        m.scheme !== "http" && !covered(m, null)
      );
      if (rule.needsRequest && tunnelable.length > 0) {
        const hosts = tunnelable.map(({ m, i }) => hostOf(m, i)).join('", "');
        const node = methods !== null
          ? src.nodeAt([...path, "methods"])
          : whenRequestReads.length
          ? src.nodeAt([...path, "when"])
          : src.nodeAt([...path, "policies"]);
        const globs = tunnelable.flatMap(({ m }) =>
          m.pathGlob !== null ? [`the path glob "${m.pathGlob}"`] : []
        );
        tunnelProblem(node, [...globs, ...needsWhat].join(" and "), hosts);
      } else {
        for (const { m, i } of tunnelable) {
          if (m.path === null) continue;
          const node = src.nodeAt(
            Array.isArray(r.match) ? [...path, "match", i] : [...path, "match"],
          );
          tunnelProblem(node, `the path glob "${m.pathGlob}"`, hostOf(m, i));
        }
      }
      rules.push(rule);
    });
  }
  if (errors.length) throw new ConfigError(errors);

  // Lints that look at the whole policy.
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
  if (budgeted) {
    for (const r of rules) {
      if (r.action !== "allow" || r.checkers.length > 0) continue;
      const llmHost = r.match.find((m) => typeof m.host === "string" && detectProvider(m.host));
      if (!llmHost) continue;
      problems.push({
        severity: "warning",
        ...(r.pos ?? { file: r.source, line: 0, col: 0 }),
        message:
          `rule "${r.name}" allows the LLM host "${llmHost.host}" with no policies while a spending limit exists elsewhere: its calls are not budgeted`,
      });
    }
  }

  const llm: LlmSettings = {
    detect: detectProvider,
    pricer: createPricer({ overrides: llmPrices as Record<string, ModelPriceOverride> }),
    forceStreamUsage: forceStream ?? false,
    unknownPrice: raw.llm?.unknown_price ?? "deny",
  };
  let listen = { host: "127.0.0.1", port: 4100 };
  let dashboard = true;
  let auditPath = resolveFrom(file, legacy ? "./agentreserve-audit.db" : "./agentgate.db", cwd);
  if (legacy) {
    listen = { host: raw.proxy?.host ?? "127.0.0.1", port: raw.proxy?.port ?? 4100 };
    dashboard = raw.proxy?.dashboard ?? true;
    if (raw.audit?.path) auditPath = resolveFrom(file, raw.audit.path, cwd);
  } else {
    if (raw.proxy?.listen) listen = parseListen(raw.proxy.listen) as typeof listen;
    dashboard = raw.proxy?.dashboard ?? true;
    if (raw.audit?.path) auditPath = resolveFrom(file, raw.audit.path, cwd);
  }
  const config: AgentgateConfig = {
    file,
    files: parts.map((p) => p.abs).filter((f) => f !== ""),
    format: legacy ? "agentreserve" : "v1",
    embedded: file === DEFAULT_POLICY_NAME,
    listen,
    dashboard,
    proxyAuth: ((raw.proxy?.auth ?? []) as (string | { env: string })[]).map((a) =>
      typeof a === "string" ? a : Deno.env.get(a.env)!
    ),
    dashboardToken: raw.dashboard?.token ??
      (raw.dashboard?.token_env ? Deno.env.get(raw.dashboard.token_env) ?? null : null),
    policy: {
      mode: raw.mode ?? "enforce",
      defaultAction: raw.default ?? (legacy ? "log" : "deny"),
      defaultSource: legacy ? "@agentreserve/proxy default" : "default",
      rules,
      index: indexRules(rules),
      llm,
    },
    audit: { path: auditPath, retentionMs: parseDuration(raw.audit?.retention ?? "30d") },
    limits: {
      maxBodyBytes: raw.limits?.max_body_bytes ?? 1024 * 1024,
      maxScanBytes: raw.limits?.max_scan_bytes ?? 1024 * 1024,
    },
    tls: {
      intercept,
      caDir: raw.tls?.ca_dir === undefined
        ? null
        : raw.tls.ca_dir.startsWith("~")
        ? raw.tls.ca_dir
        : resolveFrom(file, raw.tls.ca_dir, cwd),
      upstreamCa:
        (raw.tls?.upstream_ca === undefined
          ? []
          : Array.isArray(raw.tls.upstream_ca)
          ? raw.tls.upstream_ca
          : [raw.tls.upstream_ca]).map((p: string) => resolveFrom(file, p, cwd)),
      leafKey: raw.tls?.leaf_key ?? "ecdsa-p256",
    },
    llm,
    run: { noProxy: raw.run?.no_proxy ?? null },
    resolve: new Map(
      Object.entries((raw.upstream?.resolve ?? {}) as Record<string, string>).map(([h, v]) => [
        normalizeHost(h),
        parseListen(v) as { host: string; port: number },
      ]),
    ),
    upstream: {
      connectTimeoutMs: parseDuration(raw.upstream?.connect_timeout ?? "10s"),
      responseTimeoutMs: parseDuration(raw.upstream?.response_timeout ?? "5m"),
    },
  };
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  return { config, problems };
}

/**
 * Read and parse a policy file; I/O errors become config errors too.
 *
 * @example
 * const { config, problems } = await loadConfig("agentgate.yaml", Deno.cwd());
 */
export async function loadConfig(path: string, cwd: string): Promise<Loaded> {
  const file = isAbsolute(path) ? path : resolve(cwd, path);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new ConfigError([{ severity: "error", file: path, line: 0, col: 0, message: why }]);
  }
  return parseConfig(text, path, cwd);
}

/** The embedded default policy (audit everything, deny metadata and link-local). */
export function loadDefaultConfig(cwd: string): Loaded {
  return parseConfig(DEFAULT_POLICY_YAML, DEFAULT_POLICY_NAME, cwd);
}
