/**
 * Proxy authentication: one admission step for every request, tunnel and
 * upgrade, as an addon. Sessions are bound to credentials agentgate issued:
 * a minted session id with its secret, or a `proxy.auth` token whose session
 * is its configured label. A client never names its own session. Tokens
 * never reach the audit (the header is dropped before the policy sees the
 * request).
 *
 * @module
 */
import type { IncomingHttpHeaders } from "node:http";
import type { AgentgateConfig } from "../config/load.ts";
import type { RequestInfo } from "../policy/types.ts";
import { type Answer, errorAnswer } from "./reject.ts";
import type { Addon } from "./addons/types.ts";
import { SessionRegistry } from "./sessions.ts";
import { sameSecret } from "../util/session_id.ts";

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
  // A client sends the same header on every request: decode it once.
  const hit = parsed.get(value);
  if (hit !== undefined) return hit;
  const creds = decodeBasic(value);
  if (parsed.size >= 1024) parsed.clear();
  parsed.set(value, creds);
  return creds;
}

/** Recently decoded headers (bounded; a full cache starts over). */
const parsed = new Map<string, { user: string; pass: string } | null>();

function decodeBasic(value: string): { user: string; pass: string } | null {
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

/**
 * The admission addon. A request's session is set here and only here, and
 * only from credentials that authenticate:
 *
 * - a minted session (`agentgate run`, `POST /_/api/sessions`): user name =
 *   its id, password = its secret;
 * - a static `proxy.auth` token (as the password, or as the user name with
 *   no password): the session is the token's label; the user name a client
 *   sends with it is ignored.
 *
 * Credentials that authenticate nothing are answered 407 (and the request
 * recorded without a session) whenever this proxy has credentials of its own
 * (`proxy.auth`, a dashboard token that mints sessions, `agentgate run`'s
 * session); a proxy with none ignores them and the client is anonymous, as
 * it is without them.
 *
 * @example
 * const auth = new ProxyAuth(() => proxy.config, sessions);
 * auth.requireCredentials = true; // `agentgate run`'s proxy: its session only
 */
export class ProxyAuth implements Addon {
  readonly name = "auth";
  /** Refuse requests without credentials even without `proxy.auth` (`agentgate run`). */
  requireCredentials = false;
  /** Requests refused because their credentials authenticated nothing. */
  invalidCredentials = 0;

  /**
   * @param config the configuration in force (it changes on reload)
   * @param sessions the minted sessions this proxy accepts
   */
  constructor(
    private readonly config: () => AgentgateConfig,
    readonly sessions: SessionRegistry = new SessionRegistry(),
  ) {}

  /** The session `creds` authenticate, or null. */
  identify(
    creds: { user: string; pass: string },
  ): { session: string; label: string | null } | null {
    const minted = this.sessions.verify(creds.user, creds.pass);
    if (minted) return minted;
    // A static token: in the password, or alone in the user name (`http://TOKEN@host`).
    const presented = creds.pass !== "" ? creds.pass : creds.user;
    if (presented === "") return null;
    // Every token is compared, each in constant time (no early exit): the
    // time says nothing about a token or which one matched.
    let hit: string | null = null;
    for (const t of this.config().proxyAuth) if (sameSecret(t.token, presented)) hit ??= t.label;
    return hit === null ? null : { session: hit, label: hit };
  }

  admit(headers: IncomingHttpHeaders, info: RequestInfo): Answer | null {
    const header = headers["proxy-authorization"];
    const config = this.config();
    const tokens = config.proxyAuth.length;
    // A proxy with credentials of its own checks every presented pair: static
    // tokens, `agentgate run`'s session, or sessions minted with the admin token.
    const checkable = tokens > 0 || this.requireCredentials || config.dashboardToken !== null ||
      this.sessions.size > 0;
    if (header === undefined || !checkable) {
      // Credentials are required with proxy.auth, and for an `agentgate run`
      // proxy, so clients that send them only after a 407 challenge
      // (git/libcurl anyauth, .NET, Java) are attributed too.
      if (tokens === 0 && !this.requireCredentials) return null;
      return challenge(info, "proxy authentication required");
    }
    const creds = parseProxyAuthorization(header);
    const who = creds === null ? null : this.identify(creds);
    if (who !== null) {
      info.session = who.session;
      info.label = who.label;
      return null;
    }
    // Nothing from the refused header is kept: the row has no session, and a
    // token sent as the user name cannot end up stored as one.
    this.invalidCredentials++;
    return challenge(info, "invalid proxy credentials");
  }
}

function challenge(info: RequestInfo, reason: string): Answer {
  const a = errorAnswer(info.id, 407, "proxy_auth_required", reason);
  a.headers["proxy-authenticate"] = 'Basic realm="agentgate"';
  return a;
}
