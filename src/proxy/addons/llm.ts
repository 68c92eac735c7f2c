/**
 * The LLM usage addon: for a request to an LLM provider it asks for usage in
 * streams (`llm.force_stream_usage`, and always when a spending or token
 * limit applies), reads the token usage from the response as it streams (a
 * tee: no byte is delayed), prices it, charges the spending and token limits
 * the request passed, and puts usage, cost, where the price came from and
 * the provider's in-band error on the row before it is written.
 *
 * @module
 */
import { BYTES_PER_TOKEN, createUsageTap, forceStreamUsage, type UsageTap } from "../../llm/mod.ts";
import type { PolicyState } from "../../state/mod.ts";
import type { Exchange } from "../exchange.ts";
import type { ResponseObserver } from "../forward.ts";
import type { Addon } from "./types.ts";
import { rawHeader } from "./headers.ts";
import type { Provider } from "../../llm/types.ts";

/**
 * The LLM usage addon.
 *
 * @example
 * const addons = [..., llmUsageAddon({ state })];
 */
export function llmUsageAddon(deps: { state: PolicyState }): Addon {
  return {
    name: "llm-usage",
    request(ex, out) {
      const info = ex.info;
      if (info.path === null) return;
      const provider = ex.config.llm.detect(info.host, info.port);
      if (provider === null) return;
      // A spending or token limit cannot count a stream that reports no usage:
      // under one, agentgate asks for it whatever force_stream_usage says.
      const force = ex.config.llm.forceStreamUsage || out.verdict.decision.metered === true;
      if (force && out.body !== undefined && out.headers["content-encoding"] === undefined) {
        const rewritten = forceStreamUsage(provider, info.path, out.body);
        if (rewritten) out.setBody(rewritten);
      }
      out.observe(usageObserver(provider, ex, deps.state));
    },
  };
}

function usageObserver(provider: Provider, ex: Exchange, state: PolicyState): ResponseObserver {
  const info = ex.info;
  let tap: UsageTap | null = null;
  return {
    head: (status, raw) => {
      tap = createUsageTap(provider, {
        method: info.method,
        path: info.query ? `${info.path}?${info.query}` : info.path!,
        requestBody: info.body,
        status,
        contentType: rawHeader(raw, "content-type"),
        contentEncoding: rawHeader(raw, "content-encoding"),
      });
    },
    chunk: (c) => tap?.push(c),
    end: (complete) => {
      const usage = tap?.finish({ complete }) ?? null;
      if (usage === null) return state.dropUsage(info.id);
      const now = Date.now();
      const price = ex.config.llm.pricer.price(usage, new Date(now), info.host);
      ex.usage = {
        provider: usage.provider,
        model: usage.model,
        // Unknown usage stays NULL: never 0 tokens.
        input_tokens: usage.inputTokens,
        output_tokens: usage.outputTokens,
        cache_read_tokens: usage.cacheReadTokens,
        cache_write_tokens: usage.cacheWriteTokens,
        reasoning_tokens: usage.reasoningTokens,
        cost_usd: price.costUsd,
        usage_partial: usage.partial,
        price_unknown: price.priceUnknown,
        price_source: price.priceSource,
        price_incomplete: price.priceSource === null ? null : price.priceIncomplete,
        price_missing: price.missing.length ? price.missing.join(", ") : null,
        service_tier: usage.serviceTier ?? null,
      };
      // The provider's own error (an error body, an in-band `error` event in a
      // 200 stream) says why the call failed: it fills the row's error column.
      if (usage.providerError && usage.error !== null) ex.usage.error = usage.error;
      const known = usage.inputTokens !== null && usage.outputTokens !== null;
      const charged = state.reportUsage(info.id, {
        ts: now,
        usd: price.costUsd ?? undefined,
        // Unknown usage is not 0 tokens: a token limit counts the prompt's
        // estimated size instead (the answer's length is unknown).
        tokens: known
          ? usage.inputTokens! + usage.outputTokens!
          : Math.ceil(ex.bytesIn / BYTES_PER_TOKEN),
        session: info.session,
        host: info.host,
        client: info.client,
        rule: ex.decision?.rule ?? null,
      });
      if (charged.length) ex.usage.spend_keys = charged;
    },
  };
}
