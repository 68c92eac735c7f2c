/**
 * What npm (and pnpm, npx, which read the same files) is configured with, as
 * far as agentgate needs it: its own certificate authorities and proxies.
 *
 * npm does not only read environment variables. A `cafile` (or inline `ca`)
 * in any npmrc *replaces* Node's roots for npm's requests, so
 * `NODE_EXTRA_CA_CERTS` is ignored and every intercepted request fails with
 * `UNABLE_TO_VERIFY_LEAF_SIGNATURE` (after minutes of retries). A `proxy` or
 * `https-proxy` there wins over `HTTPS_PROXY`. The chain is read the way npm
 * reads it (`@npmcli/config`): environment (`npm_config_*`, any case), the
 * project's `.npmrc` (nearest directory with a `package.json` or
 * `node_modules`), the user's (`userconfig`, `~/.npmrc`), the global one
 * (`globalconfig`, `$PREFIX/etc/npmrc`) and npm's built-in one; the first
 * that sets a key wins. As in npm, `cafile` beats `ca` whatever file each is
 * in.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";

/** One npmrc layer: where it came from and its keys (values as npm reads them). */
export interface NpmrcLayer {
  /** `environment`, or the file's path. */
  where: string;
  values: Map<string, string | string[]>;
}

/** The certificate authorities npm is configured to trust instead of Node's roots. */
export interface NpmCa {
  /** PEM certificate blocks, each ending in a newline. */
  pems: string[];
  /** What set it, for messages: `cafile "/etc/corp.pem" (from /home/me/.npmrc)`. */
  from: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Parse npmrc text (ini): `key=value` lines, `;`/`#` comments, `key[]=` lists,
 * double-quoted values read as JSON strings, `${VAR}` replaced from `env`.
 * Keys inside `[sections]` are not npm settings and are skipped.
 *
 * @example
 * parseNpmrc('cafile = ${HOME}/corp.pem\nca[]="a"\n', (n) => n === "HOME" ? "/h" : undefined)
 * // Map { "cafile" => "/h/corp.pem", "ca" => ["a"] }
 */
export function parseNpmrc(
  text: string,
  env: (name: string) => string | undefined,
): Map<string, string | string[]> {
  const out = new Map<string, string | string[]>();
  let inSection = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith(";") || line.startsWith("#")) continue;
    if (/^\[.*\]$/.test(line)) {
      inSection = true;
      continue;
    }
    if (inSection) continue;
    const eq = line.indexOf("=");
    let key = (eq === -1 ? line : line.slice(0, eq)).trim();
    let value = eq === -1 ? "true" : line.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      try {
        value = JSON.parse(value);
      } catch {
        value = value.slice(1, -1);
      }
    } else if (value.startsWith("'") && value.endsWith("'") && value.length >= 2) {
      value = value.slice(1, -1);
    }
    // npm replaces `${VAR}` (and `${VAR?}`, empty when unset); an unset `${VAR}` stays as written.
    value = value.replace(/(?<!\\)\$\{([^${}?]+)(\?)?\}/g, (all, name, opt) => {
      const v = env(name);
      return v !== undefined ? v : opt ? "" : all;
    });
    const list = key.endsWith("[]");
    if (list) key = key.slice(0, -2);
    key = key.toLowerCase();
    if (list) {
      const prev = out.get(key);
      out.set(key, [...(Array.isArray(prev) ? prev : prev === undefined ? [] : [prev]), value]);
    } else out.set(key, value);
  }
  return out;
}

/** Find an executable on `PATH` (its real path), or null. */
function which(name: string, path: string | undefined): string | null {
  for (const dir of (path ?? "").split(":")) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      const st = Deno.statSync(file);
      if (st.isFile && (st.mode === null || (st.mode & 0o111) !== 0)) {
        return Deno.realPathSync(file);
      }
    } catch {
      // Not here.
    }
  }
  return null;
}

function readLayer(file: string, env: (n: string) => string | undefined): NpmrcLayer | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    return null; // npm skips a missing or unreadable npmrc too
  }
  return { where: file, values: parseNpmrc(text, env) };
}

/** npm's `path` type: `~/` is the home directory, other relative paths the working directory. */
function npmPath(value: string, cwd: string, home: string): string {
  if (value.startsWith("~/")) return resolve(home, value.slice(2));
  return resolve(cwd, value);
}

/**
 * The npmrc layers npm would read in `cwd`, highest precedence first.
 *
 * @example
 * npmrcLayers((n) => Deno.env.get(n), Deno.cwd()).map((l) => l.where)
 * // ["environment", "/work/app/.npmrc", "/home/me/.npmrc", "/usr/etc/npmrc", "/usr/lib/node_modules/npm/npmrc"]
 */
export function npmrcLayers(
  env: (name: string) => string | undefined,
  cwd: string,
): NpmrcLayer[] {
  const home = env("HOME") ?? "";
  const fromEnv = new Map<string, string>();
  for (
    const key of ["cafile", "ca", "proxy", "https-proxy", "userconfig", "globalconfig", "prefix"]
  ) {
    const snake = key.replace(/-/g, "_");
    const v = env(`npm_config_${snake}`) ?? env(`NPM_CONFIG_${snake.toUpperCase()}`);
    if (v !== undefined && v !== "") fromEnv.set(key, v);
  }
  const layers: NpmrcLayer[] = [{ where: "environment", values: fromEnv }];
  const get = (key: string): string | undefined => {
    for (const l of layers) {
      const v = l.values.get(key);
      if (typeof v === "string") return v;
    }
    return undefined;
  };
  // The project: the nearest directory with package.json or node_modules, else cwd.
  const exists = (p: string) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false;
    }
  };
  let project = resolve(cwd);
  for (let d = project;; d = dirname(d)) {
    if (exists(join(d, "package.json")) || exists(join(d, "node_modules"))) {
      project = d;
      break;
    }
    if (dirname(d) === d) break;
  }
  const userFile = npmPath(get("userconfig") ?? "~/.npmrc", cwd, home);
  const projectFile = join(project, ".npmrc");
  if (projectFile !== userFile) {
    const l = readLayer(projectFile, env);
    if (l) layers.push(l);
  }
  const user = readLayer(userFile, env);
  if (user) layers.push(user);
  const npm = which("npm", env("PATH"));
  // bin/npm-cli.js in the npm package: the package is two levels up.
  const npmRoot = npm ? dirname(dirname(npm)) : null;
  const builtin = npmRoot ? readLayer(join(npmRoot, "npmrc"), env) : null;
  let globalFile = get("globalconfig");
  if (globalFile === undefined) {
    let prefix = get("prefix") ?? (builtin?.values.get("prefix") as string | undefined) ??
      env("PREFIX");
    if (prefix === undefined) {
      const node = which("node", env("PATH"));
      prefix = node ? dirname(dirname(node)) : undefined;
    }
    if (prefix !== undefined) globalFile = join(npmPath(prefix, cwd, home), "etc", "npmrc");
  }
  if (globalFile !== undefined) {
    const l = readLayer(npmPath(globalFile, cwd, home), env);
    if (l) layers.push(l);
  }
  if (builtin) layers.push(builtin);
  return layers;
}

function describe(layer: NpmrcLayer, key: string): string {
  if (layer.where === "environment") return `npm_config_${key.replace(/-/g, "_")}`;
  return `${key} in ${layer.where}`;
}

/**
 * The certificate authorities npm trusts instead of Node's roots, or null
 * when it uses Node's (then `NODE_EXTRA_CA_CERTS` reaches it). A `cafile`
 * that does not exist is ignored, as npm ignores it.
 *
 * @example
 * npmConfiguredCa(npmrcLayers((n) => Deno.env.get(n), Deno.cwd()), Deno.cwd(), Deno.env.get("HOME") ?? "")
 * // { pems: ["-----BEGIN CERTIFICATE-----\n…"], from: 'cafile "/etc/corp.pem" (cafile in /home/me/.npmrc)' }
 */
export function npmConfiguredCa(layers: NpmrcLayer[], cwd: string, home: string): NpmCa | null {
  for (const l of layers) {
    const v = l.values.get("cafile");
    if (typeof v !== "string" || v === "" || v === "null") continue;
    const file = npmPath(v, cwd, home);
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      return null;
    }
    const pems = [...text.matchAll(PEM_CERT)].map((m) => m[0].replace(/\r\n/g, "\n") + "\n");
    return pems.length ? { pems, from: `cafile "${file}" (${describe(l, "cafile")})` } : null;
  }
  for (const l of layers) {
    const v = l.values.get("ca");
    if (v === undefined) continue;
    const all = (Array.isArray(v) ? v : [v]).join("\n").replace(/\\n/g, "\n");
    if (all.trim() === "" || all.trim() === "null") return null;
    const pems = [...all.matchAll(PEM_CERT)].map((m) => m[0] + "\n");
    return pems.length ? { pems, from: describe(l, "ca") } : null;
  }
  return null;
}

/**
 * The proxies npm is configured with (`proxy`, `https-proxy`: in an npmrc or
 * as `npm_config_*`), which win over `HTTPS_PROXY` for npm: `[key, value, where]`.
 *
 * @example
 * npmConfiguredProxies(layers) // [["https-proxy", "http://corp:3128", "/home/me/.npmrc"]]
 */
export function npmConfiguredProxies(layers: NpmrcLayer[]): [string, string, string][] {
  const out: [string, string, string][] = [];
  for (const key of ["proxy", "https-proxy"]) {
    for (const l of layers) {
      const v = l.values.get(key);
      if (typeof v !== "string") continue;
      if (v !== "" && v !== "null" && v !== "false") out.push([key, v, describe(l, key)]);
      break;
    }
  }
  return out;
}
