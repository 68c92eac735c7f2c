/**
 * One function per top-level section of a policy file: each takes the
 * section as the schema let it through (so it never re-validates) and
 * returns what {@link AgentgateConfig} holds for it, defaults applied.
 * `rules:` is compiled in `rules.ts`.
 *
 * @example
 * ```ts
 * upstreamSection({ connect_timeout: "3s" }).upstream; // { connectTimeoutMs: 3000, responseTimeoutMs: 300000 }
 * ```
 *
 * @module
 */
import { dirname, isAbsolute, resolve } from "node:path";
import type { Problem } from "./errors.ts";
import type { AgentgateConfig } from "./types.ts";
import type { Part } from "./source.ts";
import { parseListen } from "./spec.ts";
import { compileMatch, type Matcher, normalizeHost, PatternError } from "../policy/match.ts";
import {
  type CompiledPolicy,
  type CompiledRule,
  indexRules,
  type LlmSettings,
  type RuleIndex,
} from "../policy/engine.ts";
import type { Action } from "../policy/types.ts";
import { parseDuration } from "../util/duration.ts";
import {
  createPricer,
  createProviderDetector,
  type ModelPriceOverride,
  type Provider,
} from "../llm/mod.ts";

/** `proxy:` (v1: `listen`, `auth`; @agentreserve/proxy: `host`, `port`). */
export interface RawProxy {
  listen?: string;
  host?: string;
  port?: number;
  dashboard?: boolean;
  auth?: (string | { env: string })[];
}

/** `dashboard:` */
export interface RawDashboard {
  token?: string;
  token_env?: string;
}

/** `audit:` */
export interface RawAudit {
  path?: string;
  retention?: string;
}

/** `limits:` */
export interface RawLimits {
  max_body_bytes?: number;
  max_scan_bytes?: number;
  max_decompressed_bytes?: number;
  max_decompression_ratio?: number;
  max_regex_scan_time?: string;
  tunnel_idle?: string;
  max_tunnels_per_client?: number;
}

/** `tls:` (`intercept` is compiled by {@link compileIntercept}, with positions). */
export interface RawTls {
  intercept?: string[];
  ca_dir?: string;
  upstream_ca?: string | string[];
  leaf_key?: AgentgateConfig["tls"]["leafKey"];
}

/** `llm:` of one file. */
export interface RawLlm {
  providers?: Record<string, Provider>;
  prices?: Record<string, ModelPriceOverride>;
  force_stream_usage?: boolean;
  unknown_price?: LlmSettings["unknownPrice"];
}

/** `run:` */
export interface RawRun {
  no_proxy?: string[];
}

/** `upstream:` */
export interface RawUpstream {
  connect_timeout?: string;
  response_timeout?: string;
  resolve?: Record<string, string>;
}

/**
 * Where a relative path in `file` points: beside the file, or under `cwd`
 * for an embedded policy (`<…>`).
 *
 * @example
 * ```ts
 * resolveFrom("conf/agentgate.yaml", "./agentgate.db", "/repo"); // "/repo/conf/agentgate.db"
 * ```
 */
export function resolveFrom(file: string, p: string, cwd: string): string {
  if (isAbsolute(p)) return p;
  return file.startsWith("<") ? resolve(cwd, p) : resolve(cwd, dirname(file), p);
}

/**
 * `proxy:`: where to listen, whether to serve the dashboard, and the accepted
 * proxy tokens (`{ env: NAME }` read now).
 *
 * @example
 * ```ts
 * proxySection({ listen: "0.0.0.0:8080", auth: ["s3cret"] }, false);
 * // { listen: { host: "0.0.0.0", port: 8080 }, dashboard: true, auth: ["s3cret"] }
 * ```
 */
export function proxySection(
  proxy: RawProxy | undefined,
  legacy: boolean,
): { listen: AgentgateConfig["listen"]; dashboard: boolean; auth: string[] } {
  let listen = { host: "127.0.0.1", port: 4100 };
  if (legacy) listen = { host: proxy?.host ?? "127.0.0.1", port: proxy?.port ?? 4100 };
  else if (proxy?.listen) listen = parseListen(proxy.listen) as typeof listen;
  return {
    listen,
    dashboard: proxy?.dashboard ?? true,
    auth: (proxy?.auth ?? []).map((a) => typeof a === "string" ? a : Deno.env.get(a.env)!),
  };
}

/**
 * `dashboard:`: the bearer token, given or read from the environment, or null.
 *
 * @example
 * ```ts
 * dashboardSection({ token: "t0k" }); // { token: "t0k" }
 * ```
 */
export function dashboardSection(dashboard: RawDashboard | undefined): { token: string | null } {
  return {
    token: dashboard?.token ??
      (dashboard?.token_env ? Deno.env.get(dashboard.token_env) ?? null : null),
  };
}

/**
 * `audit:`: the database beside the policy file (the legacy format's own
 * default name) and how long rows are kept.
 *
 * @example
 * ```ts
 * auditSection(undefined, false, "conf/agentgate.yaml", "/repo");
 * // { path: "/repo/conf/agentgate.db", retentionMs: 2592000000 }
 * ```
 */
export function auditSection(
  audit: RawAudit | undefined,
  legacy: boolean,
  file: string,
  cwd: string,
): AgentgateConfig["audit"] {
  const fallback = legacy ? "./agentreserve-audit.db" : "./agentgate.db";
  return {
    path: resolveFrom(file, audit?.path ? audit.path : fallback, cwd),
    retentionMs: parseDuration(audit?.retention ?? "30d"),
  };
}

/**
 * `limits:`: body sizes buffered for conditions and scanned by DLP (1 MiB
 * each by default), how far compressed bodies are inflated for inspection
 * (64 MiB, ratio 100), the time custom DLP regexes may take (50 ms), idle
 * tunnels (closed after 10 min) and tunnels per client (256).
 *
 * @example
 * ```ts
 * limitsSection({ max_body_bytes: 4096 }).maxBodyBytes; // 4096
 * limitsSection({ tunnel_idle: "30s" }).tunnelIdleMs; // 30000
 * ```
 */
export function limitsSection(limits: RawLimits | undefined): AgentgateConfig["limits"] {
  return {
    maxBodyBytes: limits?.max_body_bytes ?? 1024 * 1024,
    maxScanBytes: limits?.max_scan_bytes ?? 1024 * 1024,
    maxDecompressedBytes: limits?.max_decompressed_bytes ?? 64 * 1024 * 1024,
    maxDecompressionRatio: limits?.max_decompression_ratio ?? 100,
    maxRegexScanMs: parseDuration(limits?.max_regex_scan_time ?? "50ms"),
    tunnelIdleMs: parseDuration(limits?.tunnel_idle ?? "10m"),
    maxTunnelsPerClient: limits?.max_tunnels_per_client ?? 256,
  };
}

/**
 * `tls.intercept` of every file, in load order, compiled as host globs; a
 * path or an invalid glob is an error at its item.
 *
 * @example
 * ```ts
 * const intercept = compileIntercept(parts, errors); // [Matcher for "api.openai.com", …]
 * ```
 */
export function compileIntercept(parts: Part[], errors: Problem[]): Matcher[] {
  const intercept: Matcher[] = [];
  for (const part of parts) {
    const src = part.src;
    ((part.raw.tls?.intercept ?? []) as string[]).forEach((pattern, i) => {
      const node = src.nodeAt(["tls", "intercept", i]);
      if (pattern.includes("/")) {
        errors.push(
          src.problem("error", node, `tls.intercept takes host globs, not paths: "${pattern}"`),
        );
        return;
      }
      try {
        intercept.push(compileMatch(pattern));
      } catch (e) {
        if (!(e instanceof PatternError)) throw e;
        errors.push(
          src.problem(
            "error",
            node,
            `invalid host glob "${pattern}" in tls.intercept: ${e.message}`,
            e.offset,
          ),
        );
      }
    });
  }
  return intercept;
}

/**
 * `tls:`: the compiled intercept list plus the CA directory (`~` kept for
 * the CA store to expand), extra upstream roots and the leaf key type.
 *
 * @example
 * ```ts
 * tlsSection({ ca_dir: "./ca" }, [], "conf/agentgate.yaml", "/repo").caDir; // "/repo/conf/ca"
 * ```
 */
export function tlsSection(
  tls: RawTls | undefined,
  intercept: Matcher[],
  file: string,
  cwd: string,
): AgentgateConfig["tls"] {
  const upstreamCa = tls?.upstream_ca === undefined
    ? []
    : Array.isArray(tls.upstream_ca)
    ? tls.upstream_ca
    : [tls.upstream_ca];
  return {
    intercept,
    caDir: tls?.ca_dir === undefined
      ? null
      : tls.ca_dir.startsWith("~")
      ? tls.ca_dir
      : resolveFrom(file, tls.ca_dir, cwd),
    upstreamCa: upstreamCa.map((p) => resolveFrom(file, p, cwd)),
    leafKey: tls?.leaf_key ?? "ecdsa-p256",
  };
}

/**
 * `llm.providers` of every file (the earlier file wins a host) plus the
 * built-in hosts, as a detector. Rules need it before the rest of `llm`.
 *
 * @example
 * ```ts
 * llmProviderDetector([{ providers: { "openrouter.ai": "openai" } }])("openrouter.ai"); // "openai"
 * ```
 */
export function llmProviderDetector(
  sections: (RawLlm | undefined)[],
): (host: string) => Provider | null {
  const providers: Record<string, Provider> = {};
  for (const s of [...sections].reverse()) Object.assign(providers, s?.providers ?? {});
  return createProviderDetector(
    Object.entries(providers).map(([host, provider]) => ({ host, provider })),
  );
}

/**
 * `llm:` of every file in load order (the earlier file wins a model's price
 * and `force_stream_usage`); `unknown_price` is the main file's.
 *
 * @example
 * ```ts
 * const llm = llmSection([{ force_stream_usage: true }], undefined, llmProviderDetector([]));
 * llm.forceStreamUsage; // true
 * llm.unknownPrice; // "deny"
 * ```
 */
export function llmSection(
  sections: (RawLlm | undefined)[],
  unknownPrice: LlmSettings["unknownPrice"] | undefined,
  detect: (host: string) => Provider | null,
): LlmSettings {
  const prices: Record<string, ModelPriceOverride> = {};
  for (const s of [...sections].reverse()) Object.assign(prices, s?.prices ?? {});
  let forceStream: boolean | undefined;
  for (const s of sections) forceStream ??= s?.force_stream_usage;
  return {
    detect,
    pricer: createPricer({ overrides: prices }),
    forceStreamUsage: forceStream ?? false,
    unknownPrice: unknownPrice ?? "deny",
  };
}

/**
 * `run:`: the NO_PROXY list `agentgate run` and `env` hand out, or null for theirs.
 *
 * @example
 * ```ts
 * runSection({ no_proxy: ["localhost"] }); // { noProxy: ["localhost"] }
 * ```
 */
export function runSection(run: RawRun | undefined): AgentgateConfig["run"] {
  return { noProxy: run?.no_proxy ?? null };
}

/**
 * `upstream:`: connect and response timeouts, and the `resolve` overrides
 * keyed by normalised host.
 *
 * @example
 * ```ts
 * upstreamSection({ resolve: { "API.openai.com": "127.0.0.1:8443" } }).resolve;
 * // Map { "api.openai.com" => { host: "127.0.0.1", port: 8443 } }
 * ```
 */
export function upstreamSection(
  upstream: RawUpstream | undefined,
): Pick<AgentgateConfig, "resolve" | "upstream"> {
  return {
    resolve: new Map(
      Object.entries(upstream?.resolve ?? {}).map(([h, v]) => [
        normalizeHost(h),
        parseListen(v) as { host: string; port: number },
      ]),
    ),
    upstream: {
      connectTimeoutMs: parseDuration(upstream?.connect_timeout ?? "10s"),
      responseTimeoutMs: parseDuration(upstream?.response_timeout ?? "5m"),
    },
  };
}

/**
 * `mode:` and `default:` around the compiled rules (indexed by host here):
 * the legacy format's default is `log`, v1's is `deny`.
 *
 * @example
 * ```ts
 * policySection({ mode: "audit" }, false, rules, llm).defaultAction; // "deny"
 * ```
 */
export function policySection(
  raw: { mode?: CompiledPolicy["mode"]; default?: Action },
  legacy: boolean,
  rules: CompiledRule[],
  llm: LlmSettings,
  index: RuleIndex = indexRules(rules),
): CompiledPolicy {
  return {
    mode: raw.mode ?? "enforce",
    defaultAction: raw.default ?? (legacy ? "log" : "deny"),
    defaultSource: legacy ? "@agentreserve/proxy default" : "default",
    rules,
    index,
    llm,
  };
}
