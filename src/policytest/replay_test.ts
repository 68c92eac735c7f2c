import assert from "node:assert/strict";
import { parseConfig } from "../config/load.ts";
import type { AuditRowWithHeaders } from "../audit/read.ts";
import { recordedDecision, replay, requestOfRow } from "./replay.ts";
import { replayMarkdown, replayText } from "./replay_report.ts";

const T0 = Date.parse("2026-03-02T10:00:00Z");

function row(over: Partial<AuditRowWithHeaders> & { id: string }): AuditRowWithHeaders {
  return {
    ts: T0,
    session: "ci",
    label: null,
    client: "127.0.0.1",
    method: "GET",
    scheme: "http",
    host: "example.com",
    port: 80,
    path: "/",
    query: null,
    headers: "{}",
    status: 200,
    decision: "allow",
    rule: "r",
    rule_source: "old.yaml:3",
    reason: 'matched rule "r"',
    policy: null,
    error: null,
    bytes_in: 0,
    duration_ms: 1,
    model: null,
    cost_usd: null,
    input_tokens: null,
    output_tokens: null,
    bytes_out: 0,
    provider: null,
    cache_read_tokens: null,
    cache_write_tokens: null,
    reasoning_tokens: null,
    usage_partial: null,
    price_unknown: null,
    price_source: null,
    price_incomplete: null,
    price_missing: null,
    service_tier: null,
    reserved_usd: null,
    charged_usd: null,
    dest_ip: null,
    inspection: null,
    findings_count: 0,
    ...over,
  };
}

Deno.test("replay: what a recorded row says the policy decided", () => {
  assert.equal((recordedDecision(row({ id: "a" })) as { outcome: string }).outcome, "allowed");
  assert.equal(
    (recordedDecision(row({ id: "b", decision: "would_deny" })) as { outcome: string }).outcome,
    "denied",
  );
  assert.deepEqual(
    recordedDecision(row({ id: "c", decision: "error", error: "upstream timeout", reason: "x" })),
    {
      verdict: "forwarded",
      outcome: "allowed",
      rule: "r",
      rule_source: "old.yaml:3",
      reason: "x",
      policy: null,
    },
  );
  const skip = (over: Partial<AuditRowWithHeaders>) =>
    (recordedDecision(row({ id: "s", ...over })) as { skip: string }).skip;
  assert.equal(skip({ decision: "deny", rule: null, status: 407 }), "proxy authentication");
  assert.equal(skip({ decision: "deny", rule: null, status: 421 }), "misdirected request");
  assert.equal(skip({ decision: "error", rule: null, status: 508 }), "request loop");
  assert.equal(
    skip({ decision: "error", error: "client aborted" }),
    "client aborted before the decision",
  );
  assert.equal(skip({ decision: "error", error: "leaf certificate" }), "TLS interception failed");
});

Deno.test("replay: recorded requests become what the proposed policy's proxy would see", () => {
  const { config } = parseConfig(
    "version: 1\ntls: { intercept: [api.openai.com] }\n",
    "n.yaml",
    "/",
  );
  const inner = row({ id: "i", scheme: "https", host: "api.openai.com", port: 443, path: "/v1/x" });
  assert.equal(requestOfRow(config, inner).kind, "intercepted");
  const wasInner = row({
    id: "j",
    scheme: "https",
    host: "other.example",
    port: 443,
    path: "/v1/x",
  });
  assert.equal(requestOfRow(config, wasInner).kind, "tunnel");
  const tunnel = row({ id: "t", method: "CONNECT", scheme: "https", path: null, headers: null });
  assert.equal(requestOfRow(config, tunnel).info.path, null);
  const h = requestOfRow(config, row({ id: "h", headers: '{"x-team":"ml"}', query: "a=1" }));
  assert.deepEqual(h.info.headers, { "x-team": "ml" });
  assert.equal(h.info.query, "a=1");
});

Deno.test("replay: rate state replays in time order; spend comes from recorded costs", () => {
  const { config } = parseConfig(
    `version: 1
tls: { intercept: [api.openai.com] }
rules:
  - name: limited
    match: example.com
    action: allow
    policies:
      - rate_limit: { requests: 2, per: 1m, key: session }
  - name: openai
    match: api.openai.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 1, per: 1d, key: session }
  - name: team
    match: team.example
    when: request.headers["x-team"] == "ml"
    action: allow
  - name: bodies
    match: body.example
    when: body.ok == true
    action: allow
`,
    "new.yaml",
    "/",
  );
  const llm = {
    method: "POST",
    scheme: "https",
    host: "api.openai.com",
    port: 443,
    path: "/v1/chat/completions",
    rule: "openai",
    bytes_in: 100,
    model: "gpt-4o-mini",
  };
  const rows = [
    row({ id: "1", ts: T0, rule: "limited" }),
    row({ id: "2", ts: T0 + 1000, rule: "limited" }),
    row({ id: "3", ts: T0 + 2000, rule: "limited" }), // third in a minute: denied now
    row({ id: "4", ts: T0 + 61_000, rule: "limited" }), // the first left the window
    row({ id: "5", ts: T0 + 70_000, rule: "limited", session: "other" }),
    row({ id: "6", ...llm, ts: T0 + 80_000, cost_usd: 0.6 }),
    row({ id: "7", ...llm, ts: T0 + 90_000, cost_usd: 0.6 }),
    row({ id: "8", ...llm, ts: T0 + 100_000, cost_usd: 0.1 }), // $1.20 spent: denied now
    row({ id: "9", ...llm, ts: T0 + 110_000, model: null, session: "other" }), // no model: needs body
    row({
      id: "a",
      ts: T0 + 120_000,
      host: "team.example",
      headers: '{"x-team":"ml"}',
      rule: "team",
    }),
    row({
      id: "b",
      ts: T0 + 130_000,
      host: "body.example",
      rule: "bodies",
      method: "POST",
      bytes_in: 9,
    }),
    row({ id: "c", ts: T0 + 140_000, host: "body.example", rule: null, decision: "deny" }),
    row({ id: "d", ts: T0 + 150_000, decision: "deny", rule: null, status: 407 }),
  ];
  const r = replay(config, rows, { examples: 10 });
  assert.equal(r.total, 13);
  assert.deepEqual(r.counts, {
    allow_to_deny: 2,
    deny_to_allow: 0,
    rule_changed: 1,
    unchanged: 7,
    needs_body: 2,
    needs_dest: 0,
  });
  assert.deepEqual(r.skipped, { count: 1, reasons: { "proxy authentication": 1 } });
  assert.deepEqual(r.examples.allow_to_deny.map((e) => [e.ts - T0, e.after?.policy]), [
    [2000, "rate_limit"],
    [100_000, "spending_limit"],
  ]);
  // A GET without a body under a body rule is decided (the condition fails), not "needs body".
  assert.deepEqual(r.examples.rule_changed.map((e) => [e.url, e.before.rule, e.after?.reason]), [
    [
      "http://body.example/",
      null,
      'condition error in rule "bodies": Request body is not available: it is not JSON, it is larger than limits.max_body_bytes, or the request has none',
    ],
  ]);
  // A body was sent (bytes_in) but not recorded; or only the model was needed and it is unknown.
  assert.deepEqual(r.examples.needs_body.map((e) => e.ts - T0), [110_000, 130_000]);
  assert.equal(r.first, T0);
  assert.equal(r.last, T0 + 140_000);

  const text = replayText(r, { config: "new.yaml", audit: "a.db", since: null });
  assert.match(text, /^replayed 12 of 13 recorded request\(s\) from a\.db under new\.yaml\n/);
  const md = replayMarkdown(r, { config: "new.yaml", audit: "a.db", since: null });
  assert.match(md, /\| `POST https:\/\/api\.openai\.com\/v1\/chat\/completions` \| `ci` \|/);
});

Deno.test("replay: a budget counts its own rule's spend unless scope: all, like the proxy", () => {
  const policy = (scope: string) =>
    parseConfig(
      `version: 1
tls: { intercept: [api.openai.com, api.anthropic.com] }
rules:
  - name: openai
    match: api.openai.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 1, per: day, key: session, tz: UTC${scope} }
  - name: claude
    match: api.anthropic.com/v1/**
    action: allow
`,
      "new.yaml",
      "/",
    ).config;
  const call = (id: string, host: string, rule: string, ts: number, cost: number | null) =>
    row({
      id,
      ts,
      method: "POST",
      scheme: "https",
      host,
      port: 443,
      path: host === "api.openai.com" ? "/v1/chat/completions" : "/v1/messages",
      rule,
      bytes_in: 100,
      model: host === "api.openai.com" ? "gpt-4o-mini" : "claude-sonnet-4-20250514",
      cost_usd: cost,
      charged_usd: cost,
    });
  const rows = [
    call("1", "api.anthropic.com", "claude", T0, 0.7),
    call("2", "api.anthropic.com", "claude", T0 + 1000, 0.7),
    call("3", "api.openai.com", "openai", T0 + 2000, 0.01),
  ];
  // Only rule "openai"'s spend counts: $0 before the call.
  assert.equal(replay(policy(""), rows).counts.allow_to_deny, 0);
  // scope: all counts the session's $1.40 through "claude" as well.
  const all = replay(policy(", scope: all"), rows, { examples: 5 });
  assert.equal(all.counts.allow_to_deny, 1);
  assert.match(
    all.examples.allow_to_deny[0].after!.reason,
    /^spending limit reached: \$1\.40 spent \+ \$0\.00 reserved in flight \+ \$0\.0025 for this call > \$1\.00 per day \(UTC\) for session "ci"; resets at 2026-03-03T00:00:00Z$/,
  );
});

Deno.test("replay: identical examples are counted once; markdown escapes pipes", () => {
  const { config } = parseConfig("version: 1\nrules: []\n", "n.yaml", "/");
  const rows = [1, 2, 3].map((i) => row({ id: `${i}`, ts: T0 + i, path: "/a|b" }));
  const r = replay(config, rows, { examples: 1 });
  assert.equal(r.counts.allow_to_deny, 3);
  assert.equal(r.examples.allow_to_deny.length, 1);
  assert.equal(r.examples.allow_to_deny[0].count, 3);
  const md = replayMarkdown(r, { config: "n.yaml", audit: "a.db", since: T0 });
  assert.match(md, /\| `GET http:\/\/example\.com\/a\\\|b` ×3 \|/);
  assert.ok(!md.includes("more."));
});
