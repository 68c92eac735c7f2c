/**
 * The vocabulary the CEL modules share: what an expression reads, what it is
 * evaluated against, what compiling returns, and the two errors.
 *
 * @module
 */

import type { RequestInfo } from "../types.ts";

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
  | "client"
  | "dest";

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

/**
 * The message of anything thrown, for wrapping library errors in our own.
 *
 * @example
 * ```ts
 * errorText(new Error("bad")); // "bad"
 * ```
 */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
