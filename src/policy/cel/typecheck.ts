/**
 * The load-time type checker: names, fields, functions and obvious type
 * errors, with the offset of the culprit. `@bufbuild/cel` has a type checker
 * but does not export it, so this module walks the parsed expression itself.
 *
 * Named `TypeChecker`/`checkTypes` so it is not mistaken for the limits'
 * `Checker` (a compiled policy).
 *
 * @example
 * ```ts
 * const parsed = parse('request.headers["x-team"] == "ml"');
 * checkTypes(parsed.expr, 'request.headers["x-team"] == "ml"', {}).reads;
 * // Set { "request.headers" }
 * ```
 *
 * @module
 */

import type { CelEnv, CelType, parse } from "@bufbuild/cel";
import { didYouMean } from "../../util/suggest.ts";
import { CelError, type CelRead, errorText } from "./types.ts";
import { celEnvironment, checkLiteral, TIMESTAMP_GETTERS } from "./functions.ts";

/** A parsed CEL expression (bufbuild's AST node). */
export type Expr = ReturnType<typeof parse>["expr"];

/** Static types as far as the checker knows them; `dyn` accepts anything. */
export type Ty =
  | { k: "dyn" }
  | { k: "prim"; name: string }
  | { k: "list"; elem: Ty }
  | { k: "map"; key: Ty; val: Ty }
  | { k: "rec"; name: string; fields: Record<string, Ty> };

const T_DYN: Ty = { k: "dyn" };
const prim = (name: string): Ty => ({ k: "prim", name });
/** The static type `bool`. */
export const T_BOOL: Ty = prim("bool");
/** The static type `string`. */
export const T_STRING: Ty = prim("string");
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
  dest: { k: "rec", name: "dest", fields: { ip: T_STRING } },
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

/** Every `request.*` read: what reading `request` as a whole counts as. */
export const ALL_REQUEST_READS: CelRead[] = Object.keys(REQUEST_FIELDS).map((f) =>
  `request.${f}` as CelRead
);

/** A bufbuild type as the checker's {@link Ty}. */
export function fromCelType(t: CelType): Ty {
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

/**
 * A type the way users write it, for messages.
 *
 * @example
 * ```ts
 * tyName({ k: "list", elem: T_STRING }); // "list(string)"
 * ```
 */
export function tyName(t: Ty): string {
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

/**
 * Whether a value of static type `arg` may be passed where `param` is declared.
 *
 * @example
 * ```ts
 * assignable({ k: "dyn" }, T_BOOL); // true: known only at run time
 * ```
 */
export function assignable(arg: Ty, param: Ty): boolean {
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

const OVERLOADS = overloadTable(celEnvironment());

/** Operator function names → how users write them, for messages. */
export const OPERATOR_TEXT: Record<string, string> = {
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

/**
 * Walks a parsed expression: infers types, collects reads, throws
 * {@link CelError}. One instance per expression; {@link checkTypes} is the
 * usual way in.
 *
 * @example
 * ```ts
 * const parsed = parse("request.port == 443");
 * const checker = new TypeChecker("request.port == 443", parsed.sourceInfo?.positions ?? {});
 * tyName(checker.check(parsed.expr)); // "bool"
 * checker.reads; // Set { "request.port" }
 * ```
 */
export class TypeChecker {
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
      }: the variables are request, body, session, now, client and dest`,
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
        if (p !== undefined) checkLiteral.regex(p);
      } else if (fn === "cidr" && target === undefined) {
        const r = literal(args[1]);
        if (r !== undefined) checkLiteral.cidr(r);
        const ip = literal(args[0]);
        if (ip !== undefined) checkLiteral.ip(ip);
      } else if (fn === "glob" && target === undefined) {
        const p = literal(args[1]);
        if (p !== undefined) checkLiteral.glob(p);
      } else if (TIMESTAMP_GETTERS.has(fn) && target !== undefined) {
        const tz = literal(args[0]);
        if (tz !== undefined) checkLiteral.timeZone(tz);
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

/** What {@link checkTypes} learns about an expression. */
export interface TypeCheckResult {
  /** The static type of the whole expression (`dyn` when known only at run time). */
  result: Ty;
  /** Variables and request fields the expression reads. */
  reads: Set<CelRead>;
  /** Expression ids of `body` identifiers: where a "body not available" error points. */
  bodyIds: bigint[];
}

/**
 * Type-checks a parsed expression against agentgate's environment.
 *
 * @example
 * ```ts
 * const parsed = parse("request.port == 443");
 * checkTypes(parsed.expr, "request.port == 443", {}).result; // T_BOOL
 * ```
 * @throws {CelError} for unknown names, fields or functions, type errors and
 * invalid literal arguments, with the offset into `source`.
 */
export function checkTypes(
  expr: Expr,
  source: string,
  positions: Record<string, number>,
): TypeCheckResult {
  const checker = new TypeChecker(source, positions);
  const result = checker.check(expr);
  return { result, reads: checker.reads, bodyIds: checker.bodyIds };
}
