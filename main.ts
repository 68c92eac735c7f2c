/**
 * agentgate: a policy-as-code egress proxy for AI agents and CI jobs.
 *
 * argv -> command; the only `Deno.exit()` in the program.
 *
 * @module
 */
import { type Command, type Io, processIo } from "./src/cli/io.ts";
import { UsageError } from "./src/cli/args.ts";
import { permissionProblem } from "./src/cli/permissions.ts";
import { serve } from "./src/cli/serve.ts";
import { didYouMean } from "./src/util/suggest.ts";
import { VERSION } from "./src/version.ts";

/**
 * A command whose modules are loaded when it runs: the long-running `serve`
 * does not hold the code of the others (~2 MiB of live heap; module sources
 * stay in V8's heap for as long as the process lives).
 */
function lazy(load: () => Promise<Command>): Command {
  return async (args, io) => (await load())(args, io);
}

const check = lazy(async () => (await import("./src/cli/check.ts")).check);
const ca = lazy(async () => (await import("./src/cli/ca.ts")).ca);
const scan = lazy(async () => (await import("./src/cli/scan.ts")).scan);
const test = lazy(async () => (await import("./src/cli/test.ts")).test);
const evalCommand = lazy(async () => (await import("./src/cli/eval.ts")).evalCommand);
const replay = lazy(async () => (await import("./src/cli/replay.ts")).replay);
const schema = lazy(async () => (await import("./src/cli/schema.ts")).schema);
const fmt = lazy(async () => (await import("./src/cli/fmt.ts")).fmt);
const run = lazy(async () => (await import("./src/cli/run.ts")).run);
const env = lazy(async () => (await import("./src/cli/env.ts")).env);
const report = lazy(async () => (await import("./src/cli/report.ts")).report);
const isolateBridge = lazy(async () => (await import("./src/cli/isolate.ts")).isolateBridge);

/** Subcommands, in the order `--help` lists them. */
export const COMMANDS: Record<string, { run: Command; summary: string }> = {
  serve: { run: serve, summary: "Run the proxy (default when no command is given)" },
  check: { run: check, summary: "Validate a policy file (file:line:col errors)" },
  ca: { run: ca, summary: "Show the interception CA or write a trust bundle" },
  scan: { run: scan, summary: "Scan a file or stdin for secrets with the DLP detectors" },
  test: { run: test, summary: "Run policy tests (*_test.yaml) through the engine" },
  eval: { run: evalCommand, summary: "Decide one request and explain it rule by rule" },
  replay: {
    run: replay,
    summary: "Re-decide the audit's requests under a new policy; show changes",
  },
  fmt: { run: fmt, summary: "Format policy files in place, keeping comments" },
  schema: { run: schema, summary: "Print the JSON Schema of policy files" },
  run: { run: run, summary: "Run a command through agentgate as one session, then report" },
  env: { run: env, summary: "Print the shell lines that point programs at agentgate" },
  report: { run: report, summary: "Summarise an audit: hosts, denials, rules, LLM spend" },
};

/** Commands agentgate runs itself (not listed in --help). */
const INTERNAL: Record<string, Command> = { "isolate-bridge": isolateBridge };

const TOP_HELP = () =>
  [
    `agentgate ${VERSION} - a policy-as-code egress proxy for AI agents and CI jobs`,
    "",
    "Usage: agentgate [COMMAND] [OPTIONS]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(8)}${c.summary}`),
    "",
    "Options:",
    "  -h, --help     Show help (also: agentgate COMMAND --help)",
    "  -V, --version  Show the version",
    "",
    "Without a command, agentgate runs `serve`: see `agentgate serve --help`.",
    "",
  ].join("\n");

/**
 * Run agentgate with `args` and return the exit code.
 *
 * @example
 * const code = await runMain(["check", "--config", "agentgate.yaml"], memoryIo());
 */
export async function runMain(args: string[], io: Io): Promise<number> {
  const [first, ...rest] = args;
  if (first === "--version" || first === "-V" || first === "version") {
    io.stdout(`agentgate ${VERSION}\n`);
    return 0;
  }
  if (first === "--help" || first === "-h" || first === "help") {
    const cmd = rest[0] && COMMANDS[rest[0]];
    if (cmd) return await cmd.run(["--help"], io);
    io.stdout(TOP_HELP());
    return 0;
  }
  if (first !== undefined && INTERNAL[first]) return await INTERNAL[first](rest, io);
  let name = "serve";
  let cmdArgs = args;
  if (first !== undefined && !first.startsWith("-")) {
    if (!COMMANDS[first]) {
      io.stderr(
        `agentgate: unknown command "${first}"${didYouMean(first, Object.keys(COMMANDS))}\n` +
          "Run `agentgate --help` for the list of commands.\n",
      );
      return 2;
    }
    name = first;
    cmdArgs = rest;
  }
  try {
    return await COMMANDS[name].run(cmdArgs, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`agentgate ${name}: ${e.message}\nRun \`agentgate ${name} --help\` for usage.\n`);
      return 2;
    }
    const missing = permissionProblem(e);
    if (missing !== null) {
      io.stderr(`agentgate ${name}: ${missing}\n`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) {
  // A permission missing in a callback (a timer, a socket handler) escapes
  // runMain's try: it still ends in one line, not a stack trace.
  const onEscaped = (reason: unknown, prevent: () => void) => {
    const missing = permissionProblem(reason);
    if (missing === null) return;
    prevent();
    Deno.stderr.writeSync(new TextEncoder().encode(`agentgate: ${missing}\n`));
    Deno.exit(1);
  };
  globalThis.addEventListener(
    "unhandledrejection",
    (e) => onEscaped(e.reason, () => e.preventDefault()),
  );
  globalThis.addEventListener("error", (e) => onEscaped(e.error, () => e.preventDefault()));
  const stop = new AbortController();
  const force = new AbortController();
  let signals = 0;
  const onSignal = (sig: Deno.Signal) => {
    signals++;
    if (signals === 1) stop.abort(sig);
    else if (signals === 2) {
      // A second Ctrl-C means "now": commands get a moment to clean up
      // (agentgate run kills its child, removes its temporary files).
      force.abort(sig);
      setTimeout(() => Deno.exit(130), 3000);
    } else Deno.exit(130);
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(sig, () => onSignal(sig));
    } catch {
      // SIGTERM cannot be listened to on Windows.
    }
  }
  const code = await runMain(Deno.args, processIo(stop.signal, force.signal));
  Deno.exit(code);
}
