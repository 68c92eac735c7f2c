/**
 * The LLM usage addon: for a request to an LLM provider it asks for usage in
 * streams (`llm.force_stream_usage`), reads the token usage from the
 * response as it streams (a tee: no byte is delayed), prices it, charges the
 * spending and token limits the request passed, and puts usage and cost on
 * the row before it is written.
 *
 * @module
 */
import { createUsageTap, forceStreamUsage, type UsageTap } from "../../llm/mod.ts";
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
      const provider = ex.config.llm.detect(info.host);
      if (provider === null) return;
      if (
        out.body !== undefined && ex.config.llm.forceStreamUsage &&
        out.headers["content-encoding"] === undefined
      ) {
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
      }, {
        maxDecompressedBytes: ex.config.limits.maxDecompressedBytes,
        maxDecompressionRatio: ex.config.limits.maxDecompressionRatio,
      });
    },
    chunk: (c) => tap?.push(c),
    end: (complete) => {
      const usage = tap?.finish({ complete }) ?? null;
      if (usage === null) return state.dropUsage(info.id);
      if (usage.inspection) {
        ex.inspection.push(
          `usage: ${usage.inspection} (limits.max_decompressed_bytes / max_decompression_ratio)`,
        );
      }
      const now = Date.now();
      const price = ex.config.llm.pricer.price(usage, new Date(now));
      ex.usage = {
        provider: usage.provider,
        model: usage.model,
        input_tokens: usage.inputTokens,
        output_tokens: usage.outputTokens,
        cache_read_tokens: usage.cacheReadTokens,
        cache_write_tokens: usage.cacheWriteTokens,
        reasoning_tokens: usage.reasoningTokens,
        cost_usd: price.costUsd,
        usage_partial: usage.partial,
        price_unknown: price.priceUnknown,
      };
      const charged = state.reportUsage(info.id, {
        ts: now,
        usd: price.costUsd ?? undefined,
        tokens: usage.inputTokens + usage.outputTokens,
        session: info.session,
        host: info.host,
        client: info.client,
        rule: ex.decision?.rule ?? null,
      });
      if (charged.length) ex.usage.spend_keys = charged;
    },
  };
}
