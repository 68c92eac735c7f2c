/**
 * A 50,000-rule policy reloaded while a client measures every request: the
 * load runs in a worker and the compile in slices, so no request waits for it.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { startOrigin, startProxy } from "./helpers.ts";

const HEAD = `version: 1
default: deny
audit: { path: ./audit.db }
rules:
  - { name: origin, match: "127.0.0.1/ok/**", action: allow }
`;

/** 50,000 rules of every kind the compiler and the index handle (hosts, globs, paths, CEL). */
function bigPolicy(n: number): string {
  const rules: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % 5;
    if (k === 0) rules.push(`  - { name: r${i}, match: "h${i}.example.test", action: allow }`);
    else if (k === 1) {
      rules.push(`  - { name: r${i}, match: "*.s${i}.example.test", action: deny }`);
    } else if (k === 2) {
      rules.push(`  - { name: r${i}, match: "api-${i}-*.example.test", action: log }`);
    } else if (k === 3) {
      rules.push(
        `  - { name: r${i}, match: "http://p${i}.example.test/v1/**", methods: [GET], action: allow }`,
      );
    } else {
      rules.push(
        `  - name: r${i}\n    match: "http://c${i}.example.test"\n    when: request.headers["x-team"] == "ml"\n    action: allow`,
      );
    }
  }
  rules.push('  - { name: late, match: "127.0.0.1/late/**", action: deny }');
  return HEAD + rules.join("\n") + "\n";
}

Deno.test({
  name:
    "reload: a 50,000-rule policy loads off the serving path (no request waits a twentieth of it)",
  // The proxy, an origin and the client share two cores with the load itself.
  sanitizeResources: false,
  fn: async () => {
    const origin = await startOrigin((_q, r) => r.end("ok"));
    const proxy = await startProxy({ config: HEAD });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.get({
          host: "127.0.0.1",
          port: proxy.port,
          path: `${origin.url}${path}`,
          agent,
        }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
      });
    /** Requests one after the other until `until()`; every wait, in ms. */
    const measure = async (until: () => boolean) => {
      const waits: number[] = [];
      while (!until()) {
        const t = performance.now();
        assert.equal(await get("/ok/x"), 200);
        waits.push(performance.now() - t);
      }
      return waits.sort((a, b) => b - a);
    };
    try {
      for (let i = 0; i < 200; i++) assert.equal(await get("/ok/warm"), 200);
      await Deno.writeTextFile(`${proxy.dir}/agentgate.yaml`, bigPolicy(50_000));
      const before = proxy.stderr.length;
      const reloaded = () =>
        proxy.stderr.slice(before).some((l) =>
          l.includes("policy reloaded (SIGHUP): 50002 rule(s)")
        );
      Deno.kill(proxy.pid, "SIGHUP");
      const t0 = performance.now();
      const deadline = Date.now() + 120_000;
      const waits = await measure(() => reloaded() || Date.now() > deadline);
      const took = performance.now() - t0;
      assert.ok(reloaded(), `no reload:\n${proxy.stderr.slice(before).join("\n")}`);
      // The new policy decides: its last rule denies.
      assert.equal(await get("/late/x"), 403);
      assert.ok(waits.length > 100, `only ${waits.length} requests during the reload`);
      // A load on the serving path holds one request for all of it (20 s and
      // more before the worker); in slices, the longest wait is one slice plus
      // scheduling. Measured against the reload's own length, so that a
      // machine busy with other test runs does not decide the outcome.
      assert.ok(
        waits[0] < took / 20,
        `longest wait ${waits[0].toFixed(1)} ms during a reload of ${took.toFixed(0)} ms (next: ${
          waits.slice(1, 5).map((w) => w.toFixed(1)).join(", ")
        }; ${waits.length} requests)`,
      );
      console.log(
        `reload of ${took.toFixed(0)} ms; longest wait ${
          waits[0].toFixed(1)
        } ms over ${waits.length} requests`,
      );
    } finally {
      agent.destroy();
      await proxy.dispose();
      await origin.close();
    }
  },
});
