/**
 * The proxy and the policy tools decide alike: 2,000 generated requests
 * (plain HTTP, CONNECT tunnels, intercepted HTTPS; bodies read by CEL
 * conditions; DLP block, redact and bodies that cannot be redacted; rate and
 * spending limits; time-based state) go through a real agentgate process over
 * real sockets, and the same sequence through `decideRequest` — what `agentgate
 * eval`, `test` and `replay` call — with its own limit state. Every decision,
 * rule, reason, policy and status must be equal. A generated test file of the
 * state-free cases must then pass `agentgate test`, and a sample must give the
 * same answer from `agentgate eval`.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { stringify } from "yaml";
import { loadConfig } from "../src/config/load.ts";
import { PolicyState } from "../src/state/mod.ts";
import { decideTunnel } from "../src/policy/pipeline.ts";
import { buildRequest, decideRequest, type RequestSpec } from "../src/policytest/request.ts";
import type { Decision } from "../src/policy/types.ts";
import { auditRows, MAIN, RUN_FLAGS, startOrigin, startProxy, testPki } from "./helpers.ts";

const N = 2000;
const SEED = 20261206;

/** mulberry32: a small seeded PRNG, so a failure can be reproduced. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  return { next, pick };
}

// An AWS key id and a GitHub token shape (not real credentials).
const AWS = "AKIA" + "QYLPMN5HHHFPZAM2";
const GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";

function policy(httpsPort: number, plainPort: number): string {
  return `version: 1
default: deny
dashboard: { token: adm1n }
tls:
  intercept: [api.llm.test, secure.test]
  ca_dir: ./ca
  upstream_ca: ./origin-ca.pem
llm:
  providers: { api.llm.test: openai }
upstream:
  resolve:
    api.llm.test: 127.0.0.1:${httpsPort}
    secure.test: 127.0.0.1:${httpsPort}
    tunnel.test: 127.0.0.1:${plainPort}
    plain.test: 127.0.0.1:${plainPort}
    other.test: 127.0.0.1:${plainPort}
limits: { max_body_bytes: 4096, max_scan_bytes: 2048 }
audit: { path: ./audit.db }
rules:
  - name: metadata
    match: [169.254.169.254, metadata.google.internal]
    action: deny
  - name: admin
    match: ["plain.test/admin/**", "secure.test/admin/**"]
    action: deny
    reason: no admin
  - name: private-tunnel
    match: tunnel.test/private/**
    action: deny
  - name: upload
    match: plain.test/upload/**
    methods: [POST, PUT]
    action: allow
    policies:
      - dlp: { action: block, detectors: [aws_access_key, github_token] }
  - name: notes
    match: secure.test/notes/**
    action: allow
    policies:
      - dlp: { action: redact, detectors: [aws_access_key, github_token] }
  - name: team
    match: secure.test/v1/jobs/**
    methods: [POST]
    when: request.headers["x-team"] == "ml" && body.priority < 5
    action: allow
  - name: chat
    match: api.llm.test/v1/chat/completions
    methods: [POST]
    when: body.model.startsWith("gpt-4o")
    action: allow
    policies:
      - rate_limit: { requests: 4, per: 1h, key: session }
      - spending_limit: { usd: 0.0012, per: 1h, key: session }
  - name: reads
    match: ["secure.test/v1/**", "plain.test/v1/**", "api.llm.test/v1/models"]
    methods: [GET, HEAD]
    action: allow
    policies:
      - rate_limit: { requests: 12, per: 1h, key: session }
  - name: tunnel
    match: tunnel.test
    action: allow
  - name: rest
    match: "*.test"
    methods: [GET]
    action: log
`;
}

interface Gen {
  spec: RequestSpec;
  kind: "http" | "tunnel" | "intercepted";
}

function generate(seed: number, n: number): Gen[] {
  const r = rng(seed);
  const sessions = [
    null,
    ...Array.from({ length: 12 }, (_, i) => `${["ci", "agent", "dev"][i % 3]}-0a1b2c${i}d`),
  ];
  const jsonBody = () =>
    r.pick([
      { model: r.pick(["gpt-4o-mini", "gpt-4o", "gpt-4o-2099-imaginary", "claude-x"]) },
      { model: "gpt-4o-mini", messages: [{ role: "user", content: r.pick(["hi", AWS]) }] },
      { priority: Math.floor(r.next() * 10) },
      { note: r.pick(["fine", `key ${AWS}`, `token ${GH}`]) },
      { note: `${AWS} ` + "x".repeat(2500) }, // beyond max_scan_bytes: cannot be redacted
      { note: "y".repeat(5000) }, // beyond max_body_bytes
    ]);
  const body = (): unknown =>
    r.pick([
      undefined,
      jsonBody(),
      jsonBody(),
      r.pick(["plain text", `text ${AWS}`, "not { json"]),
    ]);
  const out: Gen[] = [];
  for (let i = 0; i < n; i++) {
    const session = r.pick(sessions);
    const headers: Record<string, string> = {};
    if (r.next() < 0.3) headers["x-team"] = r.pick(["ml", "web"]);
    if (r.next() < 0.05) headers["x-note"] = `leak ${GH}`;
    const roll = r.next();
    let spec: RequestSpec;
    let kind: Gen["kind"];
    if (roll < 0.3) {
      kind = "http";
      const host = r.pick(["plain.test", "plain.test", "other.test", "169.254.169.254"]);
      const path = r.pick([
        "/v1/items",
        "/v1/items?q=1",
        "/admin/x",
        "/v1/../admin/y",
        "/upload/a",
        "/upload/b/c",
        "/upload/d",
        "/x",
      ]);
      const method = r.pick(["GET", "GET", "POST", "PUT", "DELETE", "HEAD"]);
      spec = { method, url: `http://${host}${path}`, headers, session };
      if (method === "POST" || method === "PUT") spec.body = body();
    } else if (roll < 0.45) {
      kind = "tunnel";
      spec = {
        method: "CONNECT",
        url: `https://${r.pick(["tunnel.test", "elsewhere.test"])}:443`,
        session,
      };
    } else {
      kind = "intercepted";
      const llm = r.next() < 0.5;
      const host = llm ? "api.llm.test" : "secure.test";
      const path = llm
        ? r.pick(["/v1/chat/completions", "/v1/chat/completions", "/v1/models", "/v2/x"])
        : r.pick(["/v1/jobs/1", "/v1/items", "/notes/a", "/notes/b", "/admin/x", "/x"]);
      const method = llm && path.endsWith("completions")
        ? r.pick(["POST", "POST", "GET"])
        : r.pick(["GET", "POST", "GET"]);
      spec = { method, url: `https://${host}${path}`, headers, session };
      if (method === "POST" && path.startsWith("/notes") && r.next() < 0.8) {
        spec.body = r.pick([
          { note: `key ${AWS}` },
          { note: `${AWS} ` + "x".repeat(2500) },
          { note: "fine" },
          `text ${GH}`,
        ]);
      } else if (method === "POST") {
        spec.body = llm && r.next() < 0.7
          ? {
            model: r.pick(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o-2099-imaginary"]),
            messages: [{ role: "user", content: "hi" }],
          }
          : body();
      }
    }
    const bytes = bodyBytes(spec.body);
    if (bytes !== null) {
      spec.headers = {
        ...spec.headers,
        "content-type": typeof spec.body === "string" ? "text/plain" : "application/json",
      };
    }
    out.push({ spec, kind });
  }
  return out;
}

/** The bytes of a spec's body (as `buildRequest` encodes them). */
function bodyBytes(body: unknown): Uint8Array | null {
  if (body === undefined || body === null) return null;
  if (typeof body === "string") return new TextEncoder().encode(body);
  return new TextEncoder().encode(JSON.stringify(body));
}

/** Secrets of the sessions minted for the run (id -> secret). */
const secrets = new Map<string, string>();

function proxyAuth(session: string | null | undefined): string {
  if (!session) return "";
  return `Proxy-Authorization: Basic ${btoa(`${session}:${secrets.get(session)}`)}\r\n`;
}

function requestText(spec: RequestSpec, target: string, host: string, extra = ""): Uint8Array {
  const bytes = bodyBytes(spec.body);
  let head = `${spec.method} ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${extra}`;
  for (const [k, v] of Object.entries(spec.headers ?? {})) head += `${k}: ${v}\r\n`;
  if (bytes !== null) head += `Content-Length: ${bytes.length}\r\n`;
  const h = new TextEncoder().encode(head + "\r\n");
  if (bytes === null) return h;
  const all = new Uint8Array(h.length + bytes.length);
  all.set(h);
  all.set(bytes, h.length);
  return all;
}

/** Read everything until the peer closes; resolves with the text. */
function readAll(s: net.Socket | tls.TLSSocket): Promise<string> {
  return new Promise((resolve) => {
    let got = "";
    s.on("data", (d: Uint8Array) => (got += new TextDecoder().decode(d)));
    s.on("close", () => resolve(got));
    s.on("error", () => {});
  });
}

/** Read a CONNECT answer's head; the socket stays open. */
function connectHead(s: net.Socket): Promise<{ status: number; rest: string }> {
  return new Promise((resolve, reject) => {
    let got = "";
    const onData = (d: Uint8Array) => {
      got += new TextDecoder().decode(d);
      const end = got.indexOf("\r\n\r\n");
      if (end === -1) return;
      s.off("data", onData);
      resolve({ status: Number(got.slice(9, 12)), rest: got.slice(end + 4) });
    };
    s.on("data", onData);
    s.once("close", () => reject(new Error(`closed before the CONNECT answer: ${got}`)));
    s.on("error", () => {});
  });
}

async function send(port: number, caPem: string, g: Gen): Promise<void> {
  const spec = g.spec;
  const s = net.connect(port, "127.0.0.1");
  await new Promise((r) => s.once("connect", r));
  if (g.kind === "http") {
    const u = new URL(spec.url);
    const done = readAll(s);
    s.write(requestText(spec, spec.url, u.host, proxyAuth(spec.session)));
    await done;
    return;
  }
  const u = new URL(spec.url);
  const hostPort = `${u.hostname}:443`;
  s.write(`CONNECT ${hostPort} HTTP/1.1\r\nHost: ${hostPort}\r\n${proxyAuth(spec.session)}\r\n`);
  const closed = new Promise((r) => s.once("close", r));
  const head = await connectHead(s);
  if (head.status !== 200 || g.kind === "tunnel") {
    s.destroy();
    await closed;
    return;
  }
  const t = tls.connect({ socket: s, servername: u.hostname, ca: [caPem] });
  await new Promise<void>((resolve, reject) => {
    t.once("secureConnect", () => resolve());
    t.once("error", reject);
  });
  const done = readAll(t);
  t.write(requestText(spec, u.pathname + u.search, u.hostname));
  await done;
  t.destroy();
  await closed;
}

/** What a row says was decided, in the engine's terms. */
function rowDecision(row: Record<string, unknown>) {
  return {
    verdict: row.decision,
    rule: row.rule,
    reason: row.reason,
    policy: row.policy,
    status: row.decision === "deny" ? row.status : null,
  };
}

function engineDecision(d: Decision) {
  return {
    verdict: d.verdict,
    rule: d.rule,
    reason: d.reason,
    policy: d.policy,
    status: d.verdict === "deny" ? d.status : null,
  };
}

Deno.test("pipeline property: 2,000 requests decided alike by the proxy and by eval/test", async () => {
  const pki = await testPki(["api.llm.test", "secure.test"]);
  const chat = (body: string) => {
    let model = "gpt-4o-mini";
    try {
      model = JSON.parse(body).model ?? model;
    } catch { /* not JSON */ }
    return JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      model,
      choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 },
    });
  };
  const handler = (
    req: import("node:http").IncomingMessage,
    res: import("node:http").ServerResponse,
  ) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = new TextDecoder().decode(Buffer.concat(chunks));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(req.url?.startsWith("/v1/chat/") ? chat(body) : JSON.stringify({ ok: true }));
    });
  };
  const https = await startOrigin(handler, { cert: pki.cert, key: pki.key });
  const plain = await startOrigin(handler);
  const config = policy(https.port, plain.port);
  const proxy = await startProxy({
    config,
    files: { "origin-ca.pem": pki.caPem },
  });
  const gens = generate(SEED, N);
  try {
    // Sessions are minted by the proxy (issue 20): each generated name becomes
    // a minted session with the same label, in the proxy and in the tools.
    const minted = new Map<string, string>();
    for (const g of gens) {
      const name = g.spec.session;
      if (!name) continue;
      if (!minted.has(name)) {
        const r = await fetch(`${proxy.url}/_/api/sessions`, {
          method: "POST",
          headers: { authorization: "Bearer adm1n" },
          body: JSON.stringify({ label: name.split("-")[0] }),
        });
        const grant = await r.json();
        assert.equal(r.status, 201, JSON.stringify(grant));
        minted.set(name, grant.session);
        secrets.set(grant.session, grant.secret);
      }
      g.spec.session = minted.get(name);
    }
    const caPem = await Deno.readTextFile(`${proxy.dir}/ca/ca.pem`);
    for (const g of gens) await send(proxy.port, caPem, g);
    assert.equal(await proxy.stop(), 0);
    const rows = auditRows(proxy.auditPath).sort((a, b) => String(a.id) < String(b.id) ? -1 : 1);

    const loaded = await loadConfig(`${proxy.dir}/agentgate.yaml`, proxy.dir);
    const cfg = loaded.config;
    const state = new PolicyState({ startedAt: Number(rows[0].ts) - 1 });
    let at = 0;
    const counts = {
      http: 0,
      tunnel: 0,
      intercepted: 0,
      body: 0,
      celBody: 0,
      dlpBlock: 0,
      redactRule: 0,
      cannotRedact: 0,
      rate: 0,
      spend: 0,
    };
    const stateFree: { spec: RequestSpec; expect: Record<string, unknown> }[] = [];
    for (const [i, g] of gens.entries()) {
      const where = `request ${i}: ${g.spec.method} ${g.spec.url} ${JSON.stringify(g.spec.body)}`;
      const built = buildRequest(cfg, g.spec);
      let row = rows[at++];
      assert.ok(row, `${where}: no row`);
      if (g.kind === "intercepted") {
        // The intercepted tunnel's own row, then the request inside it.
        const t = decideTunnel(cfg, built.tunnel!, {
          now: Number(row.ts),
          state: new PolicyState(),
          intercept: true,
        });
        assert.deepEqual(rowDecision(row), engineDecision(t), `${where}: tunnel`);
        if (t.verdict === "deny") continue;
        row = rows[at++];
        assert.ok(row, `${where}: no request row`);
      }
      const decided = decideRequest(cfg, built, { now: Number(row.ts), state });
      assert.deepEqual(rowDecision(row), engineDecision(decided.decision), where);
      counts[g.kind]++;
      if (built.bytes) counts.body++;
      const reason = decided.decision.reason;
      if (reason.startsWith("request blocked by DLP")) counts.dlpBlock++;
      if (reason.startsWith("request body cannot be redacted")) counts.cannotRedact++;
      if (row.rule === "notes" && decided.decision.verdict === "allow") counts.redactRule++;
      if (row.rule === "team" || row.rule === "chat") counts.celBody++;
      if (decided.decision.policy === "rate_limit") counts.rate++;
      if (decided.decision.policy === "spending_limit") counts.spend++;
      // What the proxy charged for the response, the tools charge too (as replay does).
      const cost = row.cost_usd as number | null;
      if (cost !== null && decided.decision.verdict !== "deny") {
        state.reportUsage(built.info.id, {
          ts: Number(row.ts) + Math.round(Number(row.duration_ms)),
          usd: cost,
          tokens: Number(row.input_tokens ?? 0) + Number(row.output_tokens ?? 0),
          session: built.info.session,
          host: built.info.host,
          client: built.info.client,
          rule: decided.decision.rule,
        });
      }
      // A case that decides the same without any history is a test case.
      const alone = decideRequest(cfg, buildRequest(cfg, g.spec), {
        now: Number(row.ts),
        state: new PolicyState(),
      }).decision;
      if (JSON.stringify(engineDecision(alone)) === JSON.stringify(rowDecision(row))) {
        stateFree.push({
          spec: g.spec,
          expect: {
            action: row.decision,
            rule: row.rule,
            reason: row.reason,
            policy: row.policy,
            ...(row.decision === "deny" ? { status: row.status } : {}),
          },
        });
      }
    }
    assert.equal(at, rows.length, "every row is accounted for");
    // The generator covers every kind of decision it is meant to.
    for (const [k, v] of Object.entries(counts)) assert.ok(v >= 5, `${k}: ${v}`);

    // `agentgate test` on the state-free cases, as a real CLI run.
    // `test` and `eval` name rule sources relative to where they run (here:
    // the proxy's directory); the proxy names them as it was given the file.
    const relative = (e: Record<string, unknown>) => ({
      ...e,
      reason: String(e.reason).replaceAll(`${proxy.dir}/`, ""),
    });
    const tests = stateFree.slice(0, 400).map((c, i) => ({
      name: `case ${i}`,
      request: {
        method: c.spec.method,
        url: c.spec.url,
        ...(c.spec.session ? { session: c.spec.session } : {}),
        ...(c.spec.headers && Object.keys(c.spec.headers).length
          ? { headers: c.spec.headers }
          : {}),
        ...(c.spec.body !== undefined ? { body: c.spec.body } : {}),
      },
      expect: relative(c.expect),
    }));
    assert.ok(tests.length > 200, `${tests.length} state-free cases`);
    await Deno.writeTextFile(
      `${proxy.dir}/generated_test.yaml`,
      stringify({ config: "agentgate.yaml", tests }),
    );
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...RUN_FLAGS, MAIN, "test", "--format", "json", "generated_test.yaml"],
      cwd: proxy.dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const out = new TextDecoder().decode(run.stdout);
    const failures = () =>
      JSON.stringify(
        (JSON.parse(out).results as { mismatches: unknown[] }[])
          .filter((r) => r.mismatches.length).slice(0, 5),
        null,
        1,
      );
    assert.equal(
      run.code,
      0,
      out.startsWith("{") ? failures() : out + new TextDecoder().decode(run.stderr),
    );
    assert.equal(JSON.parse(out).passed, tests.length);

    // `agentgate eval` on a sample, one process each.
    for (const c of stateFree.filter((_, i) => i % 40 === 0).slice(0, 6)) {
      const body = c.spec.body === undefined
        ? []
        : ["--body", typeof c.spec.body === "string" ? c.spec.body : JSON.stringify(c.spec.body)];
      const e = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          ...RUN_FLAGS,
          MAIN,
          "eval",
          "--config",
          "agentgate.yaml",
          "--format",
          "json",
          "--url",
          c.spec.url,
          ...(c.spec.method ? ["--method", c.spec.method] : []),
          ...(c.spec.session ? ["--session", c.spec.session] : []),
          ...Object.entries(c.spec.headers ?? {}).flatMap(([k, v]) => ["--header", `${k}: ${v}`]),
          ...body,
        ],
        cwd: proxy.dir,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      const text = new TextDecoder().decode(e.stdout);
      assert.equal(e.code, 0, text + new TextDecoder().decode(e.stderr));
      const d = JSON.parse(text).decision;
      assert.deepEqual(
        [d.action, d.rule, d.reason, d.policy],
        [c.expect.action, c.expect.rule, relative(c.expect).reason, c.expect.policy],
        `eval ${c.spec.method} ${c.spec.url}`,
      );
    }
  } finally {
    await proxy.dispose();
    await https.close();
    await plain.close();
  }
});
