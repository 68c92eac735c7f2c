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

Deno.test("detect: a key with a port matches that port, before keys without one", () => {
  const detect = createProviderDetector([
    { host: "llm.internal", provider: "anthropic" },
    { host: "llm.internal:8080", provider: "openai" },
    { host: "[::1]:9000", provider: "gemini" },
    { host: "*.gw.example:8443", provider: "openai" },
  ]);
  // host:port first, though listed after the bare host.
  assert.equal(detect("llm.internal", 8080), "openai");
  assert.equal(detect("LLM.internal.", 8080), "openai");
  assert.equal(detect("llm.internal", 80), "anthropic");
  assert.equal(detect("::1", 9000), "gemini");
  assert.equal(detect("[::1]", 9000), "gemini");
  assert.equal(detect("::1", 9001), null);
  assert.equal(detect("eu.gw.example", 8443), "openai");
  assert.equal(detect("eu.gw.example", 443), null);
  // Without a port (a lint asking about a pattern), a port-specific key may apply.
  assert.equal(detect("eu.gw.example"), "openai");
  // A built-in host with a port key of its own.
  assert.equal(
    createProviderDetector([{ host: "api.openai.com:8443", provider: "anthropic" }])(
      "api.openai.com",
      443,
    ),
    "openai",
  );
  assert.throws(
    () => createProviderDetector([{ host: "llm.internal:99999", provider: "openai" }]),
    /^Error: Invalid port "99999" in "llm.internal:99999": expected 1-65535$/,
  );
});
