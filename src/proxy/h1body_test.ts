import assert from "node:assert/strict";
import { BodyDecoder, collapseContentLength, findHeadEnd, latin1, ParseError } from "./h1body.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Feed `text` in pieces cut at `cuts`; returns body, bytes used and whether it is done. */
function run(make: () => BodyDecoder, text: string, cuts: number[] = []) {
  const d = make();
  const bytes = enc.encode(text);
  let body = "";
  let used = 0;
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    const piece = bytes.subarray(at, cut);
    at = cut;
    if (d.done) break;
    const n = d.push(piece, (c) => (body += dec.decode(c)));
    used += n;
  }
  return { body, used, done: d.done };
}

function everySplit(make: () => BodyDecoder, text: string) {
  const whole = run(make, text);
  const n = enc.encode(text).length;
  for (let i = 1; i < n; i++) assert.deepEqual(run(make, text, [i]), whole, `split at ${i}`);
  assert.deepEqual(run(make, text, Array.from({ length: n - 1 }, (_, i) => i + 1)), whole);
  return whole;
}

Deno.test("h1body: fixed length stops at its end and leaves the rest", () => {
  const r = everySplit(() => BodyDecoder.length(5), "helloGET / HTTP/1.1");
  assert.deepEqual(r, { body: "hello", used: 5, done: true });
  assert.equal(BodyDecoder.length(0).done, true);
  assert.equal(BodyDecoder.length(7).remaining, 7);
});

Deno.test("h1body: chunked with extensions and trailers, then the next message", () => {
  const text = "5;a=b\r\nhello\r\n7 ;x\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
  const strict = everySplit(() => BodyDecoder.chunked({ strict: true }), text);
  assert.deepEqual(strict, { body: "hello, world", used: text.length - 4, done: true });
  const lenient = everySplit(() => BodyDecoder.chunked(), text);
  assert.deepEqual(lenient, strict);
  // Responses tolerate bare LF; requests (strict) do not.
  assert.equal(run(() => BodyDecoder.chunked(), "2\nok\n0\n\n").body, "ok");
  assert.throws(
    () => run(() => BodyDecoder.chunked({ strict: true }), "2\nok\r\n0\r\n\r\n"),
    /invalid chunk size line "2"/,
  );
  assert.throws(
    () => run(() => BodyDecoder.chunked({ strict: true }), "2\r\nok\n0\r\n\r\n"),
    /missing CRLF after chunk data/,
  );
});

Deno.test("h1body: malformed chunked bodies are errors", () => {
  const strict = () => BodyDecoder.chunked({ strict: true, maxTrailerBytes: 100 });
  const bad: [string, RegExp][] = [
    ["zz\r\n", /invalid chunk size line "zz"/],
    ["-1\r\n", /invalid chunk size line/],
    ["1234567890abcdef0\r\n", /invalid chunk size line/],
    ["2\r\nokX\r\n", /missing CRLF after chunk data/],
    ["1;a\x01\r\nx\r\n", /invalid chunk size line/],
    ["0\r\nbad trailer\r\n\r\n", /invalid trailer line/],
    ["0\r\n" + "X: y\r\n".repeat(30), /trailers larger than 100 bytes/],
    ["1" + " ".repeat(9000), /chunk line too long/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => run(strict, text), (e: unknown) => {
      assert.ok(e instanceof ParseError, text);
      assert.match(e.message, re, JSON.stringify(text));
      return true;
    });
  }
});

Deno.test("h1body: until close", () => {
  const d = BodyDecoder.untilClose();
  let n = 0;
  assert.equal(d.push(enc.encode("abc"), (c) => (n += c.length)), 3);
  assert.equal(d.done, false);
  d.eof();
  assert.equal(d.done, true);
  assert.equal(n, 3);
  const fixed = BodyDecoder.length(3);
  fixed.push(enc.encode("a"), () => {});
  assert.throws(() => fixed.eof(), /connection closed before the end of the body/);
});

Deno.test("h1body: findHeadEnd", () => {
  const b = enc.encode("GET / HTTP/1.1\r\nA: b\r\n\r\nbody\r\n\r\n");
  assert.equal(findHeadEnd(b, 0), 20);
  assert.equal(findHeadEnd(b, 20), 20);
  assert.equal(findHeadEnd(b, 21), 28);
  assert.equal(findHeadEnd(enc.encode("\r\n\r\n"), 0), 0);
  assert.equal(findHeadEnd(enc.encode("a\n\r\n\r"), 0), -1);
  assert.equal(findHeadEnd(enc.encode("a\r\n\n"), 0), -1);
});

Deno.test("collapseContentLength: one line with the agreed value, order kept", () => {
  assert.deepEqual(
    collapseContentLength(["X", "1", "Content-Length", "3, 3", "content-length", "3", "Y", "2"], 3),
    ["X", "1", "Content-Length", "3", "Y", "2"],
  );
  const plain = ["Content-Length", "3", "X", "1"];
  assert.equal(collapseContentLength(plain, 3), plain, "nothing to collapse: the same array");
});

Deno.test("latin1: every byte value maps to the same code point, views keep their offset", () => {
  const all = new Uint8Array(512).map((_, i) => i % 256);
  const s = latin1(all);
  assert.equal(s.length, 512);
  for (let i = 0; i < 512; i++) assert.equal(s.charCodeAt(i), i % 256, `byte ${i}`);
  // A view into a larger buffer: only its bytes, from its offset.
  const view = all.subarray(300, 305); // 44..48
  assert.equal(latin1(view), ",-./0");
  assert.equal(latin1(new Uint8Array(0)), "");
});
