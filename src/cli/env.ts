/**
 * `agentgate env`: the environment that sends a shell's programs through
 * agentgate, as lines for that shell (`eval "$(agentgate env)"`). The same
 * variables are what `agentgate run` hands its child, so both are built here.
 *
 * @module
 */
import http from "node:http";
import { dirname, join, resolve } from "node:path";
import { homedir } from "node:os";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { configOption, proxyOption } from "./options.ts";
import type { Io } from "./io.ts";
import { loadForCommand } from "./config_arg.ts";
import type { AgentgateConfig } from "../config/load.ts";
import { CaError, defaultCaDir, expandHome, loadOrCreateCA } from "../tls/ca.ts";
import { LABEL_PATTERN } from "../util/session_id.ts";
import type { IssuedCredential } from "../credentials/mod.ts";
import { BUNDLE_VARS, CA_VARS, NPM_CAFILE_VAR, trustVariables } from "./trust.ts";

/** Proxy variables, upper case first; most tools read one spelling or the other. */
export const PROXY_VARS = [
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "ALL_PROXY",
  "http_proxy",
  "https_proxy",
  "all_proxy",
] as const;

/** Hosts the child reaches directly. */
export const NO_PROXY_VARS = ["NO_PROXY", "no_proxy"] as const;

/** Node 24+ (and 22.21+) only honours HTTP(S)_PROXY in `fetch`/`http` with this set. */
export const NODE_PROXY_VAR = "NODE_USE_ENV_PROXY";

export { BUNDLE_VARS, CA_VARS, NPM_CAFILE_VAR } from "./trust.ts";

/** Every variable `run` and `env` set, in the order they are printed. */
export const ALL_VARS: readonly string[] = [
  ...PROXY_VARS,
  ...NO_PROXY_VARS,
  NODE_PROXY_VAR,
  ...BUNDLE_VARS,
  ...CA_VARS,
  NPM_CAFILE_VAR,
];

/** Direct connections by default: the machine itself. */
export const DEFAULT_NO_PROXY: readonly string[] = ["localhost", "127.0.0.1", "::1"];

/** What {@link proxyEnvironment} needs. */
export interface ProxyEnvOptions {
  /** The proxy URL the child uses, credentials included. */
  proxyUrl: string;
  /** Hosts reached without the proxy (default {@link DEFAULT_NO_PROXY}). */
  noProxy?: readonly string[];
  /** Trust bundle file (system roots + agentgate CA), when interception is on. */
  bundle?: string | null;
  /** The agentgate CA certificate file, when interception is on. */
  caCert?: string | null;
  /**
   * Certificate variables by name (`trustVariables`), when interception is
   * on: instead of `bundle` and `caCert`, each variable its own file.
   */
  trust?: Record<string, string> | null;
}

/**
 * The variables that send a process through agentgate, in print order.
 *
 * @example
 * proxyEnvironment({ proxyUrl: "http://127.0.0.1:4100" })
 * // [["HTTP_PROXY", "http://127.0.0.1:4100"], …, ["NODE_USE_ENV_PROXY", "1"]]
 */
export function proxyEnvironment(o: ProxyEnvOptions): [string, string][] {
  const out: [string, string][] = PROXY_VARS.map((n) => [n, o.proxyUrl]);
  const noProxy = (o.noProxy ?? DEFAULT_NO_PROXY).join(",");
  for (const n of NO_PROXY_VARS) out.push([n, noProxy]);
  out.push([NODE_PROXY_VAR, "1"]);
  if (o.trust) {
    const names = [...ALL_VARS.filter((n) => n in o.trust!), ...Object.keys(o.trust)];
    for (const n of new Set(names)) out.push([n, o.trust[n]]);
    return out;
  }
  if (o.bundle) { for (const n of BUNDLE_VARS) out.push([n, o.bundle]); }
  if (o.caCert) { for (const n of CA_VARS) out.push([n, o.caCert]); }
  return out;
}

/** `run`.no_proxy when the config has it (see the `run:` section), else the default. */
export function noProxyOf(config: AgentgateConfig): readonly string[] {
  return config.run.noProxy ?? DEFAULT_NO_PROXY;
}

/** The upper- and lower-case spellings of one setting: clients read one or the other. */
const TWINS: readonly [string, string][] = [
  ["HTTP_PROXY", "http_proxy"],
  ["HTTPS_PROXY", "https_proxy"],
  ["ALL_PROXY", "all_proxy"],
  ["NO_PROXY", "no_proxy"],
];

/** Entries of a NO_PROXY list, trimmed, without empty ones. */
function noProxyEntries(value: string | undefined): string[] {
  return (value ?? "").split(",").map((x) => x.trim()).filter((x) => x !== "");
}

/**
 * The child's environment: ours, except the variables the user already set
 * (non-empty) unless `override`. Returns the variables to pass and the names
 * that were kept from the user's environment.
 *
 * Both spellings of a setting end up alike, since curl and Python read the
 * lower-case one first and Go the upper-case one: a proxy variable the user
 * set in one spelling is kept in both, and `NO_PROXY`/`no_proxy` are both
 * ours plus every entry the user had in either.
 *
 * @example
 * mergeEnvironment([["HTTP_PROXY", "http://a"]], () => "http://mine", false)
 * // { env: { HTTP_PROXY: "http://mine" }, kept: ["HTTP_PROXY"] }
 */
export function mergeEnvironment(
  ours: [string, string][],
  current: (name: string) => string | undefined,
  override: boolean,
): { env: Record<string, string>; kept: string[] } {
  const env: Record<string, string> = {};
  const kept: string[] = [];
  const mineOf = (name: string) => {
    const v = override ? undefined : current(name);
    return v === undefined || v === "" ? undefined : v;
  };
  const names = new Set(ours.map(([n]) => n));
  const twinOf = (name: string) => {
    for (const [a, b] of TWINS) {
      if (name === a && names.has(b)) return b;
      if (name === b && names.has(a)) return a;
    }
    return null;
  };
  for (const [name, value] of ours) {
    const twin = twinOf(name);
    if (name === "NO_PROXY" || name === "no_proxy") {
      // One order for both: ours, then the upper-case list, then the lower-case one.
      const all = [
        ...noProxyEntries(value),
        ...noProxyEntries(name === "NO_PROXY" || twin ? mineOf("NO_PROXY") : undefined),
        ...noProxyEntries(name === "no_proxy" || twin ? mineOf("no_proxy") : undefined),
      ];
      const seen = new Set<string>();
      const merged = all.filter((x) => !seen.has(x.toLowerCase()) && seen.add(x.toLowerCase()));
      env[name] = merged.join(",");
      if (env[name] !== value) kept.push(name);
      continue;
    }
    const mine = mineOf(name) ?? (twin ? mineOf(twin) : undefined);
    if (mine !== undefined) {
      env[name] = mine;
      if (mine !== value) kept.push(name);
    } else env[name] = value;
  }
  return { env, kept };
}

// --- phantom tokens ---------------------------------------------------------------

/**
 * The variables that hand a session its phantom tokens: each credential's
 * variables (`OPENAI_API_KEY`, …) set to its phantom; for npm registries an
 * .npmrc written to `npmrcFile` — the user's own (`NPM_CONFIG_USERCONFIG` or
 * `~/.npmrc`) without its tokens for those registries, plus the phantoms —
 * and for git hosts a credential helper that answers with the phantom
 * (`GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n`, after any the user set; it resets
 * the host's other helpers, which could hold the real token).
 *
 * @example
 * await phantomEnvironment(issued, { env: (n) => Deno.env.get(n), npmrcFile: "/tmp/x/npmrc" })
 * // [["OPENAI_API_KEY", "sk-proj-agentgate-…"], ["GITHUB_TOKEN", "ghp_agentgate…"], …]
 */
export async function phantomEnvironment(
  issued: readonly IssuedCredential[],
  opts: {
    env: (name: string) => string | undefined;
    npmrcFile: string;
    /**
     * With TLS interception: npm trusts only its `cafile` when one is set (Debian's
     * npm sets one globally), so the .npmrc names the user's cafile plus the
     * agentgate CA (written beside the .npmrc), or else `bundle`.
     */
    trust?: { caPem: string; bundle: string };
  },
): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const c of issued) for (const v of c.variables) out.push([v, c.phantom]);
  const npm = issued.filter((c) => c.npmrc !== null);
  if (npm.length > 0) {
    const own = opts.env("NPM_CONFIG_USERCONFIG") ?? opts.env("npm_config_userconfig") ??
      join(opts.env("HOME") ?? homedir(), ".npmrc");
    let text = "";
    try {
      text = await Deno.readTextFile(own);
    } catch {
      // No user config: ours alone.
    }
    const keys = npm.map((c) => `${c.npmrc}:`);
    let cafile: string | null = null;
    const kept = text.split(/\r?\n/).filter((line) => {
      const l = line.trim();
      const m = /^cafile\s*=\s*(.+)$/.exec(l);
      if (m && opts.trust) {
        cafile = m[1].trim();
        return false;
      }
      return !keys.some((k) => l.startsWith(k));
    });
    const lines = [...kept, ...npm.map((c) => `${c.npmrc}:_authToken=${c.phantom}`)];
    await Deno.mkdir(dirname(opts.npmrcFile), { recursive: true, mode: 0o700 });
    if (opts.trust) {
      let file = opts.trust.bundle;
      const own = cafile === null ? null : await Deno.readTextFile(cafile).catch(() => null);
      if (own !== null) {
        file = `${opts.npmrcFile}.ca.pem`;
        await Deno.writeTextFile(file, `${own.trimEnd()}\n${opts.trust.caPem.trim()}\n`);
      }
      lines.push(`cafile=${file}`);
    }
    await Deno.writeTextFile(opts.npmrcFile, lines.filter((l) => l !== "").join("\n") + "\n", {
      mode: 0o600,
    });
    out.push(["NPM_CONFIG_USERCONFIG", opts.npmrcFile], ["npm_config_userconfig", opts.npmrcFile]);
  }
  const git = issued.filter((c) => c.git.hosts.length > 0);
  if (git.length > 0) {
    let n = Number(opts.env("GIT_CONFIG_COUNT") ?? "0");
    if (!Number.isInteger(n) || n < 0) n = 0;
    const add = (key: string, value: string) => {
      out.push([`GIT_CONFIG_KEY_${n}`, key], [`GIT_CONFIG_VALUE_${n}`, value]);
      n++;
    };
    for (const c of git) {
      for (const host of c.git.hosts) {
        const key = `credential.https://${host}.helper`;
        add(key, ""); // an empty helper clears the ones configured before
        add(
          key,
          `!f() { test "$1" = get && printf 'username=%s\\npassword=%s\\n' ${
            shellQuote("bash", c.git.username)
          } ${shellQuote("bash", c.phantom)}; }; f`,
        );
      }
    }
    out.push(["GIT_CONFIG_COUNT", String(n)]);
  }
  return out;
}

/**
 * `GET /_/credentials` on a running proxy with a session's proxy
 * credentials: that session's phantoms.
 */
export function fetchPhantoms(
  base: string,
  creds: { user: string; pass: string },
): Promise<
  {
    status: number;
    session: string | null;
    credentials: IssuedCredential[] | null;
    reason: string | null;
  }
> {
  return new Promise((resolvePromise, reject) => {
    const basic = btoa(
      String.fromCharCode(...new TextEncoder().encode(`${creds.user}:${creds.pass}`)),
    );
    const req = http.request(`${base}/_/credentials`, {
      headers: { "proxy-authorization": `Basic ${basic}` },
      timeout: 10_000,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        let body: { session?: string; credentials?: IssuedCredential[]; reason?: string } | null =
          null;
        try {
          body = JSON.parse(new TextDecoder().decode(Buffer.concat(chunks)));
        } catch {
          // Not JSON.
        }
        resolvePromise({
          status: res.statusCode ?? 0,
          session: typeof body?.session === "string" ? body.session : null,
          credentials: Array.isArray(body?.credentials) ? body!.credentials! : null,
          reason: typeof body?.reason === "string" ? body.reason : null,
        });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", reject);
    req.end();
  });
}

// --- what `env` replaced, so that `env --unset` can restore it --------------------

/**
 * The variable in which `env` records what the variables it sets held before
 * (JSON: name -> the value, or null when it was unset), so `env --unset`
 * restores them instead of deleting them. A second `env` keeps the first
 * record: the values to return to are the ones from before agentgate.
 */
export const RESTORE_VAR = "AGENTGATE_ENV_RESTORE";

/**
 * The saved values of {@link RESTORE_VAR}, or null when there is no
 * (readable) record.
 *
 * @example
 * restoreRecord((n) => n === RESTORE_VAR ? '{"SSL_CERT_FILE":"/corp.pem","HTTP_PROXY":null}' : undefined)
 * // { SSL_CERT_FILE: "/corp.pem", HTTP_PROXY: null }
 */
export function restoreRecord(
  env: (name: string) => string | undefined,
): Record<string, string | null> | null {
  const text = env(RESTORE_VAR);
  if (text === undefined || text === "") return null;
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== "object" || Array.isArray(v)) return null;
    const out: Record<string, string | null> = {};
    for (const [k, x] of Object.entries(v)) {
      // Names become shell code (`export NAME=…`): identifiers only.
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && (typeof x === "string" || x === null)) out[k] = x;
    }
    return out;
  } catch {
    return null;
  }
}

/**
 * The environment as it was before agentgate's `env` changed it: what the
 * record says for the variables it saved, everything else as it is now.
 *
 * @example
 * environmentBefore((n) => Deno.env.get(n))("SSL_CERT_FILE") // "/corp.pem" (not agentgate's bundle)
 */
export function environmentBefore(
  env: (name: string) => string | undefined,
): (name: string) => string | undefined {
  const record = restoreRecord(env);
  if (record === null) return env;
  return (name) => (Object.hasOwn(record, name) ? record[name] ?? undefined : env(name));
}

// --- proxy URLs ----------------------------------------------------------------

/** A parsed `--proxy` URL. */
export interface ProxyTarget {
  /** The URL as given, normalised (`http://` added, no trailing slash), credentials kept. */
  url: string;
  /** `http://host:port`, without credentials. */
  base: string;
  host: string;
  port: number;
  /** The token from the URL (its password, else its user name), decoded; null if none. */
  token: string | null;
  /** The user name of the URL, decoded, or null. */
  user: string | null;
}

/**
 * Parse a proxy URL (`http://[user:]token@host:port`; `host:port` alone means
 * http). agentgate listens on plain HTTP, so `https://` is refused.
 *
 * @example
 * parseProxyUrl("http://ci:s3cret@127.0.0.1:4100")
 * // { url: "http://ci:s3cret@127.0.0.1:4100", base: "http://127.0.0.1:4100", host: "127.0.0.1", port: 4100, token: "s3cret", user: "ci" }
 */
export function parseProxyUrl(text: string): ProxyTarget {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`invalid proxy URL "${text}": expected http://HOST:PORT`);
  }
  if (url.protocol !== "http:") {
    throw new UsageError(
      `invalid proxy URL "${text}": agentgate listens on plain HTTP, use http://${url.host}`,
    );
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    throw new UsageError(`invalid proxy URL "${text}": expected http://HOST:PORT without a path`);
  }
  const dec = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  const user = url.username ? dec(url.username) : null;
  const pass = url.password ? dec(url.password) : null;
  const port = url.port ? Number(url.port) : 80;
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return {
    url: url.href.replace(/\/$/, ""),
    base: `http://${url.host}`,
    host,
    port,
    token: pass ?? user,
    user: pass !== null ? user : null,
  };
}

/** `http://[user:pass@]host:port`, credentials percent-encoded. */
export function proxyUrlWith(
  base: string,
  creds: { user: string; pass: string } | null,
): string {
  if (!creds) return base;
  const enc = (s: string) => encodeURIComponent(s);
  return base.replace(/^http:\/\//, `http://${enc(creds.user)}:${enc(creds.pass)}@`);
}

/** The URL clients use for a listen address (`0.0.0.0` -> `127.0.0.1`, `::` -> `[::1]`). */
export function clientUrlFor(listen: { host: string; port: number }): string {
  let host = listen.host;
  if (host === "0.0.0.0" || host === "") host = "127.0.0.1";
  if (host === "::") host = "::1";
  return `http://${host.includes(":") ? `[${host}]` : host}:${listen.port}`;
}

/**
 * POST a JSON body with node:http (Deno's fetch would follow our own
 * HTTP_PROXY, which may point at the very proxy being asked).
 */
function postJson(
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; body: Record<string, unknown> | null }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(url, {
      method: "POST",
      headers: { ...headers, "content-length": String(new TextEncoder().encode(body).length) },
      timeout: 10_000,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        let parsed: Record<string, unknown> | null = null;
        try {
          parsed = JSON.parse(new TextDecoder().decode(Buffer.concat(chunks)));
        } catch {
          // Not JSON: no body to read.
        }
        resolvePromise({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * Ask the proxy whether the credentials of `target` authenticate, before a
 * shell is pointed at it with them: `GET /_/health` through the proxy (to its
 * own address) with them as `Proxy-Authorization`. Wrong ones are a 407 (and
 * a row in its audit, like any refused credentials). `refused` says why they
 * were refused; `unchecked` why they could not be checked (the proxy is not
 * running yet, or is not agentgate): that is not an error.
 *
 * @example
 * await checkCredentials(parseProxyUrl("http://wrong@127.0.0.1:4100"))
 * // { refused: "the proxy at http://127.0.0.1:4100 refused the credentials in --proxy (407: …", unchecked: null }
 */
export async function checkCredentials(
  target: ProxyTarget,
): Promise<{ refused: string | null; unchecked: string | null }> {
  const u = new URL(target.url);
  const basic = btoa(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`);
  const answer = await new Promise<number | string>((resolvePromise) => {
    const req = http.request({
      host: target.host,
      port: target.port,
      path: `${target.base}/_/health`,
      headers: { host: u.host, "proxy-authorization": `Basic ${basic}` },
      timeout: 5000,
    }, (res) => {
      res.resume();
      resolvePromise(res.statusCode ?? "no status");
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 5 s")));
    req.on("error", (e) => resolvePromise(e.message));
    req.end();
  });
  if (answer === 407) {
    return {
      refused: `the proxy at ${target.base} refused the credentials in --proxy (407: invalid ` +
        "proxy credentials): use one of its proxy.auth tokens (http://TOKEN@HOST:PORT), or --mint a session",
      unchecked: null,
    };
  }
  if (answer === 200 || answer === 503) return { refused: null, unchecked: null };
  return {
    refused: null,
    unchecked: `could not check the credentials in --proxy with ${target.base} (${
      typeof answer === "number" ? `/_/health answered ${answer}` : answer
    })`,
  };
}

// --- shells --------------------------------------------------------------------

/** Shells `env` writes for. */
export const SHELLS = ["bash", "zsh", "fish", "powershell"] as const;
/** One of {@link SHELLS}. */
export type Shell = typeof SHELLS[number];

/**
 * A value as a literal of `shell`: single quotes everywhere (nothing expands
 * inside them), with that shell's way of writing a quote inside.
 *
 * @example
 * shellQuote("bash", "it's") // "'it'\\''s'"
 * shellQuote("fish", "a\\b'") // "'a\\\\b\\''"
 * shellQuote("powershell", "it's") // "'it''s'"
 */
export function shellQuote(shell: Shell, value: string): string {
  switch (shell) {
    case "bash":
    case "zsh":
      return `'${value.replace(/'/g, `'\\''`)}'`;
    case "fish":
      // In fish single quotes, only \\ and \' are escapes.
      return `'${value.replace(/[\\']/g, (c) => "\\" + c)}'`;
    case "powershell":
      // PowerShell also treats the typographic single quotes as quotes.
      return `'${value.replace(/['\u2018\u2019\u201a\u201b]/g, (c) => c + c)}'`;
  }
}

/**
 * Lines that set `vars` (exported to child processes) in `shell`.
 *
 * @example
 * setLines("fish", [["HTTP_PROXY", "http://127.0.0.1:4100"]])
 * // "set -gx HTTP_PROXY 'http://127.0.0.1:4100'\n"
 */
export function setLines(shell: Shell, vars: [string, string][]): string {
  return vars.map(([n, v]) => {
    const q = shellQuote(shell, v);
    switch (shell) {
      case "bash":
      case "zsh":
        return `export ${n}=${q}\n`;
      case "fish":
        return `set -gx ${n} ${q}\n`;
      case "powershell":
        return `$env:${n} = ${q}\n`;
    }
  }).join("");
}

/**
 * Lines that remove `names` from the environment of `shell`.
 *
 * @example
 * unsetLines("bash", ["HTTP_PROXY", "http_proxy"]) // "unset HTTP_PROXY http_proxy\n"
 */
export function unsetLines(shell: Shell, names: readonly string[]): string {
  switch (shell) {
    case "bash":
    case "zsh":
      return `unset ${names.join(" ")}\n`;
    case "fish":
      return `set -e ${names.join(" ")}\n`;
    case "powershell":
      return names.map((n) => `Remove-Item Env:${n} -ErrorAction SilentlyContinue\n`).join("");
  }
}

/** The shell to write for when `--shell` is not given: from `$SHELL`, else bash (PowerShell on Windows). */
export function detectShell(env: (name: string) => string | undefined): Shell {
  const sh = (env("SHELL") ?? "").split(/[\\/]/).pop() ?? "";
  if (sh === "zsh" || sh === "fish") return sh;
  if (/^(pwsh|powershell)(\.exe)?$/i.test(sh)) return "powershell";
  if (!sh && Deno.build.os === "windows") return "powershell";
  return "bash";
}

// --- the command ---------------------------------------------------------------

/** The interface of `env`. */
export const envSpec: CommandSpec = {
  name: "env",
  summary: "Print the shell lines that send programs through agentgate (or clear them).",
  usage: "agentgate env [--config FILE] [--proxy URL] [--mint [--label LABEL] [--ttl DURATION]]\n" +
    "                     [--shell bash|zsh|fish|powershell] [--unset]",
  options: [
    configOption(
      "Policy whose proxy.listen and tls settings to use (default: ./agentgate.yaml if present).",
    ),
    proxyOption(
      "Proxy to point at, a proxy.auth token included if it needs one: http://TOKEN@HOST:PORT " +
        "(default: the config's proxy.listen).",
    ),
    {
      name: "mint",
      type: "boolean",
      help: "Mint a session on the running proxy (POST /_/api/sessions, needs " +
        "$AGENTGATE_DASHBOARD_TOKEN) and put its id and secret in the proxy URL.",
    },
    {
      name: "label",
      short: "l",
      type: "string",
      value: "LABEL",
      help: "Label of the minted session (id LABEL-<random hex>); with --mint.",
    },
    {
      name: "ttl",
      type: "string",
      value: "DURATION",
      help: "Lifetime of the minted session (default 24h, at most 30d); with --mint.",
    },
    {
      name: "shell",
      short: "s",
      type: "string",
      value: "SHELL",
      choices: SHELLS,
      help: "bash, zsh, fish or powershell (default: from $SHELL).",
    },
    {
      name: "unset",
      type: "boolean",
      help: "Print the lines that restore what the variables held before agentgate env instead.",
    },
  ],
  epilog: [
    "Sets HTTP_PROXY, HTTPS_PROXY, ALL_PROXY (and lower-case twins), NO_PROXY, no_proxy,",
    "NODE_USE_ENV_PROXY=1 and, when the policy intercepts TLS, writes a trust bundle (system",
    "roots + the agentgate CA) to bundle.pem in the CA directory and points SSL_CERT_FILE,",
    "REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO, PIP_CERT, AWS_CA_BUNDLE,",
    "CARGO_HTTP_CAINFO and GRPC_DEFAULT_SSL_ROOTS_FILE_PATH at it, NODE_EXTRA_CA_CERTS and",
    "DENO_CERT at the CA alone, and npm_config_cafile (when an npmrc gives npm a CA of its own)",
    "at that CA plus the agentgate CA. A certificate variable you had is extended (your file",
    "plus the CA), not replaced. What each variable held before goes into",
    "AGENTGATE_ENV_RESTORE; --unset puts it back. Values are single-quoted literals.",
    "",
    "Credentials: a proxy without proxy.auth takes anonymous clients. Otherwise pass a",
    "proxy.auth token in --proxy (its session is the token's label), or --mint a session of",
    "your own: its id and secret go into the URL, and only the admin token can mint one.",
    "With credentials: in the policy, that session's phantom tokens are printed too (its",
    "variables, an .npmrc in <CA dir>/sessions/, a git credential helper); anonymous shells",
    "have none.",
    "",
    "Examples:",
    '  eval "$(agentgate env)"                         # bash, zsh',
    "  agentgate env --shell fish | source",
    "  agentgate env --shell powershell | Invoke-Expression",
    '  eval "$(agentgate env --proxy http://$AGENTGATE_TOKEN@proxy.internal:4100)"',
    '  eval "$(AGENTGATE_DASHBOARD_TOKEN=… agentgate env --mint --label me)"',
    '  eval "$(agentgate env --unset)"                 # back to what the shell had',
  ].join("\n"),
};

/** Run `env`. */
export async function env(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(envSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(envSpec));
    return 0;
  }
  const shell = (parsed.opts.shell as Shell | undefined) ?? detectShell(io.env);
  if (parsed.opts.unset) {
    io.stdout(restoreLines(shell, io.env));
    return 0;
  }
  const proxyOpt = parsed.opts.proxy as string | undefined;
  const target = proxyOpt === undefined ? null : parseProxyUrl(proxyOpt);
  const got = await loadForCommand(parsed.opts.config as string | undefined, io, { quiet: true });
  if (got === null) return 1;
  const { config } = got.loaded;
  const base = target ? target.base : clientUrlFor(config.listen);
  let proxyUrl = target ? target.url : base;
  const mint = Boolean(parsed.opts.mint);
  /** The session's phantoms (a minted session, or a proxy.auth token's). */
  let issued: IssuedCredential[] = [];
  let sessionName = "";
  const label = parsed.opts.label as string | undefined;
  const ttl = parsed.opts.ttl as string | undefined;
  if (!mint && (label !== undefined || ttl !== undefined)) {
    throw new UsageError("--label and --ttl name the session --mint creates: add --mint");
  }
  if (label !== undefined && !LABEL_PATTERN.test(label)) {
    throw new UsageError(
      `invalid --label "${label}": use up to 64 letters, digits, ".", "_", "~" or "-", ` +
        "starting with a letter or digit",
    );
  }
  if (mint) {
    const headers: Record<string, string> = { "content-type": "application/json" };
    const admin = io.env("AGENTGATE_DASHBOARD_TOKEN");
    if (admin) headers.authorization = `Bearer ${admin}`;
    const body = JSON.stringify({ ...(label ? { label } : {}), ...(ttl ? { ttl } : {}) });
    let r: { status: number; body: Record<string, unknown> | null };
    try {
      r = await postJson(`${base}/_/api/sessions`, headers, body);
    } catch (e) {
      io.stderr(`agentgate env: cannot mint a session on ${base}: ${(e as Error).message}\n`);
      return 1;
    }
    if (r.status !== 201 || typeof r.body?.session !== "string") {
      io.stderr(
        `agentgate env: cannot mint a session on ${base}: ${r.status}${
          typeof r.body?.reason === "string" ? `: ${r.body.reason}` : ""
        }\n`,
      );
      return 1;
    }
    const session = r.body.session as string;
    proxyUrl = proxyUrlWith(base, { user: session, pass: r.body.secret as string });
    if (Array.isArray(r.body.credentials)) issued = r.body.credentials as IssuedCredential[];
    sessionName = session;
    const until = typeof r.body.expires_at === "number"
      ? ` until ${new Date(r.body.expires_at).toISOString()}`
      : "";
    io.stderr(
      `agentgate env: session ${session}${until}; revoke it with DELETE ${base}/_/api/sessions/${session}\n`,
    );
  } else if ((target === null || target.token === null) && config.proxyAuth.length > 0) {
    io.stderr(
      "agentgate env: warning: the policy sets proxy.auth, so the proxy answers 407 without " +
        "credentials: pass a token with --proxy http://TOKEN@HOST:PORT, or mint a session with --mint\n",
    );
  } else if (target !== null && target.token !== null) {
    const check = await checkCredentials(target);
    if (check.refused) {
      io.stderr(`agentgate env: ${check.refused}\n`);
      return 1;
    }
    if (check.unchecked) io.stderr(`agentgate env: warning: ${check.unchecked}\n`);
    if (config.credentials.length > 0) {
      // A proxy.auth token's session: ask the proxy for that session's phantoms.
      const got = await fetchPhantoms(base, { user: target.user ?? "", pass: target.token }).catch((
        e,
      ) => ({ status: 0, session: null, credentials: null, reason: (e as Error).message }));
      if (got.credentials === null) {
        io.stderr(
          `agentgate env: warning: no phantom tokens from ${base}/_/credentials (${
            got.status || "no answer"
          }${got.reason ? `: ${got.reason}` : ""}): the credentials of the policy are not set\n`,
        );
      } else {
        issued = got.credentials;
        sessionName = got.session ?? "token";
      }
    }
  } else if (config.credentials.length > 0) {
    io.stderr(
      "agentgate env: warning: phantom tokens belong to a session and this shell has none: " +
        "use --mint, or a proxy.auth token in --proxy, to get the policy's credentials\n",
    );
  }
  let trust: Record<string, string> | null = null;
  let caPem: string | null = null;
  if (config.tls.intercept.length > 0) {
    try {
      const ca = await loadOrCreateCA(config.tls.caDir ?? undefined);
      for (const w of ca.warnings) io.stderr(`agentgate env: warning: ${w}\n`);
      // As in `run`, certificate settings the user had are extended, not lost.
      const t = await trustVariables(
        ca,
        { env: environmentBefore(io.env), cwd: io.cwd },
        false,
        dirname(ca.certPath),
        { stableNames: true },
      );
      for (const [name, why] of t.replaced) {
        io.stderr(`agentgate env: warning: ${name} replaced: ${why}\n`);
      }
      trust = t.vars;
      caPem = ca.certPem;
    } catch (e) {
      if (!(e instanceof CaError) && !/trust bundle/.test((e as Error).message)) throw e;
      io.stderr(`agentgate env: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const vars = proxyEnvironment({ proxyUrl, noProxy: noProxyOf(config), trust });
  if (issued.length > 0) {
    const home = config.tls.caDir ? resolve(io.cwd, expandHome(config.tls.caDir)) : defaultCaDir();
    vars.push(
      ...await phantomEnvironment(issued, {
        env: io.env,
        npmrcFile: join(home, "sessions", `${sessionName.replace(/[^A-Za-z0-9._-]/g, "_")}.npmrc`),
        trust: caPem !== null && trust?.SSL_CERT_FILE
          ? { caPem, bundle: trust.SSL_CERT_FILE }
          : undefined,
      }),
    );
  }
  vars.push([RESTORE_VAR, JSON.stringify(recordOf(vars, io.env))]);
  io.stdout(setLines(shell, vars));
  return 0;
}

/**
 * What {@link RESTORE_VAR} holds after `env` sets `vars`: the first `env`'s
 * record, completed with the current value (or null) of each variable set
 * now for the first time.
 */
function recordOf(
  vars: [string, string][],
  env: (name: string) => string | undefined,
): Record<string, string | null> {
  const record = restoreRecord(env) ?? {};
  for (const [name] of vars) {
    if (!Object.hasOwn(record, name)) record[name] = env(name) ?? null;
  }
  return record;
}

/**
 * The lines of `env --unset`: the variables `env` set go back to what they
 * held before it (the record in {@link RESTORE_VAR}), or are removed when
 * they were unset; without a record, every variable `env` sets is removed.
 *
 * @example
 * restoreLines("bash", (n) => n === RESTORE_VAR ? '{"SSL_CERT_FILE":"/corp.pem","HTTP_PROXY":null}' : undefined)
 * // "export SSL_CERT_FILE='/corp.pem'\nunset HTTP_PROXY AGENTGATE_ENV_RESTORE\n"
 */
export function restoreLines(shell: Shell, env: (name: string) => string | undefined): string {
  const record = restoreRecord(env);
  if (record === null) return unsetLines(shell, ALL_VARS);
  const back: [string, string][] = [];
  const gone: string[] = [];
  for (const [name, value] of Object.entries(record)) {
    if (value === null) gone.push(name);
    else back.push([name, value]);
  }
  return setLines(shell, back) + unsetLines(shell, [...gone, RESTORE_VAR]);
}
