/**
 * A tiny DNS server for tests: UDP on 127.0.0.1, A and AAAA answers for
 * chosen names (TTL 0 by default), NXDOMAIN for the rest, and a count of the
 * queries each name got. An answer may be a function of how often the name
 * was asked for, so a test can change its answer between queries (DNS
 * rebinding) or hand out hostile answers.
 *
 * @module
 */
import dgram from "node:dgram";
import type { AddressInfo } from "node:net";
import { parseIp } from "../../src/policy/address.ts";

/**
 * Addresses of a name: fixed, or by the number of A queries seen so far for it
 * (0 first); `"silent"` never answers (a DNS server that times out).
 */
export type Answer = string[] | ((asked: number) => string[]) | "silent";

/** A running test DNS server. */
export interface DnsServer {
  port: number;
  /** `127.0.0.1:<port>`, for `upstream.dns`. */
  address: string;
  /** name (lower case) -> answer; change it while the server runs. */
  records: Map<string, Answer>;
  /** name (lower case) -> queries received, by type ("A", "AAAA", other numbers). */
  queries: Map<string, Record<string, number>>;
  /** Total queries for a name (every type). */
  asked(name: string): number;
  close(): Promise<void>;
}

function readName(msg: Uint8Array, at: number): { name: string; end: number } | null {
  const labels: string[] = [];
  let i = at;
  while (i < msg.length) {
    const len = msg[i];
    if (len === 0) return { name: labels.join(".").toLowerCase(), end: i + 1 };
    if (len > 63) return null; // compression in a question: not from our clients
    labels.push(new TextDecoder().decode(msg.subarray(i + 1, i + 1 + len)));
    i += 1 + len;
  }
  return null;
}

/**
 * Start a DNS server answering `records`.
 *
 * @example
 * const dns = await startDns({ "metadata.test": ["169.254.169.254"] });
 * // upstream: { dns: dns.address }
 * await dns.close();
 */
export async function startDns(
  records: Record<string, Answer>,
  opts: { ttl?: number } = {},
): Promise<DnsServer> {
  const socket = dgram.createSocket("udp4");
  const server: DnsServer = {
    port: 0,
    address: "",
    records: new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v])),
    queries: new Map(),
    asked: (name) =>
      Object.values(server.queries.get(name.toLowerCase()) ?? {}).reduce((a, b) => a + b, 0),
    close: () => new Promise((r) => socket.close(() => r())),
  };
  socket.on("message", (msg: Uint8Array, rinfo: AddressInfo) => {
    if (msg.length < 17) return;
    const q = readName(msg, 12);
    if (q === null || q.end + 4 > msg.length) return;
    const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    const qtype = view.getUint16(q.end);
    const type = qtype === 1 ? "A" : qtype === 28 ? "AAAA" : String(qtype);
    const counts = server.queries.get(q.name) ?? {};
    const askedA = counts.A ?? 0;
    counts[type] = (counts[type] ?? 0) + 1;
    server.queries.set(q.name, counts);
    const answer = server.records.get(q.name);
    if (answer === "silent") return;
    const all = answer === undefined
      ? null
      : typeof answer === "function"
      ? answer(type === "AAAA" ? Math.max(0, askedA - 1) : askedA)
      : answer;
    const want = qtype === 1 ? 4 : qtype === 28 ? 16 : -1;
    const addrs = (all ?? []).map((a) => parseIp(a)!).filter((b) => b.length === want);
    const question = msg.subarray(12, q.end + 4);
    const out: number[] = [
      msg[0],
      msg[1],
      0x81,
      all === null ? 0x83 : 0x80, // NXDOMAIN for unknown names
      0,
      1,
      addrs.length >> 8,
      addrs.length & 0xff,
      0,
      0,
      0,
      0,
      ...question,
    ];
    const ttl = opts.ttl ?? 0;
    for (const b of addrs) {
      out.push(0xc0, 12, qtype >> 8, qtype & 0xff, 0, 1);
      out.push((ttl >>> 24) & 0xff, (ttl >>> 16) & 0xff, (ttl >>> 8) & 0xff, ttl & 0xff);
      out.push(0, b.length, ...b);
    }
    socket.send(new Uint8Array(out), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  server.port = (socket.address() as AddressInfo).port;
  server.address = `127.0.0.1:${server.port}`;
  return server;
}
