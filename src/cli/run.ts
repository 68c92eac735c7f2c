/**
 * `agentgate run -- CMD ARGS…`: run a command (an agent, a test suite) with
 * every request it and its descendants make going through agentgate, as one
 * session; then report what happened and exit with the command's code.
 *
 * The proxy runs in this process on an ephemeral loopback port (or a running
 * one is used, `--proxy`). The child finds it through the environment (see
 * `env.ts`), with the session id and a token as proxy credentials, so the
 * proxy attributes every request through `Proxy-Authorization`.
 *
 * @module
 */
import http from "node:http";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { configOption, proxyOption } from "./options.ts";
import type { Io } from "./io.ts";
import { type Running, serve } from "./serve.ts";
import { isolationUnavailable, runIsolated } from "./isolate.ts";
import { loadForCommand } from "./config_arg.ts";
import {
  BUNDLE_VARS,
  CA_VARS,
  mergeEnvironment,
  noProxyOf,
  parseProxyUrl,
  proxyEnvironment,
  type ProxyTarget,
  proxyUrlWith,
} from "./env.ts";
import type { AgentgateConfig } from "../config/load.ts";
import {
  CA_CERT_FILE,
  CaError,
  type CertificateAuthority,
  defaultCaDir,
  expandHome,
  loadOrCreateCA,
} from "../tls/ca.ts";
import { writeTrustBundle } from "../tls/bundle.ts";
import {
  buildReport,
  openAuditForReport,
  type Report,
  ReportSourceError,
} from "../report/build.ts";
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

/** What a label may contain: it travels unencoded in the proxy URL's user name. */
export const LABEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$/;

/** The interface of `run`. */
export const runSpec: CommandSpec = {
  name: "run",
  summary: "Run a command with all its traffic going through agentgate, then print a report.",
  usage: "agentgate run [--config FILE] [--label LABEL] [--proxy URL] [--fail-on-deny]\n" +
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
      "Use a running agentgate instead of starting one: http://[USER:]TOKEN@HOST:PORT " +
        "(token also from $AGENTGATE_TOKEN).",
    ),
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
    "agentgate with this run's session and token as credentials, NO_PROXY/no_proxy",
    "(localhost,127.0.0.1,::1), NODE_USE_ENV_PROXY=1 and, when the policy intercepts TLS, a",
    "trust bundle (system roots + the agentgate CA) in SSL_CERT_FILE, REQUESTS_CA_BUNDLE,",
    "CURL_CA_BUNDLE, GIT_SSL_CAINFO, PIP_CERT, AWS_CA_BUNDLE, and the CA alone in",
    "NODE_EXTRA_CA_CERTS and DENO_CERT. Proxy variables already set are kept (with a warning)",
    "and certificate variables already set are extended (their file plus the agentgate CA),",
    "unless --override-env. SIGINT and SIGTERM are passed on to the command.",
    "With $GITHUB_STEP_SUMMARY set, the markdown report is appended to that file.",
    "",
    "Exit status: the command's; 3 with --fail-on-deny when it succeeded but a request was",
    "denied; 127 command not found, 126 not executable; 1 agentgate could not start; 2 usage.",
    "",
    "Examples:",
    "  agentgate run -- claude",
    "  agentgate run --label nightly --fail-on-deny --report markdown -- npm test",
    "  agentgate run --proxy http://ci:$TOKEN@proxy.internal:4100 -- python agent.py",
  ].join("\n"),
};

/** A fresh session id: `<label>-<16 hex>`, or the hex alone. */
export function newSessionId(label?: string): string {
  const hex = randomHex(8);
  return label ? `${label}-${hex}` : hex;
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

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
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.get(url, { headers, timeout: timeoutMs }, (res) => {
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
  });
}

// --- where the proxy is ----------------------------------------------------------

/** The proxy a run uses: started here, or a running one. */
interface Backend {
  /** `http://host:port`, no credentials. */
  base: string;
  /** Token the child presents. */
  token: string;
  config: AgentgateConfig;
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
  };
  let listening!: (v: { port: number } & Running) => void;
  const ready = new Promise<{ port: number } & Running>((r) => (listening = r));
  const served = serve(
    ["--listen", "127.0.0.1:0", ...(configOpt === undefined ? [] : ["--config", configOpt])],
    serveIo,
    { onListening: (address, running) => listening({ port: address.port, ...running }) },
  );
  const first = await Promise.race([ready, served.then((code) => ({ code }))]);
  if ("code" in first) return first.code === 0 ? 1 : first.code;
  const { port, proxy, auth } = first;
  const token = randomHex(16);
  // The proxy now demands credentials (a run token makes them required), so
  // clients that send them only after a 407 challenge (git/libcurl anyauth,
  // .NET, Java) are attributed to the session too.
  auth.extraTokens.add(token);
  const config = proxy.config;
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
    token,
    config,
    ca,
    finish: async () => {
      stop.abort();
      finished ??= served;
      await finished;
    },
    audit: () =>
      Promise.resolve({
        reader: openAuditForReport(config.audit.path),
        source: config.audit.path,
      }),
  };
}

async function useRunning(
  target: ProxyTarget,
  configOpt: string | undefined,
  io: Io,
): Promise<Backend | number> {
  const got = await loadForCommand(configOpt, io, { lintAsWarnings: true, quiet: true });
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
  const token = target.token ?? io.env("AGENTGATE_TOKEN") ?? "-";
  const apiHeaders: Record<string, string> = {};
  const dashToken = io.env("AGENTGATE_DASHBOARD_TOKEN");
  if (dashToken) apiHeaders.authorization = `Bearer ${dashToken}`;
  return {
    base: target.base,
    token,
    config,
    ca,
    finish: () => Promise.resolve(),
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

/**
 * The certificate variables of a child when TLS is intercepted. A variable
 * the user already set to a certificate file is *extended* rather than kept
 * or replaced: it points at a copy of that file plus the agentgate CA, so the
 * user's own roots (a corporate CA, a CI image's bundle) stay trusted and the
 * intercepted hosts are trusted too. Unset ones get the trust bundle (system
 * roots + CA; `SSL_CERT_FILE` & co.) or the CA alone (`NODE_EXTRA_CA_CERTS`,
 * `DENO_CERT`). With `override`, the user's values are ignored. Files are
 * written into `dir`.
 *
 * @example
 * const { vars } = await trustVariables(ca, io, false, await Deno.makeTempDir());
 * // { SSL_CERT_FILE: "/tmp/…/bundle.pem", …, DENO_CERT: "/home/me/.agentgate/ca.pem" }
 */
export async function trustVariables(
  ca: { certPem: string; certPath: string },
  io: Pick<Io, "env" | "cwd">,
  override: boolean,
  dir: string,
): Promise<{ vars: Record<string, string>; extended: string[]; replaced: [string, string][] }> {
  const vars: Record<string, string> = {};
  const extended: string[] = [];
  const replaced: [string, string][] = [];
  const made = new Map<string, string>();
  const bundleOf = async (source: string | null): Promise<string> => {
    const key = source ?? "";
    let file = made.get(key);
    if (!file) {
      file = join(dir, source === null ? "bundle.pem" : `bundle-${made.size + 1}.pem`);
      await writeTrustBundle(ca, file, source === null ? {} : { systemFiles: [source] });
      made.set(key, file);
    }
    return file;
  };
  for (const name of [...BUNDLE_VARS, ...CA_VARS] as string[]) {
    const mine = override ? undefined : io.env(name);
    if (mine) {
      const path = resolve(io.cwd, mine);
      let text: string | null = null;
      try {
        text = await Deno.readTextFile(path);
      } catch (e) {
        replaced.push([name, `"${mine}" cannot be read (${(e as Error).message})`]);
      }
      if (text !== null && text.includes("-----BEGIN CERTIFICATE-----")) {
        vars[name] = await bundleOf(path);
        extended.push(name);
        continue;
      }
      if (text !== null) replaced.push([name, `"${mine}" holds no PEM certificate`]);
    }
    vars[name] = (BUNDLE_VARS as readonly string[]).includes(name)
      ? await bundleOf(null)
      : ca.certPath;
  }
  return { vars, extended, replaced };
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
  const session = newSessionId(label);
  const isolate = Boolean(parsed.opts.isolate);
  if (isolate) {
    const why = await isolationUnavailable(io);
    if (why) {
      io.stderr(`agentgate run: --isolate: ${why}\n`);
      return 1;
    }
  }

  const backend = target ? await useRunning(target, configOpt, io) : await startInProcess(
    configOpt,
    io,
  );
  if (typeof backend === "number") return backend;

  const override = Boolean(parsed.opts["override-env"]);
  let tmpDir: string | null = null;
  let childCode: number;
  try {
    // Isolated, the command reaches the proxy as 127.0.0.1:PORT (the bridge).
    const proxyAt = new URL(backend.base);
    const port = Number(proxyAt.port || 80);
    const base = isolate ? `http://127.0.0.1:${port}` : backend.base;
    const proxyUrl = proxyUrlWith(base, { user: session, pass: backend.token });
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
    const env = { ...merged.env, ...trust };
    const kept = merged.kept;
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
    childCode = isolate
      ? await runIsolated(
        {
          cmd,
          env,
          proxy: { host: proxyAt.hostname.replace(/^\[|\]$/g, ""), port },
          insidePort: port,
        },
        io,
        { fromTerminal: sigintCameFromTerminal },
      )
      : await runChild(cmd, env, io);
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
    if (report.totals.deny > 0) {
      io.stderr(
        `agentgate run: ${report.totals.deny} request(s) denied (--fail-on-deny): exit ${EXIT_DENIED}\n`,
      );
      return EXIT_DENIED;
    }
  }
  return 0;
}

/** Spawn the command, pass SIGINT/SIGTERM on, and return its exit code. */
async function runChild(cmd: string[], env: Record<string, string>, io: Io): Promise<number> {
  if (io.signal?.aborted) return SIGNAL_CODES[signalOf(io.signal.reason)] ?? 143;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      env,
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
