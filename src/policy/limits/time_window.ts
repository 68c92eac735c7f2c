/**
 * `time_window`: requests pass only on some days and hours, in an IANA time
 * zone; outside, the answer is 403 with a reason saying when the window opens.
 *
 * ```yaml
 * policies:
 *   - time_window: { days: mon-fri, hours: ["08:00-12:00", "13:00-20:00"], tz: Europe/Berlin }
 * ```
 *
 * Semantics:
 * - Days and hours are wall-clock time in `tz` (default: the machine's zone),
 *   so `08:00-20:00` stays 08:00-20:00 across DST changes. A start inside a
 *   spring-forward gap opens at the first instant after the gap (03:00 in
 *   Berlin); in the repeated fall-back hour both occurrences count.
 * - A range is `[start, end)` at minute precision; `24:00` is allowed as an end.
 * - An overnight range (`22:00-06:00`) belongs to the day it starts on: with
 *   `days: fri`, Friday 22:00 to Saturday 06:00 is open, Thursday night is not.
 *
 * @example
 * ```ts
 * const c = createTimeWindowChecker(
 *   { days: parseDays("mon-fri"), hours: parseHours("08:00-20:00"), tz: "Europe/Berlin" },
 *   { rule: "openai" },
 * );
 * c.check(info, Date.parse("2025-03-29T12:00:00Z"), state);
 * // { ok: false, status: 403, reason: "outside time window mon-fri 08:00-20:00 Europe/Berlin: opens Mon 08:00", … }
 * ```
 *
 * @module
 */

import {
  canonicalTimeZone,
  defaultTimeZone,
  type WallClock,
  wallClock,
  wallToInstant,
  zoneOffset,
} from "../../util/tz.ts";
import type { RequestInfo } from "../types.ts";
import {
  type Checker,
  type CheckerContext,
  PolicyConfigError,
  type PolicyResult,
  rejectUnknownKeys,
  under,
} from "./types.ts";
import { type PolicyState } from "../../state/mod.ts";

/** A compiled time window. */
export interface TimeWindowConfig {
  /** Allowed days, 0 = Sunday … 6 = Saturday. */
  days: number[];
  /** Allowed ranges as `[startMinute, endMinute]` of the day; `end < start` is overnight. */
  hours: Array<[number, number]>;
  /** IANA time zone. */
  tz: string;
}

const DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAY_TITLES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const FULL_DAY_NAMES = [
  "sunday",
  "monday",
  "tuesday",
  "wednesday",
  "thursday",
  "friday",
  "saturday",
];
const DAY_ALIASES: Record<string, number[]> = {
  weekdays: [1, 2, 3, 4, 5],
  weekends: [0, 6],
  weekend: [0, 6],
  daily: [0, 1, 2, 3, 4, 5, 6],
  all: [0, 1, 2, 3, 4, 5, 6],
  everyday: [0, 1, 2, 3, 4, 5, 6],
  "*": [0, 1, 2, 3, 4, 5, 6],
};

function dayIndex(word: string): number | null {
  const w = word.trim().toLowerCase();
  if (/^[0-7]$/.test(w)) return Number(w) % 7;
  // Any prefix of a day name of at least 3 letters: "tue", "tues", "thurs", "wednesday".
  if (w.length < 3) return null;
  const i = FULL_DAY_NAMES.findIndex((name) => name.startsWith(w));
  return i >= 0 ? i : null;
}

const DAYS_HELP = 'use mon, tue, wed, thu, fri, sat, sun, a range like "mon-fri", or a list';

/**
 * Parses days: `"mon-fri"`, `"sat-sun"`, `"fri-mon"` (wraps), `"mon,wed,fri"`,
 * `["mon", "wed"]`, full names, `weekdays`, `weekends`, `daily`, or numbers
 * 0-6 (0 = Sunday; 7 is also Sunday). Case does not matter.
 *
 * @example
 * ```ts
 * parseDays("mon-fri"); // [1, 2, 3, 4, 5]
 * parseDays(["sat", "sun"]); // [0, 6]
 * ```
 * @throws {PolicyConfigError} for an unknown day name or an empty list.
 */
export function parseDays(input: string | number | ReadonlyArray<string | number>): number[] {
  const items = Array.isArray(input) ? input : [input as string | number];
  const out = new Set<number>();
  items.forEach((item, index) => {
    const path = Array.isArray(input) ? [index] : [];
    if (typeof item === "number") {
      if (!Number.isInteger(item) || item < 0 || item > 7) {
        throw new PolicyConfigError(`Invalid day ${item}: numbers are 0-6, 0 = Sunday`, path);
      }
      out.add(item % 7);
      return;
    }
    if (typeof item !== "string") {
      throw new PolicyConfigError(`Invalid day ${JSON.stringify(item)}: ${DAYS_HELP}`, path);
    }
    for (const part of item.split(",")) {
      const word = part.trim().toLowerCase();
      if (word === "") continue;
      const alias = DAY_ALIASES[word.replace(/[\s_-]/g, "")] ?? DAY_ALIASES[word];
      if (alias !== undefined) {
        for (const d of alias) out.add(d);
        continue;
      }
      const range = word.split("-");
      if (range.length === 2) {
        const a = dayIndex(range[0]);
        const b = dayIndex(range[1]);
        if (a === null || b === null) {
          throw new PolicyConfigError(
            `Unknown day in "${part.trim()}": ${DAYS_HELP}`,
            path,
          );
        }
        // Wraps over the weekend: "fri-mon" is fri, sat, sun, mon.
        for (let d = a;; d = (d + 1) % 7) {
          out.add(d);
          if (d === b) break;
        }
        continue;
      }
      const d = dayIndex(word);
      if (d === null) {
        throw new PolicyConfigError(`Unknown day "${part.trim()}": ${DAYS_HELP}`, path);
      }
      out.add(d);
    }
  });
  if (out.size === 0) {
    throw new PolicyConfigError(`No days given: ${DAYS_HELP}`);
  }
  return [...out].sort((a, b) => a - b);
}

/** "08:00" → 480. `allowEnd` admits "24:00". */
function parseClock(text: string, allowEnd: boolean): number | null {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text.trim());
  if (m === null) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (min > 59) return null;
  if (h < 24) return h * 60 + min;
  if (h === 24 && min === 0 && allowEnd) return 1440;
  return null;
}

const HOURS_HELP = 'write "HH:MM-HH:MM", e.g. "08:00-20:00" or "22:00-06:00"';

/**
 * Parses hour ranges: `"08:00-20:00"`, `"08:00-12:00, 13:00-20:00"`, or a list
 * of such strings. `22:00-06:00` is overnight (it belongs to the day it starts
 * on); `00:00-24:00` is the whole day.
 *
 * @example
 * ```ts
 * parseHours("08:00-20:00"); // [[480, 1200]]
 * parseHours(["22:00-06:00"]); // [[1320, 360]]
 * ```
 * @throws {PolicyConfigError} for a malformed or empty range.
 */
export function parseHours(input: string | ReadonlyArray<string>): Array<[number, number]> {
  const items = Array.isArray(input) ? input : [input as string];
  const out: Array<[number, number]> = [];
  items.forEach((item, index) => {
    const path = Array.isArray(input) ? [index] : [];
    if (typeof item !== "string") {
      throw new PolicyConfigError(`Invalid hours ${JSON.stringify(item)}: ${HOURS_HELP}`, path);
    }
    for (const part of item.split(",")) {
      if (part.trim() === "") continue;
      const ends = part.split("-");
      const start = ends.length === 2 ? parseClock(ends[0], false) : null;
      const end = ends.length === 2 ? parseClock(ends[1], true) : null;
      if (start === null || end === null) {
        throw new PolicyConfigError(`Invalid hours "${part.trim()}": ${HOURS_HELP}`, path);
      }
      if (start === end) {
        throw new PolicyConfigError(
          `Invalid hours "${part.trim()}": the range is empty; for the whole day write "00:00-24:00"`,
          path,
        );
      }
      out.push([start, end]);
    }
  });
  if (out.length === 0) throw new PolicyConfigError(`No hours given: ${HOURS_HELP}`);
  return out;
}

/**
 * Validates an IANA time zone and returns its canonical spelling
 * (`europe/berlin` → `Europe/Berlin`).
 *
 * @example
 * ```ts
 * validateTimeZone("Europe/Berlin"); // "Europe/Berlin"
 * ```
 * @throws {PolicyConfigError} `Unknown time zone "Europe/Berln": use an IANA name such as "Europe/Berlin" or "UTC"`.
 */
export function validateTimeZone(tz: string): string {
  if (typeof tz !== "string" || tz.trim() === "") {
    throw new PolicyConfigError(
      `Invalid time zone ${JSON.stringify(tz)}: use an IANA name such as "Europe/Berlin" or "UTC"`,
    );
  }
  const canonical = canonicalTimeZone(tz);
  if (canonical === null) {
    throw new PolicyConfigError(
      `Unknown time zone "${tz}": use an IANA name such as "Europe/Berlin" or "UTC"`,
    );
  }
  return canonical;
}

const DAY_MS = 86_400_000;

export { defaultTimeZone, type WallClock, wallClock, wallToInstant, zoneOffset };

// ---------------------------------------------------------------------------
// Rendering

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function clock(minutes: number): string {
  return `${pad2(Math.floor(minutes / 60))}:${pad2(minutes % 60)}`;
}

/** `[1,2,3,4,5]` → `mon-fri`, `[0,6]` → `sat-sun`, `[1,3]` → `mon,wed` (weeks start on Monday). */
export function formatDays(days: readonly number[]): string {
  const set = new Set(days);
  if (set.size === 7) return "mon-sun";
  const order = [1, 2, 3, 4, 5, 6, 0].filter((d) => set.has(d));
  const runs: string[] = [];
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1] === (order[j] + 1) % 7) j++;
    const a = DAY_NAMES[order[i]];
    const b = DAY_NAMES[order[j]];
    runs.push(j === i ? a : `${a}-${b}`);
    i = j + 1;
  }
  return runs.join(",");
}

/** `[[480,1200]]` → `08:00-20:00`. */
export function formatHours(hours: ReadonlyArray<readonly [number, number]>): string {
  return hours.map(([s, e]) => `${clock(s)}-${clock(e)}`).join(",");
}

// ---------------------------------------------------------------------------
// Checker

/** A time window checker also answers questions the dashboard and tests ask. */
export interface TimeWindowChecker extends Checker {
  /** Whether the window is open at instant `ms`. */
  isOpen(ms: number): boolean;
  /** The next instant ≥ `ms` at which the window is open, or null if none within 15 days. */
  nextOpen(ms: number): number | null;
  /** `mon-fri 08:00-20:00 Europe/Berlin` */
  readonly description: string;
}

/**
 * Creates the `time_window` checker. It keeps no state.
 *
 * @example
 * ```ts
 * const c = createTimeWindowChecker({ days: [1, 2, 3, 4, 5], hours: [[480, 1200]], tz: "Europe/Berlin" }, { rule: "r" });
 * c.isOpen(Date.parse("2025-03-31T06:00:00Z")); // true (Mon 08:00 CEST)
 * ```
 */
export function createTimeWindowChecker(
  config: TimeWindowConfig,
  ctx: CheckerContext,
): TimeWindowChecker {
  const tz = validateTimeZone(config.tz);
  const days = new Set(config.days);
  const hours = config.hours.map(([s, e]) => [s, e] as [number, number]);
  const description = `${formatDays(config.days)} ${formatHours(hours)} ${tz}`;

  const openAtWall = (weekday: number, minute: number): boolean => {
    for (const [s, e] of hours) {
      if (s < e) {
        if (days.has(weekday) && minute >= s && minute < e) return true;
      } else {
        // Overnight: the evening part on its own day, the morning part on the next.
        if (days.has(weekday) && minute >= s) return true;
        if (days.has((weekday + 6) % 7) && minute < e) return true;
      }
    }
    return false;
  };

  const isOpen = (ms: number): boolean => {
    const w = wallClock(ms, tz);
    return openAtWall(w.weekday, w.hour * 60 + w.minute);
  };

  const nextOpen = (ms: number): number | null => {
    if (isOpen(ms)) return ms;
    const today = Math.floor(wallClock(ms, tz).wallMs / DAY_MS) * DAY_MS;
    let best: number | null = null;
    // 15 days: a weekly window whose only start falls into a DST gap opens a week later.
    for (let i = 0; i <= 15 && best === null; i++) {
      const dayStart = today + i * DAY_MS;
      const weekday = new Date(dayStart).getUTCDay();
      if (!days.has(weekday)) continue;
      for (const [s] of hours) {
        const t = wallToInstant(dayStart + s * 60_000, tz);
        if (t > ms && isOpen(t) && (best === null || t < best)) best = t;
      }
    }
    return best;
  };

  // While closed, the next opening is the same for every request until it comes.
  let memo: { from: number; open: number | null; result: PolicyResult } | null = null;

  const denial = (now: number): PolicyResult => {
    if (memo !== null && now >= memo.from && (memo.open === null || now < memo.open)) {
      return memo.result;
    }
    const open = nextOpen(now);
    let when: string;
    const detail: Record<string, unknown> = { policy: "time_window", window: description, tz };
    if (open === null) {
      when = "no opening in the next 15 days";
    } else {
      const w = wallClock(open, tz);
      when = `opens ${DAY_TITLES[w.weekday]} ${pad2(w.hour)}:${pad2(w.minute)}`;
      detail.opens_at = new Date(open).toISOString();
    }
    const result: PolicyResult = {
      ok: false,
      status: 403,
      reason: `outside time window ${description}: ${when}`,
      retryAfter: null,
      detail,
    };
    memo = { from: now, open, result };
    return result;
  };

  const pass: PolicyResult = { ok: true, commit() {} };

  return {
    name: "time_window",
    stateKey: `time_window|${ctx.rule}`,
    description,
    isOpen,
    nextOpen,
    check(_info: RequestInfo, now: number, _state: PolicyState): PolicyResult {
      return isOpen(now) ? pass : denial(now);
    },
  };
}

const TIME_WINDOW_KEYS = ["days", "hours", "tz"];

/**
 * Validates the YAML form `{ days?, hours?, tz? }`. Defaults: every day, the
 * whole day, the machine's zone.
 *
 * @example
 * ```ts
 * parseTimeWindowConfig({ days: "mon-fri", hours: "08:00-20:00", tz: "Europe/Berlin" });
 * // { days: [1, 2, 3, 4, 5], hours: [[480, 1200]], tz: "Europe/Berlin" }
 * ```
 * @throws {PolicyConfigError} with the path of the offending key.
 */
export function parseTimeWindowConfig(raw: Record<string, unknown>): TimeWindowConfig {
  rejectUnknownKeys(raw, TIME_WINDOW_KEYS, "time_window");
  return {
    days: raw.days === undefined
      ? [0, 1, 2, 3, 4, 5, 6]
      : under("days", () => parseDays(raw.days as string)),
    hours: raw.hours === undefined
      ? [[0, 1440]]
      : under("hours", () => parseHours(raw.hours as string)),
    tz: raw.tz === undefined
      ? defaultTimeZone()
      : under("tz", () => validateTimeZone(raw.tz as string)),
  };
}

/** Legacy hour: 0-24 as a number or a string, or "HH:MM". */
function legacyClock(value: unknown, key: string, allowEnd: boolean): number {
  if (
    typeof value === "number" && Number.isInteger(value) && value >= 0 &&
    value <= (allowEnd ? 24 : 23)
  ) {
    return value * 60;
  }
  if (typeof value === "string") {
    const t = value.trim();
    if (/^\d{1,2}$/.test(t)) return legacyClock(Number(t), key, allowEnd);
    const m = parseClock(t, allowEnd);
    if (m !== null) return m;
  }
  throw new PolicyConfigError(
    `Invalid ${key} ${JSON.stringify(value)}: use an hour 0-${allowEnd ? 24 : 23} or "HH:MM"`,
    [key],
  );
}

const LEGACY_TIME_KEYS = [
  "type",
  "allowed_hours_start",
  "allowed_hours_end",
  "allowed_days",
  "timezone",
  "tz",
];

/**
 * Reads the `@agentreserve/proxy` form
 * `{ type: time_restriction, allowed_hours_start, allowed_hours_end, allowed_days }`,
 * liberally: hours as numbers 0-23 (end up to 24) or `"HH:MM"` strings, the end
 * exclusive (`9`–`17` is 09:00-17:00), start > end overnight; days as names, a
 * range string, or numbers 0-6 (0 = Sunday, as JavaScript's `getDay`). Missing
 * hours mean the whole day, missing days every day; `timezone`/`tz` is
 * optional (default: the machine's zone, as the original used local time).
 *
 * @example
 * ```ts
 * parseLegacyTimeRestriction({ type: "time_restriction", allowed_hours_start: 9, allowed_hours_end: 17, allowed_days: ["monday", "friday"] });
 * // { days: [1, 5], hours: [[540, 1020]], tz: <machine zone> }
 * ```
 */
export function parseLegacyTimeRestriction(raw: Record<string, unknown>): TimeWindowConfig {
  rejectUnknownKeys(raw, LEGACY_TIME_KEYS, "time_restriction");
  const start = raw.allowed_hours_start === undefined
    ? 0
    : legacyClock(raw.allowed_hours_start, "allowed_hours_start", false);
  const end = raw.allowed_hours_end === undefined
    ? 1440
    : legacyClock(raw.allowed_hours_end, "allowed_hours_end", true);
  if (start === end) {
    throw new PolicyConfigError(
      `Invalid time_restriction: allowed_hours_start and allowed_hours_end are equal, so the window is empty`,
      ["allowed_hours_end"],
    );
  }
  const tzRaw = raw.tz ?? raw.timezone;
  return {
    days: raw.allowed_days === undefined
      ? [0, 1, 2, 3, 4, 5, 6]
      : under("allowed_days", () => parseDays(raw.allowed_days as string)),
    hours: [[start, end]],
    tz: tzRaw === undefined
      ? defaultTimeZone()
      : under(raw.tz !== undefined ? "tz" : "timezone", () => validateTimeZone(tzRaw as string)),
  };
}
