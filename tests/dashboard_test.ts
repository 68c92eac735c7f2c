/**
 * The dashboard's JSON API, access rules and metrics end to end: a spawned
 * agentgate whose audit is seeded (rows written before it starts, plus real
 * requests sent through it to a local origin), read over real HTTP.
 */
import assert from "node:assert/strict";
import type http from "node:http";
import { AuditStore } from "../src/audit/store.ts";
import type { AuditEventV1 } from "../src/audit/event.ts";
import {
  auditRows,
  curl,
  MAIN,
  RUN_FLAGS,
  startOrigin,
  startProxy,
  waitForRows,
} from "./helpers.ts";

const HOUR = 3_600_000;

function row(over: Partial<AuditEventV1> & { id: string; ts: number }): AuditEventV1 {
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
    reason: "no rule matched: default log",
    policy: null,
    bytes_in: 0,
    bytes_out: 100,
    duration_ms: 12.5,
    error: null,
    headers: JSON.stringify({ accept: "*/*" }),
    ...over,
  };
}

/** Rows written before the proxy starts: two LLM calls, denials, an error, older traffic. */
function seedRows(t: number): AuditEventV1[] {
  const llm = {
    method: "POST",
    scheme: "https",
    port: 443,
    rule: "llm",
    rule_source: "agentgate.yaml:14",
    reason: 'rule "llm" allows',
    headers: JSON.stringify({ authorization: "[REDACTED]", "content-type": "application/json" }),
  };
  return [
    row({
      ...llm,
      id: "seed-a",
      ts: t - 1 * HOUR,
      session: "s-alpha",
      label: "build",
      host: "api.openai.com",
      path: "/v1/chat/completions",
      provider: "openai",
      model: "gpt-4o",
      input_tokens: 1000,
      output_tokens: 200,
      cost_usd: 0.25,
      usage_partial: false,
      price_unknown: false,
    }),
    row({
      ...llm,
      id: "seed-b",
      ts: t - 2 * HOUR,
      session: "s-beta",
      label: "review",
      host: "api.anthropic.com",
      path: "/v1/messages",
      provider: "anthropic",
      model: "claude-sonnet-4",
      input_tokens: 2000,
      output_tokens: 100,
      cost_usd: 0.5,
      usage_partial: false,
      price_unknown: false,
    }),
    row({
      id: "seed-c",
      ts: t - 3 * HOUR,
      session: "s-alpha",
      label: "build",
      host: "evil.test",
      path: "/steal",
      query: "key=[REDACTED]&q=1",
      status: 403,
      decision: "deny",
      rule: "no-evil",
      rule_source: "agentgate.yaml:10",
      reason: "evil is blocked",
      headers: JSON.stringify({ accept: "*/*", "x-api-key": "[REDACTED]" }),
      findings: [{
        detector: "aws_access_key",
        direction: "request",
        location: "url",
        sample: "AKIA…WXYZ",
        action: "block",
      }],
    }),
    row({
      id: "seed-d",
      ts: t - 4 * HOUR,
      host: "maybe.test",
      decision: "would_deny",
      rule: "audit-only",
      reason: "would be denied (audit mode)",
    }),
    row({
      id: "seed-e",
      ts: t - 5 * HOUR,
      host: "down.test",
      status: 502,
      decision: "error",
      reason: 'connection refused by "down.test:80"',
      error: "upstream refused",
    }),
    row({ id: "seed-f", ts: t - 30 * HOUR, session: "s-alpha", label: "build", host: "old.test" }),
    row({
      id: "seed-g",
      ts: t - 72 * HOUR,
      host: "evil.test",
      status: 403,
      decision: "deny",
      rule: "no-evil",
      rule_source: "agentgate.yaml:10",
      reason: "evil is blocked",
    }),
  ];
}

const policy = (auditPath: string, extra = "") =>
  `version: 1
default: log
audit: { path: ${JSON.stringify(auditPath)} }
rules:
  - name: no-admin
    match: http://127.0.0.1/admin/**
    action: deny
    reason: admin is off limits

  - name: no-evil
    match: evil.test
    action: deny
    reason: evil is blocked
  - name: llm
    match: [api.openai.com, api.anthropic.com]
    action: allow
${extra}`;

/**
 * The origin pinned to itself: a pinned address is the operator's explicit
 * choice, so the address guard lets the test reach its origin on loopback
 * while the default still decides (the rules and hits asserted stay the policy's).
 */
const pinOrigin = (port: number) =>
  `upstream: { resolve: { "127.0.0.1:${port}": "127.0.0.1:${port}" } }\n`;

async function getJson(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const body = await res.json();
  return { status: res.status, headers: res.headers, body };
}

/** A seeded audit, a running proxy, and the two live rows it recorded. */
async function setup(extra: (t0: number) => AuditEventV1[] = () => []) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-dash-e2e-" });
  const auditPath = `${dir}/audit.db`;
  const t0 = Date.now();
  const seeded = [...seedRows(t0), ...extra(t0)];
  const store = AuditStore.open(auditPath, { flushMs: 60_000 });
  for (const r of seeded) store.add(r);
  store.close();
  const origin = await startOrigin((_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("hello");
  });
  const proxy = await startProxy({ config: policy(auditPath, pinOrigin(origin.port)) });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  const ok = await fetch(`${origin.url}/ok?x=1`, { client });
  await ok.arrayBuffer();
  const denied = await fetch(`${origin.url}/admin/panel`, { client });
  await denied.arrayBuffer();
  assert.equal(denied.status, 403);
  await waitForRows(auditPath, seeded.length + 2);
  const live = auditRows(auditPath, "id NOT LIKE 'seed-%'");
  const liveOk = live.find((r) => r.id === ok.headers.get("x-agentgate-decision"))!;
  const liveDenied = live.find((r) => r.id === denied.headers.get("x-agentgate-decision"))!;
  assert.ok(liveOk && liveDenied);
  return {
    dir,
    auditPath,
    t0,
    seeded,
    origin,
    proxy,
    client,
    liveOk,
    liveDenied,
    api: (path: string) => getJson(`${proxy.url}${path}`),
    async dispose() {
      client.close();
      await proxy.dispose();
      await origin.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("dashboard API: tunnels apart, filters, sorting, CSV and JSON export", async () => {
  const s = await setup((t0) => [
    row({
      id: "tun-1",
      ts: t0 - 30 * 60_000,
      method: "CONNECT",
      scheme: "https",
      host: "api.openai.com",
      port: 443,
      path: null,
      decision: "log",
      rule: null,
      reason: "intercepted",
      headers: null,
    }),
    row({
      id: "tun-2",
      ts: t0 - 31 * 60_000,
      method: "CONNECT",
      scheme: "https",
      host: "github.com",
      port: 443,
      path: null,
      status: 403,
      decision: "deny",
      rule: null,
      reason: "no rule matched (default: deny)",
      headers: null,
    }),
    row({
      id: "csv-1",
      ts: t0 - 32 * 60_000,
      label: "=SUM(A1)",
      host: "x.test",
      reason: 'a "b", c',
    }),
  ]);
  try {
    const st = (await s.api("/_/api/stats?hours=24")).body;
    assert.equal(st.totals.tunnels, 2);
    assert.equal(st.totals.requests, 8, "7 requests + csv-1; the tunnels are apart");
    const rules = (await s.api("/_/api/rules")).body;
    assert.deepEqual([rules.default.hits, rules.default.tunnels], [4, 2]);
    const only = (await s.api("/_/api/audit?tunnels=only")).body;
    assert.deepEqual(only.items.map((r: { id: string }) => r.id), ["tun-1", "tun-2"]);
    const excl = (await s.api("/_/api/audit?tunnels=exclude&limit=100")).body;
    assert.equal(excl.total, 10);
    const gpt = (await s.api("/_/api/audit?model=gpt-4o")).body;
    assert.deepEqual(gpt.items.map((r: { model: string }) => r.model), ["gpt-4o"]);
    const st403 = (await s.api("/_/api/audit?status=403&tunnels=exclude")).body;
    assert.ok(st403.total >= 2 && st403.items.every((r: { status: number }) => r.status === 403));
    const byCost = (await s.api("/_/api/audit?sort=-cost_usd&limit=2")).body;
    assert.deepEqual(byCost.items.map((r: { cost_usd: number }) => r.cost_usd), [0.5, 0.25]);
    const bad = await s.api("/_/api/audit?sort=cost_us");
    assert.equal(bad.status, 400);
    assert.match(
      bad.body.reason,
      /"sort" must be a column .* not "cost_us" \(did you mean "cost_usd"\?\)/,
    );

    const csv = await fetch(`${s.proxy.url}/_/api/export?format=csv&host=x.test`);
    assert.equal(csv.status, 200);
    assert.match(csv.headers.get("content-type")!, /^text\/csv/);
    assert.match(
      csv.headers.get("content-disposition")!,
      /attachment; filename="agentgate-audit\.csv"/,
    );
    const lines = (await csv.text()).split("\r\n");
    assert.match(lines[0], /^id,ts,session,label,client,method,scheme,host,port,path,/);
    assert.equal(lines.length, 3, "the header, one row, and the final line break");
    // A formula-like label is defused for spreadsheets; quotes are doubled.
    assert.match(lines[1], /^csv-1,\d+,,'=SUM\(A1\),[^,]*,GET,http,x\.test,80,\/,.*,"a ""b"", c",/);
    const json = await (await fetch(`${s.proxy.url}/_/api/export?format=json&tunnels=only`)).json();
    assert.deepEqual(json.map((r: { id: string }) => r.id), ["tun-1", "tun-2"]);
    const all = await (await fetch(`${s.proxy.url}/_/api/export?format=json`)).json();
    assert.equal(all.length, 12);
    const badFormat = await s.api("/_/api/export?format=xml");
    assert.equal(badFormat.status, 400);
  } finally {
    await s.dispose();
  }
});

Deno.test("dashboard API: audit, detail, stats, sessions, rules, config, findings", async (t) => {
  const s = await setup();
  const byId = (id: string) => s.seeded.find((r) => r.id === id)!;
  const ids = (body: { items: { id: string }[] }) => body.items.map((r) => r.id);
  const newest = [
    ...[s.liveOk, s.liveDenied].sort((a, b) => Number(b.ts) - Number(a.ts)).map((r) =>
      String(r.id)
    ),
    "seed-a",
    "seed-b",
    "seed-c",
    "seed-d",
    "seed-e",
    "seed-f",
    "seed-g",
  ];
  try {
    await t.step("GET /_/api/audit: newest first, with the page's shape", async () => {
      const r = await s.api("/_/api/audit");
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("content-type"), "application/json");
      assert.equal(r.headers.get("x-content-type-options"), "nosniff");
      assert.equal(r.headers.get("access-control-allow-origin"), null);
      assert.deepEqual(Object.keys(r.body), ["items", "total", "total_capped", "limit", "offset"]);
      assert.deepEqual(ids(r.body), newest);
      assert.equal(r.body.total, 9);
      assert.equal(r.body.total_capped, false);
      const c = r.body.items.find((x: { id: string }) => x.id === "seed-c");
      const { findings: _f, headers: _h, ...seedC } = byId("seed-c");
      assert.deepEqual(c, {
        ...seedC,
        provider: null,
        model: null,
        input_tokens: null,
        output_tokens: null,
        cache_read_tokens: null,
        cache_write_tokens: null,
        reasoning_tokens: null,
        cost_usd: null,
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
        findings_count: 1,
      });
      const live = r.body.items.find((x: { id: string }) => x.id === s.liveDenied.id);
      assert.equal(live.host, "127.0.0.1");
      assert.equal(live.port, s.origin.port);
      assert.equal(live.path, "/admin/panel");
      assert.equal(live.rule, "no-admin");
      assert.equal(live.reason, "admin is off limits");
    });

    await t.step("filters, aliases, pagination, since/until", async () => {
      const q = async (qs: string) => {
        const r = await s.api(`/_/api/audit?${qs}`);
        assert.equal(r.status, 200, `${qs}: ${JSON.stringify(r.body)}`);
        return r.body;
      };
      assert.deepEqual(ids(await q("host=evil.test")), ["seed-c", "seed-g"]);
      assert.deepEqual(ids(await q("hostname=EVIL.test")), ["seed-c", "seed-g"]);
      assert.deepEqual(ids(await q("host=*.test&decision=error")), ["seed-e"]);
      assert.deepEqual(ids(await q("decision=deny")), [
        String(s.liveDenied.id),
        "seed-c",
        "seed-g",
      ]);
      assert.deepEqual(ids(await q("decision=deny,would_deny")), [
        String(s.liveDenied.id),
        "seed-c",
        "seed-d",
        "seed-g",
      ]);
      assert.deepEqual(ids(await q("session=s-alpha")), ["seed-a", "seed-c", "seed-f"]);
      assert.deepEqual(ids(await q("session_id=s-beta")), ["seed-b"]);
      assert.deepEqual(ids(await q("rule=no-evil")), ["seed-c", "seed-g"]);
      assert.deepEqual(ids(await q("search=REFUSED")), ["seed-e"]);
      assert.deepEqual(ids(await q("search=/admin/")), [String(s.liveDenied.id)]);
      assert.deepEqual(ids(await q("since=2h30m")), newest.slice(0, 4));
      assert.deepEqual(ids(await q(`since=${s.t0 - 5 * HOUR}&until=${s.t0 - 3 * HOUR}`)), [
        "seed-c",
        "seed-d",
        "seed-e",
      ]);
      assert.deepEqual(ids(await q("until=1d")), ["seed-f", "seed-g"]);
      assert.deepEqual(ids(await q(`since=${new Date(s.t0 - 31 * HOUR).toISOString()}&until=1d`)), [
        "seed-f",
      ]);
      const page = await q("limit=3&offset=2");
      assert.deepEqual(ids(page), newest.slice(2, 5));
      assert.deepEqual([page.total, page.limit, page.offset], [9, 3, 2]);
      const filtered = await q("decision=deny,would_deny&limit=2&offset=2");
      assert.deepEqual(ids(filtered), ["seed-d", "seed-g"]);
      assert.equal(filtered.total, 4);
      assert.deepEqual(await q("host=nothing.test"), {
        items: [],
        total: 0,
        total_capped: false,
        limit: 50,
        offset: 0,
      });
    });

    await t.step("bad parameters are 400 with a reason", async () => {
      const cases: [string, string][] = [
        ["/_/api/audit?limit=0", `"limit" must be a whole number from 1 to 1000, not "0"`],
        ["/_/api/audit?offset=x", `"offset" must be a whole number from 0 to 10000000, not "x"`],
        [
          "/_/api/audit?decision=allow,deni",
          `"decision" must be one or more of allow, log, deny, would_deny, error, challenge (comma-separated), not "deni" (did you mean "deny"?)`,
        ],
        [
          "/_/api/audit?since=soon",
          `"since" must be ms since the epoch, a duration before now ("15m", "1h", "7d") or an ISO date, not "soon"`,
        ],
        [
          "/_/api/audit?since=1h&until=2h",
          `"since" (`,
        ],
        [
          "/_/api/audit?sesion=x",
          `unknown parameter "sesion" (did you mean "session"?); known: limit, offset, host, hostname, decision, session, session_id, rule, search, since, until`,
        ],
        ["/_/api/stats?hours=0", `"hours" must be a whole number from 1 to 8760, not "0"`],
        ["/_/api/stats?hours=1.5", `"hours" must be a whole number from 1 to 8760, not "1.5"`],
        ["/_/api/sessions?limit=5000", `"limit" must be a whole number from 1 to 1000, not "5000"`],
        ["/_/api/dlp/recent?limit=-1", `"limit" must be a whole number from 1 to 1000, not "-1"`],
        ["/_/api/config?verbose=1", `unknown parameter "verbose": this endpoint takes none`],
      ];
      for (const [path, reason] of cases) {
        const r = await s.api(path);
        assert.equal(r.status, 400, path);
        assert.equal(r.body.error, "bad_request", path);
        assert.ok(String(r.body.reason).startsWith(reason), `${path}: ${r.body.reason}`);
      }
      const missing = await s.api("/_/api/audit/no-such-row");
      assert.equal(missing.status, 404);
      assert.deepEqual(missing.body, {
        error: "not_found",
        reason: 'no audit row with id "no-such-row"',
      });
      assert.equal((await s.api("/_/api/nothing")).status, 404);
      const post = await fetch(`${s.proxy.url}/_/api/audit`, { method: "POST", body: "{}" });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get("allow"), "GET, HEAD");
      await post.body?.cancel();
    });

    await t.step("GET /_/api/audit/:id: the row, parsed headers, findings", async () => {
      const r = await s.api("/_/api/audit/seed-c");
      assert.equal(r.status, 200);
      const { findings: _f, ...seedC } = byId("seed-c");
      const finding = r.body.findings[0];
      assert.equal(typeof finding?.id, "number");
      assert.deepEqual(r.body, {
        ...seedC,
        headers: { accept: "*/*", "x-api-key": "[REDACTED]" },
        provider: null,
        model: null,
        input_tokens: null,
        output_tokens: null,
        cache_read_tokens: null,
        cache_write_tokens: null,
        reasoning_tokens: null,
        cost_usd: null,
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
        findings: [{
          id: finding.id,
          ts: seedC.ts,
          detector: "aws_access_key",
          direction: "request",
          location: "url",
          sample: "AKIA…WXYZ",
          action: "block",
        }],
      });
      const a = await s.api("/_/api/audit/seed-a");
      assert.deepEqual(
        [a.body.model, a.body.cost_usd, a.body.usage_partial, a.body.price_unknown],
        ["gpt-4o", 0.25, false, false],
      );
      const live = await s.api(`/_/api/audit/${s.liveOk.id}`);
      assert.equal(live.body.query, "x=1");
      assert.equal(live.body.headers.host, `127.0.0.1:${s.origin.port}`);
    });

    await t.step("GET /_/api/stats?hours=24", async () => {
      const r = await s.api("/_/api/stats?hours=24");
      assert.equal(r.status, 200);
      const st = r.body;
      assert.deepEqual(Object.keys(st), [
        "hours",
        "session",
        "since",
        "until",
        "totals",
        "top_hosts",
        "top_denied_rules",
        "recent_denials",
        "spend_by_model",
        "spend_by_session",
        "buckets",
        "denial_groups",
      ]);
      assert.equal(st.hours, 24);
      assert.equal(st.session, null);
      assert.equal(st.until - st.since, 24 * HOUR);
      assert.deepEqual(st.totals, {
        requests: 7,
        tunnels: 0,
        allow: 2,
        log: 1,
        deny: 2,
        would_deny: 1,
        error: 1,
        challenge: 0,
        hosts: 6,
        llm_requests: 2,
        input_tokens: 3000,
        output_tokens: 300,
        spend_usd: 0.75,
      });
      assert.deepEqual(st.top_hosts, [
        { host: "127.0.0.1", requests: 2, deny: 1, would_deny: 0, tunnels: 0 },
        { host: "api.anthropic.com", requests: 1, deny: 0, would_deny: 0, tunnels: 0 },
        { host: "api.openai.com", requests: 1, deny: 0, would_deny: 0, tunnels: 0 },
        { host: "down.test", requests: 1, deny: 0, would_deny: 0, tunnels: 0 },
        { host: "evil.test", requests: 1, deny: 1, would_deny: 0, tunnels: 0 },
        { host: "maybe.test", requests: 1, deny: 0, would_deny: 1, tunnels: 0 },
      ]);
      assert.deepEqual(st.top_denied_rules, [
        { rule: "no-admin", deny: 1, would_deny: 0, last_ts: s.liveDenied.ts },
        { rule: "no-evil", deny: 1, would_deny: 0, last_ts: s.t0 - 3 * HOUR },
        { rule: "audit-only", deny: 0, would_deny: 1, last_ts: s.t0 - 4 * HOUR },
      ]);
      const pick = (x: Record<string, unknown>) => ({
        id: x.id,
        ts: x.ts,
        decision: x.decision,
        method: x.method,
        scheme: x.scheme,
        host: x.host,
        port: x.port,
        path: x.path,
        status: x.status,
        rule: x.rule,
        reason: x.reason,
        policy: x.policy,
        session: x.session,
        label: x.label,
      });
      assert.deepEqual(st.recent_denials, [
        pick(s.liveDenied),
        pick(byId("seed-c") as unknown as Record<string, unknown>),
        pick(byId("seed-d") as unknown as Record<string, unknown>),
      ]);
      assert.deepEqual(st.spend_by_model, [
        {
          provider: "anthropic",
          model: "claude-sonnet-4",
          requests: 1,
          input_tokens: 2000,
          output_tokens: 100,
          cost_usd: 0.5,
        },
        {
          provider: "openai",
          model: "gpt-4o",
          requests: 1,
          input_tokens: 1000,
          output_tokens: 200,
          cost_usd: 0.25,
        },
      ]);
      assert.deepEqual(st.spend_by_session, [
        { session: "s-beta", label: "review", requests: 1, cost_usd: 0.5 },
        { session: "s-alpha", label: "build", requests: 1, cost_usd: 0.25 },
      ]);
      assert.equal(st.buckets.size_ms, 30 * 60_000);
      assert.equal(st.buckets.points.length, 49);
      const sum = (k: string) =>
        st.buckets.points.reduce((n: number, p: Record<string, number>) => n + p[k], 0);
      assert.deepEqual(
        ["requests", "allow", "log", "deny", "would_deny", "error", "spend_usd"].map(sum),
        [7, 2, 1, 2, 1, 1, 0.75],
      );
      for (const p of st.buckets.points) {
        assert.deepEqual(Object.keys(p), [
          "ts",
          "requests",
          "allow",
          "log",
          "deny",
          "would_deny",
          "error",
          "challenge",
          "tunnels",
          "spend_usd",
        ]);
        assert.equal(p.ts % (30 * 60_000), 0);
      }
      const a = st.buckets.points.find((p: { ts: number }) =>
        p.ts <= s.t0 - HOUR && s.t0 - HOUR < p.ts + 30 * 60_000
      );
      assert.equal(a.spend_usd, 0.25);
    });

    await t.step("stats by session and over 7 days", async () => {
      const r = await s.api("/_/api/stats?hours=24&session=s-alpha");
      assert.deepEqual(r.body.totals, {
        requests: 2,
        tunnels: 0,
        allow: 1,
        log: 0,
        deny: 1,
        would_deny: 0,
        error: 0,
        challenge: 0,
        hosts: 2,
        llm_requests: 1,
        input_tokens: 1000,
        output_tokens: 200,
        spend_usd: 0.25,
      });
      assert.deepEqual(r.body.top_hosts.map((h: { host: string }) => h.host), [
        "api.openai.com",
        "evil.test",
      ]);
      assert.deepEqual(r.body.recent_denials.map((d: { id: string }) => d.id), ["seed-c"]);
      assert.deepEqual(r.body.spend_by_session, [
        { session: "s-alpha", label: "build", requests: 1, cost_usd: 0.25 },
      ]);
      const bastion = await s.api("/_/api/stats?hours=24&session_id=s-alpha");
      assert.deepEqual(bastion.body.totals, r.body.totals);
      const week = await s.api("/_/api/stats?hours=168");
      assert.equal(week.body.totals.requests, 9);
      assert.equal(week.body.buckets.size_ms, 3 * HOUR);
      assert.deepEqual(week.body.top_denied_rules[0], {
        rule: "no-evil",
        deny: 2,
        would_deny: 0,
        last_ts: s.t0 - 3 * HOUR,
      });
      const hour = await s.api("/_/api/stats?hours=1");
      assert.equal(hour.body.totals.requests, 2);
      assert.equal(hour.body.buckets.size_ms, 60_000);
    });

    await t.step("GET /_/api/sessions", async () => {
      const r = await s.api("/_/api/sessions");
      assert.deepEqual(r.body, {
        sessions: [
          {
            session: null,
            label: null,
            requests: 5,
            deny: 2,
            would_deny: 1,
            spend_usd: 0,
            first_ts: s.t0 - 72 * HOUR,
            last_ts: Math.max(Number(s.liveOk.ts), Number(s.liveDenied.ts)),
          },
          {
            session: "s-alpha",
            label: "build",
            requests: 3,
            deny: 1,
            would_deny: 0,
            spend_usd: 0.25,
            first_ts: s.t0 - 30 * HOUR,
            last_ts: s.t0 - HOUR,
          },
          {
            session: "s-beta",
            label: "review",
            requests: 1,
            deny: 0,
            would_deny: 0,
            spend_usd: 0.5,
            first_ts: s.t0 - 2 * HOUR,
            last_ts: s.t0 - 2 * HOUR,
          },
        ],
      });
      const recent = await s.api("/_/api/sessions?hours=24&limit=1");
      assert.equal(recent.body.sessions.length, 1);
      assert.equal(recent.body.sessions[0].requests, 4); // seed-d, seed-e and the two live ones
    });

    await t.step("GET /_/api/rules: the policy in order with hits", async () => {
      const r = await s.api("/_/api/rules");
      const file = `${s.proxy.dir}/agentgate.yaml`;
      const lastOk = Number(s.liveOk.ts);
      assert.deepEqual(r.body, {
        mode: "enforce",
        default: { action: "log", source: "default", hits: 3, tunnels: 0, last_ts: lastOk },
        rules: [
          {
            index: 0,
            name: "no-admin",
            source: `${file}:5`,
            match: ["http://127.0.0.1/admin/**"],
            methods: null,
            when: null,
            action: "deny",
            reason: "admin is off limits",
            policies: [],
            hits: 1,
            tunnels: 0,
            last_ts: s.liveDenied.ts,
          },
          {
            index: 1,
            name: "no-evil",
            source: `${file}:10`,
            match: ["evil.test"],
            methods: null,
            when: null,
            action: "deny",
            reason: "evil is blocked",
            policies: [],
            hits: 2,
            tunnels: 0,
            last_ts: s.t0 - 3 * HOUR,
          },
          {
            index: 2,
            name: "llm",
            source: `${file}:14`,
            match: ["api.openai.com", "api.anthropic.com"],
            methods: null,
            when: null,
            action: "allow",
            reason: null,
            policies: [],
            hits: 2,
            tunnels: 0,
            last_ts: s.t0 - HOUR,
          },
        ],
      });
      const day = await s.api("/_/api/rules?hours=24");
      assert.equal(day.body.rules[1].hits, 1);
    });

    await t.step("GET /_/api/config and /_/api/dlp/recent", async () => {
      const c = await s.api("/_/api/config");
      assert.equal(c.status, 200);
      assert.equal(c.body.dashboard_token, null);
      assert.equal(c.body.audit.path, s.auditPath);
      assert.equal(c.body.policy.default, "log");
      assert.deepEqual(c.body.policy.rules.map((r: { name: string }) => r.name), [
        "no-admin",
        "no-evil",
        "llm",
      ]);
      const d = await s.api("/_/api/dlp/recent?limit=10");
      assert.equal(d.body.findings.length, 1);
      const { id, ...finding } = d.body.findings[0];
      assert.equal(typeof id, "number");
      assert.deepEqual(finding, {
        decision_id: "seed-c",
        ts: s.t0 - 3 * HOUR,
        detector: "aws_access_key",
        direction: "request",
        location: "url",
        sample: "AKIA…WXYZ",
        action: "block",
        host: "evil.test",
        session: "s-alpha",
        label: "build",
        rule: "no-evil",
      });
    });

    await t.step(
      "absolute-form requests to the proxy's own address reach the API too",
      async () => {
        const r = await curl(["-x", s.proxy.url, `${s.proxy.url}/_/api/stats?hours=1`]);
        assert.equal(r.code, 0, r.err);
        assert.equal(JSON.parse(r.out).totals.requests, 2);
      },
    );

    await t.step("the page renders the overview without JS", async () => {
      const res = await fetch(`${s.proxy.url}/_/dashboard`);
      const html = await res.text();
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-security-policy")!, /script-src 'nonce-[^']+'/);
      assert.match(html, /data-k="requests">7</);
      assert.match(html, /data-k="denied">2</);
      assert.match(html, /data-k="spend">\$0\.75</);
      assert.match(html, /admin is off limits/);
    });
  } finally {
    await s.dispose();
  }
});

Deno.test("dashboard access: a token demands Bearer or the cookie; ?token= sets it once", async () => {
  const proxy = await startProxy({
    config:
      `version: 1\ndefault: log\naudit: { path: ./audit.db }\ndashboard: { token: s3cret-t0ken }\n`,
  });
  try {
    const none = await getJson(`${proxy.url}/_/api/stats`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="agentgate"');
    assert.deepEqual(none.body, {
      error: "unauthorized",
      reason:
        'this dashboard needs its token: send "Authorization: Bearer <token>", or open /_/dashboard?token=<token> once in a browser',
    });
    const page = await fetch(`${proxy.url}/_/dashboard`);
    assert.equal(page.status, 401);
    await page.body?.cancel();
    const wrong = await getJson(`${proxy.url}/_/api/stats`, {
      headers: { authorization: "Bearer s3cret-t0keN" },
    });
    assert.equal(wrong.status, 401);
    const bearer = await getJson(`${proxy.url}/_/api/stats`, {
      headers: { authorization: "Bearer s3cret-t0ken" },
    });
    assert.equal(bearer.status, 200);
    const config = await fetch(`${proxy.url}/_/api/config`, {
      headers: { authorization: "Bearer s3cret-t0ken" },
    });
    const text = await config.text();
    assert.ok(!text.includes("s3cret-t0ken"), "the config never shows the token");
    assert.equal(JSON.parse(text).dashboard_token, "[REDACTED]");

    const login = await fetch(`${proxy.url}/_/dashboard?token=s3cret-t0ken`, {
      redirect: "manual",
    });
    assert.equal(login.status, 303);
    assert.equal(login.headers.get("location"), "/_/dashboard");
    const cookie = login.headers.get("set-cookie")!;
    assert.match(cookie, /^agentgate_dashboard=[\w-]+; Path=\/_\/; HttpOnly; SameSite=Strict$/);
    await login.body?.cancel();
    const withCookie = await fetch(`${proxy.url}/_/dashboard`, {
      headers: { cookie: cookie.split(";")[0] },
    });
    assert.equal(withCookie.status, 200);
    assert.match(await withCookie.text(), /<title>agentgate<\/title>/);
    const api = await getJson(`${proxy.url}/_/api/audit`, {
      headers: { cookie: cookie.split(";")[0] },
    });
    assert.equal(api.status, 200);
    // The token in a URL works once, on the page only.
    assert.equal((await getJson(`${proxy.url}/_/api/audit?token=s3cret-t0ken`)).status, 401);
    // Health and metrics stay open (monitoring does not carry the dashboard's token).
    assert.equal((await getJson(`${proxy.url}/_/health`)).status, 200);
    const m = await fetch(`${proxy.url}/_/metrics`);
    assert.equal(m.status, 200);
    await m.body?.cancel();
  } finally {
    await proxy.dispose();
  }
});

Deno.test("dashboard access: a non-loopback listen without a token refuses to start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-dash-e2e-" });
  try {
    // Proxy credentials are set (also required off loopback): the dashboard token is what is missing.
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      "version: 1\ndefault: log\nproxy: { auth: [s3cret-token] }\naudit: { path: ./audit.db }\n",
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...RUN_FLAGS,
        MAIN,
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--config",
        `${dir}/agentgate.yaml`,
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, stderr);
    // The loader decides it (so `check` agrees); the message names the flag (issue 16).
    assert.equal(
      stderr,
      `${dir}/agentgate.yaml: --listen "0.0.0.0:0" is not a loopback address, so the dashboard ` +
        "needs a token: set dashboard.token (or dashboard.token_env), or turn the dashboard off " +
        "(proxy.dashboard: false, or serve --no-dashboard)\n" +
        "agentgate: not started: the policy has errors\n",
    );
    assert.equal(new TextDecoder().decode(out.stdout), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--no-dashboard: page and API are gone, health and metrics stay", async () => {
  const proxy = await startProxy({ args: ["--no-dashboard"] });
  try {
    for (const p of ["/_/dashboard", "/_/api/audit", "/_/api/stats", "/_/api/config"]) {
      const r = await getJson(`${proxy.url}${p}`);
      assert.equal(r.status, 404, p);
    }
    const h = await getJson(`${proxy.url}/_/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(Object.keys(h.body), ["status", "version", "uptime_s", "audit_queue"]);
    assert.equal(h.body.status, "ok");
    const m = await fetch(`${proxy.url}/_/metrics`);
    assert.equal(m.status, 200);
    await m.body?.cancel();
  } finally {
    await proxy.dispose();
  }
});

// --- Prometheus text format ------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  type: string;
  help: string | null;
  samples: Sample[];
}

/**
 * A strict parser of the Prometheus text exposition format 0.0.4: every line
 * is a HELP, a TYPE, or a sample of the family declared last; names and label
 * names are valid; label values use only the `\\`, `\"`, `\n` escapes; each
 * family and series appears once; histograms have ascending `le` buckets with
 * cumulative counts, a `+Inf` bucket equal to `_count`, and a `_sum`.
 */
function parsePrometheus(text: string): Map<string, Family> {
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
  const families = new Map<string, Family>();
  const series = new Set<string>();
  let current: Family | null = null;
  assert.ok(text.endsWith("\n"), "the text ends with a newline");
  const lines = text.slice(0, -1).split("\n");
  const parseValue = (v: string, where: string) => {
    if (v === "+Inf") return Infinity;
    if (v === "-Inf") return -Infinity;
    if (v === "NaN") return NaN;
    assert.match(v, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `${where}: bad value "${v}"`);
    return Number(v);
  };
  lines.forEach((line, i) => {
    const where = `line ${i + 1} "${line}"`;
    assert.notEqual(line, "", `${where}: empty line`);
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      assert.ok(m, `${where}: a comment must be HELP or TYPE here`);
      const [, kind, name, rest] = m;
      assert.match(name, NAME, where);
      let fam = families.get(name);
      if (!fam) {
        fam = { name, type: "untyped", help: null, samples: [] };
        families.set(name, fam);
      } else {
        assert.equal(current, fam, `${where}: family "${name}" is split`);
      }
      assert.equal(fam.samples.length, 0, `${where}: ${kind} after samples`);
      if (kind === "HELP") {
        assert.equal(fam.help, null, `${where}: second HELP`);
        assert.doesNotMatch(rest.replace(/\\[\\n]/g, ""), /\\/, `${where}: bad escape in HELP`);
        fam.help = rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      } else {
        assert.equal(fam.type, "untyped", `${where}: second TYPE`);
        assert.ok(
          ["counter", "gauge", "histogram", "summary", "untyped"].includes(rest),
          `${where}: type "${rest}"`,
        );
        fam.type = rest;
      }
      current = fam;
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    assert.ok(m, `${where}: not a sample`);
    const [, name, , body, rawValue] = m;
    const labels: Record<string, string> = {};
    if (body !== undefined && body !== "") {
      let pos = 0;
      while (pos < body.length) {
        const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(body.slice(pos));
        assert.ok(lm, `${where}: bad label at ${pos}`);
        assert.match(lm[1], LABEL);
        pos += lm[0].length;
        let value = "";
        for (;;) {
          assert.ok(pos < body.length, `${where}: unterminated label value`);
          const c = body[pos];
          if (c === "\\") {
            const e = body[pos + 1];
            assert.ok(e === "\\" || e === '"' || e === "n", `${where}: bad escape "\\${e}"`);
            value += e === "n" ? "\n" : e;
            pos += 2;
          } else if (c === '"') {
            pos++;
            break;
          } else {
            assert.notEqual(c, "\n");
            value += c;
            pos++;
          }
        }
        assert.equal(labels[lm[1]], undefined, `${where}: label "${lm[1]}" twice`);
        labels[lm[1]] = value;
        if (pos < body.length) {
          assert.equal(body[pos], ",", `${where}: expected "," at ${pos}`);
          pos++;
        }
      }
    }
    assert.ok(current, `${where}: sample before any TYPE`);
    const fam = current;
    const base = fam.type === "histogram"
      ? name.replace(/_(bucket|sum|count)$/, "")
      : fam.type === "summary"
      ? name.replace(/_(sum|count)$/, "")
      : name;
    assert.equal(base, fam.name, `${where}: sample of "${base}" inside family "${fam.name}"`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!series.has(key), `${where}: duplicate series`);
    series.add(key);
    const value = parseValue(rawValue, where);
    if (fam.type === "counter") assert.ok(value >= 0, `${where}: negative counter`);
    fam.samples.push({ name, labels, value });
  });
  for (const fam of families.values()) {
    if (fam.type !== "histogram") continue;
    const groups = new Map<string, Sample[]>();
    for (const sm of fam.samples) {
      const { le: _le, ...rest } = sm.labels;
      const k = JSON.stringify(Object.entries(rest).sort());
      groups.set(k, [...(groups.get(k) ?? []), sm]);
    }
    for (const samples of groups.values()) {
      const buckets = samples.filter((x) => x.name === `${fam.name}_bucket`);
      const count = samples.find((x) => x.name === `${fam.name}_count`);
      const sum = samples.find((x) => x.name === `${fam.name}_sum`);
      assert.ok(count && sum, `${fam.name}: _count and _sum`);
      assert.ok(buckets.length > 0);
      let prevLe = -Infinity;
      let prev = 0;
      for (const b of buckets) {
        assert.ok("le" in b.labels, `${fam.name}: bucket without le`);
        const le = parseValue(b.labels.le, `${fam.name} le`);
        assert.ok(le > prevLe, `${fam.name}: le ${le} after ${prevLe}`);
        assert.ok(b.value >= prev, `${fam.name}: bucket le=${le} decreases`);
        assert.ok(Number.isInteger(b.value));
        prevLe = le;
        prev = b.value;
      }
      assert.equal(buckets[buckets.length - 1].labels.le, "+Inf", `${fam.name}: +Inf bucket`);
      assert.equal(buckets[buckets.length - 1].value, count.value, `${fam.name}: +Inf = count`);
    }
  }
  return families;
}

Deno.test("the strict Prometheus parser rejects what it must", () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\n';
  assert.deepEqual(parsePrometheus(ok).get("a_total")!.samples[0].labels, { x: 'q"\\\n' });
  const bad = [
    "a 1", // no newline
    "# TYPE a counter\na -1\n",
    '# TYPE a gauge\na{x="\\t"} 1\n',
    '# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n',
    "# TYPE a gauge\n# TYPE b gauge\nb 1\na 2\n",
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    '# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    "# TYPE a gauge\n\na 1\n",
    "# TYPE 1a gauge\n1a 1\n",
  ];
  for (const t of bad) {
    assert.throws(() => parsePrometheus(t), assert.AssertionError, JSON.stringify(t));
  }
});

Deno.test("/_/metrics parses strictly, with escaped label values and consistent histograms", async () => {
  const origin = await startOrigin((_req, res) => {
    res.writeHead(200);
    res.end("ok");
  });
  const proxy = await startProxy({
    config: `version: 1
default: log
audit: { path: ./audit.db }
rules:
  - name: "we\\"ird\\\\rule\\nname"
    match: weird.test
    action: deny
    reason: weird
${pinOrigin(origin.port)}`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  try {
    for (const url of [`${origin.url}/a`, `${origin.url}/b`, "http://weird.test/x"]) {
      await (await fetch(url, { client })).arrayBuffer();
    }
    await waitForRows(proxy.auditPath, 3);
    const res = await fetch(`${proxy.url}/_/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const families = parsePrometheus(await res.text());
    for (
      const [name, type] of [
        ["agentgate_requests_total", "counter"],
        ["agentgate_upstream_duration_seconds", "histogram"],
        ["agentgate_decision_duration_seconds", "histogram"],
        ["agentgate_spend_usd_total", "counter"],
        ["agentgate_tokens_total", "counter"],
        ["agentgate_audit_queue_depth", "gauge"],
        ["agentgate_audit_write_errors_total", "counter"],
        ["agentgate_tunnels_open", "gauge"],
        ["agentgate_tls_leaf_cache_size", "gauge"],
      ]
    ) {
      const f = families.get(name);
      assert.ok(f, `missing ${name}`);
      assert.equal(f.type, type, name);
      assert.ok(f.help, `${name} has HELP`);
    }
    const requests = families.get("agentgate_requests_total")!.samples;
    assert.deepEqual(
      requests.map((x) => x.labels).sort((a, b) => a.decision.localeCompare(b.decision)),
      [{ decision: "deny", rule: 'we"ird\\rule\nname' }, { decision: "log", rule: "" }],
    );
    assert.deepEqual(requests.map((x) => x.value).sort(), [1, 2]);
    const decisions = families.get("agentgate_decision_duration_seconds")!.samples;
    assert.equal(decisions.find((x) => x.name.endsWith("_count"))!.value, 3);
    const upstream = families.get("agentgate_upstream_duration_seconds")!.samples;
    assert.equal(upstream.find((x) => x.name.endsWith("_count"))!.value, 2);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});
