/**
 * Points in time as people write them: in dashboard query strings
 * (`?since=1h`), on command lines (`report --since 7d`, `replay --since`,
 * `eval --now`) and in policy test files (`now:`). One grammar for all of
 * them; each caller picks the forms it accepts and words its own errors
 * from the {@link TimeResult}, so a query string answers 400 and a command
 * line a usage error without this module knowing either.
 *
 * The forms, tried in this order on the trimmed text:
 *
 * - `ms`: whole milliseconds since the epoch, digits only (`1718000000000`).
 * - `ago`: a duration before `now`, written as policy files write durations
 *   (`15m`, `1h30m`, `7d`, `500ms`; see {@link parseDuration}). Text that
 *   starts with a digit and ends with a unit letter is a duration or an
 *   error, never an attempt at a date.
 * - `iso`: an ISO 8601 date, with an optional time of day and zone
 *   (`2025-06-01`, `2025-06-01T12:00:00Z`, `2025-06-01T14:00+02:00`). A
 *   date alone is midnight UTC; a time of day without a zone is the
 *   machine's local time (as `Date.parse` reads it) unless `zone:
 *   "required"` refuses it. Nothing else `Date.parse` happens to read
 *   (`March 1 2026`, `2025`) is accepted: that parser's extras differ
 *   between engines.
 *
 * Imports only the duration grammar of policy files, so that "7d" means the
 * same on a command line as in a policy.
 *
 * @example
 * ```ts
 * parseTime("1h", { now: 7_200_000 }); // { ok: true, ms: 3_600_000, form: "ago" }
 * parseTime("soon"); // { ok: false, problem: "form" }
 * ```
 *
 * @module
 */
import { parseDuration } from "./duration.ts";

/** A way of writing a point in time: epoch ms, a duration before now, or an ISO 8601 date. */
export type TimeForm = "ms" | "ago" | "iso";

/** Every form, in the order they are tried. */
export const TIME_FORMS: readonly TimeForm[] = ["ms", "ago", "iso"];

/** Options of {@link parseTime}. */
export interface TimeOptions {
  /** The forms accepted (default: all of {@link TIME_FORMS}). */
  forms?: readonly TimeForm[];
  /** What `ago` counts back from, in ms since the epoch (default: `Date.now()`). */
  now?: number;
  /** Whether an ISO time of day must carry a zone (`Z`, `+01:00`); default `"optional"`. */
  zone?: "required" | "optional";
}

/**
 * The outcome of {@link parseTime}: the time, or why the text is not one.
 *
 * - `form`: the text is none of the accepted forms (or an impossible date).
 * - `duration`: it looks like a duration (digit first, unit last) but is not
 *   one; `detail` is the duration parser's explanation.
 * - `zone`: an ISO time of day without a zone, when one is required.
 */
export type TimeResult =
  | { ok: true; ms: number; form: TimeForm }
  | { ok: false; problem: "form" }
  | { ok: false; problem: "duration"; detail: string }
  | { ok: false; problem: "zone" };

const FORM: TimeResult = { ok: false, problem: "form" };

const FORM_NAMES: Record<TimeForm, string> = {
  ms: "ms since the epoch",
  ago: 'a duration before now ("15m", "1h", "7d")',
  iso: "an ISO date",
};

/**
 * The accepted forms as a phrase for error messages.
 *
 * @example
 * ```ts
 * describeTimeForms(); // 'ms since the epoch, a duration before now ("15m", "1h", "7d") or an ISO date'
 * ```
 */
export function describeTimeForms(forms: readonly TimeForm[] = TIME_FORMS): string {
  const names = TIME_FORMS.filter((f) => forms.includes(f)).map((f) => FORM_NAMES[f]);
  return names.length <= 1
    ? names.join("")
    : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
}

/**
 * Read a point in time (see the module documentation for the grammar).
 * Never throws: the result says what was wrong.
 *
 * @example
 * ```ts
 * parseTime("2026-03-02T10:00:00", { forms: ["iso"], zone: "required" }); // { ok: false, problem: "zone" }
 * parseTime("30m1h", { now: 0 }).problem; // "duration"
 * ```
 */
export function parseTime(text: string, opts: TimeOptions = {}): TimeResult {
  const forms = opts.forms ?? TIME_FORMS;
  const v = text.trim();
  if (/^\d+$/.test(v)) return forms.includes("ms") ? { ok: true, ms: Number(v), form: "ms" } : FORM;
  if (/^\d/.test(v) && /[wdhms]$/.test(v)) {
    if (!forms.includes("ago")) return FORM;
    let d: number;
    try {
      d = parseDuration(v);
    } catch (e) {
      return { ok: false, problem: "duration", detail: (e as Error).message };
    }
    return { ok: true, ms: (opts.now ?? Date.now()) - d, form: "ago" };
  }
  if (forms.includes("iso") && /^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isNaN(t)) return FORM;
    const timeOfDay = /^\d{4}-\d{2}-\d{2}[T ]/i.test(v);
    if (opts.zone === "required" && timeOfDay && !/(Z|[+-]\d\d:?\d\d)$/i.test(v)) {
      return { ok: false, problem: "zone" };
    }
    return { ok: true, ms: t, form: "iso" };
  }
  return FORM;
}
