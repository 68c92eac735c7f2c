import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("parseDuration reads the units policies use", () => {
  const table: Array<[string, number]> = [
    ["500ms", 500],
    ["90s", 90_000],
    ["1m", 60_000],
    ["1h", 3_600_000],
    ["1d", 86_400_000],
    ["7d", 604_800_000],
    ["30d", 2_592_000_000],
    ["1h30m", 5_400_000],
    ["1d12h", 129_600_000],
    ["2w", 1_209_600_000],
    ["1.5h", 5_400_000],
    ["1m30s250ms", 90_250],
    [" 1m ", 60_000],
  ];
  for (const [text, ms] of table) assert.equal(parseDuration(text), ms, text);
});

Deno.test("parseDuration rejects what it cannot read, with the fix in the message", () => {
  const table: Array<[unknown, string]> = [
    ["60", 'Invalid duration "60": add a unit, e.g. "60s" or "60m"'],
    ["", 'Invalid duration "": it is empty; write e.g. "1m" or "1d"'],
    [
      "1x",
      'Invalid duration "1x": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"',
    ],
    ["30m1h", 'Invalid duration "30m1h": list each unit once, largest first, e.g. "1h30m"'],
    ["1h1h", 'Invalid duration "1h1h": list each unit once, largest first, e.g. "1h30m"'],
    [
      "-1m",
      'Invalid duration "-1m": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"',
    ],
    [
      "1 m",
      'Invalid duration "1 m": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"',
    ],
    [
      60,
      'Invalid duration 60: expected a string with a unit, e.g. "90s", "1m", "1h30m", "1d"',
    ],
  ];
  for (const [text, message] of table) {
    assert.throws(() => parseDuration(text as string), { message }, String(text));
  }
});

Deno.test("formatDuration writes the shortest form parseDuration reads back", () => {
  const table: Array<[number, string]> = [
    [60_000, "1m"],
    [90_000, "1m30s"],
    [5_400_000, "1h30m"],
    [86_400_000, "1d"],
    [604_800_000, "7d"],
    [500, "500ms"],
    [0, "0s"],
  ];
  for (const [ms, text] of table) {
    assert.equal(formatDuration(ms), text);
    assert.equal(parseDuration(text), ms);
  }
});
