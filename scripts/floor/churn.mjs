// Connection churn, the runtime's cost of a short-lived TCP connection (what
// s3b and s4b pay twice per tunnel): N loopback connections, C at a time, each
// opened, one line each way, closed. With `net` (node:net) the same file runs
// under Node 20 as the control; `deno` uses Deno.listen / Deno.connect.
//
//   deno run -A scripts/floor/churn.mjs net|deno [N] [C]
//   node scripts/floor/churn.mjs net [N] [C]
//
// Prints one `CHURN api=… conns=… per_s=… cpu_us_per_conn=…` line; run it
// with `--trace-gc-nvp` (as `deno task bench churn` does) to see what each
// connection leaves to the old generation.
// Plain JavaScript on purpose: Node 20 runs it as it is.
import net from "node:net";
import process from "node:process";

const args = globalThis.Deno ? globalThis.Deno.args : process.argv.slice(2);
const api = args[0] ?? "net";
const N = Number(args[1] ?? 30000);
const C = Number(args[2] ?? 50);
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
let started = 0;
let done = 0;
const t0 = performance.now();
const c0 = cpu();

function closed() {
  if (++done < N) return false;
  const ms = performance.now() - t0;
  console.log(
    `CHURN api=${api} conns=${done} per_s=${Math.round((done / ms) * 1000)} ` +
      `cpu_us_per_conn=${((cpu() - c0) / done).toFixed(1)}`,
  );
  process.exit(0);
}

if (api === "net") {
  const server = net.createServer((s) => {
    s.on("data", () => s.end("ok\n"));
    s.on("error", () => {});
  });
  server.listen(0, "127.0.0.1", () => {
    const port = server.address().port;
    const one = () => {
      if (started >= N) return;
      started++;
      const c = net.connect(port, "127.0.0.1", () => c.write("hi\n"));
      c.on("data", () => {});
      c.on("error", () => {});
      c.on("close", () => {
        if (!closed()) one();
      });
    };
    for (let i = 0; i < C; i++) one();
  });
} else if (api === "deno" && globalThis.Deno) {
  const { Deno } = globalThis;
  const line = new TextEncoder().encode("ok\n");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const s of listener) {
      (async () => {
        try {
          await s.read(new Uint8Array(64));
          await s.write(line);
        } catch {
          // the client went away: nothing to answer
        }
        s.close();
      })();
    }
  })();
  const one = async () => {
    const buf = new Uint8Array(64);
    while (started < N) {
      started++;
      const c = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
      try {
        await c.write(line);
        while ((await c.read(buf)) !== null);
      } catch {
        // reset by the server: counted as closed
      }
      c.close();
      closed();
    }
  };
  for (let i = 0; i < C; i++) one();
} else {
  console.error("usage: churn.mjs net|deno [N] [C]  (deno: under Deno only)");
  process.exit(2);
}
