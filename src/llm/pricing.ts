/**
 * Cost of a {@link UsageRecord}: `llm.prices` overrides first, then the price
 * data bundled with `@pydantic/genai-prices` (no network: this module never
 * calls its `updatePrices`, so `calcPrice` only reads the bundled table).
 * An unknown model is never priced at $0.
 *
 * @module
 */

import { calcPrice } from "@pydantic/genai-prices";
import type { Provider, UsageRecord } from "./types.ts";

/** One `llm.prices` entry, USD per million tokens. */
export interface ModelPriceOverride {
  /** Uncached input. */
  input: number;
  /** Output, reasoning included. */
  output: number;
  /** Cache reads; input price when absent (never cheaper than it may be). */
  cache_read?: number;
  /** Cache writes; input price when absent. */
  cache_write?: number;
}

/** Options of {@link createPricer}. */
export interface PricerOptions {
  /** Model name → prices; matched case-insensitively, see {@link createPricer}. */
  overrides?: Record<string, ModelPriceOverride>;
}

/** What one call cost. */
export interface PriceResult {
  /**
   * USD, or null when unknown: no price for the model (`priceUnknown`), or no
   * usage to price (a partial record without any token count).
   */
  costUsd: number | null;
  /** True when the model (or provider) has no price: the audit's `price_unknown`. */
  priceUnknown: boolean;
  /** Where the price came from; null when none was used. */
  priceSource: "override" | "genai-prices" | null;
}

// genai-prices' provider ids for our wire formats.
const GENAI_PROVIDER: Record<Provider, string> = {
  openai: "openai",
  anthropic: "anthropic",
  gemini: "google",
};

// "-2024-08-06" / "-20241022" at the end of a model name.
const DATE_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{8})$/;

/**
 * Compiles the override table once and returns the pricer.
 *
 * Overrides are looked up by model name, case-insensitively: first exactly,
 * then without a `models/` prefix, then without a trailing date
 * (`gpt-4o-2024-08-06` → `gpt-4o`), so an override for `gpt-4o` also prices
 * the dated name the response reports.
 *
 * Cost = (input − cache read − cache write) × input + cache read × cache_read
 * + cache write × cache_write + output × output, per million. Reasoning
 * tokens are inside output tokens and are not billed again. genai-prices gets
 * the same split (its `input_tokens` includes cache tokens) and also applies
 * Anthropic's 1-hour cache-write price, tiered prices (Gemini 2.5 Pro above
 * 200k input tokens) and price changes over time (`when`).
 *
 * @example
 * ```ts
 * const pricer = createPricer({ overrides: { "my-llama": { input: 0.1, output: 0.2 } } });
 * pricer.price(usage, new Date()); // { costUsd: 0.000123, priceUnknown: false, priceSource: "genai-prices" }
 * ```
 */
export function createPricer(opts: PricerOptions = {}): {
  price(usage: UsageRecord, when: Date): PriceResult;
} {
  const overrides = new Map<string, ModelPriceOverride>();
  for (const [model, p] of Object.entries(opts.overrides ?? {})) {
    for (const k of ["input", "output", "cache_read", "cache_write"] as const) {
      const v = p[k];
      if (v === undefined && (k === "cache_read" || k === "cache_write")) continue;
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
        throw new Error(
          `Invalid price "${k}" for model "${model}": expected a non-negative number of USD per million tokens`,
        );
      }
    }
    overrides.set(model.toLowerCase(), p);
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
    return DATE_SUFFIX.test(m) ? overrides.get(m.replace(DATE_SUFFIX, "")) : undefined;
  };

  return {
    price(usage: UsageRecord, when: Date): PriceResult {
      const none = usage.inputTokens === 0 && usage.outputTokens === 0;
      // No usage seen at all (e.g. an OpenAI stream without include_usage): the
      // cost is unknown, not $0 — whatever the model.
      if (none && usage.partial) return { costUsd: null, priceUnknown: false, priceSource: null };
      // A failed call that reports no tokens is not billed.
      if (none && usage.error !== null) {
        return { costUsd: 0, priceUnknown: false, priceSource: null };
      }
      if (usage.model === null) return { costUsd: null, priceUnknown: true, priceSource: null };

      const o = findOverride(usage.model);
      if (o) {
        const cacheRead = Math.min(usage.cacheReadTokens, usage.inputTokens);
        const cacheWrite = Math.min(usage.cacheWriteTokens, usage.inputTokens - cacheRead);
        const uncached = usage.inputTokens - cacheRead - cacheWrite;
        const cost = (uncached * o.input + cacheRead * (o.cache_read ?? o.input) +
          cacheWrite * (o.cache_write ?? o.input) + usage.outputTokens * o.output) / 1e6;
        return { costUsd: cost, priceUnknown: false, priceSource: "override" };
      }

      let model = usage.model.trim();
      if (model.toLowerCase().startsWith("models/")) model = model.slice(7);
      // genai-prices checks that cache parts fit inside input_tokens and throws
      // otherwise; a provider reporting nonsense should not crash the proxy.
      const cacheRead = Math.min(usage.cacheReadTokens, usage.inputTokens);
      const cacheWrite = Math.min(usage.cacheWriteTokens, usage.inputTokens - cacheRead);
      const genaiUsage: Record<string, number> = {
        input_tokens: usage.inputTokens,
        output_tokens: usage.outputTokens,
      };
      if (cacheRead > 0) genaiUsage.cache_read_tokens = cacheRead;
      if (cacheWrite > 0) genaiUsage.cache_write_tokens = cacheWrite;
      const w1h = Math.min(usage.cacheWrite1hTokens ?? 0, cacheWrite);
      if (w1h > 0) genaiUsage.cache_write_1h_tokens = w1h;
      try {
        const r = calcPrice(genaiUsage, model, {
          providerId: GENAI_PROVIDER[usage.provider],
          timestamp: when,
        });
        if (r !== null && Number.isFinite(r.total_price)) {
          return { costUsd: r.total_price, priceUnknown: false, priceSource: "genai-prices" };
        }
      } catch {
        // fall through: unknown
      }
      return { costUsd: null, priceUnknown: true, priceSource: null };
    },
  };
}
