/**
 * The DLP scanner: compiles a list of detector names (and custom RE2 regexes)
 * once, then finds, masks and redacts matches in text. Pure and sans-IO.
 *
 * @module
 */

import { RE2JS } from "re2js";
import { BUILTIN_DETECTORS, type BuiltinDetector, type ScanContext } from "./detectors.ts";
import { suggest } from "../util/suggest.ts";

/** One match of a detector. Never holds the matched text itself. */
export interface Finding {
  /** Detector name (built-in or custom), or `too_many_findings`. */
  detector: string;
  /** UTF-16 offset of the first character of the match. */
  start: number;
  /** UTF-16 offset just after the match. */
  end: number;
  /**
   * Masked sample: first 4 + "…" + last 4 characters when the match has 16 or
   * more characters, otherwise only asterisks. Never more than 8 characters
   * of the match.
   */
  masked: string;
}

/** A custom detector from the policy: `{ name: ticket_id, regex: "TCK-[0-9]{6}" }`. */
export interface CustomDetector {
  /** snake_case, unique, not a built-in name; used in findings and markers. */
  name: string;
  /** RE2 syntax (no lookaround, no backreferences): matched in linear time. */
  regex: string;
}

/** What {@link compileScanner} takes; mirrors the `dlp:` policy block. */
export interface ScannerConfig {
  /** Built-in detector names (see `DETECTOR_NAMES`). */
  detectors: readonly string[];
  /** Detectors from the policy's `custom:` list, compiled with RE2. */
  custom?: readonly CustomDetector[];
  /**
   * Most findings one `scan` returns (default 1000). Past it, a
   * `too_many_findings` finding covers the rest of the text, so a body built
   * to produce millions of matches costs bounded memory and `redact` still
   * fails closed.
   */
  maxFindings?: number;
  /**
   * Milliseconds the custom (RE2) detectors of one `scan` may take together
   * (default: no limit). RE2 is linear in the text, but its cost per
   * character depends on the pattern — about 10 ns for most, 1-11 µs for
   * patterns such as `(.*a){20}`, which made 1 MiB take 1-9 s of event-loop
   * time. With a budget, each custom detector scans in windows sized to a few
   * milliseconds and stops once the budget is spent; a {@link ScanReport}
   * says which stopped and how far they got.
   */
  budgetMs?: number;
  /** Clock for the budget, in milliseconds (default `performance.now`). */
  now?: () => number;
}

/** Filled in by a scan: the custom detectors that stopped at the budget. */
export interface ScanReport {
  cut: ScanCut[];
}

/** A custom detector that stopped at its budget: it scanned `scanned` of `of` characters. */
export interface ScanCut {
  detector: string;
  scanned: number;
  of: number;
}

/** A compiled set of detectors. Reusable and stateless. */
export interface Scanner {
  /** Detector names in the order they were configured (built-in, then custom). */
  readonly detectors: readonly string[];
  /** See {@link ScannerConfig.maxFindings}. */
  readonly maxFindings: number;
  /** True when a custom (RE2) detector is configured: only those use the budget. */
  readonly hasCustom: boolean;
  /**
   * Findings in `text`, sorted by start (then longest first, then detector
   * order). Custom detectors stop at {@link ScannerConfig.budgetMs} and say
   * so in `report`.
   */
  scan(text: string, report?: ScanReport): Finding[];
  /** The same scanner, every scan of which reports into `report` (for code that scans inside). */
  reporting(report: ScanReport): Scanner;
  /** `text` with each finding replaced by `[REDACTED:<detector>]`; overlapping findings merge. */
  redact(text: string, findings: readonly Finding[]): string;
}

/** Name of the pseudo-detector that covers text past {@link ScannerConfig.maxFindings}. */
export const TOO_MANY_FINDINGS = "too_many_findings";

const NAME_RE = /^[a-z][a-z0-9_]{0,63}$/;

interface Compiled {
  name: string;
  find(text: string, out: number[], limit: number, ctx: ScanContext & BudgetContext): void;
}

/** What a custom detector's `find` needs of a {@link ScanBudget}. */
interface BudgetContext {
  now?: () => number;
  deadline?: number;
  cut?: ScanCut[];
}

/**
 * Compiles detectors once (at config load); the returned scanner is reused
 * for every request.
 *
 * Throws an `Error` with a sentence-case message for an unknown detector
 * (with a did-you-mean suggestion), an invalid custom name, or a custom
 * regex RE2 rejects.
 *
 * @example
 * ```ts
 * import { compileScanner } from "./scanner.ts";
 * const scanner = compileScanner({
 *   detectors: ["aws_access_key", "github_token"],
 *   custom: [{ name: "ticket_id", regex: "TCK-[0-9]{6}" }],
 * });
 * const text = "key AKIAIOSFODNN7EXAMPLE for TCK-123456";
 * const findings = scanner.scan(text);
 * // [{ detector: "aws_access_key", start: 4, end: 24, masked: "AKIA…MPLE" },
 * //  { detector: "ticket_id", start: 29, end: 39, masked: "**********" }]
 * scanner.redact(text, findings);
 * // "key [REDACTED:aws_access_key] for [REDACTED:ticket_id]"
 * ```
 */
export function compileScanner(config: ScannerConfig): Scanner {
  const maxFindings = config.maxFindings ?? 1000;
  if (!Number.isInteger(maxFindings) || maxFindings < 1) {
    throw new Error(`Invalid maxFindings "${maxFindings}": expected a positive integer`);
  }
  const byName = new Map<string, BuiltinDetector>(BUILTIN_DETECTORS.map((d) => [d.name, d]));
  const compiled: Compiled[] = [];
  const seen = new Set<string>();
  for (const name of config.detectors) {
    const d = byName.get(name);
    if (!d) throw new Error(unknownDetectorMessage(name));
    if (seen.has(name)) continue;
    seen.add(name);
    compiled.push(d);
  }
  for (const c of config.custom ?? []) {
    if (typeof c?.name !== "string" || !NAME_RE.test(c.name)) {
      throw new Error(
        `Invalid custom detector name "${c?.name}": use a lower-case letter, then letters, digits or underscores`,
      );
    }
    if (byName.has(c.name) || c.name === TOO_MANY_FINDINGS) {
      throw new Error(
        `Invalid custom detector name "${c.name}": it is the name of a built-in detector`,
      );
    }
    if (seen.has(c.name)) {
      throw new Error(`Duplicate custom detector name "${c.name}"`);
    }
    seen.add(c.name);
    compiled.push(compileCustom(c));
  }
  const names = compiled.map((d) => d.name);
  const order = new Map(names.map((n, i) => [n, i]));

  const hasCustom = (config.custom?.length ?? 0) > 0;
  const budgetMs = config.budgetMs;
  const now = config.now ?? (() => performance.now());
  const scanner: Scanner = {
    detectors: names,
    maxFindings,
    hasCustom,
    reporting(report: ScanReport): Scanner {
      return { ...scanner, scan: (text, r) => scanner.scan(text, r ?? report) };
    },
    scan(text: string, report?: ScanReport): Finding[] {
      const ctx: ScanContext & BudgetContext = {};
      if (budgetMs !== undefined && hasCustom) {
        ctx.now = now;
        ctx.deadline = now() + budgetMs;
        ctx.cut = report?.cut ?? [];
      }
      const all: { s: number; e: number; d: number }[] = [];
      // Each detector may return at most maxFindings matches; when one is cut
      // short, nothing after its last match is known, so everything from
      // there on becomes a single too_many_findings finding.
      let cutoff = text.length;
      // One pairs array for all detectors: most scans find nothing, and a
      // fresh array per detector was a good part of a scan's allocations.
      const out: number[] = [];
      for (let d = 0; d < compiled.length; d++) {
        out.length = 0;
        compiled[d].find(text, out, maxFindings, ctx);
        for (let i = 0; i < out.length; i += 2) all.push({ s: out[i], e: out[i + 1], d });
        if (out.length >= maxFindings * 2) cutoff = Math.min(cutoff, out[out.length - 1]);
      }
      // Most scans find nothing: skip the sort and copies below.
      if (all.length === 0) return [];
      all.sort((a, b) => a.s - b.s || b.e - a.e || a.d - b.d);
      let kept = cutoff < text.length ? all.filter((m) => m.s < cutoff) : all;
      if (kept.length > maxFindings) {
        cutoff = Math.min(cutoff, kept[maxFindings].s);
        kept = kept.slice(0, maxFindings);
      }
      const findings = kept.map((m) => ({
        detector: names[m.d],
        start: m.s,
        end: m.e,
        masked: mask(text.slice(m.s, m.e)),
      }));
      if (cutoff < text.length) {
        findings.push({
          detector: TOO_MANY_FINDINGS,
          start: cutoff,
          end: text.length,
          masked: "…",
        });
      }
      return findings;
    },
    redact(text: string, findings: readonly Finding[]): string {
      return redactSpans(text, findings, order);
    },
  };
  return scanner;
}

function compileCustom(c: CustomDetector): Compiled {
  if (typeof c.regex !== "string" || c.regex === "") {
    throw new Error(`Invalid regex for custom detector "${c.name}": it is empty`);
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(c.regex);
  } catch (e) {
    // RE2JS: "error parsing regexp: missing closing ): `(a`"
    const detail = String((e as Error).message ?? e).replace(/^error parsing regexp: /, "");
    throw new Error(
      `Invalid regex "${c.regex}" for custom detector "${c.name}": ${detail} (RE2 syntax: no lookaround or backreferences)`,
    );
  }
  const re2 = re.re2();
  // `$`, `\z`, `\b` and `\B` look at the character after a match: only then
  // can a match that ends where a window ends be false. (An escaped `\$` is
  // counted too; that only costs a larger window.)
  const endSensitive = /\$|\\[zbB]/.test(c.regex);
  return {
    name: c.name,
    find(text, out, limit, ctx) {
      if (ctx.deadline === undefined) return findAll(re, text, out, limit);
      findWindowed(re2, c.name, endSensitive, text, out, limit, ctx as Required<BudgetContext>);
    },
  };
}

/** Every match, in one pass over the whole text (no budget). */
function findAll(re: RE2JS, text: string, out: number[], limit: number): void {
  // RE2's DFA answers "any match?" about 10x faster than the position-tracking
  // matcher (≈200 vs ≈20 MB/s for a pattern without a literal prefix), and
  // most bodies have none: ask first, locate only when there is one.
  if (!re.test(text)) return;
  const m = re.matcher(text);
  while (m.find()) {
    const s = m.start();
    const e = m.end();
    if (e === s) continue; // empty matches mark nothing
    out.push(s, e);
    if (out.length >= limit * 2) return;
  }
}

type Re2 = ReturnType<RE2JS["re2"]>;
const UNANCHORED = 0;
/** First window (characters): small, since its cost tells the speed of the pattern. */
const FIRST_WINDOW = 1024;
/** Smallest window: even at 11 µs a character (`(.*a){100}`) about 3 ms. */
const MIN_WINDOW = 256;
/** Window time aimed at, in ms: the budget is checked between windows. */
const WINDOW_MS = 2;

/** The next window size: what fits in {@link WINDOW_MS} at the speed just seen, growing 4x at most. */
function resize(win: number, chars: number, took: number): number {
  const fit = Math.floor((chars * WINDOW_MS) / Math.max(took, 0.01));
  return Math.max(MIN_WINDOW, Math.min(fit, win * 4, 8 * 1024 * 1024));
}

/**
 * Every match, in windows of text sized to take about {@link WINDOW_MS}
 * each, until the deadline. RE2's DFA first tells whether a window holds a
 * match at all (fast: most text has none); only then are its matches located
 * with the position-tracking matcher (10-100 times slower), in windows sized
 * to its own speed. A window `[pos, end)` is matched with the text before it
 * as context. A match that reaches `end` might go on: it is looked for again
 * in a window starting at it; when it already starts the window, it is kept
 * as found (a real match, maybe shorter than the whole one) unless the
 * pattern looks past its end (`$`, `\b`), which takes a larger window.
 * Windows overlap by up to 4 KiB, so a match that a window's end cut short
 * of matching is found by the next; one longer than that, straddling two
 * windows, can be missed (secrets are far shorter). A greedy match is
 * reported per window rather than as one.
 */
function findWindowed(
  re2: Re2,
  name: string,
  endSensitive: boolean,
  text: string,
  out: number[],
  limit: number,
  ctx: Required<BudgetContext>,
): void {
  const n = text.length;
  const overlapOf = (chars: number) => Math.min(4096, chars >> 2);
  const cut = (at: number) => void ctx.cut.push({ detector: name, scanned: at, of: n });
  let dfaWin = FIRST_WINDOW;
  let nfaWin = FIRST_WINDOW;

  /** The matches of one window; null once `limit` matches are out. */
  const scanWindow = (pos: number, end: number): { next: number; grow: boolean } | null => {
    const overlap = overlapOf(end - pos);
    let next = end >= n ? n : Math.max(pos + 1, end - overlap);
    for (let p = pos; p <= end;) {
      const [found, g] = re2.matchWithGroup(text, p, end, UNANCHORED, 1);
      if (!found) break;
      const s = g[0];
      const e = g[1];
      if (e === end && end < n && (s > pos || endSensitive)) {
        // It may go on past the window (or be a `$` at the window's end).
        return s > pos ? { next: s, grow: false } : { next: pos, grow: true };
      }
      if (e > s) {
        out.push(s, e);
        if (out.length >= limit * 2) return null;
      }
      p = e > s ? e : e + 1;
      next = end >= n ? n : Math.max(p, end - overlap);
    }
    return { next, grow: false };
  };

  /** Locate the matches from `from` until past `to`; the position to go on from, or -1 to stop. */
  const locate = (from: number, to: number): number => {
    let p = from;
    while (p < to) {
      if (ctx.now() > ctx.deadline) return cut(p), -1;
      const end = Math.min(n, p + nfaWin);
      const t0 = ctx.now();
      const r = scanWindow(p, end);
      if (r === null) return -1;
      const took = ctx.now() - t0;
      nfaWin = resize(nfaWin, end - p, took);
      if (!r.grow) {
        p = r.next;
        continue;
      }
      // A larger window for a match that may go on, within what the deadline leaves.
      const left = Math.max(0, ctx.deadline - ctx.now());
      const bigger = Math.min((end - p) * 2, Math.floor(((end - p) * left) / Math.max(took, 0.01)));
      if (bigger <= end - p) return cut(p), -1;
      nfaWin = bigger;
    }
    return p;
  };

  let pos = 0;
  while (pos < n) {
    if (ctx.now() > ctx.deadline) return cut(pos);
    const end = Math.min(n, pos + dfaWin);
    const t0 = ctx.now();
    const hit = re2.matchWithGroup(text, pos, end, UNANCHORED, 0)[0];
    dfaWin = resize(dfaWin, end - pos, ctx.now() - t0);
    if (!hit) {
      pos = end >= n ? n : Math.max(pos + 1, end - overlapOf(end - pos));
      continue;
    }
    const next = locate(pos, end);
    if (next < 0) return;
    pos = next;
  }
}

/**
 * Masks a matched value for logs and the findings table: first 4 + "…" +
 * last 4 characters when it has 16 or more characters (at most half of it is
 * shown), otherwise asterisks only. Counts code points, so an emoji is never
 * split.
 *
 * @example
 * ```ts
 * import { mask } from "./scanner.ts";
 * mask("AKIAIOSFODNN7EXAMPLE"); // "AKIA…MPLE"
 * mask("123-45-6789");          // "***********"
 * ```
 */
export function mask(value: string): string {
  const cps = Array.from(value.length > 64 ? value.slice(0, 8) + value.slice(-8) : value);
  const len = value.length > 64 ? 64 : cps.length;
  if (len < 16) return "*".repeat(Math.max(1, len));
  return cps.slice(0, 4).join("") + "…" + cps.slice(-4).join("");
}

/** @internal Replaces spans with markers; overlapping or touching spans merge (first detector wins). */
export function redactSpans(
  text: string,
  findings: readonly { detector: string; start: number; end: number }[],
  order?: Map<string, number>,
): string {
  if (findings.length === 0) return text;
  const sorted = [...findings].sort((a, b) =>
    a.start - b.start || b.end - a.end ||
    (order?.get(a.detector) ?? 0) - (order?.get(b.detector) ?? 0)
  );
  const n = text.length;
  let out = "";
  let pos = 0;
  let i = 0;
  while (i < sorted.length) {
    const f = sorted[i++];
    const start = Math.max(pos, Math.min(f.start, n));
    let end = Math.min(f.end, n);
    while (i < sorted.length && sorted[i].start < end) {
      end = Math.max(end, Math.min(sorted[i++].end, n));
    }
    if (end <= start) continue; // empty, or inside an earlier span
    out += text.slice(pos, start) + `[REDACTED:${f.detector}]`;
    pos = end;
  }
  return out + text.slice(pos);
}

/**
 * The message for an unknown detector name, with the closest known name when
 * one is near: `Unknown detector "aws_key" (did you mean "aws_access_key"?)`.
 *
 * @example
 * ```ts
 * import { unknownDetectorMessage } from "./scanner.ts";
 * unknownDetectorMessage("github"); // 'Unknown detector "github" (did you mean "github_token"?)'
 * ```
 */
export function unknownDetectorMessage(name: string): string {
  const guess = suggestDetector(name);
  return guess
    ? `Unknown detector "${name}" (did you mean "${guess}"?)`
    : `Unknown detector "${name}": known detectors are ${
      BUILTIN_DETECTORS.map((d) => `"${d.name}"`).join(", ")
    }`;
}

/**
 * The built-in detector name closest to `name`, or null: edit distance on
 * the normalized name, then shared words ("ssn" → "us_ssn", "aws_key" →
 * "aws_access_key").
 */
export function suggestDetector(name: string): string | null {
  const norm = String(name).toLowerCase().replace(/[\s-]+/g, "_");
  const names = BUILTIN_DETECTORS.map((d) => d.name);
  if (names.includes(norm)) return norm;
  const near = suggest(norm, names, (w) => Math.max(2, Math.floor(w.length / 3)));
  if (near !== null) return near;
  // Word overlap: every word of the input occurs in the candidate.
  const words = norm.split("_").filter((w) => w.length >= 2);
  if (words.length === 0) return null;
  const hits = names.filter((n) => words.every((w) => n.split("_").some((x) => x.startsWith(w))));
  if (hits.length >= 1) return hits[0];
  const partial = names.filter((n) => n.includes(norm) || norm.includes(n.split("_")[0]));
  return partial.length === 1 ? partial[0] : null;
}
