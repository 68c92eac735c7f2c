/**
 * Declarative argument parsing for every subcommand: one spec gives the
 * parser, `--help`, and "unknown option (did you mean …?)". Written here
 * rather than taken from commander because commands must return exit codes
 * (commander exits the process and keeps global state), and the whole thing
 * is small.
 *
 * @module
 */
import { didYouMean, suggest } from "../util/suggest.ts";

/** One option of a command. */
export interface OptionSpec {
  /** Long name without dashes (`config`, `no-dashboard`). */
  name: string;
  short?: string;
  /** boolean flag, one string value, or a repeatable value. */
  type: "boolean" | "string" | "list";
  /** Placeholder in help (`FILE`). */
  value?: string;
  help: string;
  /** Allowed values, checked at parse time. */
  choices?: readonly string[];
}

/** A command's interface. */
export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec[];
  /** Help lines after the options (examples, notes). */
  epilog?: string;
  /** Accepts positional arguments (else any is an error). */
  positionals?: boolean;
  /** Everything after `--` is passed through untouched. */
  passthrough?: boolean;
}

/** Parsed arguments. */
export interface Parsed {
  opts: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Arguments after `--`. */
  rest: string[];
}

const HELP: OptionSpec = { name: "help", short: "h", type: "boolean", help: "Show this help." };

/** Usage error: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Parse `argv` against a spec; throws {@link UsageError}.
 *
 * @example
 * parseArgs(serveSpec, ["--config", "a.yaml", "--no-dashboard"])
 * // { opts: { config: "a.yaml", "no-dashboard": true }, positionals: [], rest: [] }
 */
export function parseArgs(spec: CommandSpec, argv: string[]): Parsed {
  const all = [...spec.options, HELP];
  const byLong = new Map(all.map((o) => [o.name, o]));
  const byShort = new Map(all.filter((o) => o.short).map((o) => [o.short!, o]));
  const out: Parsed = { opts: {}, positionals: [], rest: [] };
  const set = (o: OptionSpec, value: string | true) => {
    if (o.choices && typeof value === "string" && !o.choices.includes(value)) {
      throw new UsageError(
        `invalid value "${value}" for --${o.name}: expected one of ${o.choices.join(", ")}${
          didYouMean(value, o.choices)
        }`,
      );
    }
    if (o.type === "list") {
      ((out.opts[o.name] as string[] | undefined) ??= []).push(value as string);
    } else out.opts[o.name] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      if (!spec.passthrough) throw new UsageError(`"${spec.name}" takes no arguments after "--"`);
      out.rest = argv.slice(i + 1);
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq === -1 ? undefined : eq);
      const o = byLong.get(name);
      if (!o) {
        const near = suggest(name, all.map((x) => x.name));
        throw new UsageError(
          `unknown option "--${name}" for "${spec.name}"${
            near === null ? "" : ` (did you mean "--${near}"?)`
          }`,
        );
      }
      if (o.type === "boolean") {
        if (eq !== -1) throw new UsageError(`option "--${name}" takes no value`);
        set(o, true);
      } else {
        const v = eq !== -1 ? arg.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new UsageError(`option "--${name}" needs a value`);
        set(o, v);
      }
      continue;
    }
    if (arg.startsWith("-") && arg.length > 1) {
      const o = byShort.get(arg.slice(1, 2));
      if (!o || (arg.length > 2 && o.type === "boolean")) {
        throw new UsageError(`unknown option "${arg}" for "${spec.name}"`);
      }
      if (o.type === "boolean") set(o, true);
      else {
        const v = arg.length > 2 ? arg.slice(2) : argv[++i];
        if (v === undefined) throw new UsageError(`option "-${o.short}" needs a value`);
        set(o, v);
      }
      continue;
    }
    if (spec.passthrough && !spec.positionals) {
      out.rest = argv.slice(i);
      break;
    }
    if (!spec.positionals) {
      throw new UsageError(`unexpected argument "${arg}" for "${spec.name}"`);
    }
    out.positionals.push(arg);
  }
  return out;
}

/** The `--help` text of a command. */
export function helpText(spec: CommandSpec): string {
  const rows = [...spec.options, HELP].map((o) => {
    const flag = `${o.short ? `-${o.short}, ` : "    "}--${o.name}${o.value ? ` ${o.value}` : ""}`;
    return [flag, o.help + (o.type === "list" ? " (repeatable)" : "")] as const;
  });
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  return [
    spec.summary,
    "",
    `Usage: ${spec.usage}`,
    "",
    "Options:",
    ...rows.map(([f, h]) => `  ${f.padEnd(width)}${h}`),
    ...(spec.epilog ? ["", spec.epilog] : []),
    "",
  ].join("\n");
}
