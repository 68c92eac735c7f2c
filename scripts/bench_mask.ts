/**
 * Paths and masks micro-benchmark (`deno task bench mask`): what issue 20's
 * canonical path and secret masking add to one request — `canonicalPath` (in
 * `requestInfo`, every request), the readings of an ambiguous path (only when
 * it has spelling features; worst case at the 1024-character cap), and masking one
 * audit row (headers, query, path, reason) beside the name-list masking it
 * replaced. Prints the median µs per operation.
 *
 * @module
 */
import { canonicalPath, pathReadings } from "../src/policy/path.ts";
import { maskHeaders, maskPath, maskQuery, maskText } from "../src/dlp/secrets.ts";

/** The masking before issue 20: a list of header names and one name pattern. */
const OLD_HEADERS = new Set([
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  "api-key",
  "x-goog-api-key",
  "x-amz-security-token",
  "x-auth-token",
  "x-csrf-token",
  "private-token",
]);
const OLD_NAME =
  /(^|[-_])(key|token|secret|password|passwd|auth|signature|sig|credential)s?($|[-_])|apikey|api_key|access_token/i;
function oldHeaders(h: Record<string, string>) {
  const out: Record<string, string> = {};
  for (const k in h) out[k] = OLD_HEADERS.has(k) || OLD_NAME.test(k) ? "[REDACTED]" : h[k];
  return out;
}
function oldQuery(q: string) {
  return q.split("&").map((p) => {
    const eq = p.indexOf("=");
    return eq !== -1 && OLD_NAME.test(p.slice(0, eq)) ? `${p.slice(0, eq)}=[REDACTED]` : p;
  }).join("&");
}

/** An OpenAI SDK call's headers (what most rows carry). */
const HEADERS: Record<string, string> = {
  host: "api.openai.com",
  "content-type": "application/json",
  accept: "application/json",
  authorization: "Bearer sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "user-agent": "OpenAI/Python 1.54.4",
  "x-stainless-lang": "python",
  "x-stainless-package-version": "1.54.4",
  "x-stainless-os": "Linux",
  "x-stainless-arch": "x64",
  "x-stainless-runtime": "CPython",
  "x-stainless-runtime-version": "3.12.3",
  "x-stainless-retry-count": "0",
  "x-request-id": "req_0193a6b24c1e7f3a9d2b5e8c1a7f0b3d",
  "content-length": "312",
  "accept-encoding": "gzip, deflate",
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median µs per call of `fn` over `rounds` rounds of `n` calls. */
function bench(name: string, n: number, fn: () => unknown, rounds = 15): number {
  for (let i = 0; i < n; i++) fn(); // warm up
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    per.push(((performance.now() - t) * 1000) / n);
  }
  const m = median(per);
  console.log(`${name.padEnd(58)} ${m.toFixed(m < 10 ? 2 : 0).padStart(8)} µs`);
  return m;
}

const worst = "/" + "ok/..;/%2e%2e/%2f\\/".repeat(Math.floor(1020 / 19));

console.log("paths");
bench("canonicalPath /v1/chat/completions", 200_000, () => canonicalPath("/v1/chat/completions"));
bench("canonicalPath /@types%2fnode", 100_000, () => canonicalPath("/@types%2fnode"));
bench("canonicalPath + readings /ok/..;/admin/x", 20_000, () => {
  canonicalPath("/ok/..;/admin/x");
  pathReadings("/ok/..;/admin/x");
});
bench(
  `canonicalPath + readings, ${worst.length} chars of every feature`,
  20,
  () => {
    canonicalPath(worst);
    pathReadings(worst);
  },
  5,
);
console.log("one audit row (15 headers, a query, a path, a reason)");
const q = "api-version=2024-06-01&stream=true";
bench("before: name list (headers + query)", 100_000, () => {
  oldHeaders(HEADERS);
  oldQuery(q);
});
bench("now: names, shapes and path tokens (headers + query + path + reason)", 20_000, () => {
  maskHeaders(HEADERS);
  maskQuery(q);
  maskPath("/v1/chat/completions", "api.openai.com");
  maskText('matched rule "openai"');
});
let n = 0;
bench("now, a path and query seen for the first time (no cache hit)", 20_000, () => {
  n++;
  maskHeaders(HEADERS);
  maskQuery(`${q}&page=${n}`);
  maskPath(`/v1/files/file-${n}/content`, "api.openai.com");
  maskText(`matched rule "openai"`);
});
bench("now, a Telegram bot URL seen for the first time", 20_000, () => {
  maskPath(`/bot7123456789:AAHk3xM9f1Yq8ZrT2vW5bN7cL0pQ4sD6e${++n}/sendMessage`);
});
