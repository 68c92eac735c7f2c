/**
 * `agentgate [serve]`: run the proxy until SIGINT/SIGTERM.
 *
 * @module
 */
import { type CommandSpec, helpText, parseArgs } from "./args.ts";
import { configOption } from "./options.ts";
import type { Io } from "./io.ts";
import { loadForCommand } from "./config_arg.ts";
import { parseListen } from "../config/spec.ts";
import { AuditOpenError, AuditStore } from "../audit/store.ts";
import { JsonlSink } from "../audit/jsonl.ts";
import { AuditFanout, type AuditSink, type SinkStatus } from "../audit/sink.ts";
import type http from "node:http";
import { ProxyServer } from "../proxy/server.ts";
import { ProxyAuth } from "../proxy/auth.ts";
import { SessionRegistry } from "../proxy/sessions.ts";
import { CredentialBroker, Metrics, standardAddons } from "../proxy/addons/mod.ts";
import { loadSecrets, SecretLoadError } from "../proxy/secrets.ts";
import type { Secret } from "../util/secret.ts";
import { parseProxyAuthorization } from "../proxy/auth.ts";
import type { RedisState } from "../state/redis.ts";
import { Backends, type BackendStatus, redactUrl } from "../util/backends.ts";
import { NANO, PolicyState, type SpendRow } from "../state/mod.ts";
import { FileSpendJournal, journalPathFor } from "../audit/spend_journal.ts";
import { budgetsView } from "../policy/limits/budgets.ts";
import { openAuditReader } from "../audit/sqlite_read.ts";
import type { AuditReadModel } from "../audit/read.ts";
import type { AuditEventV1 } from "../audit/event.ts";
import { PgSchemaError, pgSource } from "../util/pg_url.ts";
import { VERSION } from "../version.ts";
import { type AgentgateConfig, loadDefaultConfig, type LoadOptions } from "../config/load.ts";
import { loadConfigOffThread } from "../config/offthread.ts";
import { ConfigError, formatProblem } from "../config/errors.ts";
import { createInternalRoutes, type ReloadStatus } from "../dashboard/routes.ts";
import { type FileWatch, watchFiles } from "../config/watch.ts";
import type { LeafStore } from "../tls/store.ts";
import { readSystemRoots } from "../tls/bundle.ts";

/** The interface of `serve`. */
export const serveSpec: CommandSpec = {
  name: "serve",
  summary: "Run the egress proxy (the default command).",
  usage: "agentgate [serve] [--config FILE] [--listen HOST:PORT] [--no-dashboard]",
  options: [
    configOption(),
    {
      name: "listen",
      short: "l",
      type: "string",
      value: "HOST:PORT",
      help: "Listen address; port 0 picks a free port (default: proxy.listen, 127.0.0.1:4100).",
    },
    { name: "no-dashboard", type: "boolean", help: "Do not serve /_/dashboard and /_/api." },
  ],
  epilog: [
    "The embedded default policy records every request and denies cloud metadata.",
    "Whatever the policy, a name is resolved once and every address is checked before",
    "agentgate connects: loopback, private, link-local and metadata addresses are refused",
    "unless a rule names them (or says allow_private: true). Stop with Ctrl-C (SIGINT) or",
    "SIGTERM: in-flight requests get up to 5 s to finish and the audit is flushed. Without",
    "audit.path the audit is agentgate.db in $AGENTGATE_HOME (default ~/.agentgate).",
    "",
    "stdout: the lines that point a shell at the proxy (export HTTP_PROXY=…); stderr: the",
    "banner, warnings and the log.",
    "",
    "Examples:",
    "  agentgate                                  # embedded default on 127.0.0.1:4100",
    "  agentgate --config agentgate.yaml",
    "  agentgate serve --listen 127.0.0.1:0        # ephemeral port, printed on start",
  ].join("\n"),
};

/** What `serve` runs, for a caller that drives it in-process (`agentgate run`). */
export interface Running {
  proxy: ProxyServer;
  /** Proxy authentication (`run` mints its session in `auth.sessions`). */
  auth: ProxyAuth;
  /** The credentials broker (`run` issues its session's phantoms here). */
  credentials: CredentialBroker;
}

/** Options a caller (tests, `run`) can pass besides argv. */
export interface ServeHooks {
  /** Called once the proxy listens. */
  onListening?: (address: { host: string; port: number }, running: Running) => void;
  /**
   * The proxy of `agentgate run`: credentials are required (the run's
   * session), no session can be minted through the API, and the policy is
   * read once — reloaded on changes, SIGHUP and the API only with `watch`,
   * each reload (applied or rejected) reported to `onReload`.
   */
  run?: { watch: boolean; onReload?: (status: ReloadStatus) => void };
  /** false: print no start banner (`run` prints its own line). */
  banner?: boolean;
}

/** Run the proxy until `io.signal` aborts. */
export async function serve(args: string[], io: Io, hooks: ServeHooks = {}): Promise<number> {
  const parsed = parseArgs(serveSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(serveSpec));
    return 0;
  }
  let listenFlag: { host: string; port: number } | undefined;
  if (typeof parsed.opts.listen === "string") {
    const l = parseListen(parsed.opts.listen);
    if (typeof l === "string") {
      io.stderr(`agentgate: --listen: ${l}\n`);
      return 2;
    }
    listenFlag = l;
  }
  // The flags that decide whether the policy may be served go to the loader,
  // which alone decides what is an error (a public address without proxy.auth
  // is one for check as for serve).
  const loadOpts: LoadOptions = {
    listen: listenFlag,
    dashboard: parsed.opts["no-dashboard"] ? false : undefined,
  };
  const got = await loadForCommand(parsed.opts.config as string | undefined, io, {
    load: loadOpts,
  });
  if (got === null) {
    io.stderr("agentgate: not started: the policy has errors\n");
    return 1;
  }
  const { config } = got.loaded;
  const listen = listenFlag ?? config.listen;

  // Budgets survive a crash: reservations and settlements are journaled
  // synchronously, the audit catches up in batches.
  const journalPath = journalPathFor(config.audit.path);
  let journal: FileSpendJournal | null = null;
  if (journalPath !== null) {
    try {
      journal = FileSpendJournal.open(journalPath, { log: (m) => io.stderr(m + "\n") });
    } catch (e) {
      io.stderr(
        `agentgate: not started: cannot open the spend journal "${journalPath}": ${
          (e as Error).message
        }\n`,
      );
      return 1;
    }
  }
  // The real secrets of `credentials:`: read now, before anything listens.
  let secrets: Map<string, Secret>;
  try {
    const got = await loadSecrets(config.credentials, io.env);
    secrets = got.secrets;
    for (const w of got.warnings) io.stderr(`agentgate: warning: ${w}\n`);
  } catch (e) {
    if (!(e instanceof SecretLoadError)) throw e;
    io.stderr("agentgate: not started: a credential's secret cannot be loaded:\n");
    for (const p of e.problems) io.stderr(p + "\n");
    return 1;
  }

  // The audit: SQLite, or PostgreSQL with its spool; and the decision streams.
  let audit: AuditFanout;
  const env = (k: string) => io.env(k);
  const streams: AuditSink[] = [];
  try {
    const onWritten = journal
      ? (events: readonly AuditEventV1[]) => journal.written(events)
      : undefined;
    // The PostgreSQL, OTLP and Redis clients are loaded only when the policy
    // names them: each npm client costs 10-20 MiB of resident memory at start.
    const primary = config.audit.postgres
      ? await (await import("../audit/pg_store.ts")).PgAuditStore.open(config.audit.postgres, {
        env,
        spoolPath: config.audit.spoolPath,
        spoolMaxBytes: config.audit.spoolMaxBytes,
        retentionMs: config.audit.retentionMs,
        log: (m) => io.stderr(m + "\n"),
        onWritten,
      })
      : AuditStore.open(config.audit.path, {
        retentionMs: config.audit.retentionMs,
        log: (m) => io.stderr(m + "\n"),
        onWritten,
      });
    audit = new AuditFanout(primary, streams);
    if (config.audit.jsonl) {
      streams.push(await JsonlSink.open(config.audit.jsonl, { log: (m) => io.stderr(m + "\n") }));
    }
    if (config.audit.otlp) {
      const { OtlpSink } = await import("../audit/otlp.ts");
      streams.push(
        new OtlpSink(config.audit.otlp, {
          version: VERSION,
          instance: Deno.hostname(),
          log: (m) => io.stderr(m + "\n"),
        }),
      );
    }
  } catch (e) {
    journal?.close();
    for (const s of streams) await s.close();
    // The audit cannot be opened or migrated, the stream's file cannot be opened: not started.
    const known = e instanceof AuditOpenError || e instanceof PgSchemaError ||
      Object.values(Deno.errors).some((c) => e instanceof c);
    if (!known) throw e;
    io.stderr(`agentgate: not started: ${(e as Error).message}\n`);
    return 1;
  }

  let leaves: LeafStore | undefined;
  let upstreamCa: string[] | undefined;
  let caLine = "";
  if (config.tls.intercept.length > 0) {
    // The CA and the leaf issuer (node-forge: 1.7 MB of live heap at rest,
    // measured with a plain policy) are loaded only when the policy intercepts.
    const { CaError, loadOrCreateCA } = await import("../tls/ca.ts");
    try {
      const ca = await loadOrCreateCA(config.tls.caDir ?? undefined);
      for (const w of ca.warnings) io.stderr(`agentgate: warning: ${w}\n`);
      const { LeafStore } = await import("../tls/store.ts");
      leaves = new LeafStore(ca, { keyType: config.tls.leafKey });
      await leaves.warmUp();
      caLine = `CA:     ${ca.certPath} (${
        ca.created ? "created now" : "loaded"
      }; clients must trust it, see \`agentgate ca\`)`;
      upstreamCa = (await readSystemRoots()).pems;
      for (const file of config.tls.upstreamCa) {
        const text = await Deno.readTextFile(file).catch(() => {
          throw new CaError(`tls.upstream_ca "${file}" cannot be read`);
        });
        const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
        if (!pems) throw new CaError(`tls.upstream_ca "${file}" holds no PEM certificate`);
        upstreamCa.push(...pems);
      }
    } catch (e) {
      await audit.close();
      journal?.close();
      if (e instanceof CaError) {
        io.stderr(`agentgate: not started: ${(e as Error).message}\n`);
        return 1;
      }
      throw e;
    }
  }

  // --- live reload: SIGHUP, POST /_/api/reload, and changes to the policy files ---
  let lastReload: ReloadStatus | null = null;
  let reloading: Promise<ReloadStatus> | null = null;
  const configPath = got.source === "embedded"
    ? null
    : (parsed.opts.config as string | undefined) ?? "agentgate.yaml";
  const reload = (trigger: string): Promise<ReloadStatus> => {
    // One reload at a time; a trigger during one joins it.
    reloading ??= (async () => {
      const at = Date.now();
      try {
        // Off the serving path: parsed and checked in a worker, compiled in slices.
        const next = configPath === null
          ? loadDefaultConfig(io.cwd, loadOpts)
          : await loadConfigOffThread(configPath, io.cwd, { load: loadOpts });
        // Sources are read again (rotation); requests in flight keep the values they started with.
        const loaded = await loadSecrets(next.config.credentials, io.env);
        credentials.install(next.config, loaded.secrets);
        const { warnings } = proxy.reload(next.config);
        warnings.push(...loaded.warnings);
        const lint = next.problems.map(formatProblem);
        lastReload = {
          ok: true,
          at,
          trigger,
          errors: [],
          warnings: [...warnings, ...lint],
          rules: next.config.policy.rules.length,
        };
        io.stderr(
          `agentgate: policy reloaded (${trigger}): ${next.config.policy.rules.length} rule(s)\n`,
        );
        for (const w of warnings) io.stderr(`agentgate: warning: ${w}\n`);
        watchPolicy(next.config.files);
      } catch (e) {
        if (!(e instanceof ConfigError) && !(e instanceof SecretLoadError)) throw e;
        const errors = e instanceof ConfigError
          ? e.problems.filter((p) => p.severity === "error").map(formatProblem)
          : e.problems;
        const warnings = e instanceof ConfigError
          ? e.problems.filter((p) => p.severity !== "error").map(formatProblem)
          : [];
        lastReload = { ok: false, at, trigger, errors, warnings };
        io.stderr(`agentgate: reload (${trigger}) rejected, the previous policy stays in force:\n`);
        for (const line of errors) io.stderr(line + "\n");
      }
      hooks.run?.onReload?.(lastReload);
      return lastReload;
    })().finally(() => (reloading = null));
    return reloading;
  };
  let watcher: FileWatch | null = null;
  let watched = "";
  const watchPolicy = (files: string[]) => {
    const key = [...files].sort().join("\n");
    if (key === watched || files.length === 0) return;
    watched = key;
    watcher?.close();
    // Polls stat, never opens the files (see src/config/watch.ts for why).
    watcher = watchFiles(files, () => void reload("file change"));
  };
  // `agentgate run` reads its policy once unless told to watch it: the command
  // it runs could otherwise rewrite the policy and have it reloaded.
  const live = hooks.run === undefined || hooks.run.watch;
  if (live) io.onHangup?.(() => void reload("SIGHUP"));

  const log = (l: string) => io.stderr(l + "\n");
  const startedAt = Date.now();
  const state = new PolicyState({ startedAt });
  // The dashboard and the spend rebuild read the audit through its read model.
  const reader: AuditReadModel = config.audit.postgres
    ? (await import("../audit/pg_read.ts")).openPgAuditReader(config.audit.postgres, env)
    : openAuditReader(config.audit.path);
  // Budgets survive restarts: the ledger is rebuilt from the audit's charges
  // and the journal's entries the audit lacks, before the first request is decided.
  await rebuildSpend(state, reader, journal, startedAt, log);
  // The fleet view: every external backend reports its status here.
  const backends = new Backends();
  let redis: RedisState | null = null;
  if (config.state !== null) {
    const s = config.state;
    const password = s.passwordEnv === null ? null : Deno.env.get(s.passwordEnv) ?? null;
    if (s.passwordEnv !== null && password === null) {
      io.stderr(
        `agentgate: state.password_env names "${s.passwordEnv}", which is not set: connecting to ${
          redactUrl(s.redis)
        } without a password\n`,
      );
    }
    const { RedisState } = await import("../state/redis.ts");
    redis = await RedisState.open({
      url: s.redis,
      password,
      onError: s.onError,
      timeoutMs: s.timeoutMs,
      queueMax: s.queueMax,
      caFile: s.caFile,
      log,
    });
    state.shared = redis;
    backends.add(redis);
  }
  // Audit sinks other than the SQLite file are backends of the fleet view too.
  for (const [i, sink] of [audit.primary, ...audit.streams].entries()) {
    if (sink.status().kind === "sqlite") continue;
    backends.add({ status: () => sinkBackend(sink.status(), i === 0 ? "audit" : "stream") });
  }
  const sessions = new SessionRegistry();
  const auth: ProxyAuth = new ProxyAuth((): AgentgateConfig => proxy.config, sessions);
  if (hooks.run) auth.requireCredentials = true;
  const metrics: Metrics = new Metrics({
    auditQueueDepth: () => audit.queueDepth,
    auditWriteErrors: () => audit.writeErrors,
    auditSpool: config.audit.postgres
      ? () => {
        const st = audit.primary.status();
        return { rows: st.spooled, bytes: st.spool_bytes ?? 0, full: st.spool_full === true };
      }
      : undefined,
    tunnelsOpen: (): number => proxy.tunnelsOpen,
    leafCacheSize: () => leaves?.size ?? 0,
    backends: () => backends.list(),
  });
  const credentials = new CredentialBroker({ metrics });
  credentials.install(config, secrets);
  // A session's phantoms end with it.
  sessions.onEnd = (id) => credentials.forget(id);
  const routes = createInternalRoutes({
    version: VERSION,
    startedAt,
    reader,
    audit,
    config: () => proxy.config,
    metrics,
    dashboard: config.dashboard,
    token: config.dashboardToken,
    reload: live ? () => reload("api") : undefined,
    reloadRefusal: live
      ? undefined
      : "agentgate run reads its policy once (start it with --watch to reload)",
    lastReload: () => lastReload,
    backends: () => backends.list(),
    sessions: hooks.run ? undefined : {
      mint: (o) => {
        const grant = sessions.mint(o);
        return { ...grant, credentials: credentials.issue(grant.session, proxy.config) };
      },
      revoke: (id) => sessions.revoke(id),
    },
    budgets: (maxKeys) => budgetsView(proxy.config.policy, state, Date.now(), { maxKeys }),
    phantoms: (header) => {
      const creds = parseProxyAuthorization(header);
      const who = creds === null ? null : auth.identify(creds);
      return who === null
        ? null
        : { session: who.session, credentials: credentials.issue(who.session, proxy.config) };
    },
  });
  const proxy: ProxyServer = new ProxyServer({
    config,
    audit,
    state,
    addons: standardAddons({
      auth,
      state,
      journal: journal ?? undefined,
      metrics,
      log,
      credentials,
    }),
    internal: (req, res) => {
      const path = (req.url ?? "/").replace(/^https?:\/\/[^/]+/, "").split("?")[0];
      // The routes use the IncomingMessage / ServerResponse subset H1Request / H1Response implement.
      routes(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse, path);
    },
    log,
    leaves,
    upstreamCa,
  });
  let address: { host: string; port: number };
  try {
    address = await proxy.listen(listen.host, listen.port);
  } catch (e) {
    routes.close();
    await audit.close();
    journal?.close();
    await redis?.close(0);
    const code = (e as { code?: string }).code;
    const why = code === "EADDRINUSE"
      ? "address already in use (another agentgate? use --listen 127.0.0.1:0 for a free port)"
      : (e as Error).message;
    io.stderr(`agentgate: cannot listen on ${listen.host}:${listen.port}: ${why}\n`);
    return 1;
  }
  const hostForUrl = address.host.includes(":") ? `[${address.host}]` : address.host;
  const url = `http://${hostForUrl}:${address.port}`;
  const policyLine = got.source === "embedded"
    ? "embedded default (records everything; denies cloud metadata, loopback and private addresses)"
    : `${config.file} (${config.policy.rules.length} rule(s), default ${config.policy.defaultAction}, mode ${config.policy.mode}${
      config.format === "agentreserve" ? ", @agentreserve/proxy format" : ""
    })`;
  // Prose on stderr; on stdout only the lines a shell can source
  // (`agentgate --listen 127.0.0.1:0 > proxy.env &` then `. ./proxy.env`).
  if (hooks.banner !== false) {
    const client = clientLines(url, config, got.source === "embedded" ? null : config.file);
    io.stderr(
      [
        `agentgate ${VERSION} listening on ${url}`,
        `policy: ${policyLine}`,
        `audit:  ${auditLine(config)}`,
        ...(redis ? [`state:  ${redis.url} (on_state_error: ${redis.onError})`] : []),
        ...(caLine ? [caLine] : []),
        ...(config.dashboard ? [`dashboard: ${url}/_/dashboard`] : []),
        "",
        client.intro,
        "",
      ].join("\n"),
    );
    io.stdout([...client.exports, ""].join("\n"));
    io.stderr([...client.more, ""].join("\n"));
  }
  hooks.onListening?.(address, { proxy, auth, credentials });
  if (live) watchPolicy(config.files);

  await new Promise<void>((resolve) => {
    if (!io.signal || io.signal.aborted) return resolve();
    io.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  (watcher as FileWatch | null)?.close();
  io.stderr("agentgate: shutting down (finishing in-flight requests, up to 5 s)\n");
  const { forced } = await proxy.shutdown(5000);
  // The dashboard's read connection goes first, so the writer's close can checkpoint the WAL.
  routes.close();
  await audit.close();
  journal?.close();
  await redis?.close();
  io.stderr(
    `agentgate: stopped; ${proxy.counters.requests} request(s) handled${
      forced ? `, ${forced} cut at shutdown` : ""
    }, audit flushed (${audit.written} row(s) written)\n`,
  );
  return 0;
}

/**
/**
 * The banner's "Point clients at it" lines: `intro` and `more` are prose
 * (stderr), `exports` the lines a shell can source (stdout, between them).
 * Under `proxy.auth` every client needs a token, so the URLs carry one — as
 * the placeholder `TOKEN`: a token is never printed (the banner reaches logs).
 *
 * @example
 * clientLines("http://127.0.0.1:4100", config, "agentgate.yaml")
 * // { intro: "Point clients at it:",
 * //   exports: ["  export HTTP_PROXY=http://127.0.0.1:4100 HTTPS_PROXY=…", "  export http_proxy=…"],
 * //   more: ["or with every variable …", '  eval "$(agentgate env --config agentgate.yaml)"'] }
 */
export function clientLines(
  url: string,
  config: AgentgateConfig,
  file: string | null,
): { intro: string; exports: string[]; more: string[] } {
  const auth = config.proxyAuth.length > 0;
  const p = auth ? url.replace(/^http:\/\//, "http://TOKEN@") : url;
  const envLine = `  eval "$(agentgate env${file === null ? "" : ` --config ${file}`}${
    auth ? ` --proxy ${p}` : ""
  })"`;
  return {
    intro: auth
      ? `Point clients at it, with one of the proxy.auth tokens in place of TOKEN (labels: ${
        config.proxyAuth.map((t) => t.label).join(", ")
      }):`
      : "Point clients at it:",
    exports: [
      `  export HTTP_PROXY=${p} HTTPS_PROXY=${p}`,
      `  export http_proxy=${p} https_proxy=${p}`,
    ],
    more: [
      "",
      "or with every variable clients read (the CA's too, when TLS is intercepted):",
      envLine,
    ],
  };
}

/**
 * The spend ledger rebuilt from the audit's charged rows of the last 32 days
 * (the longest budget window) plus what the spend journal holds that the
 * audit does not: calls settled but not yet written, and calls that were in
 * flight when the process died, at their reserved amount.
 */
async function rebuildSpend(
  state: PolicyState,
  reader: AuditReadModel,
  journal: FileSpendJournal | null,
  now: number,
  log: (line: string) => void,
): Promise<void> {
  let rows: SpendRow[] = [];
  try {
    rows = await reader.spendRows(now - 32 * 86_400_000);
  } catch (e) {
    log(`agentgate: could not rebuild spending from the audit: ${(e as Error).message}`);
  }
  if (journal !== null) {
    // A settled entry with a charge is in the audit once its row was written;
    // any other entry (unsettled, or settled at 0) never is.
    const charged = new Set(rows.map((r) => r.id));
    for (const e of journal.reconcile((id) => charged.has(id), now)) {
      const nano = e.chargedNano ?? e.reservedNano;
      if (nano <= 0) continue;
      rows.push({
        ts: e.ts,
        usd: nano / NANO,
        session: e.session,
        host: e.host,
        client: e.client,
        rule: e.rule,
        spend_keys: e.keys,
      });
    }
  }
  state.ledger.rebuild(rows);
}

/** The banner's audit line: where rows go, and the streams. */
/** An audit sink's status as the fleet view shows a backend (spooled rows count as queued). */
function sinkBackend(st: SinkStatus, name: string): BackendStatus {
  return {
    name,
    kind: st.kind,
    url: st.target,
    up: st.up,
    latency_ms: st.latency_ms,
    errors: st.errors,
    last_error: st.last_error,
    queued: st.queued + st.spooled,
    dropped: st.dropped,
    mode: st.spooled > 0 ? "spool" : null,
  };
}

function auditLine(config: AgentgateConfig): string {
  const a = config.audit;
  const main = a.postgres
    ? `${pgSource(a.postgres)} (spool ${a.spoolPath}, password from $${a.postgres.passwordEnv})`
    : a.path;
  const streams = [
    ...(a.jsonl ? [`jsonl ${a.jsonl === "-" ? "stdout" : a.jsonl}`] : []),
    ...(a.otlp ? [`otlp ${a.otlp}`] : []),
  ];
  return streams.length ? `${main}; streams: ${streams.join(", ")}` : main;
}
