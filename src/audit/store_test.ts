import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { AUDIT_SCHEMA_VERSION, AuditOpenError, AuditStore } from "./store.ts";
import type { AuditEventV1 } from "./event.ts";
import { redactHeaders, redactQuery } from "./redact.ts";

function event(id: string, ts = Date.now()): AuditEventV1 {
  return {
    id,
    ts,
    session: null,
    label: null,
    client: "127.0.0.1",
    method: "GET",
    scheme: "http",
    host: "example.test",
    port: 80,
    path: "/",
    query: null,
    status: 200,
    decision: "allow",
    rule: "r",
    rule_source: "a.yaml:3",
    reason: 'matched rule "r"',
    policy: null,
    bytes_in: 0,
    bytes_out: 10,
    duration_ms: 1.5,
    error: null,
    headers: "{}",
  };
}

async function withDir(fn: (dir: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("audit store: batches rows into a WAL database with a schema version", () =>
  withDir((dir) => {
    const store = AuditStore.open(`${dir}/a.db`, { flushMs: 10_000 });
    for (let i = 0; i < 5; i++) store.add(event(`id-${i}`));
    assert.equal(store.queueDepth, 5);
    assert.equal(store.flush(), 5);
    assert.equal(store.queueDepth, 0);
    store.add(event("id-5"));
    store.close(); // flushes the rest
    const db = new DatabaseSync(`${dir}/a.db`);
    assert.deepEqual({ ...db.prepare("PRAGMA user_version").get() }, {
      user_version: AUDIT_SCHEMA_VERSION,
    });
    assert.deepEqual({ ...db.prepare("PRAGMA journal_mode").get() }, { journal_mode: "wal" });
    const rows = db.prepare("SELECT id, decision, bytes_out FROM audit ORDER BY id").all();
    assert.equal(rows.length, 6);
    assert.deepEqual({ ...rows[5] }, { id: "id-5", decision: "allow", bytes_out: 10 });
    db.close();
  }));

Deno.test("audit store: a locked database keeps rows queued and writes them later", () =>
  withDir((dir) => {
    const logs: string[] = [];
    const store = AuditStore.open(`${dir}/a.db`, { flushMs: 10_000, log: (m) => logs.push(m) });
    const other = new DatabaseSync(`${dir}/a.db`);
    other.exec("BEGIN EXCLUSIVE");
    store.add(event("x1"));
    store.add(event("x2"));
    assert.equal(store.flush(), 0);
    assert.equal(store.queueDepth, 2);
    assert.equal(store.writeErrors, 1);
    assert.match(store.lastError ?? "", /locked|busy/i);
    assert.match(logs[0], /audit write failed \(2 row\(s\) queued, will retry\)/);
    other.exec("ROLLBACK");
    store.add(event("x3"));
    assert.equal(store.flush(), 3);
    assert.equal(store.lastError, null);
    assert.deepEqual(
      other.prepare("SELECT id FROM audit ORDER BY id").all().map((r) => r.id),
      ["x1", "x2", "x3"],
    );
    other.close();
    store.close();
  }));

Deno.test("audit store: retention deletes old rows only", () =>
  withDir(async (dir) => {
    const now = 1_000_000_000_000;
    const seed = AuditStore.open(`${dir}/a.db`, { flushMs: 10_000 });
    seed.add(event("old", now - 31 * 86_400_000));
    seed.add(event("new", now - 86_400_000));
    seed.close();
    const store = AuditStore.open(`${dir}/a.db`, {
      flushMs: 10_000,
      retentionMs: 30 * 86_400_000,
      now: () => now,
    });
    const ids = (await store.reader().rowsSince(Number.MIN_SAFE_INTEGER)).map((r) => r.id);
    assert.deepEqual(ids, ["new"]);
    store.close();
  }));

Deno.test("audit store: a database from a newer agentgate is refused, not touched", () =>
  withDir((dir) => {
    const db = new DatabaseSync(`${dir}/a.db`);
    db.exec("PRAGMA user_version = 99");
    db.close();
    assert.throws(() => AuditStore.open(`${dir}/a.db`), (e: unknown) => {
      assert.ok(e instanceof AuditOpenError);
      assert.equal(
        e.message,
        `cannot use audit database "${dir}/a.db": it was written by a newer agentgate (schema version 99, this build knows ${AUDIT_SCHEMA_VERSION})`,
      );
      return true;
    });
  }));

Deno.test("audit store: the queue overflows loudly, never silently", () =>
  withDir((dir) => {
    const logs: string[] = [];
    const store = AuditStore.open(`${dir}/a.db`, {
      flushMs: 10_000,
      maxQueue: 3,
      log: (m) => logs.push(m),
    });
    for (let i = 0; i < 5; i++) store.add(event(`q${i}`));
    assert.equal(store.dropped, 2);
    assert.equal(store.queueDepth, 3);
    assert.match(logs.join("\n"), /dropped 1 oldest row\(s\)/);
    store.close();
  }));

Deno.test("redact: credentials in headers and query strings are masked", () => {
  assert.deepEqual(
    redactHeaders({
      authorization: "Bearer sk-proj-abc",
      "x-api-key": "sk-ant-xyz",
      "x-goog-api-key": "AIza123",
      cookie: "sid=1",
      "api-key": "azure",
      "x-custom-token": "t",
      accept: "*/*",
      "content-type": "application/json",
    }),
    {
      authorization: "[REDACTED]",
      "x-api-key": "[REDACTED]",
      "x-goog-api-key": "[REDACTED]",
      cookie: "[REDACTED]",
      "api-key": "[REDACTED]",
      "x-custom-token": "[REDACTED]",
      accept: "*/*",
      "content-type": "application/json",
    },
  );
  assert.equal(
    redactQuery("key=AIzaSyA&alt=sse&access_token=abc&X-Amz-Signature=f00&page=2"),
    "key=[REDACTED]&alt=sse&access_token=[REDACTED]&X-Amz-Signature=[REDACTED]&page=2",
  );
  assert.equal(redactQuery("monkey=1&keyboard=2"), "monkey=1&keyboard=2");
});

Deno.test("audit store: a v1 database migrates forward keeping its rows", () =>
  withDir((dir) => {
    const v1 = new DatabaseSync(`${dir}/a.db`);
    v1.exec(`CREATE TABLE audit (id TEXT NOT NULL PRIMARY KEY, ts INTEGER NOT NULL, session TEXT,
      label TEXT, client TEXT NOT NULL, method TEXT NOT NULL, scheme TEXT NOT NULL, host TEXT NOT NULL,
      port INTEGER NOT NULL, path TEXT, query TEXT, status INTEGER, decision TEXT NOT NULL, rule TEXT,
      rule_source TEXT, reason TEXT NOT NULL, policy TEXT, bytes_in INTEGER NOT NULL,
      bytes_out INTEGER NOT NULL, duration_ms REAL NOT NULL, error TEXT, headers TEXT);
      CREATE INDEX audit_ts ON audit (ts);
      CREATE INDEX audit_host_ts ON audit (host, ts);
      CREATE INDEX audit_decision_ts ON audit (decision, ts);
      CREATE INDEX audit_session_ts ON audit (session, ts);
      INSERT INTO audit VALUES ('old', 1, NULL, NULL, '127.0.0.1', 'GET', 'http', 'a.test', 80, '/',
      NULL, 200, 'allow', NULL, NULL, 'r', NULL, 0, 0, 1, NULL, NULL);
      PRAGMA user_version = 1;`);
    v1.close();
    const store = AuditStore.open(`${dir}/a.db`, { flushMs: 10_000 });
    store.add({
      ...event("llm"),
      provider: "openai",
      model: "gpt-4o",
      input_tokens: 100,
      output_tokens: 20,
      cache_read_tokens: 50,
      cache_write_tokens: 0,
      reasoning_tokens: 0,
      cost_usd: 0.0004,
      usage_partial: false,
      price_unknown: false,
      findings: [{
        detector: "aws_access_key",
        direction: "request",
        location: "body",
        sample: "AKIA…WXYZ",
        action: "block",
      }],
    });
    store.close();
    const db = new DatabaseSync(`${dir}/a.db`);
    assert.deepEqual({ ...db.prepare("PRAGMA user_version").get() }, {
      user_version: AUDIT_SCHEMA_VERSION,
    });
    const rows = db.prepare(
      "SELECT id, model, input_tokens, cost_usd, usage_partial FROM audit ORDER BY ts",
    )
      .all().map((r) => ({ ...r }));
    assert.deepEqual(rows, [
      { id: "old", model: null, input_tokens: null, cost_usd: null, usage_partial: null },
      { id: "llm", model: "gpt-4o", input_tokens: 100, cost_usd: 0.0004, usage_partial: 0 },
    ]);
    assert.deepEqual(
      db.prepare("SELECT decision_id, detector, sample, host FROM findings").all().map((r) => ({
        ...r,
      })),
      [{
        decision_id: "llm",
        detector: "aws_access_key",
        sample: "AKIA…WXYZ",
        host: "example.test",
      }],
    );
    db.close();
  }));

Deno.test("audit store: every column round-trips, plain and priced rows mixed across multi-row INSERTs", () =>
  withDir((dir) => {
    const store = AuditStore.open(`${dir}/a.db`, { flushMs: 10_000 });
    const written: AuditEventV1[] = [];
    // 37 rows: more than two 16-row statements of each kind, with a remainder.
    for (let i = 0; i < 37; i++) {
      const e: AuditEventV1 = {
        ...event(`id-${String(i).padStart(2, "0")}`, 1_700_000_000_000 + i),
        session: i % 4 === 0 ? `s-${i}` : null,
        query: i % 5 === 0 ? `q=${i}` : null,
        status: i % 7 === 0 ? null : 200 + i,
        error: i % 9 === 0 ? `boom ${i}` : null,
        dest_ip: `10.0.0.${i}`,
        inspection: i % 6 === 0 ? "dlp scan cut at 1 MiB" : null,
      };
      if (i % 3 === 0) {
        Object.assign(e, {
          provider: "openai",
          model: `gpt-${i}`,
          input_tokens: i,
          output_tokens: 2 * i,
          cache_read_tokens: 3,
          cache_write_tokens: 4,
          reasoning_tokens: 5,
          cost_usd: i / 100,
          usage_partial: i % 2 === 0,
          price_unknown: false,
          spend_keys: [`team:${i}`],
          price_source: "config",
          price_incomplete: true,
          price_missing: "cache write",
          service_tier: "default",
          reserved_usd: 1.5,
          charged_usd: i / 100,
        });
      }
      if (i === 10 || i === 12) {
        e.findings = [{
          detector: "aws_access_key",
          direction: "request",
          location: "body",
          sample: "AKIA…MPLE",
          action: "block",
        }];
      }
      written.push(e);
      store.add(e);
    }
    assert.equal(store.flush(), 37);
    store.close();
    const db = new DatabaseSync(`${dir}/a.db`);
    const rows = db.prepare("SELECT * FROM audit ORDER BY id").all();
    assert.equal(rows.length, 37);
    for (const [i, row] of rows.entries()) {
      const e = written[i];
      const priced = i % 3 === 0;
      assert.deepEqual({ ...row }, {
        // The fixture's columns, as event() writes them, with this row's variations.
        ...event(e.id, e.ts),
        session: e.session,
        query: e.query,
        status: e.status,
        error: e.error,
        provider: priced ? "openai" : null,
        model: priced ? `gpt-${i}` : null,
        input_tokens: priced ? i : null,
        output_tokens: priced ? 2 * i : null,
        cache_read_tokens: priced ? 3 : null,
        cache_write_tokens: priced ? 4 : null,
        reasoning_tokens: priced ? 5 : null,
        cost_usd: priced ? i / 100 : null,
        usage_partial: priced ? (i % 2 === 0 ? 1 : 0) : null,
        price_unknown: priced ? 0 : null,
        spend_keys: priced ? JSON.stringify([`team:${i}`]) : null,
        price_source: priced ? "config" : null,
        price_incomplete: priced ? 1 : null,
        price_missing: priced ? "cache write" : null,
        service_tier: priced ? "default" : null,
        reserved_usd: priced ? 1.5 : null,
        charged_usd: priced ? i / 100 : null,
        dest_ip: `10.0.0.${i}`,
        inspection: e.inspection,
      }, `row ${i}`);
    }
    const findings = db.prepare(
      "SELECT decision_id, detector, action, host FROM findings ORDER BY decision_id",
    )
      .all().map((r) => ({ ...r }));
    assert.deepEqual(findings, [
      { decision_id: "id-10", detector: "aws_access_key", action: "block", host: "example.test" },
      { decision_id: "id-12", detector: "aws_access_key", action: "block", host: "example.test" },
    ]);
    db.close();
  }));
