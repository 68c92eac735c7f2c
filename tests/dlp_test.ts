/**
 * DLP as a policy through the running proxy over HTTPS: blocked and redacted
 * requests (the origin checks what it received), the provider credential
 * exception, response redaction across SSE chunks, and `agentgate scan`.
 */
import assert from "node:assert/strict";
import type http from "node:http";
import { runMain } from "../main.ts";
import { memoryIo } from "../src/cli/io.ts";
import { fakeSecrets } from "./support/dlp_samples.ts";
import { auditRows, queryAudit, startOrigin, startProxy, testPki, waitForRows } from "./helpers.ts";

const AWS = "AKIA" + "IOSFODNN7EXAMPLE";

async function setup(policy: string) {
  const names = ["api.example.test", "api.openai.com"];
  const pki = await testPki(names);
  const received: { url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  let streamRest: (() => void) | null = null;
  const origin = await startOrigin((req, res) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({
        url: req.url!,
        headers: req.headers,
        body: new TextDecoder().decode(Buffer.concat(chunks)),
      });
      if (req.url === "/stream") {
        // A secret split across two SSE writes.
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(`data: {"text": "here: ${AWS.slice(0, 9)}`);
        streamRest = () => res.end(`${AWS.slice(9)} done"}\n\n`);
        setTimeout(() => streamRest?.(), 50);
        return;
      }
      if (req.url === "/leaky") {
        const leak = JSON.stringify({ note: `the key is ${AWS}` });
        res.writeHead(200, {
          "content-type": "application/json",
          "content-length": String(leak.length),
        });
        res.end(leak);
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true }));
    });
  }, { cert: pki.cert, key: pki.key });
  const proxy = await startProxy({
    files: { "origin-ca.pem": pki.caPem },
    config: `version: 1
default: deny
tls:
  intercept: [api.example.test, api.openai.com]
  ca_dir: ./ca
  upstream_ca: ./origin-ca.pem
upstream:
  resolve: { api.example.test: 127.0.0.1:${origin.port}, api.openai.com: 127.0.0.1:${origin.port} }
audit: { path: ./audit.db }
${policy}`,
  });
  const caPem = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
  const client = Deno.createHttpClient({ proxy: { url: proxy.url }, caCerts: [caPem] });
  return { origin, proxy, client, received };
}

Deno.test("dlp: block a secret in the body, allow the provider's own credential header", async () => {
  const { origin, proxy, client, received } = await setup(`rules:
  - name: scanned
    match: [api.example.test, api.openai.com]
    action: allow
    policies:
      - dlp: { action: block, direction: request }
`);
  try {
    const blocked = await fetch("https://api.example.test/v1/upload", {
      method: "POST",
      client,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ note: `deploy with ${AWS}` }),
    });
    assert.equal(blocked.status, 403);
    const j = await blocked.json();
    assert.equal(j.policy, "dlp");
    assert.equal(j.reason, "request blocked by DLP: aws_access_key (body)");
    assert.ok(!JSON.stringify(j).includes(AWS));
    assert.equal(received.length, 0, "the origin never saw the secret");

    const openaiKey = fakeSecrets().openai_key;
    const ok = await fetch("https://api.openai.com/v1/models", {
      client,
      headers: { authorization: `Bearer ${openaiKey}` },
    });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    // The same key in a body to another host is a leak.
    const leak = await fetch("https://api.example.test/v1/notes", {
      method: "POST",
      client,
      body: `my key is ${openaiKey}`,
    });
    assert.equal(leak.status, 403);
    assert.match((await leak.json()).reason, /openai_key \(body\)/);

    const [row] = await waitForRows(proxy.auditPath, 1, `id = '${j.decision_id}'`);
    assert.deepEqual([row.decision, row.policy, row.status], ["deny", "dlp", 403]);
    const db = auditRows(proxy.auditPath);
    assert.ok(!JSON.stringify(db).includes(AWS));
    assert.equal(await proxy.stop(), 0);
    const findings = queryAudit(
      proxy.auditPath,
      "SELECT decision_id, detector, direction, location, sample, action FROM findings ORDER BY id",
    );
    assert.deepEqual({ ...findings[0] }, {
      decision_id: j.decision_id,
      detector: "aws_access_key",
      direction: "request",
      location: "body",
      sample: "AKIA…MPLE",
      action: "block",
    });
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("dlp: redact keeps JSON valid and fixes Content-Length; responses redacted across chunks", async () => {
  const { origin, proxy, client, received } = await setup(`rules:
  - name: redacted
    match: api.example.test
    action: allow
    policies:
      - dlp: { action: redact, direction: both }
`);
  try {
    const body = JSON.stringify({ messages: [{ role: "user", content: `key ${AWS} ok` }] });
    const r = await fetch("https://api.example.test/v1/chat", {
      method: "POST",
      client,
      headers: { "content-type": "application/json" },
      body,
    });
    assert.equal(r.status, 200);
    await r.body?.cancel();
    const got = received[0];
    const parsed = JSON.parse(got.body);
    assert.equal(parsed.messages[0].content, "key [REDACTED:aws_access_key] ok");
    assert.equal(got.headers["content-length"], String(new TextEncoder().encode(got.body).length));

    const s = await fetch("https://api.example.test/stream", { client });
    const text = await s.text();
    assert.equal(text, 'data: {"text": "here: [REDACTED:aws_access_key] done"}\n\n');
    assert.ok(!text.includes(AWS.slice(4)));
    assert.equal(await proxy.stop(), 0);
    const dirs = queryAudit(proxy.auditPath, "SELECT direction, action FROM findings ORDER BY id")
      .map((f) => `${f.direction}:${f.action}`);
    assert.deepEqual(dirs, ["request:redact", "response:redact"]);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("dlp: warn passes responses through unchanged, framing included, and records findings", async () => {
  const { origin, proxy, client } = await setup(`rules:
  - name: watched
    match: api.example.test
    action: allow
    policies:
      - dlp: { action: warn, direction: response }
`);
  try {
    const r = await fetch("https://api.example.test/leaky", { client });
    const text = await r.text();
    assert.equal(text, JSON.stringify({ note: `the key is ${AWS}` }));
    // Scanned on the side: the response keeps its own Content-Length, not re-chunked.
    assert.equal(r.headers.get("content-length"), String(text.length));
    assert.equal(r.headers.get("transfer-encoding"), null);
    const s = await fetch("https://api.example.test/stream", { client });
    assert.equal(await s.text(), `data: {"text": "here: ${AWS} done"}\n\n`);
    assert.equal(await proxy.stop(), 0);
    const found = queryAudit(
      proxy.auditPath,
      "SELECT a.path, f.detector, f.direction, f.action, f.sample FROM findings f JOIN audit a ON a.id = f.decision_id ORDER BY f.id",
    ).map((f) => `${f.path} ${f.detector} ${f.direction}:${f.action} ${f.sample}`);
    assert.deepEqual(found, [
      "/leaky aws_access_key response:warn AKIA…MPLE",
      "/stream aws_access_key response:warn AKIA…MPLE",
    ]);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("dlp: in audit mode a block is recorded as would_deny and forwarded", async () => {
  const { origin, proxy, client, received } = await setup(`mode: audit
rules:
  - name: scanned
    match: api.example.test
    action: allow
    policies:
      - dlp: { action: block, detectors: [aws_access_key] }
`);
  try {
    const r = await fetch("https://api.example.test/v1/x", {
      method: "POST",
      client,
      body: `token ${AWS}`,
    });
    assert.equal(r.status, 200);
    await r.body?.cancel();
    assert.equal(received.length, 1);
    const [row] = await waitForRows(proxy.auditPath, 1, "path = '/v1/x'");
    assert.deepEqual([row.decision, row.policy], ["would_deny", "dlp"]);
    assert.equal(await proxy.stop(), 0);
  } finally {
    client.close();
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("scan: findings with line:col, exit 1; custom RE2 detectors; clean input exit 0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/p.txt`, `line one\nuse ${AWS}\nticket TCK-123456\n`);
    const io = memoryIo({ cwd: dir });
    assert.equal(
      await runMain(["scan", "p.txt", "--custom", "ticket_id=TCK-[0-9]{6}"], io),
      1,
    );
    // Changed deliberately (issue 16): the findings on stdout, the count on stderr.
    assert.equal(
      io.out.join(""),
      "p.txt:2:5: aws_access_key AKIA…MPLE\np.txt:3:8: ticket_id **********\n",
    );
    assert.equal(io.err.join(""), "2 finding(s)\n");
    await Deno.writeTextFile(`${dir}/clean.txt`, "nothing to see, commit 3f2a9c1b7d0e\n");
    const clean = memoryIo({ cwd: dir });
    assert.equal(await runMain(["scan", "clean.txt"], clean), 0);
    assert.equal(clean.out.join(""), "");
    assert.match(clean.err.join(""), /^no findings \(16 detector\(s\)\)\n$/);
    const bad = memoryIo({ cwd: dir });
    assert.equal(await runMain(["scan", "p.txt", "--detectors", "aws_key"], bad), 2);
    assert.match(
      bad.err.join(""),
      /Unknown detector "aws_key" \(did you mean "aws_access_key"\?\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
