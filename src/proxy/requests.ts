/**
 * HTTP requests, plain (absolute-form to the proxy) or inside an intercepted
 * tunnel: admitted, decided by the pipeline (reading the body when it asks),
 * then refused or handed to the addons and forwarded. Every exit path
 * finishes the exchange, which writes its one audit row.
 *
 * @module
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { requestInfo } from "../policy/request.ts";
import { resolveUpstream } from "../config/sections.ts";
import { decideBody, decideHead, type RequestVerdict } from "../policy/pipeline.ts";
import type { BodyRead } from "../policy/request.ts";
import { type Exchange, newDecisionId } from "./exchange.ts";
import { parseAbsolute, parseAuthority } from "./target.ts";
import {
  closedEarly,
  forwardHttp,
  type ForwardTarget,
  type InboundRequest,
  type OutboundResponse,
  type ResponseObserver,
  type ResponseTransform,
  tlsEndpoint,
} from "./forward.ts";
import type { Endpoint } from "./h1client.ts";
import { bufferBody, replay } from "./body.ts";
import type { H1Request, H1Response } from "./h1server.ts";
import { type Answer, denyAnswer, errorAnswer } from "./reject.ts";
import {
  admitted,
  arrive,
  clientAddress,
  type ProxyCore,
  type TunnelCtx,
  upstreamOptions,
} from "./core.ts";
import type { OutgoingRequest } from "./addons/types.ts";

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
        const info = requestInfo({
          id: newDecisionId(),
          method: (req.method ?? "GET").toUpperCase(),
          scheme: target.scheme,
          host: target.host,
          port: target.port,
          rawPath: target.rawPath,
          headers: req.headers,
          client: clientAddress(req.socket),
        });
        if (!admitted(core, req.headers, info, (a) => send(res, a, { connection: "close" }))) {
          return;
        }
      }
      return core.internal(req, res);
    }
    const info = requestInfo({
      id: newDecisionId(),
      method: (req.method ?? "GET").toUpperCase(),
      scheme: target.scheme,
      host: target.host,
      port: target.port,
      rawPath: target.rawPath,
      headers: req.headers,
      client: clientAddress(req.socket),
    });
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
    // `upstream.resolve` applies here too: connect to the address it names,
    // and for https:// still verify the certificate against the real name.
    const to = resolveUpstream(ex.config.resolve, target.host, target.port);
    proxyRequest(
      core,
      req,
      res,
      ex,
      {
        scheme: target.scheme,
        connectHost: to?.host ?? target.host,
        port: to?.port ?? target.port,
        authority: target.authority,
        rawPath: target.rawPath,
      },
      to && target.scheme === "https"
        ? tlsEndpoint(to.host, to.port, target.host, core.upstreamTls)
        : undefined,
    );
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
  const to = resolveUpstream(ex.config.resolve, ctx.host, ctx.port) ?? ctx;
  proxyRequest(
    core,
    req,
    res,
    ex,
    { scheme, connectHost: to.host, port: to.port, authority: hostHeader, rawPath },
    scheme === "https" ? tlsEndpoint(to.host, to.port, ctx.host, core.upstreamTls) : undefined,
  );
}

/**
 * Decide a request (plain or intercepted) with the pipeline and forward or
 * refuse it. When the pipeline asks for the body, it is buffered (up to the
 * cap the pipeline names) and the request decided again with it.
 */
function proxyRequest(
  core: ProxyCore,
  req: InboundRequest,
  res: OutboundResponse,
  ex: Exchange,
  target: ForwardTarget,
  endpoint: Endpoint | undefined,
) {
  const expect = expectsContinue(req);
  const t = performance.now();
  const step = decideHead(ex.config, ex.info, {
    now: ex.ts,
    state: core.state,
    hasBody: hasBodyOf(req),
  });
  ex.decideSeconds = (performance.now() - t) / 1000;
  if (step.next === "verdict") {
    return settle(core, { req, res, ex, target, endpoint, expect, body: null }, step.verdict);
  }
  if (expect) res.writeContinue();
  const onClose = () => ex.finish(closedEarly(res));
  res.once("close", onClose);
  bufferBody(req, step.cap).then((b) => {
    res.off("close", onClose);
    if (ex.done) return;
    const t2 = performance.now();
    const verdict = decideBody(ex.config, ex.info, b, { now: ex.ts, state: core.state });
    ex.decideSeconds! += (performance.now() - t2) / 1000;
    settle(core, { req, res, ex, target, endpoint, expect: false, body: b }, verdict);
  }, () => {
    res.off("close", onClose);
    ex.finish(closedEarly(res));
  });
}

/** One request between its verdict and the upstream. */
interface Flow {
  req: InboundRequest;
  res: OutboundResponse;
  ex: Exchange;
  target: ForwardTarget;
  endpoint: Endpoint | undefined;
  /** The client waits for `100 Continue` before it sends the body. */
  expect: boolean;
  /** What was read of the body, or null when it was not read. */
  body: BodyRead | null;
}

/** Refuse a denied request, or let the addons prepare an allowed one and forward it. */
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
  if (flow.expect) res.writeContinue();
  // Read whole already: sent with its head in one write (Content-Length).
  const out = new Outgoing(
    verdict,
    req.headers,
    verdict.body ?? (body?.complete ? body.chunks[0] : undefined),
  );
  for (const a of core.addons) a.request?.(ex, out);
  let rest: Readable | undefined;
  if (out.body === undefined && body) rest = replay(req, body);
  forwardHttp(req, res, flow.target, ex, core.pool, {
    ...upstreamOptions(core, ex.config),
    closeAfter: () => core.draining(),
    endpoint: flow.endpoint,
    body: rest,
    bodyBytes: out.body,
    observers: out.observers,
    transform: out.response,
    headerEdits: out.edits?.size ? out.edits : undefined,
  });
}

/** The addons' view of an allowed request (a class: no closures per request on the hot path). */
class Outgoing implements OutgoingRequest {
  observers: ResponseObserver[] = [];
  response: ResponseTransform | undefined;
  edits: Map<string, string | null> | undefined;

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
    (this.edits ??= new Map()).set(name.toLowerCase(), value);
  }

  observe(observer: ResponseObserver): void {
    this.observers.push(observer);
  }

  transform(transform: ResponseTransform): void {
    if (this.response) throw new Error("a response has one transform");
    this.response = transform;
  }
}
