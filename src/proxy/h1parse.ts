/**
 * A strict, incremental HTTP/1.1 response parser (sans-IO): bytes in, head /
 * body chunks / end out. Used by our own upstream client, which replaces
 * Deno's `node:http` client: in Deno 2.9.6 that client re-sends a request it
 * was told to destroy on a reused keep-alive socket (denoland/deno#36786,
 * reproduced here with a Node 20 control that sends it once), so a timed-out
 * POST could reach the upstream twice.
 *
 * @module
 */

import { BodyDecoder, collapseContentLength, findHeadEnd, latin1, ParseError } from "./h1body.ts";

/** A malformed response; the connection cannot be reused. */
export { ParseError };

/** The parsed status line and headers. */
export interface ResponseHead {
  status: number;
  statusText: string;
  /** Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor: number;
  /** name, value, name, value… as received. */
  rawHeaders: string[];
  /** Whether the connection may carry another request after this response. */
  keepAlive: boolean;
  /**
   * Whether it came with Transfer-Encoding: its body is de-framed here, so a
   * Content-Length beside it says nothing about what is passed on.
   */
  transferEncoding: boolean;
}

/** Callbacks of a parser. */
export interface ParserSink {
  head(head: ResponseHead): void;
  /**
   * A piece of the (de-chunked) body; `last` when it completes a body of
   * known length (`end` follows at once).
   */
  body(chunk: Uint8Array, last: boolean): void;
  end(): void;
}

const MAX_HEAD = 64 * 1024;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/;
// RFC 9110 token for header names; values may not contain CR, LF or NUL.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const VALUE = "[^\\x00\\r\\n]*";
const HEADER_NAME = new RegExp(`^${TOKEN}$`);
// deno-lint-ignore no-control-regex
const BAD_VALUE = /[\x00\r\n]/;
/** A header block (the lines after the status line) every line of which is `token ":" value`. */
const HEADER_BLOCK = new RegExp(`^${TOKEN}:${VALUE}(?:\\r\\n${TOKEN}:${VALUE})*$`);

/** The precise error of a header line the block check refused (or nothing). */
function checkHeaderLine(line: string, colon: number): void {
  if (line[0] === " " || line[0] === "\t") throw new ParseError("obsolete header line folding");
  if (colon <= 0) throw new ParseError(`invalid header line "${line.slice(0, 60)}"`);
  const name = line.slice(0, colon);
  if (!HEADER_NAME.test(name)) throw new ParseError(`invalid header name "${name.slice(0, 60)}"`);
}

const enum State {
  Head,
  Body,
  Done,
}

/**
 * Incremental parser of one response on a connection.
 *
 * @example
 * const p = new ResponseParser("GET", { head: (h) => …, body: (c) => …, end: () => … });
 * socket.on("data", (d) => p.push(d));
 * socket.on("end", () => p.eof());
 */
export class ResponseParser {
  #state = State.Head;
  #buf: Uint8Array | null = null;
  #body: BodyDecoder | null = null;
  #head: ResponseHead | null = null;

  readonly #onBody: (chunk: Uint8Array) => void;

  constructor(private readonly method: string, private readonly sink: ParserSink) {
    this.#onBody = (c) => sink.body(c, this.#body!.done);
  }

  /** The head, once parsed. */
  get head(): ResponseHead | null {
    return this.#head;
  }

  /** Whether the whole response was read. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /** Whether any byte of the response arrived. */
  get started(): boolean {
    return this.#buf !== null || this.#head !== null;
  }

  /** Feed bytes; throws {@link ParseError}. Bytes after the response are an error. */
  push(data: Uint8Array): void {
    let d = data;
    while (d.length > 0) {
      switch (this.#state) {
        case State.Head: {
          const prev = this.#buf;
          const buf = prev ? concat(prev, d) : d;
          const from = prev ? Math.max(0, prev.length - 3) : 0;
          const end = findHeadEnd(buf, from);
          if (end === -1) {
            if (buf.length > MAX_HEAD) throw new ParseError("response head larger than 64 KiB");
            this.#buf = buf === d ? d.slice() : buf;
            return;
          }
          this.#buf = new Uint8Array(0);
          const informational = this.#parseHead(latin1(buf.subarray(0, end)));
          d = buf.subarray(end + 4);
          if (informational) {
            this.#buf = null;
            this.#head = null;
          }
          break;
        }
        case State.Body: {
          const used = this.#body!.push(d, this.#onBody);
          d = d.subarray(used);
          if (this.#body!.done) this.#finish();
          break;
        }
        case State.Done:
          throw new ParseError("unexpected bytes after the response");
      }
    }
  }

  /** The connection closed: ends a close-delimited body, else an incomplete response is an error. */
  eof(): void {
    if (this.#state === State.Body) {
      try {
        this.#body!.eof();
      } catch {
        throw new ParseError("connection closed before the end of the response body");
      }
      return this.#finish();
    }
    if (this.#state !== State.Done) {
      throw new ParseError(
        this.#state === State.Head
          ? "connection closed before the response head"
          : "connection closed before the end of the response body",
      );
    }
  }

  /** Returns true for an informational (1xx) head that is skipped. */
  #parseHead(text: string): boolean {
    const lines = text.split("\r\n");
    const m = STATUS_LINE.exec(lines[0]);
    if (!m) throw new ParseError(`invalid status line "${lines[0].slice(0, 60)}"`);
    const status = Number(m[2]);
    const minor = Number(m[1]);
    const raw: string[] = [];
    let contentLength: number | null = null;
    let chunked = false;
    let hasTE = false;
    let close = minor === 0;
    // One pass over the whole block validates every line in the usual case;
    // a block that fails it is checked line by line for a precise error.
    const checked = lines.length === 1 || HEADER_BLOCK.test(text.slice(lines[0].length + 2));
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(":");
      if (!checked) checkHeaderLine(line, colon);
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      if (!checked && BAD_VALUE.test(value)) {
        throw new ParseError(`invalid value of header "${name}"`);
      }
      raw.push(name, value);
      // Only three names steer framing: compare by length first.
      const lower = colon === 10 || colon === 14 || colon === 17 ? name.toLowerCase() : "";
      if (lower === "content-length") {
        // Repeated identical values are allowed (RFC 9110 8.6); anything else is smuggling bait.
        for (const v of value.split(",")) {
          const t = v.trim();
          if (!/^\d{1,15}$/.test(t)) throw new ParseError(`invalid Content-Length "${value}"`);
          const n = Number(t);
          if (contentLength !== null && contentLength !== n) {
            throw new ParseError("conflicting Content-Length values");
          }
          contentLength = n;
        }
      } else if (lower === "transfer-encoding") {
        hasTE = true;
        const codings = value.toLowerCase().split(",").map((s) => s.trim());
        chunked = codings[codings.length - 1] === "chunked";
      } else if (lower === "connection") {
        const toks = value.toLowerCase().split(",").map((s) => s.trim());
        if (toks.includes("close")) close = true;
        else if (minor === 0 && toks.includes("keep-alive")) close = false;
      }
    }
    if (status >= 100 && status < 200 && status !== 101) return true;
    const noBody = this.method === "HEAD" || status === 204 || status === 304 || status === 101;
    if (hasTE && !chunked && !noBody) close = true; // a non-chunked coding: body until close
    // One Content-Length line with one value goes on to the client (RFC 9110 §8.6).
    const rawHeaders = contentLength === null ? raw : collapseContentLength(raw, contentLength);
    this.#head = {
      status,
      statusText: m[3] ?? "",
      minor,
      rawHeaders,
      keepAlive: !close,
      transferEncoding: hasTE,
    };
    this.sink.head(this.#head);
    if (noBody) {
      this.#finish();
      return false;
    }
    if (hasTE) {
      // Transfer-Encoding wins over Content-Length (RFC 9112 6.3); such a message is not reused.
      if (contentLength !== null) this.#head.keepAlive = false;
      this.#body = chunked ? BodyDecoder.chunked() : BodyDecoder.untilClose();
    } else if (contentLength !== null) {
      if (contentLength === 0) {
        this.#finish();
        return false;
      }
      this.#body = BodyDecoder.length(contentLength);
    } else {
      this.#head.keepAlive = false;
      this.#body = BodyDecoder.untilClose();
    }
    this.#state = State.Body;
    return false;
  }

  #finish() {
    this.#state = State.Done;
    this.sink.end();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
