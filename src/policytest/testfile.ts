/**
 * Policy test files (`*_test.yaml`): their schema, and parsing them into
 * test cases with positions.
 *
 * ```yaml
 * config: ../agentgate.yaml          # default: agentgate.yaml in this or a parent directory
 * now: 2026-03-02T10:00:00Z          # default time of every test (default: the real time)
 * tests:
 *   - name: a name that resolves to the metadata address is refused
 *     request: { url: http://metadata.example/, dest_ip: 169.254.169.254 }
 *     expect: { action: deny, policy: address }
 *   - name: chat completions allowed for the CI session
 *     request: { method: POST, url: https://api.openai.com/v1/chat/completions, session: ci, body: { model: gpt-4o-mini } }
 *     expect: { action: allow, rule: openai-chat }
 *   - name: 61st request in a minute is rate limited
 *     given: { requests: { count: 60, within: 1m } }   # the same request 60 times in the last minute
 *     request: { method: POST, url: https://api.openai.com/v1/chat/completions, session: ci }
 *     expect: { action: deny, status: 429, reason_contains: rate limit }
 *   - name: over budget
 *     given: { spent_usd: 5.01, session: ci }
 *     request: { method: POST, url: https://api.anthropic.com/v1/messages, session: ci }
 *     expect: { action: deny, policy: spending_limit }
 *   - name: not written yet
 *     todo: waits for the new registry mirror
 * ```
 *
 * @module
 */
import { isSeq, type Node } from "yaml";
import type { Problem } from "../config/errors.ts";
import { type ObjectSchema, type Schema, type SchemaIssue, validate } from "../config/schema.ts";
import { parseDuration } from "../util/duration.ts";
import * as when from "../util/time.ts";
import { parseAbsolute } from "../proxy/target.ts";
import { canonicalIp } from "../policy/address.ts";
import type { RequestSpec } from "./request.ts";
import { YamlFile } from "./yamlfile.ts";

/** The verdicts an expectation can name. */
export const ACTIONS = ["allow", "deny", "log", "would_deny"] as const;

/** What a test expects of the decision; only the keys given are compared. */
export interface Expectation {
  /** The verdict: allow, deny, log, or would_deny (a deny in `mode: audit`). */
  action?: (typeof ACTIONS)[number];
  /** The deciding rule's name; null = no rule (the default decided). */
  rule?: string | null;
  status?: number;
  reason?: string;
  reason_contains?: string;
  /** The policy that decided (`rate_limit`, `spending_limit`, …); null = none. */
  policy?: string | null;
  /**
   * `file:line` of the deciding rule; matches when the actual source ends
   * with it at a path boundary (`ci.yaml:12` matches `policies/ci.yaml:12`).
   */
  source?: string;
}

/** Earlier traffic a test starts from. */
export interface Given {
  /** Requests decided (and, when allowed, counted) before the test's request. */
  requests: {
    count: number;
    /** Spread evenly over this window before `now` (default: all 1 ms before `now`). */
    withinMs: number | null;
    /** The request; unset fields come from the test's request. */
    request: Partial<RequestSpec>;
    /** Cost reported for each forwarded request (spending limits). */
    usd: number | null;
    /** LLM tokens reported for each forwarded request (token rate limits). */
    tokens: number | null;
  }[];
  /** USD already spent (1 ms before `now`), charged like a reported cost. */
  spentUsd: number | null;
  /** Whose spend: session (default: the request's), host, client, rule (default: the rule that decides the request). */
  spend: { session?: string | null; host?: string; client?: string; rule?: string | null };
}

/** One test case. */
export interface TestCase {
  name: string;
  /** Line of the case in its file. */
  line: number;
  request: RequestSpec | null;
  given: Given | null;
  /** Decision time, ms since the epoch; null = the file's `now`, else the real time. */
  now: number | null;
  expect: Expectation;
  /** Set for a `todo:` case (skipped): the reason, or "" for `todo: true`. */
  todo: string | null;
}

/** A parsed test file. */
export interface TestFile {
  file: string;
  /** `config:` as written, or null (search agentgate.yaml upwards). */
  config: string | null;
  /** Line of `config:` (for errors in the config reference). */
  configLine: number;
  now: number | null;
  cases: TestCase[];
}

const str = (description?: string): Schema => ({ type: "string", description });

/**
 * ISO 8601 with a zone (a time without one would depend on the machine): ms,
 * or an error message. The grammar is src/util/time.ts's `iso` form.
 *
 * @example
 * parseTime("2026-03-02T10:00:00+01:00") // 1772442000000
 */
export function parseTime(v: string): number | string {
  const t = when.parseTime(v, { forms: ["iso"], zone: "required" });
  if (t.ok) return t.ms;
  return t.problem === "zone"
    ? `time "${v}" has no zone: add "Z" or an offset such as "+01:00"`
    : `invalid time "${v}": use ISO 8601, e.g. "2026-03-02T10:00:00Z"`;
}

const time: Schema = {
  type: "string",
  description: "ISO 8601 time with a zone, e.g. 2026-03-02T10:00:00+01:00.",
  check: (v) => {
    const t = parseTime(v);
    return typeof t === "string" ? t : null;
  },
};

const duration: Schema = {
  type: "string",
  description: "A duration such as 1m, 1h, 1d.",
  check: (v) => {
    try {
      parseDuration(v);
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  },
};

const url: Schema = {
  type: "string",
  description: "Absolute http:// or https:// URL.",
  check: (v) =>
    parseAbsolute(v) === null
      ? `invalid URL "${v}": use an absolute http:// or https:// URL with a host`
      : null,
};

const ipAddress: Schema = {
  type: "string",
  description: "An IPv4 or IPv6 address.",
  check: (v) => canonicalIp(v) === null ? `"${v}" is not an IP address` : null,
};

const headerValue: Schema = {
  type: "union",
  anyOf: [{ type: "string" }, { type: "number" }, { type: "boolean" }],
};

const requestProps: Record<string, Schema> = {
  method: str("HTTP method (default GET); CONNECT decides the tunnel only."),
  url,
  session: str("Session id (as sent by agentgate run / proxy credentials)."),
  label: str("Session label (default: derived from the session)."),
  client: str("Client address (default 127.0.0.1)."),
  headers: { type: "map", values: headerValue, description: "Request headers." },
  body: { type: "any", description: "JSON body (a mapping or list), or the raw body as a string." },
  dest_ip: {
    type: "union",
    description:
      "What the host resolves to (an address or a list): for dest.ip, address ranges in match, and the address guard.",
    anyOf: [
      ipAddress,
      { type: "array", items: ipAddress, minItems: 1 },
    ],
  },
};

const requestSchema: ObjectSchema = {
  type: "object",
  description: "The request under test.",
  properties: requestProps,
  required: ["url"],
};

const givenRequests: ObjectSchema = {
  type: "object",
  description: "Requests decided before the test's request (unset fields: the test's request).",
  properties: {
    count: { type: "number", integer: true, minimum: 1, maximum: 100_000 },
    within: duration,
    ...requestProps,
    usd: { type: "number", minimum: 0, description: "Cost reported for each forwarded request." },
    tokens: {
      type: "number",
      integer: true,
      minimum: 0,
      description: "LLM tokens reported for each forwarded request.",
    },
  },
  required: ["count"],
};

const expectSchema: ObjectSchema = {
  type: "object",
  description: "What the decision must be; only the keys given are compared.",
  properties: {
    action: { type: "string", enum: ACTIONS },
    rule: { type: "any", description: "Name of the deciding rule; null = the default decided." },
    status: { type: "number", integer: true, minimum: 100, maximum: 599 },
    reason: str("The exact reason."),
    reason_contains: str("A part of the reason."),
    policy: { type: "any", description: "The policy that decided (rate_limit, …); null = none." },
    source: {
      type: "string",
      description: "file:line of the deciding rule (a trailing part of the path is enough).",
    },
  },
};

/**
 * `given`; `requests` is a mapping or a list of them. The validator reads
 * `requests` by its shape (see {@link parseTestFile}), so an error inside one
 * names the key rather than "a mapping or a list".
 */
function givenSchema(requests: Schema): ObjectSchema {
  return {
    type: "object",
    description: "Earlier traffic: rate-limit and spending state the test starts from.",
    properties: {
      requests,
      spent_usd: { type: "number", minimum: 0, description: "USD already spent." },
      session: str("Whose spend (default: the request's session)."),
      host: str("Host the spend went to (default: the request's)."),
      client: str("Client of the spend (default: the request's)."),
      rule: str("Rule that forwarded the spend (default: the rule that decides the request)."),
    },
  };
}

function caseSchema(given: ObjectSchema): ObjectSchema {
  return {
    type: "object",
    description: "One test.",
    properties: {
      name: str("The test's name (--run matches it)."),
      request: requestSchema,
      given,
      now: time,
      expect: expectSchema,
      todo: {
        type: "union",
        description: "Skip the test: a reason, or true.",
        anyOf: [{ type: "string" }, { type: "boolean" }],
      },
    },
    required: ["name"],
  };
}

function fileSchema(given: ObjectSchema): ObjectSchema {
  return {
    type: "object",
    description: "agentgate policy tests",
    properties: {
      config: str(
        "The policy under test, relative to this file (default: agentgate.yaml up the tree).",
      ),
      now: time,
      tests: { type: "array", items: caseSchema(given), description: "The tests, run in order." },
    },
    required: ["tests"],
  };
}

/** The schema of a `*_test.yaml` file (also printed by `agentgate schema --for test`). */
export const testFileSchema: ObjectSchema = fileSchema(
  givenSchema({ type: "union", anyOf: [givenRequests, { type: "array", items: givenRequests }] }),
);

/** What the validator walks: `given.requests` is checked by its shape afterwards. */
const validationSchema: ObjectSchema = fileSchema(
  givenSchema({ type: "any", description: "A mapping or a list of mappings." }),
);

/** Thrown with the problems of a test file that cannot be read. */
export class TestFileError extends Error {
  constructor(readonly problems: Problem[]) {
    super(problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`).join("\n"));
    this.name = "TestFileError";
  }
}

// deno-lint-ignore no-explicit-any
type Raw = Record<string, any>;

function toSpec(raw: Raw): Partial<RequestSpec> {
  const spec: Partial<RequestSpec> = {};
  for (const k of ["method", "url", "session", "label", "client", "body", "dest_ip"] as const) {
    if (raw[k] !== undefined) (spec as Raw)[k] = raw[k];
  }
  if (raw.headers !== undefined) {
    spec.headers = Object.fromEntries(
      Object.entries(raw.headers as Raw).map(([k, v]) => [k, String(v)]),
    );
  }
  return spec;
}

/**
 * Parse and validate a test file.
 *
 * @example
 * const tf = parseTestFile(await Deno.readTextFile("policies/ci_test.yaml"), "policies/ci_test.yaml");
 * tf.cases.length
 * @throws {TestFileError} with `file:line:col` problems.
 */
export function parseTestFile(text: string, file: string): TestFile {
  const y = new YamlFile(file, text);
  const { value, problems } = y.validate(validationSchema, "test file");
  if (problems.length === 0) {
    ((value as Raw).tests as Raw[]).forEach((c, i) => {
      const path = ["tests", i, "given", "requests"];
      const node = y.nodeAt(path) as Node | null;
      if (c.given?.requests === undefined) return;
      const issues: SchemaIssue[] = [];
      c.given.requests = validate(
        node,
        isSeq(node) ? { type: "array", items: givenRequests } : givenRequests,
        path,
        issues,
      );
      for (const issue of issues) {
        problems.push(
          y.problem(
            issue.atKey ? y.nodeAt(issue.path, true) ?? issue.node : issue.node,
            issue.message,
          ),
        );
      }
    });
  }
  if (problems.length) throw new TestFileError(problems);
  const raw = value as Raw;
  const extra: Problem[] = [];
  const cases: TestCase[] = [];
  (raw.tests as Raw[]).forEach((c, i) => {
    const node = y.nodeAt(["tests", i]);
    const at = (...p: (string | number)[]) => y.nodeAt(["tests", i, ...p]) ?? node;
    const todo = c.todo === undefined || c.todo === false
      ? null
      : c.todo === true
      ? ""
      : String(c.todo);
    const expect = (c.expect ?? {}) as Raw;
    for (const k of ["rule", "policy"] as const) {
      if (k in expect && expect[k] !== null && typeof expect[k] !== "string") {
        extra.push(
          y.problem(at("expect", k), `"tests.${i}.expect.${k}" must be a string or null`),
        );
      }
    }
    if (todo === null) {
      if (c.request === undefined) {
        extra.push(
          y.problem(node, `missing key "request" in test "${c.name}" (or mark it todo:)`),
        );
      }
      if (c.expect === undefined || Object.keys(expect).length === 0) {
        extra.push(
          y.problem(
            c.expect === undefined ? node : at("expect"),
            `test "${c.name}" expects nothing: add expect: { action: … } (or mark it todo:)`,
          ),
        );
      }
    }
    let given: Given | null = null;
    if (c.given !== undefined) {
      const g = c.given as Raw;
      const reqs = g.requests === undefined
        ? []
        : Array.isArray(g.requests)
        ? g.requests as Raw[]
        : [g.requests as Raw];
      given = {
        requests: reqs.map((r) => ({
          count: r.count,
          withinMs: r.within === undefined ? null : parseDuration(r.within),
          request: toSpec(r),
          usd: r.usd ?? null,
          tokens: r.tokens ?? null,
        })),
        spentUsd: g.spent_usd ?? null,
        spend: {
          ...(g.session !== undefined ? { session: g.session } : {}),
          ...(g.host !== undefined ? { host: g.host } : {}),
          ...(g.client !== undefined ? { client: g.client } : {}),
          ...(g.rule !== undefined ? { rule: g.rule } : {}),
        },
      };
    }
    cases.push({
      name: c.name,
      line: y.pos(node as Node).line,
      request: c.request === undefined ? null : toSpec(c.request) as RequestSpec,
      given,
      now: c.now === undefined ? null : parseTime(c.now) as number,
      expect: expect as Expectation,
      todo,
    });
  });
  if (extra.length) throw new TestFileError(extra);
  const configNode = y.nodeAt(["config"]);
  return {
    file,
    config: raw.config ?? null,
    configLine: y.pos(configNode).line,
    now: raw.now === undefined ? null : parseTime(raw.now) as number,
    cases,
  };
}
