/**
 * Wall-clock arithmetic in IANA time zones, on the runtime's `Intl` data:
 * offsets, the wall clock of an instant, and the instant of a wall clock
 * (daylight-saving gaps and overlaps included). Time windows, calendar
 * budgets and CEL's timestamp functions all use it.
 *
 * @module
 */

/** The machine's IANA zone (what `tz` defaults to); `UTC` when the runtime has none. */
export function defaultTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC";
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(tz, f);
  }
  return f;
}

/** Last offset computed per zone, valid for one UTC minute (zones change offset on whole minutes). */
const offsetMemo = new Map<string, { minute: number; offset: number }>();

/** Milliseconds to add to a UTC instant to get the wall clock of `tz` (as if it were UTC). */
export function zoneOffset(ms: number, tz: string): number {
  const minute = Math.floor(ms / 60_000);
  const memo = offsetMemo.get(tz);
  if (memo !== undefined && memo.minute === minute) return memo.offset;
  const at = minute * 60_000;
  let y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  for (const p of formatterFor(tz).formatToParts(at)) {
    switch (p.type) {
      case "year":
        y = Number(p.value);
        break;
      case "month":
        mo = Number(p.value);
        break;
      case "day":
        d = Number(p.value);
        break;
      case "hour":
        h = Number(p.value) % 24;
        break;
      case "minute":
        mi = Number(p.value);
        break;
      case "second":
        s = Number(p.value);
        break;
    }
  }
  const offset = Date.UTC(y, mo - 1, d, h, mi, s) - at;
  offsetMemo.set(tz, { minute, offset });
  return offset;
}

/** Wall-clock fields of an instant in a zone. */
export interface WallClock {
  year: number;
  /** 1-12 */
  month: number;
  /** 1-31 */
  day: number;
  /** 0 = Sunday */
  weekday: number;
  hour: number;
  minute: number;
  second: number;
  millisecond: number;
  /** The wall clock as a UTC epoch value (for date arithmetic in local terms). */
  wallMs: number;
}

/**
 * The wall clock of instant `ms` in `tz` (the formatter is cached per zone).
 *
 * @example
 * ```ts
 * wallClock(Date.parse("2025-03-30T01:30:00Z"), "Europe/Berlin").hour; // 3 (CEST)
 * ```
 */
export function wallClock(ms: number, tz: string): WallClock {
  const wallMs = ms + zoneOffset(ms, tz);
  const w = new Date(wallMs);
  return {
    year: w.getUTCFullYear(),
    month: w.getUTCMonth() + 1,
    day: w.getUTCDate(),
    weekday: w.getUTCDay(),
    hour: w.getUTCHours(),
    minute: w.getUTCMinutes(),
    second: w.getUTCSeconds(),
    millisecond: w.getUTCMilliseconds(),
    wallMs,
  };
}

const DAY_MS = 86_400_000;

/**
 * The instant at which the wall clock of `tz` shows `wallMs` (a local time
 * written as a UTC epoch value). Ambiguous (fall-back) times give the earlier
 * instant; times inside a spring-forward gap give the first instant after it.
 */
export function wallToInstant(wallMs: number, tz: string): number {
  const before = wallMs - zoneOffset(wallMs - DAY_MS, tz);
  const after = wallMs - zoneOffset(wallMs + DAY_MS, tz);
  const fits = [before, after].filter((t) => t + zoneOffset(t, tz) === wallMs);
  if (fits.length > 0) return Math.min(...fits);
  // In a gap: the wall clock jumps over wallMs somewhere between the two guesses.
  let lo = Math.min(before, after);
  let hi = Math.max(before, after);
  while (hi - lo > 60_000) {
    const mid = lo + Math.floor((hi - lo) / 120_000) * 60_000;
    if (mid + zoneOffset(mid, tz) >= wallMs) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * The canonical spelling of an IANA time zone (`europe/berlin` →
 * `Europe/Berlin`), or null when the runtime does not know it.
 *
 * @example
 * canonicalTimeZone("utc") // "UTC"
 */
export function canonicalTimeZone(tz: string): string | null {
  try {
    return formatterFor(tz.trim()).resolvedOptions().timeZone;
  } catch {
    return null;
  }
}

/** A calendar period of a budget: a day, an ISO week (from Monday) or a month, in a zone. */
export type CalendarUnit = "day" | "week" | "month";

/**
 * The instant the calendar period holding `ms` started in `tz` (midnight
 * local time; Monday for weeks, the 1st for months). A midnight that falls
 * into a daylight-saving gap starts at the first instant after it.
 *
 * @example
 * ```ts
 * periodStart(Date.parse("2025-06-04T10:00:00Z"), "week", "UTC"); // Date.parse("2025-06-02T00:00:00Z")
 * ```
 */
export function periodStart(ms: number, unit: CalendarUnit, tz: string): number {
  const w = wallClock(ms, tz);
  let wall: number;
  if (unit === "month") wall = Date.UTC(w.year, w.month - 1, 1);
  else {
    wall = Date.UTC(w.year, w.month - 1, w.day);
    if (unit === "week") wall -= ((w.weekday + 6) % 7) * DAY_MS;
  }
  return wallToInstant(wall, tz);
}

/**
 * The instant the calendar period after the one holding `ms` starts in `tz`
 * (when a calendar budget resets).
 *
 * @example
 * ```ts
 * nextPeriodStart(Date.parse("2025-01-31T12:00:00Z"), "month", "UTC"); // Date.parse("2025-02-01T00:00:00Z")
 * ```
 */
export function nextPeriodStart(ms: number, unit: CalendarUnit, tz: string): number {
  const w = wallClock(ms, tz);
  let wall: number;
  if (unit === "month") wall = Date.UTC(w.year, w.month, 1);
  else if (unit === "week") wall = Date.UTC(w.year, w.month - 1, w.day + 7 - ((w.weekday + 6) % 7));
  else wall = Date.UTC(w.year, w.month - 1, w.day + 1);
  return wallToInstant(wall, tz);
}

/**
 * An instant as ISO 8601 local time in `tz`, to the second, with its offset
 * (`Z` for UTC): how a budget's reset is shown.
 *
 * @example
 * ```ts
 * isoInZone(Date.parse("2025-06-02T22:00:00Z"), "Europe/Berlin"); // "2025-06-03T00:00:00+02:00"
 * isoInZone(Date.parse("2025-06-02T22:00:00Z"), "UTC"); // "2025-06-02T22:00:00Z"
 * ```
 */
export function isoInZone(ms: number, tz: string): string {
  const offset = zoneOffset(ms, tz);
  const local = new Date(Math.floor((ms + offset) / 1000) * 1000).toISOString().slice(0, 19);
  if (offset === 0) return `${local}Z`;
  const m = Math.round(Math.abs(offset) / 60_000);
  const hh = String(Math.floor(m / 60)).padStart(2, "0");
  const mm = String(m % 60).padStart(2, "0");
  return `${local}${offset < 0 ? "-" : "+"}${hh}:${mm}`;
}
