import assert from "node:assert/strict";
import type { RequestInfo } from "../types.ts";
import {
  createRateLimitChecker,
  parseLegacyRateLimit,
  parseLimitKey,
  parseRateLimitConfig,
  type RateLimitChecker,
} from "./rate.ts";
import { type PolicyResult } from "./types.ts";
import { PolicyState } from "../../state/mod.ts";

const T = Date.parse("2025-06-02T10:00:00Z");

function req(over: Partial<RequestInfo> = {}): RequestInfo {
  return {
    id: crypto.randomUUID(),
    session: "ci",
    label: null,
    client: "10.0.0.5",
    method: "POST",
    scheme: "https",
    host: "api.openai.com",
    port: 443,
    path: "/v1/chat/completions",
    query: "",
    headers: { "x-team": "ml" },
    ...over,
  };
}

/** Checks and, when allowed, commits (what the engine does for a forwarded request). */
function send(c: RateLimitChecker, state: PolicyState, now: number, info = req()): PolicyResult {
  const r = c.check(info, now, state);
  if (r.ok) r.commit();
  return r;
}

function denied(r: PolicyResult) {
  assert.equal(r.ok, false, "expected a denial");
  return r as Extract<PolicyResult, { ok: false }>;
}

Deno.test("sliding window: request N+1 exactly at the window boundary passes", () => {
  const c = createRateLimitChecker({ requests: 3, perMs: 60_000, key: "session" }, {
    rule: "openai",
  });
  const state = new PolicyState({ startedAt: T });
  assert.equal(send(c, state, T).ok, true);
  assert.equal(send(c, state, T + 10_000).ok, true);
  assert.equal(send(c, state, T + 20_000).ok, true);

  // 1 ms before the first request leaves: refused, retry in 1 s (rounded up).
  const before = denied(c.check(req(), T + 59_999, state));
  assert.equal(before.retryAfter, 1);
  // Exactly at the boundary the first request has left; 1 ms after as well.
  assert.equal(c.check(req(), T + 60_000, state).ok, true);
  assert.equal(c.check(req(), T + 60_001, state).ok, true);
});

Deno.test("sliding window, not fixed: the count does not reset on the minute", () => {
  const c = createRateLimitChecker({ requests: 2, perMs: 60_000, key: "global" }, { rule: "r" });
  const state = new PolicyState({ startedAt: T });
  assert.equal(send(c, state, T + 59_000).ok, true); // :59 of one minute
  assert.equal(send(c, state, T + 59_500).ok, true);
  // A fixed window would reset at T + 60 000; the sliding one still counts both.
  const r = denied(send(c, state, T + 61_000));
  assert.equal(r.retryAfter, 58); // T + 119 000 - T - 61 000 = 58 s
});

Deno.test("refusal: status, reason, Retry-After and detail", () => {
  const c = createRateLimitChecker({ requests: 3, perMs: 60_000, key: "session" }, {
    rule: "openai",
  });
  const state = new PolicyState({ startedAt: T });
  send(c, state, T);
  send(c, state, T + 10_000);
  send(c, state, T + 20_000);
  assert.deepEqual(c.check(req(), T + 20_500, state), {
    ok: false,
    status: 429,
    reason: 'rate limit exceeded: 3 requests per 1m for session "ci"',
    retryAfter: 40, // (T + 60 000 - (T + 20 500)) / 1000 = 39.5, rounded up
    detail: {
      policy: "rate_limit",
      key: "session",
      key_value: "ci",
      unit: "requests",
      count: 3,
      limit: 3,
      window: "1m",
    },
  });
  // Refused requests do not count: the first slot still frees at T + 60 s.
  for (let i = 0; i < 10; i++) send(c, state, T + 30_000 + i);
  assert.equal(send(c, state, T + 60_000).ok, true);
});

Deno.test("a check whose commit is not called does not count", () => {
  const c = createRateLimitChecker({ requests: 2, perMs: 1_000, key: "global" }, { rule: "r" });
  const state = new PolicyState({ startedAt: T });
  for (let i = 0; i < 10; i++) assert.equal(c.check(req(), T + i, state).ok, true);
  assert.equal(c.count(req(), T + 10, state), 0);
  send(c, state, T + 20);
  send(c, state, T + 21);
  assert.equal(c.check(req(), T + 22, state).ok, false);
});

Deno.test("keys: one bucket per session, host, client; global shared across rules", () => {
  const state = new PolicyState({ startedAt: T });
  const perSession = createRateLimitChecker({ requests: 1, perMs: 60_000, key: "session" }, {
    rule: "a",
  });
  assert.equal(send(perSession, state, T, req({ session: "s1" })).ok, true);
  assert.equal(send(perSession, state, T, req({ session: "s2" })).ok, true);
  assert.equal(send(perSession, state, T, req({ session: "s1" })).ok, false);
  // Requests without a session share one bucket of their own.
  assert.equal(send(perSession, state, T, req({ session: null })).ok, true);
  assert.equal(
    denied(send(perSession, state, T, req({ session: null }))).reason,
    "rate limit exceeded: 1 request per 1m for requests without a session",
  );

  const perHost = createRateLimitChecker({ requests: 1, perMs: 60_000, key: "host" }, {
    rule: "a",
  });
  assert.equal(send(perHost, state, T, req({ host: "a.example" })).ok, true);
  assert.equal(
    denied(send(perHost, state, T, req({ host: "a.example" }))).reason,
    'rate limit exceeded: 1 request per 1m for host "a.example"',
  );
  const perClient = createRateLimitChecker({ requests: 1, perMs: 60_000, key: "client" }, {
    rule: "a",
  });
  send(perClient, state, T);
  assert.equal(
    denied(send(perClient, state, T)).reason,
    'rate limit exceeded: 1 request per 1m for client "10.0.0.5"',
  );

  const g1 = createRateLimitChecker({ requests: 2, perMs: 60_000, key: "global" }, { rule: "one" });
  const g2 = createRateLimitChecker({ requests: 2, perMs: 60_000, key: "global" }, { rule: "two" });
  assert.equal(g1.stateKey, g2.stateKey);
  send(g1, state, T);
  send(g2, state, T);
  assert.equal(denied(send(g1, state, T)).reason, "rate limit exceeded: 2 requests per 1m");

  const r1 = createRateLimitChecker({ requests: 1, perMs: 60_000, key: "rule" }, { rule: "one" });
  const r2 = createRateLimitChecker({ requests: 1, perMs: 60_000, key: "rule" }, { rule: "two" });
  assert.equal(send(r1, state, T).ok, true);
  assert.equal(send(r2, state, T).ok, true);
  assert.equal(
    denied(send(r1, state, T)).reason,
    'rate limit exceeded: 1 request per 1m for rule "one"',
  );
});

Deno.test("CEL keys: buckets per value, a key error denies", () => {
  const c = createRateLimitChecker(
    { requests: 1, perMs: 60_000, key: 'request.headers["x-team"]' },
    { rule: "teams" },
  );
  const state = new PolicyState({ startedAt: T });
  assert.equal(send(c, state, T, req({ headers: { "x-team": "ml" } })).ok, true);
  assert.equal(send(c, state, T, req({ headers: { "x-team": "web" } })).ok, true);
  assert.equal(
    denied(send(c, state, T, req({ headers: { "x-team": "ml" } }))).reason,
    'rate limit exceeded: 1 request per 1m for key "ml"',
  );
  assert.deepEqual(c.check(req({ headers: {} }), T, state), {
    ok: false,
    status: 403,
    reason: 'rate limit key error: No such key "x-team"',
    retryAfter: null,
    detail: { policy: "rate_limit", key: 'request.headers["x-team"]' },
  });
});

Deno.test("token window: charged after the response, refused once the window is full", () => {
  const c = createRateLimitChecker({ tokens: 1_000, perMs: 60_000, key: "session" }, {
    rule: "llm",
  });
  const state = new PolicyState({ startedAt: T });
  const usage = (ts: number, tokens: number) => ({
    ts,
    tokens,
    session: "ci",
    host: "api.openai.com",
    client: "10.0.0.5",
    rule: "llm",
  });

  const first = req();
  assert.equal(send(c, state, T, first).ok, true);
  state.reportUsage(first.id, usage(T + 2_000, 600));
  assert.equal(c.count(req(), T + 3_000, state), 600);

  const second = req();
  assert.equal(send(c, state, T + 10_000, second).ok, true); // 600 < 1000
  state.reportUsage(second.id, usage(T + 12_000, 500));
  assert.equal(state.pendingCount, 0);

  // 1100 tokens in the window: refused until the first 600 leave at T + 62 s.
  assert.deepEqual(c.check(req(), T + 20_000, state), {
    ok: false,
    status: 429,
    reason: 'rate limit exceeded: 1000 tokens per 1m for session "ci"',
    retryAfter: 42,
    detail: {
      policy: "rate_limit",
      key: "session",
      key_value: "ci",
      unit: "tokens",
      count: 1_100,
      limit: 1_000,
      window: "1m",
      // Nothing in flight, and no call estimate (not a priced call).
      reserved: 0,
      needed: 0,
      resets_at: "2025-06-02T10:01:02Z",
    },
  });
  assert.equal(c.check(req(), T + 61_999, state).ok, false);
  assert.equal(c.check(req(), T + 62_000, state).ok, true);

  // A direct charge (when the LLM layer holds the request) counts the same.
  c.chargeTokens(req(), T + 62_000, 700, state);
  assert.equal(c.count(req(), T + 62_000, state), 1_200);
  // A usage report for a request without a pending hook changes no token count.
  state.reportUsage("unknown", usage(T + 62_000, 999));
  assert.equal(c.count(req(), T + 62_000, state), 1_200);
});

Deno.test("idle keys are dropped and a log stays bounded by the limit", () => {
  const c = createRateLimitChecker({ requests: 10, perMs: 1_000, key: "session" }, { rule: "r" });
  const state = new PolicyState({ startedAt: T });
  for (let i = 0; i < 500; i++) send(c, state, T, req({ session: `s${i}` }));
  const slot = state.slot<{ logs: Map<string, { ts: number[] }> }>(c.stateKey, () => {
    throw new Error("slot must exist");
  });
  assert.equal(slot.logs.size, 500);
  // One check a window later sweeps every bucket whose newest entry has left.
  send(c, state, T + 2_000, req({ session: "fresh" }));
  assert.equal(slot.logs.size, 1);

  // A busy key: 10 000 requests at 10 per second never hold much more than the limit.
  for (let i = 0; i < 10_000; i++) send(c, state, T + 3_000 + i * 100, req({ session: "busy" }));
  const busy = slot.logs.get("busy");
  assert.ok(busy !== undefined && busy.ts.length <= 10 + 33, `${busy?.ts.length} entries`);
});

Deno.test("a reload that keeps rule, window and key keeps the counters", () => {
  const state = new PolicyState({ startedAt: T });
  const before = createRateLimitChecker({ requests: 2, perMs: 60_000, key: "session" }, {
    rule: "r",
  });
  send(before, state, T);
  send(before, state, T + 1);
  // New limit, same rule and key: the two requests still count.
  const after = createRateLimitChecker({ requests: 3, perMs: 60_000, key: "session" }, {
    rule: "r",
  });
  assert.equal(after.stateKey, before.stateKey);
  assert.equal(send(after, state, T + 2).ok, true);
  assert.equal(send(after, state, T + 3).ok, false);
  // A renamed rule starts afresh.
  const renamed = createRateLimitChecker({ requests: 3, perMs: 60_000, key: "session" }, {
    rule: "r2",
  });
  assert.equal(renamed.count(req(), T + 4, state), 0);
});

Deno.test("parseRateLimitConfig validates the YAML form", () => {
  assert.deepEqual(parseRateLimitConfig({ requests: 60, per: "1m", key: "session" }), {
    requests: 60,
    perMs: 60_000,
    key: "session",
  });
  assert.deepEqual(parseRateLimitConfig({ tokens: 100_000, per: "1h" }), {
    tokens: 100_000,
    perMs: 3_600_000,
    key: "rule",
  });
  const table: Array<[Record<string, unknown>, string, unknown[]]> = [
    [
      { requests: 1, tokens: 2, per: "1m" },
      "Invalid rate_limit: give exactly one of requests and tokens, e.g. { requests: 60, per: 1m }",
      [],
    ],
    [{ requests: 0, per: "1m" }, "Invalid requests 0: expected a whole number of at least 1", [
      "requests",
    ]],
    [{ requests: 60 }, "Missing per in rate_limit: add a window, e.g. per: 1m", []],
    [{ requests: 60, per: "60" }, 'Invalid duration "60": add a unit, e.g. "60s" or "60m"', [
      "per",
    ]],
    [
      { reqests: 60, per: "1m" },
      'Unknown key "reqests" in rate_limit (did you mean "requests"?): the keys are requests, tokens, per, key',
      ["reqests"],
    ],
    [
      { requests: 60, per: "1m", key: "sesion" },
      'Invalid key "sesion" (did you mean "session"?): use global, rule, host, session, client or a CEL expression',
      ["key"],
    ],
  ];
  for (const [raw, message, path] of table) {
    assert.throws(() => parseRateLimitConfig(raw), (e: Error & { path?: unknown[] }) => {
      assert.equal(e.message, message);
      assert.deepEqual(e.path, path);
      return true;
    });
  }
  assert.throws(() => parseLimitKey('request.hedaers["x"]'), { offset: 8 });
});

Deno.test("legacy rate_limit is a sliding minute per host", () => {
  assert.deepEqual(parseLegacyRateLimit({ type: "rate_limit", max_requests_per_minute: 60 }), {
    requests: 60,
    perMs: 60_000,
    key: "host",
  });
  assert.throws(
    () => parseLegacyRateLimit({ type: "rate_limit", max_requests_per_minute: "60" }),
    { message: 'Invalid max_requests_per_minute "60": expected a whole number of at least 1' },
  );
});
