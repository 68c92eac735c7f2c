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
