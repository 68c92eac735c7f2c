import assert from "node:assert/strict";
import type { RequestInfo } from "../types.ts";
import {
  createSpendingLimitChecker,
  formatUsd,
  MemorySpendLedger,
  parseLegacySpendingLimit,
  parseSpendingLimitConfig,
  spendKeys,
  type SpendRow,
} from "./spend.ts";
import { type PolicyResult } from "./types.ts";
import { PolicyState, type Usage } from "../../state/mod.ts";
import { parseSpendKeys } from "../../audit/event.ts";

const DAY = 86_400_000;
const HOUR = 3_600_000;
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

function usage(ts: number, usd: number, over: Partial<Usage> = {}): Usage {
  return {
    ts,
    usd,
    session: "ci",
    host: "api.openai.com",
    client: "10.0.0.5",
    rule: "openai",
    ...over,
  };
}

function denied(r: PolicyResult) {
  assert.equal(r.ok, false, "expected a denial");
  return r as Extract<PolicyResult, { ok: false }>;
}

const perSessionDaily = () =>
  createSpendingLimitChecker({ usd: 5, per: DAY, key: "session" }, { rule: "openai" });

Deno.test("budget under, exactly reached, exceeded", () => {
  const c = perSessionDaily();

  const under = new PolicyState({ startedAt: T });
  under.reportUsage("a", usage(T, 4.99));
  assert.equal(c.check(req(), T + 1, under).ok, true);

  // 50 × $0.10 is $5.00 exactly, although 0.1 summed 50 times is not 5 in doubles.
  const reached = new PolicyState({ startedAt: T });
  for (let i = 0; i < 50; i++) reached.reportUsage(`r${i}`, usage(T + i, 0.1));
  const r = denied(c.check(req(), T + 100, reached));
  assert.equal(r.reason, 'spending limit reached: $5.00 of $5.00 per 1d for session "ci"');
  assert.equal(r.status, 429);

  const exceeded = new PolicyState({ startedAt: T });
  exceeded.reportUsage("a", usage(T, 3));
  exceeded.reportUsage("b", usage(T + HOUR, 2.01));
  assert.deepEqual(c.check(req(), T + 2 * HOUR, exceeded), {
    ok: false,
    status: 429,
    reason: 'spending limit reached: $5.01 of $5.00 per 1d for session "ci"',
    // Once the $3.00 leaves (T + 1d) only $2.01 remains: 22 h from now.
    retryAfter: 22 * 3600,
    detail: {
      policy: "spending_limit",
      key: "session",
      key_value: "ci",
      spent_usd: 5.01,
      limit_usd: 5,
      window: "1d",
    },
  });
  // Another session has its own budget.
  assert.equal(c.check(req({ session: "other" }), T + 2 * HOUR, exceeded).ok, true);
});

Deno.test("the window slides: a cost counts during [t, t + per)", () => {
  const c = perSessionDaily();
  const state = new PolicyState({ startedAt: T });
  state.reportUsage("a", usage(T, 5));
  const r = denied(c.check(req(), T + DAY - 1, state));
  assert.equal(r.retryAfter, 1);
  assert.equal(c.check(req(), T + DAY, state).ok, true);
  assert.equal(c.spent(req(), T + DAY - 1, state), 5);
  assert.equal(c.spent(req(), T + DAY, state), 0);
});

Deno.test("per: run counts since the process started, with no Retry-After", () => {
  const c = createSpendingLimitChecker({ usd: 1, per: "run", key: "global" }, { rule: "openai" });
  const state = new PolicyState({ startedAt: T });
  // Costs from before this run (read back from the audit) do not count for `run`.
  state.ledger.rebuild([
    {
      ts: T - HOUR,
      usd: 10,
      session: "ci",
      host: "api.openai.com",
      client: "10.0.0.5",
      rule: "openai",
    },
  ]);
  assert.equal(c.check(req(), T, state).ok, true);
  state.reportUsage("a", usage(T + 1, 0.6));
  state.reportUsage("b", usage(T + 2, 0.6));
  assert.deepEqual(c.check(req(), T + 40 * DAY, state), {
    ok: false,
    status: 429,
    reason: "spending limit reached: $1.20 of $1.00 per run",
    retryAfter: null,
    detail: {
      policy: "spending_limit",
      key: "global",
      key_value: "",
      spent_usd: 1.2,
      limit_usd: 1,
      window: "run",
    },
  });
});

Deno.test("rebuild from audit rows restores budgets after a restart", () => {
  const rows: SpendRow[] = [
    {
      ts: T - 2 * HOUR,
      usd: 2,
      session: "ci",
      host: "api.openai.com",
      client: "10.0.0.5",
      rule: "openai",
    },
    {
      ts: T - 3 * HOUR,
      usd: 1.5,
      session: "ci",
      host: "api.anthropic.com",
      client: "10.0.0.5",
      rule: "claude",
    },
    {
      ts: T - 2 * DAY,
      usd: 100,
      session: "ci",
      host: "api.openai.com",
      client: "10.0.0.5",
      rule: "openai",
    },
    {
      ts: T - HOUR,
      usd: 1.5,
      session: null,
      host: "api.openai.com",
      client: "10.0.0.9",
      rule: "openai",
    },
    { ts: T - HOUR, usd: 0, session: "ci", host: "api.openai.com", client: "10.0.0.5", rule: null },
  ];
  const state = new PolicyState({ startedAt: T });
  state.ledger.rebuild(rows);
  const since = T - DAY;
  assert.equal(state.ledger.spent("session:ci", since), 3.5);
  assert.equal(state.ledger.spent("session:", since), 1.5);
  assert.equal(state.ledger.spent("host:api.openai.com", since), 3.5);
  assert.equal(state.ledger.spent("rule:openai", since), 3.5);
  assert.equal(state.ledger.spent("client:10.0.0.9", since), 1.5);
  assert.equal(state.ledger.spent("global", since), 5);
  assert.equal(state.ledger.spent("global", T - 3 * DAY), 105);

  const session = perSessionDaily();
  assert.equal(session.check(req(), T, state).ok, true); // $3.50 < $5
  const global = createSpendingLimitChecker({ usd: 5, per: DAY, key: "global" }, { rule: "x" });
  assert.equal(
    denied(global.check(req(), T, state)).reason,
    "spending limit reached: $5.00 of $5.00 per 1d",
  );
  const rule = createSpendingLimitChecker({ usd: 3.5, per: DAY, key: "rule" }, { rule: "openai" });
  assert.equal(
    denied(rule.check(req(), T, state)).reason,
    'spending limit reached: $3.50 of $3.50 per 1d for rule "openai"',
  );
  const noSession = createSpendingLimitChecker({ usd: 1, per: HOUR * 2, key: "session" }, {
    rule: "x",
  });
  assert.equal(
    denied(noSession.check(req({ session: null }), T, state)).reason,
    "spending limit reached: $1.50 of $1.00 per 2h for requests without a session",
  );
  // A rebuild replaces what was there.
  state.ledger.rebuild([]);
  assert.equal(state.ledger.spent("global", 0), 0);
});

Deno.test("a CEL key counts only what this rule forwarded", () => {
  const c = createSpendingLimitChecker(
    { usd: 1, per: DAY, key: 'request.headers["x-team"]' },
    { rule: "openai" },
  );
  const state = new PolicyState({ startedAt: T });
  const ml = req({ headers: { "x-team": "ml" } });
  const r = c.check(ml, T, state);
  assert.equal(r.ok, true);
  if (r.ok) r.commit();
  assert.equal(state.pendingCount, 1);
  // The bucket it charged is returned, for the audit row's spend_keys.
  assert.deepEqual(state.reportUsage(ml.id, usage(T + 1, 1)), [
    'cel:openai|request.headers["x-team"]=ml',
  ]);
  assert.equal(state.pendingCount, 0);
  assert.equal(
    denied(c.check(req({ headers: { "x-team": "ml" } }), T + 2, state)).reason,
    'spending limit reached: $1.00 of $1.00 per 1d for key "ml"',
  );
  assert.equal(c.check(req({ headers: { "x-team": "web" } }), T + 2, state).ok, true);
  // Spend reported without this rule's commit does not reach the CEL bucket.
  state.reportUsage("elsewhere", usage(T + 3, 5));
  assert.equal(c.spent(req({ headers: { "x-team": "web" } }), T + 4, state), 0);
  assert.equal(c.ledgerKey(ml, T), 'cel:openai|request.headers["x-team"]=ml');
});

Deno.test("a CEL-keyed budget survives a restart through the rows' spend_keys", () => {
  const c = createSpendingLimitChecker(
    { usd: 1, per: DAY, key: 'request.headers["x-team"]' },
    { rule: "openai" },
  );
  const key = 'cel:openai|request.headers["x-team"]=ml';
  const row = {
    ts: T - HOUR,
    usd: 1,
    session: "ci",
    host: "api.openai.com",
    client: "10.0.0.5",
    rule: "openai",
  };
  const restarted = new PolicyState({ startedAt: T });
  restarted.ledger.rebuild([{ ...row, spend_keys: parseSpendKeys(JSON.stringify([key])) }]);
  assert.equal(
    denied(c.check(req({ headers: { "x-team": "ml" } }), T, restarted)).reason,
    'spending limit reached: $1.00 of $1.00 per 1d for key "ml"',
  );
  assert.equal(restarted.ledger.spent("session:ci", T - DAY), 1);
  // A row without spend_keys (or with a damaged value) charges only the built-in keys.
  for (const json of [null, "not json", '{"a":1}', "[1,2]"]) {
    const s = new PolicyState({ startedAt: T });
    s.ledger.rebuild([{ ...row, spend_keys: parseSpendKeys(json) }]);
    assert.equal(c.check(req({ headers: { "x-team": "ml" } }), T, s).ok, true, String(json));
    assert.equal(s.ledger.spent("global", T - DAY), 1);
  }
});

Deno.test("usd: 0 refuses everything", () => {
  const c = createSpendingLimitChecker({ usd: 0, per: DAY, key: "global" }, { rule: "x" });
  const r = denied(c.check(req(), T, new PolicyState({ startedAt: T })));
  assert.equal(r.reason, "spending limit reached: $0.00 of $0.00 per 1d");
  assert.equal(r.retryAfter, null);
});

Deno.test("the ledger forgets old costs and empty keys", () => {
  const ledger = new MemorySpendLedger({ startedAt: T, retainMs: DAY });
  ledger.add(spendKeys({ session: "a", host: "h", client: "c", rule: "r" }), T - 2 * DAY, 1);
  assert.equal(ledger.keyCount, 5);
  ledger.sweep(T);
  assert.equal(ledger.keyCount, 0);
  // A window longer than the retention raises it on first use.
  const state = new PolicyState({ ledger });
  const c = createSpendingLimitChecker({ usd: 5, per: 30 * DAY, key: "global" }, { rule: "x" });
  c.check(req(), T, state);
  assert.equal(ledger.retainMs, 30 * DAY);
});

Deno.test("pending usage hooks expire and can be dropped", () => {
  const state = new PolicyState({ startedAt: T });
  state.onUsage("a", T, () => assert.fail("must not run"));
  state.dropUsage("a");
  state.reportUsage("a", usage(T, 1));
  state.onUsage("old", T, () => assert.fail("must not run"));
  state.onUsage("new", T + 2 * HOUR, () => {});
  assert.equal(state.pendingCount, 1);
});

Deno.test("formatUsd shows cents unless more digits tell amounts apart", () => {
  assert.equal(formatUsd(5), "$5.00");
  assert.equal(formatUsd(5.01), "$5.01");
  assert.equal(formatUsd(0.0042), "$0.0042");
  assert.equal(formatUsd(5.004), "$5.004");
});

Deno.test("parseSpendingLimitConfig validates the YAML form", () => {
  assert.deepEqual(parseSpendingLimitConfig({ usd: 5, per: "1d", key: "session" }), {
    usd: 5,
    per: DAY,
    key: "session",
  });
  assert.deepEqual(parseSpendingLimitConfig({ usd: 1.5, per: "run", currency: "usd" }), {
    usd: 1.5,
    per: "run",
    key: "rule",
  });
  const table: Array<[Record<string, unknown>, string, unknown[]]> = [
    [
      { usd: 5, per: "1d", currency: "EUR" },
      'Unsupported currency "EUR": only USD is supported, since provider prices are in USD',
      ["currency"],
    ],
    [{ usd: -1, per: "1d" }, "Invalid usd -1: expected an amount of at least 0, e.g. usd: 5.00", [
      "usd",
    ]],
    [{ per: "1d" }, "Missing usd in spending_limit: add a budget, e.g. usd: 5.00", []],
    [{ usd: 5 }, "Missing per in spending_limit: add a window, e.g. per: 1d (or run)", []],
    [
      { usd: 5, per: "daily" },
      'Invalid duration "daily": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"',
      ["per"],
    ],
    [
      { usd: 5, per: "1d", limit: 3 },
      'Unknown key "limit" in spending_limit: the keys are usd, per, key, currency',
      ["limit"],
    ],
  ];
  for (const [raw, message, path] of table) {
    assert.throws(() => parseSpendingLimitConfig(raw), (e: Error & { path?: unknown[] }) => {
      assert.equal(e.message, message);
      assert.deepEqual(e.path, path);
      return true;
    });
  }
});

Deno.test("legacy spending_limit: per host, this run, USD only", () => {
  assert.deepEqual(
    parseLegacySpendingLimit({ type: "spending_limit", max_amount: 10, currency: "USD" }),
    { usd: 10, per: "run", key: "host" },
  );
  assert.deepEqual(parseLegacySpendingLimit({ type: "spending_limit", max_amount: 2.5 }), {
    usd: 2.5,
    per: "run",
    key: "host",
  });
  assert.deepEqual(parseLegacySpendingLimit({ type: "spending_limit", max_amount: 2, per: "1d" }), {
    usd: 2,
    per: DAY,
    key: "host",
  });
  assert.throws(
    () => parseLegacySpendingLimit({ type: "spending_limit", max_amount: 10, currency: "EUR" }),
    {
      message:
        'Unsupported currency "EUR": only USD is supported, since provider prices are in USD',
    },
  );
  assert.throws(
    () => parseLegacySpendingLimit({ type: "spending_limit", max_amount: "ten" }),
    { message: 'Invalid max_amount "ten": expected an amount of at least 0' },
  );
});

Deno.test("sub-cent budgets print their digits in the reason, never `$0. of $0.`", () => {
  for (
    const [budget, spent, reason] of [
      [0.005, 0.005, "spending limit reached: $0.005 of $0.005 per 1d"],
      [0.00005, 0.00004 + 0.00002, "spending limit reached: $0.000060 of $0.000050 per 1d"],
      [0.00002, 0.00003, "spending limit reached: $0.000030 of $0.000020 per 1d"],
    ] as const
  ) {
    const state = new PolicyState({ startedAt: T });
    state.ledger.add(["global"], T - HOUR, spent);
    const c = createSpendingLimitChecker({ usd: budget, per: DAY, key: "global" }, { rule: "x" });
    assert.equal(denied(c.check(req(), T, state)).reason, reason);
  }
});
