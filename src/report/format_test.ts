import assert from "node:assert/strict";
import { AuditStore } from "../audit/store.ts";
import { buildReport, type Report } from "./build.ts";
import {
  formatJson,
  formatMarkdown,
  formatReport,
  formatText,
  mdText,
  requestLine,
  safeText,
  SHOWN,
  usd,
} from "./format.ts";
import { event, fixtureAudit, S1, T0 } from "../../tests/support/report_fixtures.ts";

async function s1Report(): Promise<Report> {
  const store = fixtureAudit();
  try {
    return await buildReport(store.reader(), { session: S1, since: null, until: null }, {
      source: "audit.db",
    });
  } finally {
    store.close();
  }
}

async function reportOf(events: ReturnType<typeof event>[]): Promise<Report> {
  const store = AuditStore.open(":memory:", { log: () => {} });
  try {
    for (const e of events) store.add(e);
    store.flush();
    return await buildReport(store.reader(), { session: null, since: null, until: null }, {
      source: "a.db",
    });
  } finally {
    store.close();
  }
}

Deno.test("format: text", async () => {
  assert.equal(
    formatText(await s1Report()),
    `agentgate report: session ci-0a1b2c3d4e5f6a7b (label ci)
  2025-06-01 10:00:00Z to 2025-06-01 12:00:04Z, from audit.db
  7 requests to 4 hosts: 2 allowed, 1 logged, 2 denied, 1 would be denied, 1 error
  LLM: 2 call(s), 1,500 input + 300 output tokens, $0.01

Denials (3)
  deny        GET https://api.example.test/admin/users
              rule "admin" (agentgate.yaml:3): no admin  [403, 2x]
  would deny  POST https://api.example.test/v1/files
              rule "uploads" (agentgate.yaml:12): uploads are reviewed  [200, dlp]

Requests by host
  HOST              REQUESTS  ALLOW  LOG  DENY  WOULD DENY  ERROR
  api.example.test         3      0    0     2           1      0
  api.openai.com           2      2    0     0           0      0
  down.test                1      0    0     0           0      1
  old.example              1      0    1     0           0      0

Errors
  COUNT  HOST       REASON
      1  down.test  DNS lookup failed for "down.test:80"

Top rules
  RULE       HITS  ALLOW  LOG  DENY  WOULD DENY  ERROR
  admin         2      0    0     2           0      0
  openai        2      2    0     0           0      0
  (no rule)     2      0    1     0           0      1
  uploads       1      0    0     0           1      0

LLM tokens and spend
  MODEL   PROVIDER  CALLS  INPUT  OUTPUT  COST
  gpt-4o  openai        2  1,500     300  $0.01
`,
  );
});

Deno.test("format: markdown", async () => {
  assert.equal(
    formatMarkdown(await s1Report()),
    `### ❌ agentgate: 2 requests denied

session **ci-0a1b2c3d4e5f6a7b** (label ci) · 7 requests to 4 hosts: 2 allowed, 1 logged, 2 denied, 1 would be denied, 1 error · LLM: 2 call(s), 1,500 input + 300 output tokens, $0.01 · 2025-06-01 10:00:00Z to 2025-06-01 12:00:04Z

#### Denied requests

| Decision | Request | Rule | Reason | Count |
| --- | --- | --- | --- | --: |
| deny | GET https://api.example.test/admin/users | admin | no admin | 2 |
| would deny | POST https://api.example.test/v1/files | uploads | uploads are reviewed | 1 |

#### Requests by host

| Host | Requests | Allow | Log | Deny | Would deny | Error |
| --- | --: | --: | --: | --: | --: | --: |
| api.example.test | 3 | 0 | 0 | 2 | 1 | 0 |
| api.openai.com | 2 | 2 | 0 | 0 | 0 | 0 |
| down.test | 1 | 0 | 0 | 0 | 0 | 1 |
| old.example | 1 | 0 | 1 | 0 | 0 | 0 |

#### Errors

| Host | Reason | Count |
| --- | --- | --: |
| down.test | DNS lookup failed for "down.test:80" | 1 |

#### Top rules

| Rule | Hits | Allow | Log | Deny | Would deny | Error |
| --- | --: | --: | --: | --: | --: | --: |
| admin | 2 | 0 | 0 | 2 | 0 | 0 |
| openai | 2 | 2 | 0 | 0 | 0 | 0 |
| *(no rule)* | 2 | 0 | 1 | 0 | 0 | 1 |
| uploads | 1 | 0 | 0 | 0 | 1 | 0 |

#### LLM tokens and spend

| Model | Provider | Calls | Input tokens | Output tokens | Cost |
| --- | --- | --: | --: | --: | --: |
| gpt-4o | openai | 2 | 1,500 | 300 | $0.01 |
`,
  );
});

Deno.test("format: no requests, no denials, would-be denials", async () => {
  const empty = await reportOf([]);
  assert.equal(
    formatText(empty),
    "agentgate report: all sessions\n  from a.db\n  no requests went through the proxy\n",
  );
  assert.equal(
    formatMarkdown(empty),
    "### ✅ agentgate: no request denied\n\nall sessions · no requests went through the proxy\n",
  );
  const clean = await reportOf([event({ session: S1 })]);
  assert.match(formatMarkdown(clean), /^### ✅ agentgate: no request denied\n/);
  assert.doesNotMatch(formatText(clean), /Denials/);
  const audit = await reportOf([event({ decision: "would_deny", reason: "r" })]);
  assert.match(formatMarkdown(audit), /^### ⚠️ agentgate: 1 request would be denied\n/);
});

Deno.test("format: request text cannot inject terminal escapes or markdown/HTML", async () => {
  const r = await reportOf([
    event({
      host: "evil.test",
      path: "/a\x1b[2J\u202e|`x`",
      decision: "deny",
      rule: "r_1",
      reason: '<img src=x onerror="alert(1)"> [click](http://x) | **bold**\nnext',
      session: "s|*_",
      label: "<b>",
    }),
  ]);
  const text = formatText(r);
  assert.ok(!text.includes("\x1b") && !text.includes("\u202e"), "no raw escape or bidi character");
  assert.match(text, /GET https:\/\/evil\.test\/a\\x1b\[2J\\u202e\|`x`/);
  assert.match(text, /\\x0anext/);
  const md = formatMarkdown(r);
  assert.ok(!md.includes("<img") && !md.includes("<b>"), md);
  assert.ok(
    md.includes('&lt;img src=x onerror="alert(1)"&gt; \\[click\\](http://x) \\| \\*\\*bold\\*\\*'),
  );
  // Every table row keeps its 5 cells: no unescaped pipe from the request.
  const row = md.split("\n").find((l) => l.startsWith("| deny |"))!;
  assert.equal(row.split(/(?<!\\)\|/).length - 2, 5, row);
  assert.ok(md.includes("| s\\|\\*\\_ | &lt;b&gt; |"), md);
});

Deno.test("format: long lists are cut in text and markdown, complete in JSON", async () => {
  const n = SHOWN.denials + 10;
  const r = await reportOf(
    Array.from(
      { length: n },
      (_, i) => event({ ts: T0 + i, path: `/p${i}`, decision: "deny", reason: "no" }),
    ),
  );
  assert.equal(r.denials.length, n);
  const text = formatText(r);
  assert.equal(text.match(/^ {2}deny {8}GET /gm)!.length, SHOWN.denials);
  assert.match(text, /… 10 more denials \(see --format json\)/);
  assert.match(formatMarkdown(r), /… 10 more denials \(see --format json\)/);
  assert.equal(JSON.parse(formatJson(r)).denials.length, n);
  assert.deepEqual(JSON.parse(formatReport(r, "json")), r);
});

Deno.test("format: helpers", () => {
  assert.deepEqual([usd(0), usd(1.5), usd(0.01234), usd(0.012), usd(12.3456), usd(0.00001)], [
    "$0.00",
    "$1.50",
    "$0.0123",
    "$0.012",
    "$12.3456",
    "$0.000010",
  ]);
  const base = { method: "GET", scheme: "http", host: "h", port: 80, path: "/p" };
  assert.equal(requestLine(base), "GET http://h/p");
  assert.equal(requestLine({ ...base, port: 8080 }), "GET http://h:8080/p");
  assert.equal(requestLine({ ...base, scheme: "https", port: 443 }), "GET https://h/p");
  assert.equal(requestLine({ ...base, host: "::1" }), "GET http://[::1]/p");
  assert.equal(
    requestLine({ ...base, method: "CONNECT", port: 443, path: null }),
    "CONNECT h:443",
  );
  assert.equal(safeText("a\tb\u0085\u2066"), "a\\x09b\\x85\\u2066");
  assert.equal(mdText("a_b*c~d#e!f`g\\h&"), "a\\_b\\*c\\~d\\#e\\!f\\`g\\\\h&amp;");
});
