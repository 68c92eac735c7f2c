import assert from "node:assert/strict";
import {
  diffLines,
  jsonReporter,
  junitReporter,
  summarize,
  summaryLine,
  textReporter,
  xmlEscape,
} from "./report.ts";
import type { CaseResult, TestEvent } from "./runner.ts";

const actual = {
  action: "deny" as const,
  rule: "r<1>",
  rule_source: "a.yaml:3",
  status: 403,
  reason: 'has "quotes" & <tags>',
  policy: null,
};
const failed: CaseResult = {
  type: "case",
  file: "a_test.yaml",
  line: 7,
  name: 'case "one" & <two>',
  status: "fail",
  durationMs: 1.5,
  request: "GET http://example.com/",
  expected: { action: "allow", rule: "r<1>", reason_contains: "nope" },
  actual,
  mismatches: [
    { key: "action", expected: "allow", actual: "deny" },
    { key: "reason_contains", expected: "nope", actual: actual.reason },
  ],
  trace: [{ rule: "r<1>", source: "a.yaml:3", outcome: "decided", detail: "action deny" }],
};
const events: TestEvent[] = [
  { ...failed, name: "fine", status: "pass", mismatches: [], trace: undefined },
  failed,
  { ...failed, name: "later", status: "skip", todo: "\u0001 soon", mismatches: [] },
  {
    type: "file-error",
    file: "b_test.yaml",
    problems: [{ severity: "error", file: "b_test.yaml", line: 1, col: 2, message: "bad <key>" }],
  },
];

Deno.test("report: summary line and diff lines", () => {
  const s = summarize(events, 10);
  assert.deepEqual(s, { passed: 1, failed: 1, skipped: 1, fileErrors: 1, durationMs: 10 });
  assert.equal(summaryLine(s), "1 passed, 2 failed, 1 skipped");
  assert.equal(summaryLine({ ...s, skipped: 0 }), "1 passed, 2 failed");
  assert.deepEqual(diffLines(failed), [
    '- action: "allow"',
    '+ action: "deny"',
    '  rule: "r<1>"',
    '- reason_contains: "nope"',
    '+ reason: "has \\"quotes\\" & <tags>"',
  ]);
});

Deno.test("report: text groups by file and prints file errors as file:line:col", () => {
  let out = "";
  const r = textReporter((s) => (out += s));
  for (const e of events) r.event(e);
  r.end(summarize(events, 1));
  assert.equal(
    out,
    [
      "a_test.yaml",
      "  ok    fine",
      '  FAIL  case "one" & <two>',
      "        at a_test.yaml:7",
      "        request: GET http://example.com/",
      "        expected (-) vs actual (+):",
      '        - action: "allow"',
      '        + action: "deny"',
      '          rule: "r<1>"',
      '        - reason_contains: "nope"',
      '        + reason: "has \\"quotes\\" & <tags>"',
      '        decision: deny by rule "r<1>" (a.yaml:3), status 403: has "quotes" & <tags>',
      "        trace:",
      "          1. r<1> (a.yaml:3): decided: action deny",
      "  todo  later (\u0001 soon)",
      "b_test.yaml:1:2: bad <key>",
      "",
      "1 passed, 2 failed, 1 skipped",
      "",
    ].join("\n"),
  );
});

Deno.test("report: JSON and JUnit escape what they carry", () => {
  let json = "";
  const j = jsonReporter((s) => (json += s));
  for (const e of events) j.event(e);
  j.end(summarize(events, 1));
  const doc = JSON.parse(json);
  assert.equal(doc.ok, false);
  assert.equal(doc.results.length, 3);
  assert.equal(doc.errors[0].problems[0].message, "bad <key>");

  let xml = "";
  const x = junitReporter((s) => (xml += s));
  for (const e of events) x.event(e);
  x.end(summarize(events, 1));
  assert.match(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites /);
  assert.ok(xml.includes('name="case &quot;one&quot; &amp; &lt;two&gt;"'));
  assert.ok(xml.includes('<skipped message="todo: \ufffd soon"/>'));
  assert.ok(
    xml.includes(
      '<error message="bad &lt;key&gt;" type="load">b_test.yaml:1:2: bad &lt;key&gt;</error>',
    ),
  );
  assert.ok(!/<[^>]*<|&(?!amp;|lt;|gt;|quot;|apos;)/.test(xml));
  assert.equal(xmlEscape("a'b"), "a&apos;b");
});
