/**
 * `agentgate replay`: what a proposed policy would have decided for the
 * traffic in the audit, and what changes.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { auditOption, configOption, formatOption, sinceOption } from "./options.ts";
import type { Io } from "./io.ts";
import { loadForCommand } from "./config_arg.ts";
import { parseTime } from "../util/time.ts";
import { replay as replayRows } from "../policytest/replay.ts";
import { AuditReadError } from "../audit/read.ts";
import { openAuditFile } from "../audit/sqlite_read.ts";
import { pgSource } from "../util/pg_url.ts";
import { replayJson, replayMarkdown, replayText } from "../policytest/replay_report.ts";

/** The interface of `replay`. */
export const replaySpec: CommandSpec = {
  name: "replay",
  summary: "Re-decide the requests recorded in the audit under a proposed policy; show changes.",
  usage: "agentgate replay --config NEW [--audit FILE] [--since 7d] [--examples N]\n" +
    "                        [--format text|markdown|json] [--fail-on-change deny|any]",
  options: [
    configOption(
      "The proposed policy (default: ./agentgate.yaml if present, else the embedded default).",
    ),
    auditOption(),
    sinceOption('Replay requests since a duration ago ("7d", the default), an ISO time, or "all".'),
    formatOption(
      ["text", "markdown", "json"],
      "text (default), markdown (a pull-request comment), or json.",
    ),
    {
      name: "examples",
      type: "string",
      value: "N",
      help: "Examples shown per group (default 5).",
    },
    {
      name: "fail-on-change",
      type: "string",
      value: "WHAT",
      choices: ["deny", "any"],
      help: "Exit 1 when an allowed request would now be denied (deny) or on any change (any).",
    },
  ],
  epilog: [
    "Requests are replayed oldest first from their recorded method, URL, headers (secrets masked),",
    "session and client, with rate-limit and spending state (recorded costs) rebuilt as they go.",
    'Bodies are not recorded: a request whose decision needs its body is counted as "needs body".',
    "Rows that hold no policy decision (proxy authentication, loops, aborted before the decision)",
    "are skipped and counted.",
    "",
    "Exit status: 0 done, 1 --fail-on-change matched or the policy or audit cannot be read,",
    "2 usage error.",
  ].join("\n"),
};

/** When `--since` starts, or null for everything. */
function parseSince(v: string | undefined, now: number): number | null {
  if (v === undefined) return now - 7 * 86_400_000;
  if (v === "all") return null;
  const t = parseTime(v, { forms: ["ago", "iso"], now, zone: "required" });
  if (t.ok) return t.ms;
  throw new UsageError(
    `invalid --since "${v}": use a duration such as "7d", an ISO time such as "2026-03-01T00:00:00Z", or "all"`,
  );
}

/** Run `replay`. */
export async function replay(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(replaySpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(replaySpec));
    return 0;
  }
  const since = parseSince(parsed.opts.since as string | undefined, Date.now());
  let examples = 5;
  if (parsed.opts.examples !== undefined) {
    examples = Number(parsed.opts.examples);
    if (!Number.isInteger(examples) || examples < 0) {
      throw new UsageError(`invalid --examples "${parsed.opts.examples}": expected a whole number`);
    }
  }
  const got = await loadForCommand(parsed.opts.config as string | undefined, io, { quiet: true });
  if (got === null) return 1;
  const config = got.loaded.config;
  const auditOpt = parsed.opts.audit as string | undefined;
  const auditPath = auditOpt === undefined
    ? config.audit.path
    : isAbsolute(auditOpt)
    ? auditOpt
    : resolve(io.cwd, auditOpt);
  let rows;
  try {
    // Without --audit, the policy's audit: its PostgreSQL database when it names one.
    const reader = auditOpt === undefined && config.audit.postgres !== null
      ? (await import("../audit/pg_read.ts")).openPgAuditReader(config.audit.postgres, io.env)
      : openAuditFile(auditPath);
    try {
      rows = await reader.rowsSince(since ?? Number.MIN_SAFE_INTEGER);
    } finally {
      await reader.close();
    }
  } catch (e) {
    if (!(e instanceof AuditReadError)) throw e;
    io.stderr(`agentgate replay: ${e.message}\n`);
    return 1;
  }
  const report = replayRows(config, rows, { examples });
  const ctx = {
    config: config.file,
    audit: auditOpt ??
      (config.audit.postgres !== null ? pgSource(config.audit.postgres) : auditPath),
    since,
  };
  const format = (parsed.opts.format as string | undefined) ?? "text";
  io.stdout(
    format === "markdown"
      ? replayMarkdown(report, ctx)
      : format === "json"
      ? replayJson(report, ctx)
      : replayText(report, ctx),
  );
  const failOn = parsed.opts["fail-on-change"] as string | undefined;
  const c = report.counts;
  if (failOn === "deny" && c.allow_to_deny > 0) return 1;
  if (failOn === "any" && c.allow_to_deny + c.deny_to_allow + c.rule_changed > 0) return 1;
  return 0;
}
