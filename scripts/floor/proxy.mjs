// The runtime's floor for the bench harness: a forward proxy with nothing of
// agentgate in it (no decision, no audit, no checks), on `node:net` only, so
// the same file runs under Deno and under Node 20 as the control:
//
//   deno task bench floor [s1 s2 s3 s3b s5]          under Deno
//   deno task bench floor --node [s1 s2 s3 s3b s5]   under Node
//
// CONNECT opens a tunnel (bytes both ways, each side closed with the other);
// an absolute-form request without a body is forwarded over one keep-alive
// upstream connection per client connection, relaying Content-Length bodies.
// Plain JavaScript on purpose: Node 20 runs it as it is.
import net from "node:net";

const [host, port] = (process.argv[2] ?? "127.0.0.1:18199").split(":");

function tunnel(client, head, rest) {
  const target = head.split(" ")[1];
  const i = target.lastIndexOf(":");
  const up = net.connect(Number(target.slice(i + 1)), target.slice(0, i), () => {
    up.setNoDelay(true);
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (rest.length) up.write(rest);
    client.pipe(up);
    up.pipe(client);
  });
  up.on("error", () => client.destroy());
  up.on("close", () => client.destroy());
  client.on("error", () => up.destroy());
  client.on("close", () => up.destroy());
}

function forward(client, first) {
  let up = null;
  let pending = first;
  let fromUp = Buffer.alloc(0);
  let need = -1; // body bytes still to relay; -1 while reading a response head
  const relay = (d) => {
    fromUp = fromUp.length ? Buffer.concat([fromUp, d]) : d;
    while (fromUp.length > 0) {
      let take;
      if (need < 0) {
        const end = fromUp.indexOf("\r\n\r\n");
        if (end < 0) return;
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(fromUp.subarray(0, end).toString("latin1"));
        need = m ? Number(m[1]) : 0;
        take = Math.min(fromUp.length, end + 4 + need);
        need -= take - (end + 4);
      } else {
        take = Math.min(fromUp.length, need);
        need -= take;
      }
      client.write(fromUp.subarray(0, take));
      fromUp = fromUp.subarray(take);
      if (need === 0) need = -1;
    }
  };
  const requests = () => {
    for (;;) {
      const end = pending.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = pending.subarray(0, end).toString("latin1");
      pending = pending.subarray(end + 4);
      const a = head.indexOf(" ");
      const b = head.indexOf(" ", a + 1);
      const url = new URL(head.slice(a + 1, b));
      if (up === null) {
        up = net.connect(Number(url.port || 80), url.hostname);
        up.setNoDelay(true);
        up.on("data", relay);
        up.on("error", () => client.destroy());
        up.on("close", () => client.destroy());
      }
      up.write(`${head.slice(0, a + 1)}${url.pathname}${url.search}${head.slice(b)}\r\n\r\n`);
    }
  };
  client.on("data", (d) => {
    pending = pending.length ? Buffer.concat([pending, d]) : d;
    requests();
  });
  client.on("error", () => up?.destroy());
  client.on("close", () => up?.destroy());
  requests();
}

net.createServer((client) => {
  client.setNoDelay(true);
  let buf = Buffer.alloc(0);
  const first = (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) return;
    client.off("data", first);
    const head = buf.subarray(0, end).toString("latin1");
    if (head.startsWith("CONNECT ")) tunnel(client, head, buf.subarray(end + 4));
    else forward(client, buf);
  };
  client.on("data", first);
}).listen(Number(port), host);
