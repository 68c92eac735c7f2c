import assert from "node:assert/strict";
import { globEnds, HostGlobIndex, requiredLabel } from "./hostindex.ts";
import { compileMatch } from "./match.ts";
import { indexRules } from "./engine.ts";
import { parseConfig } from "../config/load.ts";

Deno.test("globEnds and requiredLabel: the literal text a glob requires", () => {
  assert.deepEqual(globEnds("api-*.example.com"), { head: "api-", tail: ".example.com" });
  assert.deepEqual(globEnds("*.example.com"), { head: "", tail: ".example.com" });
  assert.deepEqual(globEnds("169.254.*"), { head: "169.254.", tail: "" });
  assert.deepEqual(globEnds("a?b*c"), { head: "a", tail: "c" });
  assert.equal(requiredLabel("*.internal.*"), "internal");
  assert.equal(requiredLabel("*.a.longer.*"), "longer");
  assert.equal(requiredLabel("*foo*"), null);
  assert.equal(requiredLabel("*.t?9.*"), null);
});

// A small alphabet makes collisions between globs and hosts likely.
const ATOMS = ["a", "b", "ab", ".", "-", "x1", "*", "?", "*", "."];
function rnd(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (s * 1103515245 + 12345) >>> 0;
    return (s >>> 8) % n;
  };
}

Deno.test("HostGlobIndex finds exactly the globs whose RegExp matches (2,000 globs × 3,000 hosts)", () => {
  const r = rnd(20);
  const idx = new HostGlobIndex<number>();
  const globs: { glob: string; re: RegExp }[] = [];
  while (globs.length < 2000) {
    let g = "";
    for (let i = 1 + r(6); i > 0; i--) g += ATOMS[r(ATOMS.length)];
    // A quarter without literal head and tail: indexed by a label they require.
    if (globs.length % 4 === 0) g = `*.${g}.*`;
    if (!/[*?]/.test(g) || /^[.*?]+$/.test(g)) continue;
    let m;
    try {
      m = compileMatch(g);
    } catch {
      continue; // not a valid pattern (an empty label): no rule can have it
    }
    if (!(m.host instanceof RegExp)) continue;
    globs.push({ glob: m.hostGlob!, re: m.host });
    idx.add(m.hostGlob!, m.host, globs.length - 1);
  }
  const letters = ["a", "b", ".", "-", "x", "1", "ab"];
  for (let h = 0; h < 3000; h++) {
    let host = "";
    for (let i = 1 + r(8); i > 0; i--) host += letters[r(letters.length)];
    const got = new Set<number>();
    idx.lookup(host, (v) => got.add(v));
    const want = new Set(globs.flatMap((g, i) => (g.re.test(host) ? [i] : [])));
    assert.deepEqual([...got].sort((a, b) => a - b), [...want].sort((a, b) => a - b), host);
  }
});

Deno.test("indexRules: candidates are the rules whose host matches, in policy order", () => {
  const { config } = parseConfig(
    [
      "version: 1",
      "rules:",
      '  - { name: mid, match: "*.internal.*", action: deny }',
      '  - { name: api, match: "api-*.example.com", action: allow }',
      '  - { name: any-port, match: "*:8080", action: log }',
      '  - { name: exact, match: "api-1.example.com", action: allow }',
      '  - { name: sfx, match: "*.example.com", action: log }',
      '  - { name: pre, match: "10.1.*", action: deny }',
      '  - { name: odd, match: "*i-1*", action: log }',
    ].join("\n"),
    "i.yaml",
    "/",
  );
  const idx = indexRules(config.policy.rules);
  const names = (h: string) => idx.candidates(h).map((r) => r.name);
  assert.deepEqual(names("api-1.example.com"), ["api", "any-port", "exact", "sfx", "odd"]);
  assert.deepEqual(names("db.internal.corp"), ["mid", "any-port"]);
  assert.deepEqual(names("10.1.2.3"), ["any-port", "pre"]);
  assert.deepEqual(names("example.com"), ["any-port"]);
  // cached answers are the same
  assert.deepEqual(names("api-1.example.com"), ["api", "any-port", "exact", "sfx", "odd"]);
});
