/**
 * Budgets that hold, through a real proxy process: concurrent priced calls
 * against a slow origin, streams cut halfway, and `kill -9` of the proxy at
 * random points under load. Origins are plain HTTP on 127.0.0.1 / 127.0.0.2,
 * mapped to a provider's wire format with `llm.providers`; the model is
 * priced at $1 per million tokens in and out, so every amount below is
 * tokens × $0.000001.
 */
import assert from "node:assert/strict";
import type http from "node:http";
import { chromium } from "playwright-core";
import { auditRows, queryAudit, startOrigin, startProxy, waitForRows } from "./helpers.ts";
import { prerequisite } from "./support/prerequisites.ts";
import {
  BUDGET_MODEL_PRICES,
  chatCompletion,
  dayBudgetRefusal,
  NANO_PER_TOKEN,
  nextUtcMidnight,
  reservationNano,
  usdOf,
} from "./support/llm_budget.ts";

const CHROMIUM = prerequisite("chromium");

const LLM = `llm:
  providers: { "127.0.0.1": openai, "127.0.0.2": anthropic, "127.0.0.3": anthropic }
  ${BUDGET_MODEL_PRICES}
`;

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(new TextDecoder().decode(Buffer.concat(chunks))));
  });
}

async function budgets(proxyUrl: string) {
  const res = await fetch(`${proxyUrl}/_/api/budgets`);
  assert.equal(res.status, 200);
  return await res.json();
}

Deno.test("budgets: 50 concurrent calls on a budget that fits 3: 3 forwarded, 47 refused with the reservation", async () => {
  let arrived = 0;
  const origin = await startOrigin((req, res) => {
    void readBody(req).then(() => {
      arrived++;
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(chatCompletion(50, 100));
      }, 1000);
    });
  });
  const body = JSON.stringify({
    model: "budget-model",
    max_tokens: 1000,
    messages: [{ role: "user", content: "hi" }],
  });
  const r = reservationNano(body.length, 1000);
  // Three reservations fit, a fourth does not.
  const budgetNano = 3 * r + r / 2;
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
${LLM}rules:
  - name: llm
    match: 127.0.0.1/v1/**
    action: allow
    policies:
      - spending_limit: { usd: ${budgetNano / 1e9}, per: day, tz: UTC }
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  try {
    const results = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const res = await fetch(`${origin.url}/v1/chat/completions`, {
          method: "POST",
          client,
          headers: { "content-type": "application/json" },
          body,
        });
        return { status: res.status, body: await res.json() };
      }),
    );
    const ok = results.filter((x) => x.status === 200);
    const refused = results.filter((x) => x.status === 429);
    assert.equal(ok.length, 3);
    assert.equal(refused.length, 47);
    assert.equal(arrived, 3, "the origin saw exactly the three calls that fit");
    // A calendar day resets at the next midnight (UTC); Retry-After says so too.
    const midnight = nextUtcMidnight();
    const resets = midnight.toISOString().slice(0, 19) + "Z";
    for (const x of refused) {
      assert.equal(x.body.reason, dayBudgetRefusal(3 * r, r, budgetNano));
      assert.deepEqual(
        [x.body.spent_usd, x.body.reserved_usd, x.body.needed_usd, x.body.limit_usd],
        [0, (3 * r) / 1e9, r / 1e9, budgetNano / 1e9],
      );
      assert.equal(x.body.resets_at, resets);
      assert.ok(Math.abs(x.body.retry_after - (midnight.getTime() - Date.now()) / 1000) < 10);
    }
    // Settled: the three reservations released, their real cost (150 tokens each) charged.
    const view = await budgets(proxy.url);
    assert.equal(view.in_flight, 0);
    assert.deepEqual(view.limits[0].budgets, [{
      ledger_key: "rule:llm",
      key_value: "",
      spent_usd: 3 * 150 / 1e6,
      reserved_usd: 0,
      limit_usd: budgetNano / 1e9,
      resets_at: resets,
    }]);
    const rows = await waitForRows(proxy.auditPath, 50);
    const forwarded = rows.filter((x) => x.decision === "allow");
    assert.deepEqual(
      forwarded.map((x) => [x.reserved_usd, x.cost_usd, x.charged_usd]),
      Array(3).fill([r / 1e9, 150 / 1e6, 150 / 1e6]),
    );
    assert.equal(rows.filter((x) => x.policy === "spending_limit").length, 47);

    // The dashboard's Budgets tab shows the same, in a real browser.
    // Without Chromium this part is skipped, and `deno task test` says so in its closing lines.
    if (CHROMIUM.found) {
      const browser = await chromium.launch({
        executablePath: CHROMIUM.tool,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
      });
      try {
        const page = await browser.newPage();
        await page.goto(`${proxy.url}/_/dashboard#budgets`);
        await page.waitForSelector("#budgets-table tbody tr td.mono");
        const cells = await page.$$eval(
          "#budgets-table tbody tr:first-child td",
          (tds) => tds.map((td) => td.textContent),
        );
        assert.deepEqual(cells.slice(0, 5), [
          "llm",
          `spending_limit ${
            usdOf(budgetNano)
          } per day (UTC): counts only the requests rule "llm" allows`,
          "(whole rule)",
          "$0.00045", // the one USD formatter keeps a sub-cent amount's digits
          "$0.00",
        ]);
        assert.equal(await page.textContent("#budgets-inflight"), "0 call(s) in flight");
      } finally {
        await browser.close();
      }
    }
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("budgets: a stream cut halfway is charged its partial usage, its reservation released", async () => {
  // Anthropic's wire format: message_start carries the input tokens, the final
  // message_delta the output. Cut after message_start and one delta.
  let cutByClient: (() => void) | null = null;
  const origin = await startOrigin(
    (req, res) => {
      void readBody(req).then(() => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(
          'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","type":"message",' +
            '"role":"assistant","model":"budget-model","content":[],"usage":{"input_tokens":400,"output_tokens":3}}}\n\n' +
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}\n\n',
        );
        if (req.url === "/v1/messages") {
          // The upstream dies mid-stream.
          setTimeout(() => res.destroy(), 50);
        } else cutByClient?.();
      });
    },
    undefined,
    "127.0.0.2",
  );
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
${LLM}rules:
  - name: claude
    match: ["127.0.0.2/v1/**", "127.0.0.3/**"]
    action: allow
    policies:
      - spending_limit: { usd: 1, per: 1d, key: session }
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  const body = JSON.stringify({
    model: "budget-model",
    max_tokens: 500,
    stream: true,
    messages: [],
  });
  const r = reservationNano(body.length, 500);
  try {
    // 1. Cut by the upstream.
    const res = await fetch(`${origin.url}/v1/messages`, { method: "POST", client, body });
    assert.equal(res.status, 200);
    await assert.rejects(res.text());
    const [cut] = await waitForRows(proxy.auditPath, 1, "path = '/v1/messages'");
    assert.deepEqual(
      [cut.usage_partial, cut.input_tokens, cut.output_tokens, cut.reserved_usd],
      [1, 400, 3, r / 1e9],
    );
    // 403 tokens × $0.000001, not the $${r / 1e9} it reserved.
    assert.equal(cut.cost_usd, 403 / 1e6);
    assert.equal(cut.charged_usd, 403 / 1e6);
    assert.match(cut.error as string, /^upstream aborted the response/);
    let view = await budgets(proxy.url);
    assert.deepEqual(
      [view.in_flight, view.limits[0].budgets[0].spent_usd, view.limits[0].budgets[0].reserved_usd],
      [0, 403 / 1e6, 0],
    );

    // 2. Cut by the client: it reads the first bytes, then goes away.
    const ac = new AbortController();
    const sent = new Promise<void>((resolve) => (cutByClient = resolve));
    const res2 = await fetch(`${origin.url}/v1/messages?hold=1`, {
      method: "POST",
      client,
      body,
      signal: ac.signal,
    });
    const reader = res2.body!.getReader();
    await reader.read();
    await sent;
    // While it streams, its reservation is in flight.
    view = await budgets(proxy.url);
    assert.deepEqual([view.in_flight, view.limits[0].budgets[0].reserved_usd], [1, r / 1e9]);
    ac.abort();
    await reader.cancel().catch(() => {});
    const [aborted] = await waitForRows(proxy.auditPath, 1, "query = 'hold=1'");
    assert.deepEqual(
      [aborted.error, aborted.usage_partial, aborted.charged_usd],
      ["client aborted", 1, 403 / 1e6],
    );
    view = await budgets(proxy.url);
    assert.deepEqual(
      [view.in_flight, view.limits[0].budgets[0].spent_usd, view.limits[0].budgets[0].reserved_usd],
      [0, 806 / 1e6, 0],
    );

    // 3. A call that never reaches an upstream releases everything.
    const closed = Deno.listen({ hostname: "127.0.0.3", port: 0 });
    const port = closed.addr.port;
    closed.close();
    const refused = await fetch(`http://127.0.0.3:${port}/v1/messages`, {
      method: "POST",
      client,
      body,
    });
    assert.equal(refused.status, 502);
    await refused.arrayBuffer();
    const [failed] = await waitForRows(proxy.auditPath, 1, "host = '127.0.0.3'");
    assert.deepEqual(
      [failed.decision, failed.reserved_usd, failed.charged_usd],
      ["error", r / 1e9, null],
    );
    view = await budgets(proxy.url);
    assert.deepEqual(
      [view.in_flight, view.limits[0].budgets[0].spent_usd, view.limits[0].budgets[0].reserved_usd],
      [0, 806 / 1e6, 0],
    );
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("budgets: kill -9 at random points under load, 20 times: the ledger never under-counts", async () => {
  // The origin's own log: every call it started to answer, and what that call costs.
  const sent: number[] = [];
  let seq = 0;
  const origin = await startOrigin((req, res) => {
    void readBody(req).then((text) => {
      const stream = JSON.parse(text).stream === true;
      const n = seq++;
      // Usage varies per call, always within the request's own worst case.
      const prompt = 1 + (n * 7) % 40;
      const completion = 1 + (n * 37) % 300;
      sent.push((prompt + completion) * NANO_PER_TOKEN);
      if (!stream) {
        setTimeout(() => {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(chatCompletion(prompt, completion));
        }, n % 20);
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (content: string) =>
        `data: {"id":"c${n}","object":"chat.completion.chunk","model":"budget-model","choices":[{"index":0,"delta":{"content":"${content}"}}],"usage":null}\n\n`;
      res.write(chunk("a"));
      setTimeout(() => res.write(chunk("b")), 10);
      setTimeout(() => {
        res.end(
          `data: {"id":"c${n}","object":"chat.completion.chunk","model":"budget-model","choices":[],"usage":{"prompt_tokens":${prompt},"completion_tokens":${completion},"total_tokens":${
            prompt + completion
          }}}\n\ndata: [DONE]\n\n`,
        );
      }, 25);
    });
  });
  const dir = await Deno.makeTempDir({ prefix: "agentgate-kill-" });
  const config = `version: 1
default: deny
audit: { path: ${dir}/audit.db }
${LLM}rules:
  - name: llm
    match: 127.0.0.1/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 1000, per: 1d }
`;
  const bodies = [false, true].map((stream) =>
    JSON.stringify({
      model: "budget-model",
      max_tokens: 300,
      stream,
      messages: [{ role: "user", content: "count" }],
    })
  );
  const maxReservation = Math.max(...bodies.map((b) => reservationNano(b.length, 300)));
  let requested = 0;
  let auditAloneShort = 0;
  const spentOf = (view: { limits: { budgets: { spent_usd: number }[] }[] }) =>
    Math.round((view.limits[0].budgets[0]?.spent_usd ?? 0) * 1e9);
  const rng = ((seed) => () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)(15);
  try {
    for (let round = 0; round < 20; round++) {
      const proxy = await startProxy({ config });
      try {
        // What the restarted proxy counts covers every call the origin answered so far.
        const owed = sent.reduce((a, b) => a + b, 0);
        const counted = spentOf(await budgets(proxy.url));
        assert.ok(
          counted >= owed,
          `round ${round}: the ledger counts ${counted} n$, clients were sent ${owed} n$`,
        );
        assert.ok(
          counted <= requested * maxReservation,
          `round ${round}: ${counted} n$ is more than was ever reserved`,
        );

        const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
        let dead = false;
        const load = Array.from({ length: 6 }, async (_, w) => {
          for (let i = 0; !dead; i++) {
            requested++;
            try {
              const res = await fetch(`${origin.url}/v1/chat/completions`, {
                method: "POST",
                client,
                body: bodies[(w + i) % 2],
              });
              await res.arrayBuffer();
            } catch {
              // The proxy was killed mid-call.
            }
          }
        });
        await new Promise((r) => setTimeout(r, 100 + Math.floor(rng() * 500)));
        await proxy.stop("SIGKILL");
        dead = true;
        await Promise.all(load);
        client.close();
        // Calls the origin answered in the last 200 ms may not have an audit row yet: the journal counts them.
        const audited = queryAudit(
          `${dir}/audit.db`,
          "SELECT COALESCE(SUM(COALESCE(charged_usd, cost_usd)), 0) AS usd FROM audit",
        )[0].usd as number;
        if (Math.round(audited * 1e9) < sent.reduce((a, b) => a + b, 0)) auditAloneShort++;
      } finally {
        await proxy.dispose().catch(() => {});
      }
    }
    // A last start: everything is accounted for, and a clean stop keeps it.
    const proxy = await startProxy({ config });
    try {
      const owed = sent.reduce((a, b) => a + b, 0);
      assert.ok(spentOf(await budgets(proxy.url)) >= owed);
      assert.equal(await proxy.stop(), 0);
    } finally {
      await proxy.dispose();
    }
    assert.ok(sent.length > 100, `only ${sent.length} calls reached the origin`);
    // The journal mattered: at least one kill left calls the audit alone would have missed.
    assert.ok(auditAloneShort > 0, "no kill hit a call in flight; the test proves nothing");
    const rows = auditRows(`${dir}/audit.db`, "decision = 'allow'");
    assert.ok(rows.length <= requested);
  } finally {
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});
