/**
 * stdout carries what a program would consume — PEM, a path, shell lines,
 * JSON, the problems or findings, a report — and nothing else; prose (what was
 * written, counts, banners, warnings) goes to stderr. One case per command,
 * each a real process, each asserting stdout exactly.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { policyJsonSchema } from "../src/cli/schema.ts";
import { readUntil, runCli } from "./helpers.ts";

const POLICY = `version: 1
tls: { intercept: [api.example.test] }
rules:
  - name: api
    match: api.example.test/v1/**
    action: allow
  - name: deny-admin
    match: api.example.test/admin/**
    action: deny
audit: { path: ./audit.db }
`;

Deno.test("stdout is exactly the machine part, for every command", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-streams-" });
  const env = { AGENTGATE_HOME: join(dir, "home") };
  const cli = (args: string[], stdin?: string) => runCli(args, { cwd: dir, env, stdin });
  try {
    await Deno.writeTextFile(join(dir, "agentgate.yaml"), POLICY);
    await Deno.writeTextFile(
      join(dir, "agentgate_test.yaml"),
      "tests:\n  - name: admin denied\n    request: { url: https://api.example.test/admin/x }\n" +
        "    expect: { action: deny, rule: deny-admin }\n",
    );
    await Deno.writeTextFile(join(dir, "bad.yaml"), "version: 1\ndefault: alow\n");
    await Deno.writeTextFile(
      join(dir, "prompt.txt"),
      "key AKIAIOSFODNN7EXAMPLE here\n",
    );
    await Deno.writeTextFile(
      join(dir, "messy.yaml"),
      "version: 1\nrules:\n- {match: a.test, action: log}\n",
    );

    await t.step("--version and --help", async () => {
      const v = await cli(["--version"]);
      assert.equal(v.out, "agentgate 0.1.0\n");
      assert.equal(v.err, "");
      const h = await cli(["check", "--help"]);
      assert.match(h.out, /^Validate a policy file/);
      assert.equal(h.err, "");
    });

    await t.step("ca: the PEM, the path, the bundle's path", async () => {
      const pem = await cli(["ca"]);
      assert.equal(pem.code, 0, pem.err);
      const caFile = join(dir, "home", "ca.pem");
      assert.equal(pem.out, await Deno.readTextFile(caFile));
      assert.match(pem.err, /^agentgate ca: .*ca\.pem \(created now\)\n/);
      const path = await cli(["ca", "--path"]);
      assert.equal(path.out, caFile + "\n");
      const bundle = await cli(["ca", "--bundle", "b.pem"]);
      assert.equal(bundle.code, 0, bundle.err);
      assert.equal(bundle.out, join(dir, "b.pem") + "\n");
      assert.match(bundle.err, /^agentgate ca: wrote .*b\.pem: \d+ system root\(s\) from /);
      // What the README promises, in a real shell.
      const sh = await new Deno.Command("bash", {
        args: [
          "-c",
          `CURL_CA_BUNDLE=$("$0" run -A "$1" ca --bundle b2.pem 2>/dev/null) && printf %s "$CURL_CA_BUNDLE" && test -s "$CURL_CA_BUNDLE"`,
          Deno.execPath(),
          new URL("../main.ts", import.meta.url).pathname,
        ],
        cwd: dir,
        env,
        stdout: "piped",
      }).output();
      assert.equal(sh.code, 0);
      assert.equal(new TextDecoder().decode(sh.stdout), join(dir, "b2.pem"));
    });

    await t.step("check: the problems; the verdict on stderr", async () => {
      const ok = await cli(["check"]);
      assert.equal(ok.code, 0);
      assert.equal(ok.out, "");
      assert.equal(ok.err, "ok: agentgate.yaml: 2 rule(s), default deny, mode enforce\n");
      const bad = await cli(["check", "--config", "bad.yaml"]);
      assert.equal(bad.code, 1);
      assert.equal(
        bad.out,
        'bad.yaml:2:10: "default" must be one of "deny", "allow", "log", not "alow" (did you mean "allow"?)\n',
      );
      assert.equal(bad.err, "1 error(s), 0 warning(s)\n");
      const json = await cli(["check", "--config", "bad.yaml", "--format", "json"]);
      assert.equal(JSON.parse(json.out).errors, 1);
      assert.equal(json.err, "");
    });

    await t.step("scan: the findings; the count on stderr", async () => {
      const r = await cli(["scan", "prompt.txt"]);
      assert.equal(r.code, 1);
      assert.equal(r.out, "prompt.txt:1:5: aws_access_key AKIA…MPLE\n");
      assert.equal(r.err, "1 finding(s)\n");
      const clean = await cli(["scan", "-"], "nothing\n");
      assert.equal(clean.code, 0);
      assert.equal(clean.out, "");
      const json = await cli(["scan", "prompt.txt", "--format", "json"]);
      assert.deepEqual(JSON.parse(json.out), [
        { detector: "aws_access_key", sample: "AKIA…MPLE", line: 1, col: 5 },
      ]);
    });

    await t.step("schema, eval, test: their documents", async () => {
      const schema = await cli(["schema"]);
      assert.deepEqual(JSON.parse(schema.out), policyJsonSchema("policy"));
      assert.equal(schema.err, "");
      const ev = await cli([
        "eval",
        "--url",
        "https://api.example.test/admin/x",
        "--format",
        "json",
      ]);
      assert.equal(JSON.parse(ev.out).decision.rule, "deny-admin");
      assert.equal(ev.err, "");
      const tj = await cli(["test", "--format", "json"]);
      assert.equal(tj.code, 0, tj.out);
      assert.equal(JSON.parse(tj.out).passed, 1);
      assert.equal(tj.err, "");
      const junit = await cli(["test", "--format", "junit"]);
      assert.match(junit.out, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites /);
      assert.equal(junit.err, "");
    });

    await t.step("fmt: the files; the summary on stderr", async () => {
      const r = await cli(["fmt", "--check", "messy.yaml"]);
      assert.equal(r.code, 1);
      assert.equal(r.out, "messy.yaml\n");
      assert.equal(r.err, "1 of 1 file(s) not formatted: run agentgate fmt\n");
    });

    await t.step("env: shell lines only", async () => {
      const r = await cli(["env", "--shell", "bash"]);
      assert.equal(r.code, 0, r.err);
      const lines = r.out.trimEnd().split("\n");
      assert.ok(lines.every((l) => /^export [A-Za-z_]+='[^']*'$/.test(l)), r.out);
      assert.ok(lines.some((l) => l.startsWith("export SSL_CERT_FILE=")));
    });

    await t.step("run: the command's own stdout, nothing of agentgate's", async () => {
      const r = await cli(["run", "--", "sh", "-c", "printf 'child out'"]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, "child out");
      // (A warning that the command could change the policy may come first.)
      assert.match(r.err, /^agentgate run: session [0-9a-f]{16} through /m);
      assert.doesNotMatch(r.err, /listening on/);
    });

    await t.step("report and replay: their documents", async () => {
      const rep = await cli(["report", "--format", "json"]);
      assert.equal(rep.code, 0, rep.err);
      assert.equal(JSON.parse(rep.out).totals.requests, 0);
      assert.equal(rep.err, "");
      const rp = await cli(["replay", "--format", "json"]);
      assert.equal(rp.code, 0, rp.err);
      assert.equal(typeof JSON.parse(rp.out).counts, "object");
      assert.equal(rp.err, "");
    });

    await t.step("serve: the export lines; the banner on stderr", async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../main.ts", import.meta.url).pathname,
          "--listen",
          "127.0.0.1:0",
        ],
        cwd: dir,
        env: { ...env, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      const err = await readUntil(reader, /listening on http:\/\/127\.0\.0\.1:\d+/);
      const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err)?.[1];
      child.kill("SIGTERM");
      const [out] = await Promise.all([
        new Response(child.stdout).text(),
        (async () => {
          for (;;) if ((await reader.read()).done) break;
        })(),
      ]);
      assert.equal((await child.status).code, 0);
      const url = `http://127.0.0.1:${port}`;
      assert.equal(
        out,
        `  export HTTP_PROXY=${url} HTTPS_PROXY=${url}\n  export http_proxy=${url} https_proxy=${url}\n`,
      );
      assert.match(err, /^agentgate 0\.1\.0 listening on /);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
