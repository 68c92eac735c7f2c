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
        assert.equal(rows[0].input_tokens, 0);
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
