import assert from "node:assert/strict";
import { writeForeignDatabase, writeLegacyAudit } from "../audit/testing.ts";
import { auditFromRows } from "../audit/memory.ts";
import { buildReport, openAuditForReport, REPORT_FORMAT, ReportSourceError } from "./build.ts";
import { fixtureAudit, S1, S2, T0 } from "../../tests/support/report_fixtures.ts";

const ALL = { session: null, since: null, until: null };

Deno.test("report: one session's hosts, denials, errors, rules and models", async () => {
  const store = fixtureAudit();
  try {
    const r = await buildReport(store.reader(), { session: S1, since: null, until: null }, {
      source: "x.db",
    });
    assert.equal(r.format, REPORT_FORMAT);
    assert.equal(r.source, "x.db");
    assert.equal(r.label, "ci");
    assert.deepEqual([r.first_ts, r.last_ts], [T0 - 7_200_000, T0 + 4500]);
    assert.deepEqual(r.totals, {
      requests: 7,
      allow: 2,
      log: 1,
      deny: 2,
      would_deny: 1,
      error: 1,
      challenge: 0,
      hosts: 4,
      llm_requests: 2,
      input_tokens: 1500,
      output_tokens: 300,
      cost_usd: 0.01,
      cost_unknown: 0,
    });
    assert.deepEqual(r.hosts, [
      {
        host: "api.example.test",
        requests: 3,
        allow: 0,
        log: 0,
        deny: 2,
        would_deny: 1,
        error: 0,
        challenge: 0,
        tunnels: 0,
      },
      {
        host: "api.openai.com",
        requests: 2,
        allow: 2,
        log: 0,
        deny: 0,
        would_deny: 0,
        error: 0,
        challenge: 0,
        tunnels: 0,
      },
      {
        host: "down.test",
        requests: 1,
        allow: 0,
        log: 0,
        deny: 0,
        would_deny: 0,
        error: 1,
        challenge: 0,
        tunnels: 0,
      },
      {
        host: "old.example",
        requests: 1,
        allow: 0,
        log: 1,
        deny: 0,
        would_deny: 0,
        error: 0,
        challenge: 0,
        tunnels: 0,
      },
    ]);
    // Equal denials are one line with a count; oldest first.
    assert.deepEqual(r.denials, [
      {
        decision: "deny",
        count: 2,
        method: "GET",
        scheme: "https",
        host: "api.example.test",
        port: 443,
        path: "/admin/users",
        status: 403,
        rule: "admin",
        rule_source: "agentgate.yaml:3",
        reason: "no admin",
        policy: null,
        first_ts: T0 + 2000,
        last_ts: T0 + 3000,
      },
      {
        decision: "would_deny",
        count: 1,
        method: "POST",
        scheme: "https",
        host: "api.example.test",
        port: 443,
        path: "/v1/files",
        status: 200,
        rule: "uploads",
        rule_source: "agentgate.yaml:12",
        reason: "uploads are reviewed",
        policy: "dlp",
        first_ts: T0 + 4500,
        last_ts: T0 + 4500,
      },
    ]);
    assert.deepEqual(r.errors, [
      {
        host: "down.test",
        reason: 'DNS lookup failed for "down.test:80"',
        error: "upstream dns",
        count: 1,
      },
    ]);
    assert.deepEqual(r.rules.map((x) => [x.rule, x.requests, x.deny]), [
      ["admin", 2, 2],
      ["openai", 2, 0],
      [null, 2, 0],
      ["uploads", 1, 0],
    ]);
    assert.deepEqual(r.models, [
      {
        provider: "openai",
        model: "gpt-4o",
        requests: 2,
        input_tokens: 1500,
        output_tokens: 300,
        cost_usd: 0.01,
        cost_unknown: 0,
        partial: 0,
      },
    ]);
    assert.deepEqual(r.sessions, [], "a one-session report lists no sessions");
  } finally {
    store.close();
  }
});

Deno.test("report: all sessions, an unknown price, time range, caps", async () => {
  const store = fixtureAudit();
  try {
    const r = await buildReport(store.reader(), ALL);
    // The two CONNECT rows are tunnels, counted apart from the requests.
    assert.equal(r.totals.requests, 9);
    assert.deepEqual(r.tunnels, {
      requests: 2,
      allow: 0,
      log: 1,
      deny: 1,
      would_deny: 0,
      error: 0,
      challenge: 0,
    });
    assert.deepEqual(
      r.hosts.filter((h) => h.host === "github.com").map((h) => [h.requests, h.tunnels]),
      [[0, 2]],
    );
    assert.deepEqual(
      r.rules.filter((x) => x.rule === null).map((x) => [x.requests, x.tunnels]),
      [[2, 2]],
    );
    assert.equal(r.label, null);
    assert.deepEqual(r.sessions.map((s) => [s.session, s.label, s.requests, s.deny]), [
      [S1, "ci", 7, 2],
      [S2, "b", 3, 1],
      [null, null, 1, 0],
    ]);
    const claude = r.models.find((m) => m.model === "claude-x")!;
    assert.deepEqual([claude.cost_usd, claude.cost_unknown], [0, 1]);
    assert.equal(r.totals.cost_unknown, 1);
    // A 407 has no rule and keeps its tunnel form.
    const auth = r.denials.find((d) => d.status === 407)!;
    assert.deepEqual([auth.method, auth.path, auth.rule], ["CONNECT", null, null]);

    const recent = await buildReport(store.reader(), {
      session: null,
      since: T0,
      until: T0 + 4500,
    });
    assert.equal(recent.totals.requests, 6);
    assert.ok(!recent.hosts.some((h) => h.host === "old.example"));

    const capped = await buildReport(store.reader(), ALL, { maxItems: 2 });
    assert.equal(capped.hosts.length, 2);
    assert.equal(capped.truncated.hosts, r.hosts.length - 2);
    assert.equal(capped.totals.hosts, r.hosts.length, "totals count what was cut");
    assert.equal(capped.truncated.sessions, 1);
  } finally {
    store.close();
  }
});

Deno.test("report: rows fetched from the API give the same report", async () => {
  const store = fixtureAudit();
  try {
    // What `/_/api/audit` answers: the read model's audit page.
    const { items: rows } = await store.reader().audit({
      limit: 1000,
      offset: 0,
      host: null,
      decisions: null,
      session: null,
      rule: null,
      search: null,
      since: null,
      until: null,
    });
    const copy = auditFromRows(rows);
    try {
      const a = await buildReport(store.reader(), { session: S2, since: null, until: null });
      const b = await buildReport(copy, { session: S2, since: null, until: null });
      assert.deepEqual(b, a);
    } finally {
      await copy.close();
    }
  } finally {
    store.close();
  }
});

Deno.test("report: the audit is opened read-only and never created", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.throws(() => openAuditForReport(`${dir}/missing.db`), ReportSourceError);
    assert.throws(() => Deno.statSync(`${dir}/missing.db`), Deno.errors.NotFound);

    writeForeignDatabase(`${dir}/other.db`);
    assert.throws(
      () => openAuditForReport(`${dir}/other.db`),
      /"[^"]*other\.db" is not an agentgate audit database/,
    );

    // An audit from before the LLM columns (schema v1) still reports, without models.
    writeLegacyAudit(`${dir}/v1.db`, [{
      id: "a",
      ts: 1,
      session: "s",
      label: null,
      method: "GET",
      scheme: "http",
      host: "h",
      port: 80,
      path: "/",
      status: 403,
      decision: "deny",
      rule: "r",
      rule_source: "f:1",
      reason: "no",
      policy: null,
      error: null,
    }]);
    const before = await Deno.readFile(`${dir}/v1.db`);
    const reader = openAuditForReport(`${dir}/v1.db`);
    try {
      const r = await buildReport(reader, ALL);
      assert.equal(r.totals.deny, 1);
      assert.deepEqual(r.models, []);
    } finally {
      await reader.close();
    }
    // Read-only: the read model has no way to write, and the file is as it was
    // (not migrated to the current schema, no journal left behind).
    assert.deepEqual(await Deno.readFile(`${dir}/v1.db`), before, "the audit is not changed");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["other.db", "v1.db"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
