/**
 * One loader decides what is an error, so `check`, `serve` (start and
 * reload), `run`, `test` and `eval` agree on every policy: what check passes
 * starts, what it fails is refused with the same lines. And `check` reports
 * every problem in one pass, names rules, and catches patterns that can never
 * match. Every case is the CLI as a real process.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { MAIN, readUntil, RUN_FLAGS, runCli } from "./helpers.ts";

const README = new URL("../README.md", import.meta.url);
const AGENTRESERVE_EXAMPLE = new URL(
  // The "Configuration" example of the @agentreserve/proxy 0.1.0 README, verbatim.
  "./fixtures/agentreserve/readme-example.yaml",
  import.meta.url,
);

/** The first fenced yaml block after a heading of README.md. */
async function readmeYaml(heading: string): Promise<string> {
  const text = await Deno.readTextFile(README);
  const from = text.indexOf(`\n${heading}\n`);
  assert.ok(from !== -1, heading);
  const m = /\n```yaml\n([\s\S]*?)\n```\n/.exec(text.slice(from));
  assert.ok(m, `a yaml block after ${heading}`);
  return m[1] + "\n";
}

/** What serve prints before it listens or gives up, and whether it started. */
async function serveStart(
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Promise<{ started: boolean; code: number | null; err: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...RUN_FLAGS, MAIN, ...args],
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const err = await readUntil(reader, /listening on http/);
  const started = /listening on http/.test(err);
  try {
    child.kill("SIGTERM");
  } catch {
    // It gave up by itself.
  }
  for (;;) if ((await reader.read()).done) break;
  const { code } = await child.status;
  return { started, code: started ? null : code, err };
}

/** The file:line:col lines of a text. */
const problemLines = (text: string) =>
  text.split("\n").filter((l) => /^[^\s:]+\.yaml(:\d+:\d+)?: /.test(l));

Deno.test("check, serve, run, test and eval agree on what is an error", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-agree-" });
  const env = { AGENTGATE_HOME: join(dir, "home") };
  try {
    const cases: { name: string; file: string; text: string; ok: boolean }[] = [
      {
        name: "the README's first policy",
        file: "readme.yaml",
        text: await readmeYaml("## The policy file"),
        ok: true,
      },
      {
        name: "the @agentreserve/proxy README example, verbatim",
        file: "agentreserve.yaml",
        text: await Deno.readTextFile(AGENTRESERVE_EXAMPLE),
        ok: true,
      },
      {
        name: "a public listen address without proxy.auth",
        file: "public.yaml",
        text: "version: 1\nproxy: { listen: 0.0.0.0:4100, dashboard: false }\n",
        ok: false,
      },
      {
        name: "policies on a deny rule",
        file: "deny-policies.yaml",
        text: "version: 1\nrules:\n  - name: d\n    match: example.com\n    action: deny\n" +
          "    policies:\n      - rate_limit: { requests: 1, per: 1m }\n",
        ok: false,
      },
      {
        name: "a host pattern no request can have",
        file: "bracket.yaml",
        text: 'version: 1\nrules:\n  - name: oa\n    match: "api.[openai.com"\n    action: allow\n',
        ok: false,
      },
      {
        name: "an agentgate key in a file without version",
        file: "legacy-auth.yaml",
        text:
          "proxy:\n  host: 0.0.0.0\n  auth: [s3cret]\nrules:\n  - match: '*'\n    action: log\n",
        ok: false,
      },
    ];
    for (const c of cases) {
      await Deno.writeTextFile(join(dir, c.file), c.text);
      await Deno.writeTextFile(
        join(dir, c.file.replace(/\.yaml$/, "_test.yaml")),
        `config: ${c.file}\ntests:\n  - name: anything\n    request: { url: http://unnamed.test/ }\n` +
          "    expect: { status: 403 }\n    todo: only loading is tested here\n",
      );
    }
    for (const c of cases) {
      await t.step(c.name, async () => {
        const check = await runCli(["check", "--config", c.file], { cwd: dir, env });
        const checked = problemLines(check.out);
        assert.equal(check.code, c.ok ? 0 : 1, check.out + check.err);

        // serve: starts when check passes, printing the same warnings; else the same errors.
        const loopback = c.ok ? ["--listen", "127.0.0.1:0"] : [];
        const serve = await serveStart(["serve", "--config", c.file, ...loopback], dir, env);
        assert.equal(serve.started, c.ok, serve.err);
        assert.deepEqual(problemLines(serve.err), checked);
        if (!c.ok) {
          assert.equal(serve.code, 1);
          assert.match(serve.err, /\nagentgate: not started: the policy has errors\n$/);
        }

        const errors = checked.filter((l) => !/: warning: /.test(l));
        if (!c.file.startsWith("public")) {
          // run listens on its own loopback port, so the file's listen address is not its concern.
          const run = await runCli(["run", "--config", c.file, "--report", "none", "--", "true"], {
            cwd: dir,
            env,
          });
          assert.equal(run.code, c.ok ? 0 : 1, run.err);
          assert.deepEqual(problemLines(run.err).filter((l) => !/: warning: /.test(l)), errors);
        }

        const test = await runCli(["test", c.file.replace(/\.yaml$/, "_test.yaml")], {
          cwd: dir,
          env,
        });
        assert.equal(test.code, c.ok ? 0 : 1, test.out);
        assert.deepEqual(problemLines(test.out).filter((l) => !l.includes("_test.yaml")), errors);

        const ev = await runCli(["eval", "--config", c.file, "--url", "http://unnamed.test/"], {
          cwd: dir,
          env,
        });
        assert.equal(ev.code, c.ok ? 0 : 1, ev.err);
        assert.deepEqual(problemLines(ev.err), c.ok ? [] : checked);
      });
    }

    await t.step("the exact verdicts", async () => {
      const lines = async (file: string) =>
        (await runCli(["check", "--config", file], { cwd: dir, env })).out;
      assert.equal(
        await lines("agentreserve.yaml"),
        'agentreserve.yaml:27:12: warning: rule "*.amazonaws.com/iam/*" uses the path glob ' +
          '"/iam/**", which a CONNECT tunnel does not reveal: agentgate denies HTTPS requests to ' +
          '"*.amazonaws.com" with a reason naming this rule and matches plain-HTTP requests in ' +
          'full; to decide HTTPS requests too, add "version: 1" to make this an agentgate policy ' +
          'and add "*.amazonaws.com" to tls.intercept\n',
      );
      assert.equal(
        await lines("public.yaml"),
        'public.yaml:2:18: proxy.listen "0.0.0.0:4100" is not a loopback address, so the proxy ' +
          "needs credentials: set proxy.auth (tokens or { env: NAME })\n",
      );
      assert.equal(
        await lines("deny-policies.yaml"),
        'deny-policies.yaml:7:7: policies of deny rule "d" are never evaluated (a deny rule ' +
          'denies): remove "policies", or make the rule "allow" or "log" to apply them\n',
      );
      assert.equal(
        await lines("bracket.yaml"),
        'bracket.yaml:4:17: invalid match pattern "api.[openai.com" in rule "oa": invalid ' +
          'character "[" in host "api.[openai.com"\n',
      );
      assert.equal(
        await lines("legacy-auth.yaml"),
        'legacy-auth.yaml:3:3: unknown key "auth" in "proxy": "proxy.auth" is an agentgate key, ' +
          'and this file has no "version", so it is read as @agentreserve/proxy configuration; ' +
          'add "version: 1" at the top to use agentgate keys (then write proxy.host and ' +
          'proxy.port as proxy.listen: "HOST:PORT", and add "default: log" to keep this ' +
          "format's default)\n",
      );
    });

    await t.step("reload rejects what check rejects, with the same lines", async () => {
      await Deno.writeTextFile(join(dir, "live.yaml"), "version: 1\ndefault: log\n");
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", ...RUN_FLAGS, MAIN, "--config", "live.yaml", "--listen", "127.0.0.1:0"],
        cwd: dir,
        env: { NO_COLOR: "1", ...env },
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      try {
        const err = await readUntil(reader, /listening on http:\/\/127\.0\.0\.1:\d+/);
        const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err)?.[1];
        assert.ok(port, err);
        await Deno.writeTextFile(
          join(dir, "live.yaml"),
          await Deno.readTextFile(join(dir, "deny-policies.yaml")),
        );
        const res = await fetch(`http://127.0.0.1:${port}/_/api/reload`, { method: "POST" });
        const body = await res.json();
        assert.equal(body.ok, false);
        const check = await runCli(["check", "--config", "live.yaml"], { cwd: dir, env });
        assert.deepEqual(body.errors, problemLines(check.out));
      } finally {
        child.kill("SIGTERM");
        for (;;) if ((await reader.read()).done) break;
        await child.status;
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check reports every problem in one pass, names rules, and does not cascade", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-check-" });
  const env = { AGENTGATE_HOME: join(dir, "home") };
  try {
    // Schema errors, compile errors and lints of several rules, all at once: fixing one
    // never reveals new ones.
    await Deno.writeTextFile(
      join(dir, "many.yaml"),
      `version: 1
default: alow
tls:
  intercept: [api.openai.com]
rules:
  - name: a
    match: api.openai.com/v1/**
    methods: [POST]
    when: requst.host == "x"
    action: allow
  - name: b
    match: "api.[x.com"
    action: deny
    policies:
      - rate_limit: { requests: 0, per: 1m }
  - name: c
    match: example.com
    acton: allow
  - name: d
    match: example.org/x/**
    action: allow
`,
    );
    const many = await runCli(["check", "--config", "many.yaml"], { cwd: dir, env });
    assert.equal(many.code, 1);
    assert.deepEqual(many.out.trimEnd().split("\n"), [
      'many.yaml:2:10: "default" must be one of "deny", "allow", "log", not "alow" (did you mean "allow"?)',
      'many.yaml:9:11: invalid condition in rule "a": Unknown name "requst" (did you mean "request"?): the variables are request, body, session, now, client and dest',
      'many.yaml:12:17: invalid match pattern "api.[x.com" in rule "b": invalid character "[" in host "api.[x.com"',
      'many.yaml:15:7: policies of deny rule "b" are never evaluated (a deny rule denies): remove "policies", or make the rule "allow" or "log" to apply them',
      "many.yaml:15:33: invalid requests 0: expected a whole number of at least 1",
      'many.yaml:16:5: missing key "action" in rule "c"',
      'many.yaml:18:5: unknown key "acton" in rule "c" (did you mean "action"?)',
      'many.yaml:20:12: warning: rule "d" uses the path glob "/x/**", which a CONNECT tunnel does not reveal: agentgate denies HTTPS requests to "example.org" with a reason naming this rule and matches plain-HTTP requests in full; to decide HTTPS requests too, add "example.org" to tls.intercept (or write the pattern with "http://" if the rule is meant for plain HTTP only)',
    ]);
    assert.equal(many.err, "7 error(s), 1 warning(s)\n");

    // One indentation slip in a long policy is one error, not dozens.
    const readme = await readmeYaml("## The policy file");
    await Deno.writeTextFile(join(dir, "slip.yaml"), " " + readme);
    const slip = await runCli(["check", "--config", "slip.yaml"], { cwd: dir, env });
    assert.equal(slip.code, 1);
    const lines = slip.out.trimEnd().split("\n");
    assert.equal(lines.length, 1, slip.out);
    assert.match(
      lines[0],
      /^slip\.yaml:\d+:\d+: invalid YAML: .* \(\d+ more YAML error\(s\) after it, most likely caused by this one: fix it and check again\)$/,
    );

    // An error in an included file comes with the main file's own, in one pass.
    await Deno.writeTextFile(
      join(dir, "inc.yaml"),
      "rules:\n  - { match: a.test, action: alow }\n",
    );
    await Deno.writeTextFile(
      join(dir, "main.yaml"),
      "version: 1\nmode: strict\ninclude: [inc.yaml]\n",
    );
    const inc = await runCli(["check", "--config", "main.yaml"], { cwd: dir, env });
    assert.deepEqual(inc.out.trimEnd().split("\n"), [
      'main.yaml:2:7: "mode" must be one of "enforce", "audit", not "strict"',
      'inc.yaml:2:30: "action" of rule "a.test" must be one of "allow", "deny", "log", not "alow" (did you mean "allow"?)',
    ]);

    // Other host patterns that could never match a request.
    await Deno.writeTextFile(
      join(dir, "hosts.yaml"),
      'version: 1\nrules:\n  - { name: p, match: "a:b", action: log }\n' +
        '  - { name: q, match: "api..x.com", action: log }\n',
    );
    const hosts = await runCli(["check", "--config", "hosts.yaml"], { cwd: dir, env });
    assert.deepEqual(hosts.out.trimEnd().split("\n"), [
      'hosts.yaml:3:26: invalid match pattern "a:b" in rule "p": invalid port "b" in "a:b": a port is digits or *',
      'hosts.yaml:4:27: invalid match pattern "api..x.com" in rule "q": empty label in host "api..x.com" (a leading dot or "..")',
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scan of a missing file is a runtime error (1), not a usage error (2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runCli(["scan", "nope.txt"], { cwd: dir, env: { AGENTGATE_HOME: dir } });
    assert.equal(r.code, 1);
    assert.equal(r.out, "");
    assert.equal(r.err, 'agentgate scan: cannot read "nope.txt": file not found\n');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the default audit database is in the agentgate home, not the working directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-home-" });
  const home = join(dir, "home");
  try {
    // The embedded default, and a policy without audit.path.
    const embedded = await serveStart(["--listen", "127.0.0.1:0"], dir, { AGENTGATE_HOME: home });
    assert.ok(embedded.started, embedded.err);
    assert.match(embedded.err, new RegExp(`\\naudit:  ${home}/agentgate\\.db\\n`));
    await Deno.writeTextFile(join(dir, "p.yaml"), "version: 1\ndefault: log\n");
    const plain = await serveStart(["--config", "p.yaml", "--listen", "127.0.0.1:0"], dir, {
      AGENTGATE_HOME: home,
    });
    assert.match(plain.err, new RegExp(`\\naudit:  ${home}/agentgate\\.db\\n`));
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(entries, ["home", "p.yaml"], "nothing written where agentgate started");
    assert.equal((await Deno.stat(home)).mode! & 0o777, 0o700);
    // A configured relative path stays relative to the policy file.
    await Deno.writeTextFile(join(dir, "q.yaml"), "version: 1\naudit: { path: ./here.db }\n");
    const here = await serveStart(["--config", "q.yaml", "--listen", "127.0.0.1:0"], dir, {
      AGENTGATE_HOME: home,
    });
    assert.match(here.err, new RegExp(`\\naudit:  ${dir}/here\\.db\\n`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
