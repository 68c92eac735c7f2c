/**
 * The deno tasks a new user types first: `deno task start <command>` is
 * `agentgate <command>` (its permissions are enough for every command, and a
 * missing permission is one line, never a stack trace), and `deno task test`
 * says what it skipped.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT_DIR, runCli } from "./helpers.ts";

Deno.test("deno task start run -- CMD runs the command through agentgate (needs --allow-run)", async () => {
  const home = await Deno.makeTempDir({ prefix: "agentgate-task-" });
  try {
    const r = await runCli(
      ["run", "--report", "none", "--", "sh", "-c", 'printf "%s" "$HTTP_PROXY"'],
      { via: "task", env: { AGENTGATE_HOME: home } },
    );
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^http:\/\/[0-9a-f]{16}:[0-9a-f]{32}@127\.0\.0\.1:\d+$/);
    assert.match(r.err, /^agentgate run: session [0-9a-f]{16} through http:\/\/127\.0\.0\.1:\d+/);
    assert.doesNotMatch(r.err, /NotCapable|Uncaught|\n\s+at /);
    // The audit went to the agentgate home, not to the directory the task runs in.
    assert.ok((await Deno.stat(join(home, "agentgate.db"))).isFile);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("every command works through deno task start", async () => {
  const home = await Deno.makeTempDir({ prefix: "agentgate-task-" });
  const env = { AGENTGATE_HOME: home };
  try {
    const policy = join(home, "p.yaml");
    await Deno.writeTextFile(
      policy,
      "version: 1\ntls: { intercept: [api.example.test] }\nrules:\n" +
        "  - { name: api, match: api.example.test/v1/**, action: allow }\n",
    );
    await Deno.writeTextFile(
      join(home, "p_test.yaml"),
      "config: p.yaml\ntests:\n  - name: allowed\n    request: { url: https://api.example.test/v1/x }\n" +
        "    expect: { action: allow, rule: api }\n",
    );
    await Deno.writeTextFile(join(home, "scan.txt"), "nothing here\n");
    const cases: [string[], number][] = [
      [["--version"], 0],
      [["check", "--config", policy], 0],
      [["ca", "--config", policy, "--path"], 0],
      [["ca", "--config", policy, "--bundle", join(home, "b.pem")], 0],
      [["scan", join(home, "scan.txt")], 0],
      [["test", home], 0],
      [["eval", "--config", policy, "--url", "https://api.example.test/v1/x"], 0],
      [["schema"], 0],
      [["fmt", "--check", policy], 0],
      [["env", "--config", policy, "--shell", "bash"], 0],
      [["run", "--config", policy, "--report", "none", "--", "true"], 0],
      [["report", "--config", policy, "--format", "json"], 0],
      [["replay", "--config", policy, "--audit", join(home, "agentgate.db")], 0],
    ];
    for (const [args, code] of cases) {
      const r = await runCli(args, { via: "task", env });
      assert.equal(r.code, code, `${args.join(" ")}\n${r.err}`);
      assert.doesNotMatch(r.err, /NotCapable|missing permission|Uncaught/, args.join(" "));
    }
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a missing permission is one line naming the flag, not a stack trace", async () => {
  const home = await Deno.makeTempDir({ prefix: "agentgate-task-" });
  try {
    // What `deno task start` ran before it granted --allow-run.
    const r = await runCli(["run", "--report", "none", "--", "true"], {
      permissions: ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys"],
      env: { AGENTGATE_HOME: home },
    });
    assert.equal(r.code, 1);
    assert.equal(r.out, "");
    const lines = r.err.trimEnd().split("\n");
    assert.match(lines[0], /^agentgate run: session /);
    assert.deepEqual(lines.slice(1), [
      'agentgate run: missing permission --allow-run: requires run access to "true"; run agentgate ' +
      "with --allow-run (deno task start, the installed agentgate and the release binaries have " +
      "every permission it needs)",
    ]);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("deno task test ends with one line per test group skipped for a missing tool", async () => {
  // A PATH with only bash and deno: zsh, fish and pwsh are missing, and Chromium is pointed
  // at a path that does not exist.
  const bin = await Deno.makeTempDir({ prefix: "agentgate-path-" });
  try {
    await Deno.symlink("/bin/bash", join(bin, "bash"));
    await Deno.symlink(Deno.execPath(), join(bin, "deno"));
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "--quiet",
        "--config",
        `${ROOT_DIR}/deno.json`,
        "test",
        "src/cli/env_test.ts",
        "tests/dashboard_browser_test.ts",
      ],
      env: { PATH: bin, NO_COLOR: "1", AGENTGATE_TEST_CHROMIUM: join(bin, "chromium") },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, err);
    const apt = (p: string) =>
      `install it with apt-get install -y ${p}, or run .ci/run, which installs it`;
    assert.deepEqual(err.trimEnd().split("\n").slice(-4), [
      `SKIPPED dashboard browser test (tests/dashboard_browser_test.ts): ${
        join(bin, "chromium")
      } not found; ${apt("chromium")}`,
      `SKIPPED env test with zsh (src/cli/env_test.ts): zsh not on PATH; ${apt("zsh")}`,
      `SKIPPED env test with fish (src/cli/env_test.ts): fish not on PATH; ${apt("fish")}`,
      "SKIPPED env test with PowerShell (src/cli/env_test.ts): pwsh not on PATH; PowerShell is " +
      "not in Debian (.ci/run does not install it): see " +
      "https://learn.microsoft.com/powershell/scripting/install/installing-powershell-on-linux",
    ]);
    // A run that does not include those files says nothing about them.
    const other = await new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "--quiet",
        "--config",
        `${ROOT_DIR}/deno.json`,
        "test",
        "tests/layout_test.ts",
      ],
      env: { PATH: bin, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(other.code, 0);
    assert.doesNotMatch(new TextDecoder().decode(other.stderr), /SKIPPED/);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});
