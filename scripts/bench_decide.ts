/**
 * Decision micro-benchmark (`deno task bench decide`): `decide()` over a
 * 200-rule and a 1,000-rule policy (globs across 50 or 250 hosts, 20 or 100
 * CEL conditions, rate limits) for requests that match early, late, and
 * never; with and without the host index. Then policies of 1,000 and 10,000 host-glob rules (every kind of
 * glob: `*.suffix`, `prefix-*.suffix`, `prefix.*`, `*.middle.*`), decided
 * for hosts the index has seen (cached) and hosts it has not (a fresh host
 * per decision). Prints the median µs per decision.
 *
 * @module
 */
import { parseConfig } from "../src/config/load.ts";
import { decide } from "../src/policy/engine.ts";
import { PolicyState } from "../src/state/mod.ts";
import type { RequestInfo } from "../src/policy/types.ts";

/**
 * 4 rules per host (200 for the default 50 hosts, 1,000 for 250); the
 * condition rule of 2 hosts in 5 is CEL.
 */
export function benchPolicy(hosts = 50): string {
  const rules: string[] = [];
  for (let h = 0; h < hosts; h++) {
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

/**
 * `n` host-glob rules, a quarter of each kind, in an order where the rule a
 * request meets is near the end: `*.sN.example.test`, `api-N-*.example.test`,
 * `10.N.*` and `*.tN.*` (the kind without a literal head or tail).
 */
export function globPolicy(n: number): string {
  const rules: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % 4;
    const match = k === 0
      ? `"*.s${i}.example.test"`
      : k === 1
      ? `"api-${i}-*.example.test"`
      : k === 2
      ? `"10.${i % 256}.${i >> 8}.*"`
      : `"*.t${i}.*"`;
    rules.push(`  - { name: g${i}, match: ${match}, action: ${i % 3 ? "allow" : "log"} }`);
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
  for (const hosts of [50, 250]) decideTable(hosts);
  globTables();
}

/** The rule-policy table for `hosts` hosts (4 rules each): early, late and no match. */
function decideTable(hosts: number): void {
  const { config } = parseConfig(benchPolicy(hosts), "bench.yaml", "/");
  const last = hosts - 1;
  const lastCel = last - (last % 5); // the last host whose condition rule is CEL
  const cases: [string, RequestInfo][] = [
    [
      "early (host 0, CEL rule)",
      info("api0.example.test", "/v1/chat/completions", "POST", { "x-team": "ml" }),
    ],
    [
      `late (host ${lastCel}, CEL rule)`,
      info(`api${lastCel}.example.test`, "/v1/chat/completions", "POST", { "x-team": "ml" }),
    ],
    [`late (host ${last}, plain rule)`, info(`api${last}.example.test`, "/v1/x", "GET", {})],
    ["glob + rate_limit (host 30)", info("a.h30.example.test", "/x", "GET", {})],
    ["never (unknown host)", info("nowhere.test", "/", "GET", {})],
    // The address guard on a forwarded request (what the proxy decides once resolved).
    [
      `late (host ${last}) + address guard, public`,
      { ...info(`api${last}.example.test`, "/v1/x", "GET", {}), dest: dest("93.184.216.34") },
    ],
    [
      `late (host ${last}) + address guard, NAT64`,
      { ...info(`api${last}.example.test`, "/v1/x", "GET", {}), dest: dest("64:ff9b::5db8:d822") },
    ],
  ];
  const state = new PolicyState();
  const index = config.policy.index;
  console.log(`\npolicy: ${config.policy.rules.length} rules`);
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

/** Policies of 1,000 and 10,000 host-glob rules: cached host, new host, no index. */
function globTables(): void {
  const state = new PolicyState();
  console.log("\nhost-glob policies: µs per decision (median of 30 rounds)");
  console.log(
    "| rules | request | indexed, cached host | indexed, new host each time | unindexed |",
  );
  console.log("|---:|---|---:|---:|---:|");
  for (const n of [1_000, 10_000]) {
    const { config: gc } = parseConfig(globPolicy(n), "globs.yaml", "/");
    const last = n - 1 - ((n - 1) % 4);
    const globCases: [string, (i: number) => string][] = [
      [`*.suffix, late (g${last})`, (i) => `x${i}.s${last}.example.test`],
      [`prefix-*.suffix, late (g${last + 1 - 4})`, (i) => `api-${last - 3}-${i}.example.test`],
      ["prefix.*, late", (i) => `10.${(n - 2) % 256}.${(n - 2) >> 8}.${i % 250}`],
      ["*.middle.*, late", (i) => `a${i}.t${n - 1}.example`],
      ["no rule (default)", (i) => `nothing-${i}.example.org`],
    ];
    const gIndex = gc.policy.index;
    for (const [name, host] of globCases) {
      const cells: string[] = [];
      let rule: string | null = null;
      for (const mode of ["cached", "fresh", "unindexed"] as const) {
        gc.policy.index = mode === "unindexed" ? undefined : gIndex;
        const rounds: number[] = [];
        const per = mode === "unindexed" ? (n > 1000 ? 20 : 200) : 2000;
        let seq = 0;
        for (let r = 0; r < 30; r++) {
          const reqs = Array.from(
            { length: per },
            () => info(host(mode === "fresh" ? ++seq + 1000 * r : 1), "/", "GET", {}),
          );
          const t = performance.now();
          for (const req of reqs) rule = decide(gc.policy, { info: req, now: 0, state }).rule;
          rounds.push(((performance.now() - t) * 1000) / per);
        }
        cells.push(median(rounds.slice(5)).toFixed(2));
      }
      gc.policy.index = gIndex;
      console.log(`| ${n} | ${name} → ${rule ?? "(default)"} | ${cells.join(" | ")} |`);
    }
  }
}
