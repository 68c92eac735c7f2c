import assert from "node:assert/strict";
import { foreseeUsage } from "./foresee.ts";

Deno.test("foresee: what a request shows about its price, as a usage sketch", () => {
  const base = {
    provider: "openai",
    model: "gpt-5",
    inputTokens: 1,
    outputTokens: 1,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    partial: false,
    error: null,
  };
  assert.deepEqual(foreseeUsage("openai", "gpt-5", { model: "gpt-5" }, null), base);
  // 4 bytes of body per token.
  assert.equal(foreseeUsage("openai", "gpt-5", {}, 1001).inputTokens, 251);
  assert.deepEqual(
    foreseeUsage("openai", "gpt-5", {
      service_tier: "priority",
      tools: [
        { type: "web_search" },
        { type: "file_search", vector_store_ids: ["vs_1"] },
        { type: "code_interpreter", container: { type: "auto" } },
        { type: "image_generation" },
        { type: "function", name: "f" },
      ],
      modalities: ["text", "audio"],
      messages: [{
        role: "user",
        content: [{ type: "input_audio", input_audio: { data: "UklGR", format: "wav" } }],
      }],
    }, null),
    {
      ...base,
      serviceTier: "priority",
      webSearches: 1,
      fileSearches: 1,
      otherToolCalls: { code_interpreter_call: 1, image_generation_call: 1 },
      outputAudioTokens: 1,
      inputAudioTokens: 1,
    },
  );
  // Anthropic: web search and code execution tools; its service_tier ("auto") is not a tier.
  assert.deepEqual(
    foreseeUsage("anthropic", "claude-sonnet-4", {
      service_tier: "auto",
      tools: [{ type: "web_search_20250305", name: "web_search" }, {
        type: "code_execution_20250825",
        name: "code_execution",
      }],
    }, null),
    {
      ...base,
      provider: "anthropic",
      model: "claude-sonnet-4",
      webSearches: 1,
      otherToolCalls: { code_execution_requests: 1 },
    },
  );
  // Gemini grounding, in both spellings.
  for (const t of [{ google_search: {} }, { googleSearch: {} }, { googleSearchRetrieval: {} }]) {
    assert.equal(foreseeUsage("gemini", "gemini-2.5-flash", { tools: [t] }, null).webSearches, 1);
  }
  // Not an object: just the model.
  assert.deepEqual(foreseeUsage("openai", "gpt-5", "x", null), base);
});
