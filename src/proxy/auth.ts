/**
 * Proxy authentication: one admission step for every request, tunnel and
 * upgrade, as an addon. The user name of `Proxy-Authorization: Basic` is the
 * session (`agentgate run` sends `<label>-<id>`), the password a token. With
 * `proxy.auth` set, or tokens added for an in-process `agentgate run`, a
 * request without valid credentials is answered 407; tokens never reach the
 * audit (the header is dropped before the policy sees the request).
 *
 * @module
 */
import type { IncomingHttpHeaders } from "node:http";
import type { AgentgateConfig } from "../config/load.ts";
import type { RequestInfo } from "../policy/types.ts";
import { type Answer, errorAnswer } from "./reject.ts";
import type { Addon } from "./addons/types.ts";

/**
 * `Proxy-Authorization: Basic …` as user and password, or null.
 *
 * @example
 * parseProxyAuthorization("Basic " + btoa("ci-0a1b2c3d:t0ken")) // { user: "ci-0a1b2c3d", pass: "t0ken" }
 */
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

/**
 * The admission addon.
 *
 * @example
 * const auth = new ProxyAuth(() => proxy.config);
 * auth.extraTokens.add(runToken); // `agentgate run`'s own session token
 */
export class ProxyAuth implements Addon {
  readonly name = "auth";
  /** Tokens accepted besides `proxy.auth` (sessions of an in-process `agentgate run`). */
  readonly extraTokens = new Set<string>();

  /** @param config the configuration in force (it changes on reload) */
  constructor(private readonly config: () => AgentgateConfig) {}

  admit(headers: IncomingHttpHeaders, info: RequestInfo): Answer | null {
    const tokens = this.config().proxyAuth;
    // Credentials are required with proxy.auth, and for an `agentgate run`
    // proxy (its token), so clients that send them only after a 407
    // challenge (git/libcurl anyauth, .NET, Java) are attributed too.
    const required = tokens.length > 0 || this.extraTokens.size > 0;
    const creds = parseProxyAuthorization(headers["proxy-authorization"]);
    if (creds) {
      info.session = creds.user || null;
      const m = /^(.+)-[0-9a-f]{8,}$/.exec(creds.user);
      info.label = m ? m[1] : null;
    }
    if (!required) return null;
    const ok = creds !== null &&
      (tokens.some((t) => safeEqual(t, creds.pass)) ||
        [...this.extraTokens].some((t) => safeEqual(t, creds.pass)));
    if (ok) return null;
    const reason = creds === null ? "proxy authentication required" : "invalid proxy credentials";
    const a = errorAnswer(info.id, 407, "proxy_auth_required", reason);
    a.headers["proxy-authenticate"] = 'Basic realm="agentgate"';
    return a;
  }
}
