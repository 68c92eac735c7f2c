/**
 * The dashboard's read side against real SQLite files written by the real
 * audit writer: every aggregate is checked against a plain JS computation
 * over the same rows, for several ranges and with and without a session.
 */
import assert from "node:assert/strict";
import { AuditStore } from "../audit/store.ts";
import type { AuditEventV1 } from "../audit/event.ts";
import {
  type AuditQuery,
  AuditReader,
  bucketSize,
  DECISIONS,
  ParamError,
  parseAuditQuery,
  parseStatsQuery,
  parseTime,
  type Stats,
} from "./api.ts";

function mulberry32(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function event(over: Partial<AuditEventV1> & { id: string; ts: number }): AuditEventV1 {
  return {
    session: null,
    label: null,
    client: "127.0.0.1",
    method: "GET",
    scheme: "http",
    host: "a.test",
    port: 80,
    path: "/",
    query: null,
    status: 200,
    decision: "allow",
    rule: null,
    rule_source: null,
    reason: "allowed",
    policy: null,
    bytes_in: 0,
    bytes_out: 10,
    duration_ms: 1.5,
    error: null,
    headers: JSON.stringify({ accept: "*/*", authorization: "[REDACTED]" }),
    ...over,
  };
}

/** Random rows over `days` before `now`, with distinct timestamps (so orders are total). */
function randomRows(n: number, now: number, days: number, seed = 7): AuditEventV1[] {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const hosts = Array.from({ length: 25 }, (_, i) => `h${i}.example.com`);
  const sessions = [null, null, "s-a", "s-b", "s-c", "s-d"];
  const rules = [null, "r1", "r2", "r3", "r4"];
  const models: [string | null, string][] = [
    ["openai", "gpt-4o"],
    ["openai", "gpt-4o-mini"],
    ["anthropic", "claude"],
    [null, "claude"],
    ["gemini", "gemini-pro"],
  ];
  const span = days * 86_400_000;
  const step = Math.floor(span / n);
  const rows: AuditEventV1[] = [];
  for (let i = 0; i < n; i++) {
    const ts = now - span + i * step + Math.floor(rnd() * (step - 1));
    const session = pick(sessions);
    const llm = rnd() < 0.3;
    const [provider, model] = llm ? pick(models) : [null, null];
    const priced = llm && rnd() < 0.8;
    const r = rnd();
    rows.push(event({
      id: `id-${String(i).padStart(6, "0")}`,
      ts,
      session,
      label: session === null ? null : `${session}-label-${i % 3}`,
      host: hosts[Math.floor(Math.pow(rnd(), 2) * hosts.length)],
      path: `/p/${i}`,
      decision: r < 0.1
        ? "deny"
        : r < 0.15
        ? "would_deny"
        : r < 0.2
        ? "error"
        : r < 0.6
        ? "allow"
        : "log",
      rule: pick(rules),
      reason: `reason ${i}`,
      provider,
      model,
      input_tokens: llm ? Math.floor(rnd() * 1000) : null,
      output_tokens: llm ? Math.floor(rnd() * 100) : null,
      // Binary fractions: sums are exact in any order.
      cost_usd: priced ? Math.floor(rnd() * 4096) / 1024 : null,
      findings: rnd() < 0.02
        ? [{
          detector: "aws_access_key",
          direction: "request",
          location: "body",
          sample: "AKIA…WXYZ",
          action: "warn",
        }]
        : [],
    }));
  }
  return rows;
}

async function withDb(rows: AuditEventV1[], fn: (path: string) => void | Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-dash-" });
  try {
    const store = AuditStore.open(`${dir}/audit.db`, { flushMs: 60_000 });
    for (const r of rows) store.add(r);
    store.close();
    await fn(`${dir}/audit.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The same statistics, computed naively. */
function naiveStats(rows: AuditEventV1[], hours: number, session: string | null, now: number) {
  const until = now;
  const since = now - hours * 3_600_000;
  const inRange = rows.filter((r) =>
    r.ts >= since && r.ts <= until && (session === null || r.session === session)
  );
  const size = bucketSize(until - since);
  const points: Stats["buckets"]["points"] = [];
  for (let t = Math.floor(since / size) * size; t <= until; t += size) {
    const b = inRange.filter((r) => r.ts >= t && r.ts < t + size);
    const p = {
      ts: t,
      requests: b.length,
      allow: 0,
      log: 0,
      deny: 0,
      would_deny: 0,
      error: 0,
      spend_usd: b.reduce((s, r) => s + (r.model != null ? r.cost_usd ?? 0 : 0), 0),
    };
    for (const r of b) p[r.decision]++;
    points.push(p);
  }
  const hostMap = new Map<string, Stats["top_hosts"][number]>();
  for (const r of inRange) {
    const h = hostMap.get(r.host) ?? { host: r.host, requests: 0, deny: 0, would_deny: 0 };
    h.requests++;
    if (r.decision === "deny" || r.decision === "would_deny") h[r.decision]++;
    hostMap.set(r.host, h);
  }
  const ruleMap = new Map<string | null, Stats["top_denied_rules"][number]>();
  for (const r of inRange) {
    if (r.decision !== "deny" && r.decision !== "would_deny") continue;
    const e = ruleMap.get(r.rule) ?? { rule: r.rule, deny: 0, would_deny: 0, last_ts: 0 };
    e[r.decision]++;
    e.last_ts = Math.max(e.last_ts, r.ts);
    ruleMap.set(r.rule, e);
  }
  const modelMap = new Map<string, Stats["spend_by_model"][number]>();
  for (const r of inRange) {
    if (r.model == null) continue;
    const k = `${r.model}\u0000${r.provider}`;
    const e = modelMap.get(k) ??
      {
        provider: r.provider ?? null,
        model: r.model,
        requests: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0,
      };
    e.requests++;
    e.input_tokens += r.input_tokens ?? 0;
    e.output_tokens += r.output_tokens ?? 0;
    e.cost_usd += r.cost_usd ?? 0;
    modelMap.set(k, e);
  }
  const sessMap = new Map<string | null, Stats["spend_by_session"][number]>();
  for (const r of inRange) {
    if (r.cost_usd == null) continue;
    const e = sessMap.get(r.session) ??
      { session: r.session, label: null, requests: 0, cost_usd: 0 };
    e.requests++;
    e.cost_usd += r.cost_usd;
    sessMap.set(r.session, e);
  }
  const latestLabel = (s: string) =>
    rows.filter((r) => r.session === s).sort((a, b) => b.ts - a.ts)[0]?.label ?? null;
  const spendByModel = [...modelMap.values()].sort((a, b) =>
    b.cost_usd - a.cost_usd || b.requests - a.requests
  );
  const totals = {
    requests: inRange.length,
    allow: 0,
    log: 0,
    deny: 0,
    would_deny: 0,
    error: 0,
    hosts: hostMap.size,
    llm_requests: spendByModel.reduce((s, m) => s + m.requests, 0),
    input_tokens: spendByModel.reduce((s, m) => s + m.input_tokens, 0),
    output_tokens: spendByModel.reduce((s, m) => s + m.output_tokens, 0),
    spend_usd: spendByModel.reduce((s, m) => s + m.cost_usd, 0),
  };
  for (const r of inRange) totals[r.decision]++;
  return {
    hours,
    session,
    since,
    until,
    totals,
    top_hosts: [...hostMap.values()].sort((a, b) =>
      b.requests - a.requests || (a.host < b.host ? -1 : 1)
    ).slice(0, 10),
    top_denied_rules: [...ruleMap.values()].sort((a, b) =>
      b.deny + b.would_deny - (a.deny + a.would_deny) || b.last_ts - a.last_ts
    ).slice(0, 10),
    recent_denials: inRange.filter((r) => r.decision === "deny" || r.decision === "would_deny")
      .sort((a, b) => b.ts - a.ts).slice(0, 20).map((r) => ({
        id: r.id,
        ts: r.ts,
        decision: r.decision,
        method: r.method,
        scheme: r.scheme,
        host: r.host,
        port: r.port,
        path: r.path,
        status: r.status,
        rule: r.rule,
        reason: r.reason,
        policy: r.policy,
        session: r.session,
        label: r.label,
      })),
    spend_by_model: spendByModel,
    spend_by_session: [...sessMap.values()].sort((a, b) =>
      b.cost_usd - a.cost_usd || (a.session === null ? 1 : b.session === null ? -1 : 0) ||
      String(a.session).localeCompare(String(b.session))
    ).slice(0, 10).map((e) => ({
      ...e,
      label: e.session === null ? null : latestLabel(e.session),
    })),
    buckets: { size_ms: size, points },
  };
}

const NOW = 1_750_000_000_000;

Deno.test("stats match a naive computation for every range, with and without a session", async () => {
  const rows = randomRows(4000, NOW, 10);
  await withDb(rows, (path) => {
    const reader = new AuditReader(path);
    try {
      for (const hours of [1, 24, 168, 24 * 30]) {
        for (const session of [null, "s-a", "s-none"]) {
          const got = reader.stats({ hours, session }, NOW);
          const want = naiveStats(rows, hours, session, NOW);
          // In a session view, `hosts` counts the session's hosts.
          assert.deepEqual(got, want, `hours=${hours} session=${session}`);
        }
      }
    } finally {
      reader.close();
    }
  });
});

Deno.test("stats: bucket sizes give at most 61 points; ranges are [since, until]", () => {
  assert.equal(bucketSize(3_600_000), 60_000);
  assert.equal(bucketSize(24 * 3_600_000), 1_800_000);
  assert.equal(bucketSize(168 * 3_600_000), 10_800_000);
  assert.equal(bucketSize(8760 * 3_600_000), 7 * 86_400_000);
});

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
    ...over,
  };
}

Deno.test("audit listing: filters, order, pagination and totals match a naive filter", async () => {
  const rows = randomRows(3000, NOW, 5, 11);
  rows.push(event({
    id: "weird",
    ts: NOW - 5,
    host: "x.test",
    path: "/100%_off\\now",
    reason: "50% off_sale",
    decision: "deny",
    rule: "r1",
  }));
  await withDb(rows, (path) => {
    const reader = new AuditReader(path);
    try {
      const newest = [...rows].sort((a, b) => b.ts - a.ts);
      const check = (q: Partial<AuditQuery>, pred: (r: AuditEventV1) => boolean) => {
        const page = reader.audit(query(q));
        const all = newest.filter(pred);
        const offset = q.offset ?? 0;
        const limit = q.limit ?? 50;
        assert.deepEqual(
          page.items.map((r) => r.id),
          all.slice(offset, offset + limit).map((r) => r.id),
          JSON.stringify(q),
        );
        assert.equal(page.total, all.length, JSON.stringify(q));
        assert.equal(page.total_capped, false);
      };
      check({}, () => true);
      check({ limit: 7, offset: 13 }, () => true);
      check({ host: "h3.example.com" }, (r) => r.host === "h3.example.com");
      check({ host: "h1*.example.com" }, (r) => /^h1.*\.example\.com$/.test(r.host));
      check({ decisions: ["deny"] }, (r) => r.decision === "deny");
      check(
        { decisions: ["deny", "would_deny"], offset: 40 },
        (r) => r.decision === "deny" || r.decision === "would_deny",
      );
      check({ rule: "r2" }, (r) => r.rule === "r2");
      check({ rule: "r2", limit: 10, offset: 30 }, (r) => r.rule === "r2");
      check(
        { rule: "r2", decisions: ["log", "error"] },
        (r) => r.rule === "r2" && (r.decision === "log" || r.decision === "error"),
      );
      check(
        { session: "s-b", decisions: ["allow"] },
        (r) => r.session === "s-b" && r.decision === "allow",
      );
      check(
        { since: NOW - 86_400_000, until: NOW - 3_600_000 },
        (r) => r.ts >= NOW - 86_400_000 && r.ts <= NOW - 3_600_000,
      );
      check({ search: "/p/12" }, (r) => r.path!.includes("/p/12"));
      // LIKE wildcards in the search text match literally.
      check({ search: "100%_off" }, (r) => r.path!.includes("100%_off"));
      check({ search: "0% off_" }, (r) => r.reason.includes("0% off_"));
      check({ search: "ID-00012" }, (r) => r.id.toLowerCase().includes("id-00012"));
      check({ host: "nope.test" }, () => false);

      const one = reader.audit(query({ limit: 1 })).items[0];
      assert.deepEqual(Object.keys(one), [
        "id",
        "ts",
        "session",
        "label",
        "client",
        "method",
        "scheme",
        "host",
        "port",
        "path",
        "query",
        "status",
        "decision",
        "rule",
        "rule_source",
        "reason",
        "policy",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "error",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost_usd",
        "usage_partial",
        "price_unknown",
        "findings_count",
      ]);
      const flagged = rows.find((r) => (r.findings?.length ?? 0) > 0)!;
      const detail = reader.row(flagged.id)!;
      assert.deepEqual(detail.headers, { accept: "*/*", authorization: "[REDACTED]" });
      assert.equal(detail.findings.length, 1);
      assert.deepEqual(
        { ...detail.findings[0], id: 0, ts: 0 },
        {
          id: 0,
          ts: 0,
          detector: "aws_access_key",
          direction: "request",
          location: "body",
          sample: "AKIA…WXYZ",
          action: "warn",
        },
      );
      assert.equal(reader.row("no-such-id"), null);
      const found = reader.findings(1000);
      assert.equal(found.length, rows.filter((r) => r.findings?.length).length);
      assert.deepEqual(found.map((f) => f.ts), [...found.map((f) => f.ts)].sort((a, b) => b - a));
    } finally {
      reader.close();
    }
  });
});

Deno.test("sessions and rule hits match a naive computation", async () => {
  const rows = randomRows(2000, NOW, 3, 5);
  await withDb(rows, (path) => {
    const reader = new AuditReader(path);
    try {
      for (const since of [null, NOW - 86_400_000]) {
        const inRange = rows.filter((r) => since === null || r.ts >= since);
        const keys = [...new Set(inRange.map((r) => r.session))];
        const want = keys.map((s) => {
          const mine = inRange.filter((r) => r.session === s).sort((a, b) => a.ts - b.ts);
          const latest = rows.filter((r) => r.session === s).sort((a, b) => b.ts - a.ts)[0];
          return {
            session: s,
            label: s === null ? null : latest.label,
            requests: mine.length,
            deny: mine.filter((r) => r.decision === "deny").length,
            would_deny: mine.filter((r) => r.decision === "would_deny").length,
            spend_usd: mine.reduce((x, r) => x + (r.cost_usd ?? 0), 0),
            first_ts: mine[0].ts,
            last_ts: mine[mine.length - 1].ts,
          };
        }).sort((a, b) => b.last_ts - a.last_ts);
        assert.deepEqual(reader.sessions(100, since), want);
        assert.deepEqual(reader.sessions(2, since), want.slice(0, 2));
      }
      const names = [null, "r1", "r2", "r3", "r4", "never"];
      const hits = reader.ruleHits(names);
      for (const n of names) {
        const mine = rows.filter((r) => r.rule === n);
        assert.deepEqual(hits.get(n), {
          hits: mine.length,
          last_ts: mine.length ? Math.max(...mine.map((r) => r.ts)) : null,
        });
      }
    } finally {
      reader.close();
    }
  });
});

Deno.test("a missing database reads as empty, and is picked up once it exists", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-dash-" });
  const reader = new AuditReader(`${dir}/later.db`);
  try {
    assert.equal(reader.available, false);
    const s = reader.stats({ hours: 24, session: null }, NOW);
    assert.equal(s.totals.requests, 0);
    assert.equal(s.buckets.points.length, 49);
    assert.deepEqual(reader.audit(query()), {
      items: [],
      total: 0,
      total_capped: false,
      limit: 50,
      offset: 0,
    });
    assert.deepEqual(reader.sessions(10, null), []);
    assert.deepEqual(reader.findings(10), []);
    assert.equal(reader.row("x"), null);
    const store = AuditStore.open(`${dir}/later.db`, { flushMs: 60_000 });
    store.add(event({ id: "first", ts: NOW - 1000 }));
    store.flush();
    // A failed open is retried after 500 ms, not on every request.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(reader.stats({ hours: 24, session: null }, NOW).totals.requests, 1);
    // The writer keeps writing; the reader sees new rows without reopening.
    store.add(event({ id: "second", ts: NOW - 500, decision: "deny" }));
    store.flush();
    assert.deepEqual(reader.audit(query()).items.map((r) => r.id), ["second", "first"]);
    store.close();
  } finally {
    reader.close();
    await Deno.remove(dir, { recursive: true });
  }
});

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
      `"decision" must be one or more of allow, log, deny, would_deny, error (comma-separated), not "alow" (did you mean "allow"?)`,
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
      `unknown parameter "hots" (did you mean "host"?); known: limit, offset, host, hostname, decision, session, session_id, rule, search, since, until`,
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
  assert.deepEqual([...DECISIONS], ["allow", "log", "deny", "would_deny", "error"]);
});
