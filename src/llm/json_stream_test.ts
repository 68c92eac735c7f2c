import assert from "node:assert/strict";
import { BodyCollector, JsonArraySplitter } from "./json_stream.ts";

const enc = new TextEncoder();

function split(text: string, size: number, max = 1 << 20): { els: string[]; oversize: number } {
  const els: string[] = [];
  const s = new JsonArraySplitter((t) => els.push(t), max);
  const b = enc.encode(text);
  for (let i = 0; i < b.length; i += size) s.push(b.subarray(i, i + size));
  return { els, oversize: s.oversizeElements };
}

Deno.test("json_stream: array elements, split anywhere, strings with braces and escapes", () => {
  const a = '{"t":"a } ] \\" \\\\","n":[1,{"x":[]}]}';
  const b = '{"u":"é🌍"}';
  const text = `[${a}\r\n,\r\n${b}\n]`;
  for (const size of [1, 2, 3, 5, 8, 1000]) {
    assert.deepEqual(split(text, size).els, [a, b], `chunk ${size}`);
  }
});

Deno.test("json_stream: a top-level object is one element; an incomplete one none", () => {
  assert.deepEqual(split('{"error":{"code":1}}', 3).els, ['{"error":{"code":1}}']);
  assert.deepEqual(split('[{"a":1},{"b":', 3).els, ['{"a":1}']);
});

Deno.test("json_stream: an element over the cap is dropped and counted", () => {
  const r = split(`[{"a":"${"x".repeat(200)}"},{"b":1}]`, 16, 100);
  assert.deepEqual(r.els, ['{"b":1}']);
  assert.equal(r.oversize, 1);
});

Deno.test("json_stream: BodyCollector keeps the body, then only its tail", () => {
  const c = new BodyCollector(10, 6);
  c.push(enc.encode("0123"));
  assert.deepEqual(c.text(), { text: "0123", truncated: false });
  c.push(enc.encode("4567"));
  c.push(enc.encode("89ab"));
  c.push(enc.encode("cdef"));
  assert.deepEqual(c.text(), { text: "abcdef", truncated: true });
  assert.equal(c.total, 16);
});
