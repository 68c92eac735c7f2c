/**
 * What a CONNECT carries, with real clients (issue 16): WebSocket upgrades
 * inside intercepted tunnels (Deno's WebSocket, OpenAI Realtime-shaped),
 * plain HTTP inside a CONNECT (undici, as Node 22 sends `http://` URLs),
 * and denials of intercepted hosts answered inside the TLS so that Deno
 * fetch and curl show the reason.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { curl, startOrigin, startProxy, testPki, waitFor, waitForRows } from "./helpers.ts";

const dec = new TextDecoder();
const UNDICI = fileURLToPath(new URL("./support/undici_fetch.ts", import.meta.url));

/** Run a short Deno script (a real client) with the proxy and CA in its environment. */
async function client(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    env: { NO_COLOR: "1", NO_PROXY: "", no_proxy: "", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, out: dec.decode(r.stdout).trim(), err: dec.decode(r.stderr) };
}

/** A TLS origin: WebSocket echo on any path with Upgrade, else the path it saw. */
async function wssOrigin(pki: { cert: string; key: string }) {
  const ac = new AbortController();
  let port = 0;
  const ready = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: pki.cert,
    key: pki.key,
    signal: ac.signal,
    onListen: (a) => {
      port = a.port;
      ready.resolve();
    },
  }, (req) => {
    if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onmessage = (e) => socket.send(`echo ${e.data} ${new URL(req.url).search}`);
      return response;
    }
    return new Response(`no upgrade: ${new URL(req.url).pathname}`, { status: 426 });
  });
  await ready.promise;
  return {
    port: () => port,
    close: async () => {
      ac.abort();
      await server.finished;
    },
  };
}

const WS_CLIENT = `
const ws = new WebSocket(Deno.args[0]);
const t = setTimeout(() => { console.log("timeout"); Deno.exit(2); }, 8000);
ws.onopen = () => ws.send("hello");
ws.onmessage = (e) => { console.log(e.data); clearTimeout(t); ws.close(); };
ws.onerror = (e) => { console.log("error " + e.message); clearTimeout(t); };
`;

Deno.test("WebSocket to an intercepted host (llm-providers pack): decided, relayed both ways, one row", async () => {
  const pki = await testPki(["api.openai.com"]);
  const origin = await wssOrigin(pki);
  const pack = await Deno.readTextFile(new URL("../policies/llm-providers.yaml", import.meta.url));
  const proxy = await startProxy({
    files: { "origin-ca.pem": pki.caPem, "llm-providers.yaml": pack },
    config: `version: 1
default: deny
include: [llm-providers.yaml]
tls: { ca_dir: ./ca, upstream_ca: ./origin-ca.pem }
upstream:
  resolve: { api.openai.com: 127.0.0.1:${origin.port()} }
audit: { path: ./audit.db }
rules:
  - name: scanned
    match: api.openai.com/v1/scanned/**
    action: allow
    policies:
      - dlp: { action: block, direction: both }
`,
  });
  try {
    await Deno.writeTextFile(`${proxy.dir}/ws.ts`, WS_CLIENT);
    const env = { HTTPS_PROXY: proxy.url, DENO_CERT: `${proxy.dir}/ca/ca.pem` };
    const ok = await client(
      [`${proxy.dir}/ws.ts`, "wss://api.openai.com/v1/realtime?model=gpt-realtime"],
      env,
    );
    assert.equal(ok.out, "echo hello ?model=gpt-realtime", ok.err);
    const [row] = await waitForRows(proxy.auditPath, 1, "path = '/v1/realtime'");
    assert.deepEqual(
      [row.method, row.scheme, row.status, row.decision, row.rule, row.query],
      ["GET", "https", 101, "allow", "llm-openai", "model=gpt-realtime"],
    );
    // The handshake and the frames both ways, counted on the one row.
    assert.ok((row.bytes_in as number) > 0 && (row.bytes_out as number) > 0, JSON.stringify(row));

    // Outside the pack's API paths: denied like any request, never relayed.
    const no = await client([`${proxy.dir}/ws.ts`, "wss://api.openai.com/admin/stream"], env);
    assert.match(no.out, /^error /);
    const [denied] = await waitForRows(proxy.auditPath, 1, "path = '/admin/stream'");
    assert.deepEqual(
      [denied.status, denied.decision, denied.reason],
      [403, "deny", "no rule matched (default: deny)"],
    );

    // Frames are not scanned: a rule with a dlp policy refuses rather than relay them unread.
    const scanned = await client([`${proxy.dir}/ws.ts`, "wss://api.openai.com/v1/scanned/x"], env);
    assert.match(scanned.out, /^error /);
    const [unscanned] = await waitForRows(proxy.auditPath, 1, "path = '/v1/scanned/x'");
    assert.deepEqual(
      [unscanned.status, unscanned.decision, unscanned.rule, unscanned.policy, unscanned.reason],
      [
        403,
        "deny",
        "scanned",
        "dlp",
        'WebSocket frames cannot be scanned by a dlp policy: refused (rule "scanned")',
      ],
    );
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("plain HTTP inside CONNECT (undici): each request decided with its path, labelled http", async () => {
  const origin = await startOrigin((req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`origin saw ${req.url} for ${req.headers.host}`);
  });
  const proxy = await startProxy({
    config: `version: 1
default: deny
tls: { intercept: [api.example.test], ca_dir: ./ca }
upstream:
  resolve:
    "plain.example.test:80": 127.0.0.1:${origin.port}
    "api.example.test:80": 127.0.0.1:${origin.port}
    "open.example.test:80": 127.0.0.1:${origin.port}
audit: { path: ./audit.db }
rules:
  - name: no-plain-deletes
    match: http://open.example.test
    methods: [DELETE]
    action: deny
  - name: open
    match: open.example.test
    action: allow
  - name: public
    match: plain.example.test/public/**
    action: allow
  - name: api
    match: api.example.test/v1/**
    action: allow
`,
  });
  try {
    const env = { HTTP_PROXY: proxy.url };
    const pub = await client([UNDICI, "http://plain.example.test/public/a?x=1"], env);
    assert.equal(pub.out, "200 origin saw /public/a?x=1 for plain.example.test", pub.err);
    const priv = await client([UNDICI, "http://plain.example.test/private/b"], env);
    assert.match(priv.out, /^403 /, priv.err);
    assert.equal(JSON.parse(priv.out.slice(4)).reason, "no rule matched (default: deny)");
    // An intercepted host on port 80: plain HTTP is read as such, not fed to TLS.
    const api = await client([UNDICI, "http://api.example.test/v1/models"], env);
    assert.equal(api.out, "200 origin saw /v1/models for api.example.test", api.err);

    const rows = await waitForRows(proxy.auditPath, 6);
    const inner = rows.filter((r) => r.method === "GET");
    assert.deepEqual(
      inner.map((r) => [r.scheme, r.host, r.port, r.path, r.decision, r.rule]),
      [
        ["http", "plain.example.test", 80, "/public/a", "allow", "public"],
        ["http", "plain.example.test", 80, "/private/b", "deny", null],
        ["http", "api.example.test", 80, "/v1/models", "allow", "api"],
      ],
    );
    const tunnels = rows.filter((r) => r.method === "CONNECT");
    assert.equal(tunnels.length, 3);

    // open.example.test is allowed at host level; plain DELETEs are not. An
    // agent that splits its request line, or starts with empty lines, to pass
    // it off as something else (and get an opaque tunnel) is still decided.
    for (const pieces of [["D", "ELETE /x HTTP/1.1\r\n"], ["\r\n", "DELETE /x HTTP/1.1\r\n"]]) {
      const s = net.connect(proxy.port, "127.0.0.1");
      await new Promise((r) => s.once("connect", r));
      let got = "";
      s.on("data", (d) => (got += d));
      s.write("CONNECT open.example.test:80 HTTP/1.1\r\nHost: open.example.test\r\n\r\n");
      await waitFor(() => got.includes("\r\n\r\n"), "the CONNECT answer");
      assert.match(got, /^HTTP\/1\.1 200 /);
      for (const p of pieces) {
        s.write(p);
        await new Promise((r) => setTimeout(r, 50));
      }
      s.write("Host: open.example.test\r\nConnection: close\r\n\r\n");
      await new Promise((r) => s.once("close", r));
      assert.match(got, /\r\n\r\nHTTP\/1\.1 403 Forbidden\r\n/, got);
      assert.match(got, /"rule":"no-plain-deletes"/);
      assert.ok(!got.includes("origin saw"), got);
    }
    const open = await client([UNDICI, "http://open.example.test/y"], env);
    assert.equal(open.out, "200 origin saw /y for open.example.test", open.err);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("a denied intercepted host answers inside TLS: Deno fetch and curl show the reason", async () => {
  const proxy = await startProxy({
    config: `version: 1
default: log
tls: { intercept: [blocked.example.test], ca_dir: ./ca }
audit: { path: ./audit.db }
rules:
  - name: no-blocked
    match: blocked.example.test
    action: deny
    reason: "blocked.example.test is off limits for agents: ask #platform"
`,
  });
  const reason = "blocked.example.test is off limits for agents: ask #platform";
  try {
    const caPem = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
    const http = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
    try {
      const r = await fetch("https://blocked.example.test/v1/x", { client: http });
      assert.equal(r.status, 403);
      const body = await r.json();
      assert.deepEqual([body.error, body.rule, body.reason], ["denied", "no-blocked", reason]);
      assert.equal(r.headers.get("x-agentgate-decision"), body.decision_id);
      // The tunnel's row is the denial (one row, as for a refused CONNECT).
      const [row] = await waitForRows(proxy.auditPath, 1, `id = '${body.decision_id}'`);
      assert.deepEqual(
        [row.method, row.host, row.status, row.decision, row.rule, row.reason],
        ["CONNECT", "blocked.example.test", 403, "deny", "no-blocked", reason],
      );
    } finally {
      http.close();
    }
    const c = await curl([
      "-x",
      proxy.url,
      "--cacert",
      `${proxy.dir}/ca/ca.pem`,
      "https://blocked.example.test/v1/x",
    ]);
    assert.equal(c.code, 0, c.err);
    assert.equal(JSON.parse(c.out).reason, reason);
    const rows = await waitForRows(proxy.auditPath, 2, "host = 'blocked.example.test'");
    assert.deepEqual(rows.map((r) => [r.method, r.decision]), [["CONNECT", "deny"], [
      "CONNECT",
      "deny",
    ]]);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
  }
});
