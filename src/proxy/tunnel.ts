/**
 * CONNECT tunnels that are not intercepted: after the host-level decision,
 * bytes flow both ways untouched, with backpressure (`pipe`).
 *
 * @module
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { classifyUpstreamError, rawAnswer, upstreamAnswer, upstreamReason } from "./reject.ts";
import type { Exchange } from "./exchange.ts";
import { noteReadsOf } from "./reclaim.ts";
import { type ForwardTarget, targetLabel } from "./forward.ts";
import { formatDuration } from "../util/duration.ts";

/** The row's `error` of a tunnel closed for being idle. */
export function idleReason(idleMs: number): string {
  return `idle for ${formatDuration(idleMs)}: closed by agentgate (limits.tunnel_idle)`;
}

/**
 * Close a tunnel's client socket after `idleMs` without a byte either way
 * (a socket's timeout counts reads and writes, and everything relayed passes
 * through the client socket), calling `onIdle` first.
 */
export function closeWhenIdle(client: Duplex, idleMs: number, onIdle: () => void): void {
  const s = client as Duplex & { setTimeout?(ms: number, cb?: () => void): unknown };
  s.setTimeout?.(idleMs, () => {
    onIdle();
    client.destroy();
  });
}

/**
 * Open a tunnel to the checked address of a client socket that sent CONNECT.
 * The audit row is written when the tunnel closes (with its byte counts); a
 * tunnel idle for `idleMs` is closed, and its row says so. With `answered`,
 * the client already has its `200` (agentgate read its first bytes before
 * choosing a tunnel): a failed connect then closes the client.
 */
export function openTunnel(
  client: Duplex,
  head: Uint8Array,
  to: Pick<ForwardTarget, "connectHost" | "port" | "name" | "namePort">,
  ex: Exchange,
  connectTimeoutMs: number,
  idleMs: number,
  answered = false,
): void {
  const [target, name] = targetLabel(to);
  const up = net.connect({ host: to.connectHost, port: to.port });
  let established = false;
  const timer = setTimeout(
    () =>
      up.destroy(
        Object.assign(new Error(`connect timeout after ${connectTimeoutMs} ms`), {
          code: "UPSTREAM_TIMEOUT",
        }),
      ),
    connectTimeoutMs,
  );

  const finish = (error: string | null) => {
    ex.bytesIn = up.bytesWritten;
    ex.bytesOut = up.bytesRead;
    ex.finish({ status: 200, error });
  };

  up.once("connect", () => {
    clearTimeout(timer);
    established = true;
    up.setNoDelay(true);
    if (!answered) client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length) up.write(head);
    client.pipe(up);
    up.pipe(client);
    noteReadsOf(up, client);
    closeWhenIdle(client, idleMs, () => {
      up.destroy();
      finish(idleReason(idleMs));
    });
  });
  up.on("error", (e) => {
    clearTimeout(timer);
    if (!established) {
      if (ex.done) return;
      const kind = classifyUpstreamError(e);
      const reason = upstreamReason(kind, target, e, name);
      const a = upstreamAnswer(ex.info.id, kind, reason);
      if (answered) client.destroy();
      else client.end(rawAnswer(a));
      ex.finish({ status: a.status, decision: "error", reason, error: `upstream ${kind}` });
      return;
    }
    client.destroy();
    finish(`upstream error: ${e.message}`);
  });
  client.on("error", () => {
    up.destroy();
    if (established) finish("client connection error");
    else ex.finish({ status: null, error: "client aborted" });
  });
  // The row is written once both sides are closed. A client that never
  // closes its half after the upstream closed is cut after a grace period.
  let upClosed = false;
  let clientClosed = false;
  let linger: ReturnType<typeof setTimeout> | undefined;
  up.on("close", () => {
    upClosed = true;
    clearTimeout(timer);
    if (!established) {
      if (!ex.done) {
        client.destroy();
        ex.finish({ status: null, error: "upstream closed before the tunnel opened" });
      }
      return;
    }
    if (clientClosed) finish(null);
    else {
      // pipe() has ended our side after flushing, but it also unpiped the
      // client, leaving it paused: its FIN would never be read and the
      // tunnel would linger (thousands of open sockets under s3b). Read and
      // drop whatever still comes, so the client's close is seen; cut it
      // after a short grace if it never closes.
      client.resume();
      // Usually pipe() has ended it already: end() again would build (and
      // drop) an ERR_STREAM_ALREADY_FINISHED with its stack, ~14 % of the
      // CPU of a new tunnel in s3b.
      if (!client.writableEnded) client.end();
      linger = setTimeout(() => client.destroy(), 2000);
    }
  });
  client.on("close", () => {
    clientClosed = true;
    clearTimeout(linger);
    if (!established) {
      up.destroy();
      if (!ex.done) ex.finish({ status: null, error: "client aborted" });
      return;
    }
    if (upClosed) finish(null);
    else up.destroy();
  });
  ex.abort = (why) => {
    up.destroy();
    client.destroy();
    if (established) finish(why);
    else ex.finish({ status: null, error: why });
  };
}
