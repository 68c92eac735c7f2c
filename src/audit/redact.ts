/**
 * Masking before anything is stored or served: credentials in headers, query
 * strings, paths and free text never reach the audit, a log line or an API
 * answer in clear text. The detection (names, value shapes, service URLs) is
 * the DLP library's (`dlp/secrets.ts`); this module applies it to rows.
 *
 * @module
 */
import { isSecretName, MASK, maskHeaders, maskPath, maskQuery, maskText } from "../dlp/secrets.ts";

export { isSecretName, MASK, maskPath, maskText };

/** Whether a header's value must be masked whatever it looks like (its name says secret). */
export function isSecretHeader(name: string): boolean {
  return isSecretName(name);
}

/**
 * Headers as a JSON-ready object with secret values masked: by name
 * (`x-passphrase`, `X-AccessToken`), or by shape (`Bearer …`, a JWT, an API key).
 *
 * @example
 * redactHeaders({ authorization: "Bearer sk-1", accept: "*\/*" })
 * // { authorization: "[REDACTED]", accept: "*\/*" }
 */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  return maskHeaders(headers);
}

/**
 * A raw query string with credential-like parameter values masked
 * (`key=AIza…` for Gemini, `access_token=…`, `accessToken`, `code`, signed-URL
 * signatures, and any value shaped like a credential).
 *
 * @example
 * redactQuery("key=AIzaSy123&alt=sse") // "key=[REDACTED]&alt=sse"
 */
export function redactQuery(query: string): string {
  return maskQuery(query);
}

/**
 * A request path as it may be stored and logged: capability tokens of known
 * services and token-like segments masked (decisions still see the real path).
 *
 * @example
 * redactPath("/bot123456:AAHk3xM9f1Yq8ZrT2vW5bN7cL0pQ4sD6eF8/getMe", "api.telegram.org")
 * // "/bot123456:[REDACTED]/getMe"
 */
export function redactPath(path: string, host?: string): string {
  return maskPath(path, host);
}

function maskHeadersJson(v: unknown): unknown {
  if (typeof v === "string") {
    try {
      const h = JSON.parse(v);
      if (h && typeof h === "object" && !Array.isArray(h)) {
        return JSON.stringify(maskHeaders(h as Record<string, string>));
      }
    } catch {
      // Not JSON: masked as text below.
    }
    return maskText(v);
  }
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      out[k] = isSecretName(k) ? MASK : typeof x === "string" ? maskText(x) : x;
    }
    return out;
  }
  return v;
}

/**
 * An answer built from audit rows, masked again as it is served: `path`,
 * `query`, `headers`, `reason` and `error` of every row-shaped object in it.
 * Rows written by this version are masked already (masking is idempotent);
 * rows an older agentgate wrote may not be.
 *
 * @example
 * maskRows({ items: [{ host: "h", path: "/bot1234567:AAH…/getMe", query: "pwd=x" }] })
 */
export function maskRows<T>(answer: T): T {
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > 6 || v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    const o = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    const host = typeof o.host === "string" ? o.host : undefined;
    for (const [k, x] of Object.entries(o)) {
      if (k === "path" && typeof x === "string") out[k] = maskPath(x, host);
      else if (k === "query" && typeof x === "string") out[k] = maskQuery(x);
      else if (k === "headers" && x !== null) out[k] = maskHeadersJson(x);
      else if ((k === "reason" || k === "error") && typeof x === "string") out[k] = maskText(x);
      else out[k] = walk(x, depth + 1);
    }
    return out;
  };
  return walk(answer, 0) as T;
}
