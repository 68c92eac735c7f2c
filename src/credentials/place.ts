/**
 * Where a client presents a credential — a header in a format, HTTP basic
 * auth, a query parameter — and the same place with the real secret in it.
 *
 * @module
 */

/**
 * The format of `formats` that `value` presents `phantom` in, or null: the
 * literal parts compare case-insensitively (`bearer` = `Bearer`), spaces
 * around the value are ignored.
 *
 * @example
 * presentedFormat("Bearer sk-x", ["Bearer {secret}"], "sk-x") // "Bearer {secret}"
 * presentedFormat("sk-x", ["Bearer {secret}"], "sk-x") // null
 */
export function presentedFormat(
  value: string,
  formats: readonly string[],
  phantom: string,
): string | null {
  const v = value.trim();
  for (const f of formats) {
    const at = f.indexOf("{secret}");
    const before = f.slice(0, at);
    const after = f.slice(at + "{secret}".length);
    if (v.length !== before.length + phantom.length + after.length) continue;
    if (v.slice(0, before.length).toLowerCase() !== before.toLowerCase()) continue;
    if (v.slice(before.length, before.length + phantom.length) !== phantom) continue;
    if (v.slice(before.length + phantom.length).toLowerCase() !== after.toLowerCase()) continue;
    return f;
  }
  return null;
}

/**
 * `value` (a header that presents `phantom`) with the secret instead.
 *
 * @example
 * swapInValue("Bearer sk-x", "sk-x", "sk-real") // "Bearer sk-real"
 */
export function swapInValue(value: string, phantom: string, secret: string): string {
  const v = value.trim();
  const at = v.indexOf(phantom);
  return v.slice(0, at) + secret + v.slice(at + phantom.length);
}

/**
 * The user name and password of an `Authorization: Basic` value, or null.
 *
 * @example
 * parseBasic("Basic " + btoa("x-access-token:ghp_x")) // { user: "x-access-token", pass: "ghp_x" }
 */
export function parseBasic(value: string): { user: string; pass: string } | null {
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (!m) return null;
  let text: string;
  try {
    const bin = atob(m[1].replace(/-/g, "+").replace(/_/g, "/"));
    text = new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
  const colon = text.indexOf(":");
  return colon === -1
    ? { user: text, pass: "" }
    : { user: text.slice(0, colon), pass: text.slice(colon + 1) };
}

/**
 * An `Authorization: Basic` value.
 *
 * @example
 * basicValue("__token__", "pypi-x") // "Basic X190b2tlbl9fOnB5cGkteA=="
 */
export function basicValue(user: string, pass: string): string {
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return `Basic ${btoa(s)}`;
}

/** Percent-decoding of a query part (`+` is a space), or null when it is malformed. */
export function decodeQueryPart(s: string): string | null {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return null;
  }
}

/**
 * The parameters of a raw query string, decoded (a malformed one keeps its raw text).
 *
 * @example
 * queryParams("key=AIza%2Dx&alt=sse") // [["key", "AIza-x"], ["alt", "sse"]]
 */
export function queryParams(query: string): [string, string][] {
  if (query === "") return [];
  return query.split("&").map((part) => {
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? "" : part.slice(eq + 1);
    return [decodeQueryPart(name) ?? name, decodeQueryPart(value) ?? value];
  });
}

/**
 * `query` with every parameter `name` whose value is `phantom` set to `secret`.
 *
 * @example
 * swapInQuery("alt=sse&key=AIzaX", "key", "AIzaX", "AIzaReal") // "alt=sse&key=AIzaReal"
 */
export function swapInQuery(query: string, name: string, phantom: string, secret: string): string {
  return query.split("&").map((part) => {
    const eq = part.indexOf("=");
    if (eq === -1) return part;
    const n = decodeQueryPart(part.slice(0, eq));
    if (n !== name || decodeQueryPart(part.slice(eq + 1)) !== phantom) return part;
    return `${part.slice(0, eq)}=${encodeURIComponent(secret)}`;
  }).join("&");
}
