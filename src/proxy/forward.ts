/**
 * Forwarding plain HTTP (and absolute-form https) requests upstream with
 * streaming bodies both ways and pooled keep-alive connections, and passing
 * WebSocket upgrades through.
 *
 * @module
 */
import type http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { type Duplex, Readable, type Writable } from "node:stream";
import { endToEnd, headerLines } from "./headers.ts";
import {
  classifyUpstreamError,
  rawAnswer,
  upstreamAnswer,
  type UpstreamFailure,
  upstreamReason,
} from "./reject.ts";
import type { Exchange, Outcome } from "./exchange.ts";
import { noteReadsOf } from "./reclaim.ts";
import { type BodyFraming, ConnectionPool, type Endpoint, UpstreamCall } from "./h1client.ts";

/** What the proxy uses of an inbound request: node:http's IncomingMessage or our H1Request. */
export interface InboundRequest extends Readable {
  method?: string;
  url?: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
}

/**
 * What the proxy uses of a response: our H1Response (node:http's
 * ServerResponse takes the same; headers as an object or a raw list).
 */
export interface OutboundResponse extends Writable {
  writeHead(
    status: number,
    statusText?: string | Record<string, string | string[]> | readonly string[],
    headers?: Record<string, string | string[]> | readonly string[],
  ): unknown;
  readonly headersSent: boolean;
  statusCode: number;
  writeContinue(): void;
  /** Set when the server answered for the handler (a malformed request body: 400). */
  readonly refused?: { status: number; reason: string } | null;
}

/**
 * How an exchange ends when its response closed before it was complete: the
 * server refused the request itself (a malformed chunked body, answered 400),
 * or the client went away.
 *
 * @example
 * res.on("close", () => { if (!res.writableFinished) ex.finish(closedEarly(res)); });
 */
export function closedEarly(res: OutboundResponse): Outcome {
  const r = res.refused;
  if (r) return { status: r.status, decision: "error", reason: r.reason, error: r.reason };
  return { status: res.headersSent ? res.statusCode : null, error: "client aborted" };
}

/**
 * Sees a response as it streams to the client (LLM usage taps, DLP `warn`
 * scans); never delays or changes it: each chunk is written to the client
 * first, and the response keeps its own framing.
 */
export interface ResponseObserver {
  head(status: number, rawHeaders: string[]): void;
  chunk(chunk: Uint8Array): void;
  /** Once: `complete` is true when the whole response reached the proxy. */
  end(complete: boolean): void;
}

/** Rewrites a response in flight (DLP redaction); changes its length. */
export interface ResponseTransform {
  /** Called with the response head; false = leave this response alone. */
  head(status: number, rawHeaders: string[]): boolean;
  /** Output for one chunk; `cut` ends the response here (the rest is withheld). */
  chunk(chunk: Uint8Array): { out: Uint8Array; cut?: string };
  /** Whatever the transform still holds. */
  end(): Uint8Array;
}

/** Upstream connection settings. */
export interface UpstreamOptions {
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /** Value of the `Via` header we add (`1.1 agentgate-xxxx`). */
  via: string;
}

/** The keep-alive pool shared by all requests of one proxy. */
export function createPool(): ConnectionPool {
  return new ConnectionPool();
}

/** Methods that carry no body unless they say so. */
const BODYLESS_BY_DEFAULT = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"]);

/** Set a connect timeout on a fresh socket. */
function guardConnect(socket: net.Socket, ms: number, fail: (e: Error) => void) {
  if (!socket.connecting) return;
  const t = setTimeout(
    () =>
      fail(
        Object.assign(new Error(`connect timeout after ${ms} ms`), { code: "UPSTREAM_TIMEOUT" }),
      ),
    ms,
  );
  socket.once("connect", () => clearTimeout(t));
  socket.once("close", () => clearTimeout(t));
}

/** What the server hands to {@link forwardHttp}. */
export interface ForwardTarget {
  scheme: "http" | "https";
  /** The address to connect to: the one the address guard checked (never a name to resolve again). */
  connectHost: string;
  port: number;
  /** Value of the Host header sent upstream (the request-target's authority). */
  authority: string;
  /** Path and query exactly as the client sent them. */
  rawPath: string;
  /** The request's host name, for reasons (`"example.com:80" (93.184.216.34)`). */
  name?: string;
  /** The request's port, when the address's port differs (`upstream.resolve`). */
  namePort?: number;
}

/**
 * How a failure names the upstream: the address connected to, and the
 * request's host and port when they differ (`["93.184.216.34:80", "example.com:80"]`).
 */
export function targetLabel(
  t: Pick<ForwardTarget, "connectHost" | "port" | "name" | "namePort">,
): [string, string | undefined] {
  const namePort = t.namePort ?? t.port;
  const addr = `${t.connectHost}:${t.port}`;
  if (t.name === undefined || (t.name === t.connectHost && namePort === t.port)) {
    return [addr, undefined];
  }
  return [addr, `${t.name.includes(":") ? `[${t.name}]` : t.name}:${namePort}`];
}

/** A plain TCP endpoint (the https variant comes with interception). */
export function tcpEndpoint(host: string, port: number): Endpoint {
  return { key: `tcp:${host}:${port}`, connect: () => net.connect({ host, port }) };
}

/**
 * A TLS endpoint verified against `servername` and the given roots (the
 * runtime's defaults when none): `host` may be another address
 * (`upstream.resolve`), the certificate must still name `servername`.
 */
export function tlsEndpoint(
  host: string,
  port: number,
  servername: string,
  roots?: tls.SecureContext,
): Endpoint {
  return {
    key: `tls:${host}:${port}:${servername}`,
    tls: true,
    connect: () =>
      leafOnlyPeerCertificate(tls.connect({
        // Over an explicit TCP socket, so flowControl can stop its reads (Deno's
        // TLSSocket keeps reading when paused).
        socket: net.connect({ host, port }),
        servername: net.isIP(servername) ? undefined : servername,
        // Verify the name even when connecting to another address.
        checkServerIdentity: (_h, cert) => tls.checkServerIdentity(servername, cert),
        ALPNProtocols: ["http/1.1"],
        ...(roots ? { secureContext: roots } : {}),
      })),
  };
}

/**
 * Deno 2.9's `node:tls` asks for the detailed peer certificate once per
 * connection (`onConnectSecure` → `getPeerCertificate(true)`) only to pass
 * it to `checkServerIdentity`, and builds its issuer chain by parsing every
 * certificate of the `ca` list into an X509Certificate and a legacy object:
 * with the ~150 system roots that is ~10 ms of CPU per new upstream TLS
 * connection (12.5 ms against 2.8 ms in a 200-connection loop on loopback;
 * the same loop under Node 20 costs 1.5–2 ms with or without the roots).
 * The chain has already been verified natively (rustls) by then, and the
 * name check reads only `subject` and `subjectaltname`, which the leaf-only
 * object carries: this socket answers the detailed call with the leaf.
 * Nothing of ours reads the chain (see tests/intercept_test.ts: an untrusted
 * certificate and one naming another host are still refused).
 */
function leafOnlyPeerCertificate(socket: tls.TLSSocket): tls.TLSSocket {
  const get = socket.getPeerCertificate;
  socket.getPeerCertificate = function (this: tls.TLSSocket) {
    return get.call(this, false);
  } as typeof get;
  return socket;
}

/** Request headers the proxy writes itself (Host, Via, the framing) or must not pass on. */
const REQUEST_SKIP: readonly string[] = ["host", "expect", "via", "content-length"];
/** An upgrade request's headers the proxy writes itself. */
const UPGRADE_SKIP: readonly string[] = ["host", "via"];
/** An upstream may not speak for the proxy. */
const RESPONSE_SKIP: readonly string[] = ["x-agentgate-decision"];

/**
 * Forward one request and stream the response back. Calls `ex.finish` on
 * every exit path.
 */
export function forwardHttp(
  req: InboundRequest,
  res: OutboundResponse,
  target: ForwardTarget,
  ex: Exchange,
  pool: ConnectionPool,
  opts: UpstreamOptions & {
    closeAfter: () => boolean;
    endpoint?: Endpoint;
    /** The request body when it was already (partly) read: a replay of it. */
    body?: Readable;
    /** A replacement body (rewritten by the proxy): sent with its own Content-Length. */
    bodyBytes?: Uint8Array;
    observers?: ResponseObserver[];
    transform?: ResponseTransform;
    /** Header values to replace (lower-case name -> value; null removes it). */
    headerEdits?: Map<string, string | null>;
  },
): void {
  const headers = endToEnd(req.rawHeaders, { skip: REQUEST_SKIP });
  const via = req.headers["via"];
  const cl = req.headers["content-length"];
  const te = req.headers["transfer-encoding"];
  const method = req.method ?? "GET";
  let framing: BodyFraming = "none";
  let framingLine = "";
  if (opts.bodyBytes !== undefined) {
    framing = opts.bodyBytes.length ? "length" : "none";
    framingLine = `Content-Length: ${opts.bodyBytes.length}\r\n`;
  } else if (te !== undefined) {
    framing = "chunked";
    framingLine = "Transfer-Encoding: chunked\r\n";
  } else if (cl !== undefined) {
    framing = cl === "0" ? "none" : "length";
    framingLine = `Content-Length: ${cl}\r\n`;
  } else if (!BODYLESS_BY_DEFAULT.has(method)) framingLine = "Content-Length: 0\r\n";
  const head = `${method} ${target.rawPath} HTTP/1.1\r\nHost: ${target.authority}\r\n` +
    headerLines(headers, opts.headerEdits) + `Via: ${via ? `${via}, ` : ""}${opts.via}\r\n` +
    framingLine + "\r\n";
  const [tgt, tgtName] = targetLabel(target);
  const hasBody = framing !== "none";
  const observers = opts.observers ?? [];
  let transforming = false;
  /** The response was ended with the body's last piece. */
  let ended = false;
  let observed = false;
  const observerEnd = (complete: boolean) => {
    if (observed) return;
    observed = true;
    for (const o of observers) {
      try {
        o.end(complete);
      } catch {
        // An observer must never take the response down with it.
      }
    }
  };

  const call = new UpstreamCall(
    pool,
    opts.endpoint ??
      (target.scheme === "https"
        ? tlsEndpoint(target.connectHost, target.port, target.connectHost)
        : tcpEndpoint(target.connectHost, target.port)),
    {
      method,
      head,
      framing,
      body: opts.bodyBytes !== undefined
        ? (hasBody ? opts.bodyBytes : null)
        : hasBody
        ? opts.body ?? req
        : null,
      onBodyBytes: (n) => (ex.bytesIn += n),
      connectTimeoutMs: opts.connectTimeoutMs,
      responseTimeoutMs: opts.responseTimeoutMs,
    },
    {
      head: (h) => {
        ex.upstreamSeconds = (performance.now() - sentAt) / 1000;
        transforming = opts.transform?.head(h.status, h.rawHeaders) ?? false;
        const out = endToEnd(h.rawHeaders, {
          skip: RESPONSE_SKIP,
          // A body de-chunked here or transformed (it changes length) is
          // re-framed by the server: a Content-Length from upstream is stale.
          dropLength: transforming || h.transferEncoding,
        });
        out.push("x-agentgate-decision", ex.info.id);
        if (opts.closeAfter()) out.push("connection", "close");
        res.writeHead(h.status, h.statusText, out);
        for (const o of observers) o.head(h.status, h.rawHeaders);
      },
      body: (chunk, last) => {
        if (!transforming) {
          ex.bytesOut += chunk.length;
          // The client's write is queued first, then the observers read the
          // same bytes: parsing never delays them. The last piece of a body
          // of known length ends the response with it: head and body leave
          // in one socket write, past the stream machinery of write().
          let ok = true;
          if (last) {
            ended = true;
            res.end(chunk);
          } else ok = res.write(chunk);
          for (const o of observers) o.chunk(chunk);
          return ok;
        }
        for (const o of observers) o.chunk(chunk);
        const t = opts.transform!.chunk(chunk);
        ex.bytesOut += t.out.length;
        const ok = t.out.length ? res.write(t.out) : true;
        if (t.cut !== undefined) {
          // A secret the client must not get: stop here; the cut is the signal.
          call.abort();
          observerEnd(false);
          ex.finish({ status: res.statusCode, error: t.cut });
          res.destroy();
          return false;
        }
        return ok;
      },
      end: () => {
        observerEnd(true);
        if (transforming) {
          const rest = opts.transform!.end();
          ex.bytesOut += rest.length;
          if (rest.length) res.write(rest);
        }
        if (!ended) res.end();
      },
      error: (e, responded) => {
        if (ex.done) return;
        if (res.refused) return ex.finish(closedEarly(res));
        const kind: UpstreamFailure = classifyUpstreamError(e);
        // A parse error can quote the response head, which may echo what was sent (a swapped secret).
        const reason = ex.scrub(upstreamReason(kind, tgt, e, tgtName));
        if (!responded && !res.headersSent) {
          const a = upstreamAnswer(ex.info.id, kind, reason);
          res.writeHead(a.status, { ...a.headers, ...(hasBody ? { connection: "close" } : {}) });
          res.end(a.body);
          ex.finish({ status: a.status, decision: "error", reason, error: `upstream ${kind}` });
        } else {
          // Headers already went out: the only honest signal left is a cut connection.
          observerEnd(false);
          res.destroy();
          ex.finish({ status: res.statusCode, error: `upstream aborted the response: ${reason}` });
        }
      },
    },
  );
  res.on("drain", () => call.resume());
  ex.abort = (why) => {
    call.abort();
    observerEnd(false);
    res.destroy();
    ex.finish({ status: res.headersSent ? res.statusCode : null, error: why });
  };
  res.on("close", () => {
    if (ex.done) return;
    if (res.writableFinished) {
      ex.finish({ status: res.statusCode });
    } else {
      call.abort();
      observerEnd(false);
      ex.finish(closedEarly(res));
    }
  });
  const sentAt = performance.now();
  call.start();
}

/**
 * Pass a WebSocket upgrade through: send the request upstream on a raw
 * connection (TLS when `opts.endpoint` is one: an upgrade inside an
 * intercepted tunnel), then relay bytes both ways. The upstream's 101 (or
 * refusal) reaches the client unchanged.
 */
export function forwardUpgrade(
  req: { method?: string; rawHeaders: string[] },
  socket: Duplex,
  head: Uint8Array,
  target: ForwardTarget,
  ex: Exchange,
  opts: UpstreamOptions & { endpoint?: Endpoint },
): void {
  const headers = endToEnd(req.rawHeaders, { skip: UPGRADE_SKIP, keepUpgrade: true });
  let text = `${req.method} ${target.rawPath} HTTP/1.1\r\nHost: ${target.authority}\r\n` +
    headerLines(headers);
  text += `Via: ${opts.via}\r\nConnection: Upgrade\r\n\r\n`;
  const [tgt, tgtName] = targetLabel(target);
  const up = opts.endpoint?.connect() ??
    net.connect({ host: target.connectHost, port: target.port });
  let status: number | null = null;
  let established = false;
  if (opts.endpoint?.tls) {
    // A TLS socket over its own TCP socket emits no "connect": time the handshake.
    const t = setTimeout(
      () =>
        up.destroy(
          Object.assign(new Error(`connect timeout after ${opts.connectTimeoutMs} ms`), {
            code: "UPSTREAM_TIMEOUT",
          }),
        ),
      opts.connectTimeoutMs,
    );
    up.once("secureConnect", () => clearTimeout(t));
    up.once("close", () => clearTimeout(t));
  } else guardConnect(up, opts.connectTimeoutMs, (e) => up.destroy(e));
  up.on(opts.endpoint?.tls ? "secureConnect" : "connect", () => {
    established = true;
    up.write(text);
    if (head.length) up.write(head);
    socket.pipe(up);
    up.pipe(socket);
    noteReadsOf(up, socket);
  });
  up.once("data", (chunk: Uint8Array) => {
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(new TextDecoder().decode(chunk.subarray(0, 16)));
    status = m ? Number(m[1]) : null;
  });
  const close = (error: string | null) => {
    up.destroy();
    socket.destroy();
    ex.bytesIn = up.bytesWritten;
    ex.bytesOut = up.bytesRead;
    ex.finish({ status, error });
  };
  up.on("error", (e) => {
    if (!established && !ex.done) {
      const kind = classifyUpstreamError(e);
      const reason = upstreamReason(kind, tgt, e, tgtName);
      const a = upstreamAnswer(ex.info.id, kind, reason);
      socket.end(rawAnswer(a));
      ex.finish({ status: a.status, decision: "error", reason, error: `upstream ${kind}` });
      return;
    }
    close(`upstream error: ${e.message}`);
  });
  socket.on("error", () => close("client connection error"));
  up.on("close", () => close(null));
  socket.on("close", () => close(null));
  ex.abort = (why) => close(why);
}
