/**
 * One request as a policy test, `agentgate eval` or `agentgate replay` writes
 * it, turned into the {@link RequestInfo} the proxy would build, and decided
 * the way the proxy decides it — without a socket.
 *
 * An `https://` URL has no CONNECT of its own here, so it stands for what a
 * client behind the proxy would send: when the host is in `tls.intercept` the
 * tunnel is decided first (a host-level deny refuses it) and then the request
 * inside it, with method, path, headers and body; otherwise it is a CONNECT
 * tunnel, and the policy sees the host and port only (`path` null). An
 * explicit `method: CONNECT` always means the tunnel itself.
 *
 * @module
 */
import type { Decision, RequestInfo } from "../policy/types.ts";
import type { TraceEntry } from "../policy/engine.ts";
import { parseJsonBody, requestInfo } from "../policy/request.ts";
import { decideBody, decideHead, decideTunnel } from "../policy/pipeline.ts";
import { canonicalIp, chooseAddress, knownDestination } from "../policy/address.ts";
import type { PolicyState } from "../state/mod.ts";
import { type AgentgateConfig, isIntercepted } from "../config/load.ts";
import { parseAbsolute } from "../proxy/target.ts";
import { decodeForScan } from "../dlp/decode.ts";

/** A request as written in a test file or on the `eval` command line. */
export interface RequestSpec {
  /** Upper-cased; default GET. `CONNECT` decides the tunnel only. */
  method?: string;
  /** Absolute `http://` or `https://` URL. */
  url: string;
  session?: string | null;
  /** Session label; by default derived from the session like proxy credentials (`label-<hex>`). */
  label?: string | null;
  /** Client address (default 127.0.0.1). */
  client?: string;
  /** Header names are lower-cased; `host` defaults to the URL's authority. */
  headers?: Record<string, string>;
  /**
   * The request body: a string or bytes are sent as they are (parsed as JSON
   * when they look like JSON, as the proxy does); any other value is sent as
   * JSON.
   */
  body?: unknown;
  /**
   * What the host resolves to (one address or several): the proxy's DNS
   * answer, so `dest.ip`, address ranges in `match` and the address guard
   * can be tested. Not needed for an address literal or a pinned host.
   */
  dest_ip?: string | string[];
}

/** How the proxy would see a request. */
export type RequestKind = "http" | "intercepted" | "tunnel";

/** A request built for the engine. */
export interface BuiltRequest {
  kind: RequestKind;
  /** What the engine decides: the request (plain or intercepted) or the tunnel. */
  info: RequestInfo;
  /** For an intercepted request: the CONNECT tunnel decided before it. */
  tunnel: RequestInfo | null;
  /**
   * The body as sent; null or absent when there is none or it is not known
   * (`replay`: the audit never stores bodies).
   */
  bytes?: Uint8Array | null;
}

/** A request spec that cannot be built (bad URL). */
export class RequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RequestError";
  }
}

let seq = 0;
/** Ids for built requests: unique within the process, never sent anywhere. */
function nextId(prefix: string): string {
  return `${prefix}-${(++seq).toString(16).padStart(8, "0")}`;
}

/** The label the proxy derives from a session named `<label>-<hex>` (`agentgate run`). */
export function labelOf(session: string | null): string | null {
  if (session === null) return null;
  const m = /^(.+)-[0-9a-f]{8,}$/.exec(session);
  return m ? m[1] : null;
}

/** The body's bytes and the headers it implies. */
function encodeBody(
  body: unknown,
  headers: Record<string, string>,
): Uint8Array | null {
  if (body === undefined || body === null) return null;
  if (body instanceof Uint8Array) return body;
  if (typeof body === "string") return new TextEncoder().encode(body);
  headers["content-type"] ??= "application/json";
  return new TextEncoder().encode(JSON.stringify(body));
}

/**
 * Build the {@link RequestInfo} the proxy would build for `spec` under `config`.
 *
 * @example
 * const r = buildRequest(config, { method: "POST", url: "https://api.openai.com/v1/chat/completions", body: { model: "gpt-4o" } });
 * r.kind // "intercepted" when api.openai.com is in tls.intercept, else "tunnel"
 * @throws {RequestError} for a URL the proxy would refuse.
 */
export function buildRequest(
  config: AgentgateConfig,
  spec: RequestSpec,
  id = nextId("test"),
): BuiltRequest {
  const target = parseAbsolute(spec.url);
  if (target === null) {
    throw new RequestError(
      `invalid URL "${spec.url}": use an absolute http:// or https:// URL with a host`,
    );
  }
  const method = (spec.method ?? "GET").toUpperCase();
  const session = spec.session ?? null;
  const dest = destinationOf(config, spec, target.host, target.port);
  const base = {
    session,
    label: spec.label !== undefined ? spec.label : labelOf(session),
    client: spec.client ?? "127.0.0.1",
    host: target.host,
    port: target.port,
  };
  const tunnel: RequestInfo = {
    ...base,
    id,
    method: "CONNECT",
    scheme: "https",
    path: null,
    query: "",
    headers: {},
    ...(dest ? { dest } : {}),
  };
  if (method === "CONNECT") return { kind: "tunnel", info: tunnel, tunnel: null };
  const intercepted = target.scheme === "https" &&
    isIntercepted(config, target.host, target.port);
  if (target.scheme === "https" && !intercepted) {
    return { kind: "tunnel", info: tunnel, tunnel: null };
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.headers ?? {})) headers[k.toLowerCase()] = String(v);
  headers.host ??= target.authority;
  const bytes = encodeBody(spec.body, headers);
  const info = requestInfo({
    ...base,
    id: intercepted ? `${id}-1` : id,
    method,
    scheme: target.scheme,
    rawPath: target.rawPath,
    headers,
  });
  if (dest) info.dest = { ...dest };
  if (bytes !== null) {
    info.headers["content-length"] ??= String(bytes.length);
    // What the request shows before the pipeline reads it, for `eval` and
    // the tests' own assertions; deciding reads the body again as the proxy does.
    if (bytes.length <= config.limits.maxBodyBytes) {
      info.body = parseJsonBody(bytes, info.headers["content-encoding"] ?? null);
    }
    info.bodyText = decodeForScan(
      bytes,
      info.headers["content-type"] ?? null,
      info.headers["content-encoding"] ?? null,
      config.limits.maxScanBytes,
    )?.text;
  }
  return {
    kind: intercepted ? "intercepted" : "http",
    info,
    tunnel: intercepted ? tunnel : null,
    bytes,
  };
}

/**
 * The destination a spec gives or implies: `dest_ip` (the DNS answer; the
 * address is chosen as the proxy chooses it), else a pinned host or an
 * address literal; undefined for a name without `dest_ip`.
 * @throws {RequestError} for a `dest_ip` that is not an address.
 */
function destinationOf(
  config: AgentgateConfig,
  spec: RequestSpec,
  host: string,
  port: number,
): RequestInfo["dest"] {
  const known = knownDestination(config.resolve, host, port);
  if (spec.dest_ip === undefined) return known ?? undefined;
  if (known?.pinned) return known;
  const raw = Array.isArray(spec.dest_ip) ? spec.dest_ip : [spec.dest_ip];
  const addresses: string[] = [];
  for (const a of raw) {
    const ip = canonicalIp(String(a));
    if (ip === null) throw new RequestError(`dest_ip "${a}" is not an IP address`);
    addresses.push(ip);
  }
  if (addresses.length === 0) throw new RequestError("dest_ip names no address");
  return { ip: chooseAddress(addresses), port, addresses, pinned: false };
}

/** The outcome of deciding a built request. */
export interface Decided {
  decision: Decision;
  /**
   * Which step decided: the request, or the tunnel (a tunnel that was not
   * intercepted, or an intercepted tunnel refused before its request).
   */
  step: "request" | "tunnel";
  /** Every rule considered for the deciding step, in order (when asked for). */
  trace?: TraceEntry[];
}

/**
 * Decide a built request like the proxy, through the same pipeline: an
 * intercepted request's tunnel first, then the request from its head, and
 * with its body when the pipeline asks for it.
 *
 * @param opts.bodyRead false when the request had a body that is not known
 *   (`replay`): a decision that needs it comes back with `needsBody`.
 */
export function decideRequest(
  config: AgentgateConfig,
  req: BuiltRequest,
  opts: { now: number; state: PolicyState; trace?: boolean; bodyRead?: boolean },
): Decided {
  const ctx = { now: opts.now, state: opts.state };
  if (req.tunnel !== null) {
    const trace: TraceEntry[] | undefined = opts.trace ? [] : undefined;
    const t = decideTunnel(config, req.tunnel, { ...ctx, intercept: true, trace });
    if (t.verdict === "deny") return { decision: t, step: "tunnel", trace };
  }
  const trace: TraceEntry[] | undefined = opts.trace ? [] : undefined;
  if (req.kind === "tunnel") {
    const intercept = isIntercepted(config, req.info.host, req.info.port);
    const d = decideTunnel(config, req.info, { ...ctx, intercept, trace });
    return { decision: d, step: "tunnel", trace };
  }
  const bytes = req.bytes ?? null;
  let step = decideHead(config, req.info, {
    ...ctx,
    trace,
    hasBody: bytes !== null || opts.bodyRead === false,
    readAhead: bytes !== null,
  });
  // The tools decide in-process: never a shared-state step.
  if (step.next === "dest" || step.next === "state") {
    // No DNS here: the address comes from the request (dest_ip) or is not known.
    return { decision: step.asked, step: "request", trace };
  }
  if (step.next === "verdict") return { decision: step.verdict.decision, step: "request", trace };
  if (bytes === null) {
    // The body is not known: say what asked for it (read-ahead needs bytes, so `asked` is set).
    return { decision: step.asked!, step: "request", trace };
  }
  // A body the proxy would cut at the cap is seen cut here too.
  const complete = bytes.length <= step.cap;
  const chunk = complete ? bytes : bytes.subarray(0, step.cap + 1);
  if (trace) trace.length = 0;
  step = decideBody(
    config,
    req.info,
    { chunks: [chunk], size: chunk.length, complete },
    { ...ctx, trace },
  );
  if (step.next === "verdict") return { decision: step.verdict.decision, step: "request", trace };
  // The body was read: only the address can still be missing.
  return { decision: step.asked!, step: "request", trace };
}

/** `POST https://api.openai.com/v1/chat (intercepted)` — a request in one line. */
export function describeRequest(req: BuiltRequest): string {
  const i = req.info;
  if (req.kind === "tunnel") {
    return `CONNECT ${
      i.host.includes(":") ? `[${i.host}]` : i.host
    }:${i.port} (tunnel: host and port only)`;
  }
  const host = i.host.includes(":") ? `[${i.host}]` : i.host;
  const dflt = i.scheme === "https" ? 443 : 80;
  const url = `${i.scheme}://${host}${i.port === dflt ? "" : `:${i.port}`}${i.path}${
    i.query ? `?${i.query}` : ""
  }`;
  return `${i.method} ${url}${req.kind === "intercepted" ? " (intercepted)" : ""}`;
}
