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

const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
];

// Permissions the binary runs with, and the V8 flags `deno task start` uses
// (a small young generation keeps peak memory flat on bulk transfers, a heap
// growing factor of 2 keeps the old generation near its live set; tests/helpers.ts).
const FLAGS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-run",
  "--v8-flags=--max-semi-space-size=1,--heap-growing-percent=100",
];

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
