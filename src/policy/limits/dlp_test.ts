import assert from "node:assert/strict";
import type { RequestInfo } from "../types.ts";
import { createDlpChecker, type DlpPlan, parseDlpConfig } from "./dlp.ts";
import { PolicyState } from "../../state/mod.ts";

const AWS = "AKIA" + "IOSFODNN7EXAMPLE";
const GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";

function req(over: Partial<RequestInfo> = {}): RequestInfo {
  return {
    id: "r1",
    method: "POST",
    scheme: "https",
    host: "api.example.test",
    port: 443,
    path: "/v1/items",
    query: null,
    headers: { host: "api.example.test", "content-type": "application/json" },
    client: "127.0.0.1",
    session: null,
    ...over,
  } as RequestInfo;
}

function check(raw: Record<string, unknown>, info: RequestInfo, providers: string[] = []) {
  const c = createDlpChecker(parseDlpConfig(raw), {
    rule: "r",
    isProviderHost: (h) => providers.includes(h),
  });
  return c.check(info, 0, new PolicyState({ startedAt: 0 }));
}

const where = (plan: DlpPlan) => plan.findings.map((f) => `${f.detector}@${f.location}`);

Deno.test("dlp check: the URL, each header and the body are told apart in one scan", () => {
  const r = check(
    { action: "warn" },
    req({
      path: "/v1/items",
      query: `token=${AWS}`,
      headers: { host: "api.example.test", "x-leak": `bearer ${GH}`, accept: "*/*" },
      bodyText: `{"note":"key ${AWS}"}`,
    }),
  );
  assert.equal(r.ok, true);
  const plan = (r as { dlp: DlpPlan }).dlp;
  assert.deepEqual(where(plan), [
    "aws_access_key@url",
    "github_token@header:x-leak",
    "aws_access_key@body",
  ]);
  assert.deepEqual(plan.redactHeaders, []); // warn: nothing is changed
  assert.ok(plan.findings.every((f) => !f.sample.includes(AWS) && !f.sample.includes(GH)));
});

Deno.test("dlp check: redact names the headers to redact, and blocks a secret in the URL", () => {
  const headerOnly = check(
    { action: "redact" },
    req({ headers: { host: "api.example.test", "x-leak": GH, "x-other": "fine" } }),
  );
  assert.equal(headerOnly.ok, true);
  const plan = (headerOnly as { dlp: DlpPlan }).dlp;
  assert.deepEqual(where(plan), ["github_token@header:x-leak"]);
  assert.deepEqual(plan.redactHeaders, ["x-leak"]);

  // A URL cannot be redacted safely: the request is refused.
  const inUrl = check({ action: "redact" }, req({ path: `/v1/${AWS}` }));
  assert.equal(inUrl.ok, false);
  assert.equal(
    (inUrl as { reason: string }).reason,
    "request blocked by DLP: aws_access_key (url)",
  );
});

Deno.test("dlp check: a provider's own credential header is expected, elsewhere it is a leak", () => {
  const key = "sk-proj-" + "Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh7jKl0nOp3rSt6v";
  const info = (host: string) => req({ host, headers: { host, authorization: `Bearer ${key}` } });
  const own = check({ action: "block" }, info("api.openai.com"), ["api.openai.com"]);
  assert.equal(own.ok, true);
  assert.deepEqual(where((own as { dlp: DlpPlan }).dlp), []);
  const elsewhere = check({ action: "block" }, info("api.example.test"), ["api.openai.com"]);
  assert.equal(elsewhere.ok, false);
  assert.equal(
    (elsewhere as { reason: string }).reason,
    "request blocked by DLP: openai_key (header:authorization)",
  );
});

Deno.test("dlp check: allow exceptions by detector, place and host", () => {
  const info = req({
    query: `k=${AWS}`,
    headers: { host: "api.example.test", "x-leak": AWS },
  });
  const r = check({
    action: "block",
    allow: [{ detector: "aws_access_key", host: "api.example.test", where: "header" }],
  }, info);
  assert.equal(r.ok, false);
  assert.equal((r as { reason: string }).reason, "request blocked by DLP: aws_access_key (url)");
  const both = check({
    action: "block",
    allow: [{ detector: "aws_access_key", host: "*.example.test" }],
  }, info);
  assert.equal(both.ok, true);
});

Deno.test("dlp check: a head found clean is not scanned again; a secret is found every time", () => {
  const c = createDlpChecker(parseDlpConfig({ action: "warn" }), {
    rule: "r",
    isProviderHost: () => false,
  });
  const scan = c.scanner.scan;
  const scanned: string[] = [];
  c.scanner.scan = (text, report) => {
    scanned.push(text);
    return scan(text, report);
  };
  const state = new PolicyState({ startedAt: 0 });
  const findings = (info: RequestInfo) =>
    where((c.check(info, 0, state) as unknown as { dlp: DlpPlan }).dlp);
  const clean = req({ method: "GET" });
  assert.deepEqual(findings(clean), []);
  assert.deepEqual(findings(clean), []);
  assert.equal(scanned.length, 1, "the second identical clean head is not scanned");
  // The same head with a secret in a header: scanned, found, and found again.
  const leaky = req({ method: "GET", headers: { ...clean.headers, "x-debug": AWS } });
  for (let i = 0; i < 3; i++) assert.deepEqual(findings(leaky), ["aws_access_key@header:x-debug"]);
  assert.equal(scanned.length, 4, "a head with a finding is scanned every time");
  // Another path is another head; a secret in the URL is found every time too.
  assert.deepEqual(findings(req({ method: "GET", path: `/v1/${AWS}` })), ["aws_access_key@url"]);
  assert.deepEqual(findings(req({ method: "GET", path: `/v1/${AWS}` })), ["aws_access_key@url"]);
  assert.equal(scanned.length, 6);
  // Bounded: 300 distinct clean heads later, the first one is scanned again.
  for (let i = 0; i < 300; i++) findings(req({ method: "GET", path: `/v1/items/${i}` }));
  const before = scanned.length;
  assert.deepEqual(findings(clean), []);
  assert.equal(scanned.length, before + 1, "the oldest clean head was forgotten");
});

Deno.test("dlp check: the last clean head is matched part by part: a header added, changed or moved past a provider's credential is scanned", () => {
  const OPENAI = "sk-proj-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
  const c = createDlpChecker(parseDlpConfig({ action: "warn" }), {
    rule: "r",
    isProviderHost: (h) => h === "api.openai.com",
  });
  const scan = c.scanner.scan;
  let scans = 0;
  c.scanner.scan = (text, report) => {
    scans++;
    return scan(text, report);
  };
  const state = new PolicyState({ startedAt: 0 });
  const findings = (info: RequestInfo) =>
    where((c.check(info, 0, state) as unknown as { dlp: DlpPlan }).dlp);
  const base = { host: "api.example.test", accept: "application/json" };
  assert.deepEqual(findings(req({ headers: base })), []);
  assert.deepEqual(findings(req({ headers: { ...base } })), []);
  assert.equal(scans, 1, "the same values in a new headers object: not scanned again");
  // One more header, a changed value, the same values under one header fewer.
  assert.deepEqual(findings(req({ headers: { ...base, "x-note": AWS } })), [
    "aws_access_key@header:x-note",
  ]);
  assert.deepEqual(findings(req({ headers: { ...base, accept: AWS } })), [
    "aws_access_key@header:accept",
  ]);
  assert.deepEqual(findings(req({ headers: { host: base.host } })), []);
  assert.equal(scans, 4);
  // A provider's key in its credential header is not scanned for that provider;
  // the same head to another host carries the key into the scan.
  const openai = { host: "api.openai.com", authorization: `Bearer ${OPENAI}` };
  assert.deepEqual(findings(req({ host: "api.openai.com", headers: openai })), []);
  assert.deepEqual(findings(req({ host: "api.openai.com", headers: { ...openai } })), []);
  assert.equal(scans, 5);
  assert.deepEqual(findings(req({ host: "api.openai.com.evil.test", headers: openai })), [
    "openai_key@header:authorization",
  ]);
  // A header with several values is compared as the text that is scanned.
  const two = { ...base, "x-tags": ["a", AWS] } as unknown as RequestInfo["headers"];
  assert.deepEqual(findings(req({ headers: two })), ["aws_access_key@header:x-tags"]);
  assert.equal(scans, 7);
});
