/**
 * Trust bundle: the system roots plus the agentgate CA in one PEM file.
 *
 * Tools that read `SSL_CERT_FILE` (OpenSSL, Python, curl, Go, git) *replace*
 * their trust store with that file instead of adding to it, so pointing them
 * at `ca.pem` alone would break every host that is not intercepted.
 *
 * @example
 * ```ts
 * import { loadOrCreateCA } from "./ca.ts";
 * import { writeTrustBundle } from "./bundle.ts";
 * const ca = await loadOrCreateCA();
 * const { file, roots } = await writeTrustBundle(ca, "./agentgate-bundle.pem");
 * // SSL_CERT_FILE=./agentgate-bundle.pem python3 agent.py
 * ```
 *
 * @module
 */

import { rootCertificates } from "node:tls";
import { dirname, join, resolve } from "node:path";

/**
 * Where operating systems keep their PEM root bundle, in the order tried
 * (the list Go's crypto/x509 uses, plus macOS Homebrew's).
 */
export const SYSTEM_ROOT_FILES: readonly string[] = [
  "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo, Arch
  "/etc/pki/tls/certs/ca-bundle.crt", // Fedora, RHEL 6
  "/etc/ssl/ca-bundle.pem", // openSUSE
  "/etc/pki/tls/cacert.pem", // OpenELEC
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7+
  "/etc/ssl/cert.pem", // Alpine, macOS, OpenBSD
  "/usr/local/etc/openssl/cert.pem", // macOS Homebrew (Intel)
  "/opt/homebrew/etc/openssl@3/cert.pem", // macOS Homebrew (Apple silicon)
  "/usr/local/share/certs/ca-root-nss.crt", // FreeBSD
];

/** Label of the fallback source in {@link SystemRoots.source}. */
export const NODE_ROOTS_SOURCE = "node:tls rootCertificates";

/** Root certificates and where they came from. */
export interface SystemRoots {
  /** Path of the file read, or {@link NODE_ROOTS_SOURCE}. */
  source: string;
  /** One PEM block per certificate, each ending in a newline. */
  pems: string[];
}

/** What {@link writeTrustBundle} wrote. */
export interface TrustBundle {
  /** Absolute path of the bundle. */
  file: string;
  /** Where the system roots came from. */
  source: string;
  /** Number of system roots in the bundle (the CA excluded). */
  roots: number;
}

/** Options of {@link writeTrustBundle} and {@link readSystemRoots}. */
export interface BundleOptions {
  /** Files tried in order for the system roots; default {@link SYSTEM_ROOT_FILES}. */
  systemFiles?: readonly string[];
  /**
   * The roots to use instead of reading any file (npm's inline `ca`): PEM
   * blocks and a description of where they came from.
   */
  roots?: SystemRoots;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Reads the first system root bundle that holds at least one certificate;
 * falls back to the Mozilla roots compiled into the runtime (`node:tls`
 * `rootCertificates`), so a bundle can be made on any machine.
 *
 * @example
 * ```ts
 * const { source, pems } = await readSystemRoots();
 * console.log(`${pems.length} roots from "${source}"`);
 * ```
 */
export async function readSystemRoots(options: BundleOptions = {}): Promise<SystemRoots> {
  for (const path of options.systemFiles ?? SYSTEM_ROOT_FILES) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      continue; // absent or unreadable: try the next location
    }
    const pems = extractCertificates(text);
    if (pems.length > 0) return { source: path, pems };
  }
  return { source: NODE_ROOTS_SOURCE, pems: rootCertificates.flatMap(extractCertificates) };
}

/**
 * Writes the system roots plus `ca.certPem` to `file` (mode 0644), replacing it
 * atomically, and returns what it wrote. A root equal to the CA (a bundle
 * made from an earlier bundle) is kept once.
 *
 * @example
 * ```ts
 * const ca = await loadOrCreateCA();
 * await writeTrustBundle(ca, "/tmp/bundle.pem");
 * ```
 */
export async function writeTrustBundle(
  ca: { certPem: string },
  file: string,
  options: BundleOptions = {},
): Promise<TrustBundle> {
  const path = resolve(file);
  const caPems = extractCertificates(ca.certPem);
  if (caPems.length === 0) throw new Error(`CA certificate is not a PEM "CERTIFICATE" block`);
  const system = options.roots ?? await readSystemRoots(options);
  const seen = new Set(caPems.map(pemKey));
  const roots: string[] = [];
  for (const pem of system.pems) {
    const key = pemKey(pem);
    if (seen.has(key)) continue;
    seen.add(key);
    roots.push(pem);
  }
  const text =
    `# Trust bundle written by agentgate: ${roots.length} roots from "${system.source}",\n` +
    `# then the agentgate CA. Regenerate with: agentgate ca --bundle FILE\n` +
    roots.join("") +
    `# agentgate CA\n` + caPems.join("");

  // A temporary file then rename: a tool reading the bundle while it is
  // rewritten sees the old or the new file, never a truncated one.
  const tmp = join(dirname(path), `.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(tmp, text, { mode: 0o644 });
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, 0o644);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Cannot write trust bundle "${path}": ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { file: path, source: system.source, roots: roots.length };
}

function extractCertificates(text: string): string[] {
  return [...text.matchAll(PEM_CERT)].map((m) => m[0].replace(/\r\n/g, "\n") + "\n");
}

/** Base64 body without line breaks: the same certificate wrapped differently is one. */
function pemKey(pem: string): string {
  return pem.replace(/-----[A-Z ]+-----|\s/g, "");
}
