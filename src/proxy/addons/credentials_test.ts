import assert from "node:assert/strict";
import { CredentialBroker } from "./credentials.ts";
import { Metrics } from "./metrics.ts";
import type { OutgoingRequest } from "./types.ts";
import { Exchange } from "../exchange.ts";
import { parseConfig } from "../../config/load.ts";
import { requestInfo } from "../../policy/request.ts";
import type { RequestVerdict } from "../../policy/pipeline.ts";
import type { ResponseTransform } from "../forward.ts";
import { basicValue } from "../../credentials/mod.ts";
import { Secret } from "../../util/secret.ts";

const REAL = {
  openai: "sk-real-openai-0123456789",
  gh: "ghp_real0123456789abcdef",
  gemini: "AIzaReal0123456789",
};

function setup(mode = "enforce") {
  const { config } = parseConfig(
    `version: 1
mode: ${mode}
tls: { intercept: [api.openai.com, github.com, generativelanguage.googleapis.com] }
credentials:
  - { name: openai, preset: openai, env: A }
  - { name: gh, preset: github, hosts: [github.com], env: B }
  - { name: gemini, preset: gemini, env: C }
`,
    "a.yaml",
    "/tmp",
  );
  const metrics = new Metrics({
    auditQueueDepth: () => 0,
    auditWriteErrors: () => 0,
    tunnelsOpen: () => 0,
    leafCacheSize: () => 0,
  });
  const broker = new CredentialBroker({ metrics });
  broker.install(
    config,
    new Map([["openai", new Secret(REAL.openai)], ["gh", new Secret(REAL.gh)], [
      "gemini",
      new Secret(REAL.gemini),
    ]]),
  );
  const [openai, gh, gemini] = broker.issue("s1", config).map((c) => c.phantom);
  const rows: unknown[] = [];
  const exchange = (
    host: string,
    rawPath: string,
    raw: string[],
    session: string | null = "s1",
    method = "GET",
  ) =>
    new Exchange(
      requestInfo({
        id: "id",
        method,
        scheme: "https",
        host,
        port: 443,
        rawPath,
        headers: Object.fromEntries(
          raw.flatMap((v, i) => i % 2 === 0 ? [[v.toLowerCase(), raw[i + 1]]] : []),
        ),
        client: "127.0.0.1",
        session,
      }),
      { record: (e) => rows.push(e) },
      config,
    );
  return { broker, metrics, openai, gh, gemini, exchange };
}

/** An allowed request's outgoing view, recording what the broker changes. */
function outgoing(ex: Exchange, verdict: RequestVerdict["decision"]["verdict"] = "allow") {
  const edits = new Map<string, string | null>();
  let query: string | null = null;
  const transforms: ResponseTransform[] = [];
  const out: OutgoingRequest = {
    verdict: {
      decision: {
        verdict,
        rule: "r",
        ruleSource: null,
        reason: "",
        policy: null,
        status: 200,
        retryAfter: null,
      },
      findings: [],
      responseScan: null,
    },
    headers: Object.fromEntries(Object.entries(ex.info.headers)),
    body: undefined,
    setBody: () => {},
    setHeader: (n, v) => void edits.set(n, v),
    setQuery: (q) => void (query = q),
    observe: () => {},
    transform: (t) => void transforms.push(t),
    watchRest: () => {},
  };
  return { out, edits, query: () => query, transforms };
}

Deno.test("broker: swaps a phantom in its place for the secret, after an allow only", () => {
  const { broker, openai, gh, gemini, exchange } = setup();
  const ex = exchange("api.openai.com", "/v1/chat", ["Authorization", `Bearer ${openai}`]);
  assert.equal(broker.screen(ex, ["Authorization", `Bearer ${openai}`], null), null);
  const o = outgoing(ex);
  broker.request(ex, o.out);
  assert.deepEqual([...o.edits], [
    ["authorization", `Bearer ${REAL.openai}`],
    ["accept-encoding", "identity"],
  ]);
  assert.equal(o.transforms.length, 1, "an echo of the secret is masked");

  // git over HTTPS: the basic-auth password; Gemini: the query parameter.
  const auth = basicValue("x-access-token", gh);
  const gx = exchange("github.com", "/acme/private.git/info/refs", ["Authorization", auth]);
  assert.equal(broker.screen(gx, ["Authorization", auth], null), null);
  const go = outgoing(gx);
  broker.request(gx, go.out);
  assert.equal(go.edits.get("authorization"), basicValue("x-access-token", REAL.gh));
  const qx = exchange("generativelanguage.googleapis.com", `/v1/models?alt=sse&key=${gemini}`, []);
  assert.equal(broker.screen(qx, [], null), null);
  const qo = outgoing(qx);
  broker.request(qx, qo.out);
  assert.equal(qo.query(), `alt=sse&key=${REAL.gemini}`);

  // A would-be deny (audit mode) is forwarded without it.
  const wx = exchange("api.openai.com", "/v1/chat", ["Authorization", `Bearer ${openai}`]);
  broker.screen(wx, ["Authorization", `Bearer ${openai}`], null);
  const wo = outgoing(wx, "would_deny");
  broker.request(wx, wo.out);
  assert.equal(wo.edits.size, 0);
});

Deno.test("broker: the tripwire refuses (or, in audit mode, records) and counts; the row never holds a real secret", () => {
  for (const mode of ["enforce", "audit"]) {
    const { broker, metrics, openai, exchange } = setup(mode);
    const raw = ["X-Leak", openai];
    const v = broker.screen(exchange("evil.example", "/", raw), raw, null)!;
    assert.equal(v.decision.verdict, mode === "audit" ? "would_deny" : "deny");
    assert.equal(v.decision.reason, 'credential "openai" used outside its hosts');
    assert.deepEqual(v.decision.detail, { credential: "openai", where: "header:x-leak" });
    assert.deepEqual(v.findings.map((f) => [f.detector, f.location, f.action]), [
      ["phantom_token", "header:x-leak", "block"],
    ]);
    const leak = exchange("evil.example", `/k/${REAL.openai}?t=${REAL.gh}`, ["X-A", REAL.gemini]);
    const s = broker.screen(leak, ["X-A", REAL.gemini], null)!;
    assert.match(
      s.decision.reason,
      /^real secret of credential "(openai|gh|gemini)" in the request/,
    );
    assert.equal(s.findings[0].sample.startsWith("[REDACTED:credential:"), true);
    const kept = JSON.stringify(leak.info);
    for (const secret of Object.values(REAL)) assert.ok(!kept.includes(secret), kept);
    assert.match(
      metrics.render(),
      /agentgate_credential_tripwires_total\{credential="openai",kind="phantom"\} 1/,
    );
  }
});

Deno.test("broker: inactive without live phantoms or loaded secrets; a session's end forgets its phantoms", () => {
  const { broker, openai, exchange } = setup();
  const ex = exchange("evil.example", "/", []);
  assert.equal(broker.readsBody(ex), true);
  broker.forget("s1");
  const v = broker.screen(exchange("evil.example", "/", ["X", openai]), ["X", openai], null);
  assert.equal(v, null, "a forgotten phantom is just a string");
  const bare = new CredentialBroker({
    metrics: new Metrics({
      auditQueueDepth: () => 0,
      auditWriteErrors: () => 0,
      tunnelsOpen: () => 0,
      leafCacheSize: () => 0,
    }),
  });
  assert.equal(bare.readsBody(ex), false, "nothing to look for: bodies are not read for it");
});

Deno.test("broker: an echoed secret is masked across chunk boundaries, text responses only", () => {
  const { broker, openai, exchange } = setup();
  const ex = exchange("api.openai.com", "/v1/echo", ["Authorization", `Bearer ${openai}`]);
  broker.screen(ex, ["Authorization", `Bearer ${openai}`], null);
  const o = outgoing(ex);
  broker.request(ex, o.out);
  const t = o.transforms[0];
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  assert.equal(t.head(200, ["Content-Type", "image/png"]), false);
  assert.equal(
    t.head(200, ["Content-Type", "application/json", "Content-Encoding", "gzip"]),
    false,
  );
  assert.equal(t.head(200, ["Content-Type", "application/json"]), true);
  const text = `{"auth":"Bearer ${REAL.openai}","again":"${REAL.openai}"}`;
  let got = "";
  for (let i = 0; i < text.length; i += 7) {
    got += dec.decode(t.chunk(enc.encode(text.slice(i, i + 7))).out);
  }
  got += dec.decode(t.end());
  assert.equal(
    got,
    '{"auth":"Bearer [REDACTED:credential:openai]","again":"[REDACTED:credential:openai]"}',
  );
  assert.deepEqual(ex.findings.map((f) => [f.detector, f.direction, f.action]), [
    ["credential_secret", "response", "redact"],
  ]);
});

Deno.test("broker: an upstream error quoting a swapped secret (even cut short) is masked in the row", () => {
  const { broker, openai, exchange } = setup();
  const rows: Record<string, unknown>[] = [];
  const base = exchange("api.openai.com", "/v1/chat", ["Authorization", `Bearer ${openai}`]);
  const ex = new Exchange(base.info, { record: (e) => rows.push(e as never) }, base.config);
  broker.screen(ex, ["Authorization", `Bearer ${openai}`], null);
  broker.request(ex, outgoing(ex).out);
  const quoted = `invalid header line "X-Echo: Bearer ${REAL.openai.slice(0, 14)}"`;
  assert.equal(
    ex.scrub(quoted),
    'invalid header line "X-Echo: Bearer [REDACTED:credential:openai]"',
  );
  ex.usage = { error: `Incorrect API key provided: ${REAL.openai}.` };
  ex.finish({ status: 502, reason: `"api.openai.com:443" closed the connection: ${quoted}` });
  const row = JSON.stringify(rows[0]);
  assert.ok(!row.includes(REAL.openai.slice(0, 8)), row);
  assert.match(row, /Incorrect API key provided: \[REDACTED:credential:openai\]\./);
});
