import assert from "node:assert/strict";
import { parseConfig } from "../config/load.ts";
import { PolicyState } from "../state/mod.ts";
import { buildRequest, decideRequest, describeRequest, labelOf, RequestError } from "./request.ts";

const { config } = parseConfig(
  `version: 1
tls: { intercept: [api.openai.com] }
rules:
  - name: deny-admin
    match: "*.openai.com/admin/**"
    action: deny
  - name: chat
    match: api.openai.com/v1/**
    methods: [POST]
    when: body.model == "gpt-4o"
    action: allow
  - name: blocked-host
    match: blocked.example
    action: deny
  - name: example
    match: example.com
    action: allow
`,
  "p.yaml",
  "/",
);

Deno.test("request: an https URL is intercepted when tls.intercept names the host, else a tunnel", () => {
  const i = buildRequest(config, {
    method: "post",
    url: "https://API.openai.com/v1/../v1/chat?x=1",
    body: { model: "gpt-4o" },
    session: "nightly-0a1b2c3d",
  });
  assert.equal(i.kind, "intercepted");
  assert.equal(i.info.method, "POST");
  assert.equal(i.info.host, "api.openai.com");
  assert.equal(i.info.path, "/v1/chat");
  assert.equal(i.info.query, "x=1");
  assert.deepEqual(i.info.body, { model: "gpt-4o" });
  assert.equal(i.info.headers["content-type"], "application/json");
  assert.equal(i.info.headers.host, "API.openai.com");
  assert.equal(i.info.label, "nightly");
  assert.equal(i.tunnel?.method, "CONNECT");
  assert.equal(describeRequest(i), "POST https://api.openai.com/v1/chat?x=1 (intercepted)");

  const t = buildRequest(config, { method: "POST", url: "https://example.com:8443/x" });
  assert.equal(t.kind, "tunnel");
  assert.equal(t.info.path, null);
  assert.equal(t.info.method, "CONNECT");
  assert.deepEqual(t.info.headers, {});
  assert.equal(describeRequest(t), "CONNECT example.com:8443 (tunnel: host and port only)");

  const h = buildRequest(config, { url: "http://[::1]:8080/a" });
  assert.equal(h.kind, "http");
  assert.equal(describeRequest(h), "GET http://[::1]:8080/a");

  const c = buildRequest(config, { method: "CONNECT", url: "https://api.openai.com" });
  assert.equal(c.kind, "tunnel");
  assert.throws(() => buildRequest(config, { url: "api.openai.com/v1" }), RequestError);
});

Deno.test("request: a string body is sent as it is and parsed only when it is JSON", () => {
  const json = buildRequest(config, {
    method: "POST",
    url: "http://example.com/",
    body: '{"a":1}',
  });
  assert.deepEqual(json.info.body, { a: 1 });
  assert.equal(json.info.headers["content-length"], "7");
  const text = buildRequest(config, { method: "POST", url: "http://example.com/", body: "a=1" });
  assert.equal(text.info.body, undefined);
  assert.equal(text.info.bodyText, "a=1");
});

Deno.test("request: decided like the proxy: the tunnel first, then the request inside", () => {
  const at = { now: Date.UTC(2026, 0, 5), state: new PolicyState(), trace: true };
  const ok = decideRequest(
    config,
    buildRequest(config, {
      method: "POST",
      url: "https://api.openai.com/v1/chat",
      body: { model: "gpt-4o" },
    }),
    at,
  );
  assert.equal(ok.decision.verdict, "allow");
  assert.equal(ok.decision.rule, "chat");
  assert.equal(ok.step, "request");
  assert.equal(ok.trace?.at(-1)?.outcome, "decided");

  // No body: the condition fails to evaluate, so the rule denies (as in the proxy).
  const noBody = decideRequest(
    config,
    buildRequest(config, { method: "POST", url: "https://api.openai.com/v1/chat" }),
    at,
  );
  assert.equal(noBody.decision.verdict, "deny");
  assert.match(noBody.decision.reason, /^condition error in rule "chat"/);

  const tunnel = decideRequest(
    config,
    buildRequest(config, { url: "https://blocked.example/" }),
    at,
  );
  assert.equal(tunnel.step, "tunnel");
  assert.equal(tunnel.decision.rule, "blocked-host");

  const admin = decideRequest(
    config,
    buildRequest(config, { url: "https://api.openai.com/admin/x" }),
    at,
  );
  assert.equal(admin.decision.rule, "deny-admin");
  assert.equal(admin.step, "request");
});

Deno.test("request: labels derive from agentgate run sessions", () => {
  assert.equal(labelOf("ci-0123abcd"), "ci");
  assert.equal(labelOf("ci"), null);
  assert.equal(labelOf(null), null);
});
