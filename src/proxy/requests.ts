/**
 * HTTP requests, plain (absolute-form to the proxy) or inside an intercepted
 * tunnel: admitted, decided by the pipeline (reading the body when it asks),
 * then refused or handed to the addons and forwarded. Every exit path
 * finishes the exchange, which writes its one audit row.
 *
 * @module
 */
import type { IncomingHttpHeaders } from "node:http";
import { type Readable, Transform } from "node:stream";
import { requestInfo } from "../policy/request.ts";
import {
  decideBody,
  decideDest,
  decideHead,
  decideState,
  type RequestStep,
  type RequestVerdict,
} from "../policy/pipeline.ts";
import type { BodyRead } from "../policy/request.ts";
import { knownDestination } from "../policy/address.ts";
import { type Exchange, newDecisionId } from "./exchange.ts";
import { parseAbsolute, parseAuthority, type Target } from "./target.ts";
import {
  closedEarly,
  forwardHttp,
  type InboundRequest,
  type OutboundResponse,
  type ResponseObserver,
  type ResponseTransform,
  tcpEndpoint,
  tlsEndpoint,
} from "./forward.ts";
import { bufferBody, replay } from "./body.ts";
import type { H1Request, H1Response } from "./h1server.ts";
import { type Answer, denyAnswer, errorAnswer, upstreamAnswer } from "./reject.ts";
import {
  admitted,
  arrive,
  askState,
  clientAddress,
  destinationFailure,
  loopAnswer,
  type ProxyCore,
  recordGap,
  releaseAsked,
  screen,
  screensBody,
  sharedMode,
  type TunnelCtx,
  upstreamOptions,
} from "./core.ts";
import type { OutgoingRequest } from "./addons/types.ts";
import type { StateAsk } from "../state/mod.ts";
import type { Decision, RequestInfo } from "../policy/types.ts";

function send(res: OutboundResponse, a: Answer, extra: Record<string, string> = {}) {
  res.writeHead(a.status, { ...a.headers, ...extra });
  res.end(a.body);
}

function hasBodyOf(req: InboundRequest): boolean {
  return req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0" ||
    req.headers["transfer-encoding"] !== undefined;
}

function expectsContinue(req: InboundRequest): boolean {
  return String(req.headers.expect ?? "").toLowerCase() === "100-continue";
}

/**
 * The request handler of the proxy's own listener: absolute-form requests
 * are proxied, origin-form ones (and those for the proxy's own address) are
 * the proxy's internal routes.
 */
/** What an absolute-form request shows the policy (a fresh decision id). */
function infoOf(req: H1Request, target: Target): RequestInfo {
  return requestInfo({
    id: newDecisionId(),
    method: (req.method ?? "GET").toUpperCase(),
    scheme: target.scheme,
    host: target.host,
    port: target.port,
    rawPath: target.rawPath,
    headers: req.headers,
    client: clientAddress(req.socket),
  });
}

export function plainRequests(core: ProxyCore): (req: H1Request, res: H1Response) => void {
  return (req, res) => {
    const url = req.url ?? "";
    if (url.startsWith("/")) return core.internal(req, res);
    const target = parseAbsolute(url);
    if (target === null) {
      return send(
        res,
        errorAnswer(
          newDecisionId(),
          400,
          "bad_request",
          `cannot proxy request-target "${
            url.slice(0, 200)
          }": use an absolute http:// URL, or CONNECT for https`,
        ),
        { connection: "close" },
      );
    }
    if (core.isSelf(target.host, target.port)) {
      // The proxy's own routes need no proxy credentials, but credentials that
      // come along are checked like any: wrong ones are a 407 and a row
      // (`agentgate env --proxy` asks /_/health this way whether its token works).
      if (req.headers["proxy-authorization"] !== undefined) {
        const info = infoOf(req, target);
        if (!admitted(core, req.headers, info, (a) => send(res, a, { connection: "close" }))) {
          return;
        }
      }
      return core.internal(req, res);
    }
    const info = infoOf(req, target);
    // An unread body would have to be drained to keep the connection: close it instead.
    const close: Record<string, string> = hasBodyOf(req) ? { connection: "close" } : {};
    const ex = arrive(core, req.headers, info, (a) => send(res, a, close));
    if (ex === null) return;
    const via = req.headers["via"];
    if (typeof via === "string" && via.includes(core.via.slice(4))) {
      const reason = "request looped back to this proxy";
      send(res, errorAnswer(info.id, 508, "loop_detected", reason), { connection: "close" });
      return ex.finish({ status: 508, decision: "error", reason });
    }
    proxyRequest(core, req, res, ex, { authority: target.authority, rawPath: target.rawPath });
  };
}

/**
 * Requests inside a tunnel whose bytes agentgate reads: an intercepted one
 * (TLS terminated, `https`) or a CONNECT that carries plain HTTP (`http`, as
 * undici sends `http://` URLs). They inherit its client and session.
 */
export function interceptedRequest(
  core: ProxyCore,
  req: H1Request,
  res: H1Response,
  ctx: TunnelCtx,
): void {
  const tunnel = ctx.ex.info;
  const scheme = ctx.scheme ?? "https";
  let rawPath = req.url;
  if (!rawPath.startsWith("/")) {
    const abs = parseAbsolute(rawPath);
    rawPath = abs?.rawPath ?? "";
  }
  const hostHeader = typeof req.headers.host === "string" ? req.headers.host : "";
  const hp = parseAuthority(hostHeader, scheme === "https" ? 443 : 80);
  const info = requestInfo({
    id: newDecisionId(),
    method: (req.method ?? "GET").toUpperCase(),
    scheme,
    host: ctx.host,
    port: ctx.port,
    rawPath: rawPath || "/",
    headers: req.headers,
    client: tunnel.client,
    session: tunnel.session,
    label: tunnel.label,
  });
  const ex = core.begin(info);
  if (hp === null || hp.host !== ctx.host || hp.port !== ctx.port || rawPath === "") {
    // No domain fronting: a request inside the tunnel is for the CONNECT target only.
    const reason = rawPath === ""
      ? `cannot serve request-target "${req.url.slice(0, 200)}" inside a tunnel`
      : `Host "${hostHeader}" does not match the CONNECT target "${ctx.host}:${ctx.port}"`;
    send(res, errorAnswer(info.id, 421, "misdirected_request", reason), { connection: "close" });
    return ex.finish({ status: 421, decision: "deny", reason });
  }
  proxyRequest(core, req, res, ex, { authority: hostHeader, rawPath });
}

/** What is sent upstream besides the decision: the Host header's value and the path as sent. */
interface RequestTarget {
  /** host[:port] as the client wrote it (the Host header we send). */
  authority: string;
  /** Path and query exactly as the client sent them. */
  rawPath: string;
}

/**
 * Decide a request (plain or intercepted) with the pipeline and forward or
 * refuse it. The addons screen it first (a refusal charges no rule's
 * limits); then the pipeline asks for what it needs next: the body (buffered
 * up to the cap it names, and screened too) or the destination address
 * (resolved once, here, and connected to as it was checked); the request is
 * decided again with it.
 */
function proxyRequest(
  core: ProxyCore,
  req: InboundRequest,
  res: OutboundResponse,
  ex: Exchange,
  target: RequestTarget,
) {
  const hasBody = hasBodyOf(req);
  // An address literal or a pinned host is known without asking DNS.
  ex.info.dest ??= knownDestination(ex.config.resolve, ex.info.host, ex.info.port) ?? undefined;
  const flow: Flow = { req, res, ex, target, expect: expectsContinue(req), body: null, hasBody };
  if (ex.info.dest !== undefined && core.loops(ex.info.dest)) return refuseLoop(flow);
  const t = performance.now();
  const refused = screen(core, ex, req.rawHeaders, null);
  if (refused) {
    ex.decideSeconds = (performance.now() - t) / 1000;
    return settle(core, flow, refused);
  }
  const step = decideHead(ex.config, ex.info, {
    now: ex.ts,
    state: core.state,
    hasBody,
    readBody: hasBody && screensBody(core, ex),
    resolve: true,
    local: core.local,
    shared: sharedMode(core),
  });
  ex.decideSeconds = (performance.now() - t) / 1000;
  advance(core, flow, step);
}

/** Take the step the pipeline asks for. */
function advance(core: ProxyCore, flow: Flow, step: RequestStep) {
  if (step.next === "verdict") return settle(core, flow, step.verdict);
  if (step.next === "body") return readBody(core, flow, step.cap);
  if (step.next === "state") return askShared(core, flow, step.ask);
  resolveDest(core, flow, step.asked);
}

/** What every later step of a request is decided with (after the head). */
function stepContext(core: ProxyCore, ex: Exchange) {
  return {
    now: ex.ts,
    state: core.state,
    resolve: true as const,
    local: core.local,
    shared: sharedMode(core),
  };
}

/** Ask the shared backend for the limits of the deciding rule, then decide with its answer. */
function askShared(core: ProxyCore, flow: Flow, ask: StateAsk) {
  const { res, ex } = flow;
  const onClose = () => ex.finish(closedEarly(res));
  res.once("close", onClose);
  askState(core, ask).then((answer) => {
    res.off("close", onClose);
    if (ex.done) {
      // Nobody is waiting for it: what the backend held for it is given back.
      if ("ok" in answer && answer.ok && ask.commit) releaseAsked(core, ask);
      return;
    }
    const t = performance.now();
    const step = decideState(ex.config, ex.info, answer, {
      ...stepContext(core, ex),
      hasBody: flow.hasBody,
      body: flow.body,
    });
    ex.decideSeconds! += (performance.now() - t) / 1000;
    const v = step.next === "verdict" ? step.verdict.decision.verdict : "deny";
    recordGap(core, ask, answer, v !== "deny");
    advance(core, flow, step);
  });
}

function readBody(core: ProxyCore, flow: Flow, cap: number) {
  const { req, res, ex } = flow;
  if (flow.expect) {
    res.writeContinue();
    flow.expect = false;
  }
  const onClose = () => ex.finish(closedEarly(res));
  res.once("close", onClose);
  bufferBody(req, cap).then((b) => {
    res.off("close", onClose);
    if (ex.done) return;
    flow.body = b;
    const t = performance.now();
    // Screened before the policy: a refusal charges no rule's limits.
    const refused = screen(core, ex, req.rawHeaders, b);
    const step: RequestStep = refused
      ? { next: "verdict", verdict: refused }
      : decideBody(ex.config, ex.info, b, {
        ...stepContext(core, ex),
      });
    ex.decideSeconds! += (performance.now() - t) / 1000;
    advance(core, flow, step);
  }, () => {
    res.off("close", onClose);
    ex.finish(closedEarly(res));
  });
}

/**
 * Resolve the request's name once and decide again with the address; a
 * failed lookup is a 502, an address that is the proxy itself a 508.
 */
function resolveDest(core: ProxyCore, flow: Flow, asked: Decision) {
  const { res, ex } = flow;
  // The guard asks with the decision it is about to make: a failure is recorded under it.
  if (asked.verdict !== "deny") ex.decision = asked;
  const onClose = () => ex.finish(closedEarly(res));
  res.once("close", onClose);
  // A forced shutdown does not wait for a slow DNS answer.
  ex.abort = (why) => {
    res.destroy();
    ex.finish({ status: null, error: why });
  };
  core.resolve(ex.config, ex.info.host, ex.info.port).then((dest) => {
    res.off("close", onClose);
    ex.abort = () => {};
    if (ex.done) return;
    if (core.loops(dest)) {
      ex.info.dest = dest;
      return refuseLoop(flow);
    }
    const t = performance.now();
    const step = decideDest(ex.config, ex.info, dest, {
      ...stepContext(core, ex),
      hasBody: flow.hasBody,
      body: flow.body,
    });
    ex.decideSeconds! += (performance.now() - t) / 1000;
    advance(core, flow, step);
  }, (e) => {
    res.off("close", onClose);
    ex.abort = () => {};
    if (ex.done) return;
    const f = destinationFailure(ex, e);
    send(res, upstreamAnswer(ex.info.id, f.kind, f.reason), unreadClose(flow));
    ex.finish(f.outcome);
  });
}

/** The request's address is the proxy's own listener: 508, never a loop. */
function refuseLoop(flow: Flow) {
  const { res, ex } = flow;
  const a = loopAnswer(ex);
  send(res, a, { connection: "close" });
  ex.finish({ status: 508, decision: "error", reason: a.reason });
}

/** An unread body would have to be drained to keep the connection: close it instead. */
function unreadClose(flow: Flow): Record<string, string> {
  return flow.body === null && flow.hasBody ? { connection: "close" } : {};
}

/** One request between its arrival and the upstream. */
interface Flow {
  req: InboundRequest;
  res: OutboundResponse;
  ex: Exchange;
  target: RequestTarget;
  /** The client waits for `100 Continue` before it sends the body. */
  expect: boolean;
  /** What was read of the body, or null when it was not read. */
  body: BodyRead | null;
  hasBody: boolean;
}

/** Refuse a denied request, or let the addons prepare an allowed one and forward it to its address. */
function settle(core: ProxyCore, flow: Flow, verdict: RequestVerdict) {
  const { req, res, ex, body } = flow;
  const d = verdict.decision;
  ex.decision = d;
  for (const a of core.addons) a.decided?.(ex, verdict);
  if (d.verdict === "deny") {
    // An unread body would have to be drained to keep the connection: close it instead.
    const unread = body === null && (req.headers["content-length"] ?? "0") !== "0" ||
      req.headers["transfer-encoding"] !== undefined;
    send(res, denyAnswer(ex.info.id, d), unread ? { connection: "close" } : {});
    return ex.finish({ status: d.status });
  }
  // The pipeline asked for the address before anything is forwarded: connect to it.
  const dest = ex.info.dest;
  if (dest === undefined) {
    const reason = "internal error: no checked address to connect to";
    send(res, errorAnswer(ex.info.id, 502, "bad_gateway", reason), unreadClose(flow));
    return ex.finish({ status: 502, decision: "error", reason, error: "no address" });
  }
  if (flow.expect) res.writeContinue();
  // Read whole already: sent with its head in one write (Content-Length).
  const out = new Outgoing(
    verdict,
    req.headers,
    verdict.body ?? (body?.complete ? body.chunks[0] : undefined),
  );
  for (const a of core.addons) a.request?.(ex, out);
  let rest: Readable | undefined;
  if (out.body === undefined && body) {
    rest = replay(req, body);
    // What streams past the part that was read is watched as it goes (the credentials tripwire).
    if (!body.complete && out.restWatchers.length) rest = watchRest(rest, out.restWatchers, ex);
  }
  // `limits.ambiguous_paths: normalize`: the upstream sees the path that was decided; an
  // addon may replace the query (a credential presented as a query parameter).
  const raw = flow.target.rawPath;
  const q = raw.indexOf("?");
  const query = out.query ?? (q === -1 ? "" : raw.slice(q + 1));
  const rawPath = verdict.forwardPath === undefined && out.query === null
    ? raw
    : `${verdict.forwardPath ?? (q === -1 ? raw : raw.slice(0, q))}${
      query === "" ? "" : `?${query}`
    }`;
  const https = ex.info.scheme === "https";
  forwardHttp(
    req,
    res,
    {
      scheme: ex.info.scheme,
      connectHost: dest.ip,
      port: dest.port,
      authority: flow.target.authority,
      rawPath,
      // Failures name the host a resolved address stands for (a pinned one names its address).
      ...(dest.pinned ? {} : { name: ex.info.host, namePort: ex.info.port }),
    },
    ex,
    core.pool,
    {
      ...upstreamOptions(core, ex.config),
      closeAfter: () => core.draining(),
      // The pool is keyed by address (and name for TLS): a connection is reused
      // only for the address that was checked for this request.
      endpoint: https
        ? tlsEndpoint(dest.ip, dest.port, ex.info.host, core.upstreamTls)
        : tcpEndpoint(dest.ip, dest.port),
      body: rest,
      bodyBytes: out.body,
      observers: out.observers,
      transform: out.response,
      headerEdits: out.edits?.size ? out.edits : undefined,
    },
  );
}

/** The addons' view of an allowed request (a class: no closures per request on the hot path). */
class Outgoing implements OutgoingRequest {
  observers: ResponseObserver[] = [];
  response: ResponseTransform | undefined;
  edits: Map<string, string | null> | undefined;
  /** A replacement query string, or null to send the client's. */
  query: string | null = null;
  restWatchers: ((chunk: Uint8Array) => string | null)[] = [];

  constructor(
    readonly verdict: RequestVerdict,
    readonly headers: IncomingHttpHeaders,
    public body: Uint8Array | undefined,
  ) {
    this.edits = verdict.headerEdits;
  }

  setBody(bytes: Uint8Array): void {
    this.body = bytes;
  }

  setHeader(name: string, value: string | null): void {
    // A copy: the verdict's edits belong to the verdict.
    if (this.edits === this.verdict.headerEdits) this.edits = new Map(this.edits);
    (this.edits ??= new Map()).set(name.toLowerCase(), value);
  }

  setQuery(query: string): void {
    this.query = query;
  }

  watchRest(watch: (chunk: Uint8Array) => string | null): void {
    this.restWatchers.push(watch);
  }

  observe(observer: ResponseObserver): void {
    this.observers.push(observer);
  }

  transform(transform: ResponseTransform): void {
    this.response = this.response ? chainTransforms(this.response, transform) : transform;
  }
}

/**
 * The rest of a body as it streams, each chunk shown to the watchers before
 * it goes on; a watcher's reason stops the upload there (the chunk and the
 * rest are withheld) and aborts the exchange with it.
 */
function watchRest(
  body: Readable,
  watchers: ((chunk: Uint8Array) => string | null)[],
  ex: Exchange,
): Readable {
  let cut = false;
  const out = new Transform({
    transform(chunk: Uint8Array, _enc, done) {
      if (cut) return done();
      for (const w of watchers) {
        const why = w(chunk);
        if (why === null) continue;
        cut = true;
        body.unpipe(out);
        ex.abort(why);
        return done();
      }
      done(null, chunk);
    },
  });
  return body.pipe(out);
}

/**
 * Two response transforms in a row: `b` rewrites what `a` wrote. A cut by
 * `a` ends the response there (`b` does not see the rest).
 */
export function chainTransforms(a: ResponseTransform, b: ResponseTransform): ResponseTransform {
  let useA = false;
  let useB = false;
  return {
    head(status, raw) {
      useA = a.head(status, raw);
      useB = b.head(status, raw);
      return useA || useB;
    },
    chunk(c) {
      const first = useA ? a.chunk(c) : { out: c };
      if (!useB) return first;
      const second = b.chunk(first.out);
      return { out: second.out, cut: first.cut ?? second.cut };
    },
    end() {
      const tail = useA ? a.end() : new Uint8Array(0);
      if (!useB) return tail;
      const last = b.chunk(tail).out;
      const rest = b.end();
      if (rest.length === 0) return last;
      const all = new Uint8Array(last.length + rest.length);
      all.set(last);
      all.set(rest, last.length);
      return all;
    },
  };
}
