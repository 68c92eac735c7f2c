/**
 * `agentgate run --isolate`: the command runs in its own network namespace,
 * where the only address that answers is agentgate. Without it, agentgate
 * governs only clients that honour the proxy variables; with it, unsetting
 * `HTTP_PROXY` or opening a raw socket reaches nothing.
 *
 * How (Linux, after Anthropic's sandbox-runtime):
 *
 * ```
 *  command ──TCP──▶ 127.0.0.1:PORT ──▶ bridge ──Unix socket──▶ relay ──TCP──▶ proxy
 *  └──── sandbox: own network + PID namespace ────┘  (in agentgate run)
 *        seccomp: no AF_UNIX sockets               bridge: the sandbox's network
 *                                                  namespace, the host's files
 * ```
 *
 * 1. bubblewrap starts the command with `--unshare-net --unshare-pid`, the
 *    host's filesystem as it is (the CA bundles, the working tree), all
 *    capabilities dropped, and a seccomp filter that refuses Unix-domain
 *    sockets (`seccomp.ts`: the Docker socket or an ssh agent would be doors
 *    to the network). It waits (`--block-fd`) until the bridge is up.
 * 2. The bridge — agentgate itself (`agentgate isolate-bridge`), started with
 *    `nsenter` into the sandbox's network namespace only — listens on
 *    127.0.0.1:PORT there and forwards each connection to a Unix socket in a
 *    private directory on the host.
 * 3. The relay, in this process, forwards that socket to the proxy.
 *
 * The command's proxy variables point at 127.0.0.1:PORT; inside the
 * sandbox that address is the bridge. Requests are decided and recorded
 * exactly as without isolation.
 *
 * @module
 */
import net from "node:net";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import type { Io } from "./io.ts";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { unixSocketFilter } from "./seccomp.ts";

/** A program on the PATH (or a path that exists), or null. */
function which(name: string, path: string | undefined): string | null {
  if (name.includes("/")) {
    try {
      return Deno.statSync(name).isFile ? name : null;
    } catch {
      return null;
    }
  }
  for (const dir of (path ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    if (!dir) continue;
    try {
      const p = join(dir, name);
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // Not here.
    }
  }
  return null;
}

/**
 * The namespaces bubblewrap makes for the command (own network and PID
 * namespaces, the host's filesystem, a fresh /proc): the probe in
 * {@link isolationUnavailable} asks for exactly these.
 */
const NAMESPACES = [
  "--unshare-net",
  "--unshare-pid",
  "--dev-bind",
  "/",
  "/",
  "--proc",
  "/proc",
];

/** Where `--isolate` cannot work, the reason (a sentence for the user), else null. */
export async function isolationUnavailable(io: Pick<Io, "env">): Promise<string | null> {
  if (Deno.build.os !== "linux") {
    return `network isolation needs Linux network namespaces, and this is ${Deno.build.os}: ` +
      "run the command in a Linux container or VM instead";
  }
  const path = io.env("PATH");
  if (!which("bwrap", path)) {
    return "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: apt-get install bubblewrap)";
  }
  if (!which("nsenter", path)) {
    return "nsenter is not installed: install util-linux";
  }
  if (!unixSocketFilter()) {
    return `no seccomp filter for the "${Deno.build.arch}" architecture`;
  }
  // The one test that counts: can bubblewrap make the namespaces here?
  const probe = await new Deno.Command("bwrap", {
    args: [...NAMESPACES, "--", "true"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output().catch((e: Error) => ({
    success: false,
    stderr: new TextEncoder().encode(e.message),
  }));
  if (!probe.success) {
    const why = new TextDecoder().decode(probe.stderr).trim().split("\n")[0].slice(0, 200);
    return `bubblewrap cannot create a network namespace here (${why || "it failed"}): ` +
      "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, " +
      "user.max_user_namespaces, or an AppArmor restriction on them)";
  }
  return null;
}

/**
 * How to start this agentgate again (for the bridge): the binary itself when
 * compiled, else Deno with this source tree's main.ts.
 */
function selfCommand(): string[] {
  if (Deno.build.standalone) return [Deno.execPath()];
  return [Deno.execPath(), "run", "-A", fileURLToPath(new URL("../../main.ts", import.meta.url))];
}

/** The pid of the sandbox's init from bubblewrap's `--info-fd` JSON. */
async function readChildPid(file: Deno.FsFile): Promise<number> {
  const dec = new TextDecoder();
  let text = "";
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    text += dec.decode(buf.subarray(0, n));
    const m = /"child-pid"\s*:\s*(\d+)/.exec(text);
    if (m && text.includes("}")) return Number(m[1]);
  }
  throw new Error("bubblewrap ended before the sandbox started");
}

/** The host pids of the processes the sandbox's init started (the command). */
function sandboxed(initPid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${initPid}/task/${initPid}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Whether a pid's namespace of `kind` is another than ours (then nsenter must enter it too). */
function otherNamespace(pid: number, kind: string): boolean {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/${kind}`) !==
      Deno.readLinkSync(`/proc/self/ns/${kind}`);
  } catch {
    return false;
  }
}

/** What {@link runIsolated} needs to start. */
export interface IsolatedRun {
  cmd: string[];
  env: Record<string, string>;
  /** The proxy the relay forwards to (agentgate's own or `--proxy`). */
  proxy: { host: string; port: number };
  /** The port the command's proxy variables name: the bridge listens there inside. */
  insidePort: number;
  /** Variables of agentgate's own environment the command must not get (tokens, secrets). */
  withheld: readonly string[];
}

/**
 * The environment a command is started with: agentgate's own plus `env`,
 * without the `withheld` variables (the policy's tokens and secrets; a
 * phantom in `env` under a withheld name is the command's to keep).
 *
 * @example
 * childEnvironment({ OPENAI_API_KEY: "sk-proj-agentgate-…" }, ["AGENTGATE_TOKEN", "OPENAI_API_KEY"])
 * // { …Deno.env, OPENAI_API_KEY: "sk-proj-agentgate-…" } without AGENTGATE_TOKEN
 */
export function childEnvironment(
  env: Record<string, string>,
  withheld: readonly string[],
): Record<string, string> {
  const full: Record<string, string> = Deno.env.toObject();
  for (const name of withheld) delete full[name];
  return { ...full, ...env };
}

/**
 * Run a command in the sandbox and return its exit code (126/127 as a shell
 * would when it cannot be started, 1 when the sandbox cannot be set up).
 * SIGINT/SIGTERM are passed on as `run` does without isolation.
 */
export async function runIsolated(
  run: IsolatedRun,
  io: Io,
  signals: { fromTerminal: () => boolean },
): Promise<number> {
  const [program, ...args] = run.cmd;
  if (!which(program, run.env.PATH ?? io.env("PATH"))) {
    io.stderr(`agentgate run: command not found: "${program}"\n`);
    return 127;
  }
  if (io.signal?.aborted) return 143;
  const dir = await Deno.makeTempDir({ prefix: "agentgate-isolate-" });
  await Deno.chmod(dir, 0o700);
  const sock = join(dir, "proxy.sock");
  const infoPath = join(dir, "info");
  const blockPath = join(dir, "block");
  const bpfPath = join(dir, "unix.bpf");
  await Deno.writeFile(bpfPath, unixSocketFilter()!);
  for (const fifo of [infoPath, blockPath]) {
    const made = await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] }).output();
    if (!made.success) throw new Error(`cannot create a FIFO in ${dir}`);
  }

  // The relay: the Unix socket the bridge forwards to, on to the proxy.
  const relayed = new Set<net.Socket>();
  const relay = net.createServer((c) => {
    const up = net.connect({ host: run.proxy.host, port: run.proxy.port });
    for (const s of [c, up]) {
      relayed.add(s);
      s.once("close", () => relayed.delete(s));
    }
    c.on("error", () => up.destroy());
    up.on("error", () => c.destroy());
    c.on("close", () => up.destroy());
    up.on("close", () => c.destroy());
    c.pipe(up);
    up.pipe(c);
  });
  await new Promise<void>((resolve, reject) => {
    relay.once("error", reject);
    relay.listen(sock, () => resolve());
  });

  // bubblewrap's extra descriptors come from a shell's redirections: 3 tells
  // the sandbox's pid, 4 holds it until the bridge is up, 5 is the filter.
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      'i=$1 b=$2 f=$3; shift 3; exec bwrap "$@" 3>"$i" 4<"$b" 5<"$f"',
      "sh",
      infoPath,
      blockPath,
      bpfPath,
      "--die-with-parent",
      ...NAMESPACES,
      "--cap-drop",
      "ALL",
      "--seccomp",
      "5",
      "--info-fd",
      "3",
      "--block-fd",
      "4",
      "--chdir",
      io.cwd,
      "--",
      program,
      ...args,
    ],
    env: childEnvironment(run.env, run.withheld),
    clearEnv: true,
    cwd: io.cwd,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();

  let bridge: Deno.ChildProcess | null = null;
  let initPid = 0;
  const forward = () => {
    const sig = (io.signal?.reason ?? "SIGTERM") as Deno.Signal;
    if (sig === "SIGINT" && signals.fromTerminal()) return;
    // bubblewrap does not pass signals on: signal the command itself.
    for (const pid of sandboxed(initPid)) {
      try {
        Deno.kill(pid, sig === "SIGINT" || sig === "SIGTERM" ? sig : "SIGTERM");
      } catch {
        // Gone already.
      }
    }
  };
  const kill = () => {
    try {
      child.kill("SIGKILL"); // --die-with-parent takes the sandbox with it
    } catch {
      // Gone already.
    }
  };
  io.signal?.addEventListener("abort", forward, { once: true });
  io.forceSignal?.addEventListener("abort", kill, { once: true });
  try {
    // Both FIFOs open once the shell opens its ends (or never, if it failed).
    const opened = Promise.all([
      Deno.open(infoPath, { read: true }),
      Deno.open(blockPath, { write: true }),
    ]);
    const early = child.status.then((s) => s);
    const first = await Promise.race([opened, early]);
    if (!Array.isArray(first)) {
      io.stderr("agentgate run: --isolate: the sandbox did not start\n");
      return first.code === 0 ? 1 : first.code;
    }
    const [info, block] = first;
    try {
      initPid = await Promise.race([
        readChildPid(info),
        early.then((): never => {
          throw new Error("bubblewrap ended before the sandbox started");
        }),
      ]);
    } finally {
      info.close();
    }
    // The bridge joins the sandbox's network namespace (and, when bubblewrap
    // made one, its user namespace: entering a network namespace takes
    // CAP_SYS_ADMIN there), nothing else: it keeps the host's files.
    const enter = otherNamespace(initPid, "user")
      ? ["--user", "--preserve-credentials", "--net"]
      : ["--net"];
    bridge = new Deno.Command("nsenter", {
      args: [
        "--target",
        String(initPid),
        ...enter,
        "--",
        ...selfCommand(),
        "isolate-bridge",
        "--port",
        String(run.insidePort),
        "--socket",
        sock,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const ready = await waitReady(bridge);
    if (ready !== null) {
      io.stderr(`agentgate run: --isolate: the network bridge did not start: ${ready}\n`);
      kill();
      await child.status;
      return 1;
    }
    await block.write(new Uint8Array([1]));
    block.close();
    if (io.signal?.aborted) forward();
    return (await child.status).code;
  } finally {
    io.signal?.removeEventListener("abort", forward);
    io.forceSignal?.removeEventListener("abort", kill);
    if (bridge) await stop(bridge);
    // Connections still open (keep-alive to the proxy) would hold close() forever.
    for (const s of relayed) s.destroy();
    await new Promise((r) => relay.close(r));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Stop the bridge: SIGTERM, then SIGKILL if it is still there after 2 s. */
async function stop(bridge: Deno.ChildProcess): Promise<void> {
  const signal = (sig: Deno.Signal) => {
    try {
      bridge.kill(sig);
    } catch {
      // Gone already.
    }
  };
  await bridge.stdin.close().catch(() => {});
  signal("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    bridge.status,
    new Promise((r) => (timer = setTimeout(r, 2000))),
  ]);
  clearTimeout(timer);
  signal("SIGKILL");
  await bridge.status.catch(() => {});
  await bridge.stdout.cancel().catch(() => {});
  await bridge.stderr.cancel().catch(() => {});
}

/** Wait for the bridge's "ready" line: null, or what went wrong. */
async function waitReady(bridge: Deno.ChildProcess): Promise<string | null> {
  const reader = bridge.stdout.getReader();
  const dec = new TextDecoder();
  let out = "";
  const timeout = new Promise<string>((r) => setTimeout(() => r("no answer in 30 s"), 30_000));
  const read = (async (): Promise<string | null> => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        const err = await new Response(bridge.stderr).text().catch(() => "");
        return err.trim().split("\n").slice(-1)[0] || "it exited";
      }
      out += dec.decode(value);
      if (out.includes("ready\n")) return null;
    }
  })();
  const r = await Promise.race([read, timeout]);
  reader.releaseLock();
  return r;
}

/** The interface of the internal `isolate-bridge` command (not listed in --help). */
export const bridgeSpec: CommandSpec = {
  name: "isolate-bridge",
  summary: "Internal: forward 127.0.0.1:PORT in a sandbox to agentgate's Unix socket.",
  usage: "agentgate isolate-bridge --port PORT --socket PATH",
  options: [
    { name: "port", type: "string", value: "PORT", help: "Port to listen on (127.0.0.1)." },
    { name: "socket", type: "string", value: "PATH", help: "Unix socket to forward to." },
  ],
};

/**
 * `agentgate isolate-bridge`: runs inside the sandbox's network namespace
 * (started by {@link runIsolated} through nsenter). Prints `ready` once it
 * listens; stops when its standard input closes (agentgate run is gone) or
 * on SIGTERM.
 */
export async function isolateBridge(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(bridgeSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(bridgeSpec));
    return 0;
  }
  const port = Number(parsed.opts.port);
  const socket = parsed.opts.socket as string | undefined;
  if (!Number.isInteger(port) || port < 1 || port > 65535 || !socket) {
    throw new UsageError("isolate-bridge needs --port PORT and --socket PATH");
  }
  const server = net.createServer((c) => {
    const up = net.connect({ path: socket });
    c.on("error", () => up.destroy());
    up.on("error", () => c.destroy());
    c.pipe(up);
    up.pipe(c);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
  } catch (e) {
    io.stderr(
      `agentgate isolate-bridge: cannot listen on 127.0.0.1:${port}: ${(e as Error).message}\n`,
    );
    return 1;
  }
  io.stdout("ready\n");
  const stdinClosed = (async () => {
    try {
      for await (const _ of io.stdin ?? new ReadableStream()) {
        // Nothing is sent: the stream only ends.
      }
    } catch {
      // Closed.
    }
  })();
  await Promise.race([
    stdinClosed,
    new Promise<void>((r) => {
      if (!io.signal || io.signal.aborted) return r();
      io.signal.addEventListener("abort", () => r(), { once: true });
    }),
  ]);
  server.close();
  return 0;
}
