import assert from "node:assert/strict";
import { parseTestFile, TestFileError } from "./testfile.ts";
import { formatProblem } from "../config/errors.ts";

function problems(text: string): string[] {
  try {
    parseTestFile(text, "t_test.yaml");
  } catch (e) {
    if (e instanceof TestFileError) return e.problems.map(formatProblem);
    throw e;
  }
  assert.fail("expected problems");
}

Deno.test("testfile: cases with defaults, given, todo and positions", () => {
  const tf = parseTestFile(
    `config: ../agentgate.yaml
now: 2026-03-02T10:00:00+01:00
tests:
  - name: a
    request: { method: post, url: "http://example.com/", headers: { X-Team: 1 }, body: { a: 1 } }
    given:
      requests: [{ count: 2, within: 1m, usd: 0.5 }, { count: 1 }]
      spent_usd: 1.5
      session: ci
    expect: { action: allow, rule: null, policy: null }
  - name: b
    todo: later
  - name: c
    todo: true
    request: { url: "http://example.com/" }
`,
    "t_test.yaml",
  );
  assert.equal(tf.config, "../agentgate.yaml");
  assert.equal(tf.configLine, 1);
  assert.equal(tf.now, Date.parse("2026-03-02T09:00:00Z"));
  assert.equal(tf.cases.length, 3);
  const [a, b, c] = tf.cases;
  assert.equal(a.line, 4);
  assert.deepEqual(a.request, {
    method: "post",
    url: "http://example.com/",
    headers: { "X-Team": "1" },
    body: { a: 1 },
  });
  assert.deepEqual(a.given, {
    requests: [
      { count: 2, withinMs: 60_000, request: {}, usd: 0.5, tokens: null },
      { count: 1, withinMs: null, request: {}, usd: null, tokens: null },
    ],
    spentUsd: 1.5,
    spend: { session: "ci" },
  });
  assert.deepEqual(a.expect, { action: "allow", rule: null, policy: null });
  assert.equal(b.todo, "later");
  assert.equal(b.request, null);
  assert.equal(c.todo, "");
});

Deno.test("testfile: problems are file:line:col with did-you-mean", () => {
  assert.deepEqual(
    problems(`tests:
  - name: a
    requets: { url: "http://example.com/" }
    expect: { action: deny, rule: 3, status: 99 }
`),
    [
      't_test.yaml:3:5: unknown key "requets" in "tests.0" (did you mean "request"?)',
      't_test.yaml:4:46: "tests.0.expect.status" must be at least 100, not 99',
    ],
  );
  assert.deepEqual(
    problems(`tests:
  - name: a
    request: { url: "http://example.com/" }
    expect: { action: deny, rule: 3 }
  - request: { url: "http://example.com/" }
`),
    [
      't_test.yaml:5:5: missing key "name" in "tests.1"',
    ],
  );
  assert.deepEqual(
    problems(`tests:
  - name: a
    request: { url: "http://example.com/" }
    expect: { action: deny, rule: 3 }
`),
    ['t_test.yaml:4:35: "tests.0.expect.rule" must be a string or null'],
  );
  assert.deepEqual(
    problems("tests:\n  - name: a\n    given: { requests: { within: 1m } }\n    todo: x\n"),
    [
      't_test.yaml:3:24: missing key "count" in "tests.0.given.requests"',
    ],
  );
  assert.deepEqual(problems("config: a.yaml\n"), [
    't_test.yaml:1:1: missing key "tests" in the document',
  ]);
  assert.deepEqual(problems(""), ["t_test.yaml: the test file is empty"]);
  assert.deepEqual(problems("- a\n"), ["t_test.yaml:1:1: a test file must be a YAML mapping"]);
  assert.deepEqual(problems("tests: []\nnow: tomorrow\n"), [
    't_test.yaml:2:6: invalid time "tomorrow": use ISO 8601, e.g. "2026-03-02T10:00:00Z"',
  ]);
});
