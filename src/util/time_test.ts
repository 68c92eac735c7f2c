import assert from "node:assert/strict";
import { describeTimeForms, parseTime } from "./time.ts";

const NOW = 10_000_000_000;

Deno.test("parseTime: epoch ms, a duration before now, an ISO date", () => {
  assert.deepEqual(parseTime("1718000000000", { now: NOW }), {
    ok: true,
    ms: 1_718_000_000_000,
    form: "ms",
  });
  assert.deepEqual(parseTime("1h", { now: NOW }), { ok: true, ms: NOW - 3_600_000, form: "ago" });
  assert.deepEqual(parseTime("1h30m", { now: NOW }), {
    ok: true,
    ms: NOW - 5_400_000,
    form: "ago",
  });
  assert.equal((parseTime("500ms", { now: NOW }) as { ms: number }).ms, NOW - 500);
  assert.deepEqual(parseTime("2025-01-02T03:04:05Z"), {
    ok: true,
    ms: Date.UTC(2025, 0, 2, 3, 4, 5),
    form: "iso",
  });
  assert.equal(
    (parseTime("2025-01-02T04:04:05+01:00") as { ms: number }).ms,
    Date.UTC(2025, 0, 2, 3, 4, 5),
  );
  // A date alone is midnight UTC, whatever the machine's zone.
  assert.equal((parseTime("2025-01-02") as { ms: number }).ms, Date.UTC(2025, 0, 2));
  // Surrounding blanks (a quoted shell argument) do not matter.
  assert.equal((parseTime(" 7d ", { now: NOW }) as { ms: number }).ms, NOW - 7 * 86_400_000);
});

Deno.test("parseTime: what is not a time, and why", () => {
  for (const v of ["", "soon", "yesterday", "1h30x", "March 1 2026", "2025-13-45", "-1h"]) {
    assert.deepEqual(parseTime(v, { now: NOW }), { ok: false, problem: "form" }, v);
  }
  // Digit first and unit last is a duration or an error, never a date.
  const bad = parseTime("30m1h", { now: NOW });
  assert.deepEqual(bad, {
    ok: false,
    problem: "duration",
    detail: 'Invalid duration "30m1h": list each unit once, largest first, e.g. "1h30m"',
  });
});

Deno.test("parseTime: a caller narrows the forms and may require a zone", () => {
  const iso = { forms: ["iso"] as const, zone: "required" as const };
  assert.deepEqual(parseTime("1h", iso), { ok: false, problem: "form" });
  assert.deepEqual(parseTime("1718000000000", iso), { ok: false, problem: "form" });
  assert.deepEqual(parseTime("2026-03-02T10:00:00", iso), { ok: false, problem: "zone" });
  assert.deepEqual(parseTime("2026-03-02 10:00:00", iso), { ok: false, problem: "zone" });
  assert.equal(parseTime("2026-03-02T10:00:00+0100", iso).ok, true);
  assert.equal(parseTime("2026-03-02T10:00:00z", iso).ok, true);
  assert.equal(parseTime("2026-03-02", iso).ok, true, "a date alone needs no zone");
  // Without the requirement a time of day is local time, as Date.parse reads it.
  assert.deepEqual(parseTime("2026-03-02T10:00:00"), {
    ok: true,
    ms: Date.parse("2026-03-02T10:00:00"),
    form: "iso",
  });
  const noMs = { forms: ["ago", "iso"] as const, now: NOW };
  assert.deepEqual(parseTime("1700000000000", noMs), { ok: false, problem: "form" });
  assert.deepEqual(parseTime("2025", noMs), { ok: false, problem: "form" }, "a year is no date");
  assert.deepEqual(parseTime("7d", noMs), { ok: true, ms: NOW - 7 * 86_400_000, form: "ago" });
  assert.deepEqual(parseTime("7d", { forms: ["iso"] }), { ok: false, problem: "form" });
});

Deno.test("describeTimeForms names the accepted forms for messages", () => {
  assert.equal(
    describeTimeForms(),
    'ms since the epoch, a duration before now ("15m", "1h", "7d") or an ISO date',
  );
  assert.equal(
    describeTimeForms(["iso", "ago"]),
    'a duration before now ("15m", "1h", "7d") or an ISO date',
  );
  assert.equal(describeTimeForms(["iso"]), "an ISO date");
});
