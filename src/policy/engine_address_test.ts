/**
 * The engine and the pipeline with addresses: rules that match by address
 * range or read `dest.ip` ask for the address (nothing committed), the
 * address guard runs before a request is forwarded (and before any policy
 * counts it), and explicit allows open exactly what they name.
 */
import assert from "node:assert/strict";
import { decide } from "./engine.ts";
import { decideDest, decideHead, decideTunnel } from "./pipeline.ts";
import { parseConfig } from "../config/load.ts";
import type { Destination, RequestInfo } from "./types.ts";
import { normalizeHost, normalizePath } from "./match.ts";
import { PolicyState } from "../state/mod.ts";

function request(method: string, url: string, dest?: string): RequestInfo {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  return {
    id: "t",
    session: "s",
    label: null,
    client: "127.0.0.1",
    method,
    scheme: u.protocol === "https:" ? "https" : "http",
    host: normalizeHost(u.hostname),
    port,
    path: method === "CONNECT" ? null : normalizePath(u.pathname),
    query: "",
    headers: {},
    ...(dest ? { dest: destination(dest, port) } : {}),
  };
}

const destination = (ip: string, port: number): Destination => ({
  ip,
  port,
  addresses: [ip],
  pinned: false,
});

const POLICY = `version: 1
default: log
rules:
  - name: internal
    match: 10.0.0.0/8
    action: allow
  - name: v6
    match: "[fd00::]/8"
    action: allow
  - name: corp
    match: "*.corp.test"
    action: allow
    allow_private: true
  - name: not-loopback
    match: cond.test
    when: dest.ip != "127.0.0.1"
    action: allow
    allow_private: true
  - name: literal
    match: 192.168.1.10/admin/**
    action: log
  - name: limited
    match: limited.test
    action: allow
    policies:
      - rate_limit: { requests: 1, per: 1h, key: session }
`;

Deno.test("engine: address ranges and dest.ip ask for the address, then decide with it", () => {
  const { config } = parseConfig(POLICY, "p.yaml", "/");
  const state = new PolicyState();
  // A name before any rule could tell: the first range rule asks, and says why.
  const ask = decide(config.policy, { info: request("GET", "http://x.example/"), now: 0, state });
  assert.equal(ask.needsDest, true);
  assert.equal(ask.needs, "dest");
  assert.equal(
    ask.reason,
    'rule "internal" (p.yaml:4) matches by address (10.0.0.0/8), so it needs the resolved address of "x.example"',
  );
  const table: [string, string, string | null, string, string | null][] = [
    // url, dest, rule, verdict, policy
    ["http://x.example/", "10.9.8.7", "internal", "allow", null],
    ["http://x.example/", "::ffff:10.9.8.7", "internal", "allow", null],
    ["http://x.example/", "64:ff9b::a09:807", "internal", "allow", null],
    ["http://x.example/", "fd12::1", "v6", "allow", null],
    ["http://x.example/", "93.184.216.34", null, "log", null],
    ["http://x.example/", "127.0.0.1", null, "deny", "address"],
    ["http://db.corp.test/", "127.0.0.1", "corp", "allow", null],
    ["http://db.corp.test/", "169.254.169.254", "corp", "deny", "address"],
    ["http://cond.test/", "127.0.0.2", "not-loopback", "allow", null],
    ["http://cond.test/", "127.0.0.1", null, "deny", "address"],
    // The literal rule opens 192.168.1.10 for the requests it decides, not for the default.
    ["http://192.168.1.10/admin/x", "192.168.1.10", "literal", "log", null],
    ["http://192.168.1.10/other", "192.168.1.10", null, "deny", "address"],
  ];
  for (const [url, ip, rule, verdict, policy] of table) {
    const d = decide(config.policy, { info: request("GET", url, ip), now: 0, state });
    assert.deepEqual(
      [d.rule, d.verdict, d.policy, d.needsDest ?? false],
      [rule, verdict, policy, false],
      `${url} -> ${ip}: ${d.reason}`,
    );
  }
});

Deno.test("engine: the guard runs before a rule's policies count the request", () => {
  const { config } = parseConfig(POLICY, "p.yaml", "/");
  const state = new PolicyState();
  const at = (ip: string) =>
    decide(config.policy, { info: request("GET", "http://limited.test/", ip), now: 0, state });
  const denied = at("127.0.0.1");
  assert.deepEqual(
    [denied.verdict, denied.rule, denied.policy, denied.reason],
    ["deny", "limited", "address", '"limited.test" resolves to 127.0.0.1 (loopback): denied'],
  );
  // The refused request used no slot: the first forwarded one still passes.
  assert.equal(at("93.184.216.34").verdict, "allow");
  assert.equal(at("93.184.216.34").policy, "rate_limit");
});

Deno.test("engine: a resolving caller is asked before anything is forwarded; tools are not", () => {
  const { config } = parseConfig(
    `version: 1
default: log
mode: audit
rules:
  - { name: api, match: api.test, action: allow }
`,
    "p.yaml",
    "/",
  );
  const state = new PolicyState();
  const info = request("GET", "http://api.test/");
  const proxyAsk = decide(config.policy, { info, now: 0, state, resolve: true });
  assert.equal(proxyAsk.needsDest, true);
  // The guard asks with the decision it is about to make (recorded if DNS fails).
  assert.deepEqual([proxyAsk.verdict, proxyAsk.rule], ["allow", "api"]);
  const tool = decide(config.policy, { info, now: 0, state });
  assert.deepEqual([tool.verdict, tool.needsDest], ["allow", undefined]);
  // mode: audit records a refused address as would_deny (and forwards it, like any deny).
  const audit = decide(config.policy, {
    info: request("GET", "http://api.test/", "10.0.0.1"),
    now: 0,
    state,
    resolve: true,
  });
  assert.deepEqual([audit.verdict, audit.policy], ["would_deny", "address"]);
  // A pinned address is the operator's choice.
  const pinned = request("GET", "http://api.test/");
  pinned.dest = { ip: "127.0.0.1", port: 8443, addresses: ["127.0.0.1"], pinned: true };
  assert.equal(
    decide(config.policy, { info: pinned, now: 0, state, resolve: true }).verdict,
    "allow",
  );
  // The proxy's own addresses are their own class.
  const own = decide(config.policy, {
    info: request("GET", "http://api.test/", "203.0.113.7"),
    now: 0,
    state,
    local: new Set(["203.0.113.7"]),
  });
  assert.equal(
    own.reason,
    `"api.test" resolves to 203.0.113.7 (an address of agentgate's host): denied`,
  );
});

Deno.test("pipeline: the dest step, for requests and tunnels", () => {
  const { config } = parseConfig(POLICY, "p.yaml", "/");
  const state = new PolicyState();
  const ctx = { now: 0, state, resolve: true };
  const info = request("GET", "http://x.example/");
  const step = decideHead(config, info, { ...ctx, hasBody: false });
  assert.equal(step.next, "dest");
  const done = decideDest(config, info, destination("10.1.1.1", 80), {
    ...ctx,
    hasBody: false,
    body: null,
  });
  assert.equal(done.next, "verdict");
  assert.equal(done.next === "verdict" && done.verdict.decision.rule, "internal");
  assert.equal(info.dest?.ip, "10.1.1.1");

  const tunnel = request("CONNECT", "https://x.example/");
  const t1 = decideTunnel(config, tunnel, { ...ctx, intercept: false });
  assert.equal(t1.needsDest, true);
  tunnel.dest = destination("169.254.169.254", 443);
  const t2 = decideTunnel(config, tunnel, { ...ctx, intercept: false });
  assert.deepEqual([t2.verdict, t2.policy], ["deny", "address"]);
  // An intercepted tunnel connects nowhere itself: no guard at the CONNECT (its requests have it).
  const names = parseConfig(
    `version: 1\ndefault: log\nrules: [{ name: corp, match: "*.corp.test", action: allow }]\n`,
    "q.yaml",
    "/",
  ).config;
  const connect = request("CONNECT", "https://db.corp.test/");
  assert.equal(decideTunnel(names, connect, { ...ctx, intercept: true }).needsDest, undefined);
  assert.equal(decideTunnel(names, connect, { ...ctx, intercept: false }).needsDest, true);
});
