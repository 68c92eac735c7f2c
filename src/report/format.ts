/**
 * Printing a {@link Report}: plain text for a terminal, GitHub-flavoured
 * markdown for `$GITHUB_STEP_SUMMARY` and pull-request comments, JSON for
 * machines.
 *
 * Hosts, paths, reasons, sessions and labels come from requests (an agent
 * chooses them), so the text form escapes control and bidi characters (no
 * terminal escapes, no reordered lines) and the markdown form escapes markup
 * and HTML (no injected links, images or tags in a job summary).
 *
 * @module
 */
import type { DecisionCounts, DenialLine } from "../audit/read.ts";
import type { Report } from "./build.ts";
import { formatUsd } from "../util/usd.ts";

/** The output formats. */
export const REPORT_FORMATS = ["text", "markdown", "json"] as const;
/** One of {@link REPORT_FORMATS}. */
export type ReportFormat = typeof REPORT_FORMATS[number];

/** How many entries of each list the text and markdown forms show (JSON has them all). */
export const SHOWN = { hosts: 20, denials: 50, errors: 10, rules: 10, models: 20, sessions: 10 };

/**
 * Print a report in `format`.
 *
 * @example
 * io.stderr(formatReport(report, "text"));
 */
export function formatReport(report: Report, format: ReportFormat): string {
  switch (format) {
    case "text":
      return formatText(report);
    case "markdown":
      return formatMarkdown(report);
    case "json":
      return formatJson(report);
  }
}

/** The JSON form: the {@link Report} value, indented, with a final newline. */
export function formatJson(report: Report): string {
  return JSON.stringify(report, null, 2) + "\n";
}

// --- pieces shared by text and markdown --------------------------------------

// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text from a request, safe to print on a terminal: control characters and
 * bidi controls become `\xNN` / `\uNNNN`.
 *
 * @example
 * safeText("a\x1b[31mb") // "a\\x1b[31mb"
 */
export function safeText(s: string): string {
  return s.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/**
 * Text from a request, safe inside GitHub-flavoured markdown (also in a table
 * cell): HTML is escaped as entities, markup characters with a backslash.
 *
 * @example
 * mdText("<b>|x_y") // "&lt;b&gt;\\|x\\_y"
 */
export function mdText(s: string): string {
  return safeText(s)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/[\\`*_[\]|~!#]/g, (c) => "\\" + c);
}

/** `1234567` -> `1,234,567`. */
export function num(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/**
 * US dollars: two decimals, up to four for small amounts (`util/usd.ts`).
 *
 * @example
 * usd(1.5) // "$1.50"; usd(0.01234) // "$0.0123"
 */
export const usd: (x: number) => string = formatUsd;

/** `2025-06-01 12:00:00Z` (UTC, to the second). */
export function when(ts: number): string {
  return new Date(ts).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** The request of a denial as one line: `GET https://host/path` or `CONNECT host:443`. */
export function requestLine(d: Pick<DenialLine, "method" | "scheme" | "host" | "port" | "path">) {
  const host = d.host.includes(":") ? `[${d.host}]` : d.host;
  if (d.method === "CONNECT" || d.path === null) return `${d.method} ${host}:${d.port}`;
  const dflt = d.scheme === "https" ? 443 : 80;
  return `${d.method} ${d.scheme}://${host}${d.port === dflt ? "" : `:${d.port}`}${d.path}`;
}

function summaryLine(r: Report): string {
  const t = r.totals;
  return `${num(t.requests)} request${t.requests === 1 ? "" : "s"} to ${num(t.hosts)} host${
    t.hosts === 1 ? "" : "s"
  }: ${num(t.allow)} allowed, ${num(t.log)} logged, ${num(t.deny)} denied, ${
    num(t.would_deny)
  } would be denied, ${num(t.error)} error${t.error === 1 ? "" : "s"}${
    t.challenge > 0
      ? `, ${num(t.challenge)} proxy-auth challenge${
        t.challenge === 1 ? "" : "s"
      } (407 before credentials)`
      : ""
  }`;
}

/** The tunnels line, or null when there were none: connections, not requests. */
function tunnelsLine(r: Report): string | null {
  const t = r.tunnels;
  if (t.requests === 0) return null;
  const parts = [
    t.allow ? `${num(t.allow)} opened` : null,
    t.log ? `${num(t.log)} intercepted or logged` : null,
    t.deny ? `${num(t.deny)} denied` : null,
    t.would_deny ? `${num(t.would_deny)} would be denied` : null,
    t.error ? `${num(t.error)} failed` : null,
    t.challenge ? `${num(t.challenge)} proxy-auth challenge${t.challenge === 1 ? "" : "s"}` : null,
  ].filter((x) => x !== null);
  return `${num(t.requests)} tunnel${
    t.requests === 1 ? "" : "s"
  } (CONNECT, not counted as requests): ${parts.join(", ")}`;
}

function spendText(cost: number, unknown: number): string {
  return usd(cost) + (unknown > 0 ? ` + ${num(unknown)} unpriced` : "");
}

function title(r: Report): string {
  if (r.filter.session === null) return "all sessions";
  return `session ${safeText(r.filter.session)}${r.label ? ` (label ${safeText(r.label)})` : ""}`;
}

function rangeText(r: Report): string {
  if (r.first_ts === null || r.last_ts === null) return "";
  return `${when(r.first_ts)} to ${when(r.last_ts)}`;
}

const DECISION_COLS: (keyof DecisionCounts)[] = [
  "requests",
  "allow",
  "log",
  "deny",
  "would_deny",
  "error",
];
const DECISION_HEADS = ["requests", "allow", "log", "deny", "would deny", "error"];

function more(left: number, what: string): string | null {
  return left > 0 ? `… ${num(left)} more ${what} (see --format json)` : null;
}

/** The lines of a run's own facts (text): refused credentials, policy reloads. */
function runText(r: Report): string[] {
  const run = r.run;
  if (!run) return [];
  const out: string[] = [];
  if (run.invalid_credentials) {
    out.push(
      `  ${
        num(run.invalid_credentials)
      } request(s) refused (407): credentials that were not the run's`,
    );
  }
  if (run.policy_reloads.length > 0) {
    out.push("", `Policy reloads during the run (${num(run.policy_reloads.length)}, --watch)`);
    for (const x of run.policy_reloads) {
      out.push(
        `  ${when(x.at)}  ${safeText(x.trigger)}  ${
          x.ok ? `applied: ${num(x.rules ?? 0)} rule(s)` : "rejected, the previous policy stayed"
        }`,
      );
      for (const e of x.errors) out.push(`      ${safeText(e)}`);
    }
  }
  return out;
}

/** The same as markdown. */
function runMarkdown(r: Report): string[] {
  const run = r.run;
  if (!run) return [];
  const out: string[] = [];
  if (run.invalid_credentials) {
    out.push(
      "",
      `**${
        num(run.invalid_credentials)
      } request(s) refused (407)**: credentials that were not the run's`,
    );
  }
  if (run.policy_reloads.length > 0) {
    out.push("", `#### Policy reloads during the run (--watch)`, "");
    out.push(
      ...mdTable(
        ["Time", "Trigger", "Outcome"],
        run.policy_reloads.map((x) => [
          when(x.at),
          mdText(x.trigger),
          x.ok
            ? `applied: ${num(x.rules ?? 0)} rule(s)`
            : `rejected: ${x.errors.map(mdText).join("<br>")}`,
        ]),
        [false, false, false],
      ),
    );
  }
  return out;
}

// --- text --------------------------------------------------------------------

function table(heads: string[], rows: string[][], right: boolean[]): string[] {
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    "  " +
    cells.map((c, i) =>
      i === cells.length - 1 && !right[i]
        ? c
        : right[i]
        ? c.padStart(widths[i])
        : c.padEnd(widths[i])
    ).join("  ");
  return [line(heads.map((h) => h.toUpperCase())), ...rows.map(line)];
}

/**
 * The text form, for a terminal (`agentgate run` prints it on stderr).
 *
 * @example
 * console.error(formatText(report));
 */
export function formatText(r: Report): string {
  const out: string[] = [];
  const t = r.totals;
  out.push(`agentgate report: ${title(r)}`);
  const range = rangeText(r);
  out.push(`  ${range ? `${range}, ` : ""}from ${safeText(r.source)}`);
  const runLines = runText(r);
  const tunnels = tunnelsLine(r);
  if (t.requests === 0 && tunnels === null) {
    out.push("  no requests went through the proxy", ...runLines);
    return out.join("\n") + "\n";
  }
  out.push(`  ${summaryLine(r)}`);
  if (tunnels !== null) out.push(`  ${tunnels}`);
  if (t.llm_requests > 0) {
    out.push(
      `  LLM: ${num(t.llm_requests)} call(s), ${num(t.input_tokens)} input + ${
        num(t.output_tokens)
      } output tokens, ${spendText(t.cost_usd, t.cost_unknown)}`,
    );
  }
  out.push(...runLines);

  const shownDenials = r.denials.slice(0, SHOWN.denials);
  if (shownDenials.length > 0) {
    const n = r.denials.reduce((s, d) => s + d.count, 0);
    out.push("", `Denials (${num(n)})`);
    for (const d of shownDenials) {
      const tag = d.decision === "deny" ? "deny      " : "would deny";
      out.push(`  ${tag}  ${safeText(requestLine(d))}`);
      const rule = d.rule === null ? "no rule" : `rule "${safeText(d.rule)}"`;
      const src = d.rule_source ? ` (${safeText(d.rule_source)})` : "";
      const extra = [
        d.status !== null ? String(d.status) : null,
        d.policy ? safeText(d.policy) : null,
        d.count > 1 ? `${num(d.count)}x` : null,
      ].filter((x) => x !== null);
      out.push(
        `              ${rule}${src}: ${safeText(d.reason)}${
          extra.length ? `  [${extra.join(", ")}]` : ""
        }`,
      );
    }
    const left = more(r.denials.length - shownDenials.length + r.truncated.denials, "denials");
    if (left) out.push(`  ${left}`);
  }

  // The tunnels column only when there were tunnels.
  const withTunnels = r.tunnels.requests > 0;
  out.push("", "Requests by host");
  const hosts = r.hosts.slice(0, SHOWN.hosts);
  out.push(
    ...table(
      ["host", ...DECISION_HEADS, ...(withTunnels ? ["tunnels"] : [])],
      hosts.map((h) => [
        safeText(h.host),
        ...DECISION_COLS.map((k) => num(h[k])),
        ...(withTunnels ? [num(h.tunnels)] : []),
      ]),
      [false, true, true, true, true, true, true, ...(withTunnels ? [true] : [])],
    ),
  );
  const leftHosts = more(r.hosts.length - hosts.length + r.truncated.hosts, "hosts");
  if (leftHosts) out.push(`  ${leftHosts}`);

  if (r.errors.length > 0) {
    out.push("", "Errors");
    const errors = r.errors.slice(0, SHOWN.errors);
    out.push(
      ...table(
        ["count", "host", "reason"],
        errors.map((e) => [num(e.count), safeText(e.host), safeText(e.reason)]),
        [true, false, false],
      ),
    );
    const left = more(r.errors.length - errors.length + r.truncated.errors, "errors");
    if (left) out.push(`  ${left}`);
  }

  out.push("", "Top rules");
  const rules = r.rules.slice(0, SHOWN.rules);
  out.push(
    ...table(
      ["rule", "hits", ...DECISION_HEADS.slice(1), ...(withTunnels ? ["tunnels"] : [])],
      rules.map((x) => [
        x.rule === null ? "(no rule)" : safeText(x.rule),
        ...DECISION_COLS.map((k) => num(x[k])),
        ...(withTunnels ? [num(x.tunnels)] : []),
      ]),
      [false, true, true, true, true, true, true, ...(withTunnels ? [true] : [])],
    ),
  );
  const leftRules = more(r.rules.length - rules.length + r.truncated.rules, "rules");
  if (leftRules) out.push(`  ${leftRules}`);

  if (r.models.length > 0) {
    out.push("", "LLM tokens and spend");
    const models = r.models.slice(0, SHOWN.models);
    out.push(
      ...table(
        ["model", "provider", "calls", "input", "output", "cost"],
        models.map((m) => [
          safeText(m.model),
          safeText(m.provider ?? "-"),
          num(m.requests),
          num(m.input_tokens),
          num(m.output_tokens),
          spendText(m.cost_usd, m.cost_unknown) + (m.partial > 0 ? ` (${m.partial} partial)` : ""),
        ]),
        [false, false, true, true, true, false],
      ),
    );
    const left = more(r.models.length - models.length, "models");
    if (left) out.push(`  ${left}`);
  }

  if (r.sessions.length > 0) {
    out.push("", "Sessions");
    const sessions = r.sessions.slice(0, SHOWN.sessions);
    out.push(
      ...table(
        ["session", "label", "requests", "deny", "would deny", "cost"],
        sessions.map((s) => [
          s.session === null ? "(none)" : safeText(s.session),
          s.label === null ? "-" : safeText(s.label),
          num(s.requests),
          num(s.deny),
          num(s.would_deny),
          usd(s.cost_usd),
        ]),
        [false, false, true, true, true, true],
      ),
    );
    const left = more(r.sessions.length - sessions.length + r.truncated.sessions, "sessions");
    if (left) out.push(`  ${left}`);
  }
  return out.join("\n") + "\n";
}

// --- markdown ----------------------------------------------------------------

function mdTable(heads: string[], rows: string[][], right: boolean[]): string[] {
  return [
    `| ${heads.join(" | ")} |`,
    `| ${right.map((r) => (r ? "--:" : "---")).join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ];
}

/**
 * The markdown form (GitHub-flavoured), for `$GITHUB_STEP_SUMMARY` and
 * pull-request comments.
 *
 * @example
 * await Deno.writeTextFile(summaryFile, formatMarkdown(report), { append: true });
 */
export function formatMarkdown(r: Report): string {
  const t = r.totals;
  const out: string[] = [];
  // Denied tunnels are denials too, named apart from requests.
  const what = (requests: number, tunnels: number) =>
    [
      requests > 0 || tunnels === 0 ? `${num(requests)} request${requests === 1 ? "" : "s"}` : null,
      tunnels > 0 ? `${num(tunnels)} tunnel${tunnels === 1 ? "" : "s"}` : null,
    ].filter((x) => x !== null).join(" and ");
  const tn = r.tunnels;
  const head = t.deny + tn.deny > 0
    ? `❌ agentgate: ${what(t.deny, tn.deny)} denied`
    : t.would_deny + tn.would_deny > 0
    ? `⚠️ agentgate: ${what(t.would_deny, tn.would_deny)} would be denied`
    : "✅ agentgate: no request denied";
  out.push(`### ${head}`, "");
  const range = rangeText(r);
  const facts = [
    r.filter.session === null
      ? "all sessions"
      : `session **${mdText(r.filter.session)}**${r.label ? ` (label ${mdText(r.label)})` : ""}`,
    t.requests === 0 && r.tunnels.requests === 0
      ? "no requests went through the proxy"
      : summaryLine(r),
    ...(tunnelsLine(r) !== null ? [tunnelsLine(r)!] : []),
    ...(t.llm_requests > 0
      ? [
        `LLM: ${num(t.llm_requests)} call(s), ${num(t.input_tokens)} input + ${
          num(t.output_tokens)
        } output tokens, ${spendText(t.cost_usd, t.cost_unknown)}`,
      ]
      : []),
    ...(range ? [range] : []),
  ];
  out.push(facts.join(" · "));
  out.push(...runMarkdown(r));
  if (t.requests === 0 && r.tunnels.requests === 0) return out.join("\n") + "\n";

  const denials = r.denials.slice(0, SHOWN.denials);
  if (denials.length > 0) {
    out.push("", "#### Denied requests", "");
    out.push(
      ...mdTable(
        ["Decision", "Request", "Rule", "Reason", "Count"],
        denials.map((d) => [
          d.decision === "deny" ? "deny" : "would deny",
          mdText(requestLine(d)),
          d.rule === null ? "*(no rule)*" : mdText(d.rule),
          mdText(d.reason),
          num(d.count),
        ]),
        [false, false, false, false, true],
      ),
    );
    const left = more(r.denials.length - denials.length + r.truncated.denials, "denials");
    if (left) out.push("", mdText(left));
  }

  const mdTunnels = r.tunnels.requests > 0 ? ["Tunnels"] : [];
  out.push("", "#### Requests by host", "");
  const hosts = r.hosts.slice(0, SHOWN.hosts);
  out.push(
    ...mdTable(
      ["Host", "Requests", "Allow", "Log", "Deny", "Would deny", "Error", ...mdTunnels],
      hosts.map((h) => [
        mdText(h.host),
        ...DECISION_COLS.map((k) => num(h[k])),
        ...(mdTunnels.length ? [num(h.tunnels)] : []),
      ]),
      [false, true, true, true, true, true, true, ...(mdTunnels.length ? [true] : [])],
    ),
  );
  const leftHosts = more(r.hosts.length - hosts.length + r.truncated.hosts, "hosts");
  if (leftHosts) out.push("", mdText(leftHosts));

  if (r.errors.length > 0) {
    out.push("", "#### Errors", "");
    const errors = r.errors.slice(0, SHOWN.errors);
    out.push(
      ...mdTable(
        ["Host", "Reason", "Count"],
        errors.map((e) => [mdText(e.host), mdText(e.reason), num(e.count)]),
        [false, false, true],
      ),
    );
  }

  out.push("", "#### Top rules", "");
  out.push(
    ...mdTable(
      ["Rule", "Hits", "Allow", "Log", "Deny", "Would deny", "Error", ...mdTunnels],
      r.rules.slice(0, SHOWN.rules).map((x) => [
        x.rule === null ? "*(no rule)*" : mdText(x.rule),
        ...DECISION_COLS.map((k) => num(x[k])),
        ...(mdTunnels.length ? [num(x.tunnels)] : []),
      ]),
      [false, true, true, true, true, true, true, ...(mdTunnels.length ? [true] : [])],
    ),
  );

  if (r.models.length > 0) {
    out.push("", "#### LLM tokens and spend", "");
    out.push(
      ...mdTable(
        ["Model", "Provider", "Calls", "Input tokens", "Output tokens", "Cost"],
        r.models.slice(0, SHOWN.models).map((m) => [
          mdText(m.model),
          mdText(m.provider ?? "-"),
          num(m.requests),
          num(m.input_tokens),
          num(m.output_tokens),
          spendText(m.cost_usd, m.cost_unknown),
        ]),
        [false, false, true, true, true, true],
      ),
    );
  }

  if (r.sessions.length > 0) {
    out.push("", "#### Sessions", "");
    out.push(
      ...mdTable(
        ["Session", "Label", "Requests", "Deny", "Would deny", "Cost"],
        r.sessions.slice(0, SHOWN.sessions).map((s) => [
          s.session === null ? "*(none)*" : mdText(s.session),
          s.label === null ? "-" : mdText(s.label),
          num(s.requests),
          num(s.deny),
          num(s.would_deny),
          usd(s.cost_usd),
        ]),
        [false, false, true, true, true, true],
      ),
    );
  }
  return out.join("\n") + "\n";
}
