import assert from "node:assert/strict";
import { SseParser } from "./sse.ts";

const enc = new TextEncoder();

function parse(
  chunks: string[] | Uint8Array[],
  skip: (e: string) => boolean = () => false,
  max = 1 << 20,
): { events: [string, string | null][]; oversize: number } {
  const events: [string, string | null][] = [];
  const p = new SseParser({ skip, event: (e, d) => events.push([e, d]) }, max);
  for (const c of chunks) p.push(typeof c === "string" ? enc.encode(c) : c);
  p.end();
  return { events, oversize: p.oversizeEvents };
}

// Every split of the input into two and three parts gives the same events.
function assertSplitInvariant(text: string, expected: [string, string | null][]): void {
  const bytes = enc.encode(text);
  assert.deepEqual(parse([bytes]).events, expected, "whole");
  for (let i = 0; i <= bytes.length; i++) {
    assert.deepEqual(
      parse([bytes.subarray(0, i), bytes.subarray(i)]).events,
      expected,
      `split at ${i}`,
    );
    for (let j = i; j <= bytes.length; j += 3) {
      assert.deepEqual(
        parse([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)]).events,
        expected,
        `split at ${i}, ${j}`,
      );
    }
  }
}

Deno.test("sse: LF, CRLF and CR line ends, split anywhere", () => {
  const expected: [string, string | null][] = [["a", "1"], ["message", "2"], ["b", "x\ny"]];
  for (const eol of ["\n", "\r\n", "\r"]) {
    const text = [
      "event: a",
      "data: 1",
      "",
      "data: 2",
      "",
      "event: b",
      "data: x",
      "data: y",
      "",
      "",
    ]
      .join(eol);
    assertSplitInvariant(text, expected);
  }
  // Mixed in one stream.
  assertSplitInvariant(
    "event: a\r\ndata: 1\n\rdata: 2\r\r\nevent: b\rdata: x\r\ndata: y\n\n",
    expected,
  );
});

Deno.test("sse: comments, keep-alives, unknown fields, field without colon, no space", () => {
  const text =
    ": hello\n\n:\n\nid: 1\nretry: 10\nfoo: bar\ndata\ndata:x\n\nevent\ndata:  two spaces\n\n";
  assertSplitInvariant(text, [["message", "\nx"], ["message", " two spaces"]]);
});

Deno.test("sse: an event with no data is not dispatched; names reset per event", () => {
  assertSplitInvariant("event: a\n\ndata: 1\n\n", [["message", "1"]]);
});

Deno.test("sse: a leading BOM is ignored, split anywhere", () => {
  assertSplitInvariant("\uFEFFdata: 1\n\n", [["message", "1"]]);
});

Deno.test("sse: the last event is used even without its blank line or line end", () => {
  assert.deepEqual(parse(["data: 1\n\ndata: 2"]).events, [["message", "1"], ["message", "2"]]);
  assert.deepEqual(parse(["data: 1\n\ndata: 2\n"]).events, [["message", "1"], ["message", "2"]]);
  assert.deepEqual(parse(["data: 1\r"]).events, [["message", "1"]]);
});

Deno.test("sse: multi-byte UTF-8 split across chunks", () => {
  const bytes = enc.encode("data: héllo 🌍\n\n");
  for (let i = 0; i <= bytes.length; i++) {
    assert.deepEqual(parse([bytes.subarray(0, i), bytes.subarray(i)]).events, [[
      "message",
      "héllo 🌍",
    ]]);
  }
});

Deno.test("sse: skipped events are dispatched without data", () => {
  const text =
    "event: ping\ndata: {}\n\nevent: content_block_delta\ndata: a\ndata: b\n\nevent: keep\ndata: 1\n\n";
  assert.deepEqual(parse([text], (e) => e !== "keep").events, [["ping", null], [
    "content_block_delta",
    null,
  ], ["keep", "1"]]);
  // A name given after the data still skips the event.
  assert.deepEqual(parse(["data: a\nevent: ping\n\n"], (e) => e === "ping").events, [[
    "ping",
    null,
  ]]);
});

Deno.test("sse: events over the cap are dropped and counted, the stream goes on", () => {
  const big = "y".repeat(300);
  const text = `data: ${big}\n\ndata: a\ndata: ${big}\n\ndata: ok\n\n`;
  for (const size of [1, 7, 64, 1000]) {
    const bytes = enc.encode(text);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
    const r = parse(chunks, () => false, 100);
    assert.deepEqual(
      r.events,
      [["message", null], ["message", null], ["message", "ok"]],
      `chunk ${size}`,
    );
    assert.equal(r.oversize, 2);
  }
});
