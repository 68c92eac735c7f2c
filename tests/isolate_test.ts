/**
 * `agentgate run --isolate`: the command's only way out is the proxy. Tried
 * the way an agent would get around it: ignoring the proxy variables, a raw
 * socket to a public address, a Unix socket; while requests through the
 * proxy (plain and intercepted HTTPS, with the CA from the environment) are
 * decided and recorded. Where the machine cannot isolate, the test checks
 * the clear error instead.
 */
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { auditRows, MAIN, RUN_FLAGS, testPki } from "./helpers.ts";
import { isolationUnavailable } from "../src/cli/isolate.ts";

const unavailable = await isolationUnavailable({ env: (n) => Deno.env.get(n) });

/** An origin on 127.0.0.2 (outside NO_PROXY, so clients go through the proxy). */
async function origin(tls?: { cert: string; key: string }) {
  let hits = 0;
  const handler: http.RequestListener = (_q, r) => {
    hits++;
    r.end("hello from origin\n");
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.2", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    hits: () => hits,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** Run `agentgate run ARGS`; with `stopAfter`, SIGTERM once the command printed it. */
async function agentgateRun(
  args: string[],
  cwd: string,
  stopAfter?: string,
  env: Record<string, string> = {},
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...RUN_FLAGS, MAIN, "run", ...args],
    cwd,
    // The run's default audit goes to a home of the test's own, never ~/.agentgate.
    env: { NO_COLOR: "1", AGENTGATE_HOME: `${cwd}/home`, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // A run that hangs fails the test instead of the whole suite.
  const guard = setTimeout(() => child.kill("SIGKILL"), 90_000);
  const dec = new TextDecoder();
  let stdout = "";
  const reading = (async () => {
    for await (const chunk of child.stdout) {
      stdout += dec.decode(chunk, { stream: true });
      if (stopAfter !== undefined && stdout.includes(stopAfter)) {
        stopAfter = undefined;
        child.kill("SIGTERM");
      }
    }
  })();
  const [status, err] = await Promise.all([
    child.status,
    new Response(child.stderr).arrayBuffer(),
    reading,
  ]);
  clearTimeout(guard);
  const stderr = dec.decode(err);
  return {
    code: status.code,
    stdout,
    stderr,
    session: /agentgate run: session (\S+) through/.exec(stderr)?.[1] ?? "",
  };
}

Deno.test("run --isolate: where it cannot isolate, a clear error and the command never runs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // No bubblewrap on the PATH (an empty directory is the whole PATH).
    await Deno.mkdir(`${dir}/empty`);
    const r = await agentgateRun(["--isolate", "--", "sh", "-c", "echo ran"], dir, undefined, {
      PATH: `${dir}/empty`,
    });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      "agentgate run: --isolate: bubblewrap (bwrap) is not installed: install it " +
        "(Debian/Ubuntu: apt-get install bubblewrap)\n",
    );
    // And whatever this machine lacks, if anything, is said the same way.
    if (unavailable !== null) {
      const here = await agentgateRun(["--isolate", "--", "sh", "-c", "echo ran"], dir);
      assert.equal(here.code, 1);
      assert.equal(here.stderr, `agentgate run: --isolate: ${unavailable}\n`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "run --isolate: direct connections and Unix sockets fail; through the proxy is decided and recorded",
  ignore: unavailable !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const pki = await testPki(["127.0.0.2"]);
    const plain = await origin();
    const secure = await origin({ cert: pki.cert, key: pki.key });
    try {
      await Deno.writeTextFile(`${dir}/origin-ca.pem`, pki.caPem);
      await Deno.writeTextFile(
        `${dir}/agentgate.yaml`,
        `version: 1
default: deny
tls: { intercept: ["127.0.0.2"], ca_dir: ./ca, upstream_ca: ./origin-ca.pem }
audit: { path: ./audit.db }
rules:
  - { name: origin, match: "127.0.0.2/ok/**", action: allow }
`,
      );
      // Each line: what was tried, then its outcome, as the command sees it.
      const script = [
        `curl -sS --max-time 5 -o /dev/null -w 'proxied %{http_code}\\n' http://127.0.0.2:${plain.port}/ok/1`,
        `curl -sS --max-time 5 -o /dev/null -w 'intercepted %{http_code}\\n' https://127.0.0.2:${secure.port}/ok/2`,
        `curl -sS --max-time 5 -o /dev/null -w 'denied %{http_code}\\n' http://127.0.0.2:${plain.port}/no`,
        `curl -sS --max-time 5 --noproxy '*' http://127.0.0.2:${plain.port}/ok/3 >/dev/null 2>&1; echo "direct origin rc=$?"`,
        `curl -sS --max-time 5 --noproxy '*' https://example.com >/dev/null 2>&1; echo "direct example.com rc=$?"`,
        `curl -sS --max-time 5 --noproxy '*' http://93.184.215.14/ >/dev/null 2>&1; echo "direct ip rc=$?"`,
        `python3 -c 'import socket; socket.create_connection(("1.1.1.1", 53), timeout=5)' 2>/dev/null; echo "python 1.1.1.1:53 rc=$?"`,
        `python3 -c 'import socket; socket.socket(socket.AF_UNIX)' 2>&1 | tail -1`,
        `env -u HTTP_PROXY -u http_proxy -u ALL_PROXY -u all_proxy curl -sS --max-time 5 http://127.0.0.2:${plain.port}/ok/4 >/dev/null 2>&1; echo "unset proxy rc=$?"`,
      ].join("\n");
      const r = await agentgateRun(
        ["--isolate", "--report", "none", "--", "sh", "-c", script],
        dir,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split("\n"), [
        "proxied 200",
        "intercepted 200",
        "denied 403",
        "direct origin rc=7",
        "direct example.com rc=6",
        "direct ip rc=7",
        "python 1.1.1.1:53 rc=1",
        "PermissionError: [Errno 1] Operation not permitted",
        "unset proxy rc=7",
      ]);
      // Only the two requests agentgate allowed reached the origins.
      assert.equal(plain.hits() + secure.hits(), 2);
      const rows = auditRows(`${dir}/audit.db`, `session = '${r.session}' AND path IS NOT NULL`);
      assert.deepEqual(
        rows.map((x) => [x.scheme, x.path, x.decision, x.status]),
        [
          ["http", "/ok/1", "allow", 200],
          ["https", "/ok/2", "allow", 200],
          ["http", "/no", "deny", 403],
        ],
      );
    } finally {
      await plain.close();
      await secure.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run --isolate: the command's exit status, 127 when it is missing, and SIGTERM reaches it",
  ignore: unavailable !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      assert.equal((await agentgateRun(["--isolate", "--", "sh", "-c", "exit 7"], dir)).code, 7);
      const missing = await agentgateRun(["--isolate", "--", "no-such-command-x"], dir);
      assert.equal(missing.code, 127);
      assert.match(missing.stderr, /agentgate run: command not found: "no-such-command-x"/);
      // Started, then asked to stop: the command gets SIGTERM (bubblewrap would not pass it on).
      const stopped = await agentgateRun(
        [
          "--isolate",
          "--",
          "sh",
          "-c",
          'trap "echo got TERM; exit 42" TERM; echo up; sleep 30 & wait',
        ],
        dir,
        "up\n",
      );
      assert.equal(stopped.stdout, "up\ngot TERM\n");
      assert.equal(stopped.code, 42);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
