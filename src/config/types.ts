/**
 * The loaded configuration's type: what `load.ts` produces and every other
 * part of agentgate reads.
 *
 * @module
 */
import type { PgTarget } from "../util/pg_url.ts";
import type { Matcher } from "../policy/match.ts";
import type { CompiledPolicy, LlmSettings } from "../policy/engine.ts";
import type { CredentialSpec } from "../credentials/mod.ts";

/** A loaded, compiled configuration. */
export interface AgentgateConfig {
  /** The file it came from (or `<embedded default>`). */
  file: string;
  /** Absolute paths of every file it was loaded from (the file and its includes). */
  files: string[];
  format: "v1" | "agentreserve";
  embedded: boolean;
  listen: { host: string; port: number };
  dashboard: boolean;
  /**
   * Accepted proxy tokens (`proxy.auth`), each with its session label (the
   * session id of every request made with it); empty = no static tokens.
   */
  proxyAuth: { token: string; label: string }[];
  /**
   * Environment variables the policy reads tokens and secrets from
   * (`proxy.auth` `token_env`, `dashboard.token_env`, a credential's `env`):
   * `agentgate run` keeps them from its command.
   */
  secretEnv: string[];
  /** Dashboard/API bearer token (from `dashboard.token` or `dashboard.token_env`), or null. */
  dashboardToken: string | null;
  policy: CompiledPolicy;
  audit: {
    /** The SQLite audit (also where the spend journal lives, whatever the backend). */
    path: string;
    retentionMs: number;
    /** `audit.postgres`: the audit in PostgreSQL instead of the SQLite file, or null. */
    postgres: PgTarget | null;
    /** Where rows wait while PostgreSQL cannot take them, and the bound in bytes. */
    spoolPath: string;
    spoolMaxBytes: number;
    /** `audit.jsonl`: every row as a JSON line to this file, or `-` for stdout; null: off. */
    jsonl: string | null;
    /** `audit.otlp`: every row as an OpenTelemetry log record, POSTed here (…/v1/logs); null: off. */
    otlp: string | null;
  };

  /**
   * `state:`: limits' counters shared by a fleet in Redis, or null (in this
   * process). Bound at start: a reload does not reconnect.
   */
  state: {
    redis: string;
    /** The variable holding the password, or null. */
    passwordEnv: string | null;
    /** Absolute path of the CA of a `rediss://` server, or null. */
    caFile: string | null;
    onError: "deny" | "allow" | "local";
    timeoutMs: number;
    queueMax: number;
  } | null;
  upstream: {
    connectTimeoutMs: number;
    responseTimeoutMs: number;
    /** `upstream.dns`: the DNS server for upstream names, or null for the system resolver. */
    dns: { host: string; port: number } | null;
  };
  limits: {
    maxBodyBytes: number;
    maxScanBytes: number;
    /** `limits.ambiguous_paths`: deny a path servers read differently, or forward it canonical. */
    ambiguousPaths: "deny" | "normalize";
    /** Most bytes a compressed body is inflated to for usage parsing and DLP. */
    maxDecompressedBytes: number;
    /** Most decompressed bytes per compressed byte (past 1 MiB of output). */
    maxDecompressionRatio: number;
    /** Time custom DLP regexes may take per scan (a request body, a response chunk). */
    maxRegexScanMs: number;
    /** A CONNECT tunnel idle this long is closed. */
    tunnelIdleMs: number;
    /** Open CONNECT tunnels per client address. */
    maxTunnelsPerClient: number;
  };
  tls: {
    /** Compiled `tls.intercept` host globs (empty: nothing is intercepted). */
    intercept: Matcher[];
    /** CA directory, or null for the default ($AGENTGATE_HOME or ~/.agentgate). */
    caDir: string | null;
    /** Absolute paths of extra upstream roots. */
    upstreamCa: string[];
    leafKey: "ecdsa-p256" | "rsa-2048";
  };
  /** `agentgate run` / `env` settings. */
  run: { noProxy: string[] | null };
  /**
   * `upstream.resolve`: host (or host and port, see `pinKey`) -> the address
   * to connect to instead; `knownDestination` reads it.
   */
  resolve: Map<string, { host: string; port: number }>;
  llm: LlmSettings;
  /**
   * `credentials:`: where each real secret comes from (never the secret:
   * it is read at start and on reload, beside the configuration), where it
   * may be used and how it is presented.
   */
  credentials: CredentialSpec[];
}
