/**
 * Durations as written in policy files: `500ms`, `90s`, `1m`, `1h30m`, `1d`,
 * `7d`, `30d`, `2w`.
 *
 * @example
 * ```ts
 * import { formatDuration, parseDuration } from "./duration.ts";
 * parseDuration("1h30m"); // 5_400_000
 * formatDuration(86_400_000); // "1d"
 * ```
 *
 * @module
 */

const UNIT_MS: Record<string, number> = {
  w: 7 * 86_400_000,
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
  ms: 1,
};

/** Units from largest to smallest: a compound duration must follow this order. */
const UNIT_ORDER = ["w", "d", "h", "m", "s", "ms"];

// `ms` must be tried before `m` so "500ms" is not read as "500m" + "s".
const PART = /(\d+(?:\.\d+)?)(ms|w|d|h|m|s)/y;

/**
 * Parses a duration such as `"90s"`, `"1m"`, `"1h30m"`, `"7d"` or `"500ms"` into
 * milliseconds (rounded to a whole millisecond).
 *
 * Units: `w` (7 days), `d` (24 hours: a day of elapsed time, not a calendar day),
 * `h`, `m`, `s`, `ms`. A compound duration lists each unit at most once, largest
 * first (`1h30m`, not `30m1h`). A bare number is rejected, since `60` could mean
 * seconds or minutes.
 *
 * @example
 * ```ts
 * parseDuration("1h30m"); // 5_400_000
 * parseDuration("500ms"); // 500
 * ```
 * @throws {Error} when the text is not a duration, e.g. `Invalid duration "60": add a unit, e.g. "60s" or "1m"`.
 */
export function parseDuration(text: string): number {
  if (typeof text !== "string") {
    throw new Error(
      `Invalid duration ${
        JSON.stringify(text)
      }: expected a string with a unit, e.g. "90s", "1m", "1h30m", "1d"`,
    );
  }
  const input = text.trim();
  if (/^\d+(\.\d+)?$/.test(input)) {
    throw new Error(
      `Invalid duration "${text}": add a unit, e.g. "${input}s" or "${input}m"`,
    );
  }
  let total = 0;
  let pos = 0;
  let lastUnit = -1;
  while (pos < input.length) {
    PART.lastIndex = pos;
    const m = PART.exec(input);
    if (m === null) {
      throw new Error(
        `Invalid duration "${text}": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"`,
      );
    }
    const unit = m[2];
    const order = UNIT_ORDER.indexOf(unit);
    if (order <= lastUnit) {
      throw new Error(
        `Invalid duration "${text}": list each unit once, largest first, e.g. "1h30m"`,
      );
    }
    lastUnit = order;
    total += Number(m[1]) * UNIT_MS[unit];
    pos = PART.lastIndex;
  }
  if (input.length === 0) {
    throw new Error(`Invalid duration "${text}": it is empty; write e.g. "1m" or "1d"`);
  }
  return Math.round(total);
}

/**
 * Formats milliseconds as the shortest duration text that {@link parseDuration}
 * reads back: `60_000` → `"1m"`, `5_400_000` → `"1h30m"`, `86_400_000` → `"1d"`.
 * Weeks are written as days (`7d`), which is how people write budgets.
 *
 * @example
 * ```ts
 * formatDuration(90_000); // "1m30s"
 * ```
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return `${ms}ms`;
  if (ms === 0) return "0s";
  let rest = Math.round(ms);
  let out = "";
  for (const unit of ["d", "h", "m", "s", "ms"]) {
    const size = UNIT_MS[unit];
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
