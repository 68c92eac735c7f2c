/**
 * Release build: one self-contained binary per target in dist/.
 *
 *   deno task compile                 # all four targets
 *   deno task compile x86_64-unknown-linux-gnu
 *
 * `deno compile` downloads the `denort` runtime for each target from Deno's
 * download host; machines without access to it cannot build releases (tests
 * never need the binary: they run main.ts with `deno run`).
 *
 * @module
 */
import meta from "../deno.json" with { type: "json" };
import { V8_FLAGS } from "./v8_flags.ts";

const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
];

// Permissions the binary runs with, the V8 flags `deno task start` uses, and
// the modules outside main.ts's import graph: a worker's main module is only
// named in `new Worker(new URL(…))`, which `deno compile` does not follow.
export const WORKER_MODULES = ["src/config/load_worker.ts"];
const FLAGS = [
  ...WORKER_MODULES.flatMap((m) => ["--include", m]),
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-run",
  V8_FLAGS,
];

if (!import.meta.main) {
  // Imported by a test for WORKER_MODULES: build nothing.
} else {
  const targets = Deno.args.length ? Deno.args : TARGETS;
  for (const t of targets) {
    if (!TARGETS.includes(t)) {
      console.error(`unknown target "${t}"; known: ${TARGETS.join(", ")}`);
      Deno.exit(2);
    }
  }
  let failed = 0;
  for (const target of targets) {
    const output = `dist/agentgate-${meta.version}-${target}`;
    console.log(`compile ${target} -> ${output}`);
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["compile", ...FLAGS, "--target", target, "--output", output, "main.ts"],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (code !== 0) failed++;
  }
  Deno.exit(failed ? 1 : 0);
}
