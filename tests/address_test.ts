/**
 * Resolve, check, connect to what was checked: names that point at cloud
 * metadata, loopback and private addresses, DNS answers that change between
 * queries (rebinding), every spelling of the metadata address, and names that
 * point back at the proxy — over plain requests, CONNECT tunnels, intercepted
 * requests and WebSocket upgrades. A test DNS server (`upstream.dns`) gives
 * the answers; origins listen on 127.0.0.x and count their connections.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { auditRows, startProxy, testPki, waitForRows } from "./helpers.ts";
import { startDns } from "./support/dns.ts";

/** An HTTP(S) origin on a chosen loopback address (and port), counting connections. */
async function originOn(
  host: string,
  body: string,
  opts: { port?: number; tls?: { cert: string; key: string } } = {},
) {
  const handler: http.RequestListener = (req, res) => {
    if (req.headers.upgrade?.toLowerCase() === "websocket") return;
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(body);
  };
  const server = opts.tls
    ? (await import("node:https")).createServer(opts.tls, handler)
    : http.createServer(handler);
  const o = { port: 0, connections: 0, close: () => Promise.resolve() };
  const sockets = new Set<net.Socket>();
  server.on(opts.tls ? "secureConnection" : "connection", (s: net.Socket) => {
    o.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  // WebSocket: answer the handshake, then echo.
  server.on("upgrade", (_req, socket: net.Socket) => {
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    socket.write(`${body}:`);
    socket.on("data", (d) => socket.write(d));
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, host, () => r()));
  o.port = (server.address() as net.AddressInfo).port;
  o.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return o;
}

/** A free port on every loopback address we use (so origins can share it, as after rebinding). */
async function sharedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Send raw bytes to the proxy and read everything it answers until it closes. */
async function raw(proxyPort: number, text: string): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort });
  await conn.write(new TextEncoder().encode(text));
  let out = "";
  const buf = new Uint8Array(65536);
  const deadline = setTimeout(() => conn.close(), 10_000);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      out += new TextDecoder().decode(buf.subarray(0, n));
    }
  } catch {
    // closed by the deadline
  } finally {
    clearTimeout(deadline);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0);
  return { status, body: out.slice(out.indexOf("\r\n\r\n") + 4) };
}

const get = (target: string, host: string) =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
const connect = (authority: string) =>
  `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;

Deno.test("address guard: names that resolve to metadata, loopback or private addresses are refused", async () => {
  const local = await originOn("127.0.0.1", "local service");
  const dns = await startDns({
    "metadata.test": ["169.254.169.254"],
    "local.test": ["127.0.0.1"],
    "private.test": ["10.1.2.3"],
    "nat64.test": ["64:ff9b::a9fe:a9fe"],
    "ula.test": ["fd00:ec2::254"],
    "zero.test": ["0.0.0.0"],
    "mixed.test": ["169.254.169.254", "127.0.0.1", "10.0.0.1"],
  });
  const proxy = await startProxy({
    config: `version: 1
default: deny
upstream: { dns: "${dns.address}", connect_timeout: 2s }
audit: { path: ./audit.db }
rules:
  - name: tests
    match: "*.test"
    action: allow
`,
  });
  try {
    const table: [string, string][] = [
      [
        "metadata.test",
        '"metadata.test" resolves to 169.254.169.254 (link-local / cloud metadata): denied',
      ],
      ["local.test", '"local.test" resolves to 127.0.0.1 (loopback): denied'],
      ["private.test", '"private.test" resolves to 10.1.2.3 (private): denied'],
      [
        "nat64.test",
        '"nat64.test" resolves to 64:ff9b::a9fe:a9fe, which embeds 169.254.169.254 (link-local / cloud metadata): denied',
      ],
      ["ula.test", '"ula.test" resolves to fd00:ec2::254 (unique-local / cloud metadata): denied'],
      ["zero.test", '"zero.test" resolves to 0.0.0.0 (unspecified / this network): denied'],
      [
        "mixed.test",
        '"mixed.test" resolves to 169.254.169.254 (link-local / cloud metadata): denied',
      ],
    ];
    for (const [name, reason] of table) {
      // Plain HTTP, on the local service's port: a proxy that trusted the name would reach it.
      const plain = await raw(proxy.port, get(`http://${name}:${local.port}/x`, name));
      assert.equal(plain.status, 403, `${name}: ${plain.body}`);
      const j = JSON.parse(plain.body);
      assert.deepEqual([j.error, j.rule, j.policy, j.reason], [
        "denied",
        "tests",
        "address",
        reason,
      ]);
      // And through CONNECT.
      const tunnel = await raw(proxy.port, connect(`${name}:${local.port}`));
      assert.equal(tunnel.status, 403, name);
      assert.equal(JSON.parse(tunnel.body).reason, reason);
    }
    assert.equal(local.connections, 0, "the local service was reached");

    // One row per request, with the address that was refused.
    const rows = await waitForRows(proxy.auditPath, table.length * 2);
    assert.equal(rows.length, table.length * 2);
    assert.ok(
      rows.every((r) => r.decision === "deny" && r.status === 403 && r.policy === "address"),
    );
    assert.deepEqual(
      rows.filter((r) => r.method === "GET").map((r) => [r.host, r.dest_ip]),
      [
        ["metadata.test", "169.254.169.254"],
        ["local.test", "127.0.0.1"],
        ["private.test", "10.1.2.3"],
        ["nat64.test", "64:ff9b::a9fe:a9fe"],
        ["ula.test", "fd00:ec2::254"],
        ["zero.test", "0.0.0.0"],
        ["mixed.test", "169.254.169.254"],
      ],
    );

    // A name the policy denies is never looked up (no DNS query to leak it through)…
    const other = await raw(proxy.port, get("http://secret-data.elsewhere.example/", "x"));
    assert.equal(other.status, 403);
    assert.equal(JSON.parse(other.body).reason, "no rule matched (default: deny)");
    assert.equal(dns.asked("secret-data.elsewhere.example"), 0);
    // …and every name above was resolved once per request (A and AAAA), never again.
    assert.deepEqual(dns.queries.get("metadata.test"), { A: 2, AAAA: 2 });
  } finally {
    await proxy.dispose();
    await local.close();
    await dns.close();
  }
});

Deno.test("address guard: every spelling of the metadata address, plain and through CONNECT", async () => {
  const proxy = await startProxy({
    config: `version: 1
default: log
upstream: { connect_timeout: 1s }
audit: { path: ./audit.db }
rules:
  - { name: everything, match: "*", action: allow }
`,
  });
  try {
    const spellings = [
      "169.254.169.254",
      "2852039166",
      "0xa9fea9fe",
      "0xa9.0xfe.0xa9.0xfe",
      "0251.0376.0251.0376",
      "169.254.43518",
      "[::ffff:169.254.169.254]",
      "[::ffff:a9fe:a9fe]",
      "[::169.254.169.254]",
      "[::ffff:0:169.254.169.254]",
      "[64:ff9b::a9fe:a9fe]",
      "[64:ff9b::169.254.169.254]",
      "[64:ff9b:1::a9fe:a9fe]",
    ];
    for (const s of spellings) {
      const plain = await raw(proxy.port, get(`http://${s}/latest/meta-data/`, s));
      assert.equal(plain.status, 403, `${s}: ${plain.body}`);
      const j = JSON.parse(plain.body);
      assert.equal(j.policy, "address", s);
      assert.match(j.reason, /169\.254\.169\.254.*\(link-local \/ cloud metadata\): denied$/, s);
      const tunnel = await raw(proxy.port, connect(`${s}:443`));
      assert.equal(tunnel.status, 403, `CONNECT ${s}: ${tunnel.body}`);
      assert.equal(JSON.parse(tunnel.body).policy, "address");
    }
    const rows = await waitForRows(proxy.auditPath, spellings.length * 2);
    assert.ok(rows.every((r) => r.decision === "deny" && r.rule === "everything"));
  } finally {
    await proxy.dispose();
  }
});

Deno.test("address guard: DNS rebinding — the proxy connects only to the address it checked", async () => {
  const port = await sharedPort();
  // Same port on three loopback addresses: what a rebinding attacker hopes to switch between.
  const allowed = await originOn("127.0.0.2", "allowed origin", { port });
  const second = await originOn("127.0.0.3", "second origin", { port });
  const victim = await originOn("127.0.0.1", "local victim", { port });
  let phase = 0;
  const dns = await startDns({
    // The first query of each phase is answered with the allowed address, every later one with
    // loopback: a proxy that checks one answer and connects by name gets the victim.
    "rebind.test": (asked) =>
      phase === 0
        ? (asked === 0 ? ["127.0.0.2"] : ["127.0.0.1"])
        : phase === 1
        ? ["127.0.0.3"]
        : ["127.0.0.1"],
  });
  const proxy = await startProxy({
    config: `version: 1
default: log
upstream: { dns: "${dns.address}" }
audit: { path: ./audit.db }
rules:
  - name: internal-api
    match: [127.0.0.2/32, 127.0.0.3/32]
    action: allow
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  try {
    const first = await fetch(`http://rebind.test:${port}/a`, { client });
    assert.equal(first.status, 200);
    assert.equal(await first.text(), "allowed origin");
    assert.equal(dns.queries.get("rebind.test")?.A, 1, "resolved once");
    assert.equal(victim.connections, 0);

    // The pool holds a connection to 127.0.0.2; the name now points at 127.0.0.3 (also allowed):
    // the request goes there, never over the pooled connection to the old address.
    phase = 1;
    const moved = await fetch(`http://rebind.test:${port}/b`, { client });
    assert.equal(await moved.text(), "second origin");
    assert.equal(allowed.connections, 1);
    assert.equal(second.connections, 1);

    // Now loopback: checked, refused, and the victim never sees a connection.
    phase = 2;
    const denied = await fetch(`http://rebind.test:${port}/c`, { client });
    assert.equal(denied.status, 403);
    const j = await denied.json();
    assert.equal(j.reason, '"rebind.test" resolves to 127.0.0.1 (loopback): denied');
    assert.equal(j.rule, null); // the range rule does not match 127.0.0.1: the default decided
    const tunnel = await raw(proxy.port, connect(`rebind.test:${port}`));
    assert.equal(tunnel.status, 403);
    assert.equal(victim.connections, 0, "the rebound address was connected to");

    const rows = await waitForRows(proxy.auditPath, 4);
    assert.deepEqual(rows.map((r) => [r.path, r.decision, r.rule, r.dest_ip]), [
      ["/a", "allow", "internal-api", "127.0.0.2"],
      ["/b", "allow", "internal-api", "127.0.0.3"],
      ["/c", "deny", null, "127.0.0.1"],
      [null, "deny", null, "127.0.0.1"],
    ]);
  } finally {
    client.close();
    await proxy.dispose();
    for (const o of [allowed, second, victim]) await o.close();
    await dns.close();
  }
});

Deno.test("address guard: explicit allows — allow_private, literal addresses, pins, dest.ip", async () => {
  const origin = await originOn("127.0.0.2", "internal");
  const dns = await startDns({
    "svc.corp.test": ["127.0.0.2"],
    "other.corp.test": ["127.0.0.2"],
    "cond.test": ["127.0.0.2"],
    "meta.corp.test": ["169.254.169.254"],
  });
  const proxy = await startProxy({
    config: `version: 1
default: log
upstream:
  dns: "${dns.address}"
  connect_timeout: 1s
  resolve: { "pinned.test:${origin.port}": "127.0.0.2:${origin.port}" }
audit: { path: ./audit.db }
rules:
  - name: corp
    match: "svc.corp.test"
    action: allow
    allow_private: true
  - name: corp-meta
    match: "meta.corp.test"
    action: allow
    allow_private: true
  - name: by-condition
    match: cond.test
    when: cidr(dest.ip, "127.0.0.0/30") && dest.ip != "127.0.0.1"
    action: allow
    allow_private: true
  - name: literal
    match: 127.0.0.2
    action: allow
`,
  });
  const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
  const fetchText = async (url: string) => {
    const r = await fetch(url, { client });
    return [r.status, await r.text()];
  };
  try {
    assert.deepEqual(await fetchText(`http://svc.corp.test:${origin.port}/`), [200, "internal"]);
    // allow_private never opens cloud metadata: only a rule naming the address can.
    const meta = await fetch(`http://meta.corp.test:${origin.port}/`, { client });
    assert.equal(meta.status, 403);
    assert.equal(
      (await meta.json()).reason,
      '"meta.corp.test" resolves to 169.254.169.254 (link-local / cloud metadata): denied',
    );
    // No rule for this name: the default (log) may not reach loopback.
    const other = await fetch(`http://other.corp.test:${origin.port}/`, { client });
    assert.equal(other.status, 403);
    await other.body?.cancel();
    assert.deepEqual(await fetchText(`http://cond.test:${origin.port}/`), [200, "internal"]);
    assert.deepEqual(await fetchText(`http://127.0.0.2:${origin.port}/`), [200, "internal"]);
    // Pinned by the operator: an explicit choice, not judged (no DNS query either).
    assert.deepEqual(await fetchText(`http://pinned.test:${origin.port}/`), [200, "internal"]);
    assert.equal(dns.asked("pinned.test"), 0);
    const rows = await waitForRows(proxy.auditPath, 6);
    assert.deepEqual(rows.map((r) => [r.host, r.decision, r.rule, r.dest_ip]), [
      ["svc.corp.test", "allow", "corp", "127.0.0.2"],
      ["meta.corp.test", "deny", "corp-meta", "169.254.169.254"],
      ["other.corp.test", "deny", null, "127.0.0.2"],
      ["cond.test", "allow", "by-condition", "127.0.0.2"],
      ["127.0.0.2", "allow", "literal", "127.0.0.2"],
      ["pinned.test", "log", null, "127.0.0.2"],
    ]);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
    await dns.close();
  }
});

Deno.test("address guard: loops by address — a name that is the proxy gets 508, also via CONNECT", async () => {
  const dns = await startDns({ "self.test": ["127.0.0.1"], "self6.test": ["::ffff:127.0.0.1"] });
  const proxy = await startProxy({
    config: `version: 1
default: log
upstream: { dns: "${dns.address}" }
audit: { path: ./audit.db }
rules:
  - name: anything-local
    match: "*"
    action: allow
    allow_private: true
`,
  });
  try {
    for (const name of ["self.test", "self6.test", "localhost"]) {
      const tunnel = await raw(
        proxy.port,
        connect(`${name}:${proxy.port}`) + `GET /_/api/config HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      assert.equal(tunnel.status, 508, `${name}: ${tunnel.body}`);
      const j = JSON.parse(tunnel.body);
      assert.equal(j.error, "loop_detected");
      assert.equal(
        j.reason,
        `"${name}:${proxy.port}" resolves to 127.0.0.1:${proxy.port}, this proxy: the request would loop`,
      );
      assert.doesNotMatch(tunnel.body, /"policy"|"rules"/); // the API never answered inside
      if (name === "localhost") continue; // absolute-form to the proxy's own name: its routes
      const plain = await raw(proxy.port, get(`http://${name}:${proxy.port}/_/api/config`, name));
      assert.equal(plain.status, 508, name);
      assert.doesNotMatch(plain.body, /"rules"/);
    }
    const rows = await waitForRows(proxy.auditPath, 5);
    assert.ok(rows.every((r) => r.status === 508 && r.decision === "error"));
    assert.ok(rows.every((r) => r.dest_ip === "127.0.0.1"));
  } finally {
    await proxy.dispose();
    await dns.close();
  }
});

Deno.test("address guard: WebSocket upgrades and intercepted requests connect to the checked address", async () => {
  const pki = await testPki(["api.intercept.test", "ws.test"]);
  const port = await sharedPort();
  const good = await originOn("127.0.0.2", "good", { port, tls: pki });
  const victim = await originOn("127.0.0.1", "victim", { port, tls: pki });
  const wsGood = await originOn("127.0.0.2", "ws-good");
  let phase = 0;
  const dns = await startDns({
    "api.intercept.test": () => (phase === 0 ? ["127.0.0.2"] : ["127.0.0.1"]),
    "ws.test": () => (phase === 0 ? ["127.0.0.2"] : ["127.0.0.1"]),
  });
  const proxy = await startProxy({
    files: { "origin-ca.pem": pki.caPem },
    config: `version: 1
default: log
tls:
  intercept: [api.intercept.test]
  ca_dir: ./ca
  upstream_ca: ./origin-ca.pem
upstream: { dns: "${dns.address}" }
audit: { path: ./audit.db }
rules:
  - name: internal
    match: 127.0.0.2/32
    action: allow
`,
  });
  const caPem = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
  const client = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
  const upgrade = (host: string) =>
    new Promise<string>((resolve) => {
      const s = net.connect(proxy.port, "127.0.0.1");
      let got = "";
      let pinged = false;
      s.on("data", (d) => {
        got += d.toString();
        if (!pinged && got.includes("ws-good:")) {
          pinged = true;
          s.write("ping");
        }
        if (got.endsWith("ping") || /^HTTP\/1\.1 [45]/.test(got)) s.end();
      });
      s.on("close", () => resolve(got));
      s.on("error", () => resolve(got));
      s.write(
        `GET http://${host}/chat HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\n` +
          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
          "Sec-WebSocket-Version: 13\r\n\r\n",
      );
    });
  try {
    const ok = await fetch(`https://api.intercept.test:${port}/v1/x`, { client });
    assert.equal(await ok.text(), "good");
    const ws = await upgrade(`ws.test:${wsGood.port}`);
    assert.match(ws, /^HTTP\/1\.1 101 /);
    assert.match(ws, /ws-good:ping$/);

    phase = 1; // both names now point at loopback
    const inside = await fetch(`https://api.intercept.test:${port}/v1/y`, { client });
    assert.equal(inside.status, 403);
    assert.equal(
      (await inside.json()).reason,
      '"api.intercept.test" resolves to 127.0.0.1 (loopback): denied',
    );
    const ws2 = await upgrade(`ws.test:${wsGood.port}`);
    assert.match(ws2, /^HTTP\/1\.1 403 /);
    assert.equal(
      JSON.parse(ws2.slice(ws2.indexOf("\r\n\r\n") + 4)).reason,
      '"ws.test" resolves to 127.0.0.1 (loopback): denied',
    );
    assert.equal(victim.connections, 0);

    await waitForRows(proxy.auditPath, 4, "method != 'CONNECT'");
    const rows = auditRows(proxy.auditPath, "method != 'CONNECT'");
    assert.deepEqual(rows.map((r) => [r.scheme, r.path, r.status, r.dest_ip]), [
      ["https", "/v1/x", 200, "127.0.0.2"],
      ["http", "/chat", 101, "127.0.0.2"],
      ["https", "/v1/y", 403, "127.0.0.1"],
      ["http", "/chat", 403, "127.0.0.1"],
    ]);
  } finally {
    client.close();
    await proxy.dispose();
    for (const o of [good, victim, wsGood]) await o.close();
    await dns.close();
  }
});

Deno.test("address guard: a DNS server that never answers, or has no address, is a 502", async () => {
  const dns = await startDns({ "silent.test": "silent", "gone.test": [] });
  const proxy = await startProxy({
    config: `version: 1
default: log
upstream: { dns: "${dns.address}", connect_timeout: 1s }
audit: { path: ./audit.db }
`,
  });
  try {
    const t0 = performance.now();
    const slow = await raw(proxy.port, get("http://silent.test/", "silent.test"));
    assert.equal(slow.status, 502);
    assert.deepEqual(JSON.parse(slow.body).reason, 'DNS lookup failed for "silent.test:80"');
    assert.ok(performance.now() - t0 < 5000);
    const none = await raw(proxy.port, connect("gone.test:443"));
    assert.equal(none.status, 502);
    assert.equal(JSON.parse(none.body).reason, 'DNS lookup failed for "gone.test:443"');
    const rows = await waitForRows(proxy.auditPath, 2);
    assert.deepEqual(rows.map((r) => [r.decision, r.error, r.dest_ip]), [
      ["error", "upstream dns", null],
      ["error", "upstream dns", null],
    ]);
  } finally {
    await proxy.dispose();
    await dns.close();
  }
});

Deno.test("address guard: mode audit records refused addresses as would_deny and forwards to them", async () => {
  const origin = await originOn("127.0.0.2", "reached");
  const dns = await startDns({ "blocked.test": ["127.0.0.2"], "local.test": ["127.0.0.2"] });
  const proxy = await startProxy({
    config: `version: 1
mode: audit
default: log
upstream: { dns: "${dns.address}" }
audit: { path: ./audit.db }
rules:
  - { name: blocked, match: blocked.test, action: deny, reason: no }
  - { name: needs-path, match: "blocked.test/x/**", action: allow }
`,
  });
  try {
    // Denied by a rule (nothing asked for the address yet): still resolved, and connected to
    // what was resolved.
    const byRule = await raw(
      proxy.port,
      get(`http://blocked.test:${origin.port}/`, "blocked.test"),
    );
    assert.equal(byRule.status, 200);
    assert.match(byRule.body, /reached/);
    // Refused by the guard: would_deny, forwarded.
    const byAddress = await raw(proxy.port, get(`http://local.test:${origin.port}/`, "local.test"));
    assert.match(byAddress.body, /reached/);
    // A tunnel denied by a rule is opened too.
    const tunnel = await raw(
      proxy.port,
      connect(`blocked.test:${origin.port}`) + get("/t", `blocked.test:${origin.port}`),
    );
    assert.match(tunnel.body, /reached/); // the origin answered inside the tunnel
    const rows = await waitForRows(proxy.auditPath, 3);
    assert.deepEqual(rows.map((r) => [r.host, r.decision, r.rule, r.policy, r.dest_ip]), [
      ["blocked.test", "would_deny", "blocked", null, "127.0.0.2"],
      ["local.test", "would_deny", null, "address", "127.0.0.2"],
      ["blocked.test", "would_deny", "blocked", null, "127.0.0.2"],
    ]);
  } finally {
    await proxy.dispose();
    await origin.close();
    await dns.close();
  }
});
