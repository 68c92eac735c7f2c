import assert from "node:assert/strict";
import https from "node:https";
import type net from "node:net";
import { rootCertificates } from "node:tls";
import { join } from "node:path";
import { loadOrCreateCA } from "./ca.ts";
import { issueLeaf } from "./leaf.ts";
import {
  NODE_ROOTS_SOURCE,
  readSystemRoots,
  SYSTEM_ROOT_FILES,
  writeTrustBundle,
} from "./bundle.ts";

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

async function certCount(file: string): Promise<number> {
  const out = await run("openssl", ["storeutl", "-noout", "-certs", file]);
  assert.equal(out.code, 0, out.stderr);
  return Number(/Total found: (\d+)/.exec(out.stdout)?.[1]);
}

Deno.test("trust bundle = given roots + the CA, deduplicated, normalized, written atomically", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-bundle-test-" });
  try {
    const ca = await loadOrCreateCA(join(dir, "ca"));
    const system = join(dir, "system.pem");
    // CRLF, comments and a copy of the CA, as a bundle made from an older
    // bundle would have.
    await Deno.writeTextFile(
      system,
      ["# comment", rootCertificates[0], rootCertificates[1], rootCertificates[0], ca.certPem]
        .join("\n").replace(/\n/g, "\r\n"),
    );
    const file = join(dir, "bundle.pem");
    await Deno.writeTextFile(file, "old content");
    const result = await writeTrustBundle(ca, file, { systemFiles: [join(dir, "none"), system] });
    assert.deepEqual(result, { file, source: system, roots: 2 });
    const text = await Deno.readTextFile(file);
    assert.ok(!text.includes("\r"));
    assert.ok(text.trimEnd().endsWith(ca.certPem.trimEnd()), "the CA comes last");
    assert.equal(text.split(ca.certPem).length, 2, "the CA appears once");
    assert.equal(await certCount(file), 3);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o644);
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(left.sort(), ["bundle.pem", "ca", "system.pem"], "no temporary file left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("system roots come from the OS bundle, else from node:tls rootCertificates", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-bundle-test-" });
  try {
    const empty = join(dir, "empty.pem");
    await Deno.writeTextFile(empty, "no certificates here\n");
    const fallback = await readSystemRoots({ systemFiles: [join(dir, "absent.pem"), empty] });
    assert.equal(fallback.source, NODE_ROOTS_SOURCE);
    assert.equal(fallback.pems.length, rootCertificates.length);

    const system = await readSystemRoots();
    assert.ok(
      SYSTEM_ROOT_FILES.includes(system.source) || system.source === NODE_ROOTS_SOURCE,
      system.source,
    );
    assert.ok(system.pems.length > 50, `${system.pems.length} roots`);
    assert.ok(SYSTEM_ROOT_FILES.includes("/etc/ssl/certs/ca-certificates.crt"));
    assert.ok(SYSTEM_ROOT_FILES.includes("/etc/ssl/cert.pem"), "macOS");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a client given only SSL_CERT_FILE=bundle trusts an agentgate leaf", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-bundle-test-" });
  const ca = await loadOrCreateCA(join(dir, "ca"));
  const leaf = await issueLeaf(ca, "api.example.test");
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => {
    res.end("ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const bundle = join(dir, "bundle.pem");
    const { roots } = await writeTrustBundle(ca, bundle);
    assert.equal(await certCount(bundle), roots + 1);
    const leafFile = join(dir, "leaf.pem");
    await Deno.writeTextFile(leafFile, leaf.certPem);
    const verify = await run("openssl", ["verify", "-CAfile", bundle, leafFile]);
    assert.equal(verify.code, 0, verify.stderr);

    // Python's default context reads SSL_CERT_FILE instead of its own store.
    const script = `
import socket, ssl, sys
ctx = ssl.create_default_context()
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="api.example.test") as s:
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: api.example.test\\r\\nConnection: close\\r\\n\\r\\n")
        print(s.recv(4096).decode().split("\\r\\n")[0])`;
    const port = String((server.address() as net.AddressInfo).port);
    const withBundle = await run("python3", ["-c", script, port], { SSL_CERT_FILE: bundle });
    assert.equal(withBundle.code, 0, withBundle.stderr);
    assert.equal(withBundle.stdout.trim(), "HTTP/1.1 200 OK");
    const without = await run("python3", ["-c", script, port], { SSL_CERT_FILE: leafFile });
    assert.notEqual(without.code, 0, "control: a file without the CA is refused");
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await Deno.remove(dir, { recursive: true });
  }
});
