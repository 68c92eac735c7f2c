/**
 * A real PostgreSQL 15 server for tests: `initdb` into a throwaway directory
 * the test owns, `postgres` started on 127.0.0.1 (a free port) as a child
 * process, stopped by its PID. Debian's binaries live in
 * /usr/lib/postgresql/15/bin (`AGENTGATE_TEST_PG_BIN` points elsewhere, or at
 * a missing directory to try the skip). PostgreSQL refuses to run as root:
 * under root the server runs as the `postgres` user the Debian package
 * creates, through `setpriv`, and the data directory is handed to it.
 *
 * The role `agentgate` has a password (scram-sha-256 over TCP): clients must
 * pass it the way agentgate does, from an environment variable.
 *
 * @example
 * ```ts
 * const pg = await startPostgres();
 * try {
 *   // connect to pg.url with PGPASSWORD=pg.password
 * } finally {
 *   await pg.dispose();
 * }
 * ```
 *
 * @module
 */
import { join } from "node:path";

/** Where the PostgreSQL binaries are looked for. */
export const PG_BIN = Deno.env.get("AGENTGATE_TEST_PG_BIN") ?? "/usr/lib/postgresql/15/bin";

/** Whether the binaries are here (tests that need a server are skipped, visibly, without them). */
export const PG_FOUND = (() => {
  try {
    return Deno.statSync(join(PG_BIN, "postgres")).isFile &&
      Deno.statSync(join(PG_BIN, "initdb")).isFile;
  } catch {
    return false;
  }
})();

/** A test's name, saying it is skipped and why when the binaries are absent. */
export function pgTestName(name: string): string {
  return PG_FOUND ? name : `${name}: SKIPPED, ${PG_BIN}/postgres not found; ${PG_HOW}`;
}

/** How to get the binaries. */
export const PG_HOW =
  "install them with apt-get install -y postgresql, or run .ci/run, which installs it";

/** A running test server. */
export interface PgServer {
  /** `postgres://agentgate@127.0.0.1:PORT/agentgate` (no password: it is in {@link password}). */
  url: string;
  port: number;
  password: string;
  dir: string;
  /** The server's PID while it runs. */
  pid: number | null;
  /** Stop the server (SIGINT: fast shutdown; SIGKILL: a crash), keeping its data. */
  stop(signal?: Deno.Signal): Promise<void>;
  /** Start it again on the same port and data. */
  start(): Promise<void>;
  /** Run SQL through psql as the superuser (in database `db`); returns psql's unaligned output. */
  psql(sql: string, db?: string): Promise<string>;
  /** Stop and remove the data directory. */
  dispose(): Promise<void>;
}

const asRoot = Deno.uid() === 0;

function command(exe: string, args: string[], opts: { stdout?: "piped" | "null" } = {}) {
  // The server must not run as root: under root it runs as the package's `postgres` user.
  const [cmd, argv] = asRoot
    ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", exe, ...args]]
    : [exe, args];
  return new Deno.Command(cmd, {
    args: argv,
    stdin: "null",
    stdout: opts.stdout ?? "piped",
    stderr: "piped",
    env: { LC_ALL: "C" },
  });
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Start a fresh server with a database `agentgate` owned by the role
 * `agentgate`. `settings` are extra `-c` flags. The default is `fsync=off` (the
 * test machine's disk is not what tests prove), never `synchronous_commit=off`:
 * with it a killed server forgets commits it acknowledged — the crash test
 * lost ~500 of 42,000 rows that way, none of them agentgate's doing.
 */
export async function startPostgres(
  settings: Record<string, string> = { fsync: "off" },
): Promise<PgServer> {
  if (!PG_FOUND) throw new Error(`PostgreSQL binaries not found in ${PG_BIN}`);
  const dir = await Deno.makeTempDir({ prefix: "agentgate-pg-" });
  const data = join(dir, "data");
  const password = `pw-${crypto.randomUUID()}`;
  await Deno.writeTextFile(join(dir, "pwfile"), "postgres-test-superuser\n");
  if (asRoot) {
    await Deno.chmod(dir, 0o755);
    const chown = await new Deno.Command("chown", { args: ["-R", "postgres:postgres", dir] })
      .output();
    if (!chown.success) throw new Error(`chown ${dir} failed`);
  }
  const init = await command(join(PG_BIN, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    `--pwfile=${join(dir, "pwfile")}`,
    "-E",
    "UTF8",
    "--no-sync",
  ]).output();
  if (!init.success) {
    throw new Error(`initdb failed: ${new TextDecoder().decode(init.stderr)}`);
  }
  const port = freePort();
  let child: Deno.ChildProcess | null = null;
  const logs: string[] = [];

  const server: PgServer = {
    url: `postgres://agentgate@127.0.0.1:${port}/agentgate`,
    port,
    password,
    dir,
    pid: null,
    async start() {
      if (child !== null) return;
      const args = ["-D", data, "-h", "127.0.0.1", "-p", String(port), "-k", dir];
      for (const [k, v] of Object.entries(settings)) args.push("-c", `${k}=${v}`);
      child = command(join(PG_BIN, "postgres"), args, { stdout: "null" }).spawn();
      server.pid = child.pid;
      const errText = (async () => {
        for await (const chunk of child!.stderr.pipeThrough(new TextDecoderStream())) {
          logs.push(chunk);
          if (logs.length > 200) logs.shift();
        }
      })();
      errText.catch(() => {});
      // Ready when a TCP connection is accepted.
      const deadline = Date.now() + 20_000;
      for (;;) {
        try {
          const c = await Deno.connect({ hostname: "127.0.0.1", port });
          c.close();
          // The socket opens a moment before startup finishes: ask the server itself.
          const ready = await command(join(PG_BIN, "pg_isready"), [
            "-h",
            dir,
            "-p",
            String(port),
          ]).output();
          if (ready.success) break;
        } catch {
          // not yet
        }
        if (Date.now() > deadline) {
          throw new Error(`postgres did not start: ${logs.join("").slice(-2000)}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop(signal: Deno.Signal = "SIGINT") {
      const c = child;
      if (c === null) return;
      child = null;
      server.pid = null;
      try {
        c.kill(signal);
      } catch {
        // already gone
      }
      await c.status;
      // A SIGKILLed postmaster leaves its children; they exit once they see it gone.
      if (signal === "SIGKILL") await new Promise((r) => setTimeout(r, 300));
    },
    async psql(sql: string, db = "postgres") {
      const out = await command(join(PG_BIN, "psql"), [
        "-h",
        dir,
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        db,
        "-v",
        "ON_ERROR_STOP=1",
        "-At",
        "-c",
        sql,
      ]).output();
      if (!out.success) throw new Error(`psql: ${new TextDecoder().decode(out.stderr)}`);
      return new TextDecoder().decode(out.stdout).trim();
    },
    async dispose() {
      await server.stop("SIGINT");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await server.start();
    await server.psql(`CREATE ROLE agentgate LOGIN PASSWORD '${password}'`);
    await server.psql("CREATE DATABASE agentgate OWNER agentgate");
  } catch (e) {
    await server.dispose();
    throw e;
  }
  return server;
}
