/**
 * LLM streaming benchmark (`deno task bench sse`): an intercepted SSE stream
 * of 2,000 OpenAI chat-completion chunks (with the final usage chunk) from a
 * local HTTPS origin, through agentgate and direct. Prints the median time to
 * first byte and total time of each, over warm keep-alive connections, and
 * the usage tap's CPU per MiB of SSE.
 *
 * @module
 */
import https from "node:https";
import type net from "node:net";
import { createUsageTap } from "../src/llm/mod.ts";
import { startProxy, testPki } from "../tests/helpers.ts";

const EVENTS = 2000;
const ROUNDS = 50;
// Unmeasured rounds first: a running proxy is warm, so its JIT is too (the
// first few streams through a fresh process take 2-3x as long).
const WARMUP = 50;

function sseBody(): Uint8Array {
  let text = "";
  for (let i = 0; i < EVENTS; i++) {
    text += `data: ${
      JSON.stringify({
        id: "chatcmpl-bench",
        object: "chat.completion.chunk",
        created: 1,
        model: "gpt-4o-mini-2024-07-18",
        choices: [{ index: 0, delta: { content: `token ${i} ` }, finish_reason: null }],
      })
    }\n\n`;
  }
  text += `data: ${
    JSON.stringify({
      id: "chatcmpl-bench",
      object: "chat.completion.chunk",
      created: 1,
      model: "gpt-4o-mini-2024-07-18",
      choices: [],
      usage: { prompt_tokens: 20, completion_tokens: EVENTS * 2, total_tokens: 20 + EVENTS * 2 },
    })
  }\n\ndata: [DONE]\n\n`;
  return new TextEncoder().encode(text);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(
  url: string,
  client: Deno.HttpClient,
  rounds = ROUNDS,
  warmup = WARMUP,
) {
  const ttfb: number[] = [];
  const total: number[] = [];
  for (let r = 0; r < rounds + warmup; r++) {
    const t0 = performance.now();
    const res = await fetch(url, {
      method: "POST",
      client,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o-mini",
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    const reader = res.body!.getReader();
    let first = -1;
    for (;;) {
      const { done } = await reader.read();
      if (first < 0) first = performance.now() - t0;
      if (done) break;
    }
    if (r >= warmup) {
      ttfb.push(first);
      total.push(performance.now() - t0);
    }
  }
  return { ttfb: median(ttfb), total: median(total) };
}

if (import.meta.main) {
  const body = sseBody();
  const pki = await testPki(["api.openai.com", "127.0.0.1"]);
  // Burst: the whole stream as fast as the socket takes it (64 events per
  // write): the proxy's own cost. Paced (?paced=1): 20 events every 20 ms,
  // 2,000 events in 2 s, as a model streams tokens.
  const events = new TextDecoder().decode(body).split("\n\n").filter(Boolean).map((e) =>
    new TextEncoder().encode(e + "\n\n")
  );
  const server = https.createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      if (req.url?.includes("paced")) {
        let i = 0;
        const tick = () => {
          for (let k = 0; k < 20 && i < events.length; k++) res.write(events[i++]);
          if (i < events.length) setTimeout(tick, 20);
          else res.end();
        };
        return tick();
      }
      const step = Math.ceil(body.length / (EVENTS / 64));
      let at = 0;
      const write = () => {
        while (at < body.length) {
          const ok = res.write(body.subarray(at, at + step));
          at += step;
          if (!ok) return void res.once("drain", write);
        }
        res.end();
      };
      write();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const proxy = await startProxy({
    files: { "origin-ca.pem": pki.caPem },
    config: `version: 1
default: log
tls: { intercept: [api.openai.com], ca_dir: ./ca, upstream_ca: ./origin-ca.pem }
upstream: { resolve: { api.openai.com: 127.0.0.1:${port} } }
audit: { path: ./audit.db }
`,
  });
  try {
    const caPem = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
    const viaProxy = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
    const direct = Deno.createHttpClient({ caCerts: [pki.caPem] });
    const p = await measure("https://api.openai.com/v1/chat/completions", viaProxy);
    // Direct: the same origin by IP (its certificate names both).
    const d = await measure(`https://127.0.0.1:${port}/v1/chat/completions`, direct);
    const pp = await measure("https://api.openai.com/v1/chat/completions?paced=1", viaProxy, 3, 1);
    const dp = await measure(`https://127.0.0.1:${port}/v1/chat/completions?paced=1`, direct, 3, 1);
    viaProxy.close();
    direct.close();
    console.log(`SSE: ${EVENTS} events, ${(body.length / 1048576).toFixed(2)} MiB`);
    console.log("| stream | path | first byte ms | total ms |");
    console.log("|---|---|---:|---:|");
    console.log(`| burst | direct | ${d.ttfb.toFixed(2)} | ${d.total.toFixed(2)} |`);
    console.log(`| burst | agentgate | ${p.ttfb.toFixed(2)} | ${p.total.toFixed(2)} |`);
    console.log(`| paced (2 s) | direct | ${dp.ttfb.toFixed(2)} | ${dp.total.toFixed(2)} |`);
    console.log(`| paced (2 s) | agentgate | ${pp.ttfb.toFixed(2)} | ${pp.total.toFixed(2)} |`);
    console.log(
      `burst: first byte +${(p.ttfb - d.ttfb).toFixed(2)} ms, total ${
        (p.total / d.total).toFixed(2)
      }x; ` +
        `paced: first byte +${(pp.ttfb - dp.ttfb).toFixed(2)} ms, total ${
          (pp.total / dp.total).toFixed(3)
        }x`,
    );
    // Usage-tap CPU per MiB of SSE, alone, once the JIT has warmed up (the
    // first runs cost several times more and would dominate the median).
    const runs: number[] = [];
    for (let r = 0; r < 120; r++) {
      const tap = createUsageTap("openai", {
        method: "POST",
        path: "/v1/chat/completions",
        status: 200,
        contentType: "text/event-stream",
        contentEncoding: null,
      });
      const t = performance.now();
      for (let i = 0; i < body.length; i += 16384) tap.push(body.subarray(i, i + 16384));
      tap.finish({ complete: true });
      if (r >= 40) runs.push((performance.now() - t) / (body.length / 1048576));
    }
    console.log(`usage tap: ${median(runs).toFixed(2)} ms CPU per MiB of SSE`);
  } finally {
    await proxy.dispose();
    server.close();
  }
}
