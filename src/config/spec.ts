/**
 * The schema of agentgate policy files (`version: 1`) and of the
 * @agentreserve/proxy format that loads unchanged.
 *
 * @module
 */
import type { ObjectSchema, Schema } from "./schema.ts";
import { parseDuration } from "../util/duration.ts";

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

/** `host:port`, IPv6 in brackets; port 0 = ephemeral. */
export function parseListen(v: string): { host: string; port: number } | string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+)$/.exec(v);
  if (!m) return `listen address "${v}" must be HOST:PORT (e.g. "127.0.0.1:4100")`;
  const port = Number(m[2]);
  if (port > 65535) return `port ${port} in listen address "${v}" is out of range 0-65535`;
  const host = m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
  return { host, port };
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
        'Pattern "[scheme://]host[:port][/path]" or a list of them: host glob (* spans dots), path glob (picomatch); "*" matches everything.',
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
        "CEL condition over request, body, session, now and client; the rule matches only when it is true.",
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
  },
  required: ["match", "action"],
};

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
            "Proxy credentials: tokens (or { env: NAME }) accepted as the password of Proxy-Authorization: Basic; required when listen is not loopback.",
          items: {
            type: "union",
            anyOf: [
              { type: "string" },
              {
                type: "object",
                properties: {
                  env: {
                    type: "string",
                    check: (v) =>
                      Deno.env.get(v)
                        ? null
                        : `environment variable "${v}" (proxy.auth) is not set`,
                  },
                },
                required: ["env"],
              },
            ],
          },
        },
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
            'More LLM hosts by wire format: { "*.openai.azure.com": openai, "openrouter.ai": openai }.',
          values: { type: "string", enum: ["openai", "anthropic", "gemini"] },
        },
        prices: {
          type: "map",
          description:
            "Add or override model prices in USD per million tokens: { my-model: { input: 1, output: 2 } }.",
          values: {
            type: "object",
            properties: {
              input: { type: "number", minimum: 0 },
              output: { type: "number", minimum: 0 },
              cache_read: { type: "number", minimum: 0 },
              cache_write: { type: "number", minimum: 0 },
            },
            required: ["input", "output"],
          },
        },
        force_stream_usage: {
          type: "boolean",
          description:
            "Set stream_options.include_usage on OpenAI streaming requests so their cost is known (default false).",
        },
        unknown_price: {
          type: "string",
          enum: ["deny", "allow"],
          description:
            "Requests for a model without a known price under a spending limit: deny (default) or allow.",
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
            "Bearer token for the dashboard and API; required when proxy.listen is not loopback.",
        },
        token_env: {
          type: "string",
          description: "Name of an environment variable holding the token (instead of token).",
          check: (v) =>
            Deno.env.get(v) ? null : `environment variable "${v}" (dashboard.token_env) is not set`,
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
            'Send a host\'s traffic to another address, like curl --resolve: { "api.openai.com": "127.0.0.1:8443" }; TLS is still verified against the original name.',
          values: {
            type: "string",
            check: (v) => {
              const r = parseListen(v);
              return typeof r === "string" || r.port === 0
                ? `resolve target "${v}" must be HOST:PORT with a port`
                : null;
            },
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
          description: "SQLite file (relative to this file; default ./agentgate.db).",
        },
        retention: duration("Rows older than this are deleted (default 30d)."),
      },
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
export const V1_ONLY_KEYS = ["mode", "default", "upstream", "include", "tls", "llm", "limits"];

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
