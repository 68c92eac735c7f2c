/**
 * LLM awareness: which provider a host (and port) is, token usage read from
 * responses (JSON and SSE, compressed or not) without delaying them, the
 * `include_usage` request rewrite, what a request shows about its price
 * before it is sent, and cost from the provider's own report, `llm.prices`
 * or `@pydantic/genai-prices`. Everything here is sans-IO; the proxy feeds it.
 *
 * @example
 * ```ts
 * import { createPricer, createProviderDetector, createUsageTap } from "./src/llm/mod.ts";
 *
 * const detect = createProviderDetector(config.llm.providers);
 * const pricer = createPricer({ overrides: config.llm.prices });
 * const provider = detect(info.host, info.port);
 * if (provider) {
 *   const tap = createUsageTap(provider, { method, path, requestBody, status, contentType, contentEncoding });
 *   // for each upstream chunk: forward it, then tap.push(chunk)
 *   const usage = tap.finish({ complete });
 *   if (usage) pricer.price(usage, new Date(), info.host);
 * }
 * ```
 *
 * @module
 */

export {
  createProviderDetector,
  type ProviderDetector,
  type ProviderOverride,
  splitHostPort,
} from "./detect.ts";
export { createUsageTap, type UsageTapLimits } from "./usage.ts";
export { forceStreamUsage } from "./rewrite.ts";
export { foreseeUsage, TYPICAL_BYTES_PER_TOKEN } from "./foresee.ts";
export {
  BYTES_PER_TOKEN,
  type CallEstimate,
  type CallRequest,
  createEstimator,
  DEFAULT_RESERVE_OUTPUT_TOKENS,
  INPUT_OVERHEAD_TOKENS,
  TOOLS_OVERHEAD_TOKENS,
} from "./estimate.ts";
export {
  createPricer,
  type ModelPriceOverride,
  type Pricer,
  type PriceResult,
  type PricerOptions,
  type PriceSource,
  type PriceTier,
} from "./pricing.ts";
export {
  type Provider,
  PROVIDERS,
  type UsageRecord,
  type UsageTap,
  type UsageTapContext,
} from "./types.ts";
