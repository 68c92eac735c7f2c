/**
 * Each policy through the running proxy: conditions over JSON bodies, rate
 * limits, time windows, and spending limits rebuilt from the audit at start.
 */
import assert from "node:assert/strict";
import { AuditStore } from "../src/audit/store.ts";
import { startOrigin, startProxy, waitForRows } from "./helpers.ts";

function echoBody() {
  return startOrigin((req, res) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      // How the body was framed on the way in: the proxy re-frames a body it read whole.
      res.setHeader(
        "x-got-framing",
        `content-length=${req.headers["content-length"]}; transfer-encoding=${
          req.headers["transfer-encoding"]
        }`,
      );
      res.end(new TextDecoder().decode(Buffer.concat(chunks)));
    });
  });
}

/** The origin (echoBody) received the body with a Content-Length of `n`, not chunked. */
function assertSentWithLength(res: Response, n: number) {
  assert.equal(
    res.headers.get("x-got-framing"),
    `content-length=${n}; transfer-encoding=undefined`,
  );
}

Deno.test("policy e2e: a condition on the JSON body (buffered, forwarded intact)", async () => {
  const origin = await echoBody();
  const proxy = await startProxy({
    config: `version: 1
default: deny
limits: { max_body_bytes: 1024 }
audit: { path: ./audit.db }
rules:
  - name: mini-only
    match: 127.0.0.1/v1/**
    methods: [POST]
    when: body.model == "gpt-4o-mini"
    action: allow
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  try {
    const body = JSON.stringify({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hi" }],
    });
    const ok = await fetch(`${origin.url}/v1/chat`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      client,
    });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), body);
    assertSentWithLength(ok, body.length);

    // A chunked body, read whole for the condition, goes upstream with its
    // length: the same bytes, counted once in the row.
    const parts = [body.slice(0, 10), body.slice(10, 30), body.slice(30)];
    const chunked = await fetch(`${origin.url}/v1/chat?chunked`, {
      method: "POST",
      body: new ReadableStream<Uint8Array>({
        pull(c) {
          const p = parts.shift();
          if (p === undefined) c.close();
          else c.enqueue(new TextEncoder().encode(p));
        },
      }),
      headers: { "content-type": "application/json" },
      client,
    });
    assert.equal(chunked.status, 200);
    assert.equal(await chunked.text(), body);
    assertSentWithLength(chunked, body.length);
    const [chunkedRow] = await waitForRows(
      proxy.auditPath,
      1,
      `id = '${chunked.headers.get("x-agentgate-decision")}'`,
    );
    assert.deepEqual([chunkedRow.decision, chunkedRow.rule, chunkedRow.bytes_in], [
      "allow",
      "mini-only",
      body.length,
    ]);

    const other = await fetch(`${origin.url}/v1/chat`, {
      method: "POST",
      body: JSON.stringify({ model: "o3" }),
      client,
    });
    assert.equal(other.status, 403);
    assert.equal((await other.json()).reason, "no rule matched (default: deny)");

    // A streamed body larger than the cap: the condition cannot read it -> deny, not a guess.
    const big = JSON.stringify({ model: "gpt-4o-mini", pad: "x".repeat(4096) });
    const tooBig = await fetch(`${origin.url}/v1/chat`, { method: "POST", body: big, client });
    assert.equal(tooBig.status, 403);
    const j = await tooBig.json();
    assert.equal(j.rule, "mini-only");
    assert.match(j.reason, /^condition error in rule "mini-only": Request body is not available/);
    const [row] = await waitForRows(proxy.auditPath, 1, `id = '${j.decision_id}'`);
    assert.equal(row.decision, "deny");
    assert.equal(row.status, 403);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("policy e2e: rate_limit answers 429 with Retry-After and the key's count", async () => {
  const origin = await echoBody();
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
rules:
  - name: local
    match: 127.0.0.1
    action: allow
    policies:
      - rate_limit: { requests: 3, per: 1m, key: client }
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  try {
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${origin.url}/ok/${i}`, { client });
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    const limited = await fetch(`${origin.url}/ok/4`, { client });
    assert.equal(limited.status, 429);
    const retry = Number(limited.headers.get("retry-after"));
    assert.ok(retry >= 59 && retry <= 60, `Retry-After ${retry}`);
    const body = await limited.json();
    assert.deepEqual(
      { ...body, retry_after: undefined, decision_id: undefined },
      {
        error: "denied",
        rule: "local",
        reason: 'rate limit exceeded: 3 requests per 1m for client "127.0.0.1"',
        policy: "rate_limit",
        retry_after: undefined,
        key: "client",
        key_value: "127.0.0.1",
        unit: "requests",
        count: 3,
        limit: 3,
        window: "1m",
        decision_id: undefined,
      },
    );
    const [row] = await waitForRows(proxy.auditPath, 1, `id = '${body.decision_id}'`);
    assert.deepEqual([row.decision, row.policy, row.status, row.rule], [
      "deny",
      "rate_limit",
      429,
      "local",
    ]);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("policy e2e: time_window outside its hours is 403 and says when it opens", async () => {
  const origin = await echoBody();
  const days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
  const tomorrow = days[(new Date().getUTCDay() + 1) % 7];
  const proxy = await startProxy({
    config: `version: 1
audit: { path: ./audit.db }
rules:
  - name: tomorrow-only
    match: 127.0.0.1
    action: allow
    policies:
      - time_window: { days: [${tomorrow}], hours: "00:00-24:00", tz: UTC }
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  try {
    const r = await fetch(`${origin.url}/x`, { client });
    assert.equal(r.status, 403);
    const body = await r.json();
    assert.equal(body.policy, "time_window");
    const Day = tomorrow[0].toUpperCase() + tomorrow.slice(1);
    assert.equal(
      body.reason,
      `outside time window ${tomorrow} 00:00-24:00 UTC: opens ${Day} 00:00`,
    );
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("policy e2e: spending_limit is rebuilt from the audit at start", async () => {
  const origin = await echoBody();
  const dir = await Deno.makeTempDir();
  // Yesterday's proxy run spent $4.995 for this client, $0.005 an hour ago.
  const seed = AuditStore.open(`${dir}/spend.db`);
  const base = {
    session: null,
    label: null,
    client: "127.0.0.1",
    method: "POST",
    scheme: "https",
    host: "api.openai.com",
    port: 443,
    path: "/v1/chat/completions",
    query: null,
    status: 200,
    decision: "allow" as const,
    rule: "openai",
    rule_source: null,
    reason: "r",
    policy: null,
    bytes_in: 1,
    bytes_out: 1,
    duration_ms: 1,
    error: null,
    headers: null,
    provider: "openai",
    model: "gpt-4o",
  };
  const first = Date.now() - 20 * 3_600_000;
  seed.add({ ...base, id: "a", ts: first, cost_usd: 4.995 });
  seed.add({ ...base, id: "b", ts: Date.now() - 3_600_000, cost_usd: 0.005 });
  seed.close();
  const proxy = await startProxy({
    config: `version: 1
audit: { path: ${dir}/spend.db }
rules:
  - name: budgeted
    match: 127.0.0.1
    action: allow
    policies:
      - spending_limit: { usd: 5.00, per: 1d, key: client, scope: all }
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  // The budget fits again when the first cost leaves the window, 24 h after it.
  const resets = new Date(Math.ceil((first + 86_400_000) / 1000) * 1000).toISOString()
    .slice(0, 19) + "Z";
  try {
    const r = await fetch(`${origin.url}/x`, { client });
    assert.equal(r.status, 429);
    const body = await r.json();
    assert.equal(body.policy, "spending_limit");
    assert.equal(
      body.reason,
      `spending limit reached: $5.00 spent of $5.00 per 1d for client "127.0.0.1"; resets at ${resets}`,
    );
    assert.equal(body.resets_at, resets);
    const wait = (first + 86_400_000 - Date.now()) / 1000;
    const retryAfter = Number(r.headers.get("retry-after"));
    assert.ok(retryAfter >= wait - 5 && retryAfter <= wait + 5, `Retry-After ${retryAfter}`);
    assert.equal(body.spent_usd, 5);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});
