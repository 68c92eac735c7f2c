import assert from "node:assert/strict";
import { ParseError, type ResponseHead, ResponseParser } from "./h1parse.ts";

const enc = new TextEncoder();

interface Result {
  head: ResponseHead | null;
  body: string;
  ended: boolean;
}

/** Feed `text` split at the given cut points; returns what the parser produced. */
function parse(method: string, text: string, cuts: number[] = [], eof = false): Result {
  const out: Result = { head: null, body: "", ended: false };
  const dec = new TextDecoder();
  const p = new ResponseParser(method, {
    head: (h) => (out.head = h),
    body: (c) => (out.body += dec.decode(c, { stream: true })),
    end: () => (out.ended = true),
  });
  const bytes = enc.encode(text);
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    p.push(bytes.subarray(at, cut));
    at = cut;
  }
  if (eof) p.eof();
  return out;
}

/** Every single split point and a byte-by-byte feed give the same result. */
function allSplits(method: string, text: string, eof = false): Result {
  const whole = parse(method, text, [], eof);
  const n = enc.encode(text).length;
  for (let i = 1; i < n; i++) {
    assert.deepEqual(parse(method, text, [i], eof), whole, `split at ${i}`);
  }
  assert.deepEqual(parse(method, text, Array.from({ length: n - 1 }, (_, i) => i + 1), eof), whole);
  return whole;
}

Deno.test("h1parse: content-length, chunked with extensions and trailers, close-delimited", () => {
  const fixed = allSplits("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
  assert.equal(fixed.body, "hello");
  assert.equal(fixed.ended, true);
  assert.deepEqual(fixed.head, {
    status: 200,
    statusText: "OK",
    minor: 1,
    rawHeaders: ["Content-Length", "5", "X-A", "b"],
    keepAlive: true,
    transferEncoding: false,
  });

  const chunked = allSplits(
    "POST",
    "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
  );
  assert.equal(chunked.body, "hello, world");
  assert.equal(chunked.ended, true);
  assert.equal(chunked.head?.transferEncoding, true);
  assert.equal(chunked.head?.keepAlive, true);

  const untilClose = allSplits(
    "GET",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc",
    true,
  );
  assert.equal(untilClose.body, "abc");
  assert.equal(untilClose.ended, true);
  assert.equal(untilClose.head?.keepAlive, false);
});

Deno.test("h1parse: no body for HEAD, 204 and 304; 1xx are skipped", () => {
  const head = parse("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
  assert.equal(head.ended, true);
  assert.equal(head.body, "");
  assert.equal(parse("GET", "HTTP/1.1 204 No Content\r\n\r\n").ended, true);
  assert.equal(parse("GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").ended, true);
  const info = allSplits(
    "POST",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
  );
  assert.equal(info.head?.status, 200);
  assert.equal(info.body, "ok");
});

Deno.test("h1parse: connection semantics", () => {
  assert.equal(
    parse("GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").head
      ?.keepAlive,
    false,
  );
  assert.equal(
    parse("GET", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").head?.keepAlive,
    false,
  );
  assert.equal(
    parse("GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").head
      ?.keepAlive,
    true,
  );
  // Transfer-Encoding beside Content-Length: chunked wins and the connection is not reused.
  const both = parse(
    "GET",
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  );
  assert.equal(both.body, "ok");
  assert.equal(both.head?.keepAlive, false);
});

Deno.test("h1parse: malformed responses are errors, never guesses", () => {
  const bad: [string, string][] = [
    ["HTTP/2 200 OK\r\n\r\n", 'invalid status line "HTTP/2 200 OK"'],
    ["HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", 'invalid header name "Bad Header"'],
    ["HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", "obsolete header line folding"],
    ["HTTP/1.1 200 OK\r\nA: 1\r\nno colon here\r\n\r\n", 'invalid header line "no colon here"'],
    ["HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", 'invalid header line ": empty name"'],
    ["HTTP/1.1 200 OK\r\nA: 1\r\nX-Nul: a\x00b\r\n\r\n", 'invalid value of header "X-Nul"'],
    ["HTTP/1.1 200 OK\r\nX-Lf: a\nb\r\n\r\n", 'invalid value of header "X-Lf"'],
    ["HTTP/1.1 200 OK\r\nX-Cr: a\rb\r\nB: 2\r\n\r\n", 'invalid value of header "X-Cr"'],
    ["HTTP/1.1 200 OK\r\nA: 1\r\nB@d: x\r\n\r\n", 'invalid header name "B@d"'],
    ["HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "conflicting Content-Length values"],
    ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 'invalid Content-Length "-1"'],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 'invalid chunk size line "zz"'],
    ["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", "unexpected bytes after the response"],
  ];
  for (const [text, message] of bad) {
    assert.throws(() => parse("GET", text), (e: unknown) => {
      assert.ok(e instanceof ParseError, text);
      assert.equal(e.message, message);
      return true;
    });
  }
  assert.throws(
    () => parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", [], true),
    /connection closed before the end of the response body/,
  );
  assert.throws(
    () => parse("GET", "HTTP/1.1 200 OK\r\nX: " + "a".repeat(70_000)),
    /response head larger than 64 KiB/,
  );
});
