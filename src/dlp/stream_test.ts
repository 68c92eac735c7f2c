import assert from "node:assert/strict";
import { DETECTOR_NAMES } from "./detectors.ts";
import { compileScanner, type Finding, type Scanner } from "./scanner.ts";
import { createStreamScanner, type StreamScanOptions } from "./stream.ts";
import {
  chatPayload,
  fakePem,
  fakeSecrets,
  rng,
  samples,
} from "../../tests/support/dlp_samples.ts";

const all = compileScanner({ detectors: DETECTOR_NAMES });
const S = fakeSecrets(41);

/** Feeds `chunks` through a stream scanner; returns all findings, the output and the largest hold-back seen. */
function run(scanner: Scanner, chunks: string[], opts: StreamScanOptions) {
  const s = createStreamScanner(scanner, opts);
  const findings: Finding[] = [];
  let output = "";
  let pushed = 0;
  let maxHeld = 0;
  for (const c of chunks) {
    const r = s.push(c);
    pushed += c.length;
    findings.push(...r.findings);
    output += r.output;
    maxHeld = Math.max(maxHeld, pushed - output.length); // only meaningful before redaction changes lengths
  }
  const r = s.end();
  findings.push(...r.findings);
  output += r.output;
  findings.sort((a, b) => a.start - b.start || b.end - a.end);
  return { findings, output, maxHeld };
}

const key = (f: Finding[]) => f.map((x) => `${x.detector}@${x.start}-${x.end}:${x.masked}`);

/** Prose padding long enough that the stream releases text before and after the secret. */
const PAD_BEFORE = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(6);
const PAD_AFTER = " Sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.".repeat(6);

Deno.test("split at every position of the secret, for every detector type: same findings, same redaction", () => {
  for (const [detector, sample] of Object.entries(samples(43))) {
    const text = PAD_BEFORE + sample + PAD_AFTER;
    const whole = all.scan(text);
    assert.deepEqual(whole.map((f) => f.detector), [detector]);
    const { start, end } = whole[0];
    const redacted = all.redact(text, whole);
    for (let p = start; p <= end; p++) {
      const parts = [text.slice(0, p), text.slice(p)];
      const r = run(all, parts, { redact: true });
      assert.deepEqual(key(r.findings), key(whole), `${detector} split at ${p - start}`);
      assert.equal(r.output, redacted, `${detector} split at ${p - start}`);
      const plain = run(all, parts, { redact: false });
      assert.deepEqual(
        key(plain.findings),
        key(whole),
        `${detector} (no redaction) split at ${p - start}`,
      );
      assert.equal(plain.output, text);
    }
  }
});

Deno.test("one character at a time: every detector type, output delayed at most `window` characters", () => {
  const text = Object.values(samples(44)).join(" … ");
  const whole = all.scan(text);
  assert.equal(whole.length, DETECTOR_NAMES.length);
  for (const window of [160, 256, 1000]) {
    const chars = [...text];
    const r = run(all, chars, { redact: true, window });
    assert.deepEqual(key(r.findings), key(whole), `window ${window}`);
    assert.equal(r.output, all.redact(text, whole), `window ${window}`);
    const plain = run(all, chars, { window });
    assert.deepEqual(key(plain.findings), key(whole));
    assert.equal(plain.maxHeld, 0); // without redaction, nothing is held back
  }
});

Deno.test("hold-back never exceeds the window", () => {
  const text = chatPayload(30_000, 3);
  const r = rng(5);
  for (const window of [0, 16, 256, 4096]) {
    const s = createStreamScanner(all, { redact: true, window });
    let pushed = 0;
    let out = 0;
    for (let i = 0; i < text.length;) {
      const n = 1 + Math.floor(r() * 700);
      const res = s.push(text.slice(i, i + n));
      pushed += Math.min(n, text.length - i);
      out += res.output.length; // no findings in this text: output length = released length
      assert.ok(pushed - out <= window, `window ${window}: held ${pushed - out}`);
      i += n;
    }
    out += s.end().output.length;
    assert.equal(out, text.length);
  }
});

Deno.test("random chunking of a long mixed stream matches the whole-text scan", () => {
  const parts: string[] = [];
  const smp = Object.values(samples(45));
  const r = rng(9);
  for (let i = 0; i < 60; i++) {
    parts.push(chatPayload(500 + Math.floor(r() * 3000), i).slice(1, -1));
    parts.push(smp[i % smp.length]);
  }
  const text = parts.join("\n");
  const whole = all.scan(text);
  assert.equal(whole.length, 60);
  for (const seed of [1, 2, 3]) {
    const rr = rng(seed);
    const chunks: string[] = [];
    for (let i = 0; i < text.length;) {
      const n = 1 + Math.floor(rr() * (seed === 1 ? 50 : 5000));
      chunks.push(text.slice(i, i + n));
      i += n;
    }
    const res = run(all, chunks, { redact: true });
    assert.deepEqual(key(res.findings), key(whole), `seed ${seed}`);
    assert.equal(res.output, all.redact(text, whole), `seed ${seed}`);
  }
});

Deno.test("a secret split across two SSE events' transport chunks is caught and redacted in stream", () => {
  const ev = (content: string) =>
    `data: ${JSON.stringify({ choices: [{ delta: { content } }] })}\n\n`;
  const body = ev("Here is the key: ") + ev(`${S.openai_project_key} — keep it safe`) +
    "data: [DONE]\n\n";
  const at = body.indexOf(S.openai_project_key) + 30; // the chunk boundary falls inside the key
  const r = run(all, [body.slice(0, at), body.slice(at)], { redact: true });
  assert.deepEqual(r.findings.map((f) => f.detector), ["openai_key"]);
  assert.equal(r.output, body.replace(S.openai_project_key, "[REDACTED:openai_key]"));
  assert.ok(!r.output.includes(S.openai_project_key.slice(0, 12)));
});

Deno.test("a private key longer than the window is redacted whole across many chunks", () => {
  const pem = fakePem("RSA", 46);
  assert.ok(pem.length > 800);
  const text = PAD_BEFORE + pem + PAD_AFTER;
  const chunks: string[] = [];
  for (let i = 0; i < text.length; i += 37) chunks.push(text.slice(i, i + 37));
  const r = run(all, chunks, { redact: true, window: 128 });
  assert.equal(r.output, PAD_BEFORE + "[REDACTED:private_key]" + PAD_AFTER);
  assert.deepEqual(r.findings.map((f) => [f.detector, f.start, f.end]), [[
    "private_key",
    PAD_BEFORE.length,
    PAD_BEFORE.length + pem.length,
  ]]);
});

Deno.test("custom detectors work in streams; offsets are relative to the whole stream", () => {
  const sc = compileScanner({
    detectors: [],
    custom: [{ name: "ticket_id", regex: "TCK-[0-9]{6}" }],
  });
  const text = "x".repeat(1000) + " TCK-123456 " + "y".repeat(1000) + " TCK-654321";
  const chunks = text.match(/[\s\S]{1,7}/g)!;
  const r = run(sc, chunks, { redact: true, window: 32 });
  assert.deepEqual(r.findings.map((f) => [f.start, f.end]), [[1001, 1011], [2013, 2023]]);
  assert.equal(r.output, text.replace(/TCK-\d{6}/g, "[REDACTED:ticket_id]"));
});

Deno.test("end() reports a finding still open at the end; push after end() throws", () => {
  const s = createStreamScanner(all, { redact: true });
  assert.deepEqual(s.push(`token ${S.github_token}`), { findings: [], output: "" });
  const e = s.end();
  assert.deepEqual(e.findings.map((f) => f.detector), ["github_token"]);
  assert.equal(e.output, "token [REDACTED:github_token]");
  assert.throws(() => s.push("x"), {
    message: "Stream scanner already ended: create one per stream",
  });
  assert.deepEqual(s.end(), { findings: [], output: "" });
});

Deno.test("a 2 MB stream without whitespace (base64) is cut safely and stays fast", () => {
  const b64 = chatPayload(3_000_000, 8).match(/base64,([A-Za-z0-9+/=]+)/)![1].slice(0, 2_000_000);
  const text = b64 + ` ${S.stripe_key} `;
  const chunks: string[] = [];
  for (let i = 0; i < text.length; i += 4096) chunks.push(text.slice(i, i + 4096));
  const t0 = performance.now();
  const r = run(all, chunks, { redact: true });
  assert.ok(performance.now() - t0 < 2000);
  assert.deepEqual(r.findings.map((f) => f.detector), ["stripe_key"]);
  assert.equal(r.output, b64 + " [REDACTED:stripe_key] ");
});

Deno.test("without redaction, text is scanned in batches: about once per character", () => {
  let scans = 0;
  let chars = 0;
  const counting: Scanner = {
    ...all,
    scan(text: string) {
      scans++;
      chars += text.length;
      return all.scan(text);
    },
  };
  // One 1 KB response in one chunk: one scan, at the end.
  const body = PAD_BEFORE + S.github_token + PAD_AFTER;
  const one = run(counting, [body], { redact: false });
  assert.deepEqual(one.findings.map((f) => f.detector), ["github_token"]);
  assert.equal(one.output, body);
  assert.deepEqual([scans, chars], [1, body.length]);
  // 100 KB in 1 KB chunks with a secret split across two of them: every
  // secret found, each character scanned about once (8 KB batches + context).
  scans = chars = 0;
  const text = PAD_AFTER.repeat(250).slice(0, 50_979) + " " + S.github_token + " " +
    PAD_BEFORE.repeat(200);
  const parts: string[] = [];
  for (let i = 0; i < text.length; i += 1000) parts.push(text.slice(i, i + 1000));
  const many = run(counting, parts, { redact: false });
  assert.deepEqual(many.findings.map((f) => [f.detector, f.start]), [["github_token", 50_980]]);
  assert.equal(many.output, text);
  assert.ok(scans <= Math.ceil(text.length / 8192) + 1, `${scans} scans`);
  assert.ok(chars < text.length * 1.1, `${chars} characters scanned for ${text.length}`);
});
