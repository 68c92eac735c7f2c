/**
 * The schema of agentgate policy files (`version: 1`) and of the
 * @agentreserve/proxy format that loads unchanged.
 *
 * @module
 */
import type { ObjectSchema, Schema } from "./schema.ts";
import { parseDuration } from "../util/duration.ts";
import { LABEL_PATTERN, looksMinted } from "../util/session_id.ts";
import { PRESET_NAMES } from "../credentials/mod.ts";

const duration = (description: string): Schema => ({
  type: "string",
  description,
  pattern: "^([0-9]+(ms|s|m|h|d))+$",
  check: (v) => {
    try {
      parseDuration(v);
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  },
});

/**
 * A key of `llm.providers` or `upstream.resolve`: a host (glob for
 * providers), optionally with `:port` (IPv6 in brackets); null when fine.
 */
function hostPortKey(what: string, glob: boolean) {
  return (k: string): string | null => {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+)(?::(\d{1,5}))?$/.exec(k.trim());
    const port = m?.[2] === undefined ? null : Number(m[2]);
    if (!m || (port !== null && (port < 1 || port > 65535))) {
      return `${what} key "${k}" must be a host${
        glob ? " glob" : ""
      } or HOST:PORT with a port 1-65535 (IPv6 in brackets, e.g. "[::1]:8080")`;
    }
    if (!glob && m[1].includes("*")) return `${what} key "${k}" must name one host, not a glob`;
    return null;
  };
}

/** Token prices of `llm.prices` (an entry and its tiers share them). */
const TOKEN_PRICES: Record<string, Schema> = {
  input: {
    type: "number",
    minimum: 0,
    description: "Uncached text input, USD per million tokens.",
  },
  output: {
    type: "number",
    minimum: 0,
    description: "Output (reasoning included), USD per million tokens.",
  },
  cache_read: { type: "number", minimum: 0, description: "Cache reads (default: input)." },
  cache_write: {
    type: "number",
    minimum: 0,
    description: "Cache writes, 5-minute TTL (default: input, marked incomplete).",
  },
  cache_write_1h: {
    type: "number",
    minimum: 0,
    description: "Anthropic 1-hour cache writes (default: cache_write, marked incomplete).",
  },
  input_audio: {
    type: "number",
    minimum: 0,
    description: "Audio input (default: input, marked incomplete).",
  },
  output_audio: {
    type: "number",
    minimum: 0,
    description: "Audio output (default: output, marked incomplete).",
  },
  cache_audio_read: {
    type: "number",
    minimum: 0,
    description: "Audio read from the cache (default: cache_read, marked incomplete).",
  },
};

/** `host:port`, IPv6 in brackets; port 0 = ephemeral. */
export function parseListen(v: string): { host: string; port: number } | string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+)$/.exec(v);
  if (!m) return `listen address "${v}" must be HOST:PORT (e.g. "127.0.0.1:4100")`;
  const port = Number(m[2]);
  if (port > 65535) return `port ${port} in listen address "${v}" is out of range 0-65535`;
  const host = m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
  return { host, port };
}

/** A literal token that is empty (or only spaces) would let anyone in. */
function emptyToken(v: string, what: string): string | null {
  return v.trim() === "" ? `${what} must not be empty: use a long random value` : null;
}

/** An environment variable that must hold a token. */
function tokenEnv(name: string, what: string): string | null {
  const v = Deno.env.get(name);
  if (v === undefined) return `environment variable "${name}" (${what}) is not set`;
  if (v.trim() === "") return `environment variable "${name}" (${what}) is empty`;
  return null;
}

/** Why a `proxy.auth` label is not usable, or null. */
function labelProblem(v: string): string | null {
  if (!LABEL_PATTERN.test(v)) {
    return `label "${v}" must be 1 to 64 letters, digits, ".", "_", "~" or "-", starting with a letter or digit`;
  }
  if (looksMinted(v)) {
    return `label "${v}" looks like a minted session id (ends in 16 hex digits): choose another`;
  }
  return null;
}

/** One `proxy.auth` entry as written. */
export type RawAuthEntry = string | {
  token?: string;
  token_env?: string;
  env?: string;
  label?: string;
};

/**
 * A `proxy.auth` entry's token (read from the environment when named there)
 * and label: its own, else `auth-N` with N its 1-based position, so the
 * older list of plain tokens keeps working with a stable session per token.
 *
 * @example
 * authEntry("s3cret", 0) // { token: "s3cret", label: "auth-1", env: null }
 * authEntry({ token_env: "CI_TOKEN", label: "ci" }, 1) // { token: "…", label: "ci", env: "CI_TOKEN" }
 */
export function authEntry(
  a: RawAuthEntry,
  index: number,
): { token: string | undefined; label: string; env: string | null } {
  if (typeof a === "string") return { token: a, label: `auth-${index + 1}`, env: null };
  const env = a.token_env ?? a.env ?? null;
  return {
    token: a.token ?? (env === null ? undefined : Deno.env.get(env)),
    label: a.label ?? `auth-${index + 1}`,
    env,
  };
}

const listen: Schema = {
  type: "string",
  description: 'Address the proxy listens on, "HOST:PORT" (port 0 = ephemeral).',
  check: (v) => {
    const r = parseListen(v);
    return typeof r === "string" ? r : null;
  },
};

/** Methods the matcher knows; others are allowed with a warning. */
export const KNOWN_METHODS = [
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
  "TRACE",
  "CONNECT",
  "PROPFIND",
  "PROPPATCH",
  "MKCOL",
  "COPY",
  "MOVE",
  "LOCK",
  "UNLOCK",
  "REPORT",
  "SEARCH",
  "QUERY",
];

const method: Schema = {
  type: "string",
  description: "An HTTP method (case-insensitive).",
  check: (v) => /^[A-Za-z!#$%&'*+.^_`|~0-9-]+$/.test(v) ? null : `"${v}" is not an HTTP method`,
};

/** A policy attached to a rule; validated by its own checker when compiled. */
const policy: Schema = {
  type: "any",
  description:
    "A policy such as { rate_limit: {...} }, { time_window: {...} }, { spending_limit: {...} }.",
};

const rule: ObjectSchema = {
  type: "object",
  description: "A rule: the first rule whose match, methods and condition hold decides.",
  properties: {
    name: { type: "string", description: "Rule name (audit, dashboard, tests)." },
    match: {
      type: "union",
      description:
        'Pattern "[scheme://]host[:port][/path]" or a list of them: host glob (* spans dots), path glob (picomatch); "*" matches everything; an address range ("10.0.0.0/8", "[fd00::]/8") matches the address a request connects to.',
      anyOf: [{ type: "string" }, { type: "array", items: { type: "string" }, minItems: 1 }],
    },
    methods: {
      type: "union",
      description: "Methods this rule applies to (default: all).",
      anyOf: [method, { type: "array", items: method, minItems: 1 }],
    },
    action: { type: "string", enum: ["allow", "deny", "log"], description: "What to do." },
    reason: { type: "string", description: "Reason shown to the client and in the audit." },
    when: {
      type: "string",
      description:
        "CEL condition over request, body, session, now, client and dest (dest.ip: the resolved address); the rule matches only when it is true.",
    },
    match_case: {
      type: "boolean",
      description:
        "Path globs compare case-sensitively (default true); false: /ADMIN/x meets /admin/** (for case-insensitive upstreams).",
    },
    on_error: {
      type: "string",
      enum: ["deny", "skip"],
      description:
        "When the condition fails to evaluate: deny the request (default) or skip the rule.",
    },
    policies: {
      type: "array",
      items: policy,
      description: "Policies that must all pass (allow rules).",
    },
    allow_private: {
      type: "boolean",
      description:
        "Let this rule reach loopback, private, link-local, unique-local, CGNAT and the other addresses agentgate denies by default (not cloud metadata: name that address in match).",
    },
  },
  required: ["match", "action"],
};

/** A credential's name: it is in reasons, findings and metrics. */
export const CREDENTIAL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** An environment variable's name. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Shapes of well-known secrets: a value like these where a name or a path belongs is refused. */
const SECRET_SHAPE =
  /(^|[^A-Za-z0-9])(sk-[A-Za-z0-9_-]{16,}|sk_live_|rk_live_|ghp_|gho_|ghs_|ghu_|github_pat_|glpat-|xox[abprs]-|AKIA[0-9A-Z]{12}|AIza[0-9A-Za-z_-]{20,}|npm_[A-Za-z0-9]{20,}|pypi-[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{10,}\.)/;

/** Why a credential is never written in the policy (the message of the refused keys). */
const NO_LITERAL =
  "a credential's secret never goes in the policy file (it is committed, reviewed, and shown " +
  "by `/_/api/config`): read it with env: NAME, file: PATH or command: [ARGV…]";

/** A source value that holds a secret instead of naming one; never quotes it. */
function literalSecret(what: string) {
  return (v: string): string | null =>
    SECRET_SHAPE.test(v)
      ? `${what} looks like a secret itself (not shown here): a credential's secret never goes ` +
        `in the policy file, ${what} only names where it comes from`
      : null;
}

const headerName: Schema = {
  type: "string",
  description: "A header name (case-insensitive).",
  check: (v) => /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(v) ? null : `"${v}" is not a header name`,
};

const credentialFormat: Schema = {
  type: "string",
  description: 'How the header carries it, "{secret}" standing for the value: "Bearer {secret}".',
  check: (v) =>
    v.split("{secret}").length === 2
      ? null
      : `a format must hold "{secret}" once, as in "Bearer {secret}"`,
};

const credential: ObjectSchema = {
  type: "object",
  description:
    "A credential agentgate holds for the agent: the agent gets a phantom token, agentgate " +
    "swaps it for the real secret on requests a rule allows, to the hosts named here.",
  properties: {
    name: {
      type: "string",
      description: "Name in reasons, findings and metrics.",
      pattern: CREDENTIAL_NAME.source,
      check: (v) =>
        CREDENTIAL_NAME.test(v)
          ? null
          : `credential name "${v}" must be 1 to 64 letters, digits, ".", "_" or "-"`,
    },
    preset: {
      type: "string",
      enum: PRESET_NAMES,
      description:
        "Fills in hosts, how it is presented and the phantom's shape and variables: openai, anthropic, gemini, github, npm, pypi.",
    },
    env: {
      type: "string",
      description: "The real secret is in this environment variable of agentgate.",
      check: (v) =>
        ENV_NAME.test(v)
          ? null
          : 'env takes the name of an environment variable (letters, digits, "_"), not a value: ' +
            "a credential's secret never goes in the policy file",
    },
    file: {
      type: "string",
      description: "The real secret is this file's content (relative to the policy file).",
      check: literalSecret("file"),
    },
    command: {
      type: "array",
      minItems: 1,
      items: { type: "string", check: literalSecret("a command argument") },
      description:
        "The real secret is this command's output (run without a shell at start and on reload): [op, read, op://vault/item/key].",
    },
    hosts: {
      type: "array",
      minItems: 1,
      items: { type: "string" },
      description:
        'Host globs it may be used on (host[:port]; https only unless written "http://host").',
    },
    paths: {
      type: "array",
      minItems: 1,
      items: { type: "string" },
      description: 'Path globs it may be used on (default: any): ["/v1/**"].',
    },
    methods: {
      type: "array",
      minItems: 1,
      items: method,
      description: "Methods it may be used with (default: any).",
    },
    header: {
      type: "union",
      description: "The header(s) that carry it: authorization, x-api-key.",
      anyOf: [headerName, { type: "array", minItems: 1, items: headerName }],
    },
    format: {
      type: "union",
      description:
        'Format(s) of that header, "{secret}" standing for the value (default "Bearer {secret}" for authorization, else "{secret}").',
      anyOf: [credentialFormat, { type: "array", minItems: 1, items: credentialFormat }],
    },
    basic: {
      type: "union",
      description:
        "HTTP basic auth with the secret as password: true, or { username: NAME } to send that user name upstream.",
      anyOf: [
        { type: "boolean" },
        {
          type: "object",
          properties: { username: { type: "string", description: "User name sent upstream." } },
        },
      ],
    },
    query: { type: "string", description: "A query parameter that carries it: key." },
    phantom: {
      type: "object",
      description: "The phantom token the agent gets instead.",
      properties: {
        prefix: {
          type: "string",
          description: 'Characters in front, as the real tokens have them: "sk-proj-".',
          check: (v) =>
            /^[A-Za-z0-9_-]{0,24}$/.test(v)
              ? null
              : `phantom prefix "${v}" must be up to 24 letters, digits, "_" or "-"`,
        },
        length: {
          type: "number",
          integer: true,
          minimum: 40,
          maximum: 256,
          description: "Total length (default: prefix + 57).",
        },
        variables: {
          type: "array",
          items: {
            type: "string",
            check: (v) => ENV_NAME.test(v) ? null : `"${v}" is not an environment variable name`,
          },
          description:
            "Variables agentgate run and agentgate env set to the phantom: [INTERNAL_API_TOKEN].",
        },
      },
    },
    npmrc: {
      type: "string",
      description:
        'An npm registry, as .npmrc names it ("//registry.npmjs.org/"): agentgate run writes its _authToken.',
      check: (v) =>
        /^\/\/[^\s/]+(\/[^\s]*)?\/$/.test(v)
          ? null
          : `npmrc "${v}" must look like "//registry.example.com/" (two slashes, a host, a trailing slash)`,
    },
    git: {
      type: "union",
      description:
        "Give git a credential helper (basic auth with the phantom) for these hosts, or true for every exact host.",
      anyOf: [{ type: "boolean" }, { type: "array", items: { type: "string" } }],
    },
  },
  forbidden: {
    value: NO_LITERAL,
    secret: NO_LITERAL,
    token: NO_LITERAL,
    key: NO_LITERAL,
    api_key: NO_LITERAL,
    apikey: NO_LITERAL,
    password: NO_LITERAL,
  },
  required: ["name"],
  check: (v) => {
    const sources = ["env", "file", "command"].filter((k) => v[k] !== undefined);
    if (sources.length === 0) {
      return `credential "${v.name}" needs its source: env: NAME, file: PATH or command: [ARGV…]`;
    }
    if (sources.length > 1) {
      return `credential "${v.name}" has ${sources.length} sources (${
        sources.join(", ")
      }): keep one`;
    }
    if (v.preset === undefined) {
      if (v.hosts === undefined) {
        return `credential "${v.name}" needs hosts (or a preset: ${PRESET_NAMES.join(", ")})`;
      }
      if (v.header === undefined && v.basic === undefined && v.query === undefined) {
        return `credential "${v.name}" needs a place: header, basic or query (or a preset)`;
      }
    }
    if (v.format !== undefined && v.header === undefined && v.preset === undefined) {
      return `credential "${v.name}": format applies to a header: set header too`;
    }
    return null;
  },
};
/**
 * An `upstream.resolve` key: `host` or `host:port` (`[v6]:port`), as
 * `{ host, port }` (port null: every port); a message when malformed.
 */
export function parseResolveKey(key: string): { host: string; port: number | null } | string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):(\d{1,5})$/.exec(key);
  if (m) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) return `port ${port} in "${key}" is out of range 1-65535`;
    return { host: m[1], port };
  }
  if (/^[^\s\[\]]+$/.test(key) || /^\[[0-9a-fA-F:.]+\]$/.test(key)) {
    return { host: key, port: null };
  }
  return `"${key}" must be HOST or HOST:PORT (e.g. "api.openai.com" or "api.openai.com:443")`;
}

/** `upstream.resolve` targets and `upstream.dns`: an address literal, with a port. */
function addressPort(
  v: string,
  what: string,
  defaultPort: number | null,
): { host: string; port: number } | string {
  const withPort = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+)(:\d+)?$/.exec(v);
  const r = withPort && withPort[2] === undefined && defaultPort !== null
    ? parseListen(`${v}:${defaultPort}`)
    : parseListen(v);
  const example = what === "upstream.dns" ? "127.0.0.1:5353" : "127.0.0.1:8443";
  if (typeof r === "string" || r.port === 0) {
    return `${what} "${v}" must be ADDRESS:PORT with a port (e.g. "${example}")`;
  }
  if (!/^[0-9.]+$/.test(r.host) && !r.host.includes(":")) {
    return `${what} "${v}" must name an IP address, not a host name (e.g. "${example}")`;
  }
  return r;
}

/** An `upstream.resolve` target `ADDRESS:PORT`, or a message. */
export function parseResolveTarget(v: string): { host: string; port: number } | string {
  return addressPort(v, "resolve target", null);
}

/** An `upstream.dns` server `ADDRESS[:PORT]` (port 53 by default), or a message. */
export function parseDnsServer(v: string): { host: string; port: number } | string {
  return addressPort(v, "upstream.dns", 53);
}

/**
 * A `state.redis` URL: `redis://` or `rediss://`, a host, an optional port
 * and database number, and no password (it belongs in an environment
 * variable); or a message.
 *
 * @example
 * ```ts
 * parseRedisUrl("redis://cache:6379/2"); // { tls: false, host: "cache", port: 6379, db: 2 }
 * ```
 */
export function parseRedisUrl(
  v: string,
): { tls: boolean; host: string; port: number; db: number } | string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return `state.redis "${v}" is not a URL: use redis://HOST:PORT/DB (e.g. "redis://127.0.0.1:6379/0")`;
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    return `state.redis "${u.protocol}" is not supported: use redis:// or rediss:// (TLS)`;
  }
  if (u.password !== "") {
    return `state.redis must not hold a password: put it in an environment variable and name it in state.password_env`;
  }
  if (u.hostname === "") return `state.redis "${v}" names no host`;
  const db = u.pathname === "" || u.pathname === "/" ? 0 : Number(u.pathname.slice(1));
  if (!Number.isInteger(db) || db < 0) {
    return `state.redis database "${
      u.pathname.slice(1)
    }" must be a number (e.g. "redis://cache:6379/0")`;
  }
  return {
    tls: u.protocol === "rediss:",
    host: u.hostname,
    port: u.port === "" ? 6379 : Number(u.port),
    db,
  };
}

/** `version: 1` policy files. */
export const configSchema: ObjectSchema = {
  type: "object",
  description: "agentgate policy file",
  properties: {
    version: { type: "number", integer: true, minimum: 1, maximum: 1, description: "Always 1." },
    proxy: {
      type: "object",
      properties: {
        listen,
        dashboard: {
          type: "boolean",
          description: "Serve /_/dashboard and /_/api (default true).",
        },
        auth: {
          type: "array",
          description:
            "Proxy credentials, required when listen is not loopback: each a token (or { env: NAME }, " +
            "{ token_env: NAME, label: L }, { token: T, label: L }) accepted as the password of " +
            "Proxy-Authorization: Basic. Its session is the label (default auth-N, N its position); " +
            "the user name a client sends is ignored.",
          items: {
            type: "union",
            anyOf: [
              { type: "string", check: (v) => emptyToken(v, "a proxy.auth token") },
              {
                type: "object",
                properties: {
                  token: {
                    type: "string",
                    description: "The token itself.",
                    check: (v) => emptyToken(v, "a proxy.auth token"),
                  },
                  token_env: {
                    type: "string",
                    description: "Name of an environment variable holding the token.",
                    check: (v) => tokenEnv(v, "proxy.auth"),
                  },
                  env: {
                    type: "string",
                    description: "Same as token_env (the older spelling).",
                    check: (v) => tokenEnv(v, "proxy.auth"),
                  },
                  label: {
                    type: "string",
                    description:
                      "The session of this token in the audit, rules and budgets (default auth-N).",
                    pattern: LABEL_PATTERN.source,
                    check: (v) => labelProblem(v),
                  },
                },
                check: (v) => {
                  const n = ["token", "token_env", "env"].filter((k) => v[k] !== undefined);
                  if (n.length === 0) return 'set one of "token", "token_env" (or "env")';
                  if (n.length > 1) {
                    return `set one of "token", "token_env", "env", not ${n.length}`;
                  }
                  return null;
                },
              },
            ],
          },
        },
      },
      check: (v) => {
        const auth = (v.auth ?? []) as RawAuthEntry[];
        const labels = new Set<string>();
        const tokens = new Set<string>();
        for (const [i, a] of auth.entries()) {
          const { token, label } = authEntry(a, i);
          if (labels.has(label)) return `proxy.auth: label "${label}" is used twice`;
          if (token !== undefined && tokens.has(token)) {
            return `proxy.auth: entry ${i + 1} repeats a token (each token has one label)`;
          }
          labels.add(label);
          if (token !== undefined) tokens.add(token);
        }
        return null;
      },
    },
    mode: {
      type: "string",
      enum: ["enforce", "audit"],
      description: "enforce (default) or audit: a would-be deny is forwarded and recorded.",
    },
    default: {
      type: "string",
      enum: ["deny", "allow", "log"],
      description: "Decision when no rule matches (default deny).",
    },
    include: {
      type: "array",
      items: { type: "string" },
      description:
        "Policy files whose rules are appended after this file's (globs relative to this file, sorted; *_test.yaml skipped).",
    },
    rules: { type: "array", items: rule, description: "Rules, first match wins." },
    credentials: {
      type: "array",
      items: credential,
      description:
        "Credentials the agent never holds: sessions get phantom tokens, swapped for the real secret at the gate (main policy file only).",
    },
    tls: {
      type: "object",
      description:
        "TLS interception: the hosts whose HTTPS traffic is decrypted and decided per request.",
      properties: {
        intercept: {
          type: "array",
          items: { type: "string" },
          description:
            'Host globs to intercept (same syntax as rules, host[:port] only), e.g. ["api.openai.com", "*.googleapis.com"].',
        },
        ca_dir: {
          type: "string",
          description:
            "Directory of ca.pem / ca-key.pem (default: $AGENTGATE_HOME or ~/.agentgate).",
        },
        upstream_ca: {
          type: "union",
          description:
            "Extra root certificates (PEM files) trusted for upstreams besides the system roots.",
          anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }],
        },
        leaf_key: {
          type: "string",
          enum: ["ecdsa-p256", "rsa-2048"],
          description: "Key type of issued leaf certificates (default ecdsa-p256).",
        },
      },
    },
    llm: {
      type: "object",
      description: "LLM awareness: providers, prices, usage of streamed calls.",
      properties: {
        providers: {
          type: "map",
          description:
            'More LLM hosts by wire format: { "*.openai.azure.com": openai, "openrouter.ai": openai, "llm.internal:8080": openai }; a key with a port matches that port only, and is tried before keys without one.',
          keyCheck: hostPortKey("llm.providers", true),
          values: { type: "string", enum: ["openai", "anthropic", "gemini"] },
        },
        prices: {
          type: "map",
          description:
            "Add or override model prices: { my-model: { input: 1, output: 2 } } (USD per million tokens; tools USD per 1,000 calls). An entry replaces the bundled price of the model.",
          values: {
            type: "object",
            properties: {
              ...TOKEN_PRICES,
              web_search: {
                type: "number",
                minimum: 0,
                description:
                  "Web searches, USD per 1,000 (unpriced, marked incomplete, when absent).",
              },
              web_fetch: {
                type: "number",
                minimum: 0,
                description: "Web fetches, USD per 1,000 (default 0: Anthropic charges none).",
              },
              file_search: {
                type: "number",
                minimum: 0,
                description:
                  "File searches, USD per 1,000 (unpriced, marked incomplete, when absent).",
              },
              tiers: {
                type: "array",
                description:
                  "Long-context prices: [{ above: 200000, input: 6, output: 22.5 }]; the highest tier whose `above` the call's input tokens exceed replaces the prices it names.",
                items: {
                  type: "object",
                  properties: {
                    above: {
                      type: "number",
                      integer: true,
                      minimum: 0,
                      description: "Input tokens (cache included) the call must exceed.",
                    },
                    ...TOKEN_PRICES,
                  },
                  required: ["above"],
                },
              },
              service_tiers: {
                type: "map",
                description:
                  "Multiplier of every token price per service tier the response reports: { priority: 2 } (flex and batch default to 0.5).",
                values: { type: "number", minimum: 0 },
              },
            },
            required: ["input", "output"],
          },
        },
        force_stream_usage: {
          type: "boolean",
          description:
            "Set stream_options.include_usage on every OpenAI-format streaming chat request so its cost is known (default false; always done under a spending or token limit).",
        },
        unknown_price: {
          type: "string",
          enum: ["deny", "allow"],
          description:
            "Requests under a spending limit for a model without a known price, or whose price lacks what the request uses (a service tier, a server-side tool, audio, a long-context tier): deny (default) or allow.",
        },
        reserve_output_tokens: {
          type: "number",
          integer: true,
          minimum: 1,
          description:
            "Output tokens a budget reserves for an LLM call that sets no max_tokens (default 4096).",
        },
      },
    },
    run: {
      type: "object",
      description: "Settings of agentgate run and agentgate env.",
      properties: {
        no_proxy: {
          type: "array",
          items: { type: "string" },
          description: "NO_PROXY entries handed to the child (default: localhost, 127.0.0.1, ::1).",
        },
      },
    },
    dashboard: {
      type: "object",
      description:
        "Access to /_/dashboard and /_/api (loopback clients only unless a token is set).",
      properties: {
        token: {
          type: "string",
          description:
            "Bearer token for the dashboard and API (the admin token: it also mints sessions); " +
            "required when proxy.listen is not loopback.",
          check: (v) => emptyToken(v, "dashboard.token"),
        },
        token_env: {
          type: "string",
          description: "Name of an environment variable holding the token (instead of token).",
          check: (v) => tokenEnv(v, "dashboard.token_env"),
        },
      },
      check: (v) =>
        v.token !== undefined && v.token_env !== undefined
          ? 'set either "token" or "token_env", not both'
          : null,
    },
    upstream: {
      type: "object",
      properties: {
        connect_timeout: duration("Timeout to connect upstream (default 10s); answered 504."),
        response_timeout: duration(
          "Timeout for the upstream response headers (default 5m); answered 504.",
        ),
        resolve: {
          type: "map",
          description:
            'Send a host\'s traffic to another address, like curl --resolve: { "api.openai.com": "127.0.0.1:8443" }; TLS is still verified against the original name. A key with a port ("llm.internal:8080") matches that port only, and is tried before the bare host. A pinned address is the policy\'s explicit choice: the address guard does not judge it.',
          keyCheck: hostPortKey("upstream.resolve", false),
          values: {
            type: "string",
            check: (v) => {
              const r = parseResolveTarget(v);
              return typeof r === "string" ? r : null;
            },
          },
        },
        dns: {
          type: "string",
          description:
            'DNS server for upstream names, "ADDRESS[:PORT]" (default: the system resolver, which also reads /etc/hosts).',
          check: (v) => {
            const r = parseDnsServer(v);
            return typeof r === "string" ? r : null;
          },
        },
      },
    },
    limits: {
      type: "object",
      properties: {
        max_body_bytes: {
          type: "number",
          integer: true,
          minimum: 1,
          description:
            "Largest request body buffered for a condition that reads body (default 1 MiB).",
        },
        max_scan_bytes: {
          type: "number",
          integer: true,
          minimum: 1,
          description: "Largest body a dlp policy scans (default 1 MiB).",
        },
        ambiguous_paths: {
          type: "string",
          enum: ["deny", "normalize"],
          description:
            "A path servers read differently (//a, /a/..;/b, /a%2fb, /a\\b): deny it when the policy would decide the readings differently (default), or forward the canonical path.",
        },
        max_decompressed_bytes: {
          type: "number",
          integer: true,
          minimum: 1,
          description:
            "Most bytes a compressed body is inflated to for usage parsing and DLP (default 64 MiB); the response still streams unchanged.",
        },
        max_decompression_ratio: {
          type: "number",
          minimum: 1,
          description:
            "Most decompressed bytes per compressed byte, once 1 MiB is out (default 100; a gzip bomb is ~1000).",
        },
        max_regex_scan_time: duration(
          "Time the custom DLP regexes may take on one request body or response chunk (default 50ms); past it the scan stops and the row says so.",
        ),
        tunnel_idle: duration(
          "A CONNECT tunnel with no bytes either way for this long is closed (default 10m).",
        ),
        max_tunnels_per_client: {
          type: "number",
          integer: true,
          minimum: 1,
          description: "Open CONNECT tunnels one client address may hold (default 256).",
        },
      },
    },
    audit: {
      type: "object",
      properties: {
        path: {
          type: "string",
          description:
            "SQLite file (relative to this file; default: agentgate.db in $AGENTGATE_HOME or ~/.agentgate).",
        },
        retention: duration("Rows older than this are deleted (default 30d)."),
        postgres: {
          type: "string",
          description:
            "The audit in PostgreSQL (postgres://USER@HOST:PORT/DATABASE[?sslmode=require|verify-full]), shared by replicas; never a password in it.",
        },
        password_env: {
          type: "string",
          description: "Environment variable holding the PostgreSQL password (default PGPASSWORD).",
        },
        spool: {
          type: "string",
          description:
            "SQLite file rows wait in while PostgreSQL is unreachable (default audit-spool.db in $AGENTGATE_HOME).",
        },
        spool_max_bytes: {
          type: "number",
          integer: true,
          minimum: 1,
          description: "Bound of the spool; past it rows are dropped, loudly (default 1 GiB).",
        },
        jsonl: {
          type: "string",
          description:
            "Every audit row also as a JSON line to this file (relative to this file), or - for stdout.",
        },
        otlp: {
          type: "string",
          description:
            "Every audit row also as an OpenTelemetry log record over OTLP/HTTP (http://collector:4318).",
        },
      },
    },
    state: {
      type: "object",
      description:
        "Shared state for a fleet: rate limits, token windows, budgets and reservations in Redis (or Valkey).",
      properties: {
        redis: {
          type: "string",
          description:
            'The server, "redis://HOST:PORT/DB" or "rediss://…" (TLS); the password comes from password_env.',
          check: (v) => {
            const r = parseRedisUrl(v);
            return typeof r === "string" ? r : null;
          },
        },
        password_env: {
          type: "string",
          description:
            "Environment variable holding the server's password (never the policy file).",
        },
        ca: {
          type: "string",
          description: "PEM file of the CA of a rediss:// server (relative to this file).",
        },
        on_state_error: {
          type: "string",
          enum: ["deny", "allow", "local"],
          description:
            "When the server cannot answer: deny (default: limited requests get 503), allow (limits pass), local (this process's own counters decide).",
        },
        timeout: duration("A round trip that takes longer fails (default 1s)."),
        queue_max: {
          type: "number",
          integer: true,
          minimum: 1,
          description:
            "Most charges kept while the server is away, replayed when it returns (default 100000; past it the oldest are dropped and counted).",
        },
      },
      required: ["redis"],
    },
  },
  required: ["version"],
};

/** The @agentreserve/proxy format (a file without `version:`). */
export const legacySchema: ObjectSchema = {
  type: "object",
  description: "@agentreserve/proxy configuration",
  properties: {
    proxy: {
      type: "object",
      properties: {
        port: { type: "number", integer: true, minimum: 0, maximum: 65535 },
        host: { type: "string" },
        dashboard: { type: "boolean" },
      },
    },
    rules: {
      type: "array",
      items: {
        type: "object",
        properties: {
          match: { type: "string" },
          action: { type: "string", enum: ["allow", "deny", "log"] },
          reason: { type: "string" },
          policies: { type: "array", items: policy },
        },
        required: ["match", "action"],
      },
    },
    audit: {
      type: "object",
      properties: {
        store: { type: "string", enum: ["sqlite"] },
        path: { type: "string" },
      },
    },
  },
};

/** Keys that exist only in `version: 1` files: their presence without `version` is a mistake. */
export const V1_ONLY_KEYS = [
  "mode",
  "default",
  "upstream",
  "include",
  "tls",
  "llm",
  "limits",
  "credentials",
  "state",
];

/**
 * What an included file may hold: rules, more includes, intercepted hosts and
 * LLM providers/prices. Listener, audit, mode and default belong to the main file.
 */
export const includeSchema: ObjectSchema = {
  type: "object",
  description: "agentgate policy file included by another",
  properties: {
    version: configSchema.properties.version,
    include: configSchema.properties.include,
    rules: configSchema.properties.rules,
    tls: {
      type: "object",
      properties: {
        intercept: (configSchema.properties.tls as ObjectSchema).properties.intercept,
      },
    },
    llm: {
      type: "object",
      properties: {
        providers: (configSchema.properties.llm as ObjectSchema).properties.providers,
        prices: (configSchema.properties.llm as ObjectSchema).properties.prices,
        force_stream_usage: (configSchema.properties.llm as ObjectSchema).properties
          .force_stream_usage,
      },
    },
  },
};
