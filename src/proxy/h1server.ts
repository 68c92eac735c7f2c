/**
 * A strict HTTP/1.1 server on an already-connected duplex socket: the
 * proxy's own client connections (plain TCP) and the decrypted `TLSSocket`
 * of an intercepted CONNECT. Why not `node:http`: in Deno 2.9.6 a
 * `node:http` server fed a socket with `emit("connection")` closes the
 * connection after every response although it announces keep-alive (see
 * issue 4), and on the listener this layer costs ~8 µs less per request than
 * `node:http` (which runs on `Deno.serve` underneath). Requests and responses
 * look like Node's `IncomingMessage` / `ServerResponse` for the subset the
 * proxy uses; CONNECT and WebSocket upgrades are handed over with the raw
 * socket (`onTakeover`).
 *
 * Framing follows RFC 9112 and refuses what could be read two ways (request
 * smuggling): Content-Length beside Transfer-Encoding, conflicting lengths,
 * obs-fold, bare CR/LF, unknown codings. Bodies stream with backpressure both
 * ways; requests on one connection are answered strictly in order.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import { type IncomingHttpHeaders, STATUS_CODES } from "node:http";
import type net from "node:net";
import { type Duplex, Readable, Writable } from "node:stream";
import { BodyDecoder, collapseContentLength, findHeadEnd, ParseError } from "./h1body.ts";
import { isWebSocketUpgrade } from "./headers.ts";
import { noteRead } from "./reclaim.ts";

/** Options of {@link serveHttp1}. */
export interface H1ServerOptions {
  /** Max request head size (default 64 KiB) — larger: answer 431 and close. */
  maxHeadBytes?: number;
  /** Idle keep-alive timeout between requests (default 60 s): close quietly. */
  keepAliveTimeoutMs?: number;
  /** Time allowed to receive a complete request head once it started (default 30 s): 408 and close. */
  headersTimeoutMs?: number;
  /**
   * Called with an exception thrown by `onRequest` (answered 500 or cut) or
   * raised inside this layer (the connection is cut). Default: ignored.
   */
  onError?: (err: unknown) => void;
  /**
   * CONNECT requests and WebSocket upgrades (`Connection: upgrade` +
   * `Upgrade: websocket`) are handed over with the raw socket and the bytes
   * read after their head; this layer lets go of the socket. Without it they
   * are served as requests. Any other upgrade (h2c, as `curl --http2` asks
   * for) is served as an ordinary HTTP/1.1 request: a server may ignore
   * Upgrade (RFC 9110 7.8), and the header is hop-by-hop, so it is dropped.
   */
  onTakeover?: (head: TakeoverHead, socket: Duplex, rest: Uint8Array) => void;
}

/** The parsed head of a request that takes the socket over (CONNECT, Upgrade). */
export interface TakeoverHead {
  method: string;
  /** The request-target as sent (`host:port` for CONNECT). */
  url: string;
  httpVersion: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
}

/** Whether a request takes the connection over: CONNECT, or a WebSocket upgrade. */
function isTakeover(head: RequestHead): boolean {
  if (head.method === "CONNECT") return true;
  const conn = head.headers.connection;
  return isWebSocketUpgrade(head.headers) && typeof conn === "string" &&
    /(^|,)\s*upgrade\s*(,|$)/i.test(conn);
}

/** What {@link serveHttp1} returns. */
export interface H1Connection {
  /** Stop after the current response (announced with `Connection: close`); close an idle connection now. */
  close(): void;
}

/** Unread body bytes we still read and discard to keep a connection (else: close). */
const DISCARD_LIMIT = 1024 * 1024;
/** After our FIN, how long we keep reading (and dropping) what the client still sends. */
const LINGER_MS = 2000;
/** Request-body buffer before the socket is paused; one socket read is 64 KiB in Deno. */
const BODY_HWM = 64 * 1024;
/** Response bytes buffered before `write()` returns false. */
const RESPONSE_HWM = 64 * 1024;
/** Below this, head, chunk framing and data are copied into one buffer: one write, one TLS record. */
const COALESCE_MAX = 16 * 1024;

const LAST_CHUNK = Buffer.from("0\r\n\r\n", "latin1");
const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1");

const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Field values: HTAB, visible ASCII, SP and obs-text; no other control characters.
// deno-lint-ignore no-control-regex
const BAD_REQUEST_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const BAD_RESPONSE_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const DIGITS = /^\d{1,15}$/;

/** Duplicates of these are dropped (first wins), as Node's `IncomingMessage` does. */
const SINGLE = new Set([
  "content-type",
  "content-length",
  "user-agent",
  "referer",
  "host",
  "authorization",
  "proxy-authorization",
  "if-modified-since",
  "if-unmodified-since",
  "from",
  "location",
  "max-forwards",
  "retry-after",
  "etag",
  "last-modified",
  "server",
  "age",
  "expires",
]);

// ---------------------------------------------------------------------------
// Request head

/** A request we refuse before it reaches the handler. */
class RequestError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A parsed request head. */
interface RequestHead {
  method: string;
  url: string;
  minor: number;
  rawHeaders: string[];
  headers: IncomingHttpHeaders;
  /** Body decoder; null when there is no body. */
  body: BodyDecoder | null;
  /** The client asked to close after this exchange (or is HTTP/1.0 without keep-alive). */
  close: boolean;
  expectContinue: boolean;
}

function addHeader(h: IncomingHttpHeaders, name: string, value: string) {
  const prev = h[name];
  if (prev === undefined || !Object.hasOwn(h, name)) {
    if (name === "set-cookie") h[name] = [value];
    else if (name === "__proto__") {
      Object.defineProperty(h, name, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else h[name] = value;
  } else if (name === "set-cookie") (prev as string[]).push(value);
  else if (SINGLE.has(name)) return;
  else h[name] = prev + (name === "cookie" ? "; " : ", ") + value;
}

/** Parse a request head (latin1 text without its final CRLFCRLF); throws {@link RequestError}. */
function parseRequestHead(text: string): RequestHead {
  let eol = text.indexOf("\r\n");
  if (eol === -1) eol = text.length;
  const m = REQUEST_LINE.exec(text.slice(0, eol));
  if (!m) throw new RequestError(400, `invalid request line "${text.slice(0, Math.min(eol, 80))}"`);
  if (m[3] !== "1" || (m[4] !== "0" && m[4] !== "1")) {
    throw new RequestError(505, `HTTP version "${m[3]}.${m[4]}" is not supported`);
  }
  const minor = m[4] === "1" ? 1 : 0;
  let rawHeaders: string[] = [];
  const headers: IncomingHttpHeaders = {};
  let contentLength = -1;
  let te: string | null = null;
  let hosts = 0;
  let close = minor === 0;
  let keepAlive = false;
  let expectContinue = false;
  let pos = eol + 2;
  while (pos < text.length) {
    let end = text.indexOf("\r\n", pos);
    if (end === -1) end = text.length;
    const c0 = text.charCodeAt(pos);
    if (c0 === 32 || c0 === 9) throw new RequestError(400, "obsolete header line folding");
    const colon = text.indexOf(":", pos);
    if (colon === -1 || colon > end) {
      throw new RequestError(
        400,
        `header line without colon "${text.slice(pos, Math.min(end, pos + 60))}"`,
      );
    }
    const name = text.slice(pos, colon);
    if (!TOKEN.test(name)) {
      throw new RequestError(400, `invalid header name "${name.slice(0, 60)}"`);
    }
    // Trim optional whitespace (SP / HTAB only) around the value.
    let vs = colon + 1;
    let ve = end;
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
    const value = text.slice(vs, ve);
    if (BAD_REQUEST_VALUE.test(value)) {
      throw new RequestError(400, `invalid value of header "${name}"`);
    }
    rawHeaders.push(name, value);
    const lower = name.toLowerCase();
    addHeader(headers, lower, value);
    switch (lower) {
      case "content-length":
        // Identical repeated values may be collapsed (RFC 9110 8.6); anything else is smuggling bait.
        for (const part of value.split(",")) {
          const t = part.trim();
          if (!DIGITS.test(t)) {
            throw new RequestError(400, `invalid Content-Length "${value.slice(0, 40)}"`);
          }
          const n = Number(t);
          if (contentLength !== -1 && contentLength !== n) {
            throw new RequestError(400, "conflicting Content-Length values");
          }
          contentLength = n;
        }
        break;
      case "transfer-encoding":
        te = te === null ? value : `${te}, ${value}`;
        break;
      case "host":
        hosts++;
        break;
      case "connection":
        for (const part of value.split(",")) {
          const t = part.trim().toLowerCase();
          if (t === "close") close = true;
          else if (t === "keep-alive") keepAlive = true;
        }
        break;
      case "expect":
        if (value.toLowerCase() === "100-continue") expectContinue = true;
        break;
    }
    pos = end + 2;
  }
  if (minor === 0 && keepAlive && !/(^|,)\s*close\s*(,|$)/i.test(String(headers.connection))) {
    close = false;
  }
  if (contentLength !== -1) {
    // Forward one agreed value, never the list (RFC 9110 §8.6): `3, 3` becomes `3`.
    headers["content-length"] = String(contentLength);
    rawHeaders = collapseContentLength(rawHeaders, contentLength);
  }
  if (hosts > 1) throw new RequestError(400, "more than one Host header");
  if (hosts === 0 && minor === 1) throw new RequestError(400, "missing Host header");
  let body: BodyDecoder | null = null;
  if (te !== null) {
    // Both framings at once is the classic smuggling vector (RFC 9112 6.1): refuse, never guess.
    if (contentLength !== -1) {
      throw new RequestError(400, "both Transfer-Encoding and Content-Length");
    }
    if (minor === 0) throw new RequestError(400, "Transfer-Encoding in an HTTP/1.0 request");
    const codings = te.split(",").map((s) => s.trim().toLowerCase());
    const unknown = codings.find((c) => c !== "chunked");
    if (unknown !== undefined) {
      throw new RequestError(
        unknown === "" ? 400 : 501,
        unknown === ""
          ? `invalid Transfer-Encoding "${te.slice(0, 40)}"`
          : `transfer coding "${unknown.slice(0, 40)}" is not supported`,
      );
    }
    if (codings.length > 1) throw new RequestError(400, "chunked applied more than once");
    body = BodyDecoder.chunked({ strict: true });
  } else if (contentLength > 0) body = BodyDecoder.length(contentLength);
  return {
    method: m[1],
    url: m[2],
    minor,
    rawHeaders,
    headers,
    body,
    close,
    expectContinue: expectContinue && minor === 1,
  };
}

// Deno's latin1 `Buffer#write` is a JavaScript loop; `TextEncoder#encodeInto`
// is native (and equal for ASCII, the usual case).
const encoder = new TextEncoder();
// deno-lint-ignore no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/** Write a latin1 string at `at`; returns the bytes written. */
function writeLatin1(out: Uint8Array, text: string, at: number): number {
  if (!NON_ASCII.test(text)) return encoder.encodeInto(text, out.subarray(at)).written;
  for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
  return text.length;
}

// ---------------------------------------------------------------------------
// Date header, computed at most once a second.

let dateText = "";
let dateUntil = 0;
function httpDate(): string {
  const now = Date.now();
  if (now >= dateUntil || now < dateUntil - 1000) {
    dateText = new Date(now).toUTCString();
    dateUntil = now - (now % 1000) + 1000;
  }
  return dateText;
}

// ---------------------------------------------------------------------------
// Request

/**
 * An incoming request; the stream is its (de-chunked) body. Shaped like
 * Node's `IncomingMessage` for the fields the proxy reads.
 */
export class H1Request extends Readable {
  /** The method as sent (methods are case-sensitive). */
  readonly method: string;
  /** The request-target as sent: `/path?q`, or absolute-form `http://host/path`. */
  readonly url: string;
  /** "1.1" or "1.0". */
  readonly httpVersion: string;
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor: number;
  /** Lower-case names; duplicates joined with ", " (`cookie`: "; ", `set-cookie`: array), as Node does. */
  readonly headers: IncomingHttpHeaders;
  /** name, value, name, value… as received. */
  readonly rawHeaders: string[];
  /** The connection (for `remoteAddress` and friends). */
  readonly socket: net.Socket;
  /** True once the whole body arrived. */
  complete = false;
  /** True when the connection died before the body was complete. */
  aborted = false;
  readonly #conn: Connection;

  /** @internal Created by the server only. */
  constructor(conn: Connection, head: RequestHead, socket: net.Socket) {
    super({ highWaterMark: BODY_HWM });
    this.#conn = conn;
    this.method = head.method;
    this.url = head.url;
    this.httpVersionMinor = head.minor;
    this.httpVersion = head.minor === 1 ? "1.1" : "1.0";
    this.headers = head.headers;
    this.rawHeaders = head.rawHeaders;
    this.socket = socket;
  }

  /** Same as {@link H1Request.socket} (Node's deprecated alias). */
  get connection(): net.Socket {
    return this.socket;
  }

  /** A request without a body: its end is pushed when someone reads (most never do). */
  #endOnRead = false;

  /**
   * @internal The request has no body: complete now, ended when first read
   * (an eager `push(null)` schedules stream ticks for every bodiless request,
   * read or not).
   */
  endBodyless(): void {
    this.complete = true;
    this.#endOnRead = true;
  }

  override _read(): void {
    if (this.#endOnRead) {
      this.#endOnRead = false;
      this.push(null);
      return;
    }
    this.#conn.readBody(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.complete) {
      this.aborted = true;
      this.emit("aborted");
    }
    // Like Node: an error is emitted only to those who listen for it, so a
    // client that vanishes never crashes a handler that did not expect it.
    cb(err && this.listenerCount("error") > 0 ? err : null);
  }
}

// ---------------------------------------------------------------------------
// Response

/** Header values the caller may pass. */
export type OutgoingHeaders = Record<string, string | number | readonly string[] | undefined>;

// Body framing of a response.
const F_NONE = 0; // no body allowed (1xx, 204, 304, HEAD)
const F_LENGTH = 1;
const F_CHUNKED = 2;
const F_CLOSE = 3; // raw bytes, end of body = end of connection

function invalidHeader(code: string, message: string): TypeError {
  return Object.assign(new TypeError(message), { code });
}

/**
 * The response to one request: a Writable of body bytes plus the subset of
 * Node's `ServerResponse` the proxy uses. The head goes out with the first
 * body bytes (or at `end()`), so a small response is one socket write.
 */
export class H1Response extends Writable {
  statusCode = 200;
  statusMessage = "";
  /**
   * Set when the server answered the request itself before the handler did
   * (a malformed chunked body: 400) and closed the connection; the response
   * is then destroyed and its output dropped.
   */
  refused: { status: number; reason: string } | null = null;
  readonly #conn: Connection;
  readonly #req: H1Request;
  #committed = false;
  /** Serialized caller headers, without Connection. */
  #lines = "";
  #callerLength = -1;
  /** The caller's Content-Length line, with the caller's spelling of the name. */
  #lengthLine = "";
  #callerChunked = false;
  #callerClose = false;
  #hasDate = false;
  #onWire = false;
  #framing = F_NONE;
  #left = 0;
  #terminated = false;
  #continueSent = false;
  #corked = false;

  /** @internal Created by the server only. */
  constructor(conn: Connection, req: H1Request) {
    super({ highWaterMark: RESPONSE_HWM });
    this.#conn = conn;
    this.#req = req;
    // One shared listener (no closure or once-wrapper per response): the
    // connection moves on to the next request.
    this.on("finish", H1Response.#onFinish);
  }

  /** The `finish` listener of every response (`this` is the response). */
  static #onFinish(this: H1Response): void {
    this.#conn.responseFinished(this);
  }

  /** The connection. */
  get socket(): net.Socket {
    return this.#req.socket;
  }

  /** True once `writeHead` was called (explicitly or by the first write). */
  get headersSent(): boolean {
    return this.#committed;
  }

  /** `HTTP/1.1 100 Continue` (once, before the final head; never to an HTTP/1.0 client). */
  writeContinue(): void {
    if (this.#committed || this.#continueSent || this.#req.httpVersionMinor === 0) return;
    if (this.destroyed || this.#conn.dead) return;
    this.#continueSent = true;
    this.#conn.continueSent = true;
    this.#conn.socket.write(CONTINUE);
  }

  /** Whether `100 Continue` went out. */
  get continueSent(): boolean {
    return this.#continueSent;
  }

  /**
   * Set status and headers. They reach the wire with the first body bytes.
   * Throws (like Node) on a second call and on header names / values that
   * would break the framing (CR, LF, NUL…).
   */
  writeHead(status: number, headers?: OutgoingHeaders | readonly string[]): this;
  writeHead(
    status: number,
    statusText?: string,
    headers?: OutgoingHeaders | readonly string[],
  ): this;
  writeHead(
    status: number,
    textOrHeaders?: string | OutgoingHeaders | readonly string[],
    maybeHeaders?: OutgoingHeaders | readonly string[],
  ): this {
    if (this.#committed) {
      throw invalidHeader("ERR_HTTP_HEADERS_SENT", "Cannot write headers after they are sent");
    }
    if (!Number.isInteger(status) || status < 100 || status > 999) {
      throw Object.assign(new RangeError(`Invalid status code: ${status}`), {
        code: "ERR_HTTP_INVALID_STATUS_CODE",
      });
    }
    let text: string | undefined;
    let headers: OutgoingHeaders | readonly string[] | undefined;
    if (typeof textOrHeaders === "string") {
      text = textOrHeaders;
      headers = maybeHeaders;
    } else headers = textOrHeaders;
    if (text !== undefined && BAD_RESPONSE_VALUE.test(text)) {
      throw invalidHeader("ERR_INVALID_CHAR", "Invalid character in statusMessage");
    }
    let lines = "";
    if (headers) {
      if (Array.isArray(headers)) {
        for (let i = 0; i + 1 < headers.length; i += 2) {
          lines += this.#line(headers[i], headers[i + 1]);
        }
      } else {
        const h = headers as OutgoingHeaders;
        for (const name in h) {
          const v = h[name];
          if (v === undefined) continue;
          if (typeof v === "object") { for (const one of v) lines += this.#line(name, one); }
          else lines += this.#line(name, typeof v === "string" ? v : String(v));
        }
      }
    }
    this.statusCode = status;
    this.statusMessage = text ?? this.statusMessage ?? "";
    if (this.statusMessage === "") this.statusMessage = STATUS_CODES[status] ?? "unknown";
    this.#lines = lines;
    this.#committed = true;
    return this;
  }

  /** One validated header line; notes the names that steer framing. */
  #line(name: string, value: string): string {
    if (!TOKEN.test(name)) {
      throw invalidHeader("ERR_INVALID_HTTP_TOKEN", `Invalid header name "${name}"`);
    }
    if (BAD_RESPONSE_VALUE.test(value)) {
      throw invalidHeader("ERR_INVALID_CHAR", `Invalid character in header content ["${name}"]`);
    }
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === "date") this.#hasDate = true;
        break;
      case 10:
        if (name.toLowerCase() === "connection") {
          if (/(^|,)\s*close\s*(,|$)/i.test(value)) this.#callerClose = true;
          return ""; // we say ourselves whether the connection stays
        }
        break;
      case 14:
        if (name.toLowerCase() === "content-length") {
          if (!DIGITS.test(value.trim())) {
            throw invalidHeader(
              "ERR_HTTP_INVALID_HEADER_VALUE",
              `Invalid Content-Length "${value}"`,
            );
          }
          this.#callerLength = Number(value.trim());
          this.#lengthLine = `${name}: ${this.#callerLength}\r\n`;
          return "";
        }
        break;
      case 17:
        if (name.toLowerCase() === "transfer-encoding") {
          // We frame ourselves: "chunked" from the caller means "stream it".
          if (/chunked\s*$/i.test(value)) this.#callerChunked = true;
          return "";
        }
        break;
    }
    return `${name}: ${value}\r\n`;
  }

  /**
   * Decide the framing and produce the head. `total` is the whole body size
   * when known (at `end()` before any body was written), else -1.
   */
  #head(total: number): string {
    const status = this.statusCode;
    const conn = this.#conn;
    let framingLine = "";
    if (status < 200 || status === 204 || status === 304 || this.#req.method === "HEAD") {
      this.#framing = F_NONE;
      // A HEAD / 304 answer may carry the length of the body it stands for; 1xx and 204 may not.
      if (this.#callerLength !== -1 && status >= 200 && status !== 204) {
        framingLine = this.#lengthLine;
      } else if (total > 0 && status >= 200 && status !== 204 && status !== 304) {
        framingLine = `Content-Length: ${total}\r\n`; // HEAD answered with the GET body
      }
    } else if (this.#callerChunked && this.#req.httpVersionMinor === 1) {
      this.#framing = F_CHUNKED;
      framingLine = "Transfer-Encoding: chunked\r\n";
    } else if (this.#callerLength !== -1 && !this.#callerChunked) {
      this.#framing = F_LENGTH;
      this.#left = this.#callerLength;
      framingLine = this.#lengthLine;
    } else if (total >= 0) {
      this.#framing = F_LENGTH;
      this.#left = total;
      framingLine = `Content-Length: ${total}\r\n`;
    } else if (this.#req.httpVersionMinor === 1) {
      this.#framing = F_CHUNKED;
      framingLine = "Transfer-Encoding: chunked\r\n";
    } else this.#framing = F_CLOSE;
    const close = conn.decideClose(this.#callerClose || this.#framing === F_CLOSE);
    let out = `HTTP/1.1 ${status} ${this.statusMessage}\r\n${this.#lines}${framingLine}`;
    if (close) out += "Connection: close\r\n";
    else if (this.#req.httpVersionMinor === 0) out += "Connection: keep-alive\r\n";
    if (!this.#hasDate) out += `Date: ${httpDate()}\r\n`;
    this.#onWire = true;
    return out + "\r\n";
  }

  /**
   * Put body bytes on the wire (with the head and chunk framing when due).
   * Returns the socket's backpressure verdict; false also when the bytes were
   * refused and the connection cut.
   */
  #send(chunk: Uint8Array, last: boolean): boolean {
    const conn = this.#conn;
    if (conn.dead) return true;
    let head = "";
    if (!this.#onWire) {
      if (!this.#committed) this.writeHead(this.statusCode);
      head = this.#head(last ? chunk.length : -1);
    }
    let pre = "";
    let post: Uint8Array | null = null;
    let body: Uint8Array | null = chunk.length > 0 ? chunk : null;
    switch (this.#framing) {
      case F_NONE:
        body = null; // like Node: a body where none is allowed is dropped
        break;
      case F_LENGTH:
        if (chunk.length > this.#left) {
          // More than announced would corrupt the next response: cut instead.
          this.destroy();
          return false;
        }
        this.#left -= chunk.length;
        break;
      case F_CHUNKED:
        if (body) {
          pre = chunk.length.toString(16) + "\r\n";
          post = last ? CRLF_LAST : CRLF;
        } else if (last) post = LAST_CHUNK;
        if (last) this.#terminated = true;
        break;
    }
    const socket = conn.socket;
    if (!last && !this.#corked) {
      this.#corked = true;
      socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        socket.uncork();
      });
    }
    const prefix = head + pre;
    const size = prefix.length + (body ? body.length : 0) + (post ? post.length : 0);
    if (size === 0) return true;
    if (!body || body.length <= COALESCE_MAX) {
      const out = Buffer.allocUnsafe(size);
      let at = writeLatin1(out, prefix, 0);
      if (body) {
        out.set(body, at);
        at += body.length;
      }
      if (post) out.set(post, at);
      return socket.write(out);
    }
    socket.cork();
    if (prefix) {
      const p = Buffer.allocUnsafe(prefix.length);
      writeLatin1(p, prefix, 0);
      socket.write(p);
    }
    let ok = socket.write(body);
    if (post) ok = socket.write(post);
    socket.uncork();
    return ok;
  }

  override _write(chunk: Uint8Array, _enc: string, cb: (err?: Error | null) => void): void {
    if (this.#send(chunk, false) || this.#conn.dead || this.destroyed) cb();
    else this.#conn.socket.once("drain", () => cb());
  }

  override _writev(
    chunks: { chunk: Uint8Array; encoding: string }[],
    cb: (err?: Error | null) => void,
  ): void {
    this._write(Buffer.concat(chunks.map((c) => c.chunk)), "buffer", cb);
  }

  // deno-lint-ignore no-explicit-any
  override end(chunk?: any, encoding?: any, cb?: any): this {
    // Fast path: nothing written yet or all of it flushed — head, body and
    // terminator leave in one socket write.
    if (
      chunk != null && typeof chunk !== "function" && !this.writableEnded && !this.destroyed &&
      this.writableLength === 0 && !this.writableCorked && !this.#conn.dead
    ) {
      const buf = typeof chunk === "string"
        ? Buffer.from(chunk, typeof encoding === "string" ? encoding as BufferEncoding : "utf8")
        : chunk as Uint8Array;
      this.#send(buf, true);
      return super.end(typeof encoding === "function" ? encoding : cb);
    }
    return super.end(chunk, encoding, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    // A response whose connection died is not "finished": no finish event, only close.
    if (this.#conn.dead) return void this.destroy();
    if (!this.#onWire) this.#send(EMPTY, true);
    else if (this.#framing === F_CHUNKED && !this.#terminated) {
      this.#terminated = true;
      this.#conn.socket.write(LAST_CHUNK);
    }
    if (this.#framing === F_LENGTH && this.#left > 0) {
      // Fewer bytes than announced: the client would wait forever; cut the connection.
      this.destroy();
      return;
    }
    cb();
  }

  override _destroy(_err: Error | null, cb: (err?: Error | null) => void): void {
    // After `finish` this is autoDestroy: the connection lives on. Before it,
    // the response cannot be completed: cut the connection (as Node's
    // `res.destroy()` does). Never emit "error": that would crash handlers.
    if (!this.writableFinished) this.#conn.abort(this);
    cb(null);
  }
}

const EMPTY = new Uint8Array(0);
const CRLF = Buffer.from("\r\n", "latin1");
const CRLF_LAST = Buffer.from("\r\n0\r\n\r\n", "latin1");

// ---------------------------------------------------------------------------
// Connection

// Phases of a connection.
const IDLE = 0; // waiting for a request (no byte of it yet)
const HEAD = 1; // part of a request head received
const BUSY = 2; // one exchange in progress
const LINGER = 3; // we sent FIN; dropping what still arrives
const DEAD = 4;

// Deadline kinds.
const T_NONE = 0;
const T_IDLE = 1;
const T_HEADERS = 2;
const T_DISCARD = 3;
const T_LINGER = 4;

type ReadHandle = { readStop(): unknown; readStart(): unknown };

/** Stop and restart reading a socket, for backpressure. */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

/**
 * Pause / resume that really stops reading, also for a TLSSocket.
 *
 * Deno 2.9.6: `pause()` on a TLSSocket does not stop its TLSWrap from reading
 * the TCP socket under it; the decrypted bytes pile up in Rust without bound
 * (a paused server socket let a client push 256 MiB, RSS 564 MiB; Node 20
 * stops at ~4 MiB). Stopping the TCP handle's reads does work. That handle is
 * reachable when the TLSSocket wraps a `net.Socket` (`_parent`): a socket a
 * `tls.Server` accepted or was given with `emit("connection")`, or a client
 * made with `tls.connect({ socket: net.connect(…) })` — not a plain
 * `tls.connect({ host, port })`, whose TCP handle is out of reach.
 *
 * @example
 * const flow = flowControl(tlsSocket);
 * if (!sink.write(chunk)) { flow.pause(); sink.once("drain", () => flow.resume()); }
 */
export function flowControl(socket: Duplex): FlowControl {
  const handle = transportHandle(socket);
  if (!handle) return { pause: () => socket.pause(), resume: () => socket.resume() };
  let stopped = false;
  return {
    pause() {
      socket.pause();
      if (!stopped) {
        stopped = true;
        handle.readStop();
      }
    },
    resume() {
      if (stopped) {
        stopped = false;
        handle.readStart();
      }
      socket.resume();
    },
  };
}

/** The TCP handle under a TLSSocket (`_parent._handle`), if any. */
function transportHandle(socket: Duplex): ReadHandle | null {
  if (!(socket as { encrypted?: boolean }).encrypted) return null;
  const h = (socket as unknown as { _parent?: { _handle?: Partial<ReadHandle> } })._parent
    ?._handle;
  return h && typeof h.readStop === "function" && typeof h.readStart === "function"
    ? h as ReadHandle
    : null;
}

/** @internal One served connection. */
class Connection {
  readonly socket: net.Socket;
  #phase = IDLE;
  /** Bytes of an incomplete head: `#acc[0..#accLen)`, grown by doubling. */
  #acc: Buffer | null = null;
  #accLen = 0;
  /** Bytes that arrived after the current request (pipelining). */
  #pending: Buffer | null = null;
  #req: H1Request | null = null;
  #res: H1Response | null = null;
  #body: BodyDecoder | null = null;
  #bodyDone = true;
  /** The response finished before the body arrived: drop the rest. */
  #discard = false;
  #expectContinue = false;
  continueSent = false;
  /** The current exchange must be the last. */
  #close = false;
  #closeRequested = false;
  #pausedBody = false;
  #pausedPipeline = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = 0;
  #deadline = 0;
  #deadlineKind = T_NONE;
  /** Pause / resume that holds for TLS too (see {@link flowControl}). */
  readonly #flow: FlowControl;
  readonly #maxHead: number;
  readonly #keepAliveMs: number;
  readonly #headersMs: number;

  constructor(
    socket: Duplex,
    private readonly handler: (req: H1Request, res: H1Response) => void,
    private readonly opts: H1ServerOptions,
  ) {
    this.socket = socket as net.Socket;
    this.#flow = flowControl(socket);
    this.#maxHead = opts.maxHeadBytes ?? 64 * 1024;
    this.#keepAliveMs = opts.keepAliveTimeoutMs ?? 60_000;
    this.#headersMs = opts.headersTimeoutMs ?? 30_000;
  }

  start() {
    const s = this.socket;
    s.on("data", this.#onData);
    s.on("end", this.#onEnd);
    s.on("error", this.#onError);
    s.on("close", this.#onClose);
    if (s.destroyed) return this.#onClose();
    this.#setDeadline(T_IDLE, this.#keepAliveMs);
    s.resume();
  }

  /** The connection is gone (or going): output is pointless. */
  get dead(): boolean {
    return this.#phase === DEAD || this.socket.destroyed;
  }

  // --- socket events -------------------------------------------------------

  #onData = (chunk: Buffer) => {
    noteRead(chunk);
    try {
      this.#feed(typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk);
    } catch (e) {
      this.#internal(e);
    }
  };

  #onEnd = () => {
    try {
      // The client is gone (a half-close counts: like Node's default). An
      // exchange in flight is aborted; otherwise just close.
      if (this.#phase === BUSY && !(this.#res?.writableFinished)) this.socket.destroy();
      else if (this.#phase !== DEAD) this.#shutdown(false);
    } catch (e) {
      this.#internal(e);
    }
  };

  #onError = () => {
    // ECONNRESET and friends: "close" follows and cleans up.
    this.socket.destroy();
  };

  #onClose = () => {
    if (this.#phase === DEAD) return;
    this.#phase = DEAD;
    this.#clearTimer();
    this.#acc = this.#pending = null;
    this.#accLen = 0;
    const req = this.#req;
    const res = this.#res;
    this.#req = this.#res = null;
    try {
      if (req && !req.complete && !req.destroyed) {
        req.destroy(Object.assign(new Error("aborted"), { code: "ECONNRESET" }));
      }
      if (res && !res.writableFinished && !res.destroyed) res.destroy();
    } catch (e) {
      this.opts.onError?.(e);
    }
  };

  // --- input ---------------------------------------------------------------

  #feed(d: Buffer): void {
    switch (this.#phase) {
      case IDLE:
      case HEAD:
        return this.#parse(d);
      case BUSY: {
        if (!this.#bodyDone) {
          const rest = this.#feedBody(d);
          if (rest === null) return;
          if (this.#phase !== BUSY) return this.#feed(rest); // the exchange completed
          d = rest;
        }
        // The next request(s), sent before this response finished: keep them for later.
        this.#pending = this.#pending ? Buffer.concat([this.#pending, d]) : d;
        if (this.#pending.length > this.#maxHead && !this.#pausedPipeline) {
          this.#pausedPipeline = true;
          this.#pause();
        }
        return;
      }
      default: // LINGER, DEAD: dropped
        return;
    }
  }

  /** Feed the current body; returns what is left beyond it, or null. */
  #feedBody(d: Buffer): Buffer | null {
    const body = this.#body!;
    let used: number;
    try {
      used = body.push(d, this.#onBodyChunk);
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      // A broken body mid-exchange: nothing sane can follow on this connection.
      const req = this.#req;
      const res = this.#res;
      const reason = `malformed request body: ${e.message}`;
      if (res && !res.headersSent && !res.destroyed && !this.#discard) {
        // Nothing of the answer went out yet: say why (400), as for a bad head,
        // and tell the handler (`res.refused`) how its exchange ended. The
        // response is detached first, so its own output and its close can no
        // longer touch the connection.
        res.refused = { status: 400, reason };
        this.#res = null;
        if (req && !req.destroyed) req.destroy(Object.assign(e, { code: "HPE_INVALID_CHUNK" }));
        this.#refuse(400, "bad_request", reason);
        res.destroy();
        return null;
      }
      if (req && !req.destroyed) req.destroy(Object.assign(e, { code: "HPE_INVALID_CHUNK" }));
      this.socket.destroy();
      return null;
    }
    if (body.done) {
      this.#bodyDone = true;
      this.#afterBody();
    }
    return used === d.length ? null : d.subarray(used);
  }

  #onBodyChunk = (c: Uint8Array) => {
    if (this.#discard) return;
    const req = this.#req!;
    if (!req.push(c) && !this.#pausedBody) {
      this.#pausedBody = true;
      this.#pause();
    }
  };

  #afterBody() {
    const req = this.#req;
    if (req) {
      req.complete = true;
      if (!this.#discard && !req.destroyed) req.push(null);
    }
    if (this.#pausedBody) {
      this.#pausedBody = false;
      this.#maybeResume();
    }
    if (this.#phase === BUSY && this.#res?.writableFinished) this.#next();
  }

  /** The consumer wants body bytes. */
  readBody(req: H1Request) {
    if (req !== this.#req) return;
    if (this.#expectContinue && !this.continueSent && this.#body?.received === 0) {
      this.#res?.writeContinue();
    }
    if (this.#pausedBody) {
      this.#pausedBody = false;
      this.#maybeResume();
    }
  }

  #maybeResume() {
    if (!this.#pausedBody && !this.#pausedPipeline && this.#phase !== DEAD) this.#resume();
  }

  #pause() {
    this.#flow.pause();
  }

  #resume() {
    this.#flow.resume();
  }

  /** Parse a request head from `d` (plus what came before it). */
  #parse(d: Buffer): void {
    let buf: Buffer;
    let from = 0;
    if (this.#acc) {
      from = Math.max(0, this.#accLen - 3);
      buf = this.#append(d);
    } else {
      // Tolerate empty lines before a request line (RFC 9112 2.2).
      let skip = 0;
      while (skip + 1 < d.length && d[skip] === 13 && d[skip + 1] === 10) skip += 2;
      buf = skip ? d.subarray(skip) : d;
      if (buf.length === 0 || (buf.length === 1 && buf[0] === 13)) return;
    }
    const end = findHeadEnd(buf, from);
    if (end === -1 || end + 4 > this.#maxHead) {
      if (buf.length > this.#maxHead) {
        this.#acc = null;
        this.#accLen = 0;
        return this.#refuse(
          431,
          "request_header_fields_too_large",
          `request head larger than ${this.#maxHead} bytes`,
        );
      }
      if (!this.#acc) this.#append(buf); // copy: the socket's chunk is not ours to keep
      if (this.#phase === IDLE) {
        this.#phase = HEAD;
        this.#setDeadline(T_HEADERS, this.#headersMs);
      }
      return;
    }
    this.#acc = null;
    this.#accLen = 0;
    let head: RequestHead;
    try {
      head = parseRequestHead(buf.toString("latin1", 0, end));
    } catch (e) {
      if (!(e instanceof RequestError)) throw e;
      return this.#refuse(
        e.status,
        e.status === 501
          ? "not_implemented"
          : e.status === 505
          ? "http_version_not_supported"
          : "bad_request",
        e.message,
      );
    }
    const rest = end + 4 < buf.length ? buf.subarray(end + 4) : null;
    if (this.opts.onTakeover && isTakeover(head)) return this.#takeover(head, rest);
    this.#dispatch(head);
    if (rest) this.#feed(rest);
  }

  /** Let go of the socket for a CONNECT or an upgrade. */
  #takeover(head: RequestHead, rest: Buffer | null) {
    const s = this.socket;
    this.#phase = DEAD;
    this.#clearTimer();
    this.#acc = this.#pending = null;
    this.#accLen = 0;
    s.off("data", this.#onData);
    s.off("end", this.#onEnd);
    s.off("error", this.#onError);
    s.off("close", this.#onClose);
    this.opts.onTakeover!(
      {
        method: head.method,
        url: head.url,
        httpVersion: `1.${head.minor}`,
        headers: head.headers,
        rawHeaders: head.rawHeaders,
      },
      s,
      rest ? Buffer.from(rest) : new Uint8Array(),
    );
  }

  /** Append to the head accumulator; returns its filled part. */
  #append(d: Uint8Array): Buffer {
    const need = this.#accLen + d.length;
    if (!this.#acc || need > this.#acc.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * (this.#acc?.length ?? 1024)));
      if (this.#acc) grown.set(this.#acc.subarray(0, this.#accLen));
      this.#acc = grown;
    }
    this.#acc.set(d, this.#accLen);
    this.#accLen = need;
    return this.#acc.subarray(0, need);
  }

  #dispatch(head: RequestHead) {
    this.#phase = BUSY;
    this.#deadlineKind = T_NONE;
    const req = new H1Request(this, head, this.socket);
    const res = new H1Response(this, req);
    this.#req = req;
    this.#res = res;
    this.#body = head.body;
    this.#bodyDone = head.body === null;
    this.#discard = false;
    this.#expectContinue = head.expectContinue;
    this.continueSent = false;
    this.#close = head.close || this.#closeRequested;
    if (this.#bodyDone) req.endBodyless();
    try {
      this.handler(req, res);
    } catch (e) {
      this.opts.onError?.(e);
      if (res.destroyed || res.writableEnded) return;
      if (!res.headersSent) {
        const body = JSON.stringify({ error: "internal_error", reason: "request handler failed" });
        res.writeHead(500, { "content-type": "application/json", connection: "close" });
        res.end(body);
      } else res.destroy();
    }
  }

  /**
   * At head time: will this connection close after the response? Also when
   * the request body is still arriving and cannot be cheaply drained.
   */
  decideClose(callerClose: boolean): boolean {
    if (callerClose || this.#closeRequested) this.#close = true;
    if (!this.#close && !this.#canDrain()) this.#close = true;
    return this.#close;
  }

  /** The rest of the body can be read and dropped: small, known and actually coming. */
  #canDrain(): boolean {
    if (this.#bodyDone) return true;
    if (this.#expectContinue && !this.continueSent) return false;
    return this.#body!.remaining <= DISCARD_LIMIT;
  }

  /** @internal A response finished (its `finish` event). */
  responseFinished(res: H1Response) {
    if (res !== this.#res || this.#phase !== BUSY) return;
    if (this.#close) return this.#shutdown(true);
    if (!this.#bodyDone) {
      // Kept alive with a small remainder (decided at head time): drop it, then go on.
      this.#discard = true;
      const req = this.#req;
      if (req && !req.destroyed) req.destroy();
      if (this.#pausedBody) {
        this.#pausedBody = false;
        this.#maybeResume();
      }
      this.#setDeadline(T_DISCARD, this.#keepAliveMs);
      return;
    }
    this.#next();
  }

  /** Both halves of the exchange are done: on to the next request. */
  #next() {
    this.#req = this.#res = null;
    this.#body = null;
    this.#phase = IDLE;
    if (this.#closeRequested) return this.#shutdown(false);
    this.#setDeadline(T_IDLE, this.#keepAliveMs);
    if (this.#pausedPipeline) {
      this.#pausedPipeline = false;
      this.#maybeResume();
    }
    const p = this.#pending;
    if (p) {
      this.#pending = null;
      this.#parse(p);
    }
  }

  // --- output / closing ----------------------------------------------------

  /** Answer a request we refuse ourselves, then close. */
  #refuse(status: number, error: string, reason: string) {
    // The reason quotes request bytes (latin1): escape them so the body is ASCII JSON.
    const body = JSON.stringify({ error, reason }).replace(
      /[\u007f-\uffff]/g,
      (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
    ) + "\n";
    this.socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\nDate: ${httpDate()}\r\n\r\n${body}`,
      "latin1",
    );
    this.#shutdown(true);
  }

  /**
   * Close after what was written is flushed; keep reading (and dropping) for
   * a moment, so a client still uploading reads our answer instead of a reset.
   */
  #shutdown(linger: boolean) {
    if (this.#phase === DEAD || this.#phase === LINGER) return;
    this.#phase = LINGER;
    this.#acc = this.#pending = null;
    this.#accLen = 0;
    const req = this.#req;
    if (req && !req.complete && !req.destroyed) req.destroy();
    this.#pausedBody = this.#pausedPipeline = false;
    const s = this.socket;
    s.end();
    if (linger) this.#resume();
    // The linger clock starts once our last byte is handed to the kernel.
    const arm = () => this.#setDeadline(T_LINGER, linger ? LINGER_MS : 1000);
    if (s.writableFinished) arm();
    else s.once("finish", arm);
  }

  /** A response that cannot complete: cut the connection. */
  abort(res: H1Response) {
    if (res === this.#res && this.#phase !== DEAD) this.socket.destroy();
  }

  /** Graceful stop: after the current response, or now when idle. */
  close() {
    this.#closeRequested = true;
    if (this.#phase === IDLE || this.#phase === HEAD) this.#shutdown(false);
  }

  #internal(e: unknown) {
    this.opts.onError?.(e);
    this.socket.destroy();
  }

  // --- one lazy timer per connection ---------------------------------------

  #setDeadline(kind: number, ms: number) {
    if (this.#phase === DEAD) return;
    const at = Date.now() + ms;
    this.#deadlineKind = kind;
    this.#deadline = at;
    if (this.#timer !== undefined && this.#timerAt <= at) return; // fires in time; re-checks then
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(this.#onTimer, ms);
  }

  #clearTimer() {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#deadlineKind = T_NONE;
  }

  #onTimer = () => {
    this.#timer = undefined;
    if (this.#deadlineKind === T_NONE || this.#phase === DEAD) return;
    const left = this.#deadline - Date.now();
    if (left > 0) {
      this.#timerAt = this.#deadline;
      this.#timer = setTimeout(this.#onTimer, left);
      return;
    }
    const kind = this.#deadlineKind;
    this.#deadlineKind = T_NONE;
    try {
      if (kind === T_IDLE && this.#phase === IDLE) this.#shutdown(false);
      else if (kind === T_HEADERS && this.#phase === HEAD) {
        this.#refuse(
          408,
          "request_timeout",
          `request head not complete within ${this.#headersMs} ms`,
        );
      } else if (kind === T_DISCARD && this.#phase === BUSY) this.socket.destroy();
      else if (kind === T_LINGER) this.socket.destroy();
    } catch (e) {
      this.#internal(e);
    }
  };
}

/**
 * Serve HTTP/1.1 requests on an already-connected duplex socket (e.g. a
 * `TLSSocket`) until it closes. `onRequest` is called once per request, in
 * order: the next one only after the previous response finished.
 *
 * @example
 * tlsServer.on("secureConnection", (s) => {
 *   const conn = serveHttp1(s, (req, res) => {
 *     res.writeHead(200, { "content-type": "text/plain" });
 *     res.end(`hello ${req.url}\n`);
 *   });
 *   shutdownHooks.add(() => conn.close());
 * });
 */
export function serveHttp1(
  socket: Duplex,
  onRequest: (req: H1Request, res: H1Response) => void,
  opts: H1ServerOptions = {},
): H1Connection {
  const conn = new Connection(socket, onRequest, opts);
  try {
    (socket as net.Socket).setNoDelay?.(true);
  } catch {
    // Not a TCP-backed socket: nothing to tune.
  }
  conn.start();
  return { close: () => conn.close() };
}
