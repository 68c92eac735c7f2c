/**
 * 10 MB bodies of adversarial text, each scanned with every detector (and
 * two custom RE2 regexes) under an 8 s bound; then a pathological custom regex
 * on the worst body for it. The bound is a guard against catastrophic
 * backtracking or quadratic loops (which take minutes on 10 MB), not a speed
 * test: the worst case here takes ~0.9 s on an idle 2-core machine and
 * 2.7-4 s while the rest of the suite runs on the same two cores, so a 2 s
 * bound failed CI-like runs.
 */

import assert from "node:assert/strict";
import { decodeForScan, jsonScanText } from "./decode.ts";
import { DETECTOR_NAMES } from "./detectors.ts";
import { redactJson } from "./json.ts";
import { compileScanner } from "./scanner.ts";
import { createStreamScanner } from "./stream.ts";
import { rng } from "../../tests/support/dlp_samples.ts";

const TEN_MB = 10 * 1024 * 1024;
const LIMIT_MS = 8000;

const scanner = compileScanner({
  detectors: DETECTOR_NAMES,
  custom: [{ name: "ticket", regex: "TCK-[0-9]{6}" }, {
    name: "order",
    regex: "[A-Z]{3}-[0-9]{6}",
  }],
});

/**
 * Asserts `fn` runs under the bound. A run over it is repeated once: test
 * files run in parallel on shared machines, and a guard against
 * catastrophic backtracking must not fail on a busy CPU (a super-linear scan
 * fails both runs by a wide margin).
 */
function assertFast(label: string, fn: () => unknown): void {
  let ms = Infinity;
  for (let attempt = 0; attempt < 2 && ms >= LIMIT_MS; attempt++) {
    const t0 = performance.now();
    fn();
    ms = Math.min(ms, performance.now() - t0);
  }
  assert.ok(ms < LIMIT_MS, `${label}: ${ms.toFixed(0)} ms`);
}

function fill(unit: string): string {
  return unit.repeat(Math.ceil(TEN_MB / unit.length)).slice(0, TEN_MB);
}

function randomB64(n: number): string {
  const r = rng(77);
  const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const parts: string[] = [];
  for (let i = 0; i < n; i += 4096) {
    let s = "";
    for (let j = 0; j < 4096; j++) s += a[Math.floor(r() * 64)];
    parts.push(s);
  }
  return parts.join("").slice(0, n);
}

const CASES: Record<string, () => string> = {
  "a × 10M": () => "a".repeat(TEN_MB),
  "spaces": () => " ".repeat(TEN_MB),
  "AKIA repeated": () => fill("AKIA"),
  "19-char AKIA ids": () => fill("AKIAIOSFODNN7EXAMPL "),
  "secret keyword, no key": () => fill("secret "),
  "secret then 41-char runs": () => fill("secret=" + "Ab1".repeat(14) + " "),
  "ghp_ repeated": () => fill("ghp_"),
  "-----BEGIN without end": () => fill("-----BEGIN RSA PRIVATE KEY-----\n"),
  "-----BEGIN + body, no end": () => "-----BEGIN RSA PRIVATE KEY-----\n" + fill("QUJD\n"),
  "-----BEGIN repeated, one END at the end": () =>
    fill("-----BEGIN ") + "-----END RSA PRIVATE KEY-----",
  "sk- repeated": () => fill("sk-"),
  "sk-ant- repeated": () => fill("sk-ant-"),
  "sk- + lowercase run": () => "sk-" + "a".repeat(TEN_MB),
  "xoxb- repeated": () => fill("xoxb-"),
  "slack hook paths": () => fill("hooks.slack.com/services/T/B/"),
  "eyJ repeated": () => fill("eyJ"),
  "eyJ dotted chain": () => fill("eyJhbGciOiJub25lIn0."),
  "k_live_ repeated": () => fill("sk_live_"),
  "AIza repeated": () => fill("AIza"),
  "digits": () => "1".repeat(TEN_MB),
  "digit groups": () => fill("4111 "),
  "digit-dash chain": () => fill("1-"),
  "SSN-like chain": () => fill("536-22-"),
  ".ssh/ repeated": () => fill(" .ssh/"),
  ".env repeated": () => fill(".env"),
  "/etc/ repeated": () => fill("/etc/"),
  "| repeated": () => "|".repeat(TEN_MB),
  "| sh repeated": () => fill("| sh "),
  "curl then pipes": () => fill("curl x | sudo sudo sudo sudo sudo sudo sudo "),
  "curl words, one pipe at the end": () => fill("curl ") + "| sh",
  "<( and $( repeated": () => fill("bash <(cat $("),
  "nc repeated": () => fill("nc "),
  "nc -e without shell": () => fill("nc -e "),
  "/dev/tcp/ repeated": () => fill("/dev/tcp/"),
  "/dev/tcp/ without port": () => fill(">& /dev/tcp/host/"),
  ".connect(( repeated": () => fill(".connect((socket "),
  "mkfifo repeated": () => fill("mkfifo sh "),
  "open(STDIN and ->fdopen(": () => fill("open(STDIN->fdopen("),
  "random base64": () => randomB64(TEN_MB),
};

for (const [name, make] of Object.entries(CASES)) {
  Deno.test(`10 MB adversarial: ${name}`, () => {
    const text = make();
    assertFast(name, () => {
      assert.ok(scanner.scan(text).length <= scanner.maxFindings + 1);
    });
  });
}

Deno.test("10 MB adversarial: pathological custom RE2 regexes stay linear", () => {
  const evil = compileScanner({
    detectors: [],
    custom: [{ name: "evil", regex: "(a+)+$" }, { name: "evil2", regex: "(x+x+)+y" }],
  });
  for (const text of ["a".repeat(TEN_MB) + "!", fill("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxa")]) {
    assertFast(`custom regexes on ${text.slice(-4)}`, () => evil.scan(text));
  }
});

Deno.test("10 MB adversarial JSON: backslashes and quotes", () => {
  for (
    const body of [
      '"' + "\\".repeat(TEN_MB) + '"',
      fill('"\\"'),
      fill('"a",'),
      '{"a":"' + fill("\\n") + '"}',
      '["' + fill('\\u0041\\"') + '"]',
      fill('"'),
    ]
  ) {
    assertFast(
      `decode and scan ${body.slice(0, 12)}`,
      () => scanner.scan(jsonScanText(body, false).text),
    );
    assertFast(`redactJson ${body.slice(0, 12)}`, () => redactJson(body, scanner));
  }
});

Deno.test("10 MB adversarial form body", () => {
  const body = new TextEncoder().encode(fill("a=%ZZ%41&b=+%7C+sh&"));
  assertFast("form", () => {
    const d = decodeForScan(body, "application/x-www-form-urlencoded", null, 2 * TEN_MB)!;
    scanner.scan(d.text);
  });
});

Deno.test("10 MB adversarial stream in 1 KiB chunks with redaction", () => {
  for (const unit of ["-----BEGIN RSA PRIVATE KEY-----\nQUJD", "AKIA", "| sh ", "a"]) {
    const text = fill(unit);
    assertFast(`stream of ${JSON.stringify(unit.slice(0, 12))}`, () => {
      const s = createStreamScanner(scanner, { redact: true });
      for (let i = 0; i < text.length; i += 1024) s.push(text.slice(i, i + 1024));
      s.end();
    });
  }
});
