/**
 * Message framing as an attacker sends it, over raw sockets: repeated
 * Content-Length values (RFC 9110 §8.6) in requests and in upstream
 * responses, and malformed chunked request bodies. Agreeing values are
 * collapsed to one before they go on, disagreeing ones are refused, and a
 * broken chunked body is answered 400 (with its audit row) instead of a cut
 * connection, while the upstream never sees a complete request.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { auditRows, startProxy, waitForRows } from "./helpers.ts";

/** A raw origin: records what each connection sent, answers with `reply(head)`. */
async function rawOrigin(reply: (request: string) => string | null) {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    let text = "";
    const i = received.push("") - 1;
    s.on("data", (d: Uint8Array) => {
      text += new TextDecoder("latin1").decode(d);
      received[i] = text;
      const answer = reply(text);
      if (answer !== null) s.end(answer);
    });
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    received,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Send raw bytes to the proxy; resolve with everything it sent until it closed. */
function exchange(port: number, bytes: string, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let text = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close within ${ms} ms; got ${JSON.stringify(text)}`));
    }, ms);
    s.on("connect", () => s.write(bytes));
    s.on("data", (d: Uint8Array) => (text += new TextDecoder("latin1").decode(d)));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

const headOf = (text: string) => text.slice(0, text.indexOf("\r\n\r\n"));
const bodyOf = (text: string) => text.slice(text.indexOf("\r\n\r\n") + 4);
const lengthLines = (head: string) => head.split("\r\n").filter((l) => /^content-length:/i.test(l));

/** The request has arrived whole when its head ended and `n` body bytes followed. */
const complete = (text: string, n: number) => text.includes("\r\n\r\n") && bodyOf(text).length >= n;

Deno.test("framing: repeated Content-Length values are collapsed or refused, both ways", async () => {
  const responses: Record<string, string> = {
    "/cl-list": "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    "/cl-lines": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
    "/cl-conflict": "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!",
    "/req": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
  };
  const origin = await rawOrigin((text) => {
    const path = /^\S+ (\S+)/.exec(text)?.[1] ?? "";
    const n = /^content-length: *(\d+)/im.exec(headOf(text))?.[1];
    return complete(text, Number(n ?? 0)) ? responses[path] ?? null : null;
  });
  const proxy = await startProxy();
  const host = `127.0.0.1:${origin.port}`;
  const request = (path: string, lines: string, body = "") =>
    exchange(
      proxy.port,
      `POST http://${host}${path} HTTP/1.1\r\nHost: ${host}\r\n${lines}Connection: close\r\n\r\n${body}`,
    );
  try {
    // Requests: one agreed value reaches the origin, once.
    for (
      const lines of ["Content-Length: 3, 3\r\n", "Content-Length: 3\r\nContent-Length: 3\r\n"]
    ) {
      const before = origin.received.length;
      const answer = await request("/req", lines, "abc");
      assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/, answer);
      assert.equal(bodyOf(answer), "ok");
      const got = origin.received[before];
      assert.deepEqual(lengthLines(headOf(got)), ["Content-Length: 3"], got);
      assert.equal(bodyOf(got), "abc");
    }
    // Disagreeing values: 400 from the proxy, nothing upstream.
    const before = origin.received.length;
    for (
      const lines of ["Content-Length: 3, 4\r\n", "Content-Length: 3\r\nContent-Length: 4\r\n"]
    ) {
      const answer = await request("/req", lines, "abcd");
      assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/, answer);
      assert.deepEqual(JSON.parse(bodyOf(answer)), {
        error: "bad_request",
        reason: "conflicting Content-Length values",
      });
    }
    assert.equal(origin.received.length, before, "a conflicting request never goes upstream");

    // Responses: the client gets one agreed value.
    for (const path of ["/cl-list", "/cl-lines"]) {
      const answer = await request(path, "Content-Length: 0\r\n");
      assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/, answer);
      assert.deepEqual(lengthLines(headOf(answer)), ["Content-Length: 2"], answer);
      assert.equal(bodyOf(answer), "ok");
    }
    // …and a 502 when the upstream's values disagree.
    const bad = await request("/cl-conflict", "Content-Length: 0\r\n");
    assert.match(bad, /^HTTP\/1\.1 502 Bad Gateway\r\n/, bad);
    assert.match(JSON.parse(bodyOf(bad)).reason, /conflicting Content-Length values/);
    const rows = await waitForRows(proxy.auditPath, 1, "path = '/cl-conflict'");
    assert.deepEqual([rows[0].status, rows[0].decision], [502, "error"]);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});

Deno.test("framing: a malformed chunked request body is answered 400, not cut", async () => {
  const origin = await rawOrigin((text) =>
    text.includes("\r\n0\r\n\r\n") ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" : null
  );
  const proxy = await startProxy({
    config: `version: 1
default: log
rules:
  - name: reads-body
    match: "127.0.0.1:*/inspect/**"
    when: body.ok == true
    action: allow
  # The test origin is on loopback: a rule naming its address opens it (the address guard).
  - { name: origin, match: 127.0.0.1, action: log }
audit: { path: ./audit.db }
`,
  });
  const host = `127.0.0.1:${origin.port}`;
  const send = (path: string, body: string) =>
    exchange(
      proxy.port,
      `POST http://${host}${path} HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n` +
        `Content-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
    );
  try {
    const cases: [string, string, string][] = [
      // Streamed upstream while it arrives (the rule does not read it).
      ["/stream/a", "3\r\nabc\r\nzz\r\n", 'invalid chunk size line "zz"'],
      ["/stream/b", "3\r\nabcXY", "missing CRLF after chunk data"],
      // Buffered for a condition on the body.
      ["/inspect/a", 'b\r\n{"ok":true}\r\n-1\r\n', 'invalid chunk size line "-1"'],
      ["/inspect/b", "fffffffffffffffff\r\n", 'invalid chunk size line "fffffffffffffffff"'],
    ];
    for (const [path, body, why] of cases) {
      const answer = await send(path, body);
      assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/, `${path}: ${answer}`);
      assert.match(headOf(answer), /\r\nConnection: close(\r\n|$)/);
      assert.deepEqual(JSON.parse(bodyOf(answer)), {
        error: "bad_request",
        reason: `malformed request body: ${why}`,
      });
      const [row] = await waitForRows(proxy.auditPath, 1, `path = '${path}'`);
      assert.deepEqual(
        [row.status, row.decision, row.reason, row.error],
        [400, "error", `malformed request body: ${why}`, `malformed request body: ${why}`],
        path,
      );
    }
    // The origin never saw a complete request (no last chunk went out).
    assert.ok(origin.received.every((t) => !t.includes("\r\n0\r\n\r\n")), origin.received.join());
    // A well-formed one still goes through.
    const ok = await send("/stream/ok", "3\r\nabc\r\n0\r\n\r\n");
    assert.match(ok, /^HTTP\/1\.1 200 OK\r\n/, ok);
    assert.equal(auditRows(proxy.auditPath, "status = 400").length, 4);
    assert.equal(await proxy.stop(), 0);
  } finally {
    await proxy.dispose();
    await origin.close();
  }
});
