/**
 * 10 MB bodies of adversarial text, each scanned with every detector (and
 * two custom RE2 regexes); then a pathological custom regex on the worst
 * body for it. What is checked is how the time grows, not how long it takes:
 * each input is also built at 1 MB, and the 10 MB scan must take less than
 * 40 times as long as the 1 MB one (linear work is ~10×; catastrophic
 * backtracking or a quadratic loop is 100× and more, minutes on 10 MB). A
 * ratio of CPU times holds on a busy machine, where a fixed bound on wall
 * time failed CI-like runs (the worst case took ~0.9 s idle and 2.7-4 s
 * beside the rest of the suite).
 */

import assert from "node:assert/strict";
import { decodeForScan, jsonScanText } from "./decode.ts";
import { DETECTOR_NAMES } from "./detectors.ts";
import { redactJson } from "./json.ts";
import { compileScanner } from "./scanner.ts";
import { createStreamScanner } from "./stream.ts";
import { rng } from "../../tests/support/dlp_samples.ts";

const ONE_MB = 1024 * 1024;
const TEN_MB = 10 * ONE_MB;
/** Largest allowed time(10 MB) / time(1 MB): linear is ~10, quadratic ~100. */
const MAX_GROWTH = 40;
/** Below this (CPU ms), a 10 MB run is too fast to be super-linear (a quadratic pass is minutes). */
const TRIVIAL_MS = 150;

const scanner = compileScanner({
  detectors: DETECTOR_NAMES,
  custom: [{ name: "ticket", regex: "TCK-[0-9]{6}" }, {
    name: "order",
    regex: "[A-Z]{3}-[0-9]{6}",
  }],
});

/**
 * CPU time of this thread in ms (Linux `/proc/thread-self/stat`, 10 ms
 * ticks), else wall time. Test files run in parallel on shared machines:
 * a busy CPU stretches wall time by whatever the neighbours take, but not
 * the CPU this thread spends.
 */
function clockMs(): number {
  try {
    const stat = Deno.readTextFileSync("/proc/thread-self/stat");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return performance.now();
  }
}

/** Mean time of `fn` over runs that add up to at least `totalMs` (and `minRuns`). */
function timeOf(fn: () => unknown, totalMs: number, minRuns: number): number {
  const t0 = clockMs();
  let runs = 0;
  while (runs < minRuns || clockMs() - t0 < totalMs) {
    fn();
    runs++;
  }
  return (clockMs() - t0) / runs;
}

/**
 * Asserts `fn` on the 10 MB input grows at most {@link MAX_GROWTH} times
 * over the 1 MB one, in CPU time (the 1 MB input is run until 200 ms add
 * up, so the 10 ms clock does not blur it). An over-ratio result is
 * measured once more.
 */
function assertLinear<T>(label: string, make: (n: number) => T, fn: (input: T) => unknown): void {
  const small = make(ONE_MB);
  const big = make(TEN_MB);
  let ts = timeOf(() => fn(small), 200, 2);
  let tb = timeOf(() => fn(big), 0, 1);
  const growth = () => tb / Math.max(ts, 1);
  if (tb >= TRIVIAL_MS && growth() >= MAX_GROWTH) {
    ts = Math.max(ts, timeOf(() => fn(small), 200, 2));
    tb = Math.min(tb, timeOf(() => fn(big), 0, 1));
  }
  assert.ok(
    tb < TRIVIAL_MS || growth() < MAX_GROWTH,
    `${label}: 1 MB ${ts.toFixed(1)} ms, 10 MB ${tb.toFixed(1)} ms (${growth().toFixed(0)}×)`,
  );
}

function fill(unit: string, n: number): string {
  return unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
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

const CASES: Record<string, (n: number) => string> = {
  "a × 10M": (n) => "a".repeat(n),
  "spaces": (n) => " ".repeat(n),
  "AKIA repeated": (n) => fill("AKIA", n),
  "19-char AKIA ids": (n) => fill("AKIAIOSFODNN7EXAMPL ", n),
  "secret keyword, no key": (n) => fill("secret ", n),
  "secret then 41-char runs": (n) => fill("secret=" + "Ab1".repeat(14) + " ", n),
  "ghp_ repeated": (n) => fill("ghp_", n),
  "-----BEGIN without end": (n) => fill("-----BEGIN RSA PRIVATE KEY-----\n", n),
  "-----BEGIN + body, no end": (n) => "-----BEGIN RSA PRIVATE KEY-----\n" + fill("QUJD\n", n),
  "-----BEGIN repeated, one END at the end": (n) =>
    fill("-----BEGIN ", n) + "-----END RSA PRIVATE KEY-----",
  "sk- repeated": (n) => fill("sk-", n),
  "sk-ant- repeated": (n) => fill("sk-ant-", n),
  "sk- + lowercase run": (n) => "sk-" + "a".repeat(n),
  "xoxb- repeated": (n) => fill("xoxb-", n),
  "slack hook paths": (n) => fill("hooks.slack.com/services/T/B/", n),
  "eyJ repeated": (n) => fill("eyJ", n),
  "eyJ dotted chain": (n) => fill("eyJhbGciOiJub25lIn0.", n),
  "k_live_ repeated": (n) => fill("sk_live_", n),
  "AIza repeated": (n) => fill("AIza", n),
  "digits": (n) => "1".repeat(n),
  "digit groups": (n) => fill("4111 ", n),
  "digit-dash chain": (n) => fill("1-", n),
  "SSN-like chain": (n) => fill("536-22-", n),
  ".ssh/ repeated": (n) => fill(" .ssh/", n),
  ".env repeated": (n) => fill(".env", n),
  "/etc/ repeated": (n) => fill("/etc/", n),
  "| repeated": (n) => "|".repeat(n),
  "| sh repeated": (n) => fill("| sh ", n),
  "curl then pipes": (n) => fill("curl x | sudo sudo sudo sudo sudo sudo sudo ", n),
  "curl words, one pipe at the end": (n) => fill("curl ", n) + "| sh",
  "<( and $( repeated": (n) => fill("bash <(cat $(", n),
  "nc repeated": (n) => fill("nc ", n),
  "nc -e without shell": (n) => fill("nc -e ", n),
  "/dev/tcp/ repeated": (n) => fill("/dev/tcp/", n),
  "/dev/tcp/ without port": (n) => fill(">& /dev/tcp/host/", n),
  ".connect(( repeated": (n) => fill(".connect((socket ", n),
  "mkfifo repeated": (n) => fill("mkfifo sh ", n),
  "open(STDIN and ->fdopen(": (n) => fill("open(STDIN->fdopen(", n),
  "random base64": (n) => randomB64(n),
};

for (const [name, make] of Object.entries(CASES)) {
  Deno.test(`10 MB adversarial: ${name}`, () => {
    assertLinear(name, make, (text) => {
      assert.ok(scanner.scan(text).length <= scanner.maxFindings + 1);
    });
  });
}

Deno.test("10 MB adversarial: pathological custom RE2 regexes stay linear", () => {
  const evil = compileScanner({
    detectors: [],
    custom: [{ name: "evil", regex: "(a+)+$" }, { name: "evil2", regex: "(x+x+)+y" }],
  });
  const inputs = [
    (n: number) => "a".repeat(n) + "!",
    (n: number) => fill("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxa", n),
  ];
  for (const make of inputs) {
    assertLinear(`custom regexes on ${make(8).slice(-4)}`, make, (text) => evil.scan(text));
  }
});

Deno.test("10 MB adversarial JSON: backslashes and quotes", () => {
  const bodies = [
    (n: number) => '"' + "\\".repeat(n) + '"',
    (n: number) => fill('"\\"', n),
    (n: number) => fill('"a",', n),
    (n: number) => '{"a":"' + fill("\\n", n) + '"}',
    (n: number) => '["' + fill('\\u0041\\"', n) + '"]',
    (n: number) => fill('"', n),
  ];
  for (const make of bodies) {
    const label = make(16).slice(0, 12);
    assertLinear(
      `decode and scan ${label}`,
      make,
      (body) => scanner.scan(jsonScanText(body, false).text),
    );
    assertLinear(`redactJson ${label}`, make, (body) => redactJson(body, scanner));
  }
});

Deno.test("10 MB adversarial form body", () => {
  const make = (n: number) => new TextEncoder().encode(fill("a=%ZZ%41&b=+%7C+sh&", n));
  assertLinear("form", make, (body) => {
    const d = decodeForScan(body, "application/x-www-form-urlencoded", null, 2 * TEN_MB)!;
    scanner.scan(d.text);
  });
});

Deno.test("10 MB adversarial stream in 1 KiB chunks with redaction", () => {
  for (const unit of ["-----BEGIN RSA PRIVATE KEY-----\nQUJD", "AKIA", "| sh ", "a"]) {
    assertLinear(`stream of ${JSON.stringify(unit.slice(0, 12))}`, (n) => fill(unit, n), (text) => {
      const s = createStreamScanner(scanner, { redact: true });
      for (let i = 0; i < text.length; i += 1024) s.push(text.slice(i, i + 1024));
      s.end();
    });
  }
});
