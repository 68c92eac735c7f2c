/**
 * Buffering a request body when a rule's condition reads it: up to a cap,
 * then the bytes read are replayed to the upstream followed by the rest of
 * the stream, so nothing is lost and nothing is buffered beyond the cap.
 *
 * @module
 */
import type http from "node:http";
import { PassThrough, type Readable } from "node:stream";

/** What was read of a body. */
export interface Buffered {
  /** A complete body is one chunk (joined once here, so readers never join it again). */
  chunks: Uint8Array[];
  /** Bytes read. */
  size: number;
  /** True when the whole body fit under the cap. */
  complete: boolean;
}

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

/**
 * The parsed JSON body, or undefined when it is not JSON (or is encoded):
 * a condition reading `body` then errors rather than guessing.
 */
export function parseJsonBody(
  chunks: Uint8Array[],
  headers: http.IncomingHttpHeaders,
): unknown {
  const enc = headers["content-encoding"];
  if (enc !== undefined && enc !== "identity") return undefined;
  const bytes = concatChunks(chunks);
  if (bytes.length === 0) return undefined;
  const text = new TextDecoder().decode(bytes).trimStart();
  if (text[0] !== "{" && text[0] !== "[") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One array of the given chunks. */
export function concatChunks(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
