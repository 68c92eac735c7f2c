/**
 * The options several commands share, declared once so a flag keeps one
 * name, short letter and placeholder everywhere (`-c` is always `--config`).
 * A command passes its own help text where the option means something
 * narrower for it ("Policy whose audit.path to read").
 *
 * @example
 * ```ts
 * import { configOption, formatOption } from "./options.ts";
 * const options = [
 *   configOption(),
 *   formatOption(["text", "json"], "text (default) or json."),
 * ];
 * ```
 *
 * @module
 */
import type { OptionSpec } from "./args.ts";

/** The `--config` help of a command that falls back to the embedded default policy. */
export const CONFIG_HELP =
  "Policy file (default: ./agentgate.yaml if present, else the embedded default).";

/**
 * `-c, --config FILE`: the policy the command uses (see `loadForCommand`).
 *
 * @example
 * ```ts
 * configOption("Policy whose tls.ca_dir to use (default: ./agentgate.yaml if present).");
 * ```
 */
export function configOption(help: string = CONFIG_HELP): OptionSpec {
  return { name: "config", short: "c", type: "string", value: "FILE", help };
}

/**
 * `-f, --format FORMAT`: how the command prints its result; the first choice
 * is the default, and the help says what each one is for.
 *
 * @example
 * ```ts
 * formatOption(["text", "json", "junit"], "text (default), json, or junit (XML for CI).");
 * ```
 */
export function formatOption(choices: readonly string[], help: string): OptionSpec {
  return { name: "format", short: "f", type: "string", value: "FORMAT", choices, help };
}

/**
 * `-a, --audit FILE`: the audit database to read instead of the policy's
 * `audit.path`.
 *
 * @example
 * ```ts
 * auditOption("Audit database to read (default: the policy's audit.path).");
 * ```
 */
export function auditOption(
  help = "Audit database (default: the policy's audit.path).",
): OptionSpec {
  return { name: "audit", short: "a", type: "string", value: "FILE", help };
}

/**
 * `--since WHEN`: the start of the audit window a command reads; the help
 * states the command's default and the forms it accepts.
 *
 * @example
 * ```ts
 * sinceOption('Only requests since WHEN: a duration before now ("1h", "7d"), an ISO date, or ms.');
 * ```
 */
export function sinceOption(help: string): OptionSpec {
  return { name: "since", type: "string", value: "WHEN", help };
}

/**
 * `-p, --proxy URL`: a running agentgate, credentials included, instead of the
 * one the config describes.
 *
 * @example
 * ```ts
 * proxyOption("Proxy to point at: http://SESSION:TOKEN@HOST:PORT.");
 * ```
 */
export function proxyOption(help: string): OptionSpec {
  return { name: "proxy", short: "p", type: "string", value: "URL", help };
}
