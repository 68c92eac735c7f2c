/**
 * `agentgate check`: parse, validate and compile a policy without starting;
 * every problem as `file:line:col: message`.
 *
 * @module
 */
import { type CommandSpec, helpText, parseArgs } from "./args.ts";
import { configOption, formatOption } from "./options.ts";
import type { Io } from "./io.ts";
import { configPathFor } from "./config_arg.ts";
import { loadConfig, loadDefaultConfig } from "../config/load.ts";
import { ConfigError, formatProblem, type Problem } from "../config/errors.ts";
import type { CompiledPolicy } from "../policy/engine.ts";

/** One line per spending, rate and token limit: what it counts (its key and scope). */
export interface LimitLine {
  rule: string;
  /** `file:line` of the rule. */
  source: string;
  policy: string;
  describe: string;
}

/** What each limit of `policy` counts, in rule order. */
export function limitLines(policy: CompiledPolicy): LimitLine[] {
  const out: LimitLine[] = [];
  for (const r of policy.rules) {
    for (const c of r.checkers) {
      const describe = (c as { describe?: () => string }).describe;
      if (describe) {
        out.push({ rule: r.name, source: r.source, policy: c.name, describe: describe.call(c) });
      }
    }
  }
  return out;
}

/** The interface of `check`. */
export const checkSpec: CommandSpec = {
  name: "check",
  summary: "Validate a policy file: syntax, schema, patterns, and rules that cannot work.",
  usage: "agentgate check [--config FILE] [--format text|json|github] [--strict]",
  options: [
    configOption(),
    formatOption(
      ["text", "json", "github"],
      "text (default), json, or github (workflow annotations).",
    ),
    { name: "strict", type: "boolean", help: "Exit 1 on warnings too." },
  ],
  epilog: [
    "Every problem of the policy and the files it includes, in one pass: YAML, schema,",
    "patterns, conditions, policies, and rules that cannot work. A policy check passes is",
    "one serve, run and test accept; one it fails, they refuse.",
    "",
    "stdout: the problems (text: file:line:col: message; json; github annotations);",
    'stderr: the verdict ("ok: …" or "N error(s), M warning(s)", text format only), then',
    "a valid policy's spending, rate and token limits, one line each, saying what each",
    "counts: its key, and whether only its rule's requests (the default) or every",
    "rule's (scope: all). In json they are the `limits` array.",
    "",
    "Exit status: 0 valid, 1 errors (or warnings with --strict), 2 usage error.",
  ].join("\n"),
};

function github(p: Problem): string {
  const esc = (s: string) => s.replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
  const props = (s: string) => esc(s).replace(/:/g, "%3A").replace(/,/g, "%2C");
  const loc = p.line > 0 ? `,line=${p.line},col=${p.col}` : "";
  return `::${p.severity === "error" ? "error" : "warning"} file=${props(p.file)}${loc}::${
    esc(p.message)
  }`;
}

/** Run `check`. */
export async function check(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(checkSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(checkSpec));
    return 0;
  }
  const format = (parsed.opts.format as string | undefined) ?? "text";
  const { path } = configPathFor(parsed.opts.config as string | undefined, io);
  let problems: Problem[];
  let summary = "";
  let limits: LimitLine[] = [];
  try {
    // The same loader every command uses: what fails here fails `serve`, and
    // what passes here starts.
    const loaded = path === undefined ? loadDefaultConfig(io.cwd) : await loadConfig(path, io.cwd);
    problems = loaded.problems;
    const c = loaded.config;
    limits = limitLines(c.policy);
    summary =
      `${c.file}: ${c.policy.rules.length} rule(s), default ${c.policy.defaultAction}, mode ${c.policy.mode}${
        c.format === "agentreserve" ? " (@agentreserve/proxy format)" : ""
      }`;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems = e.problems;
  }
  const errors = problems.filter((p) => p.severity === "error").length;
  const warnings = problems.length - errors;
  // stdout: the problems in the format asked for; stderr: the one-line verdict.
  if (format === "json") {
    io.stdout(
      JSON.stringify({ ok: errors === 0, errors, warnings, problems, limits }, null, 2) + "\n",
    );
  } else if (format === "github") {
    for (const p of problems) io.stdout(github(p) + "\n");
  } else {
    for (const p of problems) io.stdout(formatProblem(p) + "\n");
    io.stderr(
      errors === 0
        ? `ok: ${summary}${warnings ? ` (${warnings} warning(s))` : ""}\n`
        : `${errors} error(s), ${warnings} warning(s)\n`,
    );
    // What each limit counts is prose for the reader, after the verdict (json has `limits`).
    if (errors === 0 && limits.length) {
      io.stderr("limits:\n");
      for (const l of limits) io.stderr(`  ${l.rule} (${l.source}): ${l.describe}\n`);
    }
  }
  return errors > 0 || (parsed.opts.strict && warnings > 0) ? 1 : 0;
}
