/**
 * A real Redis (or Valkey: `AGENTGATE_TEST_REDIS=valkey-server`) for a
 * test: started on 127.0.0.1 on a free port, with a throwaway directory and
 * no persistence, stopped by its PID. `restart()` starts it again on the
 * same port (empty: what a fleet sees after a crash of a cache without
 * persistence).
 *
 * @example
 * ```ts
 * const redis = await startRedis();
 * // … redis.url is "redis://127.0.0.1:PORT/0"
 * await redis.stop();
 * ```
 *
 * @module
 */
import net from "node:net";

/** A running test server. */
export interface TestRedis {
  port: number;
  url: string;
  /** Stops it (SIGKILL: as abrupt as a crash) and waits for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
  /** One command through redis-cli-free RESP, for assertions (e.g. `["ZCARD", key]`). */
  command(args: string[]): Promise<unknown>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The server binary tests use. */
export function redisBinary(): string {
  return Deno.env.get("AGENTGATE_TEST_REDIS") ?? "redis-server";
}

/** Starts a server; resolves once it accepts connections. */
export async function startRedis(): Promise<TestRedis> {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-redis-" });
  const port = await freePort();
  let child: Deno.ChildProcess | null = null;
  const spawn = async () => {
    child = new Deno.Command(redisBinary(), {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await command(port, ["PING"])) === "PONG") return;
      } catch { /* not yet */ }
      if (Date.now() > until) throw new Error(`${redisBinary()} did not start on ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const kill = async () => {
    if (child === null) return;
    const c: Deno.ChildProcess = child;
    child = null;
    try {
      c.kill("SIGKILL");
    } catch { /* gone */ }
    await c.status;
  };
  await spawn();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    kill,
    restart: spawn,
    command: (args) => command(port, args),
    stop: async () => {
      await kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Sends one command and reads one RESP2 reply (enough for tests). */
async function command(port: number, args: string[]): Promise<unknown> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const enc = new TextEncoder();
    let req = `*${args.length}\r\n`;
    for (const a of args) req += `$${enc.encode(a).length}\r\n${a}\r\n`;
    await conn.write(enc.encode(req));
    let buf = "";
    const chunk = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(chunk);
      if (n === null) throw new Error("connection closed");
      buf += new TextDecoder().decode(chunk.subarray(0, n));
      const r = parse(buf, 0);
      if (r !== null) return r[0];
    }
  } finally {
    conn.close();
  }
}

function parse(s: string, i: number): [unknown, number] | null {
  const end = s.indexOf("\r\n", i);
  if (end < 0) return null;
  const t = s[i];
  const line = s.slice(i + 1, end);
  if (t === "+") return [line, end + 2];
  if (t === "-") throw new Error(line);
  if (t === ":") return [Number(line), end + 2];
  if (t === "$") {
    const n = Number(line);
    if (n < 0) return [null, end + 2];
    if (s.length < end + 2 + n + 2) return null;
    return [s.slice(end + 2, end + 2 + n), end + 2 + n + 2];
  }
  if (t === "*") {
    const n = Number(line);
    const out: unknown[] = [];
    let j = end + 2;
    for (let k = 0; k < n; k++) {
      const r = parse(s, j);
      if (r === null) return null;
      out.push(r[0]);
      j = r[1];
    }
    return [out, j];
  }
  throw new Error(`unexpected reply ${JSON.stringify(s.slice(i, i + 20))}`);
}
