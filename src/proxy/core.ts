/**
 * What the request handlers (`requests.ts`, `takeover.ts`) need of the
 * running proxy: the policy in force, the limits' state, the addons, the
 * upstream pool, and the bookkeeping of exchanges in flight. `ProxyServer`
 * implements it; the handlers never see its sockets or its listener.
 *
 * @module
 */
import type { IncomingHttpHeaders } from "node:http";
import type tls from "node:tls";
import type { AgentgateConfig } from "../config/load.ts";
import type { PolicyState } from "../state/mod.ts";
import type { RequestInfo } from "../policy/types.ts";
import type { Addon } from "./addons/types.ts";
import type { Exchange } from "./exchange.ts";
import type { ConnectionPool } from "./h1client.ts";
import type { H1Connection, H1Request, H1Response } from "./h1server.ts";
import type { Answer } from "./reject.ts";
import type { UpstreamOptions } from "./forward.ts";
import type { Interceptor } from "./intercept.ts";

/** An intercepted CONNECT: what each request inside inherits. */
export interface TunnelCtx {
  ex: Exchange;
  host: string;
  port: number;
}

/** The running proxy, as its handlers see it. */
export interface ProxyCore {
  /** The policy in force now (a request keeps the one it arrived under: `ex.config`). */
  readonly config: AgentgateConfig;
  /** Rate-limit counters and spending ledgers, kept across reloads. */
  readonly state: PolicyState;
  readonly addons: readonly Addon[];
  readonly pool: ConnectionPool;
  /** Value of the `Via` header this proxy adds (`1.1 agentgate-xxxx`). */
  readonly via: string;
  /** Roots upstream TLS is verified against (undefined: the runtime's). */
  readonly upstreamTls: tls.SecureContext | undefined;
  /** Terminates TLS of intercepted tunnels; null when nothing is intercepted. */
  readonly interceptor: Interceptor<TunnelCtx> | null;
  /** True once shutdown began: responses announce `Connection: close`. */
  draining(): boolean;
  /** Start the exchange of a request or tunnel (its audit row is written when it finishes). */
  begin(info: RequestInfo): Exchange;
  /** Run the addons' admission: an answer refuses the request (407). */
  admit(headers: IncomingHttpHeaders, info: RequestInfo): Answer | null;
  /** Whether `host:port` is this proxy (a request that would loop). */
  isSelf(host: string, port: number): boolean;
  /**
   * A tunnel is about to open: counted until its exchange finishes. False
   * (and not counted) when its client already holds
   * `limits.max_tunnels_per_client` open tunnels.
   */
  tunnelOpened(ex: Exchange): boolean;
  /** An HTTP/1.1 connection to close when the proxy drains. */
  track(conn: H1Connection, socket: { once(ev: "close", f: () => void): unknown }): void;
  /** Requests to the proxy itself (health, metrics, dashboard, API). */
  internal(req: H1Request, res: H1Response): void;
}

/** Upstream settings of the configuration a request was decided under. */
export function upstreamOptions(core: ProxyCore, config: AgentgateConfig): UpstreamOptions {
  return {
    connectTimeoutMs: config.upstream.connectTimeoutMs,
    responseTimeoutMs: config.upstream.responseTimeoutMs,
    via: core.via,
  };
}

/** The client's address without the IPv4-mapped prefix. */
export function clientAddress(socket: { remoteAddress?: string }): string {
  const a = socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/**
 * A request, tunnel or upgrade arrives: admit it (the addons' admission),
 * then begin its exchange. A refused one is answered with `refuse` and
 * recorded as denied by proxy authentication; null is returned for it.
 */
export function arrive(
  core: ProxyCore,
  headers: IncomingHttpHeaders,
  info: RequestInfo,
  refuse: (answer: Answer) => void,
): Exchange | null {
  const refused = core.admit(headers, info);
  const ex = core.begin(info);
  if (refused === null) return ex;
  refuse(refused);
  ex.finish({
    status: refused.status,
    decision: "deny",
    policy: "proxy_auth",
    reason: refused.reason,
  });
  return null;
}
