/**
 * Performance of the dashboard API on a large audit: seeds a temp database
 * with a realistic spread of rows (hosts and sessions Zipf-like, 10 % denials,
 * a fifth LLM calls with cost) through the real audit writer, then times
 * `GET /_/api/stats?hours=24` through the real handler over HTTP.
 *
 * It takes a while (seeding a million rows), so it runs on request:
 *
 * ```sh
 * AGENTGATE_BENCH=1 deno test -A src/dashboard/stats_bench_test.ts
 * AGENTGATE_BENCH=1 AGENTGATE_BENCH_ROWS=200000 deno test -A src/dashboard/stats_bench_test.ts
 * ```
 *
 * Two spreads: a month of traffic (what a 30-day retention holds), and the
 * worst case for `hours=24`: every row inside the last 24 hours.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { AuditStore } from "../audit/store.ts";
import type { AuditEventV1 } from "../audit/event.ts";
import { parseConfig } from "../config/load.ts";
import { newDecisionId } from "../proxy/exchange.ts";
import { Metrics } from "../proxy/addons/metrics.ts";
import { createInternalRoutes } from "./routes.ts";
import { openAuditReader } from "../audit/sqlite_read.ts";

const ENABLED = Deno.env.get("AGENTGATE_BENCH") === "1";
const ROWS = Number(Deno.env.get("AGENTGATE_BENCH_ROWS") ?? 1_000_000);
/** The target from the issue. */
const BUDGET_MS = 200;

/** Seed `n` rows spread over `spanMs` before `now` (more of them recent), oldest first. */
export function seedAudit(path: string, n: number, spanMs: number, now: number): void {
  let seed = 42;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const zipf = (k: number) => Math.min(k - 1, Math.floor(Math.pow(rnd(), 2.5) * k));
  const hosts = [
    "api.openai.com",
    "api.anthropic.com",
    "registry.npmjs.org",
    "pypi.org",
    "github.com",
    ...Array.from({ length: 295 }, (_, i) => `h${i}.example${i % 17}.com`),
  ];
  const models = [
    ["openai", "gpt-4o"],
    ["openai", "gpt-4o-mini"],
    ["anthropic", "claude-sonnet-4"],
    ["anthropic", "claude-haiku-4"],
    ["gemini", "gemini-2.5-pro"],
    ["openai", "o3"],
  ];
  const sessions = Array.from({ length: 60 }, (_, i) => `s-${i.toString(16).padStart(8, "0")}`);
  const rules = Array.from({ length: 25 }, (_, i) => `rule-${i}`);
  // Rows arrive in time order, as the writer stores them.
  const ts = Float64Array.from(
    { length: n },
    () => now - Math.floor(Math.pow(rnd(), 1.5) * spanMs),
  ).sort();
  const store = AuditStore.open(path, { flushMs: 3_600_000, maxQueue: n + 1 });
  for (let i = 0; i < n; i++) {
    const h = zipf(hosts.length);
    const r = rnd();
    const decision: AuditEventV1["decision"] = r < 0.08
      ? "deny"
      : r < 0.10
      ? "would_deny"
      : r < 0.11
      ? "error"
      : r < 0.6
      ? "allow"
      : "log";
    const ruleI = zipf(rules.length);
    const m = h < 2 && decision !== "deny" && rnd() < 0.9
      ? models[Math.floor(rnd() * models.length)]
      : null;
    const session = rnd() < 0.3 ? null : sessions[zipf(sessions.length)];
    const input = m ? Math.floor(rnd() * 5000) : null;
    const output = m ? Math.floor(rnd() * 1000) : null;
    store.add({
      id: newDecisionId(ts[i]),
      ts: ts[i],
      session,
      label: session ? `agent-${session.slice(-2)}` : null,
      client: "127.0.0.1",
      method: m ? "POST" : "GET",
      scheme: "https",
      host: hosts[h],
      port: 443,
      path: `/v1/p${i % 1000}`,
      query: null,
      status: decision === "deny" ? 403 : decision === "error" ? 502 : 200,
      decision,
      rule: decision === "log" && r > 0.9 ? null : rules[ruleI],
      rule_source: `agentgate.yaml:${ruleI * 4 + 5}`,
      reason: decision === "deny" ? `blocked by ${rules[ruleI]}` : "matched",
      policy: null,
      bytes_in: 100,
      bytes_out: 2000,
      duration_ms: 12.5,
      error: decision === "error" ? "upstream refused" : null,
      headers: '{"accept":"*/*"}',
      provider: m?.[0] ?? null,
      model: m?.[1] ?? null,
      input_tokens: input,
      output_tokens: output,
      cost_usd: m ? (input! * 2.5 + output! * 10) / 1e6 : null,
    });
    if (i % 10_000 === 9_999) store.flush();
  }
  store.close();
}

async function serve(auditPath: string) {
  const { config } = parseConfig(
    "version: 1\ndefault: log\nrules:\n  - name: rule-0\n    match: '*'\n    action: log\n",
    "bench.yaml",
    Deno.cwd(),
  );
  const handler = createInternalRoutes({
    version: "bench",
    startedAt: Date.now(),
    reader: openAuditReader(auditPath),
    audit: { queueDepth: 0, lastError: null, writeErrors: 0 },
    config: () => config,
    metrics: new Metrics({
      auditQueueDepth: () => 0,
      auditWriteErrors: () => 0,
      tunnelsOpen: () => 0,
      leafCacheSize: () => 0,
    }),
    dashboard: true,
    token: null,
  }, { cache: false }); // time every answer, never the reuse of a slow one
  const server = http.createServer((req, res) => handler(req, res, (req.url ?? "/").split("?")[0]));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      handler.close();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function time(url: string, runs = 7): Promise<{ median: number; max: number }> {
  await (await fetch(url)).arrayBuffer(); // warm: open, prepare, page cache
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const res = await fetch(url);
    await res.arrayBuffer();
    ms.push(performance.now() - t);
    assert.equal(res.status, 200);
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(runs / 2)], max: ms[runs - 1] };
}

for (
  const [name, spanMs] of [
    ["30 days of traffic", 30 * 86_400_000],
    ["every row in the last 24 h (worst case)", 86_400_000],
  ] as const
) {
  Deno.test({
    name: `bench: stats?hours=24 on ${ROWS.toLocaleString("en-US")} rows, ${name}`,
    ignore: !ENABLED,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "agentgate-bench-" });
      const path = `${dir}/audit.db`;
      try {
        const t0 = performance.now();
        seedAudit(path, ROWS, spanMs, Date.now());
        const seeded = performance.now() - t0;
        const srv = await serve(path);
        try {
          const results: Record<string, { median: number; max: number }> = {};
          for (
            const p of [
              "/_/api/stats?hours=24",
              "/_/api/stats?hours=1",
              "/_/api/stats?hours=168",
              "/_/api/stats?hours=24&session=s-00000000",
              "/_/dashboard",
              "/_/api/audit",
              "/_/api/audit?decision=deny,would_deny",
              "/_/api/audit?host=pypi.org",
              "/_/api/audit?rule=rule-3",
              "/_/api/audit?search=p999",
              "/_/api/sessions",
              "/_/api/rules",
            ]
          ) results[p] = await time(srv.url + p);
          console.log(`\n${ROWS} rows, ${name}; seeded in ${(seeded / 1000).toFixed(1)} s`);
          for (const [p, r] of Object.entries(results)) {
            console.log(
              `  ${p.padEnd(44)} median ${r.median.toFixed(1).padStart(6)} ms  max ${
                r.max.toFixed(1).padStart(6)
              } ms`,
            );
          }
          assert.ok(
            results["/_/api/stats?hours=24"].median <= BUDGET_MS,
            `stats?hours=24 took ${results["/_/api/stats?hours=24"].median.toFixed(1)} ms`,
          );
        } finally {
          await srv.close();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
