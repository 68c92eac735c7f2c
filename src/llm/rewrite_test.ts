import assert from "node:assert/strict";
import { forceStreamUsage } from "./rewrite.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function rw(
  body: string,
  path = "/v1/chat/completions",
  provider: "openai" | "anthropic" = "openai",
) {
  const out = forceStreamUsage(provider, path, enc.encode(body));
  return out === null ? null : dec.decode(out);
}

Deno.test("rewrite: adds include_usage to a streaming chat request, leaving the rest as sent", () => {
  const body =
    '{\n  "model": "gpt-4o",\n  "stream": true,\n  "seed": 12345678901234567890,\n  "temperature": 1.0\n}';
  const out = rw(body)!;
  assert.equal(
    out,
    '{"stream_options":{"include_usage":true},\n  "model": "gpt-4o",\n  "stream": true,\n  "seed": 12345678901234567890,\n  "temperature": 1.0\n}',
  );
  assert.equal(JSON.parse(out).stream_options.include_usage, true);
});

Deno.test("rewrite: merges into existing stream_options", () => {
  const out = rw('{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false}}');
  assert.deepEqual(JSON.parse(out!), {
    model: "gpt-4o",
    stream: true,
    stream_options: { include_obfuscation: false, include_usage: true },
  });
  // Explicitly false: force_stream_usage means force.
  const f = rw('{"stream":true,"stream_options":{"include_usage":false}}');
  assert.deepEqual(JSON.parse(f!).stream_options, { include_usage: true });
  assert.deepEqual(JSON.parse(rw('{"stream":true,"stream_options":null}')!).stream_options, {
    include_usage: true,
  });
});

Deno.test("rewrite: refuses to re-serialise a body whose numbers would change", () => {
  assert.equal(rw('{"stream":true,"stream_options":{},"seed":12345678901234567890}'), null);
});

Deno.test("rewrite: null when nothing to do or not such a request", () => {
  assert.equal(
    rw('{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}'),
    null,
  );
  assert.equal(rw('{"model":"gpt-4o","stream":false}'), null);
  assert.equal(rw('{"model":"gpt-4o"}'), null);
  assert.equal(rw('{"model":"gpt-4o","stream":"true"}'), null);
  assert.equal(rw('{"stream":true}', "/v1/responses"), null);
  assert.equal(rw('{"stream":true}', "/v1/messages", "anthropic"), null);
  assert.equal(rw("not json"), null);
  assert.equal(rw("[1,2]"), null);
  assert.equal(
    forceStreamUsage("openai", "/v1/chat/completions", new Uint8Array([0xff, 0xfe])),
    null,
  );
  // Azure path with query.
  assert.notEqual(
    rw('{"stream":true}', "/openai/deployments/x/chat/completions?api-version=1"),
    null,
  );
});

Deno.test("rewrite: every Chat Completions endpoint of the OpenAI wire format", () => {
  // Gemini's OpenAI-compatible endpoint and the legacy completions endpoint stream the same way.
  assert.notEqual(
    rw('{"stream":true}', "/v1beta/openai/chat/completions", "gemini" as "openai"),
    null,
  );
  assert.notEqual(rw('{"stream":true}', "/v1/completions"), null);
  assert.notEqual(rw('{"stream":true}', "/api/v1/chat/completions"), null);
  assert.equal(
    rw(
      '{"stream":true}',
      "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
      "gemini" as "openai",
    ),
    null,
  );
});
