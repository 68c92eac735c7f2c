/**
 * Which LLM wire format a host speaks: built-in provider hosts plus the
 * config's `llm.providers` overrides (Azure OpenAI, OpenRouter, a local
 * gateway).
 *
 * @module
 */

import { type Provider, PROVIDERS } from "./types.ts";

/** One `llm.providers` entry: a host glob (with an optional port) and the wire format it speaks. */
export interface ProviderOverride {
  /**
   * Host glob, case-insensitive; `*` matches any run of characters, dots
   * included. `host:port` (`llm.internal:8080`, `[::1]:8080`) matches that
   * port only; a bare host matches every port.
   */
  host: string;
  /** Wire format the matching hosts speak. */
  provider: Provider;
}

/** Finds the wire format of a host and port; see {@link createProviderDetector}. */
export type ProviderDetector = (host: string, port?: number) => Provider | null;

const BUILT_IN: ReadonlyMap<string, Provider> = new Map<string, Provider>([
  ["api.openai.com", "openai"],
  ["api.anthropic.com", "anthropic"],
  ["generativelanguage.googleapis.com", "gemini"],
]);

/**
 * Splits an `llm.providers` or `upstream.resolve` key into its host and
 * port: `llm.internal:8080` → `{ host: "llm.internal", port: 8080 }`,
 * `[::1]:8080` → `{ host: "::1", port: 8080 }`, `api.openai.com` →
 * `{ host: "api.openai.com", port: null }`. Throws for a port outside
 * 1–65535.
 *
 * @example
 * ```ts
 * splitHostPort("llm.internal:8080"); // { host: "llm.internal", port: 8080 }
 * ```
 */
export function splitHostPort(key: string): { host: string; port: number | null } {
  const k = key.trim();
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(k);
  let host = k;
  let port: string | undefined;
  if (v6) {
    host = v6[1];
    port = v6[2];
  } else {
    const m = /^([^:]*):(\d*)$/.exec(k);
    if (m) {
      host = m[1];
      port = m[2];
    }
  }
  if (port === undefined) return { host, port: null };
  const n = Number(port);
  if (port === "" || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new Error(`Invalid port "${port}" in "${key}": expected 1-65535`);
  }
  return { host, port: n };
}

/**
 * Compiles the host → provider lookup once. Overrides are checked first: a
 * key with the request's port (`llm.internal:8080`) before one without
 * (`llm.internal`), each in order, so a config can also re-map a built-in
 * host. A request's port is its real one (443 for https, 80 for http).
 *
 * @example
 * ```ts
 * const detect = createProviderDetector([
 *   { host: "*.openai.azure.com", provider: "openai" },
 *   { host: "llm.internal:8080", provider: "openai" },
 * ]);
 * detect("api.anthropic.com", 443); // "anthropic"
 * detect("eu.myco.openai.azure.com", 443); // "openai"
 * detect("llm.internal", 8080); // "openai"
 * detect("llm.internal", 9090); // null
 * ```
 */
export function createProviderDetector(
  overrides: ReadonlyArray<ProviderOverride> = [],
): ProviderDetector {
  const compiled = overrides.map((o, i) => {
    if (!PROVIDERS.includes(o.provider)) {
      throw new Error(
        `Unknown LLM provider "${o.provider}" for host "${o.host}": expected one of ${
          PROVIDERS.map((p) => `"${p}"`).join(", ")
        }`,
      );
    }
    if (typeof o.host !== "string" || o.host.trim() === "") {
      throw new Error(`Empty host glob in LLM provider override ${i + 1}`);
    }
    const { host, port } = splitHostPort(o.host);
    if (host === "") throw new Error(`Empty host glob in LLM provider override ${i + 1}`);
    return { test: compileHostGlob(host), port, provider: o.provider };
  });
  const withPort = compiled.filter((o) => o.port !== null);
  const anyPort = compiled.filter((o) => o.port === null);
  return (host: string, port?: number): Provider | null => {
    const h = normalizeHost(host);
    // Without a port (a lint asking about a pattern), a port-specific key may apply too.
    for (const o of withPort) {
      if ((port === undefined || o.port === port) && o.test(h)) return o.provider;
    }
    for (const o of anyPort) if (o.test(h)) return o.provider;
    return BUILT_IN.get(h) ?? null;
  };
}

function normalizeHost(host: string): string {
  let h = host.toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h;
}

function compileHostGlob(glob: string): (host: string) => boolean {
  const g = normalizeHost(glob.trim());
  // A plain host is the common case: compare strings rather than run a regex.
  if (!g.includes("*")) return (h) => h === g;
  const source = g.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(
    ".*",
  );
  const re = new RegExp(`^${source}$`);
  return (h) => re.test(h);
}
