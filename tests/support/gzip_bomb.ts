/**
 * Decompression bombs for tests of the inflation limits.
 *
 * @module
 */
import zlib from "node:zlib";

/**
 * A gzip body of `mib` MiB of zeros built from one compressed MiB repeated
 * (about 1 KB per MiB: a 2 MB body inflates to 2 GiB), with a valid trailer.
 */
export function gzipBomb(mib: number): Uint8Array {
  const zeros = new Uint8Array(1024 * 1024);
  const block = zlib.deflateRawSync(zeros, { level: 9, finishFlush: zlib.constants.Z_SYNC_FLUSH });
  let crc = 0;
  for (let i = 0; i < mib; i++) crc = zlib.crc32(zeros, crc);
  const head = Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3);
  const tail = new Uint8Array(2 + 8);
  tail.set([0x03, 0x00]); // a final empty block
  const view = new DataView(tail.buffer);
  view.setUint32(2, crc >>> 0, true);
  view.setUint32(6, (mib * 1024 * 1024) >>> 0, true);
  const out = new Uint8Array(head.length + block.length * mib + tail.length);
  out.set(head);
  for (let i = 0; i < mib; i++) out.set(block, head.length + i * block.length);
  out.set(tail, head.length + block.length * mib);
  return out;
}
