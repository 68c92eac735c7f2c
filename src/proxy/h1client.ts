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

/** Something that can open a connection to one upstream (TCP or TLS). */
export interface Endpoint {
  /** Pool key: connections are reused only for the same key. */
  key: string;
  /** TLS endpoints signal readiness with `secureConnect`. */
  tls?: boolean;
  connect(): net.Socket;
}

/** Idle keep-alive connections, LIFO per endpoint. */
export class ConnectionPool {
  #free = new Map<string, net.Socket[]>();
  #size = 0;

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
  take(key: string): net.Socket | null {
    const list = this.#free.get(key);
    while (list && list.length > 0) {
      const s = list.pop()!;
      this.#size--;
      s.removeAllListeners("close");
      s.removeAllListeners("end");
      s.removeAllListeners("error");
      s.removeAllListeners("data");
      s.removeAllListeners("timeout");
      s.setTimeout(0);
      if (!s.destroyed && s.writable && s.readable) return s;
      s.destroy();
    }
    return null;
  }

  /** Return a connection after a complete exchange. */
  give(key: string, s: net.Socket): void {
    let list = this.#free.get(key);
    if (!list) this.#free.set(key, list = []);
    if (list.length >= this.maxFreePerKey || s.destroyed) {
      s.destroy();
      return;
    }
    s.removeAllListeners("data");
    s.removeAllListeners("end");
    s.removeAllListeners("close");
    s.removeAllListeners("error");
    s.removeAllListeners("timeout");
    s.resume();
    const drop = () => {
      const i = list!.indexOf(s);
      if (i !== -1) {
        list!.splice(i, 1);
        this.#size--;
      }
      s.destroy();
    };
    // An idle connection that speaks, ends or errors is gone.
    s.on("data", drop);
    s.on("end", drop);
    s.on("close", drop);
    s.on("error", drop);
    s.setTimeout(this.idleMs);
    s.on("timeout", drop);
    list.push(s);
    this.#size++;
  }

  /** Close every idle connection. */
  destroy(): void {
    for (const list of this.#free.values()) for (const s of list) s.destroy();
    this.#free.clear();
    this.#size = 0;
  }
}

/** How the request body is framed upstream. */
export type BodyFraming = "none" | "length" | "chunked";

/** What the caller learns about the exchange. */
export interface CallHandlers {
  head(head: ResponseHead): void;
  /** Response body data; return false to pause the upstream until `resume()`. */
  body(chunk: Uint8Array): boolean;
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
  /** Request body source (paused/resumed for backpressure); null when none. */
  body: Readable | null;
  /** Counts request body bytes as they are sent. */
  onBodyBytes?: (n: number) => void;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

const CHUNK_END = "\r\n";
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
  #socket: net.Socket | null = null;
  /** Pause/resume that also stops a TLS socket's reads (see flowControl). */
  #flow: FlowControl | null = null;
  #parser: ResponseParser;
  #finished = false;
  #requestSent = false;
  #retried = false;
  #reused = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;

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
        clearTimeout(this.#timer);
        this.on.head(h);
      },
      body: (c) => {
        if (!this.on.body(c)) this.#flow?.pause();
      },
      end: () => this.#complete(),
    });
  }

  /** Take a pooled connection or open one, and send the request. */
  start(): void {
    const pooled = this.#retried ? null : this.pool.take(this.endpoint.key);
    this.#reused = pooled !== null;
    const s = pooled ?? this.endpoint.connect();
    this.#socket = s;
    this.#flow = flowControl(s);
    // A pooled connection may have been released while paused.
    if (pooled) this.#flow.resume();
    if (!pooled) {
      s.setNoDelay(true);
      this.#connectTimer = setTimeout(
        () => this.#fail(timeoutError(`connect timeout after ${this.opts.connectTimeoutMs} ms`)),
        this.opts.connectTimeoutMs,
      );
      s.once(this.endpoint.tls ? "secureConnect" : "connect", () => {
        clearTimeout(this.#connectTimer);
      });
    }
    this.#timer = setTimeout(
      () =>
        this.#fail(timeoutError(`no response headers within ${this.opts.responseTimeoutMs} ms`)),
      this.opts.responseTimeoutMs,
    );
    s.on("data", (d: Uint8Array) => {
      if (this.#finished) return;
      try {
        this.#parser.push(d);
      } catch (e) {
        this.#fail(e as Error);
      }
    });
    s.on("end", () => {
      if (this.#finished) return;
      try {
        this.#parser.eof();
      } catch (e) {
        this.#closedEarly(e as Error);
      }
    });
    s.on("error", (e: Error) => this.#closedEarly(e));
    s.on("close", () => {
      if (!this.#finished) this.#closedEarly(new ParseError("connection closed"));
    });
    this.#send(s);
  }

  #send(s: net.Socket) {
    const { framing, body } = this.opts;
    // Header values are latin1 (as Node decodes them); UTF-8 would re-encode bytes 0x80-0xFF.
    s.write(this.opts.head, "latin1");
    if (framing === "none" || body === null) {
      this.#requestSent = true;
      return;
    }
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
    this.#flow?.resume();
  }

  /** Abort: destroy the connection, no callbacks, no retry. */
  abort(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#clearTimers();
    this.#socket?.destroy();
  }

  #clearTimers() {
    clearTimeout(this.#timer);
    clearTimeout(this.#connectTimer);
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
      this.#clearTimers();
      this.#socket?.removeAllListeners();
      this.#socket?.on("error", () => {});
      this.#socket?.destroy();
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
    this.#clearTimers();
    this.#socket?.destroy();
    this.on.error(e, this.#parser.head !== null);
  }

  #complete() {
    this.#clearTimers();
    this.#finished = true;
    this.on.end();
    this.#maybeRelease();
  }

  #released = false;
  #maybeRelease() {
    const s = this.#socket;
    if (!s || this.#released || !this.#parser.done || !this.#requestSent) return;
    this.#released = true;
    if (this.#parser.head?.keepAlive && !s.destroyed) this.pool.give(this.endpoint.key, s);
    else s.destroy();
  }
}
