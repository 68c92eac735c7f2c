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
import { decideDest, decideHead, decideTunnel, type RequestStep } from "../policy/pipeline.ts";
import { knownDestination } from "../policy/address.ts";
import type { Decision, Destination } from "../policy/types.ts";
import { isIntercepted } from "../config/load.ts";
import { type Exchange, newDecisionId } from "./exchange.ts";
import { parseAbsolute, parseAuthority } from "./target.ts";
import { forwardUpgrade } from "./forward.ts";
import { serveHttp1, type TakeoverHead } from "./h1server.ts";
import { openTunnel } from "./tunnel.ts";
import { denyAnswer, errorAnswer, rawAnswer, upstreamAnswer } from "./reject.ts";
import { isWebSocketUpgrade } from "./headers.ts";
import { handshakeReason, type InterceptHandlers } from "./intercept.ts";
import { interceptedRequest } from "./requests.ts";
import {
  arrive,
  clientAddress,
  destinationFailure,
  loopAnswer,
  type ProxyCore,
  screen,
  type TunnelCtx,
  upstreamOptions,
} from "./core.ts";

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
  const intercept = core.interceptor !== null && isIntercepted(ex.config, hp.host, hp.port);
  const decideOnce = () => {
    const t = performance.now();
    const d = decideTunnel(ex.config, info, {
      now: ex.ts,
      state: core.state,
      intercept,
      resolve: true,
      local: core.local,
    });
    ex.decideSeconds = (ex.decideSeconds ?? 0) + (performance.now() - t) / 1000;
    return d;
  };
  const decided = (d: Decision) => {
    ex.decision = d;
    if (d.verdict === "deny") {
      s.end(rawAnswer(denyAnswer(info.id, d)));
      return ex.finish({ status: d.status });
    }
    if (intercept) {
      core.tunnelOpened(ex);
      return interceptTunnel(core, s, rest, hp.host, hp.port, ex);
    }
    // The pipeline asked for the address before anything is forwarded: connect to it.
    const dest = info.dest;
    if (dest === undefined) {
      const reason = "internal error: no checked address to connect to";
      s.end(rawAnswer(errorAnswer(info.id, 502, "bad_gateway", reason)));
      return ex.finish({ status: 502, decision: "error", reason, error: "no address" });
    }
    core.tunnelOpened(ex);
    openTunnel(
      s,
      rest,
      {
        connectHost: dest.ip,
        port: dest.port,
        ...(dest.pinned ? {} : { name: hp.host, namePort: hp.port }),
      },
      ex,
      ex.config.upstream.connectTimeoutMs,
    );
  };
  // Loop detection by address: a name (or an address) that is this proxy
  // would tunnel back into it, and its /_/api would answer inside.
  info.dest = knownDestination(ex.config.resolve, hp.host, hp.port) ?? undefined;
  if (info.dest !== undefined && core.loops(info.dest)) return refuseLoopRaw(s, ex);
  // A CONNECT shows its host and its own headers: screened like any request head.
  const refused = screen(core, ex, head.rawHeaders, null);
  if (refused) {
    for (const a of core.addons) a.decided?.(ex, refused);
    return decided(refused.decision);
  }
  const d = decideOnce();
  if (!d.needsDest) return decided(d);
  if (d.verdict !== "deny") ex.decision = d;
  whenResolved(core, s, ex, (dest) => {
    info.dest = dest;
    const again = decideOnce();
    // With the address given the engine cannot ask for it again; if it ever did, refuse
    // (fail closed) rather than connect unchecked.
    decided(
      again.needsDest
        ? { ...again, verdict: "deny", status: 403, reason: "internal error", needsDest: undefined }
        : again,
    );
  });
}

/**
 * Resolve the name of a request that took its socket over (CONNECT, an
 * upgrade), then continue with the address: a failed lookup is a 502, an
 * address that is this proxy a 508, a client that leaves meanwhile an abort.
 */
function whenResolved(
  core: ProxyCore,
  s: net.Socket,
  ex: Exchange,
  then: (dest: Destination) => void,
) {
  const onClose = () => ex.finish({ status: null, error: "client aborted" });
  s.once("close", onClose);
  // A forced shutdown does not wait for a slow DNS answer.
  ex.abort = (why) => {
    s.destroy();
    ex.finish({ status: null, error: why });
  };
  core.resolve(ex.config, ex.info.host, ex.info.port).then((dest) => {
    s.off("close", onClose);
    ex.abort = () => {};
    if (ex.done) return;
    if (core.loops(dest)) {
      ex.info.dest = dest;
      return refuseLoopRaw(s, ex);
    }
    then(dest);
  }, (e) => {
    s.off("close", onClose);
    ex.abort = () => {};
    if (ex.done) return;
    const f = destinationFailure(ex, e);
    s.end(rawAnswer(upstreamAnswer(ex.info.id, f.kind, f.reason)));
    ex.finish(f.outcome);
  });
}

function refuseLoopRaw(s: net.Socket, ex: Exchange) {
  const a = loopAnswer(ex);
  s.end(rawAnswer(a));
  ex.finish({ status: 508, decision: "error", reason: a.reason });
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
  s.once("close", () => {
    ex.bytesIn = s.bytesRead;
    ex.bytesOut = s.bytesWritten;
    ex.finish({ status: 200 });
  });
  ex.abort = (why) => {
    s.destroy();
    ex.finish({ status: 200, error: why });
  };
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
  info.dest = knownDestination(ex.config.resolve, target.host, target.port) ?? undefined;
  if (info.dest !== undefined && core.loops(info.dest)) return refuseLoopRaw(s, ex);
  const ctx = { now: ex.ts, state: core.state, resolve: true, local: core.local };
  const advance = (step: RequestStep) => {
    if (step.next === "body") throw new Error("an upgrade has no body to read");
    if (step.next === "dest") {
      if (step.asked.verdict !== "deny") ex.decision = step.asked;
      return whenResolved(core, s, ex, (dest) => {
        const t = performance.now();
        const again = decideDest(ex.config, info, dest, { ...ctx, hasBody: false, body: null });
        ex.decideSeconds! += (performance.now() - t) / 1000;
        advance(again);
      });
    }
    const d = step.verdict.decision;
    ex.decision = d;
    for (const a of core.addons) a.decided?.(ex, step.verdict);
    if (d.verdict === "deny") {
      s.end(rawAnswer(denyAnswer(info.id, d)));
      return ex.finish({ status: d.status });
    }
    const dest = info.dest;
    if (dest === undefined) {
      const reason = "internal error: no checked address to connect to";
      s.end(rawAnswer(errorAnswer(info.id, 502, "bad_gateway", reason)));
      return ex.finish({ status: 502, decision: "error", reason, error: "no address" });
    }
    forwardUpgrade(
      head,
      s,
      rest,
      {
        scheme: "http",
        connectHost: dest.ip,
        port: dest.port,
        authority: target.authority,
        rawPath: target.rawPath,
        ...(dest.pinned ? {} : { name: target.host, namePort: target.port }),
      },
      ex,
      upstreamOptions(core, ex.config),
    );
  };
  const t = performance.now();
  // An upgrade shows its head: screened like any request head.
  const refused = screen(core, ex, head.rawHeaders, null);
  const step: RequestStep = refused
    ? { next: "verdict", verdict: refused }
    : decideHead(ex.config, info, { ...ctx, hasBody: false });
  ex.decideSeconds = (performance.now() - t) / 1000;
  advance(step);
}
