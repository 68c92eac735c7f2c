/**
 * The first hour with common clients (issue 16): real npm with an npmrc
 * `cafile` against a local registry stand-in behind interception, a client
 * that rejects the agentgate CA without a TLS alert, and the environment
 * `run` and `env` hand out (NO_PROXY in both spellings, `env --unset`
 * restoring what the shell had).
 */
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import {
  agentgateArgs,
  auditRows,
  MAIN,
  startOrigin,
  startProxy,
  testPki,
  waitFor,
  waitForRows,
} from "./helpers.ts";

const dec = new TextDecoder();

async function sh(
  cmd: string[],
  opts: { cwd: string; env?: Record<string, string>; clearEnv?: boolean },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    clearEnv: opts.clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A package tarball made by `npm pack` (offline), with the integrity npm computed. */
async function packTiny(dir: string): Promise<{ tgz: Uint8Array; integrity: string }> {
  await Deno.mkdir(`${dir}/src`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/src/package.json`,
    JSON.stringify({ name: "tiny-pkg", version: "1.0.0", main: "index.js" }),
  );
  await Deno.writeTextFile(`${dir}/src/index.js`, "module.exports = 42;\n");
  const r = await sh(["npm", "pack", "--json", "--pack-destination", dir], { cwd: `${dir}/src` });
  assert.equal(r.code, 0, r.stderr);
  const [meta] = JSON.parse(r.stdout);
  return { tgz: await Deno.readFile(`${dir}/${meta.filename}`), integrity: meta.integrity };
}

/**
 * An npm registry stand-in for one package on 127.0.0.1 (HTTPS with a test
 * CA), reached through agentgate as registry.example.test.
 */
async function registry(dir: string) {
  const pki = await testPki(["registry.example.test"]);
  const pkg = await packTiny(dir);
  const origin = await startOrigin((req, res) => {
    if (req.url === "/tiny-pkg") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        name: "tiny-pkg",
        "dist-tags": { latest: "1.0.0" },
        versions: {
          "1.0.0": {
            name: "tiny-pkg",
            version: "1.0.0",
            main: "index.js",
            dist: {
              tarball: "https://registry.example.test/tiny-pkg/-/tiny-pkg-1.0.0.tgz",
              integrity: pkg.integrity,
            },
          },
        },
      }));
    } else if (req.url === "/tiny-pkg/-/tiny-pkg-1.0.0.tgz") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(pkg.tgz);
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":"not found"}');
    }
  }, { cert: pki.cert, key: pki.key });
  await Deno.writeTextFile(`${dir}/origin-ca.pem`, pki.caPem);
  return { origin, pki };
}

/** A CA of "the company", the only one the project's npmrc trusts (as in CI images). */
async function corpCa(dir: string): Promise<string> {
  const pki = await testPki(["corp.example.test"]);
  await Deno.writeTextFile(`${dir}/corp-ca.pem`, pki.caPem);
  return `${dir}/corp-ca.pem`;
}

const policy = (port: number) =>
  `version: 1
default: deny
tls:
  intercept: [registry.example.test]
  ca_dir: ./ca
  upstream_ca: ./origin-ca.pem
upstream:
  resolve: { registry.example.test: 127.0.0.1:${port} }
rules:
  - name: registry
    match: registry.example.test
    action: allow
audit: { path: ./audit.db }
`;

/** A project whose .npmrc names the registry stand-in and a cafile; npm retries nothing. */
async function npmProject(dir: string, cafile: string): Promise<string> {
  const app = `${dir}/app`;
  await Deno.mkdir(app, { recursive: true });
  await Deno.writeTextFile(`${app}/package.json`, '{ "name": "app", "version": "1.0.0" }\n');
  await Deno.writeTextFile(
    `${app}/.npmrc`,
    [
      "registry=https://registry.example.test/",
      `cafile=${cafile}`,
      "fetch-retries=0",
      "fetch-timeout=20000",
      "audit=false",
      "fund=false",
      "update-notifier=false",
      "package-lock=false",
      `cache=${dir}/npm-cache`,
      "",
    ].join("\n"),
  );
  return app;
}

Deno.test("npm with an npmrc cafile installs through interception under agentgate run", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-npm-" });
  const { origin } = await registry(dir);
  try {
    await Deno.writeTextFile(`${dir}/agentgate.yaml`, policy(origin.port));
    const app = await npmProject(dir, await corpCa(dir));
    const r = await sh(
      [
        Deno.execPath(),
        ...agentgateArgs(),
        "run",
        "--config",
        `${dir}/agentgate.yaml`,
        "--report",
        "none",
        "--",
        "npm",
        "install",
        "tiny-pkg",
      ],
      // No user npmrc of this machine's user; the project's .npmrc has the cafile.
      { cwd: app, env: { npm_config_userconfig: `${dir}/user-npmrc`, NO_COLOR: "1" } },
    );
    assert.equal(r.code, 0, r.stderr);
    const installed = JSON.parse(
      await Deno.readTextFile(`${app}/node_modules/tiny-pkg/package.json`),
    );
    assert.equal(installed.version, "1.0.0");
    const rows = auditRows(`${dir}/audit.db`, "host = 'registry.example.test'");
    assert.deepEqual(
      rows.filter((x) => x.method === "GET").map((x) => [x.path, x.decision, x.status]),
      [["/tiny-pkg", "allow", 200], ["/tiny-pkg/-/tiny-pkg-1.0.0.tgz", "allow", 200]],
    );
    assert.ok(rows.every((x) => x.decision !== "error"), JSON.stringify(rows));
  } finally {
    await origin.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("npm that rejects the agentgate CA (no TLS alert) is recorded as such", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-npm-" });
  const { origin } = await registry(dir);
  const proxy = await startProxy({
    files: { "origin-ca.pem": await Deno.readTextFile(`${dir}/origin-ca.pem`) },
    config: policy(origin.port),
  });
  try {
    // npm straight at the proxy, trusting only the cafile: it cannot verify the leaf.
    const app = await npmProject(dir, await corpCa(dir));
    const r = await sh(["npm", "install", "tiny-pkg"], {
      cwd: app,
      env: {
        npm_config_userconfig: `${dir}/user-npmrc`,
        HTTPS_PROXY: proxy.url,
        HTTP_PROXY: proxy.url,
        NO_PROXY: "",
      },
    });
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify the first certificate/,
    );
    const rows = await waitFor(() => {
      const x = auditRows(proxy.auditPath, "method = 'CONNECT'");
      return x.length > 0 ? x : null;
    }, "the tunnel's row");
    // Never an ordinary tunnel: each attempt says why npm failed.
    for (const row of rows) {
      assert.deepEqual(
        [row.host, row.decision, row.reason],
        ["registry.example.test", "error", "client rejected the agentgate CA"],
        JSON.stringify(row),
      );
    }
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await origin.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("env --unset restores what the shell had; a second env keeps the first record", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-env-" });
  try {
    const corp = await corpCa(dir);
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      "version: 1\ntls: { intercept: [api.example.test], ca_dir: ./ca }\naudit: { path: ./a.db }\n",
    );
    const agentgate =
      `'${Deno.execPath()}' run -A ${MAIN} env --shell bash --config ${dir}/agentgate.yaml`;
    const show =
      'echo "[$SSL_CERT_FILE][$NODE_EXTRA_CA_CERTS][$PIP_CERT][$HTTPS_PROXY][$NO_PROXY]' +
      '[${http_proxy-unset}][${CARGO_HTTP_CAINFO-unset}][${AGENTGATE_ENV_RESTORE-unset}]"';
    const script = [
      `export SSL_CERT_FILE=${corp} NODE_EXTRA_CA_CERTS=${corp} PIP_CERT=${corp}`,
      "export HTTPS_PROXY=http://corp.example:3128 NO_PROXY=corp.internal",
      `eval "$(${agentgate})"`,
      // The user's CA is still trusted, with agentgate's added (as `run` does).
      'grep -c "BEGIN CERTIFICATE" "$SSL_CERT_FILE"',
      'echo "$HTTPS_PROXY"',
      `eval "$(${agentgate})"`,
      `eval "$(${agentgate} --unset)"`,
      show,
    ].join("\n");
    // A clean environment (HOME and PATH only: Deno finds its cache under HOME).
    const r = await sh(["bash", "-c", script], {
      cwd: dir,
      env: { HOME: Deno.env.get("HOME") ?? dir, PATH: Deno.env.get("PATH") ?? "" },
      clearEnv: true,
    });
    assert.equal(r.code, 0, r.stderr);
    const [certs, during, after] = r.stdout.trim().split("\n");
    assert.equal(certs, "2", "the corp CA and the agentgate CA");
    assert.equal(during, "http://127.0.0.1:4100");
    assert.equal(
      after,
      `[${corp}][${corp}][${corp}][http://corp.example:3128][corp.internal][unset][unset][unset]`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("run: NO_PROXY and no_proxy carry the same list, so curl and Python agree with Go", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-noproxy-" });
  // An origin on 127.0.0.2 that the user's NO_PROXY sends around the proxy.
  const server = http.createServer((_q, res) => res.end("direct"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.2", () => r()));
  const origin = {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
  try {
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      "version: 1\ndefault: log\naudit: { path: ./audit.db }\n",
    );
    const url = `http://127.0.0.2:${origin.port}/x`;
    const r = await sh(
      [
        Deno.execPath(),
        ...agentgateArgs(),
        "run",
        "--config",
        `${dir}/agentgate.yaml`,
        "--report",
        "none",
        "--",
        "sh",
        "-c",
        `echo "[$NO_PROXY][$no_proxy]"; curl -sS -f ${url}; echo; ` +
        `python3 -c "import urllib.request; print(urllib.request.urlopen('${url}').read().decode())"`,
      ],
      { cwd: dir, env: { NO_PROXY: "127.0.0.2", NO_COLOR: "1" } },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      "[localhost,127.0.0.1,::1,127.0.0.2][localhost,127.0.0.1,::1,127.0.0.2]\ndirect\ndirect\n",
    );
    assert.match(r.stderr, /warning: kept NO_PROXY, no_proxy from the environment/);
    assert.deepEqual(auditRows(`${dir}/audit.db`), [], "both went around the proxy");
  } finally {
    await origin.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/**
 * A Node client: CONNECT through the proxy, then TLS to api.example.test with
 * `maxVersion`, trusting `ca` (or Node's roots), then close after `idleMs`
 * without a request. Prints the TLS error code, or "secure".
 */
const NODE_TLS = `
const http = require("http"), tls = require("tls");
const [port, maxVersion, caFile, idleMs] = process.argv.slice(2);
const req = http.request({ host: "127.0.0.1", port: Number(port), method: "CONNECT", path: "api.example.test:443" });
req.on("connect", (_res, socket) => {
  const opts = { socket, servername: "api.example.test", maxVersion };
  if (caFile !== "-") opts.ca = [require("fs").readFileSync(caFile, "utf8")];
  const t = tls.connect(opts, () => {
    console.log("secure");
    setTimeout(() => t.destroy(), Number(idleMs));
  });
  t.on("error", (e) => console.log(e.code));
});
req.end();
`;

Deno.test("the rule for a silent CA rejection: Node over TLS 1.2 and 1.3; an idle client is not one", async () => {
  const proxy = await startProxy({
    config: `version: 1
default: log
tls: { intercept: [api.example.test], ca_dir: ./ca }
audit: { path: ./audit.db }
`,
  });
  try {
    await Deno.writeTextFile(`${proxy.dir}/client.cjs`, NODE_TLS);
    const node = (...args: string[]) =>
      sh(["node", `${proxy.dir}/client.cjs`, String(proxy.port), ...args], { cwd: proxy.dir });
    // Node checks the certificate after the handshake and closes without an alert.
    for (const version of ["TLSv1.3", "TLSv1.2"]) {
      const r = await node(version, "-", "0");
      assert.equal(r.stdout.trim(), "UNABLE_TO_VERIFY_LEAF_SIGNATURE", r.stderr);
    }
    // A client that trusts the CA but asks nothing for 1.5 s is an ordinary (idle) tunnel.
    const idle = await node("TLSv1.3", `${proxy.dir}/ca/ca.pem`, "1500");
    assert.equal(idle.stdout.trim(), "secure", idle.stderr);
    const rows = await waitForRows(proxy.auditPath, 3, "method = 'CONNECT'");
    assert.deepEqual(rows.map((r) => [r.decision, r.reason, r.error]), [
      [
        "error",
        "client rejected the agentgate CA",
        "client TLS handshake: ECONNRESET (closed without an alert)",
      ],
      [
        "error",
        "client rejected the agentgate CA",
        "client closed right after the TLS handshake, without a request or an alert",
      ],
      ["log", "no rule matched (default: log)", "client sent no request"],
    ]);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
  }
});

Deno.test("serve: under proxy.auth the client lines carry a TOKEN placeholder, never a token", async () => {
  const proxy = await startProxy({
    config: `version: 1
proxy: { auth: [{ token_env: AG_TOKEN_16, label: containers }] }
audit: { path: ./audit.db }
`,
    env: { AG_TOKEN_16: "s3cret-token-16" },
  });
  try {
    // The export lines on stdout (sourceable), the prose and the env line on stderr. The banner
    // is printed after the listen line startProxy returns at: wait for its last lines.
    await waitFor(
      () =>
        proxy.stderr.join("\n").includes("agentgate env --config") &&
        proxy.stdout.join("\n").includes("export http_proxy="),
      "the banner's env and export lines",
    );
    const out = proxy.stdout.join("\n") + "\n";
    const err = proxy.stderr.join("\n");
    const p = `http://TOKEN@127.0.0.1:${proxy.port}`;
    assert.equal(
      out,
      `  export HTTP_PROXY=${p} HTTPS_PROXY=${p}\n  export http_proxy=${p} https_proxy=${p}\n`,
    );
    assert.match(err, /in place of TOKEN \(labels: containers\):/);
    assert.ok(
      err.includes(`  eval "$(agentgate env --config ${proxy.dir}/agentgate.yaml --proxy ${p})"`),
      err,
    );
    assert.ok(!out.includes("s3cret-token-16") && !proxy.stderr.join("\n").includes("s3cret"));
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
  }
});

Deno.test("every wrong credential is a clear error with exit 1: env --proxy, env --mint, run --proxy", async () => {
  const proxy = await startProxy({
    config: `version: 1
default: log
proxy: { auth: [{ token: right-token-16, label: ci }] }
dashboard: { token: adm1n-16 }
audit: { path: ./audit.db }
`,
  });
  const cli = (args: string[], env: Record<string, string> = {}) =>
    sh([Deno.execPath(), "run", "-A", MAIN, ...args], {
      cwd: proxy.dir,
      env: { NO_COLOR: "1", AGENTGATE_DASHBOARD_TOKEN: "", ...env },
    });
  const config = ["--config", `${proxy.dir}/agentgate.yaml`];
  const at = `127.0.0.1:${proxy.port}`;
  try {
    // A proxy.auth token the proxy does not know: no lines to eval, a reason.
    const wrong = await cli(["env", ...config, "--proxy", `http://wrong-token@${at}`]);
    assert.equal(wrong.code, 1);
    assert.equal(wrong.stdout, "");
    assert.match(
      wrong.stderr,
      /refused the credentials in --proxy \(407: invalid proxy credentials\)/,
    );
    const right = await cli([
      "env",
      ...config,
      "--shell",
      "bash",
      "--proxy",
      `http://right-token-16@${at}`,
    ]);
    assert.equal(right.code, 0, right.stderr);
    assert.match(right.stdout, /^export HTTP_PROXY='http:\/\/right-token-16@127\.0\.0\.1:\d+'$/m);
    // A proxy that is not running (yet) cannot say: the lines are printed, with a warning.
    const gone = await cli(["env", ...config, "--proxy", "http://some-token@127.0.0.1:9"]);
    assert.equal(gone.code, 0, gone.stderr);
    assert.match(
      gone.stderr,
      /warning: could not check the credentials in --proxy with http:\/\/127\.0\.0\.1:9/,
    );
    // Minting needs the admin token: wrong or missing, the command never runs.
    const mint = await cli(["env", ...config, "--proxy", `http://${at}`, "--mint"], {
      AGENTGATE_DASHBOARD_TOKEN: "nope",
    });
    assert.equal(mint.code, 1);
    assert.match(mint.stderr, /cannot mint a session on http:\/\/127\.0\.0\.1:\d+: 401/);
    for (const token of ["nope", ""]) {
      const run = await cli(
        ["run", "--proxy", `http://${at}`, "--", "touch", `${proxy.dir}/ran`],
        { AGENTGATE_DASHBOARD_TOKEN: token },
      );
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, /cannot mint a session on .*: 401: .*set AGENTGATE_DASHBOARD_TOKEN/);
      await assert.rejects(() => Deno.stat(`${proxy.dir}/ran`), Deno.errors.NotFound);
    }
    // The refused token was presented to the proxy: it is in the audit like any refusal.
    const [row] = await waitForRows(proxy.auditPath, 1, "status = 407");
    assert.deepEqual([row.decision, row.reason, row.session], [
      "deny",
      "invalid proxy credentials",
      null,
    ]);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
  }
});
