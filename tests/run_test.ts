/**
 * `agentgate run` and `agentgate env` end to end: main.ts spawned as a real
 * process, real children (curl, python3, deno, git) that find the proxy and
 * the CA through the environment alone, a local HTTPS origin reached through
 * TLS interception, and the audit read back per session.
 */
import assert from "node:assert/strict";
import {
  auditRows,
  MAIN,
  RUN_FLAGS,
  startOrigin,
  startProxy,
  testPki,
  waitFor,
} from "./helpers.ts";
import { gitHttpBackend, gitRepo } from "./support/git_backend.ts";

const dec = new TextDecoder();

/** The origin: git.example.test serves git, everything else echoes what it saw. */
async function setup() {
  const pki = await testPki(["api.example.test", "git.example.test"]);
  const repo = await gitRepo();
  const git = gitHttpBackend(repo.root);
  const origin = await startOrigin((req, res) => {
    if (req.headers.host?.startsWith("git.example.test")) return git(req, res);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ path: req.url, ua: req.headers["user-agent"] ?? null }));
  }, { cert: pki.cert, key: pki.key });
  const dir = await Deno.makeTempDir({ prefix: "agentgate-run-e2e-" });
  await Deno.writeTextFile(`${dir}/origin-ca.pem`, pki.caPem);
  const policy = (extra = "") =>
    `version: 1
default: deny
${extra}tls:
  intercept: [api.example.test, git.example.test]
  ca_dir: ./ca
  upstream_ca: ./origin-ca.pem
upstream:
  resolve:
    api.example.test: 127.0.0.1:${origin.port}
    git.example.test: 127.0.0.1:${origin.port}
audit: { path: ./audit.db }
rules:
  - name: admin
    match: api.example.test/admin/**
    action: deny
    reason: no admin
  - name: api
    match: api.example.test
    action: allow
  - name: git
    match: git.example.test/repo.git/**
    action: allow
`;
  await Deno.writeTextFile(`${dir}/agentgate.yaml`, policy());
  return {
    dir,
    origin,
    repo,
    pki,
    policy,
    async dispose() {
      await origin.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(repo.root, { recursive: true }).catch(() => {});
    },
  };
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The session id `run` announced. */
  session: string;
}

/** A running `agentgate run`, with its output collected. */
function spawnRun(
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; timeoutMs?: number },
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...RUN_FLAGS, MAIN, "run", ...args],
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stdout = "";
  let stderr = "";
  const pump = async (s: ReadableStream<Uint8Array>, to: (t: string) => void) => {
    for await (const c of s.pipeThrough(new TextDecoderStream())) to(c);
  };
  const done = Promise.all([
    pump(child.stdout, (t) => (stdout += t)),
    pump(child.stderr, (t) => (stderr += t)),
  ]);
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
  }, opts.timeoutMs ?? 60_000);
  const result: Promise<RunResult> = (async () => {
    const status = await child.status;
    await done;
    clearTimeout(timer);
    const session = /agentgate run: session (\S+) through/.exec(stderr)?.[1] ?? "";
    return { code: status.code, stdout, stderr, session };
  })();
  return { child, result, output: () => ({ stdout, stderr }) };
}

function runAgentgate(
  args: string[],
  opts: { cwd: string; env?: Record<string, string> },
): Promise<RunResult> {
  return spawnRun(args, opts).result;
}

const rowsOf = (audit: string, session: string) =>
  auditRows(audit, `session = '${session.replace(/'/g, "''")}'`);

Deno.test("run: curl, python, deno and git find the proxy and the CA on their own", async (t) => {
  const env = await setup();
  const audit = `${env.dir}/audit.db`;
  try {
    const check = async (
      label: string,
      cmd: string[],
      path: string,
      agent: RegExp,
    ): Promise<RunResult> => {
      const r = await runAgentgate(["--label", label, "--", ...cmd], { cwd: env.dir });
      assert.equal(r.code, 0, `${label}: ${r.stderr}`);
      assert.match(r.session, new RegExp(`^${label}-[0-9a-f]{16}$`));
      const rows = rowsOf(audit, r.session);
      const inner = rows.filter((x) => x.method !== "CONNECT");
      assert.ok(inner.length >= 1, `${label}: ${JSON.stringify(rows)}`);
      for (const row of rows) {
        assert.equal(row.label, label);
        // The tunnel is logged; each request inside it is decided on its own.
        assert.equal(row.decision, row.method === "CONNECT" ? "log" : "allow", JSON.stringify(row));
      }
      assert.ok(rows.some((x) => x.method === "CONNECT"), "the tunnel is in the session too");
      assert.ok(inner.some((x) => x.path === path), `${label}: ${JSON.stringify(inner)}`);
      const headers = JSON.parse(String(inner[0].headers));
      assert.match(headers["user-agent"], agent);
      // The report on stderr is about this session.
      assert.match(
        r.stderr,
        new RegExp(`agentgate report: session ${r.session} \\(label ${label}\\)`),
      );
      assert.match(r.stderr, /0 denied/);
      return r;
    };

    await t.step("curl without flags", async () => {
      const r = await check(
        "curl",
        ["curl", "-sS", "-f", "https://api.example.test/v1/curl"],
        "/v1/curl",
        /^curl\//,
      );
      assert.equal(JSON.parse(r.stdout).path, "/v1/curl", "the child's stdout is its own");
    });

    await t.step("python3 urllib", async () => {
      const r = await check(
        "python",
        [
          "python3",
          "-c",
          "import urllib.request; print(urllib.request.urlopen('https://api.example.test/v1/python').read().decode())",
        ],
        "/v1/python",
        /^Python-urllib\//,
      );
      assert.equal(JSON.parse(r.stdout).path, "/v1/python");
    });

    await t.step("deno fetch", async () => {
      const r = await check(
        "deno",
        [
          Deno.execPath(),
          "eval",
          "const r = await fetch('https://api.example.test/v1/deno'); console.log(await r.text())",
        ],
        "/v1/deno",
        /^Deno\//,
      );
      assert.equal(JSON.parse(r.stdout).path, "/v1/deno");
    });

    await t.step(
      "git ls-remote over smart HTTP (credentials after the 407 challenge)",
      async () => {
        const r = await check(
          "git",
          ["git", "ls-remote", "https://git.example.test/repo.git"],
          "/repo.git/info/refs",
          /^git\//,
        );
        assert.match(r.stdout, new RegExp(`^${env.repo.sha}\\s+HEAD$`, "m"));
        assert.match(r.stdout, new RegExp(`^${env.repo.sha}\\s+refs/heads/main$`, "m"));
        // git (libcurl "anyauth") sent its credentials only after a 407 challenge.
        const challenged = auditRows(audit, "status = 407 AND host = 'git.example.test'");
        assert.ok(challenged.length >= 1 && challenged.every((x) => x.session === null));
        // The challenge is kept, but it is not a denial: the whole audit's report counts none.
        assert.ok(challenged.every((x) => x.decision === "challenge"), JSON.stringify(challenged));
        const report = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", MAIN, "report", "--audit", audit, "--format", "json"],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const doc = JSON.parse(dec.decode(report.stdout));
        const totals = doc.totals;
        assert.equal(totals.deny, 0, JSON.stringify(totals));
        // git's challenges come at CONNECT: tunnels, counted apart from requests.
        assert.equal(doc.tunnels.deny, 0, JSON.stringify(doc.tunnels));
        assert.equal(totals.challenge + doc.tunnels.challenge, challenged.length);
        assert.equal(
          doc.tunnels.challenge,
          challenged.filter((x) => x.method === "CONNECT").length,
        );
      },
    );

    await t.step("the child's trust bundle is a temporary file, removed afterwards", async () => {
      const r = await runAgentgate(
        ["--", "sh", "-c", 'echo "$SSL_CERT_FILE"; grep -c "BEGIN CERTIFICATE" "$SSL_CERT_FILE"'],
        { cwd: env.dir },
      );
      assert.equal(r.code, 0, r.stderr);
      const [file, count] = r.stdout.trim().split("\n");
      assert.match(file, /agentgate-run-[^/]+\/bundle(-\d+)?\.pem$/);
      assert.ok(Number(count) > 10, "system roots and the CA");
      await assert.rejects(() => Deno.stat(file), Deno.errors.NotFound);
      const sessions = new Set(auditRows(audit, "session IS NOT NULL").map((x) => x.session));
      assert.equal(sessions.size, 4, "one session per run that made requests");
    });
  } finally {
    await env.dispose();
  }
});

Deno.test("run: --fail-on-deny, exit codes, and the GitHub step summary", async (t) => {
  const env = await setup();
  try {
    await t.step(
      "a denied request makes --fail-on-deny exit 3 while the child exited 0",
      async () => {
        const summary = `${env.dir}/summary.md`;
        await Deno.writeTextFile(summary, "# earlier step\n");
        const r = await runAgentgate(
          [
            "--label",
            "ci",
            "--fail-on-deny",
            "--report",
            "markdown",
            "--",
            "curl",
            "-s",
            "https://api.example.test/admin/users",
          ],
          { cwd: env.dir, env: { GITHUB_STEP_SUMMARY: summary } },
        );
        assert.equal(r.code, 3, r.stderr);
        assert.equal(JSON.parse(r.stdout).reason, "no admin", "curl printed the 403 body");
        assert.match(r.stderr, /^### ❌ agentgate: 1 request denied$/m);
        assert.match(r.stderr, /1 request\(s\) denied \(--fail-on-deny\): exit 3/);
        const md = await Deno.readTextFile(summary);
        assert.ok(md.startsWith("# earlier step\n### ❌ agentgate: 1 request denied\n"), md);
        assert.ok(md.includes(`session **${r.session}** (label ci)`), md);
        assert.ok(
          md.includes("| deny | GET https://api.example.test/admin/users | admin | no admin | 1 |"),
          md,
        );
        // The intercepted tunnel is a tunnel, not a logged request (was "| 2 | 0 | 1 | 1 |").
        assert.ok(md.includes("| api.example.test | 1 | 0 | 0 | 1 | 0 | 0 | 1 |"), md);
      },
    );

    await t.step("the child's own failure wins", async () => {
      const r = await runAgentgate(
        [
          "--fail-on-deny",
          "--",
          "sh",
          "-c",
          "curl -s https://api.example.test/admin/x >/dev/null; exit 7",
        ],
        { cwd: env.dir },
      );
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.session, /^[0-9a-f]{16}$/, "no label: the id alone");
      assert.match(
        r.stderr,
        /Denials \(1\)\n {2}deny {8}GET https:\/\/api\.example\.test\/admin\/x/,
      );
    });

    await t.step("without --fail-on-deny a denial does not change the exit code", async () => {
      const r = await runAgentgate(
        [
          "--report",
          "json",
          "--",
          "curl",
          "-s",
          "-o",
          "/dev/null",
          "https://api.example.test/admin/y",
        ],
        { cwd: env.dir },
      );
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stderr.slice(r.stderr.indexOf("{\n")));
      assert.equal(report.totals.deny, 1);
      assert.equal(report.denials[0].path, "/admin/y");
    });

    await t.step("a missing command is 127", async () => {
      const r = await runAgentgate(["--", "agentgate-no-such-command"], { cwd: env.dir });
      assert.equal(r.code, 127);
      assert.match(r.stderr, /command not found: "agentgate-no-such-command"/);
    });
  } finally {
    await env.dispose();
  }
});

Deno.test("run: SIGTERM to agentgate run reaches the child", async () => {
  const env = await setup();
  try {
    const marker = `${env.dir}/marker`;
    const run = spawnRun([
      "--label",
      "sig",
      "--",
      "sh",
      "-c",
      `trap 'echo got-term > "${marker}"; exit 0' TERM; echo ready; while :; do sleep 0.05; done`,
    ], { cwd: env.dir, timeoutMs: 30_000 });
    await waitFor(() => run.output().stdout.includes("ready"), "the child to start", 20_000);
    run.child.kill("SIGTERM");
    const r = await run.result;
    assert.equal(await Deno.readTextFile(marker), "got-term\n");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /agentgate report: session sig-/);
  } finally {
    await env.dispose();
  }
});

Deno.test("run: two runs sharing one --proxy are two sessions", async () => {
  const env = await setup();
  const proxy = await startProxy({
    files: { "origin-ca.pem": env.pki.caPem },
    config: env.policy("proxy: { auth: [shared-t0ken] }\ndashboard: { token: adm1n-t0ken }\n"),
  });
  try {
    const cfg = `${proxy.dir}/agentgate.yaml`;
    // Issue 20: the run mints its session through the API with the admin token
    // (it used to present the shared token with a session name of its choosing).
    const one = (label: string, url: string, admin: string | null) =>
      runAgentgate([
        "--proxy",
        url,
        "--config",
        cfg,
        "--label",
        label,
        "--report",
        "json",
        "--report-file",
        `${label}.json`,
        "--",
        "sh",
        "-c",
        `curl -sS -f https://api.example.test/v1/${label} && ` +
        // The command gets neither the admin token nor the shared proxy token.
        'echo "[${AGENTGATE_DASHBOARD_TOKEN-unset}${AGENTGATE_TOKEN-unset}]"',
      ], {
        cwd: env.dir,
        env: {
          AGENTGATE_TOKEN: "shared-t0ken",
          ...(admin === null ? {} : { AGENTGATE_DASHBOARD_TOKEN: admin }),
        },
      });
    const [a, b] = await Promise.all([
      one("alpha", `http://127.0.0.1:${proxy.port}`, "adm1n-t0ken"),
      one("beta", `http://x:shared-t0ken@127.0.0.1:${proxy.port}`, "adm1n-t0ken"),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(
      b.stderr,
      /agentgate run: warning: the credentials in --proxy are not used: the run mints its own session/,
    );
    assert.notEqual(a.session, b.session);
    for (const [r, label] of [[a, "alpha"], [b, "beta"]] as const) {
      assert.match(r.session, new RegExp(`^${label}-[0-9a-f]{16}$`));
      assert.ok(r.stdout.trim().endsWith("[unsetunset]"), r.stdout);
      const rows = rowsOf(proxy.auditPath, r.session);
      assert.deepEqual(rows.map((x) => x.method).sort(), ["CONNECT", "GET"]);
      assert.equal(rows.find((x) => x.method === "GET")!.path, `/v1/${label}`);
      assert.ok(rows.every((x) => x.label === label), JSON.stringify(rows));
      assert.deepEqual(rows.map((x) => x.decision).sort(), ["allow", "log"]);
      // The report came from the proxy's API, for this session only.
      const report = JSON.parse(await Deno.readTextFile(`${env.dir}/${label}.json`));
      assert.equal(report.filter.session, r.session);
      // The GET; its CONNECT is a tunnel, counted apart.
      assert.equal(report.totals.requests, 1);
      assert.equal(report.tunnels.requests, 1);
      assert.match(report.source, /\/_\/api\/audit$/);
      // The session was revoked when the run ended.
      const del = await fetch(`${proxy.url}/_/api/sessions/${r.session}`, {
        method: "DELETE",
        headers: { authorization: "Bearer adm1n-t0ken" },
      });
      assert.equal(del.status, 404);
      await del.body?.cancel();
    }
    const all = JSON.stringify(auditRows(proxy.auditPath));
    assert.ok(!all.includes("shared-t0ken"), "the token never reaches the audit");

    // Without the admin token no session can be minted: the run does not start the command.
    const no = await one("nope", `http://127.0.0.1:${proxy.port}`, null);
    assert.equal(no.code, 1);
    assert.match(
      no.stderr,
      /agentgate run: cannot mint a session on http:\/\/127\.0\.0\.1:\d+: 401: managing sessions needs the admin token.*\(set AGENTGATE_DASHBOARD_TOKEN to the proxy's dashboard\.token\)/,
    );
    assert.equal(auditRows(proxy.auditPath, "path = '/v1/nope'").length, 0);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await env.dispose();
  }
});

Deno.test("env: eval in bash sends curl through a running proxy, --unset restores the shell", async () => {
  const env = await setup();
  const proxy = await startProxy({
    files: { "origin-ca.pem": env.pki.caPem },
    config: env.policy("dashboard: { token: adm1n-t0ken }\n"),
  });
  try {
    const agentgate = `'${Deno.execPath()}' run -A ${MAIN}`;
    // Issue 20: the shell's session is minted (--mint), not named in --proxy.
    const script = [
      `eval "$(${agentgate} env --shell bash --config ${proxy.dir}/agentgate.yaml --proxy http://127.0.0.1:${proxy.port} --mint --label me)"`,
      "curl -sS -f https://api.example.test/v1/env; echo",
      `eval "$(${agentgate} env --shell bash --unset)"`,
      'echo "[${HTTPS_PROXY-unset}${SSL_CERT_FILE-unset}]"',
    ].join("\n");
    const out = await new Deno.Command("bash", {
      args: ["-c", script],
      cwd: env.dir,
      stdout: "piped",
      stderr: "piped",
      env: { AGENTGATE_DASHBOARD_TOKEN: "adm1n-t0ken" },
    }).output();
    const stdout = dec.decode(out.stdout);
    const stderr = dec.decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const [json, after] = stdout.trim().split("\n");
    assert.equal(JSON.parse(json).path, "/v1/env");
    // Back to what the shell had before (issue 16: restored, not deleted).
    const had = (n: string) => Deno.env.get(n) ?? "unset";
    assert.equal(after, `[${had("HTTPS_PROXY")}${had("SSL_CERT_FILE")}]`);
    const session = /agentgate env: session (me-[0-9a-f]{16}) until /.exec(stderr)?.[1];
    assert.ok(session, stderr);
    const rows = await waitFor(() => {
      const r = rowsOf(proxy.auditPath, session);
      return r.some((x) => x.path === "/v1/env") ? r : null;
    }, "the env request in the audit");
    assert.ok(rows.every((r) => r.label === "me"));
  } finally {
    await proxy.dispose();
    await env.dispose();
  }
});
