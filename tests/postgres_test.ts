/**
 * The audit in a real PostgreSQL 15 (initdb'd into a throwaway directory,
 * stopped by PID): replicas writing one database and each one's dashboard
 * showing the fleet; secrets in no sink; PostgreSQL killed for 30 s under
 * load with no row lost, the spool drained after it returns.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { type ProxyProcess, runCli, startOrigin, startProxy, waitFor } from "./helpers.ts";
import { PG_FOUND, type PgServer, pgTestName, startPostgres } from "./support/postgres.ts";

const PW_ENV = "AGENTGATE_TEST_PGPASSWORD";

function policy(pg: PgServer, extra = "") {
  return `version: 1
default: log
audit:
  postgres: "${pg.url}"
  password_env: ${PW_ENV}
  spool: ./spool.db${extra}
rules:
  - { name: test-origins, match: 127.0.0.1, action: log }
  - { name: no-evil, match: evil.test, action: deny }
`;
}

/** One request through the proxy (absolute form); its status and decision id. */
function send(
  proxy: ProxyProcess,
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; id: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1",
      port: proxy.port,
      path: url,
      headers,
      agent: false,
    }, (res) => {
      res.resume();
      res.on("end", () =>
        resolve({
          status: res.statusCode!,
          id: String(res.headers["x-agentgate-decision"] ?? ""),
        }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function health(
  proxy: ProxyProcess,
): Promise<{ code: number; body: Record<string, unknown> }> {
  const r = await fetch(`${proxy.url}/_/health`);
  return { code: r.status, body: await r.json() };
}

Deno.test({
  name: pgTestName(
    "postgres: two replicas write one audit; each dashboard shows both; no secret in any sink",
  ),
  ignore: !PG_FOUND,
  async fn() {
    const pg = await startPostgres();
    const origin = await startOrigin((_req, res) => res.end("ok"));
    const otlpBodies: string[] = [];
    const collector = http.createServer((req, res) => {
      let b = "";
      req.on("data", (c) => b += c);
      req.on("end", () => {
        otlpBodies.push(b);
        res.end("{}");
      });
    });
    await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
    const otlp = `http://127.0.0.1:${(collector.address() as { port: number }).port}`;
    const env = { [PW_ENV]: pg.password };
    const extra = `\n  jsonl: ./decisions.jsonl\n  otlp: "${otlp}"`;
    const a = await startProxy({ config: policy(pg, extra), env });
    const b = await startProxy({ config: policy(pg, extra), env });
    try {
      assert.ok(
        a.stderr.some((l) =>
          l ===
            `audit:  postgres://agentgate@127.0.0.1:${pg.port}/agentgate (spool ${a.dir}/spool.db, password from $${PW_ENV}); streams: jsonl ${a.dir}/decisions.jsonl, otlp ${otlp}/v1/logs`
        ),
        a.stderr.join("\n"),
      );
      const secret = "sk-proj-" + "Zx9".repeat(16);
      const ids: string[] = [];
      for (const [i, p] of [a, b, a, b].entries()) {
        const r = await send(p, `${origin.url}/n${i}?api_key=${secret}`, {
          authorization: `Bearer ${secret}`,
        });
        assert.equal(r.status, 200);
        ids.push(r.id);
      }
      const denied = await send(b, "http://evil.test/x");
      assert.equal(denied.status, 403);
      ids.push(denied.id);
      // Each replica's dashboard reads the one database: every row of both.
      for (const p of [a, b]) {
        const page = await waitFor(
          async () => {
            const r = await (await fetch(`${p.url}/_/api/audit?limit=50`)).json();
            return r.total === 5 && r.items.length === 5 ? r : null;
          },
          "every row in the dashboard",
          10_000,
        );
        assert.deepEqual(
          page.items.map((x: { id: string }) => x.id).sort(),
          [...ids].sort(),
        );
        const stats = await (await fetch(`${p.url}/_/api/stats?hours=1`)).json();
        assert.deepEqual([stats.totals.requests, stats.totals.log, stats.totals.deny], [5, 4, 1]);
      }
      const rows = await pg.psql(
        "SELECT id, decision, rule, rule_source FROM audit ORDER BY ts, id",
        "agentgate",
      );
      assert.equal(rows.split("\n").length, 5);
      assert.ok(
        rows.includes(`${denied.id}|deny|no-evil|${a.dir}/agentgate.yaml:`) ||
          rows.includes(`${denied.id}|deny|no-evil|${b.dir}/agentgate.yaml:`),
        rows,
      );
      // Wait for the streams, then look for the secret everywhere a row went.
      await waitFor(
        async () => {
          const lines = (await Deno.readTextFile(`${a.dir}/decisions.jsonl`).catch(() => ""))
            .split("\n").filter(Boolean).length +
            (await Deno.readTextFile(`${b.dir}/decisions.jsonl`).catch(() => ""))
              .split("\n").filter(Boolean).length;
          const records = otlpBodies.reduce(
            (n, x) => n + JSON.parse(x).resourceLogs[0].scopeLogs[0].logRecords.length,
            0,
          );
          return lines === 5 && records === 5 ? true : null;
        },
        "the streams",
        10_000,
      );
      const everything = [
        await pg.psql("SELECT a::text FROM audit a", "agentgate"),
        await Deno.readTextFile(`${a.dir}/decisions.jsonl`),
        await Deno.readTextFile(`${b.dir}/decisions.jsonl`),
        ...otlpBodies,
      ];
      for (const text of everything) {
        assert.ok(!text.includes("Zx9Zx9"), `a secret reached a sink: ${text.slice(0, 300)}`);
      }
      assert.ok(everything[1].includes("api_key="), "the query is there, masked");
      const h = await health(a);
      assert.equal(h.code, 200);
      assert.equal(h.body.status, "ok");
      const backends = h.body.audit_backends as { kind: string; up: boolean }[];
      assert.deepEqual(backends.map((x) => [x.kind, x.up]), [
        ["postgres", true],
        ["jsonl", true],
        ["otlp", true],
      ]);
      // The fleet view lists them as backends, without the password.
      const fleet = h.body.backends as { name: string; kind: string; url: string; up: boolean }[];
      assert.deepEqual(fleet.map((x) => [x.name, x.kind, x.up]), [
        ["audit", "postgres", true],
        ["stream", "jsonl", true],
        ["stream", "otlp", true],
      ]);
      assert.ok(!JSON.stringify(h.body).includes(pg.password));
      // report and replay read the fleet's audit the policy names, not a local file.
      const cliEnv = { ...env, AGENTGATE_HOME: `${a.dir}/home` };
      const report = await runCli([
        "report",
        "--config",
        `${a.dir}/agentgate.yaml`,
        "--format",
        "json",
      ], {
        cwd: a.dir,
        env: cliEnv,
      });
      assert.equal(report.code, 0, report.err);
      const rj = JSON.parse(report.out);
      assert.equal(rj.source, `postgres://agentgate@127.0.0.1:${pg.port}/agentgate`);
      assert.equal(rj.totals.requests, 5, report.out);
      const replay = await runCli([
        "replay",
        "--config",
        `${a.dir}/agentgate.yaml`,
        "--format",
        "json",
      ], { cwd: a.dir, env: cliEnv });
      assert.equal(replay.code, 0, replay.err);
      assert.equal(JSON.parse(replay.out).total, 5, replay.out);
    } finally {
      await a.dispose();
      await b.dispose();
      await origin.close();
      await new Promise<void>((r) => collector.close(() => r()));
      await pg.dispose();
    }
  },
});

Deno.test({
  name: pgTestName(
    "postgres: killed for 30 s under load, no audit row lost; the spool drains when it returns",
  ),
  ignore: !PG_FOUND,
  async fn() {
    const pg = await startPostgres();
    const origin = await startOrigin((_req, res) => res.end("ok"));
    const proxy = await startProxy({ config: policy(pg), env: { [PW_ENV]: pg.password } });
    try {
      const answered: string[] = [];
      let running = true;
      const worker = async () => {
        for (let i = 0; running; i++) {
          const r = await send(proxy, `${origin.url}/w${i}`);
          assert.equal(r.status, 200);
          answered.push(r.id);
        }
      };
      const workers = Array.from({ length: 4 }, worker);
      await waitFor(() => answered.length >= 200 || null, "load before the kill", 30_000);
      const beforeKill = answered.length;
      await pg.stop("SIGKILL");
      // Requests keep being answered; their rows wait in the spool, and health says so.
      const during = await waitFor(
        async () => {
          const h = await health(proxy);
          return h.body.status === "audit_spooling" ? h : null;
        },
        "health to show the spool",
        10_000,
      );
      assert.equal(during.code, 200);
      const pgStatus = (during.body.audit_backends as Record<string, unknown>[])[0];
      assert.equal(pgStatus.kind, "postgres");
      assert.equal(pgStatus.up, false);
      await new Promise((r) => setTimeout(r, 30_000));
      const metrics = await (await fetch(`${proxy.url}/_/metrics`)).text();
      const spooled = Number(/^agentgate_audit_spool_rows (\d+)$/m.exec(metrics)?.[1]);
      assert.ok(spooled > 0, metrics);
      assert.match(metrics, /^agentgate_audit_spool_full 0$/m);
      const inOutage = answered.length - beforeKill;
      await pg.start();
      // Load goes on while the spool drains into the returned database.
      await waitFor(
        async () => (await health(proxy)).body.status === "ok" || null,
        "the spool to drain under load",
        60_000,
      );
      running = false;
      await Promise.all(workers);
      // Every answered request has its row in PostgreSQL, once.
      const count = async () => Number(await pg.psql("SELECT count(*) FROM audit", "agentgate"));
      try {
        await waitFor(
          async () => await count() === answered.length ? true : null,
          "every answered request's row",
          30_000,
        );
      } catch (e) {
        const h = await health(proxy);
        throw new Error(
          `${(e as Error).message}: ${await count()} of ${answered.length} rows; health ${
            JSON.stringify(h.body)
          }; stderr:\n${proxy.stderr.join("\n")}`,
        );
      }
      const ids = (await pg.psql("SELECT id FROM audit", "agentgate")).split("\n").sort();
      assert.deepEqual(ids, [...answered].sort());
      assert.ok(inOutage > 100, `only ${inOutage} request(s) during the outage`);
      const after = await waitFor(
        async () => {
          const h = await health(proxy);
          return h.body.status === "ok" ? h : null;
        },
        "health ok",
        10_000,
      );
      assert.equal((after.body.audit_backends as { spooled: number }[])[0].spooled, 0);
      assert.ok(
        proxy.stderr.some((l) => l.includes("audit spool drained: PostgreSQL has every row")),
        proxy.stderr.join("\n"),
      );
    } finally {
      await proxy.dispose();
      await origin.close();
      await pg.dispose();
    }
  },
});
