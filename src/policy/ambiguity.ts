/**
 * Paths servers read differently (`//admin/x`, `/ok/..;/admin/x`,
 * `/admin%2fx`): the pipeline's first step for a request with a path.
 *
 * The policy decides on the canonical path (`path.ts`). Under
 * `limits.ambiguous_paths: deny` (the default) a raw path with spelling
 * features is forwarded as sent only when every reading of it meets the same
 * rules — otherwise some upstream could route it where the policy did not
 * look, and it is denied with a reason naming the spelling and the readings.
 * Under `normalize` the canonical path is forwarded instead, so the upstream
 * sees exactly what was decided. A malformed path (an encoded control
 * character, invalid UTF-8, encoding nested too deep) is denied either way.
 *
 * Pure: no I/O, no state is touched (limits are charged only by the decision
 * that follows).
 *
 * @module
 */
import type { Decision, RequestInfo } from "./types.ts";
import type { CompiledPolicy, CompiledRule } from "./engine.ts";
import { matchHost } from "./match.ts";
import { pathReadings } from "./path.ts";
import { maskPath } from "../dlp/mod.ts";

/** `limits.ambiguous_paths`. */
export type AmbiguousPaths = "deny" | "normalize";

/** The policy name on a decision made here. */
export const AMBIGUOUS_PATH_POLICY = "ambiguous_path";

/** What the path step says: deny, forward the canonical path, or carry on with the raw one. */
export type PathStep =
  | { kind: "deny"; decision: Decision }
  | { kind: "forward"; path: string }
  | null;

/** Longest spelling quoted in a reason. */
const QUOTE = 160;

function quote(host: string, p: string): string {
  const m = maskPath(p, host);
  return JSON.stringify(m.length > QUOTE ? m.slice(0, QUOTE) + "…" : m);
}

/** Whether a rule that could decide this host reads its path (a path glob, or `request.path`). */
function pathSensitive(policy: CompiledPolicy, info: RequestInfo): boolean {
  const rules = policy.index?.candidates(info.host) ?? policy.rules;
  return rules.some((r) =>
    r.readsPath ||
    r.match.some((m) => m.path !== null && matchHost(m, info.host, info.port, info.scheme))
  );
}

/** The rules a reading of the path meets by pattern and method, in policy order. */
function rulesMeeting(policy: CompiledPolicy, info: RequestInfo, path: string): CompiledRule[] {
  const rules = policy.index?.candidates(info.host) ?? policy.rules;
  return rules.filter((r) =>
    (r.methods === null || r.methods.has(info.method)) &&
    r.match.some((m) =>
      matchHost(m, info.host, info.port, info.scheme) && (m.path === null || m.path(path))
    )
  );
}

function denial(policy: CompiledPolicy, reason: string, status: number): PathStep {
  return {
    kind: "deny",
    decision: {
      verdict: policy.mode === "audit" ? "would_deny" : "deny",
      rule: null,
      ruleSource: null,
      reason,
      policy: AMBIGUOUS_PATH_POLICY,
      status,
      retryAfter: null,
    },
  };
}

/**
 * The path step of a request: null when its raw path has one reading (or all
 * readings meet the same rules under `deny`); a denial for a malformed path or
 * one whose readings the policy decides differently; the canonical path to
 * forward under `normalize`.
 *
 * @example
 * const step = pathStep(policy, requestInfo({ ..., rawPath: "//admin/x" }), "deny");
 * step?.kind // "deny" when a rule matches "/admin/x" and not "//admin/x"
 */
export function pathStep(
  policy: CompiledPolicy,
  info: RequestInfo,
  mode: AmbiguousPaths,
): PathStep {
  const sp = info.spelling;
  if (!sp || info.path === null) return null;
  const host = info.host;
  if (sp.malformed !== null) {
    return denial(policy, `malformed path ${quote(host, sp.raw)}: ${sp.malformed}`, 400);
  }
  if (mode === "normalize") return { kind: "forward", path: info.path };
  // No rule for this host looks at the path: every reading meets the same rules.
  if (!pathSensitive(policy, info)) return null;
  const { views, malformed } = pathReadings(sp.raw);
  if (malformed !== null) {
    return denial(policy, `malformed path ${quote(host, sp.raw)}: ${malformed}`, 400);
  }
  const base = rulesMeeting(policy, info, views[0]);
  const pathReader = base.find((r) => r.readsPath);
  for (const v of views.slice(1)) {
    const other = rulesMeeting(policy, info, v);
    const same = other.length === base.length && other.every((r, i) => r === base[i]);
    if (same && !pathReader) continue;
    const features = sp.features.join(", ");
    const readings = `servers read it as ${quote(host, views[0])} or ${quote(host, v)}`;
    let why: string;
    if (same) why = `and rule "${pathReader!.name}" reads request.path`;
    else {
      // The first rule (in policy order) that only one of the readings meets.
      const only = [
        ...base.filter((r) => !other.includes(r)),
        ...other.filter((r) => !base.includes(r)),
      ]
        .sort((a, b) => a.index - b.index)[0];
      why = `and rule "${only.name}" matches only the ${base.includes(only) ? "first" : "second"}`;
    }
    return denial(
      policy,
      `ambiguous path ${quote(host, sp.raw)} (${features}): ${readings}, ${why}; ` +
        `send ${quote(host, views[0])}, or set limits.ambiguous_paths: normalize`,
      403,
    );
  }
  return null;
}
