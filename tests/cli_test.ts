/**
 * The command line: in-process through `runMain` (commands return exit codes)
 * and as a real process for start-up failures.
 */
import assert from "node:assert/strict";
import { runMain } from "../main.ts";
import { memoryIo } from "../src/cli/io.ts";
import { MAIN, RUN_FLAGS, startProxy, waitFor } from "./helpers.ts";

async function run(args: string[], cwd?: string) {
  const io = memoryIo({ cwd });
  const code = await runMain(args, io);
  return { code, out: io.out.join(""), err: io.err.join("") };
}

Deno.test("cli: --version, --help on every command, unknown commands and flags", async () => {
  const v = await run(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.out, /^agentgate \d+\.\d+\.\d+\n$/);

  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /Usage: agentgate \[COMMAND\] \[OPTIONS\]/);
  for (const cmd of ["serve", "check"]) {
    const r = await run([cmd, "--help"]);
    assert.equal(r.code, 0, cmd);
    assert.match(r.out, new RegExp(`Usage: agentgate ${cmd === "serve" ? "\\[serve\\]" : cmd}`));
    assert.match(r.out, /--config FILE/);
  }

  const unknownCmd = await run(["chek"]);
  assert.equal(unknownCmd.code, 2);
  assert.equal(
    unknownCmd.err,
    'agentgate: unknown command "chek" (did you mean "check"?)\nRun `agentgate --help` for the list of commands.\n',
  );
  const unknownFlag = await run(["serve", "--lisen", "127.0.0.1:0"]);
  assert.equal(unknownFlag.code, 2);
  assert.equal(
    unknownFlag.err,
    'agentgate serve: unknown option "--lisen" for "serve" (did you mean "--listen"?)\nRun `agentgate serve --help` for usage.\n',
  );
  const badChoice = await run(["check", "--format", "xml"]);
  assert.equal(badChoice.code, 2);
  assert.match(
    badChoice.err,
    /invalid value "xml" for --format: expected one of text, json, github/,
  );
});

Deno.test("cli: check reports file:line:col and exits 1; a valid file exits 0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/bad.yaml`,
      "version: 1\nrules:\n  - match: example.com\n    action: alow\n",
    );
    await Deno.writeTextFile(
      `${dir}/good.yaml`,
      "version: 1\nrules:\n  - match: example.com\n    action: allow\n",
    );
    // Changed deliberately (issue 16): stdout holds the problems alone, the verdict
    // line is prose on stderr; a rule is named, not numbered.
    const bad = await run(["check", "--config", "bad.yaml"], dir);
    assert.equal(bad.code, 1);
    assert.equal(
      bad.out,
      'bad.yaml:4:13: "action" of rule "example.com" must be one of "allow", "deny", "log", not "alow" (did you mean "allow"?)\n',
    );
    assert.equal(bad.err, "1 error(s), 0 warning(s)\n");
    const gh = await run(["check", "--config", "bad.yaml", "--format", "github"], dir);
    assert.equal(
      gh.out,
      '::error file=bad.yaml,line=4,col=13::"action" of rule "example.com" must be one of "allow", "deny", "log", not "alow" (did you mean "allow"?)\n',
    );
    const json = await run(["check", "--config", "bad.yaml", "--format", "json"], dir);
    assert.equal(JSON.parse(json.out).errors, 1);

    const good = await run(["check", "--config", "good.yaml"], dir);
    assert.equal(good.code, 0);
    assert.equal(good.out, "");
    assert.equal(good.err, "ok: good.yaml: 1 rule(s), default deny, mode enforce\n");

    // Without --config, ./agentgate.yaml is used when present, else the embedded default.
    const embedded = await run(["check"], dir);
    assert.equal(embedded.code, 0);
    assert.match(embedded.err, /^ok: <embedded default>: 2 rule\(s\), default log/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: a broken policy at start prints the errors and exits 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/agentgate.yaml`, "version: 1\nmode: strict\n");
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...RUN_FLAGS, MAIN, "--listen", "127.0.0.1:0"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(r.code, 1);
    assert.equal(new TextDecoder().decode(r.stdout), "");
    assert.equal(
      new TextDecoder().decode(r.stderr),
      'agentgate.yaml:2:7: "mode" must be one of "enforce", "audit", not "strict"\n' +
        "agentgate: not started: the policy has errors\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: the embedded default starts, says so, and prints the export lines", async () => {
  const proxy = await startProxy({ config: null });
  try {
    // The banner is prose, on stderr; stdout is the export lines alone (issue 16).
    const err = proxy.stderr.join("\n");
    assert.match(err, new RegExp(`listening on http://127\\.0\\.0\\.1:${proxy.port}`));
    assert.match(err, /policy: embedded default \(records everything; denies cloud metadata/);
    // The export lines may still be on their way when the listen line was read.
    const out = await waitFor(
      () =>
        proxy.stdout.some((l) => l.includes("export http_proxy")) ? proxy.stdout.join("\n") : null,
      "the export lines",
      10_000,
    );
    assert.match(
      out,
      new RegExp(
        `export HTTP_PROXY=http://127\\.0\\.0\\.1:${proxy.port} HTTPS_PROXY=http://127\\.0\\.0\\.1:${proxy.port}`,
      ),
    );
    const client = Deno.createHttpClient({ proxy: { url: proxy.url } });
    const res = await fetch("http://169.254.169.254/latest/meta-data/iam/", { client });
    assert.equal(res.status, 403);
    assert.equal((await res.json()).rule, "cloud-metadata");
    client.close();
    assert.equal(await proxy.stop("SIGINT"), 0);
  } finally {
    await proxy.dispose();
  }
});

Deno.test("cli: check names what each limit counts (key and scope), text and json", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      `version: 1
tls: { intercept: [api.openai.com] }
rules:
  - name: openai
    match: api.openai.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 5, per: day, key: session, tz: Europe/Berlin }
      - spending_limit: { usd: 200, per: month, key: session, scope: all, tz: UTC }
      - spending_limit: { usd: 50, per: 7d }
      - rate_limit: { tokens: 100000, per: 1m, key: 'request.headers["x-team"]' }
      - rate_limit: { requests: 60, per: 1m, key: global }
`,
    );
    const r = await run(["check"], dir);
    assert.equal(r.code, 0, r.out);
    // Prose on stderr (the problems, here none, are stdout's).
    assert.equal(r.out, "");
    assert.equal(
      r.err,
      "ok: agentgate.yaml: 1 rule(s), default deny, mode enforce\n" +
        "limits:\n" +
        '  openai (agentgate.yaml:4): spending_limit $5.00 per day (Europe/Berlin), one budget per session: counts only the requests rule "openai" allows\n' +
        "  openai (agentgate.yaml:4): spending_limit $200.00 per month (UTC), one budget per session: counts the requests of every rule (scope: all)\n" +
        '  openai (agentgate.yaml:4): spending_limit $50.00 per 7d: counts only the requests rule "openai" allows\n' +
        '  openai (agentgate.yaml:4): rate_limit 100000 tokens per 1m, one bucket per value of request.headers["x-team"]: counts only the requests rule "openai" allows\n' +
        "  openai (agentgate.yaml:4): rate_limit 60 requests per 1m: counts the requests of every rule with this limit (key: global)\n",
    );
    const json = JSON.parse((await run(["check", "--format", "json"], dir)).out);
    assert.deepEqual(json.limits[1], {
      rule: "openai",
      source: "agentgate.yaml:4",
      policy: "spending_limit",
      describe:
        "spending_limit $200.00 per month (UTC), one budget per session: counts the requests of every rule (scope: all)",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
