/**
 * Secrets that are never stored (issue 20, finding 5): credential headers
 * beyond any list of names, camelCase and short query keys, and tokens in
 * paths (Telegram bots, Slack and Discord webhooks) go through a real
 * agentgate process — allowed, denied, and seen by a DLP policy — and then
 * the audit database file (with its WAL), the process's stderr, every
 * `/_/api` answer and the dashboard page are searched for each secret value:
 * none may be found, while what is not secret stays readable.
 */
import assert from "node:assert/strict";
import net from "node:net";
import type http from "node:http";
import { startOrigin, startProxy, waitFor, waitForRows } from "./helpers.ts";

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A random credential-like value: mixed case and digits (fresh per run, so a hit is a leak). */
function secret(n = 32, alphabet = ALNUM): string {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let s = "";
  for (const b of bytes) s += alphabet[b % alphabet.length];
  // Always all three kinds of characters (when the alphabet has them).
  return alphabet === ALNUM ? "aZ9" + s.slice(3) : s;
}

function b64url(s: string): string {
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** One raw request over a fresh socket (exact header names and request-target). */
function raw(port: number, head: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(head));
    let text = "";
    s.setEncoding("latin1");
    s.setTimeout(10_000, () => s.destroy(new Error("no answer")));
    s.on("data", (d: string) => (text += d));
    s.on("end", () => resolve({ status: Number(text.split(" ")[1]), text }));
    s.on("error", reject);
  });
}

Deno.test("secrets: header, query and path credentials reach no audit byte, log line or API answer", async () => {
  const origin = await startOrigin((_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  });
  const port = origin.port;
  const proxy = await startProxy({
    config: `version: 1
default: deny
audit: { path: ./audit.db }
rules:
  - name: no-send
    match: ["http://127.0.0.1:${port}/*/sendMessage", "http://127.0.0.1:${port}/services/**", "http://127.0.0.1:${port}/api/webhooks/**"]
    action: deny
    reason: no outgoing messages
  - name: scanned
    match: http://127.0.0.1:${port}/scan/**
    action: allow
    policies:
      - dlp: { action: warn, detectors: [aws_access_key] }
  - name: rest
    match: 127.0.0.1:${port}
    action: allow
`,
  });
  try {
    const jwt = `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(`{"sub":"${secret(12)}"}`)}.${
      secret(43, ALNUM + "-_")
    }`;
    const S = {
      authentication: secret(),
      forwardedAuth: secret(),
      accessTokenHeader: secret(),
      authTokenDash: secret(),
      authTokenUnderscore: secret(),
      authTokenCamel: secret(),
      jwtAssertion: secret(),
      passphrase: "correct horse " + secret(16),
      bearerElsewhere: secret(),
      jwtElsewhere: jwt,
      aws: "AKIA" + secret(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
      accessToken: secret(),
      refreshToken: secret(),
      clientSecret: secret(),
      jwtQuery: secret(),
      code: secret(20),
      pwd: "hunter2-" + secret(8),
      telegramDenied: secret(35, ALNUM + "_-"),
      telegramAllowed: secret(35, ALNUM + "_-"),
      telegramScanned: secret(35, ALNUM + "_-"),
      slack: secret(24),
      discord: secret(68, ALNUM + "_-"),
    };
    const host = `127.0.0.1:${port}`;
    const get = (target: string, headers = "") =>
      raw(
        proxy.port,
        `GET http://${host}${target} HTTP/1.1\r\nHost: ${host}\r\n${headers}Connection: close\r\n\r\n`,
      );

    // Headers: names no list holds, and secrets under harmless names.
    let r = await get(
      "/headers",
      `Authentication: ${S.authentication}\r\n` +
        `X-Forwarded-Authorization: Bearer ${S.forwardedAuth}\r\n` +
        `X-AccessToken: ${S.accessTokenHeader}\r\n` +
        `X-Auth-Token: ${S.authTokenDash}\r\n` +
        `X_Auth_Token: ${S.authTokenUnderscore}\r\n` +
        `XAuthToken: ${S.authTokenCamel}\r\n` +
        `X-Jwt-Assertion: ${S.jwtAssertion}\r\n` +
        `X-Passphrase: ${S.passphrase}\r\n` +
        `X-Upstream: Bearer ${S.bearerElsewhere}\r\n` +
        `X-Trace-Context: ${S.jwtElsewhere}\r\n` +
        `Content-Type: application/json\r\n` +
        `X-Request-Id: req-7f3a-9d2b\r\n`,
    );
    assert.equal(r.status, 200, r.text);
    // Query keys: camelCase and short.
    r = await get(
      `/q?accessToken=${S.accessToken}&refreshToken=${S.refreshToken}&clientSecret=${S.clientSecret}` +
        `&jwt=${S.jwtQuery}&code=${S.code}&pwd=${S.pwd}&page=2`,
    );
    assert.equal(r.status, 200, r.text);
    // Paths: denied (a log line) and allowed.
    r = await get(`/bot7123456789:${S.telegramDenied}/sendMessage`);
    assert.equal(r.status, 403, r.text);
    r = await get(`/bot7123456789:${S.telegramAllowed}/getMe`);
    assert.equal(r.status, 200, r.text);
    r = await get(`/services/T0A1B2C3D/B0A1B2C3D4E/${S.slack}`);
    assert.equal(r.status, 403, r.text);
    r = await get(`/api/webhooks/123456789012345678/${S.discord}`);
    assert.equal(r.status, 403, r.text);
    // A DLP finding logs its request's path.
    r = await get(`/scan/bot7123456789:${S.telegramScanned}/x`, `X-Cloud: ${S.aws}\r\n`);
    assert.equal(r.status, 200, r.text);

    const rows = await waitForRows(proxy.auditPath, 7);
    await waitFor(() => proxy.stderr.some((l) => l.includes("agentgate: dlp warn")), "dlp line");
    await waitFor(
      () => proxy.stderr.filter((l) => l.startsWith("agentgate: deny")).length === 3,
      "denial lines",
    );

    // Every /_/api answer, each row's detail, the dashboard page, health and metrics.
    const api = async (p: string) => {
      const res = await fetch(`${proxy.url}${p}`);
      const text = await res.text();
      assert.equal(res.status, 200, `${p}: ${text}`);
      return text;
    };
    const answers: Record<string, string> = {};
    for (
      const p of [
        "/_/api/audit?limit=1000",
        "/_/api/audit?limit=1000&search=bot",
        "/_/api/stats?hours=1",
        "/_/api/sessions",
        "/_/api/rules",
        "/_/api/config",
        "/_/api/dlp/recent",
        "/_/dashboard",
        "/_/health",
        "/_/metrics",
        ...rows.map((x) => `/_/api/audit/${x.id}`),
      ]
    ) answers[p] = await api(p);

    const db = new TextDecoder("latin1").decode(await Deno.readFile(proxy.auditPath));
    let wal = "";
    try {
      wal = new TextDecoder("latin1").decode(await Deno.readFile(`${proxy.auditPath}-wal`));
    } catch {
      // Checkpointed already.
    }
    const stderr = proxy.stderr.join("\n");
    for (const [name, value] of Object.entries(S)) {
      assert.ok(!db.includes(value), `${name} is in the audit database file`);
      assert.ok(!wal.includes(value), `${name} is in the audit's WAL`);
      assert.ok(!stderr.includes(value), `${name} is on stderr`);
      for (const [p, text] of Object.entries(answers)) {
        assert.ok(!text.includes(value), `${name} is in the answer of ${p}`);
      }
    }

    // What is not secret stays readable; the masks are where the secrets were.
    const detail = JSON.parse(answers[`/_/api/audit/${rows[0].id}`]);
    assert.equal(detail.headers["content-type"], "application/json");
    assert.equal(detail.headers["x-request-id"], "req-7f3a-9d2b");
    assert.equal(detail.headers["x-passphrase"], "[REDACTED]");
    assert.equal(detail.headers["x-upstream"], "Bearer [REDACTED]");
    assert.equal(detail.headers["x-trace-context"], "[REDACTED:jwt]");
    assert.equal(
      rows[1].query,
      "accessToken=[REDACTED]&refreshToken=[REDACTED]&clientSecret=[REDACTED]&jwt=[REDACTED]" +
        "&code=[REDACTED]&pwd=[REDACTED]&page=2",
    );
    assert.deepEqual(rows.slice(2, 6).map((x) => [x.path, x.decision, x.rule]), [
      ["/bot7123456789:[REDACTED]/sendMessage", "deny", "no-send"],
      ["/bot7123456789:[REDACTED]/getMe", "allow", "rest"],
      ["/services/T0A1B2C3D/B0A1B2C3D4E/[REDACTED]", "deny", "no-send"],
      ["/api/webhooks/123456789012345678/[REDACTED]", "deny", "no-send"],
    ]);
    assert.ok(
      proxy.stderr.some((l) =>
        l.startsWith(`agentgate: deny GET http://${host}/bot7123456789:[REDACTED]/sendMessage `)
      ),
      stderr,
    );
    assert.ok(
      proxy.stderr.some((l) =>
        l.startsWith(
          "agentgate: dlp warn aws_access_key in request header:x-cloud " +
            "http://127.0.0.1/scan/bot7123456789:[REDACTED]/x sample=AKIA…",
        )
      ),
      stderr,
    );
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});
