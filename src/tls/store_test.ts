import assert from "node:assert/strict";
import https from "node:https";
import type net from "node:net";
import { join } from "node:path";
import { type CertificateAuthority, loadOrCreateCA } from "./ca.ts";
import { LeafError } from "./leaf.ts";
import { DEFAULT_LEAF_CAPACITY, LeafStore } from "./store.ts";

async function withCa(fn: (ca: CertificateAuthority) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-store-test-" });
  try {
    await fn(await loadOrCreateCA(join(dir, "ca")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("LeafStore evicts the least recently used host at capacity", async () => {
  await withCa(async (ca) => {
    assert.equal(new LeafStore(ca).capacity, DEFAULT_LEAF_CAPACITY);
    assert.ok(DEFAULT_LEAF_CAPACITY >= 1000);
    assert.throws(() => new LeafStore(ca, { capacity: 0 }), RangeError);

    const store = new LeafStore(ca, { capacity: 3 });
    assert.equal(store.size, 0);
    const a = await store.get("a.example.test");
    await store.get("b.example.test");
    await store.get("c.example.test");
    assert.equal(store.size, 3);
    assert.equal(await store.get("A.Example.Test."), a, "same host, other spelling: a hit");
    await store.get("d.example.test"); // b is now the least recently used
    assert.equal(store.size, 3);
    assert.equal(store.peek("b.example.test"), undefined);
    assert.equal(store.peek("a.example.test"), a);
    assert.ok(store.peek("c.example.test"));
    assert.ok(store.peek("d.example.test"));
    assert.equal(store.issued, 4);

    const b2 = await store.get("b.example.test"); // a miss again: issued anew, a is evicted
    assert.equal(store.issued, 5);
    assert.equal(store.size, 3);
    assert.equal(store.peek("a.example.test"), undefined);
    assert.equal(b2.host, "b.example.test");

    store.clear();
    assert.equal(store.size, 0);
  });
});

Deno.test("LeafStore shares one issuance between concurrent requests for a host", async () => {
  await withCa(async (ca) => {
    const store = new LeafStore(ca);
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.get(i % 2 ? "x.example.test" : "X.EXAMPLE.TEST")),
    );
    assert.equal(store.issued, 1);
    assert.equal(store.size, 1);
    for (const e of many) assert.equal(e, many[0]);
    assert.equal((await store.get("x.example.test")).secureContext, many[0].secureContext);

    const ip = await Promise.all([store.get("::1"), store.get("[::1]"), store.get("0::1")]);
    assert.equal(store.issued, 2);
    assert.ok(ip.every((e) => e === ip[0]));

    // A bad name fails alone and is not remembered as in flight.
    await assert.rejects(store.get("bad..name"), LeafError);
    await assert.rejects(store.get("bad..name"), LeafError);
    assert.equal(store.size, 2);
  });
});

Deno.test("LeafStore issues a leaf again when the cached one nears its end", async () => {
  await withCa(async (ca) => {
    let now = new Date();
    const store = new LeafStore(ca, { renewBeforeMs: 7 * 86_400_000, now: () => now });
    const first = await store.get("r.example.test");
    now = new Date(first.notAfter.getTime() - 8 * 86_400_000);
    assert.equal(await store.get("r.example.test"), first);
    now = new Date(first.notAfter.getTime() - 6 * 86_400_000);
    assert.equal(store.peek("r.example.test"), undefined);
    const second = await store.get("r.example.test");
    assert.notEqual(second.serialHex, first.serialHex);
    assert.ok(second.notAfter > first.notAfter);
    assert.equal(store.size, 1);
  });
});

const NODE_SNI_CLIENT = `
const tls = require("node:tls"), fs = require("node:fs");
const [port, caFile, rounds, ...names] = process.argv.slice(1);
const ca = fs.readFileSync(caFile);
function once(name) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port: +port, servername: name, ca });
    s.setTimeout(10000, () => s.destroy(new Error("timeout")));
    s.on("secureConnect", () => {
      const san = s.getPeerCertificate().subjectaltname;
      s.write("GET / HTTP/1.1\\r\\nHost: " + name + "\\r\\nConnection: close\\r\\n\\r\\n");
      let body = ""; s.on("data", (c) => body += c);
      s.on("end", () => resolve(san === "DNS:" + name && body.endsWith("ok " + name) ? "ok" : "bad " + san));
    });
    s.on("error", (e) => resolve("error " + (e.code || e.message)));
  });
}
(async () => {
  const results = {};
  // First contact with every name at once: uncached hosts issued during the handshake.
  for (const r of await Promise.all(names.map(once))) results[r] = (results[r] || 0) + 1;
  for (let i = 0; i < +rounds; i++) {
    const r = await once(names[i % names.length]);
    results[r] = (results[r] || 0) + 1;
  }
  process.stdout.write(JSON.stringify(results));
})();`;

Deno.test("LeafStore.sniCallback serves each SNI name its own leaf in real handshakes", async () => {
  await withCa(async (ca) => {
    const store = new LeafStore(ca, { capacity: 4 });
    await store.warmUp();
    const server = https.createServer({ SNICallback: store.sniCallback }, (req, res) => {
      res.end(`ok ${req.headers.host}`);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const names = ["a.example.test", "b.example.test", "c.example.test", "a.example.test"];
      const rounds = 200;
      const out = await new Deno.Command("node", {
        args: ["-e", NODE_SNI_CLIENT, String(port), ca.certPath, String(rounds), ...names],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(20_000),
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const results = JSON.parse(new TextDecoder().decode(out.stdout));
      assert.deepEqual(results, { ok: rounds + names.length });
      assert.equal(store.issued, 3, "one issuance per name, concurrent first contact included");
      assert.equal(store.size, 3);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
