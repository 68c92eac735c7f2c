import assert from "node:assert/strict";
import { compare, findTestFiles, runPolicyTests, type TestEvent } from "./runner.ts";

const POLICY = `version: 1
tls: { intercept: [llm.example] }
rules:
  - name: chat
    match: llm.example/v1/**
    action: allow
    policies:
      - rate_limit: { requests: 3, per: 10m, key: session }
  - name: budget
    match: api.anthropic.com
    action: allow
    policies:
      - spending_limit: { usd: 1, per: 1h }
  - name: tokens
    match: tokens.example
    action: allow
    policies:
      - rate_limit: { tokens: 1000, per: 1h, key: global }
  - name: run-budget
    match: run.example
    action: allow
    policies:
      - spending_limit: { usd: 2, per: run, key: global }
  - name: team-budget
    match: team.example
    action: allow
    policies:
      - spending_limit: { usd: 1, per: 1d, key: 'request.headers["x-team"]' }
  - name: office-hours
    match: office.example
    action: allow
    policies:
      - time_window: { days: mon-fri, hours: "09:00-17:00", tz: UTC }
  - name: across
    match: across.example
    action: allow
    policies:
      - spending_limit: { usd: 2, per: 1d, key: session, scope: all }
`;

async function runIn(files: Record<string, string>, args: { paths?: string[]; run?: RegExp } = {}) {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.mkdir(`${dir}/${name}`.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    const out: TestEvent[] = [];
    for await (
      const e of runPolicyTests({
        paths: args.paths ?? [],
        cwd: dir,
        run: args.run,
        now: () => Date.parse("2026-01-05T12:00:00Z"),
      })
    ) out.push(e);
    return out;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function statuses(events: TestEvent[]) {
  return events.map((e) =>
    e.type === "case"
      ? [e.name, e.status, ...e.mismatches.map((m) => `${m.key}=${JSON.stringify(m.actual)}`)]
      : ["file-error", e.file]
  );
}

Deno.test("runner: given.requests seeds rate limits through the engine, only forwarded ones count", async () => {
  const events = await runIn({
    "agentgate.yaml": POLICY,
    "a_test.yaml": `tests:
  - name: 3 earlier requests fill the window
    given: { requests: { count: 3, within: 5m } }
    request: { url: https://llm.example/v1/x, session: s }
    expect: { action: deny, status: 429, reason: 'rate limit exceeded: 3 requests per 10m for session "s"' }
  - name: 2 earlier requests leave room
    given: { requests: { count: 2, within: 5m } }
    request: { url: https://llm.example/v1/x, session: s }
    expect: { action: allow }
  - name: requests older than the window do not count
    given: { requests: [{ count: 3, within: 1h }] }
    request: { url: https://llm.example/v1/x, session: s }
    expect: { action: allow }
  - name: another session's requests do not count
    given: { requests: { count: 5, session: other } }
    request: { url: https://llm.example/v1/x, session: s }
    expect: { action: allow }
  - name: denied earlier requests are not counted
    given: { requests: [{ count: 2, within: 1m }, { count: 4, within: 1m, url: https://llm.example/nope }] }
    request: { url: https://llm.example/v1/x, session: s }
    expect: { action: allow }
`,
  });
  assert.deepEqual(statuses(events), [
    ["3 earlier requests fill the window", "pass"],
    ["2 earlier requests leave room", "pass"],
    ["requests older than the window do not count", "pass"],
    ["another session's requests do not count", "pass"],
    ["denied earlier requests are not counted", "pass"],
  ]);
});

Deno.test("runner: spend and tokens, per-rule keys, per: run, and time", async () => {
  const events = await runIn({
    "policies/p.yaml": POLICY,
    "policies/p_test.yaml": `config: p.yaml
now: 2026-01-05T12:00:00Z
tests:
  - name: spend on the rule's own key (the default key is the rule)
    given: { spent_usd: 1 }
    request: { url: https://api.anthropic.com/ }
    expect: { action: deny, policy: spending_limit, reason: 'spending limit reached: $1.00 spent of $1.00 per 1h for rule "budget"; resets at 2026-01-05T13:00:00Z' }
  - name: spend charged to another rule does not count
    given: { spent_usd: 1, rule: chat }
    request: { url: https://api.anthropic.com/ }
    expect: { action: allow }
  - name: a budget with scope all counts another rule's spend
    given: { spent_usd: 3, rule: chat, session: s1 }
    request: { url: https://across.example/, session: s1 }
    expect: { action: deny, policy: spending_limit }
  - name: reported usage of earlier requests
    given: { requests: { count: 4, within: 30m, usd: 0.3 } }
    request: { url: https://api.anthropic.com/ }
    expect: { action: deny, status: 429, policy: spending_limit }
  - name: tokens of earlier requests
    given: { requests: { count: 2, tokens: 500 } }
    request: { url: https://tokens.example/ }
    expect: { action: deny, reason_contains: 1000 tokens per 1h }
  - name: per run budgets count the given spend
    given: { spent_usd: 2 }
    request: { url: https://run.example/ }
    expect: { action: deny, policy: spending_limit }
  - name: a budget keyed by a CEL expression is charged for its key
    given: { spent_usd: 1 }
    request: { url: "http://team.example/", headers: { x-team: ml } }
    expect: { action: deny, reason: 'spending limit reached: $1.00 spent of $1.00 per 1d for key "ml"; resets at 2026-01-06T12:00:00Z' }
  - name: the file's now is a Monday noon
    request: { url: https://office.example/ }
    expect: { action: allow }
  - name: a case's now wins
    now: 2026-01-04T12:00:00Z
    request: { url: https://office.example/ }
    expect: { action: deny, policy: time_window, status: 403 }
`,
  }, { paths: ["policies"] });
  assert.deepEqual(statuses(events), [
    ["spend on the rule's own key (the default key is the rule)", "pass"],
    ["spend charged to another rule does not count", "pass"],
    ["a budget with scope all counts another rule's spend", "pass"],
    ["reported usage of earlier requests", "pass"],
    ["tokens of earlier requests", "pass"],
    ["per run budgets count the given spend", "pass"],
    ["a budget keyed by a CEL expression is charged for its key", "pass"],
    ["the file's now is a Monday noon", "pass"],
    ["a case's now wins", "pass"],
  ]);
});

Deno.test("runner: failures carry mismatches and the trace; a bad given request is a file error", async () => {
  const events = await runIn({
    "agentgate.yaml": POLICY,
    "a_test.yaml": `tests:
  - name: wrong
    request: { url: "http://office.example/" }
    expect: { action: deny, rule: chat, source: nope.yaml:1, reason_contains: zzz }
`,
    "b_test.yaml": `tests:
  - name: bad given url
    given: { requests: { count: 1, url: "not a url" } }
    request: { url: "http://office.example/" }
    expect: { action: allow }
`,
  }, { run: /./ });
  const [wrong, bad] = events;
  assert.equal(wrong.type, "case");
  if (wrong.type !== "case" || bad.type !== "file-error") return assert.fail();
  assert.deepEqual(wrong.mismatches.map((m) => m.key), [
    "action",
    "rule",
    "reason_contains",
    "source",
  ]);
  assert.equal(wrong.actual?.rule_source, "agentgate.yaml:29");
  assert.equal(wrong.trace?.length, 6);
  assert.deepEqual(bad.problems.map((p) => `${p.line}:${p.col}: ${p.message}`), [
    '3:41: invalid URL "not a url": use an absolute http:// or https:// URL with a host',
  ]);
});

Deno.test("runner: compare checks only the keys given", () => {
  const actual = {
    action: "deny" as const,
    rule: null,
    rule_source: null,
    status: 403,
    reason: "no rule matched (default: deny)",
    policy: null,
  };
  assert.deepEqual(compare({}, actual), []);
  assert.deepEqual(compare({ action: "deny", rule: null, policy: null, status: 403 }, actual), []);
  assert.deepEqual(compare({ reason_contains: "default" }, actual), []);
  assert.deepEqual(compare({ source: "a.yaml:1" }, actual), [
    { key: "source", expected: "a.yaml:1", actual: null },
  ]);
  assert.deepEqual(
    compare({ source: "ci.yaml:3" }, { ...actual, rule_source: "policies/ci.yaml:3" }),
    [],
  );
  assert.equal(
    compare({ source: "ci.yaml:3" }, { ...actual, rule_source: "xci.yaml:3" }).length,
    1,
  );
});

Deno.test("runner: findTestFiles walks directories, skips dot and node_modules dirs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const f of [
        "a_test.yaml",
        "b/c_test.yml",
        "b/d.yaml",
        ".git/e_test.yaml",
        "node_modules/f_test.yaml",
      ]
    ) {
      await Deno.mkdir(`${dir}/${f}`.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${f}`, "");
    }
    const r = findTestFiles([".", "b/d.yaml", "missing"], dir);
    assert.deepEqual(r.files.map((f) => f.slice(dir.length + 1)), [
      "a_test.yaml",
      "b/c_test.yml",
      "b/d.yaml",
    ]);
    assert.deepEqual(r.missing, ["missing"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runner: request.dest_ip feeds address rules, dest.ip and the address guard", async () => {
  const policy = `version: 1
default: log
rules:
  - name: internal
    match: 10.0.0.0/8
    action: allow
  - name: cond
    match: cond.test
    when: dest.ip.startsWith("93.")
    action: allow
`;
  const events = await runIn({
    "agentgate.yaml": policy,
    "a_test.yaml": `tests:
  - name: a name in the internal range
    request: { url: http://db.test/, dest_ip: 10.1.2.3 }
    expect: { action: allow, rule: internal }
  - name: a name that resolves to the metadata address
    request: { url: http://meta.test/, dest_ip: [169.254.169.254] }
    expect:
      action: deny
      policy: address
      reason: '"meta.test" resolves to 169.254.169.254 (link-local / cloud metadata): denied'
  - name: a literal address needs no dest_ip
    request: { url: "http://[64:ff9b::7f00:1]/" }
    expect: { action: deny, policy: address, reason: "address 127.0.0.1 (loopback): denied" }
  - name: a public answer is the one connected to
    request: { url: http://cond.test/, dest_ip: [10.0.0.9, 93.184.216.34] }
    expect: { action: allow, rule: cond }
  - name: without dest_ip the address rule says what it needs
    request: { url: http://db.test/ }
    expect: { action: allow }
`,
  });
  const cases = events.filter((e) => e.type === "case");
  assert.deepEqual(statuses(events).slice(0, 4), [
    ["a name in the internal range", "pass"],
    ["a name that resolves to the metadata address", "pass"],
    ["a literal address needs no dest_ip", "pass"],
    ["a public answer is the one connected to", "pass"],
  ]);
  const last = cases[4];
  assert.equal(last.type === "case" && last.status, "fail");
  assert.equal(
    last.type === "case" && last.actual?.reason,
    'rule "internal" (agentgate.yaml:4) matches by address (10.0.0.0/8), so it needs the resolved address of "db.test"',
  );
});
