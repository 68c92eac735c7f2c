/**
 * Which LLM wire format a host speaks: built-in provider hosts plus the
 * config's `llm.providers` overrides (Azure OpenAI, OpenRouter, a local
 * gateway).
 *
 * @module
 */

import { type Provider, PROVIDERS } from "./types.ts";

/** One `llm.providers` entry: a host glob and the wire format it speaks. */
export interface ProviderOverride {
  /** Host glob, case-insensitive; `*` matches any run of characters, dots included. */
  host: string;
  /** Wire format the matching hosts speak. */
  provider: Provider;
}

const BUILT_IN: ReadonlyMap<string, Provider> = new Map<string, Provider>([
  ["api.openai.com", "openai"],
  ["api.anthropic.com", "anthropic"],
  ["generativelanguage.googleapis.com", "gemini"],
]);

/**
 * Compiles the host → provider lookup once. Overrides are checked first, in
 * order, so a config can also re-map a built-in host.
 *
 * @example
 * ```ts
 * const detect = createProviderDetector([
 *   { host: "*.openai.azure.com", provider: "openai" },
 * ]);
 * detect("api.anthropic.com"); // "anthropic"
 * detect("eu.myco.openai.azure.com"); // "openai"
 * detect("example.com"); // null
 * ```
 */
export function createProviderDetector(
  overrides: ReadonlyArray<ProviderOverride> = [],
): (host: string) => Provider | null {
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
    return { test: compileHostGlob(o.host), provider: o.provider };
  });
  return (host: string): Provider | null => {
    const h = normalizeHost(host);
    for (const o of compiled) if (o.test(h)) return o.provider;
    return BUILT_IN.get(h) ?? null;
  };
}

function normalizeHost(host: string): string {
  let h = host.toLowerCase();
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
