/**
 * CEL conditions (`when:`) and CEL rate-limit keys, on top of `@bufbuild/cel`.
 *
 * Everything that can be checked without a request is checked at load by
 * {@link compileCondition}: syntax, unknown variables and fields
 * (`requst.host`, `request.hots`), unknown functions, calls that no overload
 * accepts for the argument types known at load (`request.port.startsWith("4")`),
 * comparisons of two different known types (`request.port == "443"`), and
 * constant regular expressions, CIDRs and globs. `@bufbuild/cel` has a type
 * checker but does not export it, so this module walks the parsed expression
 * itself.
 *
 * Environment:
 *
 * | name      | type                  | notes                                                       |
 * |-----------|-----------------------|-------------------------------------------------------------|
 * | `request` | record                | `method`, `scheme`, `host`, `port` (int), `path`, `query`, `headers` |
 * | `request.query`   | map(string, string) | decoded; the first value wins when a key repeats      |
 * | `request.headers` | map(string, string) | lower-case names                                      |
 * | `body`    | dyn                   | parsed JSON body; JSON numbers are CEL doubles              |
 * | `session` | record                | `id`, `label`; both `null` when the request has no session  |
 * | `now`     | timestamp             | decision time                                               |
 * | `client`  | string                | client IP address                                           |
 *
 * Functions: the CEL standard library, the `strings` extension (`lowerAscii`,
 * `split`, `replace`, `trim`, `indexOf`, …), and:
 *
 * - `glob(string, pattern) -> bool`: picomatch semantics with `dot: true`
 *   (`*` stops at `/`, `**` crosses `/`, and dot-files are matched, so
 *   `glob(request.path, "/admin/**")` also covers `/admin/.env`).
 * - `cidr(ip, range) -> bool`: IPv4 and IPv6; an IPv4-mapped IPv6 address
 *   (`::ffff:10.1.2.3`) is in `10.0.0.0/8`; a range without `/n` is one address.
 * - `string.matches(re)`: RE2 (linear time, so an agent-chosen path cannot stall
 *   the proxy), with compiled patterns cached.
 *
 * @example
 * ```ts
 * const cond = compileCondition('request.headers["x-team"] == "ml" && body.model.startsWith("gpt-4o")');
 * cond.needsBody; // true
 * cond.evaluate({ ...info, body: { model: "gpt-4o-mini" }, now: new Date() }); // true
 * ```
 *
 * @module
 */

import {
  type CelEnv,
  celEnv,
  celError,
  type CelFunc,
  celFunc,
  celMethod,
  CelScalar,
  type CelType,
  celType,
  type CelValue,
  isCelError,
  objectType,
  parse,
  plan,
} from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { RE2JS } from "re2js";
import picomatch from "picomatch";
import type { RequestInfo } from "./types.ts";
import { validateTimeZone, type WallClock, wallClock } from "./limits/time_window.ts";
import { didYouMean } from "../util/suggest.ts";

/** A variable (or request field) that an expression reads. */
export type CelRead =
  | "request.method"
  | "request.scheme"
  | "request.host"
  | "request.port"
  | "request.path"
  | "request.query"
  | "request.headers"
  | "body"
  | "session"
  | "now"
  | "client";

/** What an expression is evaluated against: the request plus the decision time. */
export type CelInput = RequestInfo & { now: Date };

/** A condition compiled and checked at load; `evaluate` is the hot path. */
export interface CompiledCondition {
  /** The source text. */
  readonly expr: string;
  /** Variables and request fields the expression reads (known at load). */
  readonly reads: ReadonlySet<CelRead>;
  /** True when the expression reads `body`, so the proxy must buffer it. */
  readonly needsBody: boolean;
  /**
   * Evaluates the condition.
   * @throws {CelEvalError} on any runtime error (missing key, wrong type, a
   * result that is not a bool, `body` read but not available): never a guess.
   */
  evaluate(input: CelInput): boolean;
}

/** A rate-limit (or spending-limit) key written as CEL; it evaluates to a string. */
export interface CompiledKeyExpression {
  readonly expr: string;
  readonly reads: ReadonlySet<CelRead>;
  readonly needsBody: boolean;
  /** @throws {CelEvalError} on a runtime error or a result that is not a string. */
  evaluate(input: CelInput): string;
}

/** Options for {@link compileCondition}; the defaults are what production uses. */
export interface CompileOptions {
  /**
   * Cache compiled regular expressions across `matches` calls (default true).
   * Only benchmarks turn it off, to measure what the cache saves.
   */
  cacheRegex?: boolean;
}

/**
 * A load error in an expression: syntax, unknown name or function, type error.
 * `offset` is the 0-based UTF-16 offset into the expression, so the config
 * loader can add it to the YAML node's position to report `file:line:col`.
 */
export class CelError extends Error {
  override name = "CelError";
  constructor(message: string, readonly offset: number) {
    super(message);
  }
}

/**
 * A runtime error while evaluating an expression. The engine turns it into a
 * deny with reason `condition error in rule "X": <message>` (or skips the rule
 * with `on_error: skip`).
 */
export class CelEvalError extends Error {
  override name = "CelEvalError";
  constructor(message: string, readonly offset: number) {
    super(message);
  }
}

// ---------------------------------------------------------------------------
// Custom functions

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

/** Parses an IPv4 or IPv6 address into 4 or 16 bytes; null when it is neither. */
export function parseIp(text: string): Uint8Array | null {
  let s = text;
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (s.includes(":")) return parseIPv6(s);
  return parseIPv4(s);
}

function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseIPv6(s: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === "") return [];
    const result: number[] = [];
    const items = h.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4(item);
        if (v4 === null) return null;
        result.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return null;
        result.push(parseInt(item, 16));
      }
    }
    return result;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const all = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i] >> 8;
    out[2 * i + 1] = all[i] & 0xff;
  }
  return out;
}

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
  try {
    return wallClock(ms, validateTimeZone(tz));
  } catch {
    throw new Error(
      `Unknown time zone "${tz}": use an IANA name such as "Europe/Berlin", "UTC" or "+01:00"`,
    );
  }
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

const TIMESTAMP_GETTERS = new Set(timestampFuncs.map((f) => f.name));

const customFuncs: CelFunc[] = [
  celFunc("glob", [STRING, STRING], BOOL, globMatch),
  celFunc("cidr", [STRING, STRING], BOOL, cidrMatch),
  ...timestampFuncs,
];

const cachedEnv = celEnv({ funcs: [...strings, ...customFuncs], re2: cachedRe2 });
const uncachedEnv = celEnv({ funcs: [...strings, ...customFuncs], re2: uncachedRe2 });

// ---------------------------------------------------------------------------
// Load-time checker: names, fields, functions, obvious type errors

type Expr = ReturnType<typeof parse>["expr"];

/** Static types as far as the checker knows them; `dyn` accepts anything. */
type Ty =
  | { k: "dyn" }
  | { k: "prim"; name: string }
  | { k: "list"; elem: Ty }
  | { k: "map"; key: Ty; val: Ty }
  | { k: "rec"; name: string; fields: Record<string, Ty> };

const T_DYN: Ty = { k: "dyn" };
const prim = (name: string): Ty => ({ k: "prim", name });
const T_BOOL = prim("bool");
const T_STRING = prim("string");
const T_INT = prim("int");
const T_UINT = prim("uint");
const T_DOUBLE = prim("double");
const T_BYTES = prim("bytes");
const T_NULL = prim("null_type");
const T_TYPE = prim("type");
const T_TIMESTAMP = prim("google.protobuf.Timestamp");

const REQUEST_FIELDS: Record<string, Ty> = {
  method: T_STRING,
  scheme: T_STRING,
  host: T_STRING,
  port: T_INT,
  path: T_STRING,
  query: { k: "map", key: T_STRING, val: T_STRING },
  headers: { k: "map", key: T_STRING, val: T_STRING },
};

const VARIABLES: Record<string, Ty> = {
  request: { k: "rec", name: "request", fields: REQUEST_FIELDS },
  body: T_DYN,
  session: { k: "rec", name: "session", fields: { id: T_STRING, label: T_STRING } },
  now: T_TIMESTAMP,
  client: T_STRING,
};

/** Type names usable as values (`type(x) == string`). */
const TYPE_IDENTS = new Set([
  "int",
  "uint",
  "double",
  "bool",
  "string",
  "bytes",
  "list",
  "map",
  "null_type",
  "type",
  "dyn",
]);

const ALL_REQUEST_READS: CelRead[] = Object.keys(REQUEST_FIELDS).map((f) =>
  `request.${f}` as CelRead
);

function fromCelType(t: CelType): Ty {
  switch (t.kind) {
    case "scalar":
      return t.name === "dyn" ? T_DYN : prim(t.name);
    case "list":
      return { k: "list", elem: fromCelType(t.element) };
    case "map":
      return { k: "map", key: fromCelType(t.key), val: fromCelType(t.value) };
    default:
      return prim(t.name);
  }
}

function tyName(t: Ty): string {
  switch (t.k) {
    case "dyn":
      return "dyn";
    case "prim":
      // Users write timestamp(…) and duration(…), not the protobuf names.
      if (t.name === "google.protobuf.Timestamp") return "timestamp";
      if (t.name === "google.protobuf.Duration") return "duration";
      return t.name;
    case "list":
      return `list(${tyName(t.elem)})`;
    case "map":
      return `map(${tyName(t.key)}, ${tyName(t.val)})`;
    case "rec":
      return t.name === "request" ? "map(string, dyn)" : "map(string, string)";
  }
}

/** Records are maps at run time, so they match map parameters. */
function asMap(t: Ty): Ty {
  return t.k === "rec" ? { k: "map", key: T_STRING, val: T_DYN } : t;
}

function sameTy(a: Ty, b: Ty): boolean {
  return tyName(a) === tyName(b);
}

/** Whether a value of static type `arg` may be passed where `param` is declared. */
function assignable(arg: Ty, param: Ty): boolean {
  const a = asMap(arg);
  if (param.k === "dyn" || a.k === "dyn") return true;
  if (param.k === "prim") return a.k === "prim" && a.name === param.name;
  if (param.k === "list") return a.k === "list" && assignable(a.elem, param.elem);
  if (param.k === "map") {
    return a.k === "map" && assignable(a.key, param.key) && assignable(a.val, param.val);
  }
  return false;
}

const NUMERIC = new Set(["int", "uint", "double"]);

/** CEL's `==` accepts any pair at run time; a mismatch of known types is a bug, though. */
function comparable(a0: Ty, b0: Ty): boolean {
  const a = asMap(a0);
  const b = asMap(b0);
  if (a.k === "dyn" || b.k === "dyn") return true;
  if (a.k === "prim" && b.k === "prim") {
    if (a.name === b.name || a.name === "null_type" || b.name === "null_type") return true;
    return NUMERIC.has(a.name) && NUMERIC.has(b.name);
  }
  if (a.k === "prim" && a.name === "null_type") return true;
  if (b.k === "prim" && b.name === "null_type") return true;
  return a.k === b.k;
}

interface Overload {
  target: Ty | undefined;
  args: Ty[];
  result: Ty;
}

function overloadTable(env: CelEnv): Map<string, Overload[]> {
  const table = new Map<string, Overload[]>();
  for (const f of env.funcs) {
    let list = table.get(f.name);
    if (list === undefined) table.set(f.name, list = []);
    list.push({
      target: f.target === undefined ? undefined : fromCelType(f.target),
      args: f.arguments.map(fromCelType),
      result: fromCelType(f.result),
    });
  }
  return table;
}

const OVERLOADS = overloadTable(cachedEnv);

/** Operator function names → how users write them, for messages. */
const OPERATOR_TEXT: Record<string, string> = {
  "_+_": "+",
  "_-_": "-",
  "_*_": "*",
  "_/_": "/",
  "_%_": "%",
  "-_": "-",
  "!_": "!",
  "_<_": "<",
  "_<=_": "<=",
  "_>_": ">",
  "_>=_": ">=",
  "_==_": "==",
  "_!=_": "!=",
  "@in": "in",
  "_&&_": "&&",
  "_||_": "||",
};

/** CEL's own limit: a third of the name with no cap, so a long field name still gets a hint. */
const CEL_MAX_DISTANCE = (name: string) => Math.max(1, Math.floor(name.length / 3));

/** Walks a parsed expression: infers types, collects reads, throws {@link CelError}. */
class Checker {
  readonly reads = new Set<CelRead>();
  /** Expression ids of `body` identifiers: where a "body not available" error points. */
  readonly bodyIds: bigint[] = [];
  #scopes: Map<string, Ty>[] = [];

  constructor(
    readonly source: string,
    readonly positions: Record<string, number>,
  ) {}

  offsetOf(id: bigint): number {
    return this.positions[id.toString()] ?? 0;
  }

  /** Offset of `name` at or after the node's position (a select's position is its dot). */
  offsetOfName(id: bigint, name: string): number {
    const at = this.offsetOf(id);
    const found = this.source.indexOf(name, at);
    return found >= 0 ? found : at;
  }

  /** Where the text of `e` begins (a select's own position is its dot, a call's its name). */
  startOf(e: Expr): number {
    const kind = e.exprKind;
    if (kind.case === "selectExpr" && kind.value.operand !== undefined) {
      return this.startOf(kind.value.operand);
    }
    if (kind.case === "callExpr") {
      const { target, args, function: fn } = kind.value;
      if (target !== undefined) return this.startOf(target);
      const first = args[0];
      // Infix operators and indexing start with their left operand.
      if (first !== undefined && /^_.*_$/.test(fn)) {
        return Math.min(this.startOf(first), this.offsetOf(e.id));
      }
    }
    if (kind.case === "comprehensionExpr" && kind.value.iterRange !== undefined) {
      return this.startOf(kind.value.iterRange);
    }
    return this.offsetOf(e.id);
  }

  fail(message: string, offset: number): never {
    throw new CelError(message, offset);
  }

  lookupLocal(name: string): Ty | undefined {
    for (let i = this.#scopes.length - 1; i >= 0; i--) {
      const t = this.#scopes[i].get(name);
      if (t !== undefined) return t;
    }
    return undefined;
  }

  /** The request field named by `request.f` or `request["f"]`, if `e` is one. */
  requestField(operand: Expr | undefined): boolean {
    return operand?.exprKind.case === "identExpr" &&
      operand.exprKind.value.name === "request" &&
      this.lookupLocal("request") === undefined;
  }

  check(e: Expr): Ty {
    const kind = e.exprKind;
    switch (kind.case) {
      case "constExpr":
        switch (kind.value.constantKind.case) {
          case "boolValue":
            return T_BOOL;
          case "int64Value":
            return T_INT;
          case "uint64Value":
            return T_UINT;
          case "doubleValue":
            return T_DOUBLE;
          case "stringValue":
            return T_STRING;
          case "bytesValue":
            return T_BYTES;
          case "nullValue":
            return T_NULL;
          default:
            return T_DYN;
        }
      case "identExpr":
        return this.ident(e.id, kind.value.name);
      case "selectExpr": {
        const { operand, field, testOnly } = kind.value;
        if (operand === undefined) return this.fail("Invalid field selection", this.offsetOf(e.id));
        const t = this.select(e.id, operand, field);
        return testOnly ? T_BOOL : t;
      }
      case "callExpr":
        return this.call(e);
      case "listExpr": {
        const elems = kind.value.elements.map((x) => this.check(x));
        const first = elems[0];
        const uniform = first !== undefined && elems.every((t) => sameTy(t, first));
        return { k: "list", elem: uniform ? first : T_DYN };
      }
      case "structExpr": {
        for (const entry of kind.value.entries) {
          if (entry.keyKind.case === "mapKey") this.check(entry.keyKind.value);
          if (entry.value !== undefined) this.check(entry.value);
        }
        return kind.value.messageName === ""
          ? { k: "map", key: T_DYN, val: T_DYN }
          : prim(kind.value.messageName);
      }
      case "comprehensionExpr": {
        const c = kind.value;
        if (
          c.iterRange === undefined || c.accuInit === undefined ||
          c.loopCondition === undefined || c.loopStep === undefined || c.result === undefined
        ) {
          return this.fail("Invalid comprehension", this.offsetOf(e.id));
        }
        const range = asMap(this.check(c.iterRange));
        let iter: Ty;
        let iter2: Ty = T_DYN;
        if (range.k === "list") {
          iter = c.iterVar2 ? T_INT : range.elem;
          iter2 = range.elem;
        } else if (range.k === "map") {
          iter = range.key;
          iter2 = range.val;
        } else if (range.k === "dyn") {
          iter = T_DYN;
        } else {
          return this.fail(
            `Cannot iterate over a "${tyName(range)}"`,
            this.offsetOf(c.iterRange.id),
          );
        }
        const accu = this.check(c.accuInit);
        const scope = new Map<string, Ty>([[c.accuVar, accu]]);
        scope.set(c.iterVar, iter);
        if (c.iterVar2) scope.set(c.iterVar2, iter2);
        this.#scopes.push(scope);
        try {
          this.check(c.loopCondition);
          this.check(c.loopStep);
          const result = this.check(c.result);
          return result;
        } finally {
          this.#scopes.pop();
        }
      }
      default:
        return this.fail("Unsupported expression", this.offsetOf(e.id));
    }
  }

  ident(id: bigint, name: string): Ty {
    const local = this.lookupLocal(name);
    if (local !== undefined) return local;
    const v = VARIABLES[name];
    if (v !== undefined) {
      if (name === "request") { for (const r of ALL_REQUEST_READS) this.reads.add(r); }
      else this.reads.add(name as CelRead);
      if (name === "body") this.bodyIds.push(id);
      return v;
    }
    if (TYPE_IDENTS.has(name)) return T_TYPE;
    const names = [...Object.keys(VARIABLES), ...this.#scopes.flatMap((s) => [...s.keys()])]
      .filter((n) => !n.startsWith("@") && !n.startsWith("__"));
    return this.fail(
      `Unknown name "${name}"${
        didYouMean(name, names, CEL_MAX_DISTANCE)
      }: the variables are request, body, session, now and client`,
      this.offsetOf(id),
    );
  }

  select(id: bigint, operand: Expr, field: string): Ty {
    if (this.requestField(operand)) {
      const t = REQUEST_FIELDS[field];
      if (t === undefined) {
        return this.fail(
          `Unknown field "${field}" of "request"${
            didYouMean(field, Object.keys(REQUEST_FIELDS), CEL_MAX_DISTANCE)
          }: the fields are ${Object.keys(REQUEST_FIELDS).join(", ")}`,
          this.offsetOfName(id, field),
        );
      }
      this.reads.add(`request.${field}` as CelRead);
      return t;
    }
    const base = this.check(operand);
    return this.member(base, field, this.offsetOfName(id, field));
  }

  member(base: Ty, field: string, offset: number): Ty {
    switch (base.k) {
      case "dyn":
        return T_DYN;
      case "rec": {
        const t = base.fields[field];
        if (t === undefined) {
          return this.fail(
            `Unknown field "${field}" of "${base.name}"${
              didYouMean(field, Object.keys(base.fields), CEL_MAX_DISTANCE)
            }: the fields are ${Object.keys(base.fields).join(", ")}`,
            offset,
          );
        }
        return t;
      }
      case "map":
        return base.val;
      default:
        return this.fail(`Cannot select field "${field}" of a "${tyName(base)}"`, offset);
    }
  }

  call(e: Expr): Ty {
    if (e.exprKind.case !== "callExpr") return T_DYN;
    const { function: fn, target, args } = e.exprKind.value;
    const at = this.offsetOf(e.id);

    // Namespaced functions such as strings.quote(x).
    if (target !== undefined) {
      const qual = qualifiedName(target);
      if (
        qual !== undefined && OVERLOADS.has(`${qual}.${fn}`) &&
        this.lookupLocal(qual.split(".")[0]) === undefined && !(qual.split(".")[0] in VARIABLES)
      ) {
        return this.overloaded(`${qual}.${fn}`, undefined, args.map((a) => this.check(a)), at);
      }
    }

    switch (fn) {
      case "_&&_":
      case "_||_":
      case "!_": {
        for (const a of args) {
          const t = this.check(a);
          if (!assignable(t, T_BOOL)) {
            this.fail(
              `Operator "${OPERATOR_TEXT[fn]}" needs bool operands, got "${tyName(t)}"`,
              this.startOf(a),
            );
          }
        }
        return T_BOOL;
      }
      case "@not_strictly_false":
        for (const a of args) this.check(a);
        return T_BOOL;
      case "_?_:_": {
        const [c, t, f] = args.map((a) => this.check(a));
        if (c !== undefined && !assignable(c, T_BOOL)) {
          this.fail(`The condition of "?:" must be a bool, got "${tyName(c)}"`, at);
        }
        return t !== undefined && f !== undefined && sameTy(t, f) ? t : T_DYN;
      }
      case "_[_]":
      case "_[?_]":
        return this.index(e, args);
      case "_==_":
      case "_!=_": {
        const [l, r] = args.map((a) => this.check(a));
        if (l !== undefined && r !== undefined && !comparable(l, r)) {
          this.fail(
            `Cannot compare "${tyName(l)}" with "${tyName(r)}" using "${
              OPERATOR_TEXT[fn]
            }": the result would always be ${fn === "_==_" ? "false" : "true"}`,
            at,
          );
        }
        return T_BOOL;
      }
    }

    const targetTy = target === undefined ? undefined : this.check(target);
    const argTys = args.map((a) => this.check(a));
    this.checkConstantArgs(fn, target, args);
    return this.overloaded(
      fn,
      targetTy,
      argTys,
      target === undefined ? at : this.offsetOfName(e.id, fn),
    );
  }

  /** Patterns and ranges written as literals are validated now, not at the first request. */
  checkConstantArgs(fn: string, target: Expr | undefined, args: Expr[]): void {
    const literal = (x: Expr | undefined) =>
      x?.exprKind.case === "constExpr" && x.exprKind.value.constantKind.case === "stringValue"
        ? x.exprKind.value.constantKind.value
        : undefined;
    try {
      if (fn === "matches") {
        const p = literal(target === undefined ? args[1] : args[0]);
        if (p !== undefined) compileRegex(p);
      } else if (fn === "cidr" && target === undefined) {
        const r = literal(args[1]);
        if (r !== undefined) cidrCache.get(r, parseCidr);
        const ip = literal(args[0]);
        if (ip !== undefined && parseIp(ip) === null) throw new Error(`Invalid IP address "${ip}"`);
      } else if (fn === "glob" && target === undefined) {
        const p = literal(args[1]);
        if (p !== undefined) globCache.get(p, compileGlob);
      } else if (TIMESTAMP_GETTERS.has(fn) && target !== undefined) {
        const tz = literal(args[0]);
        if (tz !== undefined) timestampWall({ message: { seconds: 0n, nanos: 0 } }, tz);
      }
    } catch (err) {
      const culprit = fn === "matches" || TIMESTAMP_GETTERS.has(fn)
        ? (target === undefined ? args[1] : args[0])
        : args[1];
      this.fail(errorText(err), culprit === undefined ? 0 : this.offsetOf(culprit.id));
    }
  }

  index(e: Expr, args: Expr[]): Ty {
    const [operand, key] = args;
    const at = this.offsetOf(e.id);
    if (operand === undefined || key === undefined) return T_DYN;
    if (
      this.requestField(operand) && key.exprKind.case === "constExpr" &&
      key.exprKind.value.constantKind.case === "stringValue"
    ) {
      const field = key.exprKind.value.constantKind.value;
      const t = REQUEST_FIELDS[field];
      if (t === undefined) {
        return this.fail(
          `Unknown field "${field}" of "request"${
            didYouMean(field, Object.keys(REQUEST_FIELDS), CEL_MAX_DISTANCE)
          }`,
          this.offsetOf(key.id),
        );
      }
      this.reads.add(`request.${field}` as CelRead);
      return t;
    }
    const base = asMap(this.check(operand));
    const k = this.check(key);
    switch (base.k) {
      case "dyn":
        return T_DYN;
      case "list":
        if (!assignable(k, T_INT) && !assignable(k, T_UINT) && !assignable(k, T_DOUBLE)) {
          this.fail(`A list index must be a number, got "${tyName(k)}"`, this.offsetOf(key.id));
        }
        return base.elem;
      case "map":
        if (!comparable(k, base.key)) {
          this.fail(
            `A key of "${tyName(base)}" cannot be a "${tyName(k)}"`,
            this.offsetOf(key.id),
          );
        }
        return base.val;
      default:
        return this.fail(`Cannot index a "${tyName(base)}"`, at);
    }
  }

  overloaded(fn: string, target: Ty | undefined, args: Ty[], at: number): Ty {
    const overloads = OVERLOADS.get(fn);
    const shown = OPERATOR_TEXT[fn] ?? fn;
    if (overloads === undefined) {
      const names = [...OVERLOADS.keys()].filter((n) => /^[a-zA-Z]/.test(n));
      return this.fail(`Unknown function "${fn}"${didYouMean(fn, names, CEL_MAX_DISTANCE)}`, at);
    }
    const fits = overloads.filter((o) =>
      (o.target === undefined) === (target === undefined) &&
      (o.target === undefined || assignable(target as Ty, o.target)) &&
      o.args.length === args.length &&
      o.args.every((p, i) => assignable(args[i], p))
    );
    if (fits.length === 0) {
      const shape = overloads.some((o) => (o.target === undefined) === (target === undefined))
        ? ""
        : target === undefined
        ? `: "${fn}" is a method, call it as x.${fn}(…)`
        : `: "${fn}" is a function, call it as ${fn}(…)`;
      const applied = `${target === undefined ? "" : `${tyName(target)}.`}(${
        args.map(tyName).join(", ")
      })`;
      return this.fail(`No matching overload for "${shown}" applied to ${applied}${shape}`, at);
    }
    const first = fits[0].result;
    return fits.every((o) => sameTy(o.result, first)) ? first : T_DYN;
  }
}

function qualifiedName(e: Expr): string | undefined {
  if (e.exprKind.case === "identExpr") return e.exprKind.value.name;
  if (e.exprKind.case === "selectExpr" && e.exprKind.value.operand !== undefined) {
    const base = qualifiedName(e.exprKind.value.operand);
    return base === undefined ? undefined : `${base}.${e.exprKind.value.field}`;
  }
  return undefined;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Sentence case for library messages ("field not found: x" → "Field not found: x"). */
function sentence(s: string): string {
  return s.length === 0 ? s : s[0].toUpperCase() + s.slice(1);
}

// ---------------------------------------------------------------------------
// Compile and evaluate

interface Compiled {
  expr: string;
  reads: Set<CelRead>;
  needsBody: boolean;
  result: Ty;
  run(input: CelInput): unknown;
}

function parseExpr(expr: string): { expr: Expr; positions: Record<string, number> } {
  try {
    const parsed = parse(expr);
    return {
      expr: parsed.expr,
      positions: (parsed.sourceInfo?.positions ?? {}) as Record<string, number>,
    };
  } catch (e) {
    // The parser's error carries a peggy location and a "<input>:1:3: " prefix.
    const loc = (e as { location?: { start?: { offset?: number } } }).location;
    const raw = errorText(e).replace(/^<input>:\d+:\d+: /, "");
    throw new CelError(`Syntax error: ${raw}`, loc?.start?.offset ?? 0);
  }
}

function compile(expr: string, options: CompileOptions): Compiled {
  if (typeof expr !== "string" || expr.trim() === "") {
    throw new CelError(
      'Empty expression: write a CEL expression such as request.method == "GET"',
      0,
    );
  }
  const parsed = parseExpr(expr);
  const checker = new Checker(expr, parsed.positions);
  const result = checker.check(parsed.expr);
  const env = options.cacheRegex === false ? uncachedEnv : cachedEnv;
  const program = plan(env, parsed.expr);
  const reads = checker.reads;
  const positions = parsed.positions;
  const needsBody = reads.has("body");
  const needsRequest = ALL_REQUEST_READS.some((r) => reads.has(r));
  const bodyMissing = celError(
    "Request body is not available: it is not JSON, it is larger than limits.max_body_bytes, or the request has none",
    checker.bodyIds[0],
  );
  const offsetOfError = (id: bigint | undefined) =>
    id === undefined ? 0 : positions[id.toString()] ?? 0;

  const run = (input: CelInput): unknown => {
    if (reads.has("request.path") && input.path === null) {
      throw new CelEvalError(
        `The expression reads request.path, which is unknown for a CONNECT tunnel to "${input.host}": intercept the host or drop the path from the condition`,
        expr.indexOf("path"),
      );
    }
    // Bind only what the expression reads: building `now` or parsing the query costs.
    const vars: Record<string, unknown> = {};
    if (needsRequest) vars.request = requestValue(input, reads);
    if (needsBody) vars.body = input.body === undefined ? bodyMissing : input.body;
    if (reads.has("session")) {
      vars.session = new Map([["id", input.session], ["label", input.label]]);
    }
    if (reads.has("now")) vars.now = timestampValue(input.now);
    if (reads.has("client")) vars.client = input.client;
    let value: unknown;
    try {
      value = program(vars as never);
    } catch (e) {
      throw new CelEvalError(sentence(errorText(e)), 0);
    }
    if (isCelError(value)) {
      let offset = offsetOfError(value.exprId);
      // bufbuild blames the root of an access chain; point at the missing key instead.
      const key = /^field not found: (.*)$/.exec(value.message)?.[1];
      if (key !== undefined && expr.indexOf(key, offset) >= 0) offset = expr.indexOf(key, offset);
      throw new CelEvalError(friendlyRuntimeMessage(value.message), offset);
    }
    return value;
  };
  return { expr, reads, needsBody, result, run };
}

function friendlyRuntimeMessage(message: string): string {
  const notFound = /^field not found: (.*)$/.exec(message);
  if (notFound) return `No such key "${notFound[1]}"`;
  const overload = /^found no matching overload for '(.*)' applied to '(.*)'$/.exec(message);
  if (overload) {
    const [, fn, applied] = overload;
    const hint = /\bdouble\b/.test(applied) && /\bint\b/.test(applied)
      ? ": JSON numbers are doubles, so write 2.0 instead of 2, or convert with int(…)"
      : "";
    return `No matching overload for "${OPERATOR_TEXT[fn] ?? fn}" applied to ${applied}${hint}`;
  }
  return sentence(message);
}

function requestValue(input: CelInput, reads: Set<CelRead>): Map<string, unknown> {
  const m = new Map<string, unknown>([
    ["method", input.method],
    ["scheme", input.scheme],
    ["host", input.host],
    ["port", BigInt(input.port)],
    ["path", input.path],
    ["headers", input.headers],
  ]);
  if (reads.has("request.query")) m.set("query", parseQuery(input.query));
  return m;
}

/** Decoded query parameters; the first value wins, like most web frameworks. */
export function parseQuery(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  if (raw === "") return out;
  for (const [k, v] of new URLSearchParams(raw)) if (!out.has(k)) out.set(k, v);
  return out;
}

/** A google.protobuf.Timestamp as a plain protobuf-es message, which bufbuild accepts. */
function timestampValue(d: Date): unknown {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return {
    $typeName: "google.protobuf.Timestamp",
    seconds: BigInt(seconds),
    nanos: (ms - seconds * 1000) * 1_000_000,
  };
}

/**
 * Compiles and checks a `when:` condition at load.
 *
 * @example
 * ```ts
 * const c = compileCondition('glob(request.path, "/v1/**") && cidr(client, "10.0.0.0/8")');
 * c.reads; // Set { "request.path", "client" }
 * ```
 * @throws {CelError} with the offset into `expr` for syntax errors, unknown
 * names, fields or functions, type errors, invalid literal regexes/CIDRs, and a
 * result that cannot be a bool.
 */
export function compileCondition(expr: string, options: CompileOptions = {}): CompiledCondition {
  const c = compile(expr, options);
  if (!assignable(c.result, T_BOOL)) {
    throw new CelError(
      `A condition must evaluate to a bool, got "${tyName(c.result)}"`,
      0,
    );
  }
  return {
    expr,
    reads: c.reads,
    needsBody: c.needsBody,
    evaluate(input) {
      const v = c.run(input);
      if (typeof v !== "boolean") {
        throw new CelEvalError(`The condition returned ${describe(v)}, not a bool`, 0);
      }
      return v;
    },
  };
}

/**
 * Compiles a rate-limit or spending-limit key written as CEL; it must evaluate
 * to a string (wrap numbers in `string(…)`).
 *
 * @example
 * ```ts
 * const k = compileKeyExpression('request.headers["x-team"]');
 * k.evaluate({ ...info, now: new Date() }); // "ml"
 * ```
 * @throws {CelError} like {@link compileCondition}, or when the result is known not to be a string.
 */
export function compileKeyExpression(
  expr: string,
  options: CompileOptions = {},
): CompiledKeyExpression {
  const c = compile(expr, options);
  if (!assignable(c.result, T_STRING)) {
    throw new CelError(
      `A key expression must evaluate to a string, got "${tyName(c.result)}": wrap it in string(…)`,
      0,
    );
  }
  return {
    expr,
    reads: c.reads,
    needsBody: c.needsBody,
    evaluate(input) {
      const v = c.run(input);
      if (typeof v !== "string") {
        throw new CelEvalError(`The key expression returned ${describe(v)}, not a string`, 0);
      }
      return v;
    },
  };
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "bigint") return `an int (${v})`;
  if (typeof v === "number") return `a double (${v})`;
  if (typeof v === "string") return `a string ("${v}")`;
  if (typeof v === "boolean") return `a bool (${v})`;
  try {
    return `a "${tyName(fromCelType(celType(v as CelValue)))}"`;
  } catch {
    return "a value of another type";
  }
}
