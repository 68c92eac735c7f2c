/**
 * The SQLite read model against real SQLite files written by the real audit
 * writer: every aggregate is checked against a plain JS computation over the
 * same rows, for several ranges and with and without a session.
 */
import assert from "node:assert/strict";
import { AuditStore } from "./store.ts";
import type { AuditEventV1 } from "./event.ts";
import {
  type AuditQuery,
  AuditReadError,
  type AuditReadModel,
  bucketSize,
  type Stats,
} from "./read.ts";
import { openAuditFile, openAuditReader } from "./sqlite_read.ts";
import { auditFromRows } from "./memory.ts";
import { writeLegacyAudit } from "./testing.ts";
import { parsePgUrl, type PgTarget } from "./pg.ts";
import { PgAuditStore } from "./pg_store.ts";
import { openPgAuditReader } from "./pg_read.ts";
import {
  PG_FOUND,
  type PgServer,
  pgTestName,
  startPostgres,
} from "../../tests/support/postgres.ts";

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
        : r < 0.22
        ? "challenge"
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
      // Some rows are tunnels (CONNECT, no path): counted apart from requests.
      ...(rnd() < 0.15 ? { method: "CONNECT", scheme: "https", port: 443, path: null } : {}),
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
  for (const [i, r] of rows.entries()) {
    if (r.decision !== "deny" && r.decision !== "would_deny") continue;
    r.policy = [null, "dlp", "rate_limit"][i % 3];
    r.status = r.policy === "rate_limit" ? 429 : 403;
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

/** A read model holding given rows: the SQLite file the audit store writes, or PostgreSQL. */
interface Backend {
  name: string;
  withReader(
    rows: AuditEventV1[],
    fn: (reader: AuditReadModel) => void | Promise<void>,
  ): Promise<void>;
}

const sqliteBackend: Backend = {
  name: "sqlite",
  withReader: (rows, fn) =>
    withDb(rows, async (path) => {
      const reader = openAuditReader(path);
      try {
        await fn(reader);
      } finally {
        await reader.close();
      }
    }),
};

/** Tests every backend must pass: SQLite here, PostgreSQL in one test at the end of the file. */
const readModelTests: [string, (b: Backend) => Promise<void>][] = [];

function readModelTest(name: string, fn: (b: Backend) => Promise<void>) {
  readModelTests.push([name, fn]);
  Deno.test(name, () => fn(sqliteBackend));
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
    const all = inRange.filter((r) => r.ts >= t && r.ts < t + size);
    const b = all.filter((r) => r.method !== "CONNECT");
    const p = {
      ts: t,
      requests: b.length,
      allow: 0,
      log: 0,
      deny: 0,
      would_deny: 0,
      error: 0,
      challenge: 0,
      tunnels: all.length - b.length,
      spend_usd: all.reduce((s, r) => s + (r.model != null ? r.cost_usd ?? 0 : 0), 0),
    };
    for (const r of b) p[r.decision]++;
    points.push(p);
  }
  const hostMap = new Map<string, Stats["top_hosts"][number]>();
  for (const r of inRange) {
    const h = hostMap.get(r.host) ??
      { host: r.host, requests: 0, deny: 0, would_deny: 0, tunnels: 0 };
    if (r.method === "CONNECT") h.tunnels++;
    else {
      h.requests++;
      if (r.decision === "deny" || r.decision === "would_deny") h[r.decision]++;
    }
    hostMap.set(r.host, h);
  }
  const ruleMap = new Map<string | null, Stats["top_denied_rules"][number]>();
  for (const r of inRange) {
    if (r.decision !== "deny" && r.decision !== "would_deny") continue;
    if (r.method === "CONNECT") continue;
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
    requests: inRange.filter((r) => r.method !== "CONNECT").length,
    tunnels: inRange.filter((r) => r.method === "CONNECT").length,
    allow: 0,
    log: 0,
    deny: 0,
    would_deny: 0,
    error: 0,
    challenge: 0,
    hosts: hostMap.size,
    llm_requests: spendByModel.reduce((s, m) => s + m.requests, 0),
    input_tokens: spendByModel.reduce((s, m) => s + m.input_tokens, 0),
    output_tokens: spendByModel.reduce((s, m) => s + m.output_tokens, 0),
    spend_usd: spendByModel.reduce((s, m) => s + m.cost_usd, 0),
  };
  for (const r of inRange) if (r.method !== "CONNECT") totals[r.decision]++;
  return {
    hours,
    session,
    since,
    until,
    totals,
    top_hosts: [...hostMap.values()].sort((a, b) =>
      b.requests + b.tunnels - (a.requests + a.tunnels) || (a.host < b.host ? -1 : 1)
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

readModelTest(
  "stats match a naive computation for every range, with and without a session",
  async (backend) => {
    const rows = randomRows(4000, NOW, 10);
    await backend.withReader(rows, async (reader) => {
      {
        for (const hours of [1, 24, 168, 24 * 30]) {
          for (const session of [null, "s-a", "s-none"]) {
            const got = await reader.stats({ hours, session }, NOW);
            const want = naiveStats(rows, hours, session, NOW);
            // In a session view, `hosts` counts the session's hosts.
            assert.deepEqual(got, want, `hours=${hours} session=${session}`);
          }
        }
      }
    });
  },
);

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

readModelTest(
  "audit listing: filters, order, pagination and totals match a naive filter",
  async (backend) => {
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
    await backend.withReader(rows, async (reader) => {
      {
        const newest = [...rows].sort((a, b) => b.ts - a.ts);
        const check = async (q: Partial<AuditQuery>, pred: (r: AuditEventV1) => boolean) => {
          const page = await reader.audit(query(q));
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
        await check({}, () => true);
        await check({ limit: 7, offset: 13 }, () => true);
        await check({ host: "h3.example.com" }, (r) => r.host === "h3.example.com");
        await check({ host: "h1*.example.com" }, (r) => /^h1.*\.example\.com$/.test(r.host));
        await check({ decisions: ["deny"] }, (r) => r.decision === "deny");
        await check(
          { decisions: ["deny", "would_deny"], offset: 40 },
          (r) => r.decision === "deny" || r.decision === "would_deny",
        );
        await check({ rule: "r2" }, (r) => r.rule === "r2");
        await check({ rule: "r2", limit: 10, offset: 30 }, (r) => r.rule === "r2");
        await check(
          { rule: "r2", decisions: ["log", "error"] },
          (r) => r.rule === "r2" && (r.decision === "log" || r.decision === "error"),
        );
        await check(
          { session: "s-b", decisions: ["allow"] },
          (r) => r.session === "s-b" && r.decision === "allow",
        );
        await check(
          { since: NOW - 86_400_000, until: NOW - 3_600_000 },
          (r) => r.ts >= NOW - 86_400_000 && r.ts <= NOW - 3_600_000,
        );
        await check({ search: "/p/12" }, (r) => (r.path ?? "").includes("/p/12"));
        await check({ tunnels: true }, (r) => r.method === "CONNECT");
        await check({ tunnels: false, offset: 20 }, (r) => r.method !== "CONNECT");
        await check(
          { tunnels: false, decisions: ["deny", "log"] },
          (r) => r.method !== "CONNECT" && (r.decision === "deny" || r.decision === "log"),
        );
        await check({ model: "claude" }, (r) => r.model === "claude");
        await check({ policy: "dlp" }, (r) => r.policy === "dlp");
        await check(
          { status: 403, session: "s-a" },
          (r) => r.status === 403 && r.session === "s-a",
        );
        // Sorting: NULLs last, ties newest first then by id.
        for (const column of ["host", "cost_usd", "model", "status"] as const) {
          for (const dir of ["asc", "desc"] as const) {
            const page = await reader.audit(
              query({ sort: { column, dir }, limit: 40, offset: 15 }),
            );
            const want = [...rows].sort((a, b) => {
              const x = a[column] ?? null, y = b[column] ?? null;
              if (x === null || y === null) {
                if (x !== y) return x === null ? 1 : -1;
              } else if (x !== y) return (x < y ? -1 : 1) * (dir === "asc" ? 1 : -1);
              return b.ts - a.ts || (a.id < b.id ? 1 : -1);
            });
            assert.deepEqual(
              page.items.map((r) => r.id),
              want.slice(15, 55).map((r) => r.id),
              `${column} ${dir}`,
            );
          }
        }
        await assert.rejects(
          reader.audit(query({ sort: { column: "id; DROP" as "ts", dir: "asc" } })),
          /cannot sort the audit by "id; DROP"/,
        );
        // LIKE wildcards in the search text match literally.
        await check({ search: "100%_off" }, (r) => (r.path ?? "").includes("100%_off"));
        await check({ search: "0% off_" }, (r) => r.reason.includes("0% off_"));
        await check({ search: "ID-00012" }, (r) => r.id.toLowerCase().includes("id-00012"));
        await check({ host: "nope.test" }, () => false);

        const one = (await reader.audit(query({ limit: 1 }))).items[0];
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
          "price_source",
          "price_incomplete",
          "price_missing",
          "service_tier",
          "reserved_usd",
          "charged_usd",
          "dest_ip",
          "inspection",
          "findings_count",
        ]);
        const flagged = rows.find((r) => (r.findings?.length ?? 0) > 0)!;
        const detail = (await reader.row(flagged.id))!;
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
        assert.equal(await reader.row("no-such-id"), null);
        const found = await reader.findings(1000);
        assert.equal(found.length, rows.filter((r) => r.findings?.length).length);
        assert.deepEqual(found.map((f) => f.ts), [...found.map((f) => f.ts)].sort((a, b) => b - a));
      }
    });
  },
);

readModelTest("sessions and rule hits match a naive computation", async (backend) => {
  const rows = randomRows(2000, NOW, 3, 5);
  await backend.withReader(rows, async (reader) => {
    {
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
        assert.deepEqual(await reader.sessions(100, since), want);
        assert.deepEqual(await reader.sessions(2, since), want.slice(0, 2));
      }
      const names = [null, "r1", "r2", "r3", "r4", "never"];
      const hits = await reader.ruleHits(names);
      for (const n of names) {
        const mine = rows.filter((r) => r.rule === n);
        const tunnels = mine.filter((r) => r.method === "CONNECT").length;
        assert.deepEqual(hits.get(n), {
          hits: mine.length - tunnels,
          tunnels,
          last_ts: mine.length ? Math.max(...mine.map((r) => r.ts)) : null,
        });
      }
    }
  });
});

Deno.test("a missing database reads as empty, and is picked up once it exists", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-dash-" });
  const reader = openAuditReader(`${dir}/later.db`);
  try {
    assert.equal(reader.available, false);
    const s = await reader.stats({ hours: 24, session: null }, NOW);
    assert.equal(s.totals.requests, 0);
    assert.equal(s.buckets.points.length, 49);
    assert.deepEqual(await reader.audit(query()), {
      items: [],
      total: 0,
      total_capped: false,
      limit: 50,
      offset: 0,
    });
    assert.deepEqual(await reader.sessions(10, null), []);
    assert.deepEqual(await reader.findings(10), []);
    assert.equal(await reader.row("x"), null);
    const store = AuditStore.open(`${dir}/later.db`, { flushMs: 60_000 });
    store.add(event({ id: "first", ts: NOW - 1000 }));
    store.flush();
    // A failed open is retried after 500 ms, not on every request.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal((await reader.stats({ hours: 24, session: null }, NOW)).totals.requests, 1);
    // The writer keeps writing; the reader sees new rows without reopening.
    store.add(event({ id: "second", ts: NOW - 500, decision: "deny" }));
    store.flush();
    assert.deepEqual((await reader.audit(query())).items.map((r) => r.id), ["second", "first"]);
    store.close();
  } finally {
    await reader.close();
    await Deno.remove(dir, { recursive: true });
  }
});

const T0 = Date.parse("2026-03-02T10:00:00Z");

Deno.test("replay rows: an audit written by the audit store, from a time on", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = AuditStore.open(`${dir}/a.db`);
    for (const [id, ts] of [["x", T0], ["y", T0 + 10], ["z", T0 - 10]] as const) {
      store.add({
        id,
        ts,
        session: null,
        label: null,
        client: "127.0.0.1",
        method: "GET",
        scheme: "http",
        host: "example.com",
        port: 80,
        path: "/",
        query: null,
        status: 200,
        decision: "allow",
        rule: null,
        rule_source: null,
        reason: "r",
        policy: null,
        bytes_in: 0,
        bytes_out: 0,
        duration_ms: 1,
        error: null,
        headers: "{}",
      });
    }
    store.close();
    const reader = openAuditFile(`${dir}/a.db`);
    assert.deepEqual((await reader.rowsSince(T0)).map((r) => r.id), ["x", "y"]);
    await reader.close();
    assert.throws(() => openAuditFile(`${dir}/none.db`), /file not found/);
    await Deno.writeTextFile(`${dir}/not.db`, "");
    assert.throws(() => openAuditFile(`${dir}/not.db`), /is not an agentgate audit/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

readModelTest(
  "replay rows carry every column, the headers and the findings count",
  async (backend) => {
    const rows = [
      event({ id: "a", ts: NOW - 2, headers: '{"x":"1"}', provider: "openai", model: "m" }),
      event({
        id: "b",
        ts: NOW - 1,
        usage_partial: true,
        findings: [{
          detector: "aws_access_key",
          direction: "request",
          location: "body",
          sample: "AKIA…WXYZ",
          action: "warn",
        }],
      }),
    ];
    await backend.withReader(rows, async (reader) => {
      {
        const [a, b] = await reader.rowsSince(0);
        assert.equal(a.headers, '{"x":"1"}');
        assert.deepEqual([a.provider, a.model, a.usage_partial, a.findings_count], [
          "openai",
          "m",
          null,
          0,
        ]);
        assert.deepEqual([b.provider, b.usage_partial, b.findings_count], [null, true, 1]);
      }
    });
  },
);

readModelTest(
  "spend rows: priced rows after a time, with their extra ledger keys",
  async (backend) => {
    const rows = [
      event({ id: "old", ts: NOW - 10_000, cost_usd: 1, model: "m" }),
      event({ id: "edge", ts: NOW - 5000, cost_usd: 1, model: "m" }),
      event({
        id: "keyed",
        ts: NOW - 4000,
        cost_usd: 0.25,
        model: "m",
        session: "s1",
        rule: "openai",
        client: "10.0.0.5",
        spend_keys: ["rule:openai:team:a"],
      }),
      event({ id: "plain", ts: NOW - 3000, cost_usd: 0.5, model: "m", host: "h.test" }),
      event({ id: "free", ts: NOW - 2000, cost_usd: 0, model: "m" }),
      event({ id: "unpriced", ts: NOW - 1000, cost_usd: null, model: "m" }),
      // No usable usage: its budgets were charged what it reserved.
      event({
        id: "reserved",
        ts: NOW - 900,
        cost_usd: null,
        model: "m",
        reserved_usd: 0.3,
        charged_usd: 0.3,
      }),
      // Released (no response): reserved, never charged.
      event({ id: "released", ts: NOW - 800, model: "m", reserved_usd: 0.3, charged_usd: null }),
    ];
    await backend.withReader(rows, async (reader) => {
      {
        const got = (await reader.spendRows(NOW - 5000)).sort((a, b) => a.ts - b.ts);
        // Strictly after the time, as the ledger's windows count; never a zero or unknown cost.
        assert.deepEqual(got, [
          {
            id: "keyed",
            ts: NOW - 4000,
            usd: 0.25,
            session: "s1",
            host: "a.test",
            client: "10.0.0.5",
            rule: "openai",
            spend_keys: ["rule:openai:team:a"],
          },
          {
            id: "plain",
            ts: NOW - 3000,
            usd: 0.5,
            session: null,
            host: "h.test",
            client: "127.0.0.1",
            rule: null,
            spend_keys: [],
          },
          {
            id: "reserved",
            ts: NOW - 900,
            usd: 0.3,
            session: null,
            host: "a.test",
            client: "127.0.0.1",
            rule: null,
            spend_keys: [],
          },
        ]);
      }
    });
  },
);

Deno.test("spend rows: none from a missing audit, an error from an unreadable one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-spend-" });
  try {
    const missing = openAuditReader(`${dir}/none.db`);
    assert.deepEqual(await missing.spendRows(0), []);
    await missing.close();
    // A budget must not restart from zero silently because the file cannot be read.
    await Deno.writeTextFile(`${dir}/junk.db`, "this is not a database, ".repeat(100));
    const junk = openAuditReader(`${dir}/junk.db`);
    await assert.rejects(
      () => junk.spendRows(0),
      (e: unknown) =>
        e instanceof AuditReadError && e.code === "unreadable" &&
        e.message.startsWith(`cannot open audit "${dir}/junk.db": `),
    );
    await junk.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an older audit is read as it is: missing columns are null, no findings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-old-" });
  try {
    // Schema v1: before LLM usage, findings and spend keys.
    writeLegacyAudit(`${dir}/v1.db`, [{
      id: "a",
      ts: 5,
      session: "s",
      label: null,
      client: "127.0.0.1",
      method: "GET",
      scheme: "http",
      host: "h",
      port: 80,
      path: "/",
      query: null,
      status: 403,
      decision: "deny",
      rule: "r",
      rule_source: "f:1",
      reason: "no",
      policy: null,
      bytes_in: 0,
      bytes_out: 0,
      duration_ms: 1,
      error: null,
      headers: "{}",
    }]);
    const reader = openAuditFile(`${dir}/v1.db`);
    try {
      const [row] = await reader.rowsSince(0);
      assert.deepEqual([row.id, row.model, row.cost_usd, row.headers, row.findings_count], [
        "a",
        null,
        null,
        "{}",
        0,
      ]);
      assert.deepEqual((await reader.row("a"))?.findings, []);
      assert.deepEqual(await reader.findings(10), []);
      assert.deepEqual(await reader.spendRows(0), []);
      assert.equal((await reader.audit(query())).items[0].findings_count, 0);
    } finally {
      await reader.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the writer's reader: flushed rows through the store's own connection", async () => {
  const store = AuditStore.open(":memory:", { flushMs: 60_000 });
  try {
    store.add(event({ id: "one", ts: NOW - 10, cost_usd: 0.5, model: "m" }));
    const reader = store.reader();
    assert.equal(reader.source, ":memory:");
    assert.deepEqual(await reader.rowsSince(0), [], "queued, not yet written");
    store.flush();
    assert.deepEqual((await reader.rowsSince(0)).map((r) => r.id), ["one"]);
    assert.equal((await reader.spendRows(0)).length, 1);
    // Closing the reader leaves the store's connection open.
    await reader.close();
    store.add(event({ id: "two", ts: NOW - 5 }));
    assert.equal(store.flush(), 1);
    assert.deepEqual((await store.reader().rowsSince(0)).map((r) => r.id), ["one", "two"]);
  } finally {
    store.close();
  }
});

Deno.test("an in-memory audit from API rows answers like the file they came from", async () => {
  const rows = randomRows(500, NOW, 2, 3);
  await withDb(rows, async (path) => {
    const file = openAuditFile(path);
    try {
      const page = await file.audit(query({ limit: 1000 }));
      const memory = auditFromRows(
        [...page.items, { id: "extra", ts: NOW, unknown_key: 1 } as never],
        "api",
      );
      try {
        assert.equal(memory.source, "api");
        // Booleans, nulls and numbers survive the trip; unknown keys are ignored;
        // missing NOT NULL columns make a row that is skipped, never an error.
        const back = await memory.audit(query({ limit: 1000 }));
        assert.deepEqual(
          back.items.map((r) => ({ ...r, findings_count: 0 })),
          page.items.map((r) => ({ ...r, findings_count: 0 })),
        );
        for (const hours of [1, 24]) {
          assert.deepEqual(
            await memory.stats({ hours, session: null }, NOW),
            await file.stats({ hours, session: null }, NOW),
          );
        }
        const filter = { session: "s-a", since: null, until: null };
        assert.deepEqual(
          await memory.reportAggregates(filter),
          await file.reportAggregates(filter),
        );
        assert.deepEqual(
          (await memory.spendRows(0)).sort((a, b) => a.ts - b.ts),
          (await file.spendRows(0)).sort((a, b) => a.ts - b.ts),
        );
        // Headers given as an object (a row's detail) are stored as JSON and read back.
        const detailed = auditFromRows([{
          ...page.items[0],
          headers: { accept: "*/*" } as unknown as string,
        }]);
        assert.deepEqual((await detailed.row(page.items[0].id))?.headers, { accept: "*/*" });
        await detailed.close();
      } finally {
        await memory.close();
      }
    } finally {
      await file.close();
    }
  });
});

// --- PostgreSQL: the same tests, against a real server ------------------------

/** Rows written by the PostgreSQL writer into a database emptied first. */
function pgBackend(server: PgServer): Backend {
  const target = parsePgUrl(server.url, "AGENTGATE_TEST_PGPASSWORD") as PgTarget;
  const env = (k: string) => k === "AGENTGATE_TEST_PGPASSWORD" ? server.password : undefined;
  return {
    name: "postgres",
    async withReader(rows, fn) {
      await server.psql("DROP TABLE IF EXISTS audit, findings, agentgate_schema", "agentgate");
      const store = await PgAuditStore.open(target, {
        env,
        spoolPath: ":memory:",
        flushMs: 60_000,
      });
      for (const r of rows) store.add(r);
      await store.close();
      assert.equal(store.written, rows.length, "every row reached PostgreSQL");
      const reader = openPgAuditReader(target, env);
      try {
        await fn(reader);
      } finally {
        await reader.close();
      }
    },
  };
}

Deno.test({
  name: pgTestName("postgres: the read model answers as SQLite's, test for test"),
  ignore: !PG_FOUND,
  async fn(t) {
    const server = await startPostgres();
    try {
      const pg = pgBackend(server);
      for (const [name, fn] of readModelTests) await t.step(name, () => fn(pg));
      await t.step(
        "report aggregates, sessions, rule hits and findings equal SQLite's",
        async () => {
          const rows = randomRows(3000, NOW, 5, 23);
          await withDb(rows, async (path) => {
            const lite = openAuditReader(path);
            try {
              await pg.withReader(rows, async (reader) => {
                for (
                  const filter of [
                    { session: null, since: null, until: null },
                    { session: "s-a", since: null, until: null },
                    { session: null, since: NOW - 86_400_000, until: NOW - 3_600_000 },
                    { session: "s-none", since: null, until: null },
                  ]
                ) {
                  const a = await lite.reportAggregates(filter);
                  const b = await reader.reportAggregates(filter);
                  const byKey = <T>(xs: T[], k: (x: T) => string) =>
                    [...xs].sort((x, y) => k(x) < k(y) ? -1 : k(x) > k(y) ? 1 : 0);
                  // Hosts and rules come in any order (the contract); the rest in the stated order.
                  assert.deepEqual(
                    {
                      ...b,
                      hosts: byKey(b.hosts, (h) => h.host),
                      rules: byKey(b.rules, (r) => String(r.rule)),
                    },
                    {
                      ...a,
                      hosts: byKey(a.hosts, (h) => h.host),
                      rules: byKey(a.rules, (r) => String(r.rule)),
                    },
                    JSON.stringify(filter),
                  );
                }
                // A finding's id is the storage's own counter.
                const noId = <T extends { id: number }>(xs: T[]) =>
                  xs.map((f) => ({ ...f, id: 0 }));
                assert.deepEqual(
                  noId(await reader.findings(1000)),
                  noId(await lite.findings(1000)),
                );
                assert.deepEqual(await reader.sessions(100, null), await lite.sessions(100, null));
                for (const id of [rows[5].id, rows.find((r) => r.findings?.length)!.id, "none"]) {
                  const [a, b] = [await reader.row(id), await lite.row(id)];
                  assert.deepEqual(
                    a && { ...a, findings: noId(a.findings) },
                    b && { ...b, findings: noId(b.findings) },
                  );
                }
                assert.deepEqual(
                  await reader.rowsSince(NOW - 86_400_000),
                  await lite.rowsSince(NOW - 86_400_000),
                );
              });
            } finally {
              await lite.close();
            }
          });
        },
      );
    } finally {
      await server.dispose();
    }
  },
});
