/**
 * The engine with conditions and policies: injected time and state, exact
 * decisions and reasons, no sleeping.
 */
import assert from "node:assert/strict";
import { decide } from "./engine.ts";
import { parseConfig } from "../config/load.ts";
import { PolicyState } from "../state/mod.ts";
import type { RequestInfo } from "./types.ts";

const POLICY = `version: 1
default: deny
rules:
  - name: ml-team
    match: api.example.test/v1/**
    when: request.headers["x-team"] == "ml" && body.model.startsWith("gpt-4o")
    action: allow
  - name: skip-broken
    match: api.example.test/v1/**
    when: body.tier == "gold"
    on_error: skip
    action: allow
  - name: strict-broken
    match: api.example.test/v1/**
    when: body.tier == "silver"
    action: allow
  - name: rate
    match: rate.test
    action: allow
    policies:
      - rate_limit: { requests: 3, per: 1m, key: session }
  - name: two-policies
    match: two.test
    action: log
    policies:
      - rate_limit: { requests: 1, per: 1m, key: global }
      - spending_limit: { usd: 1, per: 1h, key: session }
  - name: budget
    match: budget.test
    action: allow
    policies:
      - spending_limit: { usd: 5, per: 1d, key: session }
  - name: office-hours
    match: office.test
    action: allow
    policies:
      - time_window: { days: mon-fri, hours: ["08:00-12:00", "13:00-20:00"], tz: Europe/Berlin }
`;

const { config } = parseConfig(POLICY, "p.yaml", "/");

function info(host: string, opts: Partial<RequestInfo> = {}): RequestInfo {
  return {
    id: crypto.randomUUID(),
    session: "ci",
    label: null,
    client: "10.0.0.5",
    method: "POST",
    scheme: "http",
    host,
    port: 80,
    path: "/v1/chat/completions",
    query: "",
    headers: {},
    ...opts,
  };
}

const T0 = Date.parse("2026-03-04T10:00:00Z"); // a Wednesday, 11:00 in Berlin

Deno.test("conditions: a rule that reads the body asks for it, then decides on it", () => {
  const state = new PolicyState({ startedAt: 0 });
  const req = info("api.example.test", { headers: { "x-team": "ml" } });
  const first = decide(config.policy, { info: req, now: T0, state, bodyRead: false });
  assert.equal(first.needsBody, true);
  assert.equal(first.rule, "ml-team");

  const allowed = decide(config.policy, {
    info: { ...req, body: { model: "gpt-4o-mini" } },
    now: T0,
    state,
    bodyRead: true,
  });
  assert.deepEqual([allowed.verdict, allowed.rule, allowed.reason], [
    "allow",
    "ml-team",
    'matched rule "ml-team"',
  ]);

  // The header condition fails -> next rules; skip-broken evaluates fine (false),
  // strict-broken is false too -> default deny.
  const other = decide(config.policy, {
    info: { ...req, headers: { "x-team": "web" }, body: { model: "gpt-4o", tier: "bronze" } },
    now: T0,
    state,
    bodyRead: true,
  });
  assert.deepEqual([other.verdict, other.rule, other.reason], [
    "deny",
    null,
    "no rule matched (default: deny)",
  ]);
});

Deno.test("conditions: evaluation errors deny with a reason, or skip with on_error: skip", () => {
  const state = new PolicyState({ startedAt: 0 });
  // No body at all (not JSON / too large): ml-team's condition errors on `body`.
  const d = decide(config.policy, {
    info: info("api.example.test", { headers: { "x-team": "ml" } }),
    now: T0,
    state,
    bodyRead: true,
  });
  assert.equal(d.verdict, "deny");
  assert.equal(d.rule, "ml-team");
  assert.equal(
    d.reason,
    'condition error in rule "ml-team": Request body is not available: it is not JSON, it is larger than limits.max_body_bytes, or the request has none',
  );
  // A body without `tier`: skip-broken is skipped, strict-broken denies.
  const d2 = decide(config.policy, {
    info: info("api.example.test", { body: { model: "x" } }),
    now: T0,
    state,
    bodyRead: true,
  });
  assert.equal(d2.rule, "strict-broken");
  assert.match(d2.reason, /^condition error in rule "strict-broken": No such key "tier"/);
});

Deno.test("rate_limit: a true sliding window with exact Retry-After, counting forwarded requests only", () => {
  const state = new PolicyState({ startedAt: 0 });
  const at = (ms: number) =>
    decide(config.policy, { info: info("rate.test"), now: T0 + ms, state });
  assert.equal(at(0).verdict, "allow");
  assert.equal(at(20_000).verdict, "allow");
  assert.equal(at(40_000).verdict, "allow");
  const over = at(59_999);
  assert.deepEqual(
    [over.verdict, over.status, over.policy, over.retryAfter, over.reason],
    ["deny", 429, "rate_limit", 1, 'rate limit exceeded: 3 requests per 1m for session "ci"'],
  );
  assert.equal(over.detail?.count, 3);
  // Exactly one window after the first request, it has left the window.
  assert.equal(at(60_000).verdict, "allow");
  // The denied request at 59.999 s did not take a slot: 20 s later one frees again.
  assert.equal(at(60_001).verdict, "deny");
  assert.equal(at(80_000).verdict, "allow");
  // Another session has its own bucket.
  const other = decide(config.policy, {
    info: info("rate.test", { session: "nightly" }),
    now: T0 + 80_000,
    state,
  });
  assert.equal(other.verdict, "allow");
});

Deno.test("policies: the first failing policy decides; passing ones are not committed", () => {
  const state = new PolicyState({ startedAt: 0 });
  // A budget counts its own rule's requests, per session (scope: rule).
  state.ledger.add(["rule:two-policies|session:ci"], T0 - 1000, 1);
  // rate_limit passes (would be the 1st), spending_limit fails -> deny, no slot taken.
  const d = decide(config.policy, { info: info("two.test"), now: T0, state });
  assert.deepEqual([d.verdict, d.policy, d.status], ["deny", "spending_limit", 429]);
  const ok = decide(config.policy, {
    info: info("two.test", { session: "other" }),
    now: T0,
    state,
  });
  assert.deepEqual([ok.verdict, ok.rule], ["log", "two-policies"]);
});

Deno.test("spending_limit: budget exactly reached is denied, just under is allowed", () => {
  const state = new PolicyState({ startedAt: 0 });
  state.ledger.add(["rule:budget|session:ci"], T0 - 3_600_000, 4.99);
  // Another rule's spend, or spend across rules, is not this budget's.
  state.ledger.add(["session:ci", "rule:two-policies|session:ci"], T0 - 1000, 10);
  assert.equal(
    decide(config.policy, { info: info("budget.test"), now: T0, state }).verdict,
    "allow",
  );
  state.ledger.add(["rule:budget|session:ci"], T0 - 1000, 0.01);
  const d = decide(config.policy, { info: info("budget.test"), now: T0, state });
  assert.deepEqual([d.verdict, d.status, d.policy], ["deny", 429, "spending_limit"]);
  // It fits again once the $4.99 leaves the window, 23 h from now.
  assert.equal(
    d.reason,
    'spending limit reached: $5.00 spent of $5.00 per 1d for session "ci"; resets at 2026-03-05T09:00:00Z',
  );
  assert.equal(d.retryAfter, 23 * 3600);
  // 24 h after the first cost, $0.01 remains in the window: allowed again.
  const later = decide(config.policy, {
    info: info("budget.test"),
    now: T0 - 3_600_000 + 86_400_000 + 1,
    state,
  });
  assert.equal(later.verdict, "allow");
});

Deno.test("time_window: lunch break and weekend in Europe/Berlin say when they open", () => {
  const state = new PolicyState({ startedAt: 0 });
  const at = (iso: string) =>
    decide(config.policy, { info: info("office.test"), now: Date.parse(iso), state });
  assert.equal(at("2026-03-04T10:00:00Z").verdict, "allow"); // Wed 11:00
  const lunch = at("2026-03-04T11:30:00Z"); // Wed 12:30
  assert.deepEqual([lunch.verdict, lunch.status, lunch.policy], ["deny", 403, "time_window"]);
  assert.equal(
    lunch.reason,
    "outside time window mon-fri 08:00-12:00,13:00-20:00 Europe/Berlin: opens Wed 13:00",
  );
  const weekend = at("2026-03-07T10:00:00Z"); // Sat
  assert.match(weekend.reason, /: opens Mon 08:00$/);
  // Summer time: 07:30 UTC on Mon 30 March 2026 is 09:30 in Berlin (CEST).
  assert.equal(at("2026-03-30T06:30:00Z").verdict, "allow");
});

Deno.test("audit mode: a failing policy is recorded as would_deny and takes no slot", () => {
  const { config: audit } = parseConfig(
    POLICY.replace("default: deny", "default: deny\nmode: audit"),
    "p.yaml",
    "/",
  );
  const state = new PolicyState({ startedAt: 0 });
  const at = (ms: number) => decide(audit.policy, { info: info("rate.test"), now: T0 + ms, state });
  for (let i = 0; i < 3; i++) assert.equal(at(i).verdict, "allow");
  const d = at(3);
  assert.deepEqual([d.verdict, d.status, d.policy], ["would_deny", 429, "rate_limit"]);
});

Deno.test("@agentreserve/proxy README example: the same decisions", () => {
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
  const { config: ar } = parseConfig(text, "agentreserve.yaml", "/");
  const state = new PolicyState({ startedAt: 0 });
  const req = (host: string, path: string | null, session: string | null = null) =>
    info(host, { path, session, method: path === null ? "CONNECT" : "GET" });
  const go = (r: RequestInfo, now = T0) => decide(ar.policy, { info: r, now, state });

  // 60 per minute per domain: the 61st within the minute is limited.
  for (let i = 0; i < 60; i++) {
    assert.equal(go(req("api.openai.com", null), T0 + i).verdict, "allow");
  }
  const limited = go(req("api.openai.com", null), T0 + 60);
  assert.deepEqual([limited.verdict, limited.status, limited.policy], ["deny", 429, "rate_limit"]);
  assert.equal(limited.reason, 'rate limit exceeded: 60 requests per 1m for host "api.openai.com"');
  // Anthropic has its own 30 per minute.
  for (let i = 0; i < 30; i++) {
    assert.equal(go(req("api.anthropic.com", "/v1/messages"), T0 + i).verdict, "allow");
  }
  assert.equal(go(req("api.anthropic.com", "/v1/messages"), T0 + 31).status, 429);
  const internal = go(req("git.internal.company.com", "/repo"));
  assert.deepEqual([internal.verdict, internal.reason], [
    "deny",
    "Internal APIs are not accessible to agents",
  ]);
  const iam = go(req("iam.amazonaws.com", "/iam/users"));
  assert.deepEqual([iam.verdict, iam.reason], ["deny", "IAM modifications blocked for agents"]);
  assert.equal(go(req("s3.amazonaws.com", "/bucket/key")).verdict, "log");
  const other = go(req("example.org", "/"));
  assert.deepEqual([other.verdict, other.rule], ["log", "*"]);
});

Deno.test("spending_limit: the README's worked example, decided by the engine", () => {
  const { config: readme } = parseConfig(
    `version: 1
tls: { intercept: [api.openai.com] }
rules:
  - name: openai
    match: api.openai.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 5, per: day, key: session, tz: Europe/Berlin }
`,
    "readme.yaml",
    "/",
  );
  const state = new PolicyState({ startedAt: 0 });
  const now = Date.parse("2025-06-02T15:00:00Z"); // 17:00 in Berlin
  state.ledger.add(["rule:openai|session:ci"], now - 3_600_000, 4.99);
  const call = (max_tokens: number) =>
    info("api.openai.com", {
      scheme: "https",
      port: 443,
      path: "/v1/chat/completions",
      body: { model: "gpt-4o", max_tokens, messages: [] },
      bodySize: 3000,
    });
  const d = decide(readme.policy, { info: call(1000), now, state, bodyRead: true });
  assert.equal(
    d.reason,
    'spending limit reached: $4.99 spent + $0.00 reserved in flight + $0.0179 for this call > $5.00 per day (Europe/Berlin) for session "ci"; resets at 2025-06-03T00:00:00+02:00',
  );
  assert.equal(d.retryAfter, 25200);
  assert.equal(d.detail?.needed_usd, 0.01792);
  const ok = call(100);
  assert.equal(decide(readme.policy, { info: ok, now, state, bodyRead: true }).verdict, "allow");
  assert.equal(state.reservedUsd(ok.id), 0.00868);
});
