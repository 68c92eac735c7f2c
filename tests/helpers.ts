/**
 * End-to-end test helpers: spawn `main.ts` as a real process, run origins on
 * 127.0.0.1, read the audit back from the SQLite file. Everything started here
 * is stopped by the returned handles.
 *
 * @module
 */
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { V8_FLAGS } from "../scripts/v8_flags.ts";

export const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** The V8 flags `deno task start` and `deno task compile` use (scripts/v8_flags.ts). */
export const RUN_FLAGS = [V8_FLAGS];

/**
 * The `deno` arguments that run agentgate with `args` (all permissions, the
 * start task's V8 flags).
 *
 * @example
 * new Deno.Command(Deno.execPath(), { args: agentgateArgs("run", "--config", cfg, "--", "true") });
 */
export function agentgateArgs(...args: string[]): string[] {
  return ["run", "-A", ...RUN_FLAGS, MAIN, ...args];
}

/** A running agentgate process. */
export interface ProxyProcess {
  port: number;
  url: string;
  dir: string;
  pid: number;
  stdout: string[];
  stderr: string[];
  auditPath: string;
  /** Send a signal and wait for the exit code (the temp dir stays). */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Stop (if running) and remove the temp dir. */
  dispose(): Promise<void>;
  /** Wait until the process exits on its own. */
  exited: Promise<Deno.CommandStatus>;
}

async function pump(
  stream: ReadableStream<Uint8Array>,
  into: string[],
  onLine?: (l: string) => void,
) {
  const dec = new TextDecoderStream();
  let buf = "";
  for await (const chunk of stream.pipeThrough(dec)) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) !== -1) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      into.push(line);
      onLine?.(line);
    }
  }
  if (buf) {
    into.push(buf);
    onLine?.(buf);
  }
}

/**
 * The policy of `startProxy()` without a config: record everything, and let
 * requests reach the tests' origins on 127.0.0.1 (the address guard denies
 * loopback unless a rule names it).
 */
export const DEFAULT_TEST_POLICY = `version: 1
default: log
audit: { path: ./audit.db }
rules:
  - { name: test-origins, match: 127.0.0.1, action: log }
`;

/**
 * Start agentgate with a policy written to a fresh temp dir (or the embedded
 * default when `config` is null) on an ephemeral port.
 */
export async function startProxy(
  opts: {
    config?: string | null;
    args?: string[];
    env?: Record<string, string>;
    /** Extra files written into the temp dir before start (name -> content). */
    files?: Record<string, string>;
  } = {},
): Promise<ProxyProcess> {
  const dir = await Deno.makeTempDir({ prefix: "agentgate-e2e-" });
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    await Deno.writeTextFile(`${dir}/${name}`, content);
  }
  const args = [
    "run",
    "-A",
    ...RUN_FLAGS,
    MAIN,
    "serve",
    "--listen",
    "127.0.0.1:0",
    ...(opts.args ?? []),
  ];
  if (opts.config !== null) {
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      opts.config ?? DEFAULT_TEST_POLICY,
    );
    args.push("--config", `${dir}/agentgate.yaml`);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
    // The agentgate home (CA, default audit) is the test's own directory.
    env: { NO_COLOR: "1", AGENTGATE_HOME: dir, ...opts.env },
  }).spawn();
  const stdout: string[] = [];
  const stderr: string[] = [];
  let resolvePort: (p: number) => void;
  const portP = new Promise<number>((r) => (resolvePort = r));
  // The banner is on stderr, then the export lines on stdout: started when both are read.
  let listening: number | null = null;
  let exported = false;
  const started = () => {
    if (listening !== null && exported) resolvePort(listening);
  };
  const outDone = pump(child.stdout, stdout, (l) => {
    if (/^ {2}export HTTP_PROXY=/.test(l)) exported = true;
    started();
  });
  const errDone = pump(child.stderr, stderr, (l) => {
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(l);
    if (m) listening = Number(m[1]);
    started();
  });
  const exited = child.status.then(async (s) => {
    await Promise.all([outDone, errDone]);
    return s;
  });
  const port = await Promise.race([
    portP,
    exited.then((s) => {
      throw new Error(`agentgate exited (${s.code}) before listening:\n${stderr.join("\n")}`);
    }),
    new Promise<never>((_, rej) =>
      setTimeout(() => rej(new Error(`agentgate did not start:\n${stderr.join("\n")}`)), 20_000)
    ),
  ]);
  const auditLine = stderr.find((l) => l.startsWith("audit:")) ?? "";
  let stopped: Promise<number> | null = null;
  const proc: ProxyProcess = {
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    pid: child.pid,
    stdout,
    stderr,
    auditPath: auditLine.replace(/^audit:\s+/, ""),
    exited,
    stop(signal: Deno.Signal = "SIGTERM") {
      stopped ??= (async () => {
        try {
          child.kill(signal);
        } catch {
          // Already exited.
        }
        return (await exited).code;
      })();
      return stopped;
    },
    async dispose() {
      await proc.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  return proc;
}

/** Writes `size` bytes of `fill` in 64 KiB chunks, waiting for "drain" (backpressure), then ends. */
export function writeFilled(
  w: {
    write(c: Uint8Array): boolean;
    once(event: "drain", fn: () => void): unknown;
    end(): unknown;
  },
  size: number,
  fill: number,
): void {
  const chunk = new Uint8Array(65536).fill(fill);
  let sent = 0;
  const write = () => {
    while (sent < size) {
      sent += chunk.length;
      if (!w.write(chunk)) return void w.once("drain", write);
    }
    w.end();
  };
  write();
}

/** Rows of a query on an audit database (read-only; WAL lets us read while the proxy writes). */
export function queryAudit(path: string, sql: string): Record<string, unknown>[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare(sql).all().map((r) => ({ ...r }));
  } finally {
    db.close();
  }
}

/** Rows of the audit table. */
export function auditRows(path: string, where = "1=1"): Record<string, unknown>[] {
  return queryAudit(path, `SELECT * FROM audit WHERE ${where} ORDER BY ts, id`);
}

/** Wait until `fn` returns a truthy value (polling a condition with a deadline). */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  what: string,
  ms = 5000,
): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** Wait until the audit holds at least `n` rows matching `where`. */
export function waitForRows(path: string, n: number, where = "1=1") {
  return waitFor(() => {
    const rows = auditRows(path, where);
    return rows.length >= n ? rows : null;
  }, `${n} audit row(s) where ${where}`);
}

/** An origin server on 127.0.0.1 that counts its connections. */
export interface Origin {
  port: number;
  url: string;
  connections: number;
  close(): Promise<void>;
}

/** Start an HTTP (or HTTPS, with `tls`) origin with a node:http handler, on 127.0.0.1 or `host`. */
export async function startOrigin(
  handler: http.RequestListener,
  tls?: { cert: string; key: string },
  host = "127.0.0.1",
): Promise<Origin & { server: http.Server }> {
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  const sockets = new Set<net.Socket>();
  const origin = {
    port: 0,
    url: "",
    connections: 0,
    server,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  server.on(tls ? "secureConnection" : "connection", (s: net.Socket) => {
    origin.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  origin.port = (server.address() as net.AddressInfo).port;
  origin.url = `${tls ? "https" : "http"}://${host}:${origin.port}`;
  return origin;
}

/** A self-signed certificate for 127.0.0.1 and localhost (openssl). */
export async function selfSigned(): Promise<{ cert: string; key: string }> {
  const dir = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    return {
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Run curl and return status, stdout and stderr. */
export async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "20", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** Peak resident memory of a process in KiB (VmHWM). */
export async function peakRssKiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]);
}

/** Open file descriptors of a process. */
export async function openFds(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

/** A test CA and a server certificate it signed for `names` (openssl). */
export async function testPki(
  names: string[],
): Promise<{ caPem: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir();
  const run = async (args: string[]) => {
    const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
      .output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  };
  try {
    await run([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=agentgate test origin CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign",
      "-keyout",
      `${dir}/ca.key`,
      "-out",
      `${dir}/ca.pem`,
    ]);
    await run([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-subj",
      `/CN=${names[0]}`,
      "-keyout",
      `${dir}/srv.key`,
      "-out",
      `${dir}/srv.csr`,
    ]);
    await Deno.writeTextFile(
      `${dir}/ext.cnf`,
      `subjectAltName=${
        names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",")
      }\n` +
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n" +
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n",
    );
    await run([
      "x509",
      "-req",
      "-in",
      `${dir}/srv.csr`,
      "-CA",
      `${dir}/ca.pem`,
      "-CAkey",
      `${dir}/ca.key`,
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${dir}/ext.cnf`,
      "-out",
      `${dir}/srv.pem`,
    ]);
    return {
      caPem: await Deno.readTextFile(`${dir}/ca.pem`),
      cert: await Deno.readTextFile(`${dir}/srv.pem`),
      key: await Deno.readTextFile(`${dir}/srv.key`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The repository root (deno.json, main.ts). */
export const ROOT_DIR = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

/** What a finished CLI process printed. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/**
 * Run agentgate as a real process to completion: `deno run -A main.ts ARGS`,
 * or with `via: "task"` the way the README says, `deno task start ARGS` (its
 * permissions, run in the repository's directory). The agentgate home is
 * `env.AGENTGATE_HOME` (give one: nothing may land in the real ~/.agentgate).
 */
export async function runCli(
  args: string[],
  opts: {
    cwd?: string;
    env?: Record<string, string>;
    stdin?: string;
    via?: "run" | "task";
    /** Permission flags instead of -A (`via: "run"` only). */
    permissions?: string[];
  } = {},
): Promise<CliResult> {
  const argv = opts.via === "task"
    ? ["task", "--quiet", "--config", `${ROOT_DIR}/deno.json`, "start", ...args]
    : ["run", ...(opts.permissions ?? ["-A"]), ...RUN_FLAGS, MAIN, ...args];
  const child = new Deno.Command(Deno.execPath(), {
    args: argv,
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/**
 * Read a text stream until `pattern` matches what was read, the stream ends,
 * or `ms` pass (then the text so far is returned too: the caller asserts, and
 * a regression fails instead of hanging).
 */
export async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  pattern: RegExp,
  ms = 20_000,
): Promise<string> {
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)));
  try {
    while (!pattern.test(text)) {
      const next = await Promise.race([reader.read(), late]);
      if (next === null || next.done) break;
      text += next.value;
    }
  } finally {
    clearTimeout(timer);
  }
  return text;
}
