/**
 * Masking before anything is stored: credentials in headers and query strings
 * never reach the audit in clear text.
 *
 * @module
 */

/** Header names whose values are always masked. */
const SECRET_HEADERS = new Set([
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  "api-key",
  "x-goog-api-key",
  "x-amz-security-token",
  "x-auth-token",
  "x-csrf-token",
  "private-token",
]);

/** Other header or query names that look like credentials. */
const SECRET_NAME =
  /(^|[-_])(key|token|secret|password|passwd|auth|signature|sig|credential)s?($|[-_])|apikey|api_key|access_token/i;

/** The mask written instead of a secret value. */
export const MASK = "[REDACTED]";

/** Whether a header's value must be masked. */
export function isSecretHeader(name: string): boolean {
  const n = name.toLowerCase();
  return SECRET_HEADERS.has(n) || SECRET_NAME.test(n);
}

/**
 * Headers as a JSON-ready object with secret values masked.
 *
 * @example
 * redactHeaders({ authorization: "Bearer sk-1", accept: "*\/*" })
 * // { authorization: "[REDACTED]", accept: "*\/*" }
 */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k in headers) out[k] = isSecretHeader(k) ? MASK : headers[k];
  return out;
}

/**
 * A raw query string with credential-like parameter values masked
 * (`key=AIza…` for Gemini, `access_token=…`, signed-URL signatures).
 *
 * @example
 * redactQuery("key=AIzaSy123&alt=sse") // "key=[REDACTED]&alt=sse"
 */
export function redactQuery(query: string): string {
  if (query === "") return query;
  return query.split("&").map((part) => {
    const eq = part.indexOf("=");
    if (eq === -1) return part;
    let name = part.slice(0, eq);
    try {
      name = decodeURIComponent(name.replace(/\+/g, " "));
    } catch {
      // Undecodable names are checked as written.
    }
    return SECRET_NAME.test(name) || SECRET_HEADERS.has(name.toLowerCase())
      ? `${part.slice(0, eq)}=${MASK}`
      : part;
  }).join("&");
}
