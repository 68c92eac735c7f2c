import assert from "node:assert/strict";
import { FileSpendJournal, journalPathFor } from "./spend_journal.ts";
import type { AuditEventV1 } from "./event.ts";

const T = Date.parse("2025-06-02T10:00:00Z");

function entry(id: string, reservedNano: number, ts = T) {
  return {
    id,
    ts,
    session: "ci",
    host: "api.openai.com",
    client: "10.0.0.5",
    rule: "openai",
    keys: id === "cel" ? ['cel:openai|request.headers["x-team"]=ml'] : [],
    reservedNano,
  };
}

async function withDir(f: (path: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-journal-" });
  try {
    await f(`${dir}/audit.db-spend.jsonl`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("journal: beside the audit file, none for an in-memory audit", () => {
  assert.equal(journalPathFor("./agentgate.db"), "./agentgate.db-spend.jsonl");
  assert.equal(journalPathFor(":memory:"), null);
});

Deno.test("journal: a reservation is on disk when reserve returns; a crash keeps it unsettled", () =>
  withDir((path) => {
    const a = FileSpendJournal.open(path);
    a.reserve(entry("r1", 4_000_000));
    a.reserve(entry("cel", 2_000_000));
    // Another process reading now (the restart after kill -9: no close, no flush).
    const b = FileSpendJournal.open(path);
    assert.deepEqual(b.entries(), [
      { ...entry("r1", 4_000_000), chargedNano: null },
      { ...entry("cel", 2_000_000), chargedNano: null },
    ]);
    b.close();
    // A settlement below the reservation rides with the next write: lost in a
    // crash before it, the call counts at its reservation (never less).
    a.settle("r1", 1_000_000);
    assert.equal(FileSpendJournal.open(path).entries()[0].chargedNano, null);
    a.reserve(entry("r2", 3_000_000));
    const c = FileSpendJournal.open(path);
    assert.deepEqual(c.entries().map((e) => [e.id, e.chargedNano]), [
      ["r1", 1_000_000],
      ["cel", null],
      ["r2", null],
    ]);
    c.close();
    // A settlement above its reservation is written at once.
    a.settle("r2", 5_000_000);
    assert.equal(FileSpendJournal.open(path).entries()[2].chargedNano, 5_000_000);
    // close() writes what is pending.
    a.settle("cel", 0);
    a.close();
    assert.equal(FileSpendJournal.open(path).entries()[1].chargedNano, 0);
  }));

Deno.test("journal: a torn last line (the crash hit the write) is skipped", () =>
  withDir((path) => {
    const a = FileSpendJournal.open(path);
    a.reserve(entry("r1", 4_000_000));
    a.close();
    Deno.writeTextFileSync(path, '{"r":"r2","t":1,"s":null,"h":"x","c', { append: true });
    const b = FileSpendJournal.open(path);
    assert.deepEqual(b.entries().map((e) => e.id), ["r1"]);
    // Appends after the torn line start on a line of their own.
    b.reserve(entry("r3", 1));
    b.close();
    assert.deepEqual(FileSpendJournal.open(path).entries().map((e) => e.id), ["r1", "r3"]);
  }));

Deno.test("journal: reconcile keeps what the audit lacks; written rows leave it; it compacts", () =>
  withDir((path) => {
    const a = FileSpendJournal.open(path);
    a.reserve(entry("audited", 4_000_000));
    a.settle("audited", 1_000_000);
    a.reserve(entry("released", 4_000_000));
    a.settle("released", 0);
    a.reserve(entry("in-flight", 4_000_000));
    a.reserve(entry("settled", 4_000_000));
    a.settle("settled", 2_000_000);
    a.reserve(entry("ancient", 4_000_000, T - 40 * 86_400_000));
    a.close();
    const b = FileSpendJournal.open(path);
    const kept = b.reconcile((id) => id === "audited", T);
    assert.deepEqual(kept.map((e) => [e.id, e.chargedNano]), [
      ["in-flight", null],
      ["settled", 2_000_000],
    ]);
    // The file now holds just that.
    assert.deepEqual(
      FileSpendJournal.open(path).entries().map((e) => [e.id, e.chargedNano]),
      [["in-flight", null], ["settled", 2_000_000]],
    );
    // Rows the audit committed leave the journal.
    b.written([{ id: "settled" } as AuditEventV1]);
    assert.equal(b.size, 1);
    // A large file mostly of written rows is rewritten with the live entries only.
    const line = "x".repeat(200);
    for (let i = 0; i < 15_000; i++) {
      b.reserve({ ...entry(`bulk-${i}`, 1), host: line });
      b.settle(`bulk-${i}`, 1);
    }
    assert.ok(b.bytes > 4 * 1024 * 1024);
    b.written(Array.from({ length: 15_000 }, (_, i) => ({ id: `bulk-${i}` } as AuditEventV1)));
    assert.ok(b.bytes < 1024, `${b.bytes} bytes after compaction`);
    assert.deepEqual(b.entries().map((e) => e.id), ["in-flight"]);
    b.close();
    assert.deepEqual(FileSpendJournal.open(path).entries().map((e) => e.id), ["in-flight"]);
  }));
