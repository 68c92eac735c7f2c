/**
 * The policy out of the agent's reach, attacked the way a wrapped agent
 * would: a real shell child of `agentgate run` whose working directory holds
 * the policy edits it from deny to allow between two requests, and asks the
 * proxy to reload it. Without `--watch` the policy was read once: the second
 * request is still denied, and `run` warned that the command could change
 * what the next run uses. With `--watch` the edit applies, and every reload —
 * applied or rejected — is in the report, whose errors never quote a file
 * that is not a policy.
 */
import assert from "node:assert/strict";
import { MAIN, RUN_FLAGS, startOrigin } from "./helpers.ts";

const dec = new TextDecoder();

const POLICY = `version: 1
default: deny
audit: { path: ./audit.db }
rules:
  - name: gate
    match: site.test/**
    action: deny
    reason: not yet
`;

/** The child: a request, an edit of ./agentgate.yaml (deny -> allow), a reload attempt, a request. */
const EDIT_AND_RETRY = String.raw`
set -u
code() { curl -s -o /dev/null -w "%{http_code}\n" "$@"; }
code http://site.test/one
sed -i 's/action: deny/action: allow/' agentgate.yaml
base=${"$"}{http_proxy##*@}
code --noproxy '*' -X POST "http://$base/_/api/reload"
sleep 1.5
code http://site.test/two
`;

async function run(args: string[], cwd: string, script: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...RUN_FLAGS, MAIN, "run", ...args, "--", "sh", "-c", script],
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("policy reach: run reads the policy once; the command's edit changes nothing", async () => {
  const origin = await startOrigin((_q, r) => r.end("ok"));
  const dir = await Deno.makeTempDir({ prefix: "agentgate-reach-" });
  try {
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      POLICY + `upstream: { resolve: { site.test: 127.0.0.1:${origin.port} } }\n`,
    );
    const r = await run(
      ["--fail-on-deny", "--report", "json", "--report-file", "report.json"],
      dir,
      EDIT_AND_RETRY,
    );
    // Denied, the reload refused, still denied: the edit did not reach this run.
    assert.deepEqual(r.stdout.trim().split("\n"), ["403", "403", "403"], r.stderr);
    assert.equal(r.code, 3, r.stderr);
    assert.ok(
      r.stderr.includes(
        'agentgate run: warning: the policy file "agentgate.yaml" is inside the command\'s ' +
          `working directory and is writable by its user (uid ${Deno.uid()}): the command could ` +
          "change the policy the next run uses (keep policies outside the working tree, " +
          "read-only to the command's user)\n",
      ),
      r.stderr,
    );
    const report = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
    assert.deepEqual(report.run, { watch: false, policy_reloads: [], invalid_credentials: 0 });
    assert.equal(report.totals.deny, 2);
    assert.deepEqual(
      report.denials.map((d: { path: string; reason: string }) => [d.path, d.reason]),
      [["/one", "not yet"], ["/two", "not yet"]],
    );
    // The file did change: the next run would use it (hence the warning).
    assert.match(await Deno.readTextFile(`${dir}/agentgate.yaml`), /action: allow/);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await origin.close();
  }
});

Deno.test("policy reach: with --watch every reload, applied or rejected, is in the report", async () => {
  const origin = await startOrigin((_q, r) => r.end("ok"));
  const dir = await Deno.makeTempDir({ prefix: "agentgate-reach-" });
  const SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
  try {
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      POLICY + `upstream: { resolve: { site.test: 127.0.0.1:${origin.port} } }\n`,
    );
    // A YAML file beside the policy that is not a policy (and holds a secret).
    await Deno.writeTextFile(
      `${dir}/credentials.yaml`,
      `apiVersion: v1\nkind: Secret\nrules: ${SECRET}\n`,
    );
    const script = EDIT_AND_RETRY + String.raw`
echo "include: [credentials.yaml]" >> agentgate.yaml
# Until the watcher has seen the edit and rejected it (a loaded machine can take seconds).
for i in $(seq 150); do
  curl -s --noproxy '*' "http://$base/_/health" > health.json
  grep -q '"last_reload":{[^}]*"ok":false' health.json && break
  sleep 0.2
done
code http://site.test/three
`;
    const r = await run(
      ["--watch", "--report", "json", "--report-file", "report.json"],
      dir,
      script,
    );
    // Denied; the reload API answered 200 and the edit applied; the broken edit
    // was rejected later and the allow stayed.
    assert.deepEqual(r.stdout.trim().split("\n"), ["403", "200", "200", "200"], r.stderr);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /could change the policy of this run \(--watch reloads it\)/);
    const report = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
    assert.equal(report.run.watch, true);
    const reloads = report.run.policy_reloads as {
      trigger: string;
      ok: boolean;
      rules: number | null;
      errors: string[];
    }[];
    assert.deepEqual(reloads.map((x) => [x.ok, x.rules]).at(-1), [false, null]);
    assert.ok(reloads.some((x) => x.ok && x.rules === 1), JSON.stringify(reloads));
    assert.ok(reloads.some((x) => x.trigger === "api"), JSON.stringify(reloads));
    const rejected = reloads.at(-1)!;
    assert.equal(rejected.trigger, "file change");
    assert.deepEqual(rejected.errors, [
      'credentials.yaml:1:1: unknown key "apiVersion" (did you mean "version"?)',
      'credentials.yaml:2:1: unknown key "kind"',
      'credentials.yaml:3:8: "rules" is not valid (details not shown: this file has top-level ' +
      "keys no policy has, so it may not be a policy)",
    ]);
    // The secret is nowhere: not in the report, the log, or the unauthenticated /_/health.
    const health = await Deno.readTextFile(`${dir}/health.json`);
    assert.equal(JSON.parse(health).last_reload.ok, false);
    for (const text of [JSON.stringify(report), r.stderr, health]) {
      assert.ok(!text.includes(SECRET));
    }
    // The text report says it too.
    await Deno.writeTextFile(`${dir}/agentgate.yaml`, POLICY);
    const text = await run(
      ["--watch", "--report", "text"],
      dir,
      String.raw`base=${"$"}{http_proxy##*@}; echo 'rules: []' >> agentgate.yaml
for i in $(seq 150); do
  curl -s --noproxy '*' "http://$base/_/health" | grep -q '"last_reload":{[^}]*"ok":false' && break
  sleep 0.2
done`,
    );
    assert.match(
      text.stderr,
      /\nPolicy reloads during the run \(1, --watch\)\n {2}\S+ \S+ {2}file change {2}rejected, the previous policy stayed\n {6}agentgate\.yaml:9:1: invalid YAML: Map keys must be unique\n/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await origin.close();
  }
});
