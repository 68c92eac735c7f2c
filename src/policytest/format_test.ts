import assert from "node:assert/strict";
import { parse } from "yaml";
import { formatYaml } from "./format.ts";
import { DEFAULT_POLICY_YAML } from "../config/default.ts";

function fmt(text: string): string {
  const r = formatYaml(text, "a.yaml");
  if ("problems" in r) throw new Error(JSON.stringify(r.problems));
  return r.text;
}

Deno.test("format: comments, blank lines, quotes and flow style survive; idempotent", () => {
  const src = `# head

version: 1   # v
rules:
- name: "a"   # the first
  # about match
  match: ['x.example',  y.example]
  policies:
  - rate_limit: {requests: 5, per: 1m}
  - spending_limit:
        usd: 5.00
        per: 1d


- name: b
  match: |
    literal
  action: deny
# tail
`;
  const out = fmt(src);
  assert.equal(
    out,
    `# head

version: 1 # v
rules:
  - name: "a" # the first
    # about match
    match: ['x.example', y.example]
    policies:
      - rate_limit: { requests: 5, per: 1m }
      - spending_limit:
          usd: 5.00
          per: 1d

  - name: b
    match: |
      literal
    action: deny
# tail
`,
  );
  assert.equal(fmt(out), out);
  assert.deepEqual(parse(out), parse(src));
});

Deno.test("format: long lines are never wrapped; the default policy keeps its meaning", () => {
  const long = `reason: ${"word ".repeat(40).trim()}\nlist: [${
    Array(30).fill("item").join(", ")
  }]\n`;
  assert.equal(fmt(long), long);
  const d = fmt(DEFAULT_POLICY_YAML);
  assert.deepEqual(parse(d), parse(DEFAULT_POLICY_YAML));
  assert.ok(d.includes("# AWS ECS task metadata"));
  assert.equal(fmt(d), d);
});

Deno.test("format: syntax errors are problems with positions; empty stays empty", () => {
  const r = formatYaml("a: [\n", "bad.yaml");
  assert.ok("problems" in r);
  if ("problems" in r) assert.match(`${r.problems[0].line}:${r.problems[0].col}`, /^2:1$/);
  assert.equal(fmt(""), "");
  assert.equal(fmt("# only a comment\n"), "# only a comment\n");
  assert.equal(fmt("a: 1\n\n# tail, after a blank line\n"), "a: 1\n\n# tail, after a blank line\n");
  assert.equal(fmt("a:\n- 1\n# tail\n"), "a:\n  - 1\n# tail\n");
});
