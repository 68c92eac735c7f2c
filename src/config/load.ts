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
import { ConfigError, type Problem } from "./errors.ts";
import { type SchemaIssue, validate } from "./schema.ts";
import { configSchema, includeSchema, legacySchema, V1_ONLY_KEYS } from "./spec.ts";
import { type Part, SourceFile } from "./source.ts";
import { compileRuleSteps, lintPolicy } from "./rules.ts";
import {
  auditSection,
  compileIntercept,
  dashboardSection,
  limitsSection,
  llmProviderDetector,
  llmSection,
  policySection,
  proxySection,
  type RawLlm,
  runSection,
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
function collectIncludes(
  part: Part,
  cwd: string,
  stack: string[],
  budget: ReadBudget,
): Part[] {
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
        text = readPolicyFileSync(abs, budget);
      } catch (e) {
        if (!(e instanceof PolicyReadError)) throw e;
        errors.push(part.src.problem("error", node, `cannot include "${pattern}": ${e.message}`));
        continue;
      }
      const child = parsePart(text, relative(cwd, abs) || abs, "include", [], abs);
      out.push(child, ...collectIncludes(child, cwd, [...stack, abs], budget));
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
  const problems: Loaded["problems"] = [];
  const parts = parseParts(text, file, cwd, problems, { bytes: text.length, files: 1 });
  return drain(compileSteps(parts, file, cwd, problems));
}

/**
 * Parse and validate a policy text and its includes (read within `budget`),
 * without compiling: the files in load order. Throws ConfigError.
 *
 * @example
 * const parts = parseParts(text, "agentgate.yaml", cwd, [], { bytes: text.length, files: 1 });
 */
export function parseParts(
  text: string,
  file: string,
  cwd: string,
  problems: Loaded["problems"],
  budget: ReadBudget,
): Part[] {
  const mainAbs = file.startsWith("<") ? "" : resolve(cwd, file);
  const main = parsePart(text, file, "main", problems, mainAbs);
  const parts = [main, ...collectIncludes(main, cwd, mainAbs ? [mainAbs] : [], budget)];
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
 * `compileRuleSteps`); `lint: false` skips the lints that only report
 * problems (for parts already checked, the reload worker's).
 *
 * @example
 * const loaded = drain(compileSteps(parts, "agentgate.yaml", cwd, []));
 */
export function* compileSteps(
  parts: Part[],
  file: string,
  cwd: string,
  problems: Loaded["problems"],
  opts: { lint?: boolean } = {},
): Generator<void, Loaded, void> {
  const errors: Problem[] = [];
  const main = parts[0];
  const { raw, legacy } = main;
  const lint = opts.lint ?? true;
  // Sections included files may add to (tls.intercept, llm) are merged in load order.
  const llmSections = parts.map((p) => p.raw.llm as RawLlm | undefined);
  const detectProvider = llmProviderDetector(llmSections);
  const intercept = compileIntercept(parts, errors);
  const limits = limitsSection(raw.limits);
  const rules = yield* compileRuleSteps(parts, {
    intercept,
    detectProvider,
    errors,
    problems,
    lint,
    regexBudgetMs: limits.maxRegexScanMs,
  });
  if (errors.length) throw new ConfigError(errors);
  if (lint) lintPolicy(main, rules, detectProvider, problems);
  const index = new RuleIndexBuilder();
  for (const r of rules) {
    index.add(r);
    yield;
  }

  const llm = llmSection(llmSections, raw.llm?.unknown_price, detectProvider);
  const proxy = proxySection(raw.proxy, legacy);
  const config: AgentgateConfig = {
    file,
    files: parts.map((p) => p.abs).filter((f) => f !== ""),
    format: legacy ? "agentreserve" : "v1",
    embedded: file === DEFAULT_POLICY_NAME,
    listen: proxy.listen,
    dashboard: proxy.dashboard,
    proxyAuth: proxy.auth,
    dashboardToken: dashboardSection(raw.dashboard).token,
    policy: policySection(raw, legacy, rules, llm, index.build()),
    audit: auditSection(raw.audit, legacy, file, cwd),
    limits,
    tls: tlsSection(raw.tls, intercept, file, cwd),
    llm,
    run: runSection(raw.run),
    ...upstreamSection(raw.upstream),
  };
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  return { config, problems };
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
 * Read and parse a policy file; I/O errors become config errors too.
 *
 * @example
 * const { config, problems } = await loadConfig("agentgate.yaml", Deno.cwd());
 */
export function loadConfig(
  path: string,
  cwd: string,
  limits: PolicyLimits = POLICY_LIMITS,
): Promise<Loaded> {
  try {
    const { text, budget } = readMainPolicy(path, cwd, limits);
    const problems: Loaded["problems"] = [];
    const parts = parseParts(text, path, cwd, problems, budget);
    return Promise.resolve(drain(compileSteps(parts, path, cwd, problems)));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The embedded default policy (audit everything, deny metadata and link-local). */
export function loadDefaultConfig(cwd: string): Loaded {
  return parseConfig(DEFAULT_POLICY_YAML, DEFAULT_POLICY_NAME, cwd);
}
