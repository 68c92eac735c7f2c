/**
 * Proxy authentication and sessions: 407 challenge, credentials per session,
 * tokens never in the audit, non-loopback listen needs credentials.
 */
import assert from "node:assert/strict";
import {
  auditRows,
  curl,
  MAIN,
  RUN_FLAGS,
  startOrigin,
  startProxy,
  waitForRows,
} from "./helpers.ts";

Deno.test("proxy auth: 407 with a Basic challenge, then sessions by user name", async () => {
  const origin = await startOrigin((_q, r) => r.end("hello"));
  const proxy = await startProxy({
    config: `version: 1
default: log
proxy: { auth: [t0ken-one, { env: AG_TEST_TOKEN }] }
audit: { path: ./audit.db }
rules:
  - { name: test-origins, match: 127.0.0.1, action: log }
`,
    env: { AG_TEST_TOKEN: "t0ken-two" },
  });
  try {
    const none = await curl(["-i", "-x", proxy.url, `${origin.url}/x`]);
    assert.match(none.out, /^HTTP\/1\.1 407 Proxy Authentication Required/);
    assert.match(none.out, /\r\nproxy-authenticate: Basic realm="agentgate"\r\n/i);
    assert.match(none.out, /"reason":"proxy authentication required"/);

    const wrong = await curl(["-i", "-x", proxy.url, "--proxy-user", "ci:nope", `${origin.url}/x`]);
    assert.match(wrong.out, /"reason":"invalid proxy credentials"/);

    // curl answers the challenge (--proxy-anyauth) like .NET and Java clients do.
    const ok = await curl([
      "-x",
      proxy.url,
      "--proxy-anyauth",
      "--proxy-user",
      "nightly-0a1b2c3d:t0ken-one",
      `${origin.url}/a`,
    ]);
    assert.equal(ok.out, "hello", ok.err);
    const two = await curl([
      "-x",
      `http://ci-9f8e7d6c:t0ken-two@127.0.0.1:${proxy.port}`,
      `${origin.url}/b`,
    ]);
    assert.equal(two.out, "hello", two.err);

    const rows = await waitForRows(proxy.auditPath, 2, "status = 200");
    assert.deepEqual(rows.map((r) => [r.path, r.session, r.label]), [
      ["/a", "nightly-0a1b2c3d", "nightly"],
      ["/b", "ci-9f8e7d6c", "ci"],
    ]);
    const denied = auditRows(proxy.auditPath, "status = 407");
    assert.ok(denied.length >= 2);
    assert.ok(denied.every((r) => r.decision === "deny"));
    const all = JSON.stringify(auditRows(proxy.auditPath));
    for (const secret of ["t0ken-one", "t0ken-two", "nope"]) {
      assert.ok(!all.includes(secret), secret);
    }
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("proxy auth: a non-loopback listen without credentials refuses to start", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/agentgate.yaml`, "version: 1\naudit: { path: ./a.db }\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...RUN_FLAGS, MAIN, "--listen", "0.0.0.0:0", "--no-dashboard"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    assert.equal(
      new TextDecoder().decode(out.stderr),
      "agentgate: not started: 0.0.0.0:0 is not a loopback address, so the proxy needs " +
        "credentials: set proxy.auth (tokens or { env: NAME })\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
