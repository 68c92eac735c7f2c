/**
 * `agentgate run -- CMD ARGS…`: run a command (an agent, a test suite) with
 * every request it and its descendants make going through agentgate, as one
 * session; then report what happened and exit with the command's code.
 *
 * The proxy runs in this process on an ephemeral loopback port (or a running
 * one is used, `--proxy`, where the run mints its session through the API).
 * The child finds it through the environment (see `env.ts`), with the
 * session id and its secret as proxy credentials, so the proxy attributes
 * every request through `Proxy-Authorization` — and only to that session:
 * the child cannot name another. The policy is read once (`--watch`
 * reloads it, and the report lists every reload).
 *
 * @module
 */
import http from "node:http";
import { existsSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { configOption, proxyOption } from "./options.ts";
import type { Io } from "./io.ts";
import { type Running, serve } from "./serve.ts";
import { childEnvironment, isolationUnavailable, runIsolated } from "./isolate.ts";
import { loadForCommand } from "./config_arg.ts";
import {
  mergeEnvironment,
  noProxyOf,
  parseProxyUrl,
  phantomEnvironment,
  proxyEnvironment,
  type ProxyTarget,
  proxyUrlWith,
} from "./env.ts";
import type { IssuedCredential } from "../credentials/mod.ts";
import type { AgentgateConfig } from "../config/load.ts";
import {
  CA_CERT_FILE,
  CaError,
  type CertificateAuthority,
  defaultCaDir,
  expandHome,
  loadOrCreateCA,
} from "../tls/ca.ts";
import { trustVariables } from "./trust.ts";
import { npmConfiguredProxies, npmrcLayers } from "./npmrc.ts";
import {
  buildReport,
  openAuditForReport,
  openConfiguredAudit,
  type PolicyReload,
  type Report,
  ReportSourceError,
  type RunFacts,
} from "../report/build.ts";
import { LABEL_PATTERN, newSessionId } from "../util/session_id.ts";
import { currentIdentity, policyReach } from "./policy_reach.ts";
import { AuditReadError, type AuditReadModel, type AuditRow } from "../audit/read.ts";
import { auditFromRows } from "../audit/memory.ts";
import {
  formatMarkdown,
  formatReport,
  REPORT_FORMATS,
  type ReportFormat,
} from "../report/format.ts";

/** Exit code when `--fail-on-deny` is set, the command succeeded, and a request was denied. */
export const EXIT_DENIED = 3;
/** Exit code when the command cannot be found (as in POSIX shells). */
export const EXIT_NOT_FOUND = 127;
/** Exit code when the command exists but cannot be executed (as in POSIX shells). */
export const EXIT_NOT_EXECUTABLE = 126;

export { LABEL_PATTERN, newSessionId, trustVariables };

/** Variables of agentgate's own secrets, never handed to the command (on top of the policy's `token_env`s). */
export const SECRET_VARS = ["AGENTGATE_TOKEN", "AGENTGATE_DASHBOARD_TOKEN"] as const;

/** The interface of `run`. */
export const runSpec: CommandSpec = {
  name: "run",
  summary: "Run a command with all its traffic going through agentgate, then print a report.",
  usage:
    "agentgate run [--config FILE] [--label LABEL] [--proxy URL] [--fail-on-deny] [--watch]\n" +
    "                     [--report text|markdown|json|none] [--report-file FILE] [--override-env]\n" +
    "                     [--isolate] -- CMD [ARGS…]",
  options: [
    configOption(),
    {
      name: "label",
      short: "l",
      type: "string",
      value: "LABEL",
      help: "Name of this run in the audit and dashboard (session id: LABEL-<random hex>).",
    },
    proxyOption(
      "Use a running agentgate instead of starting one: http://HOST:PORT. The run mints its " +
        "session there (POST /_/api/sessions with $AGENTGATE_DASHBOARD_TOKEN) and revokes it at the end.",
    ),
    {
      name: "watch",
      type: "boolean",
      help:
        "Reload the policy when its files change (default: read once); every reload is in the report.",
    },
    {
      name: "fail-on-deny",
      type: "boolean",
      help:
        `Exit ${EXIT_DENIED} when a request of this run was denied (the command's own failure wins).`,
    },
    {
      name: "report",
      short: "r",
      type: "string",
      value: "FORMAT",
      choices: [...REPORT_FORMATS, "none"],
      help: "Report printed on stderr after the command: text (default), markdown, json or none.",
    },
    {
      name: "report-file",
      type: "string",
      value: "FILE",
      help: "Write the report to FILE instead of stderr.",
    },
    {
      name: "override-env",
      type: "boolean",
      help: "Replace proxy and certificate variables already set (default: keep proxy ones, " +
        "extend certificate ones with the CA).",
    },
    {
      name: "isolate",
      type: "boolean",
      help: "Linux: run the command in its own network namespace where agentgate is the only " +
        "address that answers (bubblewrap); without it, only clients that honour the proxy " +
        "variables are governed.",
    },
  ],
  passthrough: true,
  epilog: [
    "The command gets HTTP_PROXY, HTTPS_PROXY, ALL_PROXY (and lower-case twins) pointing at",
    "agentgate with this run's session and its secret as credentials, NO_PROXY/no_proxy",
    "(localhost,127.0.0.1,::1 plus the entries you had in either), NODE_USE_ENV_PROXY=1 and,",
    "when the policy intercepts TLS, a trust bundle (system roots + the agentgate CA) in",
    "SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO, PIP_CERT, AWS_CA_BUNDLE,",
    "CARGO_HTTP_CAINFO, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, the CA alone in NODE_EXTRA_CA_CERTS and",
    "DENO_CERT, and npm_config_cafile when an npmrc gives npm a cafile or ca of its own (those",
    "certificates plus the CA). Proxy variables already set are kept in both spellings (with a",
    "warning, as are npm's own proxy settings) and certificate variables already set are",
    "extended (their file plus the agentgate CA), unless --override-env. SIGINT and SIGTERM are",
    "passed on to the command. The command never gets AGENTGATE_TOKEN,",
    "AGENTGATE_DASHBOARD_TOKEN or the policy's token_env variables.",
    "",
    "With credentials: in the policy the command holds phantom tokens, never the real secrets:",
    "each credential's variables (OPENAI_API_KEY, GITHUB_TOKEN, …) are set to this session's",
    "phantoms (replacing what is set), npm gets an .npmrc (NPM_CONFIG_USERCONFIG) and git a",
    "credential helper (GIT_CONFIG_*), and the env: variables the secrets come from are withheld.",
    "agentgate swaps a phantom for its secret on requests a rule allows, to the hosts it names.",
    "",
    "The policy is read once, before the command starts; with --watch it is reloaded when its",
    "files change. A warning says so when the command could change the policy (a file in its",
    "working directory, or writable by its user: root can write anything not mounted read-only).",
    "With $GITHUB_STEP_SUMMARY set, the markdown report is appended to that file.",
    "",
    "Exit status: the command's; 3 with --fail-on-deny when it succeeded but a request was",
    "denied; 127 command not found, 126 not executable; 1 agentgate could not start; 2 usage.",
    "",
    "Examples:",
    "  agentgate run -- claude",
    "  agentgate run --label nightly --fail-on-deny --report markdown -- npm test",
    "  AGENTGATE_DASHBOARD_TOKEN=… agentgate run --proxy http://proxy.internal:4100 -- python agent.py",
  ].join("\n"),
};

/**
 * Whether a SIGINT we got also reached the child: true when this process is in
 * its terminal's foreground process group, which the child shares (a Ctrl-C
 * goes to the whole group). Passing it on again would be a double Ctrl-C, which
 * many interactive tools take as "quit now". Linux reads /proc; elsewhere a
 * terminal on stdin is taken as the sign.
 */
export function sigintCameFromTerminal(): boolean {
  try {
    const stat = Deno.readTextFileSync("/proc/self/stat");
    // Fields after "(comm)": state ppid pgrp session tty_nr tpgid …
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const pgrp = Number(f[2]);
    const tpgid = Number(f[5]);
    return tpgid > 0 && tpgid === pgrp;
  } catch {
    try {
      return Deno.stdin.isTerminal();
    } catch {
      return false;
    }
  }
}

function signalOf(reason: unknown): Deno.Signal {
  return reason === "SIGINT" || reason === "SIGTERM" || reason === "SIGHUP" || reason === "SIGQUIT"
    ? reason
    : "SIGTERM";
}

/** Exit code a shell would report for a signal. */
const SIGNAL_CODES: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 129,
  SIGINT: 130,
  SIGQUIT: 131,
  SIGTERM: 143,
};

// --- talking to a running proxy (node:http: Deno's fetch would follow our own HTTP_PROXY) ---

function getJson(
  url: string,
  headers: Record<string, string>,
  timeoutMs: number,
  opts: { method?: string; body?: unknown } = {},
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolvePromise, reject) => {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const all = payload === undefined ? headers : {
      ...headers,
      "content-type": "application/json",
      "content-length": String(payload.length),
    };
    const req = http.request(url, {
      method: opts.method ?? "GET",
      headers: all,
      timeout: timeoutMs,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        const text = new TextDecoder().decode(Buffer.concat(chunks));
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // Not JSON: keep the text.
        }
        resolvePromise({ status: res.statusCode ?? 0, body });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

// --- where the proxy is ----------------------------------------------------------

/** The proxy a run uses: started here, or a running one. */
interface Backend {
  /** `http://host:port`, no credentials. */
  base: string;
  /** The run's session and its secret (the child's proxy credentials). */
  session: string;
  secret: string;
  /** The session's phantom tokens, one per credential of the proxy's policy. */
  credentials: IssuedCredential[];
  config: AgentgateConfig;
  /** Policy files the proxy loaded (in-process only: a running proxy's are its own). */
  files: string[];
  /** The run's own facts for the report. */
  facts(): RunFacts;
  /** The interception CA, when the policy intercepts and the CA is at hand. */
  ca: CertificateAuthority | null;
  /** Stop what was started; called once, after the child exited. */
  finish(): Promise<void>;
  /** An audit holding this session's rows (after `finish`), and its name for the report. */
  audit(session: string): Promise<{ reader: AuditReadModel; source: string }>;
}

async function startInProcess(
  configOpt: string | undefined,
  io: Io,
  label: string | undefined,
  watch: boolean,
): Promise<Backend | number> {
  const stop = new AbortController();
  // The child owns stdout; serve's banner is not for it, and its stop lines are
  // replaced by the report.
  const serveIo: Io = {
    stdout: () => {},
    stderr: (t) => {
      if (!/^agentgate: (shutting down|stopped;)/.test(t)) io.stderr(t);
    },
    env: io.env,
    cwd: io.cwd,
    signal: stop.signal,
    onHangup: watch ? io.onHangup : undefined,
  };
  const reloads: PolicyReload[] = [];
  let listening!: (v: { port: number } & Running) => void;
  const ready = new Promise<{ port: number } & Running>((r) => (listening = r));
  const served = serve(
    ["--listen", "127.0.0.1:0", ...(configOpt === undefined ? [] : ["--config", configOpt])],
    serveIo,
    {
      onListening: (address, running) => listening({ port: address.port, ...running }),
      run: {
        watch,
        onReload: (st) =>
          reloads.push({
            at: st.at,
            trigger: st.trigger,
            ok: st.ok,
            rules: st.rules ?? null,
            errors: st.errors,
          }),
      },
      banner: false,
    },
  );
  const first = await Promise.race([ready, served.then((code) => ({ code }))]);
  if ("code" in first) return first.code === 0 ? 1 : first.code;
  const { port, proxy, auth, credentials } = first;
  // The run's session: the proxy demands credentials (serve's `run` hook), so
  // clients that send them only after a 407 challenge (git/libcurl anyauth,
  // .NET, Java) are attributed to it too, and no other can be minted.
  const grant = auth.sessions.mint({ label: label ?? null });
  const config = proxy.config;
  const issued = credentials.issue(grant.session, config);
  let ca: CertificateAuthority | null = null;
  if (config.tls.intercept.length > 0) {
    try {
      // serve has loaded (or created) it already: this only reads it.
      ca = await loadOrCreateCA(config.tls.caDir ?? undefined);
    } catch (e) {
      stop.abort();
      await served;
      if (!(e instanceof CaError)) throw e;
      io.stderr(`agentgate run: ${e.message}\n`);
      return 1;
    }
  }
  let finished: Promise<number> | null = null;
  return {
    base: `http://127.0.0.1:${port}`,
    session: grant.session,
    secret: grant.secret,
    credentials: issued,
    config,
    files: config.files,
    facts: () => ({
      watch,
      policy_reloads: [...reloads],
      invalid_credentials: auth.invalidCredentials,
    }),
    ca,
    finish: async () => {
      stop.abort();
      finished ??= served;
      await finished;
    },
    audit: () => openConfiguredAudit(config.audit, io.env),
  };
}

async function useRunning(
  target: ProxyTarget,
  configOpt: string | undefined,
  io: Io,
  label: string | undefined,
): Promise<Backend | number> {
  const got = await loadForCommand(configOpt, io, { quiet: true });
  if (got === null) return 1;
  const { config } = got.loaded;
  try {
    const h = await getJson(`${target.base}/_/health`, {}, 5000);
    if (h.status !== 200 && h.status !== 503) {
      io.stderr(
        `agentgate run: warning: ${target.base} answered /_/health with ${h.status}: ` +
          "is it agentgate? The report may be unavailable.\n",
      );
    }
  } catch (e) {
    io.stderr(`agentgate run: cannot reach the proxy at ${target.base}: ${(e as Error).message}\n`);
    return 1;
  }
  let ca: CertificateAuthority | null = null;
  if (config.tls.intercept.length > 0) {
    // Only a CA that exists: a new one would not be the proxy's.
    const dir = config.tls.caDir ? resolve(expandHome(config.tls.caDir)) : defaultCaDir();
    if (existsSync(join(dir, CA_CERT_FILE))) {
      try {
        ca = await loadOrCreateCA(dir);
      } catch (e) {
        if (!(e instanceof CaError)) throw e;
        io.stderr(`agentgate run: ${e.message}\n`);
        return 1;
      }
    } else {
      io.stderr(
        `agentgate run: warning: the policy intercepts TLS but there is no CA at "${
          join(dir, CA_CERT_FILE)
        }" yet; the command will not trust intercepted hosts\n`,
      );
    }
  }
  const apiHeaders: Record<string, string> = {};
  const dashToken = io.env("AGENTGATE_DASHBOARD_TOKEN");
  if (dashToken) apiHeaders.authorization = `Bearer ${dashToken}`;
  if (target.token !== null) {
    io.stderr(
      "agentgate run: warning: the credentials in --proxy are not used: the run mints its own session\n",
    );
  }
  // The session is minted by the proxy, with the admin token: the command only
  // ever holds its id and secret, never a credential that mints another.
  const minted = await mintSession(target.base, apiHeaders, label ?? null).catch((e) => ({
    error: (e as Error).message,
  }));
  if ("error" in minted) {
    io.stderr(`agentgate run: cannot mint a session on ${target.base}: ${minted.error}\n`);
    return 1;
  }
  let revoked = false;
  return {
    base: target.base,
    session: minted.session,
    secret: minted.secret,
    credentials: minted.credentials,
    config,
    files: [],
    facts: () => ({ watch: false, policy_reloads: [], invalid_credentials: null }),
    ca,
    finish: async () => {
      if (revoked) return;
      revoked = true;
      const url = `${target.base}/_/api/sessions/${encodeURIComponent(minted.session)}`;
      const r = await getJson(url, apiHeaders, 5000, { method: "DELETE" }).catch((e) => ({
        status: 0,
        body: { reason: (e as Error).message },
      }));
      if (r.status !== 200) {
        io.stderr(
          `agentgate run: warning: could not revoke session ${minted.session}: ${
            (r.body as { reason?: string })?.reason ?? r.status
          }\n`,
        );
      }
    },
    audit: async (session) => {
      // The proxy writes rows in batches (every 200 ms), and a tunnel's row when
      // it closes: give it a moment, then wait for its queue to drain.
      await new Promise((r) => setTimeout(r, 300));
      const end = Date.now() + 3000;
      while (Date.now() < end) {
        const h = await getJson(`${target.base}/_/health`, {}, 2000).catch(() => null);
        const q = (h?.body as { audit_queue?: number } | null)?.audit_queue;
        if (typeof q !== "number" || q === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const rows: AuditRow[] = [];
      let apiError: string | null = null;
      for (let offset = 0;; offset += 1000) {
        const url = `${target.base}/_/api/audit?session=${
          encodeURIComponent(session)
        }&limit=1000&offset=${offset}`;
        const r = await getJson(url, apiHeaders, 10_000).catch((e) => ({
          status: 0,
          body: { reason: (e as Error).message },
        }));
        if (r.status !== 200) {
          const why = (r.body as { reason?: string })?.reason ?? String(r.body).slice(0, 200);
          apiError = `${target.base}/_/api/audit answered ${r.status || "nothing"}: ${why}`;
          break;
        }
        const items = (r.body as { items: AuditRow[] }).items;
        rows.push(...items);
        if (items.length < 1000) break;
      }
      if (apiError === null) {
        const source = `${target.base}/_/api/audit`;
        return { reader: auditFromRows(rows, source), source };
      }
      // The API is off or out of reach: the policy's audit file, when it is here.
      if (got.source !== "embedded" && existsSync(config.audit.path)) {
        return { reader: openAuditForReport(config.audit.path), source: config.audit.path };
      }
      throw new ReportSourceError(apiError);
    },
  };
}

/** `POST /_/api/sessions` on a running proxy: the run's session and secret. */
async function mintSession(
  base: string,
  headers: Record<string, string>,
  label: string | null,
): Promise<{ session: string; secret: string; credentials: IssuedCredential[] }> {
  const r = await getJson(`${base}/_/api/sessions`, headers, 10_000, {
    method: "POST",
    body: label === null ? {} : { label },
  });
  const body = r.body as
    | { session?: string; secret?: string; reason?: string; credentials?: IssuedCredential[] }
    | null;
  if (r.status !== 201 || typeof body?.session !== "string" || typeof body.secret !== "string") {
    const why = body?.reason ?? (typeof r.body === "string" ? r.body.slice(0, 200) : "");
    throw new Error(
      `${r.status || "no answer"}${why ? `: ${why}` : ""}${
        r.status === 401 || r.status === 403
          ? " (set AGENTGATE_DASHBOARD_TOKEN to the proxy's dashboard.token)"
          : ""
      }`,
    );
  }
  return {
    session: body.session,
    secret: body.secret,
    credentials: Array.isArray(body.credentials) ? body.credentials : [],
  };
}

/**
 * Warnings when the command could change the policy a run uses: a policy
 * file inside its working directory, or writable by its user.
 */
function reachWarnings(files: string[], cwd: string, watch: boolean): string[] {
  const who = currentIdentity();
  if (who === null || files.length === 0) return [];
  const effect = watch
    ? "the command could change the policy of this run (--watch reloads it) and of the next"
    : "the command could change the policy the next run uses";
  return policyReach(files, cwd, who).flatMap((r) => {
    const why = [
      r.inTree ? "is inside the command's working directory" : null,
      r.writableVia === null
        ? null
        : `is writable by its user (uid ${who.uid}${
          r.writableVia === resolve(cwd, r.file) ? "" : `, through "${r.writableVia}"`
        })`,
    ].filter((x) => x !== null);
    if (why.length === 0) return [];
    const name = relative(cwd, r.file) || r.file;
    return [
      `agentgate run: warning: the policy file "${name.startsWith("..") ? r.file : name}" ` +
      `${why.join(" and ")}: ${effect} (keep policies outside the working tree, read-only to ` +
      "the command's user)\n",
    ];
  });
}

/**
 * npm's own proxy settings (an npmrc's `proxy` / `https-proxy`, or
 * `npm_config_*`) win over `HTTPS_PROXY` for npm: they are kept and named in
 * the warning like a proxy variable, or with `override` pointed at agentgate
 * (`npm_config_proxy`, `npm_config_https_proxy`, which beat every npmrc).
 */
function npmProxySettings(
  io: Pick<Io, "env" | "cwd">,
  override: boolean,
  proxyUrl: string,
): { vars: Record<string, string>; kept: string[] } {
  const found = npmConfiguredProxies(npmrcLayers(io.env, io.cwd));
  if (found.length === 0) return { vars: {}, kept: [] };
  if (override) {
    return { vars: { npm_config_proxy: proxyUrl, npm_config_https_proxy: proxyUrl }, kept: [] };
  }
  return { vars: {}, kept: found.map(([, , where]) => `npm's ${where}`) };
}

/** Run `run`. */
export async function run(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(runSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(runSpec));
    return 0;
  }
  const cmd = parsed.rest;
  if (cmd.length === 0) {
    throw new UsageError("missing the command to run: agentgate run [OPTIONS] -- CMD [ARGS…]");
  }
  const label = parsed.opts.label as string | undefined;
  const watch = Boolean(parsed.opts.watch);
  if (label !== undefined && !LABEL_PATTERN.test(label)) {
    throw new UsageError(
      `invalid --label "${label}": use up to 64 letters, digits, ".", "_", "~" or "-", ` +
        "starting with a letter or digit",
    );
  }
  const format = (parsed.opts.report as ReportFormat | "none" | undefined) ?? "text";
  const reportFile = parsed.opts["report-file"] as string | undefined;
  const configOpt = parsed.opts.config as string | undefined;
  const target = typeof parsed.opts.proxy === "string" ? parseProxyUrl(parsed.opts.proxy) : null;
  if (target && watch) {
    throw new UsageError(
      "--watch applies to the proxy run starts; a running proxy (--proxy) reloads by its own rules",
    );
  }
  const isolate = Boolean(parsed.opts.isolate);
  if (isolate) {
    const why = await isolationUnavailable(io);
    if (why) {
      io.stderr(`agentgate run: --isolate: ${why}\n`);
      return 1;
    }
  }

  const backend = target
    ? await useRunning(target, configOpt, io, label)
    : await startInProcess(configOpt, io, label, watch);
  if (typeof backend === "number") return backend;
  const session = backend.session;
  for (const w of reachWarnings(backend.files, io.cwd, watch)) io.stderr(w);

  const override = Boolean(parsed.opts["override-env"]);
  let tmpDir: string | null = null;
  let childCode: number;
  try {
    // Isolated, the command reaches the proxy as 127.0.0.1:PORT (the bridge).
    const proxyAt = new URL(backend.base);
    const port = Number(proxyAt.port || 80);
    const base = isolate ? `http://127.0.0.1:${port}` : backend.base;
    const proxyUrl = proxyUrlWith(base, { user: session, pass: backend.secret });
    const ours = proxyEnvironment({ proxyUrl, noProxy: noProxyOf(backend.config) });
    let trust: Record<string, string> = {};
    if (backend.ca) {
      tmpDir = await Deno.makeTempDir({ prefix: "agentgate-run-" });
      const t = await trustVariables(backend.ca, io, override, tmpDir);
      trust = t.vars;
      for (const [name, why] of t.replaced) {
        io.stderr(`agentgate run: warning: ${name} replaced: ${why}\n`);
      }
    }
    const merged = mergeEnvironment(ours, io.env, override);
    tmpDir ??= backend.credentials.length
      ? await Deno.makeTempDir({ prefix: "agentgate-run-" })
      : null;
    const phantoms = await phantomVariables(
      backend.credentials,
      io,
      tmpDir,
      backend.ca && trust.SSL_CERT_FILE
        ? { caPem: backend.ca.certPem, bundle: trust.SSL_CERT_FILE }
        : undefined,
    );
    const npmProxy = npmProxySettings(io, override, proxyUrl);
    // Phantoms always replace what is set: a variable of the same name may hold the real secret.
    const env = { ...merged.env, ...trust, ...npmProxy.vars, ...phantoms };
    const kept = [...merged.kept, ...npmProxy.kept];
    if (kept.length > 0) {
      io.stderr(
        `agentgate run: warning: kept ${kept.join(", ")} from the environment ` +
          "(the command's requests may bypass agentgate; --override-env replaces them)\n",
      );
    }
    io.stderr(
      `agentgate run: session ${session} through ${backend.base}${
        !target && backend.config.dashboard ? ` (dashboard: ${backend.base}/_/dashboard)` : ""
      }\n`,
    );
    if (backend.credentials.length) io.stderr(phantomLine(backend.credentials));
    // The command gets its session's credentials and nothing that would let it
    // act as another session or mint one.
    const withheld = [...SECRET_VARS, ...backend.config.secretEnv].filter((n) => !(n in phantoms));
    childCode = isolate
      ? await runIsolated(
        {
          cmd,
          env,
          proxy: { host: proxyAt.hostname.replace(/^\[|\]$/g, ""), port },
          insidePort: port,
          withheld,
        },
        io,
        { fromTerminal: sigintCameFromTerminal },
      )
      : await runChild(cmd, env, io, withheld);
  } catch (e) {
    await backend.finish().catch(() => {});
    throw e;
  } finally {
    if (tmpDir) await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
  await backend.finish();

  let report: Report | null = null;
  let reportError: string | null = null;
  try {
    const { reader, source } = await backend.audit(session);
    try {
      report = await buildReport(reader, { session, since: null, until: null }, { source });
      report.run = backend.facts();
    } finally {
      await reader.close();
    }
  } catch (e) {
    if (!(e instanceof ReportSourceError || e instanceof AuditReadError)) throw e;
    reportError = e.message;
    io.stderr(`agentgate run: no report: ${e.message}\n`);
  }

  if (report) {
    if (format !== "none") {
      const text = formatReport(report, format);
      if (reportFile) {
        try {
          await Deno.writeTextFile(resolve(io.cwd, reportFile), text);
        } catch (e) {
          io.stderr(`agentgate run: cannot write --report-file: ${(e as Error).message}\n`);
        }
      } else io.stderr(text);
    }
    const summary = io.env("GITHUB_STEP_SUMMARY");
    if (summary) {
      try {
        await Deno.writeTextFile(resolve(io.cwd, summary), formatMarkdown(report) + "\n", {
          append: true,
        });
      } catch (e) {
        io.stderr(
          `agentgate run: cannot append to GITHUB_STEP_SUMMARY: ${(e as Error).message}\n`,
        );
      }
    }
  }

  if (childCode !== 0) return childCode;
  if (parsed.opts["fail-on-deny"]) {
    if (report === null) {
      io.stderr(
        `agentgate run: --fail-on-deny: cannot tell whether a request was denied (${reportError})\n`,
      );
      return 1;
    }
    // Refused credentials count too: a command that tried another session was denied.
    const denied = report.totals.deny + (report.run?.invalid_credentials ?? 0);
    if (denied > 0) {
      io.stderr(
        `agentgate run: ${denied} request(s) denied (--fail-on-deny): exit ${EXIT_DENIED}\n`,
      );
      return EXIT_DENIED;
    }
  }
  return 0;
}

/** What the command holds instead of each credential (names only, never a value). */
function phantomLine(issued: readonly IssuedCredential[]): string {
  const what = issued.map((c) => {
    const where = [
      ...c.variables,
      ...(c.npmrc ? [".npmrc"] : []),
      ...(c.git.hosts.length ? ["git"] : []),
    ];
    return `${c.name}${where.length ? ` (${where.join(", ")})` : ""}`;
  });
  return `agentgate run: phantom tokens for ${
    what.join(", ")
  }: agentgate swaps in the real secrets\n`;
}

/**
 * The child's phantom variables (see `phantomEnvironment`), the .npmrc
 * written into the run's temporary directory; none without credentials.
 */
async function phantomVariables(
  issued: readonly IssuedCredential[],
  io: Io,
  dir: string | null,
  trust: { caPem: string; bundle: string } | undefined,
): Promise<Record<string, string>> {
  if (issued.length === 0 || dir === null) return {};
  const vars = await phantomEnvironment(issued, {
    env: io.env,
    npmrcFile: join(dir, "npmrc"),
    trust,
  });
  return Object.fromEntries(vars);
}

/**
 * Spawn the command, pass SIGINT/SIGTERM on, and return its exit code. It
 * gets this process's environment with `env` on top and `withheld` removed.
 */
async function runChild(
  cmd: string[],
  env: Record<string, string>,
  io: Io,
  withheld: readonly string[],
): Promise<number> {
  if (io.signal?.aborted) return SIGNAL_CODES[signalOf(io.signal.reason)] ?? 143;
  const full = childEnvironment(env, withheld);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      env: full,
      clearEnv: true,
      cwd: io.cwd,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      io.stderr(`agentgate run: command not found: "${cmd[0]}"\n`);
      return EXIT_NOT_FOUND;
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      io.stderr(`agentgate run: cannot execute "${cmd[0]}": permission denied\n`);
      return EXIT_NOT_EXECUTABLE;
    }
    throw e;
  }
  const forward = () => {
    const sig = signalOf(io.signal?.reason);
    if (sig === "SIGINT" && sigintCameFromTerminal()) return;
    try {
      child.kill(sig);
    } catch {
      // Already gone.
    }
  };
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  };
  io.signal?.addEventListener("abort", forward, { once: true });
  io.forceSignal?.addEventListener("abort", kill, { once: true });
  try {
    const status = await child.status;
    return status.code;
  } finally {
    io.signal?.removeEventListener("abort", forward);
    io.forceSignal?.removeEventListener("abort", kill);
  }
}
