/**
 * The policy test runner: finds `*_test.yaml` files, loads the policy each
 * one names, runs every case through the real engine with injected time and
 * state (no network), and yields one result per case. Reporters
 * (`./report.ts`) print the results.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { loadConfig, type Loaded } from "../config/load.ts";
import { ConfigError, type Problem } from "../config/errors.ts";
import type { Decision } from "../policy/types.ts";
import type { TraceEntry } from "../policy/engine.ts";
import { PolicyState, spendKeys } from "../state/mod.ts";
import type { SpendingLimitChecker } from "../policy/limits/spend.ts";
import {
  buildRequest,
  type BuiltRequest,
  decideRequest,
  describeRequest,
  RequestError,
  type RequestSpec,
} from "./request.ts";
import {
  type Expectation,
  parseTestFile,
  type TestCase,
  type TestFile,
  TestFileError,
} from "./testfile.ts";

/** The decision as a test sees it. */
export interface ActualDecision {
  action: Decision["verdict"];
  rule: string | null;
  rule_source: string | null;
  status: number;
  reason: string;
  policy: string | null;
}

/** One expected key that does not hold. */
export interface Mismatch {
  key: keyof Expectation;
  expected: unknown;
  /** The actual value of the key (for reason_contains: the reason). */
  actual: unknown;
}

/** The result of one test case. */
export interface CaseResult {
  type: "case";
  /** Test file, relative to the working directory. */
  file: string;
  line: number;
  name: string;
  status: "pass" | "fail" | "skip";
  /** The todo reason of a skipped case ("" for `todo: true`). */
  todo?: string;
  durationMs: number;
  /** The request in one line, e.g. `POST https://api.openai.com/v1/chat/completions (intercepted)`. */
  request?: string;
  expected: Expectation;
  actual?: ActualDecision;
  /** Expected keys that do not hold (empty when the case passed). */
  mismatches: Mismatch[];
  /** The rules considered, in order (failed cases only). */
  trace?: TraceEntry[];
  /** Why the case could not run (bad request), when it failed before deciding. */
  error?: string;
}

/** A test file (or its policy) that cannot be used: all its cases count as one failure. */
export interface FileErrorResult {
  type: "file-error";
  file: string;
  problems: Problem[];
}

/** What the runner yields. */
export type TestEvent = CaseResult | FileErrorResult;

/** Options of {@link runPolicyTests}. */
export interface RunOptions {
  /** Files or directories (directories are searched for `*_test.yaml`). */
  paths: string[];
  cwd: string;
  /** Only cases whose name matches. */
  run?: RegExp;
  /** The time when neither the case nor its file sets `now` (default: Date.now()). */
  now?: () => number;
}

const TEST_FILE = /_test\.ya?ml$/;
const SKIP_DIRS = new Set(["node_modules", ".git"]);

/**
 * The test files under `paths`, sorted; a path that does not exist is
 * returned in `missing`.
 */
export function findTestFiles(
  paths: string[],
  cwd: string,
): { files: string[]; missing: string[] } {
  const files = new Set<string>();
  const missing: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const e of entries) {
      const full = join(dir, e.name);
      if (e.isDirectory) {
        if (depth < 32 && !e.name.startsWith(".") && !SKIP_DIRS.has(e.name)) walk(full, depth + 1);
      } else if (e.isFile && TEST_FILE.test(e.name)) files.add(full);
    }
  };
  for (const p of paths.length ? paths : ["."]) {
    const abs = isAbsolute(p) ? p : resolve(cwd, p);
    let st;
    try {
      st = statSync(abs);
    } catch {
      missing.push(p);
      continue;
    }
    if (st.isDirectory()) walk(abs, 0);
    else files.add(abs);
  }
  return { files: [...files].sort(), missing };
}

/** `agentgate.yaml` in `dir` or the nearest parent that has one. */
function findConfigUp(dir: string): string | null {
  for (let d = dir;; d = dirname(d)) {
    const candidate = join(d, "agentgate.yaml");
    if (existsSync(candidate)) return candidate;
    if (dirname(d) === d) return null;
  }
}

function actualOf(d: Decision): ActualDecision {
  return {
    action: d.verdict,
    rule: d.rule,
    rule_source: d.ruleSource,
    status: d.status,
    reason: d.reason,
    policy: d.policy,
  };
}

/** Order in which expected keys are compared and shown. */
export const EXPECT_KEYS: (keyof Expectation)[] = [
  "action",
  "rule",
  "status",
  "policy",
  "reason",
  "reason_contains",
  "source",
];

/** The expected keys of `expect` that `actual` does not satisfy. */
export function compare(expect: Expectation, actual: ActualDecision): Mismatch[] {
  const out: Mismatch[] = [];
  for (const key of EXPECT_KEYS) {
    if (!(key in expect)) continue;
    const want = expect[key];
    if (key === "reason_contains") {
      if (!actual.reason.includes(want as string)) {
        out.push({ key, expected: want, actual: actual.reason });
      }
      continue;
    }
    if (key === "source") {
      const src = actual.rule_source;
      const ok = src !== null && (src === want || src.endsWith(`/${want}`));
      if (!ok) out.push({ key, expected: want, actual: src });
      continue;
    }
    const got = actual[key as keyof ActualDecision];
    if (want !== got) out.push({ key, expected: want, actual: got });
  }
  return out;
}

/** One earlier request of `given.requests`, at its time. */
interface GivenEvent {
  ts: number;
  spec: RequestSpec;
  usd: number | null;
  tokens: number | null;
}

/** The state a case starts from: `given` replayed through the real engine. */
function seedState(
  loaded: Loaded,
  c: TestCase,
  built: BuiltRequest,
  now: number,
): PolicyState {
  const config = loaded.config;
  const given = c.given;
  const events: GivenEvent[] = [];
  for (const g of given?.requests ?? []) {
    const spec = { ...c.request!, ...g.request } as RequestSpec;
    for (let i = 0; i < g.count; i++) {
      // Evenly inside (now - within, now): every one still counts at `now`.
      const ts = g.withinMs === null
        ? now - 1
        : now - g.withinMs + Math.max(1, Math.floor(((i + 1) * g.withinMs) / (g.count + 1)));
      events.push({ ts, spec, usd: g.usd, tokens: g.tokens });
    }
  }
  events.sort((a, b) => a.ts - b.ts);
  const startedAt = Math.min(now - 1, ...events.map((e) => e.ts));
  const state = new PolicyState({ startedAt });
  for (const e of events) {
    const req = buildRequest(config, e.spec);
    const d = decideRequest(config, req, { now: e.ts, state }).decision;
    if (d.verdict === "deny" || (e.usd === null && e.tokens === null)) {
      // Settled at once: an earlier request holds nothing in flight at `now`.
      state.dropUsage(req.info.id);
      continue;
    }
    state.reportUsage(req.info.id, {
      ts: e.ts,
      ...(e.usd !== null ? { usd: e.usd } : {}),
      ...(e.tokens !== null ? { tokens: e.tokens } : {}),
      session: req.info.session,
      host: req.info.host,
      client: req.info.client,
      rule: d.rule,
    });
  }
  if (given?.spentUsd) {
    const s = given.spend;
    let rule = s.rule;
    if (rule === undefined) {
      // The rule that decides the request without the spend forwarded it.
      const probe = new PolicyState({ startedAt });
      rule = decideRequest(config, built, { now, state: probe }).decision.rule;
    }
    const who = {
      ...built.info,
      session: s.session !== undefined ? s.session : built.info.session,
      host: s.host ?? built.info.host,
      client: s.client ?? built.info.client,
    };
    const keys = new Set(spendKeys({ ...who, rule: rule ?? null }));
    // A budget keyed by a CEL expression keeps its own ledger key: charge it too.
    for (const checker of config.policy.rules.find((r) => r.name === rule)?.checkers ?? []) {
      const ledgerKey = (checker as Partial<SpendingLimitChecker>).ledgerKey;
      if (checker.name !== "spending_limit" || !ledgerKey) continue;
      try {
        keys.add(ledgerKey.call(checker, who, now));
      } catch {
        // The key does not evaluate for this request: nothing to charge.
      }
    }
    state.ledger.add(keys, now - 1, given.spentUsd);
  }
  return state;
}

function runCase(
  loaded: Loaded,
  tf: TestFile,
  c: TestCase,
  display: string,
  now: number,
): CaseResult {
  const t0 = performance.now();
  const base = { type: "case" as const, file: display, line: c.line, name: c.name };
  if (c.todo !== null) {
    return {
      ...base,
      status: "skip",
      todo: c.todo,
      durationMs: 0,
      expected: c.expect,
      mismatches: [],
    };
  }
  const at = c.now ?? tf.now ?? now;
  let built: BuiltRequest;
  try {
    built = buildRequest(loaded.config, c.request!);
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    return {
      ...base,
      status: "fail",
      durationMs: performance.now() - t0,
      expected: c.expect,
      mismatches: [],
      error: e.message,
    };
  }
  let state: PolicyState;
  try {
    state = seedState(loaded, c, built, at);
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    return {
      ...base,
      status: "fail",
      durationMs: performance.now() - t0,
      expected: c.expect,
      mismatches: [],
      error: `given.requests: ${e.message}`,
    };
  }
  const decided = decideRequest(loaded.config, built, { now: at, state, trace: true });
  const actual = actualOf(decided.decision);
  const mismatches = compare(c.expect, actual);
  return {
    ...base,
    status: mismatches.length ? "fail" : "pass",
    durationMs: performance.now() - t0,
    request: describeRequest(built),
    expected: c.expect,
    actual,
    mismatches,
    ...(mismatches.length ? { trace: decided.trace } : {}),
  };
}

/**
 * Run the policy tests under `opts.paths`, yielding one event per case (and
 * one per unusable file).
 *
 * @example
 * for await (const r of runPolicyTests({ paths: ["policies"], cwd: Deno.cwd() })) {
 *   if (r.type === "case" && r.status === "fail") console.log(r.name, r.mismatches);
 * }
 */
export async function* runPolicyTests(opts: RunOptions): AsyncGenerator<TestEvent> {
  const { files, missing } = findTestFiles(opts.paths, opts.cwd);
  for (const m of missing) {
    yield {
      type: "file-error",
      file: m,
      problems: [{
        severity: "error",
        file: m,
        line: 0,
        col: 0,
        message: "no such file or directory",
      }],
    };
  }
  const configs = new Map<string, Loaded | ConfigError>();
  const now = opts.now ?? Date.now;
  for (const abs of files) {
    const display = relative(opts.cwd, abs) || abs;
    let tf: TestFile;
    try {
      tf = parseTestFile(await Deno.readTextFile(abs), display);
    } catch (e) {
      if (e instanceof TestFileError) {
        yield { type: "file-error", file: display, problems: e.problems };
        continue;
      }
      const message = e instanceof Error ? e.message : String(e);
      yield {
        type: "file-error",
        file: display,
        problems: [{ severity: "error", file: display, line: 0, col: 0, message }],
      };
      continue;
    }
    const cases = tf.cases.filter((c) => !opts.run || opts.run.test(c.name));
    if (cases.length === 0) continue;
    const configAbs = tf.config !== null
      ? resolve(dirname(abs), tf.config)
      : findConfigUp(dirname(abs));
    if (configAbs === null) {
      yield {
        type: "file-error",
        file: display,
        problems: [{
          severity: "error",
          file: display,
          line: 0,
          col: 0,
          message:
            'no policy to test: set "config:" or put an agentgate.yaml in this or a parent directory',
        }],
      };
      continue;
    }
    let loaded = configs.get(configAbs);
    if (loaded === undefined) {
      try {
        loaded = await loadConfig(relative(opts.cwd, configAbs) || configAbs, opts.cwd);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        loaded = e;
      }
      configs.set(configAbs, loaded);
    }
    if (loaded instanceof ConfigError) {
      const shown = relative(opts.cwd, configAbs) || configAbs;
      yield {
        type: "file-error",
        file: display,
        problems: [
          {
            severity: "error",
            file: display,
            line: tf.configLine,
            col: tf.configLine ? 1 : 0,
            message: `the policy under test "${shown}" does not load:`,
          },
          ...loaded.problems.filter((p) => p.severity === "error"),
        ],
      };
      continue;
    }
    for (const c of cases) yield runCase(loaded, tf, c, display, now());
  }
}
