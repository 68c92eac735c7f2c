/**
 * The proxy's listener: accepts client sockets, serves HTTP/1.1 on them with
 * our own layer (`h1server.ts`), and hands each request to its handler —
 * `requests.ts` for HTTP requests, `takeover.ts` for CONNECT and WebSocket
 * upgrades. It keeps the exchanges in flight (one audit row each), the
 * policy in force across reloads, and shuts down gracefully. Deciding is
 * the pipeline's job (`policy/pipeline.ts`); everything that observes or
 * changes traffic is an addon (`addons/`); requests for the proxy itself go
 * to the `internal` handler its owner gives it (health, metrics, dashboard).
 *
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import type { IncomingHttpHeaders } from "node:http";
import type { AgentgateConfig } from "../config/load.ts";
import type { AuditEventV1 } from "../audit/event.ts";
import type { Destination, RequestInfo } from "../policy/types.ts";
import type { PolicyState } from "../state/mod.ts";
import { Exchange } from "./exchange.ts";
import { createPool } from "./forward.ts";
import type { ConnectionPool } from "./h1client.ts";
import type { LeafStore } from "../tls/store.ts";
import { Interceptor } from "./intercept.ts";
import { type H1Connection, type H1Request, type H1Response, serveHttp1 } from "./h1server.ts";
import type { Answer } from "./reject.ts";
import type { Addon } from "./addons/types.ts";
import type { ProxyCore, TunnelCtx } from "./core.ts";
import { plainRequests } from "./requests.ts";
import { interceptHandlers, takeovers } from "./takeover.ts";
import { LocalAddresses, NameResolver, resolveDestination } from "./resolve.ts";
import { Slots } from "../util/slots.ts";

/** What a running proxy needs. */
export interface ProxyOptions {
  config: AgentgateConfig;
  /** Where each finished exchange's row goes (the audit writer). */
  audit: { add(event: AuditEventV1): void };
  /** Counters and ledgers of the limits (rebuilt from the audit by the owner). */
  state: PolicyState;
  /** Addons, in the order their hooks run (`addons/mod.ts`). */
  addons: readonly Addon[];
  /** Requests for the proxy itself (origin-form, or absolute-form to its own address). */
  internal: (req: H1Request, res: H1Response) => void;
  /** Diagnostics (internal errors); default stderr. */
  log?: (line: string) => void;
  /** Leaf certificates for interception (required when `tls.intercept` is set). */
  leaves?: LeafStore;
  /** Roots upstream TLS is verified against (system roots + `tls.upstream_ca`). */
  upstreamCa?: string[];
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "0.0.0.0", "::"]);
const NO_ADDRESSES: ReadonlySet<string> = new Set();

/**
 * A running proxy.
 *
 * @example
 * const proxy = new ProxyServer({ config, audit, state, addons, internal });
 * const { port } = await proxy.listen("127.0.0.1", 0);
 * // …
 * await proxy.shutdown(5000);
 */
export class ProxyServer implements ProxyCore {
  readonly server: net.Server;
  readonly pool: ConnectionPool = createPool();
  readonly via = `1.1 agentgate-${crypto.randomUUID().slice(0, 8)}`;
  readonly startedAt = Date.now();
  readonly state: PolicyState;
  readonly addons: readonly Addon[];
  readonly interceptor: Interceptor<TunnelCtx> | null = null;
  readonly upstreamTls: tls.SecureContext | undefined;
  /** Requests decided since start, by verdict (for the shutdown summary). */
  readonly counters = { requests: 0, denied: 0, errors: 0 };
  #config: AgentgateConfig;
  #address: { host: string; port: number } | null = null;
  #local: LocalAddresses | null = null;
  /** Resolvers by DNS server and timeout (a reload may change either). */
  #resolvers = new Map<string, NameResolver>();
  // Slots, not Sets: see util/slots.ts (a Set churned per request kept requests alive in V8).
  #inflight = new Slots<Exchange>();
  #tunnels = new Slots<Exchange>();
  /** Open tunnels by client address. */
  #tunnelsByClient = new Map<string, number>();
  #sockets = new Slots<net.Socket>();
  #h1 = new Slots<H1Connection>();
  #draining = false;
  #drained: (() => void) | null = null;
  #log: (line: string) => void;

  constructor(private readonly opts: ProxyOptions) {
    this.#config = opts.config;
    this.#log = opts.log ?? ((l) => console.error(l));
    this.state = opts.state;
    this.addons = opts.addons;
    if (opts.leaves) {
      this.interceptor = new Interceptor<TunnelCtx>(opts.leaves, interceptHandlers(() => this));
    }
    if (opts.upstreamCa) this.upstreamTls = tls.createSecureContext({ ca: opts.upstreamCa });
    const onRequest = plainRequests(this);
    const onTakeover = takeovers(this);
    // Our own HTTP/1.1 layer on plain sockets, as for intercepted traffic: in
    // Deno it costs ~8 us less per request than node:http's server (which
    // runs on Deno.serve underneath), and it answers malformed requests with
    // 400 itself. CONNECT and upgrades take the socket over.
    this.server = net.createServer((s: net.Socket) => {
      const socketSlot = this.#sockets.add(s);
      s.once("close", () => this.#sockets.delete(socketSlot, s));
      s.on("error", () => {}); // a reset client must never crash the proxy
      let h1Slot = -1;
      const h = serveHttp1(s, onRequest, {
        keepAliveTimeoutMs: 60_000,
        onTakeover: (head, socket, rest) => {
          this.#h1.delete(h1Slot, h);
          onTakeover(head, socket, rest);
        },
        onError: (e) =>
          this.#log(`agentgate: internal error serving a request: ${(e as Error)?.stack ?? e}`),
      });
      h1Slot = this.#track(h, s);
    });
  }

  /**
   * Swap in a new policy (already loaded and compiled completely): requests
   * in flight finish under the one they started with; rate-limit and spend
   * state of policies that survive is kept. Settings bound at start (listen
   * address, audit file, CA, dashboard access) need a restart: they are
   * reported, not applied.
   */
  reload(next: AgentgateConfig): { warnings: string[] } {
    const prev = this.#config;
    const warnings: string[] = [];
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (next.audit.path !== prev.audit.path) {
      warnings.push("audit.path changed: restart agentgate to write to the new file");
    }
    if (
      next.tls.caDir !== prev.tls.caDir || (next.tls.intercept.length > 0 && !this.interceptor)
    ) {
      warnings.push("tls (CA or first intercepted host) changed: restart agentgate to apply it");
    }
    if (next.dashboard !== prev.dashboard || next.dashboardToken !== prev.dashboardToken) {
      warnings.push("dashboard settings changed: restart agentgate to apply them");
    }
    if (!same(next.listen, prev.listen)) {
      warnings.push("proxy.listen changed: restart agentgate to listen there");
    }
    this.#config = next;
    this.state.retainSlots(next.policy.rules.flatMap((r) => r.checkers.map((c) => c.stateKey)));
    return { warnings };
  }

  /** The loaded configuration. */
  get config(): AgentgateConfig {
    return this.#config;
  }

  /** Listen; resolves with the bound address (port 0 -> the chosen port). */
  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        const a = this.server.address() as net.AddressInfo;
        this.#address = { host: a.address, port: a.port };
        this.#local = new LocalAddresses(this.#address);
        resolve(this.#address);
      });
    });
  }

  /** Requests and tunnels in flight. */
  get inflight(): number {
    return this.#inflight.size;
  }

  /** CONNECT tunnels open now. */
  get tunnelsOpen(): number {
    return this.#tunnels.size;
  }

  /**
   * Stop accepting, let in-flight requests finish for up to `graceMs`, then
   * cut what is left (each still gets its audit row). The audit is not closed
   * here: the caller flushes it after.
   */
  async shutdown(graceMs = 5000): Promise<{ forced: number }> {
    this.#draining = true;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    // Idle keep-alive connections close now, busy ones after their response.
    for (const h of this.#h1.values()) h.close();
    let forced = 0;
    if (this.#inflight.size > 0) {
      const drained = new Promise<void>((r) => (this.#drained = r));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((
        r,
      ) => (timer = setTimeout(() => r("timeout"), graceMs)));
      const res = await Promise.race([drained, timeout]);
      clearTimeout(timer);
      if (res === "timeout") {
        for (const ex of this.#inflight.values()) {
          forced++;
          ex.abort("proxy shut down before the request finished");
        }
      }
    }
    for (const s of this.#sockets.values()) s.destroy();
    this.pool.destroy();
    await closed;
    return { forced };
  }

  // --- ProxyCore: what the handlers use ---------------------------------------

  draining(): boolean {
    return this.#draining;
  }

  #sink = {
    record: (event: AuditEventV1, ex: Exchange) => {
      this.opts.audit.add(event);
      this.#inflight.delete(ex.inflightSlot, ex);
      if (this.#tunnels.delete(ex.tunnelSlot, ex)) {
        const n = (this.#tunnelsByClient.get(ex.info.client) ?? 1) - 1;
        if (n > 0) this.#tunnelsByClient.set(ex.info.client, n);
        else this.#tunnelsByClient.delete(ex.info.client);
      }
      for (const a of this.addons) {
        try {
          a.done?.(event, ex);
        } catch (e) {
          this.#log(`agentgate: addon "${a.name}" failed: ${(e as Error)?.stack ?? e}`);
        }
      }
      if (event.decision === "deny" || event.decision === "would_deny") this.counters.denied++;
      else if (event.decision === "error") this.counters.errors++;
      if (this.#draining && this.#inflight.size === 0) this.#drained?.();
    },
  };

  begin(info: RequestInfo): Exchange {
    // The policy in force when the request arrived decides it, even across a reload.
    const ex = new Exchange(info, this.#sink, this.#config);
    ex.inflightSlot = this.#inflight.add(ex);
    this.counters.requests++;
    return ex;
  }

  admit(headers: IncomingHttpHeaders, info: RequestInfo): Answer | null {
    for (const a of this.addons) {
      const refused = a.admit?.(headers, info);
      if (refused) return refused;
    }
    return null;
  }

  isSelf(host: string, port: number): boolean {
    const a = this.#address;
    if (!a || port !== a.port) return false;
    return host === a.host || LOOPBACK.has(host);
  }

  get local(): ReadonlySet<string> {
    return this.#local?.set ?? NO_ADDRESSES;
  }

  loops(dest: Pick<Destination, "ip" | "port">): boolean {
    return this.#local?.loops(dest) ?? false;
  }

  resolve(config: AgentgateConfig, host: string, port: number): Promise<Destination> {
    const dns = config.upstream.dns;
    const timeoutMs = config.upstream.connectTimeoutMs;
    const key = `${dns ? `${dns.host} ${dns.port}` : "system"} ${timeoutMs}`;
    let r = this.#resolvers.get(key);
    if (r === undefined) {
      if (this.#resolvers.size > 8) this.#resolvers.clear();
      this.#resolvers.set(key, r = new NameResolver(dns, timeoutMs));
    }
    return resolveDestination(r, config.resolve, host, port, this.local);
  }

  tunnelOpened(ex: Exchange): boolean {
    const n = this.#tunnelsByClient.get(ex.info.client) ?? 0;
    if (n >= ex.config.limits.maxTunnelsPerClient) return false;
    this.#tunnelsByClient.set(ex.info.client, n + 1);
    ex.tunnelSlot = this.#tunnels.add(ex);
    return true;
  }

  track(conn: H1Connection, socket: { once(ev: "close", f: () => void): unknown }): void {
    this.#track(conn, socket);
  }

  /** {@link ProxyServer.track}, returning the connection's slot (a takeover lets go of it). */
  #track(conn: H1Connection, socket: { once(ev: "close", f: () => void): unknown }): number {
    const slot = this.#h1.add(conn);
    socket.once("close", () => this.#h1.delete(slot, conn));
    if (this.#draining) conn.close();
    return slot;
  }

  internal(req: H1Request, res: H1Response): void {
    this.opts.internal(req, res);
  }
}
