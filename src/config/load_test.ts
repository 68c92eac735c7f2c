import assert from "node:assert/strict";
import { loadConfig, parseConfig } from "./load.ts";
import { ConfigError, formatProblem } from "./errors.ts";

function errorsOf(text: string, file = "policies/ci.yaml"): string[] {
  try {
    parseConfig(text, file, "/repo");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map(formatProblem);
    throw e;
  }
  assert.fail("expected a config error");
}

Deno.test("load: unknown keys, wrong types and bad values name file:line:col", () => {
  const text = `version: 1
default: alow
rules:
  - name: npm
    match: registry.npmjs.org
    action: allow
    methdos: [GET]
  - match: 42
    action: allow
proxy:
  listen: localhost
`;
  assert.deepEqual(errorsOf(text), [
    'policies/ci.yaml:2:10: "default" must be one of "deny", "allow", "log", not "alow" (did you mean "allow"?)',
    'policies/ci.yaml:7:5: unknown key "methdos" in "rules.0" (did you mean "methods"?)',
    'policies/ci.yaml:8:12: "rules.1.match" must be a string or a list, not number 42',
    'policies/ci.yaml:11:11: listen address "localhost" must be HOST:PORT (e.g. "127.0.0.1:4100")',
  ]);
});

Deno.test("load: a bad glob points at the character inside the pattern", () => {
  const text = 'version: 1\nrules:\n  - match: "api.example.com:99999/v1"\n    action: allow\n';
  assert.deepEqual(errorsOf(text, "a.yaml"), [
    'a.yaml:3:29: invalid match pattern "api.example.com:99999/v1" in rule 1: port 99999 is out of range 1-65535',
  ]);
});

Deno.test("load: YAML syntax errors and duplicate keys", () => {
  assert.deepEqual(errorsOf("version: 1\nrules: [\n", "s.yaml").length, 1);
  assert.match(errorsOf("version: 1\nrules: [\n", "s.yaml")[0], /^s\.yaml:\d+:\d+: invalid YAML: /);
  assert.deepEqual(errorsOf("version: 1\nmode: audit\nmode: enforce\n", "d.yaml"), [
    "d.yaml:3:1: invalid YAML: Map keys must be unique",
  ]);
  assert.deepEqual(errorsOf("", "e.yaml"), [
    "e.yaml:0:0: the policy file is empty".replace(":0:0", ""),
  ]);
  assert.deepEqual(errorsOf("- a\n- b\n", "l.yaml"), [
    "l.yaml:1:1: a policy file must be a YAML mapping",
  ]);
});

Deno.test("load: v1-only keys without version are refused, not read as the legacy format", () => {
  assert.deepEqual(errorsOf("default: deny\nrules: []\n", "x.yaml"), [
    'x.yaml:1:1: missing key "version": this file uses "default", which only agentgate policies have; ' +
    'add "version: 1" at the top (a file without version is read as @agentreserve/proxy configuration)',
  ]);
});

Deno.test("load: warnings and tunnel lint problems do not stop loading", () => {
  const text = `version: 1
rules:
  - match: "*"
    action: log
  - name: never
    match: example.com
    action: deny
  - name: paths
    match: api.example.com/v1/**
    methods: [PSOT]
    action: allow
`;
  const { config, problems } = parseConfig(text, "w.yaml", "/");
  assert.equal(config.policy.rules.length, 3);
  assert.deepEqual(problems.map((p) => `${formatProblem(p)}${p.lint ? " [lint]" : ""}`), [
    'w.yaml:5:5: warning: rule "never" can never match: rule "*" (w.yaml:3) matches every request first',
    'w.yaml:8:5: warning: rule "paths" can never match: rule "*" (w.yaml:3) matches every request first',
    'w.yaml:10:14: rule "paths" uses the path glob "/v1/**" and the method (PSOT), which a CONNECT tunnel does not reveal: HTTPS requests to "api.example.com" are denied with a reason (plain-HTTP requests are matched in full); add "api.example.com" to tls.intercept [lint]',
    'w.yaml:10:15: warning: unknown HTTP method "PSOT" (did you mean "POST"?)',
  ]);
});

Deno.test("load: defaults and paths relative to the policy file", () => {
  const { config } = parseConfig("version: 1\n", "conf/agentgate.yaml", "/repo");
  assert.equal(config.listen.host, "127.0.0.1");
  assert.equal(config.listen.port, 4100);
  assert.equal(config.dashboard, true);
  assert.equal(config.policy.defaultAction, "deny");
  assert.equal(config.policy.mode, "enforce");
  assert.equal(config.audit.path, "/repo/conf/agentgate.db");
  assert.equal(config.audit.retentionMs, 30 * 86_400_000);
  assert.equal(config.upstream.connectTimeoutMs, 10_000);
  assert.equal(config.upstream.responseTimeoutMs, 300_000);
});

Deno.test("load: the @agentreserve/proxy README example loads unchanged", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = `proxy:
  port: 4100
  host: "127.0.0.1"
  dashboard: true

rules:
  # Allow OpenAI with rate limiting
  - match: "api.openai.com/*"
    action: allow
    policies:
      - type: rate_limit
        max_requests_per_minute: 60

  # Allow Anthropic with rate limiting
  - match: "api.anthropic.com/*"
    action: allow
    policies:
      - type: rate_limit
        max_requests_per_minute: 30

  # Block internal APIs
  - match: "*.internal.company.com/*"
    action: deny
    reason: "Internal APIs are not accessible to agents"

  # Block sensitive AWS endpoints
  - match: "*.amazonaws.com/iam/*"
    action: deny
    reason: "IAM modifications blocked for agents"

  # Allow and log everything else
  - match: "*"
    action: log

audit:
  store: sqlite
  path: ./agentreserve-audit.db
`;
    await Deno.writeTextFile(`${dir}/agentreserve.yaml`, text);
    const { config } = await loadConfig("agentreserve.yaml", dir);
    assert.equal(config.format, "agentreserve");
    assert.deepEqual(config.listen, { host: "127.0.0.1", port: 4100 });
    assert.equal(config.audit.path, `${dir}/agentreserve-audit.db`);
    assert.deepEqual(config.policy.rules.map((r) => [r.name, r.action]), [
      ["api.openai.com/*", "allow"],
      ["api.anthropic.com/*", "allow"],
      ["*.internal.company.com/*", "deny"],
      ["*.amazonaws.com/iam/*", "deny"],
      ["*", "log"],
    ]);
    assert.deepEqual(config.policy.rules.map((r) => r.checkers.map((c) => c.name)), [
      ["rate_limit"],
      ["rate_limit"],
      [],
      [],
      [],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: a missing file is a config error naming it", async () => {
  await assert.rejects(loadConfig("nope.yaml", "/tmp"), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.message, "nope.yaml: file not found");
    return true;
  });
});

Deno.test("load: CEL and policy errors point into the YAML", () => {
  const text = `version: 1
rules:
  - name: cel
    match: api.example.test
    when: requst.host == "x"
    action: allow
  - name: quoted
    match: api.example.test
    when: "request.method == 'GET' && request.hots == 'x'"
    action: allow
  - name: block
    match: api.example.test
    when: |
      request.method == "GET" &&
        sesion.id == "x"
    action: allow
  - name: limits
    match: api.example.test
    action: allow
    policies:
      - rate_limit: { requests: 10, per: 1 minute }
      - time_window: { days: mon-fir }
      - spending_limit: { usd: 5, per: 1d, currency: EUR }
      - ratelimit: { requests: 1 }
`;
  const errs = errorsOf(text, "c.yaml");
  assert.equal(errs.length, 7, errs.join("\n"));
  assert.match(errs[0], /^c\.yaml:5:11: invalid condition in rule "cel": .*requst/);
  assert.match(errs[1], /^c\.yaml:9:47: invalid condition in rule "quoted": .*hots/);
  assert.match(errs[2], /^c\.yaml:15:9: invalid condition in rule "block": .*sesion/);
  assert.equal(
    errs[3],
    'c.yaml:21:42: invalid duration "1 minute": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"',
  );
  assert.match(errs[4], /^c\.yaml:22:30: unknown day in "mon-fir"/);
  assert.match(errs[5], /^c\.yaml:23:54: unsupported currency "EUR": only USD is supported/);
  assert.equal(
    errs[6],
    'c.yaml:24:9: unknown policy "ratelimit" (did you mean "rate_limit"?)',
  );
});

Deno.test("load: conditions reading request fields on a tunnelled host are reported", () => {
  const text = `version: 1
rules:
  - name: body-check
    match: api.example.test
    when: body.model == "x"
    action: allow
  - name: host-only
    match: other.test
    when: request.host.endsWith(".test") && session.id == "ci"
    action: allow
`;
  const { problems } = parseConfig(text, "t.yaml", "/");
  assert.deepEqual(problems.map((p) => `${formatProblem(p)}${p.lint ? " [lint]" : ""}`), [
    't.yaml:5:11: rule "body-check" uses body in its condition, which a CONNECT tunnel does not reveal: HTTPS requests to "api.example.test" are denied with a reason (plain-HTTP requests are matched in full); add "api.example.test" to tls.intercept [lint]',
  ]);
});

Deno.test("load: include appends rules from sorted files and names each rule's file:line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/policies`);
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      "version: 1\ninclude: [policies/*.yaml]\nrules:\n  - { name: main-rule, match: a.test, action: allow }\n",
    );
    await Deno.writeTextFile(
      `${dir}/policies/b.yaml`,
      "version: 1\ntls: { intercept: [b.test] }\nrules:\n  - { name: b-rule, match: b.test/x/**, action: deny }\n",
    );
    await Deno.writeTextFile(
      `${dir}/policies/a.yaml`,
      "rules:\n\n  - { name: a-rule, match: c.test, action: log }\n",
    );
    await Deno.writeTextFile(`${dir}/policies/a_test.yaml`, "tests: []\n");
    const { config, problems } = await loadConfig("agentgate.yaml", dir);
    assert.deepEqual(config.policy.rules.map((r) => [r.name, r.source]), [
      ["main-rule", "agentgate.yaml:4"],
      ["a-rule", "policies/a.yaml:3"],
      ["b-rule", "policies/b.yaml:4"],
    ]);
    assert.deepEqual(problems, []); // b.test is intercepted by the included file
    assert.equal(config.tls.intercept.length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: include cycles, missing files and main-only keys are errors at the line", async () => {
  const dir = await Deno.makeTempDir();
  const errs = async (main: string) => {
    await Deno.writeTextFile(`${dir}/main.yaml`, main);
    try {
      await loadConfig("main.yaml", dir);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map(formatProblem);
      throw e;
    }
    assert.fail("expected an error");
  };
  try {
    await Deno.writeTextFile(`${dir}/x.yaml`, "version: 1\ninclude: [y.yaml]\n");
    await Deno.writeTextFile(`${dir}/y.yaml`, "version: 1\ninclude:\n  - x.yaml\n");
    assert.deepEqual(await errs("version: 1\ninclude: [x.yaml]\n"), [
      "y.yaml:3:5: include cycle: x.yaml -> y.yaml -> x.yaml",
    ]);
    assert.deepEqual(await errs("version: 1\ninclude:\n  - nope.yaml\n  - 'none/*.yaml'\n"), [
      'main.yaml:3:5: cannot include "nope.yaml": file not found',
      'main.yaml:4:5: include pattern "none/*.yaml" matches no file',
    ]);
    await Deno.writeTextFile(`${dir}/z.yaml`, "version: 1\naudit: { path: x.db }\n");
    assert.deepEqual(await errs("version: 1\ninclude: [z.yaml]\n"), [
      'z.yaml:2:1: key "audit" can only be set in the main policy file, not in an included one',
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: lints for shadowed rules, default allow, and unbudgeted LLM hosts", () => {
  const text = `version: 1
default: allow
tls: { intercept: [api.openai.com, "*.example.test"] }
rules:
  - { name: all-example, match: "*.example.test", action: log }
  - { name: api-example, match: api.example.test/v1/**, action: deny }
  - { name: v1, match: api.openai.com/v1/**, action: allow }
  - { name: v1-chat, match: api.openai.com/v1/chat/**, action: deny }
  - name: budget
    match: api.anthropic.com
    action: allow
    policies: [{ spending_limit: { usd: 5, per: 1d } }]
  - { name: get-only, match: api.openai.com/v2/**, methods: [GET], action: log }
  - { name: after-get, match: api.openai.com/v2/x, action: deny }
  - { name: openai-free, match: api.openai.com, action: allow }
`;
  const { problems } = parseConfig(text, "l.yaml", "/");
  assert.deepEqual(problems.map(formatProblem), [
    'l.yaml:2:10: warning: default: allow in enforce mode lets every request no rule names through; prefer "deny" (or "log" while you learn the traffic)',
    'l.yaml:6:5: warning: rule "api-example" can never match: rule "all-example" (l.yaml:5) matches all its requests first',
    'l.yaml:7:5: warning: rule "v1" allows the LLM host "api.openai.com" with no policies while a spending limit exists elsewhere: its calls are not budgeted',
    'l.yaml:8:5: warning: rule "v1-chat" can never match: rule "v1" (l.yaml:7) matches all its requests first',
    'l.yaml:15:5: warning: rule "openai-free" allows the LLM host "api.openai.com" with no policies while a spending limit exists elsewhere: its calls are not budgeted',
  ]);
});

Deno.test("load: address ranges, upstream.dns and upstream.resolve are checked at load", () => {
  const text = `version: 1
upstream:
  dns: dns.example.com:53
  resolve:
    "api.test:99999": 127.0.0.1:1
    api2.test: localhost:8443
`;
  assert.deepEqual(errorsOf(text, "a.yaml"), [
    'a.yaml:3:8: upstream.dns "dns.example.com:53" must name an IP address, not a host name (e.g. "127.0.0.1:5353")',
    'a.yaml:5:5: port 99999 in "api.test:99999" is out of range 1-65535',
    'a.yaml:6:16: resolve target "localhost:8443" must name an IP address, not a host name (e.g. "127.0.0.1:8443")',
  ]);
  const ranges = `version: 1
rules:
  - match: 10.0.0.1/8
    action: allow
  - match: "[fd00::]/129"
    action: allow
`;
  assert.deepEqual(errorsOf(ranges, "r.yaml"), [
    'r.yaml:3:12: invalid match pattern "10.0.0.1/8" in rule 1: "10.0.0.1/8" has bits set after the prefix: did you mean "10.0.0.0/8"?',
    'r.yaml:5:12: invalid match pattern "[fd00::]/129" in rule 2: the prefix length of "[fd00::]/129" must be 0-128',
  ]);
  const { config, problems } = parseConfig(
    `version: 1
upstream:
  dns: "[::1]"
  resolve: { "API.test:8443": "127.0.0.2:9000", "api.test": "[::1]:9001" }
rules:
  - { name: wide, match: 169.254.0.0/16, action: allow }
  - { name: pointless, match: x.test, action: deny, allow_private: true }
  - { name: corp, match: [db.corp.test, 10.0.0.0/8], action: log }
`,
    "b.yaml",
    "/",
  );
  assert.deepEqual(config.upstream.dns, { host: "::1", port: 53 });
  assert.deepEqual([...config.resolve], [
    ["api.test 8443", { host: "127.0.0.2", port: 9000 }],
    ["api.test", { host: "::1", port: 9001 }],
  ]);
  assert.deepEqual(problems.map(formatProblem), [
    'b.yaml:6:26: warning: rule "wide" allows 169.254.0.0/16, which includes the cloud metadata address 169.254.169.254: an agent could read instance credentials; name a narrower range',
    'b.yaml:7:68: warning: allow_private on deny rule "pointless" has no effect (a deny rule connects nowhere)',
  ]);
  const corp = config.policy.rules.find((r) => r.name === "corp")!;
  assert.deepEqual(corp.allowance?.ranges.map((c) => c.bits), [8]);
  assert.equal(config.policy.rules.find((r) => r.name === "pointless")!.allowance, null);
});
