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
function connectionTokens(raw: readonly string[]): Set<string> | null {
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
 * The end-to-end part of a raw header list (name, value, name, value…): still
 * a raw list, in the original order and case, duplicates as repeated entries
 * (what `H1Response.writeHead` and the upstream request head take). `skip`
 * names (lower case) are dropped too; `dropLength` drops Content-Length (a
 * body the proxy re-frames).
 *
 * @example
 * endToEnd(["Host", "a", "Connection", "x-foo", "X-Foo", "1", "Accept", "*\/*"], { skip: ["host"] })
 * // ["Accept", "*\/*"]
 */
export function endToEnd(
  raw: readonly string[],
  opts: { skip?: readonly string[]; keepUpgrade?: boolean; dropLength?: boolean } = {},
): string[] {
  const extra = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) && !(opts.keepUpgrade && lower === "upgrade")) continue;
    if (extra !== null && extra.has(lower)) continue;
    if (opts.skip !== undefined && opts.skip.includes(lower)) continue;
    if (opts.dropLength && lower === "content-length") continue;
    out.push(name, raw[i + 1]);
  }
  return out;
}

/**
 * Header lines (`Name: value\r\n`…) of a raw list, with edits applied (lower-case
 * name -> value; null removes every line of that name): an edited header
 * keeps its first line's place and spelling, once; a new one is appended.
 */
export function headerLines(
  raw: readonly string[],
  edits?: ReadonlyMap<string, string | null>,
): string {
  let out = "";
  let done: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (edits !== undefined) {
      const lower = name.toLowerCase();
      const edit = edits.get(lower);
      if (edit !== undefined) {
        if (edit !== null && !(done ??= new Set()).has(lower)) {
          done.add(lower);
          out += `${name}: ${edit}\r\n`;
        }
        continue;
      }
    }
    out += `${name}: ${raw[i + 1]}\r\n`;
  }
  if (edits !== undefined) {
    for (const [name, value] of edits) {
      if (value !== null && !done?.has(name)) out += `${name}: ${value}\r\n`;
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
