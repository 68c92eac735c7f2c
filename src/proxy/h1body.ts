/**
 * Incremental decoding of one HTTP/1.1 message body (RFC 9112 §6–7): fixed
 * length, chunked (extensions and trailers read and ignored) or, for
 * responses only, delimited by the connection's end. Shared by the response
 * parser of our upstream client (`h1parse.ts`) and the request side of our
 * server (`h1server.ts`), so chunked framing is decoded in exactly one place.
 *
 * @module
 */
import { Buffer } from "node:buffer";

/** A malformed message; the connection cannot be reused. */
export class ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ParseError";
  }
}

/** How a body is delimited. */
export type BodyKind = "length" | "chunked" | "close";

/** Options of a chunked decoder. */
export interface ChunkedOptions {
  /**
   * Require CRLF after every chunk-size line, chunk and trailer line (requests
   * we serve). Without it a bare LF is tolerated (responses we read).
   */
  strict?: boolean;
  /** Cap on the trailer section (default 64 KiB). */
  maxTrailerBytes?: number;
}

// States of the decoder.
const FIXED = 0;
const SIZE = 1;
const DATA = 2;
const DATA_CR = 3;
const DATA_LF = 4;
const TRAILERS = 5;
const UNTIL_CLOSE = 6;
const DONE = 7;

const MAX_LINE = 8192;
const CHUNK_SIZE = /^([0-9a-fA-F]{1,15})[ \t]*(;.*)?$/;
// Strict: the extension may hold HTAB, visible ASCII and obs-text, nothing else.
const CHUNK_SIZE_STRICT = /^([0-9a-fA-F]{1,15})[ \t]*(;[\t\x20-\x7e\x80-\xff]*)?$/;
const TRAILER_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Latin-1 text of some bytes (header and chunk lines are octets, not UTF-8).
 * Buffer's latin1 decoding is native in Deno: ~0.1 us for a 250-byte
 * response head, against ~0.9 us (and an argument array of 8 bytes per
 * byte) for `String.fromCharCode.apply`.
 */
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");
}

/**
 * Raw headers (name, value, …) with every Content-Length field replaced by one
 * line holding the agreed value: `Content-Length: 3, 3` and two
 * `Content-Length: 3` lines become `Content-Length: 3` (RFC 9110 §8.6 lets a
 * recipient collapse identical values; forwarding the list would hand the
 * next hop a value it may read differently). Disagreeing values never get
 * here: both parsers reject them. Returns `raw` itself when there is nothing
 * to collapse.
 *
 * @example
 * collapseContentLength(["Content-Length", "3, 3", "X", "y"], 3) // ["Content-Length", "3", "X", "y"]
 */
export function collapseContentLength(raw: string[], length: number): string[] {
  let seen = 0;
  let plain = true;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 14 && raw[i].toLowerCase() === "content-length") {
      seen++;
      if (raw[i + 1] !== String(length)) plain = false;
    }
  }
  if (seen <= 1 && plain) return raw;
  const out: string[] = [];
  let first = true;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 14 && raw[i].toLowerCase() === "content-length") {
      if (first) out.push(raw[i], String(length));
      first = false;
    } else out.push(raw[i], raw[i + 1]);
  }
  return out;
}

const u8indexOf = Uint8Array.prototype.indexOf;

/**
 * Offset of the CRLFCRLF that ends a message head, searching from `from`;
 * -1 if absent. Scans for LF with the native typed-array `indexOf`: Deno's
 * `Buffer#indexOf(buffer)` is a JavaScript loop (a fifth of the per-request
 * CPU of our server in a profile).
 */
export function findHeadEnd(buf: Uint8Array, from: number): number {
  let i = u8indexOf.call(buf, 10, from + 3);
  while (i !== -1) {
    if (buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) return i - 3;
    i = u8indexOf.call(buf, 10, i + 1);
  }
  return -1;
}

/**
 * Decoder of one body. Feed it bytes with {@link BodyDecoder.push}; it hands
 * body bytes (views of the input, never copies) to the sink and tells how many
 * input bytes were its own: the rest belongs to the next message.
 *
 * @example
 * const d = BodyDecoder.chunked({ strict: true });
 * const used = d.push(bytes, (c) => body.push(c));
 * if (d.done) next(bytes.subarray(used));
 */
export class BodyDecoder {
  #state: number;
  #remaining = 0;
  #line = "";
  #trailerBytes = 0;
  #received = 0;
  readonly #strict: boolean;
  readonly #maxTrailer: number;

  private constructor(state: number, remaining: number, opts: ChunkedOptions = {}) {
    this.#state = state;
    this.#remaining = remaining;
    this.#strict = opts.strict ?? false;
    this.#maxTrailer = opts.maxTrailerBytes ?? 64 * 1024;
  }

  /** A body of exactly `n` bytes (done at once when `n` is 0). */
  static length(n: number): BodyDecoder {
    return new BodyDecoder(n === 0 ? DONE : FIXED, n);
  }

  /** A chunked body. */
  static chunked(opts?: ChunkedOptions): BodyDecoder {
    return new BodyDecoder(SIZE, 0, opts);
  }

  /** A body that ends with the connection (responses only). */
  static untilClose(): BodyDecoder {
    return new BodyDecoder(UNTIL_CLOSE, 0);
  }

  /** Whether the whole body was decoded. */
  get done(): boolean {
    return this.#state === DONE;
  }

  /** Body bytes decoded so far. */
  get received(): number {
    return this.#received;
  }

  /** Bytes still expected from the wire: exact for a fixed length, else unknown (Infinity) until done. */
  get remaining(): number {
    return this.#state === DONE ? 0 : this.#state === FIXED ? this.#remaining : Infinity;
  }

  /**
   * Decode from `data`; returns how many bytes of it belong to this body
   * (all of them unless the body ended inside). Throws {@link ParseError}.
   */
  push(data: Uint8Array, sink: (chunk: Uint8Array) => void): number {
    let at = 0;
    const len = data.length;
    while (at < len) {
      switch (this.#state) {
        case FIXED: {
          const n = Math.min(len - at, this.#remaining);
          this.#remaining -= n;
          this.#received += n;
          if (this.#remaining === 0) this.#state = DONE;
          sink(at === 0 && n === len ? data : data.subarray(at, at + n));
          at += n;
          break;
        }
        case DATA: {
          const n = Math.min(len - at, this.#remaining);
          this.#remaining -= n;
          this.#received += n;
          if (this.#remaining === 0) this.#state = DATA_CR;
          sink(at === 0 && n === len ? data : data.subarray(at, at + n));
          at += n;
          break;
        }
        case SIZE:
        case TRAILERS: {
          const nl = data.indexOf(10, at);
          const end = nl === -1 ? len : nl + 1;
          if (this.#state === TRAILERS) {
            this.#trailerBytes += end - at;
            if (this.#trailerBytes > this.#maxTrailer) {
              throw new ParseError(`trailers larger than ${this.#maxTrailer} bytes`);
            }
          }
          this.#line += latin1(data.subarray(at, end));
          if (this.#line.length > MAX_LINE) throw new ParseError("chunk line too long");
          at = end;
          if (nl === -1) return at;
          this.#lineDone();
          break;
        }
        case DATA_CR: {
          const b = data[at];
          if (b === 13) {
            this.#state = DATA_LF;
            at++;
          } else if (b === 10 && !this.#strict) {
            this.#state = SIZE;
            at++;
          } else throw new ParseError("missing CRLF after chunk data");
          break;
        }
        case DATA_LF: {
          if (data[at] !== 10) throw new ParseError("missing CRLF after chunk data");
          this.#state = SIZE;
          at++;
          break;
        }
        case UNTIL_CLOSE:
          this.#received += len - at;
          sink(at === 0 ? data : data.subarray(at));
          return len;
        default: // DONE
          return at;
      }
    }
    return at;
  }

  /** A complete chunk-size or trailer line (with its line break) is in `#line`. */
  #lineDone() {
    const raw = this.#line;
    this.#line = "";
    let line: string;
    if (raw.endsWith("\r\n")) line = raw.slice(0, -2);
    else if (this.#strict) {
      throw new ParseError(
        this.#state === TRAILERS
          ? "trailer line without CRLF"
          : `invalid chunk size line "${raw.slice(0, 40).replace(/\r?\n$/, "")}"`,
      );
    } else line = raw.slice(0, -1);
    if (this.#state === TRAILERS) {
      if (line === "") this.#state = DONE;
      else if (this.#strict && !TRAILER_LINE.test(line)) {
        throw new ParseError(`invalid trailer line "${line.slice(0, 40)}"`);
      }
      return;
    }
    const m = (this.#strict ? CHUNK_SIZE_STRICT : CHUNK_SIZE).exec(line);
    if (!m) throw new ParseError(`invalid chunk size line "${line.slice(0, 40)}"`);
    const size = parseInt(m[1], 16);
    if (size === 0) this.#state = TRAILERS;
    else {
      this.#remaining = size;
      this.#state = DATA;
    }
  }

  /** The connection ended: completes a close-delimited body; anything else unfinished throws. */
  eof(): void {
    if (this.#state === UNTIL_CLOSE) this.#state = DONE;
    else if (this.#state !== DONE) {
      throw new ParseError("connection closed before the end of the body");
    }
  }
}
