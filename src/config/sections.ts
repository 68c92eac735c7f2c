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
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Problem } from "./errors.ts";
import type { AgentgateConfig } from "./types.ts";
import { type Part, validAt } from "./source.ts";
import {
  authEntry,
  parseDnsServer,
  parseListen,
  parseResolveKey,
  parseResolveTarget,
  type RawAuthEntry,
} from "./spec.ts";
import { pinKey } from "../policy/address.ts";
import {
  compileMatch,
  type Matcher,
  matchHost,
  normalizeHost,
  PatternError,
} from "../policy/match.ts";
import picomatch from "picomatch";
import { type CredentialSpec, MARKER, type PhantomShape, PRESETS } from "../credentials/mod.ts";
import {
  type CompiledPolicy,
  type CompiledRule,
  indexRules,
  type LlmSettings,
  type RuleIndex,
} from "../policy/engine.ts";
import type { Action } from "../policy/types.ts";
import { parseDuration } from "../util/duration.ts";
import { agentgateHome } from "../util/home.ts";
import { parsePgUrl } from "../util/pg_url.ts";
import {
  createEstimator,
  createPricer,
  createProviderDetector,
  foreseeUsage,
  type ModelPriceOverride,
  type Provider,
  type ProviderDetector,
} from "../llm/mod.ts";

/** `proxy:` (v1: `listen`, `auth`; @agentreserve/proxy: `host`, `port`). */
export interface RawProxy {
  listen?: string;
  host?: string;
  port?: number;
  dashboard?: boolean;
  auth?: RawAuthEntry[];
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
  postgres?: string;
  password_env?: string;
  spool?: string;
  spool_max_bytes?: number;
  jsonl?: string;
  otlp?: string;
}

/** `state:` */
export interface RawState {
  redis: string;
  password_env?: string;
  ca?: string;
  on_state_error?: "deny" | "allow" | "local";
  timeout?: string;
  queue_max?: number;
}

/** `limits:` */
export interface RawLimits {
  max_body_bytes?: number;
  max_scan_bytes?: number;
  ambiguous_paths?: "deny" | "normalize";
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
  reserve_output_tokens?: number;
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
  dns?: string;
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
 * proxy tokens with their sessions (`token_env` read now; a token's label is
 * its session: `auth-N` unless given).
 *
 * @example
 * ```ts
 * proxySection({ listen: "0.0.0.0:8080", auth: ["s3cret"] }, false);
 * // { listen: { host: "0.0.0.0", port: 8080 }, dashboard: true,
 * //   auth: [{ token: "s3cret", label: "auth-1" }], authEnv: [] }
 * ```
 */
export function proxySection(
  proxy: RawProxy | undefined,
  legacy: boolean,
): {
  listen: AgentgateConfig["listen"];
  dashboard: boolean;
  auth: AgentgateConfig["proxyAuth"];
  authEnv: string[];
} {
  let listen = { host: "127.0.0.1", port: 4100 };
  if (legacy) listen = { host: proxy?.host ?? "127.0.0.1", port: proxy?.port ?? 4100 };
  else if (proxy?.listen) listen = parseListen(proxy.listen) as typeof listen;
  const entries = (proxy?.auth ?? []).map(authEntry);
  return {
    listen,
    dashboard: proxy?.dashboard ?? true,
    auth: entries.map((e) => ({ token: e.token!, label: e.label })),
    authEnv: entries.flatMap((e) => e.env === null ? [] : [e.env]),
  };
}

/** Whether a listen host only accepts local connections. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** What {@link exposureProblems} weighs. */
export interface Exposure {
  /** Where the proxy will listen. */
  listen: { host: string; port: number };
  /** The address comes from `--listen`, not from the file. */
  fromFlag: boolean;
  /** `proxy.auth` holds at least one token. */
  auth: boolean;
  /** The dashboard will be served. */
  dashboard: boolean;
  dashboardToken: boolean;
}

/**
 * A proxy reachable from other machines must demand credentials, and so must
 * its dashboard: errors at `proxy.listen` (or the legacy `proxy.host`), or
 * about `--listen` when the address comes from the command line.
 *
 * @example
 * ```ts
 * exposureProblems(main, { listen: { host: "0.0.0.0", port: 4100 }, fromFlag: false,
 *   auth: false, dashboard: false, dashboardToken: false });
 * // [{ …, message: 'proxy.listen "0.0.0.0:4100" is not a loopback address, so the proxy needs credentials: …' }]
 * ```
 */
export function exposureProblems(main: Part, e: Exposure): Problem[] {
  if (isLoopback(e.listen.host)) return [];
  const { src, legacy } = main;
  const address = `${
    e.listen.host.includes(":") ? `[${e.listen.host}]` : e.listen.host
  }:${e.listen.port}`;
  const what = e.fromFlag
    ? `--listen "${address}"`
    : legacy
    ? `proxy.host "${e.listen.host}"`
    : `proxy.listen "${address}"`;
  const at = (message: string): Problem =>
    e.fromFlag
      ? { severity: "error", file: src.file, line: 0, col: 0, message }
      : src.problem("error", src.nodeAt(legacy ? ["proxy", "host"] : ["proxy", "listen"]), message);
  const out: Problem[] = [];
  if (!e.auth) {
    out.push(at(
      legacy
        ? `${what} is not a loopback address, so the proxy needs credentials, which the ` +
          '@agentreserve/proxy format cannot hold: listen on 127.0.0.1, or add "version: 1" ' +
          `and write proxy.listen: "${address}" with proxy.auth (tokens or { env: NAME })`
        : `${what} is not a loopback address, so the proxy needs credentials: set proxy.auth ` +
          "(tokens or { env: NAME })",
    ));
  }
  if (e.dashboard && !e.dashboardToken) {
    out.push(at(
      legacy
        ? `${what} is not a loopback address, so the dashboard needs a token, which the ` +
          "@agentreserve/proxy format cannot hold: set proxy.dashboard: false (or serve " +
          '--no-dashboard), or add "version: 1" and set dashboard.token'
        : `${what} is not a loopback address, so the dashboard needs a token: set ` +
          "dashboard.token (or dashboard.token_env), or turn the dashboard off " +
          "(proxy.dashboard: false, or serve --no-dashboard)",
    ));
  }
  return out;
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
 * `audit:`: the database (a relative `path` is relative to the policy file;
 * without one, `agentgate.db` in the agentgate home, `$AGENTGATE_HOME` or
 * `~/.agentgate`, like the CA: never the directory agentgate happens to start
 * in) and how long rows are kept. Files in the @agentreserve/proxy format get
 * the same default (that tool's own was `./agentreserve-audit.db` in the
 * working directory: the very habit this replaces).
 *
 * @example
 * ```ts
 * auditSection(undefined, false, "conf/agentgate.yaml", "/repo");
 * // { path: "/home/me/.agentgate/agentgate.db", retentionMs: 2592000000 }
 * auditSection({ path: "./a.db" }, false, "conf/agentgate.yaml", "/repo").path; // "/repo/conf/a.db"
 * ```
 */
export function auditSection(
  audit: RawAudit | undefined,
  _legacy: boolean,
  file: string,
  cwd: string,
): AgentgateConfig["audit"] {
  const home = agentgateHome();
  const pg = audit?.postgres === undefined
    ? null
    : parsePgUrl(audit.postgres, audit.password_env ?? "PGPASSWORD");
  const otlp = audit?.otlp === undefined ? null : audit.otlp.replace(/\/+$/, "");
  return {
    path: audit?.path ? resolveFrom(file, audit.path, cwd) : join(home, "agentgate.db"),
    retentionMs: parseDuration(audit?.retention ?? "30d"),
    // auditProblems refused a bad URL before this runs.
    postgres: typeof pg === "string" ? null : pg,
    spoolPath: audit?.spool ? resolveFrom(file, audit.spool, cwd) : join(home, "audit-spool.db"),
    spoolMaxBytes: audit?.spool_max_bytes ?? 2 ** 30,
    jsonl: audit?.jsonl === undefined
      ? null
      : audit.jsonl === "-"
      ? "-"
      : resolveFrom(file, audit.jsonl, cwd),
    otlp: otlp === null ? null : otlp.endsWith("/v1/logs") ? otlp : `${otlp}/v1/logs`,
  };
}

/**
 * `state:`: where limits keep their counters for a fleet (Redis), or null:
 * in this process, as always. The password is never in the file: only the
 * name of the variable holding it (`password_env`). A relative `ca` is
 * relative to the policy file.
 *
 * @example
 * ```ts
 * stateSection({ redis: "redis://cache:6379/0" }, "conf/agentgate.yaml", "/repo");
 * // { redis: "redis://cache:6379/0", passwordEnv: null, caFile: null, onError: "deny", timeoutMs: 1000, queueMax: 100000 }
 * ```
 */
export function stateSection(
  state: RawState | undefined,
  file: string,
  cwd: string,
): AgentgateConfig["state"] {
  if (state === undefined || state === null) return null;
  return {
    redis: state.redis,
    passwordEnv: state.password_env ?? null,
    caFile: state.ca ? resolveFrom(file, state.ca, cwd) : null,
    onError: state.on_state_error ?? "deny",
    timeoutMs: parseDuration(state.timeout ?? "1s"),
    queueMax: state.queue_max ?? 100_000,
  };
}

/**
 * What is wrong in `audit:` beyond the schema: a PostgreSQL URL that cannot
 * be used (a password in it above all: it belongs in an environment
 * variable), an OTLP endpoint that is not an http(s) URL.
 *
 * @example
 * ```ts
 * auditProblems(main, { postgres: "postgres://u:pw@db/audit" });
 * // [{ severity: "error", message: 'audit.postgres: the URL carries a password: …' }]
 * ```
 */
export function auditProblems(main: Part, audit: RawAudit | undefined): Problem[] {
  const out: Problem[] = [];
  const { src } = main;
  if (typeof audit?.postgres === "string") {
    const pg = parsePgUrl(audit.postgres, audit.password_env ?? "PGPASSWORD");
    if (typeof pg === "string") {
      out.push(src.problem("error", src.nodeAt(["audit", "postgres"]), `audit.postgres: ${pg}`));
    }
  }
  if (typeof audit?.otlp === "string") {
    let ok = false;
    try {
      const u = new URL(audit.otlp);
      ok = (u.protocol === "http:" || u.protocol === "https:") && u.username === "" &&
        u.password === "";
    } catch {
      ok = false;
    }
    if (!ok) {
      out.push(src.problem(
        "error",
        src.nodeAt(["audit", "otlp"]),
        `audit.otlp: "${audit.otlp}" is not an OTLP/HTTP endpoint (expected http://collector:4318, no credentials in it)`,
      ));
    }
  }
  return out;
}

/**
 * `limits:`: body sizes buffered for conditions and scanned by DLP (1 MiB
 * each by default), what happens to a path servers read differently
 * (`ambiguous_paths`, default `deny`), how far compressed bodies are inflated
 * for inspection (64 MiB, ratio 100), the time custom DLP regexes may take
 * (50 ms), idle tunnels (closed after 10 min) and tunnels per client (256).
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
    ambiguousPaths: limits?.ambiguous_paths ?? "deny",
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
      if (!validAt(part, ["tls", "intercept", i])) return;
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
): ProviderDetector {
  const providers: Record<string, Provider> = {};
  for (const s of [...sections].reverse()) Object.assign(providers, s?.providers ?? {});
  return createProviderDetector(
    Object.entries(providers).map(([host, provider]) => ({ host, provider })),
  );
}

/**
 * `llm:` of every file in load order (the earlier file wins a model's price
 * and `force_stream_usage`); `unknown_price` and `reserve_output_tokens` are
 * the main file's.
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
  detect: ProviderDetector,
  reserveOutputTokens?: number,
): LlmSettings {
  const prices: Record<string, ModelPriceOverride> = {};
  for (const s of [...sections].reverse()) Object.assign(prices, s?.prices ?? {});
  let forceStream: boolean | undefined;
  for (const s of sections) forceStream ??= s?.force_stream_usage;
  const pricer = createPricer({ overrides: prices });
  const estimator = createEstimator({ pricer, reserveOutputTokens });
  return {
    detect,
    pricer,
    foresee: foreseeUsage,
    estimate: estimator.estimate,
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

/** The key of `upstream.resolve` entries in {@link AgentgateConfig}: `host` or `host port`. */

/**
 * `upstream:`: connect and response timeouts, the DNS server, and the
 * `resolve` overrides keyed by normalised host (`pinKey`: the host, or the
 * host and one port); look them up with {@link resolveUpstream}.
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
      Object.entries(upstream?.resolve ?? {}).map(([k, v]) => {
        const key = parseResolveKey(k) as { host: string; port: number | null };
        return [
          pinKey(normalizeHost(key.host), key.port),
          parseResolveTarget(v) as { host: string; port: number },
        ];
      }),
    ),
    upstream: {
      connectTimeoutMs: parseDuration(upstream?.connect_timeout ?? "10s"),
      responseTimeoutMs: parseDuration(upstream?.response_timeout ?? "5m"),
      dns: upstream?.dns ? parseDnsServer(upstream.dns) as { host: string; port: number } : null,
    },
  };
}

/**
 * Where `upstream.resolve` sends a request for `host` (normalised) and
 * `port`: the entry for `host:port` first, then the one for `host`;
 * undefined when neither exists (connect to the host itself).
 *
 * @example
 * ```ts
 * const { resolve } = upstreamSection({ resolve: { "llm.internal:8080": "127.0.0.1:9000" } });
 * resolveUpstream(resolve, "llm.internal", 8080); // { host: "127.0.0.1", port: 9000 }
 * resolveUpstream(resolve, "llm.internal", 80); // undefined
 * ```
 */
export function resolveUpstream(
  resolve: AgentgateConfig["resolve"],
  host: string,
  port: number,
): { host: string; port: number } | undefined {
  if (resolve.size === 0) return undefined;
  return resolve.get(pinKey(host, port)) ?? resolve.get(host);
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

/** One `credentials:` entry as the schema let it through. */
export interface RawCredential {
  name: string;
  preset?: string;
  env?: string;
  file?: string;
  command?: string[];
  hosts?: string[];
  paths?: string[];
  methods?: string[];
  header?: string | string[];
  format?: string | string[];
  basic?: boolean | { username?: string };
  query?: string;
  phantom?: { prefix?: string; length?: number; variables?: string[] };
  npmrc?: string;
  git?: boolean | string[];
}

/** Random characters of a phantom when only a prefix is given (with the marker: 340+ bits). */
const DEFAULT_PHANTOM_RANDOM = 48;

/**
 * `credentials:` (main file only): each entry over its preset, hosts and
 * paths compiled, sources resolved against the policy file (never read
 * here). Errors land at the entry's key; a host outside `tls.intercept`
 * (HTTPS requests to it are tunnels agentgate cannot read, so the phantom
 * is never swapped there) is a lint error.
 *
 * @example
 * ```ts
 * const creds = credentialsSection(main, intercept, errors, problems, cwd);
 * creds[0].scope.allowsHost("https", "api.openai.com", 443); // true
 * ```
 */
export function credentialsSection(
  main: Part,
  intercept: Matcher[],
  errors: Problem[],
  problems: (Problem & { lint?: boolean })[],
  cwd: string,
): CredentialSpec[] {
  const raw = (main.raw.credentials ?? []) as RawCredential[];
  const src = main.src;
  const out: CredentialSpec[] = [];
  const names = new Set<string>();
  const variables = new Map<string, string>();
  raw.forEach((c, i) => {
    const at = (key?: string) => src.nodeAt(key ? ["credentials", i, key] : ["credentials", i]);
    const err = (message: string, key?: string, offset = 0) =>
      errors.push(src.problem("error", at(key), message, offset));
    if (names.has(c.name)) {
      err(`credential name "${c.name}" is used twice`, "name");
      return;
    }
    names.add(c.name);
    const preset = c.preset === undefined ? null : PRESETS[c.preset];
    // Keys set in the policy replace the preset's; a place set replaces all of the preset's places.
    const ownPlace = c.header !== undefined || c.basic !== undefined || c.query !== undefined;
    const hostList = c.hosts ?? preset?.hosts ?? [];
    const matchers: Matcher[] = [];
    hostList.forEach((pattern, j) => {
      const node = c.hosts ? src.nodeAt(["credentials", i, "hosts", j]) : at("preset");
      try {
        const m = compileMatch(pattern);
        if (m.pathGlob !== null) {
          errors.push(src.problem(
            "error",
            node,
            `credential "${c.name}": hosts take host[:port], not paths: "${pattern}" (use paths:)`,
          ));
        } else if (m.host === null) {
          errors.push(src.problem(
            "error",
            node,
            `credential "${c.name}": "${pattern}" would let it go to every host; name the hosts`,
          ));
        } else matchers.push(m);
      } catch (e) {
        if (!(e instanceof PatternError)) throw e;
        errors.push(src.problem(
          "error",
          node,
          `invalid host glob "${pattern}" in credential "${c.name}": ${e.message}`,
          e.offset,
        ));
      }
    });
    const pathList = c.paths ?? preset?.paths ?? null;
    const pathMatchers: ((p: string) => boolean)[] = [];
    (pathList ?? []).forEach((glob, j) => {
      if (!glob.startsWith("/")) {
        errors.push(src.problem(
          "error",
          src.nodeAt(["credentials", i, "paths", j]),
          `credential "${c.name}": path glob "${glob}" must start with "/"`,
        ));
        return;
      }
      try {
        pathMatchers.push(picomatch(glob, { dot: true, strictSlashes: false }));
      } catch (e) {
        errors.push(src.problem(
          "error",
          src.nodeAt(["credentials", i, "paths", j]),
          `credential "${c.name}": invalid path glob "${glob}": ${(e as Error).message}`,
        ));
      }
    });
    const methodList = c.methods ?? preset?.methods ?? null;
    const formatsOf = (name: string) =>
      c.format === undefined
        ? [name === "authorization" ? "Bearer {secret}" : "{secret}"]
        : Array.isArray(c.format)
        ? c.format
        : [c.format];
    let headers: CredentialSpec["headers"] = ownPlace ? [] : preset?.headers ?? [];
    if (c.header !== undefined) {
      const names = (Array.isArray(c.header) ? c.header : [c.header]).map((h) => h.toLowerCase());
      headers = names.map((name) => ({ name, formats: formatsOf(name) }));
    } else if (c.format !== undefined) {
      headers = headers.map((h) => ({ name: h.name, formats: formatsOf(h.name) }));
    }
    if (headers.some((h) => h.name === "proxy-authorization")) {
      err(`credential "${c.name}": Proxy-Authorization is agentgate's own header`, "header");
    }
    let basic: CredentialSpec["basic"] = ownPlace ? null : preset?.basic ?? null;
    if (c.basic === true) basic = { username: null };
    else if (typeof c.basic === "object") basic = { username: c.basic.username ?? null };
    const query = c.query ?? (ownPlace ? null : preset?.query ?? null);
    const shape: PhantomShape = { ...(preset?.phantom ?? { prefix: "", sep: "-", random: 0 }) };
    if (c.phantom?.prefix !== undefined) shape.prefix = c.phantom.prefix;
    if (c.phantom?.length !== undefined) {
      shape.random = c.phantom.length - shape.prefix.length - MARKER.length - shape.sep.length;
      if (shape.random < 22) {
        err(
          `credential "${c.name}": a phantom of ${c.phantom.length} characters leaves ${
            Math.max(shape.random, 0)
          } random ones after "${shape.prefix}${MARKER}${shape.sep}"; make it at least ${
            c.phantom.length - shape.random + 22
          }`,
          "phantom",
        );
      }
    } else if (shape.random === 0) shape.random = DEFAULT_PHANTOM_RANDOM;
    const vars = c.phantom?.variables ?? preset?.variables ?? [];
    for (const v of vars) {
      const other = variables.get(v);
      if (other !== undefined) {
        err(
          `credential "${c.name}": variable "${v}" already holds credential "${other}"`,
          c.phantom?.variables ? "phantom" : "preset",
        );
      }
      variables.set(v, c.name);
    }
    const exactHosts = matchers.flatMap((m) => typeof m.host === "string" ? [m.host] : []);
    const git = c.git === true
      ? exactHosts
      : c.git === false
      ? []
      : Array.isArray(c.git)
      ? c.git.map((h) => h.toLowerCase())
      : preset?.git ?? [];
    if (git.length > 0 && basic === null) {
      err(`credential "${c.name}": git needs basic auth (basic: true)`, "git");
    }
    const source: CredentialSpec["source"] = c.env !== undefined
      ? { kind: "env", name: c.env }
      : c.file !== undefined
      ? { kind: "file", path: resolveFrom(main.src.file, c.file, cwd) }
      : {
        kind: "command",
        argv: c.command!,
        cwd: main.src.file.startsWith("<") ? cwd : dirname(resolve(cwd, main.src.file)),
      };
    const pos = src.pos(at());
    out.push({
      name: c.name,
      preset: c.preset ?? null,
      source,
      scope: {
        hosts: hostList,
        allowsHost: (scheme, host, port) =>
          matchers.some((m) => (m.scheme ?? "https") === scheme && matchHost(m, host, port)),
        paths: pathList,
        allowsPath: (p) => pathMatchers.length === 0 || pathMatchers.some((f) => f(p)),
        methods: methodList === null ? null : new Set(methodList.map((m) => m.toUpperCase())),
      },
      headers,
      basic,
      query,
      phantom: shape,
      variables: vars,
      npmrc: c.npmrc ?? preset?.npmrc ?? null,
      git,
      where: `${src.file}:${pos.line}`,
    });
    // HTTPS to a host that is not intercepted is a tunnel: nothing in it can be swapped.
    for (const [j, m] of matchers.entries()) {
      if ((m.scheme ?? "https") !== "https" || interceptsHost(intercept, m)) continue;
      const host = hostList[j].replace(/^https?:\/\//, "");
      problems.push({
        ...src.problem(
          "error",
          c.hosts ? src.nodeAt(["credentials", i, "hosts", j]) : at("preset"),
          `credential "${c.name}" names "${host}", which is not in tls.intercept: its HTTPS ` +
            "requests pass through a tunnel agentgate cannot read, so the phantom is never swapped " +
            `there; add "${host}" to tls.intercept`,
        ),
        lint: true,
      });
    }
  });
  return out;
}

/** Whether `tls.intercept` covers every host a pattern can match (a representative host for globs). */
function interceptsHost(intercept: Matcher[], m: Matcher): boolean {
  if (m.hostGlob === null) return false;
  const sample = m.hostGlob.replace(/\*+/g, "x").replace(/\?/g, "x");
  return intercept.some((i) => matchHost(i, sample, m.port ?? 443));
}
