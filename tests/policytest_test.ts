/**
 * Policy as code, end to end: `agentgate test`, `eval`, `replay`, `schema`
 * and `fmt` in-process through `runMain` on fixture policy trees, the policy
 * packs in `policies/`, and `test` and `replay` as real processes — `replay`
 * on an audit written by a real proxy run.
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { runMain } from "../main.ts";
import { memoryIo } from "../src/cli/io.ts";
import { validateJsonSchema } from "./support/jsonschema.ts";
import { auditRows, curl, MAIN, startOrigin, startProxy, waitForRows } from "./helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

async function run(args: string[], cwd?: string) {
  const io = memoryIo({ cwd });
  const code = await runMain(args, io);
  return { code, out: io.out.join(""), err: io.err.join("") };
}

/** Write a tree of files under a fresh temp dir. */
async function tree(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-pt-" });
  for (const [name, text] of Object.entries(files)) {
    const path = `${dir}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
  return dir;
}

/**
 * A minimal XML well-formedness check: one root, every tag closed in order,
 * attributes quoted and unique, only the five predefined entities.
 * Returns the elements with their attributes, in document order.
 */
function parseXml(xml: string): { name: string; attrs: Record<string, string>; text: string }[] {
  let s = xml.replace(/^<\?xml[^?]*\?>\s*/, "");
  const out: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const stack: { name: string; attrs: Record<string, string>; text: string }[] = [];
  let roots = 0;
  const checkText = (t: string) => {
    assert.ok(!/[<>]/.test(t), `raw markup in text: ${t}`);
    for (const m of t.matchAll(/&([^;\s]*);?/g)) {
      assert.ok(["amp", "lt", "gt", "quot", "apos"].includes(m[1]), `bad entity ${m[0]}`);
      assert.ok(m[0].endsWith(";"), `unterminated entity ${m[0]}`);
    }
  };
  while (s.length) {
    const lt = s.indexOf("<");
    if (lt === -1) {
      assert.equal(s.trim(), "", "text after the root element");
      break;
    }
    const text = s.slice(0, lt);
    checkText(text);
    if (stack.length) stack[stack.length - 1].text += text;
    else assert.equal(text.trim(), "", "text outside the root element");
    const gt = s.indexOf(">", lt);
    assert.ok(gt !== -1, "unterminated tag");
    const tag = s.slice(lt + 1, gt);
    s = s.slice(gt + 1);
    if (tag.startsWith("/")) {
      const open = stack.pop();
      assert.equal(open?.name, tag.slice(1).trim(), "mismatched closing tag");
      continue;
    }
    const selfClosing = tag.endsWith("/");
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"]*")*)\s*$/.exec(body);
    assert.ok(m, `malformed tag <${tag}>`);
    const attrs: Record<string, string> = {};
    for (const a of m[2].matchAll(/([A-Za-z_][\w.-]*)="([^"]*)"/g)) {
      assert.ok(!(a[1] in attrs), `duplicate attribute ${a[1]}`);
      checkText(a[2]);
      attrs[a[1]] = a[2];
    }
    const el = { name: m[1], attrs, text: "" };
    out.push(el);
    if (stack.length === 0) roots++;
    if (!selfClosing) stack.push(el);
  }
  assert.equal(stack.length, 0, "unclosed elements");
  assert.equal(roots, 1, "exactly one root element");
  return out;
}

const POLICY = `version: 1
default: deny
tls:
  intercept: [api.openai.com]
include: [rules/*.yaml]
rules:
  - name: metadata
    match: 169.254.169.254
    action: deny
    reason: no metadata
`;

const LLM_RULES = `version: 1
rules:
  - name: openai-chat
    match: api.openai.com/v1/**
    methods: [POST]
    when: body.model.startsWith("gpt-4o")
    action: allow
    policies:
      - rate_limit: { requests: 60, per: 1m, key: session }
      - spending_limit: { usd: 5, per: 1d, key: session }
  - name: example
    match: example.com
    action: allow
`;

const PASSING = `tests:
  - name: chat completions allowed for the CI session
    request:
      method: POST
      url: https://api.openai.com/v1/chat/completions
      session: ci
      body: { model: gpt-4o-mini }
    expect: { action: allow, rule: openai-chat, source: rules/llm.yaml:3 }
  - name: 61st request in a minute is rate limited
    given: { requests: { count: 60, within: 1m } }
    request:
      method: POST
      url: https://api.openai.com/v1/chat/completions
      session: ci
      body: { model: gpt-4o-mini }
    expect: { action: deny, status: 429, reason_contains: rate limit, policy: rate_limit }
  - name: 60th request still passes
    given: { requests: { count: 59, within: 1m } }
    request:
      method: POST
      url: https://api.openai.com/v1/chat/completions
      session: ci
      body: { model: gpt-4o-mini }
    expect: { action: allow }
  - name: over budget
    given: { spent_usd: 5.01, session: ci }
    now: 2026-03-02T10:00:00+01:00
    request:
      method: POST
      url: https://api.openai.com/v1/chat/completions
      session: ci
      body: { model: gpt-4o-mini }
    expect:
      action: deny
      policy: spending_limit
      reason: 'spending limit reached: $5.01 spent + $0.00 reserved in flight + $0.0025 for this call > $5.00 per 1d for session "ci"; resets at 2026-03-03T09:00:00Z'
  - name: another session has its own budget
    given: { spent_usd: 5.01, session: other }
    request:
      method: POST
      url: https://api.openai.com/v1/chat/completions
      session: ci
      body: { model: gpt-4o-mini }
    expect: { action: allow }
  - name: a tunnel to a host that is not intercepted
    request: { url: https://example.com/anything }
    expect: { action: allow, rule: example }
  - name: metadata denied
    request: { url: "http://169.254.169.254/latest" }
    expect: { action: deny, rule: metadata, reason: no metadata }
  - name: registry mirror
    todo: waits for the mirror
`;

const FAILING = `config: ../agentgate.yaml
tests:
  - name: wrong model is expected to pass
    request:
      method: POST
      url: https://api.openai.com/v1/chat/completions
      body: { model: o3 }
    expect: { action: allow, rule: openai-chat }
  - name: passes
    request: { url: http://example.com/ }
    expect: { action: allow }
`;

Deno.test("policytest e2e: --help of every new command", async () => {
  for (const cmd of ["test", "eval", "replay", "schema", "fmt"]) {
    const r = await run([cmd, "--help"]);
    assert.equal(r.code, 0, cmd);
    assert.match(r.out, new RegExp(`^Usage: agentgate ${cmd}`, "m"), cmd);
    assert.match(r.out, /Exit status|JSON Schema/, cmd);
  }
  const top = await run(["--help"]);
  for (const cmd of ["test", "eval", "replay", "schema", "fmt"]) {
    assert.match(top.out, new RegExp(`^  ${cmd}\\s`, "m"), cmd);
  }
});

Deno.test("policytest e2e: test passes, fails with a diff, skips todo, finds config up the tree", async () => {
  const dir = await tree({
    "agentgate.yaml": POLICY,
    "rules/llm.yaml": LLM_RULES,
    "rules/llm_test.yaml": PASSING,
    "tests/failing_test.yaml": FAILING,
  });
  try {
    const ok = await run(["test", "rules"], dir);
    assert.equal(ok.err, "");
    assert.equal(
      ok.out,
      [
        "rules/llm_test.yaml",
        "  ok    chat completions allowed for the CI session",
        "  ok    61st request in a minute is rate limited",
        "  ok    60th request still passes",
        "  ok    over budget",
        "  ok    another session has its own budget",
        "  ok    a tunnel to a host that is not intercepted",
        "  ok    metadata denied",
        "  todo  registry mirror (waits for the mirror)",
        "",
        "7 passed, 0 failed, 1 skipped",
        "",
      ].join("\n"),
    );
    assert.equal(ok.code, 0);

    const all = await run(["test"], dir);
    assert.equal(all.code, 1);
    const failing = all.out.slice(all.out.indexOf("tests/failing_test.yaml"));
    assert.equal(
      failing,
      [
        "tests/failing_test.yaml",
        "  FAIL  wrong model is expected to pass",
        "        at tests/failing_test.yaml:3",
        "        request: POST https://api.openai.com/v1/chat/completions (intercepted)",
        "        expected (-) vs actual (+):",
        '        - action: "allow"',
        '        + action: "deny"',
        '        - rule: "openai-chat"',
        "        + rule: null",
        "        decision: deny by the default, status 403: no rule matched (default: deny)",
        "        trace:",
        '          1. metadata (agentgate.yaml:7): no-match: https://api.openai.com:443/v1/chat/completions does not match "169.254.169.254"',
        '          2. openai-chat (rules/llm.yaml:3): condition-false: condition body.model.startsWith("gpt-4o") is false',
        '          3. example (rules/llm.yaml:11): no-match: https://api.openai.com:443/v1/chat/completions does not match "example.com"',
        "  ok    passes",
        "",
        "8 passed, 1 failed, 1 skipped",
        "",
      ].join("\n"),
    );

    const only = await run(["test", "--run", "^over", "."], dir);
    assert.equal(only.code, 0);
    assert.equal(only.out, "rules/llm_test.yaml\n  ok    over budget\n\n1 passed, 0 failed\n");

    const bad = await run(["test", "--run", "("], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^agentgate test: invalid --run regular expression/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policytest e2e: test --format json and junit", async () => {
  const dir = await tree({
    "agentgate.yaml": POLICY,
    "rules/llm.yaml": LLM_RULES,
    "rules/llm_test.yaml": PASSING,
    "tests/failing_test.yaml": FAILING,
    "tests/broken_test.yaml":
      "tests:\n  - name: x\n    request: { url: http://example.com/ }\n    expekt: {}\n",
  });
  try {
    const json = await run(["test", "--format", "json"], dir);
    assert.equal(json.code, 1);
    const doc = JSON.parse(json.out);
    assert.equal(doc.ok, false);
    assert.deepEqual([doc.passed, doc.failed, doc.skipped, doc.file_errors], [8, 1, 1, 1]);
    const fail = doc.results.find((r: { status: string }) => r.status === "fail");
    assert.equal(fail.name, "wrong model is expected to pass");
    assert.equal(fail.line, 3);
    assert.deepEqual(fail.mismatches, [
      { key: "action", expected: "allow", actual: "deny" },
      { key: "rule", expected: "openai-chat", actual: null },
    ]);
    assert.equal(fail.actual.reason, "no rule matched (default: deny)");
    assert.equal(fail.trace.length, 3);
    assert.deepEqual(doc.errors, [{
      file: "tests/broken_test.yaml",
      problems: [{
        severity: "error",
        file: "tests/broken_test.yaml",
        line: 4,
        col: 5,
        message: 'unknown key "expekt" in "tests.0" (did you mean "expect"?)',
      }],
    }]);

    const junit = await run(["test", "-f", "junit"], dir);
    assert.equal(junit.code, 1);
    const els = parseXml(junit.out);
    const root = els[0];
    assert.equal(root.name, "testsuites");
    assert.deepEqual(
      [root.attrs.tests, root.attrs.failures, root.attrs.errors, root.attrs.skipped],
      ["11", "1", "1", "1"],
    );
    const suites = els.filter((e) => e.name === "testsuite");
    assert.deepEqual(suites.map((s) => [s.attrs.name, s.attrs.tests]), [
      ["rules/llm_test.yaml", "8"],
      ["tests/broken_test.yaml", "1"],
      ["tests/failing_test.yaml", "2"],
    ]);
    assert.equal(els.filter((e) => e.name === "testcase").length, 11);
    const failure = els.find((e) => e.name === "failure")!;
    assert.equal(
      failure.attrs.message,
      "action: expected &quot;allow&quot;, got &quot;deny&quot;; rule: expected &quot;openai-chat&quot;, got null",
    );
    assert.match(failure.text, /\n- rule: &quot;openai-chat&quot;\n\+ rule: null\n/);
    assert.equal(
      els.filter((e) => e.name === "skipped")[0].attrs.message,
      "todo: waits for the mirror",
    );
    assert.match(els.find((e) => e.name === "error")!.text, /broken_test\.yaml:4:5: unknown key/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policytest e2e: test reports broken test files and policies with file:line:col", async () => {
  const dir = await tree({
    "agentgate.yaml": POLICY,
    "rules/llm.yaml": LLM_RULES,
    "bad/keys_test.yaml": `config: ../agentgate.yaml
tests:
  - name: typo
    request: { url: "http://example.com/", metod: GET }
    expect: { action: alow }
  - name: no expectation
    request: { url: "ftp://example.com/" }
`,
    "bad/yaml_test.yaml": "tests:\n  - name: [unclosed\n",
    "bad/time_test.yaml": "now: 2026-03-02T10:00:00\ntests: []\n",
    "bad/nothing_test.yaml":
      "config: ../agentgate.yaml\ntests:\n  - name: empty\n    request: { url: http://example.com/ }\n",
    "cycle/agentgate.yaml": "version: 1\ninclude: [a.yaml]\n",
    "cycle/a.yaml": "version: 1\ninclude: [b.yaml]\n",
    "cycle/b.yaml": "version: 1\ninclude: [a.yaml]\n",
    "cycle/c_test.yaml":
      "tests:\n  - name: x\n    request: { url: http://example.com/ }\n    expect: { action: deny }\n",
    "broken/agentgate.yaml": "version: 1\nrules:\n  - match: example.com\n    action: alow\n",
    "broken/x_test.yaml":
      "config: agentgate.yaml\ntests:\n  - name: x\n    request: { url: http://example.com/ }\n    expect: { action: deny }\n",
    "orphan/x_test.yaml":
      "config: missing.yaml\ntests:\n  - name: x\n    request: { url: http://example.com/ }\n    expect: { action: deny }\n",
  });
  try {
    const r = await run(["test", "bad", "cycle", "broken", "orphan", "nope"], dir);
    assert.equal(r.code, 1);
    assert.equal(
      r.out,
      [
        "nope: no such file or directory",
        'bad/keys_test.yaml:4:44: unknown key "metod" in "tests.0.request" (did you mean "method"?)',
        'bad/keys_test.yaml:5:23: "tests.0.expect.action" must be one of "allow", "deny", "log", "would_deny", not "alow" (did you mean "allow"?)',
        'bad/keys_test.yaml:7:21: invalid URL "ftp://example.com/": use an absolute http:// or https:// URL with a host',
        'bad/nothing_test.yaml:3:5: test "empty" expects nothing: add expect: { action: … } (or mark it todo:)',
        'bad/time_test.yaml:1:6: time "2026-03-02T10:00:00" has no zone: add "Z" or an offset such as "+01:00"',
        "bad/yaml_test.yaml:3:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]",
        'broken/x_test.yaml:1:1: the policy under test "broken/agentgate.yaml" does not load:',
        'broken/agentgate.yaml:4:13: "action" of rule "example.com" must be one of "allow", "deny", "log", not "alow" (did you mean "allow"?)',
        'cycle/c_test.yaml: the policy under test "cycle/agentgate.yaml" does not load:',
        "cycle/b.yaml:2:11: include cycle: cycle/a.yaml -> cycle/b.yaml -> cycle/a.yaml",
        'orphan/x_test.yaml:1:1: the policy under test "orphan/missing.yaml" does not load:',
        "orphan/missing.yaml: file not found",
        "",
        "0 passed, 8 failed",
        "",
      ].join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policytest e2e: no tests found, and --fail-on-empty", async () => {
  const dir = await tree({ "agentgate.yaml": POLICY, "rules/llm.yaml": LLM_RULES });
  try {
    const r = await run(["test"], dir);
    assert.equal(r.code, 0);
    assert.equal(r.out, "no tests found\n0 passed, 0 failed\n");
    const strict = await run(["test", "--fail-on-empty"], dir);
    assert.equal(strict.code, 1);
    const filtered = await Deno.writeTextFile(`${dir}/a_test.yaml`, PASSING).then(() =>
      run(["test", "--fail-on-empty", "--run", "no such test"], dir)
    );
    assert.equal(filtered.code, 1);
    assert.equal(filtered.out, "no tests found\n0 passed, 0 failed\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policytest e2e: eval prints the decision and the trace", async () => {
  const dir = await tree({ "agentgate.yaml": POLICY, "rules/llm.yaml": LLM_RULES });
  try {
    const r = await run([
      "eval",
      "--url",
      "https://api.openai.com/v1/chat/completions",
      "-X",
      "POST",
      "--body",
      '{"model":"gpt-4o"}',
      "--session",
      "ci",
    ], dir);
    assert.equal(r.code, 0, r.err);
    assert.equal(
      r.out,
      [
        "config:   agentgate.yaml",
        "request:  POST https://api.openai.com/v1/chat/completions (intercepted)",
        "decision: allow",
        "rule:     openai-chat (rules/llm.yaml:3)",
        'reason:   matched rule "openai-chat"',
        "status:   200",
        "",
        "trace:",
        '  1. metadata (agentgate.yaml:7): no-match: https://api.openai.com:443/v1/chat/completions does not match "169.254.169.254"',
        "  2. openai-chat (rules/llm.yaml:3): decided: action allow; rate_limit, spending_limit passed",
        "",
      ].join("\n"),
    );

    await Deno.writeTextFile(`${dir}/body.json`, '{"model":"o3"}');
    const miss = await run([
      "eval",
      "-c",
      "agentgate.yaml",
      "-u",
      "https://api.openai.com/v1/chat/completions",
      "-X",
      "POST",
      "-d",
      "@body.json",
      "--format",
      "json",
    ], dir);
    const doc = JSON.parse(miss.out);
    assert.equal(doc.decision.action, "deny");
    assert.equal(doc.decision.rule, null);
    assert.deepEqual(doc.trace.map((t: { outcome: string }) => t.outcome), [
      "no-match",
      "condition-false",
      "no-match",
    ]);

    const tunnel = await run(["eval", "--url", "https://unknown.example/"], dir);
    assert.match(
      tunnel.out,
      /^request: {2}CONNECT unknown\.example:443 \(tunnel: host and port only\)$/m,
    );
    assert.match(tunnel.out, /^ {2}-> no rule decided: no rule matched \(default: deny\)$/m);

    const usage = await run(["eval", "--method", "GET"], dir);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /missing option "--url"/);
    const badUrl = await run(["eval", "--url", "example.com"], dir);
    assert.equal(badUrl.code, 2);
    const badPolicy = await run(["eval", "--config", "nope.yaml", "--url", "http://a/"], dir);
    assert.equal(badPolicy.code, 1);
    assert.equal(badPolicy.err, "nope.yaml: file not found\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policytest e2e: eval --dest-ip, and replay re-judges recorded addresses", async () => {
  const policy = `version: 1
default: log
rules:
  - name: internal
    match: 10.0.0.0/8
    action: allow
`;
  const dir = await tree({ "agentgate.yaml": policy });
  try {
    const needs = await run(["eval", "--url", "http://db.test/"], dir);
    assert.equal(needs.code, 0, needs.err);
    assert.match(
      needs.out,
      /^reason: {3}rule "internal" \(agentgate\.yaml:4\) matches by address \(10\.0\.0\.0\/8\), so it needs the resolved address of "db\.test"$/m,
    );
    assert.match(needs.out, /^hint: {5}give the address it resolves to with --dest-ip/m);
    const inRange = await run(["eval", "--url", "http://db.test/", "--dest-ip", "10.2.3.4"], dir);
    assert.match(inRange.out, /^address: {2}10\.2\.3\.4$/m);
    assert.match(inRange.out, /^decision: allow$/m);
    const meta = await run([
      "eval",
      "--url",
      "http://db.test/",
      "--dest-ip",
      "169.254.169.254",
      "--format",
      "json",
    ], dir);
    const doc = JSON.parse(meta.out);
    assert.equal(doc.request.dest_ip, "169.254.169.254");
    assert.deepEqual([doc.decision.action, doc.decision.policy, doc.decision.reason], [
      "deny",
      "address",
      '"db.test" resolves to 169.254.169.254 (link-local / cloud metadata): denied',
    ]);
    const bad = await run(["eval", "--url", "http://db.test/", "--dest-ip", "nope"], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /dest_ip "nope" is not an IP address/);

    // Rows recorded before the guard existed: one with the address, one without.
    const { AuditStore } = await import("../src/audit/store.ts");
    const store = AuditStore.open(`${dir}/audit.db`, { flushMs: 60_000 });
    const base = {
      ts: Date.now() - 1000,
      session: null,
      label: null,
      client: "127.0.0.1",
      method: "GET",
      scheme: "http",
      port: 80,
      path: "/",
      query: null,
      status: 200,
      decision: "log" as const,
      rule: null,
      rule_source: null,
      reason: "no rule matched (default: log)",
      policy: null,
      bytes_in: 0,
      bytes_out: 1,
      duration_ms: 1,
      error: null,
      headers: "{}",
    };
    store.add({ ...base, id: "r1", host: "svc.test", dest_ip: "127.0.0.1" });
    store.add({ ...base, id: "r2", host: "svc2.test", dest_ip: null });
    store.add({ ...base, id: "r3", host: "pub.test", dest_ip: "93.184.216.34" });
    store.close();
    const replayed = await run(["replay", "--audit", "audit.db", "--format", "json"], dir);
    const r = JSON.parse(replayed.out);
    assert.deepEqual(r.counts, {
      allow_to_deny: 1,
      deny_to_allow: 0,
      rule_changed: 0,
      unchanged: 1,
      needs_body: 0,
      needs_dest: 1,
    });
    assert.equal(
      r.examples.allow_to_deny[0].after.reason,
      '"svc.test" resolves to 127.0.0.1 (loopback): denied',
    );
    const text = await run(["replay", "--audit", "audit.db"], dir);
    assert.match(text.out, /^ {2}needs address: {2}1$/m);
    assert.match(
      text.out,
      /now: cannot decide: a rule or the address guard needs the address the host resolved to/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policytest e2e: the policy packs pass check and their tests (in-process)", async () => {
  for await (const e of Deno.readDir(`${ROOT}/policies`)) {
    if (!e.name.endsWith(".yaml") || e.name.endsWith("_test.yaml")) continue;
    const r = await run(["check", "--config", `policies/${e.name}`, "--strict"], ROOT);
    assert.equal(r.code, 0, r.out);
    // The verdict is prose, on stderr; stdout holds the problems, here none (issue 16).
    assert.equal(r.out, "", e.name);
    assert.match(r.err, /^ok: /, e.name);
    assert.ok(
      await Deno.stat(`${ROOT}/policies/${e.name.replace(/\.yaml$/, "_test.yaml")}`),
      `${e.name} has a test file`,
    );
  }
  const r = await run(["test", "--fail-on-empty", "policies"], ROOT);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /\n\d+ passed, 0 failed\n$/);
  assert.ok(!r.out.includes("FAIL"));
  const f = await run(["fmt", "--check", "policies"], ROOT);
  assert.equal(f.code, 0, f.out);
});

Deno.test("policytest e2e: test --format junit as a real process on the packs", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "test", "--format", "junit", "policies"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr) + text);
  const els = parseXml(text);
  assert.equal(els[0].attrs.failures, "0");
  assert.equal(els[0].attrs.errors, "0");
  assert.ok(Number(els[0].attrs.tests) >= 40);
  assert.deepEqual(
    els.filter((e) => e.name === "testsuite").map((s) => s.attrs.name),
    [
      "policies/ci-baseline_test.yaml",
      "policies/llm-providers_test.yaml",
      "policies/package-registries_test.yaml",
      "policies/ssrf-guard_test.yaml",
    ],
  );
});

/** The yaml blocks of the README and docs that are whole files: policies and policy tests. */
async function docExamples(): Promise<{ file: string; text: string; value: object }[]> {
  const out: { file: string; text: string; value: object }[] = [];
  for (const file of ["README.md", "docs/policy-repo.md"]) {
    const md = await Deno.readTextFile(`${ROOT}/${file}`);
    for (const m of md.matchAll(/```yaml\n([\s\S]*?)```/g)) {
      let value: unknown;
      try {
        value = parseYaml(m[1]);
      } catch {
        continue; // a fragment (an indented snippet), not a file
      }
      if (value && typeof value === "object" && ("version" in value || "tests" in value)) {
        out.push({ file, text: m[1], value });
      }
    }
  }
  return out;
}

Deno.test("policytest e2e: schema validates the README examples and the packs, rejects broken files", async () => {
  const r = await run(["schema"]);
  assert.equal(r.code, 0);
  const schema = JSON.parse(r.out);
  assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.equal(schema.$id, "urn:agentgate:schema:policy:v1");
  assert.equal(schema.title, "agentgate policy");
  assert.deepEqual(schema.required, ["version"]);
  const include = JSON.parse((await run(["schema", "--for", "include"])).out);
  const testSchema = JSON.parse((await run(["schema", "--for", "test"])).out);

  const examples = await docExamples();
  assert.ok(examples.filter((e) => e.file === "README.md").length >= 1, "README has a policy");
  assert.ok(examples.filter((e) => "tests" in e.value).length >= 1, "docs have a test file");
  for (const ex of examples) {
    const s = "tests" in ex.value ? testSchema : schema;
    assert.deepEqual(validateJsonSchema(s, ex.value), [], `${ex.file}:\n${ex.text}`);
  }
  for await (const e of Deno.readDir(`${ROOT}/policies`)) {
    if (!e.name.endsWith(".yaml")) continue;
    const value = parseYaml(await Deno.readTextFile(`${ROOT}/policies/${e.name}`));
    if (e.name.endsWith("_test.yaml")) {
      assert.deepEqual(validateJsonSchema(testSchema, value), [], e.name);
      continue;
    }
    assert.deepEqual(validateJsonSchema(schema, value), [], e.name);
    if (e.name !== "ci-baseline.yaml") {
      assert.deepEqual(validateJsonSchema(include, value), [], `${e.name} as an include`);
    }
  }
  const broken: [string, string][] = [
    ["version: 1\ndefault: alow\n", "/default"],
    [
      "version: 1\nrules:\n  - match: a\n    action: allow\n    methdos: [GET]\n",
      "/rules/0/methdos",
    ],
    ["version: 1\nrules:\n  - match: 42\n    action: allow\n", "/rules/0/match"],
    ["version: 1\nrules:\n  - action: allow\n", "/rules/0"],
    ["version: 2\n", "/version"],
    ["rules: []\n", "/"],
    ["version: 1\naudit: { retention: 30 days }\n", "/audit/retention"],
    ["version: 1\nlimits: { max_body_bytes: 0 }\n", "/limits/max_body_bytes"],
    ["version: 1\ntls: { leaf_key: rsa-4096 }\n", "/tls/leaf_key"],
    ["version: 1\nrules: { a: 1 }\n", "/rules"],
  ];
  for (const [text, path] of broken) {
    const errors = validateJsonSchema(schema, parseYaml(text));
    assert.ok(errors.length > 0, `schema accepts ${text}`);
    assert.equal(errors[0].path, path, text);
  }
  // An include may not set the listener or the default.
  assert.ok(validateJsonSchema(include, { version: 1, default: "allow" }).length > 0);
});

Deno.test("policytest e2e: fmt keeps comments, is idempotent, --check lists files", async () => {
  const messy = `# top comment

version:   1
default:    deny   # trailing comment
include:
- rules.yaml
rules:
    # before the first rule
    - name: a
      match: [ "a.example.com",  b.example.com ]
      action: allow
      policies:
          - rate_limit: {requests: 60, per: 1m}   # per minute

    - name: "quoted"
      match: 'single.example.com'
      action: deny
      reason: >-
        A long reason that was folded by hand
        across two lines.
`;
  const canonical = `# top comment

version: 1
default: deny # trailing comment
include:
  - rules.yaml
rules:
  # before the first rule
  - name: a
    match: ["a.example.com", b.example.com]
    action: allow
    policies:
      - rate_limit: { requests: 60, per: 1m } # per minute

  - name: "quoted"
    match: 'single.example.com'
    action: deny
    reason: >-
      A long reason that was folded by hand
      across two lines.
`;
  const dir = await tree({
    "agentgate.yaml": messy,
    "rules.yaml": "version: 1\nrules:\n- {match: c.example.com, action: log}\n",
  });
  try {
    const check = await run(["fmt", "--check"], dir);
    assert.equal(check.code, 1);
    // Changed deliberately (issue 16): stdout lists the files, the summary is on stderr.
    assert.equal(check.out, "agentgate.yaml\nrules.yaml\n");
    assert.equal(check.err, "2 of 2 file(s) not formatted: run agentgate fmt\n");
    assert.equal(
      await Deno.readTextFile(`${dir}/agentgate.yaml`),
      messy,
      "--check changes nothing",
    );

    const before = await run(["check"], dir);
    const r = await run(["fmt"], dir);
    assert.equal(r.code, 0);
    assert.equal(r.out, "agentgate.yaml\nrules.yaml\n");
    assert.equal(r.err, "2 of 2 file(s) changed\n");
    assert.equal(await Deno.readTextFile(`${dir}/agentgate.yaml`), canonical);
    assert.equal(
      await Deno.readTextFile(`${dir}/rules.yaml`),
      "version: 1\nrules:\n  - { match: c.example.com, action: log }\n",
    );
    // Same policy after formatting (check's summary), and a second run changes nothing.
    assert.equal((await run(["check"], dir)).err, before.err);
    const again = await run(["fmt", "--check"], dir);
    assert.equal(again.code, 0);
    assert.equal(again.out, "");
    assert.equal(again.err, "all 2 file(s) are formatted\n");

    await Deno.writeTextFile(`${dir}/broken.yaml`, "rules: [\n");
    const broken = await run(["fmt", "broken.yaml"], dir);
    assert.equal(broken.code, 1);
    assert.match(broken.err, /^broken\.yaml:2:1: invalid YAML: /);
    const none = await run(["fmt"], `${dir}/..`);
    assert.equal(none.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policytest e2e: replay an audit written by a real proxy under a changed policy", async () => {
  const origin = await startOrigin((req, res) => {
    req.resume();
    req.on("end", () => res.end("ok"));
  });
  // A port nobody listens on: the forwarded request fails upstream.
  const closed = await startOrigin((_q, r) => r.end());
  const closedPort = closed.port;
  await closed.close();
  const o = `127.0.0.1:${origin.port}`;
  const proxy = await startProxy({
    config: `version: 1
default: deny
proxy: { auth: [{ token: t0k, label: ci-0123abcd }] } # the token's session (issue 20)
audit: { path: ./audit.db }
rules:
  - name: api
    match: ${o}/api/**
    action: allow
  - name: admin
    match: ${o}/admin/**
    action: deny
  - name: rest
    match: ${o}
    action: log
  - name: closed
    match: 127.0.0.1:${closedPort}
    action: allow
`,
  });
  const dir = await Deno.makeTempDir();
  try {
    const via = ["-x", `http://ci-0123abcd:t0k@127.0.0.1:${proxy.port}`];
    const send = async (args: string[]) => {
      const r = await curl([...via, "-o", "/dev/null", "-w", "%{http_code}", ...args]);
      return r.out;
    };
    assert.equal(await send([`${origin.url}/api/a`]), "200");
    assert.equal(await send([`${origin.url}/api/b`]), "200");
    assert.equal(await send(["-X", "POST", "-d", '{"ok":true}', `${origin.url}/api/c`]), "200");
    assert.equal(await send([`${origin.url}/admin/x`]), "403");
    assert.equal(await send([`${origin.url}/other`]), "200");
    assert.equal(await send([`http://127.0.0.1:${closedPort}/`]), "502");
    assert.equal(await send(["http://127.0.0.2:9/"]), "403");
    const noAuth = await curl([
      "-x",
      proxy.url,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${origin.url}/api/a`,
    ]);
    assert.equal(noAuth.out, "407");
    await waitForRows(proxy.auditPath, 8);
    assert.equal(await proxy.stop(), 0);
    const rows = auditRows(proxy.auditPath);
    assert.deepEqual(rows.map((r) => [r.path, r.decision, r.rule]), [
      ["/api/a", "allow", "api"],
      ["/api/b", "allow", "api"],
      ["/api/c", "allow", "api"],
      ["/admin/x", "deny", "admin"],
      ["/other", "log", "rest"],
      ["/", "error", "closed"],
      ["/", "deny", null],
      // A 407 to a client that sent no credentials is a challenge, not a denial.
      ["/api/a", "challenge", null],
    ]);

    await Deno.writeTextFile(
      `${dir}/new.yaml`,
      `version: 1
default: deny
rules:
  - name: admin
    match: ${o}/admin/**
    action: allow
  - name: api-read
    match: ${o}/api/**
    methods: [GET]
    action: allow
    policies:
      - rate_limit: { requests: 1, per: 1h, key: session }
  - name: api-write
    match: ${o}/api/**
    when: body.ok == true
    action: allow
  - name: rest
    match: ${o}
    action: allow
  - name: closed
    match: 127.0.0.1:${closedPort}
    action: deny
`,
    );
    const args = ["replay", "--config", `${dir}/new.yaml`, "--audit", proxy.auditPath];
    const text = await run(args);
    assert.equal(text.code, 0, text.err);
    const lines = text.out.split("\n");
    assert.match(
      lines[0],
      /^replayed 7 of 8 recorded request\(s\) since \S+ from \/.*audit\.db under \/.*new\.yaml$/,
    );
    assert.deepEqual(lines.slice(1, 7), [
      "  allow -> deny:  2",
      "  deny -> allow:  1",
      "  rule changes:   2",
      "  needs body:     1",
      "  unchanged:      1",
      "  skipped:        1 (1 proxy authentication)",
    ]);
    const ts = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;
    const tail = lines.slice(7).join("\n");
    assert.match(
      tail,
      new RegExp(
        [
          "",
          "allow -> deny \\(2\\):",
          `  ${ts} GET http://${o}/api/b session ci-0123abcd`,
          `    was: allow by rule "api" \\(/.*/agentgate.yaml:6\\): matched rule "api"`,
          `    now: deny by rule "api-read" \\(/.*/new.yaml:7\\) \\[rate_limit\\]: rate limit exceeded: 1 request per 1h for session "ci-0123abcd"`,
          `  ${ts} GET http://127.0.0.1:${closedPort}/ session ci-0123abcd`,
          `    was: allow/log \\(upstream failed\\) by rule "closed" \\(/.*/agentgate.yaml:15\\): connection refused by "127.0.0.1:${closedPort}"`,
          `    now: deny by rule "closed" \\(/.*/new.yaml:20\\): denied by rule "closed"`,
          "",
          "deny -> allow \\(1\\):",
          `  ${ts} GET http://${o}/admin/x session ci-0123abcd`,
          `    was: deny by rule "admin" \\(/.*/agentgate.yaml:9\\): denied by rule "admin"`,
          `    now: allow by rule "admin" \\(/.*/new.yaml:4\\): matched rule "admin"`,
          "",
          "rule changes \\(2\\):",
          `  ${ts} GET http://${o}/api/a session ci-0123abcd`,
          `    was: allow by rule "api" .*`,
          `    now: allow by rule "api-read" .*`,
          `  ${ts} GET http://${o}/other session ci-0123abcd`,
          `    was: log by rule "rest" .*`,
          `    now: allow by rule "rest" .*`,
          "",
          "needs body \\(1\\):",
          `  ${ts} POST http://${o}/api/c session ci-0123abcd`,
          `    was: allow by rule "api" .*`,
          "    now: cannot decide: a condition or policy needs the request body, which the audit does not store",
          "$",
        ].join("\n"),
      ),
    );

    const json = JSON.parse((await run([...args, "--format", "json"])).out);
    assert.deepEqual(json.counts, {
      allow_to_deny: 2,
      deny_to_allow: 1,
      rule_changed: 2,
      unchanged: 1,
      needs_body: 1,
      needs_dest: 0,
    });
    assert.deepEqual(json.skipped, { count: 1, reasons: { "proxy authentication": 1 } });

    const md = await run([...args, "--format", "markdown", "--examples", "1"]);
    assert.match(
      md.out,
      /^### agentgate replay: :warning: 2 recorded request\(s\) that were allowed would now be denied\n/,
    );
    assert.match(md.out, /\n\| allow → deny \| 2 \|\n\| deny → allow \| 1 \|\n/);
    assert.match(md.out, /<details open><summary>allow → deny \(2\)<\/summary>/);
    assert.match(md.out, /\n…and 1 more\.\n/);

    // The same policy as recorded: nothing changes, --fail-on-change passes.
    const same = await run([
      "replay",
      "--config",
      `${proxy.dir}/agentgate.yaml`,
      "--fail-on-change",
      "deny",
      "--since",
      "all",
    ]);
    assert.equal(same.code, 0, same.out + same.err);
    assert.match(same.out, /\n {2}unchanged: {6}7\n/);

    // As a real process, for the pull-request workflow: exit 1 on allow -> deny.
    const proc = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args, "--format", "markdown", "--fail-on-change", "deny"],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(proc.code, 1, new TextDecoder().decode(proc.stderr));
    assert.match(new TextDecoder().decode(proc.stdout), /^### agentgate replay: :warning: 2 /);

    const missing = await run([
      "replay",
      "--config",
      `${dir}/new.yaml`,
      "--audit",
      `${dir}/none.db`,
    ]);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.err,
      `agentgate replay: cannot open audit "${dir}/none.db": file not found\n`,
    );
    const badSince = await run(["replay", "--config", `${dir}/new.yaml`, "--since", "yesterday"]);
    assert.equal(badSince.code, 2);
  } finally {
    await proxy.dispose();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});
