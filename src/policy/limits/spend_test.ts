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
  // Charges within one second are one entry, leaving the window with the
  // latest of them (T + 49 ms): never early.
  assert.equal(
    r.reason,
    'spending limit reached: $5.00 spent of $5.00 per 1d for session "ci"; resets at 2025-06-03T10:00:01Z',
  );
  assert.equal(r.status, 429);

  const exceeded = new PolicyState({ startedAt: T });
  exceeded.reportUsage("a", usage(T, 3));
  exceeded.reportUsage("b", usage(T + HOUR, 2.01));
  assert.deepEqual(c.check(req(), T + 2 * HOUR, exceeded), {
    ok: false,
    status: 429,
    reason:
      'spending limit reached: $5.01 spent of $5.00 per 1d for session "ci"; resets at 2025-06-03T10:00:00Z',
    // Once the $3.00 leaves (T + 1d) only $2.01 remains: 22 h from now.
    retryAfter: 22 * 3600,
    detail: {
      policy: "spending_limit",
      key: "session",
      key_value: "ci",
      scope: "rule",
      spent_usd: 5.01,
      reserved_usd: 0,
      needed_usd: 0,
      limit_usd: 5,
      window: "1d",
      resets_at: "2025-06-03T10:00:00Z",
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
    reason: "spending limit reached: $1.20 spent of $1.00 per run; it does not reset (per: run)",
    retryAfter: null,
    detail: {
      policy: "spending_limit",
      key: "global",
      key_value: "",
      scope: "rule",
      spent_usd: 1.2,
      reserved_usd: 0,
      needed_usd: 0,
      limit_usd: 1,
      window: "run",
      resets_at: null,
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
  // Scope rule: the session's spend through rule "openai" only ($2.00, not the $1.50 of "claude").
  assert.equal(session.spent(req(), T, state), 2);
  const global = createSpendingLimitChecker(
    { usd: 5, per: DAY, key: "global", scope: "all" },
    { rule: "x" },
  );
  assert.equal(
    denied(global.check(req(), T, state)).reason,
    "spending limit reached: $5.00 spent of $5.00 per 1d; resets at 2025-06-03T07:00:00Z",
  );
  // The same key within one rule counts only that rule's requests: none for "x".
  const ruleWide = createSpendingLimitChecker({ usd: 5, per: DAY, key: "global" }, { rule: "x" });
  assert.equal(ruleWide.check(req(), T, state).ok, true);
  const rule = createSpendingLimitChecker({ usd: 3.5, per: DAY, key: "rule" }, { rule: "openai" });
  assert.equal(
    denied(rule.check(req(), T, state)).reason,
    'spending limit reached: $3.50 spent of $3.50 per 1d for rule "openai"; resets at 2025-06-03T08:00:00Z',
  );
  const noSession = createSpendingLimitChecker(
    { usd: 1, per: HOUR * 2, key: "session", scope: "all" },
    { rule: "x" },
  );
  assert.equal(
    denied(noSession.check(req({ session: null }), T, state)).reason,
    "spending limit reached: $1.50 spent of $1.00 per 2h for requests without a session; resets at 2025-06-02T11:00:00Z",
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
  // The commit names the CEL bucket on the request's reservation (nothing is
  // held: this is not a priced call).
  assert.deepEqual([...state.ledger.reservation(ml.id)!.holds], [[
    'cel:openai|request.headers["x-team"]=ml',
    0,
  ]]);
  // The bucket it charged is returned, for the audit row's spend_keys.
  assert.deepEqual(state.reportUsage(ml.id, usage(T + 1, 1)), [
    'cel:openai|request.headers["x-team"]=ml',
  ]);
  assert.equal(state.ledger.reservation(ml.id), undefined);
  assert.equal(
    denied(c.check(req({ headers: { "x-team": "ml" } }), T + 2, state)).reason,
    'spending limit reached: $1.00 spent of $1.00 per 1d for key "ml"; resets at 2025-06-03T10:00:01Z',
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
    'spending limit reached: $1.00 spent of $1.00 per 1d for key "ml"; resets at 2025-06-03T09:00:00Z',
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
  assert.equal(r.reason, "spending limit reached: $0.00 spent of $0.00 per 1d");
  assert.equal(r.retryAfter, null);
});

Deno.test("the ledger forgets old costs and empty keys", () => {
  const ledger = new MemorySpendLedger({ startedAt: T, retainMs: DAY });
  ledger.add(spendKeys({ session: "a", host: "h", client: "c", rule: "r" }), T - 2 * DAY, 1);
  // Four keys across rules (global, session, host, client) and four of rule "r".
  assert.equal(ledger.keyCount, 8);
  ledger.sweep(T);
  assert.equal(ledger.keyCount, 0);
  // A window longer than the retention raises it on first use.
  const state = new PolicyState({ ledger });
  const c = createSpendingLimitChecker({ usd: 5, per: 30 * DAY, key: "global" }, { rule: "x" });
  c.check(req(), T, state);
  // The window, and an hour more for a calendar period's daylight-saving change.
  assert.equal(ledger.retainMs, 30 * DAY + HOUR);
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
    scope: "rule",
  });
  assert.deepEqual(parseSpendingLimitConfig({ usd: 1.5, per: "run", currency: "usd" }), {
    usd: 1.5,
    per: "run",
    key: "rule",
    scope: "rule",
  });
  assert.deepEqual(
    parseSpendingLimitConfig({
      usd: 200,
      per: "month",
      key: "session",
      scope: "all",
      tz: "europe/berlin",
    }),
    { usd: 200, per: "month", key: "session", scope: "all", tz: "Europe/Berlin" },
  );
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
    [
      { usd: 5 },
      "Missing per in spending_limit: add a window, e.g. per: day (or 1d, month, run)",
      [],
    ],
    [
      { usd: 5, per: "daily" },
      'Invalid per "daily" (did you mean "day"?): use day, week or month for a calendar window, or a duration such as 1d',
      ["per"],
    ],
    [
      { usd: 5, per: "fortnight" },
      'Invalid duration "fortnight": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"',
      ["per"],
    ],
    [
      { usd: 5, per: "1d", limit: 3 },
      'Unknown key "limit" in spending_limit: the keys are usd, per, key, scope, tz, currency',
      ["limit"],
    ],
    [
      { usd: 5, per: "1d", tz: "UTC" },
      "tz applies to calendar windows only: use per: day, week or month with it",
      ["tz"],
    ],
    [
      { usd: 5, per: "day", tz: "Mars/Olympus" },
      'Unknown time zone "Mars/Olympus": use an IANA name such as "Europe/Berlin" or "UTC"',
      ["tz"],
    ],
    [
      { usd: 5, per: "day", scope: "everything" },
      "Invalid scope \"everything\": use rule (this rule's requests) or all (every rule's)",
      ["scope"],
    ],
    [
      { usd: 5, per: "day", scope: "all" },
      "scope: all cannot go with key: rule, which counts one rule's requests: use key global, session, host or client",
      ["scope"],
    ],
    [
      { usd: 5, per: "day", scope: "all", key: 'request.headers["x-team"]' },
      "scope: all needs a built-in key (global, session, host or client): a CEL key is evaluated only for this rule's requests",
      ["scope"],
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
    { usd: 10, per: "run", key: "host", scope: "all" },
  );
  assert.deepEqual(parseLegacySpendingLimit({ type: "spending_limit", max_amount: 2.5 }), {
    usd: 2.5,
    per: "run",
    key: "host",
    scope: "all",
  });
  assert.deepEqual(parseLegacySpendingLimit({ type: "spending_limit", max_amount: 2, per: "1d" }), {
    usd: 2,
    per: DAY,
    key: "host",
    scope: "all",
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

Deno.test("reserve, then settle: calls in flight hold their worst case", () => {
  const c = createSpendingLimitChecker({ usd: 0.01, per: DAY, key: "session" }, {
    rule: "openai",
  });
  const state = new PolicyState({ startedAt: T });
  const call = { nano: 3_000_000, tokens: 1_000 }; // $0.003 worst case
  const ids: string[] = [];
  // Decided one after another before any response: three fit ($0.009), the fourth does not.
  for (let i = 0; i < 3; i++) {
    const info = req();
    const r = c.check(info, T, state, call);
    assert.equal(r.ok, true, `call ${i}`);
    if (r.ok) r.commit();
    ids.push(info.id);
  }
  const fourth = denied(c.check(req(), T, state, call));
  assert.equal(
    fourth.reason,
    'spending limit reached: $0.00 spent + $0.009 reserved in flight + $0.003 for this call > $0.01 per 1d for session "ci"; it frees up as the calls in flight settle',
  );
  // Nothing spent yet: a rolling window has nothing to wait for, the calls in flight settle.
  assert.equal(fourth.retryAfter, null);
  assert.deepEqual(
    [fourth.detail.spent_usd, fourth.detail.reserved_usd, fourth.detail.needed_usd],
    [0, 0.009, 0.003],
  );
  // The first settles at $0.001: its reservation is released, its cost charged.
  state.reportUsage(ids[0], usage(T + 10, 0.001));
  assert.equal(state.ledger.reservedOn("rule:openai|session:ci"), 6_000_000);
  assert.equal(c.spent(req(), T + 20, state), 0.001);
  const fits = c.check(req(), T + 20, state, call); // 0.001 + 0.006 + 0.003 = 0.01
  assert.equal(fits.ok, true);
  // The second never got a response: released, nothing charged.
  state.dropUsage(ids[1]);
  assert.equal(state.ledger.reservedOn("rule:openai|session:ci"), 3_000_000);
  assert.equal(c.spent(req(), T + 30, state), 0.001);
  // A request that is not a priced call passes while the budget is not spent.
  assert.equal(c.check(req(), T + 30, state).ok, true);
  // A call larger than the whole budget says so.
  assert.equal(
    denied(c.check(req(), T + 30, state, { nano: 20_000_000, tokens: 9 })).reason,
    'spending limit reached: $0.001 spent + $0.003 reserved in flight + $0.02 for this call > $0.01 per 1d for session "ci" (this call alone exceeds the budget: lower its max_tokens); resets at 2025-06-03T10:00:01Z',
  );
});

Deno.test("scope: a budget counts its own rule's requests unless scope: all", () => {
  const own = createSpendingLimitChecker({ usd: 1, per: DAY, key: "session" }, { rule: "openai" });
  const across = createSpendingLimitChecker(
    { usd: 1, per: DAY, key: "session", scope: "all" },
    { rule: "openai" },
  );
  const state = new PolicyState({ startedAt: T });
  // An Anthropic call of another rule, in flight and then settled.
  const other = req({ host: "api.anthropic.com" });
  state.ledger.reserve(
    other.id,
    T,
    spendKeys({ session: "ci", host: other.host, client: other.client, rule: "claude" }),
    800_000_000,
  );
  assert.equal(own.check(req(), T, state, { nano: 300_000_000, tokens: 1 }).ok, true);
  assert.equal(across.check(req(), T, state, { nano: 300_000_000, tokens: 1 }).ok, false);
  state.reportUsage(other.id, usage(T + 1, 1, { host: other.host, rule: "claude" }));
  assert.equal(own.spent(req(), T + 2, state), 0);
  assert.equal(across.spent(req(), T + 2, state), 1);
  assert.equal(own.ledgerKey(req(), T), "rule:openai|session:ci");
  assert.equal(across.ledgerKey(req(), T), "session:ci");
  assert.equal(
    own.describe(),
    'spending_limit $1.00 per 1d, one budget per session: counts only the requests rule "openai" allows',
  );
  assert.equal(
    across.describe(),
    "spending_limit $1.00 per 1d, one budget per session: counts the requests of every rule (scope: all)",
  );
});

Deno.test("calendar windows reset at local midnight, Monday, the 1st", () => {
  const tz = "Europe/Berlin";
  const day = createSpendingLimitChecker({ usd: 1, per: "day", key: "session", tz }, {
    rule: "openai",
  });
  const week = createSpendingLimitChecker({ usd: 1, per: "week", key: "session", tz }, {
    rule: "openai",
  });
  const month = createSpendingLimitChecker({ usd: 1, per: "month", key: "session", tz }, {
    rule: "openai",
  });
  const state = new PolicyState({ startedAt: 0 });
  // Sunday 30 March 2025, 01:30 in Berlin (CET, an hour before the DST change).
  const spentAt = Date.parse("2025-03-30T00:30:00Z");
  state.reportUsage("a", usage(spentAt, 1));
  const now = Date.parse("2025-03-30T20:00:00Z"); // Sunday 22:00 CEST
  const d = denied(day.check(req(), now, state));
  assert.equal(
    d.reason,
    'spending limit reached: $1.00 spent of $1.00 per day (Europe/Berlin) for session "ci"; resets at 2025-03-31T00:00:00+02:00',
  );
  assert.equal(d.retryAfter, 2 * 3600);
  assert.equal(d.detail.resets_at, "2025-03-31T00:00:00+02:00");
  assert.equal(d.detail.window, "day (Europe/Berlin)");
  // Monday 00:00 local: a new day and a new week; the month runs on.
  const monday = Date.parse("2025-03-30T22:00:00Z");
  assert.equal(day.check(req(), monday - 1, state).ok, false);
  assert.equal(day.check(req(), monday, state).ok, true);
  assert.equal(week.check(req(), monday - 1, state).ok, false);
  assert.equal(week.check(req(), monday, state).ok, true);
  const m = denied(month.check(req(), monday, state));
  assert.equal(m.detail.resets_at, "2025-04-01T00:00:00+02:00");
  assert.equal(month.check(req(), Date.parse("2025-03-31T22:00:00Z"), state).ok, true);
  // The spend from before the day started does not count (a rolling 1d would count it).
  assert.equal(day.spent(req(), monday, state), 0);
  assert.equal(month.spent(req(), monday, state), 1);
});

Deno.test("budgets(): every key with spend or reservations, with when it resets", () => {
  const c = createSpendingLimitChecker({ usd: 5, per: "day", key: "session", tz: "UTC" }, {
    rule: "openai",
  });
  const state = new PolicyState({ startedAt: T });
  state.reportUsage("a", usage(T, 1.25));
  state.reportUsage("b", usage(T, 0.5, { session: "nightly" }));
  state.ledger.reserve("c", T, ["rule:openai|session:nightly"], 2_000_000_000);
  // Another rule's spend is not this limit's.
  state.reportUsage("d", usage(T, 9, { rule: "claude" }));
  assert.deepEqual(c.budgets(T + 1, state), [
    {
      ledger_key: "rule:openai|session:nightly",
      key_value: "nightly",
      spent_usd: 0.5,
      reserved_usd: 2,
      limit_usd: 5,
      resets_at: "2025-06-03T00:00:00Z",
    },
    {
      ledger_key: "rule:openai|session:ci",
      key_value: "ci",
      spent_usd: 1.25,
      reserved_usd: 0,
      limit_usd: 5,
      resets_at: "2025-06-03T00:00:00Z",
    },
  ]);
});

Deno.test("the ledger: a second's charges are one entry; window sums by running totals", () => {
  const ledger = new MemorySpendLedger({ startedAt: T, retainMs: 10 * DAY });
  // 10,000 charges a second for 3 seconds: three entries per key.
  for (let i = 0; i < 30_000; i++) ledger.add(["k"], T + Math.floor(i / 10), 0.000001);
  assert.equal([...ledger.entries("k", 0)].length, 3);
  assert.deepEqual([...ledger.entries("k", 0)].map(([ts]) => ts), [T + 999, T + 1999, T + 2999]);
  assert.equal(ledger.spentNano("k", 0), 30_000_000);
  // A window starting inside the second second counts its entry whole (it ends later).
  assert.equal(ledger.spentNano("k", T + 1500), 20_000_000);
  assert.equal(ledger.spentNano("k", T + 2999), 0);
  // An out-of-order cost is inserted, and the sums stay right.
  ledger.add(["k"], T - DAY, 1);
  assert.equal(ledger.spentNano("k", 0), 1_030_000_000);
  assert.equal(ledger.spentNano("k", T - 1), 30_000_000);
  // Trimming keeps the sums of what is left.
  for (let d = 1; d <= 200; d++) ledger.add(["k"], T + d * HOUR, 0.5);
  ledger.sweep(T + 10 * DAY + 1500); // forgets what is older than T + 1500 ms
  assert.equal(ledger.spentNano("k", 0), 20_000_000 + 200 * 500_000_000);
  assert.equal(ledger.spentNano("k", T + 100 * HOUR), 100 * 500_000_000);
  assert.equal(ledger.spentThisRunNano("k"), 30_000_000 + 200 * 500_000_000);
  // Most of the log gone: the arrays are compacted, the sums rebased.
  ledger.sweep(T + 10 * DAY + 150 * HOUR);
  assert.equal(ledger.spentNano("k", 0), 50 * 500_000_000);
  ledger.add(["k"], T + 300 * HOUR, 1);
  assert.equal(ledger.spentNano("k", T + 199 * HOUR), 1_500_000_000);
});

Deno.test("sub-cent budgets print their digits in the reason, never `$0. of $0.`", () => {
  for (
    const [budget, spent, reason] of [
      [0.005, 0.005, "spending limit reached: $0.005 spent of $0.005 per 1d"],
      [0.00005, 0.00004 + 0.00002, "spending limit reached: $0.000060 spent of $0.000050 per 1d"],
      [0.00002, 0.00003, "spending limit reached: $0.000030 spent of $0.000020 per 1d"],
    ] as const
  ) {
    const state = new PolicyState({ startedAt: T });
    const c = createSpendingLimitChecker({ usd: budget, per: DAY, key: "global" }, { rule: "x" });
    // The spend of this limit's own budget (a key's scope is its rule).
    state.ledger.add([c.ledgerKey(req(), T)], T - HOUR, spent);
    // (The reason goes on with when the budget resets.)
    assert.equal(denied(c.check(req(), T, state)).reason.split(";")[0], reason);
  }
});
