/**
 * LLM usage and cost through the running proxy: a fake provider over HTTPS
 * (certificates for the real provider names from a test CA, reached through
 * upstream.resolve) serves the recorded-format fixtures; the official SDKs are
 * the clients.
 */
import assert from "node:assert/strict";
import type http from "node:http";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { fixtureUrl, LLM_FIXTURES } from "./support/llm_fixtures.ts";
import { auditRows, startOrigin, startProxy, testPki, waitForRows } from "./helpers.ts";

const fixture = (file: string) => Deno.readFileSync(fixtureUrl(file));
const expected = (file: string) => LLM_FIXTURES.find((f) => f.file === file)!.expected;

/** A fake provider: picks the fixture a real provider would answer with. */
function fakeProvider(seen: { bodies: unknown[]; hold?: () => void }) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const text = new TextDecoder().decode(Buffer.concat(chunks));
      const body = text ? JSON.parse(text) : {};
      seen.bodies.push(body);
      const host = req.headers.host ?? "";
      const send = (file: string, type: string, status = 200) => {
        res.writeHead(status, { "content-type": type });
        res.end(fixture(file));
      };
      if (host.startsWith("api.openai.com")) {
        if (body.model === "no-such-model") {
          return send("openai-chat.json", "application/json"); // priced by the model it names
        }
        if (body.model === "gpt-5") return send("openai-chat-priority.json", "application/json");
        // A gateway that ignores stream_options: its streams never carry usage.
        if (req.headers["x-ignore-stream-options"]) {
          return send("openai-chat-stream-no-usage.sse", "text/event-stream");
        }
        if (!body.stream) return send("openai-chat.json", "application/json");
        return send(
          body.stream_options?.include_usage
            ? "openai-chat-stream.sse"
            : "openai-chat-stream-no-usage.sse",
          "text/event-stream",
        );
      }
      if (host.startsWith("api.anthropic.com")) {
        if (req.url === "/v1/messages?hold=1") {
          // Stream the first half, then hang: the client aborts mid-stream.
          const all = new TextDecoder().decode(fixture("anthropic-messages-stream.sse"));
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.write(all.slice(0, all.indexOf("event: content_block_delta")));
          seen.hold?.();
          return;
        }
        if (body.tools?.some((t: { name?: string }) => t.name === "web_search")) {
          return send("anthropic-messages-web-search.json", "application/json");
        }
        if (body.model === "claude-3-5-haiku-20241022") {
          return send("anthropic-messages-stream-error.sse", "text/event-stream");
        }
        if (!body.stream) return send("anthropic-messages.json", "application/json");
        return send("anthropic-messages-stream.sse", "text/event-stream");
      }
      if (req.url?.includes(":streamGenerateContent?alt=sse")) {
        return send("gemini-stream.sse", "text/event-stream");
      }
      send("gemini-generate.json", "application/json");
    });
  };
}

async function setup(extraRules = "", llm = "") {
  const names = ["api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com"];
  const pki = await testPki(names);
  const seen: { bodies: unknown[]; hold?: () => void } = { bodies: [] };
  const origin = await startOrigin(fakeProvider(seen), { cert: pki.cert, key: pki.key });
  const proxy = await startProxy({
    files: { "origin-ca.pem": pki.caPem },
    config: `version: 1
default: deny
tls:
  intercept: [${names.join(", ")}]
  ca_dir: ./ca
  upstream_ca: ./origin-ca.pem
upstream:
  resolve: { ${names.map((n) => `${n}: 127.0.0.1:${origin.port}`).join(", ")} }
audit: { path: ./audit.db }
${llm}
rules:
${extraRules}
  - { name: llm, match: [${names.join(", ")}], action: allow }
`,
  });
  const caPem = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
  const client = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
  const proxiedFetch: typeof fetch = (input, init) =>
    fetch(input, { ...init, client } as unknown as RequestInit);
  return { origin, proxy, client, proxiedFetch, seen };
}

function assertUsage(row: Record<string, unknown>, file: string, partial = false) {
  const e = expected(file);
  assert.deepEqual(
    [
      row.provider,
      row.model,
      row.input_tokens,
      row.output_tokens,
      row.cache_read_tokens,
      row.cache_write_tokens,
      row.reasoning_tokens,
      row.usage_partial,
    ],
    [
      e.provider,
      e.model,
      e.inputTokens,
      e.outputTokens,
      e.cacheReadTokens,
      e.cacheWriteTokens,
      e.reasoningTokens,
      partial ? 1 : 0,
    ],
    file,
  );
}

Deno.test("llm: official SDKs, JSON and streams, exact tokens and cost in the audit", async (t) => {
  const { origin, proxy, client, proxiedFetch } = await setup();
  const openai = new OpenAI({ apiKey: "sk-test-not-real", fetch: proxiedFetch, maxRetries: 0 });
  const anthropic = new Anthropic({ apiKey: "sk-ant-test", fetch: proxiedFetch, maxRetries: 0 });
  try {
    await t.step("OpenAI chat completion (JSON)", async () => {
      const r = await openai.chat.completions.create({
        model: "gpt-4o",
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(r.usage?.prompt_tokens, 1117);
      const [row] = await waitForRows(proxy.auditPath, 1, "model = 'gpt-4o-2024-08-06'");
      assertUsage(row, "openai-chat.json");
      assert.ok(Math.abs((row.cost_usd as number) - 0.0019725) < 1e-12, String(row.cost_usd));
      assert.equal(row.price_unknown, 0);
      // The key never reaches the audit.
      assert.ok(!JSON.stringify(row).includes("sk-test-not-real"));
    });

    await t.step("OpenAI stream with include_usage: every chunk reaches the SDK", async () => {
      const stream = await openai.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let chunks = 0;
      let text = "";
      for await (const c of stream) {
        chunks++;
        text += c.choices[0]?.delta?.content ?? "";
      }
      const events = new TextDecoder().decode(fixture("openai-chat-stream.sse"))
        .split("\n\n").filter((e) => e.startsWith("data: {"));
      assert.equal(chunks, events.length);
      assert.ok(text.length > 0);
      const [row] = await waitForRows(proxy.auditPath, 1, "model = 'gpt-4o-mini-2024-07-18'");
      assertUsage(row, "openai-chat-stream.sse");
    });

    await t.step("the streamed bytes are exactly the provider's", async () => {
      const res = await fetch("https://api.openai.com/v1/chat/completions", {
        method: "POST",
        client,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "gpt-4o-mini",
          stream: true,
          stream_options: { include_usage: true },
        }),
      });
      const got = new Uint8Array(await res.arrayBuffer());
      assert.deepEqual(got, fixture("openai-chat-stream.sse"));
    });

    await t.step("Anthropic messages (JSON and stream)", async () => {
      const m = await anthropic.messages.create({
        model: "claude-sonnet-4-20250514",
        max_tokens: 100,
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(m.usage.output_tokens, 393);
      const stream = anthropic.messages.stream({
        model: "claude-sonnet-4-20250514",
        max_tokens: 100,
        messages: [{ role: "user", content: "hi" }],
      });
      const final = await stream.finalMessage();
      assert.equal(final.usage.output_tokens, 187);
      const rows = await waitForRows(proxy.auditPath, 2, "provider = 'anthropic'");
      assertUsage(rows[0], "anthropic-messages.json");
      assertUsage(rows[1], "anthropic-messages-stream.sse");
      assert.ok(Math.abs((rows[0].cost_usd as number) - 0.013638) < 1e-12);
    });

    await t.step("Gemini SSE stream", async () => {
      const res = await fetch(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=AIzaTESTKEY",
        { method: "POST", client, body: JSON.stringify({ contents: [] }) },
      );
      await res.arrayBuffer();
      const [row] = await waitForRows(proxy.auditPath, 1, "provider = 'gemini'");
      assertUsage(row, "gemini-stream.sse");
      assert.equal(row.query, "alt=sse&key=[REDACTED]");
    });

    await t.step(
      "an OpenAI stream without include_usage is partial with unknown cost",
      async () => {
        const res = await fetch("https://api.openai.com/v1/chat/completions", {
          method: "POST",
          client,
          body: JSON.stringify({ model: "gpt-4o-mini", stream: true }),
        });
        await res.arrayBuffer();
        const rows = await waitForRows(proxy.auditPath, 1, "usage_partial = 1");
        assert.equal(rows[0].cost_usd, null);
        // Unknown usage is NULL, never 0 tokens.
        assert.deepEqual(
          [rows[0].input_tokens, rows[0].output_tokens, rows[0].price_source],
          [null, null, null],
        );
      },
    );
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("llm: force_stream_usage rewrites the request so the stream's cost is known", async () => {
  const { origin, proxy, client, seen } = await setup("", "llm: { force_stream_usage: true }");
  try {
    const body = JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [] });
    const res = await fetch("https://api.openai.com/v1/chat/completions", {
      method: "POST",
      client,
      headers: { "content-type": "application/json" },
      body,
    });
    await res.arrayBuffer();
    assert.deepEqual(seen.bodies[0], {
      model: "gpt-4o-mini",
      stream: true,
      messages: [],
      stream_options: { include_usage: true },
    });
    const [row] = await waitForRows(proxy.auditPath, 1, "provider = 'openai'");
    assertUsage(row, "openai-chat-stream.sse");
    assert.ok((row.cost_usd as number) > 0);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("llm: a $0.01 spending limit blocks the call after the one that crossed it", async () => {
  const rules = `  - name: budget
    match: api.anthropic.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 0.01, per: 1d, key: session }
  - name: priced-openai
    match: api.openai.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 100, per: 1d, key: session }
`;
  const { origin, proxy, client, proxiedFetch, seen } = await setup(rules);
  const anthropic = new Anthropic({ apiKey: "sk-ant-test", fetch: proxiedFetch, maxRetries: 0 });
  try {
    const ask = () =>
      anthropic.messages.create({
        model: "claude-sonnet-4-20250514",
        max_tokens: 10,
        messages: [{ role: "user", content: "hi" }],
      });
    await ask(); // $0.013638: crosses the budget
    await assert.rejects(ask(), (e: unknown) => {
      assert.equal((e as { status?: number }).status, 429);
      return true;
    });
    const denied = await waitForRows(proxy.auditPath, 1, "policy = 'spending_limit'");
    // Spent, in flight, this call's worst case (one input token per body byte + 64,
    // on the price grid, at $3/M; max_tokens 10, 64 on the grid, at $15/M), and
    // when it fits again.
    const bytes = JSON.stringify(seen.bodies[0]).length + 64;
    const step = 2 ** (Math.floor(Math.log2(bytes)) - 4);
    const need = (Math.ceil(bytes / step) * step * 3 + 64 * 15) / 1e6;
    assert.match(
      denied[0].reason as string,
      new RegExp(
        `^spending limit reached: \\$0\\.0136 spent \\+ \\$0\\.00 reserved in flight \\+ \\$${
          need.toFixed(4).replace(/0+$/, "").replace(".", "\\.")
        } for this call > \\$0\\.01 per 1d for requests without a session; resets at \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`,
      ),
    );

    // A model without a known price cannot be held to a budget: denied, naming the model.
    const res = await fetch("https://api.openai.com/v1/chat/completions", {
      method: "POST",
      client,
      body: JSON.stringify({ model: "no-such-model", messages: [] }),
    });
    assert.equal(res.status, 403);
    assert.equal(
      (await res.json()).reason,
      'no price is known for model "no-such-model", so the spending limit of rule "priced-openai" cannot be enforced (llm.unknown_price: deny; add it to llm.prices)',
    );
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("llm: a CEL-keyed budget is charged, recorded on the row, and survives a restart", async () => {
  const pki = await testPki(["api.anthropic.com"]);
  const origin = await startOrigin(fakeProvider({ bodies: [] }), { cert: pki.cert, key: pki.key });
  const shared = await Deno.makeTempDir({ prefix: "agentgate-cel-budget-" });
  await Deno.writeTextFile(`${shared}/origin-ca.pem`, pki.caPem);
  const config = `version: 1
default: deny
tls: { intercept: [api.anthropic.com], ca_dir: ${shared}/ca, upstream_ca: ${shared}/origin-ca.pem }
upstream: { resolve: { api.anthropic.com: 127.0.0.1:${origin.port} } }
audit: { path: ${shared}/audit.db }
rules:
  - name: team-budget
    match: api.anthropic.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 0.01, per: 1d, key: 'request.headers["x-team"]' }
`;
  const ask = async (proxy: { url: string }, team: string) => {
    const caPem = await Deno.readTextFile(`${shared}/ca/ca.pem`);
    const client = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
    try {
      const res = await fetch("https://api.anthropic.com/v1/messages", {
        method: "POST",
        client,
        headers: { "content-type": "application/json", "x-team": team },
        body: JSON.stringify({ model: "claude-sonnet-4-20250514", max_tokens: 10, messages: [] }),
      });
      return {
        status: res.status,
        body: await res.text(),
        id: res.headers.get("x-agentgate-decision"),
      };
    } finally {
      client.close();
    }
  };
  const key = 'cel:team-budget|request.headers["x-team"]=ml';
  try {
    const first = await startProxy({ config });
    try {
      const crossed = await ask(first, "ml"); // $0.013638: crosses the team's budget
      assert.equal(crossed.status, 200);
      const [row] = await waitForRows(first.auditPath, 1, `id = '${crossed.id}'`);
      assert.deepEqual([row.cost_usd, row.spend_keys], [0.013638, JSON.stringify([key])]);
      assert.equal((await ask(first, "ml")).status, 429);
      assert.equal(await first.stop(), 0);
    } finally {
      await first.dispose();
    }
    // A new process reads the budget back from the audit: still spent for "ml" only.
    const second = await startProxy({ config });
    try {
      const again = await ask(second, "ml");
      assert.equal(again.status, 429);
      // The charge counts from the row's time: it leaves the window a day later.
      const [row] = auditRows(second.auditPath, "cost_usd > 0");
      const resets = new Date(Math.ceil(((row.ts as number) + 86_400_000) / 1000) * 1000)
        .toISOString().slice(0, 19) + "Z";
      // This call's worst case: a 67-byte body is 67 + 64 input tokens (136 on the
      // price grid) at $3/M, and max_tokens 10 (64 on the grid) at $15/M: $0.001368.
      const body = JSON.parse(again.body);
      assert.equal(
        body.reason,
        `spending limit reached: $0.0136 spent + $0.00 reserved in flight + $0.0014 for this call > $0.01 per 1d for key "ml"; resets at ${resets}`,
      );
      assert.deepEqual(
        [body.spent_usd, body.reserved_usd, body.needed_usd, body.limit_usd, body.resets_at],
        [0.013638, 0, 0.001368, 0.01, resets],
      );
      assert.equal((await ask(second, "web")).status, 200);
      assert.equal(await second.stop(), 0);
    } finally {
      await second.dispose();
    }
  } finally {
    await origin.close();
    await Deno.remove(shared, { recursive: true });
  }
});

Deno.test("llm: a client that aborts mid-stream leaves a partial row", async () => {
  const { origin, proxy, client, seen } = await setup();
  try {
    let held: () => void;
    const heldP = new Promise<void>((r) => (held = r));
    seen.hold = () => held();
    const ac = new AbortController();
    const res = await fetch("https://api.anthropic.com/v1/messages?hold=1", {
      method: "POST",
      client,
      signal: ac.signal,
      body: JSON.stringify({ model: "claude-sonnet-4-20250514", stream: true, messages: [] }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    await heldP;
    ac.abort();
    await reader.cancel().catch(() => {});
    const [row] = await waitForRows(proxy.auditPath, 1, "provider = 'anthropic'");
    assert.equal(row.usage_partial, 1);
    assert.equal(row.error, "client aborted");
    assert.equal(row.input_tokens, 2060); // from message_start, before the cut
    assert.equal(auditRows(proxy.auditPath, "provider = 'anthropic'").length, 1);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("llm: the openai client streaming without include_usage under a spending limit is charged", async () => {
  // gpt-4o-mini at $1,000 per million tokens in and out, so the budget reads in cents:
  // the stream's 24 + 17 tokens cost $0.041 (the charge), and a call reserves $0.232.
  const rules = `  - name: budget
    match: api.openai.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 0.3, per: 1d, key: session }
`;
  const llm = "llm: { prices: { gpt-4o-mini: { input: 1000, output: 1000 } } }";
  const { origin, proxy, client, proxiedFetch, seen } = await setup(rules, llm);
  const openai = new OpenAI({ apiKey: "sk-test-not-real", fetch: proxiedFetch, maxRetries: 0 });
  try {
    const ask = async () => {
      const stream = await openai.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 20,
        stream: true,
      });
      let text = "";
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
      return text;
    };
    assert.ok((await ask()).length > 0);
    // force_stream_usage is off: the limit made agentgate ask for the usage itself.
    assert.deepEqual((seen.bodies[0] as { stream_options: unknown }).stream_options, {
      include_usage: true,
    });
    const [row] = await waitForRows(proxy.auditPath, 1, "provider = 'openai'");
    assertUsage(row, "openai-chat-stream.sse");
    assert.deepEqual(
      [row.cost_usd, row.price_source, row.price_incomplete, row.service_tier],
      [0.041, "config", 0, "default"],
    );
    // Each call first reserves its worst case, $0.232 (its body's bytes and max_tokens 20):
    // $0.041 spent + $0.232 fits $0.30: allowed, and charged ($0.082).
    await ask();
    await assert.rejects(ask(), (e: unknown) => {
      assert.equal((e as { status?: number }).status, 429);
      return true;
    });
    const [denied] = await waitForRows(proxy.auditPath, 1, "policy = 'spending_limit'");
    assert.equal(
      String(denied.reason).split("; resets at")[0],
      "spending limit reached: $0.082 spent + $0.00 reserved in flight + $0.232 for this call > " +
        "$0.30 per 1d for requests without a session",
    );
    assert.equal(seen.bodies.length, 2);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("llm: rows say where the price came from, what it lacked, and the in-band error", async () => {
  const rules = `  - name: anthropic-budget
    match: api.anthropic.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 100, per: 1d, key: session }
`;
  const { origin, proxy, client } = await setup(rules, "llm: { unknown_price: allow }");
  const post = async (url: string, body: unknown) => {
    const res = await fetch(url, {
      method: "POST",
      client,
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    await res.arrayBuffer();
    return res.headers.get("x-agentgate-decision");
  };
  try {
    // Anthropic web search: 3 searches at $10 per 1,000 on top of claude-sonnet-4's
    // tokens (6039 × $3 + 931 × $15 per million = $0.032082).
    const ws = await post("https://api.anthropic.com/v1/messages", {
      model: "claude-sonnet-4-20250514",
      max_tokens: 1024,
      tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 5 }],
      messages: [{ role: "user", content: "What is the ECB deposit rate?" }],
    });
    const [a] = await waitForRows(proxy.auditPath, 1, `id = '${ws}'`);
    assert.ok(Math.abs((a.cost_usd as number) - 0.062082) < 1e-12, String(a.cost_usd));
    assert.deepEqual(
      [a.price_source, a.price_incomplete, a.price_missing, a.service_tier, a.error],
      ["genai-prices", 0, null, "standard", null],
    );

    // gpt-5 served on the priority tier: no priority price in the bundled data, so the
    // standard price is recorded as a lower bound and the row says what is missing.
    const pr = await post("https://api.openai.com/v1/chat/completions", {
      model: "gpt-5",
      messages: [],
    });
    const [b] = await waitForRows(proxy.auditPath, 1, `id = '${pr}'`);
    assert.ok(Math.abs((b.cost_usd as number) - 0.009973) < 1e-12, String(b.cost_usd));
    assert.deepEqual(
      [b.price_source, b.price_incomplete, b.price_missing, b.service_tier],
      ["genai-prices", 1, 'service tier "priority"', "priority"],
    );

    // An in-band error event in a 200 stream fills the row's error column.
    const err = await post("https://api.anthropic.com/v1/messages", {
      model: "claude-3-5-haiku-20241022",
      stream: true,
      messages: [],
    });
    const [c] = await waitForRows(proxy.auditPath, 1, `id = '${err}'`);
    assert.deepEqual(
      [c.status, c.error, c.usage_partial, c.input_tokens, c.output_tokens],
      [200, "overloaded_error: Overloaded", 1, 25, 1],
    );
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("llm: a token limit counts a stream whose usage stays unknown, never as 0 tokens", async () => {
  const rules = `  - name: tokens
    match: api.openai.com/v1/**
    action: allow
    policies:
      - rate_limit: { tokens: 4270, per: 1m, key: session }
`;
  const { origin, proxy, client } = await setup(rules);
  try {
    // The request body is 100 bytes: about 25 tokens at 4 bytes per token. Before it is sent
    // a call reserves its worst case, 100 + 64 input and 4096 output tokens (no max_tokens):
    // 4260 of the 4270, so one fits.
    const body = JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [], n: 1 })
      .padEnd(99, " ") + "\n";
    assert.equal(body.length, 100);
    const ask = async () => {
      const res = await fetch("https://api.openai.com/v1/chat/completions", {
        method: "POST",
        client,
        headers: { "content-type": "application/json", "x-ignore-stream-options": "1" },
        body,
      });
      await res.arrayBuffer();
      return res.status;
    };
    assert.equal(await ask(), 200);
    const [row] = await waitForRows(proxy.auditPath, 1, "provider = 'openai'");
    assert.deepEqual([row.input_tokens, row.output_tokens, row.cost_usd], [null, null, null]);
    // 25 estimated tokens counted (never 0): 25 + the next call's 4260 exceed 4270.
    assert.equal(await ask(), 429);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("llm: a gateway keyed by host:port, over plain HTTP, priced by its own cost or by vendor", async () => {
  let withCost = true;
  const origin = await startOrigin((req, res) => {
    req.resume();
    req.on("end", () => {
      const body = JSON.parse(new TextDecoder().decode(fixture("openrouter-chat.json")));
      if (!withCost) delete body.usage.cost;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    });
  });
  const proxy = await startProxy({
    config: `version: 1
default: deny
llm:
  providers: { "llm.internal:8080": openai }
upstream:
  resolve: { "llm.internal:8080": "127.0.0.1:${origin.port}", llm.internal: "127.0.0.1:${origin.port}" }
audit: { path: ./audit.db }
rules:
  - name: gateway
    match: http://llm.internal
    action: allow
    policies:
      - spending_limit: { usd: 5, per: 1d }
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  const post = async (port: number) => {
    const res = await fetch(`http://llm.internal:${port}/api/v1/chat/completions`, {
      method: "POST",
      client,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "openai/gpt-4o-mini", messages: [] }),
    });
    await res.arrayBuffer();
    return { status: res.status, id: res.headers.get("x-agentgate-decision") };
  };
  try {
    // The key with the port matches: read as OpenAI's wire format, priced by usage.cost.
    const a = await post(8080);
    assert.equal(a.status, 200);
    const [ra] = await waitForRows(proxy.auditPath, 1, `id = '${a.id}'`);
    assert.deepEqual(
      [ra.provider, ra.model, ra.input_tokens, ra.cost_usd, ra.price_source],
      ["openai", "openai/gpt-4o-mini", 14, 0.0000081, "provider"],
    );
    // Without a reported cost: OpenAI's gpt-4o-mini, $0.15 in / $0.60 out per million:
    // 14 × 0.15 + 10 × 0.6 = 8.1 → $0.0000081, from the bundled data.
    withCost = false;
    const b = await post(8080);
    const [rb] = await waitForRows(proxy.auditPath, 1, `id = '${b.id}'`);
    assert.ok(Math.abs((rb.cost_usd as number) - 0.0000081) < 1e-15, String(rb.cost_usd));
    assert.equal(rb.price_source, "genai-prices");
    // Another port of the same host: resolved by the bare host key, but no provider is
    // mapped there, so nothing is read (and a spending limit has no model to price).
    const c = await post(8081);
    assert.equal(c.status, 200);
    const [rc] = await waitForRows(proxy.auditPath, 1, `id = '${c.id}'`);
    assert.deepEqual([rc.provider, rc.cost_usd], [null, null]);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});
