/**
 * `agentgate replay` as a real process on an audit of a rule with `dlp` and
 * spending policies: groups never merge different reasons, and a request
 * whose body only a `dlp` policy reads is decided from its recorded scan.
 */
import assert from "node:assert/strict";
import { AuditStore } from "../src/audit/store.ts";
import type { AuditEventV1 } from "../src/audit/event.ts";
import { MAIN } from "./helpers.ts";

/**
 * Replay the seeded audit in `dir` against a policy file `name` holding
 * `rules` (YAML list items) after `version: 1` and `default: deny`.
 */
async function replay(dir: string, name: string, rules: string) {
  await Deno.writeTextFile(`${dir}/${name}`, `version: 1\ndefault: deny\nrules:\n${rules}`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "replay", "--config", name, "--audit", "audit.db", "--since", "all"]
      .concat(["--format", "json"]),
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, err);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

const DLP_REASON = "request blocked by DLP: aws_access_key in body";
const SPEND_REASON = 'spending limit of rule "paste" reached: $5.00 per 1d';

/** One DLP block, four spending denials, and one allowed upload with a body (no finding). */
function seed(path: string) {
  const store = AuditStore.open(path, { flushMs: 60_000 });
  const t0 = Date.now() - 60_000;
  const base: Omit<AuditEventV1, "id" | "ts"> = {
    session: "ci-1",
    label: null,
    client: "127.0.0.1",
    method: "POST",
    scheme: "http",
    host: "paste.test",
    port: 80,
    path: "/upload",
    query: null,
    status: 403,
    decision: "deny",
    rule: "paste",
    rule_source: "old.yaml:4",
    reason: SPEND_REASON,
    policy: "spending_limit",
    bytes_in: 120,
    bytes_out: 0,
    duration_ms: 1,
    error: null,
    headers: '{"content-type":"text/plain","content-length":"120"}',
    dest_ip: "93.184.216.34",
  };
  store.add({
    ...base,
    id: "dlp-1",
    ts: t0,
    reason: DLP_REASON,
    policy: "dlp",
    findings: [{
      detector: "aws_access_key",
      direction: "request",
      location: "body",
      sample: "AKIA…WXYZ",
      action: "block",
    }],
  });
  for (let i = 0; i < 4; i++) store.add({ ...base, id: `spend-${i}`, ts: t0 + 1 + i });
  store.add({
    ...base,
    id: "ok-1",
    ts: t0 + 10,
    status: 200,
    decision: "allow",
    reason: 'allowed by rule "paste"',
    policy: null,
  });
  store.close();
}

Deno.test("replay: one group per decision, rule, policy and reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-replay-" });
  try {
    seed(`${dir}/audit.db`);
    const r = await replay(
      dir,
      "open.yaml",
      `  - name: paste
    match: paste.test/**
    action: allow
`,
    );
    assert.equal(r.counts.deny_to_allow, 5);
    assert.deepEqual(
      r.examples.deny_to_allow.map((
        e: { count: number; before: { policy: string; reason: string } },
      ) => [
        e.count,
        e.before.policy,
        e.before.reason,
      ]),
      [[1, "dlp", DLP_REASON], [4, "spending_limit", SPEND_REASON]],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replay: a rule whose dlp policy alone reads the body is decided from the recorded scan", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-replay-" });
  try {
    seed(`${dir}/audit.db`);
    const r = await replay(
      dir,
      "dlp.yaml",
      `  - name: paste
    match: paste.test/**
    action: allow
    policies:
      - dlp: { action: block }
`,
    );
    assert.deepEqual(r.counts, {
      allow_to_deny: 0,
      deny_to_allow: 4,
      rule_changed: 0,
      unchanged: 2,
      needs_body: 0,
      needs_dest: 0,
    });
    assert.deepEqual(
      r.examples.deny_to_allow.map((e: { count: number; after: { verdict: string } }) => [
        e.count,
        e.after.verdict,
      ]),
      [[4, "allow"]],
    );
    // A condition that reads the body still cannot be decided without it.
    const c = await replay(
      dir,
      "cond.yaml",
      `  - name: paste
    match: paste.test/**
    when: body.public == true
    action: allow
    policies:
      - dlp: { action: block }
`,
    );
    assert.equal(c.counts.needs_body, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
