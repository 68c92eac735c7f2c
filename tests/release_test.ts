/**
 * `deno task compile` as a release engineer meets it: where the Deno runtime
 * cannot be downloaded it stops at the first target with one line why and one
 * line what to do offline, and leaves no empty dist/; where a runtime is at
 * hand it writes the binary and SHA256SUMS. The GitHub Actions release
 * workflow in docs/ is parsed and its shape checked.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { binaryName, TARGETS } from "../scripts/compile.ts";
import { ROOT_DIR } from "./helpers.ts";

const VERSION = Deno.version.deno;

async function compile(args: string[], env: Record<string, string>, cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "--config", `${ROOT_DIR}/deno.json`, "compile", ...args],
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
}

const offline = (target: string) =>
  `compile: offline: on a machine that reaches dl.deno.land, fetch ` +
  `https://dl.deno.land/release/v${VERSION}/denort-${target}.zip, unzip it here, then run ` +
  `DENORT_BIN=$PWD/denort deno task compile ${target} (one target per run); ` +
  `or build the release with docs/github-actions/release.yml`;

Deno.test("compile: the first download failure stops the build with one line why and what to do", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "agentgate-compile-" });
  try {
    // A DENO_DIR that shares everything with the real one (no module is fetched again) except
    // the downloaded runtimes, and a proxy that refuses: the runtime download fails for sure.
    const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
    const realDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir as string;
    const denoDir = join(tmp, "deno-dir");
    await Deno.mkdir(denoDir);
    for await (const e of Deno.readDir(realDir)) {
      if (e.name !== "dl") await Deno.symlink(join(realDir, e.name), join(denoDir, e.name));
    }
    const out = join(tmp, "dist");
    const r = await compile(["--out-dir", out], {
      DENO_DIR: denoDir,
      HTTPS_PROXY: "http://127.0.0.1:9",
      https_proxy: "http://127.0.0.1:9",
      NO_PROXY: "",
      no_proxy: "",
      PATH: Deno.env.get("PATH") ?? "",
    }, tmp);
    assert.equal(r.code, 1, r.err);
    assert.equal(r.out, "");
    const [first, ...rest] = TARGETS;
    assert.deepEqual(r.err.trimEnd().split("\n"), [
      `compile: ${first} -> ${join(out, binaryName(first))}`,
      `compile: ${first} failed: cannot download the Deno runtime (denort) for ${first} from ` +
      `https://dl.deno.land/release/v${VERSION}/denort-${first}.zip: Connection refused (os error 111)`,
      offline(first),
      `compile: not attempted: ${rest.join(", ")}`,
    ]);
    assert.ok(!(await exists(out)), "no empty output directory is left");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("compile: a DENORT_BIN that is not there is named; one runtime builds one target", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "agentgate-compile-" });
  try {
    const out = join(tmp, "dist");
    const target = TARGETS[0];
    const missing = await compile(
      ["--out-dir", out, target],
      { DENORT_BIN: join(tmp, "denort") },
      tmp,
    );
    assert.equal(missing.code, 1);
    assert.deepEqual(missing.err.trimEnd().split("\n").slice(1), [
      `compile: ${target} failed: DENORT_BIN points at "${
        join(tmp, "denort")
      }", which does not exist`,
      offline(target),
    ]);
    assert.ok(!(await exists(out)));
    const two = await compile(["--out-dir", out], { DENORT_BIN: "/bin/true" }, tmp);
    assert.equal(two.code, 2);
    assert.match(
      two.err,
      /^compile: DENORT_BIN is set: name the one target its denort binary is for\n/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("compile: with a runtime at hand, the binary and its SHA256SUMS", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "agentgate-compile-" });
  try {
    const out = join(tmp, "dist");
    const target = TARGETS[0];
    // Any executable stands in for denort: what is checked here is the build's bookkeeping.
    const r = await compile(["--out-dir", out, target], { DENORT_BIN: "/bin/true" }, tmp);
    assert.equal(r.code, 0, r.err);
    const bin = join(out, binaryName(target));
    assert.equal(r.out, `${bin}\n${join(out, "SHA256SUMS")}\n`);
    const sums = await Deno.readTextFile(join(out, "SHA256SUMS"));
    assert.match(sums, new RegExp(`^[0-9a-f]{64}  ${binaryName(target)}\\n$`));
    const verify = await new Deno.Command("sha256sum", { args: ["-c", "SHA256SUMS"], cwd: out })
      .output();
    assert.equal(new TextDecoder().decode(verify.stdout), `${binaryName(target)}: OK\n`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the release workflow builds the four binaries, checks their sums and attaches them", async () => {
  const text = await Deno.readTextFile(`${ROOT_DIR}/docs/github-actions/release.yml`);
  // deno-lint-ignore no-explicit-any
  const wf = parse(text) as any;
  assert.deepEqual(wf.on.push.tags, ["v*"]);
  assert.ok("workflow_dispatch" in wf.on);
  assert.equal(wf.permissions.contents, "write");
  const ci = await Deno.readTextFile(`${ROOT_DIR}/.ci/run`);
  assert.equal(wf.env.DENO_VERSION, `v${/DENO_VERSION=(\S+)/.exec(ci)![1]}`);
  const jobs = Object.values(wf.jobs) as { "runs-on": string; steps: Record<string, unknown>[] }[];
  assert.equal(jobs.length, 1);
  const [job] = jobs;
  assert.equal(job["runs-on"], "ubuntu-latest");
  const steps = job.steps;
  const index = (pred: (s: Record<string, unknown>) => boolean, what: string) => {
    const i = steps.findIndex(pred);
    assert.ok(i !== -1, what);
    return i;
  };
  const uses = (name: string) => (s: Record<string, unknown>) =>
    typeof s.uses === "string" && s.uses.startsWith(`${name}@`);
  const runs = (re: RegExp) => (s: Record<string, unknown>) =>
    typeof s.run === "string" && re.test(s.run);
  const checkout = index(uses("actions/checkout"), "checkout");
  const setup = index(uses("denoland/setup-deno"), "setup-deno");
  assert.equal(
    (steps[setup].with as Record<string, string>)["deno-version"],
    "${{ env.DENO_VERSION }}",
  );
  const tests = index(runs(/^\.ci\/run$/m), "the CI gates first");
  const build = index(runs(/^deno task compile$/m), "deno task compile, all targets");
  const sums = index(runs(/^sha256sum -c SHA256SUMS$/m), "checksums verified");
  assert.equal(steps[sums]["working-directory"], "dist");
  const smoke = index(runs(/--version/), "the Linux binary runs");
  const upload = index(uses("actions/upload-artifact"), "artifact");
  assert.equal((steps[upload].with as Record<string, string>).path, "dist/*");
  const attach = index(runs(/gh release upload "\$GITHUB_REF_NAME" dist\/\*/), "release upload");
  assert.equal(steps[attach].if, "startsWith(github.ref, 'refs/tags/')");
  assert.ok(checkout < setup && setup < tests && tests < build && build < sums, "order");
  assert.ok(sums < smoke && smoke < upload && upload < attach, "order");
  // `deno task compile` without targets builds these four.
  assert.deepEqual([...TARGETS], [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
  ]);
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
