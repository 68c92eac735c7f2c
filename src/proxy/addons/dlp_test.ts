import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { Utf8Carry, utf8Tail } from "./dlp.ts";

/** Decodes `chunks` with the addon's own carrier and the shared decoder. */
function carried(chunks: Uint8Array[]): string {
  const u = new Utf8Carry();
  let out = "";
  for (const c of chunks) out += u.decode(c);
  return out + (u.pending ? new TextDecoder().decode(u.pending) : "");
}

function streamed(chunks: Uint8Array[]): string {
  const dec = new TextDecoder();
  return chunks.map((c) => dec.decode(c, { stream: true })).join("") + dec.decode();
}

Deno.test("Utf8Carry: split at every byte, text decodes as a streaming decoder does", () => {
  const valid = new TextEncoder().encode('key "AKIAIOSFODNN7EXAMPLE" € 😀 ß — ok 日本');
  // Invalid and truncated sequences too: a lone continuation, an overlong lead, a cut 4-byte one.
  const invalid = new Uint8Array([
    0x61,
    0x80,
    0xc0,
    0x41,
    0xf0,
    0x9f,
    0x41,
    0xe2,
    0x82,
    0xff,
    0x62,
  ]);
  for (const bytes of [valid, invalid]) {
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b++) {
        const chunks = [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)];
        assertEquals(carried(chunks), streamed(chunks), `split at ${a}, ${b}`);
      }
    }
  }
});

Deno.test("utf8Tail: counts only the start of an unfinished character", () => {
  assertEquals(utf8Tail(new Uint8Array([0x61, 0xe2, 0x82])), 2);
  assertEquals(utf8Tail(new Uint8Array([0x61, 0xe2, 0x82, 0xac])), 0);
  assertEquals(utf8Tail(new Uint8Array([0xf0, 0x9f, 0x98])), 3);
  assertEquals(utf8Tail(new Uint8Array([0xf0, 0x9f, 0x98, 0x80])), 0);
  assertEquals(utf8Tail(new Uint8Array([0x80, 0x80, 0x80])), 0);
  assertEquals(utf8Tail(new Uint8Array([])), 0);
});
