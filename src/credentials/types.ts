/**
 * The compiled `credentials:` of a policy, and what a session is handed for
 * each (its phantom). Values only: no secret is ever part of these types —
 * the real values are loaded at start and on reload and kept beside the
 * configuration (`proxy/secrets.ts`, the credentials addon).
 *
 * @module
 */

/** How a phantom looks: `prefix` + `agentgate` + `sep` + `random` base62 characters. */
export interface PhantomShape {
  /** Text an SDK or a scanner expects in front (`sk-proj-`, `ghp_`). */
  prefix: string;
  /** Between the marker and the random part (`-` or ""). */
  sep: string;
  /** Number of random base62 characters (at least 22: 130 bits). */
  random: number;
}

/** Where the real secret comes from: read at start and on every reload. */
export type CredentialSource =
  | { kind: "env"; name: string }
  | { kind: "file"; path: string }
  | { kind: "command"; argv: string[]; cwd: string };

/** Where a credential may be used (compiled by the config loader). */
export interface CredentialScope {
  /** Host patterns as written (`api.openai.com`, `http://localhost:8080`). */
  hosts: string[];
  /** Whether scheme, host and port are inside `hosts` (https only unless a pattern says `http://`). */
  allowsHost(scheme: "http" | "https", host: string, port: number): boolean;
  /** Path globs as written, or null for any path. */
  paths: string[] | null;
  /** Whether a (normalized) request path is inside `paths`. */
  allowsPath(path: string): boolean;
  /** Upper-case methods, or null for any. */
  methods: ReadonlySet<string> | null;
}

/** A credential of the policy, compiled. */
export interface CredentialSpec {
  name: string;
  /** The preset it started from, or null. */
  preset: string | null;
  source: CredentialSource;
  scope: CredentialScope;
  /** Headers that carry it: lower-case names and the accepted formats (`Bearer {secret}`). */
  headers: { name: string; formats: string[] }[];
  /** HTTP basic auth (`Authorization: Basic`) with the secret as password; `username` is sent upstream when set. */
  basic: { username: string | null } | null;
  /** A query parameter that carries it (`key` for Gemini). */
  query: string | null;
  phantom: PhantomShape;
  /** Environment variables `agentgate run` and `env` set to the phantom. */
  variables: string[];
  /** An npm registry (`//registry.npmjs.org/`): `run` writes `<npmrc>:_authToken=<phantom>` to an .npmrc. */
  npmrc: string | null;
  /** Hosts git gets a credential helper for (basic auth with the phantom as password). */
  git: string[];
  /** `file:line` of the entry, for messages. */
  where: string;
}

/** What a session is handed for one credential (the mint answer, `run`, `env`). */
export interface IssuedCredential {
  name: string;
  /** The session's phantom token: useless anywhere but through agentgate, in this session. */
  phantom: string;
  variables: string[];
  npmrc: string | null;
  /** git credential helper hosts, and the user name it gives. */
  git: { hosts: string[]; username: string };
}
