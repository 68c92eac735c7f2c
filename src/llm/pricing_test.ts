import assert from "node:assert/strict";
import { calcPrice, extractUsage, findProvider } from "@pydantic/genai-prices";
import { fixtureUrl, LLM_FIXTURES } from "../../tests/support/llm_fixtures.ts";
import { createPricer } from "./pricing.ts";
import type { UsageRecord } from "./types.ts";

const WHEN = new Date("2025-09-01T12:00:00Z");

function fixture(file: string): UsageRecord {
  return LLM_FIXTURES.find((f) => f.file === file)!.expected;
}

function close(actual: number | null, expected: number, msg?: string): void {
  assert.ok(actual !== null, msg ?? "expected a cost");
  assert.ok(Math.abs(actual - expected) <= 1e-12, `${msg ?? ""} ${actual} != ${expected}`);
}

function record(r: Partial<UsageRecord>): UsageRecord {
  return {
    provider: "openai",
    model: "gpt-4o",
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    partial: false,
    error: null,
    ...r,
  };
}

Deno.test("pricing: by hand, with the per-million prices of genai-prices 0.1.8", () => {
  const pricer = createPricer();
  // gpt-4o: input $2.50, cache read $1.25, output $10 (openai-chat.json):
  // (1117 - 1024) × 2.50 + 1024 × 1.25 + 46 × 10 = 1972.5 → $0.0019725
  const a = pricer.price(fixture("openai-chat.json"), WHEN);
  close(a.costUsd, 0.0019725, "gpt-4o");
  assert.equal(a.priceSource, "genai-prices");
  assert.equal(a.priceUnknown, false);
  // claude-sonnet-4: input $3, cache write (5 min) $3.75, output $15 (anthropic-messages.json):
  // 21 × 3 + 2048 × 3.75 + 393 × 15 = 13638 → $0.013638
  close(
    pricer.price(fixture("anthropic-messages.json"), WHEN).costUsd,
    0.013638,
    "claude-sonnet-4",
  );
  // claude-sonnet-4, cache read $0.30 (anthropic-messages-stream.sse):
  // 12 × 3 + 2048 × 0.30 + 187 × 15 = 3455.4 → $0.0034554
  close(pricer.price(fixture("anthropic-messages-stream.sse"), WHEN).costUsd, 0.0034554, "stream");
  // gemini-2.5-flash: input $0.30, cache read $0.03, output (thoughts included) $2.50
  // (gemini-generate.json): 262 × 0.30 + 2048 × 0.03 + 508 × 2.50 = 1410.04 → $0.00141004
  close(
    pricer.price(fixture("gemini-generate.json"), WHEN).costUsd,
    0.00141004,
    "gemini-2.5-flash",
  );
  // o4-mini: input $1.10, cache read $0.275, output $4.40 — reasoning is inside output,
  // not billed twice (openai-responses.json): 86 × 1.10 + 1920 × 0.275 + 764 × 4.40 = 3984.2
  close(pricer.price(fixture("openai-responses.json"), WHEN).costUsd, 0.0039842, "o4-mini");
});

Deno.test("pricing: every priced fixture matches genai-prices' own calculation", () => {
  const pricer = createPricer();
  // JSON bodies: genai-prices extracts the usage itself, independently of us.
  const flavors: Record<string, [string, string]> = {
    "openai-chat.json": ["openai", "chat"],
    "openai-chat-reasoning.json": ["openai", "chat"],
    "openai-responses.json": ["openai", "responses"],
    "anthropic-messages.json": ["anthropic", "default"],
    "gemini-generate.json": ["google", "default"],
  };
  for (const [file, [providerId, flavor]] of Object.entries(flavors)) {
    const body = JSON.parse(Deno.readTextFileSync(fixtureUrl(file)));
    const { model, usage } = extractUsage(findProvider({ providerId })!, body, flavor);
    const theirs = calcPrice(usage, model!, { providerId, timestamp: WHEN });
    assert.ok(theirs, file);
    close(pricer.price(fixture(file), WHEN).costUsd, theirs.total_price, file);
  }
  // Streams and embeddings: the usage written out by hand from the fixture.
  const streams: [string, string, Record<string, number>][] = [
    ["openai-chat-stream.sse", "openai", { input_tokens: 24, output_tokens: 17 }],
    ["openai-responses-stream.sse", "openai", { input_tokens: 37, output_tokens: 12 }],
    ["openai-embeddings.json", "openai", { input_tokens: 13, output_tokens: 0 }],
    ["anthropic-messages-stream.sse", "anthropic", {
      input_tokens: 2060,
      cache_read_tokens: 2048,
      output_tokens: 187,
    }],
    ["anthropic-messages-stream-error.sse", "anthropic", { input_tokens: 25, output_tokens: 1 }],
    ["anthropic-messages-stream-truncated.sse", "anthropic", {
      input_tokens: 472,
      output_tokens: 2,
    }],
    ["gemini-stream.sse", "google", { input_tokens: 9, output_tokens: 241 }],
    ["gemini-stream.json", "google", {
      input_tokens: 1043,
      cache_read_tokens: 1024,
      output_tokens: 359,
    }],
  ];
  for (const [file, providerId, usage] of streams) {
    const rec = fixture(file);
    const theirs = calcPrice(usage, rec.model!, { providerId, timestamp: WHEN });
    assert.ok(theirs, file);
    const ours = pricer.price(rec, WHEN);
    close(ours.costUsd, theirs.total_price, file);
    assert.equal(ours.priceSource, "genai-prices");
  }
});

Deno.test("pricing: Anthropic 1-hour cache writes use their own price", () => {
  const rec = record({
    provider: "anthropic",
    model: "claude-sonnet-4-20250514",
    inputTokens: 1000,
    cacheWriteTokens: 500,
    cacheWrite1hTokens: 200,
    outputTokens: 10,
  });
  // 500 × 3 + 300 × 3.75 + 200 × 6 + 10 × 15 = 3975
  close(createPricer().price(rec, WHEN).costUsd, 0.003975);
});

Deno.test("pricing: tiered and dated prices follow genai-prices", () => {
  const pricer = createPricer();
  // gemini-2.5-pro above 200k input tokens: input $2.50, output $15.
  const big = record({
    provider: "gemini",
    model: "gemini-2.5-pro",
    inputTokens: 300000,
    outputTokens: 1000,
  });
  close(pricer.price(big, WHEN).costUsd, 0.765);
  // claude-opus-4-6's long-context surcharge ends on 2026-03-13.
  const opus = record({
    provider: "anthropic",
    model: "claude-opus-4-6",
    inputTokens: 300000,
    outputTokens: 1000,
  });
  const before = new Date("2026-01-01T00:00:00Z");
  const after = new Date("2026-04-01T00:00:00Z");
  const usage = { input_tokens: 300000, output_tokens: 1000 };
  const b = pricer.price(opus, before).costUsd;
  const a = pricer.price(opus, after).costUsd;
  close(
    b,
    calcPrice(usage, "claude-opus-4-6", { providerId: "anthropic", timestamp: before })!
      .total_price,
  );
  close(
    a,
    calcPrice(usage, "claude-opus-4-6", { providerId: "anthropic", timestamp: after })!.total_price,
  );
  assert.notEqual(a, b);
});

Deno.test("pricing: unknown model or provider is null and priceUnknown, never 0", () => {
  const pricer = createPricer();
  const unknown = {
    costUsd: null,
    priceUnknown: true,
    priceIncomplete: false,
    missing: [],
    priceSource: null,
  };
  assert.deepEqual(
    pricer.price(record({ model: "my-local-llama", inputTokens: 10, outputTokens: 5 }), WHEN),
    unknown,
  );
  assert.deepEqual(pricer.price(record({ model: null, inputTokens: 10 }), WHEN), unknown);
  // A model of another provider's price list is not guessed.
  assert.deepEqual(
    pricer.price(record({ provider: "gemini", model: "gpt-4o", inputTokens: 10 }), WHEN),
    unknown,
  );
  // A known model with zero tokens costs 0 (known), unknown stays unknown.
  assert.deepEqual(pricer.price(record({ model: "gpt-4o" }), WHEN), {
    costUsd: 0,
    priceUnknown: false,
    priceIncomplete: false,
    missing: [],
    priceSource: "genai-prices",
  });
  assert.deepEqual(pricer.price(record({ model: "my-local-llama" }), WHEN), unknown);
});

Deno.test("pricing: no usage is unknown cost; a failed call without tokens costs 0", () => {
  const pricer = createPricer();
  assert.deepEqual(pricer.price(fixture("openai-chat-stream-no-usage.sse"), WHEN), {
    costUsd: null,
    priceUnknown: false,
    priceIncomplete: false,
    missing: [],
    priceSource: null,
  });
  assert.deepEqual(pricer.price(fixture("anthropic-error-529.json"), WHEN), {
    costUsd: 0,
    priceUnknown: false,
    priceIncomplete: false,
    missing: [],
    priceSource: null,
  });
  // A partial record with tokens is priced: a lower bound.
  const p = pricer.price(fixture("anthropic-messages-stream-truncated.sse"), WHEN);
  // claude-3-5-haiku: input $0.80, output $4 → 472 × 0.8 + 2 × 4 = 385.6
  close(p.costUsd, 0.0003856);
});

Deno.test("pricing: overrides win, match dated and prefixed names, default cache prices to input", () => {
  const pricer = createPricer({
    overrides: {
      "GPT-4o": { input: 1, output: 2, cache_read: 0.5 },
      "my-local-llama": { input: 0.1, output: 0.2 },
      "gemini-2.5-flash": { input: 0.3, output: 2.5, cache_read: 0.03 },
    },
  });
  // (1117 - 1024) × 1 + 1024 × 0.5 + 46 × 2 = 697
  const a = pricer.price(fixture("openai-chat.json"), WHEN); // model gpt-4o-2024-08-06
  close(a.costUsd, 0.000697);
  assert.equal(a.priceSource, "config");
  // Cache write priced at input when cache_write is absent: 1000 × 0.1 + 10 × 0.2 = 102;
  // a provider bills writes above input, so that is a lower bound, and says so.
  const b = pricer.price(
    record({ model: "my-local-llama", inputTokens: 1000, cacheWriteTokens: 600, outputTokens: 10 }),
    WHEN,
  );
  close(b.costUsd, 0.000102);
  assert.deepEqual([b.priceIncomplete, b.missing], [true, ["cache writes"]]);
  const c = pricer.price(
    record({ provider: "gemini", model: "models/gemini-2.5-flash", inputTokens: 1000 }),
    WHEN,
  );
  close(c.costUsd, 0.0003);
  assert.equal(c.priceSource, "config");
  // Not an override: genai-prices still answers.
  assert.equal(pricer.price(fixture("anthropic-messages.json"), WHEN).priceSource, "genai-prices");
});

Deno.test("pricing: a bad override is refused", () => {
  assert.throws(
    () => createPricer({ overrides: { "x": { input: -1, output: 1 } } }),
    /^Error: Invalid price "input" for model "x": expected a non-negative number of USD per million tokens$/,
  );
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => createPricer({ overrides: { "x": { input: 1, output: 1, cache_read: "0.1" as any } } }),
    /^Error: Invalid price "cache_read" for model "x"/,
  );
});

Deno.test("pricing: nonsense usage (cache over input) does not throw", () => {
  const r = createPricer().price(
    record({ inputTokens: 10, cacheReadTokens: 500, outputTokens: 1 }),
    WHEN,
  );
  // Clamped: all 10 input tokens as cache reads ($1.25) + 1 output ($10).
  close(r.costUsd, (10 * 1.25 + 10) / 1e6);
});

Deno.test("pricing: genai-prices makes no network call", () => {
  const real = globalThis.fetch;
  let calls = 0;
  globalThis.fetch = () => {
    calls++;
    return Promise.reject(new Error("network"));
  };
  try {
    const pricer = createPricer();
    for (const f of LLM_FIXTURES) pricer.price(f.expected, WHEN);
  } finally {
    globalThis.fetch = real;
  }
  assert.equal(calls, 0);
});

Deno.test("pricing: works in a process without net permission", async () => {
  const code = `
    import { createPricer } from ${JSON.stringify(new URL("./pricing.ts", import.meta.url).href)};
    const r = createPricer().price({ provider: "openai", model: "gpt-4o", inputTokens: 1000000,
      outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, reasoningTokens: 0, partial: false,
      error: null }, new Date("2025-09-01T00:00:00Z"));
    console.log(JSON.stringify(r));
  `;
  const configUrl = new URL("../../deno.json", import.meta.url);
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, code);
    // No --allow-* flag at all: a fetch (or a read of a price file) would fail.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--quiet", "--config", configUrl.pathname, file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
      costUsd: 2.5,
      priceUnknown: false,
      priceIncomplete: false,
      missing: [],
      priceSource: "genai-prices",
    });
  } finally {
    await Deno.remove(file);
  }
});

// Issue 15, "every dollar priced": each item below is priced from a fixture in the
// provider's documented wire format, and compared with a cost computed here by hand
// from the provider's published prices — not by the code under test.

function priced(file: string, host?: string, pricer = createPricer()) {
  return pricer.price(fixture(file), WHEN, host);
}

Deno.test("pricing: Anthropic web search is $10 per 1,000 searches on top of tokens", () => {
  // claude-sonnet-4: $3 in / $15 out per million; web search $10 per 1,000 searches.
  // 6039 × 3 + 931 × 15 = 32082 → $0.032082; 3 searches → $0.03.
  const r = priced("anthropic-messages-web-search.json");
  close(r.costUsd, 0.032082 + 0.03);
  assert.deepEqual([r.priceSource, r.priceIncomplete, r.missing], ["genai-prices", false, []]);
  // A model whose price has no web search fee: the tokens are priced, the row says what is missing.
  const old = createPricer().price(
    { ...fixture("anthropic-messages-web-search.json"), model: "claude-3-haiku-20240307" },
    WHEN,
  );
  // claude-3-haiku: $0.25 in / $1.25 out: 6039 × 0.25 + 931 × 1.25 = 2673.5
  close(old.costUsd, 0.0026735);
  assert.deepEqual([old.priceIncomplete, old.missing], [true, ["web searches"]]);
});

Deno.test("pricing: Anthropic web fetch has no fee beyond its tokens", () => {
  // claude-opus-4-1: $15 in / $75 out: 9012 × 15 + 310 × 75 = 158430 → $0.15843.
  const r = priced("anthropic-messages-web-fetch-stream.sse");
  close(r.costUsd, 0.15843);
  assert.deepEqual([r.priceIncomplete, r.missing], [false, []]);
});

Deno.test("pricing: OpenAI Responses web_search_call items are $10 per 1,000 calls", () => {
  // gpt-4.1: $2 in / $8 out: 9420 × 2 + 412 × 8 = 22136 → $0.022136; 2 calls → $0.02.
  const r = priced("openai-responses-web-search.json");
  close(r.costUsd, 0.022136 + 0.02);
  assert.equal(r.priceIncomplete, false);
  // Streamed: the call is seen in output_item.done and in response.completed, billed once.
  // gpt-4.1-mini: $0.40 in / $1.60 out: 8211 × 0.4 + 265 × 1.6 = 3708.4; 1 call → $0.01.
  close(priced("openai-responses-web-search-stream.sse").costUsd, 0.0037084 + 0.01);
});

Deno.test("pricing: audio tokens are priced as audio, not text", () => {
  // gpt-audio: text $2.50 in / $10 out, audio $32 in / $64 out per million.
  // (1190 − 1024) × 2.5 + 1024 × 32 + (412 − 330) × 10 + 330 × 64 = 55123 → $0.055123
  const r = priced("openai-chat-audio.json");
  close(r.costUsd, 0.055123);
  assert.deepEqual([r.priceIncomplete, r.missing], [false, []]);
  // As text it would have been 1190 × 2.5 + 412 × 10 = 7095 → $0.007095: 7.8× too low.
  assert.ok(r.costUsd! > 7 * 0.007095);

  // gpt-4o-audio-preview has no audio price in the bundled data: the text part is
  // priced, and the row says the audio is missing.
  const preview = {
    ...fixture("openai-chat-audio.json"),
    model: "gpt-4o-audio-preview-2025-06-03",
  };
  const p = createPricer().price(preview, WHEN);
  close(p.costUsd, 0.007095);
  assert.deepEqual([p.priceIncomplete, p.missing], [true, ["audio input", "audio output"]]);
  // With its published audio prices in llm.prices ($40 in / $80 out):
  // 166 × 2.5 + 1024 × 40 + 82 × 10 + 330 × 80 = 68595 → $0.068595
  const withAudio = createPricer({
    overrides: {
      "gpt-4o-audio-preview": { input: 2.5, output: 10, input_audio: 40, output_audio: 80 },
    },
  }).price(preview, WHEN);
  close(withAudio.costUsd, 0.068595);
  assert.deepEqual([withAudio.priceSource, withAudio.priceIncomplete], ["config", false]);

  // Gemini 2.5 Flash: text $0.30, audio $1.00 in, $2.50 out:
  // 12 × 0.3 + 1600 × 1 + 95 × 2.5 = 1841.1 → $0.0018411
  close(priced("gemini-generate-audio.json").costUsd, 0.0018411);
});

Deno.test("pricing: service tiers — flex and batch at half price, priority needs a price", () => {
  // o3 on flex: $1 in / $4 out (half of $2 / $8): 3000 × 1 + 1500 × 4 = 9000 → $0.009.
  const flex = priced("openai-responses-flex.json");
  close(flex.costUsd, 0.009);
  assert.equal(flex.priceIncomplete, false);
  // claude-sonnet-4 batch: $1.50 in / $7.50 out: 1000 × 1.5 + 500 × 7.5 = 5250 → $0.00525.
  close(priced("anthropic-messages-batch.json").costUsd, 0.00525);

  // gpt-5 on priority: the bundled data has only the standard price. Standard:
  // (2500 − 1024) × 1.25 + 1024 × 0.125 + 800 × 10 = 9973 → $0.009973, a lower bound.
  const pr = priced("openai-chat-priority.json");
  close(pr.costUsd, 0.009973);
  assert.deepEqual([pr.priceIncomplete, pr.missing], [true, ['service tier "priority"']]);
  // With the priority multiplier in llm.prices: OpenAI's published priority prices for
  // gpt-5 are $2.50 in / $0.25 cached / $20 out: 1476 × 2.5 + 1024 × 0.25 + 800 × 20 = 19946.
  const own = createPricer({
    overrides: {
      "gpt-5": { input: 1.25, output: 10, cache_read: 0.125, service_tiers: { priority: 2 } },
    },
  });
  const p2 = own.price(fixture("openai-chat-priority.json"), WHEN);
  close(p2.costUsd, 0.019946);
  assert.deepEqual([p2.priceSource, p2.priceIncomplete], ["config", false]);
  // A tier nobody prices (Anthropic's committed-capacity priority) is incomplete too.
  const ap = createPricer().price(
    { ...fixture("anthropic-messages-batch.json"), serviceTier: "priority" },
    WHEN,
  );
  assert.deepEqual(ap.missing, ['service tier "priority"']);
});

Deno.test("pricing: Anthropic 5-minute and 1-hour cache writes at their own prices", () => {
  // claude-haiku-4-5: $1 in, $1.25 5-minute write, $2 1-hour write, $0.10 read, $5 out:
  // 50 × 1 + 1000 × 1.25 + 2000 × 2 + 1000 × 0.1 + 200 × 5 = 6400 → $0.0064.
  const r = priced("anthropic-messages-cache-1h.json");
  close(r.costUsd, 0.0064);
  assert.equal(r.priceIncomplete, false);
  // An llm.prices entry without cache_write_1h prices 1-hour writes as 5-minute ones and
  // says so: 50 + 3000 × 1.25 + 100 + 1000 = 4900.
  const noHour = createPricer({
    overrides: { "claude-haiku-4-5": { input: 1, output: 5, cache_read: 0.1, cache_write: 1.25 } },
  }).price(fixture("anthropic-messages-cache-1h.json"), WHEN);
  close(noHour.costUsd, 0.0049);
  assert.deepEqual(noHour.missing, ["1-hour cache writes"]);
  const withHour = createPricer({
    overrides: {
      "claude-haiku-4-5": {
        input: 1,
        output: 5,
        cache_read: 0.1,
        cache_write: 1.25,
        cache_write_1h: 2,
      },
    },
  }).price(fixture("anthropic-messages-cache-1h.json"), WHEN);
  close(withHour.costUsd, 0.0064);
  assert.equal(withHour.priceIncomplete, false);
});

Deno.test("pricing: a provider-reported cost is preferred, and says so", () => {
  // OpenRouter reports usage.cost = $0.0000081.
  const r = priced("openrouter-chat.json", "openrouter.ai");
  assert.deepEqual(r, {
    costUsd: 0.0000081,
    priceUnknown: false,
    priceIncomplete: false,
    missing: [],
    priceSource: "provider",
  });
  // It wins over any table, llm.prices included.
  const withOverride = createPricer({ overrides: { "gpt-4o-mini": { input: 100, output: 100 } } });
  assert.equal(priced("openrouter-chat.json", "openrouter.ai", withOverride).costUsd, 0.0000081);
  // Bring your own key: OpenRouter's 5 % fee ($0.000408) plus the provider's bill for the key:
  // claude-sonnet-4 1520 × 3 + 240 × 15 = 8160 → $0.00816.
  close(priced("openrouter-chat-stream-byok.sse", "openrouter.ai").costUsd, 0.000408 + 0.00816);
});

Deno.test("pricing: OpenRouter's vendor/model names are priced under their real provider", () => {
  const { providerCostUsd: _, ...noCost } = fixture("openrouter-chat.json");
  // openai/gpt-4o-mini is OpenAI's gpt-4o-mini: $0.15 in / $0.60 out:
  // 14 × 0.15 + 10 × 0.6 = 8.1 → $0.0000081.
  for (const host of ["openrouter.ai", undefined]) {
    const r = createPricer().price(noCost, WHEN, host);
    close(r.costUsd, 0.0000081, String(host));
    assert.deepEqual([r.priceSource, r.priceUnknown], ["genai-prices", false]);
  }
  // A vendor genai-prices has no provider for is found in the host's own list (OpenRouter's).
  const llama = { ...noCost, model: "meta-llama/llama-3.3-70b-instruct" };
  assert.equal(createPricer().price(llama, WHEN, "openrouter.ai").priceUnknown, false);
  assert.equal(createPricer().price(llama, WHEN).priceUnknown, true);
  // A gateway mapped to the openai wire format is priced with its own list.
  const deepseek = { ...noCost, model: "deepseek-chat" };
  assert.equal(createPricer().price(deepseek, WHEN, "api.deepseek.com").priceUnknown, false);
  assert.equal(createPricer().price(deepseek, WHEN).priceUnknown, true);
  // An llm.prices entry matches without the vendor prefix too.
  const own = createPricer({ overrides: { "gpt-4o-mini": { input: 1, output: 1 } } });
  close(own.price(noCost, WHEN).costUsd, 24 / 1e6);
});

Deno.test("pricing: a long-context tier the data lacks is flagged; tiers in llm.prices price it", () => {
  // claude-sonnet-4 above 200k input tokens is billed $6 in / $22.50 out, which the
  // bundled data lacks: the base price ($3 / $15) is a lower bound.
  // 250000 × 3 + 1200 × 15 = 768000 → $0.768
  const r = priced("anthropic-messages-long-context.json");
  close(r.costUsd, 0.768);
  assert.deepEqual([r.priceIncomplete, r.missing], [true, ["input above 200000 tokens"]]);
  // With the tier in llm.prices: 250000 × 6 + 1200 × 22.5 = 1527000 → $1.527.
  const tiered = createPricer({
    overrides: {
      "claude-sonnet-4": {
        input: 3,
        output: 15,
        cache_read: 0.3,
        cache_write: 3.75,
        tiers: [{ above: 200000, input: 6, output: 22.5, cache_read: 0.6, cache_write: 7.5 }],
      },
    },
  });
  const t = tiered.price(fixture("anthropic-messages-long-context.json"), WHEN);
  close(t.costUsd, 1.527);
  assert.deepEqual([t.priceSource, t.priceIncomplete], ["config", false]);
  // An llm.prices entry without tiers for the same model is flagged like the data.
  const flat = createPricer({ overrides: { "claude-sonnet-4": { input: 3, output: 15 } } });
  assert.deepEqual(
    flat.price(fixture("anthropic-messages-long-context.json"), WHEN).missing,
    ["input above 200000 tokens"],
  );
  // claude-sonnet-4-5 has its tier in the data: $6 / $22.50 above 200k, complete.
  const s45 = createPricer().price(
    { ...fixture("anthropic-messages-long-context.json"), model: "claude-sonnet-4-5-20250929" },
    WHEN,
  );
  close(s45.costUsd, 1.527);
  assert.equal(s45.priceIncomplete, false);
  // Below the threshold nothing is missing.
  const small = createPricer().price(
    { ...fixture("anthropic-messages-long-context.json"), inputTokens: 150000 },
    WHEN,
  );
  assert.equal(small.priceIncomplete, false);
});

Deno.test("pricing: tool calls with a fee nobody prices are named", () => {
  const r = createPricer().price(
    record({
      model: "gpt-4.1",
      inputTokens: 100,
      outputTokens: 10,
      otherToolCalls: { code_interpreter_call: 1 },
    }),
    WHEN,
  );
  // gpt-4.1: 100 × 2 + 10 × 8 = 280 → $0.00028 for the tokens.
  close(r.costUsd, 0.00028);
  assert.deepEqual(r.missing, ['tool "code_interpreter_call"']);
  // Gemini grounding with Google Search: no price in the bundled data.
  const g = createPricer().price(
    record({ provider: "gemini", model: "gemini-2.5-flash", inputTokens: 10, webSearches: 2 }),
    WHEN,
  );
  assert.deepEqual(g.missing, ["web searches"]);
});

Deno.test("pricing: llm.prices with tools, tiers and a service tier together", () => {
  const pricer = createPricer({
    overrides: {
      "my-model": {
        input: 1,
        output: 2,
        web_search: 10,
        tiers: [{ above: 1000, input: 3 }, { above: 100, input: 2 }],
        service_tiers: { Priority: 3 },
      },
    },
  });
  // 500 input tokens: the 100+ tier ($2 in, output from the base $2); priority ×3 on tokens;
  // 4 searches at $10 per 1,000 are not multiplied: (500 × 2 + 50 × 2) × 3 / 1e6 + 0.04.
  const r = pricer.price(
    record({
      model: "my-model",
      inputTokens: 500,
      outputTokens: 50,
      webSearches: 4,
      serviceTier: "priority",
    }),
    WHEN,
  );
  close(r.costUsd, 0.0033 + 0.04);
  assert.deepEqual([r.priceSource, r.priceIncomplete], ["config", false]);
  // flex without an own multiplier: the built-in 0.5.
  close(
    pricer.price(record({ model: "my-model", inputTokens: 10, serviceTier: "flex" }), WHEN)
      .costUsd,
    10 * 1 * 0.5 / 1e6,
  );
  assert.throws(
    () =>
      createPricer({
        overrides: { x: { input: 1, output: 1, tiers: [{ above: -1, input: 2 }] } },
      }),
    /^Error: Invalid price "tiers.0.above" for model "x": expected a non-negative number of input tokens$/,
  );
  assert.throws(
    () => createPricer({ overrides: { x: { input: 1, output: 1, service_tiers: { p: -2 } } } }),
    /^Error: Invalid price "service_tiers.p" for model "x"/,
  );
});
