/**
 * The certificate variables `agentgate run` and `agentgate env` hand out when
 * TLS is intercepted: every trust setting a common client reads, pointed at
 * the agentgate CA — added to what the client trusted before, never instead
 * of it.
 *
 * @module
 */
import { join, resolve } from "node:path";
import type { Io } from "./io.ts";
import { npmConfiguredCa, npmrcLayers } from "./npmrc.ts";
import { writeTrustBundle } from "../tls/bundle.ts";

/**
 * Variables that *replace* a tool's trust store: they get the bundle (system
 * roots + the agentgate CA), never the CA alone, or every host that is not
 * intercepted would fail. OpenSSL (Python `ssl`, httpx, Go, Ruby, .NET and
 * uv on Linux), requests, curl, git, pip, the AWS CLI and SDKs, cargo, gRPC.
 */
export const BUNDLE_VARS = [
  "SSL_CERT_FILE",
  "REQUESTS_CA_BUNDLE",
  "CURL_CA_BUNDLE",
  "GIT_SSL_CAINFO",
  "PIP_CERT",
  "AWS_CA_BUNDLE",
  "CARGO_HTTP_CAINFO",
  "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
] as const;

/** Variables that *add* certificates to a runtime's built-in roots: the CA alone. */
export const CA_VARS = ["NODE_EXTRA_CA_CERTS", "DENO_CERT"] as const;

/**
 * npm's certificate setting, set only when npm's own configuration replaces
 * Node's roots (an npmrc `cafile` or `ca`): then `NODE_EXTRA_CA_CERTS` does
 * not reach npm (nor pnpm, which reads the same settings).
 */
export const NPM_CAFILE_VAR = "npm_config_cafile";

/** What {@link trustVariables} decided. */
export interface TrustVariables {
  /** Variable -> file. */
  vars: Record<string, string>;
  /** Variables that point at the user's own certificates plus the CA. */
  extended: string[];
  /** Variables the user set that could not be extended, and why. */
  replaced: [string, string][];
  /** What npm's own CA setting was, when it has one (`cafile "…" (…)`). */
  npm: string | null;
}

async function shortHash(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The certificate variables of a child when TLS is intercepted. A variable
 * the user already set to a certificate file is *extended* rather than kept
 * or replaced: it points at a copy of that file plus the agentgate CA, so the
 * user's own roots (a corporate CA, a CI image's bundle) stay trusted and the
 * intercepted hosts are trusted too. Unset ones get the trust bundle (system
 * roots + CA; `SSL_CERT_FILE` & co.) or the CA alone (`NODE_EXTRA_CA_CERTS`,
 * `DENO_CERT`). npm gets `npm_config_cafile` only when its own configuration
 * (an npmrc's `cafile` or `ca`, or `npm_config_cafile`) replaces Node's
 * roots: then it is those certificates plus the CA. With `override`, the
 * user's values are ignored (npm's setting, when there is one, gets the
 * trust bundle). Files are written into `dir`: `bundle.pem`, `bundle-N.pem`
 * for extended ones, or with `stableNames` names derived from their source,
 * so a directory that outlives the process (`env`'s CA directory) keeps one
 * file per source.
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
  opts: { stableNames?: boolean } = {},
): Promise<TrustVariables> {
  const vars: Record<string, string> = {};
  const extended: string[] = [];
  const replaced: [string, string][] = [];
  const made = new Map<string, string>();
  const bundleOf = async (source: string | null): Promise<string> => {
    const key = source ?? "";
    let file = made.get(key);
    if (!file) {
      const name = source === null
        ? "bundle.pem"
        : opts.stableNames
        ? `bundle-${await shortHash(source)}.pem`
        : `bundle-${made.size + 1}.pem`;
      file = join(dir, name);
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
  // npm passes a configured CA as Node's `ca` option, which replaces the roots
  // NODE_EXTRA_CA_CERTS adds to: it needs its own variable, or every
  // intercepted request fails (UNABLE_TO_VERIFY_LEAF_SIGNATURE).
  const layers = npmrcLayers(io.env, io.cwd);
  const npm = npmConfiguredCa(layers, io.cwd, io.env("HOME") ?? "");
  if (npm !== null) {
    if (override) vars[NPM_CAFILE_VAR] = await bundleOf(null);
    else {
      const key = `npm:${npm.pems.join("")}`;
      let file = made.get(key);
      if (!file) {
        file = join(
          dir,
          opts.stableNames ? `npm-ca-${await shortHash(key)}.pem` : `npm-ca-${made.size + 1}.pem`,
        );
        await writeTrustBundle(ca, file, { roots: { source: npm.from, pems: npm.pems } });
        made.set(key, file);
      }
      vars[NPM_CAFILE_VAR] = file;
      extended.push(NPM_CAFILE_VAR);
    }
  }
  return { vars, extended, replaced, npm: npm?.from ?? null };
}
