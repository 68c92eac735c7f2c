/**
 * `agentgate report`: what went through the proxy, from any audit database —
 * requests by host and decision, every denial with its rule and reason, top
 * rules, LLM tokens and spend by model. `agentgate run` prints the same for
 * its session.
 *
 * @module
 */
import { resolve } from "node:path";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { auditOption, configOption, formatOption, sinceOption } from "./options.ts";
import type { Io } from "./io.ts";
import { loadForCommand } from "./config_arg.ts";
import * as time from "../util/time.ts";
import {
  buildReport,
  openAuditForReport,
  openConfiguredAudit,
  ReportSourceError,
} from "../report/build.ts";
import { AuditReadError } from "../audit/read.ts";
import { formatReport, REPORT_FORMATS, type ReportFormat } from "../report/format.ts";

/** The interface of `report`. */
export const reportSpec: CommandSpec = {
  name: "report",
  summary: "Summarise an audit: requests by host, denials with reasons, top rules, LLM spend.",
  usage: "agentgate report [--config FILE | --audit FILE] [--since WHEN] [--until WHEN]\n" +
    "                        [--session ID] [--format text|markdown|json]",
  options: [
    configOption(
      "Policy whose audit.path to read (default: ./agentgate.yaml if present).",
    ),
    auditOption("Audit database to read (default: the policy's audit.path)."),
    sinceOption(
      'Only requests since WHEN: a duration before now ("1h", "7d"), an ISO date, or ms.',
    ),
    { name: "until", type: "string", value: "WHEN", help: "Only requests until WHEN." },
    {
      name: "session",
      type: "string",
      value: "ID",
      help: "Only one session (the id `agentgate run` prints, e.g. nightly-0a1b2c3d4e5f6a7b).",
    },
    formatOption(REPORT_FORMATS, "text (default), markdown (GitHub-flavoured) or json."),
  ],
  epilog: [
    "The database is opened read-only; a proxy may keep writing to it.",
    "",
    "Examples:",
    "  agentgate report --since 24h",
    "  agentgate report --session nightly-0a1b2c3d4e5f6a7b --format markdown >> $GITHUB_STEP_SUMMARY",
    "  agentgate report --audit /var/lib/agentgate/agentgate.db --format json | jq .denials",
  ].join("\n"),
};

/** Run `report`. */
export async function report(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(reportSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(reportSpec));
    return 0;
  }
  const now = Date.now();
  const when = (name: "since" | "until"): number | null => {
    const v = parsed.opts[name];
    if (typeof v !== "string") return null;
    const t = time.parseTime(v, { now });
    if (t.ok) return t.ms;
    throw new UsageError(
      t.problem === "duration"
        ? `--${name}: ${t.detail}`
        : `--${name} must be ${time.describeTimeForms()}, not "${v}"`,
    );
  };
  const since = when("since");
  const until = when("until");
  const format = (parsed.opts.format as ReportFormat | undefined) ?? "text";
  let path: string;
  let reader;
  try {
    if (typeof parsed.opts.audit === "string") {
      if (parsed.opts.config !== undefined) {
        throw new UsageError("give --config or --audit, not both");
      }
      path = resolve(io.cwd, parsed.opts.audit);
      reader = openAuditForReport(path);
    } else {
      const got = await loadForCommand(parsed.opts.config as string | undefined, io, {
        quiet: true,
      });
      if (got === null) return 1;
      // The policy's audit: its PostgreSQL database when it names one.
      ({ reader, source: path } = await openConfiguredAudit(got.loaded.config.audit, io.env));
    }
  } catch (e) {
    if (!(e instanceof ReportSourceError)) throw e;
    io.stderr(`agentgate report: ${e.message}\n`);
    return 1;
  }
  try {
    const r = await buildReport(
      reader,
      { session: (parsed.opts.session as string | undefined) ?? null, since, until },
      { source: path },
    );
    io.stdout(formatReport(r, format));
  } catch (e) {
    if (!(e instanceof AuditReadError)) throw e;
    io.stderr(`agentgate report: ${e.message}\n`);
    return 1;
  } finally {
    await reader.close();
  }
  return 0;
}
