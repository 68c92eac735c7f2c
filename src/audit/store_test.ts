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
  withDir((dir) => {
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
    const ids = store.db.prepare("SELECT id FROM audit").all().map((r) => r.id);
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
