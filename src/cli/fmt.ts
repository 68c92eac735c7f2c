/**
 * `agentgate fmt`: canonical formatting of policy files, in place, keeping
 * comments.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { configOption } from "./options.ts";
import type { Io } from "./io.ts";
import { loadConfig } from "../config/load.ts";
import { ConfigError, formatProblem } from "../config/errors.ts";
import { formatYaml } from "../policytest/format.ts";

/** The interface of `fmt`. */
export const fmtSpec: CommandSpec = {
  name: "fmt",
  summary: "Format policy files in place (2-space indent, comments kept).",
  usage: "agentgate fmt [--check] [--config FILE] [FILE|DIR...]",
  positionals: true,
  options: [
    {
      name: "check",
      type: "boolean",
      help: "Change nothing; list the files that are not formatted and exit 1 if any.",
    },
    configOption(
      "Format this policy and its includes (default: ./agentgate.yaml).",
    ),
  ],
  epilog: [
    "Without FILE, formats the policy and every file it includes. A DIR means every *.yaml and",
    "*.yml file below it (policy tests too). Comments, blank lines, quoting and flow style",
    "({ a: 1 }, [a, b]) are kept; long lines are never wrapped (a folded > string keeps its width).",
    "",
    "stdout: the files that changed (with --check: that would change), one per line; stderr: a",
    "summary.",
    "",
    "Exit status: 0 done (or all formatted with --check), 1 a file is not formatted (--check) or",
    "cannot be read or parsed, 2 usage error.",
  ].join("\n"),
};

function yamlFilesUnder(dir: string, out: string[], depth = 0): void {
  for (const e of Deno.readDirSync(dir)) {
    const full = join(dir, e.name);
    if (e.isDirectory) {
      if (depth < 32 && !e.name.startsWith(".") && e.name !== "node_modules") {
        yamlFilesUnder(full, out, depth + 1);
      }
    } else if (e.isFile && /\.ya?ml$/.test(e.name)) out.push(full);
  }
}

/** Run `fmt`. */
export async function fmt(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(fmtSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(fmtSpec));
    return 0;
  }
  const check = parsed.opts.check === true;
  const files: string[] = [];
  if (parsed.positionals.length) {
    if (parsed.opts.config !== undefined) {
      throw new UsageError("give either --config or files, not both");
    }
    for (const p of parsed.positionals) {
      const abs = isAbsolute(p) ? p : resolve(io.cwd, p);
      let dir: boolean;
      try {
        dir = statSync(abs).isDirectory();
      } catch {
        io.stderr(`${p}: file not found\n`);
        return 1;
      }
      if (dir) {
        const found: string[] = [];
        yamlFilesUnder(abs, found);
        files.push(...found.sort());
      } else files.push(abs);
    }
  } else {
    let path = parsed.opts.config as string | undefined;
    if (path === undefined) {
      if (!existsSync(resolve(io.cwd, "agentgate.yaml"))) {
        throw new UsageError(
          "no ./agentgate.yaml here: name the files, or the policy with --config",
        );
      }
      path = "agentgate.yaml";
    }
    try {
      const { config } = await loadConfig(path, io.cwd);
      files.push(...config.files);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      for (const p of e.problems) io.stderr(formatProblem(p) + "\n");
      io.stderr(
        "agentgate fmt: the policy does not load, so its includes are unknown; fix it, or name the files\n",
      );
      return 1;
    }
  }
  const unique = [...new Set(files)];
  let changed = 0;
  let failed = 0;
  for (const abs of unique) {
    const shown = relative(io.cwd, abs) || abs;
    let text: string;
    try {
      text = await Deno.readTextFile(abs);
    } catch (e) {
      io.stderr(`${shown}: ${(e as Error).message}\n`);
      failed++;
      continue;
    }
    const r = formatYaml(text, shown);
    if ("problems" in r) {
      for (const p of r.problems) io.stderr(formatProblem(p) + "\n");
      failed++;
      continue;
    }
    if (r.text === text) continue;
    changed++;
    // stdout: the files (would) change, one per line; stderr: what was done.
    if (!check) await Deno.writeTextFile(abs, r.text);
    io.stdout(`${shown}\n`);
  }
  const n = unique.length;
  if (check) {
    io.stderr(
      changed
        ? `${changed} of ${n} file(s) not formatted: run agentgate fmt\n`
        : `all ${n} file(s) are formatted\n`,
    );
  } else io.stderr(`${changed} of ${n} file(s) changed\n`);
  return failed > 0 || (check && changed > 0) ? 1 : 0;
}
