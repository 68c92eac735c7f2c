import assert from "node:assert/strict";
import https from "node:https";
import net from "node:net";
import type tls from "node:tls";
import { join } from "node:path";
import { type CertificateAuthority, loadOrCreateCA } from "./ca.ts";
import {
  issueLeaf,
  type Leaf,
  LeafError,
  LeafIssuer,
  type LeafKeyType,
  MAX_LEAF_VALIDITY_DAYS,
  normalizeLeafName,
} from "./leaf.ts";

const KEY_TYPES: LeafKeyType[] = ["ecdsa-p256", "rsa-2048"];
const DAY_MS = 86_400_000;

async function withCa(fn: (ca: CertificateAuthority, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-leaf-test-" });
  try {
    await fn(await loadOrCreateCA(join(dir, "ca")), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(cmd: string, args: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(cmd, {
    args,
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function hexColons(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

Deno.test("normalizeLeafName canonicalizes DNS names and IP literals and rejects bad names", () => {
  const ok: [string, string, number | null][] = [
    ["API.Example.COM.", "api.example.com", null],
    ["api.example.test", "api.example.test", null],
    ["*.googleapis.com", "*.googleapis.com", null],
    ["my_host.internal", "my_host.internal", null],
    ["bücher.example", "xn--bcher-kva.example", null],
    ["127.0.0.1", "127.0.0.1", 4],
    ["[::1]", "::1", 16],
    ["0:0:0:0:0:0:0:1", "::1", 16],
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1", 16],
    ["::ffff:1.2.3.4", "::ffff:102:304", 16],
    ["fe80::1%eth0", "fe80::1", 16],
  ];
  for (const [input, name, ipLen] of ok) {
    const n = normalizeLeafName(input);
    assert.equal(n.name, name, input);
    assert.equal(n.ip?.length ?? null, ipLen, input);
  }
  assert.deepEqual([...normalizeLeafName("[::ffff:1.2.3.4]").ip!.slice(10)], [
    0xff,
    0xff,
    1,
    2,
    3,
    4,
  ]);
  for (const bad of ["", ".", "a..b", "-a.example", "a-.example", "a b.example", "x".repeat(64)]) {
    assert.throws(() => normalizeLeafName(bad), LeafError, JSON.stringify(bad));
  }
  assert.throws(() => normalizeLeafName(`${"a".repeat(60)}.`.repeat(5)), /longer than 253/);
  assert.throws(() => normalizeLeafName("a.*.example"), /bad label "\*"/);
});

Deno.test("leaves verify with openssl and carry SAN, serverAuth, AKI, SKI and a short validity", async () => {
  await withCa(async (ca, dir) => {
    const caSki = hexColons(ca.keyId);
    const long = `${"a".repeat(40)}.${"b".repeat(40)}.example.test`; // > 64: no CN
    const cases: [string, string, string[]][] = [
      ["api.example.test", "DNS:api.example.test", ["-verify_hostname", "api.example.test"]],
      ["127.0.0.1", "IP Address:127.0.0.1", ["-verify_ip", "127.0.0.1"]],
      ["[::1]", "IP Address:0:0:0:0:0:0:0:1", ["-verify_ip", "::1"]],
      [long, `DNS:${long}`, ["-verify_hostname", long]],
    ];
    for (const keyType of KEY_TYPES) {
      const issuer = new LeafIssuer(ca, { keyType });
      const serials = new Set<string>();
      const keys = new Set<string>();
      for (const [host, san, verifyArgs] of cases) {
        const label = `${keyType} ${host}`;
        const t0 = Date.now();
        const leaf = await issuer.issue(host);
        serials.add(leaf.serialHex);
        keys.add(leaf.keyPem);
        const file = join(dir, `${keyType}-${serials.size}.pem`);
        await Deno.writeTextFile(file, leaf.certPem);

        const verify = await run("openssl", [
          "verify",
          "-x509_strict",
          "-purpose",
          "sslserver",
          ...verifyArgs,
          "-CAfile",
          ca.certPath,
          file,
        ]);
        assert.equal(verify.code, 0, `${label}: ${verify.stdout}${verify.stderr}`);
        const wrong = await run("openssl", [
          "verify",
          "-verify_hostname",
          "other.example.test",
          "-CAfile",
          ca.certPath,
          file,
        ]);
        assert.notEqual(wrong.code, 0, `${label}: another name must not verify`);

        const text = (await run("openssl", ["x509", "-in", file, "-noout", "-text"])).stdout;
        assert.match(text, /Basic Constraints: critical\n\s+CA:FALSE/, label);
        assert.match(
          text,
          keyType === "rsa-2048"
            ? /Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/
            : /Key Usage: critical\n\s+Digital Signature\n/,
          label,
        );
        assert.match(text, /Extended Key Usage: *\n\s+TLS Web Server Authentication\n/, label);
        const sanLine = /Subject Alternative Name:( critical)? *\n\s+(.*)\n/.exec(text);
        assert.equal(sanLine?.[2], san, label);
        assert.match(text, /Subject Key Identifier: *\n\s+[0-9A-F:]{59}\n/, label);
        assert.match(text, new RegExp(`Authority Key Identifier: *\\n\\s+(keyid:)?${caSki}\\n`));
        assert.match(
          text,
          keyType === "rsa-2048" ? /Public-Key: \(2048 bit\)/ : /ASN1 OID: prime256v1/,
          label,
        );
        assert.match(text, /Signature Algorithm: sha256WithRSAEncryption/);
        if (host === long) {
          assert.match(text, /Subject: *\n/, "no CN beyond 64 characters");
          assert.equal(sanLine?.[1], " critical", "SAN critical when the subject is empty");
        } else {
          assert.match(text, new RegExp(`Subject: CN = ${normalizeLeafName(host).name}\\n`));
        }

        assert.equal(leaf.notAfter.getTime() - leaf.notBefore.getTime(), 99 * DAY_MS, label);
        const backdate = t0 - leaf.notBefore.getTime();
        // Whole seconds, and the clock moves while issuing: a few seconds of slack.
        assert.ok(Math.abs(backdate - 2 * DAY_MS) < 5_000, `${label} backdated: ${backdate}`);
        assert.match(leaf.serialHex, /^[4-7][0-9a-f]{31}$/, "positive 16-byte serial");
        assert.equal(leaf.chainPem, leaf.certPem + ca.certPem);
        assert.equal(leaf.keyType, keyType);
      }
      assert.equal(serials.size, cases.length, "a fresh serial per leaf");
      assert.equal(keys.size, 1, "one key pair shared by all hosts");
    }
  });
});

Deno.test("leaf validity is capped at 99 days and at the CA's own expiry", async () => {
  await withCa(async (ca) => {
    assert.throws(() => new LeafIssuer(ca, { validityDays: 100 }), /"100" days/);
    assert.throws(() => new LeafIssuer(ca, { validityDays: 0 }), LeafError);
    const short = await issueLeaf(ca, "a.example.test", { validityDays: 30 });
    assert.equal(short.notAfter.getTime() - short.notBefore.getTime(), 30 * DAY_MS);
    const late = new Date(ca.notAfter.getTime() - 10 * DAY_MS);
    const leaf = await issueLeaf(ca, "a.example.test", { now: () => late });
    assert.equal(leaf.notAfter.getTime(), ca.notAfter.getTime());
    assert.ok(MAX_LEAF_VALIDITY_DAYS <= 99);
  });
});

/** An HTTPS origin in this process serving one leaf, as the proxy will. */
async function serve(leaf: Leaf) {
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    const socket = req.socket as tls.TLSSocket;
    res.end(`ok ${leaf.host} ${socket.getProtocol?.() ?? "?"}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A minimal CONNECT proxy: Deno's `fetch` has no `--resolve`, so it reaches
 * a test name the way agents reach agentgate.
 */
async function connectProxy() {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    let head = "";
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      client.off("data", onData);
      const port = Number(/^CONNECT \S+:(\d+) /.exec(head)?.[1]);
      const upstream = net.connect(port, "127.0.0.1", () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        client.pipe(upstream).pipe(client);
      });
      sockets.add(upstream);
      upstream.on("close", () => sockets.delete(upstream));
      upstream.on("error", () => client.destroy());
    };
    client.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const NODE_CLIENT = `
const https = require("node:https"), fs = require("node:fs");
const [url, caFile] = process.argv.slice(1);
// Resolve every name to 127.0.0.1, like curl --resolve (Node 20 asks with all: true).
const lookup = (h, o, cb) => o && o.all ? cb(null, [{ address: "127.0.0.1", family: 4 }])
  : cb(null, "127.0.0.1", 4);
https.get(url, { ca: fs.readFileSync(caFile), lookup, agent: false }, (res) => {
  let body = ""; res.on("data", (c) => body += c);
  res.on("end", () => process.stdout.write(body));
}).on("error", (e) => { console.error(e.code || e.message); process.exit(1); });`;

const PYTHON_CLIENT = `
import socket, ssl, sys
name, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
# Python 3.13's default: OpenSSL X509_STRICT, which requires the AKI.
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall(f"GET / HTTP/1.1\\r\\nHost: {name}\\r\\nConnection: close\\r\\n\\r\\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
print(data.decode().split("\\r\\n\\r\\n", 1)[1], end="")`;

Deno.test("curl, Deno fetch, Node and Python accept RSA and ECDSA leaves for a name and an IP", async () => {
  await withCa(async (ca) => {
    const caFile = ca.certPath;
    const proxy = await connectProxy();
    const fetchClient = Deno.createHttpClient({ caCerts: [ca.certPem], proxy: { url: proxy.url } });
    const servers: { close(): Promise<void> }[] = [];
    try {
      for (const keyType of KEY_TYPES) {
        for (const host of ["api.example.test", "127.0.0.1"]) {
          const leaf = await issueLeaf(ca, host, { keyType });
          const origin = await serve(leaf);
          servers.push(origin);
          const url = `https://${host}:${origin.port}/`;
          const resolve = host === "127.0.0.1"
            ? []
            : ["--resolve", `${host}:${origin.port}:127.0.0.1`];
          const curl = (extra: string[]) =>
            run("curl", ["-sS", "--max-time", "10", "--cacert", caFile, ...resolve, ...extra, url]);
          const clients: Record<string, Promise<{ code: number; stdout: string; stderr: string }>> =
            {
              "curl": curl([]),
              "curl TLS 1.2": curl(["--tlsv1.2", "--tls-max", "1.2"]),
              "node": run("node", ["-e", NODE_CLIENT, url, caFile]),
              "python": run("python3", ["-c", PYTHON_CLIENT, host, String(origin.port), caFile]),
              "deno fetch": fetch(url, { client: fetchClient }).then(
                async (r) => ({ code: r.ok ? 0 : 1, stdout: await r.text(), stderr: "" }),
                (e) => ({ code: 1, stdout: "", stderr: String(e?.cause ?? e) }),
              ),
            };
          for (const [name, result] of Object.entries(clients)) {
            const r = await result;
            const label = `${name} -> ${keyType} leaf for ${host}`;
            assert.equal(r.code, 0, `${label}: ${r.stderr}`);
            assert.match(r.stdout, new RegExp(`^ok ${host} TLSv1\\.[23]$`), label);
            if (name === "curl TLS 1.2") assert.match(r.stdout, /TLSv1\.2$/, label);
          }
        }
      }

      // Controls: the same clients refuse without the CA or for another name,
      // so the successes above are not a verification that never happens.
      const leaf = await issueLeaf(ca, "api.example.test");
      const origin = await serve(leaf);
      servers.push(origin);
      const other = await run("curl", [
        "-sS",
        "--cacert",
        caFile,
        "--resolve",
        `other.example.test:${origin.port}:127.0.0.1`,
        `https://other.example.test:${origin.port}/`,
      ]);
      assert.equal(other.code, 60, other.stderr);
      const noCa = await run("curl", [
        "-sS",
        "--cacert",
        ca.certPath.replace("ca.pem", "missing.pem"),
        "--resolve",
        `api.example.test:${origin.port}:127.0.0.1`,
        `https://api.example.test:${origin.port}/`,
      ]);
      assert.notEqual(noCa.code, 0);
      const py = await run("python3", [
        "-c",
        PYTHON_CLIENT,
        "other.example.test",
        String(origin.port),
        caFile,
      ]);
      assert.notEqual(py.code, 0);
      assert.match(py.stderr, /CERTIFICATE_VERIFY_FAILED|Hostname mismatch/);
      const denoOther = await fetch(`https://other.example.test:${origin.port}/`, {
        client: fetchClient,
      }).then(() => "accepted", (e) => String(e?.cause ?? e));
      assert.match(denoOther, /NotValidForName|certificate/i);
    } finally {
      fetchClient.close();
      for (const s of servers) await s.close();
      await proxy.close();
    }
  });
});
