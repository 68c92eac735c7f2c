/**
 * Requests to the proxy itself (origin-form, or absolute-form to its own
 * address): `/_/health`, `/_/metrics`, and — unless the dashboard is off —
 * `/_/dashboard` and `/_/api/*`. A request for another host never gets here.
 *
 * Access to the page and API: loopback clients only (and only under a
 * loopback `Host`, which stops DNS rebinding) unless a token is configured;
 * with a token every request must carry it (`Authorization: Bearer`, or the
 * HttpOnly cookie that a one-time `/_/dashboard?token=` sets).
 *
 * @module
 */
import type { BackendStatus } from "../util/backends.ts";
import type http from "node:http";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { AgentgateConfig } from "../config/load.ts";
import { AuditReadError, type AuditReadModel, type RuleHits, TOTAL_CAP } from "../audit/read.ts";
import type { SinkStatus } from "../audit/sink.ts";
import { isSecretName, MASK, maskRows, maskText } from "../audit/redact.ts";
import {
  type DenialGroups,
  DENIALS_GROUPED,
  EXPORT_PARAMS,
  groupDenials,
  ParamError,
  parseAuditQuery,
  parseParams,
  parseStatsQuery,
} from "./api.ts";
import { AUDIT_COLUMNS } from "../audit/event.ts";
import { renderPage } from "./page.ts";
import { parseDuration } from "../util/duration.ts";
import { LABEL_PATTERN } from "../util/session_id.ts";
import type { IssuedCredential } from "../credentials/mod.ts";

/** What the internal routes can see of the running proxy. */
export interface InternalDeps {
  version: string;
  startedAt: number;
  /**
   * The audit's read model; the routes own it from here on (their `close()`
   * closes it).
   */
  reader: AuditReadModel;
  audit: {
    readonly queueDepth: number;
    readonly lastError: string | null;
    readonly writeErrors: number;
    /** Each sink's backend numbers (the primary first): spool, latency, errors. */
    status?(): SinkStatus[];
  };
  /** The policy in force (changes on reload). */
  config(): AgentgateConfig;
  /** The Prometheus exposition of the proxy's metrics (`/_/metrics`). */
  metrics: { render(): string };
  /** Serve /_/dashboard and /_/api (false: `--no-dashboard` / `proxy.dashboard: false`). */
  dashboard: boolean;
  /** Bearer token the page and API demand, or null (then loopback clients only). */
  token: string | null;
  /** Load the policy files again and swap them in (`POST /_/api/reload`). */
  reload?: () => Promise<ReloadStatus>;
  /** The fleet view's backends (shared state, audit sinks), for the health routes and the page. */
  backends?: () => BackendStatus[];
  /** Outcome of the last reload, for `/_/health`. */
  lastReload?: () => ReloadStatus | null;
  /**
   * Minting and revoking sessions (`POST /_/api/sessions`, `DELETE
   * /_/api/sessions/:id`, with the dashboard token). Absent: refused, as on
   * the proxy of `agentgate run`, whose only session is the run's.
   */
  sessions?: SessionAdmin;
  /** Why `POST /_/api/reload` is refused when `reload` is absent (default: 404). */
  reloadRefusal?: string;
  /**
   * The budgets in force (`GET /_/api/budgets`): every spending and token
   * limit with each key's spend, what calls in flight hold, the limit, the
   * window and when it resets; at most `maxKeys` keys per limit.
   */
  budgets?: (maxKeys: number) => unknown;
  /**
   * The phantoms of the session a `Proxy-Authorization` value authenticates
   * (`GET /_/credentials`), or null when it authenticates none.
   */
  phantoms?: (
    proxyAuthorization: string | string[] | undefined,
  ) => { session: string; credentials: IssuedCredential[] } | null;
}

/** What the routes need to hand out sessions (the proxy's session registry). */
export interface SessionAdmin {
  /** A new session and its secret; throws (with a message for the caller) when it cannot. */
  mint(opts: { label: string | null; ttlMs: number }): {
    session: string;
    secret: string;
    label: string | null;
    expiresAt: number | null;
    /** The session's phantoms, one per credential of the policy. */
    credentials?: IssuedCredential[];
  };
  /** False when there was no such session. */
  revoke(session: string): boolean;
}

/** Default and longest lifetime of a session minted through the API. */
export const SESSION_TTL = { default: 24 * 3_600_000, max: 30 * 86_400_000 };

/** The outcome of a reload. */
export interface ReloadStatus {
  ok: boolean;
  /** ms since the epoch. */
  at: number;
  /** What triggered it: `SIGHUP`, `api`, `file change`. */
  trigger: string;
  /** `file:line:col: message` lines when it failed (the old policy keeps serving). */
  errors: string[];
  /** Things that need a restart, or lint warnings. */
  warnings: string[];
  /** Rules in force after it. */
  rules?: number;
}

/** Headers every dashboard answer carries: no framing, no sniffing, no caching, no referrer. */
const COMMON_HEADERS = {
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-origin",
};

/**
 * One CSV field (RFC 4180): quoted when needed; a text starting with a
 * formula character is prefixed with `'`, so a spreadsheet shows it rather
 * than evaluating it (paths and reasons come from agents).
 *
 * @example
 * csvCell('=HYPERLINK("x")') // "'=HYPERLINK(""x"")" quoted
 */
export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return "";
  let t = typeof v === "string" ? v : String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(t)) t = "'" + t;
  return /[",\r\n]/.test(t) || t !== t.trim() ? `"${t.replace(/"/g, '""')}"` : t;
}

/** JSON answer with the headers every API response carries. */
export function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  extra: Record<string, string> = {},
): void {
  const text = JSON.stringify(body) + "\n";
  res.writeHead(status, {
    ...COMMON_HEADERS,
    "content-type": "application/json",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "content-length": String(new TextEncoder().encode(text).length),
    ...extra,
  });
  res.end(text);
}

/** Name of the cookie a one-time `?token=` sets. */
export const COOKIE_NAME = "agentgate_dashboard";

/** Loopback peer addresses (IPv4 127/8, ::1, and IPv4-mapped 127/8). */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = addr.startsWith("::ffff:") ? addr.slice(7) : addr;
  return a === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** Whether a Host header names this machine's loopback (`localhost`, 127/8, `[::1]`), any port. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const h = host.toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "[::1]" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** `host[:port]` lower-cased, without a default port 80 (how an http Origin spells it). */
function authorityKey(authority: string): string {
  return authority.toLowerCase().replace(/\.$/, "").replace(/:80$/, "");
}

/**
 * Why a browser request that changes state (reload, sessions) is refused as
 * cross-origin, or null. A page on any other origin — another port on
 * localhost included — can make a browser send a POST here (CSRF), and the
 * browser says so in `Origin` (always sent with a POST) and
 * `Sec-Fetch-Site`. The proxy's own origin is `http://` plus the `Host` the
 * request was sent to; clients that are not browsers send neither header.
 *
 * @example
 * crossOriginReason({ host: "127.0.0.1:4100", origin: "http://localhost:3000" });
 * // 'origin "http://localhost:3000" is not this proxy\'s own ("http://127.0.0.1:4100")'
 */
export function crossOriginReason(headers: http.IncomingHttpHeaders): string | null {
  const site = headers["sec-fetch-site"];
  if (typeof site === "string" && site !== "same-origin" && site !== "none") {
    return `a ${site.slice(0, 20)} browser request may not change agentgate's state`;
  }
  const origin = headers.origin;
  if (origin === undefined) return null;
  const own = `http://${authorityKey(String(headers.host ?? ""))}`;
  let url: URL | null = null;
  try {
    url = new URL(String(origin));
  } catch {
    // "null" (sandboxed frames, file: pages) and other non-URLs: not ours.
  }
  if (url !== null && url.protocol === "http:" && url.origin === own && headers.host) return null;
  return `origin "${String(origin).slice(0, 100)}" is not this proxy's own ("${own}")`;
}

/** Answer 403 for a cross-origin state change; true when refused. */
function refuseCrossOrigin(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const why = crossOriginReason(req.headers);
  if (why === null) return false;
  sendJson(res, 403, { error: "forbidden", reason: why });
  return true;
}

/** A JSON object from a request body of at most `max` bytes (an empty body is `{}`). */
function readJsonObject(req: http.IncomingMessage, max: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let n = 0;
    req.on("data", (c: Uint8Array) => {
      n += c.length;
      if (n > max) {
        req.destroy();
        reject(new Error(`the body is larger than ${max} bytes`));
      } else chunks.push(c);
    });
    req.on("error", () => reject(new Error("the body could not be read")));
    req.on("end", () => {
      const text = new TextDecoder().decode(Buffer.concat(chunks)).trim();
      if (text === "") return resolve({});
      try {
        const v = JSON.parse(text);
        if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error();
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new Error('the body must be a JSON object, e.g. { "label": "ci" }'));
      }
    });
  });
}

/** Constant-time string comparison (hashing first makes the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const ha = createHmac("sha256", "agentgate-compare").update(a).digest();
  const hb = createHmac("sha256", "agentgate-compare").update(b).digest();
  return timingSafeEqual(ha, hb);
}

function cookieFor(token: string): string {
  // The cookie proves the token was shown once; it is not the token itself.
  return createHmac("sha256", token).update("agentgate dashboard cookie v1").digest("base64url");
}

function readCookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return null;
}

/** Configuration keys named like secrets that hold none (shown as they are). */
const PUBLIC_CONFIG_KEYS = new Set(["leafKey"]);

/** A JSON-safe copy: Sets become arrays, functions and RegExps drop out, secret-named keys are masked. */
function jsonSafe(v: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
  if (typeof v !== "object" || depth > 8) return undefined;
  if (seen.has(v)) return undefined;
  seen.add(v);
  if (v instanceof RegExp) return v.source;
  if (v instanceof Set || Array.isArray(v)) {
    return [...v].map((x) => jsonSafe(x, depth + 1, seen)).filter((x) => x !== undefined);
  }
  if (v instanceof Map) v = Object.fromEntries(v);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    // snake_case like the rest of the API (`retentionMs` -> `retention_ms`).
    const key = k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
    const j = isSecretName(k) && !PUBLIC_CONFIG_KEYS.has(k) && x !== null && x !== undefined
      ? MASK
      : typeof x === "string"
      ? maskText(x)
      : jsonSafe(x, depth + 1, seen);
    if (j !== undefined) out[key] = j;
  }
  return out;
}

type Rule = AgentgateConfig["policy"]["rules"][number];

/** A rule as the API shows it (the compiled form keeps functions; this keeps what was written). */
function ruleJson(r: Rule) {
  // `when` and `checkers` exist once conditions and policies are compiled; read them defensively.
  const x = r as Rule & {
    when?: { expr?: string } | null;
    checkers?: { name: string }[];
    policies?: unknown[];
  };
  const policies = Array.isArray(x.checkers)
    ? x.checkers.map((c) => c.name)
    : Array.isArray(x.policies)
    ? x.policies.map((p) =>
      typeof p === "object" && p !== null
        ? String((p as { type?: unknown }).type ?? Object.keys(p)[0] ?? "policy")
        : String(p)
    )
    : [];
  return {
    index: r.index,
    name: r.name,
    source: r.source,
    // A policy may spell a credential into a pattern, condition or reason.
    match: r.match.map((m) => maskText(m.source)),
    methods: r.methods ? [...r.methods] : null,
    when: x.when?.expr === undefined ? null : maskText(x.when.expr),
    action: r.action,
    reason: r.reason === null ? null : maskText(r.reason),
    policies,
  };
}

/** `GET /_/api/config`: the policy in force, secrets (the dashboard token first) masked. */
export function configJson(c: AgentgateConfig): Record<string, unknown> {
  const { policy, dashboardToken, credentials, ...rest } = c;
  return {
    ...(jsonSafe(rest) as Record<string, unknown>),
    dashboard_token: dashboardToken === null ? null : MASK,
    // Where each secret comes from and where it may go; the secrets themselves are never here.
    credentials: credentials.map((x) => ({
      name: x.name,
      preset: x.preset,
      source: x.source.kind === "command"
        ? { command: x.source.argv[0] }
        : x.source.kind === "env"
        ? { env: x.source.name }
        : { file: x.source.path },
      hosts: x.scope.hosts,
      paths: x.scope.paths,
      methods: x.scope.methods ? [...x.scope.methods] : null,
      headers: x.headers,
      basic: x.basic !== null,
      query: x.query,
      variables: x.variables,
      source_line: x.where,
    })),
    policy: {
      mode: policy.mode,
      default: policy.defaultAction,
      default_source: policy.defaultSource,
      rules: policy.rules.map(ruleJson),
    },
  };
}

/** The handler of internal routes; `close()` closes the audit read model it was given. */
export type InternalRoutes =
  & ((req: http.IncomingMessage, res: http.ServerResponse, path: string) => void)
  & { close(): void };

/**
 * Create the handler for internal routes.
 *
 * @example
 * const internal = createInternalRoutes(deps);
 * internal(req, res, "/_/health");
 * internal.close(); // at shutdown, before the audit store closes
 */
export function createInternalRoutes(
  deps: InternalDeps,
  opts: { cache?: boolean } = {},
): InternalRoutes {
  const reader = deps.reader;
  const cookie = deps.token === null ? null : cookieFor(deps.token);

  // Reads run on the proxy's event loop. An answer that took a while (a text
  // search over a large audit, say) is reused for ten times as long as it
  // took, so dashboards polling it keep their share of the loop to about a
  // tenth, whatever the audit's size. Cheap answers are never reused.
  const cache = new Map<string, { until: number; body: unknown }>();
  async function cached<T>(key: string, compute: () => Promise<T>): Promise<T> {
    if (opts.cache === false) return compute();
    const start = performance.now();
    const hit = cache.get(key);
    if (hit && hit.until > start) return hit.body as T;
    const body = await compute();
    const took = performance.now() - start;
    if (took >= 5) {
      if (cache.size >= 64) cache.delete(cache.keys().next().value!);
      cache.set(key, { until: performance.now() + Math.min(10_000, took * 10), body });
    } else cache.delete(key);
    return body;
  }

  /** True when the request was refused (and answered); false when it may proceed. */
  function denyAccess(req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean {
    if (deps.token === null || cookie === null) {
      if (!isLoopbackAddress(req.socket.remoteAddress)) {
        sendJson(res, 403, {
          error: "forbidden",
          reason:
            "the dashboard answers loopback clients only; set dashboard.token to allow others",
        });
        return true;
      }
      if (!isLoopbackHost(req.headers.host)) {
        // A page on another origin that re-resolved its name to 127.0.0.1 (DNS rebinding).
        sendJson(res, 403, {
          error: "forbidden",
          reason:
            `the dashboard answers only under a loopback host name (127.0.0.1, localhost, [::1]), not "${
              String(req.headers.host ?? "").slice(0, 100)
            }"; set dashboard.token to allow others`,
        });
        return true;
      }
      return false;
    }
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      if (m && sameSecret(m[1], deps.token)) return false;
    } else {
      const c = readCookie(req.headers.cookie, COOKIE_NAME);
      if (c !== null && sameSecret(c, cookie)) return false;
      const t = url.searchParams.get("token");
      if (url.pathname.startsWith("/_/dashboard") && t !== null && sameSecret(t, deps.token)) {
        // One-time token in the URL: swap it for a cookie and drop it from the address bar.
        url.searchParams.delete("token");
        res.writeHead(303, {
          ...COMMON_HEADERS,
          location: "/_/dashboard" + (url.search === "?" ? "" : url.search),
          "set-cookie": `${COOKIE_NAME}=${cookie}; Path=/_/; HttpOnly; SameSite=Strict`,
          "content-length": "0",
        });
        res.end();
        return true;
      }
    }
    sendJson(res, 401, {
      error: "unauthorized",
      reason:
        'this dashboard needs its token: send "Authorization: Bearer <token>", or open /_/dashboard?token=<token> once in a browser',
    }, { "www-authenticate": 'Bearer realm="agentgate"' });
    return true;
  }

  /**
   * True when `req` may not change sessions (and was answered): a browser on
   * another origin, no dashboard token configured (then any local process
   * could mint fresh sessions and escape per-session limits), or the wrong one.
   */
  function refuseAdmin(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (refuseCrossOrigin(req, res)) return true;
    if (!deps.sessions) {
      sendJson(res, 403, {
        error: "forbidden",
        reason:
          "this proxy belongs to agentgate run: its only session is the run's, and no other can be minted",
      });
      return true;
    }
    if (deps.token === null) {
      sendJson(res, 403, {
        error: "forbidden",
        reason:
          "minting sessions needs the admin token: set dashboard.token (or dashboard.token_env) " +
          'and send "Authorization: Bearer <token>"',
      });
      return true;
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(String(req.headers.authorization ?? ""));
    if (m && sameSecret(m[1], deps.token)) return false;
    sendJson(res, 401, {
      error: "unauthorized",
      reason: 'managing sessions needs the admin token: send "Authorization: Bearer <token>"',
    }, { "www-authenticate": 'Bearer realm="agentgate"' });
    return true;
  }

  /** `POST /_/api/sessions {label?, ttl?}`: a new session and its secret (shown once). */
  async function mintSession(req: http.IncomingMessage, res: http.ServerResponse) {
    if (refuseAdmin(req, res)) return;
    let body: Record<string, unknown>;
    try {
      body = await readJsonObject(req, 4096);
    } catch (e) {
      return sendJson(res, 400, { error: "bad_request", reason: (e as Error).message });
    }
    const unknown = Object.keys(body).filter((k) => k !== "label" && k !== "ttl");
    if (unknown.length) {
      return sendJson(res, 400, {
        error: "bad_request",
        reason: `unknown field "${unknown[0].slice(0, 40)}": send { "label": "…", "ttl": "8h" }`,
      });
    }
    const label = body.label ?? null;
    if (label !== null && (typeof label !== "string" || !LABEL_PATTERN.test(label))) {
      return sendJson(res, 400, {
        error: "bad_request",
        reason:
          '"label" must be 1 to 64 letters, digits, ".", "_", "~" or "-", starting with a letter or digit',
      });
    }
    let ttlMs = SESSION_TTL.default;
    if (body.ttl !== undefined) {
      try {
        if (typeof body.ttl !== "string") throw new Error("not a string");
        ttlMs = parseDuration(body.ttl);
      } catch {
        ttlMs = NaN;
      }
      if (!(ttlMs > 0 && ttlMs <= SESSION_TTL.max)) {
        return sendJson(res, 400, {
          error: "bad_request",
          reason: '"ttl" must be a duration from 1s to 30d, e.g. "8h"',
        });
      }
    }
    let grant: ReturnType<SessionAdmin["mint"]>;
    try {
      grant = deps.sessions!.mint({ label: label as string | null, ttlMs });
    } catch (e) {
      return sendJson(res, 503, { error: "unavailable", reason: (e as Error).message });
    }
    const host = String(req.headers.host ?? "");
    const enc = encodeURIComponent;
    sendJson(res, 201, {
      session: grant.session,
      secret: grant.secret,
      label: grant.label,
      expires_at: grant.expiresAt,
      proxy_url: /^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$/.test(host)
        ? `http://${enc(grant.session)}:${enc(grant.secret)}@${host}`
        : null,
      credentials: grant.credentials ?? [],
    });
  }

  /** `DELETE /_/api/sessions/:id`: the session's credentials stop working at once. */
  function revokeSession(req: http.IncomingMessage, res: http.ServerResponse, path: string) {
    if (req.method !== "DELETE") {
      return sendJson(res, 405, {
        error: "method_not_allowed",
        reason: `revoke a session with DELETE, not ${String(req.method).slice(0, 20)}`,
      }, { allow: "DELETE" });
    }
    if (refuseAdmin(req, res)) return;
    let id: string;
    try {
      id = decodeURIComponent(path.slice("/_/api/sessions/".length));
    } catch {
      return sendJson(res, 400, { error: "bad_request", reason: "the session id is not valid" });
    }
    if (!deps.sessions!.revoke(id)) {
      return sendJson(res, 404, {
        error: "not_found",
        reason: `no live minted session "${id.slice(0, 100)}"`,
      });
    }
    sendJson(res, 200, { session: id, revoked: true });
  }

  /**
   * Identical denials of the `hours` before `now` grouped (the latest
   * {@link DENIALS_GROUPED} of them), masked first so that what is shown
   * alike is grouped alike.
   */
  async function denialGroups(
    hours: number,
    session: string | null,
    now: number,
  ): Promise<DenialGroups> {
    const page = await reader.audit({
      limit: DENIALS_GROUPED,
      offset: 0,
      host: null,
      decisions: ["deny", "would_deny"],
      session,
      rule: null,
      search: null,
      since: now - hours * 3_600_000,
      until: now,
    });
    return {
      groups: groupDenials(maskRows(page.items), 20),
      denials: page.total,
      grouped: page.items.length,
    };
  }

  /** `GET /_/api/stats`: the read model's overview plus the grouped denials. */
  async function stats(hours: number, session: string | null, now: number) {
    const s = maskRows(await reader.stats({ hours, session }, now));
    return { ...s, denial_groups: await denialGroups(hours, session, now) };
  }

  /**
   * `GET /_/api/dlp/recent`: findings with the session, label and rule of the
   * request each was found in (looked up once per request).
   */
  async function findings(limit: number, since: number | null) {
    const found = await reader.findings(limit, since);
    const owners = new Map<
      string,
      { session: string | null; label: string | null; rule: string | null }
    >();
    for (const f of found) {
      if (owners.has(f.decision_id)) continue;
      const row = await reader.row(f.decision_id);
      owners.set(f.decision_id, {
        session: row?.session ?? null,
        label: row?.label ?? null,
        rule: row?.rule ?? null,
      });
    }
    return { findings: found.map((f) => ({ ...f, ...owners.get(f.decision_id)! })) };
  }

  async function page(res: http.ServerResponse) {
    const nonce = randomBytes(18).toString("base64");
    const overview = await cached(
      "/_/api/stats?hours=24",
      () => stats(24, null, Date.now()),
    );
    const config = deps.config();
    const html = renderPage({
      nonce,
      version: deps.version,
      stats: overview,
      denials: overview.denial_groups,
      auditPath: reader.source,
      policyFile: config.file,
    });
    const body = new TextEncoder().encode(html);
    res.writeHead(200, {
      ...COMMON_HEADERS,
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": [
        "default-src 'none'",
        `script-src 'nonce-${nonce}'`,
        `style-src 'nonce-${nonce}'`,
        "img-src data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join("; "),
      "cross-origin-opener-policy": "same-origin",
      "content-length": String(body.length),
    });
    res.end(body);
  }

  async function rules(hours: number | null) {
    const policy = deps.config().policy;
    const names = [...policy.rules.map((r) => r.name), null];
    const hits = await reader.ruleHits(
      names,
      hours === null ? null : Date.now() - hours * 3_600_000,
    );
    const h = (n: string | null): RuleHits => hits.get(n) ?? { hits: 0, tunnels: 0, last_ts: null };
    return {
      mode: policy.mode,
      default: {
        action: policy.defaultAction,
        source: policy.defaultSource,
        ...h(null),
      },
      rules: policy.rules.map((r) => ({ ...ruleJson(r), ...h(r.name) })),
    };
  }

  /**
   * `GET /_/api/export?format=csv|json&…`: every row of the audit listing's
   * filters (up to TOTAL_CAP), masked, streamed page by page. The range ends
   * now, so rows written while it streams do not shift its pages.
   */
  async function exportRows(res: http.ServerResponse, params: URLSearchParams, now: number) {
    const format = params.get("format") ?? "csv";
    if (format !== "csv" && format !== "json") {
      throw new ParamError(`"format" must be "csv" or "json", not "${format}"`);
    }
    const q = parseAuditQuery(params, now, EXPORT_PARAMS);
    q.until = Math.min(q.until ?? now, now);
    const columns = [
      ...AUDIT_COLUMNS.filter((c) => c !== "headers" && c !== "spend_keys"),
      "findings_count",
    ];
    const first = await reader.audit({ ...q, limit: 500, offset: 0 });
    res.writeHead(200, {
      ...COMMON_HEADERS,
      "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/json",
      "content-disposition": `attachment; filename="agentgate-audit.${format}"`,
    });
    const write = (chunk: string) =>
      res.write(chunk) ? Promise.resolve() : new Promise<void>((ok) => res.once("drain", ok));
    await write(format === "csv" ? columns.join(",") + "\r\n" : "[");
    let page = first;
    let n = 0;
    const limit = Math.min(first.total, TOTAL_CAP);
    while (page.items.length > 0 && n < limit && !res.destroyed) {
      const rows = maskRows(page.items) as unknown as Record<string, unknown>[];
      let chunk = "";
      for (const r of rows) {
        if (n >= limit) break;
        chunk += format === "csv"
          ? columns.map((c) => csvCell(r[c])).join(",") + "\r\n"
          : (n === 0 ? "\n" : ",\n") + JSON.stringify(r);
        n++;
      }
      await write(chunk);
      if (page.items.length < 500) break;
      page = await reader.audit({ ...q, limit: 500, offset: n });
    }
    res.end(format === "csv" ? "" : "\n]\n");
  }

  async function api(res: http.ServerResponse, path: string, params: URLSearchParams) {
    const now = Date.now();
    if (path === "/_/api/export") return await exportRows(res, params, now);
    params.sort();
    const key = `${path}?${params}`;
    if (path === "/_/api/audit") {
      const q = parseAuditQuery(params, now);
      return sendJson(res, 200, maskRows(await cached(key, () => reader.audit(q))));
    }
    if (path.startsWith("/_/api/audit/")) {
      let id: string;
      try {
        id = decodeURIComponent(path.slice("/_/api/audit/".length));
      } catch {
        throw new ParamError("the audit id is not valid percent-encoding");
      }
      if (id === "" || id.length > 200) {
        throw new ParamError("the audit id must be 1 to 200 characters");
      }
      parseParams(params, {});
      const row = await reader.row(id);
      return row === null
        ? sendJson(res, 404, { error: "not_found", reason: `no audit row with id "${id}"` })
        : sendJson(res, 200, maskRows(row));
    }
    if (path === "/_/api/health") {
      const [, body] = health();
      return sendJson(res, 200, { ...body, backends: deps.backends?.() ?? [] });
    }
    if (path === "/_/api/stats") {
      const q = parseStatsQuery(params);
      return sendJson(res, 200, await cached(key, () => stats(q.hours, q.session, now)));
    }
    if (path === "/_/api/sessions") {
      const { limit, hours } = parseParams(params, { limit: [100, 1000], hours: true });
      const since = hours === null ? null : now - hours * 3_600_000;
      return sendJson(
        res,
        200,
        await cached(key, async () => ({ sessions: await reader.sessions(limit, since) })),
      );
    }
    if (path === "/_/api/rules") {
      const { hours } = parseParams(params, { hours: true });
      return sendJson(res, 200, await cached(key, () => rules(hours)));
    }
    if (path === "/_/api/budgets") {
      // Live: reservations change with every call, so never cached.
      const { limit } = parseParams(params, { limit: [100, 1000] });
      return sendJson(res, 200, deps.budgets?.(limit) ?? { limits: [] });
    }
    if (path === "/_/api/config") {
      parseParams(params, {});
      return sendJson(res, 200, configJson(deps.config()));
    }
    if (path === "/_/api/dlp/recent") {
      const { limit, hours } = parseParams(params, { limit: [50, 1000], hours: true });
      return sendJson(
        res,
        200,
        maskRows(
          await cached(key, () => findings(limit, hours === null ? null : now - hours * 3_600_000)),
        ),
      );
    }
    return sendJson(res, 404, {
      error: "not_found",
      reason:
        `no such API endpoint "${path}"; see /_/api/audit, /_/api/audit/:id, /_/api/export, /_/api/stats, ` +
        "/_/api/sessions, /_/api/rules, /_/api/budgets, /_/api/config, /_/api/dlp/recent",
    });
  }

  async function dashboard(req: http.IncomingMessage, res: http.ServerResponse, path: string) {
    const url = new URL(req.url ?? "/", "http://agentgate.invalid");
    if (req.method !== "GET" && req.method !== "HEAD") {
      return sendJson(res, 405, {
        error: "method_not_allowed",
        reason: `the dashboard and its API are read-only: use GET, not ${req.method}`,
      }, { allow: "GET, HEAD" });
    }
    if (denyAccess(req, res, url)) return;
    try {
      if (path === "/_/dashboard" || path === "/_/dashboard/") return await page(res);
      return await api(res, path, url.searchParams);
    } catch (e) {
      if (e instanceof ParamError) {
        return sendJson(res, 400, { error: "bad_request", reason: e.message });
      }
      return sendJson(res, 500, {
        error: "audit_unreadable",
        reason: e instanceof AuditReadError
          ? e.message
          : `cannot read the audit database: ${(e as Error).message}`,
      });
    }
  }

  /**
   * The health answer: 503 when the audit fails; backends that are down are
   * listed (`degraded`) but do not fail it — what the proxy does meanwhile
   * is their `mode` (`state.on_state_error`).
   */
  const health = (): [number, Record<string, unknown>] => {
    const failing = deps.audit.lastError !== null;
    const last = deps.lastReload?.() ?? null;
    const backends = deps.backends?.() ?? [];
    const degraded = backends.filter((b) => !b.up).map((b) => b.name);
    const sinks: SinkStatus[] = deps.audit.status?.() ?? [];
    // Rows waiting in the spool are safe (200), but the audit database is away: say so.
    const spooling = sinks.some((b) => b.spooled > 0 || b.spool_full);
    return [failing ? 503 : 200, {
      status: failing
        ? "audit_failing"
        : spooling
        ? "audit_spooling"
        : degraded.length
        ? "degraded"
        : "ok",
      version: deps.version,
      uptime_s: Math.round((Date.now() - deps.startedAt) / 1000),
      audit_queue: deps.audit.queueDepth,
      ...(failing ? { audit_error: deps.audit.lastError } : {}),
      // A lone SQLite file has nothing to add to the lines above.
      ...(sinks.some((b) => b.kind !== "sqlite") ? { audit_backends: sinks } : {}),
      ...(last ? { last_reload: last } : {}),
      ...(backends.length ? { backends } : {}),
      ...(degraded.length ? { degraded } : {}),
    }];
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse, path: string) => {
    if (path === "/_/health") return sendJson(res, ...health());
    if (path === "/_/credentials") {
      // The caller's own phantoms, for the proxy credentials it holds (not the dashboard's token).
      const mine = deps.phantoms?.(req.headers["proxy-authorization"]) ?? null;
      if (mine === null) {
        return sendJson(res, 407, {
          error: "proxy_auth_required",
          reason: "phantom tokens belong to a session: send its proxy credentials " +
            "(Proxy-Authorization: Basic) — a minted session or a proxy.auth token",
        }, { "proxy-authenticate": 'Basic realm="agentgate"' });
      }
      return sendJson(res, 200, mine);
    }
    if (path === "/_/api/sessions" && req.method === "POST") {
      return void mintSession(req, res).catch(() => res.destroy());
    }
    if (path.startsWith("/_/api/sessions/")) return revokeSession(req, res, path);
    if (path === "/_/api/reload" && !deps.reload && deps.reloadRefusal) {
      return sendJson(res, 403, { error: "forbidden", reason: deps.reloadRefusal });
    }
    if (path === "/_/api/reload" && deps.reload) {
      if (req.method !== "POST") {
        return sendJson(res, 405, {
          error: "method_not_allowed",
          reason: "reload with POST",
        }, { allow: "POST" });
      }
      if (refuseCrossOrigin(req, res)) return;
      const url = new URL(req.url ?? "/", "http://agentgate.invalid");
      if (denyAccess(req, res, url)) return;
      deps.reload().then(
        (st) => sendJson(res, st.ok ? 200 : 422, st),
        (e) => sendJson(res, 500, { error: "reload_failed", reason: (e as Error).message }),
      );
      return;
    }
    if (path === "/_/metrics") {
      const text = deps.metrics.render();
      res.writeHead(200, {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      return res.end(text);
    }
    if (
      deps.dashboard &&
      (path === "/_/dashboard" || path === "/_/dashboard/" || path.startsWith("/_/api/"))
    ) {
      // Query errors are answered inside; if answering itself fails (the client
      // is gone), the exchange is ended rather than left waiting.
      return void dashboard(req, res, path).catch(() => res.destroy());
    }
    if (path.startsWith("/_/")) {
      return sendJson(res, 404, {
        error: "not_found",
        reason: deps.dashboard || !(path.startsWith("/_/dashboard") || path.startsWith("/_/api"))
          ? `no such agentgate endpoint "${path}"`
          : `the dashboard is off (--no-dashboard or proxy.dashboard: false): no "${path}"`,
      });
    }
    return sendJson(res, 400, {
      error: "not_a_proxy_request",
      reason:
        "agentgate is a forward proxy: send absolute-form requests (set HTTP_PROXY / HTTPS_PROXY to this address)",
    });
  };
  return Object.assign(handler, {
    // The proxy's writer checkpoints and removes the WAL when the last connection
    // closes: a SQLite reader closes within this call, before the writer's close.
    close: () => void reader.close().catch(() => {}),
  });
}
