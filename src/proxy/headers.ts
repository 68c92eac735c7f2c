/**
 * Hop-by-hop header handling (RFC 9110 7.6.1): what one connection says about
 * itself is not passed on to the next.
 *
 * @module
 */

/** Always hop-by-hop; `upgrade` is kept only for WebSocket upgrades. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Names listed in `Connection:` are hop-by-hop too. */
function connectionTokens(raw: string[]): Set<string> | null {
  let out: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === 10 && name.toLowerCase() === "connection") {
      for (const t of raw[i + 1].split(",")) {
        const tok = t.trim().toLowerCase();
        if (tok && tok !== "close" && tok !== "keep-alive" && tok !== "upgrade") {
          (out ??= new Set()).add(tok);
        }
      }
    }
  }
  return out;
}

/**
 * End-to-end headers from a raw header list (name, value, name, value…), with
 * their original case, duplicates as arrays.
 *
 * @example
 * endToEnd(["Host", "a", "Connection", "x-foo", "X-Foo", "1", "Accept", "*\/*"], { skip: ["host"] })
 * // { Accept: "*\/*" }
 */
export function endToEnd(
  raw: string[],
  opts: { skip?: readonly string[]; keepUpgrade?: boolean } = {},
): Record<string, string | string[]> {
  const extra = connectionTokens(raw);
  const out: Record<string, string | string[]> = {};
  const seen = new Map<string, string>();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) && !(opts.keepUpgrade && lower === "upgrade")) continue;
    if (extra?.has(lower) || opts.skip?.includes(lower)) continue;
    const value = raw[i + 1];
    const first = seen.get(lower);
    if (first === undefined) {
      seen.set(lower, name);
      out[name] = value;
    } else {
      const cur = out[first];
      out[first] = Array.isArray(cur) ? [...cur, value] : [cur, value];
    }
  }
  return out;
}

/** Whether a request asks for a WebSocket upgrade (the only upgrade passed through). */
export function isWebSocketUpgrade(
  headers: Record<string, string | string[] | undefined>,
): boolean {
  const up = headers["upgrade"];
  return typeof up === "string" && up.toLowerCase() === "websocket";
}
