import assert from "node:assert/strict";
import {
  isSecretName,
  looksLikeToken,
  MASK,
  maskHeaders,
  maskPath,
  maskQuery,
  maskText,
  nameWords,
} from "./secrets.ts";

// Shapes of credentials (not real ones).
const GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";
const JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" +
  ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const TG = "7123456789:" + "AAHk3xM9f1Yq8ZrT2vW5bN7cL0pQ4sD6eF8";
const TG_SECRET = TG.split(":")[1];

Deno.test("isSecretName: camelCase, separators and case normalised", () => {
  const secret = [
    "Authorization",
    "Authentication",
    "X-Forwarded-Authorization",
    "Proxy-Authorization",
    "X-AccessToken",
    "X-Auth-Token",
    "x_auth_token",
    "XAuthToken",
    "X-AUTH-TOKEN",
    "X-Jwt-Assertion",
    "X-Passphrase",
    "Cookie",
    "Set-Cookie",
    "X-Api-Key",
    "api_key",
    "apikey",
    "x-goog-api-key",
    "Ocp-Apim-Subscription-Key",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Hub-Signature-256",
    "X-CSRF-Token",
    "PRIVATE-TOKEN",
    "X-Session-Id",
    "PHPSESSID",
    "accessToken",
    "refreshToken",
    "id_token",
    "clientSecret",
    "client_secret",
    "client_assertion",
    "jwt",
    "code",
    "pwd",
    "pw",
    "password",
    "passwd",
    "sig",
    "otp",
    "otp_code",
    "deviceCode",
    "user_code",
    "hmac",
    "oauth_token",
    "key",
  ];
  for (const n of secret) assert.equal(isSecretName(n), true, n);
  const plain = [
    "Content-Type",
    "x-request-id",
    "Accept",
    "User-Agent",
    "Host",
    "Referer",
    "traceparent",
    "X-Forwarded-For",
    "Cache-Control",
    "author",
    "authority",
    "keyword",
    "Idempotency-Key",
    "error_code",
    "status_code",
    "country_code",
    "q",
    "alt",
    "model",
    "page",
    "state",
  ];
  for (const n of plain) assert.equal(isSecretName(n), false, n);
  assert.deepEqual(nameWords("X-AccessToken"), ["x", "access", "token"]);
  assert.deepEqual(nameWords("XAuthToken"), ["x", "auth", "token"]);
  assert.deepEqual(nameWords("clientSecret"), ["client", "secret"]);
});

Deno.test("maskText: credentials by their shape, prose left readable", () => {
  const table: [string, string][] = [
    [`Bearer ${JWT}`, "Bearer [REDACTED:jwt]"],
    ["Basic dXNlcjpodW50ZXIy", `Basic ${MASK}`],
    ["Token a1B2c3D4e5F6g7H8", `Token ${MASK}`],
    [`note ${GH} end`, "note [REDACTED:github_token] end"],
    [`x ${JWT}`, "x [REDACTED:jwt]"],
    [
      "fetch https://bob:hunter2@example.com/x failed",
      `fetch https://${MASK}@example.com/x failed`,
    ],
    ["a=1&password=hunter2&b=2", `a=1&password=${MASK}&b=2`],
    ['{"clientSecret": "s3cr3t!", "name": "x"}', `{"clientSecret": "${MASK}", "name": "x"}`],
    [
      `GET https://api.telegram.org/bot${TG}/getMe`,
      `GET https://api.telegram.org/bot7123456789:${MASK}/getMe`,
    ],
    ["application/json", "application/json"],
    ["missing Bearer token", "missing Bearer token"],
    ['send "Authorization: Bearer <token>"', 'send "Authorization: Bearer <token>"'],
    ["0193a6b2-4c1e-7f3a-9d2b-5e8c1a7f0b3d", "0193a6b2-4c1e-7f3a-9d2b-5e8c1a7f0b3d"],
    ["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)"],
  ];
  for (const [text, want] of table) assert.equal(maskText(text), want, text);
});

Deno.test("maskHeaders: by name, and by value shape under any name", () => {
  const h = maskHeaders({
    authentication: "hunter2",
    "x-forwarded-authorization": "Bearer abc",
    "x-accesstoken": "t",
    "x-jwt-assertion": "j",
    "x-passphrase": "correct horse battery staple",
    "x-upstream": "Bearer lowercaseonly",
    "x-note": `here ${GH}`,
    "content-type": "application/json",
    "x-request-id": "req-0193a6b2-4c1e",
  });
  assert.deepEqual(h, {
    authentication: MASK,
    "x-forwarded-authorization": MASK,
    "x-accesstoken": MASK,
    "x-jwt-assertion": MASK,
    "x-passphrase": MASK,
    "x-upstream": `Bearer ${MASK}`,
    "x-note": "here [REDACTED:github_token]",
    "content-type": "application/json",
    "x-request-id": "req-0193a6b2-4c1e",
  });
});

Deno.test("maskQuery: names, camelCase, short keys, shapes; separators kept", () => {
  const table: [string, string][] = [
    [
      "accessToken=a&refreshToken=b&clientSecret=c",
      `accessToken=${MASK}&refreshToken=${MASK}&clientSecret=${MASK}`,
    ],
    ["jwt=x&code=y&pwd=z&alt=sse", `jwt=${MASK}&code=${MASK}&pwd=${MASK}&alt=sse`],
    ["key=AIzaSy123&alt=json", `key=${MASK}&alt=json`],
    ["access%5Ftoken=x", `access%5Ftoken=${MASK}`],
    [`q=${GH}`, `q=${MASK}`],
    [`q=${encodeURIComponent(`Bearer ${JWT}`)}`, `q=${MASK}`],
    [`${GH}`, MASK],
    ["a=1;sig=abc", `a=1;sig=${MASK}`],
    ["page=2&limit=50", "page=2&limit=50"],
    ["", ""],
  ];
  for (const [q, want] of table) assert.equal(maskQuery(q), want, q);
});

Deno.test("maskPath: capability URLs of known services, token segments, path parameters", () => {
  const table: [string, string, string][] = [
    ["api.telegram.org", `/bot${TG}/sendMessage`, `/bot7123456789:${MASK}/sendMessage`],
    ["api.telegram.org", `/file/bot${TG}/photos/a.jpg`, `/file/bot7123456789:${MASK}/photos/a.jpg`],
    [
      "hooks.slack.com",
      "/services/T0A1B2C3D/B0A1B2C3D4E/Xk9pQ2rT7vW1yZ3bN5mL8cJ4",
      `/services/T0A1B2C3D/B0A1B2C3D4E/${MASK}`,
    ],
    [
      "hooks.slack.com",
      "/workflows/T0A1B2C3D/A0A1B2C3D4E/123456789/Xk9pQ2rT7vW1yZ3bN5mL8cJ4",
      `/workflows/T0A1B2C3D/A0A1B2C3D4E/123456789/${MASK}`,
    ],
    [
      "discord.com",
      "/api/webhooks/1234567890123456789/Ab-Cd_Ef1234567890ghIJklMNopQRstUVwxYZ0123456789abcdefGHIJ",
      `/api/webhooks/1234567890123456789/${MASK}`,
    ],
    [
      "acme.webhook.office.com",
      "/webhookb2/0f8fad5b-d9cb-469f-a165-70867728950e@11111111-2222-3333-4444-555555555555/IncomingWebhook/a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6/0f8fad5b-d9cb-469f-a165-70867728950e",
      `/webhookb2/0f8fad5b-d9cb-469f-a165-70867728950e@11111111-2222-3333-4444-555555555555/IncomingWebhook/${MASK}/0f8fad5b-d9cb-469f-a165-70867728950e`,
    ],
    ["hooks.zapier.com", "/hooks/catch/123456/ab12cd3/", `/hooks/catch/123456/${MASK}/`],
    ["hooks.zapier.com", "/hooks/catch/123456/abC1x2yZ9/", `/hooks/catch/123456/${MASK}/`],
    [
      "maker.ifttt.com",
      "/trigger/door/with/key/dK3j9xQ2mP7vW1yZ3bN5",
      `/trigger/door/with/key/${MASK}`,
    ],
    ["x.test", "/reset-password/Zx81kQ2mP7vW1yZ3", `/reset-password/${MASK}`],
    ["x.test", "/app;jsessionid=1A2B3C4D5E/page", `/app;jsessionid=${MASK}/page`],
    ["x.test", `/repos/o/r/${GH}/x`, `/repos/o/r/${MASK}/x`],
    ["x.test", "/v1/chat/completions", "/v1/chat/completions"],
    ["x.test", "/auth/callback", "/auth/callback"],
    ["x.test", "/api/v1/tokens/list", "/api/v1/tokens/list"],
    [
      "x.test",
      "/repos/o/r/commits/4b825dc642cb6eb9a060e54bf8d69288fbee4904",
      "/repos/o/r/commits/4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    ],
    ["x.test", "/@types/node", "/@types/node"],
  ];
  for (const [host, p, want] of table) assert.equal(maskPath(p, host), want, p);
  assert.equal(maskPath(`/bot${TG}/getMe`).includes(TG_SECRET), false, "without a host too");
});

Deno.test("masks are idempotent (stored rows are masked again when served)", () => {
  const p = maskPath(`/bot${TG}/x/services/T0A1B2C3D/B0A1B2C3D4E/Xk9pQ2rT7vW1yZ3bN5mL8cJ4`);
  assert.equal(maskPath(p), p);
  const q = maskQuery(`token=a&q=${GH}`);
  assert.equal(maskQuery(q), q);
  const t = maskText(`Bearer ${JWT} and ${GH}`);
  assert.equal(maskText(t), t);
  assert.equal(looksLikeToken("[REDACTED]"), false);
});
