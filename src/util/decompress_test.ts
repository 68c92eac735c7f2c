import assert from "node:assert/strict";
import zlib from "node:zlib";
import { createDecoder, type Decoder } from "./decompress.ts";
import { gzipBomb } from "../../tests/support/gzip_bomb.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

let text = "";
for (let i = 0; i < 3000; i++) {
  text += `data: {"i":${i},"choices":[{"delta":{"content":"tok ${i} é"}}]}\n\n`;
}
const plain = enc.encode(text);

function drain(d: Decoder, body: Uint8Array, size: number): string {
  const out: Uint8Array[] = [];
  for (let i = 0; i < body.length; i += size) out.push(...d.push(body.subarray(i, i + size)));
  out.push(...d.end());
  const all = new Uint8Array(out.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of out) {
    all.set(b, o);
    o += b.length;
  }
  return dec.decode(all);
}

const CASES: [string, Uint8Array][] = [
  ["gzip", zlib.gzipSync(plain)],
  ["x-gzip", zlib.gzipSync(plain)],
  ["deflate", zlib.deflateSync(plain)],
  ["deflate", zlib.deflateRawSync(plain)],
  ["br", zlib.brotliCompressSync(plain)],
  ["GZIP, identity", zlib.gzipSync(plain)],
  ["deflate, br", zlib.brotliCompressSync(zlib.deflateSync(plain))],
];
if (typeof zlib.zstdCompressSync === "function") CASES.push(["zstd", zlib.zstdCompressSync(plain)]);

Deno.test("decompress: every coding, incremental and buffered, any chunk size", () => {
  for (const [coding, body] of CASES) {
    for (const size of [1, 3, 100, 4096, body.length]) {
      assert.equal(drain(createDecoder(coding)!, body, size), text, `${coding} / ${size}`);
    }
    assert.equal(
      drain(createDecoder(coding, { forceBuffered: true })!, body, 500),
      text,
      `${coding} buffered`,
    );
  }
});

Deno.test("decompress: output arrives as input does, not at the end", () => {
  // Single codings only: brotli over deflate output packs most of its output
  // into late back-references, which says nothing about the decoder.
  for (const [coding, body] of CASES.filter(([c]) => !c.includes(","))) {
    const d = createDecoder(coding)!;
    const half = d.push(body.subarray(0, body.length >> 1)).reduce((n, b) => n + b.length, 0);
    // zstd emits whole blocks (up to 128 KiB of output), so it may lag.
    if (coding !== "zstd") {
      assert.ok(half > plain.length / 4, `${coding}: ${half} bytes after half the input`);
    }
    d.end();
  }
});

Deno.test("decompress: a truncated body yields its prefix", () => {
  for (const [coding, body] of CASES) {
    for (const buffered of [false, true]) {
      const got = drain(
        createDecoder(coding, { forceBuffered: buffered })!,
        body.subarray(0, body.length >> 1),
        999,
      );
      if (coding !== "zstd") assert.ok(got.length > 1000, `${coding} buffered=${buffered}`);
      assert.ok(text.startsWith(got.slice(0, -2)), `${coding} buffered=${buffered}`);
    }
  }
});

Deno.test("decompress: corrupt data throws, including Deno's silent brotli", () => {
  for (const [coding, body] of CASES) {
    // A copy: Buffer#slice (zlib returns Buffers) is a view, and CASES is shared.
    const bad = new Uint8Array(body);
    for (let i = 4; i < bad.length; i += 97) bad[i] ^= 0x5a;
    assert.throws(() => drain(createDecoder(coding)!, bad, 256), Error, coding);
  }
  assert.throws(
    () => drain(createDecoder("br")!, enc.encode("not brotli at all, clearly"), 5),
    Error,
  );
});

Deno.test("decompress: identity is null, an unknown coding is refused", () => {
  assert.equal(createDecoder(null), null);
  assert.equal(createDecoder("identity"), null);
  assert.equal(createDecoder(""), null);
  assert.throws(
    () => createDecoder("gzip, compress"),
    /^Error: Unsupported content encoding "compress"$/,
  );
});

Deno.test("decompress: the buffered fallback is capped", () => {
  const d = createDecoder("gzip", { forceBuffered: true, maxBuffered: 100 })!;
  assert.throws(() => d.push(zlib.gzipSync(plain)), /^Error: Compressed body over 100 bytes$/);
});

Deno.test("decompress: a valid bomb really inflates (the helper is honest)", () => {
  assert.equal(zlib.gunzipSync(gzipBomb(3)).length, 3 * 1024 * 1024);
});

Deno.test("decompress: a gzip bomb stops at the ratio limit after the floor, bounded per push", () => {
  const bomb = gzipBomb(2048); // 2 GiB of zeros in about 2 MB
  assert.ok(bomb.length < 2_200_000, `${bomb.length}`);
  for (const forceBuffered of [false, true]) {
    const d = createDecoder("gzip", { maxRatio: 100, forceBuffered, maxBuffered: 4 << 20 })!;
    let out = 0;
    let pushes = 0;
    for (let i = 0; i < bomb.length && d.limited === null; i += 16384) {
      const got = d.push(bomb.subarray(i, i + 16384)).reduce((n, b) => n + b.length, 0);
      assert.ok(got <= 2 * 1024 * 1024, `one push made ${got} bytes`);
      out += got;
      pushes++;
    }
    out += d.end().reduce((n, b) => n + b.length, 0);
    assert.match(d.limited ?? "", /^stopped at a compression ratio over 100:1/, `${forceBuffered}`);
    assert.ok(out <= 2 * 1024 * 1024, `${out} bytes out (buffered: ${forceBuffered})`);
    if (!forceBuffered) assert.ok(pushes <= 2, `${pushes} pushes before it stopped`);
  }
});

Deno.test("decompress: the byte limit cuts the output exactly, every coding, stacked too", () => {
  for (const [coding, body] of CASES) {
    const d = createDecoder(coding, { maxOutputBytes: 1000 })!;
    const got = drain(d, body, 333);
    assert.equal(got, new TextDecoder().decode(plain.subarray(0, 1000)).replace(/\uFFFD$/, ""));
    assert.equal(d.limited, "stopped at 1000 decompressed bytes", coding);
    assert.deepEqual(d.push(body), [], "input after the limit is ignored");
  }
  // Under the limits nothing is cut and nothing is said.
  const d = createDecoder("gzip", { maxOutputBytes: plain.length, maxRatio: 100 })!;
  assert.equal(drain(d, zlib.gzipSync(plain), 1000), text);
  assert.equal(d.limited, null);
});
