/**
 * Sessions that cannot be forged, attacked the way a wrapped agent would: a
 * real shell child of `agentgate run` reads its own proxy URL, then sends
 * requests concurrently under fresh session names (with the run's secret),
 * under the run's name with guessed secrets, with the user name and password
 * swapped, and without credentials. It stays one session: the per-session
 * rate limit and budget hold, nothing forged is recorded as a session, and
 * `--fail-on-deny` and the report count everything it did.
 */
import assert from "node:assert/strict";
import { agentgateArgs, auditRows, startOrigin } from "./helpers.ts";

const dec = new TextDecoder();

/** The child's script: $1 = number of rounds. */
const ATTACK = String.raw`
set -u
creds=${"$"}{http_proxy#http://}; hostport=${"$"}{creds##*@}; creds=${"$"}{creds%@*}
session=${"$"}{creds%%:*}; secret=${"$"}{creds#*:}
chat() { curl -s -o /dev/null -w "%{http_code}\n" -x "$1" -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","max_tokens":100,"messages":[]}' http://llm.test/v1/chat/completions; }
models() { curl -s -o /dev/null -w "%{http_code}\n" -x "$1" http://llm.test/v1/models; }
i=0
while [ $i -lt $1 ]; do
  i=$((i+1))
  fresh="agent$i-$(printf '%016x' $i)"
  # Concurrent forgeries: fresh names with the real secret, the real name with
  # a guessed secret, the secret as the user name, no credentials at all.
  chat "http://$fresh:$secret@$hostport" > /dev/null &
  models "http://$fresh:$secret@$hostport" > /dev/null &
  models "http://$session:0123456789abcdef0123456789abcdef@$hostport" > /dev/null &
  models "http://$secret:$session@$hostport" > /dev/null &
  models "http://$hostport" > /dev/null &
  # And its own credentials, one call at a time.
  chat "$http_proxy"
  models "$http_proxy"
  wait
done
`;

Deno.test("sessions: a child of run that forges session names stays one session", async () => {
  const origin = await startOrigin((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        req.url === "/v1/chat/completions"
          ? JSON.stringify({
            id: "chatcmpl-1",
            object: "chat.completion",
            model: "gpt-4o-mini",
            choices: [{
              index: 0,
              message: { role: "assistant", content: "ok" },
              finish_reason: "stop",
            }],
            // gpt-4o-mini: 1000 × $0.15/M + 500 × $0.60/M = $0.00045 a call. Each call
            // reserves under $0.0001 first (its body's bytes and max_tokens 100), so the
            // $0.001 budget lets three through ($0.0009 spent + the third's reservation).
            usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 },
          })
          : JSON.stringify({ data: [] }),
      );
    });
  });
  const dir = await Deno.makeTempDir({ prefix: "agentgate-forge-" });
  const work = `${dir}/work`;
  await Deno.mkdir(work);
  await Deno.writeTextFile(
    `${dir}/agentgate.yaml`,
    `version: 1
default: deny
upstream: { resolve: { llm.test: 127.0.0.1:${origin.port} } }
llm: { providers: { llm.test: openai } }
audit: { path: ./audit.db }
rules:
  - name: chat
    match: llm.test/v1/chat/completions
    methods: [POST]
    action: allow
    policies:
      - spending_limit: { usd: 0.001, per: run, key: session }
  - name: models
    match: llm.test/v1/models
    action: allow
    policies:
      - rate_limit: { requests: 3, per: 1h, key: session }
`,
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        ...agentgateArgs(),
        "run",
        "--config",
        `${dir}/agentgate.yaml`,
        "--label",
        "agent",
        "--fail-on-deny",
        "--report",
        "json",
        "--report-file",
        `${dir}/report.json`,
        "--",
        "sh",
        "-c",
        ATTACK,
        "attack",
        "6",
      ],
      cwd: work,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = dec.decode(out.stdout);
    const stderr = dec.decode(out.stderr);
    const session = /agentgate run: session (agent-[0-9a-f]{16}) through/.exec(stderr)?.[1];
    assert.ok(session, stderr);
    // Its own calls, in order: three chats fit the $0.001 budget, then 429;
    // three model lists fit the rate limit, then 429.
    assert.deepEqual(stdout.trim().split("\n"), [
      ...["200", "200"],
      ...["200", "200"],
      ...["200", "200"],
      ...["429", "429"],
      ...["429", "429"],
      ...["429", "429"],
    ]);
    assert.equal(out.code, 3, stderr); // --fail-on-deny: the command succeeded, requests were denied

    const rows = auditRows(`${dir}/audit.db`);
    // Every row is the run's session or no session at all: no forged name was recorded.
    const sessions = new Set(rows.map((r) => r.session));
    assert.deepEqual([...sessions].sort(), [null, session].sort());
    const mine = rows.filter((r) => r.session === session);
    const count = (f: (r: Record<string, unknown>) => boolean) => mine.filter(f).length;
    assert.equal(count((r) => r.rule === "chat" && r.status === 200), 3);
    assert.equal(count((r) => r.rule === "chat" && r.policy === "spending_limit"), 3);
    assert.equal(count((r) => r.rule === "models" && r.status === 200), 3);
    assert.equal(count((r) => r.rule === "models" && r.policy === "rate_limit"), 3);
    const forged = rows.filter((r) => r.session === null);
    // 6 rounds × (2 fresh names, 1 guessed secret, 1 swapped pair, 1 without credentials)
    assert.equal(forged.length, 30);
    assert.ok(forged.every((r) => r.status === 407 && r.label === null));
    // Refused credentials are denials; a request without any is a 407 challenge.
    const refused = forged.filter((r) => r.reason === "invalid proxy credentials");
    assert.equal(refused.length, 24);
    assert.ok(refused.every((r) => r.decision === "deny"));
    const challenged = forged.filter((r) => r.reason === "proxy authentication required");
    assert.equal(challenged.length, 6);
    assert.ok(challenged.every((r) => r.decision === "challenge"));
    // The secret never reaches the audit, not even from the swapped pair.
    const secret = /"secret":"([0-9a-f]{32})"/.exec(JSON.stringify(rows))?.[1];
    assert.equal(secret, undefined);

    const report = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
    assert.equal(report.filter.session, session);
    assert.equal(report.totals.requests, 12);
    assert.equal(report.totals.deny, 6);
    assert.deepEqual(report.run, { watch: false, policy_reloads: [], invalid_credentials: 24 });
    assert.match(stderr, /agentgate run: 30 request\(s\) denied \(--fail-on-deny\): exit 3/);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await origin.close();
  }
});
