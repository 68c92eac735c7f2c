import assert from "node:assert/strict";
import { DETECTOR_NAMES } from "./detectors.ts";
import {
  compileScanner,
  mask,
  type ScanReport,
  suggestDetector,
  TOO_MANY_FINDINGS,
  unknownDetectorMessage,
} from "./scanner.ts";
import { fakeSecrets, samples } from "../../tests/support/dlp_samples.ts";

const S = fakeSecrets(11);
const all = compileScanner({ detectors: DETECTOR_NAMES });
const SAMPLES = samples(11);

Deno.test("every detector type has a sample that only it finds", () => {
  assert.deepEqual(Object.keys(SAMPLES).sort(), [...DETECTOR_NAMES].sort());
  for (const [detector, text] of Object.entries(SAMPLES)) {
    assert.deepEqual(all.scan(text).map((f) => f.detector), [detector], text);
  }
});

Deno.test("masking: first 4 + … + last 4, asterisks when short, never more than 8 characters", () => {
  assert.equal(mask("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
  assert.equal(mask("536-22-1234"), "***********");
  assert.equal(mask("0123456789abcde"), "***************");
  assert.equal(mask("0123456789abcdef"), "0123…cdef");
  assert.equal(mask("x".repeat(5000)).length, 9);
  assert.equal(mask("😀😀😀😀middle-part-😀😀😀😀"), "😀😀😀😀…😀😀😀😀");
  for (const text of Object.values(SAMPLES)) {
    for (const f of all.scan(text)) {
      const value = text.slice(f.start, f.end);
      const shown = f.masked.replace(/[*…]/g, "");
      assert.ok(shown.length <= 8, `${f.detector} shows ${shown.length} characters`);
      assert.notEqual(f.masked, value);
      // the finding holds the value nowhere else
      assert.deepEqual(Object.keys(f).sort(), ["detector", "end", "masked", "start"]);
      assert.ok(!JSON.stringify(f).includes(value.slice(4, -4)) || value.length < 12);
    }
  }
});

Deno.test("findings are sorted and redact replaces each with its marker", () => {
  const text = `a ${S.github_token} b 4111111111111111 c ${S.aws_access_key}`;
  const f = all.scan(text);
  assert.deepEqual(f.map((x) => x.detector), ["github_token", "credit_card", "aws_access_key"]);
  assert.ok(f.every((x, i) => i === 0 || f[i - 1].start <= x.start));
  assert.equal(
    all.redact(text, f),
    "a [REDACTED:github_token] b [REDACTED:credit_card] c [REDACTED:aws_access_key]",
  );
  assert.equal(all.redact(text, []), text);
});

Deno.test("redact merges overlapping findings (first detector wins)", () => {
  const sc = compileScanner({
    detectors: ["aws_access_key"],
    custom: [{ name: "akia_prefix", regex: "AKIA[A-Z0-9]{4}" }, {
      name: "tail",
      regex: "EXAMPLE!",
    }],
  });
  const text = "x AKIAIOSFODNN7EXAMPLE! y";
  const f = sc.scan(text);
  assert.deepEqual(f.map((x) => x.detector), ["aws_access_key", "akia_prefix", "tail"]);
  assert.equal(sc.redact(text, f), "x [REDACTED:aws_access_key] y");
});

Deno.test("unknown detector: sentence-case error with did-you-mean", () => {
  assert.throws(
    () => compileScanner({ detectors: ["aws_key"] }),
    { message: 'Unknown detector "aws_key" (did you mean "aws_access_key"?)' },
  );
  assert.throws(
    () => compileScanner({ detectors: ["github"] }),
    { message: 'Unknown detector "github" (did you mean "github_token"?)' },
  );
  assert.equal(suggestDetector("ssn"), "us_ssn");
  assert.equal(suggestDetector("creditcard"), "credit_card");
  assert.equal(suggestDetector("privat_key"), "private_key");
  assert.equal(suggestDetector("reverse-shell"), "reverse_shell");
  assert.equal(suggestDetector("jwt_token"), "jwt");
  assert.match(
    unknownDetectorMessage("zzzzzzzz"),
    /^Unknown detector "zzzzzzzz": known detectors are "aws_access_key", /,
  );
});

Deno.test("custom detectors: RE2 syntax, clear errors", () => {
  const sc = compileScanner({
    detectors: [],
    custom: [{ name: "ticket_id", regex: "TCK-[0-9]{6}" }, {
      name: "internal_host",
      regex: "(?i)[a-z0-9-]+\\.corp\\.example",
    }],
  });
  const text = "see TCK-123456 on DB1.CORP.EXAMPLE and TCK-12345";
  assert.deepEqual(
    sc.scan(text).map((f) => [f.detector, text.slice(f.start, f.end)]),
    [["ticket_id", "TCK-123456"], ["internal_host", "DB1.CORP.EXAMPLE"]],
  );
  assert.deepEqual(sc.detectors, ["ticket_id", "internal_host"]);
  assert.throws(
    () => compileScanner({ detectors: [], custom: [{ name: "t", regex: "TCK-(" }] }),
    {
      message:
        'Invalid regex "TCK-(" for custom detector "t": missing closing ): `TCK-(` (RE2 syntax: no lookaround or backreferences)',
    },
  );
  assert.throws(
    () => compileScanner({ detectors: [], custom: [{ name: "t", regex: "(?=x)y" }] }),
    /^Error: Invalid regex "\(\?=x\)y" for custom detector "t": invalid or unsupported Perl syntax/,
  );
  assert.throws(
    () => compileScanner({ detectors: [], custom: [{ name: "t", regex: "(a)\\1" }] }),
    /Invalid regex/,
  );
  assert.throws(
    () => compileScanner({ detectors: [], custom: [{ name: "Ticket ID", regex: "x" }] }),
    {
      message:
        'Invalid custom detector name "Ticket ID": use a lower-case letter, then letters, digits or underscores',
    },
  );
  assert.throws(
    () => compileScanner({ detectors: [], custom: [{ name: "jwt", regex: "x" }] }),
    { message: 'Invalid custom detector name "jwt": it is the name of a built-in detector' },
  );
  assert.throws(
    () => compileScanner({ detectors: [], custom: [{ name: "t", regex: "" }] }),
    { message: 'Invalid regex for custom detector "t": it is empty' },
  );
  // empty matches mark nothing
  const empty = compileScanner({ detectors: [], custom: [{ name: "maybe", regex: "x*" }] });
  assert.deepEqual(empty.scan("aaa xx b").map((f) => [f.start, f.end]), [[4, 6]]);
});

Deno.test("custom RE2 regex with a pathological pattern stays linear", () => {
  // (a+)+$ takes exponential time in a backtracking engine on "aaa…a!":
  // JS RegExp needs minutes at 30 characters. RE2 is linear.
  const sc = compileScanner({
    detectors: [],
    custom: [{ name: "evil", regex: "(a+)+$" }, { name: "evil2", regex: "(x+x+)+y" }],
  });
  const time = (n: number) => {
    const text = "a".repeat(n) + "!" + "x".repeat(n);
    const t0 = performance.now();
    assert.deepEqual(sc.scan(text), []);
    return performance.now() - t0;
  };
  time(10_000); // warm up
  const small = time(100_000);
  const big = time(400_000);
  assert.ok(big < 2000, `400k characters took ${big.toFixed(0)} ms`);
  // 4x the input, well under 16x the time (quadratic would be 16x)
  assert.ok(big < small * 10 + 50, `not linear: ${small.toFixed(0)} ms -> ${big.toFixed(0)} ms`);
});

Deno.test("maxFindings: a flood of matches is cut and fails closed", () => {
  const sc = compileScanner({ detectors: ["aws_access_key"], maxFindings: 10 });
  const unit = "AKIAIOSFODNN7EXAMPLE ";
  const text = unit.repeat(50);
  const f = sc.scan(text);
  assert.equal(f.length, 11);
  assert.deepEqual(
    f.slice(0, 10).map((x) => x.start),
    Array.from({ length: 10 }, (_, i) => i * unit.length),
  );
  assert.deepEqual(f[10], {
    detector: TOO_MANY_FINDINGS,
    start: 9 * unit.length + 20,
    end: text.length,
    masked: "…",
  });
  const red = sc.redact(text, f);
  assert.ok(!red.includes("AKIA"));
  assert.ok(red.endsWith("[REDACTED:too_many_findings]"));
  // across detectors: the first maxFindings by position are kept
  const two = compileScanner({ detectors: ["aws_access_key", "us_ssn"], maxFindings: 3 });
  const t2 = "AKIAIOSFODNN7EXAMPLE 536-22-1234 ".repeat(3);
  assert.deepEqual(two.scan(t2).map((x) => x.detector), [
    "aws_access_key",
    "us_ssn",
    "aws_access_key",
    TOO_MANY_FINDINGS,
  ]);
  assert.throws(() => compileScanner({ detectors: [], maxFindings: 0 }), /Invalid maxFindings "0"/);
});

Deno.test("a duplicate detector name is ignored; duplicate custom names are an error", () => {
  const sc = compileScanner({ detectors: ["jwt", "jwt"] });
  assert.deepEqual(sc.detectors, ["jwt"]);
  assert.throws(
    () =>
      compileScanner({
        detectors: [],
        custom: [{ name: "a", regex: "x" }, { name: "a", regex: "y" }],
      }),
    { message: 'Duplicate custom detector name "a"' },
  );
});

Deno.test("custom detectors with a time budget: windowed matching finds what one pass finds", () => {
  // Patterns with anchors and word boundaries, matches near window edges.
  const patterns = [
    "TCK-[0-9]{6}",
    "\\bkey-[a-z]{3,8}\\b",
    "end$",
    "^start",
    "(?m)^line [0-9]+$",
    "[A-Z]{4}[0-9]{2}",
    "x{3,}",
  ];
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const atoms = [
    "TCK-123456 ",
    "key-abcde ",
    "key-ab ",
    "line 42\n",
    "ABCD12",
    "xxxx",
    " ",
    "a",
    "end",
  ];
  for (let round = 0; round < 30; round++) {
    let text = round % 2 ? "start " : "";
    while (text.length < 5000 + rnd(200_000)) text += atoms[rnd(atoms.length)];
    if (round % 3 === 0) text += "end";
    for (const regex of patterns) {
      const custom = [{ name: "c", regex }];
      const plain = compileScanner({ detectors: [], custom, maxFindings: 100_000 });
      const budgeted = compileScanner({
        detectors: [],
        custom,
        maxFindings: 100_000,
        budgetMs: 1e9,
      });
      const report: ScanReport = { cut: [] };
      assert.deepEqual(
        budgeted.scan(text, report),
        plain.scan(text),
        `round ${round}, ${regex}, ${text.length} chars`,
      );
      assert.deepEqual(report.cut, []);
    }
  }
});

Deno.test("custom detectors with a time budget: a slow pattern stops and says how far it got", () => {
  // A clock that moves 1 ms per reading: deterministic, whatever the machine.
  let t = 0;
  const scanner = compileScanner({
    detectors: ["aws_access_key"],
    custom: [{ name: "slow", regex: "(?s)(.*a){20}" }, { name: "ticket", regex: "TCK-[0-9]{6}" }],
    budgetMs: 20,
    now: () => t++,
  });
  const text = "a lazy cat ate a banana ".repeat(40_000) + " AKIAIOSFODNN7EXAMPLE TCK-123456";
  const report: ScanReport = { cut: [] };
  const found = scanner.scan(text, report);
  assert.equal(report.cut.length, 2);
  assert.deepEqual(report.cut.map((c) => [c.detector, c.of]), [
    ["slow", text.length],
    ["ticket", text.length],
  ]);
  assert.ok(report.cut[0].scanned < text.length);
  // Built-in detectors have no budget: they still see the whole text.
  assert.ok(found.some((f) => f.detector === "aws_access_key"));
  // Without a report the cut is silent, but the scan is bounded all the same.
  t = 0;
  scanner.scan(text);
  assert.ok(t < 100, `${t} clock readings`);
});
