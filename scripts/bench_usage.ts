/**
 * CPU cost of the usage tap per MiB of response, and of the ways to gunzip a
 * body under Deno. Run: `deno task bench usage` (which is
 * `deno bench -A scripts/bench_usage.ts`).
 *
 * Every input is about 1 MiB fed in 16 KiB reads (a TLS record's worth), so
 * "time per iteration" reads as "time per MiB".
 *
 * @module
 */

import zlib from "node:zlib";
import { createDecoder } from "../src/util/decompress.ts";
import { createUsageTap } from "../src/llm/usage.ts";
import type { Provider, UsageTapContext } from "../src/llm/types.ts";

const enc = new TextEncoder();
const MiB = 1024 * 1024;
const READ = 16 * 1024;

function build(head: string, repeat: (i: number) => string, tail: string): Uint8Array {
  let s = head;
  for (let i = 0; s.length < MiB - tail.length; i++) s += repeat(i);
  return enc.encode(s + tail);
}

function chunks(bytes: Uint8Array): Uint8Array<ArrayBuffer>[] {
  const out: Uint8Array<ArrayBuffer>[] = [];
  // Copies: each read of a socket is its own buffer.
  for (let i = 0; i < bytes.length; i += READ) out.push(bytes.slice(i, i + READ));
  return out;
}

const base = "chatcmpl-BjX5mQe8Yw2cLr7tGv1sHn3Kp0ZaB";
const openaiChat = build(
  "",
  (i) =>
    `data: {"id":"${base}","object":"chat.completion.chunk","created":1750091587,"model":"gpt-4o-mini-2024-07-18",` +
    `"service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":" word${i}"},` +
    `"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"abc"}\n\n`,
  `data: {"id":"${base}","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":24,"completion_tokens":17,"total_tokens":41}}\n\ndata: [DONE]\n\n`,
);
const anthropic = build(
  'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-20250514","usage":{"input_tokens":12,"output_tokens":1}}}\n\n',
  (i) =>
    `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" word${i}"}}\n\n`,
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":187}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n',
);
const responses = build(
  'event: response.created\ndata: {"type":"response.created","response":{"model":"gpt-4.1","usage":null}}\n\n',
  (i) =>
    `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":${i},"item_id":"msg_6850203ca4f48192a1b2c3d4e5f60718","output_index":0,"content_index":0,"delta":" word${i}","logprobs":[]}\n\n`,
  'event: response.completed\ndata: {"type":"response.completed","response":{"model":"gpt-4.1","usage":{"input_tokens":37,"output_tokens":12}}}\n\n',
);
const geminiEvent = (i: number) =>
  `{"candidates": [{"content": {"parts": [{"text": " word${i} and some more text of a typical chunk"}],"role": "model"},"index": 0}],` +
  `"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": ${i},"totalTokenCount": ${
    i + 9
  },` +
  `"promptTokensDetails": [{"modality": "TEXT","tokenCount": 9}]},"modelVersion": "gemini-2.5-flash","responseId": "3QdRaMfUL8rXz7IPpLSNsAk"}`;
const geminiLast =
  `{"candidates": [{"content": {"parts": [{"text": "."}],"role": "model"},"finishReason": "STOP","index": 0}],` +
  `"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 9000,"totalTokenCount": 9009},"modelVersion": "gemini-2.5-flash"}`;
const geminiSse = build(
  "",
  (i) => `data: ${geminiEvent(i)}\r\n\r\n`,
  `data: ${geminiLast}\r\n\r\n`,
);
const geminiArray = build(
  "[",
  (i) => (i === 0 ? "" : ",\r\n") + geminiEvent(i),
  `,\r\n${geminiLast}]`,
);
const embeddings = build(
  '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[',
  (i) => `${i === 0 ? "" : ","}-0.0${(i * 7919) % 100000}`,
  ']}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}',
);
const gzChat = zlib.gzipSync(openaiChat);

function ctx(
  path: string,
  contentType: string,
  contentEncoding: string | null = null,
): UsageTapContext {
  return { method: "POST", path, status: 200, contentType, contentEncoding };
}

function bench(name: string, provider: Provider, c: UsageTapContext, body: Uint8Array): void {
  const parts = chunks(body);
  Deno.bench({
    name: `${name} (${(body.length / MiB).toFixed(2)} MiB)`,
    group: "tap",
    fn() {
      const tap = createUsageTap(provider, c);
      for (const p of parts) tap.push(p);
      const r = tap.finish({ complete: true });
      if (!r || r.partial) throw new Error(`Benchmark input yielded no usage: ${name}`);
    },
  });
}

bench("openai chat SSE", "openai", ctx("/v1/chat/completions", "text/event-stream"), openaiChat);
bench("openai responses SSE", "openai", ctx("/v1/responses", "text/event-stream"), responses);
bench("anthropic SSE", "anthropic", ctx("/v1/messages", "text/event-stream"), anthropic);
bench(
  "gemini SSE",
  "gemini",
  ctx("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "text/event-stream"),
  geminiSse,
);
bench(
  "gemini JSON array",
  "gemini",
  ctx("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "application/json"),
  geminiArray,
);
bench("openai embeddings JSON", "openai", ctx("/v1/embeddings", "application/json"), embeddings);
bench(
  "openai chat SSE, gzip (size: compressed; time: per MiB decoded)",
  "openai",
  ctx("/v1/chat/completions", "text/event-stream", "gzip"),
  gzChat,
);

// How to gunzip under Deno: the sync handle the tap uses vs the async options.
const gzParts = chunks(gzChat);
Deno.bench({
  name: "gunzip: node:zlib handle, sync (used)",
  group: "gunzip",
  baseline: true,
  fn() {
    const d = createDecoder("gzip")!;
    let n = 0;
    for (const p of gzParts) for (const o of d.push(p)) n += o.length;
    d.end();
    if (n !== openaiChat.length) throw new Error("Short output");
  },
});
Deno.bench({
  name: "gunzip: node:zlib createGunzip stream",
  group: "gunzip",
  async fn() {
    const g = zlib.createGunzip();
    let n = 0;
    g.on("data", (b: Uint8Array) => n += b.length);
    const done = new Promise((r) => g.on("end", r));
    for (const p of gzParts) g.write(p);
    g.end();
    await done;
    if (n !== openaiChat.length) throw new Error("Short output");
  },
});
Deno.bench({
  name: "gunzip: DecompressionStream",
  group: "gunzip",
  async fn() {
    const ds = new DecompressionStream("gzip");
    const w = ds.writable.getWriter();
    const reading = (async () => {
      let n = 0;
      for await (const b of ds.readable) n += b.length;
      return n;
    })();
    for (const p of gzParts) w.write(p);
    w.close();
    if (await reading !== openaiChat.length) throw new Error("Short output");
  },
});
