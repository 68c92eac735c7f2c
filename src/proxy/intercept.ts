/**
 * Terminating TLS for intercepted CONNECT tunnels. The CONNECT socket is fed
 * to a `tls.Server` with `emit("connection")` — reliable in Deno, unlike
 * wrapping it with `new tls.TLSSocket(socket, { isServer: true })`, which
 * failed 15–27% of handshakes (issue 4's measurements). Requests inside are
 * then served by our own HTTP/1.1 layer (`h1server.ts`): Deno's `node:http`
 * servers fed a socket that way close the connection after every response.
 *
 * One `tls.Server` per CONNECT target (an LRU): its default certificate is
 * the target's leaf, so a client that sends no SNI (an IP target) still gets
 * the right name; clients that send SNI get a leaf for it.
 *
 * @module
 */
import tls from "node:tls";
import type net from "node:net";
import type { LeafStore } from "../tls/store.ts";

/** What happens to a terminated connection, by the context its CONNECT carried. */
export interface InterceptHandlers<C> {
  /** The handshake completed: serve requests on `socket`. */
  secure(socket: tls.TLSSocket, ctx: C): void;
  /** The client gave up during the handshake (e.g. it does not trust our CA). */
  handshakeError(err: Error & { code?: string }, ctx: C): void;
}

const MAX_SERVERS = 1000;

/**
 * Accepts CONNECT sockets for interception.
 *
 * @example
 * const interceptor = new Interceptor(leafStore, { secure: serve, handshakeError: record });
 * await interceptor.accept(socket, head, "api.openai.com", ctx);
 */
export class Interceptor<C> {
  #servers = new Map<string, tls.Server>();
  #ctx = new WeakMap<object, C>();

  constructor(private readonly leaves: LeafStore, private readonly on: InterceptHandlers<C>) {}

  /**
   * Issue (or reuse) the target's leaf, answer 200 to the CONNECT, and start
   * the TLS handshake on the socket. Rejects when no leaf can be issued (the
   * caller answers the CONNECT with an error instead).
   */
  async accept(client: net.Socket, head: Uint8Array, host: string, ctx: C): Promise<void> {
    const server = await this.#serverFor(host);
    this.#ctx.set(client, ctx);
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length) client.unshift(head);
    server.emit("connection", client);
  }

  async #serverFor(host: string): Promise<tls.Server> {
    const hit = this.#servers.get(host);
    if (hit) {
      this.#servers.delete(host);
      this.#servers.set(host, hit);
      return hit;
    }
    const leaf = await this.leaves.get(host);
    const server = tls.createServer({
      key: leaf.keyPem,
      cert: leaf.chainPem,
      SNICallback: this.leaves.sniCallback,
      ALPNProtocols: ["http/1.1"],
    });
    // The TLS socket wraps the CONNECT socket (`_parent`): that is where the context is.
    const ctxOf = (s: tls.TLSSocket) =>
      this.#ctx.get((s as unknown as { _parent: object })._parent);
    server.on("secureConnection", (s: tls.TLSSocket) => {
      const ctx = ctxOf(s);
      if (ctx === undefined) return void s.destroy();
      this.on.secure(s, ctx);
    });
    server.on("tlsClientError", (err: Error, s: tls.TLSSocket) => {
      const ctx = ctxOf(s);
      if (ctx !== undefined) this.on.handshakeError(err, ctx);
      s.destroy();
    });
    if (this.#servers.size >= MAX_SERVERS) {
      const oldest = this.#servers.keys().next().value!;
      this.#servers.delete(oldest);
    }
    this.#servers.set(host, server);
    return server;
  }
}

/** The reason recorded when a client aborts the handshake with our leaf. */
export function handshakeReason(err: Error & { code?: string }): string {
  const text = `${err.code ?? ""} ${err.message}`;
  if (
    /unknown[_ ]?ca|bad[_ ]?certificate|certificate[_ ]?unknown|UnknownCA|BadCertificate/i.test(
      text,
    )
  ) {
    return "client rejected the agentgate CA";
  }
  return `TLS handshake with the client failed: ${err.message}`;
}
