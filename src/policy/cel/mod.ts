/**
 * CEL conditions (`when:`) and CEL rate-limit keys, on top of `@bufbuild/cel`.
 *
 * Everything that can be checked without a request is checked at load by
 * {@link compileCondition}: syntax, unknown variables and fields
 * (`requst.host`, `request.hots`), unknown functions, calls that no overload
 * accepts for the argument types known at load (`request.port.startsWith("4")`),
 * comparisons of two different known types (`request.port == "443"`), and
 * constant regular expressions, CIDRs and globs.
 *
 * Inside: `compile.ts` (parse, check, plan, evaluate), `typecheck.ts` (the
 * load-time type checker: `@bufbuild/cel` has one but does not export it) and
 * `functions.ts` (glob, cidr, RE2 `matches`, zone-aware timestamp getters).
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
 * | `dest`    | record                | `ip`: the address the request connects to (after resolution) |
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

export {
  CelError,
  CelEvalError,
  type CelInput,
  type CelRead,
  type CompiledCondition,
  type CompiledKeyExpression,
  type CompileOptions,
} from "./types.ts";
export { compileCondition, compileKeyExpression, parseQuery } from "./compile.ts";
export { cidrMatch, globMatch, parseIp, regexCompileCount } from "./functions.ts";
