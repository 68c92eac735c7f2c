/**
 * Printing a replay: text for a terminal, Markdown for a pull-request
 * comment, JSON for scripts.
 *
 * @module
 */
import type { ChangeKind, ReplayDecision, ReplayExample, ReplayReport } from "./replay.ts";

/** What the report is about. */
export interface ReplayContext {
  config: string;
  audit: string;
  /** Start of the replayed range (ms), or null for everything. */
  since: number | null;
}

/** Group titles, in the order they are printed. */
export const GROUPS: [ChangeKind, string][] = [
  ["allow_to_deny", "allow -> deny"],
  ["deny_to_allow", "deny -> allow"],
  ["rule_changed", "rule changes"],
  ["needs_body", "needs body"],
  ["needs_dest", "needs address"],
  ["unchanged", "unchanged"],
];

const iso = (ms: number) => new Date(ms).toISOString();

/** The groups a count line is printed for: "needs address" only when there are some. */
function shownGroups(r: ReplayReport): [ChangeKind, string][] {
  return GROUPS.filter(([kind]) => kind !== "needs_dest" || r.counts.needs_dest > 0);
}

/** `deny by rule "x" (file:line): reason`; null: what it could not be decided without. */
export function describeDecision(d: ReplayDecision | null, kind?: ChangeKind): string {
  if (d === null && kind === "needs_dest") {
    return "cannot decide: a rule or the address guard needs the address the host resolved to, which this row does not record";
  }
  if (d === null) {
    return "cannot decide: a condition or policy needs the request body, which the audit does not store";
  }
  const verdict = d.verdict === "forwarded" ? "allow/log (upstream failed)" : d.verdict;
  const by = d.rule === null
    ? "by the default"
    : `by rule "${d.rule}"${d.rule_source ? ` (${d.rule_source})` : ""}`;
  return `${verdict} ${by}${d.policy ? ` [${d.policy}]` : ""}: ${d.reason}`;
}

function skippedText(r: ReplayReport): string {
  const parts = Object.entries(r.skipped.reasons).sort((a, b) => b[1] - a[1]).map(([why, n]) =>
    `${n} ${why}`
  );
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function headline(r: ReplayReport, ctx: ReplayContext): string {
  const range = ctx.since === null ? "" : ` since ${iso(ctx.since)}`;
  return `replayed ${
    r.total - r.skipped.count
  } of ${r.total} recorded request(s)${range} from ${ctx.audit} under ${ctx.config}`;
}

/** Plain text. */
export function replayText(r: ReplayReport, ctx: ReplayContext): string {
  const out = [headline(r, ctx)];
  const width = 16;
  for (const [kind, title] of shownGroups(r)) {
    out.push(`  ${`${title}:`.padEnd(width)}${r.counts[kind]}`);
  }
  out.push(`  ${"skipped:".padEnd(width)}${r.skipped.count}${skippedText(r)}`);
  for (const [kind, title] of GROUPS) {
    if (kind === "unchanged" || r.examples[kind].length === 0) continue;
    out.push("", `${title} (${r.counts[kind]}):`);
    for (const e of r.examples[kind]) {
      out.push(
        `  ${iso(e.ts)} ${e.method} ${e.url}${e.session ? ` session ${e.session}` : ""}${
          e.count > 1 ? ` (x${e.count})` : ""
        }`,
        `    was: ${describeDecision(e.before)}`,
        `    now: ${describeDecision(e.after, kind)}`,
      );
    }
  }
  return out.join("\n") + "\n";
}

/** A Markdown table cell: no line breaks, pipes escaped, inline code safe. */
function cell(s: string): string {
  return s.replace(/\r?\n/g, " ").replace(/\|/g, "\\|");
}

function code(s: string): string {
  const t = s.replace(/\r?\n/g, " ");
  const ticks = t.includes("``") ? "```" : t.includes("`") ? "``" : "`";
  return `${ticks}${ticks.length > 1 ? " " : ""}${cell(t)}${ticks.length > 1 ? " " : ""}${ticks}`;
}

function mdDecision(d: ReplayDecision | null, kind?: ChangeKind): string {
  if (d === null) return kind === "needs_dest" ? "needs the address" : "needs the body";
  const verdict = d.verdict === "forwarded" ? "allow/log" : d.verdict;
  const rule = d.rule === null ? "default" : code(d.rule);
  return `**${verdict}** (${rule})${d.policy ? ` ${code(d.policy)}` : ""}: ${cell(d.reason)}`;
}

/** Markdown for a pull-request comment: a verdict line, the counts, examples in <details>. */
export function replayMarkdown(r: ReplayReport, ctx: ReplayContext): string {
  const n = r.counts;
  const title = n.allow_to_deny > 0
    ? `:warning: ${n.allow_to_deny} recorded request(s) that were allowed would now be denied`
    : n.deny_to_allow + n.rule_changed > 0
    ? `${
      n.deny_to_allow + n.rule_changed
    } recorded request(s) would be decided differently; none allowed one is now denied`
    : "No recorded request would be decided differently";
  const range = ctx.since === null ? "" : ` since ${iso(ctx.since)}`;
  const out = [
    `### agentgate replay: ${title}`,
    "",
    `Replayed **${r.total - r.skipped.count}** of ${r.total} request(s) recorded${range} in ${
      code(ctx.audit)
    } under ${code(ctx.config)}.`,
    "",
    "| change | requests |",
    "| --- | ---: |",
    ...shownGroups(r).map(([kind, title]) => `| ${title.replace("->", "→")} | ${n[kind]} |`),
    `| skipped (no policy decision) | ${r.skipped.count} |`,
  ];
  for (const [kind, title] of GROUPS) {
    const list = r.examples[kind];
    if (kind === "unchanged" || list.length === 0) continue;
    const more = n[kind] - list.reduce((s, e) => s + e.count, 0);
    out.push(
      "",
      `<details${kind === "allow_to_deny" ? " open" : ""}><summary>${title.replace("->", "→")} (${
        n[kind]
      })</summary>`,
      "",
      "| time | request | session | before | after |",
      "| --- | --- | --- | --- | --- |",
      ...list.map((e: ReplayExample) =>
        `| ${iso(e.ts)} | ${code(`${e.method} ${e.url}`)}${e.count > 1 ? ` ×${e.count}` : ""} | ${
          e.session ? code(e.session) : ""
        } | ${mdDecision(e.before)} | ${mdDecision(e.after, kind)} |`
      ),
      ...(more > 0 ? ["", `…and ${more} more.`] : []),
      "",
      "</details>",
    );
  }
  if (n.needs_body > 0) {
    out.push(
      "",
      `${n.needs_body} request(s) could not be replayed: a condition or policy of the proposed policy reads the request body, which the audit does not store.`,
    );
  }
  if (n.needs_dest > 0) {
    out.push(
      "",
      `${n.needs_dest} request(s) could not be replayed: the proposed policy needs the address their host resolved to, which their rows do not record (rows written before agentgate recorded dest_ip, or requests refused before their name was resolved).`,
    );
  }
  return out.join("\n") + "\n";
}

/** JSON. */
export function replayJson(r: ReplayReport, ctx: ReplayContext): string {
  return JSON.stringify(
    {
      config: ctx.config,
      audit: ctx.audit,
      since: ctx.since === null ? null : iso(ctx.since),
      total: r.total,
      replayed: r.total - r.skipped.count,
      counts: r.counts,
      skipped: r.skipped,
      examples: Object.fromEntries(
        GROUPS.filter(([k]) => k !== "unchanged").map(([k]) => [
          k,
          r.examples[k].map((e) => ({ ...e, ts: iso(e.ts) })),
        ]),
      ),
    },
    null,
    2,
  ) + "\n";
}
