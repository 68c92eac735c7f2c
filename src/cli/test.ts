/**
 * `agentgate test`: policy unit tests in `*_test.yaml` files, run through the
 * real engine with injected time and state (no network).
 *
 * @module
 */
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { formatOption } from "./options.ts";
import type { Io } from "./io.ts";
import { runPolicyTests, type TestEvent } from "../policytest/runner.ts";
import {
  jsonReporter,
  junitReporter,
  type Reporter,
  summarize,
  textReporter,
} from "../policytest/report.ts";

/** The interface of `test`. */
export const testSpec: CommandSpec = {
  name: "test",
  summary: "Run policy tests (*_test.yaml): expected decisions for example requests.",
  usage: "agentgate test [PATH...] [--format text|json|junit] [--fail-on-empty] [--run REGEX]",
  positionals: true,
  options: [
    formatOption(
      ["text", "json", "junit"],
      "text (default: a diff for each failure), json, or junit (XML for CI).",
    ),
    {
      name: "run",
      short: "r",
      type: "string",
      value: "REGEX",
      help: "Only run tests whose name matches the regular expression.",
    },
    { name: "fail-on-empty", type: "boolean", help: "Exit 1 when no test is found." },
  ],
  epilog: [
    "PATH is a test file or a directory searched for *_test.yaml (default: the current directory).",
    "Each file names its policy with config: (relative to the file; default: agentgate.yaml in its",
    "directory or a parent) and lists tests: request, given (earlier requests, spend), now, expect,",
    "todo. An https:// URL is an intercepted request when its host is in tls.intercept, else a",
    "CONNECT tunnel (host and port only).",
    "",
    "Exit status: 0 all passed, 1 a test failed or a file has errors (or no test with",
    "--fail-on-empty), 2 usage error.",
  ].join("\n"),
};

/** Run `test`. */
export async function test(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(testSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(testSpec));
    return 0;
  }
  let run: RegExp | undefined;
  if (parsed.opts.run !== undefined) {
    try {
      run = new RegExp(parsed.opts.run as string);
    } catch (e) {
      throw new UsageError(`invalid --run regular expression: ${(e as Error).message}`);
    }
  }
  const format = (parsed.opts.format as string | undefined) ?? "text";
  const write = (s: string) => io.stdout(s);
  const reporter: Reporter = format === "json"
    ? jsonReporter(write)
    : format === "junit"
    ? junitReporter(write)
    : textReporter(write);
  const t0 = performance.now();
  const events: TestEvent[] = [];
  for await (const e of runPolicyTests({ paths: parsed.positionals, cwd: io.cwd, run })) {
    events.push(e);
    reporter.event(e);
  }
  const summary = summarize(events, performance.now() - t0);
  reporter.end(summary);
  if (summary.failed + summary.fileErrors > 0) return 1;
  const found = summary.passed + summary.skipped;
  if (found === 0 && parsed.opts["fail-on-empty"]) {
    if (format !== "text") io.stderr("agentgate test: no tests found\n");
    return 1;
  }
  return 0;
}
