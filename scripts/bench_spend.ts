/**
 * What a spending limit costs a priced LLM call: reserve (estimate + ledger
 * holds) + journal append before forwarding + settle (release, charge,
 * journal append). `deno task bench spend` runs the same priced load twice
 * per round — the rule without a limit, then with `spending_limit` — and
 * prints req/s of each and their ratio.
 *
 * The harness's s4 load (`deno task bench --intercept --spend s4`) sends
 * GETs, which are not priced calls: it measures only the check. This load
 * POSTs chat completions with `max_tokens` through the proxy (plain HTTP,
 * absolute-form, keep-alive, wrk -c50), to a local origin (node:http) that
 * answers each with a completion and its usage, so every request is
 * estimated, reserved, journaled, priced and settled. Pinned like the
 * harness: origin and wrk on CPU 0, the proxy on CPU 1.
 *
 *   deno task bench spend [--rounds 3] [--seconds 10] [--conns 50]
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";
import { V8_FLAGS } from "./v8_flags.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
};
const ROUNDS = arg("rounds", 3);
const SECONDS = arg("seconds", 10);
const CONNS = arg("conns", 50);
const ORIGIN_PORT = 18290;
const PROXY_PORT = 18291;

const ORIGIN = `
const http = require("node:http");
const body = JSON.stringify({
  id: "chatcmpl-bench", object: "chat.completion", model: "gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: "${
  "x".repeat(600)
}" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 42, completion_tokens: 187, total_tokens: 229 },
});
http.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(${ORIGIN_PORT}, "127.0.0.1");
`;

const LUA = `
wrk.method = "POST"
wrk.path = "http://127.0.0.1:${ORIGIN_PORT}/v1/chat/completions"
wrk.headers["Host"] = "127.0.0.1:${ORIGIN_PORT}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"gpt-4o-mini","max_tokens":200,"messages":[{"role":"user","content":"Say something short about budgets."}]}'
done = function(summary, latency, requests)
  io.write(string.format("WRKRESULT requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;

function policy(dir: string, spend: boolean): string {
  return `version: 1
default: deny
audit: { path: ${dir}/audit.db }
llm: { providers: { "127.0.0.1": openai } }
rules:
  - name: llm
    match: 127.0.0.1/v1/**
    action: allow
${spend ? "    policies: [{ spending_limit: { usd: 1000000, per: day, key: session } }]\n" : ""}`;
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing listens on ${port}`);
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  bad: number;
  /** Proxy CPU time (user + system) per request, µs: steadier than req/s on a busy machine. */
  cpuUs: number;
}

/** CPU time of a process so far, in ms (utime + stime from /proc, in 10 ms ticks). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function runOnce(dir: string, spend: boolean): Promise<Run> {
  await Deno.writeTextFile(`${dir}/agentgate.yaml`, policy(dir, spend));
  await Deno.remove(`${dir}/audit.db`).catch(() => {});
  await Deno.remove(`${dir}/audit.db-spend.jsonl`).catch(() => {});
  const proxy = new Deno.Command("taskset", {
    args: [
      "-c",
      "1",
      Deno.execPath(),
      "run",
      "-A",
      V8_FLAGS,
      `${root}/main.ts`,
      "--listen",
      `127.0.0.1:${PROXY_PORT}`,
      "--config",
      `${dir}/agentgate.yaml`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitPort(PROXY_PORT);
    const wrk = (secs: number) =>
      new Deno.Command("taskset", {
        args: [
          "-c",
          "0",
          "wrk",
          "-t1",
          `-c${CONNS}`,
          `-d${secs}s`,
          "--timeout",
          "5s",
          "-s",
          `${dir}/post.lua`,
          `http://127.0.0.1:${PROXY_PORT}/`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
    await wrk(2); // warm-up: JIT, pools, the price cache
    const cpu0 = await cpuMs(proxy.pid);
    const out = new TextDecoder().decode((await wrk(SECONDS)).stdout);
    const cpu = (await cpuMs(proxy.pid)) - cpu0;
    const m = /WRKRESULT (.*)/.exec(out);
    if (!m) throw new Error(`wrk said:\n${out}`);
    const v: Record<string, number> = {};
    for (const kv of m[1].split(" ")) {
      const [k, n] = kv.split("=");
      v[k] = Number(n);
    }
    return {
      rps: v.requests / (v.duration_us / 1e6),
      p50: v.p50_us / 1000,
      p99: v.p99_us / 1000,
      bad: v.non2xx + v.errors,
      cpuUs: (cpu * 1000) / v.requests,
    };
  } finally {
    proxy.kill("SIGTERM");
    await proxy.status;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (import.meta.main) {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-bench-spend-" });
  await Deno.writeTextFile(`${dir}/origin.cjs`, ORIGIN);
  await Deno.writeTextFile(`${dir}/post.lua`, LUA);
  const origin = new Deno.Command("taskset", {
    args: ["-c", "0", "node", `${dir}/origin.cjs`],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  try {
    await waitPort(ORIGIN_PORT);
    const load = await Deno.readTextFile("/proc/loadavg").catch(() => "?");
    console.log(
      `bench spend: ${ROUNDS} rounds x ${SECONDS} s, ${CONNS} conns; loadavg ${load.trim()}`,
    );
    const without: Run[] = [];
    const withLimit: Run[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // Interleaved, the order alternating, so drift hits both alike.
      for (const spend of i % 2 === 0 ? [false, true] : [true, false]) {
        const r = await runOnce(dir, spend);
        (spend ? withLimit : without).push(r);
        console.log(
          `  round ${i + 1} ${spend ? "spending_limit" : "no limit      "}: ` +
            `${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ` +
            `proxy CPU ${r.cpuUs.toFixed(1)} µs/req${r.bad ? `, ${r.bad} bad` : ""}`,
        );
      }
    }
    const a = median(without.map((r) => r.rps));
    const b = median(withLimit.map((r) => r.rps));
    const ca = median(without.map((r) => r.cpuUs));
    const cb = median(withLimit.map((r) => r.cpuUs));
    console.log(
      `median: no limit ${a.toFixed(0)} req/s, spending_limit ${b.toFixed(0)} req/s: ` +
        `ratio ${(b / a).toFixed(3)} (${((1 - b / a) * 100).toFixed(1)} % fewer); ` +
        `proxy CPU ${ca.toFixed(1)} -> ${cb.toFixed(1)} µs/req (+${(cb - ca).toFixed(1)} µs, ` +
        `${((cb / ca - 1) * 100).toFixed(1)} %)`,
    );
  } finally {
    origin.kill("SIGTERM");
    await origin.status;
    await Deno.remove(dir, { recursive: true });
  }
}
