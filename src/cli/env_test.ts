import assert from "node:assert/strict";
import { memoryIo } from "./io.ts";
import { UsageError } from "./args.ts";
import {
  ALL_VARS,
  clientUrlFor,
  detectShell,
  env,
  environmentBefore,
  mergeEnvironment,
  NPM_CAFILE_VAR,
  parseProxyUrl,
  phantomEnvironment,
  proxyEnvironment,
  proxyUrlWith,
  RESTORE_VAR,
  restoreLines,
  setLines,
  type Shell,
  shellQuote,
  unsetLines,
} from "./env.ts";
import { prerequisite, type Tool } from "../../tests/support/prerequisites.ts";

const P = "http://ci-0a1b2c3d:t0k@127.0.0.1:4100";

Deno.test("env: the variables, in order; the bundle and CA only with interception", () => {
  assert.deepEqual(proxyEnvironment({ proxyUrl: P }), [
    ["HTTP_PROXY", P],
    ["HTTPS_PROXY", P],
    ["ALL_PROXY", P],
    ["http_proxy", P],
    ["https_proxy", P],
    ["all_proxy", P],
    ["NO_PROXY", "localhost,127.0.0.1,::1"],
    ["no_proxy", "localhost,127.0.0.1,::1"],
    ["NODE_USE_ENV_PROXY", "1"],
  ]);
  const tls = proxyEnvironment({
    proxyUrl: P,
    noProxy: ["localhost", ".corp"],
    bundle: "/b.pem",
    caCert: "/ca.pem",
  });
  assert.deepEqual(tls.slice(6), [
    ["NO_PROXY", "localhost,.corp"],
    ["no_proxy", "localhost,.corp"],
    ["NODE_USE_ENV_PROXY", "1"],
    ["SSL_CERT_FILE", "/b.pem"],
    ["REQUESTS_CA_BUNDLE", "/b.pem"],
    ["CURL_CA_BUNDLE", "/b.pem"],
    ["GIT_SSL_CAINFO", "/b.pem"],
    ["PIP_CERT", "/b.pem"],
    ["AWS_CA_BUNDLE", "/b.pem"],
    ["CARGO_HTTP_CAINFO", "/b.pem"],
    ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "/b.pem"],
    ["NODE_EXTRA_CA_CERTS", "/ca.pem"],
    ["DENO_CERT", "/ca.pem"],
  ]);
  // npm's own cafile variable comes only with an npm CA setting to extend (trustVariables).
  assert.deepEqual([...tls.map(([n]) => n), NPM_CAFILE_VAR], ALL_VARS);
});

Deno.test("env: values the user set are kept unless overridden; empty counts as unset", () => {
  const ours: [string, string][] = [["HTTP_PROXY", P], ["SSL_CERT_FILE", "/b"], ["NO_PROXY", "x"]];
  const user: Record<string, string> = { HTTP_PROXY: "http://corp:3128", NO_PROXY: "" };
  assert.deepEqual(mergeEnvironment(ours, (n) => user[n], false), {
    env: { HTTP_PROXY: "http://corp:3128", SSL_CERT_FILE: "/b", NO_PROXY: "x" },
    kept: ["HTTP_PROXY"],
  });
  assert.deepEqual(mergeEnvironment(ours, (n) => user[n], true), {
    env: { HTTP_PROXY: P, SSL_CERT_FILE: "/b", NO_PROXY: "x" },
    kept: [],
  });
  // The same value is not reported as kept.
  assert.deepEqual(
    mergeEnvironment(ours, (n) => (n === "HTTP_PROXY" ? P : undefined), false).kept,
    [],
  );
});

Deno.test("env: both spellings of a setting end up alike (curl and Python read one, Go the other)", () => {
  const ours = proxyEnvironment({ proxyUrl: P });
  const user: Record<string, string> = {
    HTTPS_PROXY: "http://corp:3128",
    no_proxy: ".corp.internal, localhost",
    NO_PROXY: "10.0.0.1",
  };
  const { env, kept } = mergeEnvironment(ours, (n) => user[n], false);
  assert.equal(env.HTTPS_PROXY, "http://corp:3128");
  assert.equal(env.https_proxy, "http://corp:3128");
  assert.equal(env.HTTP_PROXY, P);
  assert.equal(env.NO_PROXY, "localhost,127.0.0.1,::1,10.0.0.1,.corp.internal");
  assert.equal(env.no_proxy, env.NO_PROXY);
  assert.deepEqual(kept, ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]);
  // --override-env: ours, in both.
  const o = mergeEnvironment(ours, (n) => user[n], true);
  assert.equal(o.env.https_proxy, P);
  assert.equal(o.env.no_proxy, "localhost,127.0.0.1,::1");
});

Deno.test("env --unset: back to the recorded values; identifiers only; no record = unset all", () => {
  const rec = (v: unknown) => (n: string) => (n === RESTORE_VAR ? JSON.stringify(v) : undefined);
  assert.equal(
    restoreLines("bash", rec({ SSL_CERT_FILE: "/corp.pem", HTTP_PROXY: null, "X;rm -rf ~": "a" })),
    "export SSL_CERT_FILE='/corp.pem'\nunset HTTP_PROXY AGENTGATE_ENV_RESTORE\n",
  );
  assert.equal(restoreLines("bash", () => undefined), `unset ${ALL_VARS.join(" ")}\n`);
  assert.equal(
    restoreLines("bash", (n) => (n === RESTORE_VAR ? "not json" : undefined)),
    `unset ${ALL_VARS.join(" ")}\n`,
  );
  // What the shell had before agentgate: the record wins over the current value.
  const before = environmentBefore((n) =>
    n === RESTORE_VAR ? '{"SSL_CERT_FILE":"/corp.pem","PIP_CERT":null}' : "/now.pem"
  );
  assert.deepEqual([before("SSL_CERT_FILE"), before("PIP_CERT"), before("HOME")], [
    "/corp.pem",
    undefined,
    "/now.pem",
  ]);
});

const ODD = 'it\'s $HOME `id` \\ "q" ‘x’ \n2nd line %PATH%';

Deno.test("env: exact lines per shell, quoting odd characters", () => {
  const vars: [string, string][] = [["HTTP_PROXY", P], ["ODD", ODD]];
  assert.equal(
    setLines("bash", vars),
    `export HTTP_PROXY='${P}'\nexport ODD='it'\\''s $HOME \`id\` \\ "q" ‘x’ \n2nd line %PATH%'\n`,
  );
  assert.equal(setLines("zsh", vars), setLines("bash", vars));
  assert.equal(
    setLines("fish", vars),
    `set -gx HTTP_PROXY '${P}'\nset -gx ODD 'it\\'s $HOME \`id\` \\\\ "q" ‘x’ \n2nd line %PATH%'\n`,
  );
  assert.equal(
    setLines("powershell", vars),
    `$env:HTTP_PROXY = '${P}'\n$env:ODD = 'it''s $HOME \`id\` \\ "q" ‘‘x’’ \n2nd line %PATH%'\n`,
  );
  assert.equal(unsetLines("bash", ["A", "b"]), "unset A b\n");
  assert.equal(unsetLines("fish", ["A", "b"]), "set -e A b\n");
  assert.equal(
    unsetLines("powershell", ["A", "b"]),
    "Remove-Item Env:A -ErrorAction SilentlyContinue\nRemove-Item Env:b -ErrorAction SilentlyContinue\n",
  );
  assert.equal(shellQuote("bash", ""), "''");
});

for (
  const [shell, exe, print] of [
    ["bash", "bash", 'printf %s "$ODD"'],
    ["zsh", "zsh", 'printf %s "$ODD"'],
    ["fish", "fish", 'printf %s "$ODD"'],
    ["powershell", "pwsh", "[Console]::Out.Write($env:ODD)"],
  ] as [Shell, string, string][]
) {
  // bash is required (.ci/run); the others are skipped with a line saying how to get them.
  const tool = exe === "bash" ? null : prerequisite(exe as Tool);
  const name = `env: ${shell} reads back exactly what was set, then unsets it`;
  Deno.test({
    name: tool ? tool.testName(name) : name,
    ignore: tool !== null && !tool.found,
    fn: async () => {
      const script = setLines(shell, [["ODD", ODD]]) + print + "\n" + unsetLines(shell, ["ODD"]) +
        (shell === "powershell"
          ? "[Console]::Out.Write([string]$env:ODD)\n"
          : 'printf %s "$ODD"\n');
      const out = await new Deno.Command(exe, {
        args: ["-c", script],
        stdout: "piped",
        stderr: "piped",
        env: { ODD: "" },
      }).output();
      assert.equal(new TextDecoder().decode(out.stderr), "");
      assert.equal(new TextDecoder().decode(out.stdout), ODD);
    },
  });
}

Deno.test("env: proxy URLs", () => {
  assert.deepEqual(parseProxyUrl("http://ci:s3cret@127.0.0.1:4100"), {
    url: "http://ci:s3cret@127.0.0.1:4100",
    base: "http://127.0.0.1:4100",
    host: "127.0.0.1",
    port: 4100,
    token: "s3cret",
    user: "ci",
  });
  assert.deepEqual(parseProxyUrl("127.0.0.1:4100"), {
    url: "http://127.0.0.1:4100",
    base: "http://127.0.0.1:4100",
    host: "127.0.0.1",
    port: 4100,
    token: null,
    user: null,
  });
  const tokenOnly = parseProxyUrl("http://t%40k%3A1@[::1]:80");
  assert.deepEqual([tokenOnly.token, tokenOnly.user, tokenOnly.host, tokenOnly.port], [
    "t@k:1",
    null,
    "::1",
    80,
  ]);
  assert.equal(tokenOnly.base, "http://[::1]");
  assert.throws(() => parseProxyUrl("https://p:4100"), /plain HTTP, use http:\/\/p:4100/);
  assert.throws(() => parseProxyUrl("http://p:4100/x"), UsageError);
  assert.throws(() => parseProxyUrl("http://"), UsageError);
  assert.equal(
    proxyUrlWith("http://127.0.0.1:1", { user: "a-1", pass: "p@ss:/w" }),
    "http://a-1:p%40ss%3A%2Fw@127.0.0.1:1",
  );
  assert.equal(clientUrlFor({ host: "0.0.0.0", port: 1 }), "http://127.0.0.1:1");
  assert.equal(clientUrlFor({ host: "::", port: 1 }), "http://[::1]:1");
  assert.equal(clientUrlFor({ host: "10.0.0.2", port: 1 }), "http://10.0.0.2:1");
});

Deno.test("env: the shell comes from $SHELL", () => {
  const from = (sh?: string) => detectShell((n) => (n === "SHELL" ? sh : undefined));
  assert.equal(from("/usr/bin/zsh"), "zsh");
  assert.equal(from("/opt/homebrew/bin/fish"), "fish");
  assert.equal(from("/usr/bin/pwsh"), "powershell");
  assert.equal(from("/bin/bash"), "bash");
  assert.equal(from("/bin/dash"), "bash");
  if (Deno.build.os !== "windows") assert.equal(from(undefined), "bash");
});

Deno.test("env command: listen address, --proxy, --unset, interception bundle", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      "version: 1\nproxy: { listen: 127.0.0.1:4123 }\naudit: { path: ./a.db }\n",
    );
    let io = memoryIo({ cwd: dir });
    assert.equal(await env(["--shell", "bash"], io), 0);
    const plain = proxyEnvironment({ proxyUrl: "http://127.0.0.1:4123" });
    assert.equal(
      io.out.join(""),
      setLines("bash", [
        ...plain,
        // What each variable held before (nothing), for `env --unset` to restore.
        [RESTORE_VAR, JSON.stringify(Object.fromEntries(plain.map(([n]) => [n, null])))],
      ]),
    );
    assert.deepEqual(io.err, []);

    io = memoryIo({ cwd: dir, env: { SHELL: "/usr/bin/fish" } });
    assert.equal(await env(["--proxy", "http://me-0a1b2c3d:t@proxy.internal:4100"], io), 0);
    assert.match(io.out[0], /^set -gx HTTP_PROXY 'http:\/\/me-0a1b2c3d:t@proxy\.internal:4100'\n/);

    io = memoryIo({ cwd: dir });
    assert.equal(await env(["--unset", "--shell", "bash"], io), 0);
    assert.equal(io.out.join(""), `unset ${ALL_VARS.join(" ")}\n`);

    await Deno.writeTextFile(
      `${dir}/tls.yaml`,
      "version: 1\nproxy: { auth: [tok] }\ntls: { intercept: [api.example.test], ca_dir: ./ca }\n" +
        "audit: { path: ./a.db }\n",
    );
    io = memoryIo({ cwd: dir });
    assert.equal(await env(["--config", "tls.yaml", "--shell", "bash"], io), 0);
    const out = io.out.join("");
    assert.ok(out.includes(`export SSL_CERT_FILE='${dir}/ca/bundle.pem'\n`), out);
    assert.ok(out.includes(`export DENO_CERT='${dir}/ca/ca.pem'\n`), out);
    const bundle = await Deno.readTextFile(`${dir}/ca/bundle.pem`);
    assert.ok(bundle.includes(await Deno.readTextFile(`${dir}/ca/ca.pem`)));
    // Issue 20: a client no longer names its session; the hint is a token, or --mint.
    assert.match(
      io.err.join(""),
      /proxy\.auth.*--proxy http:\/\/TOKEN@HOST:PORT, or mint a session with --mint/,
    );

    await assert.rejects(() => env(["--shell", "tcsh"], memoryIo()), /expected one of bash/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("env: phantom variables, an .npmrc without the user's tokens, a git helper that answers with the phantom", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/user.npmrc`,
      "fund=false\n//registry.npmjs.org/:_authToken=npm_REALREALREAL\ncafile=" +
        `${dir}/corp.pem\n`,
    );
    await Deno.writeTextFile(
      `${dir}/corp.pem`,
      "-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----\n",
    );
    const vars = await phantomEnvironment([
      {
        name: "npm",
        phantom: "npm_agentgateAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        variables: ["NPM_TOKEN"],
        npmrc: "//registry.npmjs.org/",
        git: { hosts: [], username: "x-access-token" },
      },
      {
        name: "github",
        phantom: "ghp_agentgateBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        variables: ["GITHUB_TOKEN", "GH_TOKEN"],
        npmrc: null,
        git: { hosts: ["github.com"], username: "x-access-token" },
      },
    ], {
      env: (n) =>
        ({ NPM_CONFIG_USERCONFIG: `${dir}/user.npmrc`, GIT_CONFIG_COUNT: "2" } as Record<
          string,
          string
        >)[n],
      npmrcFile: `${dir}/out/npmrc`,
      trust: {
        caPem: "-----BEGIN CERTIFICATE-----\nAGENTGATE\n-----END CERTIFICATE-----",
        bundle: "/b.pem",
      },
    });
    const helper =
      "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' 'x-access-token' 'ghp_agentgateBBBBBBBBBBBBBBBBBBBBBBBBBBB'; }; f";
    assert.deepEqual(vars, [
      ["NPM_TOKEN", "npm_agentgateAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
      ["GITHUB_TOKEN", "ghp_agentgateBBBBBBBBBBBBBBBBBBBBBBBBBBB"],
      ["GH_TOKEN", "ghp_agentgateBBBBBBBBBBBBBBBBBBBBBBBBBBB"],
      ["NPM_CONFIG_USERCONFIG", `${dir}/out/npmrc`],
      ["npm_config_userconfig", `${dir}/out/npmrc`],
      // After the two the user set; the empty helper clears the ones configured before.
      ["GIT_CONFIG_KEY_2", "credential.https://github.com.helper"],
      ["GIT_CONFIG_VALUE_2", ""],
      ["GIT_CONFIG_KEY_3", "credential.https://github.com.helper"],
      ["GIT_CONFIG_VALUE_3", helper],
      ["GIT_CONFIG_COUNT", "4"],
    ]);
    assert.equal(
      await Deno.readTextFile(`${dir}/out/npmrc`),
      `fund=false\n//registry.npmjs.org/:_authToken=npm_agentgateAAAAAAAAAAAAAAAAAAAAAAAAAAA\ncafile=${dir}/out/npmrc.ca.pem\n`,
    );
    assert.equal((await Deno.stat(`${dir}/out/npmrc`)).mode! & 0o777, 0o600);
    assert.equal(
      await Deno.readTextFile(`${dir}/out/npmrc.ca.pem`),
      "-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nAGENTGATE\n-----END CERTIFICATE-----\n",
    );
    // The helper is what git runs: it answers with the phantom.
    // As git runs it (`/bin/sh -c`; the PATH may not name a shell).
    const out = await new Deno.Command("/bin/sh", {
      args: ["-c", `${helper.slice(1)} get`],
      stdout: "piped",
    })
      .output();
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "username=x-access-token\npassword=ghp_agentgateBBBBBBBBBBBBBBBBBBBBBBBBBBB\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
