/**
 * One canonical path, and the other ways servers read the same bytes.
 *
 * Upstreams disagree about request paths: nginx decodes `%2F` and merges
 * `//`, Tomcat and Jetty cut `;parameters` off every segment, WHATWG URL
 * parsers (Node) turn `\` into `/`, IIS decodes `%u002f`, Express routes on
 * the raw string without resolving `..`, some applications decode twice. A
 * rule on `/admin/**` must not be talked around by a spelling one of them
 * reads as `/admin/x`.
 *
 * {@link canonicalPath} gives the path the policy decides on — the reading of
 * the strictest common upstream: fragment cut, `;parameters` dropped,
 * percent-escapes decoded until nothing changes (overlong UTF-8 and `%uXXXX`
 * included), `\` as `/` and trailing dots and spaces of a segment dropped (as
 * Windows does), `//` merged, dot segments (also `%2e`) resolved, then
 * re-encoded so it has exactly one spelling. When the raw path has any of
 * those features it also lists every distinct reading of a fixed set of
 * server behaviours ({@link pathReadings}); the pipeline denies the
 * request when the policy would decide those readings differently
 * (`limits.ambiguous_paths: deny`), or forwards the canonical form
 * (`normalize`).
 *
 * @module
 */

/** How a raw path can be read, when it has spelling features servers disagree on. */
export interface PathSpelling {
  /** The path as sent (before `?`). */
  raw: string;
  /** Why no reading is safe (encoded control character, invalid UTF-8, nested encoding), or null. */
  malformed: string | null;
  /** The features found, for reasons: `"//"`, `dot segment`, `";" parameter`, `"\\"`, `%2F` … */
  features: string[];
}

/** The canonical path and, when the raw path has ambiguous features, its spelling. */
export interface CanonicalPath {
  /** The path the policy decides on (and `normalize` forwards). */
  path: string;
  /** null when every server reads the raw path as {@link path}. */
  spelling: PathSpelling | null;
}

/** Characters a path may carry as they are (RFC 3986 pchar and "/"), apart from "%" and ";". */
const PLAIN = /^[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;
/** Bytes that stay literal when a path is encoded (RFC 3986 pchar without "%", and "/"). */
const KEEP = new Uint8Array(128);
for (
  const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
) {
  KEEP[c.charCodeAt(0)] = 1;
}
const UNRESERVED = /[A-Za-z0-9\-._~]/;
const HEX = "0123456789ABCDEF";
/** Decoding rounds before a path counts as nested-encoded beyond reason. */
const MAX_DECODE_ROUNDS = 4;
/** Longest raw path whose readings are enumerated; a longer ambiguous one is malformed. */
export const MAX_AMBIGUOUS_PATH = 1024;

/**
 * The canonical path of a raw request path (the part before `?`), and how
 * else servers could read it.
 *
 * @example
 * canonicalPath("/ok/..;/admin/x").path // "/admin/x"
 * canonicalPath("//admin/x").spelling?.features // ['"//"']
 * canonicalPath("/v1/chat").spelling // null
 */
export function canonicalPath(raw: string): CanonicalPath {
  const start = raw.startsWith("/") ? raw : "/" + raw;
  if (PLAIN.test(start) && !start.includes("//") && !/\.(\/|$)/.test(start)) {
    return { path: start, spelling: null };
  }
  const features = featuresOf(start);
  const problem = { malformed: null as string | null };
  const canonical = encodePath(readAs(start, CANONICAL, problem));
  if (features.length === 0 && problem.malformed === null) {
    // Only characters that need encoding (a space, "é"): one reading.
    return { path: canonical, spelling: null };
  }
  return {
    path: canonical,
    spelling: { raw: start, malformed: problem.malformed, features },
  };
}

/**
 * Every distinct reading of a raw path by the server behaviours agentgate
 * models, canonical first, each in canonical encoding ({@link encodePath}).
 * `malformed` is set when a reading meets invalid encoding, or when the path
 * is longer than {@link MAX_AMBIGUOUS_PATH} (its readings are not worth the
 * time an attacker could make them cost).
 *
 * @example
 * pathReadings("//admin/x").views // ["/admin/x", "//admin/x"]
 */
export function pathReadings(raw: string): { views: string[]; malformed: string | null } {
  const start = raw.startsWith("/") ? raw : "/" + raw;
  const problem = { malformed: null as string | null };
  const canonical = encodePath(readAs(start, CANONICAL, problem));
  if (start.length > MAX_AMBIGUOUS_PATH) {
    problem.malformed ??= `longer than ${MAX_AMBIGUOUS_PATH} characters`;
  }
  if (problem.malformed !== null) return { views: [canonical], malformed: problem.malformed };
  const views = readings(start, canonical, problem);
  return { views, malformed: problem.malformed };
}

/**
 * The features of a raw path servers read differently, named for reasons.
 *
 * @example
 * featuresOf("/a//b;x/%2e%2e") // ['"//"', '";" parameter', "dot segment", "%2E"]
 */
export function featuresOf(raw: string): string[] {
  const out: string[] = [];
  if (raw.includes("//")) out.push('"//"');
  if (raw.includes(";")) out.push('";" parameter');
  if (/(^|\/)(\.|%2e){1,2}(\/|;|$)/i.test(raw)) out.push("dot segment");
  if (raw.includes("\\")) out.push("backslash");
  if (/([^/.][. ]+|\/[. ]{3,})(\/|;|$)/.test(raw.replace(/%2e/gi, ".").replace(/%20/g, " "))) {
    out.push("trailing dot or space");
  }
  for (const m of new Set(raw.match(/%(2e|2f|5c|3b|25|23|3f|c0|c1|e0)/gi) ?? [])) {
    const up = m.toUpperCase();
    if (!out.includes(up)) out.push(up);
  }
  if (/%u[0-9a-f]{4}/i.test(raw)) out.push("%u escape");
  if (raw.includes("#")) out.push('"#"');
  return out;
}

/** One server behaviour: which transformations it applies, in the order below. */
interface Reading {
  /** Cut at a raw "#". */
  fragment: boolean;
  /** Drop `;params` from each segment before decoding (Tomcat, Jetty). */
  paramsRaw: boolean;
  /** 0 none, 1 unreserved only (RFC 3986), 2 all but %2F/%5C, 3 all once, 4 until nothing changes. */
  decode: 0 | 1 | 2 | 3 | 4;
  /**
   * Windows: "\" is a separator (also WHATWG URL) and a segment's trailing
   * dots and spaces are dropped (IIS, a Windows file system).
   */
  backslash: boolean;
  /** Drop `;params` after decoding (so `%3B` counts). */
  paramsDecoded: boolean;
  /** Merge runs of "/" (nginx merge_slashes, Python, Tomcat). */
  merge: boolean;
  /** Resolve "." and ".." segments (nearly everyone; not a prefix router on the raw string). */
  dots: boolean;
}

const CANONICAL: Reading = {
  fragment: true,
  paramsRaw: true,
  decode: 4,
  backslash: true,
  paramsDecoded: true,
  merge: true,
  dots: true,
};

/** The path as one reading sees it, decoded (not yet re-encoded). */
function readAs(raw: string, r: Reading, problem: { malformed: string | null }): string {
  let p = raw;
  if (r.fragment) p = cutFragment(p);
  if (r.paramsRaw) p = dropParams(p);
  p = decodeLevel(p, r.decode, problem);
  if (r.backslash) p = windows(p);
  if (r.paramsDecoded) p = dropParams(p);
  // Dropping parameters can leave a trailing dot ("a.;x" is "a."): Windows again.
  if (r.backslash) p = windows(p);
  if (r.merge) p = p.replace(/\/{2,}/g, "/");
  p = r.dots ? removeDots(p) : markDots(p);
  return p.startsWith("/") ? p : "/" + p;
}

/**
 * Every distinct reading, canonical first. The readings are built stage by
 * stage over sets, so equal intermediate results are computed once: a path
 * with one feature costs a handful of string passes, not one per behaviour.
 */
function readings(raw: string, canonical: string, problem: { malformed: string | null }): string[] {
  const on = (set: Set<string>, f: (s: string) => string, applies: boolean): Set<string> => {
    if (!applies) return set;
    const out = new Set(set);
    for (const s of set) out.add(f(s));
    return out;
  };
  let s = new Set([raw]);
  s = on(s, cutFragment, raw.includes("#"));
  s = on(s, dropParams, raw.includes(";"));
  const decoded = new Set<string>();
  const ignore = { malformed: null as string | null };
  for (const x of s) {
    for (const level of [0, 1, 2, 3, 4] as const) {
      decoded.add(decodeLevel(x, level, level === 4 ? problem : ignore));
    }
  }
  s = decoded;
  const win = (set: Set<string>) =>
    on(set, windows, [...set].some((x) => x.includes("\\") || /[. ](\/|$)/.test(x)));
  s = win(s);
  s = on(s, dropParams, [...s].some((x) => x.includes(";")));
  s = win(s);
  s = on(s, (x) => x.replace(/\/{2,}/g, "/"), [...s].some((x) => x.includes("//")));
  const out = new Set([canonical]);
  for (const x of s) {
    for (const y of [removeDots(x), markDots(x)]) {
      out.add(encodePath(y.startsWith("/") ? y : "/" + y));
    }
  }
  return [...out];
}

/** "\" as "/", and trailing dots and spaces of a segment dropped (not of "." and ".."). */
function windows(p: string): string {
  const q = p.replaceAll("\\", "/");
  if (!/[. ](\/|$)/.test(q)) return q;
  return q.split("/").map((seg) => dotKind(seg) === 0 ? seg.replace(/[. ]+$/, "") : seg).join("/");
}

function cutFragment(p: string): string {
  const i = p.indexOf("#");
  return i === -1 ? p : p.slice(0, i);
}

/** `/a;x=1/b;y` → `/a/b` (a segment that is only a parameter becomes empty). */
function dropParams(p: string): string {
  if (!p.includes(";")) return p;
  return p.split("/").map((seg) => {
    const i = seg.indexOf(";");
    return i === -1 ? seg : seg.slice(0, i);
  }).join("/");
}

/** Dot segments as servers recognise them: ".", "..", and with "%2e" for a dot. */
function dotKind(seg: string): 0 | 1 | 2 {
  if (seg === ".") return 1;
  if (seg === "..") return 2;
  if (seg.length < 3 || !/^(\.|%2e){1,2}$/i.test(seg)) return 0;
  return seg.replace(/%2e/gi, ".").length as 1 | 2;
}

/** RFC 3986 §5.2.4, with "%2e" counted as a dot (WHATWG). */
function removeDots(p: string): string {
  if (!p.includes(".") && !/%2e/i.test(p)) return p;
  const segs = p.split("/");
  const out: string[] = [];
  for (let i = 1; i < segs.length; i++) {
    const k = dotKind(segs[i]);
    const last = i === segs.length - 1;
    if (k === 0) out.push(segs[i]);
    else {
      if (k === 2 && out.length) out.pop();
      if (last) out.push("");
    }
  }
  return "/" + out.join("/");
}

/**
 * For a reading that does not resolve dot segments (a prefix router on the
 * raw string): the segments stay, spelled so a glob sees them as names
 * (`/admin/../x` stays under `/admin/**`).
 */
function markDots(p: string): string {
  if (!p.includes(".") && !/%2e/i.test(p)) return p;
  return p.split("/").map((seg) => {
    const k = dotKind(seg);
    return k === 0 ? seg : k === 1 ? "%2E" : "%2E%2E";
  }).join("/");
}

/** Decode at a level (see {@link Reading.decode}); level 4 repeats until nothing changes. */
function decodeLevel(p: string, level: number, problem: { malformed: string | null }): string {
  if (level === 0 || !p.includes("%")) return p;
  if (level === 1) {
    return p.replace(/%([0-9a-fA-F]{2})/g, (all, hex: string) => {
      const c = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(c) ? c : all.toUpperCase();
    });
  }
  if (level === 2) return percentDecode(p, true, problem);
  if (level === 3) return percentDecode(p, false, problem);
  let cur = p;
  for (let i = 0; i < MAX_DECODE_ROUNDS; i++) {
    const next = percentDecode(cur, false, problem);
    if (next === cur) return cur;
    cur = next;
  }
  if (percentDecode(cur, false, { malformed: null }) !== cur) {
    problem.malformed ??= `percent-encoded more than ${MAX_DECODE_ROUNDS} times over`;
  }
  return cur;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();
/** A path already in canonical encoding: pchar and "/", escapes upper-case. */
const ENCODED = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*$/;

/**
 * Decode `%XX` runs as UTF-8 (and IIS's `%uXXXX`). Overlong encodings of
 * ASCII (`%C0%AF` for "/") decode to the character old servers saw; other
 * invalid UTF-8 stays escaped and, like a decoded control character, makes
 * the path malformed.
 */
function percentDecode(
  p: string,
  keepSlashes: boolean,
  problem: { malformed: string | null },
): string {
  let out = "";
  let i = 0;
  while (i < p.length) {
    const c = p[i];
    if (c !== "%") {
      out += c;
      i++;
      continue;
    }
    const u = /^%u([0-9a-fA-F]{4})/.exec(p.slice(i, i + 6));
    if (u) {
      out += checkChar(String.fromCharCode(parseInt(u[1], 16)), problem);
      i += 6;
      continue;
    }
    const bytes: number[] = [];
    let j = i;
    while (j + 2 < p.length && p[j] === "%" && isHex(p[j + 1]) && isHex(p[j + 2])) {
      bytes.push(parseInt(p.slice(j + 1, j + 3), 16));
      j += 3;
    }
    if (bytes.length === 0) {
      out += "%";
      i++;
      continue;
    }
    out += decodeBytes(bytes, keepSlashes, problem);
    i = j;
  }
  return out;
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && /[0-9a-fA-F]/.test(c);
}

function escape(b: number): string {
  return "%" + HEX[b >> 4] + HEX[b & 15];
}

function checkChar(ch: string, problem: { malformed: string | null }): string {
  const code = ch.charCodeAt(0);
  if (code < 0x20 || code === 0x7f) {
    problem.malformed ??= `encoded control character ${escape(code)}`;
  }
  return ch;
}

function decodeBytes(
  bytes: number[],
  keepSlashes: boolean,
  problem: { malformed: string | null },
): string {
  let out = "";
  let k = 0;
  while (k < bytes.length) {
    const b = bytes[k];
    if (b < 0x80) {
      out += keepSlashes && (b === 0x2f || b === 0x5c)
        ? escape(b)
        : checkChar(String.fromCharCode(b), problem);
      k++;
      continue;
    }
    // Overlong two-byte ASCII (C0/C1 lead): what servers that did not check saw.
    if ((b === 0xc0 || b === 0xc1) && k + 1 < bytes.length && (bytes[k + 1] & 0xc0) === 0x80) {
      const ch = ((b & 0x1f) << 6) | (bytes[k + 1] & 0x3f);
      out += keepSlashes && (ch === 0x2f || ch === 0x5c)
        ? escape(b) + escape(bytes[k + 1])
        : checkChar(String.fromCharCode(ch), problem);
      k += 2;
      continue;
    }
    const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    const seq = bytes.slice(k, k + len);
    let ch: string | null = null;
    if (seq.length === len && len > 1) {
      try {
        ch = utf8.decode(new Uint8Array(seq));
      } catch {
        ch = null;
      }
    }
    if (ch === null) {
      problem.malformed ??= `invalid UTF-8 ${escape(b)}`;
      out += escape(b);
      k++;
    } else {
      out += ch;
      k += len;
    }
  }
  return out;
}

/**
 * The one spelling of a decoded path: every character outside RFC 3986's
 * pchar is percent-encoded as UTF-8, upper-case; an escape already present
 * is kept (upper-cased). The canonical path never contains ";" (parameters
 * are dropped) nor a decodable escape (decoding ran until nothing changed).
 *
 * @example
 * encodePath("/a b/é") // "/a%20b/%C3%A9"
 */
export function encodePath(p: string): string {
  if (ENCODED.test(p)) return p;
  let out = "";
  for (let i = 0; i < p.length; i++) {
    const code = p.charCodeAt(i);
    if (code < 128 && KEEP[code]) {
      out += p[i];
    } else if (code === 0x25 && isHex(p[i + 1]) && isHex(p[i + 2])) {
      out += "%" + p.slice(i + 1, i + 3).toUpperCase();
      i += 2;
    } else {
      const cp = p.codePointAt(i)!;
      if (cp > 0xffff) i++;
      if (cp < 0x80) out += escape(cp);
      else for (const b of utf8Encoder.encode(String.fromCodePoint(cp))) out += escape(b);
    }
  }
  return out;
}
