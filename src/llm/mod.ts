/**
 * LLM awareness: which provider a host is, token usage read from responses
 * (JSON and SSE, compressed or not) without delaying them, the optional
 * `force_stream_usage` request rewrite, and cost from `@pydantic/genai-prices`
 * plus `llm.prices` overrides. Everything here is sans-IO; the proxy feeds it.
 *
 * @example
 * ```ts
 * import { createPricer, createProviderDetector, createUsageTap } from "./src/llm/mod.ts";
 *
 * const detect = createProviderDetector(config.llm.providers);
 * const pricer = createPricer({ overrides: config.llm.prices });
 * const provider = detect(info.host);
 * if (provider) {
 *   const tap = createUsageTap(provider, { method, path, requestBody, status, contentType, contentEncoding });
 *   // for each upstream chunk: forward it, then tap.push(chunk)
 *   const usage = tap.finish({ complete });
 *   if (usage) pricer.price(usage, new Date());
 * }
 * ```
 *
 * @module
 */

export { createProviderDetector, type ProviderOverride } from "./detect.ts";
export { createUsageTap, type UsageTapLimits } from "./usage.ts";
export { forceStreamUsage } from "./rewrite.ts";
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
  type PriceResult,
  type PricerOptions,
} from "./pricing.ts";
export {
  type Provider,
  PROVIDERS,
  type UsageRecord,
  type UsageTap,
  type UsageTapContext,
} from "./types.ts";
