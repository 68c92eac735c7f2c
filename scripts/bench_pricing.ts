/**
 * CPU cost of pricing one LLM call, and of deciding one LLM request under a
 * spending limit (which prices what the request shows before it is sent).
 * Run: `deno task bench pricing` (which is `deno bench -A scripts/bench_pricing.ts`).
 *
 * @module
 */

import { createPricer } from "../src/llm/pricing.ts";
import type { UsageRecord } from "../src/llm/types.ts";
import { parseConfig } from "../src/config/load.ts";
import { decide } from "../src/policy/engine.ts";
import { PolicyState } from "../src/state/mod.ts";
import type { RequestInfo } from "../src/policy/types.ts";

const WHEN = new Date("2025-09-01T12:00:00Z");
const pricer = createPricer({
  overrides: { "my-finetune": { input: 3, output: 12, tiers: [{ above: 1000, input: 6 }] } },
});

function usage(r: Partial<UsageRecord>): UsageRecord {
  return {
    provider: "openai",
    model: "gpt-4o-2024-08-06",
    inputTokens: 1117,
    outputTokens: 46,
    cacheReadTokens: 1024,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    partial: false,
    error: null,
    ...r,
  };
}

const chat = usage({ serviceTier: "default" });
const anthropicSearch = usage({
  provider: "anthropic",
  model: "claude-sonnet-4-20250514",
  inputTokens: 6039,
  outputTokens: 931,
  cacheReadTokens: 0,
  webSearches: 3,
  serviceTier: "standard",
});
const audio = usage({
  model: "gpt-audio-2025-08-28",
  inputTokens: 1190,
  outputTokens: 412,
  cacheReadTokens: 0,
  inputAudioTokens: 1024,
  outputAudioTokens: 330,
});
const openrouter = usage({ model: "openai/gpt-4o-mini", cacheReadTokens: 0 });
const reported = usage({ model: "openai/gpt-4o-mini", providerCostUsd: 0.0000081 });
const config = usage({ model: "my-finetune", cacheReadTokens: 0 });

Deno.bench("price: OpenAI chat (genai-prices)", { group: "price", baseline: true }, () => {
  pricer.price(chat, WHEN, "api.openai.com");
});
Deno.bench("price: Anthropic with 3 web searches", { group: "price" }, () => {
  pricer.price(anthropicSearch, WHEN, "api.anthropic.com");
});
Deno.bench("price: OpenAI audio", { group: "price" }, () => {
  pricer.price(audio, WHEN, "api.openai.com");
});
Deno.bench("price: OpenRouter vendor/model", { group: "price" }, () => {
  pricer.price(openrouter, WHEN, "openrouter.ai");
});
Deno.bench("price: provider-reported cost", { group: "price" }, () => {
  pricer.price(reported, WHEN, "openrouter.ai");
});
Deno.bench("price: llm.prices entry with a tier", { group: "price" }, () => {
  pricer.price(config, WHEN, "llm.internal");
});

const { config: cfg } = parseConfig(
  `version: 1
default: deny
rules:
  - name: budget
    match: [api.openai.com, api.anthropic.com]
    action: allow
    policies:
      - spending_limit: { usd: 1000, per: 1d, key: session }
  - name: free
    match: free.test
    action: allow
`,
  "bench.yaml",
  "/",
);
const state = new PolicyState();
const body = {
  model: "gpt-4o",
  stream: true,
  messages: [{ role: "user", content: "x".repeat(2000) }],
  tools: [{ type: "function", function: { name: "f", parameters: {} } }],
};
const info = (host: string): RequestInfo => ({
  id: "b",
  session: "ci",
  label: null,
  client: "127.0.0.1",
  method: "POST",
  scheme: "https",
  host,
  port: 443,
  path: "/v1/chat/completions",
  query: "",
  headers: { "content-length": "2200" },
  body,
});
const limited = info("api.openai.com");
const free = info("free.test");
let t = Date.parse("2026-03-04T10:00:00Z");

Deno.bench(
  "decide: LLM request under a spending limit",
  { group: "decide", baseline: true },
  () => {
    decide(cfg.policy, { info: limited, now: t++, state, bodyRead: true });
  },
);
Deno.bench("decide: the same request without a limit", { group: "decide" }, () => {
  decide(cfg.policy, { info: free, now: t++, state, bodyRead: true });
});
