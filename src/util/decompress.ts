/**
 * Synchronous, incremental decoding of a `Content-Encoding`d body (gzip,
 * deflate, br, and zstd where the runtime has it), for the usage tap whose
 * `push` and `finish` are synchronous.
 *
 * Why not `DecompressionStream` or a `node:zlib` stream: both deliver output
 * asynchronously, so `finish()` could not return the usage of the last bytes.
 * The one-shot `*Sync` functions are synchronous but not incremental. So the
 * engine drives the native handle of a `node:zlib` stream directly
 * (`_handle.writeSync`, what Node's own `zlib.*Sync` use internally), which is
 * synchronous *and* keeps state between chunks — on Node 20 and on Deno 2.9.
 * Should a runtime lack that handle, the engine falls back to keeping the
 * compressed bytes (capped) and decoding them once at the end.
 *
 * Limits: a decoder stops at `maxOutputBytes` of output, and at a ratio of
 * output to input over `maxRatio` once `ratioFloorBytes` are out (a 2 MB gzip
 * body can inflate to 2 GiB); `limited` then says why, the output so far is
 * kept, and the rest of the input is ignored. Used by the LLM usage tap and
 * by DLP, so no reader of a response or request inflates without a bound.
 *
 * @module
 */

import zlib from "node:zlib";
import { Buffer } from "node:buffer";

/** Decodes one body; `push` and `end` throw on corrupt data. */
export interface Decoder {
  /** Decodes the next chunk; returns the output it made possible (maybe none). */
  push(chunk: Uint8Array): Uint8Array[];
  /** Output still held (only the buffered fallback holds any). Releases native memory. */
  end(): Uint8Array[];
  /**
   * Why decoding stopped at a limit (`stopped at 67108864 decompressed
   * bytes`), or null. Once set, `push` ignores its input.
   */
  readonly limited: string | null;
}

/** Options for {@link createDecoder}; the defaults are right outside tests. */
export interface DecoderOptions {
  /** Use the buffered fallback even when the native handle is there (tests). */
  forceBuffered?: boolean;
  /** Compressed bytes the buffered fallback keeps at most. */
  maxBuffered?: number;
  /** Decoded bytes at most (default: no limit). */
  maxOutputBytes?: number;
  /** Decoded bytes per compressed byte at most (default: no limit). */
  maxRatio?: number;
  /** Output below this is never judged by ratio (default 1 MiB): small bodies compress well. */
  ratioFloorBytes?: number;
}

/** The limits of one decoder, with defaults. */
interface Limits {
  maxOut: number;
  maxRatio: number;
  floor: number;
}

function limitsOf(opts: DecoderOptions): Limits {
  return {
    maxOut: opts.maxOutputBytes ?? Infinity,
    maxRatio: opts.maxRatio ?? Infinity,
    floor: opts.ratioFloorBytes ?? 1024 * 1024,
  };
}

/** Why a decoder that made `out` bytes from `input` must stop, or null. */
function overRatio(l: Limits, out: number, input: number): string | null {
  if (out <= l.floor || out <= l.maxRatio * input) return null;
  return `stopped at a compression ratio over ${l.maxRatio}:1 (${out} bytes from ${input})`;
}

type Coding = "gzip" | "deflate" | "br" | "zstd";

const OUT_SIZE = 64 * 1024;

/**
 * Returns a decoder for a `Content-Encoding` header value, or null when the
 * body is not encoded. Several codings (`gzip, br`) are undone in reverse.
 * Throws `Unsupported content encoding "…"` for a coding it cannot decode.
 *
 * @example
 * ```ts
 * const d = createDecoder("gzip")!;
 * const out = d.push(gzipped); // Uint8Array[] decoded so far
 * d.end();
 * ```
 */
export function createDecoder(
  contentEncoding: string | null,
  opts: DecoderOptions = {},
): Decoder | null {
  if (contentEncoding === null) return null;
  const codings: Coding[] = [];
  for (const raw of contentEncoding.split(",")) {
    const c = raw.trim().toLowerCase();
    if (c === "" || c === "identity") continue;
    if (c === "gzip" || c === "x-gzip") codings.push("gzip");
    else if (c === "deflate") codings.push("deflate");
    else if (c === "br") codings.push("br");
    else if (c === "zstd" && typeof zlib.createZstdDecompress === "function") codings.push("zstd");
    else throw new Error(`Unsupported content encoding "${c}"`);
  }
  if (codings.length === 0) return null;
  const chain = codings.reverse().map((c) => createSingle(c, opts));
  if (chain.length === 1) return chain[0];
  return {
    push(chunk) {
      let bufs = [chunk];
      for (const d of chain) bufs = bufs.flatMap((b) => d.push(b));
      return bufs;
    },
    end() {
      let bufs: Uint8Array[] = [];
      for (const d of chain) bufs = [...bufs.flatMap((b) => d.push(b)), ...d.end()];
      return bufs;
    },
    get limited() {
      for (const d of chain) if (d.limited !== null) return d.limited;
      return null;
    },
  };
}

function createSingle(coding: Coding, opts: DecoderOptions): Decoder {
  const limits = limitsOf(opts);
  if (coding !== "deflate") {
    return opts.forceBuffered
      ? bufferedDecoder(coding, limits, opts.maxBuffered)
      : (handleDecoder(coding, limits) ?? bufferedDecoder(coding, limits, opts.maxBuffered));
  }
  // HTTP "deflate" should be zlib-wrapped, but some servers send raw deflate:
  // look at the first two bytes before choosing.
  let inner: Decoder | null = null;
  let head = new Uint8Array(0);
  const pick = (): Decoder => {
    const raw =
      !(head.length >= 2 && (head[0] & 0x0f) === 8 && ((head[0] << 8) | head[1]) % 31 === 0);
    const kind = raw ? "deflate-raw" : "deflate";
    return opts.forceBuffered
      ? bufferedDecoder(kind, limits, opts.maxBuffered)
      : (handleDecoder(kind, limits) ?? bufferedDecoder(kind, limits, opts.maxBuffered));
  };
  return {
    push(chunk) {
      if (inner) return inner.push(chunk);
      const joined = new Uint8Array(head.length + chunk.length);
      joined.set(head);
      joined.set(chunk, head.length);
      head = joined;
      if (head.length < 2) return [];
      inner = pick();
      return inner.push(head);
    },
    end() {
      if (!inner) {
        if (head.length === 0) return [];
        inner = pick();
        return [...inner.push(head), ...inner.end()];
      }
      return inner.end();
    },
    get limited() {
      return inner?.limited ?? null;
    },
  };
}

type Kind = Coding | "deflate-raw";

// The private surface of a node:zlib stream this module relies on.
interface ZlibInternals {
  _handle?: {
    writeSync(
      flush: number,
      input: Uint8Array,
      inOff: number,
      inLen: number,
      out: Uint8Array,
      outOff: number,
      outLen: number,
    ): void;
    onerror?: (message: string, errno: number, code?: string) => void;
  } | null;
  _writeState?: ArrayLike<number>;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  close(): void;
}

function makeStream(kind: Kind): ZlibInternals {
  switch (kind) {
    case "gzip":
      return zlib.createGunzip() as unknown as ZlibInternals;
    case "deflate":
      return zlib.createInflate() as unknown as ZlibInternals;
    case "deflate-raw":
      return zlib.createInflateRaw() as unknown as ZlibInternals;
    case "br":
      return zlib.createBrotliDecompress() as unknown as ZlibInternals;
    case "zstd":
      return zlib.createZstdDecompress() as unknown as ZlibInternals;
  }
}

function flushFlag(kind: Kind): number {
  if (kind === "br") return zlib.constants.BROTLI_OPERATION_PROCESS;
  if (kind === "zstd") return 0; // ZSTD_e_continue
  return zlib.constants.Z_SYNC_FLUSH;
}

function handleDecoder(kind: Kind, limits: Limits): Decoder | null {
  const stream = makeStream(kind);
  const handle = stream._handle;
  const state = stream._writeState;
  if (!handle || typeof handle.writeSync !== "function" || !state) {
    stream.close();
    return null;
  }
  let failure: string | null = null;
  // The stream would otherwise turn a native error into an 'error' event, and
  // an unhandled one ends the process.
  stream.on("error", () => {});
  handle.onerror = (message: string) => {
    failure = message;
  };
  const flush = flushFlag(kind);
  const out = Buffer.allocUnsafe(OUT_SIZE);
  let closed = false;
  let limited: string | null = null;
  let totalIn = 0;
  let totalOut = 0;
  const close = () => {
    if (!closed) {
      closed = true;
      stream.close();
    }
  };
  return {
    get limited() {
      return limited;
    },
    push(chunk) {
      if (limited !== null) return [];
      if (closed) throw new Error("Decoder already ended");
      const res: Uint8Array[] = [];
      let inOff = 0;
      let inLen = chunk.length;
      // Until the input is used up and the output buffer was not filled: a
      // full buffer may mean more output is pending even with no input left.
      for (;;) {
        handle.writeSync(flush, chunk, inOff, inLen, out, 0, OUT_SIZE);
        if (failure !== null) {
          close();
          throw new Error(failure);
        }
        const availOut = state[0];
        const availIn = state[1];
        let made = OUT_SIZE - availOut;
        totalIn += inLen - availIn;
        if (totalOut + made > limits.maxOut) {
          made = limits.maxOut - totalOut;
          limited = `stopped at ${limits.maxOut} decompressed bytes`;
        }
        totalOut += made;
        // A copy: Buffer#slice would be a view of the reused output buffer.
        if (made > 0) res.push(new Uint8Array(out.subarray(0, made)));
        limited ??= overRatio(limits, totalOut, totalIn);
        if (limited !== null) {
          close();
          return res;
        }
        inOff += inLen - availIn;
        inLen = availIn;
        if (availOut === 0) continue;
        // Output space left but input not taken: the decoder is stuck, on data
        // past the end or on corrupt data (Deno's brotli reports no error here).
        if (inLen > 0) {
          close();
          throw new Error("Compressed data is corrupt or continues past its end");
        }
        break;
      }
      return res;
    },
    end() {
      close();
      return [];
    },
  };
}

function bufferedDecoder(kind: Kind, limits: Limits, max = 8 * 1024 * 1024): Decoder {
  let parts: Uint8Array[] = [];
  let len = 0;
  let limited: string | null = null;
  const run = (input: Buffer): Uint8Array => {
    // Sync flush instead of finish: a truncated body still yields its prefix.
    const cap = Math.min(limits.maxOut, limits.floor + limits.maxRatio * input.length);
    const opts = Number.isFinite(cap) ? { maxOutputLength: Math.max(1, cap) } : {};
    const zf = { finishFlush: zlib.constants.Z_SYNC_FLUSH, ...opts };
    switch (kind) {
      case "gzip":
        return zlib.gunzipSync(input, zf);
      case "deflate":
        return zlib.inflateSync(input, zf);
      case "deflate-raw":
        return zlib.inflateRawSync(input, zf);
      case "br":
        return zlib.brotliDecompressSync(input, {
          finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
          ...opts,
        });
      case "zstd":
        return zlib.zstdDecompressSync(input, opts);
    }
  };
  return {
    get limited() {
      return limited;
    },
    push(chunk) {
      if (limited !== null) return [];
      len += chunk.length;
      if (len > max) {
        throw new Error(`Compressed body over ${max} bytes`);
      }
      parts.push(chunk.slice());
      return [];
    },
    end() {
      const input = Buffer.concat(parts);
      parts = [];
      try {
        const out = run(input);
        limited = overRatio(limits, out.length, input.length);
        return [out];
      } catch (e) {
        if ((e as { code?: string }).code !== "ERR_BUFFER_TOO_LARGE") throw e;
        // This fallback keeps no prefix: what a limit cut is not read at all.
        limited = limits.maxOut <= limits.floor + limits.maxRatio * input.length
          ? `stopped at ${limits.maxOut} decompressed bytes`
          : `stopped at a compression ratio over ${limits.maxRatio}:1`;
        return [];
      }
    },
  };
}
