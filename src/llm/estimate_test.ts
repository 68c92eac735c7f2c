import assert from "node:assert/strict";
import { createEstimator, roundUp } from "./estimate.ts";
import { createPricer } from "./pricing.ts";
import type { UsageRecord } from "./types.ts";

const WHEN = new Date("2025-06-02T10:00:00Z");

/** A pricer at $1 / $2 / cache write $1.25 per million, that records what it was asked. */
function recording() {
  const seen: UsageRecord[] = [];
  const pricer = {
    price(u: UsageRecord) {
      seen.push(u);
      // An estimate always has counts (unknown usage is NULL only in responses).
      const write = u.cacheWriteTokens!;
      const cost = ((u.inputTokens! - write) * 1 + write * (u.cacheWrite1hTokens ? 2 : 1.25) +
        u.outputTokens! * 2) / 1e6;
      return { costUsd: u.model === "unknown" ? null : cost, priceUnknown: u.model === "unknown" };
    },
  };
  return { pricer, seen };
}

Deno.test("roundUp: a grid of 16 steps per power of two, never below", () => {
  assert.deepEqual(
    [1, 64, 65, 100, 1000, 4096, 4097, 200_000].map(roundUp),
    [64, 64, 68, 100, 1024, 4096, 4352, 204_800],
  );
  for (let n = 1; n < 100_000; n += 37) {
    const r = roundUp(n);
    assert.ok(r >= n && (n <= 64 || r <= n * 1.0625), `${n} -> ${r}`);
  }
});

Deno.test("estimate: input from body bytes, output from each provider's cap", () => {
  const { pricer, seen } = recording();
  const e = createEstimator({ pricer, reserveOutputTokens: 1000 });
  const chat = (body: unknown, bodySize = 300) =>
    e.estimate("openai", { method: "POST", path: "/v1/chat/completions", body, bodySize }, WHEN);
  // 300 bytes + 64 = 364 input tokens (368 on the price grid), 500 output (512).
  assert.deepEqual(chat({ model: "m", max_tokens: 500 }), {
    model: "m",
    inputTokens: 364,
    outputTokens: 500,
    usd: (368 + 2 * 512) / 1e6,
  });
  // max_completion_tokens wins over max_tokens; n completions each get the cap.
  assert.equal(
    chat({ model: "m", max_tokens: 10, max_completion_tokens: 300, n: 3 })!.outputTokens,
    900,
  );
  // No cap: the configured default.
  assert.equal(chat({ model: "m" })!.outputTokens, 1000);
  assert.equal(chat({ model: "m", max_tokens: "lots" })!.outputTokens, 1000);
  const responses = e.estimate("openai", {
    method: "POST",
    path: "/v1/responses",
    body: { model: "m", max_output_tokens: 77 },
    bodySize: 30,
  }, WHEN);
  assert.equal(responses!.outputTokens, 77);
  const embeddings = e.estimate("openai", {
    method: "POST",
    path: "/v1/embeddings",
    body: { model: "m", input: "x" },
    bodySize: 30,
  }, WHEN);
  assert.deepEqual([embeddings!.inputTokens, embeddings!.outputTokens], [94, 0]);
  // Anthropic: the same bound, one token per byte.
  const claude = e.estimate("anthropic", {
    method: "POST",
    path: "/v1/messages",
    body: { model: "c", max_tokens: 64 },
    bodySize: 1000,
  }, WHEN);
  assert.deepEqual([claude!.inputTokens, claude!.outputTokens], [1064, 64]);
  // With tools: the tool-use system prompt, and each built-in tool's definition, come on top.
  const withTools = (tools: unknown[]) =>
    e.estimate("anthropic", {
      method: "POST",
      path: "/v1/messages",
      body: { model: "c", max_tokens: 64, tools },
      bodySize: 1000,
    }, WHEN)!.inputTokens;
  assert.equal(withTools([{ name: "f", input_schema: {} }]), 1064 + 512);
  assert.equal(
    withTools([{ name: "f", input_schema: {} }, { type: "bash_20250124", name: "bash" }]),
    1064 + 512 + 1024,
  );
  // Gemini: the model is in the URL, the cap in generationConfig, times candidateCount.
  const gemini = e.estimate("gemini", {
    method: "POST",
    path: "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
    body: { generationConfig: { maxOutputTokens: 200, candidateCount: 2 } },
    bodySize: 90,
  }, WHEN);
  assert.deepEqual(
    [gemini!.model, gemini!.inputTokens, gemini!.outputTokens],
    ["gemini-2.5-pro", 154, 400],
  );
  // Not a call that reports usage: nothing to reserve.
  assert.equal(
    e.estimate("openai", { method: "POST", path: "/v1/files", body: {}, bodySize: 10 }, WHEN),
    null,
  );
  assert.equal(
    e.estimate("anthropic", { method: "GET", path: "/v1/messages", body: {}, bodySize: 0 }, WHEN),
    null,
  );
  // An unknown price is null, not $0.
  assert.equal(chat({ model: "unknown", max_tokens: 5 })!.usd, null);
  assert.deepEqual(chat({ max_tokens: 5 }), {
    model: null,
    inputTokens: 364,
    outputTokens: 5,
    usd: null,
  });
  // Lookups are cached per grid cell: 300 and 301 bytes are one price lookup.
  const before = seen.length;
  chat({ model: "m", max_tokens: 500 }, 301);
  assert.equal(seen.length, before);
});

Deno.test("estimate: Anthropic prompt caching prices the input as cache writes", () => {
  const { pricer } = recording();
  const e = createEstimator({ pricer });
  const est = (body: unknown) =>
    e.estimate("anthropic", { method: "POST", path: "/v1/messages", body, bodySize: 250 }, WHEN)!
      .usd;
  // 250 + 64 = 314 input tokens (320 on the grid), max_tokens 64.
  assert.equal(est({ model: "c", max_tokens: 64 }), (320 + 2 * 64) / 1e6);
  const cached = {
    model: "c",
    max_tokens: 64,
    system: [{ type: "text", text: "x", cache_control: { type: "ephemeral" } }],
  };
  assert.equal(est(cached), (320 * 1.25 + 2 * 64) / 1e6);
  const hour = {
    model: "c",
    max_tokens: 64,
    messages: [{
      role: "user",
      content: [{ type: "text", text: "x", cache_control: { type: "ephemeral", ttl: "1h" } }],
    }],
  };
  assert.equal(est(hour), (320 * 2 + 2 * 64) / 1e6);
});

Deno.test("estimate: priced with genai-prices like the charge, erring high", () => {
  const e = createEstimator({ pricer: createPricer() });
  // gpt-4o-mini: $0.15 / $0.60 per million. 900 bytes -> 964 input tokens (992 on
  // the grid), max_tokens 500 (512 on the grid): 992 × 0.15 + 512 × 0.6 = 456 µ$.
  const r = e.estimate("openai", {
    method: "POST",
    path: "/v1/chat/completions",
    body: { model: "gpt-4o-mini", max_tokens: 500 },
    bodySize: 900,
  }, WHEN)!;
  assert.equal(Math.round(r.usd! * 1e10) / 1e10, 0.000456);
  // Claude Sonnet 4: $3 / $15 per million, cache writes $3.75.
  const claude = e.estimate("anthropic", {
    method: "POST",
    path: "/v1/messages",
    body: { model: "claude-sonnet-4-20250514", max_tokens: 1024 },
    bodySize: 2500,
  }, WHEN)!;
  // 2500 + 64 = 2564 input tokens (2688 on the grid): 2688 × 3 + 1024 × 15 = 23,424 µ$.
  assert.equal(Math.round(claude.usd! * 1e10) / 1e10, 0.023424);
});

Deno.test("estimate: the README's worked example", () => {
  const e = createEstimator({ pricer: createPricer() });
  const call = (max_tokens: number) =>
    e.estimate("openai", {
      method: "POST",
      path: "/v1/chat/completions",
      body: { model: "gpt-4o", max_tokens },
      bodySize: 3000,
    }, WHEN)!;
  // gpt-4o at $2.50 / $10 per million: 3,072 × 2.5 + 1,024 × 10 = 17,920 µ$.
  assert.equal(Math.round(call(1000).usd! * 1e9), 17_920_000);
  // max_tokens 100 (on the grid already): 7,680 + 1,000 = 8,680 µ$.
  assert.equal(Math.round(call(100).usd! * 1e9), 8_680_000);
});
