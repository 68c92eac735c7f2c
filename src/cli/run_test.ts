import assert from "node:assert/strict";
import { memoryIo } from "./io.ts";
import { UsageError } from "./args.ts";
import { LABEL_PATTERN, newSessionId, run, trustVariables } from "./run.ts";
import { loadOrCreateCA } from "../tls/ca.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-run-" });
  try {
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      "version: 1\ndefault: log\naudit: { path: ./audit.db }\n",
    );
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("run: session ids and labels", () => {
  assert.match(newSessionId(), /^[0-9a-f]{16}$/);
  assert.match(newSessionId("nightly"), /^nightly-[0-9a-f]{16}$/);
  assert.notEqual(newSessionId(), newSessionId());
  for (const ok of ["ci", "a.b_c~d-e", "X".repeat(64)]) assert.ok(LABEL_PATTERN.test(ok), ok);
  for (const bad of ["", "-x", "a:b", "a b", "a@b", "ä", "X".repeat(65)]) {
    assert.ok(!LABEL_PATTERN.test(bad), bad);
  }
});

Deno.test("run: usage errors", async () => {
  const io = memoryIo();
  await assert.rejects(() => run([], io), /missing the command to run/);
  await assert.rejects(() => run(["--label", "a b", "--", "true"], io), /invalid --label "a b"/);
  await assert.rejects(() => run(["--report", "xml", "--", "true"], io), /expected one of text/);
  await assert.rejects(() => run(["--proxy", "https://x:1", "--", "true"], io), UsageError);
  await assert.rejects(
    () => run(["--fail-on-denied", "--", "true"], io),
    /did you mean "--fail-on-deny"/,
  );
  assert.equal(await run(["--help"], io), 0);
  assert.match(io.out.join(""), /^Run a command with all its traffic going through agentgate/);
});

Deno.test("run: the child's environment and exit code, a missing command, the report", async () => {
  await withDir(async (dir) => {
    const io = memoryIo({
      cwd: dir,
      env: { HTTPS_PROXY: "http://corp.example:3128", NO_PROXY: "" },
    });
    const code = await run(
      [
        "--label",
        "unit",
        "--report",
        "json",
        "--report-file",
        "r.json",
        "--",
        "sh",
        "-c",
        "env > env.txt; exit 5",
      ],
      io,
    );
    assert.equal(code, 5);
    const seen = Object.fromEntries(
      (await Deno.readTextFile(`${dir}/env.txt`)).trim().split("\n").map((l) => {
        const i = l.indexOf("=");
        return [l.slice(0, i), l.slice(i + 1)];
      }),
    );
    const url = seen.HTTP_PROXY;
    assert.match(url, /^http:\/\/unit-[0-9a-f]{16}:[0-9a-f]{32}@127\.0\.0\.1:\d+$/);
    for (const n of ["http_proxy", "ALL_PROXY", "all_proxy"]) {
      assert.equal(seen[n], url);
    }
    assert.equal(seen.HTTPS_PROXY, "http://corp.example:3128", "the user's value is kept");
    // In both spellings: curl and Python read https_proxy first, Go HTTPS_PROXY (issue 16).
    assert.equal(seen.https_proxy, "http://corp.example:3128", "and its twin agrees");
    assert.equal(seen.NO_PROXY, "localhost,127.0.0.1,::1", "an empty value is replaced");
    assert.equal(seen.NODE_USE_ENV_PROXY, "1");
    assert.equal(
      seen.SSL_CERT_FILE,
      Deno.env.get("SSL_CERT_FILE"),
      "untouched without interception",
    );
    const err = io.err.join("");
    assert.match(err, /warning: kept HTTPS_PROXY, https_proxy from the environment/);
    assert.match(err, /agentgate run: session unit-[0-9a-f]{16} through http:\/\/127\.0\.0\.1:\d+/);
    const report = JSON.parse(await Deno.readTextFile(`${dir}/r.json`));
    assert.equal(report.filter.session, /session (\S+)/.exec(err)![1]);
    assert.equal(report.totals.requests, 0);

    const missing = memoryIo({ cwd: dir });
    assert.equal(await run(["--report", "none", "--", "no-such-command-4a7c"], missing), 127);
    assert.match(missing.err.join(""), /command not found: "no-such-command-4a7c"/);
    assert.equal(await run(["--report", "none", "--", dir], memoryIo({ cwd: dir })), 126);
  });
});

Deno.test("run: an unreachable --proxy fails before the command starts", async () => {
  await withDir(async (dir) => {
    const io = memoryIo({ cwd: dir });
    const code = await run(["--proxy", "http://127.0.0.1:9", "--", "sh", "-c", "touch ran"], io);
    assert.equal(code, 1);
    assert.match(io.err.join(""), /cannot reach the proxy at http:\/\/127\.0\.0\.1:9/);
    await assert.rejects(() => Deno.stat(`${dir}/ran`));
  });
});

Deno.test("run: certificate variables the user set are extended with the CA, not lost", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-trust-" });
  try {
    const ca = await loadOrCreateCA(`${dir}/ca`);
    const corp = await loadOrCreateCA(`${dir}/corp`);
    await Deno.writeTextFile(`${dir}/empty.pem`, "nothing here\n");
    const user: Record<string, string> = {
      SSL_CERT_FILE: "corp/ca.pem", // relative to the cwd
      NODE_EXTRA_CA_CERTS: `${dir}/corp/ca.pem`,
      DENO_CERT: `${dir}/empty.pem`,
      PIP_CERT: `${dir}/missing.pem`,
    };
    await Deno.mkdir(`${dir}/out`);
    const t = await trustVariables(ca, { env: (n) => user[n], cwd: dir }, false, `${dir}/out`);
    const certs = async (f: string) =>
      (await Deno.readTextFile(f)).match(/-----BEGIN CERTIFICATE-----/g)!.length;
    // SSL_CERT_FILE and NODE_EXTRA_CA_CERTS name the same file: one copy, corp CA + ours.
    assert.equal(t.vars.SSL_CERT_FILE, `${dir}/out/bundle-1.pem`);
    assert.equal(t.vars.NODE_EXTRA_CA_CERTS, t.vars.SSL_CERT_FILE);
    const extendedText = await Deno.readTextFile(t.vars.SSL_CERT_FILE);
    assert.ok(
      extendedText.includes(corp.certPem.trim()) && extendedText.includes(ca.certPem.trim()),
    );
    assert.equal(await certs(t.vars.SSL_CERT_FILE), 2);
    assert.deepEqual(t.extended, ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"]);
    // Unset: the system bundle with our CA; the CA alone for runtimes that add to their roots.
    assert.equal(t.vars.REQUESTS_CA_BUNDLE, `${dir}/out/bundle.pem`);
    assert.ok((await certs(t.vars.REQUESTS_CA_BUNDLE)) > 10);
    assert.equal(t.vars.DENO_CERT, ca.certPath);
    assert.deepEqual(t.replaced.map(([n]) => n), ["PIP_CERT", "DENO_CERT"]);
    assert.equal(t.vars.PIP_CERT, `${dir}/out/bundle.pem`);
    assert.match(t.replaced[1][1], /holds no PEM certificate/);

    await Deno.mkdir(`${dir}/out2`);
    const o = await trustVariables(ca, { env: (n) => user[n], cwd: dir }, true, `${dir}/out2`);
    assert.equal(o.vars.SSL_CERT_FILE, `${dir}/out2/bundle.pem`);
    assert.equal(o.vars.NODE_EXTRA_CA_CERTS, ca.certPath);
    assert.deepEqual([o.extended, o.replaced], [[], []]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
