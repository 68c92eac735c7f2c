/**
 * CPU per new upstream TLS connection: `deno task bench upstream-tls`.
 *
 * agentgate verifies intercepted upstreams against the system roots plus
 * `tls.upstream_ca` (~150 certificates). Deno 2.9's `node:tls` parses every
 * one of them on each connection when asked for the detailed peer
 * certificate, which its `onConnectSecure` does for the name check; the
 * endpoint of src/proxy/forward.ts answers that call with the leaf. This
 * prints the process's CPU per connection (client and the local TLS server
 * together) for a 200-connection loop through `tlsEndpoint`, against the
 * same connection made with a plain `tls.connect`, each with the system
 * roots and with one CA.
 *
 * @module
 */
import tls from "node:tls";
import { tlsEndpoint } from "../src/proxy/forward.ts";
import { readSystemRoots } from "../src/tls/bundle.ts";
import { testPki } from "../tests/helpers.ts";
import net from "node:net";

const pki = await testPki(["upstream.bench.test"]);
const server = tls.createServer({ cert: pki.cert, key: pki.key }, (s) => s.end());
await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
const port = (server.address() as net.AddressInfo).port;
const roots = (await readSystemRoots()).pems;

function once(connect: () => tls.TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect();
    s.once("secureConnect", () => {
      s.destroy();
      resolve();
    });
    s.once("error", reject);
  });
}

async function perConnection(connect: () => tls.TLSSocket, n = 200): Promise<number> {
  for (let i = 0; i < 20; i++) await once(connect);
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) await once(connect);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

const rows: string[][] = [];
for (
  const [label, ca] of [["system roots + 1", [...roots, pki.caPem]], ["1 CA", [pki.caPem]]] as const
) {
  const ctx = tls.createSecureContext({ ca: [...ca] });
  const endpoint = tlsEndpoint("127.0.0.1", port, "upstream.bench.test", ctx);
  const plain = () =>
    tls.connect({
      socket: net.connect({ host: "127.0.0.1", port }),
      servername: "upstream.bench.test",
      secureContext: ctx,
      checkServerIdentity: (_h, cert) => tls.checkServerIdentity("upstream.bench.test", cert),
    });
  const viaEndpoint = await perConnection(() => endpoint.connect() as tls.TLSSocket);
  const viaPlain = await perConnection(plain);
  rows.push([label, String(ca.length), viaEndpoint.toFixed(0), viaPlain.toFixed(0)]);
}
server.close();
console.log("| CA list | certificates | tlsEndpoint µs CPU/conn | plain tls.connect µs CPU/conn |");
console.log("|---|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
