/**
 * `agentgate ca`: where the interception CA is, its PEM, and a trust bundle
 * for tools that replace their trust store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE).
 *
 * @module
 */
import { type CommandSpec, helpText, parseArgs } from "./args.ts";
import { configOption } from "./options.ts";
import type { Io } from "./io.ts";
import { CaError, loadOrCreateCA } from "../tls/ca.ts";
import { writeTrustBundle } from "../tls/bundle.ts";
import { loadForCommand } from "./config_arg.ts";
import { resolve } from "node:path";

/** The interface of `ca`. */
export const caSpec: CommandSpec = {
  name: "ca",
  summary: "Show the interception CA (created on first use) or write a trust bundle.",
  usage: "agentgate ca [--config FILE | --dir DIR] [--bundle FILE] [--path]",
  options: [
    configOption(
      "Policy whose tls.ca_dir to use (default: ./agentgate.yaml if present).",
    ),
    {
      name: "dir",
      type: "string",
      value: "DIR",
      help: "CA directory (default: tls.ca_dir, else $AGENTGATE_HOME or ~/.agentgate).",
    },
    {
      name: "bundle",
      type: "string",
      value: "FILE",
      help:
        "Write the system roots plus the agentgate CA to FILE (for SSL_CERT_FILE); print its path.",
    },
    { name: "path", type: "boolean", help: "Print only the path of ca.pem." },
  ],
  epilog: [
    "stdout: the CA certificate (PEM), or with --path its file, or with --bundle the bundle's",
    "path, and nothing else; stderr: what was created or written.",
    "",
    "Examples:",
    '  curl --cacert "$(agentgate ca --path)" -x http://127.0.0.1:4100 https://api.openai.com/v1/models',
    "  export CURL_CA_BUNDLE=$(agentgate ca --bundle /tmp/agentgate-bundle.pem)",
    "  agentgate ca > agentgate-ca.pem",
  ].join("\n"),
};

/** Run `ca`. */
export async function ca(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(caSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(caSpec));
    return 0;
  }
  let dir = parsed.opts.dir as string | undefined;
  if (dir === undefined) {
    const got = await loadForCommand(parsed.opts.config as string | undefined, io, { quiet: true });
    if (got === null) return 1;
    dir = got.loaded.config.tls.caDir ?? undefined;
  } else dir = resolve(io.cwd, dir);
  let authority;
  try {
    authority = await loadOrCreateCA(dir);
  } catch (e) {
    if (!(e instanceof CaError)) throw e;
    io.stderr(`agentgate ca: ${e.message}\n`);
    return 1;
  }
  for (const w of authority.warnings) io.stderr(`agentgate ca: warning: ${w}\n`);
  if (parsed.opts.bundle) {
    const file = resolve(io.cwd, parsed.opts.bundle as string);
    const b = await writeTrustBundle(authority, file);
    // Only the path on stdout: CURL_CA_BUNDLE=$(agentgate ca --bundle b.pem) works.
    io.stderr(
      `agentgate ca: wrote ${b.file}: ${b.roots} system root(s) from ${b.source} + the agentgate CA\n` +
        `agentgate ca: use it with: export SSL_CERT_FILE=${b.file} REQUESTS_CA_BUNDLE=${b.file}\n`,
    );
    io.stdout(b.file + "\n");
    return 0;
  }
  if (parsed.opts.path) {
    io.stdout(authority.certPath + "\n");
    return 0;
  }
  // The PEM alone on stdout (agentgate ca > ca.pem); what it is, on stderr.
  io.stderr(
    `agentgate ca: ${authority.certPath} (${authority.created ? "created now" : "existing"})\n` +
      `agentgate ca: ${authority.subject}, SHA-256 ${authority.fingerprint256}\n` +
      `agentgate ca: valid until ${authority.notAfter.toISOString()}\n`,
  );
  io.stdout(authority.certPem + (authority.certPem.endsWith("\n") ? "" : "\n"));
  return 0;
}
