/**
 * `deno task test`: the whole suite (`deno test --allow-all --parallel`, with
 * any arguments passed on), then one line per group of tests that was skipped
 * because a tool is missing (Chromium, zsh, fish, PowerShell), saying what was
 * skipped and how to get it. Deno lists a skipped test as "ignored" among
 * hundreds of lines; these lines come last, where a reader looks.
 *
 *   deno task test
 *   deno task test tests/cli_test.ts --filter check
 *
 * Every agentgate the tests start gets a throwaway `AGENTGATE_HOME` unless its
 * test names one: a default audit, CA or spend journal never lands in the
 * user's `~/.agentgate` (where a database from another build would also make
 * the test fail).
 *
 * Exit status: deno test's.
 *
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { prerequisite, TOOLS } from "../tests/support/prerequisites.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Whether the run covers `file` (relative to the repository): no path given, or one holding it. */
function covers(file: string, args: string[]): boolean {
  const paths = args.filter((a) => !a.startsWith("-")).map((a) => resolve(a)).filter((p) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false; // a flag's value (--filter NAME), not a path
    }
  });
  if (paths.length === 0) return true;
  const abs = resolve(ROOT, file);
  return paths.some((p) => abs === p || abs.startsWith(p.endsWith("/") ? p : `${p}/`));
}

if (import.meta.main) {
  const home = await Deno.makeTempDir({ prefix: "agentgate-test-home-" });
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", "--parallel", ...Deno.args],
    env: { AGENTGATE_HOME: home },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  await Deno.remove(home, { recursive: true }).catch(() => {});
  const skipped = TOOLS.map(prerequisite).filter((p) => !p.found && covers(p.file, Deno.args));
  if (skipped.length) console.error("");
  for (const p of skipped) console.error(p.line);
  Deno.exit(status.code);
}
