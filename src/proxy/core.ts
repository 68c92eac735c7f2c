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
import type { OnStateError, PolicyState, StateAnswer, StateAsk } from "../state/mod.ts";
import type { Destination, RequestInfo } from "../policy/types.ts";
import type { Addon } from "./addons/types.ts";
import type { Exchange } from "./exchange.ts";
import type { ConnectionPool } from "./h1client.ts";
import type { H1Connection, H1Request, H1Response } from "./h1server.ts";
import {
  type Answer,
  classifyUpstreamError,
  errorAnswer,
  type UpstreamFailure,
  upstreamReason,
} from "./reject.ts";
import type { Outcome } from "./exchange.ts";
import type { RequestVerdict } from "../policy/pipeline.ts";
import type { BodyRead } from "../policy/request.ts";
import type { UpstreamOptions } from "./forward.ts";
import type { Interceptor } from "./intercept.ts";

/** An intercepted CONNECT: what each request inside inherits. */
export interface TunnelCtx {
  ex: Exchange;
  host: string;
  port: number;
  /** Requests inside: `https` (TLS terminated), or `http` (plain HTTP inside the CONNECT). */
  scheme?: "http" | "https";
  /**
   * A denied tunnel to an intercepted host: the handshake completes so that
   * the first request inside gets this answer (clients show its reason).
   */
  denial?: Answer;
  /**
   * How the client's side of the TLS went, to tell a client that rejected
   * the agentgate CA (it says nothing: Node closes without an alert) from
   * one that simply had nothing to ask.
   */
  handshake?: {
    /** Bytes the client sent after the CONNECT was answered (a ClientHello, …). */
    clientBytes(): number;
    /** `performance.now()` when the handshake completed, or null. */
    secureAt: number | null;
    /** The client sent something inside the TLS (a request). */
    spoke: boolean;
  };
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
  /** Whether `host:port` names this proxy (absolute-form requests for its own routes). */
  isSelf(host: string, port: number): boolean;
  /** Addresses of the host agentgate runs on (canonical), for the address guard. */
  readonly local: ReadonlySet<string>;
  /** Whether connecting to `dest` would reach this proxy itself (a loop, by address). */
  loops(dest: Pick<Destination, "ip" | "port">): boolean;
  /**
   * Where a request to `host:port` goes under `config`: pinned, an address
   * literal, or the name resolved once (`upstream.dns` or the system
   * resolver). Rejects with a DNS error.
   */
  resolve(config: AgentgateConfig, host: string, port: number): Promise<Destination>;
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
 * recorded by proxy authentication — as a `challenge` when it carried no
 * credentials (git/libcurl, .NET and Java send theirs only after a 407, so
 * this is the first half of a normal exchange, not a denial), as `deny` when
 * its credentials authenticated nothing. Null is returned for it.
 */
export function arrive(
  core: ProxyCore,
  headers: IncomingHttpHeaders,
  info: RequestInfo,
  refuse: (answer: Answer) => void,
): Exchange | null {
  return admitted(core, headers, info, refuse) ? core.begin(info) : null;
}

/**
 * The admission step of {@link arrive} alone, for a request that is not
 * forwarded and so has no row when it is admitted (the proxy's own routes
 * reached through it): false when it was refused, answered and recorded.
 */
export function admitted(
  core: ProxyCore,
  headers: IncomingHttpHeaders,
  info: RequestInfo,
  refuse: (answer: Answer) => void,
): boolean {
  const refused = core.admit(headers, info);
  if (refused === null) return true;
  const ex = core.begin(info);
  refuse(refused);
  ex.finish({
    status: refused.status,
    decision: headers["proxy-authorization"] === undefined ? "challenge" : "deny",
    policy: "proxy_auth",
    reason: refused.reason,
  });
  return false;
}

/**
 * The addons' screening of an admitted request (before the policy decides
 * it): the first refusal, or null.
 */
export function screen(
  core: ProxyCore,
  ex: Exchange,
  rawHeaders: readonly string[],
  body: BodyRead | null,
): RequestVerdict | null {
  for (const a of core.addons) {
    const v = a.screen?.(ex, rawHeaders, body);
    if (v) return v;
  }
  return null;
}

/** Whether an addon screens the body of this request (it is then read before the decision). */
export function screensBody(core: ProxyCore, ex: Exchange): boolean {
  for (const a of core.addons) if (a.readsBody?.(ex)) return true;
  return false;
}

/**
 * A failed lookup of a request's name, as its answer and audit outcome: 502
 * (504 when it timed out). Recorded as an upstream failure when the policy had
 * already decided to forward the request, else as a failure before the decision.
 */
export function destinationFailure(
  ex: Exchange,
  e: unknown,
): { kind: UpstreamFailure; reason: string; outcome: Outcome } {
  const kind = classifyUpstreamError(e);
  const reason = upstreamReason(kind, `${ex.info.host}:${ex.info.port}`, e);
  const status = kind === "timeout" ? 504 : 502;
  return {
    kind,
    reason,
    outcome: {
      status,
      decision: "error",
      reason,
      error: ex.decision !== null ? `upstream ${kind}` : `name not resolved (${kind})`,
    },
  };
}

/** 508 for a request whose address is the proxy's own listener (it would loop). */
export function loopAnswer(ex: Exchange): Answer {
  const d = ex.info.dest!;
  const addr = `${d.ip.includes(":") ? `[${d.ip}]` : d.ip}:${d.port}`;
  const reason = ex.info.host === d.ip && ex.info.port === d.port
    ? `${addr} is this proxy: the request would loop`
    : `"${ex.info.host}:${ex.info.port}" resolves to ${addr}, this proxy: the request would loop`;
  return errorAnswer(ex.info.id, 508, "loop_detected", reason);
}

/** The shared backend's failure policy, or undefined when limits are in-process (no `state:`). */
export function sharedMode(core: ProxyCore): OnStateError | undefined {
  return core.state.shared?.onError;
}

/**
 * Asks the shared backend what a decision's `state` step needs (one round
 * trip); never rejects: a failure is the `{ error }` answer.
 */
export async function askState(core: ProxyCore, ask: StateAsk): Promise<StateAnswer> {
  const shared = core.state.shared;
  if (shared === null) return { error: "no shared state" };
  try {
    return await shared.ask(ask);
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/**
 * A request decided while the backend could not answer (`on_state_error:
 * local | allow`) and forwarded: its request counts go to the backend when
 * it returns (its charges follow at settlement), so the fleet's windows
 * include the gap.
 */
export function recordGap(core: ProxyCore, ask: StateAsk, answer: StateAnswer, forwarded: boolean) {
  const shared = core.state.shared;
  if (shared === null || !("error" in answer) || !forwarded || !ask.commit) return;
  for (const op of ask.ops) {
    if (op.kind === "count") {
      shared.count({ key: op.key, id: ask.id, ts: ask.now, perMs: op.perMs });
    }
  }
}

/** What the backend holds for a request that was recorded but will not be forwarded is released. */
export function releaseAsked(core: ProxyCore, ask: StateAsk): void {
  const release = ask.ops.flatMap((op) =>
    op.kind === "amount" ? [op.hold] : op.kind === "reserve" ? op.keys : []
  );
  if (release.length) core.state.shared?.settle({ id: ask.id, ts: ask.now, release, charges: [] });
}
