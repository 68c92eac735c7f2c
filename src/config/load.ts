/**
 * Loading a policy: YAML -> validate (every error with file:line:col) ->
 * compile (globs, methods, defaults) into what the hot path trusts.
 *
 * This module reads the files (the main one and its includes) and composes
 * the sections: `rules.ts` compiles the rules and their lints,
 * `sections.ts` has one function per other top-level key, and `source.ts`
 * turns a YAML path back into file:line:col.
 *
 * @module
 */
import { isMap, isScalar, type Node } from "yaml";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { ConfigError, type Problem, yamlMessage } from "./errors.ts";
import { type PathName, type Schema, type SchemaIssue, validate } from "./schema.ts";
import { configSchema, includeSchema, legacySchema, V1_ONLY_KEYS } from "./spec.ts";
import { type Part, SourceFile, validAt, yamlSyntaxProblems } from "./source.ts";
import { compileRuleSteps, lintPolicy } from "./rules.ts";
import {
  auditProblems,
  auditSection,
  compileIntercept,
  credentialsSection,
  dashboardSection,
  exposureProblems,
  limitsSection,
  llmProviderDetector,
  llmSection,
  policySection,
  proxySection,
  type RawLlm,
  runSection,
  stateSection,
  tlsSection,
  upstreamSection,
} from "./sections.ts";
import { matchHost } from "../policy/match.ts";
import { RuleIndexBuilder } from "../policy/engine.ts";
import { DEFAULT_POLICY_NAME, DEFAULT_POLICY_YAML } from "./default.ts";
import picomatch from "picomatch";
import type { AgentgateConfig } from "./types.ts";

export type { AgentgateConfig } from "./types.ts";

/** Whether `tls.intercept` covers host:port. */
export function isIntercepted(config: AgentgateConfig, host: string, port: number): boolean {
  for (const m of config.tls.intercept) if (matchHost(m, host, port)) return true;
  return false;
}

/** A config plus the warnings found while loading it (an error throws {@link ConfigError}). */
export interface Loaded {
  config: AgentgateConfig;
  /** Warnings only: every error stops the load, for every command alike. */
  problems: Problem[];
}

/**
 * What the command line overrides of the policy's settings that decide
 * whether it may be served: `serve --listen` and `--no-dashboard`.
 */
export interface LoadOptions {
  /** The address the proxy will listen on instead of `proxy.listen`. */
  listen?: { host: string; port: number };
  /** false: the dashboard is off whatever the policy says. */
  dashboard?: boolean;
}

/**
 * What a policy may weigh. A policy is parsed whole in memory (YAML with
 * positions costs about 35 times the file's size), so a file is refused
 * before it is read past these: a 100 MB file with three rules once took
 * 3.5 GB to load.
 */
export const POLICY_LIMITS: PolicyLimits = {
  /** Bytes of one policy file (the main one or an include). */
  fileBytes: 8 * 1024 * 1024,
  /** Bytes of all files of a policy together. */
  totalBytes: 32 * 1024 * 1024,
  /** Files of a policy: the main one plus its includes. */
  files: 256,
  /** Rules of a policy, across its files. */
  rules: 100_000,
};

/** See {@link POLICY_LIMITS}. */
export interface PolicyLimits {
  fileBytes: number;
  totalBytes: number;
  files: number;
  rules: number;
}

/** What one load has read so far, against {@link POLICY_LIMITS}. */
export interface ReadBudget {
  bytes: number;
  files: number;
  /** Default {@link POLICY_LIMITS} (tests use small ones). */
  limits?: PolicyLimits;
}

/** A policy file that cannot be read, or is over {@link POLICY_LIMITS}. */
export class PolicyReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PolicyReadError";
  }
}

const MiB = 1024 * 1024;

/**
 * Read a policy file, refusing one over {@link POLICY_LIMITS}: its size is
 * checked before reading, and reading stops past the limit (a file that grows,
 * a FIFO, a device). Throws {@link PolicyReadError}.
 *
 * @example
 * const text = readPolicyFileSync("/etc/agentgate.yaml", { bytes: 0, files: 0 });
 */
export function readPolicyFileSync(abs: string, budget: ReadBudget): string {
  const fail = (message: string): never => {
    throw new PolicyReadError(message);
  };
  const limits = budget.limits ?? POLICY_LIMITS;
  if (++budget.files > limits.files) {
    fail(`too many policy files: at most ${limits.files} (the main file and its includes)`);
  }
  // Over the per-file limit, or over what the files read before it left.
  const mib = (n: number) => `${Math.round((n / MiB) * 10) / 10} MiB`;
  const tooBig = (size: number): never =>
    size > limits.fileBytes
      ? fail(
        `the policy file is too large: ${size} bytes, over the limit of ${limits.fileBytes} ` +
          `(${mib(limits.fileBytes)}); split its rules across files with include:`,
      )
      : fail(
        `the policy is too large: its files pass ${limits.totalBytes} bytes ` +
          `(${mib(limits.totalBytes)}) together`,
      );
  const cap = Math.min(limits.fileBytes, limits.totalBytes - budget.bytes);
  let f: Deno.FsFile;
  try {
    // A FIFO would block the open until someone writes to it: regular files only.
    if (!Deno.statSync(abs).isFile) return fail("not a regular file");
    f = Deno.openSync(abs, { read: true });
  } catch (e) {
    return fail(e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message);
  }
  try {
    const size = f.statSync().size;
    if (size > cap) tooBig(size);
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(64 * 1024);
    let n = 0;
    for (let got; (got = f.readSync(buf)) !== null;) {
      n += got;
      if (n > cap) tooBig(n); // it grew, or it is a FIFO or a device
      chunks.push(buf.slice(0, got));
    }
    budget.bytes += n;
    return new TextDecoder().decode(concat(chunks, n));
  } finally {
    f.close();
  }
}

function concat(chunks: Uint8Array[], n: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Parse and validate one file. A file that cannot be read as a policy at all
 * (YAML syntax, not a mapping, the format unclear) throws ConfigError; schema
 * errors go to `errors`, and the paths they are about to `part.invalid`.
 */
function parsePart(
  text: string,
  file: string,
  role: "main" | "include",
  problems: Problem[],
  errors: Problem[],
  abs = "",
): Part {
  const src = new SourceFile(file, text);
  const syntax = yamlSyntaxProblems(src.doc, src.lines, file);
  if (syntax.length) throw new ConfigError(syntax);
  for (const w of src.doc.warnings) {
    const p = src.lines.linePos(w.pos[0]);
    const message = yamlMessage(w).replace(/^invalid YAML: /, "YAML: ");
    problems.push({ severity: "warning", file, line: p.line, col: p.col, message });
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
  const raw = validate(root, schema, [], issues, ruleWording(src)) as Part["raw"];
  // A file with top-level keys no policy has is not a policy (an include
  // pointed at some other YAML file: a compose file, a Kubernetes secret): its
  // errors name keys and positions only, never its values, since error text
  // reaches the log and `/_/health`.
  const foreign = issues.some((i) =>
    i.atKey && i.path.length === 1 && i.message.startsWith("unknown key ")
  );
  for (const i of issues) {
    const node = i.atKey ? src.nodeAt(i.path, true) ?? i.node : i.node;
    let message = i.message;
    if (foreign && !i.atKey && !i.message.startsWith("missing key ")) {
      const where = i.path.length ? `"${i.path.join(".")}"` : "the document";
      message = `${where} is not valid (details not shown: this file has top-level keys no ` +
        "policy has, so it may not be a policy)";
    }
    if (
      role === "include" && i.atKey && i.path.length === 1 && i.path[0] in configSchema.properties
    ) {
      message = `key "${
        i.path[0]
      }" can only be set in the main policy file, not in an included one`;
    } else if (legacy && i.atKey && agentgateKey(i.path)) {
      message += `: "${
        i.path.filter((k) => typeof k === "string").join(".")
      }" is an agentgate key, and this file has no "version", so it is read as ` +
        '@agentreserve/proxy configuration; add "version: 1" at the top to use agentgate keys ' +
        '(then write proxy.host and proxy.port as proxy.listen: "HOST:PORT", and add ' +
        '"default: log" to keep this format\'s default)';
    }
    errors.push(src.problem("error", node, message));
  }
  return { src, raw, legacy, abs, invalid: issues.map((i) => i.path) };
}

/**
 * Messages about a rule name it as every other message does (`rule "npm"`;
 * an unnamed rule by its patterns) rather than by a 0-based path.
 */
function ruleWording(src: SourceFile): PathName {
  return (path) => {
    if (path[0] === "rules" && typeof path[1] === "number") {
      const rule = src.doc.getIn(["rules", path[1]]);
      const name = isMap(rule) ? rule.toJSON()?.name ?? rule.toJSON()?.match : undefined;
      const shown = typeof name === "string"
        ? name
        : Array.isArray(name) && name.every((m) => typeof m === "string")
        ? name.join(", ")
        : null;
      if (shown !== null) {
        const rest = path.slice(2);
        return rest.length ? `"${rest.join(".")}" of rule "${shown}"` : `rule "${shown}"`;
      }
    }
    return path.length ? `"${path.join(".")}"` : "the document";
  };
}

/** Whether a key path (list indexes included) names a key of agentgate's own format. */
function agentgateKey(path: readonly (string | number)[]): boolean {
  let schema: Schema | undefined = configSchema;
  for (const k of path) {
    while (schema?.type === "array") schema = schema.items;
    if (typeof k === "number") continue;
    if (schema?.type === "union") {
      schema = schema.anyOf.find((o) => o.type === "object" || o.type === "array");
      while (schema?.type === "array") schema = schema.items;
    }
    if (schema?.type !== "object") return false;
    schema = schema.properties[k];
  }
  return schema !== undefined;
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

/** What an include may name: YAML files only (never a key file, a `.env`, a device). */
const INCLUDE_EXT = /\.ya?ml$/i;

/**
 * Whether `path` is `root` or lies below it (both real paths).
 *
 * @example
 * isInside("/repo", "/repo/policies/a.yaml") // true
 * isInside("/repo", "/repository/a.yaml") // false
 */
export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/**
 * The included files of a part, depth first, each once; a cycle or a missing
 * file is an error at the including file's line. Every include must be a
 * `.yaml`/`.yml` regular file whose real path (symlinks resolved) lies under
 * `root`, the main policy's directory: a policy cannot pull in `~/.ssh/…` or
 * `/etc/…`, whose text parse errors would otherwise show.
 */
function collectIncludes(
  part: Part,
  cwd: string,
  root: string,
  stack: string[],
  problems: Problem[],
  errors: Problem[],
  budget: ReadBudget,
): Part[] {
  if (!validAt(part, ["include"])) return [];
  const list = (part.raw.include ?? []) as string[];
  if (list.length === 0) return [];
  const out: Part[] = [];
  const baseDir = part.abs ? dirname(part.abs) : cwd;
  list.forEach((pattern, i) => {
    const node = part.src.nodeAt(["include", i]);
    const glob = GLOB_CHARS.test(pattern);
    if (glob) {
      // A glob rooted outside the tree is refused before it is walked
      // (`/**/*.yaml` would otherwise walk the whole file system first).
      const abs = isAbsolute(pattern) ? pattern : resolve(baseDir, pattern);
      const segs = abs.split("/");
      const start = segs.slice(0, segs.findIndex((x) => GLOB_CHARS.test(x))).join("/") || "/";
      const real = realOr(start);
      if (!isInside(root, real)) {
        errors.push(
          part.src.problem(
            "error",
            node,
            `cannot include "${pattern}": it searches "${real}", outside "${root}" (includes must ` +
              "stay under the main policy file's directory)",
          ),
        );
        return;
      }
    }
    // A glob picks the YAML files it matches; a plain name must be one.
    const files = expandInclude(pattern, baseDir).filter((f) => !glob || INCLUDE_EXT.test(f));
    if (files.length === 0) {
      errors.push(part.src.problem("error", node, `include pattern "${pattern}" matches no file`));
      return;
    }
    const refuse = (why: string) =>
      errors.push(part.src.problem("error", node, `cannot include "${pattern}": ${why}`));
    for (const abs of files) {
      let real: string;
      try {
        real = Deno.realPathSync(abs);
      } catch (e) {
        refuse(e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message);
        continue;
      }
      if (!isInside(root, real)) {
        refuse(
          `it resolves to "${real}", outside "${root}" (includes must stay under the main ` +
            "policy file's directory)",
        );
        continue;
      }
      if (!INCLUDE_EXT.test(abs) || !INCLUDE_EXT.test(real)) {
        refuse("only .yaml and .yml files can be included");
        continue;
      }
      if (stack.includes(real)) {
        errors.push(
          part.src.problem(
            "error",
            node,
            `include cycle: ${
              [...stack.slice(stack.indexOf(real)), real].map((f) => relative(cwd, f)).join(" -> ")
            }`,
          ),
        );
        continue;
      }
      let text: string;
      try {
        text = readPolicyFileSync(real, budget);
      } catch (e) {
        if (!(e instanceof PolicyReadError)) throw e;
        refuse(e.message);
        continue;
      }
      let child: Part;
      try {
        child = parsePart(text, relative(cwd, abs) || abs, "include", problems, errors, abs);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        errors.push(...e.problems);
        continue;
      }
      out.push(
        child,
        ...collectIncludes(child, cwd, root, [...stack, real], problems, errors, budget),
      );
    }
  });
  return out;
}

function realOr(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/** The directory includes are confined to: the main file's, symlinks resolved. */
function includeRoot(mainAbs: string, cwd: string): string {
  const dir = mainAbs ? dirname(mainAbs) : cwd;
  try {
    return Deno.realPathSync(dir);
  } catch {
    return resolve(dir);
  }
}

/**
 * Parse, validate and compile a policy text. This is the one place that
 * decides what is an error: `check`, `serve` (start and reload), `run`,
 * `test`, `eval`, `replay` and the rest all load through it, so a policy one
 * of them accepts, every other accepts too. Every error of every file is
 * reported in one pass (schema errors with compile errors; a value the schema
 * refused is not compiled, so it is reported once), with the warnings.
 *
 * @example
 * const { config } = parseConfig("version: 1\nrules: []\n", "inline.yaml", Deno.cwd());
 */
export function parseConfig(
  text: string,
  file: string,
  cwd: string,
  opts: LoadOptions = {},
): Loaded {
  const problems: Problem[] = [];
  const errors: Problem[] = [];
  const parts = parseParts(text, file, cwd, problems, errors, { bytes: text.length, files: 1 });
  return drain(compileSteps(parts, file, cwd, problems, errors, { load: opts }));
}

/**
 * Parse and validate a policy text and its includes (read within `budget`),
 * without compiling: the files in load order. Schema and include errors go
 * to `errors` (a file that cannot be read as a policy at all throws
 * ConfigError, as does a policy over the rule limit).
 *
 * @example
 * const parts = parseParts(text, "agentgate.yaml", cwd, [], [], { bytes: text.length, files: 1 });
 */
export function parseParts(
  text: string,
  file: string,
  cwd: string,
  problems: Problem[],
  errors: Problem[],
  budget: ReadBudget,
): Part[] {
  const mainAbs = file.startsWith("<") ? "" : resolve(cwd, file);
  const main = parsePart(text, file, "main", problems, errors, mainAbs);
  const mainReal = mainAbs ? realOr(mainAbs) : "";
  const parts = [
    main,
    ...collectIncludes(
      main,
      cwd,
      includeRoot(mainAbs, cwd),
      mainReal ? [mainReal] : [],
      problems,
      errors,
      budget,
    ),
  ];
  const max = (budget.limits ?? POLICY_LIMITS).rules;
  let rules = 0;
  for (const part of parts) {
    rules += (part.raw.rules as unknown[] | undefined)?.length ?? 0;
    if (rules > max) {
      throw new ConfigError([
        part.src.problem(
          "error",
          part.src.nodeAt(["rules"]),
          `too many rules: a policy may have at most ${max} (this file brings the total to ${rules})`,
        ),
      ]);
    }
  }
  return parts;
}

/** Run a generator of steps to its end. */
export function drain<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * Compile parsed parts into a config, one rule per step (see
 * `compileRuleSteps`), and throw every error found (the parts' and the
 * compiler's) in one ConfigError. `lint: false` skips the lints that only
 * report problems (for parts already checked: the reload worker's);
 * `load` carries the command line's overrides.
 *
 * @example
 * const loaded = drain(compileSteps(parts, "agentgate.yaml", cwd, [], []));
 */
export function* compileSteps(
  parts: Part[],
  file: string,
  cwd: string,
  problems: Problem[],
  errors: Problem[],
  opts: { lint?: boolean; load?: LoadOptions } = {},
): Generator<void, Loaded, void> {
  const lint = opts.lint ?? true;
  const load = opts.load ?? {};
  const main = parts[0];
  const { raw, legacy } = main;
  // Sections included files may add to (tls.intercept, llm) are merged in load order.
  const llmSections = parts.map((p) =>
    validAt(p, ["llm", "providers"]) ? p.raw.llm as RawLlm | undefined : undefined
  );
  const detectProvider = llmProviderDetector(llmSections);
  const before = errors.length;
  const intercept = compileIntercept(parts, errors);
  // With a broken tls.intercept, "add the host to tls.intercept" would be a guess.
  const interceptKnown = errors.length === before &&
    parts.every((p) => validAt(p, ["tls", "intercept"]));
  const limits = limitsSection(raw.limits);
  const rules = yield* compileRuleSteps(parts, {
    intercept,
    detectProvider,
    errors,
    problems,
    checkTunnels: interceptKnown,
    lint,
    regexBudgetMs: limits.maxRegexScanMs,
  });
  const credentials = credentialsSection(main, intercept, errors, problems, cwd);
  if (lint) lintPolicy(main, rules, detectProvider, intercept, problems);
  const proxyOk = validAt(main, ["proxy"]) && validAt(main, ["dashboard"]);
  const proxy = proxyOk ? proxySection(raw.proxy, legacy) : null;
  const dashboardToken = proxyOk ? dashboardSection(raw.dashboard).token : null;
  if (proxy) {
    if (load.dashboard === false) proxy.dashboard = false;
    errors.push(
      ...exposureProblems(main, {
        listen: load.listen ?? proxy.listen,
        fromFlag: load.listen !== undefined,
        auth: proxy.auth.length > 0,
        dashboard: proxy.dashboard,
        dashboardToken: dashboardToken !== null,
      }),
    );
  }
  errors.push(...auditProblems(main, raw.audit));
  const order = parts.map((p) => p.src.file);
  if (errors.length || !proxy) throw new ConfigError(sortProblems([...errors, ...problems], order));
  const index = new RuleIndexBuilder();
  for (const r of rules) {
    index.add(r);
    yield;
  }

  const llm = llmSection(
    llmSections,
    raw.llm?.unknown_price,
    detectProvider,
    raw.llm?.reserve_output_tokens,
  );
  const config: AgentgateConfig = {
    file,
    files: parts.map((p) => p.abs).filter((f) => f !== ""),
    format: legacy ? "agentreserve" : "v1",
    embedded: file === DEFAULT_POLICY_NAME,
    listen: proxy.listen,
    dashboard: proxy.dashboard,
    proxyAuth: proxy.auth,
    secretEnv: [
      ...proxy.authEnv,
      ...(raw.dashboard?.token_env ? [raw.dashboard.token_env as string] : []),
      ...(raw.state?.password_env ? [raw.state.password_env as string] : []),
      ...credentials.flatMap((c) => c.source.kind === "env" ? [c.source.name] : []),
    ],
    dashboardToken,
    policy: policySection(raw, legacy, rules, llm, index.build()),
    audit: auditSection(raw.audit, legacy, file, cwd),
    state: validAt(main, ["state"]) ? stateSection(raw.state, file, cwd) : null,
    limits,
    tls: tlsSection(raw.tls, intercept, file, cwd),
    llm,
    run: runSection(raw.run),
    ...upstreamSection(raw.upstream),
    credentials,
  };
  return { config, problems: sortProblems(problems, order) };
}

/**
 * Problems in reading order: by file (the main file first, then includes as
 * loaded), line and column; problems without a position (a command-line
 * flag) last.
 */
function sortProblems(problems: Problem[], files: string[]): Problem[] {
  const rank = (p: Problem) => {
    const i = files.indexOf(p.file);
    return i === -1 ? files.length : i;
  };
  return [...problems].sort((a, b) =>
    (a.line === 0 ? 1 : 0) - (b.line === 0 ? 1 : 0) || rank(a) - rank(b) || a.line - b.line ||
    a.col - b.col
  );
}

/**
 * Read a policy's main file within {@link POLICY_LIMITS}: its text, and the
 * budget left for its includes. I/O errors become config errors.
 *
 * @example
 * const { text, budget } = readMainPolicy("agentgate.yaml", Deno.cwd());
 */
export function readMainPolicy(
  path: string,
  cwd: string,
  limits: PolicyLimits = POLICY_LIMITS,
): { text: string; budget: ReadBudget } {
  const budget: ReadBudget = { bytes: 0, files: 0, limits };
  try {
    return {
      text: readPolicyFileSync(isAbsolute(path) ? path : resolve(cwd, path), budget),
      budget,
    };
  } catch (e) {
    if (!(e instanceof PolicyReadError)) throw e;
    throw new ConfigError([{ severity: "error", file: path, line: 0, col: 0, message: e.message }]);
  }
}

/**
 * Read and parse a policy file (within {@link POLICY_LIMITS}); I/O errors
 * become config errors too. A reload while the proxy serves uses
 * `loadConfigOffThread` (offthread.ts) instead, which gives the same answer.
 *
 * @example
 * const { config, problems } = await loadConfig("agentgate.yaml", Deno.cwd());
 */
export function loadConfig(
  path: string,
  cwd: string,
  opts: LoadOptions = {},
  limits: PolicyLimits = POLICY_LIMITS,
): Promise<Loaded> {
  try {
    const { text, budget } = readMainPolicy(path, cwd, limits);
    const problems: Problem[] = [];
    const errors: Problem[] = [];
    const parts = parseParts(text, path, cwd, problems, errors, budget);
    return Promise.resolve(drain(compileSteps(parts, path, cwd, problems, errors, { load: opts })));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The embedded default policy (audit everything, deny metadata and link-local). */
export function loadDefaultConfig(cwd: string, opts: LoadOptions = {}): Loaded {
  return parseConfig(DEFAULT_POLICY_YAML, DEFAULT_POLICY_NAME, cwd, opts);
}
