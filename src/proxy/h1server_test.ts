import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import {
  flowControl,
  type H1Connection,
  type H1Request,
  type H1Response,
  type H1ServerOptions,
  serveHttp1,
} from "./h1server.ts";

type Handler = (req: H1Request, res: H1Response) => void;

/** A net.Server whose connections go to serveHttp1; every socket is closed at the end. */
async function withServer(
  handler: Handler,
  fn: (port: number, conns: H1Connection[]) => Promise<void>,
  opts: H1ServerOptions = {},
) {
  const sockets = new Set<net.Socket>();
  const conns: H1Connection[] = [];
  const errors: unknown[] = [];
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    conns.push(serveHttp1(s, handler, { onError: (e) => errors.push(e), ...opts }));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  try {
    await fn(port, conns);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => srv.close(r));
  }
  assert.deepEqual(errors, []);
}

/** A raw client socket that collects everything it receives. */
class Raw {
  data = Buffer.alloc(0);
  ended = false;
  closed: Promise<void>;
  #waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.#wake();
    });
    socket.on("end", () => {
      this.ended = true;
      this.#wake();
    });
    socket.on("error", () => {});
    this.closed = new Promise((r) =>
      socket.on("close", () => {
        this.ended = true;
        this.#wake();
        r();
      })
    );
  }

  static connect(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1", () => resolve(new Raw(s)));
      s.once("error", reject);
    });
  }

  #wake() {
    for (const w of this.#waiters.splice(0)) w();
  }

  get text(): string {
    return this.data.toString("latin1");
  }

  write(s: string | Uint8Array): Promise<void> {
    return new Promise((r) => this.socket.write(s, () => r()));
  }

  /** Wait until `pred(text)` holds (or the connection ended); bounded in time. */
  async until(pred: (text: string) => boolean, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!pred(this.text)) {
      if (this.ended) {
        throw new Error(`connection ended; got ${JSON.stringify(this.text.slice(0, 300))}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(this.text.slice(0, 300))}`);
      let t: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        t = setTimeout(r, left);
      });
      clearTimeout(t);
    }
    return this.text;
  }

  /** Wait for the server to close the connection; returns all it sent. */
  async untilEnd(ms = 5000): Promise<string> {
    let t: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, rej) => {
      t = setTimeout(
        () => rej(new Error(`not closed; got ${JSON.stringify(this.text.slice(0, 300))}`)),
        ms,
      );
    });
    try {
      while (!this.ended) {
        await Promise.race([new Promise<void>((r) => this.#waiters.push(r)), timeout]);
      }
    } finally {
      clearTimeout(t);
    }
    return this.text;
  }

  close() {
    this.socket.destroy();
  }
}

/** Responses in `text` with the Date value masked. */
function masked(text: string): string {
  return text.replace(/\r\nDate: [^\r]+/g, "\r\nDate: X");
}

/** Count complete responses (heads) in a raw transcript. */
function heads(text: string): string[] {
  return text.match(/HTTP\/1\.1 \d{3} [^\r]*\r\n/g) ?? [];
}

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("curl", {
    args: ["--silent", "--show-error", "--max-time", "30", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

function readAll(req: H1Request): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Hash a file in pieces (reading it whole would itself cost the memory we measure). */
async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  const f = await Deno.open(path);
  try {
    const buf = new Uint8Array(1 << 20);
    for (let n = await f.read(buf); n !== null; n = await f.read(buf)) h.update(buf.subarray(0, n));
  } finally {
    f.close();
  }
  return h.digest("hex");
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** A handler with a few routes used by most tests. */
const routes: Handler = (req, res) => {
  const url = req.url;
  if (url.startsWith("/hello")) {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`hello ${req.method} ${url}\n`);
  } else if (url === "/echo") {
    // Streams the body back as it arrives (chunked): backpressure via pipe.
    res.writeHead(200, { "content-type": "application/octet-stream" });
    req.pipe(res);
  } else if (url === "/count") {
    readAll(req).then((b) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`${b.length} ${sha256(b)}`);
    });
  } else if (url === "/headers") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ headers: req.headers, raw: req.rawHeaders, v: req.httpVersion }));
  } else {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  }
};

Deno.test("h1server: curl keep-alive, POST, chunked upload, HTTP/1.0 and HEAD", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/up.bin`;
    const bytes = crypto.getRandomValues(new Uint8Array(65536));
    const payload = Buffer.concat(Array.from({ length: 20 }, () => bytes)); // 1.25 MiB
    await Deno.writeFile(file, payload);
    await withServer(routes, async (port) => {
      const base = `http://127.0.0.1:${port}`;
      const ka = await curl(["-v", `${base}/hello/a`, `${base}/hello/b?x=1`]);
      assert.equal(ka.code, 0, ka.stderr);
      assert.equal(ka.stdout, "hello GET /hello/a\nhello GET /hello/b?x=1\n");
      assert.match(ka.stderr, /Re-using existing connection/);
      assert.match(
        ka.stderr,
        /< HTTP\/1.1 200 OK\r?\n< content-type: text\/plain\r?\n< Content-Length: 19\r?\n< Date: /,
      );

      const post = await curl(["-d", "a=1&b=2", `${base}/count`]);
      assert.equal(post.stdout, `7 ${sha256(new TextEncoder().encode("a=1&b=2"))}`);

      const chunked = await curl([
        "-v",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        `@${file}`,
        `${base}/count`,
      ]);
      assert.match(chunked.stderr, /> Transfer-Encoding: chunked/);
      assert.equal(chunked.stdout, `${payload.length} ${sha256(payload)}`);

      const h10 = await curl(["-i", "--http1.0", `${base}/hello/old`]);
      assert.equal(
        masked(h10.stdout),
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n" +
          "Date: X\r\n\r\nhello GET /hello/old\n",
      );

      const head = await curl(["-I", `${base}/hello/h`]);
      assert.equal(
        masked(head.stdout),
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 20\r\nDate: X\r\n\r\n",
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h1server: Deno fetch with a streamed request body, echoed chunked", async () => {
  await withServer(routes, async (port) => {
    const client = Deno.createHttpClient({ http2: false });
    try {
      const parts = ["one ", "two ", "three"];
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          const p = parts.shift();
          if (p === undefined) return c.close();
          await new Promise((r) => setTimeout(r, 10));
          c.enqueue(new TextEncoder().encode(p));
        },
      });
      const r = await fetch(`http://127.0.0.1:${port}/echo`, {
        method: "POST",
        body,
        client,
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("transfer-encoding"), "chunked");
      assert.equal(await r.text(), "one two three");
      const again = await fetch(`http://127.0.0.1:${port}/hello/x`, { client });
      assert.equal(await again.text(), "hello GET /hello/x\n");
    } finally {
      client.close();
    }
  });
});

Deno.test("h1server: pipelined requests are answered in order, exact bytes", async () => {
  const order: string[] = [];
  const handler: Handler = (req, res) => {
    order.push(req.url);
    // The first answer is slow: the others must wait for it.
    const delay = req.url === "/1" ? 50 : 0;
    setTimeout(() => {
      if (req.url === "/2") {
        res.writeHead(201, { "x-n": "2" });
        res.write("two");
        res.end();
      } else {
        res.writeHead(200, { "x-n": req.url.slice(1) });
        res.end(req.url);
      }
    }, delay);
  };
  await withServer(handler, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write(
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
          "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
          "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
      );
      const text = await c.until((t) => heads(t).length === 3 && t.endsWith("/3"));
      assert.equal(
        masked(text),
        "HTTP/1.1 200 OK\r\nx-n: 1\r\nContent-Length: 2\r\nDate: X\r\n\r\n/1" +
          "HTTP/1.1 201 Created\r\nx-n: 2\r\nTransfer-Encoding: chunked\r\nDate: X\r\n\r\n3\r\ntwo\r\n0\r\n\r\n" +
          "HTTP/1.1 200 OK\r\nx-n: 3\r\nContent-Length: 2\r\nDate: X\r\n\r\n/3",
      );
      assert.deepEqual(order, ["/1", "/2", "/3"]);
    } finally {
      c.close();
    }
  });
});

Deno.test("h1server: a request split byte by byte", async () => {
  let seen: H1Request | null = null;
  let body = "";
  await withServer((req, res) => {
    seen = req;
    readAll(req).then((b) => {
      body = b.toString();
      res.writeHead(200, { "content-length": "2" });
      res.end("ok");
    });
  }, async (port) => {
    const c = await Raw.connect(port);
    try {
      const msg = "POST /up?x=1 HTTP/1.1\r\nHost: h.test\r\nX-Multi: a\r\nx-multi: b\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
      for (const ch of msg) {
        c.socket.write(ch);
        await new Promise((r) => setTimeout(r, 1));
      }
      const text = await c.until((t) => t.endsWith("ok"));
      assert.match(text, /^HTTP\/1.1 200 OK\r\ncontent-length: 2\r\n/);
      const req = seen! as H1Request;
      assert.equal(req.method, "POST");
      assert.equal(req.url, "/up?x=1");
      assert.equal(req.httpVersion, "1.1");
      assert.equal(req.headers["x-multi"], "a, b");
      assert.deepEqual(req.rawHeaders.slice(0, 6), [
        "Host",
        "h.test",
        "X-Multi",
        "a",
        "x-multi",
        "b",
      ]);
      assert.equal(body, "abcde");
      assert.equal(req.readableEnded, true);
      assert.equal(req.socket.remoteAddress, "127.0.0.1");
    } finally {
      c.close();
    }
  });
});

Deno.test("h1server: headers like Node's IncomingMessage", async () => {
  await withServer(routes, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write(
        "GET /headers HTTP/1.1\r\nHost: a\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nCookie: x=1\r\n" +
          "Cookie: y=2\r\nAccept: a\r\nAccept: b\r\nUser-Agent: one\r\nUser-Agent: two\r\n" +
          "Constructor: c\r\nX-Sp:   padded \t\r\n\r\n",
      );
      const text = await c.until((t) => t.endsWith("}"));
      const json = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
      assert.deepEqual(json.headers, {
        host: "a",
        "set-cookie": ["a=1", "b=2"],
        cookie: "x=1; y=2",
        accept: "a, b",
        "user-agent": "one",
        constructor: "c",
        "x-sp": "padded",
      });
      assert.equal(json.raw.length, 22);
      assert.equal(json.v, "1.1");
    } finally {
      c.close();
    }
  });
});

Deno.test("h1server: bad requests get 400/431/501/505 with Connection: close", async () => {
  let called = 0;
  const cases: [string, number, RegExp][] = [
    ["GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, /invalid request line/],
    ["GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, /header line without colon/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", 400, /obsolete header line folding/],
    ["GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, /invalid header name/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, /invalid value of header/],
    [
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      400,
      /both Transfer-Encoding and Content-Length/,
    ],
    [
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      400,
      /conflicting Content-Length values/,
    ],
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, /invalid Content-Length/],
    [
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
      501,
      /transfer coding "gzip"/,
    ],
    [
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      501,
      /transfer coding "gzip"/,
    ],
    ["GET / HTTP/1.1\r\n\r\n", 400, /missing Host header/],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, /more than one Host header/],
    ["GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, /HTTP version "2.0"/],
    [
      "GET / HTTP/1.1\r\nHost: a\r\nX: " + "a".repeat(70_000) + "\r\n\r\n",
      431,
      /larger than 65536/,
    ],
  ];
  await withServer(() => called++, async (port) => {
    for (const [req, status, reason] of cases) {
      const c = await Raw.connect(port);
      try {
        c.socket.write(req);
        const text = await c.untilEnd();
        const statusLine = text.slice(0, text.indexOf("\r\n"));
        assert.match(statusLine, new RegExp(`^HTTP/1.1 ${status} `), req.slice(0, 60));
        assert.match(text, /\r\nConnection: close\r\n/);
        const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
        assert.match(body.reason, reason);
        assert.ok(
          [
            "bad_request",
            "not_implemented",
            "http_version_not_supported",
            "request_header_fields_too_large",
          ].includes(body.error),
        );
      } finally {
        c.close();
      }
    }
  });
  assert.equal(called, 0);
});

Deno.test("h1server: a broken chunk before the answer gets 400; after the head, a cut", async () => {
  // Before the handler answered: 400 with the reason, the response marked
  // `refused` and destroyed, the request body errored (issue 20: not a cut).
  let err: Error | null = null;
  let closed: boolean | null = null;
  let refused: unknown = null;
  await withServer((req, res) => {
    req.on("error", (e) => (err = e));
    req.resume();
    res.on("close", () => {
      closed = res.writableFinished;
      refused = res.refused;
    });
  }, async (port) => {
    const c = await Raw.connect(port);
    try {
      c.socket.write(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
      );
      const text = await c.untilEnd();
      assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(text, /\r\nConnection: close\r\n/);
      assert.deepEqual(JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4)), {
        error: "bad_request",
        reason: 'malformed request body: invalid chunk size line "zz"',
      });
      await new Promise((r) => setTimeout(r, 20));
      assert.match(String((err as Error | null)?.message), /invalid chunk size line "zz"/);
      assert.equal(closed, false);
      assert.deepEqual(refused, {
        status: 400,
        reason: 'malformed request body: invalid chunk size line "zz"',
      });
    } finally {
      c.close();
    }
  });
  // The head already went out: nothing honest is left but cutting the connection.
  err = null;
  closed = null;
  await withServer((req, res) => {
    req.on("error", (e) => (err = e));
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("streaming");
    req.resume();
    res.on("close", () => (closed = res.writableFinished));
  }, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
      await c.until((t) => t.includes("streaming"));
      c.socket.write("zz\r\n");
      const text = await c.untilEnd();
      assert.ok(!text.includes("400"), text);
      await new Promise((r) => setTimeout(r, 20));
      assert.match(String((err as Error | null)?.message), /invalid chunk size line "zz"/);
      assert.equal(closed, false);
    } finally {
      c.close();
    }
  });
});

Deno.test("h1server: Expect: 100-continue with writeContinue", async () => {
  await withServer((req, res) => {
    assert.equal(req.headers.expect, "100-continue");
    res.writeContinue();
    res.writeContinue(); // once only
    readAll(req).then((b) => {
      res.writeHead(200, { "content-length": String(b.length) });
      res.end(b);
    });
  }, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write(
        "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
      );
      assert.equal(await c.until((t) => t.endsWith("\r\n\r\n")), "HTTP/1.1 100 Continue\r\n\r\n");
      await c.write("data");
      const text = await c.until((t) => t.endsWith("data"));
      assert.match(
        text,
        /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 OK\r\ncontent-length: 4\r\n/,
      );
    } finally {
      c.close();
    }
  });
  // Without writeContinue, reading the body sends it (as Go does); curl's large uploads use Expect.
  await withServer(routes, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write(
        "POST /count HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
      );
      await c.until((t) => t === "HTTP/1.1 100 Continue\r\n\r\n");
      await c.write("hi");
      await c.until((t) => t.includes(`2 ${sha256(new TextEncoder().encode("hi"))}`));
    } finally {
      c.close();
    }
  });
});

Deno.test("h1server: an early answer while the body is still arriving closes the connection", async () => {
  let closeSeen: boolean | null = null;
  await withServer((req, res) => {
    res.on("close", () => (closeSeen = res.writableFinished));
    if (req.url === "/small") {
      // Not read, small and complete: drained, the connection stays.
      res.writeHead(403, { "content-type": "text/plain" });
      res.end("no");
      return;
    }
    res.writeHead(403, { "content-type": "text/plain" });
    res.end("denied");
  }, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write(
        "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n" + "x".repeat(1000),
      );
      const text = await c.untilEnd();
      assert.equal(
        masked(text),
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\nDate: X\r\n\r\ndenied",
      );
      assert.equal(closeSeen, true);
    } finally {
      c.close();
    }
    const k = await Raw.connect(port);
    try {
      await k.write("POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
      await k.until((t) => t.endsWith("no"));
      assert.doesNotMatch(k.text, /Connection: close/);
      // The rest of the unread body arrives late: dropped, then the next request is served.
      await k.write("abcdeGET /small HTTP/1.1\r\nHost: a\r\n\r\n");
      await k.until((t) => heads(t).length === 2 && t.endsWith("no"));
    } finally {
      k.close();
    }
  });
});

Deno.test("h1server: response framing rules", async () => {
  const handler: Handler = (req, res) => {
    switch (req.url) {
      case "/204":
        res.writeHead(204, { "content-length": "0", "x-a": "1" });
        res.end();
        return;
      case "/304":
        res.writeHead(304, { etag: '"e"' });
        res.end("ignored");
        return;
      case "/implicit":
        res.statusCode = 202;
        res.end("implicit");
        return;
      case "/empty":
        res.writeHead(200, "Fine", { "x-b": ["1", "2"] });
        res.end();
        return;
      case "/close":
        res.writeHead(200, { connection: "close", "content-length": "1" });
        res.end("c");
        return;
      case "/over":
        res.writeHead(200, { "content-length": "2" });
        res.write("abc");
        return;
      case "/under":
        res.writeHead(200, { "content-length": "5" });
        res.end("ab");
        return;
      case "/stream":
        res.writeHead(200);
        res.write("a");
        setTimeout(() => res.end("b"), 5);
        return;
    }
  };
  await withServer(handler, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write(
        "GET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\n" +
          "GET /implicit HTTP/1.1\r\nHost: a\r\n\r\nGET /empty HTTP/1.1\r\nHost: a\r\n\r\n" +
          "GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /close HTTP/1.1\r\nHost: a\r\n\r\n",
      );
      const text = await c.untilEnd();
      assert.equal(
        masked(text),
        "HTTP/1.1 204 No Content\r\nx-a: 1\r\nDate: X\r\n\r\n" +
          'HTTP/1.1 304 Not Modified\r\netag: "e"\r\nDate: X\r\n\r\n' +
          "HTTP/1.1 202 Accepted\r\nContent-Length: 8\r\nDate: X\r\n\r\nimplicit" +
          "HTTP/1.1 200 Fine\r\nx-b: 1\r\nx-b: 2\r\nContent-Length: 0\r\nDate: X\r\n\r\n" +
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: X\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n" +
          "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nConnection: close\r\nDate: X\r\n\r\nc",
      );
    } finally {
      c.close();
    }
    // More than announced, or fewer: the connection is cut.
    for (const path of ["/over", "/under"]) {
      const d = await Raw.connect(port);
      try {
        await d.write(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
        const t = await d.untilEnd();
        assert.ok(!t.endsWith("abc"), t);
      } finally {
        d.close();
      }
    }
  });
  // HTTP/1.0: keep-alive only when asked and only with a known length.
  await withServer(handler, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write("GET /implicit HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      await c.until((t) => t.endsWith("implicit"));
      assert.match(c.text, /\r\nConnection: keep-alive\r\n/);
      await c.write("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      const t = await c.untilEnd();
      assert.match(masked(t), /HTTP\/1.1 200 OK\r\nConnection: close\r\nDate: X\r\n\r\nab$/);
    } finally {
      c.close();
    }
  });
});

Deno.test("h1server: invalid response headers throw in writeHead", async () => {
  await withServer((_req, res) => {
    assert.throws(() => res.writeHead(200, { "x-a": "b\r\nInjected: 1" }), {
      code: "ERR_INVALID_CHAR",
    });
    assert.throws(() => res.writeHead(200, { "bad name": "x" }), {
      code: "ERR_INVALID_HTTP_TOKEN",
    });
    assert.equal(res.headersSent, false);
    res.writeHead(200, { "content-length": "2" });
    assert.throws(() => res.writeHead(200), { code: "ERR_HTTP_HEADERS_SENT" });
    res.end("ok");
  }, async (port) => {
    const r = await curl([`http://127.0.0.1:${port}/`]);
    assert.equal(r.stdout, "ok");
  });
});

Deno.test("h1server: a handler that throws gets a 500 and the connection closes", async () => {
  const errors: unknown[] = [];
  const sockets: net.Socket[] = [];
  const srv = net.createServer((s) => {
    sockets.push(s);
    serveHttp1(s, () => {
      throw new Error("boom");
    }, { onError: (e) => errors.push(e) });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const c = await Raw.connect((srv.address() as net.AddressInfo).port);
    await c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    const t = await c.untilEnd();
    assert.match(t, /^HTTP\/1.1 500 Internal Server Error\r\n/);
    assert.match(t, /\r\nConnection: close\r\n/);
    c.close();
    assert.equal((errors[0] as Error).message, "boom");
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => srv.close(r));
  }
});

Deno.test("h1server: client gone mid-response: res close with writableFinished false", async () => {
  const { promise, resolve } = Promise.withResolvers<{ finished: boolean; aborted: boolean }>();
  let timer: ReturnType<typeof setInterval> | undefined;
  await withServer((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write("data: 1\n\n");
    timer = setInterval(() => res.write("data: more\n\n"), 5);
    res.on("close", () => {
      clearInterval(timer);
      resolve({ finished: res.writableFinished, aborted: req.destroyed });
    });
  }, async (port) => {
    const c = await Raw.connect(port);
    await c.write("GET /sse HTTP/1.1\r\nHost: a\r\n\r\n");
    await c.until((t) => t.includes("data: 1"));
    c.close();
    let t: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      promise,
      new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error("no close")), 5000))),
    ]);
    clearTimeout(t);
    assert.equal(r.finished, false);
  });
});

Deno.test("h1server: idle keep-alive timeout, headers timeout and graceful close()", async () => {
  await withServer(routes, async (port) => {
    const c = await Raw.connect(port);
    try {
      await c.write("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
      await c.until((t) => t.endsWith("\n"));
      const t0 = Date.now();
      await c.untilEnd(3000); // closed quietly, no bytes
      const waited = Date.now() - t0;
      assert.ok(waited >= 150 && waited < 2000, `closed after ${waited} ms`);
      assert.equal(heads(c.text).length, 1);
    } finally {
      c.close();
    }

    const h = await Raw.connect(port);
    try {
      await h.write("GET /hello HTTP/1.1\r\nHost: a\r\n");
      const text = await h.untilEnd(3000);
      assert.match(text, /^HTTP\/1.1 408 Request Timeout\r\n/);
    } finally {
      h.close();
    }
  }, { keepAliveTimeoutMs: 200, headersTimeoutMs: 200 });

  // close(): the response in progress says Connection: close; an idle connection closes now
  // (the default keep-alive timeout is 60 s, so it is close() that closes it).
  await withServer(routes, async (port, conns) => {
    const g = await Raw.connect(port);
    const idle = await Raw.connect(port);
    try {
      await g.write("POST /count HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab");
      await new Promise((r) => setTimeout(r, 50));
      for (const conn of conns) conn.close();
      assert.equal(await idle.untilEnd(3000), "");
      await g.write("cd");
      const text = await g.untilEnd(3000);
      assert.match(text, /\r\nConnection: close\r\n/);
      assert.match(text, /\r\n\r\n4 [0-9a-f]{64}$/);
    } finally {
      g.close();
      idle.close();
    }
  });
});

/**
 * The bulk-test server: its own process, so its peak RSS (VmHWM) is its alone.
 * It records the most bytes ever queued inside it (request stream buffer,
 * response buffer, socket write queue) and reports them at /stats.
 */
const BULK_SERVER = `
import net from "node:net";
import { serveHttp1 } from ${JSON.stringify(new URL("./h1server.ts", import.meta.url).href)};
const SIZE = Number(Deno.args[0]);
const block = new Uint8Array(65536).fill(7);
let maxIn = 0;
let maxOut = 0;
const srv = net.createServer((s) => serveHttp1(s, (req, res) => {
  const out = () => (maxOut = Math.max(maxOut, res.writableLength + s.writableLength));
  if (req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ maxIn, maxOut }));
  }
  res.writeHead(200, { "content-type": "application/octet-stream" });
  if (req.url === "/download") {
    let sent = 0;
    const pump = () => {
      while (sent < SIZE) {
        sent += block.length;
        const ok = res.write(block);
        out();
        if (!ok) return void res.once("drain", pump);
      }
      res.end();
    };
    return pump();
  }
  // Echo as it arrives.
  req.on("data", (d) => {
    maxIn = Math.max(maxIn, req.readableLength + d.length);
    if (!res.write(d)) {
      req.pause();
      res.once("drain", () => req.resume());
    }
    out();
  });
  req.on("end", () => res.end());
}));
srv.listen(0, "127.0.0.1", () => console.log(srv.address().port));
`;

function procStatus(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(
    Deno.readTextFileSync(`/proc/${pid}/status`),
  );
  return Number(m![1]) * 1024;
}

Deno.test("h1server: 50 MB upload (echoed) and download with backpressure, bounded memory", async () => {
  const dir = await Deno.makeTempDir();
  const SIZE = 50 * 1024 * 1024;
  try {
    const block = crypto.getRandomValues(new Uint8Array(65536));
    const file = await Deno.open(`${dir}/big.bin`, { write: true, create: true });
    const hash = createHash("sha256");
    for (let i = 0; i < SIZE / block.length; i++) {
      await file.write(block);
      hash.update(block);
    }
    file.close();
    const expected = hash.digest("hex");
    const sevens = createHash("sha256");
    const seven = new Uint8Array(65536).fill(7);
    for (let i = 0; i < SIZE / seven.length; i++) sevens.update(seven);

    await Deno.writeTextFile(`${dir}/server.ts`, BULK_SERVER);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--max-semi-space-size=1", `${dir}/server.ts`, String(SIZE)],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const first = await reader.read();
      reader.releaseLock();
      child.stdout.cancel().catch(() => {});
      const port = Number(first.value?.trim());
      assert.ok(port > 0, `server said ${JSON.stringify(first.value)}`);
      const base = procStatus(child.pid, "VmRSS");

      const up = await curl([
        "--data-binary",
        `@${dir}/big.bin`,
        "-H",
        "Content-Type: application/octet-stream",
        "-o",
        `${dir}/echo.bin`,
        "-w",
        "%{size_download} %{size_upload}",
        `http://127.0.0.1:${port}/echo`,
      ]);
      assert.equal(up.stdout, `${SIZE} ${SIZE}`, up.stderr);
      assert.equal(await sha256File(`${dir}/echo.bin`), expected);

      const down = await curl([
        "-o",
        `${dir}/down.bin`,
        "-w",
        "%{size_download}",
        `http://127.0.0.1:${port}/download`,
      ]);
      assert.equal(down.stdout, String(SIZE), down.stderr);
      assert.equal(await sha256File(`${dir}/down.bin`), sevens.digest("hex"));

      // What the server queued at most, both ways: a few socket reads, never the body.
      const stats = JSON.parse((await curl([`http://127.0.0.1:${port}/stats`])).stdout);
      assert.ok(stats.maxIn > 0 && stats.maxIn <= 256 * 1024, `request side queued ${stats.maxIn}`);
      assert.ok(
        stats.maxOut > 0 && stats.maxOut <= 1024 * 1024,
        `response side queued ${stats.maxOut}`,
      );
      // RSS is a loose bound only: Deno frees socket read buffers lazily (a bare net.Socket
      // sink grows ~53 MiB on 50 MB here), so it measures the GC more than this layer.
      const growth = procStatus(child.pid, "VmHWM") - base;
      assert.ok(growth < 96 * 1024 * 1024, `peak RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
    } finally {
      child.kill("SIGTERM");
      await child.status;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h1server: a consumer that pauses stops the socket; a client that does not read stops the writer", async () => {
  let req: H1Request | null = null;
  let written = 0;
  let blocked = false;
  const { promise: got, resolve: gotReq } = Promise.withResolvers<void>();
  await withServer((r, res) => {
    if (r.url === "/up") {
      req = r;
      return gotReq();
    }
    res.writeHead(200);
    const chunk = new Uint8Array(65536);
    const pump = () => {
      while (written < 200 * 1024 * 1024) {
        written += chunk.length;
        if (!res.write(chunk)) {
          blocked = true;
          return void res.once("drain", pump);
        }
      }
      res.end();
    };
    pump();
  }, async (port) => {
    // Upload 64 MB that nobody reads: the server must stop reading the socket.
    const c = await Raw.connect(port);
    try {
      c.socket.write(`POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${64 << 20}\r\n\r\n`);
      await got;
      const chunk = new Uint8Array(1 << 20);
      let queued = 0;
      for (let i = 0; i < 64; i++) {
        if (!c.socket.write(chunk)) queued++;
      }
      await new Promise((r) => setTimeout(r, 300));
      const r = req! as H1Request;
      const received = r.socket.bytesRead;
      assert.ok(received < 16 * 1024 * 1024, `server read ${received} bytes while nobody consumed`);
      assert.ok(r.readableLength <= 2 * 65536, `buffered ${r.readableLength}`);
      // Consume it all now.
      let n = 0;
      const done = new Promise<void>((resolve) => {
        r.on("data", (d: Uint8Array) => (n += d.length));
        r.on("end", () => resolve());
      });
      await done;
      assert.equal(n, 64 << 20);
      assert.ok(queued > 0);
    } finally {
      c.close();
    }

    // Download that the client does not read: write() returns false, the writer waits.
    const d = await Raw.connect(port);
    try {
      d.socket.pause();
      d.socket.write("GET /down HTTP/1.1\r\nHost: a\r\n\r\n");
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(blocked);
      assert.ok(
        written < 32 * 1024 * 1024,
        `wrote ${written} bytes to a client that reads nothing`,
      );
    } finally {
      d.close();
    }
  });
});

/** A self-signed certificate for `h1.example.test`, made by openssl in `dir`. */
async function makeCert(dir: string): Promise<{ key: string; cert: string }> {
  const gen = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
      "-days",
      "2",
      "-subj",
      "/CN=h1.example.test",
      "-addext",
      "subjectAltName=DNS:h1.example.test",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(gen.code, 0, new TextDecoder().decode(gen.stderr));
  return {
    key: await Deno.readTextFile(`${dir}/key.pem`),
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
  };
}

/**
 * A `tls.Server` whose 'secureConnection' sockets go to serveHttp1. With
 * `emit`, it is fed by a plain net.Server through `emit("connection")`, as
 * the proxy feeds it CONNECT sockets; else it listens itself.
 */
async function withTlsServer(
  handler: Handler,
  fn: (t: { dir: string; base: string; tlsArgs: string[] }) => Promise<void>,
  opts: { emit?: boolean } = {},
) {
  const dir = await Deno.makeTempDir();
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  };
  try {
    const { key, cert } = await makeCert(dir);
    const srv = tls.createServer({ key, cert, ALPNProtocols: ["http/1.1"] });
    srv.on("secureConnection", (s: tls.TLSSocket) => {
      track(s);
      serveHttp1(s, handler);
    });
    const outer = opts.emit
      ? net.createServer((raw) => {
        track(raw);
        srv.emit("connection", raw);
      })
      : srv;
    await new Promise<void>((r) => outer.listen(0, "127.0.0.1", r));
    const port = (outer.address() as net.AddressInfo).port;
    try {
      await fn({
        dir,
        base: `https://h1.example.test:${port}`,
        tlsArgs: ["--cacert", `${dir}/cert.pem`, "--resolve", `h1.example.test:${port}:127.0.0.1`],
      });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => outer.close(r));
      if (outer !== srv) srv.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("h1server: over TLS (tls.Server secureConnection) with curl keep-alive", async () => {
  const remote: string[] = [];
  await withTlsServer((req, res) => {
    remote.push(String(req.socket.remoteAddress));
    routes(req, res);
  }, async ({ dir, base, tlsArgs }) => {
    const r = await curl(["-v", ...tlsArgs, `${base}/hello/1`, `${base}/hello/2`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello GET /hello/1\nhello GET /hello/2\n");
    assert.match(r.stderr, /Re-using existing connection/);
    const payload = "p".repeat(300_000);
    await Deno.writeTextFile(`${dir}/payload.txt`, payload);
    const p = await curl([...tlsArgs, "--data-binary", `@${dir}/payload.txt`, `${base}/echo`]);
    assert.equal(p.stdout, payload);
    assert.equal(remote[0], "127.0.0.1");
  });
});

Deno.test('h1server: TLS backpressure both ways (socket fed by emit("connection"))', async () => {
  const SIZE = 64 * 1024 * 1024;
  let receivedWhileHeld = -1;
  let written = 0;
  let downClose: boolean | null = null;
  const { promise: downClosed, resolve: onDownClose } = Promise.withResolvers<void>();
  await withTlsServer((req, res) => {
    if (req.url === "/hold") {
      // Nobody reads for a while: the client must stall, the server must not buffer.
      setTimeout(() => {
        const tcp = (req.socket as unknown as { _parent?: net.Socket })._parent ?? req.socket;
        receivedWhileHeld = tcp.bytesRead;
        readAll(req).then((b) => {
          res.writeHead(200);
          res.end(`${b.length} ${sha256(b)}`);
        });
      }, 500);
      return;
    }
    // A download to a client reading at 1 MB/s.
    res.writeHead(200, { "content-length": String(SIZE) });
    const chunk = new Uint8Array(65536);
    const pump = () => {
      while (written < SIZE) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    res.on("close", () => {
      downClose = res.writableFinished;
      onDownClose();
    });
    pump();
  }, async ({ dir, base, tlsArgs }) => {
    const block = crypto.getRandomValues(new Uint8Array(65536));
    const file = await Deno.open(`${dir}/up.bin`, { write: true, create: true });
    const hash = createHash("sha256");
    for (let i = 0; i < SIZE / block.length; i++) {
      await file.write(block);
      hash.update(block);
    }
    file.close();
    const up = await curl([
      ...tlsArgs,
      "--data-binary",
      `@${dir}/up.bin`,
      "-H",
      "Expect:",
      `${base}/hold`,
    ]);
    assert.equal(up.stdout, `${SIZE} ${hash.digest("hex")}`, up.stderr);
    assert.ok(
      receivedWhileHeld >= 0 && receivedWhileHeld < 16 * 1024 * 1024,
      `server read ${receivedWhileHeld} bytes while nobody consumed`,
    );

    const down = await curl([
      ...tlsArgs,
      "--limit-rate",
      "1M",
      "--max-time",
      "1",
      "-o",
      "/dev/null",
      `${base}/down`,
    ]);
    assert.equal(down.code, 28, down.stderr); // curl's timeout: it was still reading
    assert.ok(written < 16 * 1024 * 1024, `wrote ${written} bytes to a client reading 1 MB/s`);
    let t: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([downClosed, new Promise((r) => (t = setTimeout(r, 3000)))]);
    clearTimeout(t);
    assert.equal(downClose, false);
  }, { emit: true });
});

Deno.test("h1server: flowControl() also holds back a TLS client socket (tls.connect over net.Socket)", async () => {
  const SIZE = 64 * 1024 * 1024;
  let written = 0;
  await withTlsServer((_req, res) => {
    res.writeHead(200, { "content-length": String(SIZE) });
    const chunk = new Uint8Array(65536);
    const pump = () => {
      while (written < SIZE) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  }, async ({ dir, base }) => {
    const port = Number(new URL(base).port);
    const raw = net.connect(port, "127.0.0.1");
    const c = tls.connect({
      socket: raw,
      servername: "h1.example.test",
      ca: await Deno.readTextFile(`${dir}/cert.pem`),
    });
    try {
      await new Promise((r, j) => c.once("secureConnect", r).once("error", j));
      const flow = flowControl(c);
      let got = 0;
      const { promise: all, resolve } = Promise.withResolvers<void>();
      c.on("data", (d: Uint8Array) => {
        got += d.length;
        if (got > SIZE) resolve(); // head + body
      });
      c.write("GET /down HTTP/1.1\r\nHost: h1.example.test\r\n\r\n");
      await new Promise((r) => c.once("data", r));
      flow.pause();
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(written < 16 * 1024 * 1024, `server wrote ${written} bytes to a paused client`);
      flow.resume();
      let t: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        all,
        new Promise((_, j) => (t = setTimeout(() => j(new Error(`got ${got}`)), 10_000))),
      ]);
      clearTimeout(t);
      assert.equal(written, SIZE);
    } finally {
      c.destroy();
      raw.destroy();
    }
  }, { emit: true });
});
