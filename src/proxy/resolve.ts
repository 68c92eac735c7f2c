/**
 * Names to addresses, once per upstream connection: the proxy resolves a
 * request's host here, the policy's address guard judges every address
 * (`policy/address.ts`), and the proxy connects to the address that passed —
 * an IP, never the name again, so a DNS answer that changes between the
 * check and the connect (DNS rebinding) cannot move the connection.
 *
 * The resolver is the system's (`getaddrinfo`, which also reads /etc/hosts)
 * or the DNS server of `upstream.dns` (A and AAAA queries over UDP, with a
 * timeout and a retry). Also here: the addresses of agentgate's own host,
 * for the guard and for loop detection by address.
 *
 * @module
 */
import dns from "node:dns";
import os from "node:os";
import { canonicalIp, chooseAddress, knownDestination } from "../policy/address.ts";
import type { Destination } from "../policy/types.ts";

/** At most this many addresses of one name are kept (a hostile DNS answer may hold thousands). */
const MAX_ADDRESSES = 16;

/** A DNS failure the proxy answers with 502 (`classifyUpstreamError` reads its code). */
function dnsError(host: string, code: string, detail: string): Error & { code: string } {
  return Object.assign(new Error(`cannot resolve "${host}": ${detail}`), { code });
}

/** Canonical, de-duplicated, IPv4 first (a host without IPv6 routes still connects). */
function order(raw: readonly string[]): string[] {
  const seen = new Set<string>();
  const v4: string[] = [];
  const v6: string[] = [];
  for (const a of raw) {
    const ip = canonicalIp(a);
    if (ip === null || seen.has(ip)) continue;
    seen.add(ip);
    (ip.includes(":") ? v6 : v4).push(ip);
  }
  return [...v4, ...v6].slice(0, MAX_ADDRESSES);
}

/**
 * Resolves upstream names: the system resolver, or one DNS server.
 *
 * @example
 * ```ts
 * const r = new NameResolver({ host: "127.0.0.1", port: 5353 }, 2000);
 * await r.addresses("api.example.test"); // ["127.0.0.2"]
 * ```
 */
export class NameResolver {
  readonly #server: dns.promises.Resolver | null;

  /**
   * @param server the DNS server of `upstream.dns`, or null for the system resolver
   * @param timeoutMs how long one lookup may take in all
   */
  constructor(server: { host: string; port: number } | null, readonly timeoutMs: number) {
    if (server === null) {
      this.#server = null;
      return;
    }
    // Checked under Deno 2.9 against Node 20: Resolver#setServers takes a
    // custom port ("127.0.0.1:5353") and queries it afresh each time (no
    // cache, so a changed answer is seen at once). A missing AAAA record is
    // ENOTFOUND under Deno, ENODATA under Node: both mean "none of this type".
    // Deno caps one try at about 2 s whatever `timeout` says (timeout 30000,
    // tries 1 fails after 2.0 s; Node after 6 s): a silent server fails within
    // about `tries` × 2 s, inside our own deadline.
    const tries = 2;
    this.#server = new dns.promises.Resolver({
      timeout: Math.max(100, Math.floor(timeoutMs / tries)),
      tries,
    });
    const h = server.host.includes(":") ? `[${server.host}]` : server.host;
    this.#server.setServers([`${h}:${server.port}`]);
  }

  /** The addresses of `host` (IPv4 first); rejects with a `dns`-classified error. */
  async addresses(host: string): Promise<string[]> {
    // RFC 6761: localhost names are loopback, whatever a DNS server would say.
    if (host === "localhost" || host.endsWith(".localhost")) return ["127.0.0.1", "::1"];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(dnsError(host, "EAI_AGAIN", `no answer within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
    });
    try {
      const raw = await Promise.race([this.#lookup(host), timeout]);
      const out = order(raw);
      if (out.length === 0) throw dnsError(host, "ENOTFOUND", "no addresses");
      return out;
    } finally {
      clearTimeout(timer);
    }
  }

  async #lookup(host: string): Promise<string[]> {
    const server = this.#server;
    if (server === null) {
      try {
        const all = await dns.promises.lookup(host, { all: true, verbatim: true });
        return all.map((a) => a.address);
      } catch (e) {
        const code = (e as { code?: string }).code;
        throw dnsError(host, code === "ENOTFOUND" ? code : "EAI_FAIL", "the lookup failed");
      }
    }
    const none = (e: unknown): string[] => {
      const code = (e as { code?: string }).code;
      if (code === "ENODATA" || code === "ENOTFOUND") return [];
      // A DNS failure of any kind (no answer, refused, malformed) is a DNS failure: 502
      // (the message must not read as a connect timeout: classifyUpstreamError reads it).
      throw dnsError(host, "EAI_FAIL", "the DNS server gave no usable answer");
    };
    const [v4, v6] = await Promise.all([
      server.resolve4(host).catch(none),
      server.resolve6(host).catch(none),
    ]);
    return [...v4, ...v6];
  }
}

/**
 * The addresses of the host agentgate runs on: its listen address, or — when
 * it listens on every interface (`0.0.0.0`, `::`) — every interface address,
 * re-read at most every 10 s. Also the loop check: a destination that is the
 * proxy itself.
 *
 * @example
 * ```ts
 * const local = new LocalAddresses({ host: "127.0.0.1", port: 4100 });
 * local.loops({ ip: "127.0.0.1", port: 4100, addresses: ["127.0.0.1"], pinned: false }); // true
 * ```
 */
export class LocalAddresses {
  #set: Set<string> = new Set();
  #readAt = -Infinity;
  readonly #wildcard: boolean;
  readonly #listenIp: string;

  constructor(readonly listen: { host: string; port: number }) {
    this.#listenIp = canonicalIp(listen.host) ?? listen.host;
    this.#wildcard = this.#listenIp === "0.0.0.0" || this.#listenIp === "::";
  }

  /** The addresses (canonical text). */
  get set(): ReadonlySet<string> {
    // Only a wildcard listener's set changes (interfaces come and go).
    if (!this.#wildcard && this.#readAt !== -Infinity) return this.#set;
    const now = performance.now();
    if (now - this.#readAt < 10_000) return this.#set;
    this.#readAt = now;
    // Connecting to the unspecified address reaches this host.
    const set = new Set(["0.0.0.0", "::", this.#listenIp]);
    if (this.#wildcard) {
      try {
        for (const list of Object.values(os.networkInterfaces())) {
          for (const a of list ?? []) {
            const ip = canonicalIp(a.address);
            if (ip !== null) set.add(ip);
          }
        }
      } catch {
        // No permission to list interfaces (--allow-sys): at least the loopback ones.
        set.add("127.0.0.1");
        set.add("::1");
      }
    }
    this.#set = set;
    return set;
  }

  /** Whether connecting to `dest` would reach this proxy's own listener. */
  loops(dest: Pick<Destination, "ip" | "port">): boolean {
    if (dest.port !== this.listen.port) return false;
    if (this.set.has(dest.ip)) return true;
    // A wildcard listener also answers on every loopback address.
    return this.#wildcard && (dest.ip === "::1" || dest.ip.startsWith("127."));
  }
}

/**
 * Where a request to `host:port` goes: pinned by `upstream.resolve`, an
 * address literal, or the name resolved (the address chosen among all of
 * them by the guard's classes: a public one first).
 */
export async function resolveDestination(
  resolver: NameResolver,
  pins: ReadonlyMap<string, { host: string; port: number }>,
  host: string,
  port: number,
  local: ReadonlySet<string>,
): Promise<Destination> {
  const known = knownDestination(pins, host, port);
  if (known !== null) return known;
  const addresses = await resolver.addresses(host);
  return { ip: chooseAddress(addresses, local), port, addresses, pinned: false };
}
