/**
 * Release build: one self-contained binary per target, plus `SHA256SUMS`.
 *
 *   deno task compile                              # all four targets into dist/
 *   deno task compile x86_64-unknown-linux-gnu     # one target
 *   deno task compile --out-dir out x86_64-apple-darwin
 *   DENORT_BIN=/path/to/denort deno task compile x86_64-unknown-linux-gnu   # offline
 *
 * `deno compile` downloads the `denort` runtime of each target from Deno's
 * download host. Where that host is out of reach the build stops at the first
 * failure with one line saying why and one saying what to do offline, and
 * leaves no empty output directory behind. Tests never need a binary: they run
 * main.ts with `deno run`.
 *
 * stdout: the files written, one per line (binaries, then SHA256SUMS);
 * stderr: progress and errors. Exit status: 0 built, 1 a build failed, 2 usage.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import meta from "../deno.json" with { type: "json" };
import { PERMISSION_FLAGS, V8_FLAGS } from "./v8_flags.ts";

/** The release targets, in build order. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

/**
 * Modules outside main.ts's import graph: a worker's main module is only
 * named in `new Worker(new URL(…))`, which `deno compile` does not follow, so
 * each is passed with `--include` (tests/compile_test.ts finds every worker).
 */
export const WORKER_MODULES = ["src/config/load_worker.ts"];

/** The repository root (where deno.json and main.ts are). */
const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** File name of a target's binary. */
export function binaryName(target: string): string {
  return `agentgate-${meta.version}-${target}`;
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * Why `deno compile` failed, in one line, from its stderr (a chain of
 * "Caused by" lines and a backtrace otherwise).
 *
 * @example
 * ```ts
 * failureReason("error: Writing …\n\nCaused by:\n    0: Setting up base binary.\n" +
 *   "    1: error sending request for url (https://dl.deno.land/…): client error (Connect): dns error\n", "x86_64-apple-darwin");
 * // 'cannot download the Deno runtime (denort) for x86_64-apple-darwin from https://dl.deno.land/…: dns error'
 * ```
 */
export function failureReason(stderr: string, target: string): string {
  const text = stderr.replace(ANSI, "");
  const chain = text.split(/^Stack backtrace:/m)[0];
  const causes = [...chain.matchAll(/^\s+\d+: (.+)$/gm)].map((m) => m[1].trim());
  const missing = /Could not find denort at '([^']+)'/.exec(text);
  if (missing) return `DENORT_BIN points at "${missing[1]}", which does not exist`;
  const url = /error sending request for url \(([^)]+)\)/.exec(text)?.[1];
  if (url) {
    const deepest = causes.at(-1) ?? "no answer";
    return `cannot download the Deno runtime (denort) for ${target} from ${url}: ${deepest}`;
  }
  const first = /^error: (.+)$/m.exec(text)?.[1] ?? text.trim().split("\n")[0] ?? "unknown error";
  return causes.length ? `${first}: ${causes.at(-1)}` : first;
}

/** What to do where the download host cannot be reached. */
export function offlineHint(target: string): string {
  const v = Deno.version.deno;
  return `offline: on a machine that reaches dl.deno.land, fetch ` +
    `https://dl.deno.land/release/v${v}/denort-${target}.zip, unzip it here, then run ` +
    `DENORT_BIN=$PWD/denort deno task compile ${target} (one target per run); ` +
    `or build the release with docs/github-actions/release.yml`;
}

/** Hex SHA-256 of a file. */
async function sha256(file: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(file));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function usage(message: string): number {
  console.error(`compile: ${message}`);
  console.error(
    "usage: deno task compile [--out-dir DIR] [TARGET...]  (targets: " +
      `${TARGETS.join(", ")})`,
  );
  return 2;
}

/** Build the binaries; returns the exit status. */
export async function compile(args: string[]): Promise<number> {
  let outDir = "dist";
  const targets: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--out-dir") {
      const v = args[++i];
      if (v === undefined) return usage('"--out-dir" needs a directory');
      outDir = v;
    } else if (a.startsWith("--out-dir=")) outDir = a.slice("--out-dir=".length);
    else if (a.startsWith("-")) return usage(`unknown option "${a}"`);
    else if (!(TARGETS as readonly string[]).includes(a)) {
      return usage(`unknown target "${a}"`);
    } else targets.push(a);
  }
  if (targets.length === 0) targets.push(...TARGETS);
  if (Deno.env.get("DENORT_BIN") && targets.length !== 1) {
    // One denort binary is one target's runtime: building the others with it
    // would ship binaries for the wrong platform.
    return usage("DENORT_BIN is set: name the one target its denort binary is for");
  }
  const out = resolve(outDir);
  await Deno.mkdir(out, { recursive: true });
  const built: string[] = [];
  for (const target of targets) {
    const output = join(out, binaryName(target));
    console.error(`compile: ${target} -> ${output}`);
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "compile",
        "--quiet",
        ...PERMISSION_FLAGS,
        V8_FLAGS,
        ...WORKER_MODULES.flatMap((m) => ["--include", join(ROOT, m)]),
        "--target",
        target,
        "--output",
        output,
        join(ROOT, "main.ts"),
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (r.code !== 0) {
      console.error(
        `compile: ${target} failed: ${failureReason(new TextDecoder().decode(r.stderr), target)}`,
      );
      console.error(`compile: ${offlineHint(target)}`);
      const left = targets.slice(targets.indexOf(target) + 1);
      if (left.length) console.error(`compile: not attempted: ${left.join(", ")}`);
      await removeIfEmpty(out);
      return 1;
    }
    built.push(output);
  }
  const sums = await Promise.all(built.map(async (f) => `${await sha256(f)}  ${basename(f)}\n`));
  const sumsFile = join(out, "SHA256SUMS");
  await Deno.writeTextFile(sumsFile, sums.join(""));
  for (const f of [...built, sumsFile]) console.log(f);
  return 0;
}

/** Remove the output directory when nothing is in it (no empty dist/ after a failure). */
async function removeIfEmpty(dir: string): Promise<void> {
  for await (const _ of Deno.readDir(dir)) return;
  await Deno.remove(dir);
}

if (import.meta.main) Deno.exit(await compile(Deno.args));
