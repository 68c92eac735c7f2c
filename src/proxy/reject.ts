/**
 * One place maps every failure — a policy denial, an upstream error, a bad
 * request — to the HTTP answer the client gets (like Smokescreen's
 * `rejectResponse`), so an agent can tell a policy block from a network
 * failure by status and JSON body.
 *
 * @module
 */
import type { Decision } from "../policy/types.ts";

/** A complete answer: status, headers and a JSON body. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The reason the body states (for the audit row; never parsed back from the body). */
  reason: string;
}

/** Header values must be ISO-8859-1 and single-line; reasons may not be. */
export function headerSafe(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}

function answer(
  status: number,
  id: string,
  payload: Record<string, unknown> & { reason: string },
): Answer {
  const body = JSON.stringify({ ...payload, decision_id: id }) + "\n";
  return {
    status,
    reason: payload.reason,
    headers: {
      "content-type": "application/json",
      "content-length": String(new TextEncoder().encode(body).length),
      "cache-control": "no-store",
      "x-agentgate-decision": id,
    },
    body,
  };
}

/**
 * The answer to a denied request: 403 (or 429 for limits) with
 * `{ error: "denied", rule, reason, decision_id }`.
 *
 * @example
 * denyAnswer("0190…", decision) // { status: 403, headers: {...}, body: '{"error":"denied",…}' }
 */
export function denyAnswer(id: string, d: Decision): Answer {
  const a = answer(d.status, id, {
    error: "denied",
    rule: d.rule,
    reason: d.reason,
    ...(d.policy ? { policy: d.policy } : {}),
    ...(d.retryAfter !== null ? { retry_after: d.retryAfter } : {}),
    ...(d.detail ? d.detail : {}),
  });
  if (d.rule !== null) a.headers["x-agentgate-rule"] = headerSafe(d.rule);
  if (d.retryAfter !== null) a.headers["retry-after"] = String(d.retryAfter);
  return a;
}

/** Upstream failures we tell apart. */
export type UpstreamFailure = "dns" | "refused" | "unreachable" | "reset" | "timeout" | "tls";

/**
 * Classify a socket/HTTP client error.
 *
 * @example
 * classifyUpstreamError(Object.assign(new Error(), { code: "ECONNREFUSED" })) // "refused"
 */
export function classifyUpstreamError(e: unknown): UpstreamFailure {
  const err = e as { code?: string; message?: string; name?: string };
  const code = err?.code ?? "";
  const msg = String(err?.message ?? "");
  // A certificate error can quote its altnames ("DNS:api.example.com"): its
  // code decides before the message is read.
  if (/^ERR_(TLS|SSL)_|CERT/.test(code)) return "tls";
  if (code === "ETIMEDOUT" || code === "UPSTREAM_TIMEOUT" || /timed? ?out/i.test(msg)) {
    return "timeout";
  }
  if (
    code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME" || code === "EAI_FAIL" ||
    /dns|lookup|name (or service )?not known|failed to lookup/i.test(msg)
  ) return "dns";
  if (code === "ECONNREFUSED" || /refused/i.test(msg)) return "refused";
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH" || /unreachable/i.test(msg)) {
    return "unreachable";
  }
  if (/certificate|tls|ssl|handshake/i.test(code + " " + msg)) return "tls";
  return "reset";
}

/**
 * The human reason for an upstream failure, naming the target (`host:port`,
 * the address connected to) and, when it differs, the request's host.
 *
 * @example
 * upstreamReason("refused", "93.184.216.34:80", undefined, "example.com:80")
 * // 'connection refused by "93.184.216.34:80" (example.com:80)'
 */
export function upstreamReason(
  kind: UpstreamFailure,
  target: string,
  e?: unknown,
  name?: string,
): string {
  const detail = (e as { message?: string })?.message;
  const t = `"${target}"${name ? ` (${name})` : ""}`;
  switch (kind) {
    case "dns":
      return `DNS lookup failed for ${t}`;
    case "refused":
      return `connection refused by ${t}`;
    case "unreachable":
      return `${t} is unreachable`;
    case "timeout":
      return detail && /response/.test(detail)
        ? `${t} did not answer in time: ${detail}`
        : `timed out connecting to ${t}`;
    case "tls":
      return `TLS with ${t} failed${detail ? `: ${detail}` : ""}`;
    case "reset":
      return `${t} closed the connection${detail ? `: ${detail}` : ""}`;
  }
}

/** 502 (or 504 for timeouts) with `{ error: "bad_gateway" | "gateway_timeout", reason }`. */
export function upstreamAnswer(id: string, kind: UpstreamFailure, reason: string): Answer {
  return kind === "timeout"
    ? answer(504, id, { error: "gateway_timeout", reason })
    : answer(502, id, { error: "bad_gateway", reason });
}

/** 400/404/405/508… for requests agentgate cannot or will not handle. */
export function errorAnswer(id: string, status: number, error: string, reason: string): Answer {
  return answer(status, id, { error, reason });
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  407: "Proxy Authentication Required",
  421: "Misdirected Request",
  429: "Too Many Requests",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  508: "Loop Detected",
};

/**
 * Serialize an answer for a raw socket (CONNECT and upgrade paths, where no
 * `ServerResponse` exists). The connection is closed after it.
 */
export function rawAnswer(a: Answer): string {
  let head = `HTTP/1.1 ${a.status} ${STATUS_TEXT[a.status] ?? "Error"}\r\n`;
  for (const [k, v] of Object.entries(a.headers)) head += `${k}: ${v}\r\n`;
  return head + "connection: close\r\n\r\n" + a.body;
}
