/**
 * The front door of the CEL modules: compile a `when:` condition or a
 * limit's key expression at load (parse, type-check, plan), then evaluate it
 * per request.
 *
 * @example
 * ```ts
 * const cond = compileCondition('request.method == "POST" && body.model.startsWith("gpt-4o")');
 * cond.needsBody; // true
 * cond.evaluate({ ...info, body: { model: "gpt-4o-mini" }, now: new Date() }); // true
 * ```
 *
 * @module
 */

import { celError, celType, type CelValue, isCelError, parse, plan } from "@bufbuild/cel";
import {
  CelError,
  CelEvalError,
  type CelInput,
  type CelRead,
  type CompiledCondition,
  type CompiledKeyExpression,
  type CompileOptions,
  errorText,
} from "./types.ts";
import {
  ALL_REQUEST_READS,
  assignable,
  checkTypes,
  type Expr,
  fromCelType,
  OPERATOR_TEXT,
  T_BOOL,
  T_STRING,
  type Ty,
  tyName,
} from "./typecheck.ts";
import { celEnvironment } from "./functions.ts";

/** Sentence case for library messages ("field not found: x" → "Field not found: x"). */
function sentence(s: string): string {
  return s.length === 0 ? s : s[0].toUpperCase() + s.slice(1);
}

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
  const { result, reads, bodyIds } = checkTypes(parsed.expr, expr, parsed.positions);
  const program = plan(celEnvironment(options), parsed.expr);
  const positions = parsed.positions;
  const needsBody = reads.has("body");
  const needsRequest = ALL_REQUEST_READS.some((r) => reads.has(r));
  const bodyMissing = celError(
    "Request body is not available: it is not JSON, it is larger than limits.max_body_bytes, or the request has none",
    bodyIds[0],
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
    if (reads.has("dest")) {
      // The engine resolves before it evaluates a condition that reads dest; a
      // caller that did not is told so, never given a guess.
      if (input.dest === undefined) {
        throw new CelEvalError(
          `The expression reads dest, but the address of "${input.host}" is not known: it needs the resolved address`,
          expr.indexOf("dest"),
        );
      }
      vars.dest = new Map([["ip", input.dest.ip]]);
    }
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
