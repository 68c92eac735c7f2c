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
   * Issue (or reuse) the target's leaf, answer 200 to the CONNECT (unless
   * `answered`: agentgate already did, to read the client's first bytes),
   * and start the TLS handshake on the socket. Rejects when no leaf can be
   * issued (the caller answers the CONNECT with an error instead).
   */
  async accept(
    client: net.Socket,
    head: Uint8Array,
    host: string,
    ctx: C,
    answered = false,
  ): Promise<void> {
    const server = await this.#serverFor(host);
    this.#ctx.set(client, ctx);
    if (!answered) client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
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

/** The reason recorded for a client that does not trust the agentgate CA. */
export const CA_REJECTED = "client rejected the agentgate CA";

/**
 * Within this long after the handshake, a client that closes without having
 * sent a byte inside the TLS is taken to have rejected our certificate: Node
 * (npm, undici, the OpenAI SDK) verifies only after the handshake and then
 * closes without an alert, within milliseconds. A client that opened a
 * connection it then did not use (a pool, a cancelled call) keeps it open
 * far longer than this before closing it.
 */
export const SILENT_REJECT_MS = 1000;

/**
 * The reason recorded when a client's handshake with our leaf fails.
 *
 * - A TLS alert about the certificate (`unknown_ca`, `bad_certificate`,
 *   `certificate_unknown`: OpenSSL, Python, Go, rustls, Java): the client
 *   rejected the agentgate CA.
 * - The connection closed mid-handshake without an alert after the client
 *   had sent its ClientHello (`clientSpoke`): Node over TLS 1.3 closes like
 *   this once it has seen our certificate, so it is recorded as a rejection
 *   too. (A client killed in those milliseconds would be counted the same.)
 * - Closed before the client sent anything: it never saw our certificate.
 *
 * @example
 * handshakeReason(Object.assign(new Error("received fatal alert: UnknownCA"), { code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA" }), true)
 * // "client rejected the agentgate CA"
 */
export function handshakeReason(err: Error & { code?: string }, clientSpoke = true): string {
  const text = `${err.code ?? ""} ${err.message}`;
  if (
    /unknown[_ ]?ca|bad[_ ]?certificate|certificate[_ ]?unknown|UnknownCA|BadCertificate/i.test(
      text,
    )
  ) {
    return CA_REJECTED;
  }
  if (closedWithoutAlert(err)) {
    return clientSpoke ? CA_REJECTED : "client closed the tunnel before the TLS handshake began";
  }
  return `TLS handshake with the client failed: ${err.message}`;
}

/** Whether a handshake error is the peer going away (EOF, reset) rather than an alert or bad bytes. */
export function closedWithoutAlert(err: Error & { code?: string }): boolean {
  return err.code === "ECONNRESET" || err.code === "EPIPE" ||
    /socket hang up|unexpected eof|peer closed|connection reset/i.test(err.message);
}
