/**
 * Requests that take the client's socket over: CONNECT (a tunnel, passed
 * through or intercepted) and WebSocket upgrades over plain HTTP. Each is
 * admitted and decided on its head, then refused on the raw socket or
 * handed to the tunnel, the interceptor or the upgrade relay, which finish
 * its exchange when the connection closes.
 *
 * @module
 */
import type net from "node:net";
import type tls from "node:tls";
import type { Duplex } from "node:stream";
import { requestInfo } from "../policy/request.ts";
import { decideHead, decideTunnel } from "../policy/pipeline.ts";
import { isIntercepted } from "../config/load.ts";
import { type Exchange, newDecisionId } from "./exchange.ts";
import { parseAbsolute, parseAuthority } from "./target.ts";
import { forwardUpgrade } from "./forward.ts";
import { serveHttp1, type TakeoverHead } from "./h1server.ts";
import { closeWhenIdle, idleReason, openTunnel } from "./tunnel.ts";
import { denyAnswer, errorAnswer, rawAnswer } from "./reject.ts";
import { isWebSocketUpgrade } from "./headers.ts";
import { handshakeReason, type InterceptHandlers } from "./intercept.ts";
import { interceptedRequest } from "./requests.ts";
import { arrive, clientAddress, type ProxyCore, type TunnelCtx, upstreamOptions } from "./core.ts";

/** The takeover handler of the proxy's listener (CONNECT and WebSocket upgrades). */
export function takeovers(
  core: ProxyCore,
): (head: TakeoverHead, socket: Duplex, rest: Uint8Array) => void {
  return (head, socket, rest) => {
    const s = socket as net.Socket;
    s.on("error", () => {}); // errors are handled by the tunnel or relay; never crash
    if (head.method === "CONNECT") connect(core, head, s, rest);
    else upgrade(core, head, s, rest);
  };
}

/** What the interceptor does with a terminated tunnel: serve the requests inside. */
export function interceptHandlers(core: () => ProxyCore): InterceptHandlers<TunnelCtx> {
  return {
    secure: (socket: tls.TLSSocket, ctx: TunnelCtx) => {
      const c = core();
      const h = serveHttp1(socket, (req, res) => interceptedRequest(c, req, res, ctx));
      c.track(h, socket);
    },
    handshakeError: (err, ctx) =>
      ctx.ex.finish({
        status: null,
        decision: "error",
        reason: handshakeReason(err),
        error: `client TLS handshake: ${err.code ?? err.message}`,
      }),
  };
}

function connect(core: ProxyCore, head: TakeoverHead, s: net.Socket, rest: Uint8Array) {
  const hp = parseAuthority(head.url ?? "", null);
  if (hp === null) {
    const a = errorAnswer(
      newDecisionId(),
      400,
      "bad_request",
      `CONNECT needs "host:port", not "${String(head.url).slice(0, 200)}"`,
    );
    s.end(rawAnswer(a));
    return;
  }
  const info = requestInfo({
    id: newDecisionId(),
    method: "CONNECT",
    scheme: "https",
    host: hp.host,
    port: hp.port,
    rawPath: null,
    headers: head.headers,
    client: clientAddress(s),
  });
  const ex = arrive(core, head.headers, info, (a) => s.end(rawAnswer(a)));
  if (ex === null) return;
  if (core.isSelf(hp.host, hp.port)) {
    const reason = "CONNECT to the proxy itself would loop";
    s.end(rawAnswer(errorAnswer(info.id, 508, "loop_detected", reason)));
    return ex.finish({ status: 508, decision: "error", reason });
  }
  const intercept = core.interceptor !== null && isIntercepted(ex.config, hp.host, hp.port);
  const t = performance.now();
  const d = decideTunnel(ex.config, info, { now: ex.ts, state: core.state, intercept });
  ex.decideSeconds = (performance.now() - t) / 1000;
  ex.decision = d;
  if (d.verdict === "deny") {
    s.end(rawAnswer(denyAnswer(info.id, d)));
    return ex.finish({ status: d.status });
  }
  if (!core.tunnelOpened(ex)) {
    // Each tunnel holds two descriptors: one client must not take them all.
    const max = ex.config.limits.maxTunnelsPerClient;
    const reason =
      `too many open tunnels from client "${info.client}": at most ${max} (limits.max_tunnels_per_client)`;
    s.end(rawAnswer(errorAnswer(info.id, 429, "too_many_tunnels", reason)));
    return ex.finish({ status: 429, decision: "deny", reason, policy: "max_tunnels_per_client" });
  }
  if (intercept) return interceptTunnel(core, s, rest, hp.host, hp.port, ex);
  const to = ex.config.resolve.get(hp.host) ?? hp;
  openTunnel(
    s,
    rest,
    to.host,
    to.port,
    ex,
    ex.config.upstream.connectTimeoutMs,
    ex.config.limits.tunnelIdleMs,
  );
}

/** Terminate TLS on an allowed CONNECT; the tunnel's row is written when it closes. */
function interceptTunnel(
  core: ProxyCore,
  s: net.Socket,
  rest: Uint8Array,
  host: string,
  port: number,
  ex: Exchange,
) {
  let idle: string | null = null;
  s.once("close", () => {
    ex.bytesIn = s.bytesRead;
    ex.bytesOut = s.bytesWritten;
    ex.finish({ status: 200, error: idle });
  });
  ex.abort = (why) => {
    s.destroy();
    ex.finish({ status: 200, error: why });
  };
  // TLS records in either direction pass through the raw socket.
  const idleMs = ex.config.limits.tunnelIdleMs;
  closeWhenIdle(s, idleMs, () => void (idle = idleReason(idleMs)));
  core.interceptor!.accept(s, rest, host, { ex, host, port }).catch((e: Error) => {
    const reason = `cannot issue a certificate for "${host}": ${e.message}`;
    s.end(rawAnswer(errorAnswer(ex.info.id, 502, "certificate_error", reason)));
    ex.finish({ status: 502, decision: "error", reason, error: "leaf certificate" });
  });
}

function upgrade(core: ProxyCore, head: TakeoverHead, s: net.Socket, rest: Uint8Array) {
  const target = parseAbsolute(head.url ?? "");
  if (target === null || target.scheme !== "http" || !isWebSocketUpgrade(head.headers)) {
    // Only WebSocket upgrades reach here (h1server serves other upgrades as
    // plain requests); they pass through over plain HTTP only.
    const a = errorAnswer(
      newDecisionId(),
      target === null ? 400 : 501,
      target === null ? "bad_request" : "upgrade_not_supported",
      target === null
        ? `cannot proxy request-target "${String(head.url).slice(0, 200)}"`
        : `upgrade to "${head.headers.upgrade}" is not supported: only WebSocket upgrades over http:// pass through`,
    );
    s.end(rawAnswer(a));
    return;
  }
  const info = requestInfo({
    id: newDecisionId(),
    method: (head.method ?? "GET").toUpperCase(),
    scheme: "http",
    host: target.host,
    port: target.port,
    rawPath: target.rawPath,
    headers: head.headers,
    client: clientAddress(s),
  });
  const ex = arrive(core, head.headers, info, (a) => s.end(rawAnswer(a)));
  if (ex === null) return;
  const t = performance.now();
  const step = decideHead(ex.config, info, { now: ex.ts, state: core.state, hasBody: false });
  ex.decideSeconds = (performance.now() - t) / 1000;
  if (step.next !== "verdict") throw new Error("an upgrade has no body to read");
  const d = step.verdict.decision;
  ex.decision = d;
  for (const a of core.addons) a.decided?.(ex, step.verdict);
  if (d.verdict === "deny") {
    s.end(rawAnswer(denyAnswer(info.id, d)));
    return ex.finish({ status: d.status });
  }
  forwardUpgrade(
    head,
    s,
    rest,
    {
      scheme: "http",
      connectHost: target.host,
      port: target.port,
      authority: target.authority,
      rawPath: target.rawPath,
    },
    ex,
    upstreamOptions(core, ex.config),
  );
}
