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
      help: "Write the system roots plus the agentgate CA to FILE (for SSL_CERT_FILE).",
    },
    { name: "path", type: "boolean", help: "Print only the path of ca.pem." },
  ],
  epilog: [
    "Examples:",
    '  curl --cacert "$(agentgate ca --path)" -x http://127.0.0.1:4100 https://api.openai.com/v1/models',
    "  agentgate ca --bundle /tmp/agentgate-bundle.pem && export SSL_CERT_FILE=/tmp/agentgate-bundle.pem",
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
    io.stdout(
      `wrote ${b.file}: ${b.roots} system root(s) from ${b.source} + the agentgate CA\n` +
        `use it with: export SSL_CERT_FILE=${b.file} REQUESTS_CA_BUNDLE=${b.file}\n`,
    );
    return 0;
  }
  if (parsed.opts.path) {
    io.stdout(authority.certPath + "\n");
    return 0;
  }
  io.stdout(
    `# ${authority.certPath} (${authority.created ? "created now" : "existing"})\n` +
      `# ${authority.subject}, SHA-256 ${authority.fingerprint256}\n` +
      `# valid until ${authority.notAfter.toISOString()}\n` + authority.certPem +
      (authority.certPem.endsWith("\n") ? "" : "\n"),
  );
  return 0;
}
