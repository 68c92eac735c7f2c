/**
 * The world a command sees. Commands take `(args, io)` and return an exit code;
 * only `main.ts` exits, so every command runs in-process in tests.
 *
 * @module
 */

/** Streams, environment and working directory of one command invocation. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
  env(name: string): string | undefined;
  cwd: string;
  /** Standard input, when the command reads it (`-`). */
  stdin?: ReadableStream<Uint8Array>;
  /** Aborted when the process is asked to stop (SIGINT / SIGTERM). */
  signal?: AbortSignal;
  /**
   * Aborted on a second SIGINT / SIGTERM ("stop now"): clean up quickly; the
   * process exits 3 s later regardless.
   */
  forceSignal?: AbortSignal;
  /** Registers a listener for SIGHUP ("reload your configuration"). */
  onHangup?: (listener: () => void) => void;
}

/** A subcommand: parse `args`, do the work, return the exit code. */
export type Command = (args: string[], io: Io) => Promise<number>;

/** The Io of the real process. */
export function processIo(signal?: AbortSignal, forceSignal?: AbortSignal): Io {
  const onHangup = (listener: () => void): void => {
    try {
      Deno.addSignalListener("SIGHUP", listener);
    } catch {
      // No SIGHUP on Windows.
    }
  };
  const enc = new TextEncoder();
  // writeSync may write fewer bytes than asked (pipes): loop until all are out.
  // A reader that went away (`agentgate check | head -1`) is not an error of
  // the command: the rest of that stream's output is dropped, as a shell tool
  // killed by SIGPIPE would drop it.
  const writer = (w: { writeSync(p: Uint8Array): number }) => {
    let gone = false;
    return (text: string) => {
      let bytes = enc.encode(text);
      try {
        while (!gone && bytes.length > 0) bytes = bytes.subarray(w.writeSync(bytes));
      } catch (e) {
        if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
        gone = true;
      }
    };
  };
  return {
    stdout: writer(Deno.stdout),
    stderr: writer(Deno.stderr),
    env: (n) => Deno.env.get(n),
    cwd: Deno.cwd(),
    stdin: Deno.stdin.readable,
    signal,
    forceSignal,
    onHangup,
  };
}

/** An Io that records output, for tests. */
export function memoryIo(opts: { env?: Record<string, string>; cwd?: string } = {}): Io & {
  out: string[];
  err: string[];
} {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    env: (n) => opts.env?.[n],
    cwd: opts.cwd ?? Deno.cwd(),
  };
}
