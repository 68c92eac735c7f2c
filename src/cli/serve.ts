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
import type http from "node:http";
import { ProxyServer } from "../proxy/server.ts";
import { ProxyAuth } from "../proxy/auth.ts";
import { Metrics, standardAddons } from "../proxy/addons/mod.ts";
import { PolicyState } from "../state/mod.ts";
import { openAuditReader } from "../audit/sqlite_read.ts";
import type { AuditReadModel } from "../audit/read.ts";
import { VERSION } from "../version.ts";
import { type AgentgateConfig, loadDefaultConfig } from "../config/load.ts";
import { loadConfigOffThread } from "../config/offthread.ts";
import { ConfigError, formatProblem } from "../config/errors.ts";
import { createInternalRoutes, type ReloadStatus } from "../dashboard/routes.ts";
import { type FileWatch, watchFiles } from "../config/watch.ts";
import { CaError, loadOrCreateCA } from "../tls/ca.ts";
import { LeafStore } from "../tls/store.ts";
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
    "The embedded default policy records every request and denies cloud-metadata",
    "and link-local addresses. Stop with Ctrl-C (SIGINT) or SIGTERM: in-flight requests",
    "get up to 5 s to finish and the audit is flushed.",
    "",
    "Examples:",
    "  agentgate                                  # embedded default on 127.0.0.1:4100",
    "  agentgate --config agentgate.yaml",
    "  agentgate serve --listen 127.0.0.1:0        # ephemeral port, printed on start",
  ].join("\n"),
};

/** Whether a listen host only accepts local connections. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** What `serve` runs, for a caller that drives it in-process (`agentgate run`). */
export interface Running {
  proxy: ProxyServer;
  /** Proxy authentication (`run` adds its session token). */
  auth: ProxyAuth;
}

/** Options a caller (tests, `run`) can pass besides argv. */
export interface ServeHooks {
  /** Called once the proxy listens. */
  onListening?: (address: { host: string; port: number }, running: Running) => void;
}

/** Run the proxy until `io.signal` aborts. */
export async function serve(args: string[], io: Io, hooks: ServeHooks = {}): Promise<number> {
  const parsed = parseArgs(serveSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(serveSpec));
    return 0;
  }
  const got = await loadForCommand(parsed.opts.config as string | undefined, io, {
    lintAsWarnings: true,
  });
  if (got === null) {
    io.stderr("agentgate: not started: the policy has errors\n");
    return 1;
  }
  const { config } = got.loaded;
  let listen = config.listen;
  if (typeof parsed.opts.listen === "string") {
    const l = parseListen(parsed.opts.listen);
    if (typeof l === "string") {
      io.stderr(`agentgate: --listen: ${l}\n`);
      return 2;
    }
    listen = l;
  }
  if (parsed.opts["no-dashboard"]) config.dashboard = false;
  if (!isLoopback(listen.host) && config.proxyAuth.length === 0) {
    io.stderr(
      `agentgate: not started: ${listen.host}:${listen.port} is not a loopback address, so the ` +
        "proxy needs credentials: set proxy.auth (tokens or { env: NAME })\n",
    );
    return 1;
  }
  if (!isLoopback(listen.host) && config.dashboard && config.dashboardToken === null) {
    io.stderr(
      `agentgate: not started: ${listen.host}:${listen.port} is not a loopback address, so the ` +
        "dashboard needs a token: set dashboard.token (or dashboard.token_env), or use --no-dashboard\n",
    );
    return 1;
  }

  let audit: AuditStore;
  try {
    audit = AuditStore.open(config.audit.path, {
      retentionMs: config.audit.retentionMs,
      log: (m) => io.stderr(m + "\n"),
    });
  } catch (e) {
    if (!(e instanceof AuditOpenError)) throw e;
    io.stderr(`agentgate: not started: ${e.message}\n`);
    return 1;
  }

  let leaves: LeafStore | undefined;
  let upstreamCa: string[] | undefined;
  let caLine = "";
  if (config.tls.intercept.length > 0) {
    try {
      const ca = await loadOrCreateCA(config.tls.caDir ?? undefined);
      for (const w of ca.warnings) io.stderr(`agentgate: warning: ${w}\n`);
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
      audit.close();
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
          ? loadDefaultConfig(io.cwd)
          : await loadConfigOffThread(configPath, io.cwd);
        if (parsed.opts["no-dashboard"]) next.config.dashboard = false;
        const { warnings } = proxy.reload(next.config);
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
        if (!(e instanceof ConfigError)) throw e;
        const errors = e.problems.map(formatProblem);
        lastReload = { ok: false, at, trigger, errors, warnings: [] };
        io.stderr(`agentgate: reload (${trigger}) rejected, the previous policy stays in force:\n`);
        for (const line of errors) io.stderr(line + "\n");
      }
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
  io.onHangup?.(() => void reload("SIGHUP"));

  const log = (l: string) => io.stderr(l + "\n");
  const startedAt = Date.now();
  const state = new PolicyState({ startedAt });
  // The dashboard and the spend rebuild read the audit through its read model.
  const reader = openAuditReader(config.audit.path);
  // Budgets survive restarts: the ledger is rebuilt from the audit's costs
  // before the first request can be decided.
  await rebuildSpend(state, reader, startedAt, log);
  const auth: ProxyAuth = new ProxyAuth((): AgentgateConfig => proxy.config);
  const metrics: Metrics = new Metrics({
    auditQueueDepth: () => audit.queueDepth,
    auditWriteErrors: () => audit.writeErrors,
    tunnelsOpen: (): number => proxy.tunnelsOpen,
    leafCacheSize: () => leaves?.size ?? 0,
  });
  const routes = createInternalRoutes({
    version: VERSION,
    startedAt,
    reader,
    audit,
    config: () => proxy.config,
    metrics,
    dashboard: config.dashboard,
    token: config.dashboardToken,
    reload: () => reload("api"),
    lastReload: () => lastReload,
  });
  const proxy: ProxyServer = new ProxyServer({
    config,
    audit,
    state,
    addons: standardAddons({ auth, state, metrics, log }),
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
    audit.close();
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
    ? "embedded default (records everything; denies cloud metadata and link-local addresses)"
    : `${config.file} (${config.policy.rules.length} rule(s), default ${config.policy.defaultAction}, mode ${config.policy.mode}${
      config.format === "agentreserve" ? ", @agentreserve/proxy format" : ""
    })`;
  io.stdout(
    [
      `agentgate ${VERSION} listening on ${url}`,
      `policy: ${policyLine}`,
      `audit:  ${config.audit.path}`,
      ...(caLine ? [caLine] : []),
      ...(config.dashboard ? [`dashboard: ${url}/_/dashboard`] : []),
      "",
      "Point clients at it:",
      `  export HTTP_PROXY=${url} HTTPS_PROXY=${url}`,
      `  export http_proxy=${url} https_proxy=${url}`,
      "",
    ].join("\n"),
  );
  hooks.onListening?.(address, { proxy, auth });
  watchPolicy(config.files);

  await new Promise<void>((resolve) => {
    if (!io.signal || io.signal.aborted) return resolve();
    io.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  (watcher as FileWatch | null)?.close();
  io.stderr("agentgate: shutting down (finishing in-flight requests, up to 5 s)\n");
  const { forced } = await proxy.shutdown(5000);
  // The dashboard's read connection goes first, so the writer's close can checkpoint the WAL.
  routes.close();
  audit.close();
  io.stderr(
    `agentgate: stopped; ${proxy.counters.requests} request(s) handled${
      forced ? `, ${forced} cut at shutdown` : ""
    }, audit flushed (${audit.written} row(s) written)\n`,
  );
  return 0;
}

/** The spend ledger rebuilt from the audit's priced rows of the last 31 days. */
async function rebuildSpend(
  state: PolicyState,
  reader: AuditReadModel,
  now: number,
  log: (line: string) => void,
): Promise<void> {
  try {
    const rows = await reader.spendRows(now - 31 * 86_400_000);
    state.ledger.rebuild(rows);
  } catch (e) {
    log(`agentgate: could not rebuild spending from the audit: ${(e as Error).message}`);
  }
}
