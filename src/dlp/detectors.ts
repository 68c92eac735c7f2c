/**
 * Built-in DLP detectors: secrets (API keys, tokens, private keys), personal
 * data (card numbers, US SSNs) and threat patterns (paths to credential files,
 * `curl … | sh`, reverse shells).
 *
 * Every detector works in two steps:
 *
 * 1. **Prefilter** — find anchors with native `String#indexOf`: the literal
 *    a secret must contain (`AKIA`, `-----BEGIN `, `/dev/`, `|` …), searched
 *    by its rarest part (`yJ` for `eyJ`, `_live_` for `sk_live_`; see
 *    `eachAnchor`). Ordinary text has few anchors, so most of a body is
 *    only touched by these searches; digit runs are found by checking every
 *    9th character.
 * 2. **Verify** at each anchor — with class-table loops (`chars.ts`, one
 *    exit per loop), and a few small RegExps.
 *
 * Built-in detectors may use JS RegExp (backtracking) because each one is one
 * of these, stated beside it:
 * - sticky (`/y`), tried only at an anchor, made of literals and loops over a
 *   single character class each followed by a token that class cannot match
 *   (one way to match, a failed attempt costs the run it read);
 * - global, of the same shape, where a failed attempt costs O(1) or the
 *   regions it reads do not overlap;
 * - run on a slice of bounded length (a word, 40 or 200 characters).
 * No counted loop (`{8,}`) or group loop runs over unbounded input: V8 keeps
 * a backtrack entry per iteration there and throws "Maximum call stack size
 * exceeded" on a 10 MB run (found by the adversarial tests), while a `*` or
 * `+` over one class runs without them.
 *
 * Anchors inside a previous match or inside a run that failed are skipped, so
 * every character is verified a bounded number of times: a 10 MB body of
 * near-misses is linear, not quadratic (`adversarial_test.ts`).
 *
 * @module
 */

import {
  ALNUM,
  B64SYM,
  BASE64,
  classesIn,
  clsOf,
  DASH,
  DIGIT,
  EQUALS,
  isAt,
  LOWER,
  runEnd,
  runStart,
  SPACE,
  TOKEN,
  UPPER,
  WORD,
} from "./chars.ts";

/** Name and one-line description of a detector (for docs, `check` and `scan --list`). */
export interface DetectorInfo {
  /** Stable snake_case name used in policies, findings and `[REDACTED:<name>]`. */
  readonly name: string;
  /** One line, sentence case, no trailing period. */
  readonly description: string;
}

/** Per-scan memo shared by detectors that need the same pass (e.g. digit runs). */
export interface ScanContext {
  digitRuns?: readonly number[];
}

/** @internal A built-in detector: pushes `[start, end)` pairs, ascending and non-overlapping. */
export interface BuiltinDetector extends DetectorInfo {
  find(text: string, out: number[], limit: number, ctx: ScanContext): void;
}

// ---------------------------------------------------------------------------
// helpers

/** Calls `fn(index)` for each occurrence of `lit`; `fn` returns where to search next. */
function eachIndex(text: string, lit: string, fn: (i: number) => number): void {
  let i = text.indexOf(lit);
  while (i !== -1) {
    const next = fn(i);
    if (next < 0) return;
    i = text.indexOf(lit, Math.max(next, i + 1));
  }
}

/** Calls `fn(index, match)` for each match of a global `re`; `fn` returns where to search next. */
function eachMatch(
  text: string,
  re: RegExp,
  fn: (i: number, m: RegExpExecArray) => number,
): void {
  re.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const next = fn(m.index, m);
    if (next < 0) return;
    re.lastIndex = Math.max(next, m.index + 1);
  }
}

/**
 * Calls `fn(start, k)` for each anchor, in order, where anchor `k` is found
 * by searching `lits[k][0]` and lies `lits[k][1]` characters before it; `fn`
 * returns where the next anchor may start (negative: stop).
 *
 * Why the offset: V8 searches a short literal (up to 6 characters) whose
 * first character is rare (`yJ`, `_live_`, `(STDIN`) several times faster
 * than one starting with a common letter (`eyJ`, `sk_live_`, `open(STDIN`),
 * so detectors search the rare part and check the rest. Several literals are
 * merged in order without building a list (a 10 MB body of anchors costs no
 * memory).
 */
function eachAnchor(
  text: string,
  lits: readonly (readonly [string, number])[],
  fn: (start: number, k: number) => number,
): void {
  // Most texts hold no anchor of most detectors: find that out before
  // allocating anything (a scan of a 1 KB response calls this 20 times;
  // an array per call was most of a scan's garbage, s4 with DLP).
  let j0 = 0;
  let first = -1;
  while (j0 < lits.length && (first = text.indexOf(lits[j0][0], lits[j0][1])) === -1) j0++;
  if (first === -1) return;
  const cur: number[] = new Array(lits.length).fill(-1);
  cur[j0] = first;
  for (let j = j0 + 1; j < lits.length; j++) cur[j] = text.indexOf(lits[j][0], lits[j][1]);
  let next = 0;
  for (;;) {
    let k = -1;
    let best = Infinity;
    for (let j = 0; j < lits.length; j++) {
      if (cur[j] !== -1 && cur[j] - lits[j][1] < best) {
        best = cur[j] - lits[j][1];
        k = j;
      }
    }
    if (k === -1) return;
    if (best >= next) {
      const r = fn(best, k);
      if (r < 0) return;
      next = Math.max(r, best + 1);
    } else next = Math.max(next, best + 1);
    for (let j = 0; j < lits.length; j++) {
      if (cur[j] !== -1 && cur[j] - lits[j][1] < next) {
        cur[j] = text.indexOf(lits[j][0], next + lits[j][1]);
      }
    }
  }
}

/** True when the character at `i` is one of `chars`. */
function oneOf(text: string, i: number, chars: string): boolean {
  return i < text.length && chars.includes(text[i]);
}

function full(out: number[], limit: number): boolean {
  return out.length >= limit * 2;
}

/** Characters that may be part of a file path (for widening a path match to its left). */
function isPathChar(c: number): boolean {
  if ((clsOf(c) & (WORD | DASH | B64SYM)) !== 0) return true;
  // . ~ $ % { } \ :
  return c === 46 || c === 126 || c === 36 || c === 37 || c === 123 || c === 125 || c === 92 ||
    c === 58;
}

/** Start of the path that ends at `i` (at most 128 characters back). */
function pathStart(text: string, i: number): number {
  const stop = Math.max(0, i - 128);
  while (i > stop && isPathChar(text.charCodeAt(i - 1))) i--;
  return i;
}

// ---------------------------------------------------------------------------
// secrets

// Anchor lists are built once: a literal in the call made one per scan.
const OPENAI_ANCHORS: readonly (readonly [string, number])[] = [["k-", 1]];
const ANTHROPIC_ANCHORS: readonly (readonly [string, number])[] = [["-ant-", 2]];
const JWT_ANCHORS: readonly (readonly [string, number])[] = [["yJ", 1]];
const STRIPE_ANCHORS: readonly (readonly [string, number])[] = [["_live_", 1]];

const AWS_ACCESS_ANCHORS = [
  ["AKIA", 0],
  ["ASIA", 0],
  ["ABIA", 0],
  ["ACCA", 0],
  ["A3T", 0],
] as const;

const awsAccessKey: BuiltinDetector = {
  name: "aws_access_key",
  description:
    "AWS access key id: AKIA/ASIA/ABIA/ACCA/A3T… followed by 16 upper-case letters or digits",
  find(text, out, limit) {
    eachAnchor(text, AWS_ACCESS_ANCHORS, (s) => {
      if (isAt(text, s - 1, ALNUM)) return runEnd(text, s, ALNUM); // glued: skip the run
      const e = runEnd(text, s, UPPER | DIGIT, s + 21);
      if (e - s !== 20 || isAt(text, e, ALNUM)) return e;
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

// "secret", "Secret", "SECRET": found as "ecret" / "ECRET" (rarer first letters).
const SECRET_ANCHORS = [["ecret", 1], ["ECRET", 1]] as const;
const AWS_SECRET_WINDOW = 80;

const awsSecretKey: BuiltinDetector = {
  name: "aws_secret_key",
  description:
    'AWS secret access key: 40 base64 characters within 80 characters after a word containing "secret"',
  find(text, out, limit) {
    // Windows after successive keywords overlap; `done` makes each character
    // of the text examined once at most.
    let done = 0;
    eachAnchor(text, SECRET_ANCHORS, (k) => {
      if (!oneOf(text, k, "sS")) return k + 1;
      const from = Math.max(k + 6, done);
      const to = Math.min(text.length, k + 6 + AWS_SECRET_WINDOW);
      let i = from;
      while (i < to) {
        if (!isAt(text, i, BASE64) || isAt(text, i - 1, BASE64)) {
          i++;
          continue;
        }
        const e = runEnd(text, i, BASE64, i + 41);
        if (e - i === 40 && !isAt(text, e, BASE64 | EQUALS)) {
          // Random 40-character keys mix cases and hold a digit or / +; hex
          // digests (git SHAs) and CamelCase words do not.
          const bits = classesIn(text, i, e);
          if ((bits & UPPER) && (bits & LOWER) && (bits & (DIGIT | B64SYM))) {
            out.push(i, e);
            if (full(out, limit)) return -1;
          }
        }
        i = Math.max(e, i + 1);
        if (e >= to) i = runEnd(text, i, BASE64); // skip the rest of a long run
      }
      done = Math.max(done, i, to);
      return k + 6;
    });
  },
};

const GITHUB_ANCHORS = [["gh", 0], ["_pat_", 6]] as const; // ghp_ … and github_pat_

const githubToken: BuiltinDetector = {
  name: "github_token",
  description:
    "GitHub token: ghp_/gho_/ghu_/ghs_/ghr_ + 36 or more characters, or a fine-grained github_pat_…",
  find(text, out, limit) {
    eachAnchor(text, GITHUB_ANCHORS, (s, k) => {
      const fine = k === 1;
      if (
        fine ? !text.startsWith("github", s) : !oneOf(text, s + 2, "pousr") || text[s + 3] !== "_"
      ) {
        return s + 1;
      }
      if (isAt(text, s - 1, TOKEN)) return runEnd(text, s, TOKEN);
      const bodyStart = s + (fine ? 11 : 4);
      const e = runEnd(text, bodyStart, fine ? WORD : ALNUM);
      const len = e - bodyStart;
      if (isAt(text, e, TOKEN)) return e;
      if (fine ? len < 50 || len > 255 : len < 36 || len > 255) return e;
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

const PEM_HEADER =
  /-----BEGIN (?:(?:RSA|DSA|EC|OPENSSH|ENCRYPTED|PGP|SSH2 ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----/y;
// ^ sticky, no quantifiers except bounded optional literals: O(60) per anchor.
const PEM_MAX = 12 * 1024;

/** PEM body characters: base64, whitespace, `\` (JSON-escaped newlines left by a double encoding) and header lines. */
function isPemBody(c: number): boolean {
  if ((clsOf(c) & (BASE64 | EQUALS | SPACE | DASH)) !== 0) return true;
  return c === 92 || c === 58 || c === 44; // \ : ,
}

/** Base64 characters in `text[a..b)` if all of it is PEM body, else -1. */
function pemBodyCount(text: string, a: number, b: number): number {
  let n = 0;
  for (let i = a; i < b; i++) {
    const c = text.charCodeAt(i);
    if (!isPemBody(c)) return -1;
    if (clsOf(c) & BASE64) n++;
  }
  return n;
}

/** Fewer base64 characters than this after a header is prose ("a key starts with -----BEGIN …"). */
const PEM_MIN_BODY = 32;

const privateKey: BuiltinDetector = {
  name: "private_key",
  description:
    "PEM or OpenSSH private key (RSA, DSA, EC, PKCS#8, encrypted, OpenSSH, PGP): the whole block, or header and body when the end is missing",
  find(text, out, limit) {
    // The next "-----END " is cached: one forward search serves all headers,
    // so many headers without an end stay linear.
    let nextEnd = -2;
    eachIndex(text, "-----BEGIN ", (s) => {
      PEM_HEADER.lastIndex = s;
      if (!PEM_HEADER.test(text)) return s + 11;
      const bodyStart = PEM_HEADER.lastIndex;
      if (nextEnd !== -1 && nextEnd < bodyStart) nextEnd = text.indexOf("-----END ", bodyStart);
      let e = -1;
      if (nextEnd !== -1 && nextEnd - bodyStart <= PEM_MAX) {
        if (pemBodyCount(text, bodyStart, nextEnd) >= PEM_MIN_BODY) {
          // "-----END RSA PRIVATE KEY-----": the label, then up to 5 dashes
          e = runEnd(text, nextEnd + 9, UPPER | DIGIT | SPACE, nextEnd + 49);
          const dashes = runEnd(text, e, DASH, e + 5);
          e = dashes > e ? dashes : e;
        }
      }
      if (e === -1) {
        // No end line (a truncated body, a stream chunk): the header and the
        // body that follows are the secret.
        let b = bodyStart;
        let n = 0;
        const stop = Math.min(text.length, bodyStart + PEM_MAX);
        while (b < stop && isPemBody(text.charCodeAt(b))) {
          if (clsOf(text.charCodeAt(b)) & BASE64) n++;
          b++;
        }
        while (b > bodyStart && isAt(text, b - 1, SPACE)) b--;
        if (n < PEM_MIN_BODY) return b;
        e = b;
      }
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

const openaiKey: BuiltinDetector = {
  name: "openai_key",
  description:
    "OpenAI API key: sk-…, sk-proj-…, sk-svcacct-…, sk-admin-… with 20+ mixed-case characters and digits (not sk-ant-)",
  find(text, out, limit) {
    eachAnchor(text, OPENAI_ANCHORS, (s) => {
      if (text.charCodeAt(s) !== 115) return s + 1; // s
      if (isAt(text, s - 1, TOKEN)) return runEnd(text, s, TOKEN); // "task-", "risk-", "disk-"
      if (text.startsWith("ant-", s + 3)) return s + 7;
      const e = runEnd(text, s + 3, TOKEN);
      if (e - (s + 3) < 20) return e;
      const bits = classesIn(text, s + 3, e);
      if (!(bits & UPPER) || !(bits & LOWER) || !(bits & DIGIT)) return e; // kebab-case words
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

const anthropicKey: BuiltinDetector = {
  name: "anthropic_key",
  description: "Anthropic API key: sk-ant-… with 32+ mixed-case characters and digits",
  find(text, out, limit) {
    eachAnchor(text, ANTHROPIC_ANCHORS, (s) => {
      if (!text.startsWith("sk", s)) return s + 1;
      if (isAt(text, s - 1, TOKEN)) return runEnd(text, s, TOKEN);
      const e = runEnd(text, s + 7, TOKEN);
      if (e - (s + 7) < 32) return e;
      const bits = classesIn(text, s + 7, e);
      if (!(bits & UPPER) || !(bits & LOWER) || !(bits & DIGIT)) return e;
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

const SLACK_ANCHORS = [["xox", 0], ["xapp-", 0], [".slack", 5]] as const;

const slackToken: BuiltinDetector = {
  name: "slack_token",
  description:
    "Slack token (xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr-, xapp-) or incoming-webhook URL (hooks.slack.com/services/…)",
  find(text, out, limit) {
    eachAnchor(text, SLACK_ANCHORS, (s, k) => {
      if (k === 0 && (!oneOf(text, s + 3, "abposr") || text[s + 4] !== "-")) return s + 1;
      if (k === 2 && !text.startsWith("hooks.slack.com/", s)) return s + 1;
      if (k !== 2) {
        // token; "xoxe.xoxp-…" refresh tokens keep the dot before
        if (isAt(text, s - 1, TOKEN)) return runEnd(text, s, TOKEN);
        const e = runEnd(text, s + 5, ALNUM | DASH);
        if (e - (s + 5) < 20 || isAt(text, e, WORD)) return e;
        if (!(classesIn(text, s + 5, e) & DIGIT)) return e; // "xoxo-hugs-and-kisses"
        out.push(s, e);
        return full(out, limit) ? -1 : e;
      }
      // webhook: hooks.slack.com/(services|workflows|triggers)/T…/B…/secret
      if (isAt(text, s - 1, WORD) || text.charCodeAt(s - 1) === 46) return s + 1;
      let p = s + 16;
      const kind = ["services/", "workflows/", "triggers/"].find((w) => text.startsWith(w, p));
      if (kind === undefined) return p;
      p += kind.length;
      const secretStart = p;
      let parts = 0;
      for (;;) {
        const e = runEnd(text, p, TOKEN);
        if (e === p) break;
        parts++;
        p = e;
        if (text.charCodeAt(p) !== 47 || !isAt(text, p + 1, TOKEN)) break;
        p++;
      }
      if (parts < 3 || p - secretStart < 20) return p;
      let start = s;
      if (text.startsWith("https://", s - 8)) start = s - 8;
      else if (text.startsWith("http://", s - 7)) start = s - 7;
      out.push(start, p);
      return full(out, limit) ? -1 : p;
    });
  },
};

/** Decodes base64url `text[start..end)` (up to 1 KiB) to a Latin-1 string; "" when invalid. */
function b64urlPrefix(text: string, start: number, end: number): string {
  const len = Math.min(end - start, 1024) & ~3;
  try {
    return atob(text.slice(start, start + len).replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return "";
  }
}

const jwt: BuiltinDetector = {
  name: "jwt",
  description:
    'JSON Web Token: base64url header with "alg" (eyJ…), a dot and a payload, with or without the signature',
  find(text, out, limit) {
    eachAnchor(text, JWT_ANCHORS, (s) => {
      if (text.charCodeAt(s) !== 101) return s + 1; // e
      if (isAt(text, s - 1, TOKEN) || text.charCodeAt(s - 1) === 46) return runEnd(text, s, TOKEN);
      const h = runEnd(text, s, TOKEN);
      if (h - s < 10 || text.charCodeAt(h) !== 46) return h;
      const p = runEnd(text, h + 1, TOKEN);
      if (p - (h + 1) < 10) return p;
      // The header must decode to JSON with "alg": a random "eyJ" inside a
      // base64 image or a UUID-like id never does.
      if (!b64urlPrefix(text, s, h).includes('"alg"')) return p;
      let e = p;
      if (text.charCodeAt(p) === 46) e = runEnd(text, p + 1, TOKEN);
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

const stripeKey: BuiltinDetector = {
  name: "stripe_key",
  description: "Stripe live secret or restricted key: sk_live_… or rk_live_…",
  find(text, out, limit) {
    eachAnchor(text, STRIPE_ANCHORS, (k) => {
      if (text.charCodeAt(k) !== 107) return k + 1; // k
      const s = k - 1;
      const c = text.charCodeAt(s);
      if (c !== 115 && c !== 114) return k + 7; // s / r
      if (isAt(text, s - 1, TOKEN)) return runEnd(text, s, TOKEN);
      const e = runEnd(text, k + 7, ALNUM);
      if (e - (k + 7) < 20 || isAt(text, e, TOKEN)) return e;
      const bits = classesIn(text, k + 7, e);
      if (!(bits & DIGIT) || !(bits & (UPPER | LOWER))) return e;
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

const googleApiKey: BuiltinDetector = {
  name: "google_api_key",
  description: "Google API key: AIza followed by 35 base64url characters",
  find(text, out, limit) {
    eachIndex(text, "AIza", (s) => {
      if (isAt(text, s - 1, TOKEN)) return runEnd(text, s, TOKEN);
      const e = runEnd(text, s, TOKEN, s + 40);
      if (e - s !== 39 || isAt(text, e, TOKEN)) return e;
      out.push(s, e);
      return full(out, limit) ? -1 : e;
    });
  },
};

// ---------------------------------------------------------------------------
// personal data: digit runs shared by credit_card and us_ssn

const isDigitOrSep = (c: number) => (c >= 48 && c <= 57) || c === 32 || c === 45;

/**
 * The digit runs of every maximal region of digits, spaces and dashes that is
 * at least 9 long from its first digit (see {@link splitRegion}). Checks
 * every 9th character and looks around only on a hit (a region of 9 always
 * covers a checked position), so prose and base64 are skipped at a fraction
 * of a pass; the backward look stops at the previous region, so the loop is
 * linear. (A RegExp such as /\d(?:[ -]?\d){8,}/ is slower here, and V8 throws
 * a stack overflow on a counted loop over a 10 MB run.) No closure and no
 * array unless a region is found: most texts have none, or only a timestamp.
 */
function digitRegionRuns(text: string): readonly number[] {
  const n = text.length;
  let runs: number[] | null = null;
  let done = 0;
  for (let i = 8; i < n;) {
    // A run that matters (digits with single separators) has a digit at or
    // next to every one of its positions; prose spaces between words do not.
    const c = text.charCodeAt(i);
    const hit = c >= 48 && c <= 57 ? true : (c === 32 || c === 45) &&
      (isAt(text, i - 1, DIGIT) || isAt(text, i + 1, DIGIT));
    if (!hit) {
      i += 9;
      continue;
    }
    let s = i;
    while (s > done && isDigitOrSep(text.charCodeAt(s - 1))) s--;
    let e = i + 1;
    while (e < n && isDigitOrSep(text.charCodeAt(e))) e++;
    while (s < e && !isAt(text, s, DIGIT)) s++;
    if (e - s >= 9) splitRegion(text, s, e, runs ??= []);
    done = e;
    i = e + 9;
  }
  return runs ?? NO_RUNS;
}

/** The digit runs of a text that has none (shared, never written). */
const NO_RUNS: readonly number[] = Object.freeze([]);

/** Longer number soup is not a card or an SSN: skipped, so a 10 MB "1-1-1…" costs one pass. */
const MAX_DIGIT_RUN = 200;

/**
 * Splits the region `[s, e)` where separators meet or trail ("4111 1111 1111
 * 1111  12/29") and adds its runs to `runs`.
 */
function splitRegion(text: string, s: number, e: number, runs: number[]): void {
  let a = s;
  let i = s;
  while (i < e) {
    if (isAt(text, i, DIGIT) || (i + 1 < e && isAt(text, i + 1, DIGIT))) {
      i++;
      continue;
    }
    emitRun(text, a, i, a === s, runs);
    while (i < e && !isAt(text, i, DIGIT)) i++;
    a = i;
  }
  if (a < e) emitRun(text, a, e, a === s, runs);
}

/** Adds `a, b, digits` to `runs` when `[a, b)` is a run that matters (see {@link digitRuns}). */
function emitRun(text: string, a: number, b: number, first: boolean, runs: number[]): void {
  if (b - a < 9 || b - a > MAX_DIGIT_RUN) return;
  if (first && (isAt(text, a - 1, WORD) || text.charCodeAt(a - 1) === 46)) return;
  // at the region end: not glued to a word, not the integer part of a decimal
  if (isAt(text, b, WORD) || (text.charCodeAt(b) === 46 && isAt(text, b + 1, DIGIT))) return;
  let digits = 0;
  for (let i = a; i < b; i++) if (isAt(text, i, DIGIT)) digits++;
  runs.push(a, b, digits);
}

/**
 * Digit runs as triples `start, end, digits`: `[start, end)` is digits joined
 * by single spaces or dashes, at least 9 long, not part of an identifier, a
 * hex string or a decimal fraction; `digits` counts its digits (the rest are
 * its separators). Cached for the scan (credit_card and us_ssn share it).
 */
function digitRuns(text: string, ctx: ScanContext): readonly number[] {
  return ctx.digitRuns ??= digitRegionRuns(text);
}

/** Splits a run into groups: returns [groupStart, groupEnd, …] and the separators between groups. */
function groupsOf(text: string, s: number, e: number): { g: number[]; seps: number[] } {
  const g: number[] = [];
  const seps: number[] = [];
  let i = s;
  while (i < e) {
    const ge = runEnd(text, i, DIGIT, e);
    g.push(i, ge);
    if (ge < e) seps.push(text.charCodeAt(ge));
    i = ge + 1;
  }
  return { g, seps };
}

function luhn(digits: string): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

/** Card brands by IIN prefix and length (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro). */
function cardBrand(d: string): boolean {
  const n = d.length;
  const p2 = +d.slice(0, 2);
  const p3 = +d.slice(0, 3);
  const p4 = +d.slice(0, 4);
  if (d[0] === "4") return n === 13 || n === 16 || n === 19;
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n === 16;
  if (p2 === 34 || p2 === 37) return n === 15;
  if (p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649)) return n >= 16;
  if ((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39) return n >= 14;
  if (p4 >= 3528 && p4 <= 3589) return n >= 16;
  if (p2 === 62) return n >= 16;
  if ([5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763].includes(p4)) return n >= 13;
  return false;
}

/** Group lengths printed on cards: 4-4-4-4(-3), 4-6-5 (Amex), 4-6-4 (Diners). */
function cardShape(lens: number[]): boolean {
  if (lens.length === 1) return true;
  if (lens.length === 3 && lens[0] === 4 && lens[1] === 6 && (lens[2] === 5 || lens[2] === 4)) {
    return true;
  }
  for (let i = 0; i < lens.length - 1; i++) if (lens[i] !== 4) return false;
  return lens[lens.length - 1] >= 1 && lens[lens.length - 1] <= 4;
}

const creditCard: BuiltinDetector = {
  name: "credit_card",
  description:
    "Payment card number: 13–19 digits of a known brand, Luhn-valid, plain or grouped with spaces or dashes",
  find(text, out, limit, ctx) {
    const runs = digitRuns(text, ctx);
    for (let r = 0; r < runs.length; r += 3) {
      // Fewer than 13 digits hold no card: JSON's ten-digit timestamps and
      // dates are most runs, and are let go without splitting them up.
      if (runs[r + 2] < 13) continue;
      const { g, seps } = groupsOf(text, runs[r], runs[r + 1]);
      const ng = g.length / 2;
      let next = 0; // first group a new window may start at (windows do not overlap)
      for (let a = 0; a < ng; a++) {
        if (a < next) continue;
        // A window of groups [a..b] joined by one separator kind and not glued
        // to a neighbour by the same kind ("1-4111-1111-1111-1111" is an id).
        for (let b = a, digits = 0; b < ng && digits < 19; b++) {
          digits += g[2 * b + 1] - g[2 * b];
          if (b > a && seps[b - 1] !== seps[a]) break;
          if (digits < 13 || digits > 19) continue;
          if (b > a && a > 0 && seps[a - 1] === seps[a]) break;
          if (b > a && b < ng - 1 && seps[b] === seps[a]) continue;
          const lens: number[] = [];
          let d = "";
          for (let k = a; k <= b; k++) {
            lens.push(g[2 * k + 1] - g[2 * k]);
            d += text.slice(g[2 * k], g[2 * k + 1]);
          }
          if (!cardShape(lens) || !cardBrand(d) || !luhn(d)) continue;
          out.push(g[2 * a], g[2 * b + 1]);
          if (full(out, limit)) return;
          next = b + 1;
          break;
        }
      }
    }
  },
};

/** Numbers the SSA never issued but that fill documents and ads. */
const SSN_VOID = new Set(["078051120", "219099999", "123456789"]);

const usSsn: BuiltinDetector = {
  name: "us_ssn",
  description:
    "US Social Security number ddd-dd-dddd (or spaces): area not 000/666/9xx, group not 00, serial not 0000",
  find(text, out, limit, ctx) {
    const runs = digitRuns(text, ctx);
    for (let r = 0; r < runs.length; r += 3) {
      // ddd-dd-dddd: at least 9 digits and two separators (a run's other
      // characters), checked before the run is split up.
      const digits = runs[r + 2];
      if (digits < 9 || runs[r + 1] - runs[r] - digits < 2) continue;
      const { g, seps } = groupsOf(text, runs[r], runs[r + 1]);
      const ng = g.length / 2;
      for (let a = 0; a + 2 < ng; a++) {
        if (g[2 * a + 1] - g[2 * a] !== 3) continue;
        if (g[2 * a + 3] - g[2 * a + 2] !== 2 || g[2 * a + 5] - g[2 * a + 4] !== 4) continue;
        const sep = seps[a];
        if (seps[a + 1] !== sep) continue;
        if ((a > 0 && seps[a - 1] === sep) || (a + 3 < ng && seps[a + 2] === sep)) continue;
        const area = text.slice(g[2 * a], g[2 * a + 1]);
        const group = text.slice(g[2 * a + 2], g[2 * a + 3]);
        const serial = text.slice(g[2 * a + 4], g[2 * a + 5]);
        if (area === "000" || area === "666" || area[0] === "9") continue;
        if (group === "00" || serial === "0000" || SSN_VOID.has(area + group + serial)) continue;
        out.push(g[2 * a], g[2 * a + 5]);
        if (full(out, limit)) return;
        a += 2;
      }
    }
  },
};

// ---------------------------------------------------------------------------
// threats: paths

const SSH_FILE = /^(?:id_[A-Za-z0-9_]+|identity|authorized_keys2?|known_hosts|\*)$/; // anchored, one bounded word

const sshPath: BuiltinDetector = {
  name: "ssh_path",
  description:
    "Path to SSH key material: .ssh/id_* (not .pub), .ssh/identity, .ssh/authorized_keys, .ssh/known_hosts, .ssh/*",
  find(text, out, limit) {
    eachIndex(text, ".ssh", (i) => {
      if (isAt(text, i - 1, WORD)) return i + 4;
      const slash = text.charCodeAt(i + 4);
      if (slash !== 47 && slash !== 92) return i + 4;
      const n0 = i + 5;
      let n1 = text.charCodeAt(n0) === 42 ? n0 + 1 : runEnd(text, n0, WORD | DASH, n0 + 64);
      if (n1 === n0 || !SSH_FILE.test(text.slice(n0, n1))) return n1;
      if (text.startsWith(".pub", n1) && !isAt(text, n1 + 4, WORD)) return n1 + 4;
      if (isAt(text, n1, WORD)) return n1;
      // keep an extension such as id_rsa.old / id_ed25519.bak
      if (text.charCodeAt(n1) === 46 && isAt(text, n1 + 1, WORD)) {
        n1 = runEnd(text, n1 + 1, WORD, n1 + 17);
      }
      out.push(pathStart(text, i), n1);
      return full(out, limit) ? -1 : n1;
    });
  },
};

// Alternation of literals and single bounded classes; every class loop is
// followed by a disjoint literal or ends the pattern. Linear.
const DOTFILE =
  /\/etc\/(?:shadow|gshadow|sudoers|passwd|master\.passwd|ssh\/ssh_host_[a-z0-9]+_key)|\.(?:aws\/credentials|env(?:rc|\.[A-Za-z0-9_-]+)?|netrc|pgpass|kube\/config|docker\/config\.json|git-credentials|npmrc|pypirc|gem\/credentials|vault-token|my\.cnf|(?:bash|zsh)_history|gnupg\/(?:private-keys-v1\.d|secring\.gpg)|config\/gcloud\/(?:credentials\.db|access_tokens\.db|application_default_credentials\.json)|azure\/(?:accessTokens\.json|msal_token_cache\.json)|terraform\.d\/credentials\.tfrc\.json|config\/gh\/hosts\.yml|cargo\/credentials(?:\.toml)?)|_netrc/g;

const ENV_TEMPLATES = new Set([
  ".example",
  ".sample",
  ".template",
  ".dist",
  ".defaults",
  ".default",
  ".schema",
  ".tpl",
]);

const dotfilePath: BuiltinDetector = {
  name: "dotfile_path",
  description:
    "Path to a credential file: /etc/shadow, /etc/passwd, /etc/sudoers, .aws/credentials, .env*, .netrc, .pgpass, .kube/config, .docker/config.json, .git-credentials, .npmrc, …",
  find(text, out, limit) {
    eachMatch(text, DOTFILE, (s, m) => {
      const e = s + m[0].length;
      const etc = m[0].charCodeAt(0) === 47;
      // "process.env", "import.meta.env", "/usr/local/etc/passwd" are not it
      if (isAt(text, s - 1, WORD) || (etc && text.charCodeAt(s - 1) === 46)) return s + 1;
      if (isAt(text, e, WORD)) return e; // ".environment", ".netrcx"
      if (m[0].startsWith(".env")) {
        const next = text.charCodeAt(e);
        if (next === 47 || next === 92) return e; // a virtualenv directory named .env/
        if (/(?:venv|virtualenv)[ \t]+$/.test(text.slice(Math.max(0, s - 16), s))) return e; // bounded
        const dot = m[0].indexOf(".", 1);
        if (dot !== -1 && ENV_TEMPLATES.has(m[0].slice(dot).toLowerCase())) return e;
      }
      out.push(pathStart(text, s), e);
      return full(out, limit) ? -1 : e;
    });
  },
};

// ---------------------------------------------------------------------------
// threats: shell pipes

const SHELLS = new Set(["sh", "bash", "zsh", "ksh", "dash", "ash", "mksh", "csh", "tcsh", "fish"]);
const INTERPRETERS = /^(?:python[0-9.]*|perl|ruby|node|php)$/; // anchored, one short word

/** Reads the word at `i` (up to 64 non-space characters). */
function wordAt(text: string, i: number): string {
  let e = i;
  const stop = Math.min(text.length, i + 64);
  while (e < stop) {
    const c = text.charCodeAt(e);
    if (c === 32 || c === 9 || c === 10 || c === 13 || c === 124 || c === 59 || c === 38) break;
    if (c === 41 || c === 34 || c === 39 || c === 96) break; // ) " ' `
    e++;
  }
  return text.slice(i, e);
}

/**
 * End of the arguments that follow a command ending at `i`: stops at a line
 * break, a shell separator, a quote or `)` — so a span never runs into the
 * next JSON string — and after `max` characters.
 */
function argsEnd(text: string, i: number, max: number): number {
  const stop = Math.min(text.length, i + max);
  let e = i;
  while (e < stop) {
    const c = text.charCodeAt(e);
    if (c === 10 || c === 13 || c === 59 || c === 38 || c === 124) break; // \n \r ; & |
    if (c === 34 || c === 39 || c === 96 || c === 41) break; // " ' ` )
    e++;
  }
  while (e > i && (text.charCodeAt(e - 1) === 32 || text.charCodeAt(e - 1) === 9)) e--;
  return e;
}

/**
 * End of up to `max` words after `i` that each satisfy `ok` (blank-separated,
 * on the same line): the flags after `| bash`, the host and port after
 * `nc -e /bin/sh`. Stops at the first word that does not fit, so prose after
 * a command is never part of the span.
 */
function wordsEnd(text: string, i: number, max: number, ok: (w: string) => boolean): number {
  let e = i;
  for (let n = 0; n < max; n++) {
    const j = skipBlanks(text, e);
    if (j === e) break;
    const w = wordAt(text, j);
    if (w === "" || !ok(w)) break;
    e = j + w.length;
  }
  return e;
}

const isFlag = (w: string) => /^--?[A-Za-z0-9][\w=.-]*$|^--?$/.test(w); // one bounded word
const isHostOrPort = (w: string) => /^[\w.:-]+$/.test(w) && /[\d.:]/.test(w); // one bounded word

function skipBlanks(text: string, i: number): number {
  const stop = Math.min(text.length, i + 32);
  while (i < stop && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  return i;
}

/**
 * End of a shell (or a bare interpreter) command right after a pipe at `p`,
 * or -1: `| sh`, `| sudo -E bash -s -- x`, `| /usr/bin/env bash`, `| python`.
 */
function pipedShellEnd(text: string, p: number): number {
  let i = skipBlanks(text, p + 1);
  let w = wordAt(text, i);
  for (let hops = 0; hops < 6; hops++) {
    if (w === "sudo" || w === "env" || w === "/usr/bin/env" || w === "command" || w === "exec") {
      i = skipBlanks(text, i + w.length);
      w = wordAt(text, i);
      continue;
    }
    if (w.startsWith("-") || (w.includes("=") && !w.includes("/"))) { // sudo flags, env VAR=x
      i = skipBlanks(text, i + w.length);
      w = wordAt(text, i);
      continue;
    }
    break;
  }
  if (w === "") return -1;
  const base = w.slice(w.lastIndexOf("/") + 1);
  const end = i + w.length;
  if (SHELLS.has(base)) return end;
  if (!INTERPRETERS.test(base)) return -1;
  // "| python" runs what was downloaded; "| python -m json.tool" does not.
  let j = skipBlanks(text, end);
  if (text.charCodeAt(j) === 45 && !isAt(text, j + 1, WORD | DASH)) j = skipBlanks(text, j + 1);
  const c = text.charCodeAt(j);
  return j >= text.length || c === 10 || c === 13 || c === 59 || c === 38 || c === 41 ||
      c === 34 || c === 39 || c === 96 || c === 124
    ? end
    : -1;
}

// Download or decode commands whose output must not reach a shell. Literals
// and `[ \t]+` loops each followed by a disjoint literal; only ever run on
// the part of a line before a pipe into a shell (at most 512 characters, and
// each character once), so its cost does not depend on how many pipes a body
// has.
const FETCH_CMD =
  /\b(?:curl|wget)\b|\bbase64[ \t]+(?:-d|-D|--decode|-di|-id)\b|\bxxd[ \t]+-r\b|\bopenssl[ \t]+(?:base64|enc)\b/g;
// Applied to at most 40 characters before `<(curl` / `$(curl` (bounded input).
const SUBST_LEFT =
  /(?:(?:^|[^\w-])(?:ba|z|k|da)?sh(?:[ \t]+-c)?|\bsource|\beval|(?:^|[ \t;])\.)[ \t]+["']?$/;

const shellPipe: BuiltinDetector = {
  name: "shell_pipe",
  description:
    'Download or decode piped into a shell: curl … | sh, wget … | bash, base64 -d | sh, bash <(curl …), sh -c "$(curl …)"',
  find(text, out, limit) {
    const found: number[] = [];
    // 1. Each pipe into a shell pairs with the latest fetch/decode command
    //    on its line, at most 512 characters before. The newline position
    //    and the searched region only move forward.
    let lastEnd = 0;
    let lastNl = -1;
    let nextNl = -2;
    let searched = 0;
    let lastCmd = -1;
    eachIndex(text, "|", (p) => {
      if (text.charCodeAt(p + 1) === 124 || text.charCodeAt(p - 1) === 124) return p + 2; // ||
      if (p < lastEnd) return lastEnd;
      const shell = pipedShellEnd(text, p);
      if (shell < 0) return p + 1;
      if (nextNl === -2) nextNl = text.indexOf("\n");
      while (nextNl !== -1 && nextNl < p) {
        lastNl = nextNl;
        nextNl = text.indexOf("\n", nextNl + 1);
      }
      const from = Math.max(lastNl + 1, p - 512);
      const a = Math.max(from, searched);
      if (a < p) {
        // one character of left context, so \b sees the real neighbour
        const base = Math.max(0, a - 1);
        const seg = text.slice(base, p);
        FETCH_CMD.lastIndex = 0;
        for (let m; (m = FETCH_CMD.exec(seg)) !== null;) {
          if (base + m.index >= a) lastCmd = base + m.index;
          FETCH_CMD.lastIndex = m.index + m[0].length;
        }
        searched = p;
      }
      if (lastCmd < from) return p + 1;
      const e = wordsEnd(text, shell, 6, isFlag);
      found.push(lastCmd, e);
      lastEnd = e;
      return e;
    });
    // 2. Process substitution and command substitution: <(curl, $(curl.
    eachIndex(text, "(", (p) => {
      const c = text.charCodeAt(p - 1);
      if (c !== 60 && c !== 36) return p + 1; // < $
      const w = skipBlanks(text, p + 1);
      if (!text.startsWith("curl", w) && !text.startsWith("wget", w)) return p + 1;
      if (isAt(text, w + 4, WORD)) return p + 1;
      const s = p - 1;
      const left = text.slice(Math.max(0, s - 40), s);
      const lm = SUBST_LEFT.exec(left);
      if (!lm) return p + 1;
      let e = argsEnd(text, w + 4, 256);
      if (text.charCodeAt(e) === 41) e++; // the closing ")"
      found.push(s - left.length + lm.index + (/^[^\w.-]/.test(lm[0]) ? 1 : 0), e);
      return e;
    });
    pushSorted(found, out, limit);
  },
};

/** Sorts `[start, end)` pairs, drops overlaps and appends them to `out`. */
function pushSorted(found: number[], out: number[], limit: number): void {
  const idx: number[] = [];
  for (let i = 0; i < found.length; i += 2) idx.push(i);
  idx.sort((a, b) => found[a] - found[b] || found[b + 1] - found[a + 1]);
  let lastEnd = -1;
  for (const i of idx) {
    if (found[i] < lastEnd) continue;
    out.push(found[i], found[i + 1]);
    lastEnd = found[i + 1];
    if (full(out, limit)) return;
  }
}

// ---------------------------------------------------------------------------
// threats: reverse shells

// Sticky, tried only at "/dev/" anchors: /dev/tcp/HOST/PORT; the host class
// excludes "/", so its loop has a single exit.
const DEV_TCP = /\/dev\/(?:tcp|udp)\/[^\s/"'<>|;&]+\/\d+/y;
// Sticky, tried only at "nc" / "netcat" anchors: the command word.
const NETCAT = /(?:nc|ncat|netcat)(?:\.traditional|\.openbsd|\.exe)?(?=[ \t])/y;
// Applied to one command segment of at most 200 characters (bounded input).
const NETCAT_EXEC =
  /(?:^|[ \t])(?:-[A-Za-z]*[ec]|--exec|--sh-exec)[ \t]+["']?(?:\S*[/\\])?(?:(?:ba|z|k|da)?sh|cmd(?:\.exe)?|powershell(?:\.exe)?|pwsh)\b/;
// Sticky, tried only at pipes: "| sh -i 2>&1 | nc". Blank loops end at a
// non-blank, one bounded class ends at a disjoint "|".
const SH_TO_NC =
  /\|[ \t]*(?:\/usr\/bin\/|\/bin\/)?(?:ba|z|k|da)?sh\b[^|\n]{0,24}\|[ \t]*(?:nc|ncat|netcat|telnet)\b/y;

/**
 * A one-liner recognized by an anchor and, within a window, one keyword of
 * each group. The anchor is searched as `lit`, found `offset` characters into
 * it (a rarer first character: see {@link eachAnchor}).
 */
interface CoRule {
  anchor: string;
  lit: string;
  offset: number;
  before: number;
  after: number;
  groups: string[][];
}

const CO_RULES: CoRule[] = [
  // python -c 'import socket,os;s=socket.socket();s.connect((h,p));os.dup2(s.fileno(),0);…'
  {
    anchor: ".connect((",
    lit: "((",
    offset: 8,
    before: 300,
    after: 400,
    groups: [["socket"], ["dup2(", "pty.spawn(", "fileno()"]],
  },
  // perl -e 'use Socket;…connect(S,…);open(STDIN,">&S");…exec("/bin/sh -i")'
  {
    anchor: "open(STDIN",
    lit: "(STDIN",
    offset: 4,
    before: 400,
    after: 200,
    groups: [["socket(", "Socket"], [">&"]],
  },
  // perl -MIO -e '$c=new IO::Socket::INET(…);STDIN->fdopen($c,r);…'
  {
    anchor: "->fdopen(",
    lit: "(",
    offset: 8,
    before: 300,
    after: 200,
    groups: [["IO::Socket"]],
  },
  // ruby -rsocket -e 'f=TCPSocket.open(h,p).to_i;exec sprintf("/bin/sh -i <&%d …")'
  {
    anchor: "TCPSocket",
    lit: "TCP",
    offset: 0,
    before: 0,
    after: 300,
    groups: [["exec", "spawn", "popen", "system"], ["/bin/", "sh -i", "cmd.exe"]],
  },
  // php -r '$s=fsockopen(h,p);exec("/bin/sh -i <&3 >&3 2>&3");'
  {
    anchor: "fsockopen(",
    lit: "(",
    offset: 9,
    before: 0,
    after: 300,
    groups: [["exec(", "system(", "passthru(", "proc_open(", "popen(", "`"], ["sh", "cmd"]],
  },
  // powershell New-Object System.Net.Sockets.TCPClient(h,p);$s=$c.GetStream();…iex
  {
    anchor: "Sockets.TCPClient(",
    lit: "TCP",
    offset: 8,
    before: 0,
    after: 1000,
    groups: [["GetStream()"], ["iex", "Invoke-Expression", "Out-String"]],
  },
  // socat tcp-connect:h:p exec:sh,pty
  {
    anchor: "socat ",
    lit: "socat ",
    offset: 0,
    before: 0,
    after: 200,
    groups: [["exec:", "EXEC:", "system:", "SYSTEM:"], ["tcp", "TCP"]],
  },
  // awk 'BEGIN {s = "/inet/tcp/0/h/p"; … s |& getline c …}'
  {
    anchor: "/inet/tcp/",
    lit: "/inet/",
    offset: 0,
    before: 0,
    after: 300,
    groups: [["getline"]],
  },
  // rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc h p >/tmp/f
  {
    anchor: "mkfifo ",
    lit: "mk",
    offset: 0,
    before: 0,
    after: 200,
    groups: [["nc ", "ncat ", "netcat ", "telnet ", "s_client"], ["sh"]],
  },
  {
    anchor: "mknod ",
    lit: "mk",
    offset: 0,
    before: 0,
    after: 200,
    groups: [["nc ", "ncat ", "netcat ", "telnet ", "s_client"], ["sh"]],
  },
];

/** Distinct literals of the rules (one native search each) and the rules each one anchors. */
const CO_LITS = [...new Set(CO_RULES.map((r) => r.lit))];
const CO_BY_LIT = CO_LITS.map((lit) => CO_RULES.filter((r) => r.lit === lit));
/** The literals as `eachAnchor` takes them, built once rather than per scan. */
const CO_ANCHORS: readonly (readonly [string, number])[] = CO_LITS.map((l) => [l, 0] as const);
const NETCAT_ANCHORS: readonly (readonly [string, number])[] = [["nc", 0], ["netcat", 0]];

/** Sorted positions of `lit` in `text`, computed once per scan. */
function positions(text: string, lit: string, memo: Map<string, number[]>): number[] {
  let list = memo.get(lit);
  if (!list) {
    list = [];
    for (let i = text.indexOf(lit); i !== -1; i = text.indexOf(lit, i + 1)) list.push(i);
    memo.set(lit, list);
  }
  return list;
}

/** First element of sorted `list` in `[a, b)`, or -1 (binary search). */
function firstIn(list: number[], a: number, b: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid] < a) lo = mid + 1;
    else hi = mid;
  }
  return lo < list.length && list[lo] < b ? list[lo] : -1;
}

const reverseShell: BuiltinDetector = {
  name: "reverse_shell",
  description:
    "Reverse or bind shell: nc -e, bash -i >& /dev/tcp/…, /dev/tcp redirections, mkfifo … nc, sh | nc, python/perl/ruby/php/powershell/socat/awk socket one-liners",
  find(text, out, limit) {
    const found: number[] = [];
    // a. redirections to /dev/tcp or /dev/udp
    eachIndex(text, "/dev/", (s) => {
      DEV_TCP.lastIndex = s;
      if (!DEV_TCP.test(text)) return s + 5;
      let e = DEV_TCP.lastIndex;
      let k = s - 1;
      const stop = Math.max(0, s - 8);
      while (k > stop && (text.charCodeAt(k) === 32 || text.charCodeAt(k) === 9)) k--;
      if (text.charCodeAt(k) === 38) k--; // >& or <&
      const op = text.charCodeAt(k);
      if (op !== 62 && op !== 60) return e; // not > or <
      while (k > 0 && (text.charCodeAt(k - 1) === 60 || text.charCodeAt(k - 1) === 62)) k--; // <>
      k = runStart(text, k, DIGIT, 4); // fd number: 5<>/dev/tcp
      const tail = /^[ \t]*\d?[<>]&\d/.exec(text.slice(e, e + 12)); // " 0>&1" (bounded)
      if (tail) e += tail[0].length;
      found.push(k, e);
      return e;
    });
    // b. netcat with an exec option, within its own command segment
    let segEnd = 0;
    eachAnchor(text, NETCAT_ANCHORS, (s) => {
      if (s < segEnd) return segEnd; // segments do not overlap: linear
      if (isAt(text, s - 1, WORD)) return s + 1; // "sync", "func"
      NETCAT.lastIndex = s;
      if (!NETCAT.test(text)) return s + 1;
      const from = NETCAT.lastIndex;
      let to = Math.min(text.length, from + 200);
      for (let i = from; i < to; i++) {
        const c = text.charCodeAt(i);
        if (c === 10 || c === 59 || c === 124) {
          to = i;
          break;
        }
      }
      segEnd = to;
      const x = NETCAT_EXEC.exec(text.slice(from, to));
      if (x) found.push(s, wordsEnd(text, from + x.index + x[0].length, 2, isHostOrPort));
      return to;
    });
    // c. a shell piped into netcat
    eachIndex(text, "|", (p) => {
      SH_TO_NC.lastIndex = p;
      if (!SH_TO_NC.test(text)) return p + 1;
      found.push(p, SH_TO_NC.lastIndex);
      return SH_TO_NC.lastIndex;
    });
    // d. one-liners: an anchor plus keywords nearby
    // Made when an anchor's rule first matches: most texts have none.
    let memo: Map<string, number[]> | null = null;
    eachAnchor(text, CO_ANCHORS, (at, k) => {
      for (const rule of CO_BY_LIT[k]) {
        const a = at - rule.offset;
        if (a < 0 || !text.startsWith(rule.anchor, a)) continue;
        const lo = Math.max(0, a - rule.before);
        const hi = Math.min(text.length, a + rule.anchor.length + rule.after);
        let s = a;
        let e = a + rule.anchor.length;
        for (const group of rule.groups) {
          let best = -1;
          let bestLit = "";
          for (const lit of group) {
            const p = firstIn(positions(text, lit, memo ??= new Map()), lo, hi - lit.length + 1);
            if (p !== -1 && (best === -1 || p < best)) {
              best = p;
              bestLit = lit;
            }
          }
          if (best === -1) {
            e = -1;
            break;
          }
          s = Math.min(s, best);
          e = Math.max(e, best + bestLit.length);
        }
        if (e === -1) continue;
        found.push(s, e);
        return Math.max(e, at + 1);
      }
      return at + 1;
    });
    pushSorted(found, out, limit);
  },
};

// ---------------------------------------------------------------------------

/** @internal All built-in detectors, in documentation order. */
export const BUILTIN_DETECTORS: readonly BuiltinDetector[] = [
  awsAccessKey,
  awsSecretKey,
  githubToken,
  privateKey,
  openaiKey,
  anthropicKey,
  slackToken,
  jwt,
  stripeKey,
  googleApiKey,
  creditCard,
  usSsn,
  sshPath,
  dotfilePath,
  shellPipe,
  reverseShell,
];

/**
 * Names of the built-in detectors, in documentation order.
 *
 * @example
 * ```ts
 * import { DETECTOR_NAMES } from "./detectors.ts";
 * DETECTOR_NAMES.includes("github_token"); // true
 * ```
 */
export const DETECTOR_NAMES: readonly string[] = BUILTIN_DETECTORS.map((d) => d.name);

/**
 * Name and one-line description of each built-in detector, for docs,
 * `agentgate check` (did-you-mean) and `agentgate scan --list`.
 *
 * @example
 * ```ts
 * import { DETECTORS } from "./detectors.ts";
 * for (const d of DETECTORS) console.log(`${d.name}: ${d.description}`);
 * ```
 */
export const DETECTORS: readonly DetectorInfo[] = BUILTIN_DETECTORS.map((d) => ({
  name: d.name,
  description: d.description,
}));
