/**
 * Decision micro-benchmark (`deno task bench decide`): `decide()` over a
 * 200-rule policy (globs across 50 hosts, 20 CEL conditions, rate limits)
 * for requests that match early, late, and never; with and without the host
 * index. Prints the median µs per decision.
 *
 * @module
 */
import { parseConfig } from "../src/config/load.ts";
import { decide } from "../src/policy/engine.ts";
import { PolicyState } from "../src/state/mod.ts";
import type { RequestInfo } from "../src/policy/types.ts";

/** 200 rules: 4 per host for 50 hosts; every 10th host's condition rule is CEL. */
export function benchPolicy(): string {
  const rules: string[] = [];
  for (let h = 0; h < 50; h++) {
    const host = `api${h}.example.test`;
    rules.push(`  - { name: h${h}-admin, match: "${host}/admin/**", action: deny }`);
    if (h % 5 === 0 || h % 5 === 1) {
      // 20 rules with a CEL condition
      rules.push(
        `  - name: h${h}-team\n    match: ${host}/v1/**\n    methods: [POST]\n    when: request.headers["x-team"] == "ml" && request.path.startsWith("/v1/chat")\n    action: allow`,
      );
    } else {
      rules.push(`  - { name: h${h}-v1, match: "${host}/v1/**", methods: [POST], action: allow }`);
    }
    rules.push(
      `  - name: h${h}-rate\n    match: "*.h${h}.example.test"\n    action: allow\n    policies:\n      - rate_limit: { requests: 1000000, per: 1m, key: session }`,
    );
    rules.push(`  - { name: h${h}-read, match: "${host}", methods: [GET, HEAD], action: log }`);
  }
  return `version: 1\ndefault: deny\nrules:\n${rules.join("\n")}\n`;
}

function info(
  host: string,
  path: string,
  method: string,
  headers: Record<string, string>,
): RequestInfo {
  return {
    id: "bench",
    session: "ci",
    label: null,
    client: "127.0.0.1",
    method,
    scheme: "https",
    host,
    port: 443,
    path,
    query: "",
    headers,
  };
}

function dest(ip: string): NonNullable<RequestInfo["dest"]> {
  return { ip, port: 443, addresses: [ip], pinned: false };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

if (import.meta.main) {
  const { config } = parseConfig(benchPolicy(), "bench.yaml", "/");
  const cases: [string, RequestInfo][] = [
    [
      "early (host 0, CEL rule)",
      info("api0.example.test", "/v1/chat/completions", "POST", { "x-team": "ml" }),
    ],
    [
      "late (host 45, CEL rule)",
      info("api45.example.test", "/v1/chat/completions", "POST", { "x-team": "ml" }),
    ],
    ["late (host 49, plain rule)", info("api49.example.test", "/v1/x", "GET", {})],
    ["glob + rate_limit (host 30)", info("a.h30.example.test", "/x", "GET", {})],
    ["never (unknown host)", info("nowhere.test", "/", "GET", {})],
    // The address guard on a forwarded request (what the proxy decides once resolved).
    [
      "late (host 49) + address guard, public",
      { ...info("api49.example.test", "/v1/x", "GET", {}), dest: dest("93.184.216.34") },
    ],
    [
      "late (host 49) + address guard, NAT64",
      { ...info("api49.example.test", "/v1/x", "GET", {}), dest: dest("64:ff9b::5db8:d822") },
    ],
  ];
  const state = new PolicyState();
  const index = config.policy.index;
  console.log(`policy: ${config.policy.rules.length} rules`);
  console.log("| request | indexed µs/decision | unindexed µs/decision | rule |");
  console.log("|---|---:|---:|---|");
  for (const [name, req] of cases) {
    const result: number[] = [];
    let rule: string | null = null;
    for (const useIndex of [true, false]) {
      config.policy.index = useIndex ? index : undefined;
      const rounds: number[] = [];
      for (let r = 0; r < 30; r++) {
        const n = 2000;
        const t = performance.now();
        for (let i = 0; i < n; i++) {
          rule = decide(config.policy, { info: req, now: Date.now(), state }).rule;
        }
        rounds.push(((performance.now() - t) * 1000) / n);
      }
      result.push(median(rounds.slice(5)));
    }
    console.log(
      `| ${name} | ${result[0].toFixed(2)} | ${result[1].toFixed(2)} | ${rule ?? "(default)"} |`,
    );
  }
  config.policy.index = index;
}
