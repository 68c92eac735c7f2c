/**
 * Cost of a {@link UsageRecord}, from the first source that has it:
 *
 * 1. the cost the provider reports itself (OpenRouter's `usage.cost`): what
 *    the call is billed, including what no price table knows;
 * 2. `llm.prices` in the config (per model: tokens, tiers, modalities, tools,
 *    service-tier multipliers);
 * 3. the price data bundled with `@pydantic/genai-prices` (no network: this
 *    module never calls its `updatePrices`, so `calcPrice` only reads the
 *    bundled table).
 *
 * An unknown model is never priced at $0. When the price found lacks
 * something the usage shows (a service tier, audio, a server-side tool, a
 * long-context tier), the known parts are priced, the result says it is
 * incomplete (a lower bound) and names what was missing.
 *
 * @module
 */

import { calcPrice, findProvider, type PriceCalculation } from "@pydantic/genai-prices";
import type { Provider, UsageRecord } from "./types.ts";

/** Prices of one long-context tier of an `llm.prices` entry (USD per million tokens). */
export interface PriceTier {
  /** Applies when the call's input tokens (cache included) are above this. */
  above: number;
  input?: number;
  output?: number;
  cache_read?: number;
  cache_write?: number;
  cache_write_1h?: number;
  input_audio?: number;
  output_audio?: number;
  cache_audio_read?: number;
}

/**
 * One `llm.prices` entry. Token prices are USD per million tokens; tool
 * prices are USD per 1,000 calls; a service tier is a multiplier of every
 * token price (`priority: 2` doubles them).
 */
export interface ModelPriceOverride {
  /** Uncached text input. */
  input: number;
  /** Output, reasoning included. */
  output: number;
  /** Cache reads; input price when absent (never cheaper than it may be). */
  cache_read?: number;
  /** Cache writes (Anthropic's 5-minute writes); input price, marked incomplete, when absent. */
  cache_write?: number;
  /** Anthropic's 1-hour cache writes; `cache_write`, marked incomplete, when absent. */
  cache_write_1h?: number;
  /** Audio input; input price, marked incomplete, when absent. */
  input_audio?: number;
  /** Audio output; output price, marked incomplete, when absent. */
  output_audio?: number;
  /** Audio read from the cache; `cache_read`, marked incomplete, when absent. */
  cache_audio_read?: number;
  /** Web searches, USD per 1,000; unpriced (incomplete) when absent. */
  web_search?: number;
  /** Web fetches, USD per 1,000; free when absent (Anthropic charges none). */
  web_fetch?: number;
  /** File searches, USD per 1,000; unpriced (incomplete) when absent. */
  file_search?: number;
  /** Long-context tiers: the highest whose `above` the input exceeds replaces the prices it names. */
  tiers?: PriceTier[];
  /** Service tier → multiplier of the token prices; `flex` and `batch` default to 0.5. */
  service_tiers?: Record<string, number>;
}

/** Options of {@link createPricer}. */
export interface PricerOptions {
  /** Model name → prices; matched case-insensitively, see {@link createPricer}. */
  overrides?: Record<string, ModelPriceOverride>;
}

/** Where a cost came from (the audit's `price_source`). */
export type PriceSource = "provider" | "config" | "genai-prices";

/** What one call cost. */
export interface PriceResult {
  /**
   * USD, or null when unknown: no price for the model (`priceUnknown`), or no
   * usage to price (a response without any token count).
   */
  costUsd: number | null;
  /** True when the model (or provider) has no price: the audit's `price_unknown`. */
  priceUnknown: boolean;
  /**
   * True when the price found lacks something the usage shows: `costUsd`
   * prices the rest and is a lower bound (the audit's `price_incomplete`).
   */
  priceIncomplete: boolean;
  /** What the price lacked, e.g. `service tier "priority"`, `web searches`; empty when complete. */
  missing: string[];
  /** Where the price came from; null when none was used. */
  priceSource: PriceSource | null;
}

/** The pricer {@link createPricer} returns. */
export interface Pricer {
  /**
   * Prices one call. `host` is the host it went to: a gateway's own price
   * list (`openrouter.ai`, `api.groq.com`, Azure) is found by it.
   */
  price(usage: UsageRecord, when: Date, host?: string): PriceResult;
}

// genai-prices' provider ids for our wire formats.
const GENAI_PROVIDER: Record<Provider, string> = {
  openai: "openai",
  anthropic: "anthropic",
  gemini: "google",
};

// "-2024-08-06" / "-20241022" at the end of a model name.
const DATE_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{8})$/;

/** Service tiers billed at the standard price. */
const STANDARD_TIERS = new Set(["default", "standard", "auto", "on_demand"]);

/**
 * Service tiers whose price every provider that has them publishes as a
 * fixed share of the standard one: OpenAI's Flex is billed at Batch API
 * prices, and OpenAI, Anthropic and Google bill batch at 50 %.
 */
const BUILTIN_TIERS: Record<string, number> = { flex: 0.5, batch: 0.5 };

/**
 * Long-context surcharges the providers publish that the bundled price data
 * lacks, by genai-prices model id: above `above` input tokens the call is
 * billed at higher prices that no table here has. (Claude Sonnet 4 with the
 * 1M-token window: $6 / $22.50 per million above 200k input tokens.)
 */
const KNOWN_TIERS: Record<string, number> = {
  "claude-sonnet-4-0": 200_000,
  "anthropic/claude-sonnet-4": 200_000,
};

/**
 * genai-prices providers whose audio tokens always have their own price:
 * OpenAI bills audio apart from text on every model that takes it, so a
 * model without an audio price in the data is missing it. (Google prices
 * some Gemini models' audio like text: there the data's input price holds.)
 */
const AUDIO_PRICED_APART = new Set(["openai", "azure"]);

const TOKEN_KEYS = [
  "input",
  "output",
  "cache_read",
  "cache_write",
  "cache_write_1h",
  "input_audio",
  "output_audio",
  "cache_audio_read",
] as const;
const TOOL_KEYS = ["web_search", "web_fetch", "file_search"] as const;

/** Token counts of one call, clamped so the parts fit the whole. */
interface Counts {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  cacheWrite1h: number;
  inAudio: number;
  cacheAudio: number;
  outAudio: number;
}

function counts(u: UsageRecord): Counts {
  // Providers reporting nonsense (a part above its whole) must not crash the
  // proxy or price negative tokens: every part is clamped into its whole.
  const input = Math.max(0, u.inputTokens ?? 0);
  const output = Math.max(0, u.outputTokens ?? 0);
  const cacheRead = clamp(u.cacheReadTokens, input);
  const cacheWrite = clamp(u.cacheWriteTokens, input - cacheRead);
  const cacheWrite1h = clamp(u.cacheWrite1hTokens, cacheWrite);
  const inAudio = clamp(u.inputAudioTokens, input - cacheWrite);
  const cacheAudio = clamp(u.cacheAudioReadTokens, Math.min(cacheRead, inAudio));
  const outAudio = clamp(u.outputAudioTokens, output);
  return { input, output, cacheRead, cacheWrite, cacheWrite1h, inAudio, cacheAudio, outAudio };
}

function clamp(v: number | null | undefined, max: number): number {
  return Math.max(0, Math.min(v ?? 0, max));
}

/** The multiplier of a service tier, or null when no price for it is known. */
function tierMultiplier(tier: string | undefined, own?: Record<string, number>): number | null {
  if (tier === undefined) return 1;
  const t = tier.toLowerCase();
  if (own && Object.hasOwn(own, t)) return own[t];
  if (STANDARD_TIERS.has(t)) return 1;
  return BUILTIN_TIERS[t] ?? null;
}

/** Tool calls with a fee the usage shows but agentgate cannot price. */
function otherTools(u: UsageRecord): string[] {
  return Object.entries(u.otherToolCalls ?? {}).filter(([, n]) => n > 0).map(([k]) =>
    `tool "${k}"`
  );
}

const none = (): PriceResult => ({
  costUsd: null,
  priceUnknown: false,
  priceIncomplete: false,
  missing: [],
  priceSource: null,
});

const unknown = (): PriceResult => ({ ...none(), priceUnknown: true });

/** Throws for an `llm.prices` entry that is not a price (the config schema checks the same). */
function validateOverride(model: string, p: ModelPriceOverride): void {
  const bad = (what: string, unit = "USD per million tokens") => {
    throw new Error(
      `Invalid price "${what}" for model "${model}": expected a non-negative number of ${unit}`,
    );
  };
  const num = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v >= 0;
  for (const k of TOKEN_KEYS) {
    const v = p[k];
    if (v === undefined && k !== "input" && k !== "output") continue;
    if (!num(v)) bad(k);
  }
  for (const k of TOOL_KEYS) if (p[k] !== undefined && !num(p[k])) bad(k, "USD per 1,000 calls");
  for (const [i, t] of (p.tiers ?? []).entries()) {
    if (!Number.isSafeInteger(t?.above) || t.above < 0) bad(`tiers.${i}.above`, "input tokens");
    for (const k of TOKEN_KEYS) if (t[k] !== undefined && !num(t[k])) bad(`tiers.${i}.${k}`);
  }
  for (const [name, m] of Object.entries(p.service_tiers ?? {})) {
    if (!num(m)) bad(`service_tiers.${name}`, "times the standard price");
  }
}

/**
 * Compiles the override table once and returns the pricer.
 *
 * Overrides are looked up by model name, case-insensitively: first exactly,
 * then without a `models/` prefix, without a `vendor/` prefix
 * (`openai/gpt-4o` → `gpt-4o`), then without a trailing date
 * (`gpt-4o-2024-08-06` → `gpt-4o`), so an override for `gpt-4o` also prices
 * the dated name the response reports.
 *
 * The bundled data is searched, in order: under the provider a `vendor/`
 * prefix names (OpenRouter's `openai/gpt-4o-mini` is OpenAI's
 * `gpt-4o-mini`), under the provider whose API the host is
 * (`openrouter.ai`, `api.groq.com`, `*.openai.azure.com`), then under the
 * wire format's provider. genai-prices gets the whole usage (its
 * `input_tokens` includes cache tokens) and applies cache, 1-hour cache
 * write, audio and tool-call prices, tiered prices (Gemini 2.5 Pro above
 * 200k input tokens) and price changes over time (`when`).
 *
 * @example
 * ```ts
 * const pricer = createPricer({ overrides: { "my-llama": { input: 0.1, output: 0.2 } } });
 * pricer.price(usage, new Date());
 * // { costUsd: 0.000123, priceUnknown: false, priceIncomplete: false, missing: [], priceSource: "genai-prices" }
 * ```
 */
export function createPricer(opts: PricerOptions = {}): Pricer {
  const overrides = new Map<string, ModelPriceOverride>();
  for (const [model, p] of Object.entries(opts.overrides ?? {})) {
    validateOverride(model, p);
    const tiers = [...(p.tiers ?? [])].sort((a, b) => a.above - b.above);
    const own = p.service_tiers
      ? Object.fromEntries(Object.entries(p.service_tiers).map(([k, v]) => [k.toLowerCase(), v]))
      : undefined;
    overrides.set(model.toLowerCase(), { ...p, tiers, service_tiers: own });
  }

  const findOverride = (model: string): ModelPriceOverride | undefined => {
    let m = model.toLowerCase();
    const exact = overrides.get(m);
    if (exact) return exact;
    if (m.startsWith("models/")) {
      m = m.slice(7);
      const o = overrides.get(m);
      if (o) return o;
    }
    const slash = m.indexOf("/");
    if (slash > 0) {
      m = m.slice(slash + 1);
      const o = overrides.get(m);
      if (o) return o;
    }
    return DATE_SUFFIX.test(m) ? overrides.get(m.replace(DATE_SUFFIX, "")) : undefined;
  };

  // Which genai-prices provider prices a (wire format, host, model): the
  // search walks hundreds of models, so its answer is kept.
  const where = new Map<string, { providerId: string; model: string } | null>();
  const genai = (
    wire: Provider,
    model: string,
    host: string | undefined,
    usage: Record<string, number>,
    when: Date,
  ): PriceCalculation | null => {
    const key = `${wire}\0${host ?? ""}\0${model}`;
    const known = where.get(key);
    if (known === null) return null;
    if (known) {
      return calcPrice(usage, known.model, { providerId: known.providerId, timestamp: when });
    }
    for (const c of candidates(wire, model, host)) {
      const r = calcPrice(usage, c.model, { providerId: c.providerId, timestamp: when });
      if (r !== null) {
        remember(where, key, c);
        return r;
      }
    }
    remember(where, key, null);
    return null;
  };

  return {
    price(usage: UsageRecord, when: Date, host?: string): PriceResult {
      // What the provider says it billed is the bill.
      const reported = usage.providerCostUsd;
      if (reported !== undefined && Number.isFinite(reported) && reported >= 0) {
        return { ...none(), costUsd: reported, priceSource: "provider" };
      }
      // No usage seen at all (e.g. an OpenAI stream without include_usage): the
      // cost is unknown, not $0 — whatever the model.
      if (usage.inputTokens === null || usage.outputTokens === null) return none();
      const empty = usage.inputTokens === 0 && usage.outputTokens === 0;
      if (empty && usage.partial) return none();
      // A failed call that reports no tokens is not billed.
      if (empty && usage.error !== null) return { ...none(), costUsd: 0 };
      if (usage.model === null) return unknown();

      const o = findOverride(usage.model);
      if (o) return priceWithOverride(o, usage, knownTierOf(usage, when, host));

      let model = usage.model.trim();
      if (model.toLowerCase().startsWith("models/")) model = model.slice(7);
      try {
        return priceWithGenai(usage, (u) => genai(usage.provider, model, host, u, when));
      } catch {
        // A price table genai-prices cannot apply to this usage: unknown.
        return unknown();
      }
    },
  };

  /** The known long-context threshold of the model the bundled data prices this usage with. */
  function knownTierOf(usage: UsageRecord, when: Date, host?: string): number | undefined {
    let model = usage.model!.trim();
    if (model.toLowerCase().startsWith("models/")) model = model.slice(7);
    try {
      const r = genai(usage.provider, model, host, { input_tokens: 1, output_tokens: 1 }, when);
      return r ? KNOWN_TIERS[r.model.id] : undefined;
    } catch {
      return undefined;
    }
  }
}

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (map.size >= 10_000) map.clear();
  map.set(key, value);
}

/** Where to look a model up in the bundled data, in order (see {@link createPricer}). */
function candidates(
  wire: Provider,
  model: string,
  host: string | undefined,
): { providerId: string; model: string }[] {
  const out: { providerId: string; model: string }[] = [];
  const add = (providerId: string | undefined, m: string) => {
    if (providerId && !out.some((c) => c.providerId === providerId && c.model === m)) {
      out.push({ providerId, model: m });
    }
  };
  const slash = model.indexOf("/");
  if (slash > 0 && slash < model.length - 1) {
    add(
      findProvider({ providerId: model.slice(0, slash).toLowerCase() })?.id,
      model.slice(slash + 1),
    );
  }
  if (host) add(findProvider({ providerApiUrl: `https://${host}` })?.id, model);
  add(GENAI_PROVIDER[wire], model);
  return out;
}

/** Prices a usage with an `llm.prices` entry. */
function priceWithOverride(
  o: ModelPriceOverride,
  usage: UsageRecord,
  knownTier: number | undefined,
): PriceResult {
  const c = counts(usage);
  const missing: string[] = [];
  const tier = o.tiers?.findLast((t) => c.input > t.above);
  const p = (k: (typeof TOKEN_KEYS)[number]): number | undefined => tier?.[k] ?? o[k];
  const input = p("input")!;
  const output = p("output")!;
  const cacheRead = p("cache_read") ?? input;
  const need = (price: number | undefined, n: number, what: string, fallback: number) => {
    if (price !== undefined) return price;
    if (n > 0) missing.push(what);
    return fallback;
  };
  const write5m = c.cacheWrite - c.cacheWrite1h;
  const cacheWrite = need(p("cache_write"), write5m, "cache writes", input);
  const cacheWrite1h = need(p("cache_write_1h"), c.cacheWrite1h, "1-hour cache writes", cacheWrite);
  const uncachedAudio = Math.min(c.inAudio - c.cacheAudio, c.input - c.cacheRead - c.cacheWrite);
  const inAudio = need(p("input_audio"), uncachedAudio, "audio input", input);
  const cacheAudio = need(p("cache_audio_read"), c.cacheAudio, "cached audio", cacheRead);
  const outAudio = need(p("output_audio"), c.outAudio, "audio output", output);
  if (!o.tiers?.length && knownTier !== undefined && c.input > knownTier) {
    missing.push(`input above ${knownTier} tokens`);
  }
  const uncachedText = c.input - c.cacheRead - c.cacheWrite - uncachedAudio;
  const tokens = uncachedText * input + (c.cacheRead - c.cacheAudio) * cacheRead +
    c.cacheAudio * cacheAudio + uncachedAudio * inAudio + write5m * cacheWrite +
    c.cacheWrite1h * cacheWrite1h + (c.output - c.outAudio) * output + c.outAudio * outAudio;
  const perK = (n: number | undefined, price: number | undefined, what: string, free = false) => {
    if (!n) return 0;
    if (price === undefined) {
      if (!free) missing.push(what);
      return 0;
    }
    return n * price / 1000;
  };
  const fees = perK(usage.webSearches, o.web_search, "web searches") +
    perK(usage.webFetches, o.web_fetch, "web fetches", true) +
    perK(usage.fileSearches, o.file_search, "file searches");
  missing.push(...otherTools(usage));
  let mult = tierMultiplier(usage.serviceTier, o.service_tiers);
  if (mult === null) {
    missing.push(`service tier "${usage.serviceTier}"`);
    mult = 1;
  }
  return {
    costUsd: tokens / 1e6 * mult + fees,
    priceUnknown: false,
    priceIncomplete: missing.length > 0,
    missing,
    priceSource: "config",
  };
}

/** Prices a usage with the bundled data (`calc` finds the model and runs `calcPrice`). */
function priceWithGenai(
  usage: UsageRecord,
  calc: (u: Record<string, number>) => PriceCalculation | null,
): PriceResult {
  const c = counts(usage);
  const missing: string[] = [];
  const base: Record<string, number> = { input_tokens: c.input, output_tokens: c.output };
  if (c.cacheRead > 0) base.cache_read_tokens = c.cacheRead;
  if (c.cacheWrite > 0) base.cache_write_tokens = c.cacheWrite;
  if (c.cacheWrite1h > 0) base.cache_write_1h_tokens = c.cacheWrite1h;
  const full = { ...base };
  if (c.inAudio > 0) {
    full.input_audio_tokens = c.inAudio;
    // genai-prices needs the overlap of audio and cache reads spelled out.
    if (c.cacheRead > 0) full.cache_audio_read_tokens = c.cacheAudio;
  }
  if (c.outAudio > 0) full.output_audio_tokens = c.outAudio;
  if (usage.webSearches) full.web_searches = usage.webSearches;
  if (usage.fileSearches) full.storage_searches = usage.fileSearches;
  let r: PriceCalculation | null;
  try {
    r = calc(full);
  } catch {
    // A combination the model's price table cannot split (e.g. audio cache
    // writes): price the text counts, and say what was left out.
    r = calc(base);
    if (r !== null) {
      if (c.inAudio > 0) missing.push("audio input");
      if (c.outAudio > 0) missing.push("audio output");
      if (usage.webSearches) missing.push("web searches");
      if (usage.fileSearches) missing.push("file searches");
    }
  }
  if (r === null || !Number.isFinite(r.total_price)) return unknown();
  const has = (k: string) => r!.model_price[k] !== undefined;
  const apart = AUDIO_PRICED_APART.has(r.provider.id);
  const lacks = (n: number | undefined, key: string, what: string) => {
    if (n && !has(key) && !missing.includes(what)) missing.push(what);
  };
  lacks(c.cacheWrite1h, "cache_write_1h_mtok", "1-hour cache writes");
  lacks(c.cacheWrite - c.cacheWrite1h, "cache_write_mtok", "cache writes");
  if (apart) {
    lacks(c.inAudio - c.cacheAudio, "input_audio_mtok", "audio input");
    lacks(c.cacheAudio, "cache_audio_read_mtok", "cached audio");
    lacks(c.outAudio, "output_audio_mtok", "audio output");
  }
  lacks(usage.webSearches, "web_searches_kcount", "web searches");
  lacks(usage.fileSearches, "storage_searches_kcount", "file searches");
  missing.push(...otherTools(usage));
  const above = KNOWN_TIERS[r.model.id];
  if (
    above !== undefined && c.input > above &&
    !Object.values(r.model_price).some((v) => typeof v === "object" && v !== null)
  ) {
    missing.push(`input above ${above} tokens`);
  }
  let mult = tierMultiplier(usage.serviceTier);
  if (mult === null) {
    missing.push(`service tier "${usage.serviceTier}"`);
    mult = 1;
  }
  // Tool calls are billed per call whatever the tier; the tier scales token prices.
  const tokens = r.input_price + r.output_price;
  const fees = r.total_price - tokens;
  return {
    costUsd: tokens * mult + fees,
    priceUnknown: false,
    priceIncomplete: missing.length > 0,
    missing,
    priceSource: "genai-prices",
  };
}
