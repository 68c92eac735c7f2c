/**
 * The decision stream against real receivers: OTLP/HTTP JSON to an HTTP
 * server started here (the exact body), and JSON lines to a file.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AuditEventV1 } from "./event.ts";
import { OtlpSink } from "./otlp.ts";
import { JsonlSink } from "./jsonl.ts";

const EVENT: AuditEventV1 = {
  id: "dec-1",
  ts: 1_750_000_000_123,
  session: "s-1",
  label: "ci",
  client: "127.0.0.1",
  method: "POST",
  scheme: "https",
  host: "api.openai.com",
  port: 443,
  path: "/v1/chat/completions",
  query: null,
  status: 403,
  decision: "deny",
  rule: "openai",
  rule_source: "agentgate.yaml:12",
  reason: "spending limit reached",
  policy: "spending_limit",
  bytes_in: 120,
  bytes_out: 80,
  duration_ms: 1.5,
  error: null,
  headers: '{"authorization":"[REDACTED]"}',
  model: "gpt-4o",
  cost_usd: 0.25,
  spend_keys: ["rule:openai:team:a"],
  findings: [{
    detector: "aws_access_key",
    direction: "request",
    location: "body",
    sample: "AKIA…WXYZ",
    action: "warn",
  }],
};

async function receiver(answers: number[]) {
  const bodies: { url: string; type: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let b = "";
    req.on("data", (c) => b += c);
    req.on("end", () => {
      bodies.push({ url: req.url!, type: String(req.headers["content-type"]), body: b });
      const code = answers.shift() ?? 200;
      res.writeHead(code, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/v1/logs`,
    bodies,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

Deno.test("otlp: a row is one log record with the exact OTLP/HTTP JSON encoding", async () => {
  const rx = await receiver([]);
  try {
    const sink = new OtlpSink(rx.url, { version: "9.9.9", instance: "replica-a", log: () => {} });
    sink.add(EVENT);
    await sink.close();
    assert.equal(rx.bodies.length, 1);
    assert.equal(rx.bodies[0].url, "/v1/logs");
    assert.equal(rx.bodies[0].type, "application/json");
    const str = (v: string) => ({ stringValue: v });
    const attr = (key: string, value: unknown) => ({ key, value });
    assert.deepEqual(JSON.parse(rx.bodies[0].body), {
      resourceLogs: [{
        resource: {
          attributes: [
            attr("service.name", str("agentgate")),
            attr("service.version", str("9.9.9")),
            attr("service.instance.id", str("replica-a")),
          ],
          droppedAttributesCount: 0,
        },
        scopeLogs: [{
          scope: { name: "agentgate.audit", version: "9.9.9" },
          logRecords: [{
            timeUnixNano: "1750000000123000000",
            observedTimeUnixNano: "1750000000123000000",
            severityNumber: 13,
            severityText: "WARN",
            body: str(
              "deny POST https://api.openai.com:443/v1/chat/completions: spending limit reached",
            ),
            attributes: [
              attr("agentgate.id", str("dec-1")),
              attr("agentgate.ts", { intValue: 1750000000123 }),
              attr("agentgate.session", str("s-1")),
              attr("agentgate.label", str("ci")),
              attr("agentgate.client", str("127.0.0.1")),
              attr("agentgate.method", str("POST")),
              attr("agentgate.scheme", str("https")),
              attr("agentgate.host", str("api.openai.com")),
              attr("agentgate.port", { intValue: 443 }),
              attr("agentgate.path", str("/v1/chat/completions")),
              attr("agentgate.status", { intValue: 403 }),
              attr("agentgate.decision", str("deny")),
              attr("agentgate.rule", str("openai")),
              attr("agentgate.rule_source", str("agentgate.yaml:12")),
              attr("agentgate.reason", str("spending limit reached")),
              attr("agentgate.policy", str("spending_limit")),
              attr("agentgate.bytes_in", { intValue: 120 }),
              attr("agentgate.bytes_out", { intValue: 80 }),
              attr("agentgate.duration_ms", { doubleValue: 1.5 }),
              attr("agentgate.model", str("gpt-4o")),
              attr("agentgate.cost_usd", { doubleValue: 0.25 }),
              attr("agentgate.spend_keys", { arrayValue: { values: [str("rule:openai:team:a")] } }),
              attr("agentgate.findings", { arrayValue: { values: [str("aws_access_key")] } }),
            ],
            droppedAttributesCount: 0,
          }],
        }],
      }],
    });
    assert.equal(sink.status().written, 1);
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: records a collector refuses are kept and sent again, none lost", async () => {
  // Two refusals, then it takes them (the exporter does not retry a 400 itself).
  const rx = await receiver([400, 400]);
  try {
    const sink = new OtlpSink(rx.url, { version: "1", flushMs: 20, log: () => {} });
    for (let i = 0; i < 5; i++) sink.add({ ...EVENT, id: `d${i}` });
    const deadline = Date.now() + 10_000;
    while (sink.status().written < 5 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const st = sink.status();
    assert.deepEqual([st.written, st.dropped, st.errors, st.up], [5, 0, 2, true]);
    await sink.close();
    const ids = rx.bodies.slice(2).flatMap((b) =>
      JSON.parse(b.body).resourceLogs[0].scopeLogs[0].logRecords.map((
        r: { attributes: { key: string; value: { stringValue: string } }[] },
      ) => r.attributes[0].value.stringValue)
    );
    assert.deepEqual(ids, ["d0", "d1", "d2", "d3", "d4"]);
  } finally {
    await rx.close();
  }
});

Deno.test("jsonl: every column, headers as an object, findings, one line a row", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sink = await JsonlSink.open(`${dir}/d.jsonl`);
    sink.add(EVENT);
    sink.add({ ...EVENT, id: "dec-2", findings: undefined, spend_keys: undefined });
    await sink.close();
    const lines = (await Deno.readTextFile(`${dir}/d.jsonl`)).split("\n");
    assert.equal(lines.length, 3);
    assert.equal(lines[2], "");
    const first = JSON.parse(lines[0]);
    assert.deepEqual(Object.keys(first).slice(0, 4), ["id", "ts", "session", "label"]);
    assert.deepEqual(first.headers, { authorization: "[REDACTED]" });
    assert.deepEqual(first.spend_keys, ["rule:openai:team:a"]);
    assert.equal(first.rule_source, "agentgate.yaml:12");
    assert.equal(first.inspection, null);
    assert.equal(first.findings[0].detector, "aws_access_key");
    assert.deepEqual(JSON.parse(lines[1]).findings, []);
    assert.equal((await Deno.stat(`${dir}/d.jsonl`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("jsonl: a target that refuses writes gets the lines again, in order; closing counts the rest", async () => {
  let refusals = 2;
  const written: string[] = [];
  const logs: string[] = [];
  const stdout = {
    write(p: Uint8Array): Promise<number> {
      if (refusals-- > 0) return Promise.reject(new Error("EAGAIN"));
      written.push(new TextDecoder().decode(p));
      return Promise.resolve(p.length);
    },
  };
  const sink = await JsonlSink.open("-", { stdout, flushMs: 10, log: (m) => logs.push(m) });
  for (let i = 0; i < 3; i++) sink.add({ ...EVENT, id: `j${i}` });
  const deadline = Date.now() + 10_000;
  while (sink.status().written < 3 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const st = sink.status();
  assert.deepEqual([st.written, st.dropped, st.errors, st.up], [3, 0, 2, true]);
  assert.deepEqual(
    written.join("").trim().split("\n").map((l) => JSON.parse(l).id),
    ["j0", "j1", "j2"],
  );
  assert.equal(logs[0], "agentgate: audit.jsonl: sending to - failed (lines kept): EAGAIN");
  // A target that never takes them again: close gives up after three attempts, counting them.
  refusals = Infinity;
  sink.add({ ...EVENT, id: "lost-1" });
  sink.add({ ...EVENT, id: "lost-2" });
  await sink.close();
  sink.add({ ...EVENT, id: "after-close" });
  const end = sink.status();
  assert.deepEqual([end.written, end.dropped, end.queued, end.up], [3, 3, 0, false]);
});
