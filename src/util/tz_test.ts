import assert from "node:assert/strict";
import { isoInZone, nextPeriodStart, periodStart } from "./tz.ts";

const at = (iso: string) => Date.parse(iso);

Deno.test("calendar periods: local midnight, Monday, the 1st, across DST", () => {
  const berlin = "Europe/Berlin";
  // Wednesday 2 April 2025, 10:00 CEST.
  const t = at("2025-04-02T08:00:00Z");
  assert.equal(periodStart(t, "day", berlin), at("2025-04-01T22:00:00Z"));
  assert.equal(nextPeriodStart(t, "day", berlin), at("2025-04-02T22:00:00Z"));
  // The week started Monday 31 March (CEST); the month on 1 April.
  assert.equal(periodStart(t, "week", berlin), at("2025-03-30T22:00:00Z"));
  assert.equal(nextPeriodStart(t, "week", berlin), at("2025-04-06T22:00:00Z"));
  assert.equal(periodStart(t, "month", berlin), at("2025-03-31T22:00:00Z"));
  assert.equal(nextPeriodStart(t, "month", berlin), at("2025-04-30T22:00:00Z"));
  // The day of the spring-forward change is 23 hours long.
  const change = at("2025-03-30T12:00:00Z");
  assert.equal(
    nextPeriodStart(change, "day", berlin) - periodStart(change, "day", berlin),
    23 * 3_600_000,
  );
  // A week that started in CET (UTC+1) and ends in CEST (UTC+2).
  assert.equal(periodStart(change, "week", berlin), at("2025-03-23T23:00:00Z"));
  // Sunday belongs to the week that started the Monday before.
  assert.equal(periodStart(at("2025-03-30T21:59:59Z"), "week", berlin), at("2025-03-23T23:00:00Z"));
  assert.equal(periodStart(at("2025-03-30T22:00:00Z"), "week", berlin), at("2025-03-30T22:00:00Z"));
  // December rolls into January; February has 28 days in 2025.
  assert.equal(
    nextPeriodStart(at("2025-12-31T12:00:00Z"), "month", "UTC"),
    at("2026-01-01T00:00:00Z"),
  );
  assert.equal(
    nextPeriodStart(at("2025-02-10T00:00:00Z"), "month", "UTC"),
    at("2025-03-01T00:00:00Z"),
  );
  // A zone west of UTC: New York's day starts at 04:00 or 05:00 UTC.
  assert.equal(
    periodStart(at("2025-01-15T03:00:00Z"), "day", "America/New_York"),
    at("2025-01-14T05:00:00Z"),
  );
});

Deno.test("isoInZone shows local time with its offset, to the second", () => {
  assert.equal(isoInZone(at("2025-06-02T22:00:00Z"), "Europe/Berlin"), "2025-06-03T00:00:00+02:00");
  assert.equal(
    isoInZone(at("2025-01-14T05:00:00.900Z"), "America/New_York"),
    "2025-01-14T00:00:00-05:00",
  );
  assert.equal(isoInZone(at("2025-06-02T22:00:00Z"), "UTC"), "2025-06-02T22:00:00Z");
  assert.equal(isoInZone(at("2025-06-02T22:00:00Z"), "Asia/Kolkata"), "2025-06-03T03:30:00+05:30");
});
