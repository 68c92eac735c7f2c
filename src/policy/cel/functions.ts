/**
 * The functions agentgate adds to CEL, and the environment they live in:
 *
 * - `glob(string, pattern) -> bool`: picomatch semantics with `dot: true`
 *   (`*` stops at `/`, `**` crosses `/`, and dot-files are matched, so
 *   `glob(request.path, "/admin/**")` also covers `/admin/.env`).
 * - `cidr(ip, range) -> bool`: IPv4 and IPv6; an IPv4-mapped IPv6 address
 *   (`::ffff:10.1.2.3`) is in `10.0.0.0/8`; a range without `/n` is one address.
 * - `string.matches(re)`: RE2 (linear time, so an agent-chosen path cannot stall
 *   the proxy), with compiled patterns cached.
 * - the timestamp getters (`now.getHours("Europe/Berlin")`, …), replaced to
 *   avoid the machine's local time.
 *
 * @example
 * ```ts
 * globMatch("/admin/.env", "/admin/**"); // true
 * cidrMatch("::ffff:10.1.2.3", "10.0.0.0/8"); // true
 * ```
 *
 * @module
 */

import {
  type CelEnv,
  celEnv,
  type CelFunc,
  celFunc,
  celMethod,
  CelScalar,
  objectType,
} from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { RE2JS } from "re2js";
import picomatch from "picomatch";
import { canonicalTimeZone, type WallClock, wallClock } from "../../util/tz.ts";
import { type CompileOptions, errorText } from "./types.ts";
import { parseIp } from "../address.ts";

/** Bounded memo: patterns in policies are few; agent-chosen ones must not grow memory. */
class BoundedCache<V> {
  #map = new Map<string, V>();
  constructor(readonly max: number) {}
  get(key: string, make: (key: string) => V): V {
    let v = this.#map.get(key);
    if (v === undefined) {
      v = make(key);
      if (this.#map.size >= this.max) {
        // Oldest insertion goes first: cheap, and good enough for a tiny hot set.
        this.#map.delete(this.#map.keys().next().value as string);
      }
      this.#map.set(key, v);
    }
    return v;
  }
}

const regexCache = new BoundedCache<RE2JS>(512);
const globCache = new BoundedCache<(s: string) => boolean>(512);
const cidrCache = new BoundedCache<Cidr>(512);

let regexCompiles = 0;

/** @internal How many times an RE2 pattern was compiled (tests prove the cache with it). */
export function regexCompileCount(): number {
  return regexCompiles;
}

function compileRegex(pattern: string): RE2JS {
  regexCompiles++;
  try {
    return RE2JS.compile(pattern);
  } catch (e) {
    throw new Error(`Invalid regular expression "${pattern}": ${errorText(e)}`);
  }
}

/** The RE2 engine handed to `celEnv`: bufbuild's own recompiles the pattern per call. */
const cachedRe2 = {
  compile(pattern: string) {
    return regexCache.get(pattern, compileRegex);
  },
};
const uncachedRe2 = { compile: compileRegex };

function compileGlob(pattern: string): (s: string) => boolean {
  return picomatch(pattern, { dot: true });
}

/**
 * `glob(value, pattern)`: picomatch semantics with `dot: true`.
 *
 * @example
 * ```ts
 * globMatch("/v1/chat/completions", "/v1/**"); // true
 * ```
 */
export function globMatch(value: string, pattern: string): boolean {
  return globCache.get(pattern, compileGlob)(value);
}

interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

export { parseIp };

/** `::ffff:a.b.c.d` → the IPv4 bytes, so mapped addresses match IPv4 ranges. */
function unmapV4(b: Uint8Array): Uint8Array {
  if (b.length !== 16) return b;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return b;
  if (b[10] !== 0xff || b[11] !== 0xff) return b;
  return b.subarray(12);
}

function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  const addr = parseIp(slash >= 0 ? text.slice(0, slash) : text);
  if (addr === null) {
    throw new Error(`Invalid CIDR "${text}": expected e.g. "10.0.0.0/8" or "fd00::/8"`);
  }
  const max = addr.length * 8;
  let bits = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      throw new Error(`Invalid CIDR "${text}": the prefix length must be 0-${max}`);
    }
    bits = Number(p);
  }
  return { bytes: addr, bits };
}

/**
 * `cidr(ip, range)`: whether an IPv4/IPv6 address lies in a CIDR range.
 *
 * @example
 * ```ts
 * cidrMatch("10.1.2.3", "10.0.0.0/8"); // true
 * cidrMatch("::ffff:10.1.2.3", "10.0.0.0/8"); // true
 * ```
 * @throws {Error} when `ip` or `range` cannot be parsed.
 */
export function cidrMatch(ip: string, range: string): boolean {
  const net = cidrCache.get(range, parseCidr);
  const raw = parseIp(ip);
  if (raw === null) throw new Error(`Invalid IP address "${ip}"`);
  let addr = raw;
  let netBytes = net.bytes;
  let bits = net.bits;
  if (addr.length !== netBytes.length) {
    // Compare mapped IPv6 with IPv4 in IPv4 terms (either side may be mapped).
    addr = unmapV4(addr);
    if (netBytes.length === 16 && unmapV4(netBytes).length === 4 && bits >= 96) {
      netBytes = unmapV4(netBytes);
      bits -= 96;
    }
    if (addr.length !== netBytes.length) return false;
  }
  let i = 0;
  for (; bits >= 8; bits -= 8, i++) if (addr[i] !== netBytes[i]) return false;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (addr[i] & mask) === (netBytes[i] & mask);
}

const { BOOL, STRING, INT } = CelScalar;
const TIMESTAMP = objectType("google.protobuf.Timestamp");

/** The wall clock of a CEL timestamp in a zone: UTC, `±HH:MM`, or an IANA name. */
function timestampWall(
  ts: { message: { seconds: bigint; nanos: number } },
  tz?: string,
): WallClock {
  const ms = Number(ts.message.seconds) * 1000 + Math.floor(ts.message.nanos / 1e6);
  if (tz === undefined) return wallClock(ms, "UTC");
  const fixed = /^([+-]?)(\d\d):(\d\d)$/.exec(tz);
  if (fixed !== null) {
    const offset = (Number(fixed[2]) * 60 + Number(fixed[3])) * 60_000 *
      (fixed[1] === "-" ? -1 : 1);
    const wall = wallClock(ms + offset, "UTC");
    return wall;
  }
  const zone = canonicalTimeZone(tz);
  if (zone === null) {
    throw new Error(
      `Unknown time zone "${tz}": use an IANA name such as "Europe/Berlin", "UTC" or "+01:00"`,
    );
  }
  return wallClock(ms, zone);
}

const DAY_MS = 86_400_000;

/**
 * Replaces bufbuild's timestamp accessors (`now.getHours("Europe/Berlin")`, …):
 * those build a local `Date` from the zone's fields, which shifts the result
 * by an hour when the wall time falls into the *machine's* DST gap, and they
 * create an `Intl.DateTimeFormat` on every call (~30 µs). Same semantics
 * (CEL spec), cached formatter, no local time.
 */
const timestampFuncs: CelFunc[] = (
  [
    ["getFullYear", (w) => w.year],
    ["getMonth", (w) => w.month - 1],
    ["getDate", (w) => w.day],
    ["getDayOfMonth", (w) => w.day - 1],
    ["getDayOfWeek", (w) => w.weekday],
    [
      "getDayOfYear",
      (w) => (Date.UTC(w.year, w.month - 1, w.day) - Date.UTC(w.year, 0, 1)) / DAY_MS,
    ],
    ["getHours", (w) => w.hour],
    ["getMinutes", (w) => w.minute],
    ["getSeconds", (w) => w.second],
    ["getMilliseconds", (w) => w.millisecond],
  ] as Array<[string, (w: WallClock) => number]>
).flatMap(([name, field]) => [
  celMethod(name, TIMESTAMP, [], INT, function () {
    return BigInt(field(timestampWall(this as never)));
  }),
  celMethod(name, TIMESTAMP, [STRING], INT, function (tz: string) {
    return BigInt(field(timestampWall(this as never, tz)));
  }),
]);

/** Names of the timestamp methods whose optional argument is a time zone. */
export const TIMESTAMP_GETTERS: ReadonlySet<string> = new Set(timestampFuncs.map((f) => f.name));

const customFuncs: CelFunc[] = [
  celFunc("glob", [STRING, STRING], BOOL, globMatch),
  celFunc("cidr", [STRING, STRING], BOOL, cidrMatch),
  ...timestampFuncs,
];

const cachedEnv = celEnv({ funcs: [...strings, ...customFuncs], re2: cachedRe2 });
const uncachedEnv = celEnv({ funcs: [...strings, ...customFuncs], re2: uncachedRe2 });

/**
 * The environment expressions are planned in: the standard library, the
 * `strings` extension and the functions above.
 *
 * @example
 * ```ts
 * const program = plan(celEnvironment(), parse('glob(request.path, "/v1/**")').expr);
 * ```
 */
export function celEnvironment(options: CompileOptions = {}): CelEnv {
  return options.cacheRegex === false ? uncachedEnv : cachedEnv;
}

/**
 * Checks of literal arguments at load, so a bad pattern, range or zone fails
 * there and not at the first request. Each throws an `Error` with the message
 * the call itself would fail with.
 *
 * @example
 * ```ts
 * checkLiteral.cidr("10.0.0.0/33"); // throws 'Invalid CIDR "10.0.0.0/33": the prefix length must be 0-32'
 * ```
 */
export const checkLiteral = {
  /** A `matches` pattern (RE2 syntax). */
  regex(pattern: string): void {
    compileRegex(pattern);
  },
  /** The range of `cidr(ip, range)`. */
  cidr(range: string): void {
    cidrCache.get(range, parseCidr);
  },
  /** The address of `cidr(ip, range)`. */
  ip(text: string): void {
    if (parseIp(text) === null) throw new Error(`Invalid IP address "${text}"`);
  },
  /** The pattern of `glob(value, pattern)`. */
  glob(pattern: string): void {
    globCache.get(pattern, compileGlob);
  },
  /** The zone argument of a timestamp getter (`now.getHours("Europe/Berlin")`). */
  timeZone(tz: string): void {
    timestampWall({ message: { seconds: 0n, nanos: 0 } }, tz);
  },
};
