/**
 * Requests that take the client's socket over: CONNECT (a tunnel, passed
 * through or intercepted) and WebSocket upgrades (over plain HTTP, and inside
 * tunnels whose requests agentgate reads). Each is admitted and decided on
 * its head, then refused on the raw socket or handed to the tunnel, the
 * interceptor or the upgrade relay, which finish its exchange when the
 * connection closes.
 *
 * What a CONNECT carries is known only from the client's first bytes, after
 * the `200`. Port 443 is taken to be TLS. On another port agentgate reads
 * those bytes first where they decide the outcome — an intercepted host, a
 * tunnel that only a plain request could pass, port 80 — so plain HTTP
 * inside a CONNECT (undici, Node 22) is decided request by request. A denied
 * CONNECT to an intercepted host gets its denial inside the TLS, where the
 * client can show it.
 *
 * @module
 */
import type net from "node:net";
import type tls from "node:tls";
import type { Duplex } from "node:stream";
import { requestInfo } from "../policy/request.ts";
import {
  decideDest,
  decideHead,
  decideState,
  decideTunnel,
  decideTunnelState,
  type RequestStep,
  upgradeVerdict,
} from "../policy/pipeline.ts";
import { knownDestination } from "../policy/address.ts";
import type { Decision, Destination } from "../policy/types.ts";
import { isIntercepted } from "../config/load.ts";
import { type Exchange, newDecisionId, type Outcome } from "./exchange.ts";
import { parseAbsolute, parseAuthority } from "./target.ts";
import { type ForwardTarget, forwardUpgrade, tcpEndpoint, tlsEndpoint } from "./forward.ts";
import { serveHttp1, type TakeoverHead } from "./h1server.ts";
import { closeWhenIdle, idleReason, openTunnel } from "./tunnel.ts";
import { denyAnswer, errorAnswer, rawAnswer, upstreamAnswer } from "./reject.ts";
import { isWebSocketUpgrade } from "./headers.ts";
import {
  CA_REJECTED,
  closedWithoutAlert,
  handshakeReason,
  type InterceptHandlers,
  SILENT_REJECT_MS,
} from "./intercept.ts";
import { interceptedRequest } from "./requests.ts";
import {
  arrive,
  askState,
  clientAddress,
  destinationFailure,
  loopAnswer,
  type ProxyCore,
  recordGap,
  releaseAsked,
  screen,
  sharedMode,
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
      if (ctx.denial) {
        // A denied tunnel: the first request inside gets the denial, readable at last.
        const denial = ctx.denial;
        const h = serveHttp1(socket, (_req, res) => {
          res.writeHead(denial.status, { ...denial.headers, connection: "close" });
          res.end(denial.body);
        });
        c.track(h, socket);
        return;
      }
      if (ctx.handshake) ctx.handshake.secureAt = performance.now();
      const h = serveHttp1(socket, (req, res) => interceptedRequest(c, req, res, ctx), {
        onTakeover: innerTakeovers(c, ctx),
      });
      c.track(h, socket);
      socket.once("data", () => {
        if (ctx.handshake) ctx.handshake.spoke = true;
      });
    },
    handshakeError: (err, ctx) => {
      const silent = closedWithoutAlert(err);
      ctx.ex.finish({
        status: null,
        decision: "error",
        reason: handshakeReason(err, (ctx.handshake?.clientBytes() ?? 1) > 0),
        error: `client TLS handshake: ${err.code ?? err.message}${
          silent ? " (closed without an alert)" : ""
        }`,
      });
    },
  };
}

/**
 * How an intercepted tunnel whose handshake completed ends: a client that
 * closed within {@link SILENT_REJECT_MS} of the handshake without sending a
 * byte inside it rejected our certificate (Node does this instead of sending
 * an alert); one that kept it open longer had nothing to ask.
 */
function interceptedClose(ctx: TunnelCtx): Outcome {
  const hs = ctx.handshake;
  if (!hs || hs.spoke) return { status: 200 };
  if (hs.secureAt === null) {
    // No handshake error was reported (that one says more): the client left mid-handshake.
    return hs.clientBytes() > 0
      ? {
        status: null,
        decision: "error",
        reason: CA_REJECTED,
        error: "client closed during the TLS handshake, without an alert",
      }
      : {
        status: null,
        decision: "error",
        reason: "client closed the tunnel before the TLS handshake began",
        error: "client aborted",
      };
  }
  if (performance.now() - hs.secureAt < SILENT_REJECT_MS) {
    return {
      status: 200,
      decision: "error",
      reason: CA_REJECTED,
      error: "client closed right after the TLS handshake, without a request or an alert",
    };
  }
  return { status: 200, error: "client sent no request" };
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
  // The same options for the first decision and the one completed with the shared state's answer.
  const tunnelOpts = {
    now: ex.ts,
    state: core.state,
    intercept,
    resolve: true,
    local: core.local,
    shared: sharedMode(core),
  };
  const decideOnce = () => {
    const t = performance.now();
    const d = decideTunnel(ex.config, info, tunnelOpts);
    ex.decideSeconds = (ex.decideSeconds ?? 0) + (performance.now() - t) / 1000;
    return d;
  };
  /** A decision that asks the shared backend first (the tunnel's rule keeps counters). */
  const withState = (d: Decision, then: (d: Decision) => void) => {
    if (d.needs !== "state") return then(d);
    const ask = d.stateAsk!;
    void askState(core, ask).then((answer) => {
      if (ex.done) {
        if ("ok" in answer && answer.ok && ask.commit) releaseAsked(core, ask);
        return;
      }
      const again = decideTunnelState(ex.config, info, answer, tunnelOpts);
      recordGap(core, ask, answer, again.verdict !== "deny");
      then(again);
    });
  };
  const decided = (d: Decision) => {
    ex.decision = d;
    if (d.verdict === "deny") {
      // Port 443 carries TLS. On any other port the client may speak plain HTTP
      // inside the CONNECT (undici and Node 22 send `http://` URLs that way):
      // would a plain request to this host stand a chance?
      // Not when the address guard refused the name: a plain request to it
      // resolves to the same address and is refused the same way.
      const plain = hp.port !== 443 && d.policy !== "address" && plainCouldPass(core, ex);
      if (intercept || plain) return void refuseInside(core, s, rest, hp, ex, d, intercept, plain);
      s.end(rawAnswer(denyAnswer(info.id, d)));
      return ex.finish({ status: d.status });
    }
    if (!core.tunnelOpened(ex)) return tooManyTunnels(s, ex);
    if (intercept && hp.port === 443) return interceptTunnel(core, s, rest, hp.host, hp.port, ex);
    if (intercept) return void sniffTunnel(core, s, rest, hp, ex, null);
    // The pipeline asked for the address before anything is forwarded: connect to it.
    const dest = info.dest;
    if (dest === undefined) {
      const reason = "internal error: no checked address to connect to";
      s.end(rawAnswer(errorAnswer(info.id, 502, "bad_gateway", reason)));
      return ex.finish({ status: 502, decision: "error", reason, error: "no address" });
    }
    if (hp.port === 80) return void sniffTunnel(core, s, rest, hp, ex, dest);
    openTunnel(
      s,
      rest,
      addressOf(dest, hp),
      ex,
      ex.config.upstream.connectTimeoutMs,
      ex.config.limits.tunnelIdleMs,
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
  if (!d.needsDest) return withState(d, decided);
  if (d.verdict !== "deny") ex.decision = d;
  whenResolved(core, s, ex, (dest) => {
    info.dest = dest;
    const again = decideOnce();
    // With the address given the engine cannot ask for it again; if it ever did, refuse
    // (fail closed) rather than connect unchecked.
    withState(
      again.needsDest
        ? { ...again, verdict: "deny", status: 403, reason: "internal error", needsDest: undefined }
        : again,
      decided,
    );
  });
}

/**
 * Refuse a tunnel its client has no room for: each one holds two
 * descriptors, and one client must not take them all.
 */
function tooManyTunnels(s: net.Socket, ex: Exchange): void {
  const max = ex.config.limits.maxTunnelsPerClient;
  const reason =
    `too many open tunnels from client "${ex.info.client}": at most ${max} (limits.max_tunnels_per_client)`;
  s.end(rawAnswer(errorAnswer(ex.info.id, 429, "too_many_tunnels", reason)));
  ex.finish({ status: 429, decision: "deny", reason, policy: "max_tunnels_per_client" });
}

/** Where a tunnel or relay connects: the checked address, named after the host it stands for. */
function addressOf(
  dest: Destination,
  hp: { host: string; port: number },
): Pick<ForwardTarget, "connectHost" | "port" | "name" | "namePort"> {
  return {
    connectHost: dest.ip,
    port: dest.port,
    // Failures name the host a resolved address stands for (a pinned one names its address).
    ...(dest.pinned ? {} : { name: hp.host, namePort: hp.port }),
  };
}

/**
 * Resolve the name of a request that took its socket over (CONNECT, an
 * upgrade), then continue with the address: a failed lookup is a 502, an
 * address that is this proxy a 508, a client that leaves meanwhile an abort.
 */
function whenResolved(
  core: ProxyCore,
  s: Duplex,
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

function refuseLoopRaw(s: Duplex, ex: Exchange) {
  const a = loopAnswer(ex);
  s.end(rawAnswer(a));
  ex.finish({ status: 508, decision: "error", reason: a.reason });
}

// --- what the client says inside a CONNECT ------------------------------------------

/** Reason recorded for a CONNECT that carried plain HTTP. */
export const PLAIN_REASON = "plain HTTP inside CONNECT: each request inside is decided on its own";

/** How long to wait for the client's first bytes when they decide what a tunnel is. */
const PEEK_MS = 10_000;
/** Bytes read at most to tell plain HTTP from the rest (a method token is shorter). */
const PEEK_MAX = 64;

const CONNECTED = "HTTP/1.1 200 Connection Established\r\n\r\n";

/**
 * Whether a plain-HTTP request inside this CONNECT could be allowed: the
 * tunnel decided as `http://host:port` with every rule that needs the
 * request left to that request (as for an intercepted tunnel). Decides
 * nothing and commits nothing (no policy runs on a tunnel decided this way).
 */
function plainCouldPass(core: ProxyCore, ex: Exchange): boolean {
  const info = { ...ex.info, scheme: "http" as const };
  return decideTunnel(ex.config, info, { now: ex.ts, state: core.state, intercept: true })
    .verdict !== "deny";
}

/** What the client's first bytes inside a tunnel are. */
type FirstBytes = "tls" | "http" | "other" | "none" | "closed";

/**
 * What `b` is, or null when it could still become an HTTP request line:
 * a TLS record starts with 0x16; an HTTP/1 request with a method token and
 * a space, after the empty lines RFC 9112 lets a client send first. A client
 * cannot pass plain HTTP off as something else by sending it a byte at a time.
 */
export function classifyFirstBytes(b: Uint8Array): FirstBytes | null {
  let i = 0;
  while (i < b.length && (b[i] === 13 || b[i] === 10)) i++;
  if (i === b.length) return b.length >= PEEK_MAX ? "other" : null;
  if (b[i] === 0x16) return "tls";
  const text = new TextDecoder("latin1").decode(b.subarray(i, i + 24));
  if (/^[A-Za-z]{1,20} [\x21-\x7e]/.test(text)) return "http";
  if (/^[A-Za-z]{1,20} ?$/.test(text) && b.length < PEEK_MAX) return null;
  return "other";
}

/**
 * The client's first bytes after the CONNECT was answered (with those that
 * came with it), read until they tell what the tunnel carries. The socket
 * is left paused, the bytes to be handed on.
 */
function firstBytes(
  s: net.Socket,
  rest: Uint8Array,
  ms: number,
): Promise<{ kind: FirstBytes; bytes: Uint8Array }> {
  const known = rest.length > 0 ? classifyFirstBytes(rest) : null;
  if (known !== null) return Promise.resolve({ kind: known, bytes: rest });
  let got = rest;
  return new Promise((resolve) => {
    const done = (kind: FirstBytes) => {
      clearTimeout(timer);
      s.off("data", onData);
      s.off("close", onClose);
      resolve({ kind, bytes: got });
    };
    const onData = (chunk: Uint8Array) => {
      const all = new Uint8Array(got.length + chunk.length);
      all.set(got);
      all.set(chunk, got.length);
      got = all;
      const kind = classifyFirstBytes(got);
      if (kind === null) return;
      s.pause();
      done(kind);
    };
    const onClose = () => done("closed");
    const timer = setTimeout(() => {
      s.pause();
      done(got.length > 0 ? "other" : "none");
    }, ms);
    s.on("data", onData);
    s.once("close", onClose);
  });
}

/**
 * A CONNECT that carries plain HTTP: its requests are served here and each
 * is decided like a plain one (`http`, its path, the tunnel's session); the
 * tunnel gets a `log` row of its own, labelled `http`, when it closes.
 */
function plainTunnel(
  core: ProxyCore,
  s: net.Socket,
  first: Uint8Array,
  host: string,
  port: number,
  ex: Exchange,
) {
  ex.info.scheme = "http";
  ex.decision = {
    verdict: "log",
    rule: null,
    ruleSource: null,
    reason: PLAIN_REASON,
    policy: null,
    status: 200,
    retryAfter: null,
  };
  const ctx: TunnelCtx = { ex, host, port, scheme: "http" };
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
  const idleMs = ex.config.limits.tunnelIdleMs;
  closeWhenIdle(s, idleMs, () => void (idle = idleReason(idleMs)));
  if (first.length) s.unshift(first);
  const h = serveHttp1(s, (req, res) => interceptedRequest(core, req, res, ctx), {
    onTakeover: innerTakeovers(core, ctx),
  });
  core.track(h, s);
}

/**
 * An allowed CONNECT whose first bytes decide what it is: an intercepted
 * host on a port other than 443 (TLS is terminated, plain HTTP decided per
 * request), or port 80 (plain HTTP decided per request, anything else an
 * opaque tunnel). A client that says nothing for {@link PEEK_MS} is cut:
 * no server speaks first on these ports.
 */
async function sniffTunnel(
  core: ProxyCore,
  s: net.Socket,
  rest: Uint8Array,
  hp: { host: string; port: number },
  ex: Exchange,
  /** The checked address for an opaque tunnel (port 80); null for an intercepted host. */
  dest: Destination | null,
) {
  s.write(CONNECTED);
  ex.abort = (why) => {
    s.destroy();
    ex.finish({ status: 200, error: why });
  };
  const first = await firstBytes(s, rest, PEEK_MS);
  if (ex.done) return;
  if (first.kind === "closed") return ex.finish({ status: 200, error: "client aborted" });
  if (first.kind === "none") {
    s.destroy();
    return ex.finish({ status: 200, error: "client sent nothing inside the tunnel: closed" });
  }
  if (first.kind === "http") return plainTunnel(core, s, first.bytes, hp.host, hp.port, ex);
  if (dest === null) return interceptTunnel(core, s, first.bytes, hp.host, hp.port, ex, true);
  openTunnel(
    s,
    first.bytes,
    addressOf(dest, hp),
    ex,
    ex.config.upstream.connectTimeoutMs,
    ex.config.limits.tunnelIdleMs,
    true,
  );
}

/**
 * A denied CONNECT the client could not read a reason from: a host in
 * `tls.intercept` (clients show only "403" or "fetch failed" for a refused
 * CONNECT), or a port where plain HTTP would be decided per request. The
 * CONNECT is answered 200 and the client's first bytes decide:
 *
 * - TLS to an intercepted host: the handshake completes with our leaf and
 *   the first request gets the denial (403/429 and its JSON body), which
 *   the client shows;
 * - plain HTTP: decided per request when one could pass, else answered with
 *   the denial in plain HTTP;
 * - anything else (TLS the policy cannot look into, silence): closed.
 *
 * The tunnel's row is the denial, as for a refused CONNECT.
 */
async function refuseInside(
  core: ProxyCore,
  s: net.Socket,
  rest: Uint8Array,
  hp: { host: string; port: number },
  ex: Exchange,
  d: Decision,
  intercept: boolean,
  plain: boolean,
) {
  s.write(CONNECTED);
  ex.abort = (why) => {
    s.destroy();
    ex.finish({ status: d.status, error: why });
  };
  const first = await firstBytes(s, rest, PEEK_MS);
  if (ex.done) return;
  if (first.kind === "http" && plain) {
    if (!core.tunnelOpened(ex)) return tooManyTunnels(s, ex);
    return plainTunnel(core, s, first.bytes, hp.host, hp.port, ex);
  }
  const answer = denyAnswer(ex.info.id, d);
  if (first.kind === "tls" && intercept) {
    ex.finish({ status: d.status });
    const ctx: TunnelCtx = { ex, host: hp.host, port: hp.port, denial: answer };
    core.interceptor!.accept(s, first.bytes, hp.host, ctx, true).catch(() => s.destroy());
    return;
  }
  if (first.kind === "http") {
    ex.finish({ status: d.status });
    s.end(rawAnswer(answer));
    return;
  }
  ex.finish({
    status: d.status,
    error: first.kind === "tls"
      ? "TLS inside a CONNECT that only plain HTTP could pass (the host is not intercepted): closed"
      : first.kind === "closed"
      ? "client aborted"
      : "client sent no HTTP request inside the CONNECT: closed",
  });
  s.destroy();
}

/**
 * Terminate TLS on an allowed CONNECT; the tunnel's row is written when it
 * closes. `answered`: the client has its 200 already (its first bytes were read).
 */
function interceptTunnel(
  core: ProxyCore,
  s: net.Socket,
  rest: Uint8Array,
  host: string,
  port: number,
  ex: Exchange,
  answered = false,
) {
  const base = s.bytesRead - rest.length;
  const ctx: TunnelCtx = {
    ex,
    host,
    port,
    handshake: { clientBytes: () => s.bytesRead - base, secureAt: null, spoke: false },
  };
  let idle: string | null = null;
  s.once("close", () => {
    ex.bytesIn = s.bytesRead;
    ex.bytesOut = s.bytesWritten;
    if (idle !== null) return ex.finish({ status: 200, error: idle });
    // A handshake cut short is reported by the TLS server right after this
    // close (Deno emits tlsClientError after the socket's close): let it speak first.
    if (ctx.handshake?.secureAt === null) setImmediate(() => ex.finish(interceptedClose(ctx)));
    else ex.finish(interceptedClose(ctx));
  });
  ex.abort = (why) => {
    s.destroy();
    ex.finish({ status: 200, error: why });
  };
  // TLS records in either direction pass through the raw socket.
  const idleMs = ex.config.limits.tunnelIdleMs;
  closeWhenIdle(s, idleMs, () => void (idle = idleReason(idleMs)));
  core.interceptor!.accept(s, rest, host, ctx, answered).catch((e: Error) => {
    const reason = `cannot issue a certificate for "${host}": ${e.message}`;
    if (answered) s.destroy();
    else s.end(rawAnswer(errorAnswer(ex.info.id, 502, "certificate_error", reason)));
    ex.finish({ status: 502, decision: "error", reason, error: "leaf certificate" });
  });
}

function upgrade(core: ProxyCore, head: TakeoverHead, s: net.Socket, rest: Uint8Array) {
  const target = parseAbsolute(head.url ?? "");
  if (target === null || target.scheme !== "http" || !isWebSocketUpgrade(head.headers)) {
    // Only WebSocket upgrades reach here (h1server serves other upgrades as
    // plain requests); absolute-form ones pass through over plain HTTP only
    // (a wss:// client sends CONNECT, and an intercepted one is relayed inside).
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
  upgradeFlow(core, ex, s, head.rawHeaders, (dest) =>
    forwardUpgrade(
      head,
      s,
      rest,
      {
        scheme: "http",
        authority: target.authority,
        rawPath: target.rawPath,
        ...addressOf(dest, target),
      },
      ex,
      upstreamOptions(core, ex.config),
    ));
}

/**
 * Decide an upgrade (it has no body to read): screened, decided from its
 * head, its name resolved when the pipeline asks; a refusal is answered on
 * the raw socket. A rule with a `dlp` policy refuses it: its frames would
 * flow unread (`upgradeVerdict`). `forward` gets the checked address.
 */
function upgradeFlow(
  core: ProxyCore,
  ex: Exchange,
  s: Duplex,
  rawHeaders: readonly string[],
  forward: (dest: Destination) => void,
) {
  const info = ex.info;
  info.dest ??= knownDestination(ex.config.resolve, info.host, info.port) ?? undefined;
  if (info.dest !== undefined && core.loops(info.dest)) return refuseLoopRaw(s, ex);
  const ctx = {
    now: ex.ts,
    state: core.state,
    resolve: true,
    local: core.local,
    shared: sharedMode(core),
  };
  const advance = (step: RequestStep): void => {
    if (step.next === "body") throw new Error("an upgrade has no body to read");
    if (step.next === "state") {
      const ask = step.ask;
      return void askState(core, ask).then((answer) => {
        if (ex.done) {
          if ("ok" in answer && answer.ok && ask.commit) releaseAsked(core, ask);
          return;
        }
        const again = decideState(ex.config, info, answer, { ...ctx, hasBody: false, body: null });
        const v = again.next === "verdict" ? again.verdict.decision.verdict : "deny";
        recordGap(core, ask, answer, v !== "deny");
        advance(again);
      });
    }
    if (step.next === "dest") {
      if (step.asked.verdict !== "deny") ex.decision = step.asked;
      return whenResolved(core, s, ex, (dest) => {
        const t = performance.now();
        const again = decideDest(ex.config, info, dest, { ...ctx, hasBody: false, body: null });
        ex.decideSeconds! += (performance.now() - t) / 1000;
        advance(again);
      });
    }
    const verdict = upgradeVerdict(ex.config, step.verdict);
    const d = verdict.decision;
    ex.decision = d;
    for (const a of core.addons) a.decided?.(ex, verdict);
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
    forward(dest);
  };
  const t = performance.now();
  // An upgrade shows its head: screened like any request head.
  const refused = screen(core, ex, rawHeaders, null);
  const step: RequestStep = refused
    ? { next: "verdict", verdict: refused }
    : decideHead(ex.config, info, { ...ctx, hasBody: false, readAhead: false });
  ex.decideSeconds = (performance.now() - t) / 1000;
  advance(step);
}

/** Upgrades (and stray CONNECTs) inside a tunnel whose requests agentgate reads. */
function innerTakeovers(
  core: ProxyCore,
  ctx: TunnelCtx,
): (head: TakeoverHead, socket: Duplex, rest: Uint8Array) => void {
  return (head, socket, rest) => {
    socket.on("error", () => {}); // the relay handles errors; never crash
    tunnelUpgrade(core, head, socket, rest, ctx);
  };
}

/**
 * A WebSocket upgrade inside an intercepted tunnel (`wss://`, OpenAI's
 * Realtime API) or a plain-HTTP CONNECT: decided like a request (its path,
 * headers and the tunnel's session), then relayed both ways to the origin —
 * over verified TLS for `wss://` — with one row holding the byte counts.
 */
function tunnelUpgrade(
  core: ProxyCore,
  head: TakeoverHead,
  s: Duplex,
  rest: Uint8Array,
  ctx: TunnelCtx,
) {
  const scheme = ctx.scheme ?? "https";
  const tunnel = ctx.ex.info;
  let rawPath = head.url ?? "";
  if (!rawPath.startsWith("/")) rawPath = parseAbsolute(rawPath)?.rawPath ?? "";
  const hostHeader = typeof head.headers.host === "string" ? head.headers.host : "";
  const hp = parseAuthority(hostHeader, scheme === "https" ? 443 : 80);
  const info = requestInfo({
    id: newDecisionId(),
    method: (head.method ?? "GET").toUpperCase(),
    scheme,
    host: ctx.host,
    port: ctx.port,
    rawPath: rawPath || "/",
    headers: head.headers,
    client: tunnel.client,
    session: tunnel.session,
    label: tunnel.label,
  });
  const ex = core.begin(info);
  if (
    head.method === "CONNECT" || rawPath === "" || hp === null || hp.host !== ctx.host ||
    hp.port !== ctx.port
  ) {
    // No domain fronting, and no tunnel inside a tunnel.
    const reason = head.method === "CONNECT" || rawPath === ""
      ? `cannot serve request-target "${String(head.url).slice(0, 200)}" inside a tunnel`
      : `Host "${hostHeader}" does not match the CONNECT target "${ctx.host}:${ctx.port}"`;
    s.end(rawAnswer(errorAnswer(info.id, 421, "misdirected_request", reason)));
    return ex.finish({ status: 421, decision: "deny", reason });
  }
  upgradeFlow(core, ex, s, head.rawHeaders, (dest) =>
    forwardUpgrade(
      head,
      s,
      rest,
      { scheme, authority: hostHeader, rawPath, ...addressOf(dest, ctx) },
      ex,
      {
        ...upstreamOptions(core, ex.config),
        // wss:// is relayed over verified TLS to the checked address, for the tunnel's name.
        endpoint: scheme === "https"
          ? tlsEndpoint(dest.ip, dest.port, ctx.host, core.upstreamTls)
          : tcpEndpoint(dest.ip, dest.port),
      },
    ));
}
