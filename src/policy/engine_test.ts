import assert from "node:assert/strict";
import { decide } from "./engine.ts";
import { parseConfig } from "../config/load.ts";
import type { Decision, RequestInfo } from "./types.ts";
import { normalizeHost, normalizePath } from "./match.ts";
import { PolicyState } from "../state/mod.ts";

const POLICY = `version: 1
default: deny
rules:
  - name: openai
    match: api.openai.com/v1/**
    methods: [POST, get]
    action: allow
  - name: internal
    match: "*.internal.company.com"
    action: deny
    reason: Internal APIs are not accessible to agents
  - name: github-read
    match: ["github.com", "*.githubusercontent.com"]
    action: log
  - name: plain-only
    match: http://legacy.test
    action: allow
`;

function request(method: string, url: string): RequestInfo {
  const u = new URL(url);
  return {
    id: "t",
    session: null,
    label: null,
    client: "127.0.0.1",
    method,
    scheme: u.protocol === "https:" ? "https" : "http",
    host: normalizeHost(u.hostname),
    port: Number(u.port || (u.protocol === "https:" ? 443 : 80)),
    path: method === "CONNECT" ? null : normalizePath(u.pathname),
    query: u.search.slice(1),
    headers: {},
  };
}

function pick(d: Decision) {
  return { verdict: d.verdict, rule: d.rule, status: d.status, reason: d.reason };
}

Deno.test("decide: first match wins, with exact reasons", () => {
  const { config } = parseConfig(POLICY, "p.yaml", "/");
  const table: [string, string, Partial<Decision>][] = [
    ["POST", "http://api.openai.com/v1/chat/completions", {
      verdict: "allow",
      rule: "openai",
      status: 200,
      reason: 'matched rule "openai"',
    }],
    ["GET", "http://api.openai.com/v1/models", { verdict: "allow", rule: "openai" }],
    ["DELETE", "http://api.openai.com/v1/files/x", {
      verdict: "deny",
      rule: null,
      status: 403,
      reason: "no rule matched (default: deny)",
    }],
    ["POST", "http://api.openai.com/v2/x", { verdict: "deny", rule: null }],
    ["GET", "http://db.internal.company.com/x", {
      verdict: "deny",
      rule: "internal",
      status: 403,
      reason: "Internal APIs are not accessible to agents",
    }],
    ["CONNECT", "https://db.internal.company.com:443", { verdict: "deny", rule: "internal" }],
    ["GET", "http://internal.company.com/", { verdict: "deny", rule: null }],
    ["CONNECT", "https://github.com:443", {
      verdict: "log",
      rule: "github-read",
      reason: 'matched rule "github-read"',
    }],
    ["GET", "http://raw.githubusercontent.com/a/b", { verdict: "log", rule: "github-read" }],
    ["GET", "http://legacy.test/x", { verdict: "allow", rule: "plain-only" }],
    ["CONNECT", "https://legacy.test:443", { verdict: "deny", rule: null }],
  ];
  for (const [method, url, want] of table) {
    const got = pick(
      decide(config.policy, { info: request(method, url), now: 0, state: new PolicyState() }),
    );
    for (const [k, v] of Object.entries(want)) {
      assert.equal(got[k as keyof typeof got], v, `${method} ${url}: ${k}`);
    }
  }
});

Deno.test("decide: a tunnel never guesses a path-level rule", () => {
  const { config } = parseConfig(POLICY, "p.yaml", "/");
  const d = decide(config.policy, {
    info: request("CONNECT", "https://api.openai.com:443"),
    now: 0,
    state: new PolicyState(),
  });
  assert.deepEqual(pick(d), {
    verdict: "deny",
    rule: "openai",
    status: 403,
    reason: 'rule "openai" (p.yaml:4) needs the path (/v1/**) and the method (POST, GET), ' +
      'which a CONNECT tunnel to "api.openai.com:443" does not reveal: the host must be intercepted',
  });
});

Deno.test("decide: audit mode forwards a would-be deny as would_deny", () => {
  const { config } = parseConfig(POLICY.replace("default: deny", "mode: audit"), "p.yaml", "/");
  const d = decide(config.policy, {
    info: request("GET", "http://x.internal.company.com/"),
    now: 0,
    state: new PolicyState(),
  });
  assert.equal(d.verdict, "would_deny");
  assert.equal(d.rule, "internal");
  assert.equal(d.reason, "Internal APIs are not accessible to agents");
});

Deno.test("decide: @agentreserve/proxy files default to log", () => {
  const { config } = parseConfig(
    'rules:\n  - match: "api.openai.com/*"\n    action: allow\n',
    "a.yaml",
    "/",
  );
  assert.equal(config.format, "agentreserve");
  const d = decide(config.policy, {
    info: request("GET", "http://example.org/"),
    now: 0,
    state: new PolicyState(),
  });
  assert.deepEqual(pick(d), {
    verdict: "log",
    rule: null,
    status: 200,
    reason: "no rule matched (@agentreserve/proxy default: log)",
  });
  const t = decide(config.policy, {
    info: request("CONNECT", "https://api.openai.com:443"),
    now: 0,
    state: new PolicyState(),
  });
  assert.equal(t.verdict, "allow");
  assert.equal(t.rule, "api.openai.com/*");
});

Deno.test("decide: an engine bug is a deny with reason internal error (fail closed)", () => {
  const { config } = parseConfig(POLICY, "p.yaml", "/");
  const broken = {
    ...config.policy,
    index: undefined,
    rules: [{
      ...config.policy.rules[0],
      match: [{
        ...config.policy.rules[0].match[0],
        path: () => {
          throw new Error("boom");
        },
      }],
    }],
  };
  const d = decide(broken, {
    info: request("POST", "http://api.openai.com/v1/x"),
    now: 0,
    state: new PolicyState(),
  });
  assert.equal(d.verdict, "deny");
  assert.equal(d.reason, "internal error");
});

Deno.test("decide: the embedded default denies metadata in every spelling", async () => {
  const { loadDefaultConfig } = await import("../config/load.ts");
  const { config } = loadDefaultConfig("/");
  const denied = [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://169.254.1.1:8080/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
  ];
  for (const url of denied) {
    const d = decide(config.policy, {
      info: request("GET", url),
      now: 0,
      state: new PolicyState(),
    });
    assert.equal(d.verdict, "deny", url);
  }
  const d = decide(config.policy, {
    info: request("GET", "http://example.com/"),
    now: 0,
    state: new PolicyState(),
  });
  assert.equal(d.verdict, "log");
  assert.equal(d.reason, "no rule matched (default: log)");
});

Deno.test("decide: the host index keeps first-match order across exact and glob rules", () => {
  const { config } = parseConfig(
    `version: 1
rules:
  - { name: glob-first, match: "*.a.test/x/**", action: deny }
  - { name: exact, match: api.a.test, action: allow }
  - { name: glob-later, match: "*.a.test", action: log }
  - { name: other-exact, match: b.test, action: allow }
  - { name: catch-all, match: "*", action: deny }
`,
    "i.yaml",
    "/",
  );
  const run = (url: string) =>
    decide(config.policy, { info: request("GET", url), now: 0, state: new PolicyState() }).rule;
  assert.equal(run("http://api.a.test/x/1"), "glob-first");
  assert.equal(run("http://api.a.test/y"), "exact");
  assert.equal(run("http://web.a.test/y"), "glob-later");
  assert.equal(run("http://b.test/"), "other-exact");
  assert.equal(run("http://c.test/"), "catch-all");
  assert.deepEqual(
    config.policy.index!.candidates("b.test").map((r) => r.name),
    ["other-exact", "catch-all"],
  );
  assert.deepEqual(
    config.policy.index!.candidates("x.api.a.test").map((r) => r.name),
    ["glob-first", "glob-later", "catch-all"],
  );
});

Deno.test("decide: a trace explains every rule considered", () => {
  const { config } = parseConfig(POLICY, "p.yaml", "/");
  const trace: import("./engine.ts").TraceEntry[] = [];
  const d = decide(config.policy, {
    info: request("GET", "http://raw.githubusercontent.com/a/b"),
    now: 0,
    state: new PolicyState(),
    trace,
  });
  assert.equal(d.rule, "github-read");
  assert.deepEqual(trace.map((t) => [t.rule, t.outcome, t.detail]), [
    [
      "openai",
      "no-match",
      'http://raw.githubusercontent.com:80/a/b does not match "api.openai.com/v1/**"',
    ],
    [
      "internal",
      "no-match",
      'http://raw.githubusercontent.com:80/a/b does not match "*.internal.company.com"',
    ],
    ["github-read", "decided", "action log"],
  ]);
});
