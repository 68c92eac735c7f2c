import assert from "node:assert/strict";
import type { RequestInfo } from "../types.ts";
import {
  createTimeWindowChecker,
  formatDays,
  parseDays,
  parseHours,
  parseLegacyTimeRestriction,
  parseTimeWindowConfig,
  type TimeWindowConfig,
  validateTimeZone,
  wallClock,
  wallToInstant,
} from "./time_window.ts";
import { PolicyConfigError } from "./types.ts";
import { PolicyState } from "../../state/mod.ts";

const info: RequestInfo = {
  id: "d1",
  session: "ci",
  label: null,
  client: "127.0.0.1",
  method: "POST",
  scheme: "https",
  host: "api.openai.com",
  port: 443,
  path: "/v1/chat/completions",
  query: "",
  headers: {},
};
const state = new PolicyState({ startedAt: 0 });
const at = (iso: string) => Date.parse(iso);

function window(days: string | string[], hours: string | string[], tz = "Europe/Berlin") {
  const config: TimeWindowConfig = { days: parseDays(days), hours: parseHours(hours), tz };
  return createTimeWindowChecker(config, { rule: "r" });
}

function reason(c: ReturnType<typeof window>, iso: string): string {
  const r = c.check(info, at(iso), state);
  assert.equal(r.ok, false, `expected closed at ${iso}`);
  return r.ok ? "" : r.reason;
}

Deno.test("parseDays reads lists, ranges and names", () => {
  const table: Array<[Parameters<typeof parseDays>[0], number[]]> = [
    ["mon-fri", [1, 2, 3, 4, 5]],
    ["sat-sun", [0, 6]],
    ["fri-mon", [0, 1, 5, 6]],
    [["mon", "wed"], [1, 3]],
    ["Mon, Wed,fri", [1, 3, 5]],
    ["monday", [1]],
    ["tues-thurs", [2, 3, 4]],
    ["weekdays", [1, 2, 3, 4, 5]],
    ["weekends", [0, 6]],
    ["daily", [0, 1, 2, 3, 4, 5, 6]],
    [[0, 6], [0, 6]],
    [7, [0]],
    [["mon-wed", "fri"], [1, 2, 3, 5]],
  ];
  for (const [input, want] of table) assert.deepEqual(parseDays(input), want, String(input));
  assert.throws(() => parseDays("mnday"), {
    message:
      'Unknown day "mnday": use mon, tue, wed, thu, fri, sat, sun, a range like "mon-fri", or a list',
  });
  assert.throws(() => parseDays(["mon", "tu"]), (e) => {
    assert.ok(e instanceof PolicyConfigError);
    assert.deepEqual(e.path, [1]);
    return true;
  });
  assert.throws(() => parseDays("mon-frii"), {
    message:
      'Unknown day in "mon-frii": use mon, tue, wed, thu, fri, sat, sun, a range like "mon-fri", or a list',
  });
  assert.throws(() => parseDays([]), PolicyConfigError);
});

Deno.test("parseHours reads ranges, lists and overnight ranges", () => {
  assert.deepEqual(parseHours("08:00-20:00"), [[480, 1200]]);
  assert.deepEqual(parseHours(["08:00-12:00", "13:00-20:00"]), [[480, 720], [780, 1200]]);
  assert.deepEqual(parseHours("08:00-12:00, 13:00-20:00"), [[480, 720], [780, 1200]]);
  assert.deepEqual(parseHours("22:00-06:00"), [[1320, 360]]);
  assert.deepEqual(parseHours("00:00-24:00"), [[0, 1440]]);
  assert.deepEqual(parseHours("8:30-17:45"), [[510, 1065]]);
  const help = 'write "HH:MM-HH:MM", e.g. "08:00-20:00" or "22:00-06:00"';
  assert.throws(() => parseHours("8-20"), { message: `Invalid hours "8-20": ${help}` });
  assert.throws(() => parseHours("24:00-06:00"), {
    message: `Invalid hours "24:00-06:00": ${help}`,
  });
  assert.throws(() => parseHours("08:60-09:00"), {
    message: `Invalid hours "08:60-09:00": ${help}`,
  });
  assert.throws(() => parseHours("08:00-08:00"), {
    message:
      'Invalid hours "08:00-08:00": the range is empty; for the whole day write "00:00-24:00"',
  });
});

Deno.test("validateTimeZone canonicalises IANA names and rejects others", () => {
  assert.equal(validateTimeZone("Europe/Berlin"), "Europe/Berlin");
  assert.equal(validateTimeZone("europe/berlin"), "Europe/Berlin");
  assert.equal(validateTimeZone("UTC"), "UTC");
  assert.throws(() => validateTimeZone("Europe/Berln"), {
    message: 'Unknown time zone "Europe/Berln": use an IANA name such as "Europe/Berlin" or "UTC"',
  });
});

Deno.test("formatDays writes weeks starting on Monday", () => {
  assert.equal(formatDays([1, 2, 3, 4, 5]), "mon-fri");
  assert.equal(formatDays([0, 6]), "sat-sun");
  assert.equal(formatDays([1, 3]), "mon,wed");
  assert.equal(formatDays([1, 2]), "mon-tue");
  assert.equal(formatDays([0, 1, 5, 6]), "mon,fri-sun");
  assert.equal(formatDays([0, 1, 2, 3, 4, 5, 6]), "mon-sun");
});

Deno.test("wall clock conversions across Berlin DST changes", () => {
  // Spring forward 2025-03-30: 02:00 CET -> 03:00 CEST at 01:00Z.
  assert.equal(wallClock(at("2025-03-30T00:59:00Z"), "Europe/Berlin").hour, 1);
  assert.equal(wallClock(at("2025-03-30T01:00:00Z"), "Europe/Berlin").hour, 3);
  // A wall time in the gap maps to the first instant after it.
  assert.equal(
    wallToInstant(Date.UTC(2025, 2, 30, 2, 30), "Europe/Berlin"),
    at("2025-03-30T01:00:00Z"),
  );
  // Fall back 2025-10-26: 03:00 CEST -> 02:00 CET at 01:00Z; the earlier 02:30 wins.
  assert.equal(
    wallToInstant(Date.UTC(2025, 9, 26, 2, 30), "Europe/Berlin"),
    at("2025-10-26T00:30:00Z"),
  );
  assert.equal(
    wallToInstant(Date.UTC(2025, 9, 26, 8, 0), "Europe/Berlin"),
    at("2025-10-26T07:00:00Z"),
  );
});

Deno.test("mon-fri 08:00-20:00 in Berlin: edges, reasons and DST", () => {
  const c = window("mon-fri", "08:00-20:00");
  assert.equal(c.description, "mon-fri 08:00-20:00 Europe/Berlin");
  const open = (iso: string) => c.check(info, at(iso), state).ok;
  // Winter time (CET, UTC+1).
  assert.equal(open("2025-03-24T06:59:59Z"), false); // Mon 07:59:59
  assert.equal(open("2025-03-24T07:00:00Z"), true); // Mon 08:00
  assert.equal(open("2025-03-24T18:59:59Z"), true); // Mon 19:59:59
  assert.equal(open("2025-03-24T19:00:00Z"), false); // Mon 20:00
  // Summer time (CEST, UTC+2), the Monday after the change.
  assert.equal(open("2025-03-31T05:59:00Z"), false);
  assert.equal(open("2025-03-31T06:00:00Z"), true);

  const r = c.check(info, at("2025-03-29T12:00:00Z"), state); // Sat
  assert.deepEqual(r, {
    ok: false,
    status: 403,
    reason: "outside time window mon-fri 08:00-20:00 Europe/Berlin: opens Mon 08:00",
    retryAfter: null,
    detail: {
      policy: "time_window",
      window: "mon-fri 08:00-20:00 Europe/Berlin",
      tz: "Europe/Berlin",
      // Across the change the opening is at 06:00Z, not 07:00Z.
      opens_at: "2025-03-31T06:00:00.000Z",
    },
  });
  // And back: the Saturday before the fall change opens Monday at 07:00Z.
  assert.equal(c.nextOpen(at("2025-10-25T12:00:00Z")), at("2025-10-27T07:00:00Z"));
  assert.equal(
    reason(c, "2025-03-24T06:00:00Z"),
    "outside time window mon-fri 08:00-20:00 Europe/Berlin: opens Mon 08:00",
  );
  assert.equal(
    reason(c, "2025-03-24T20:00:00Z"),
    "outside time window mon-fri 08:00-20:00 Europe/Berlin: opens Tue 08:00",
  );
  assert.equal(
    reason(c, "2025-03-28T19:30:00Z"), // Fri 20:30
    "outside time window mon-fri 08:00-20:00 Europe/Berlin: opens Mon 08:00",
  );
});

Deno.test("two ranges a day: the lunch break opens at 13:00", () => {
  const c = window("mon-fri", ["08:00-12:00", "13:00-20:00"]);
  assert.equal(
    reason(c, "2025-03-24T11:30:00Z"), // Mon 12:30 CET
    "outside time window mon-fri 08:00-12:00,13:00-20:00 Europe/Berlin: opens Mon 13:00",
  );
  assert.equal(c.check(info, at("2025-03-24T12:00:00Z"), state).ok, true);
});

Deno.test("an overnight range belongs to the day it starts on", () => {
  const c = window("fri", "22:00-06:00");
  const open = (iso: string) => c.check(info, at(iso), state).ok;
  assert.equal(open("2025-03-21T20:59:00Z"), false); // Fri 21:59 CET
  assert.equal(open("2025-03-21T21:00:00Z"), true); // Fri 22:00
  assert.equal(open("2025-03-22T04:59:00Z"), true); // Sat 05:59
  assert.equal(open("2025-03-22T05:00:00Z"), false); // Sat 06:00
  assert.equal(open("2025-03-21T04:00:00Z"), false); // Fri 05:00: Thursday's night is not allowed
  assert.equal(open("2025-03-22T21:00:00Z"), false); // Sat 22:00
  assert.equal(
    reason(c, "2025-03-22T05:00:00Z"),
    "outside time window fri 22:00-06:00 Europe/Berlin: opens Fri 22:00",
  );
});

Deno.test("an overnight window spanning the spring change is one hour shorter", () => {
  const c = window("sat", "22:00-06:00");
  const open = (iso: string) => c.check(info, at(iso), state).ok;
  assert.equal(open("2025-03-29T20:59:00Z"), false); // Sat 21:59 CET
  assert.equal(open("2025-03-29T21:00:00Z"), true); // Sat 22:00 CET
  assert.equal(open("2025-03-30T00:59:00Z"), true); // Sun 01:59 CET
  assert.equal(open("2025-03-30T01:00:00Z"), true); // Sun 03:00 CEST
  assert.equal(open("2025-03-30T03:59:00Z"), true); // Sun 05:59 CEST
  assert.equal(open("2025-03-30T04:00:00Z"), false); // Sun 06:00 CEST
});

Deno.test("an overnight window spanning the fall change is one hour longer", () => {
  const c = window("sat", "22:00-06:00");
  const open = (iso: string) => c.check(info, at(iso), state).ok;
  assert.equal(open("2025-10-25T19:59:00Z"), false); // Sat 21:59 CEST
  assert.equal(open("2025-10-25T20:00:00Z"), true); // Sat 22:00 CEST
  assert.equal(open("2025-10-26T00:30:00Z"), true); // Sun 02:30 CEST
  assert.equal(open("2025-10-26T01:30:00Z"), true); // Sun 02:30 CET (again)
  assert.equal(open("2025-10-26T04:59:00Z"), true); // Sun 05:59 CET
  assert.equal(open("2025-10-26T05:00:00Z"), false); // Sun 06:00 CET
  assert.equal(c.nextOpen(at("2025-10-26T05:00:00Z")), at("2025-11-01T21:00:00Z"));
});

Deno.test("a window starting in the spring gap opens when the gap ends", () => {
  const c = window("sun", "02:30-04:00");
  assert.equal(
    reason(c, "2025-03-29T12:00:00Z"),
    "outside time window sun 02:30-04:00 Europe/Berlin: opens Sun 03:00",
  );
  assert.equal(c.nextOpen(at("2025-03-29T12:00:00Z")), at("2025-03-30T01:00:00Z"));
  assert.equal(c.check(info, at("2025-03-30T01:00:00Z"), state).ok, true);
  // A window that lies wholly inside the gap does not exist that day: next week.
  const gap = window("sun", "02:15-02:45");
  assert.equal(gap.nextOpen(at("2025-03-29T12:00:00Z")), at("2025-04-06T00:15:00Z"));
  assert.equal(
    reason(gap, "2025-03-29T12:00:00Z"),
    "outside time window sun 02:15-02:45 Europe/Berlin: opens Sun 02:15",
  );
});

Deno.test("the repeated fall-back hour is open twice and opens at the first", () => {
  const c = window("sun", "02:00-03:00");
  const open = (iso: string) => c.check(info, at(iso), state).ok;
  assert.equal(open("2025-10-26T00:30:00Z"), true); // 02:30 CEST
  assert.equal(open("2025-10-26T01:30:00Z"), true); // 02:30 CET
  assert.equal(open("2025-10-26T02:00:00Z"), false); // 03:00 CET
  assert.equal(c.nextOpen(at("2025-10-25T12:00:00Z")), at("2025-10-26T00:00:00Z"));
});

Deno.test("other zones and the next-open memo", () => {
  const c = window("mon-fri", "09:00-17:00", "America/New_York");
  // US DST starts 2025-03-09; Sat 2025-03-08 12:00Z -> Mon 09:00 EDT = 13:00Z.
  assert.equal(c.nextOpen(at("2025-03-08T12:00:00Z")), at("2025-03-10T13:00:00Z"));
  const first = c.check(info, at("2025-03-08T12:00:00Z"), state);
  const second = c.check(info, at("2025-03-08T12:00:01Z"), state);
  assert.equal(first, second); // same reason object while closed
  assert.equal(c.check(info, at("2025-03-10T13:00:00Z"), state).ok, true);
});

Deno.test("parseTimeWindowConfig validates and defaults", () => {
  assert.deepEqual(
    parseTimeWindowConfig({ days: "mon-fri", hours: "08:00-20:00", tz: "Europe/Berlin" }),
    { days: [1, 2, 3, 4, 5], hours: [[480, 1200]], tz: "Europe/Berlin" },
  );
  const defaults = parseTimeWindowConfig({});
  assert.deepEqual(defaults.days, [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(defaults.hours, [[0, 1440]]);
  assert.equal(defaults.tz, new Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.throws(() => parseTimeWindowConfig({ hours: ["08:00-12:00", "13-20"] }), (e) => {
    assert.ok(e instanceof PolicyConfigError);
    assert.deepEqual(e.path, ["hours", 1]);
    return true;
  });
  assert.throws(() => parseTimeWindowConfig({ day: "mon" }), {
    message:
      'Unknown key "day" in time_window (did you mean "days"?): the keys are days, hours, tz',
  });
  assert.throws(() => parseTimeWindowConfig({ tz: "Mars/Olympus" }), (e) => {
    assert.ok(e instanceof PolicyConfigError);
    assert.deepEqual(e.path, ["tz"]);
    return true;
  });
});

Deno.test("legacy time_restriction forms", () => {
  const tz = "Europe/Berlin";
  assert.deepEqual(
    parseLegacyTimeRestriction({
      type: "time_restriction",
      allowed_hours_start: 9,
      allowed_hours_end: 17,
      allowed_days: ["monday", "tuesday", "wednesday", "thursday", "friday"],
      timezone: tz,
    }),
    { days: [1, 2, 3, 4, 5], hours: [[540, 1020]], tz },
  );
  assert.deepEqual(
    parseLegacyTimeRestriction({
      type: "time_restriction",
      allowed_hours_start: "08:30",
      allowed_hours_end: "24",
      allowed_days: "mon-fri",
      tz,
    }),
    { days: [1, 2, 3, 4, 5], hours: [[510, 1440]], tz },
  );
  assert.deepEqual(
    parseLegacyTimeRestriction({
      type: "time_restriction",
      allowed_hours_start: 22,
      allowed_hours_end: 6,
      allowed_days: [1, 2, 3],
      tz,
    }),
    { days: [1, 2, 3], hours: [[1320, 360]], tz },
  );
  const machine = parseLegacyTimeRestriction({ type: "time_restriction" });
  assert.deepEqual(machine.days, [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(machine.hours, [[0, 1440]]);
  assert.throws(
    () => parseLegacyTimeRestriction({ type: "time_restriction", allowed_hours_start: 25 }),
    { message: 'Invalid allowed_hours_start 25: use an hour 0-23 or "HH:MM"' },
  );
  assert.throws(
    () =>
      parseLegacyTimeRestriction({
        type: "time_restriction",
        allowed_hours_start: 9,
        allowed_hours_end: 9,
      }),
    {
      message:
        "Invalid time_restriction: allowed_hours_start and allowed_hours_end are equal, so the window is empty",
    },
  );
  assert.throws(
    () => parseLegacyTimeRestriction({ type: "time_restriction", allowed_day: ["mon"] }),
    {
      message:
        'Unknown key "allowed_day" in time_restriction (did you mean "allowed_days"?): the keys are allowed_hours_start, allowed_hours_end, allowed_days, timezone, tz',
    },
  );
});
