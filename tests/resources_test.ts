/**
 * Resource bounds, attacked as an agent or a hostile upstream would: a gzip
 * bomb through an intercepted LLM host, a custom DLP regex made slow by the
 * body it reads, 2,000 idle tunnels, and one client holding all the tunnels.
 */
import assert from "node:assert/strict";
import net from "node:net";
import http from "node:http";
import {
  curl,
  openFds,
  peakRssKiB,
  startOrigin,
  startProxy,
  testPki,
  waitFor,
  waitForRows,
} from "./helpers.ts";
import { gzipBomb } from "./support/gzip_bomb.ts";

/** Sequential GETs through the proxy until `stop()`; the longest wait and the count. */
function measureWaits(proxyPort: number, url: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const waits: number[] = [];
  const errors: string[] = [];
  let running = true;
  let firstDone = () => {};
  const first = new Promise<void>((r) => (firstDone = r));
  const get = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.get({ host: "127.0.0.1", port: proxyPort, path: url, agent }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
    });
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      try {
        const status = await get();
        if (status !== 200) errors.push(`status ${status}`);
      } catch (e) {
        errors.push((e as Error).message);
        break;
      }
      waits.push(performance.now() - t);
      firstDone();
    }
    firstDone();
  })();
  return {
    /** Resolves once the first request came back (the connection is up and measuring). */
    started: first,
    /** Stop and return the longest wait; throws on a failed request. */
    async stop() {
      running = false;
      await loop;
      agent.destroy();
      assert.deepEqual(errors, []);
      return { longest: Math.max(...waits), count: waits.length };
    },
  };
}

Deno.test("resources: a 2 MB gzip bomb (2 GiB inflated) from an intercepted LLM host streams unchanged, RSS stays bounded, others are not stalled", async () => {
  const bomb = gzipBomb(2048);
  const pki = await testPki(["api.openai.com"]);
  const llm = await startOrigin((req, res) => {
    req.resume();
    req.on("end", () => {
      // A hostile upstream: gzip although agentgate asked for identity.
      res.writeHead(200, {
        "content-type": "application/json",
        "content-encoding": "gzip",
        "content-length": String(bomb.length),
      });
      res.end(bomb);
    });
  }, { cert: pki.cert, key: pki.key });
  const plain = await startOrigin((_q, r) => r.end("ok"));
  const proxy = await startProxy({
    files: { "origin-ca.pem": pki.caPem },
    config: `version: 1
default: deny
tls: { intercept: [api.openai.com], ca_dir: ./ca, upstream_ca: ./origin-ca.pem }
upstream: { resolve: { api.openai.com: 127.0.0.1:${llm.port} } }
audit: { path: ./audit.db }
rules:
  - name: llm
    match: api.openai.com
    action: allow
    policies: [{ dlp: { action: warn, direction: both } }]
  - { name: plain, match: "127.0.0.1", action: allow }
`,
  });
  try {
    // Warm up both paths, then take the baseline.
    const call = () =>
      curl([
        "-x",
        proxy.url,
        "--cacert",
        `${proxy.dir}/ca/ca.pem`,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-H",
        "content-type: application/json",
        "-d",
        '{"model":"gpt-4o-mini","messages":[]}',
        "https://api.openai.com/v1/chat/completions",
      ]);
    assert.equal((await call()).out, `200 ${bomb.length}`);
    const before = await peakRssKiB(proxy.pid);
    const waits = measureWaits(proxy.port, `${plain.url}/x`);
    const results = await Promise.all([call(), call()]);
    const { longest, count } = await waits.stop();
    const after = await peakRssKiB(proxy.pid);
    // The bytes reach the client unchanged: 2 MB, not inflated, not cut.
    for (const r of results) assert.equal(r.out, `200 ${bomb.length}`);
    assert.ok(after - before < 64 * 1024, `peak RSS ${before} -> ${after} KiB`);
    assert.ok(count >= 3 && longest < 1000, `longest wait ${longest.toFixed(0)} ms of ${count}`);
    const rows = await waitForRows(
      proxy.auditPath,
      3,
      "host = 'api.openai.com' AND path IS NOT NULL",
    );
    for (const row of rows) {
      assert.equal(row.decision, "allow");
      assert.equal(row.bytes_out, bomb.length);
      assert.match(
        String(row.inspection),
        new RegExp(
          '^dlp: response not scanned: content-encoding "gzip"; usage: response body decompression ' +
            "stopped at a compression ratio over 100:1 \\(1\\d{6} bytes from \\d+\\) " +
            "\\(limits\\.max_decompressed_bytes / max_decompression_ratio\\)$",
        ),
      );
      assert.equal(row.usage_partial, 1);
    }
  } finally {
    await proxy.dispose();
    await llm.close();
    await plain.close();
  }
});

Deno.test("resources: a custom DLP regex made slow by a 1 MiB body stops at its budget; other requests are not stalled", async () => {
  const origin = await startOrigin((req, res) => {
    req.resume();
    req.on("end", () => res.end("ok"));
  });
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
rules:
  - name: upload
    match: 127.0.0.1/upload/**
    action: allow
    policies:
      - dlp: { action: warn, detectors: [aws_access_key], custom: [{ name: slow, regex: "(?s)(.*a){20}" }] }
  - { name: other, match: "127.0.0.1", action: allow }
`,
  });
  try {
    // ~1 MiB where the slow pattern keeps matching.
    await Deno.writeTextFile(`${proxy.dir}/body.txt`, "a lazy cat ate a banana ".repeat(43_000));
    const post = () =>
      curl([
        "-x",
        proxy.url,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "content-type: text/plain",
        "--data-binary",
        `@${proxy.dir}/body.txt`,
        `${origin.url}/upload/x`,
      ]);
    const waits = measureWaits(proxy.port, `${origin.url}/other`);
    await waits.started;
    const codes = await Promise.all([post(), post(), post()]);
    const { longest, count } = await waits.stop();
    assert.deepEqual(codes.map((c) => c.out), ["200", "200", "200"]);
    // Before the budget one such request held the event loop 1.7 s and more.
    assert.ok(count >= 3 && longest < 600, `longest wait ${longest.toFixed(0)} ms of ${count}`);
    const rows = await waitForRows(proxy.auditPath, 3, "rule = 'upload'");
    for (const row of rows) {
      assert.match(
        String(row.inspection),
        /^dlp: custom detector "slow" stopped after 50 ms at character \d+ of 1032000 of the request body \(limits\.max_regex_scan_time\)$/,
      );
    }
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});

/** Open a CONNECT tunnel; resolves with the status line and the socket. */
function connect(
  proxyPort: number,
  target: string,
  localAddress = "127.0.0.1",
): Promise<{ status: number; body: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port: proxyPort, localAddress });
    let buf = "";
    socket.on("error", reject);
    socket.on("data", function onData(c: Uint8Array) {
      buf += new TextDecoder().decode(c);
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      const status = Number(buf.slice(9, 12));
      if (status === 200) {
        socket.off("data", onData);
        return resolve({ status, body: "", socket });
      }
      socket.on("end", () => resolve({ status, body: buf.slice(end + 4), socket }));
    });
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  });
}

Deno.test("resources: 2,000 idle tunnels are reclaimed and their rows say why", async () => {
  // An upstream that accepts and then says nothing.
  const held = new Set<net.Socket>();
  const upstream = net.createServer((s) => {
    held.add(s);
    s.on("error", () => {});
    s.on("close", () => held.delete(s));
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
  const port = (upstream.address() as net.AddressInfo).port;
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
limits: { tunnel_idle: 4s, max_tunnels_per_client: 5000 }
rules:
  - { name: tunnels, match: "127.0.0.1:${port}", action: allow }
`,
  });
  const clients: net.Socket[] = [];
  try {
    const fds0 = await openFds(proxy.pid);
    for (let i = 0; i < 2000; i += 200) {
      const batch = await Promise.all(
        Array.from({ length: 200 }, () => connect(proxy.port, `127.0.0.1:${port}`)),
      );
      for (const t of batch) {
        assert.equal(t.status, 200);
        t.socket.on("error", () => {});
        clients.push(t.socket);
      }
    }
    const peak = await openFds(proxy.pid);
    assert.ok(peak - fds0 >= 3000, `${fds0} descriptors before, ${peak} with the tunnels open`);
    const closed = clients.map((s) => new Promise((r) => s.once("close", r)));
    await waitFor(async () => (await openFds(proxy.pid)) <= fds0 + 10, "descriptors back", 20_000);
    await Promise.all(closed);
    assert.equal(held.size, 0);
    const rows = await waitForRows(proxy.auditPath, 2000, "method = 'CONNECT'");
    assert.equal(rows.length, 2000);
    assert.deepEqual(
      [...new Set(rows.map((r) => `${r.decision} ${r.status} ${r.error}`))],
      ["allow 200 idle for 4s: closed by agentgate (limits.tunnel_idle)"],
    );
  } finally {
    for (const s of clients) s.destroy();
    await proxy.dispose();
    for (const s of held) s.destroy();
    await new Promise((r) => upstream.close(r));
  }
});

Deno.test("resources: one client address cannot hold more than max_tunnels_per_client tunnels", async () => {
  const upstream = net.createServer((s) => s.on("error", () => {}));
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
  const port = (upstream.address() as net.AddressInfo).port;
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
limits: { max_tunnels_per_client: 3 }
rules:
  - { name: tunnels, match: "127.0.0.1:${port}", action: allow }
`,
  });
  const open: net.Socket[] = [];
  try {
    const target = `127.0.0.1:${port}`;
    for (let i = 0; i < 3; i++) {
      const t = await connect(proxy.port, target);
      assert.equal(t.status, 200);
      open.push(t.socket);
    }
    const refused = await connect(proxy.port, target);
    assert.equal(refused.status, 429);
    assert.deepEqual(
      { ...JSON.parse(refused.body), decision_id: "" },
      {
        error: "too_many_tunnels",
        reason:
          'too many open tunnels from client "127.0.0.1": at most 3 (limits.max_tunnels_per_client)',
        decision_id: "",
      },
    );
    // Another client address is not affected.
    const other = await connect(proxy.port, target, "127.0.0.2");
    assert.equal(other.status, 200);
    open.push(other.socket);
    // A closed tunnel frees its place.
    const gone = new Promise((r) => open[0].once("close", r));
    open[0].destroy();
    await gone;
    await waitFor(async () => {
      const t = await connect(proxy.port, target);
      open.push(t.socket);
      return t.status === 200;
    }, "a place again");
    const rows = await waitForRows(proxy.auditPath, 1, "status = 429");
    assert.equal(rows[0].decision, "deny");
    assert.equal(rows[0].policy, "max_tunnels_per_client");
  } finally {
    for (const s of open) s.destroy();
    await proxy.dispose();
    await new Promise((r) => upstream.close(r));
  }
});

Deno.test("resources: an intercepted tunnel that never starts TLS is reclaimed too", async () => {
  const proxy = await startProxy({
    config: `version: 1
default: deny
tls: { intercept: [api.openai.com], ca_dir: ./ca }
audit: { path: ./audit.db }
limits: { tunnel_idle: 1s }
rules:
  - { name: llm, match: api.openai.com, action: allow }
`,
  });
  try {
    const t = await connect(proxy.port, "api.openai.com:443");
    assert.equal(t.status, 200);
    const started = performance.now();
    await new Promise((r) => t.socket.once("close", r));
    const after = performance.now() - started;
    assert.ok(after > 800 && after < 10_000, `closed after ${after.toFixed(0)} ms`);
    const rows = await waitForRows(proxy.auditPath, 1, "method = 'CONNECT'");
    assert.equal(rows[0].error, "idle for 1s: closed by agentgate (limits.tunnel_idle)");
  } finally {
    await proxy.dispose();
  }
});

Deno.test("resources: a response compressed against agentgate's request is cut under DLP block, noted under warn", async () => {
  const zlib = await import("node:zlib");
  const secret = zlib.gzipSync(new TextEncoder().encode("key AKIAIOSFODNN7EXAMPLE here\n"));
  const origin = await startOrigin((req, res) => {
    req.resume();
    // It was asked for identity and compresses anyway.
    res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" });
    res.end(secret);
  });
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
rules:
  - name: block
    match: 127.0.0.1/block/**
    action: allow
    policies: [{ dlp: { action: block, direction: response } }]
  - name: warn
    match: 127.0.0.1/warn/**
    action: allow
    policies: [{ dlp: { action: warn, direction: response } }]
`,
  });
  try {
    const get = (path: string) =>
      curl(["-x", proxy.url, "-o", "/dev/null", "-w", "%{size_download}", `${origin.url}${path}`]);
    const blocked = await get("/block/x");
    assert.equal(blocked.out, "0");
    const warned = await get("/warn/x");
    assert.equal(warned.out, String(secret.length));
    const [b] = await waitForRows(proxy.auditPath, 1, "rule = 'block'");
    assert.equal(
      b.error,
      'response cut by DLP: it is compressed ("gzip") and cannot be scanned (block)',
    );
    const [w] = await waitForRows(proxy.auditPath, 1, "rule = 'warn'");
    assert.equal(w.error, null);
    assert.equal(w.inspection, 'dlp: response not scanned: content-encoding "gzip"');
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});
