/**
 * `agentgate report` end to end: main.ts spawned on an audit database,
 * filters, formats, and the errors a user can make.
 */
import assert from "node:assert/strict";
import { AuditStore } from "../src/audit/store.ts";
import { fixtureEvents, S1, T0 } from "./support/report_fixtures.ts";
import { MAIN, RUN_FLAGS } from "./helpers.ts";

async function agentgate(args: string[], cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...RUN_FLAGS, MAIN, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
}

Deno.test("report: any audit, filtered by session and time, in three formats", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-report-" });
  try {
    const store = AuditStore.open(`${dir}/audit.db`, { log: () => {} });
    for (const e of fixtureEvents()) store.add(e);
    store.close();
    await Deno.writeTextFile(`${dir}/agentgate.yaml`, "version: 1\naudit: { path: ./audit.db }\n");
    const before = await Deno.readFile(`${dir}/audit.db`);

    // The policy's audit.path by default.
    const text = await agentgate(["report", "--session", S1], dir);
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^agentgate report: session ci-0a1b2c3d4e5f6a7b \(label ci\)\n/);
    assert.match(text.out, /7 requests to 4 hosts: 2 allowed, 1 logged, 2 denied/);
    assert.match(text.out, /rule "admin" \(agentgate\.yaml:3\): no admin {2}\[403, 2x\]/);

    const json = await agentgate(
      [
        "report",
        "--audit",
        "audit.db",
        "--format",
        "json",
        "--since",
        String(T0),
        "--until",
        new Date(T0 + 4500).toISOString(),
      ],
      dir,
    );
    assert.equal(json.code, 0, json.err);
    const r = JSON.parse(json.out);
    assert.equal(r.format, "agentgate.report/v1");
    assert.equal(r.source, `${dir}/audit.db`);
    assert.deepEqual([r.filter.since, r.filter.until], [T0, T0 + 4500]);
    assert.equal(r.totals.requests, 6, "the row two hours before T0 and those after are out");
    assert.deepEqual(r.models.map((m: { model: string }) => m.model), ["gpt-4o"]);

    const md = await agentgate(["report", "--format", "markdown", "--since", "1h"], dir);
    assert.equal(md.code, 0, md.err);
    // The fixture is from 2025: nothing in the last hour.
    assert.equal(
      md.out,
      "### ✅ agentgate: no request denied\n\nall sessions · no requests went through the proxy\n",
    );
    const all = await agentgate(["report", "--format", "markdown"], dir);
    // The 407 at CONNECT is a denied tunnel: counted apart from the requests.
    assert.match(all.out, /^### ❌ agentgate: 2 requests and 1 tunnel denied\n/);
    assert.match(
      all.out,
      / · 2 tunnels \(CONNECT, not counted as requests\): 1 intercepted or logged, 1 denied · /,
    );
    assert.match(all.out, /\n\| github\.com \| 0 \| 0 \| 0 \| 0 \| 0 \| 0 \| 2 \|\n/);
    assert.match(all.out, /\n\| \*\(no rule\)\* \| 2 \| 0 \| 1 \| 0 \| 0 \| 1 \| 2 \|\n/);
    assert.match(all.out, /\| claude-x \| anthropic \| 1 \| 10 \| 5 \| \$0\.00 \+ 1 unpriced \|/);

    assert.deepEqual(await Deno.readFile(`${dir}/audit.db`), before, "the audit is not changed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("report: errors say what is wrong", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-report-" });
  try {
    const missing = await agentgate(["report", "--audit", "nope.db"], dir);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /no audit database at ".*\/nope\.db"/);
    await assert.rejects(() => Deno.stat(`${dir}/nope.db`), "not created");

    const since = await agentgate(["report", "--audit", "nope.db", "--since", "yesterday"], dir);
    assert.equal(since.code, 2);
    assert.match(since.err, /--since must be ms since the epoch, a duration before now/);

    const both = await agentgate(["report", "--audit", "a.db", "--config", "b.yaml"], dir);
    assert.equal(both.code, 2);
    assert.match(both.err, /give --config or --audit, not both/);

    const fmt = await agentgate(["report", "--format", "html"], dir);
    assert.equal(fmt.code, 2);
    assert.match(fmt.err, /expected one of text, markdown, json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
