/**
 * The dashboard's query parameters: aliases, times, and a reason for every
 * bad value (the queries behind them are tested in src/audit/sqlite_read_test.ts).
 */
import assert from "node:assert/strict";
import { type AuditQuery, DECISIONS } from "../audit/read.ts";
import { ParamError, parseAuditQuery, parseStatsQuery, parseTime } from "./api.ts";

function query(over: Partial<AuditQuery> = {}): AuditQuery {
  return {
    limit: 50,
    offset: 0,
    host: null,
    decisions: null,
    session: null,
    rule: null,
    search: null,
    since: null,
    until: null,
    tunnels: null,
    model: null,
    policy: null,
    status: null,
    sort: null,
    ...over,
  };
}

Deno.test("parameters: aliases, times, and every bad value is a ParamError with a reason", () => {
  const now = 10_000_000_000;
  const p = (s: string) => parseAuditQuery(new URLSearchParams(s), now);
  assert.deepEqual(p(""), query());
  assert.deepEqual(
    p("hostname=API.OpenAI.com&session_id=s1&decision=deny,would_deny&limit=10&offset=20"),
    query({
      host: "api.openai.com",
      session: "s1",
      decisions: ["deny", "would_deny"],
      limit: 10,
      offset: 20,
    }),
  );
  assert.deepEqual(
    p("since=1h&until=15m"),
    query({ since: now - 3_600_000, until: now - 900_000 }),
  );
  assert.deepEqual(p("since=1700000000000"), query({ since: 1_700_000_000_000 }));
  assert.equal(parseTime("2025-01-02T03:04:05Z", "since", now), Date.UTC(2025, 0, 2, 3, 4, 5));
  assert.deepEqual(p("host=&decision="), query());
  const bad: [string, string][] = [
    ["limit=0", `"limit" must be a whole number from 1 to 1000, not "0"`],
    ["limit=1001", `"limit" must be a whole number from 1 to 1000, not "1001"`],
    ["limit=abc", `"limit" must be a whole number from 1 to 1000, not "abc"`],
    ["offset=-1", `"offset" must be a whole number from 0 to 10000000, not "-1"`],
    [
      "decision=deny,alow",
      `"decision" must be one or more of allow, log, deny, would_deny, error, challenge (comma-separated), not "alow" (did you mean "allow"?)`,
    ],
    [
      "since=yesterday",
      `"since" must be ms since the epoch, a duration before now ("15m", "1h", "7d") or an ISO date, not "yesterday"`,
    ],
    [
      "since=1h30x",
      `"since" must be ms since the epoch, a duration before now ("15m", "1h", "7d") or an ISO date, not "1h30x"`,
    ],
    [
      "since=30m1h",
      `"since": Invalid duration "30m1h": list each unit once, largest first, e.g. "1h30m"`,
    ],
    ["since=1h&until=2h", `"since" (${now - 3_600_000}) is after "until" (${now - 7_200_000})`],
    ["host=a&hostname=b", `"host" and "hostname" name the same filter; give one`],
    ["limit=1&limit=2", `parameter "limit" is given 2 times`],
    [
      "hots=a",
      `unknown parameter "hots" (did you mean "host"?); known: limit, offset, host, hostname, decision, session, session_id, rule, search, since, until, tunnels, model, policy, status, sort`,
    ],
    [`search=${"x".repeat(201)}`, `"search" is longer than 200 characters`],
  ];
  for (const [qs, message] of bad) {
    assert.throws(() => p(qs), (e) => e instanceof ParamError && e.message === message, qs);
  }
  assert.deepEqual(parseStatsQuery(new URLSearchParams("")), { hours: 24, session: null });
  assert.deepEqual(parseStatsQuery(new URLSearchParams("hours=168&session_id=x")), {
    hours: 168,
    session: "x",
  });
  assert.throws(
    () => parseStatsQuery(new URLSearchParams("hours=0")),
    /"hours" must be a whole number from 1 to 8760, not "0"/,
  );
  assert.deepEqual([...DECISIONS], ["allow", "log", "deny", "would_deny", "error", "challenge"]);
});
