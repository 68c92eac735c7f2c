/**
 * Buffering a request body when a rule's condition reads it: up to a cap,
 * then the bytes read are replayed to the upstream followed by the rest of
 * the stream, so nothing is lost and nothing is buffered beyond the cap.
 *
 * @module
 */
import { PassThrough, type Readable } from "node:stream";
import { type BodyRead, concatChunks } from "../policy/request.ts";

export { concatChunks };

/** What was read of a body: a complete body is one chunk (joined once here, so readers never join it again). */
export type Buffered = BodyRead;

/**
 * Read a body until it ends or exceeds `max` bytes (then stop reading).
 * Rejects when the client goes away first.
 */
export function bufferBody(req: Readable, max: number): Promise<Buffered> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let n = 0;
    const done = (complete: boolean) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      if (!complete) req.pause();
      resolve({ chunks: complete ? [concatChunks(chunks)] : chunks, complete, size: n });
    };
    const onData = (c: Uint8Array) => {
      chunks.push(c);
      n += c.length;
      if (n > max) done(false);
    };
    const onEnd = () => done(true);
    const onError = (e: Error) => reject(e);
    const onClose = () => {
      if (!req.readableEnded) reject(new Error("client aborted"));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
    req.resume();
  });
}

/** A stream that yields the buffered chunks, then whatever is left of `req`. */
export function replay(req: Readable, b: Buffered): Readable {
  const out = new PassThrough();
  for (const c of b.chunks) out.write(c);
  if (b.complete) out.end();
  else req.pipe(out);
  return out;
}
