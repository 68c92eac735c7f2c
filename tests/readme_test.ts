/**
 * The README's examples, executed: every fenced `yaml` block is checked
 * (policies through `agentgate check`, a policy-test file through `agentgate
 * test`, the GitHub Actions workflow parsed), and every `sh` line that can run
 * offline runs, top to bottom, the way a new user would run it: in a copy of
 * the repository, with a fresh HOME, the `agentgate` command made by the
 * README's own install line. A README example that stops working fails here.
 *
 * Every block and every sh line must be listed below, either with how it runs
 * or with the reason it cannot run here; a new example fails the test until
 * it is listed. What is changed when a line runs, and nothing else:
 *
 * - `4100` becomes a free port, and a policy's `0.0.0.0` listen address
 *   `127.0.0.1` (tests listen on loopback only);
 * - a command that serves in the foreground (`deno task start`) runs in the
 *   background with `--listen` on the free port, and is stopped with SIGTERM
 *   once it answers (exit 0 expected): the README's Ctrl-C;
 * - a trailing `# comment` is dropped when the harness appends to a line;
 * - `…`, a value the reader fills in (a token), becomes one where a line runs with it.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { ROOT_DIR, runCli } from "./helpers.ts";

interface Block {
  lang: string;
  /** `heading #n`: the nearest heading above and the block's number under it. */
  key: string;
  line: number;
  text: string;
}

/** The fenced blocks of README.md. */
function readmeBlocks(text: string): Block[] {
  const lines = text.split("\n");
  const out: Block[] = [];
  const count = new Map<string, number>();
  let heading = "(top)";
  for (let i = 0; i < lines.length; i++) {
    const h = /^#{1,4} (.+)$/.exec(lines[i]);
    if (h) {
      heading = h[1];
      continue;
    }
    const f = /^(\s*)```(\w*)\s*$/.exec(lines[i]);
    if (!f) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j])) {
      body.push(lines[j++].slice(f[1].length));
    }
    const n = (count.get(heading) ?? 0) + 1;
    count.set(heading, n);
    out.push({ lang: f[2], key: `${heading} #${n}`, line: i + 1, text: body.join("\n") + "\n" });
    i = j;
  }
  return out;
}

/** The logical lines of an sh block: continuations joined, comments and blank lines dropped. */
function shLines(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    cur += raw;
    if (cur.endsWith("\\")) {
      cur += "\n";
      continue;
    }
    if (cur.trim() !== "" && !cur.trimStart().startsWith("#")) out.push(cur);
    cur = "";
  }
  return out;
}

const indent = (text: string, n: number) =>
  text.trimEnd().split("\n").map((l) => " ".repeat(n) + l).join("\n") + "\n";

/** How each yaml block is checked. */
type YamlCheck =
  | { policy: (block: string) => string; env?: Record<string, string> }
  | { testFile: string }
  | { workflow: true };

const asIs = (b: string) => b;
const v1 = (b: string) => "version: 1\n" + b;

const YAML: Record<string, YamlCheck> = {
  "The policy file #1": { policy: asIs },
  "Running a fleet #1": { policy: asIs },
  "The audit in PostgreSQL, and the decision stream #1": { policy: asIs },
  "Conditions (`when:`) #1": {
    policy: (b) => "version: 1\ntls: { intercept: [api.openai.com] }\nrules:\n" + indent(b, 2),
  },
  "Policies (rate, time window, spending) #1": {
    policy: (b) =>
      "version: 1\ntls: { intercept: [api.openai.com] }\nrules:\n  - name: openai\n" +
      "    match: api.openai.com\n    action: allow\n" + indent(b, 4),
  },
  "Addresses: resolve once, check every address, connect to what was checked #1": {
    policy: v1,
  },
  "Budgets: reserve, then settle #1": {
    policy: (b) => "version: 1\ntls: { intercept: [api.openai.com] }\n" + b,
  },
  "Credentials the agent never holds (`credentials`) #1": { policy: v1 },
  "TLS interception #1": { policy: v1 },
  "Resource limits #1": { policy: v1 },
  "LLM usage and cost #1": { policy: v1 },
  "Secret-leak and threat detection (`dlp`) #1": { policy: asIs },
  "Policy as code #1": {
    // The policy the tests name: a rule "openai-chat" with a rate limit per session, and an
    // Anthropic rule with a daily budget per session.
    testFile: `version: 1
default: deny
tls: { intercept: [api.openai.com, api.anthropic.com] }
rules:
  - name: openai-chat
    match: api.openai.com/v1/**
    methods: [POST]
    action: allow
    policies:
      - rate_limit: { requests: 60, per: 1m, key: session }
  - name: anthropic
    match: api.anthropic.com/v1/**
    action: allow
    policies:
      - spending_limit: { usd: 5, per: 1d, key: session }
`,
  },
  "Use it with Claude Code, Cursor, Aider, an OpenAI SDK script or a Python agent #1": {
    policy: asIs,
  },
  "Use it in GitHub Actions #1": { workflow: true },
  "Use it in GitHub Actions #2": { policy: asIs },
  "Point a Docker container at it #1": { policy: asIs, env: { AGENTGATE_TOKEN: "t0ken" } },
  "The dashboard #1": { policy: v1, env: { AGENTGATE_DASHBOARD_TOKEN: "t0ken" } },
  "Sessions #1": { policy: v1, env: { CI_TOKEN: "ci-t0ken", OTHER_TOKEN: "other-t0ken" } },
};

/** Blocks in other languages, or output shown as text: not executed. */
const NOT_RUN: Record<string, string> = {
  "Run it #3": "output of agentgate at start",
  "Live reload #1": "output of agentgate check",
  "Budgets: reserve, then settle #2": "an HTTP answer",
  "Use it with Claude Code, Cursor, Aider, an OpenAI SDK script or a Python agent #2":
    "JavaScript for a Node script",
  "What a denied agent sees #1": "an HTTP answer",
  "Running a fleet #2": "a docker-compose file (not run: no Docker in tests)",
  "Running a fleet #3": "Kubernetes manifests (not run)",
};

/** How each sh line runs: a shell snippet around it, or the reason it cannot run here. */
type ShRun = {
  /** The snippet; `L` is the README line (ports substituted), `C` the same without its comment. */
  run: (l: { L: string; C: string; port: number }) => string;
  /** Run by fish instead of bash. */
  fish?: boolean;
} | { skip: string };

/** Start a foreground server in the background, wait until it answers, stop it. */
const serveOnce = (cmd: string, port: number) => `${cmd} &\nwait_port ${port}\nstop_last\n`;

const README_POLICY = "readme-policy.yaml";
/** What `…` (a value the reader fills in) becomes where a line runs. */
const FILLED = "filled-t0ken";
const DOCKER_POLICY = "docker-policy.yaml";

const SH: Record<string, ShRun> = {
  "deno task start   # run agentgate on its embedded default policy at 127.0.0.1:4100": {
    run: ({ C, port }) => `cd "$CLONE"\n` + serveOnce(`${C} --listen 127.0.0.1:${port}`, port),
  },
  "deno task test    # run the whole test suite": { skip: "the suite this test is part of" },
  "deno install --global -A --v8-flags=--max-semi-space-size=1,--no-allocation-site-pretenuring,--heap-growing-percent=100,--expose-gc \\\n  --config deno.json --name agentgate main.ts":
    {
      run: ({ L }) =>
        `cd "$CLONE"\n${L}\ntest "$(command -v agentgate)" = "$HOME/.deno/bin/agentgate"\n` +
        "agentgate --version\n",
    },
  "deno task start                                   # embedded default policy": {
    run: ({ C, port }) => `cd "$CLONE"\n` + serveOnce(`${C} --listen 127.0.0.1:${port}`, port),
  },
  "deno task start --config agentgate.yaml           # = agentgate serve --config agentgate.yaml": {
    run: ({ C, port }) =>
      `cd "$CLONE"\ncp "$WORK/${README_POLICY}" agentgate.yaml\n` + serveOnce(C, port),
  },
  "deno task start check --config agentgate.yaml     # validate without starting": {
    // The README's policy keeps its audit beside it (audit.path: ./agentgate.db): tidy up.
    run: ({ L }) => `cd "$CLONE"\n${L}\nrm agentgate.yaml agentgate.db*\n`,
  },
  "agentgate run --label agent -- claude   # OPENAI_API_KEY, ANTHROPIC_API_KEY, GITHUB_TOKEN … are phantoms":
    { skip: "needs Claude Code, an account and the network" },
  "agentgate run --isolate --label agent -- claude": {
    skip: "needs Claude Code, an account and the network (tests/isolate_test.ts runs --isolate)",
  },
  "agentgate run -- claude                                   # an agent": {
    skip: "needs Claude Code, an account and the network",
  },
  "agentgate run --label nightly --fail-on-deny -- npm test  # a CI job": {
    run: ({ L }) =>
      `mkdir -p "$WORK/ci" && cd "$WORK/ci"\n` +
      `printf '{"name":"ci","private":true,"scripts":{"test":"node -e 0"}}' > package.json\n${L}\n`,
  },
  "agentgate --config shared.yaml &     # dashboard: { token_env: AGENTGATE_DASHBOARD_TOKEN }": {
    run: ({ L, port }) =>
      `mkdir -p "$WORK/shared" && cd "$WORK/shared"\nexport AGENTGATE_DASHBOARD_TOKEN=dash-t0ken\n` +
      `printf 'version: 1\\nproxy: { listen: 127.0.0.1:${port} }\\n` +
      `dashboard: { token_env: AGENTGATE_DASHBOARD_TOKEN }\\ndefault: log\\n' > shared.yaml\n` +
      `printf '#!/bin/sh\\ncurl -s -o /dev/null http://127.0.0.2:9/ || true\\n' > agent-a\n` +
      "cp agent-a agent-b && chmod +x agent-a agent-b\n" +
      `${L}\nwait_port ${port}\n`,
  },
  "export AGENTGATE_DASHBOARD_TOKEN=…   # the same value": {
    skip: "the reader's own token: the line above exported the same value",
  },
  "agentgate run --proxy http://127.0.0.1:4100 --label a -- ./agent-a &": {
    run: ({ L }) => `${L}\nAGENT_A=$!\n`,
  },
  "agentgate run --proxy http://127.0.0.1:4100 --label b -- ./agent-b": {
    run: ({ L }) => `${L}\nwait "$AGENT_A"\n`,
  },
  'eval "$(agentgate env)"                                  # bash, zsh: this shell now goes through agentgate':
    {
      run: ({ L }) =>
        `mkdir -p "$WORK/env" && cd "$WORK/env"\n${L}\n` +
        'test "$HTTPS_PROXY" = "http://127.0.0.1:4100"\n',
    },
  "agentgate env --shell fish | source": {
    fish: true,
    run: ({ L }) => `${L}; test "$HTTPS_PROXY" = "http://127.0.0.1:4100"`,
  },
  "agentgate env --shell powershell | Invoke-Expression": {
    skip: "PowerShell is not in Debian",
  },
  'eval "$(agentgate env --proxy http://$AGENTGATE_TOKEN@proxy.internal:4100)"   # a proxy.auth token':
    {
      run: ({ L, port }) =>
        `export AGENTGATE_TOKEN=env-t0ken\n${L}\n` +
        `test "$HTTPS_PROXY" = "http://env-t0ken@proxy.internal:${port}"\n`,
    },
  'eval "$(AGENTGATE_DASHBOARD_TOKEN=… agentgate env --mint --label me)"          # a session of your own':
    {
      // A running proxy with that admin token, at the policy's proxy.listen.
      run: ({ L, port }) =>
        `mkdir -p "$WORK/mint" && cd "$WORK/mint"\n` +
        `printf 'version: 1\\nproxy: { listen: 127.0.0.1:${port} }\\n` +
        `dashboard: { token_env: AGENTGATE_DASHBOARD_TOKEN }\\ndefault: log\\n' > agentgate.yaml\n` +
        `AGENTGATE_DASHBOARD_TOKEN=${FILLED} agentgate >/dev/null 2>&1 &\nwait_port ${port}\n` +
        `${L}\n` +
        `[[ "$HTTPS_PROXY" =~ ^http://me-[0-9a-f]{16}:[0-9a-f]+@127\\.0\\.0\\.1:${port}$ ]]\n` +
        'eval "$(agentgate env --unset)"\nstop_last\ncd "$WORK/env"\n',
    },
  'eval "$(agentgate env --unset)"                          # back to what the shell had before': {
    run: ({ L }) => `${L}\ntest -z "\${HTTPS_PROXY:-}" && test -z "\${NO_PROXY:-}"\n`,
  },
  "agentgate report --since 24h                               # the policy's audit.path": {
    run: ({ L }) => `cd "$WORK/env"\n${L}\n`,
  },
  "agentgate report --session nightly-3f9a1c2b7d4e5f60 --format markdown": {
    run: ({ L }) => `${L}\n`,
  },
  "agentgate report --audit /var/lib/agentgate/agentgate.db --format json | jq .denials": {
    skip: "reads /var/lib/agentgate, a system path (the same report runs above from the default " +
      "audit)",
  },
  "export AGENTGATE_TOKEN=$(openssl rand -hex 16)": {
    run: ({ L }) =>
      `mkdir -p "$WORK/docker" && cd "$WORK/docker"\n${L}\ntest -n "$AGENTGATE_TOKEN"\n`,
  },
  "agentgate --config agentgate.yaml &": {
    run: ({ L, port }) => `cp "$WORK/${DOCKER_POLICY}" agentgate.yaml\n${L}\nwait_port ${port}\n`,
  },
  "mkdir -p pub && cp ca/ca.pem pub/ && agentgate ca --config agentgate.yaml --bundle pub/bundle.pem":
    {
      run: ({ L }) =>
        `${L}\ngrep -q "BEGIN CERTIFICATE" pub/bundle.pem && cmp -s ca/ca.pem pub/ca.pem\n` +
        "test ! -e pub/ca-key.pem\n",
    },
  'P="http://$AGENTGATE_TOKEN@host.docker.internal:4100"': {
    run: ({ L }) => `${L}\ntest -n "$P"\n`,
  },
  'docker run --rm \\\n  --add-host=host.docker.internal:host-gateway \\\n  -e HTTP_PROXY="$P" -e HTTPS_PROXY="$P" -e http_proxy="$P" -e https_proxy="$P" \\\n  -e NO_PROXY=localhost,127.0.0.1 -e no_proxy=localhost,127.0.0.1 \\\n  -v "$PWD/pub:/agentgate:ro" \\\n  -e SSL_CERT_FILE=/agentgate/bundle.pem -e REQUESTS_CA_BUNDLE=/agentgate/bundle.pem \\\n  -e CURL_CA_BUNDLE=/agentgate/bundle.pem -e GIT_SSL_CAINFO=/agentgate/bundle.pem \\\n  -e PIP_CERT=/agentgate/bundle.pem -e CARGO_HTTP_CAINFO=/agentgate/bundle.pem \\\n  -e NODE_EXTRA_CA_CERTS=/agentgate/ca.pem -e DENO_CERT=/agentgate/ca.pem -e NODE_USE_ENV_PROXY=1 \\\n  my-agent-image':
    { skip: "needs a Docker daemon and the user's agent image" },
  [`sqlite3 ~/.agentgate/agentgate.db "select datetime(ts/1000,'unixepoch'), decision, method, host, path, reason from audit order by ts desc limit 20"`]:
    { run: ({ L }) => `${L}\n` },
  "curl -s 'http://127.0.0.1:4100/_/api/audit?decision=deny,would_deny&since=1h' | jq '.items[].reason'":
    {
      // A proxy to ask, and one denial for it to show.
      run: ({ L, port }) =>
        `cd "$WORK/env"\nagentgate --listen 127.0.0.1:${port} >/dev/null &\nwait_port ${port}\n` +
        `curl -s -o /dev/null -x http://127.0.0.1:${port} http://169.254.169.254/latest/\n` +
        // (The audit already holds earlier denials: wait for this one, written within 200 ms.)
        `for i in $(seq 1 50); do out=$(${L}); grep -q "Cloud metadata" <<<"$out" && break; ` +
        "sleep 0.1; done\n" +
        `printf '%s\\n' "$out"\n` +
        'grep -qx \'"Cloud metadata endpoints are not accessible to agents"\' <<<"$out"\nstop_last\n',
    },
  "deno task check     # deno fmt --check, deno lint, deno check (types)": {
    skip: ".ci/run runs it (minutes of type checking)",
  },
  "deno task test      # unit tests beside the code + end-to-end tests in tests/": {
    skip: "the suite this test is part of",
  },
  "deno task bench     # ../shared/bench with agentgate as a candidate (needs ../shared/bench/install.sh)":
    { skip: "needs ../shared/bench, outside the repository" },
  "deno task bench --intercept --dlp s4   # interception with DLP warn on both directions of every request":
    { skip: "needs ../shared/bench, outside the repository" },
  "deno task bench decide  # decide() at the end of 200- and 1,000-rule policies (CEL), 10,000 host globs":
    { skip: "a benchmark (a minute of CPU on a quiet machine)" },
  "deno task bench spend   # priced LLM calls through the proxy with and without a spending limit":
    {
      skip: "a benchmark (minutes of load on a quiet machine)",
    },
  "deno task bench budget  # the CPU a budget adds to one priced call (reserve, settle, journal)": {
    skip: "a benchmark (minutes of load on a quiet machine)",
  },
  "deno task bench upstream-tls   # CPU per new upstream TLS connection verified against the system roots":
    { skip: "a benchmark (CPU per connection, on a quiet machine)" },
  "deno task bench floor s1 s3b   # the runtime's floor: a node:net proxy without agentgate (--node: under Node)":
    { skip: "needs ../shared/bench, outside the repository" },
  "deno task bench churn   # a short-lived connection: node:net vs Deno.connect under Deno, node:net under Node":
    { skip: "a benchmark (30,000 connections three times, on a quiet machine)" },
  "deno task bench s3b --profile /tmp/prof   # any harness run with a V8 CPU profile of agentgate in /tmp/prof":
    { skip: "needs ../shared/bench, outside the repository" },
  "deno task bench top /tmp/prof/CPU.*.cpuprofile   # the profile's top frames, self and inclusive":
    { skip: "reads the profile the line above writes" },
  "deno task compile   # release binaries for 4 targets + SHA256SUMS in dist/ (downloads Deno's denort)":
    { skip: "needs Deno's download host; tests/release_test.ts runs it both ways" },
};

/** Shell functions every script has. */
const PRELUDE = `set -euo pipefail
wait_port() {
  for _ in $(seq 1 300); do
    curl -s -o /dev/null --noproxy '*' "http://127.0.0.1:$1/_/health" && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  return 1
}
# Stop the last background job as Ctrl-C would, and expect exit status 0.
stop_last() { kill -TERM $!; wait $!; }
# At the end of a README block: stop what it left running.
stop_all() { jobs -p | xargs -r kill -TERM 2>/dev/null; wait || true; }
trap 'jobs -p | xargs -r kill -TERM 2>/dev/null; wait' EXIT
`;

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Tracked and new files the program needs, copied as a fresh clone would have them. */
async function cloneRepository(to: string): Promise<void> {
  const ls = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT_DIR,
    stdout: "piped",
  }).output();
  assert.ok(ls.success, "git ls-files");
  const files = new TextDecoder().decode(ls.stdout).split("\0").filter((f) =>
    /^(deno\.json|deno\.lock|main\.ts|README\.md|(src|scripts|policies)\/.+)$/.test(f)
  );
  for (const f of files) {
    try {
      await Deno.mkdir(join(to, dirname(f)), { recursive: true });
      await Deno.copyFile(join(ROOT_DIR, f), join(to, f));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // deleted in the work tree
    }
  }
}

Deno.test("README: every yaml block and sh line is listed here, and nothing else", async () => {
  const blocks = readmeBlocks(await Deno.readTextFile(`${ROOT_DIR}/README.md`));
  const yaml = blocks.filter((b) => b.lang === "yaml").map((b) => b.key);
  assert.deepEqual(yaml.sort(), Object.keys(YAML).sort(), "yaml blocks");
  const lines = blocks.filter((b) => b.lang === "sh").flatMap((b) => shLines(b.text));
  assert.deepEqual([...new Set(lines)].sort(), Object.keys(SH).sort(), "sh lines");
  const other = blocks.filter((b) => b.lang !== "yaml" && b.lang !== "sh").map((b) => b.key);
  assert.deepEqual(other.sort(), Object.keys(NOT_RUN).sort(), "other blocks");
});

Deno.test("README: every yaml policy passes agentgate check; the test file and workflow work", async () => {
  const blocks = readmeBlocks(await Deno.readTextFile(`${ROOT_DIR}/README.md`));
  const dir = await Deno.makeTempDir({ prefix: "agentgate-readme-yaml-" });
  try {
    for (const b of blocks.filter((b) => b.lang === "yaml")) {
      const how = YAML[b.key];
      assert.ok(how, `README.md:${b.line}: a yaml block not listed in tests/readme_test.ts`);
      const where = `README.md:${b.line} (${b.key})`;
      if ("workflow" in how) {
        // deno-lint-ignore no-explicit-any
        const wf = parseYaml(b.text) as any;
        const runs = Object.values(wf.jobs).flatMap((j) =>
          (j as { steps: { run?: string }[] }).steps.map((s) => s.run ?? "")
        ).join("\n");
        assert.match(runs, /agentgate check --config agentgate\.yaml/, where);
        assert.match(runs, /agentgate run --label ci --fail-on-deny/, where);
        continue;
      }
      if ("testFile" in how) {
        await Deno.mkdir(join(dir, "pat", "policies"), { recursive: true });
        await Deno.writeTextFile(join(dir, "pat", "agentgate.yaml"), how.testFile);
        await Deno.writeTextFile(join(dir, "pat", "policies", "ci_test.yaml"), b.text);
        const r = await runCli(["test", "policies"], {
          cwd: join(dir, "pat"),
          env: { AGENTGATE_HOME: join(dir, "home") },
        });
        assert.equal(r.code, 0, `${where}\n${r.out}${r.err}`);
        assert.match(r.out, /\n3 passed, 0 failed\n$/, where);
        continue;
      }
      const file = join(dir, `block-${b.line}.yaml`);
      await Deno.writeTextFile(file, how.policy(b.text));
      const r = await runCli(["check", "--config", file], {
        env: { AGENTGATE_HOME: join(dir, "home"), ...how.env },
      });
      assert.equal(r.code, 0, `${where}\n${r.out}${r.err}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("README: the sh lines run, top to bottom, as a new user would run them", async () => {
  const readme = await Deno.readTextFile(`${ROOT_DIR}/README.md`);
  const blocks = readmeBlocks(readme);
  const root = await Deno.makeTempDir({ prefix: "agentgate-readme-" });
  const clone = join(root, "agentgate");
  const home = join(root, "home");
  const work = join(root, "work");
  try {
    await Deno.mkdir(home);
    await Deno.mkdir(work);
    await cloneRepository(clone);
    // The policies the sh lines use, as the README shows them (ports and addresses as above).
    const port = freePort();
    const byKey = new Map(blocks.map((b) => [b.key, b.text]));
    const local = (t: string) =>
      t.replaceAll("0.0.0.0:4100", "127.0.0.1:4100").replaceAll("4100", `${port}`);
    await Deno.writeTextFile(join(work, README_POLICY), local(byKey.get("The policy file #1")!));
    await Deno.writeTextFile(
      join(work, DOCKER_POLICY),
      local(byKey.get("Point a Docker container at it #1")!),
    );
    const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
    const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir as string;
    const env: Record<string, string> = {
      // A fresh machine: its own HOME (so ~/.agentgate and ~/.deno/bin are new), the shared
      // module cache (nothing is downloaded again), and the tools on PATH.
      HOME: home,
      DENO_DIR: denoDir,
      PATH: `${home}/.deno/bin:${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}`,
      SHELL: "/bin/bash",
      NO_COLOR: "1",
      NPM_CONFIG_UPDATE_NOTIFIER: "false",
      CLONE: clone,
      WORK: work,
      TMPDIR: Deno.env.get("TMPDIR") ?? "/tmp",
    };
    // One script, the README's order; fish lines run in fish from it.
    const parts: string[] = [PRELUDE];
    for (const b of blocks.filter((b) => b.lang === "sh")) {
      parts.push(`\n# --- README.md:${b.line} (${b.key})`);
      for (const line of shLines(b.text)) {
        const how = SH[line];
        assert.ok(
          how,
          `README.md:${b.line}: an sh line not listed in tests/readme_test.ts: ${line}`,
        );
        if ("skip" in how) {
          parts.push(`# skipped (${how.skip}): ${line.split("\n")[0]}`);
          continue;
        }
        const L = line.replaceAll("4100", `${port}`).replaceAll("…", FILLED);
        const C = L.replace(/\s+#[^"'\n]*$/, "");
        const snippet = how.run({ L, C, port });
        assert.ok(snippet.includes(L) || snippet.includes(C), `the snippet runs the line: ${line}`);
        parts.push(`echo ${shq(`+ ${line.split("\n")[0]}`)} >&2`);
        parts.push(how.fish ? `fish -c ${shq(snippet)}` : snippet.trimEnd());
      }
      parts.push("stop_all");
    }
    const script = parts.join("\n") + "\n";
    const out = await new Deno.Command("bash", {
      args: ["-c", script],
      cwd: work,
      clearEnv: true,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    const log = `${dec.decode(out.stdout)}\n--- stderr ---\n${dec.decode(out.stderr)}`;
    if (Deno.env.get("AGENTGATE_README_LOG")) console.error(log);
    assert.equal(out.code, 0, `a README line failed (the last "+" line below):\n${log}`);
    // Nothing landed in the repository copy or where the commands ran but what they made.
    assert.ok((await Deno.stat(join(home, ".agentgate", "agentgate.db"))).isFile);
    for await (const e of Deno.readDir(clone)) {
      assert.ok(!e.name.endsWith(".db"), `README commands wrote ${e.name} into the repository`);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
