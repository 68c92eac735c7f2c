/**
 * TLS interception end to end: a local CA, leaves per host, full decisions
 * inside HTTPS, real handshakes with fetch, curl, python and openssl.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { curl, selfSigned, startOrigin, startProxy, testPki, waitForRows } from "./helpers.ts";

async function setup() {
  const pki = await testPki(["api.example.test"]);
  let release: () => void = () => {};
  const origin = await startOrigin((req, res) => {
    if (req.url === "/v1/stream") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write("data: first\n\n");
      // The rest comes only after the client has seen the first event.
      release = () => res.end("data: second\n\n");
      return;
    }
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        method: req.method,
        url: req.url,
        host: req.headers.host,
        body: new TextDecoder().decode(Buffer.concat(chunks)),
      }));
    });
  }, { cert: pki.cert, key: pki.key });
  const untrusted = await startOrigin((_q, r) => r.end("should never be seen"), await selfSigned());
  const proxy = await startProxy({
    files: { "origin-ca.pem": pki.caPem },
    config: `version: 1
default: deny
tls:
  intercept: [api.example.test, untrusted.example.test, misnamed.example.test]
  ca_dir: ./ca
  upstream_ca: ./origin-ca.pem
upstream:
  resolve:
    api.example.test: 127.0.0.1:${origin.port}
    untrusted.example.test: 127.0.0.1:${untrusted.port}
    misnamed.example.test: 127.0.0.1:${origin.port}
audit: { path: ./audit.db }
rules:
  - name: admin
    match: api.example.test/admin/**
    action: deny
    reason: no admin
  - name: chat
    match: api.example.test/v1/**
    methods: [POST]
    when: body.model == "ok-model"
    action: allow
  - name: reads
    match: api.example.test/v1/**
    methods: [GET]
    action: allow
  - name: untrusted
    match: [untrusted.example.test, misnamed.example.test]
    action: allow
`,
  });
  const caPem = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
  return { pki, origin, untrusted, proxy, caPem, release: () => release() };
}

Deno.test("intercept: decisions per request inside one tunnel, keep-alive, SSE, 421, 502", async (t) => {
  const { origin, untrusted, proxy, caPem, release } = await setup();
  const client = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
  let closed = false;
  try {
    assert.match(proxy.stderr.join("\n"), /CA: {5}.*\/ca\/ca\.pem \(created now;/);

    await t.step("allowed and denied paths in the same tunnel", async () => {
      const ok = await fetch("https://api.example.test/v1/models?x=1", { client });
      assert.equal(ok.status, 200);
      const body = await ok.json();
      assert.equal(body.url, "/v1/models?x=1");
      assert.equal(body.host, "api.example.test");
      const denied = await fetch("https://api.example.test/admin/users", { client });
      assert.equal(denied.status, 403);
      const j = await denied.json();
      assert.deepEqual([j.rule, j.reason], ["admin", "no admin"]);
      const [row] = await waitForRows(proxy.auditPath, 1, `id = '${j.decision_id}'`);
      assert.deepEqual(
        [row.scheme, row.host, row.port, row.path, row.decision, row.rule],
        ["https", "api.example.test", 443, "/admin/users", "deny", "admin"],
      );
    });

    await t.step("a POST is decided on its JSON body", async () => {
      const post = (model: string) =>
        fetch("https://api.example.test/v1/chat/completions", {
          method: "POST",
          body: JSON.stringify({ model, messages: [] }),
          headers: { "content-type": "application/json" },
          client,
        });
      const ok = await post("ok-model");
      assert.equal(ok.status, 200);
      assert.equal((await ok.json()).body, JSON.stringify({ model: "ok-model", messages: [] }));
      const no = await post("other");
      assert.equal(no.status, 403);
      assert.equal((await no.json()).reason, "no rule matched (default: deny)");
    });

    await t.step("server-sent events stream chunk by chunk", async () => {
      const res = await fetch("https://api.example.test/v1/stream", { client });
      const reader = res.body!.getReader();
      const first = await reader.read();
      assert.equal(new TextDecoder().decode(first.value), "data: first\n\n");
      release(); // the origin finishes only now: the first event arrived before its end
      let rest = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += new TextDecoder().decode(value);
      }
      assert.equal(rest, "data: second\n\n");
    });

    await t.step("one tunnel carried every request (keep-alive inside it)", async () => {
      client.close();
      closed = true;
      const tunnels = await waitForRows(proxy.auditPath, 1, "method = 'CONNECT'");
      assert.equal(tunnels.length, 1);
      assert.equal(tunnels[0].reason, "intercepted: each request inside is decided on its own");
      // models, admin, two chat POSTs, the stream
      const inner = await waitForRows(proxy.auditPath, 5, "method != 'CONNECT'");
      assert.equal(inner.length, 5);
      assert.ok(origin.connections <= 2, `${origin.connections} upstream connections`);
    });

    await t.step("Host differing from the CONNECT target is 421 (no domain fronting)", async () => {
      const r = await curl([
        "-x",
        proxy.url,
        "--cacert",
        `${proxy.dir}/ca/ca.pem`,
        "-H",
        "Host: other.example.test",
        "https://api.example.test/v1/models",
      ]);
      assert.equal(r.code, 0, r.err);
      const j = JSON.parse(r.out);
      assert.equal(j.error, "misdirected_request");
      assert.equal(
        j.reason,
        'Host "other.example.test" does not match the CONNECT target "api.example.test:443"',
      );
    });

    /** The reason of the 502 a refused upstream certificate gets (through a client trusting the CA). */
    const badGatewayReason = async (url: string): Promise<string> => {
      const c2 = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
      try {
        const r = await fetch(url, { client: c2 });
        assert.equal(r.status, 502);
        const j = await r.json();
        assert.equal(j.error, "bad_gateway");
        return j.reason;
      } finally {
        c2.close();
      }
    };

    await t.step("an upstream with an untrusted certificate is 502 with a reason", async () => {
      assert.match(
        await badGatewayReason("https://untrusted.example.test/x"),
        /^TLS with "127\.0\.0\.1:\d+" failed: /,
      );
    });

    await t.step("an upstream whose trusted certificate names another host is 502", async () => {
      // The origin's certificate is signed by the trusted CA but names
      // api.example.test only: the name check (src/proxy/forward.ts
      // tlsEndpoint) must refuse it.
      assert.match(
        await badGatewayReason("https://misnamed.example.test/x"),
        /^TLS with "127\.0\.0\.1:\d+" failed: .*Host: misnamed\.example\.test\. is not in the cert's altnames: DNS:api\.example\.test/,
      );
    });

    await t.step("a client that does not trust the CA is recorded with the reason", async () => {
      const r = await curl(["-x", proxy.url, "https://api.example.test/v1/models"]);
      assert.equal(r.code, 60, r.err); // curl: peer certificate cannot be authenticated
      const rows = await waitForRows(
        proxy.auditPath,
        1,
        "method = 'CONNECT' AND decision = 'error'",
      );
      assert.equal(rows[0].reason, "client rejected the agentgate CA");
    });

    await t.step("curl, python ssl and openssl verify the leaf chain", async () => {
      const c = await curl([
        "-x",
        proxy.url,
        "--cacert",
        `${proxy.dir}/ca/ca.pem`,
        "https://api.example.test/v1/models",
      ]);
      assert.equal(c.code, 0, c.err);
      const py = await new Deno.Command("python3", {
        args: [
          "-c",
          `import ssl, urllib.request
ctx = ssl.create_default_context(cafile="${proxy.dir}/ca/ca.pem")
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"https": "${proxy.url}"}), urllib.request.HTTPSHandler(context=ctx))
print(opener.open("https://api.example.test/v1/models").status)`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(
        new TextDecoder().decode(py.stdout).trim(),
        "200",
        new TextDecoder().decode(py.stderr),
      );
      const sc = await new Deno.Command("openssl", {
        args: [
          "s_client",
          "-proxy",
          `127.0.0.1:${proxy.port}`,
          "-connect",
          "api.example.test:443",
          "-servername",
          "api.example.test",
          "-showcerts",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      const leaf = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(
        new TextDecoder().decode(sc.stdout),
      )![0];
      await Deno.writeTextFile(`${proxy.dir}/leaf.pem`, leaf + "\n");
      const v = await new Deno.Command("openssl", {
        args: ["verify", "-CAfile", `${proxy.dir}/ca/ca.pem`, `${proxy.dir}/leaf.pem`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(new TextDecoder().decode(v.stdout).trim(), `${proxy.dir}/leaf.pem: OK`);
    });
    assert.equal(await proxy.stop(), 0);
  } finally {
    if (!closed) client.close();
    await proxy.dispose();
    await origin.close();
    await untrusted.close();
  }
});

Deno.test("intercept: the CA is reused across restarts with private key modes", async () => {
  const { origin, untrusted, proxy } = await setup();
  try {
    const first = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
    assert.equal((await Deno.stat(`${proxy.dir}/ca`)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(`${proxy.dir}/ca/ca-key.pem`)).mode! & 0o777, 0o600);
    assert.equal(await proxy.stop(), 0);
    // A second start on the same directory loads, not creates.
    const again = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "ca",
        "--dir",
        `${proxy.dir}/ca`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    // Changed deliberately (issue 16): stdout is the PEM alone, what it is goes to stderr.
    const out = new TextDecoder().decode(again.stdout);
    assert.match(new TextDecoder().decode(again.stderr), /\(existing\)/);
    assert.equal(out.trim(), first.trim());
  } finally {
    await proxy.dispose();
    await origin.close();
    await untrusted.close();
  }
});

/**
 * One CONNECT + TLS handshake + request on a fresh connection. (Deno's fetch
 * sends its CONNECT in two writes and waits ~40 ms for a delayed ACK on every
 * new tunnel, so this drives the protocol with node:net / node:tls directly.)
 */
function oneHandshake(proxyPort: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(
      proxyPort,
      "127.0.0.1",
      () =>
        sock.write("CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n"),
    );
    sock.once("data", (d) => {
      if (!String(d).startsWith("HTTP/1.1 200")) return reject(new Error(String(d)));
      const t = tls.connect({ socket: sock, servername: "api.example.test", ca: [caPem] }, () => {
        t.write("GET /v1/models HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n");
      });
      let buf = "";
      t.on("data", (c) => (buf += c));
      t.on("end", () => {
        t.destroy();
        resolve(buf);
      });
      t.on("error", reject);
    });
    sock.on("error", reject);
  });
}

Deno.test("intercept: 1,000 sequential handshakes without a failure", async () => {
  const { origin, untrusted, proxy, caPem } = await setup();
  try {
    const failures: string[] = [];
    for (let i = 0; i < 1000; i++) {
      try {
        const r = await oneHandshake(proxy.port, caPem);
        if (!r.startsWith("HTTP/1.1 200 ") || !r.includes('"url":"/v1/models"')) {
          failures.push(`#${i}: ${r.slice(0, 80)}`);
        }
      } catch (e) {
        failures.push(`#${i}: ${(e as Error).message}`);
      }
    }
    assert.deepEqual(failures, []);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await origin.close();
    await untrusted.close();
  }
});
