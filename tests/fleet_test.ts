/**
 * A fleet of agentgates sharing one real Redis (`state: { redis: … }`):
 * budgets and rate limits hold across three replicas, and Redis going away
 * under load is survived — `on_state_error: deny` refuses limited requests
 * with 503 and a clear reason, `local` keeps deciding and replays the gap's
 * charges when Redis returns. Skipped, with a line saying so, without
 * `redis-server` (`AGENTGATE_TEST_REDIS=valkey-server` runs it on Valkey).
 */
import assert from "node:assert/strict";
import type http from "node:http";
import { type ProxyProcess, startOrigin, startProxy, waitFor } from "./helpers.ts";
import {
  BUDGET_MODEL_PRICES,
  chatCompletion,
  dayBudgetRefusal,
  NANO_PER_TOKEN,
  reservationNano,
} from "./support/llm_budget.ts";
import { prerequisite } from "./support/prerequisites.ts";
import { startRedis, type TestRedis } from "./support/redis.ts";

const redisTool = prerequisite("redis-server");

const LLM = `llm:
  providers: { "127.0.0.1": openai }
  ${BUDGET_MODEL_PRICES}
`;

function drain(req: http.IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    req.resume();
    req.on("end", () => resolve());
  });
}

async function replicas(n: number, config: string): Promise<ProxyProcess[]> {
  return await Promise.all(Array.from({ length: n }, () => startProxy({ config })));
}

/** Sum of a Redis hash of amounts (a key's charges by second). */
async function hashSum(redis: TestRedis, key: string): Promise<number> {
  const all = await redis.command(["HGETALL", key]) as string[];
  let sum = 0;
  for (let i = 1; i < all.length; i += 2) sum += Number(all[i]);
  return sum;
}

Deno.test({
  name: redisTool.testName(
    "fleet: three replicas, one Redis, a budget that fits 5 calls: 60 concurrent calls round-robin, exactly 5 forwarded",
  ),
  ignore: !redisTool.found,
  async fn() {
    const redis = await startRedis();
    let arrived = 0;
    const origin = await startOrigin((req, res) => {
      void drain(req).then(() => {
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
    const budgetNano = 5 * r + r / 2;
    const proxies = await replicas(
      3,
      `version: 1
default: deny
audit: { path: ./audit.db }
state: { redis: "${redis.url}" }
${LLM}rules:
  - name: llm
    match: 127.0.0.1/v1/**
    action: allow
    policies:
      - spending_limit: { usd: ${budgetNano / 1e9}, per: day, tz: UTC }
`,
    );
    const clients = proxies.map((p) => Deno.createHttpClient({ proxy: { url: p.url } }));
    try {
      const results = await Promise.all(
        Array.from({ length: 60 }, async (_, i) => {
          const res = await fetch(`${origin.url}/v1/chat/completions`, {
            method: "POST",
            client: clients[i % 3],
            headers: { "content-type": "application/json" },
            body,
          });
          return { status: res.status, body: await res.json() };
        }),
      );
      const ok = results.filter((x) => x.status === 200);
      const refused = results.filter((x) => x.status === 429);
      assert.equal(ok.length, 5);
      assert.equal(refused.length, 55);
      assert.equal(arrived, 5, "the origin saw exactly the five calls that fit");
      for (const x of refused) {
        assert.equal(x.body.reason, dayBudgetRefusal(5 * r, r, budgetNano));
      }
      // Settled in Redis: the holds released, the real cost (150 tokens each) charged.
      await waitFor(
        async () => (await hashSum(redis, "agentgate:ah:rule:llm")) === 5 * 150 * NANO_PER_TOKEN,
        "the settlements",
        10_000,
      );
      assert.equal(await redis.command(["HLEN", "agentgate:h:rule:llm"]), 0);
      // The fleet view: each replica reports the backend.
      const health = await (await fetch(`${proxies[0].url}/_/api/health`)).json();
      assert.equal(health.status, "ok");
      assert.equal(health.backends.length, 1);
      const b = health.backends[0];
      assert.deepEqual([b.name, b.kind, b.url, b.up, b.errors, b.queued, b.dropped, b.mode], [
        "state",
        "redis",
        redis.url,
        true,
        0,
        0,
        0,
        null,
      ]);
      assert.ok(b.latency_ms > 0);
      const metrics = await (await fetch(`${proxies[1].url}/_/metrics`)).text();
      assert.match(metrics, /^agentgate_backend_up\{backend="state",kind="redis"\} 1$/m);
      assert.match(metrics, /^agentgate_backend_queued\{backend="state",kind="redis"\} 0$/m);
    } finally {
      for (const c of clients) c.close();
      await Promise.all(proxies.map((p) => p.dispose()));
      await origin.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: redisTool.testName(
    "fleet: a rate limit of 10/min across three replicas forwards 10 in the minute, not 30",
  ),
  ignore: !redisTool.found,
  async fn() {
    const redis = await startRedis();
    let arrived = 0;
    const origin = await startOrigin((req, res) => {
      void drain(req).then(() => {
        arrived++;
        res.end("ok");
      });
    });
    const proxies = await replicas(
      3,
      `version: 1
default: deny
audit: { path: ./audit.db }
state: { redis: "${redis.url}" }
rules:
  - name: limited
    match: 127.0.0.1/**
    action: allow
    policies:
      - rate_limit: { requests: 10, per: 1m, key: global }
`,
    );
    const clients = proxies.map((p) => Deno.createHttpClient({ proxy: { url: p.url } }));
    try {
      const results = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const res = await fetch(`${origin.url}/x`, { client: clients[i % 3] });
          return { status: res.status, body: await res.text() };
        }),
      );
      assert.equal(results.filter((x) => x.status === 200).length, 10);
      const refused = results.filter((x) => x.status === 429);
      assert.equal(refused.length, 20);
      assert.equal(arrived, 10);
      for (const x of refused) {
        assert.equal(JSON.parse(x.body).reason, "rate limit exceeded: 10 requests per 1m");
      }
    } finally {
      for (const c of clients) c.close();
      await Promise.all(proxies.map((p) => p.dispose()));
      await origin.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: redisTool.testName(
    "fleet: Redis stopped for 10 s under load: deny answers 503 with the reason, local keeps deciding and replays the gap's charges",
  ),
  ignore: !redisTool.found,
  async fn() {
    const redis = await startRedis();
    const origin = await startOrigin((req, res) => {
      void drain(req).then(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(req.url?.startsWith("/v1/") ? chatCompletion(50, 100) : "{}");
      });
    });
    const policy = (mode: string) =>
      `version: 1
default: deny
audit: { path: ./audit.db }
state: { redis: "${redis.url}", on_state_error: ${mode}, timeout: 500ms }
${LLM}rules:
  - name: open
    match: 127.0.0.1/open/**
    action: allow
  - name: limited
    match: 127.0.0.1/limited/**
    action: allow
    policies:
      - rate_limit: { requests: 100000, per: 1h, key: global }
  - name: llm
    match: 127.0.0.1/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 100, per: day, tz: UTC }
`;
    const [deny, local] = await Promise.all([
      startProxy({ config: policy("deny") }),
      startProxy({ config: policy("local") }),
    ]);
    const denyClient = Deno.createHttpClient({ proxy: { url: deny.url } });
    const localClient = Deno.createHttpClient({ proxy: { url: local.url } });
    const call = async (client: Deno.HttpClient, path: string) => {
      const llm = path.startsWith("/v1/");
      const res = await fetch(`${origin.url}${path}`, {
        client,
        method: llm ? "POST" : "GET",
        headers: llm ? { "content-type": "application/json" } : {},
        body: llm
          ? JSON.stringify({ model: "budget-model", max_tokens: 100, messages: [] })
          : undefined,
      });
      return { status: res.status, body: await res.text() };
    };
    try {
      // Up: both replicas forward.
      assert.equal((await call(denyClient, "/limited/a")).status, 200);
      assert.equal((await call(localClient, "/limited/a")).status, 200);
      await redis.kill();
      const gapEnd = Date.now() + 10_000;
      const seen = {
        denied503: 0,
        denyOpen: 0,
        localOk: 0,
        localLlm: 0,
        localLimited: 0,
        other: [] as string[],
      };
      // Load on both for 10 s: two clients each, back to back.
      const loop = async (client: Deno.HttpClient, which: "deny" | "local") => {
        let i = 0;
        while (Date.now() < gapEnd) {
          const path = i % 3 === 0
            ? "/open/x"
            : i % 3 === 1
            ? "/limited/x"
            : "/v1/chat/completions";
          i++;
          const r = await call(client, path);
          if (which === "deny") {
            if (path === "/open/x" && r.status === 200) seen.denyOpen++;
            else if (path !== "/open/x" && r.status === 503) {
              seen.denied503++;
              const reason = JSON.parse(r.body).reason as string;
              assert.match(
                reason,
                new RegExp(
                  `^shared state unavailable: ${
                    redis.url.replace(/[/.]/g, "\\$&")
                  }.* \\(state\\.on_state_error: deny\\)$`,
                ),
              );
            } else seen.other.push(`deny ${path} ${r.status} ${r.body.slice(0, 200)}`);
          } else {
            if (r.status === 200) {
              seen.localOk++;
              if (path.startsWith("/v1/")) seen.localLlm++;
              if (path.startsWith("/limited/")) seen.localLimited++;
            } else seen.other.push(`local ${path} ${r.status} ${r.body.slice(0, 200)}`);
          }
        }
      };
      await Promise.all([
        loop(denyClient, "deny"),
        loop(denyClient, "deny"),
        loop(localClient, "local"),
        loop(localClient, "local"),
      ]);
      assert.deepEqual(seen.other, []);
      assert.ok(seen.denied503 > 10, `deny refused ${seen.denied503}`);
      assert.ok(seen.denyOpen > 5, "a rule without limits never needs Redis");
      assert.ok(seen.localOk > 10, `local forwarded ${seen.localOk}`);
      // Health says so while it is down.
      const h = await (await fetch(`${local.url}/_/health`)).json();
      assert.equal(h.status, "degraded");
      assert.deepEqual(h.degraded, ["state"]);
      assert.equal(h.backends[0].mode, "local");
      assert.equal(h.backends[0].up, false);
      await redis.restart();
      // The gap's charges are in Redis once it returns: every request count and LLM charge.
      await waitFor(
        async () => {
          const n = await redis.command([
            "ZCARD",
            "agentgate:r:rl:rate_limit|*|requests|3600000|global|",
          ]);
          return Number(n) > 0;
        },
        "the replayed counts",
        10_000,
      );
      await waitFor(
        async () => {
          const b = (await (await fetch(`${local.url}/_/api/health`)).json()).backends[0];
          return b.up && b.queued === 0;
        },
        "the queue to drain",
        10_000,
      );
      // Redis came back empty: what it holds is the gap, replayed. The deny replica's
      // refusals counted nothing; every request the local replica forwarded did.
      assert.equal(
        await redis.command(["ZCARD", "agentgate:r:rl:rate_limit|*|requests|3600000|global|"]),
        seen.localLimited,
      );
      assert.equal(
        await hashSum(redis, "agentgate:ah:rule:llm"),
        seen.localLlm * 150 * NANO_PER_TOKEN,
      );
      // And both replicas decide through Redis again.
      assert.equal((await call(denyClient, "/limited/b")).status, 200);
      assert.equal((await call(localClient, "/limited/b")).status, 200);
      assert.ok(deny.stderr.some((l) => /shared state redis:\/\/.* is down/.test(l)));
    } finally {
      denyClient.close();
      localClient.close();
      await Promise.all([deny.dispose(), local.dispose()]);
      await origin.close();
      await redis.stop();
    }
  },
});
