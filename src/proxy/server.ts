/**
 * The proxy's socket side: a listening `node:http` server (its `connect`
 * event works in Deno and it keeps client connections alive). It parses each
 * request into a `RequestInfo`, asks the engine, and hands the request to
 * forward / tunnel / reject. All socket IO lives here and in those modules;
 * the engine never sees a socket.
 *
 * @module
 */
import type http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { AgentgateConfig } from "../config/load.ts";
import type { AuditStore } from "../audit/store.ts";
import type { AuditEventV1 } from "../audit/event.ts";
import type { AuditReadModel } from "../audit/read.ts";
import { openAuditReader } from "../audit/sqlite_read.ts";
import { decide } from "../policy/engine.ts";
import { normalizePath } from "../policy/match.ts";
import type { RequestInfo } from "../policy/types.ts";
import { Exchange, newDecisionId } from "./exchange.ts";
import { parseAbsolute, parseAuthority } from "./target.ts";
import {
  createPool,
  forwardHttp,
  type ForwardTarget,
  forwardUpgrade,
  type InboundRequest,
  type OutboundResponse,
  type ResponseObserver,
  type ResponseTransform,
} from "./forward.ts";
import type { ConnectionPool, Endpoint } from "./h1client.ts";
import type { Decision } from "../policy/types.ts";
import { PolicyState } from "../policy/limits/types.ts";
import { bufferBody, type Buffered, concatChunks, parseJsonBody, replay } from "./body.ts";
import {
  createSseContentScanner,
  createStreamScanner,
  decodeForScan,
  type Finding,
  redactBody,
  type SseContentScanner,
  type StreamScanner,
} from "../dlp/mod.ts";
import type { DlpPlan } from "../policy/limits/dlp.ts";
import type { AuditFinding } from "../audit/event.ts";
import { createUsageTap, forceStreamUsage, type Provider, type UsageTap } from "../llm/mod.ts";
import type { LeafStore } from "../tls/store.ts";
import { handshakeReason, Interceptor } from "./intercept.ts";
import { type H1Request, type H1Response, serveHttp1, type TakeoverHead } from "./h1server.ts";
import { isIntercepted } from "../config/load.ts";
import { tlsEndpoint } from "./forward.ts";
import tls from "node:tls";
import { openTunnel } from "./tunnel.ts";
import { type Answer, denyAnswer, errorAnswer, rawAnswer } from "./reject.ts";
import { isWebSocketUpgrade } from "./headers.ts";
import { Metrics } from "../dashboard/metrics.ts";
import { createInternalRoutes, type ReloadStatus } from "../dashboard/routes.ts";

/** What a running proxy needs. */
export interface ProxyOptions {
  config: AgentgateConfig;
  audit: AuditStore;
  version: string;
  /** Diagnostics (denials, errors); default stderr. */
  log?: (line: string) => void;
  /** Leaf certificates for interception (required when `tls.intercept` is set). */
  leaves?: LeafStore;
  /** Roots upstream TLS is verified against (system roots + `tls.upstream_ca`). */
  upstreamCa?: string[];
  /** Reload the policy from its files (`POST /_/api/reload`). */
  reload?: () => Promise<ReloadStatus>;
  /** The last reload's outcome (`/_/health`). */
  lastReload?: () => ReloadStatus | null;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "0.0.0.0", "::"]);

/** `Proxy-Authorization: Basic …` as user and password, or null. */
export function parseProxyAuthorization(
  value: string | string[] | undefined,
): { user: string; pass: string } | null {
  if (typeof value !== "string") return null;
  const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(value);
  if (!m) return null;
  let text: string;
  try {
    text = new TextDecoder().decode(Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
  const colon = text.indexOf(":");
  if (colon === -1) return { user: text, pass: "" };
  return { user: decodeURIComponentSafe(text.slice(0, colon)), pass: text.slice(colon + 1) };
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Constant-time string comparison (tokens). */
function safeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** A header's single value (the first of a list), or null. */
function headerValue(v: string | string[] | undefined): string | null {
  return v === undefined ? null : Array.isArray(v) ? v[0] ?? null : v;
}

/** Content types worth scanning as text. */
function isTextual(ct: string): boolean {
  return /^(text\/|application\/(json|[\w.+-]*\+json|xml|[\w.+-]*\+xml|x-www-form-urlencoded|javascript|x-ndjson))/i
    .test(ct.trim()) || /event-stream/i.test(ct);
}

/** The first value of a header in a raw header list, or null. */
function rawHeader(raw: string[], name: string): string | null {
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) return raw[i + 1];
  return null;
}

/** The client's address without the IPv4-mapped prefix. */
function clientAddress(socket: { remoteAddress?: string }): string {
  const a = socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/** An intercepted CONNECT: what each request inside inherits. */
interface TunnelCtx {
  ex: Exchange;
  host: string;
  port: number;
}

/** A running proxy. */
export class ProxyServer {
  readonly server: net.Server;
  readonly pool: ConnectionPool = createPool();
  readonly via = `1.1 agentgate-${crypto.randomUUID().slice(0, 8)}`;
  readonly startedAt = Date.now();
  #config: AgentgateConfig;
  #address: { host: string; port: number } | null = null;
  #inflight = new Set<Exchange>();
  #sockets = new Set<net.Socket>();
  #draining = false;
  #drained: (() => void) | null = null;
  #log: (line: string) => void;
  /** Requests decided since start, by verdict (for the shutdown summary). */
  readonly counters = { requests: 0, denied: 0, errors: 0 };
  #tunnels = new Set<Exchange>();
  readonly metrics: Metrics;
  /** Tokens accepted besides `proxy.auth` (sessions of an in-process `agentgate run`). */
  readonly extraTokens = new Set<string>();
  #dlpLogged = new Map<string, number>();
  /** Rate-limit counters and the spend ledger; kept across reloads. */
  readonly state: PolicyState;
  #routes: ReturnType<typeof createInternalRoutes>;
  #interceptor: Interceptor<TunnelCtx> | null = null;
  #h1 = new Set<{ close(): void }>();
  #upstreamTls: tls.SecureContext | undefined;

  constructor(private readonly opts: ProxyOptions) {
    this.#config = opts.config;
    this.#log = opts.log ?? ((l) => console.error(l));
    const audit = opts.audit;
    const reader = openAuditReader(opts.config.audit.path);
    this.state = new PolicyState({ startedAt: this.startedAt });
    void this.#rebuildSpend(reader);
    this.metrics = new Metrics({
      auditQueueDepth: () => audit.queueDepth,
      auditWriteErrors: () => audit.writeErrors,
      tunnelsOpen: () => this.#tunnels.size,
      leafCacheSize: () => opts.leaves?.size ?? 0,
    });
    this.#routes = createInternalRoutes({
      version: opts.version,
      startedAt: this.startedAt,
      reader,
      audit,
      config: () => this.#config,
      metrics: this.metrics,
      dashboard: opts.config.dashboard,
      token: opts.config.dashboardToken,
      reload: opts.reload,
      lastReload: opts.lastReload,
    });
    if (opts.leaves) {
      this.#interceptor = new Interceptor<TunnelCtx>(opts.leaves, {
        secure: (socket, ctx) => this.#serveIntercepted(socket, ctx),
        handshakeError: (err, ctx) =>
          ctx.ex.finish({
            status: null,
            decision: "error",
            reason: handshakeReason(err),
            error: `client TLS handshake: ${err.code ?? err.message}`,
          }),
      });
    }
    if (opts.upstreamCa) this.#upstreamTls = tls.createSecureContext({ ca: opts.upstreamCa });
    // Our own HTTP/1.1 layer on plain sockets, as for intercepted traffic: in
    // Deno it costs ~8 us less per request than node:http's server (which
    // runs on Deno.serve underneath), and it answers malformed requests with
    // 400 itself. CONNECT and upgrades take the socket over.
    this.server = net.createServer((s: net.Socket) => {
      this.#sockets.add(s);
      s.once("close", () => this.#sockets.delete(s));
      s.on("error", () => {}); // a reset client must never crash the proxy
      const h = serveHttp1(
        s,
        (req, res) =>
          this.#onRequest(
            req,
            res,
            String(req.headers.expect ?? "").toLowerCase() === "100-continue",
          ),
        {
          keepAliveTimeoutMs: 60_000,
          onTakeover: (head, socket, rest) => {
            this.#h1.delete(h);
            if (head.method === "CONNECT") this.#onConnect(head, socket, rest);
            else this.#onUpgrade(head, socket, rest);
          },
          onError: (e) =>
            this.#log(`agentgate: internal error serving a request: ${(e as Error)?.stack ?? e}`),
        },
      );
      this.#h1.add(h);
      s.once("close", () => this.#h1.delete(h));
      if (this.#draining) h.close();
    });
  }

  /** Whether any rule carries a dlp policy (then buffered bodies are decoded for scanning). */
  #hasDlp(config: AgentgateConfig): boolean {
    return config.policy.rules.some((r) => r.checkers.some((c) => c.name === "dlp"));
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
      next.tls.caDir !== prev.tls.caDir || (next.tls.intercept.length > 0 && !this.#interceptor)
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

  /**
   * Budgets survive restarts: the ledger is rebuilt from the audit's costs.
   * The SQLite reader answers within the call, so the rebuild lands (on the
   * microtask queue) before the first connection is accepted; a network
   * backend needs `listen()` to wait for it.
   */
  async #rebuildSpend(reader: AuditReadModel) {
    try {
      const rows = await reader.spendRows(Date.now() - 31 * 86_400_000);
      this.state.ledger.rebuild(rows.map(({ spend_keys, ...r }) => ({ ...r, keys: spend_keys })));
    } catch (e) {
      this.#log(`agentgate: could not rebuild spending from the audit: ${(e as Error).message}`);
    }
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
        resolve(this.#address);
      });
    });
  }

  /** Requests and tunnels in flight. */
  get inflight(): number {
    return this.#inflight.size;
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
    for (const h of this.#h1) h.close();
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
        for (const ex of [...this.#inflight]) {
          forced++;
          ex.abort("proxy shut down before the request finished");
        }
      }
    }
    // The dashboard's read connection goes first, so the writer's close can checkpoint the WAL.
    this.#routes.close();
    for (const s of this.#sockets) s.destroy();
    this.pool.destroy();
    await closed;
    return { forced };
  }

  #record = {
    record: (event: AuditEventV1, ex: Exchange) => {
      this.opts.audit.add(event);
      this.#inflight.delete(ex);
      this.metrics.request(event.decision, event.rule);
      this.#tunnels.delete(ex);
      if (event.decision === "deny" || event.decision === "would_deny") {
        this.counters.denied++;
        this.#log(
          `agentgate: ${event.decision} ${event.method} ${event.scheme}://${event.host}:${event.port}${
            event.path ?? ""
          } rule=${event.rule ?? "-"} reason=${JSON.stringify(event.reason)} id=${event.id}`,
        );
      } else if (event.decision === "error") this.counters.errors++;
      if (this.#draining && this.#inflight.size === 0) this.#drained?.();
    },
  };

  #begin(info: RequestInfo): Exchange {
    // The policy in force when the request arrived decides it, even across a reload.
    const ex = new Exchange(info, this.#record, this.#config);
    this.#inflight.add(ex);
    this.counters.requests++;
    return ex;
  }

  #info(
    method: string,
    scheme: "http" | "https",
    host: string,
    port: number,
    rawPath: string | null,
    headers: http.IncomingHttpHeaders,
    client: string,
  ): RequestInfo {
    let path: string | null = null;
    let query = "";
    if (rawPath !== null) {
      const q = rawPath.indexOf("?");
      path = normalizePath(q === -1 ? rawPath : rawPath.slice(0, q));
      query = q === -1 ? "" : rawPath.slice(q + 1);
    }
    const h: Record<string, string> = {};
    if (rawPath !== null) {
      for (const k in headers) {
        if (k === "proxy-authorization" || k === "proxy-connection") continue;
        const v = headers[k];
        if (v !== undefined) h[k] = Array.isArray(v) ? v.join(", ") : v;
      }
    }
    return {
      id: newDecisionId(),
      session: null,
      label: null,
      client,
      method,
      scheme,
      host,
      port,
      path,
      query,
      headers: h,
    };
  }

  /** Is this target the proxy itself (a request that would loop)? */
  #isSelf(host: string, port: number): boolean {
    const a = this.#address;
    if (!a || port !== a.port) return false;
    return host === a.host || LOOPBACK.has(host);
  }

  #send(res: OutboundResponse, a: Answer, extra: Record<string, string> = {}) {
    res.writeHead(a.status, { ...a.headers, ...extra });
    res.end(a.body);
  }

  #onRequest(req: H1Request, res: H1Response, expectContinue = false) {
    const url = req.url ?? "";
    if (url.startsWith("/")) return this.#internal(req, res);
    const target = parseAbsolute(url);
    if (target === null) {
      return this.#send(
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
    if (this.#isSelf(target.host, target.port)) return this.#internal(req, res);
    const info = this.#info(
      (req.method ?? "GET").toUpperCase(),
      target.scheme,
      target.host,
      target.port,
      target.rawPath,
      req.headers,
      clientAddress(req.socket),
    );
    const denied = this.#authenticate(req.headers, info);
    const ex = this.#begin(info);
    const hasBody = req.headers["content-length"] !== undefined &&
        req.headers["content-length"] !== "0" ||
      req.headers["transfer-encoding"] !== undefined;
    if (denied) {
      this.#send(res, denied, hasBody ? { connection: "close" } : {});
      return ex.finish({
        status: 407,
        decision: "deny",
        policy: "proxy_auth",
        reason: JSON.parse(denied.body).reason,
      });
    }
    const via = req.headers["via"];
    if (typeof via === "string" && via.includes(this.via.slice(4))) {
      const a = errorAnswer(info.id, 508, "loop_detected", "request looped back to this proxy");
      this.#send(res, a, { connection: "close" });
      return ex.finish({
        status: 508,
        decision: "error",
        reason: "request looped back to this proxy",
      });
    }
    this.#proxyRequest(
      req,
      res,
      ex,
      {
        scheme: target.scheme,
        connectHost: target.host,
        port: target.port,
        authority: target.authority,
        rawPath: target.rawPath,
      },
      expectContinue,
      hasBody,
    );
  }

  /**
   * Decide an HTTP request (plain or intercepted) and forward or reject it.
   * When a candidate rule reads the body, the body is buffered (up to
   * `limits.max_body_bytes`), parsed, and the request decided again.
   */
  #proxyRequest(
    req: InboundRequest,
    res: OutboundResponse,
    ex: Exchange,
    target: ForwardTarget,
    expectContinue: boolean,
    hasBody: boolean,
    endpoint?: Endpoint,
  ) {
    const llm = ex.config.llm;
    const provider = ex.info.path !== null ? llm.detect(ex.info.host) : null;
    // LLM calls are small JSON bodies: read them first, for the model (pricing,
    // spending limits) and the optional force_stream_usage rewrite.
    const wantBody = hasBody && provider !== null && ex.info.method === "POST";
    const d = wantBody ? null : this.#decide(ex.info, ex, !hasBody);
    if (d !== null && !d.needsBody) {
      return this.#afterDecision(req, res, ex, target, d, null, expectContinue, endpoint, provider);
    }
    if (expectContinue) res.writeContinue();
    const onClose = () => ex.finish({ status: null, error: "client aborted" });
    res.once("close", onClose);
    const limits = ex.config.limits;
    const cap = this.#hasDlp(ex.config)
      ? Math.max(limits.maxBodyBytes, limits.maxScanBytes)
      : limits.maxBodyBytes;
    bufferBody(req, cap).then((b) => {
      res.off("close", onClose);
      if (ex.done) return;
      ex.info.body = b.complete && b.size <= limits.maxBodyBytes
        ? parseJsonBody(b.chunks, req.headers)
        : undefined;
      if (this.#hasDlp(ex.config) && b.chunks.length) {
        ex.info.bodyText = decodeForScan(
          concatChunks(b.chunks),
          headerValue(req.headers["content-type"]),
          headerValue(req.headers["content-encoding"]),
          limits.maxScanBytes,
        )?.text;
      }
      const d2 = this.#decide(ex.info, ex, true);
      this.#afterDecision(req, res, ex, target, d2, b, false, endpoint, provider);
    }, () => {
      res.off("close", onClose);
      ex.finish({ status: null, error: "client aborted" });
    });
  }

  #afterDecision(
    req: InboundRequest,
    res: OutboundResponse,
    ex: Exchange,
    target: ForwardTarget,
    decided: Decision,
    buffered: Buffered | null,
    expectContinue: boolean,
    endpoint: Endpoint | undefined,
    provider: Provider | null,
  ) {
    let d = decided;
    if (d.findings) this.#noteFindings(ex, d.findings);
    let bodyBytes: Uint8Array | undefined;
    let headerEdits: Map<string, string | null> | undefined;
    let transform: ResponseTransform | undefined;
    const observers: ResponseObserver[] = [];
    const plan = d.verdict === "deny" ? undefined : d.dlp;
    if (plan) {
      this.#noteFindings(ex, plan.findings);
      const scanner = plan.redactRequest;
      if (scanner) {
        headerEdits = new Map();
        for (const name of plan.redactHeaders) {
          const v = headerValue(req.headers[name]) ?? "";
          headerEdits.set(name, scanner.redact(v, scanner.scan(v)));
        }
        if (plan.findings.some((f) => f.location === "body")) {
          const r = buffered?.complete
            ? redactBody(
              buffered.chunks[0],
              headerValue(req.headers["content-type"]),
              headerValue(req.headers["content-encoding"]),
              scanner,
              ex.config.limits.maxScanBytes,
            )
            : null;
          if (r === null) {
            // Better refused than forwarded with the secret in it.
            d = {
              ...d,
              verdict: ex.config.policy.mode === "audit" ? "would_deny" : "deny",
              status: 403,
              policy: "dlp",
              reason:
                "request body cannot be redacted (larger than limits.max_scan_bytes or not text): blocked",
            };
          } else if (r.changed) {
            bodyBytes = r.body;
            headerEdits.set("content-encoding", null);
          }
        }
      }
      if (plan.response) {
        const dlp = this.#responseDlp(plan, ex);
        if ("observer" in dlp) observers.push(dlp.observer);
        else transform = dlp.transform;
        // Only an uncompressed response can be scanned and redacted in flight.
        (headerEdits ??= new Map()).set("accept-encoding", "identity");
      }
    }
    if (d.verdict === "deny") {
      // An unread body would have to be drained to keep the connection: close it instead.
      const unread = buffered === null && (req.headers["content-length"] ?? "0") !== "0" ||
        req.headers["transfer-encoding"] !== undefined;
      this.#send(res, denyAnswer(ex.info.id, d), unread ? { connection: "close" } : {});
      return ex.finish({ status: d.status });
    }
    if (expectContinue) res.writeContinue();
    if (
      provider !== null && buffered?.complete && ex.config.llm.forceStreamUsage &&
      req.headers["content-encoding"] === undefined
    ) {
      bodyBytes = forceStreamUsage(
        provider,
        ex.info.path!,
        bodyBytes ?? buffered.chunks[0],
      ) ?? bodyBytes;
    }
    // Read whole already: sent with the head in one write (Content-Length).
    if (bodyBytes === undefined && buffered?.complete) bodyBytes = buffered.chunks[0];
    forwardHttp(req, res, target, ex, this.pool, {
      ...this.#upstreamOpts(ex.config),
      closeAfter: () => this.#draining,
      endpoint,
      body: bodyBytes === undefined && buffered ? replay(req, buffered) : undefined,
      bodyBytes,
      observers: provider !== null ? [this.#usageObserver(provider, ex), ...observers] : observers,
      transform,
      headerEdits,
    });
  }

  /**
   * DLP on a response, scanned as it streams: `warn` only records, so it is an
   * observer (the response passes unchanged, its framing included); `redact`
   * and `block` rewrite or cut it, so they are a transform.
   */
  #responseDlp(
    plan: DlpPlan,
    ex: Exchange,
  ): { observer: ResponseObserver } | { transform: ResponseTransform } {
    const { scanner, action } = plan.response!;
    const host = ex.info.host;
    let dec: TextDecoder;
    let stream: StreamScanner;
    let sse: SseContentScanner | null = null;
    // The raw scanner and the SSE delta scanner can see the same secret: count it once.
    const seen = new Set<string>();
    const take = (found: Finding[]): AuditFinding[] => {
      const kept = found.filter((f) => {
        const k = `${f.detector}|${f.masked}`;
        if (seen.has(k) || plan.allowed(f.detector, "body", host)) return false;
        seen.add(k);
        return true;
      }).map((f) => ({
        detector: f.detector,
        direction: "response" as const,
        location: "body",
        sample: f.masked,
        action,
      }));
      this.#noteFindings(ex, kept);
      return kept;
    };
    /** Sets up the scanners; false when the response is not text it can read. */
    const start = (raw: string[]): boolean => {
      const ce = rawHeader(raw, "content-encoding");
      const ct = rawHeader(raw, "content-type") ?? "";
      if ((ce && ce.toLowerCase() !== "identity") || !isTextual(ct)) return false;
      dec = new TextDecoder();
      stream = createStreamScanner(scanner, { redact: action !== "warn" });
      if (/event-stream/i.test(ct)) sse = createSseContentScanner(scanner);
      return true;
    };
    const scan = (c: Uint8Array) => {
      const text = dec.decode(c, { stream: true });
      const r = stream.push(text);
      return { output: r.output, found: take([...r.findings, ...(sse?.push(text) ?? [])]) };
    };
    const finish = (): string => {
      const r = stream.end();
      take([...r.findings, ...(sse?.end() ?? [])]);
      return r.output;
    };
    if (action === "warn") {
      let scanning = false;
      return {
        observer: {
          head: (_status, raw) => void (scanning = start(raw)),
          chunk: (c) => void (scanning && scan(c)),
          end: () => void (scanning && finish()),
        },
      };
    }
    const enc = new TextEncoder();
    return {
      transform: {
        head: (_status, raw) => start(raw),
        chunk: (c) => {
          const { output, found } = scan(c);
          const out = enc.encode(output);
          if (action === "block" && found.length) {
            return {
              out,
              cut: `response cut by DLP: ${[...new Set(found.map((f) => f.detector))].join(", ")}`,
            };
          }
          return { out };
        },
        end: () => enc.encode(finish()),
      },
    };
  }

  /** Record findings on the row, count them, and log each (detector, host, direction) once a minute. */
  #noteFindings(ex: Exchange, findings: AuditFinding[]) {
    const now = Date.now();
    for (const f of findings) {
      ex.findings.push(f);
      this.metrics.dlpFinding(f.detector, f.action);
      const key = `${f.detector}|${ex.info.host}|${f.direction}`;
      if ((this.#dlpLogged.get(key) ?? 0) > now - 60_000) continue;
      if (this.#dlpLogged.size > 10_000) this.#dlpLogged.clear();
      this.#dlpLogged.set(key, now);
      this.#log(
        `agentgate: dlp ${f.action} ${f.detector} in ${f.direction} ${f.location} ${ex.info.scheme}://${ex.info.host}${
          ex.info.path ?? ""
        } sample=${f.sample} id=${ex.info.id}`,
      );
    }
  }

  /**
   * Reads token usage from an LLM response as it streams (a tee: no byte is
   * delayed), prices it, and feeds spending and token limits. The row gets the
   * usage before it is written.
   */
  #usageObserver(provider: Provider, ex: Exchange): ResponseObserver {
    const info = ex.info;
    let tap: UsageTap | null = null;
    return {
      head: (status, raw) => {
        tap = createUsageTap(provider, {
          method: info.method,
          path: info.query ? `${info.path}?${info.query}` : info.path!,
          requestBody: info.body,
          status,
          contentType: rawHeader(raw, "content-type"),
          contentEncoding: rawHeader(raw, "content-encoding"),
        });
      },
      chunk: (c) => tap?.push(c),
      end: (complete) => {
        const usage = tap?.finish({ complete }) ?? null;
        if (usage === null) return this.state.dropUsage(info.id);
        const now = Date.now();
        const price = ex.config.llm.pricer.price(usage, new Date(now));
        ex.usage = {
          provider: usage.provider,
          model: usage.model,
          input_tokens: usage.inputTokens,
          output_tokens: usage.outputTokens,
          cache_read_tokens: usage.cacheReadTokens,
          cache_write_tokens: usage.cacheWriteTokens,
          reasoning_tokens: usage.reasoningTokens,
          cost_usd: price.costUsd,
          usage_partial: usage.partial,
          price_unknown: price.priceUnknown,
        };
        const charged = this.state.reportUsage(info.id, {
          ts: now,
          usd: price.costUsd ?? undefined,
          tokens: usage.inputTokens + usage.outputTokens,
          session: info.session,
          host: info.host,
          client: info.client,
          rule: ex.decision?.rule ?? null,
        });
        if (charged.length) ex.usage.spend_keys = charged;
        const model = usage.model ?? "unknown";
        if (price.costUsd !== null) this.metrics.spend(usage.provider, model, price.costUsd);
        this.metrics.tokens(usage.provider, model, "input", usage.inputTokens);
        this.metrics.tokens(usage.provider, model, "output", usage.outputTokens);
        this.metrics.tokens(usage.provider, model, "cache_read", usage.cacheReadTokens);
        this.metrics.tokens(usage.provider, model, "cache_write", usage.cacheWriteTokens);
        this.metrics.tokens(usage.provider, model, "reasoning", usage.reasoningTokens);
      },
    };
  }

  /** Terminate TLS on an allowed CONNECT; the tunnel's row is written when it closes. */
  #intercept(s: net.Socket, head: Uint8Array, host: string, port: number, ex: Exchange) {
    const ctx: TunnelCtx = { ex, host, port };
    s.once("close", () => {
      ex.bytesIn = s.bytesRead;
      ex.bytesOut = s.bytesWritten;
      ex.finish({ status: 200 });
    });
    ex.abort = (why) => {
      s.destroy();
      ex.finish({ status: 200, error: why });
    };
    this.#interceptor!.accept(s, head, host, ctx).catch((e: Error) => {
      const reason = `cannot issue a certificate for "${host}": ${e.message}`;
      s.end(rawAnswer(errorAnswer(ex.info.id, 502, "certificate_error", reason)));
      ex.finish({ status: 502, decision: "error", reason, error: "leaf certificate" });
    });
  }

  /** Serve the HTTP/1.1 requests inside an intercepted tunnel. */
  #serveIntercepted(socket: tls.TLSSocket, ctx: TunnelCtx) {
    const h = serveHttp1(socket, (req, res) => this.#onIntercepted(req, res, ctx));
    this.#h1.add(h);
    socket.once("close", () => this.#h1.delete(h));
    if (this.#draining) h.close();
  }

  #onIntercepted(req: H1Request, res: H1Response, ctx: TunnelCtx) {
    const tunnel = ctx.ex.info;
    let rawPath = req.url;
    if (!rawPath.startsWith("/")) {
      const abs = parseAbsolute(rawPath);
      rawPath = abs?.rawPath ?? "";
    }
    const hostHeader = typeof req.headers.host === "string" ? req.headers.host : "";
    const hp = parseAuthority(hostHeader, 443);
    const info = this.#info(
      (req.method ?? "GET").toUpperCase(),
      "https",
      ctx.host,
      ctx.port,
      rawPath || "/",
      req.headers,
      tunnel.client,
    );
    info.session = tunnel.session;
    info.label = tunnel.label;
    const ex = this.#begin(info);
    if (hp === null || hp.host !== ctx.host || hp.port !== ctx.port || rawPath === "") {
      // No domain fronting: a request inside the tunnel is for the CONNECT target only.
      const reason = rawPath === ""
        ? `cannot serve request-target "${req.url.slice(0, 200)}" inside a tunnel`
        : `Host "${hostHeader}" does not match the CONNECT target "${ctx.host}:${ctx.port}"`;
      const a = errorAnswer(info.id, 421, "misdirected_request", reason);
      res.writeHead(a.status, { ...a.headers, connection: "close" });
      res.end(a.body);
      return ex.finish({ status: 421, decision: "deny", reason });
    }
    const hasBody = req.headers["content-length"] !== undefined &&
        req.headers["content-length"] !== "0" ||
      req.headers["transfer-encoding"] !== undefined;
    const to = ex.config.resolve.get(ctx.host) ?? ctx;
    const expect = String(req.headers.expect ?? "").toLowerCase() === "100-continue";
    this.#proxyRequest(
      req,
      res,
      ex,
      {
        scheme: "https",
        connectHost: to.host,
        port: to.port,
        authority: hostHeader,
        rawPath,
      },
      expect,
      hasBody,
      tlsEndpoint(to.host, to.port, ctx.host, this.#upstreamTls),
    );
  }

  /**
   * Proxy credentials: the user name is the session (`agentgate run` sends
   * `<label>-<id>`), the password a token. With `proxy.auth` set a request
   * without valid credentials is answered 407; tokens never reach the audit.
   * Returns the answer to send, or null when the request may go on.
   */
  #authenticate(headers: http.IncomingHttpHeaders, info: RequestInfo): Answer | null {
    // Credentials are required with proxy.auth, and for an `agentgate run`
    // proxy (its token), so clients that send them only after a 407
    // challenge (git/libcurl anyauth, .NET, Java) are attributed too.
    const required = this.#config.proxyAuth.length > 0 || this.extraTokens.size > 0;
    const creds = parseProxyAuthorization(headers["proxy-authorization"]);
    if (creds) {
      info.session = creds.user || null;
      const m = /^(.+)-[0-9a-f]{8,}$/.exec(creds.user);
      info.label = m ? m[1] : null;
    }
    if (!required) return null;
    const ok = creds !== null &&
      (this.#config.proxyAuth.some((t) => safeEqual(t, creds.pass)) ||
        [...this.extraTokens].some((t) => safeEqual(t, creds.pass)));
    if (ok) return null;
    const reason = creds === null ? "proxy authentication required" : "invalid proxy credentials";
    const a = errorAnswer(info.id, 407, "proxy_auth_required", reason);
    a.headers["proxy-authenticate"] = 'Basic realm="agentgate"';
    return a;
  }

  #decide(info: RequestInfo, ex: Exchange, bodyRead = true, intercept = false) {
    const t = performance.now();
    const d = decide(ex.config.policy, {
      info,
      now: ex.ts,
      state: this.state,
      bodyRead,
      intercept,
    });
    this.metrics.decision((performance.now() - t) / 1000);
    ex.decision = d;
    return d;
  }

  #upstreamOpts(config: AgentgateConfig = this.#config) {
    return {
      connectTimeoutMs: config.upstream.connectTimeoutMs,
      responseTimeoutMs: config.upstream.responseTimeoutMs,
      via: this.via,
      onUpstreamHead: (seconds: number) => this.metrics.upstream(seconds),
    };
  }

  #onConnect(req: TakeoverHead, socket: Duplex, head: Uint8Array) {
    const s = socket as net.Socket;
    s.on("error", () => {}); // errors are handled by the tunnel; never crash
    const hp = parseAuthority(req.url ?? "", null);
    if (hp === null) {
      const a = errorAnswer(
        newDecisionId(),
        400,
        "bad_request",
        `CONNECT needs "host:port", not "${String(req.url).slice(0, 200)}"`,
      );
      s.end(rawAnswer(a));
      return;
    }
    const info = this.#info(
      "CONNECT",
      "https",
      hp.host,
      hp.port,
      null,
      req.headers,
      clientAddress(s),
    );
    const denied = this.#authenticate(req.headers, info);
    const ex = this.#begin(info);
    if (denied) {
      s.end(rawAnswer(denied));
      return ex.finish({
        status: 407,
        decision: "deny",
        policy: "proxy_auth",
        reason: JSON.parse(denied.body).reason,
      });
    }
    if (this.#isSelf(hp.host, hp.port)) {
      const reason = "CONNECT to the proxy itself would loop";
      s.end(rawAnswer(errorAnswer(info.id, 508, "loop_detected", reason)));
      return ex.finish({ status: 508, decision: "error", reason });
    }
    const intercept = this.#interceptor !== null && isIntercepted(ex.config, hp.host, hp.port);
    const d = this.#decide(info, ex, true, intercept);
    if (d.verdict === "deny") {
      s.end(rawAnswer(denyAnswer(info.id, d)));
      return ex.finish({ status: d.status });
    }
    this.#tunnels.add(ex);
    if (intercept) return this.#intercept(s, head, hp.host, hp.port, ex);
    const to = ex.config.resolve.get(hp.host) ?? hp;
    openTunnel(s, head, to.host, to.port, ex, ex.config.upstream.connectTimeoutMs);
  }

  #onUpgrade(req: TakeoverHead, socket: Duplex, head: Uint8Array) {
    const s = socket as net.Socket;
    s.on("error", () => {});
    const target = parseAbsolute(req.url ?? "");
    if (target === null || target.scheme !== "http" || !isWebSocketUpgrade(req.headers)) {
      // Only WebSocket upgrades reach here (h1server serves other upgrades as
      // plain requests); they pass through over plain HTTP only.
      const a = errorAnswer(
        newDecisionId(),
        target === null ? 400 : 501,
        target === null ? "bad_request" : "upgrade_not_supported",
        target === null
          ? `cannot proxy request-target "${String(req.url).slice(0, 200)}"`
          : `upgrade to "${req.headers.upgrade}" is not supported: only WebSocket upgrades over http:// pass through`,
      );
      s.end(rawAnswer(a));
      return;
    }
    const info = this.#info(
      (req.method ?? "GET").toUpperCase(),
      "http",
      target.host,
      target.port,
      target.rawPath,
      req.headers,
      clientAddress(s),
    );
    const denied = this.#authenticate(req.headers, info);
    const ex = this.#begin(info);
    if (denied) {
      s.end(rawAnswer(denied));
      return ex.finish({
        status: 407,
        decision: "deny",
        policy: "proxy_auth",
        reason: JSON.parse(denied.body).reason,
      });
    }
    const d = this.#decide(info, ex);
    if (d.verdict === "deny") {
      s.end(rawAnswer(denyAnswer(info.id, d)));
      return ex.finish({ status: d.status });
    }
    forwardUpgrade(
      req,
      s,
      head,
      {
        scheme: "http",
        connectHost: target.host,
        port: target.port,
        authority: target.authority,
        rawPath: target.rawPath,
      },
      ex,
      this.#upstreamOpts(),
    );
  }

  /** Origin-form requests to the proxy itself (health, metrics, dashboard, API). */
  #internal(req: H1Request, res: H1Response) {
    const path = (req.url ?? "/").replace(/^https?:\/\/[^/]+/, "").split("?")[0];
    // The routes use the IncomingMessage / ServerResponse subset H1Request / H1Response implement.
    this.#routes(
      req as unknown as http.IncomingMessage,
      res as unknown as http.ServerResponse,
      path,
    );
  }
}
