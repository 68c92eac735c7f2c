/**
 * The fleet view in a real browser: the dashboard's Backends panel shows the
 * Redis that holds the limits' counters, up with its latency, then down with
 * its error once the server is killed — what `/_/api/health` says, where an
 * operator looks. Needs Chromium and `redis-server` (skipped with a line
 * saying which is missing).
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startOrigin, startProxy } from "./helpers.ts";
import { prerequisite } from "./support/prerequisites.ts";
import { startRedis } from "./support/redis.ts";

// The callbacks given to page.waitForFunction run in the page, which has a DOM.
// deno-lint-ignore no-explicit-any
declare const document: any;

const CHROMIUM = prerequisite("chromium");
const REDIS = prerequisite("redis-server");

Deno.test({
  name: REDIS.testName(CHROMIUM.testName("fleet view: the dashboard shows Redis up, then down")),
  ignore: !CHROMIUM.found || !REDIS.found,
  async fn() {
    const redis = await startRedis();
    const origin = await startOrigin((_q, r) => r.end("ok"));
    const proxy = await startProxy({
      config: `version: 1
default: deny
audit: { path: ./audit.db }
state: { redis: "${redis.url}", on_state_error: deny, timeout: 500ms }
rules:
  - name: limited
    match: 127.0.0.1/limited/**
    action: allow
    policies: [{ rate_limit: { requests: 1000, per: 1h, key: global } }]
`,
    });
    const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
    const get = async () => {
      const r = await fetch(`${origin.url}/limited/x`, { client });
      await r.body?.cancel();
      return r.status;
    };
    const browser = await chromium.launch({
      executablePath: CHROMIUM.tool,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
      timeout: 30_000,
    });
    try {
      assert.equal(await get(), 200);
      const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
      page.setDefaultTimeout(15_000);
      await page.goto(`${proxy.url}/_/dashboard`);
      const row = '#backends tr[data-backend="state/redis"]';
      const cellsOf = () =>
        page.$$eval(`${row} td`, (tds) => tds.map((t) => (t.textContent ?? "").trim()));
      await page.waitForSelector(row);
      let cells = await cellsOf();
      assert.deepEqual(cells.slice(0, 4), ["state", "redis", redis.url, "up"]);
      assert.match(cells[4], /^\d+\.\d ms$/);
      assert.equal(cells[5], "0");

      await redis.kill();
      // A limited request needs the counters: it finds Redis gone and is refused.
      assert.equal(await get(), 503);
      await page.waitForFunction(
        (sel: string) =>
          (document.querySelector(sel)?.children[3]?.textContent ?? "").startsWith("down"),
        row,
      );
      cells = await cellsOf();
      assert.match(cells[3], /^down/);
      assert.ok(Number(cells[5]) >= 1, `errors: ${cells[5]}`);
      assert.notEqual(cells[8], "", "the last error is shown");
      assert.ok(!cells.join(" ").includes("password"));
    } finally {
      await browser.close();
      client.close();
      await proxy.dispose();
      await origin.close();
      await redis.stop();
    }
  },
});
