/**
 * Live reload under load: the policy file is replaced by a good, a broken,
 * then a good policy while a client keeps sending requests.
 */
import assert from "node:assert/strict";
import { auditRows, startOrigin, startProxy, waitFor, waitForRows } from "./helpers.ts";

const policy = (a: "allow" | "deny", b: "allow" | "deny", limit = 2) =>
  `version: 1
default: deny
audit: { path: ./audit.db }
rules:
  - { name: a, match: "127.0.0.1/a/**", action: ${a} }
  - { name: b, match: "127.0.0.1/b/**", action: ${b} }
  - name: limited
    match: 127.0.0.1/limited/**
    action: allow
    policies:
      - rate_limit: { requests: ${limit}, per: 1m, key: global }
`;

Deno.test("reload: swaps at once under load, rejects a broken file, keeps counters", async () => {
  const origin = await startOrigin((_q, r) => r.end("ok"));
  const proxy = await startProxy({ config: policy("allow", "deny") });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  const file = `${proxy.dir}/agentgate.yaml`;
  const failures: string[] = [];
  const seen: { t: number; a: number; b: number }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const [a, b] = await Promise.all(
          ["/a/1", "/b/1"].map(async (p) => {
            const r = await fetch(`${origin.url}${p}`, { client });
            await r.body?.cancel();
            return r.status;
          }),
        );
        if (![200, 403].includes(a) || ![200, 403].includes(b)) failures.push(`${a} ${b}`);
        seen.push({ t: Date.now(), a, b });
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
  })();
  const latest = () => seen[seen.length - 1];
  const health = async () => (await (await fetch(`${proxy.url}/_/health`)).json());
  try {
    await waitFor(() => seen.length > 5, "traffic");
    assert.deepEqual([latest().a, latest().b], [200, 403]);

    // Two of three limited requests used before the reload.
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${origin.url}/limited/${i}`, { client });
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }

    // 1. A good policy: decisions switch once the file changes.
    await Deno.writeTextFile(`${file}.tmp`, policy("deny", "allow"));
    await Deno.rename(`${file}.tmp`, file);
    await waitFor(() => latest().a === 403 && latest().b === 200, "the swap");
    const h1 = await health();
    assert.equal(h1.last_reload.ok, true);
    assert.equal(h1.last_reload.trigger, "file change");
    // The surviving rule kept its counter: a third request is the limit's third.
    const third = await fetch(`${origin.url}/limited/3`, { client });
    assert.equal(third.status, 429);
    await third.body?.cancel();

    // 2. A broken policy: rejected with file:line:col, the old one keeps serving.
    await Deno.writeTextFile(
      file,
      policy("allow", "allow").replace("action: allow }", "action: alow }"),
    );
    await waitFor(async () => (await health()).last_reload.ok === false, "the rejected reload");
    const h2 = await health();
    assert.match(
      h2.last_reload.errors[0],
      /agentgate\.yaml:5:\d+: "action" of rule "a" must be one of/,
    );
    const before = seen.length;
    await waitFor(() => seen.length > before + 5, "more traffic");
    assert.deepEqual([latest().a, latest().b], [403, 200]);

    // 3. A good policy through the API and SIGHUP.
    await Deno.writeTextFile(file, policy("allow", "deny"));
    const api = await fetch(`${proxy.url}/_/api/reload`, { method: "POST" });
    const st = await api.json();
    assert.equal(api.status, 200);
    assert.equal(st.ok, true);
    await waitFor(() => latest().a === 200 && latest().b === 403, "the third swap");
    Deno.kill(proxy.pid, "SIGHUP");
    await waitFor(async () => (await health()).last_reload.trigger === "SIGHUP", "SIGHUP reload");

    running = false;
    await loop;
    assert.deepEqual(failures, [], "no request failed because of a reload");
    assert.ok(seen.length > 30, `${seen.length} request pairs`);
    assert.equal(await proxy.stop(), 0);
  } finally {
    running = false;
    await loop;
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

/** POSIX locks `pid` holds on the file `path` (Linux /proc/locks). */
function locksHeld(pid: number, path: string): string[] {
  const ino = Deno.statSync(path).ino;
  return Deno.readTextFileSync("/proc/locks").split("\n").filter((l) => {
    const f = l.trim().split(/\s+/);
    return f[1] === "POSIX" && f[4] === String(pid) && f[5]?.endsWith(`:${ino}`);
  });
}

Deno.test({
  name: "watching the policy leaves the SQLite locks of an audit in the same directory alone",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // Regression: Deno.watchFs on the policy's directory opened and closed the
    // audit's -shm file on every change, which dropped the proxy's POSIX locks
    // on it; a reader in another process then truncated the shared memory and
    // the proxy died of SIGBUS (src/config/watch.ts).
    const origin = await startOrigin((_q, r) => r.end("ok"));
    const proxy = await startProxy({ config: policy("allow", "deny") });
    const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
    try {
      const shm = `${proxy.auditPath}-shm`;
      for (let i = 1; i <= 5; i++) {
        const r = await fetch(`${origin.url}/a/${i}`, { client });
        await r.body?.cancel();
        await waitForRows(proxy.auditPath, i);
      }
      // A policy change in the same directory, noticed after the audit's
      // writes: a watcher that reports it has also handled every earlier
      // event there (inotify delivers them in order).
      await Deno.writeTextFile(`${proxy.dir}/agentgate.yaml`, policy("deny", "allow"));
      await waitFor(async () => {
        const h = await (await fetch(`${proxy.url}/_/health`)).json();
        return h.last_reload?.trigger === "file change";
      }, "the reload");
      assert.notDeepEqual(locksHeld(proxy.pid, shm), [], "the proxy holds its locks on -shm");
      assert.equal(auditRows(proxy.auditPath).length, 5);
      assert.equal(await proxy.stop(), 0);
    } finally {
      client.close();
      await proxy.dispose();
      await origin.close();
    }
  },
});
