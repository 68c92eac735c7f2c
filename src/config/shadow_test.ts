import assert from "node:assert/strict";
import { covers, ShadowIndex } from "./shadow.ts";
import { compileMatch } from "../policy/match.ts";
import type { CompiledRule } from "../policy/engine.ts";

function rnd(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (s * 1103515245 + 12345) >>> 0;
    return (s >>> 8) % n;
  };
}

const HOSTS = [
  "*",
  "a.example.com",
  "b.example.com",
  "*.example.com",
  "**.example.com",
  "*.a.example.com",
  "a-*.example.com",
  "*.example.*",
  "10.0.*",
  "10.0.0.1",
  "example.com",
];
const PATHS = ["", "/**", "/v1/**", "/v1/chat/**", "/v1/chat", "/v1/*", "/v2/**", "/admin"];
const SCHEMES = ["", "", "http://", "https://"];
const PORTS = ["", "", "", ":8080", ":443"];

Deno.test("ShadowIndex finds the same rule as comparing with every earlier rule", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const r = rnd(seed);
    const rules: CompiledRule[] = [];
    const idx = new ShadowIndex();
    for (let i = 0; i < 150; i++) {
      const match = Array.from({ length: 1 + (r(4) === 0 ? 1 : 0) }, () => {
        const host = HOSTS[r(HOSTS.length)];
        const path = host === "*" && r(2) === 0 ? "" : PATHS[r(PATHS.length)];
        return compileMatch(
          `${SCHEMES[r(SCHEMES.length)]}${host}${
            host === "*" ? "" : PORTS[r(PORTS.length)]
          }${path}`,
        );
      });
      const rule = {
        name: `r${i}`,
        index: i,
        match,
        methods: r(5) === 0 ? new Set(["GET"]) : null,
        when: null,
      } as unknown as CompiledRule;
      const want = rules.find((e) =>
        e.methods === null && rule.match.every((m) => e.match.some((em) => covers(em, m)))
      );
      assert.equal(idx.find(rule)?.name, want?.name, `seed ${seed}, rule ${i}`);
      rules.push(rule);
      if (rule.methods === null) idx.add(rule);
    }
  }
});
