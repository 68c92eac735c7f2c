/**
 * The LLM usage addon: for a request to an LLM provider it asks for usage in
 * streams (`llm.force_stream_usage`, and always when a spending or token
 * limit applies), reads the token usage from the response as it streams (a
 * tee: no byte is delayed), prices it, settles the budgets the request
 * reserved, and puts usage, cost, where the price came from and the
 * provider's in-band error on the row before it is written.
 *
 * Reserve, then settle: the decision reserved a priced call's worst case
 * (`PolicyState`); before the call is forwarded the reservation is recorded
 * in the spend journal (durable before any response byte reaches the
 * client); when the response ends it settles — the reservation is released
 * and the real cost charged (the reservation itself when the response
 * carried no usable usage) — and a call that got no response releases it.
 *
 * @module
 */
import {
  createUsageTap,
  forceStreamUsage,
  TYPICAL_BYTES_PER_TOKEN,
  type UsageTap,
} from "../../llm/mod.ts";
import { NANO, NO_JOURNAL, type PolicyState, type SpendJournal } from "../../state/mod.ts";
import type { Exchange } from "../exchange.ts";
import type { ResponseObserver } from "../forward.ts";
import type { Addon } from "./types.ts";
import { rawHeader } from "./headers.ts";
import type { Provider } from "../../llm/types.ts";

/** What the LLM addon needs. */
export interface LlmAddonDeps {
  state: PolicyState;
  /** Where reservations and settlements are recorded (default: nowhere). */
  journal?: SpendJournal;
}

/**
 * The LLM usage addon.
 *
 * @example
 * const addons = [..., llmUsageAddon({ state, journal })];
 */
export function llmUsageAddon(deps: LlmAddonDeps): Addon {
  const journal = deps.journal ?? NO_JOURNAL;
  const { state } = deps;
  /** Requests whose reservation is in the journal and not settled there yet. */
  const journaled = new Set<string>();
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
      const reserved = state.reservedUsd(info.id);
      if (reserved !== null) {
        // On disk before the call is forwarded, so before any byte of its response.
        const r = state.ledger.reservation(info.id)!;
        journal.reserve({
          id: info.id,
          ts: r.ts,
          session: info.session,
          host: info.host,
          client: info.client,
          rule: ex.decision?.rule ?? null,
          keys: [...r.holds.keys()].filter((k) => k.startsWith("cel:")),
          reservedNano: Math.round(reserved * NANO),
        });
        journaled.add(info.id);
        ex.usage = { ...ex.usage, reserved_usd: reserved };
      }
      out.observe(usageObserver(provider, ex, state, (id, usd) => {
        if (journaled.delete(id)) journal.settle(id, Math.round(usd * NANO));
      }));
    },
    done(_event, ex) {
      // No response settled it (denied after its checks, upstream failure,
      // not a call that reports usage): nothing is charged.
      const id = ex.info.id;
      if (state.ledger.reservation(id) !== undefined) state.dropUsage(id);
      if (journaled.size > 0 && journaled.delete(id)) journal.settle(id, 0);
    },
  };
}

function usageObserver(
  provider: Provider,
  ex: Exchange,
  state: PolicyState,
  settled: (id: string, usd: number) => void,
): ResponseObserver {
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
      if (usage === null) {
        // Not a call that reports usage, or no response: released in `done`.
        return;
      }
      if (usage.inspection) {
        ex.inspection.push(
          `usage: ${usage.inspection} (limits.max_decompressed_bytes / max_decompression_ratio)`,
        );
      }
      const now = Date.now();
      const price = ex.config.llm.pricer.price(usage, new Date(now), info.host);
      // A response without usable usage is charged what it reserved: the
      // provider may bill up to that, and a budget must hold.
      const reserved = state.reservedUsd(info.id);
      const charged = price.costUsd ?? reserved ?? undefined;
      ex.usage = {
        ...ex.usage,
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
        charged_usd: charged ?? null,
      };
      // The provider's own error (an error body, an in-band `error` event in a
      // 200 stream) says why the call failed: it fills the row's error column.
      if (usage.providerError && usage.error !== null) ex.usage.error = usage.error;
      const known = usage.inputTokens !== null && usage.outputTokens !== null;
      const keys = state.reportUsage(info.id, {
        ts: now,
        usd: charged,
        // Unknown usage is not 0 tokens: a token limit counts the prompt's
        // estimated size instead (the answer's length is unknown).
        tokens: known
          ? usage.inputTokens! + usage.outputTokens!
          : Math.ceil(ex.bytesIn / TYPICAL_BYTES_PER_TOKEN),
        session: info.session,
        host: info.host,
        client: info.client,
        rule: ex.decision?.rule ?? null,
      });
      if (keys.length) ex.usage.spend_keys = keys;
      settled(info.id, charged ?? 0);
    },
  };
}
