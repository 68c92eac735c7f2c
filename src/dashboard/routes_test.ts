/**
 * The internal routes in-process: access control (loopback, Host, token,
 * cookie), headers (CSP with a fresh nonce, nosniff), the page's escaping,
 * and the config's redaction. Peer addresses cannot be spoofed over a real
 * loopback socket, so these drive the handler with request/response doubles;
 * tests/dashboard_test.ts covers the same routes over real HTTP.
 */
import assert from "node:assert/strict";
import type http from "node:http";
import { AuditStore } from "../audit/store.ts";
import { openAuditReader } from "../audit/sqlite_read.ts";
import type { AuditEventV1 } from "../audit/event.ts";
import { parseConfig } from "../config/load.ts";
import { agentgateHome } from "../util/home.ts";
import { join } from "node:path";
import { Metrics } from "../proxy/addons/metrics.ts";
import {
  configJson,
  COOKIE_NAME,
  createInternalRoutes,
  crossOriginReason,
  type InternalDeps,
  isLoopbackAddress,
  isLoopbackHost,
} from "./routes.ts";
import { escapeHtml } from "./page.ts";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
  json(): Record<string, unknown>;
}

function call(
  handler: ReturnType<typeof createInternalRoutes>,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; remote?: string } = {},
): Promise<Answer> {
  const headers = { host: "127.0.0.1:4100", ...opts.headers };
  const req = {
    method: opts.method ?? "GET",
    url,
    headers,
    socket: { remoteAddress: opts.remote ?? "127.0.0.1" },
  } as unknown as http.IncomingMessage;
  const out: Answer = {
    status: 0,
    headers: {},
    body: "",
    json: () => JSON.parse(out.body),
  };
  const { promise, resolve, reject } = Promise.withResolvers<Answer>();
  const res = {
    writeHead(status: number, h: Record<string, string> = {}) {
      out.status = status;
      for (const [k, v] of Object.entries(h)) out.headers[k.toLowerCase()] = String(v);
      return res;
    },
    end(body?: string | Uint8Array) {
      if (body !== undefined) {
        out.body = typeof body === "string" ? body : new TextDecoder().decode(body);
      }
      resolve(out);
    },
    destroy: () => reject(new Error(`${url}: the response was destroyed`)),
  } as unknown as http.ServerResponse;
  // Answers that read the audit come after an await; the rest within the call.
  handler(req, res, new URL(url, "http://x").pathname);
  return promise;
}

const POLICY = `version: 1
default: log
dashboard: { token: tok-en-123 }
rules:
  - name: "<b>bold</b>"
    match: evil.test
    action: deny
    reason: "<script>alert('reason')</script>"
`;

async function withRoutes(
  over: Partial<InternalDeps>,
  rows: AuditEventV1[],
  fn: (h: ReturnType<typeof createInternalRoutes>, deps: InternalDeps) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-routes-" });
  try {
    const store = AuditStore.open(`${dir}/audit.db`, { flushMs: 60_000 });
    for (const r of rows) store.add(r);
    store.close();
    const { config } = parseConfig(POLICY, "policy.yaml", dir);
    const deps: InternalDeps = {
      version: "9.9.9",
      startedAt: Date.now() - 5000,
      reader: openAuditReader(`${dir}/audit.db`),
      audit: { queueDepth: 3, lastError: null, writeErrors: 0 },
      config: () => config,
      metrics: new Metrics({
        auditQueueDepth: () => 3,
        auditWriteErrors: () => 0,
        tunnelsOpen: () => 0,
        leafCacheSize: () => 0,
      }),
      dashboard: true,
      token: null,
      ...over,
    };
    const routes = createInternalRoutes(deps);
    try {
      await fn(routes, deps);
    } finally {
      routes.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const EVIL: AuditEventV1 = {
  id: "evil-1",
  ts: Date.now() - 60_000,
  session: "<svg onload=alert(2)>",
  label: "<i>label</i>",
  client: "127.0.0.1",
  method: "GET",
  scheme: "http",
  host: "evil.test",
  port: 80,
  path: "/<img src=x onerror=alert(1)>",
  query: null,
  status: 403,
  decision: "deny",
  rule: "<b>bold</b>",
  rule_source: "policy.yaml:4",
  reason: "<script>alert('reason')</script>",
  policy: null,
  bytes_in: 0,
  bytes_out: 0,
  duration_ms: 0.2,
  error: null,
  headers: "{}",
};

Deno.test("loopback only without a token, and only under a loopback Host (DNS rebinding)", () =>
  withRoutes({}, [], async (h) => {
    assert.equal((await call(h, "/_/api/stats")).status, 200);
    for (const remote of ["127.0.0.9", "::1", "::ffff:127.0.0.1"]) {
      assert.equal((await call(h, "/_/api/stats", { remote })).status, 200, remote);
    }
    for (const host of ["localhost:4100", "[::1]:4100", "127.0.0.1", "LOCALHOST.", "a.localhost"]) {
      assert.equal((await call(h, "/_/api/stats", { headers: { host } })).status, 200, host);
    }
    const remote = await call(h, "/_/api/stats", { remote: "10.1.2.3" });
    assert.equal(remote.status, 403);
    assert.deepEqual(remote.json(), {
      error: "forbidden",
      reason: "the dashboard answers loopback clients only; set dashboard.token to allow others",
    });
    assert.equal((await call(h, "/_/dashboard", { remote: "::ffff:192.168.1.5" })).status, 403);
    const rebound = await call(h, "/_/dashboard", { headers: { host: "attacker.example:4100" } });
    assert.equal(rebound.status, 403);
    assert.match(String(rebound.json().reason), /loopback host name.*"attacker\.example:4100"/);
    // Health and metrics are not the dashboard: open to every client that reaches the port.
    assert.equal((await call(h, "/_/health", { remote: "10.1.2.3" })).status, 200);
    assert.equal((await call(h, "/_/metrics", { remote: "10.1.2.3" })).status, 200);
  }));

Deno.test("with a token: Bearer, or a one-time ?token= that becomes an HttpOnly cookie", () =>
  withRoutes({ token: "tok-en-123" }, [], async (h) => {
    const none = await call(h, "/_/api/stats");
    assert.equal(none.status, 401);
    assert.equal(none.headers["www-authenticate"], 'Bearer realm="agentgate"');
    assert.equal(none.json().error, "unauthorized");
    assert.equal((await call(h, "/_/dashboard")).status, 401);
    assert.equal(
      (await call(h, "/_/api/stats", { headers: { authorization: "Bearer nope" } })).status,
      401,
    );
    assert.equal(
      (await call(h, "/_/api/stats", { headers: { authorization: "Basic tok-en-123" } })).status,
      401,
    );
    // A remote client with the token is let in: that is what the token is for.
    for (const authorization of ["Bearer tok-en-123", "bearer  tok-en-123"]) {
      assert.equal(
        (await call(h, "/_/api/stats", { headers: { authorization }, remote: "10.1.2.3" })).status,
        200,
      );
    }
    // ?token= works on the page only, and answers with a cookie and a redirect.
    assert.equal((await call(h, "/_/api/stats?token=tok-en-123")).status, 401);
    assert.equal((await call(h, "/_/dashboard?token=wrong")).status, 401);
    const login = await call(h, "/_/dashboard?token=tok-en-123");
    assert.equal(login.status, 303);
    assert.equal(login.headers.location, "/_/dashboard");
    const cookie = login.headers["set-cookie"];
    assert.match(
      cookie,
      new RegExp(`^${COOKIE_NAME}=[A-Za-z0-9_-]{43}; Path=/_/; HttpOnly; SameSite=Strict$`),
    );
    assert.ok(!cookie.includes("tok-en-123"), "the cookie is not the token itself");
    assert.equal(
      (await call(h, "/_/dashboard?x=1&token=tok-en-123")).headers.location,
      "/_/dashboard?x=1",
    );
    const pair = cookie.split(";")[0];
    assert.equal(
      (await call(h, "/_/dashboard", { headers: { cookie: `a=b; ${pair}` } })).status,
      200,
    );
    assert.equal((await call(h, "/_/api/stats", { headers: { cookie: pair } })).status, 200);
    assert.equal(
      (await call(h, "/_/api/stats", { headers: { cookie: `${COOKIE_NAME}=tok-en-123` } })).status,
      401,
    );
    // No Host check with a token (the cookie is SameSite=Strict, the header cannot be forged).
    assert.equal(
      (await call(h, "/_/api/stats", {
        headers: { authorization: "Bearer tok-en-123", host: "gate.example.com:4100" },
      })).status,
      200,
    );
  }));

Deno.test("--no-dashboard: page and API are 404, health and metrics stay", () =>
  withRoutes({ dashboard: false }, [], async (h) => {
    for (const p of ["/_/dashboard", "/_/api/stats", "/_/api/audit", "/_/api/config"]) {
      const a = await call(h, p);
      assert.equal(a.status, 404, p);
      assert.equal(
        a.json().reason,
        `the dashboard is off (--no-dashboard or proxy.dashboard: false): no "${p}"`,
      );
    }
    assert.equal((await call(h, "/_/health")).status, 200);
    assert.equal((await call(h, "/_/metrics")).status, 200);
    assert.equal((await call(h, "/_/nope")).json().reason, 'no such agentgate endpoint "/_/nope"');
  }));

Deno.test("API answers: headers, 400 with a reason, 404, 405", () =>
  withRoutes({}, [EVIL], async (h) => {
    const ok = await call(h, "/_/api/audit");
    assert.equal(ok.status, 200);
    assert.equal(ok.headers["content-type"], "application/json");
    assert.equal(ok.headers["x-content-type-options"], "nosniff");
    assert.equal(ok.headers["cache-control"], "no-store");
    assert.equal(ok.headers["access-control-allow-origin"], undefined);
    assert.equal(Number(ok.headers["content-length"]), new TextEncoder().encode(ok.body).length);
    assert.deepEqual((await call(h, "/_/api/audit?limit=x")).json(), {
      error: "bad_request",
      reason: `"limit" must be a whole number from 1 to 1000, not "x"`,
    });
    assert.equal((await call(h, "/_/api/audit?limit=x")).status, 400);
    assert.deepEqual((await call(h, "/_/api/config?x=1")).json(), {
      error: "bad_request",
      reason: `unknown parameter "x": this endpoint takes none`,
    });
    assert.equal((await call(h, "/_/api/audit/evil-1")).json().id, "evil-1");
    assert.equal((await call(h, "/_/api/audit/evil%2D1")).json().id, "evil-1");
    assert.deepEqual((await call(h, "/_/api/audit/nope")).json(), {
      error: "not_found",
      reason: 'no audit row with id "nope"',
    });
    assert.equal((await call(h, "/_/api/audit/%E0%A4%A")).status, 400);
    assert.equal((await call(h, "/_/api/nope")).status, 404);
    const post = await call(h, "/_/api/audit", { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, "GET, HEAD");
    assert.equal((await call(h, "/_/api/stats", { method: "HEAD" })).status, 200);
    const health = (await call(h, "/_/health")).json();
    assert.deepEqual({ ...health, uptime_s: 0 }, {
      status: "ok",
      version: "9.9.9",
      uptime_s: 0,
      audit_queue: 3,
    });
  }));

Deno.test("the page: fresh nonce in a strict CSP, overview rendered as escaped text", () =>
  withRoutes({}, [EVIL], async (h) => {
    const a = await call(h, "/_/dashboard");
    const b = await call(h, "/_/dashboard/");
    assert.equal(a.status, 200);
    assert.equal(a.headers["content-type"], "text/html; charset=utf-8");
    const csp = a.headers["content-security-policy"];
    const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1];
    assert.ok(nonce, csp);
    assert.equal(
      csp,
      `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; img-src data:; ` +
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    assert.notEqual(b.headers["content-security-policy"], csp, "a new nonce per response");
    assert.equal(a.headers["x-frame-options"], "DENY");
    assert.equal(a.headers["x-content-type-options"], "nosniff");
    const html = a.body;
    // Every <script> and <style> carries the nonce; nothing is loaded from elsewhere.
    assert.deepEqual(html.match(/<script[^>]*>/g), [`<script nonce="${nonce}">`]);
    assert.deepEqual(html.match(/<style[^>]*>/g), [`<style nonce="${nonce}">`]);
    for (const tag of html.match(/<[a-z][^>]*>/gi)!) {
      assert.doesNotMatch(tag, /\s(src|style|on[a-z]+)=|rel="stylesheet"/i, tag);
    }
    // The overview is in the HTML (no JS needed), and the attacker's text is text.
    assert.match(html, /data-k="requests">1</);
    assert.match(html, /data-k="denied">1</);
    assert.ok(html.includes(escapeHtml("<script>alert('reason')</script>")));
    assert.ok(html.includes(escapeHtml("GET evil.test/<img src=x onerror=alert(1)>")));
    assert.ok(html.includes(escapeHtml("<b>bold</b>")));
    assert.ok(!html.includes("<script>alert"));
    assert.ok(!html.includes("<img src=x"));
    assert.ok(!html.includes("<b>bold"));
  }));

Deno.test("the page: sub-cent spend prints its digits, on the server and in the script", () =>
  withRoutes({}, [{
    ...EVIL,
    id: "cheap-1",
    decision: "allow",
    status: 200,
    provider: "openai",
    model: "gpt-4o-mini",
    cost_usd: 0.00001,
  }], async (h) => {
    const html = (await call(h, "/_/dashboard")).body;
    assert.match(html, /data-k="spend">\$0\.000010</);
    // The script formats polled amounts with the same function.
    const line = /const fmtUsd = ([\s\S]*?);\nconst /.exec(html)?.[1];
    assert.ok(line, "the script defines fmtUsd");
    const fmt = new Function(`return ${line}`)() as (n: number | null) => string;
    assert.deepEqual([0.004, 0.005, 0.00001, 0, null, 12.5].map(fmt), [
      "$0.004",
      "$0.005",
      "$0.000010",
      "$0.00",
      "$0.00",
      "$12.50",
    ]);
  }));

Deno.test("config: the loaded policy without secrets", () =>
  withRoutes({ token: "tok-en-123" }, [], async (h, deps) => {
    const a = await call(h, "/_/api/config", { headers: { authorization: "Bearer tok-en-123" } });
    assert.equal(a.status, 200);
    assert.ok(!a.body.includes("tok-en-123"), a.body);
    const c = a.json();
    assert.equal(c.dashboard_token, "[REDACTED]");
    assert.deepEqual(c.policy, {
      mode: "enforce",
      default: "log",
      default_source: "default",
      rules: [{
        index: 0,
        name: "<b>bold</b>",
        source: "policy.yaml:5",
        match: ["evil.test"],
        methods: null,
        when: null,
        action: "deny",
        reason: "<script>alert('reason')</script>",
        policies: [],
      }],
    });
    // Without audit.path the database is in the agentgate home (issue 16).
    assert.equal(
      (c.audit as Record<string, unknown>).path,
      join(agentgateHome(), "agentgate.db"),
    );
    assert.equal((c.audit as Record<string, unknown>).retention_ms, 30 * 86_400_000);
    // Whatever the config grows, keys that look secret are masked.
    const more = configJson({
      ...deps.config(),
      upstream: { api_key: "sk-1", proxyAuth: "u:p", timeoutMs: 5 },
    } as never);
    assert.deepEqual(more.upstream, {
      api_key: "[REDACTED]",
      proxy_auth: "[REDACTED]",
      timeout_ms: 5,
    });
  }));

Deno.test("state changes refuse every origin but the proxy's own (CSRF from local pages)", () => {
  let reloads = 0;
  const reload = () => {
    reloads++;
    return Promise.resolve({ ok: true, at: 0, trigger: "api", errors: [], warnings: [] });
  };
  return withRoutes({ reload }, [], async (h) => {
    const post = (headers: Record<string, string>) =>
      call(h, "/_/api/reload", { method: "POST", headers });
    const refused: [Record<string, string>, string][] = [
      [
        { origin: "http://localhost:3000" },
        'origin "http://localhost:3000" is not this proxy\'s own ("http://127.0.0.1:4100")',
      ],
      [
        { origin: "http://127.0.0.1:4101" },
        'origin "http://127.0.0.1:4101" is not this proxy\'s own ("http://127.0.0.1:4100")',
      ],
      [
        { origin: "https://127.0.0.1:4100" },
        'origin "https://127.0.0.1:4100" is not this proxy\'s own ("http://127.0.0.1:4100")',
      ],
      [{ origin: "null" }, 'origin "null" is not this proxy\'s own ("http://127.0.0.1:4100")'],
      [
        { origin: "http://127.0.0.1:4100", "sec-fetch-site": "same-site" },
        "a same-site browser request may not change agentgate's state",
      ],
      [
        { "sec-fetch-site": "cross-site" },
        "a cross-site browser request may not change agentgate's state",
      ],
    ];
    for (const [headers, reason] of refused) {
      const r = await post(headers);
      assert.deepEqual([r.status, r.json()], [403, { error: "forbidden", reason }], reason);
    }
    assert.equal(reloads, 0);
    for (
      const headers of [
        {} as Record<string, string>,
        { origin: "http://127.0.0.1:4100" },
        { origin: "http://127.0.0.1:4100", "sec-fetch-site": "same-origin" },
        { host: "localhost", origin: "http://localhost" },
        { host: "localhost:80", origin: "http://LOCALHOST" },
      ]
    ) {
      const r = await post(headers);
      assert.equal(r.status, 200, JSON.stringify(headers));
    }
    assert.equal(reloads, 5);
    assert.equal(crossOriginReason({ host: "[::1]:4100", origin: "http://[::1]:4100" }), null);
  });
});

Deno.test("loopback address and Host predicates", () => {
  for (const a of ["127.0.0.1", "127.255.0.3", "::1", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopbackAddress(a), a);
  }
  for (const a of [undefined, "", "10.0.0.1", "::ffff:10.0.0.1", "1127.0.0.1", "::2"]) {
    assert.ok(!isLoopbackAddress(a), String(a));
  }
  for (const h of ["localhost", "localhost:80", "127.0.0.1:4100", "[::1]:4100", "x.localhost"]) {
    assert.ok(isLoopbackHost(h), h);
  }
  for (const h of [undefined, "", "localhost.evil.com", "127.0.0.1.nip.io", "[::2]", "evil"]) {
    assert.ok(!isLoopbackHost(h), String(h));
  }
});
