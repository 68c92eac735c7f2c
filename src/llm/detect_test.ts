import assert from "node:assert/strict";
import { createProviderDetector } from "./detect.ts";

Deno.test("detect: built-in hosts, case and trailing dot do not matter", () => {
  const detect = createProviderDetector([]);
  assert.equal(detect("api.openai.com"), "openai");
  assert.equal(detect("API.Anthropic.com."), "anthropic");
  assert.equal(detect("generativelanguage.googleapis.com"), "gemini");
  assert.equal(detect("openai.com"), null);
  assert.equal(detect("evil-api.openai.com"), null);
  assert.equal(detect("api.openai.com.evil.example"), null);
});

Deno.test("detect: overrides come first, in order; * spans dots", () => {
  const detect = createProviderDetector([
    { host: "*.openai.azure.com", provider: "openai" },
    { host: "openrouter.ai", provider: "openai" },
    { host: "llm.internal", provider: "anthropic" },
    { host: "*.internal", provider: "gemini" },
    { host: "api.openai.com", provider: "anthropic" },
  ]);
  assert.equal(detect("myco.openai.azure.com"), "openai");
  assert.equal(detect("eu.myco.openai.azure.com"), "openai");
  assert.equal(detect("openai.azure.com"), null);
  assert.equal(detect("OpenRouter.ai"), "openai");
  assert.equal(detect("llm.internal"), "anthropic");
  assert.equal(detect("a.b.internal"), "gemini");
  assert.equal(detect("api.openai.com"), "anthropic");
  assert.equal(detect("api.anthropic.com"), "anthropic");
  // Regex characters in a glob are literal.
  const d2 = createProviderDetector([{ host: "a+b.example", provider: "openai" }]);
  assert.equal(d2("a+b.example"), "openai");
  assert.equal(d2("aab.example"), null);
});

Deno.test("detect: a bad override is refused at compile time", () => {
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => createProviderDetector([{ host: "x.example", provider: "mistral" as any }]),
    /^Error: Unknown LLM provider "mistral" for host "x.example": expected one of "openai", "anthropic", "gemini"$/,
  );
  assert.throws(
    () => createProviderDetector([{ host: " ", provider: "openai" }]),
    /^Error: Empty host glob in LLM provider override 1$/,
  );
});
