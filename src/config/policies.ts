/**
 * Compiling a rule's `policies:` list into checkers, in both the agentgate
 * form (`- rate_limit: {…}`) and the @agentreserve/proxy form
 * (`- type: rate_limit …`). Each policy module parses its own config; errors
 * come back with a key path so the loader can point at the YAML node.
 *
 * @module
 */
import type { Checker } from "../policy/limits/types.ts";
import { PolicyConfigError } from "../policy/limits/types.ts";
import {
  createRateLimitChecker,
  parseLegacyRateLimit,
  parseRateLimitConfig,
  type RateLimitChecker,
} from "../policy/limits/rate.ts";
import {
  createTimeWindowChecker,
  parseLegacyTimeRestriction,
  parseTimeWindowConfig,
} from "../policy/limits/time_window.ts";
import {
  createSpendingLimitChecker,
  parseLegacySpendingLimit,
  parseSpendingLimitConfig,
} from "../policy/limits/spend.ts";
import type { CelRead } from "../policy/cel/mod.ts";
import { createDlpChecker, parseDlpConfig } from "../policy/limits/dlp.ts";
import { didYouMean } from "../util/suggest.ts";

/** The policies a rule can carry, by the key that introduces them. */
export const POLICY_KINDS = ["rate_limit", "time_window", "spending_limit", "dlp"] as const;

/** Legacy `type:` values and the policy they map to. */
const LEGACY_TYPES: Record<string, string> = {
  rate_limit: "rate_limit",
  time_restriction: "time_window",
  spending_limit: "spending_limit",
};

/** A compiled policy plus what the loader needs to know about it. */
export interface CompiledPolicy {
  checker: Checker;
  /** Request fields the policy reads (CEL keys): decides tunnel-ability and body buffering. */
  reads: ReadonlySet<CelRead>;
  needsBody: boolean;
}

/** A policy that failed to compile: message plus the path below the list item. */
export interface PolicyProblem {
  message: string;
  path: (string | number)[];
  offset: number | null;
  /** Point at the key (an unknown policy name) rather than its value. */
  atKey?: boolean;
}

function lowerFirst(s: string): string {
  return s.length > 1 && /^[A-Z][a-z]/.test(s) ? s[0].toLowerCase() + s.slice(1) : s;
}

/**
 * Compile one `policies:` item.
 *
 * @example
 * compilePolicy({ rate_limit: { requests: 60, per: "1m", key: "session" } }, "openai")
 */
export function compilePolicy(
  raw: unknown,
  rule: string,
  isProviderHost: (host: string) => boolean = () => false,
  opts: { regexBudgetMs?: number } = {},
): CompiledPolicy | PolicyProblem {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return {
      message: `a policy must be a mapping such as { rate_limit: {...} }`,
      path: [],
      offset: null,
    };
  }
  const obj = raw as Record<string, unknown>;
  try {
    let kind: string;
    let config: Record<string, unknown>;
    let legacy = false;
    if ("type" in obj) {
      const t = String(obj.type);
      const mapped = LEGACY_TYPES[t];
      if (!mapped) {
        return {
          message: `unknown policy type "${t}"${didYouMean(t, Object.keys(LEGACY_TYPES))}`,
          path: ["type"],
          offset: null,
        };
      }
      kind = mapped;
      config = obj;
      legacy = true;
    } else {
      const keys = Object.keys(obj);
      if (keys.length !== 1) {
        return {
          message: `a policy has exactly one key (${POLICY_KINDS.join(", ")}), not ${
            keys.length ? keys.map((k) => `"${k}"`).join(", ") : "none"
          }`,
          path: [],
          offset: null,
        };
      }
      kind = keys[0];
      if (!(POLICY_KINDS as readonly string[]).includes(kind)) {
        return {
          message: `unknown policy "${kind}"${didYouMean(kind, POLICY_KINDS)}`,
          path: [kind],
          offset: null,
          atKey: true,
        };
      }
      const inner = obj[kind];
      if (inner === null || typeof inner !== "object" || Array.isArray(inner)) {
        return { message: `"${kind}" must be a mapping`, path: [kind], offset: null };
      }
      config = inner as Record<string, unknown>;
    }
    const ctx = { rule };
    let checker: Checker;
    if (kind === "rate_limit") {
      const c = legacy ? parseLegacyRateLimit(config) : parseRateLimitConfig(config);
      checker = createRateLimitChecker(c, ctx);
    } else if (kind === "time_window") {
      const c = legacy ? parseLegacyTimeRestriction(config) : parseTimeWindowConfig(config);
      checker = createTimeWindowChecker(c, ctx);
    } else if (kind === "dlp") {
      const dlp = createDlpChecker(parseDlpConfig(config), {
        rule,
        isProviderHost,
        regexBudgetMs: opts.regexBudgetMs,
      });
      // Scanning a request reads its URL, headers and body.
      return {
        checker: dlp,
        reads: dlp.scansRequest
          ? new Set<CelRead>(["request.path", "request.query", "request.headers", "body"])
          : new Set<CelRead>(["request.path"]),
        needsBody: dlp.scansRequest,
      };
    } else {
      const c = legacy ? parseLegacySpendingLimit(config) : parseSpendingLimitConfig(config);
      checker = createSpendingLimitChecker(c, ctx);
    }
    const key = (checker as Partial<RateLimitChecker>).key;
    return {
      checker,
      reads: key?.reads ?? new Set(),
      needsBody: key?.needsBody ?? false,
    };
  } catch (e) {
    if (!(e instanceof PolicyConfigError)) throw e;
    const isLegacy = "type" in obj;
    const kind = isLegacy ? [] : [Object.keys(obj)[0]];
    return { message: lowerFirst(e.message), path: [...kind, ...e.path], offset: e.offset };
  }
}
