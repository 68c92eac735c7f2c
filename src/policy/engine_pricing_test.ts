/**
 * The engine and LLM prices: a spending limit refuses, before forwarding, a
 * call whose price is unknown or lacks what the request shows it will use;
 * decisions under a spending or token limit say the usage is needed; LLM
 * hosts with a port in `llm.providers` are found by host and port.
 */
import assert from "node:assert/strict";
import { decide } from "./engine.ts";
import { parseConfig } from "../config/load.ts";
import { PolicyState } from "../state/mod.ts";
import type { RequestInfo } from "./types.ts";

const POLICY = `version: 1
default: deny
llm:
  providers: { "llm.internal:8080": openai, llm.internal: anthropic }
rules:
  - name: budget
    match: [api.openai.com, api.anthropic.com, "http://llm.internal"]
    action: allow
    policies:
      - spending_limit: { usd: 5, per: 1d, key: session }
  - name: tokens
    match: generativelanguage.googleapis.com
    action: allow
    policies:
      - rate_limit: { tokens: 100000, per: 1m }
  - name: free
    match: free.test
    action: allow
`;

const T0 = Date.parse("2026-03-04T10:00:00Z");

function llmCall(host: string, body: Record<string, unknown>, opts: Partial<RequestInfo> = {}) {
  const info: RequestInfo = {
    id: crypto.randomUUID(),
    session: "ci",
    label: null,
    client: "10.0.0.5",
    method: "POST",
    scheme: "https",
    host,
    port: 443,
    path: host === "api.anthropic.com" ? "/v1/messages" : "/v1/chat/completions",
    query: "",
    headers: { "content-length": String(JSON.stringify(body).length) },
    body,
    ...opts,
  };
  return info;
}

function run(yaml: string, info: RequestInfo) {
  const { config } = parseConfig(yaml, "p.yaml", "/");
  return decide(config.policy, { info, now: T0, state: new PolicyState(), bodyRead: true });
}

const enforce =
  'so the spending limit of rule "budget" cannot be enforced (llm.unknown_price: deny; add it to llm.prices)';

Deno.test("engine: a service tier without a price is refused before it is sent", () => {
  const asks = (tier?: string) =>
    run(POLICY, llmCall("api.openai.com", { model: "gpt-5", service_tier: tier, messages: [] }));
  const d = asks("priority");
  assert.deepEqual([d.verdict, d.status, d.policy, d.reason], [
    "deny",
    403,
    "spending_limit",
    `no price is known for service tier "priority" of model "gpt-5", ${enforce}`,
  ]);
  // Flex is priced (half the standard price); the default tier too.
  assert.equal(asks("flex").verdict, "allow");
  assert.equal(asks(undefined).verdict, "allow");
  // With unknown_price: allow, it is forwarded (and recorded as incomplete).
  const allow = POLICY.replace("llm:\n", "llm:\n  unknown_price: allow\n");
  const a = run(allow, llmCall("api.openai.com", { model: "gpt-5", service_tier: "priority" }));
  assert.equal(a.verdict, "allow");
  // A priority multiplier in llm.prices makes it priced.
  const own = POLICY.replace(
    "llm:\n",
    "llm:\n  prices: { gpt-5: { input: 1.25, output: 10, service_tiers: { priority: 2 } } }\n",
  );
  assert.equal(
    run(own, llmCall("api.openai.com", { model: "gpt-5", service_tier: "priority" })).verdict,
    "allow",
  );
});

Deno.test("engine: server tools, audio and long prompts the price lacks are refused", () => {
  const search = { type: "web_search_20250305", name: "web_search", max_uses: 5 };
  const haiku = run(
    POLICY,
    llmCall("api.anthropic.com", { model: "claude-3-haiku-20240307", tools: [search] }),
  );
  assert.equal(
    haiku.reason,
    `no price is known for web searches of model "claude-3-haiku-20240307", ${enforce}`,
  );
  // claude-sonnet-4 has a web search price.
  const sonnet = { model: "claude-sonnet-4-20250514", tools: [search], max_tokens: 10 };
  assert.equal(run(POLICY, llmCall("api.anthropic.com", sonnet)).verdict, "allow");
  // ... but no long-context price: a 1 MB prompt (about 250k tokens at 4 bytes each) is refused.
  const long = run(
    POLICY,
    llmCall("api.anthropic.com", sonnet, { headers: { "content-length": "1000000" } }),
  );
  assert.equal(
    long.reason,
    `no price is known for input above 200000 tokens of model "claude-sonnet-4-20250514", ${enforce}`,
  );
  // Audio out of a model whose audio has no price in the bundled data.
  const audio = run(
    POLICY,
    llmCall("api.openai.com", {
      model: "gpt-4o-audio-preview",
      modalities: ["text", "audio"],
      audio: { voice: "alloy", format: "wav" },
      messages: [{ role: "user", content: "hi" }],
    }),
  );
  assert.equal(
    audio.reason,
    `no price is known for audio output of model "gpt-4o-audio-preview", ${enforce}`,
  );
  // gpt-audio has audio prices: allowed.
  const priced = run(
    POLICY,
    llmCall("api.openai.com", { model: "gpt-audio", modalities: ["text", "audio"] }),
  );
  assert.equal(priced.verdict, "allow");
});

Deno.test("engine: llm.providers keys with a port match host:port first, then the host", () => {
  const at = (port: number, model: string) =>
    run(
      POLICY,
      llmCall("llm.internal", { model, messages: [] }, { scheme: "http", port }),
    );
  // llm.internal:8080 speaks openai: gpt-4o is priced, a Claude model is not OpenAI's.
  assert.equal(at(8080, "gpt-4o").verdict, "allow");
  assert.equal(
    at(8080, "claude-sonnet-4-20250514").reason,
    `no price is known for model "claude-sonnet-4-20250514", ${enforce}`,
  );
  // Any other port of llm.internal speaks anthropic.
  assert.equal(at(9090, "claude-sonnet-4-20250514").verdict, "allow");
  assert.equal(at(9090, "gpt-4o").verdict, "deny");
});

Deno.test("engine: decisions under a spending or token limit are metered", () => {
  const budget = run(POLICY, llmCall("api.openai.com", { model: "gpt-4o" }));
  assert.deepEqual([budget.verdict, budget.metered], ["allow", true]);
  const tokens = run(
    POLICY,
    llmCall("generativelanguage.googleapis.com", {}, {
      path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    }),
  );
  assert.deepEqual([tokens.verdict, tokens.metered], ["allow", true]);
  const free = run(POLICY, llmCall("free.test", {}));
  assert.deepEqual([free.verdict, free.metered], ["allow", undefined]);
  // In audit mode a would-be deny is forwarded: its usage is still needed.
  const audit = run(
    POLICY.replace("default: deny", "default: deny\nmode: audit"),
    llmCall("api.openai.com", { model: "no-such-model" }),
  );
  assert.deepEqual([audit.verdict, audit.metered], ["would_deny", true]);
  // A refused request is not metered.
  const refused = run(POLICY, llmCall("api.openai.com", { model: "no-such-model" }));
  assert.deepEqual([refused.verdict, refused.metered], ["deny", undefined]);
});
