/**
 * Reading the real secrets of a policy's `credentials:` — from agentgate's
 * environment, a file, or a command's output — at start and on every
 * reload. Errors and warnings name the credential and where its secret was
 * to come from, never a byte of the value (a command's output is never
 * shown: on failure it may hold the secret; its stderr is not kept either).
 *
 * @module
 */
import type { CredentialSpec } from "../credentials/mod.ts";
import { Secret } from "../util/secret.ts";

/** Thrown when a secret cannot be loaded; `problems` are `file:line: message` lines. */
export class SecretLoadError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "SecretLoadError";
  }
}

/** What a loaded secret must look like: it travels in a header, and scanners look for it. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;
/** Shorter values would be found in traffic by chance. */
export const MIN_SECRET_LENGTH = 8;
const MAX_SECRET_LENGTH = 16_384;
/** How long a `command:` may take. */
export const COMMAND_TIMEOUT_MS = 30_000;

/**
 * Load every credential's secret. All sources are read (each failure is
 * reported), and nothing is returned unless all succeed: a policy whose
 * secrets cannot be read never replaces a working one.
 *
 * @throws {SecretLoadError} naming each credential that failed.
 * @example
 * const { secrets, warnings } = await loadSecrets(config.credentials, (n) => Deno.env.get(n));
 * secrets.get("openai"); // Secret([secret])
 */
export async function loadSecrets(
  specs: readonly CredentialSpec[],
  env: (name: string) => string | undefined,
): Promise<{ secrets: Map<string, Secret>; warnings: string[] }> {
  const secrets = new Map<string, Secret>();
  const problems: string[] = [];
  const warnings: string[] = [];
  await Promise.all(specs.map(async (spec) => {
    const fail = (why: string): void => {
      problems.push(`${spec.where}: credential "${spec.name}": ${why}`);
    };
    const got = await read(spec, env, (w) => warnings.push(`credential "${spec.name}": ${w}`));
    if (typeof got !== "string") return fail(got.error);
    const value = got.trim();
    const from = describe(spec);
    if (value === "") return fail(`${from} is empty`);
    if (value.length < MIN_SECRET_LENGTH) {
      return fail(
        `${from} holds ${value.length} character(s); a credential has ${MIN_SECRET_LENGTH} at least ` +
          "(a shorter value would be found in traffic by chance)",
      );
    }
    if (value.length > MAX_SECRET_LENGTH) return fail(`${from} is longer than 16 KiB`);
    if (!HEADER_SAFE.test(value)) {
      return fail(
        `${from} holds spaces, line breaks or non-ASCII characters a header cannot carry`,
      );
    }
    secrets.set(spec.name, new Secret(value));
  }));
  if (problems.length) throw new SecretLoadError(problems.sort());
  return { secrets, warnings };
}

/** Where a secret comes from, for messages. */
function describe(spec: CredentialSpec): string {
  const s = spec.source;
  switch (s.kind) {
    case "env":
      return `environment variable "${s.name}"`;
    case "file":
      return `file "${s.path}"`;
    case "command":
      return `the output of command "${s.argv[0]}"`;
  }
}

async function read(
  spec: CredentialSpec,
  env: (name: string) => string | undefined,
  warn: (w: string) => void,
): Promise<string | { error: string }> {
  const s = spec.source;
  switch (s.kind) {
    case "env": {
      const v = env(s.name);
      return v === undefined ? { error: `environment variable "${s.name}" is not set` } : v;
    }
    case "file": {
      try {
        const st = await Deno.stat(s.path);
        if (!st.isFile) return { error: `"${s.path}" is not a regular file` };
        if (st.mode !== null && (st.mode & 0o077) !== 0) {
          warn(
            `file "${s.path}" can be read by other users (mode ${
              (st.mode & 0o777).toString(8).padStart(4, "0")
            }): chmod 600 it`,
          );
        }
        return await Deno.readTextFile(s.path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return { error: `file "${s.path}" not found` };
        if (e instanceof Deno.errors.PermissionDenied) {
          return { error: `file "${s.path}" cannot be read (permission denied)` };
        }
        return { error: `file "${s.path}" cannot be read: ${(e as Error).name}` };
      }
    }
    case "command":
      return await runCommand(s.argv, s.cwd);
  }
}

/** A command's standard output; never its output or stderr in an error. */
async function runCommand(argv: string[], cwd: string): Promise<string | { error: string }> {
  const name = `command "${argv[0]}"`;
  const timeout = AbortSignal.timeout(COMMAND_TIMEOUT_MS);
  try {
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd,
      stdin: "null",
      stdout: "piped",
      // Its diagnostics could quote the secret: they are not kept.
      stderr: "null",
      signal: timeout,
    }).output();
    if (timeout.aborted) {
      return { error: `${name} did not finish within ${COMMAND_TIMEOUT_MS / 1000} s` };
    }
    if (!out.success) {
      return {
        error: `${name} exited with status ${out.code}${
          out.signal ? ` (${out.signal})` : ""
        } (its output is not shown: it may hold the secret; run it yourself to see why)`,
      };
    }
    return new TextDecoder().decode(out.stdout);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { error: `${name} not found` };
    if (e instanceof Deno.errors.PermissionDenied) {
      return { error: `${name} cannot be run (permission denied)` };
    }
    return { error: `${name} cannot be run: ${(e as Error).name}` };
  }
}
