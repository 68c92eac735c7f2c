/**
 * Our own HTTP/1.1 upstream client on raw `node:net` / `node:tls` sockets
 * with a keep-alive pool. Why not `node:http`'s client: see `h1parse.ts`
 * (Deno re-sends destroyed requests on reused sockets). Owning the client
 * also gives exact header forwarding, an abort that never retries, and one
 * implementation for plain and intercepted traffic.
 *
 * @module
 */
import type net from "node:net";
import type { Readable } from "node:stream";
import { ParseError, type ResponseHead, ResponseParser } from "./h1parse.ts";
import { type FlowControl, flowControl } from "./h1server.ts";
import { noteRead } from "./reclaim.ts";
import { Slots } from "../util/slots.ts";

/** Something that can open a connection to one upstream (TCP or TLS). */
export interface Endpoint {
  /** Pool key: connections are reused only for the same key. */
  key: string;
  /** TLS endpoints signal readiness with `secureConnect`. */
  tls?: boolean;
  connect(): net.Socket;
}

/** One armed deadline (its slot in {@link Deadlines}). */
interface Deadline {
  at: number;
  fire: () => void;
  slot: number;
}

/**
 * Deadlines checked by one coarse timer (every 100 ms) instead of a timer per
 * request: timers cost ~10% of the CPU of a proxied request in Deno (each
 * setTimeout/clearTimeout crosses into Rust). Timeouts fire up to 100 ms late.
 * Held in {@link Slots}, not a Map keyed by the call (one insert and one
 * delete per request: see util/slots.ts for what that does to V8's GC).
 */
class Deadlines {
  #armed = new Slots<Deadline>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Arm a deadline; give the returned one to {@link Deadlines.clear}. */
  set(ms: number, fire: () => void): Deadline {
    const d: Deadline = { at: performance.now() + ms, fire, slot: -1 };
    d.slot = this.#armed.add(d);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#sweep(), 100);
      Deno.unrefTimer(this.#timer as unknown as number);
    }
    return d;
  }

  /** Disarm `d` (nothing when it already fired or was cleared). */
  clear(d: Deadline | null): void {
    if (d !== null) this.#armed.delete(d.slot, d);
  }

  #sweep() {
    const now = performance.now();
    for (const d of this.#armed.values()) {
      if (d.at > now) continue;
      this.#armed.delete(d.slot, d);
      d.fire();
    }
    if (this.#armed.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

const deadlines = new Deadlines();

/**
 * One upstream connection. Its socket listeners are attached once and
 * dispatch to whoever owns it now (a call, or the pool while idle): adding
 * and removing listeners per request was measurable.
 */
export class Conn {
  /** The exchange using the connection, or null while it is idle in the pool. */
  owner: UpstreamCall | null = null;
  readonly flow: FlowControl;
  /** When it went idle (for the pool's idle timeout). */
  idleSince = 0;
  closed = false;

  constructor(readonly socket: net.Socket, readonly key: string, readonly pool: ConnectionPool) {
    this.flow = flowControl(socket);
    socket.on("data", (d: Uint8Array) => {
      noteRead(d);
      if (this.owner) this.owner.onData(d);
      else this.pool.drop(this); // an idle connection that speaks is gone
    });
    socket.on("end", () => this.owner ? this.owner.onEnd() : this.pool.drop(this));
    socket.on("error", (e: Error) => this.owner ? this.owner.onError(e) : this.pool.drop(this));
    socket.on("close", () => {
      this.closed = true;
      if (this.owner) this.owner.onClose();
      else this.pool.drop(this);
    });
  }

  get usable(): boolean {
    return !this.closed && !this.socket.destroyed && this.socket.writable &&
      this.socket.readable;
  }
}

/** Idle keep-alive connections, LIFO per endpoint. */
export class ConnectionPool {
  #free = new Map<string, Conn[]>();
  #size = 0;
  #sweeper: ReturnType<typeof setInterval> | undefined;

  /**
   * @param maxFreePerKey idle connections kept per upstream
   * @param idleMs idle time before a pooled connection is closed; below the
   *   5 s keep-alive timeout of Node servers, so we rarely reuse a connection
   *   the server is closing.
   */
  constructor(readonly maxFreePerKey = 64, readonly idleMs = 4000) {}

  /** Idle connections held. */
  get size(): number {
    return this.#size;
  }

  /** A live idle connection, or null. */
  take(key: string): Conn | null {
    const list = this.#free.get(key);
    while (list && list.length > 0) {
      const c = list.pop()!;
      this.#size--;
      if (c.usable) return c;
      c.socket.destroy();
    }
    return null;
  }

  /** Return a connection after a complete exchange. */
  give(c: Conn): void {
    c.owner = null;
    let list = this.#free.get(c.key);
    if (!list) this.#free.set(c.key, list = []);
    if (list.length >= this.maxFreePerKey || !c.usable) {
      c.socket.destroy();
      return;
    }
    // A connection released while paused must read again to notice a close.
    c.flow.resume();
    c.idleSince = performance.now();
    list.push(c);
    this.#size++;
    if (this.#sweeper === undefined) {
      this.#sweeper = setInterval(() => this.#sweep(), 1000);
      Deno.unrefTimer(this.#sweeper as unknown as number);
    }
  }

  /** Remove an idle connection (it closed, errored, or spoke out of turn). */
  drop(c: Conn): void {
    const list = this.#free.get(c.key);
    const i = list ? list.indexOf(c) : -1;
    if (i !== -1) {
      list!.splice(i, 1);
      this.#size--;
    }
    c.socket.destroy();
  }

  #sweep() {
    const cutoff = performance.now() - this.idleMs;
    for (const list of this.#free.values()) {
      // Oldest first: LIFO reuse leaves the oldest at the front.
      while (list.length > 0 && list[0].idleSince <= cutoff) {
        const c = list.shift()!;
        this.#size--;
        c.socket.destroy();
      }
    }
    if (this.#size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /** Close every idle connection. */
  destroy(): void {
    for (const list of this.#free.values()) for (const c of list) c.socket.destroy();
    this.#free.clear();
    this.#size = 0;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}

/** How the request body is framed upstream. */
export type BodyFraming = "none" | "length" | "chunked";

/** What the caller learns about the exchange. */
export interface CallHandlers {
  head(head: ResponseHead): void;
  /**
   * Response body data (`last`: it completes a body of known length, `end`
   * follows at once); return false to pause the upstream until `resume()`.
   */
  body(chunk: Uint8Array, last: boolean): boolean;
  end(): void;
  /** Any failure; `responded` tells whether a head was already delivered. */
  error(err: Error & { code?: string }, responded: boolean): void;
}

/** Options of one upstream call. */
export interface CallOptions {
  method: string;
  /** The request head: request line and headers, ending with an empty line. */
  head: string;
  framing: BodyFraming;
  /**
   * Request body: a stream (paused/resumed for backpressure), bytes already
   * in memory (framing "length"; sent in the same write as the head), or
   * null when none.
   */
  body: Readable | Uint8Array | null;
  /** Counts request body bytes as they are sent. */
  onBodyBytes?: (n: number) => void;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

const CHUNK_END = "\r\n";
const encoder = new TextEncoder();
// deno-lint-ignore no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * A request head as bytes. Header values are latin1 (as Node decodes them),
 * so bytes 0x80-0xFF must not be re-encoded as UTF-8; but Deno's latin1
 * `write` is a JS loop (7% of the CPU of a proxied request), so the usual
 * all-ASCII head goes through the native encoder.
 */
export function encodeHead(head: string): Uint8Array {
  if (!NON_ASCII.test(head)) return encoder.encode(head);
  const out = new Uint8Array(head.length);
  for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i) & 0xff;
  return out;
}
const LAST_CHUNK = "0\r\n\r\n";
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

function timeoutError(message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code: "UPSTREAM_TIMEOUT" });
}

/**
 * One request/response exchange with an upstream. Aborting it destroys the
 * connection and never re-sends anything; a request without a body that
 * meets a dead pooled connection is retried once on a fresh one.
 *
 * @example
 * const call = new UpstreamCall(pool, endpoint, opts, handlers);
 * call.start();
 */
export class UpstreamCall {
  #conn: Conn | null = null;
  #parser: ResponseParser;
  #finished = false;
  #requestSent = false;
  #retried = false;
  #reused = false;
  /** This call's armed deadline in {@link deadlines}, if any. */
  #deadline: Deadline | null = null;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly endpoint: Endpoint,
    private readonly opts: CallOptions,
    private readonly on: CallHandlers,
  ) {
    this.#parser = this.#newParser();
  }

  #newParser() {
    return new ResponseParser(this.opts.method, {
      head: (h) => {
        this.#disarm();
        this.on.head(h);
      },
      body: (c, last) => {
        if (!this.on.body(c, last)) this.#conn?.flow.pause();
      },
      end: () => this.#complete(),
    });
  }

  /** Take a pooled connection or open one, and send the request. */
  start(): void {
    let conn = this.#retried ? null : this.pool.take(this.endpoint.key);
    this.#reused = conn !== null;
    if (conn === null) {
      const s = this.endpoint.connect();
      s.setNoDelay(true);
      conn = new Conn(s, this.endpoint.key, this.pool);
      s.once(this.endpoint.tls ? "secureConnect" : "connect", () => {
        this.#arm(this.#responseLeft(), this.#responseTimeout);
      });
      this.#arm(
        this.opts.connectTimeoutMs,
        () => this.#fail(timeoutError(`connect timeout after ${this.opts.connectTimeoutMs} ms`)),
      );
    } else {
      conn.flow.resume();
      this.#arm(this.opts.responseTimeoutMs, this.#responseTimeout);
    }
    conn.owner = this;
    this.#conn = conn;
    this.#startedAt = performance.now();
    this.#send(conn.socket);
  }

  /** Arm this call's one deadline (replacing the one armed). */
  #arm(ms: number, fire: () => void) {
    deadlines.clear(this.#deadline);
    this.#deadline = deadlines.set(ms, fire);
  }

  #disarm() {
    deadlines.clear(this.#deadline);
    this.#deadline = null;
  }

  #startedAt = 0;
  #responseLeft() {
    return Math.max(0, this.opts.responseTimeoutMs - (performance.now() - this.#startedAt));
  }
  #responseTimeout = () =>
    this.#fail(timeoutError(`no response headers within ${this.opts.responseTimeoutMs} ms`));

  /** @internal Socket events, dispatched by the connection. */
  onData(d: Uint8Array): void {
    if (this.#finished) return;
    try {
      this.#parser.push(d);
    } catch (e) {
      this.#fail(e as Error);
    }
  }

  /** @internal */
  onEnd(): void {
    if (this.#finished) return;
    try {
      this.#parser.eof();
    } catch (e) {
      this.#closedEarly(e as Error);
    }
  }

  /** @internal */
  onError(e: Error): void {
    this.#closedEarly(e);
  }

  /** @internal */
  onClose(): void {
    if (!this.#finished) this.#closedEarly(new ParseError("connection closed"));
  }

  #send(s: net.Socket) {
    const { framing, body } = this.opts;
    const head = encodeHead(this.opts.head);
    if (framing === "none" || body === null) {
      s.write(head);
      this.#requestSent = true;
      return;
    }
    if (body instanceof Uint8Array) {
      // One write, one TLS record for a small request: the upstream sees the
      // whole request at once instead of a head and a body a tick apart.
      const all = new Uint8Array(head.length + body.length);
      all.set(head);
      all.set(body, head.length);
      s.write(all);
      this.opts.onBodyBytes?.(body.length);
      this.#requestSent = true;
      return;
    }
    s.write(head);
    const chunked = framing === "chunked";
    const onData = (c: Uint8Array) => {
      if (this.#finished && !this.#parser.done) return;
      this.opts.onBodyBytes?.(c.length);
      let ok: boolean;
      if (chunked) {
        if (c.length === 0) return;
        s.write(c.length.toString(16) + CHUNK_END);
        s.write(c);
        ok = s.write(CHUNK_END);
      } else ok = s.write(c);
      if (!ok) {
        body.pause();
        s.once("drain", () => body.resume());
      }
    };
    body.on("data", onData);
    body.once("end", () => {
      if (chunked && !s.destroyed) s.write(LAST_CHUNK);
      this.#requestSent = true;
      this.#maybeRelease();
    });
    body.resume();
  }

  /** Resume reading the response after `body()` returned false. */
  resume(): void {
    this.#conn?.flow.resume();
  }

  /** Abort: destroy the connection, no callbacks, no retry. */
  abort(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#disarm();
    this.#conn?.socket.destroy();
  }

  #closedEarly(e: Error) {
    if (this.#finished) return;
    // A pooled connection the server closed while idle: safe to retry only a
    // bodiless idempotent request that got no response byte yet.
    if (
      this.#reused && !this.#retried && !this.#parser.started &&
      IDEMPOTENT.has(this.opts.method) && this.opts.framing === "none"
    ) {
      this.#retried = true;
      this.#disarm();
      const old = this.#conn;
      if (old) {
        old.owner = null;
        old.socket.destroy();
      }
      this.#parser = this.#newParser();
      this.start();
      return;
    }
    const err = e as Error & { code?: string };
    if (!err.code && e instanceof ParseError && !this.#parser.started) {
      err.code = "ECONNRESET";
      err.message = "connection closed before the response";
    }
    this.#fail(err);
  }

  #fail(e: Error & { code?: string }) {
    if (this.#finished) return;
    this.#finished = true;
    this.#disarm();
    this.#conn?.socket.destroy();
    this.on.error(e, this.#parser.head !== null);
  }

  #complete() {
    this.#disarm();
    this.#finished = true;
    this.on.end();
    this.#maybeRelease();
  }

  #released = false;
  #maybeRelease() {
    const c = this.#conn;
    if (!c || this.#released || !this.#parser.done || !this.#requestSent) return;
    this.#released = true;
    if (this.#parser.head?.keepAlive && c.usable) this.pool.give(c);
    else {
      c.owner = null;
      c.socket.destroy();
    }
  }
}
