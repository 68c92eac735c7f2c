/**
 * Benchmarks (never part of the test suite).
 *
 *   deno task bench [s1 s2 s3 s3b s4 s5 …]   agentgate in ../shared/bench beside its peers
 *   deno task bench … --profile DIR           any of the above with a V8 CPU profile of agentgate in DIR;
 *                                             `deno task bench top DIR/CPU.*.cpuprofile` lists its top frames
 *   deno task bench decide                    decide() at the end of 200- and 1,000-rule policies with CEL,
 *                                             10,000 host-glob rules (scripts/bench_decide.ts)
 *   deno task bench --intercept [s4 s5 …]     the same with TLS interception of the origin
 *   deno task bench --intercept --dlp [s4]    interception with a dlp policy on every request
 *   deno task bench --postgres [s1]           the audit in PostgreSQL (a server started for the run,
 *                                             tests/support/postgres.ts); prints the writer's
 *                                             backlog each second and the sustained rows/s
 *   deno task bench --intercept --spend [s4]  interception with a spending limit on every request
 *   deno task bench [--intercept] --rate [s1|s4]   a rate limit on every request (in-process counters)
 *   deno task bench [--intercept] --rate --redis URL [s1|s4]   the same with the counters in Redis (`state:`)
 *                                             (the harness GETs: checked, not priced calls)
 *   deno task bench spend                     priced POSTs with and without a spending limit:
 *                                             reserve + journal + settle (scripts/bench_spend.ts)
 *   deno task bench budget                    the same path's CPU in process (scripts/bench_budget.ts)
 *   deno task bench sse                       intercepted LLM stream: first byte and total vs direct
 *   deno task bench dlp                       DLP scan throughput (scripts/bench_dlp.ts)
 *   deno task bench usage                     usage tap and gunzip CPU per MiB (scripts/bench_usage.ts)
 *   deno task bench pricing                   pricing one LLM call, deciding one under a budget
 *   deno task bench mask                      canonical paths and secret masking per request (scripts/bench_mask.ts)
 *   deno task bench credentials               the credentials tripwire: screening heads and bodies
 *   deno task bench floor [--node] [s1 …]     the runtime's floor: scripts/floor/proxy.mjs, a node:net
 *                                             forward proxy without agentgate, under Deno (or Node)
 *   deno task bench churn [N] [C]             a short-lived TCP connection's CPU and promoted bytes:
 *                                             node:net and Deno.connect under Deno, node:net under
 *                                             Node (scripts/bench_churn.ts, scripts/floor/churn.mjs)
 *   deno task bench upstream-tls              CPU per new upstream TLS connection with the system roots
 *                                             (scripts/bench_upstream_tls.ts)
 *
 * Plugs agentgate into the shared harness as the `PROXY_*` candidate with a
 * 20-rule policy and the audit on (the configuration the issues' targets
 * name). The harness must be installed first (`../shared/bench/install.sh`,
 * as root). Results land in /tmp/bench/results/latest/summary.md.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";
import { V8_FLAGS } from "./v8_flags.ts";
import { startPostgres } from "../tests/support/postgres.ts";

/**
 * Each second while the harness runs: the PostgreSQL writer's rows written,
 * queued and spooled (from /_/health); at the end, the sustained rows/s over
 * the seconds the proxy was busy, and the largest backlog seen.
 */
function sampleBacklog(): { stop(): void } {
  const samples: { t: number; written: number; queued: number; spooled: number }[] = [];
  const timer = setInterval(async () => {
    try {
      const h = await (await fetch("http://127.0.0.1:18199/_/health")).json();
      const b = h.audit_backends?.[0];
      if (!b) return;
      const s = { t: Date.now(), written: b.written, queued: b.queued, spooled: b.spooled };
      const prev = samples.at(-1);
      samples.push(s);
      if (prev && prev.written > s.written) samples.splice(0, samples.length - 1); // a new proxy
      const rate = prev && prev.written <= s.written
        ? Math.round((s.written - prev.written) * 1000 / (s.t - prev.t))
        : 0;
      console.error(
        `postgres audit: written ${s.written} (${rate} rows/s), queued ${s.queued}, spooled ${s.spooled}`,
      );
    } catch {
      // the proxy is between runs
    }
  }, 1000);
  return {
    stop() {
      clearInterval(timer);
      // Only the seconds rows were written: warm-up and the gaps between runs are not load.
      let rows = 0, ms = 0, seconds = 0;
      for (let i = 1; i < samples.length; i++) {
        const d = samples[i].written - samples[i - 1].written;
        if (d <= 0) continue;
        rows += d;
        ms += samples[i].t - samples[i - 1].t;
        seconds++;
      }
      if (seconds > 0) {
        const worst = Math.max(...samples.map((s) => s.queued + s.spooled));
        console.error(
          `postgres audit: sustained ${
            Math.round(rows * 1000 / ms)
          } rows/s over ${seconds} busy s; largest backlog ${worst} row(s)`,
        );
      }
    },
  };
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const harness = resolve(root, "../shared/bench/bench.sh");

/**
 * A 20-rule policy: what a real CI policy looks like, with a final catch-all
 * (and a rule naming the harness's origin on 127.0.0.1, which the address
 * guard would refuse otherwise).
 */
export const BENCH_POLICY = `version: 1
default: deny
audit: { path: ./bench-audit.db }
rules:
  - { name: metadata, match: [169.254.169.254, metadata.google.internal], action: deny }
  - { name: link-local, match: "169.254.*", action: deny }
  - { name: internal, match: "*.internal.company.com", action: deny, reason: internal }
  - { name: openai, match: api.openai.com, action: allow }
  - { name: anthropic, match: api.anthropic.com, action: allow }
  - { name: gemini, match: generativelanguage.googleapis.com, action: allow }
  - { name: npm, match: registry.npmjs.org, action: allow }
  - { name: yarn, match: registry.yarnpkg.com, action: allow }
  - { name: pypi, match: [pypi.org, files.pythonhosted.org], action: allow }
  - { name: crates, match: [crates.io, static.crates.io, index.crates.io], action: allow }
  - { name: go, match: [proxy.golang.org, sum.golang.org], action: allow }
  - { name: rubygems, match: [rubygems.org, index.rubygems.org], action: allow }
  - { name: maven, match: [repo.maven.apache.org, repo1.maven.org], action: allow }
  - { name: github, match: [github.com, api.github.com, codeload.github.com], action: allow }
  - { name: github-content, match: "*.githubusercontent.com", action: allow }
  - { name: docker, match: [registry-1.docker.io, auth.docker.io, production.cloudflare.docker.com], action: allow }
  - { name: debian, match: [deb.debian.org, security.debian.org], action: log }
  - { name: telemetry, match: ["*.segment.io", "*.sentry.io", "*.datadoghq.com"], action: deny }
  - { name: aws, match: "*.amazonaws.com", action: log }
  - { name: bench-origin, match: 127.0.0.1, action: log } # the harness's origin, on loopback
  - { name: everything-else, match: "*", action: log }
`;

/**
 * `policy` with `policies` on the rule that decides the harness's requests
 * (`bench-origin`: every request goes to 127.0.0.1, so a policy on the
 * catch-all would never run).
 *
 * @example
 * onOrigin(BENCH_POLICY, "[{ dlp: { action: warn, direction: both } }]");
 */
export function onOrigin(policy: string, policies: string): string {
  const rule = "  - { name: bench-origin, match: 127.0.0.1, action: log }";
  const at = policy.indexOf(rule);
  if (at === -1) throw new Error("Bench policy has no bench-origin rule: cannot add policies");
  const eol = policy.indexOf("\n", at);
  return policy.slice(0, at) +
    `  - name: bench-origin\n    match: 127.0.0.1\n    action: log\n    policies: ${policies}` +
    policy.slice(eol);
}

/**
 * The benchmarks that are their own scripts: `deno task bench NAME [args]`
 * runs `scripts/FILE` with these Deno arguments and the rest of the line.
 */
const SCRIPTS: Record<string, { file: string; deno: string[]; passArgs?: boolean }> = {
  sse: { file: "bench_sse.ts", deno: ["run", "-A"] },
  // Written for `deno bench`:
  usage: { file: "bench_usage.ts", deno: ["bench", "-A"] },
  pricing: { file: "bench_pricing.ts", deno: ["bench", "-A"] },
  budget: { file: "bench_budget.ts", deno: ["bench", "-A"] },
  credentials: { file: "bench_credentials.ts", deno: ["bench", "-A"] },
  // These print their own tables (no permissions needed for dlp and mask):
  dlp: { file: "bench_dlp.ts", deno: ["run"] },
  mask: { file: "bench_mask.ts", deno: ["run"] },
  spend: { file: "bench_spend.ts", deno: ["run", "-A"], passArgs: true },
  decide: { file: "bench_decide.ts", deno: ["run", "-A"] },
  "upstream-tls": { file: "bench_upstream_tls.ts", deno: ["run", "-A"] },
  churn: { file: "bench_churn.ts", deno: ["run", "-A"], passArgs: true },
  top: { file: "prof_top.ts", deno: ["run", "--allow-read"], passArgs: true },
};

const script = import.meta.main && Object.hasOwn(SCRIPTS, Deno.args[0] ?? "")
  ? SCRIPTS[Deno.args[0]]
  : undefined;
if (script) {
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: [
      ...script.deno,
      new URL(`./${script.file}`, import.meta.url).pathname,
      ...(script.passArgs ? Deno.args.slice(1) : []),
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  Deno.exit(code);
} else if (import.meta.main && Deno.args[0] === "floor") {
  // The runtime's floor: scripts/floor/proxy.mjs (node:net only, no agentgate)
  // as the candidate, under Deno or, with --node, under Node as the control.
  const node = Deno.args.includes("--node");
  const scenarios = Deno.args.slice(1).filter((a) => a !== "--node");
  const file = new URL("./floor/proxy.mjs", import.meta.url).pathname;
  const { code } = await new Deno.Command("bash", {
    args: [harness, ...(scenarios.length ? scenarios : ["s1", "s2", "s3", "s3b", "s5"])],
    cwd: dirname(harness),
    env: {
      PROXY_NAME: node ? "floor-node" : "floor-deno",
      PROXY_ADDR: "127.0.0.1:18199",
      PROXY_CMD: node
        ? `node ${file} 127.0.0.1:18199`
        : `${Deno.execPath()} run --allow-net --allow-env ${V8_FLAGS} ${file} 127.0.0.1:18199`,
      PROXY_MODES: "http connect",
      PEERS: Deno.env.get("PEERS") ?? "direct squid",
    },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  Deno.exit(code);
} else if (import.meta.main) {
  const intercept = Deno.args[0] === "--intercept";
  const dlp = Deno.args.includes("--dlp");
  const spend = Deno.args.includes("--spend");
  const rate = Deno.args.includes("--rate");
  const at = Deno.args.indexOf("--redis");
  const redisUrl = at >= 0 ? Deno.args[at + 1] : null;
  const postgres = Deno.args.includes("--postgres");
  const atProfile = Deno.args.indexOf("--profile");
  const profileDir = atProfile >= 0 ? resolve(Deno.args[atProfile + 1] ?? ".") : null;
  const args = (intercept ? Deno.args.slice(1) : Deno.args).filter((a, i, all) =>
    a !== "--dlp" && a !== "--spend" && a !== "--rate" && a !== "--redis" &&
    a !== "--postgres" && a !== "--profile" && all[i - 1] !== "--redis" &&
    all[i - 1] !== "--profile"
  );
  const scenarios = args.length ? args : intercept ? ["s4", "s5"] : ["s1", "s2", "s3", "s3b", "s5"];
  const dir = await Deno.makeTempDir({ prefix: "agentgate-bench-" });
  // Interception: the harness's origin is 127.0.0.1:18443 with a self-signed certificate.
  const tls = intercept
    ? `tls:\n  intercept: [127.0.0.1]\n  ca_dir: ${dir}/ca\n  upstream_ca: /tmp/bench/run/certs/origin.crt\n`
    : "";
  let policy = BENCH_POLICY.replace("default: deny\n", `default: deny\n${tls}`);
  if (dlp) {
    // Every request and response scanned with all detectors (warn: recorded, not changed).
    policy = onOrigin(policy, "[{ dlp: { action: warn, direction: both } }]");
  }
  if (spend) {
    // Every request is checked against a budget (the origin counts as an
    // OpenAI host); the harness's GETs are not priced calls, see `bench spend`.
    policy = onOrigin(
      policy.replace(
        "default: deny\n",
        'default: deny\nllm: { providers: { "127.0.0.1": openai } }\n',
      ),
      "[{ spending_limit: { usd: 1000000, per: day, key: session } }]",
    );
  }
  if (rate) {
    // Every request counted against a window that never fills (on the rule that
    // decides the harness's requests, like --dlp and --spend).
    policy = onOrigin(policy, "[{ rate_limit: { requests: 100000000, per: 1m, key: session } }]");
  }
  if (redisUrl !== null) {
    policy = policy.replace("default: deny\n", `default: deny\nstate: { redis: "${redisUrl}" }\n`);
  }
  // With fsync on: the server's durability is part of what is measured.
  const pg = postgres ? await startPostgres({}) : null;
  if (pg) {
    policy = policy.replace(
      "audit: { path: ./bench-audit.db }",
      `audit: { path: ./bench-audit.db, postgres: "${pg.url}", password_env: BENCH_PGPASSWORD }`,
    );
  }
  await Deno.writeTextFile(`${dir}/agentgate.yaml`, policy);
  if (intercept) {
    // The client must trust the CA before the proxy starts.
    await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${root}/main.ts`, "ca", "--dir", `${dir}/ca`, "--path"],
      stdout: "null",
    }).output();
  }
  const cmd = [
    Deno.execPath(),
    "run",
    "-A",
    // BENCH_V8_FLAGS="--v8-flags=…" compares other V8 settings against deno.json's.
    Deno.env.get("BENCH_V8_FLAGS") ?? V8_FLAGS,
    // V8's CPU profile of the whole run, written when the harness stops the proxy.
    ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
    `${root}/main.ts`,
    "--listen",
    "127.0.0.1:18199",
    "--config",
    `${dir}/agentgate.yaml`,
  ].join(" ");
  const env = {
    PROXY_NAME: "agentgate",
    PROXY_ADDR: "127.0.0.1:18199",
    PROXY_CMD: cmd,
    PROXY_CWD: dir,
    PROXY_MODES: Deno.env.get("PROXY_MODES") ?? (intercept ? "intercept" : "http connect"),
    PEERS: Deno.env.get("PEERS") ?? (intercept ? "direct mitmproxy" : "direct squid agentreserve"),
    ...(intercept ? { PROXY_CA: `${dir}/ca/ca.pem` } : {}),
    ...(pg ? { BENCH_PGPASSWORD: pg.password } : {}),
  };
  console.log(`bench: ${scenarios.join(" ")} with ${JSON.stringify(env, null, 2)}`);
  const sampler = pg ? sampleBacklog() : null;
  const { code } = await new Deno.Command("bash", {
    args: [harness, ...scenarios],
    cwd: dirname(harness),
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (sampler) {
    sampler.stop();
    await pg!.dispose();
  }
  Deno.exit(code);
}
